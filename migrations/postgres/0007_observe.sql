-- Issue 14, PostgreSQL dialect; mirrors migrations/sqlite/0007_observe.sql.

CREATE TABLE rule_hits (
    rule_id     TEXT NOT NULL REFERENCES security_group_rules (id) ON DELETE CASCADE,
    port_id     TEXT NOT NULL REFERENCES ports (id) ON DELETE CASCADE,
    client_id   BIGINT NOT NULL,
    packets     BIGINT NOT NULL,
    bytes       BIGINT NOT NULL,
    last_hit_ms BIGINT NOT NULL,
    PRIMARY KEY (rule_id, port_id)
);
CREATE INDEX rule_hits_port ON rule_hits (port_id);

CREATE TABLE flow_log_settings (
    kind      TEXT NOT NULL CHECK (kind IN ('port', 'group')),
    target_id TEXT NOT NULL,
    client_id BIGINT NOT NULL,
    events    TEXT NOT NULL CHECK (events IN ('drop', 'accept', 'all')),
    PRIMARY KEY (kind, target_id)
);

CREATE TABLE flow_logs (
    id         BIGSERIAL PRIMARY KEY,
    client_id  BIGINT NOT NULL,
    port_id    TEXT NOT NULL,
    direction  TEXT NOT NULL,
    src_addr   TEXT NOT NULL,
    src_port   INTEGER,
    dst_addr   TEXT NOT NULL,
    dst_port   INTEGER,
    protocol   INTEGER NOT NULL,
    icmp_type  INTEGER,
    icmp_code  INTEGER,
    packets    BIGINT NOT NULL,
    bytes      BIGINT NOT NULL,
    start_ms   BIGINT NOT NULL,
    end_ms     BIGINT NOT NULL,
    action     TEXT NOT NULL,
    rule_id    TEXT
);
CREATE INDEX flow_logs_client ON flow_logs (client_id, id);
CREATE INDEX flow_logs_port_start ON flow_logs (port_id, start_ms);
CREATE INDEX flow_logs_start ON flow_logs (start_ms);

CREATE TRIGGER policy_flow_log AFTER INSERT OR UPDATE OR DELETE ON flow_log_settings
    FOR EACH STATEMENT EXECUTE FUNCTION bump_policy_revision();

CREATE FUNCTION drop_flow_log_setting() RETURNS trigger AS $$
BEGIN
    DELETE FROM flow_log_settings WHERE kind = TG_ARGV[0] AND target_id = OLD.id;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER flow_log_settings_port_gone AFTER DELETE ON ports
    FOR EACH ROW EXECUTE FUNCTION drop_flow_log_setting('port');
CREATE TRIGGER flow_log_settings_group_gone AFTER DELETE ON security_groups
    FOR EACH ROW EXECUTE FUNCTION drop_flow_log_setting('group');
