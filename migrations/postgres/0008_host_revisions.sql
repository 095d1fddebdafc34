-- Issue 16, PostgreSQL dialect; mirrors migrations/sqlite/0008_host_revisions.sql.
--
-- Per-host policy revisions instead of one global row. Until now every change grew the single
-- row of `policy_revision` (statement triggers) and every rule changed its scope's row of
-- `scope_usage` (row triggers): all writers of the cluster queued on the first row until commit,
-- and every agent of the region woke on every write. Now the application, once per transaction
-- and just before COMMIT, adds up its usage changes per scope and bumps the revision of exactly
-- the hosts whose policy the transaction changed (`crate::pending`). Revisions come from a
-- sequence (never a locked row), so they stay comparable across hosts.

CREATE SEQUENCE policy_revision_seq;
SELECT setval('policy_revision_seq', (SELECT revision FROM policy_revision WHERE id = 1));

-- The revision of each host's policy; a host without a row has revision 0.
CREATE TABLE host_revisions (
    host     TEXT PRIMARY KEY,
    revision BIGINT NOT NULL
);
-- Every host known now starts at the current global revision, so an agent that applied it is
-- in sync and one behind it still sees a newer revision.
INSERT INTO host_revisions (host, revision)
SELECT host, (SELECT revision FROM policy_revision WHERE id = 1) FROM (SELECT host FROM ports UNION SELECT host FROM agents) known;

-- The hosts (and their revisions) a task's change bumped, as JSON `[["host", revision], ...]`:
-- `?wait_for_agents` waits for exactly these agents.
ALTER TABLE tasks ADD COLUMN policy_hosts TEXT;

DROP TRIGGER policy_rules ON security_group_rules;
DROP TRIGGER policy_groups_delete ON security_groups;
DROP TRIGGER policy_ports ON ports;
DROP TRIGGER policy_bindings ON port_security_groups;
DROP TRIGGER policy_flow_log ON flow_log_settings;
DROP FUNCTION bump_policy_revision();
DROP TABLE policy_revision;

DROP TRIGGER security_groups_usage_insert ON security_groups;
DROP TRIGGER security_groups_usage_delete ON security_groups;
DROP TRIGGER security_group_rules_usage_insert ON security_group_rules;
DROP TRIGGER security_group_rules_usage_delete ON security_group_rules;
DROP FUNCTION palisade_group_usage_insert();
DROP FUNCTION palisade_group_usage_delete();
DROP FUNCTION palisade_rule_usage_insert();
DROP FUNCTION palisade_rule_usage_delete();
