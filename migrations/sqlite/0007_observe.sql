-- Issue 14, enforcement you can see: per-rule hit counts, flow-log settings and flow-log records,
-- all reported by host agents (crates/core/src/observe.rs). Times are unix milliseconds, UTC.

-- Hits of one rule on one port, accumulated from the agents' deltas. They go with the rule and
-- with the port (a replaced rule is a new rule with new counts).
CREATE TABLE rule_hits (
    rule_id     TEXT NOT NULL REFERENCES security_group_rules (id) ON DELETE CASCADE,
    port_id     TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    client_id   INTEGER NOT NULL,
    packets     INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    last_hit_ms INTEGER NOT NULL,
    PRIMARY KEY (rule_id, port_id)
);
CREATE INDEX rule_hits_port ON rule_hits (port_id);

-- A port's or a group's flow log (Neutron's `log` resource): which events it records.
CREATE TABLE flow_log_settings (
    kind      TEXT NOT NULL CHECK (kind IN ('port', 'group')),
    target_id TEXT NOT NULL,
    client_id INTEGER NOT NULL,
    events    TEXT NOT NULL CHECK (events IN ('drop', 'accept', 'all')),
    PRIMARY KEY (kind, target_id)
);

-- One flow during one minute as seen from one port. Bounded per client (a cap on records, the
-- oldest go first) and by age (the retention loop).
CREATE TABLE flow_logs (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    client_id  INTEGER NOT NULL,
    port_id    TEXT NOT NULL,
    direction  TEXT NOT NULL,
    src_addr   TEXT NOT NULL,
    src_port   INTEGER,
    dst_addr   TEXT NOT NULL,
    dst_port   INTEGER,
    protocol   INTEGER NOT NULL,
    icmp_type  INTEGER,
    icmp_code  INTEGER,
    packets    INTEGER NOT NULL,
    bytes      INTEGER NOT NULL,
    start_ms   INTEGER NOT NULL,
    end_ms     INTEGER NOT NULL,
    action     TEXT NOT NULL,
    rule_id    TEXT
);
CREATE INDEX flow_logs_client ON flow_logs (client_id, id);
CREATE INDEX flow_logs_port_start ON flow_logs (port_id, start_ms);
CREATE INDEX flow_logs_start ON flow_logs (start_ms);

-- The agent of a port's host renders the setting: a change grows the policy revision.
CREATE TRIGGER policy_flow_log_insert AFTER INSERT ON flow_log_settings BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER policy_flow_log_update AFTER UPDATE ON flow_log_settings BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER policy_flow_log_delete AFTER DELETE ON flow_log_settings BEGIN
    UPDATE policy_revision SET revision = revision + 1 WHERE id = 1;
END;
-- A setting goes with its port or group.
CREATE TRIGGER flow_log_settings_port_gone AFTER DELETE ON ports BEGIN
    DELETE FROM flow_log_settings WHERE kind = 'port' AND target_id = OLD.id;
END;
CREATE TRIGGER flow_log_settings_group_gone AFTER DELETE ON security_groups BEGIN
    DELETE FROM flow_log_settings WHERE kind = 'group' AND target_id = OLD.id;
END;
