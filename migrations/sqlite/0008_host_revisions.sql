-- Issue 16: per-host policy revisions instead of one global row; usage kept by the application.
-- See migrations/postgres/0008_host_revisions.sql for why. SQLite has one writer and no
-- sequences, so the one row of `policy_revision` stays as the counter the revisions are drawn
-- from (grown once per transaction that changes some host's policy, not by triggers).

CREATE TABLE host_revisions (
    host     TEXT PRIMARY KEY,
    revision INTEGER NOT NULL
);
INSERT INTO host_revisions (host, revision)
SELECT host, (SELECT revision FROM policy_revision WHERE id = 1) FROM (SELECT host FROM ports UNION SELECT host FROM agents);

ALTER TABLE tasks ADD COLUMN policy_hosts TEXT;

DROP TRIGGER policy_rules_insert;
DROP TRIGGER policy_rules_update;
DROP TRIGGER policy_rules_delete;
DROP TRIGGER policy_groups_delete;
DROP TRIGGER policy_ports_insert;
DROP TRIGGER policy_ports_update;
DROP TRIGGER policy_ports_delete;
DROP TRIGGER policy_bindings_insert;
DROP TRIGGER policy_bindings_delete;
DROP TRIGGER policy_flow_log_insert;
DROP TRIGGER policy_flow_log_update;
DROP TRIGGER policy_flow_log_delete;

DROP TRIGGER security_groups_usage_insert;
DROP TRIGGER security_groups_usage_delete;
DROP TRIGGER security_group_rules_usage_insert;
DROP TRIGGER security_group_rules_usage_delete;
