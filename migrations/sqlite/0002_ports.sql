-- The data plane: instance ports bound to security groups, the global policy revision that agents
-- follow, and what each host agent reports it applied. Ports are listed in creation order (rowid).

CREATE TABLE ports (
    id            TEXT PRIMARY KEY,
    client_id     INTEGER NOT NULL,
    project_id    INTEGER NOT NULL,
    region_id     INTEGER NOT NULL,
    instance_id   TEXT NOT NULL,
    instance_name TEXT NOT NULL,
    host          TEXT NOT NULL,
    -- The port's interface on the host (Neutron's `tap` + the first 11 characters of the id).
    device        TEXT NOT NULL,
    mac           TEXT NOT NULL,
    -- JSON array of the port's fixed IPv4 and IPv6 addresses, as text.
    fixed_ips     TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX ports_host ON ports (host);
CREATE INDEX ports_instance ON ports (client_id, project_id, region_id, instance_id);

-- A group cannot be deleted while a port uses it (409 naming the ports): no cascade here.
CREATE TABLE port_security_groups (
    port_id  TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    group_id TEXT NOT NULL REFERENCES security_groups (id),
    position INTEGER NOT NULL,
    PRIMARY KEY (port_id, group_id)
);
CREATE INDEX port_security_groups_group ON port_security_groups (group_id);

-- One row: grows in the transaction of every change that can change what a kernel enforces
-- (rules, ports, their addresses and bindings). Agents long-poll on it.
CREATE TABLE policy_revision (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision INTEGER NOT NULL
);
INSERT INTO policy_revision (id, revision) VALUES (1, 1);

CREATE TABLE agents (
    client_id        INTEGER NOT NULL,
    host             TEXT NOT NULL,
    applied_revision INTEGER NOT NULL,
    reported_at      INTEGER NOT NULL,
    PRIMARY KEY (client_id, host)
);

CREATE TRIGGER policy_rules_insert AFTER INSERT ON security_group_rules BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER policy_rules_update AFTER UPDATE ON security_group_rules BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER policy_rules_delete AFTER DELETE ON security_group_rules BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER policy_groups_delete AFTER DELETE ON security_groups BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER policy_ports_insert AFTER INSERT ON ports BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER policy_ports_update AFTER UPDATE ON ports BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER policy_ports_delete AFTER DELETE ON ports BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER policy_bindings_insert AFTER INSERT ON port_security_groups BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER policy_bindings_delete AFTER DELETE ON port_security_groups BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;
