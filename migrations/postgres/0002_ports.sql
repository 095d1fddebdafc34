-- The data plane, PostgreSQL dialect; mirrors migrations/sqlite/0002_ports.sql.
-- Ports are listed in creation order (`seq`).

CREATE TABLE ports (
    seq           BIGSERIAL NOT NULL UNIQUE,
    id            TEXT PRIMARY KEY,
    client_id     BIGINT NOT NULL,
    project_id    BIGINT NOT NULL,
    region_id     BIGINT NOT NULL,
    instance_id   TEXT NOT NULL,
    instance_name TEXT NOT NULL,
    host          TEXT NOT NULL,
    device        TEXT NOT NULL,
    mac           TEXT NOT NULL,
    fixed_ips     TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX ports_host ON ports (host);
CREATE INDEX ports_instance ON ports (client_id, project_id, region_id, instance_id);

CREATE TABLE port_security_groups (
    port_id  TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    group_id TEXT NOT NULL REFERENCES security_groups (id),
    position INTEGER NOT NULL,
    PRIMARY KEY (port_id, group_id)
);
CREATE INDEX port_security_groups_group ON port_security_groups (group_id);

-- Every writer that changes enforcement updates this one row, so revisions follow commit order
-- (the row lock is held until commit).
CREATE TABLE policy_revision (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    revision BIGINT NOT NULL
);
INSERT INTO policy_revision (id, revision) VALUES (1, 1);

CREATE TABLE agents (
    client_id        BIGINT NOT NULL,
    host             TEXT NOT NULL,
    applied_revision BIGINT NOT NULL,
    reported_at      BIGINT NOT NULL,
    PRIMARY KEY (client_id, host)
);

CREATE FUNCTION bump_policy_revision() RETURNS trigger AS $$
BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE TRIGGER policy_rules AFTER INSERT OR UPDATE OR DELETE ON security_group_rules
    FOR EACH STATEMENT EXECUTE FUNCTION bump_policy_revision();
CREATE TRIGGER policy_groups_delete AFTER DELETE ON security_groups
    FOR EACH STATEMENT EXECUTE FUNCTION bump_policy_revision();
CREATE TRIGGER policy_ports AFTER INSERT OR UPDATE OR DELETE ON ports
    FOR EACH STATEMENT EXECUTE FUNCTION bump_policy_revision();
CREATE TRIGGER policy_bindings AFTER INSERT OR DELETE ON port_security_groups
    FOR EACH STATEMENT EXECUTE FUNCTION bump_policy_revision();
