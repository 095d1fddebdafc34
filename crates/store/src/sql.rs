//! SQL both backends run word for word: the column lists the row decoders of [`crate::rows`]
//! read in order, and the statements whose text is the same in both dialects.
//!
//! Parameters are written `$1`, `$2`, … as PostgreSQL wants them. SQLite would read `$1` as a
//! parameter *named* "$1" and number it by first appearance: the same numbers when the first
//! appearances run in order, as they do almost everywhere; otherwise the SQLite backend rewrites
//! them to `?1`, `?2`, … (bound by number) before preparing (`sqlite::numbered`). What differs between
//! the dialects (arrays against `json_each`, casts of nullable parameters, `seq` against `rowid`,
//! row locks, `GREATEST` against `MAX`) stays in each backend's own file.

/// Expands to a column list, so the statements below can be built with `concat!` at compile time.
macro_rules! columns {
    (group) => {
        "id, client_id, project_id, region_id, name, description, created_at, updated_at, revision_number"
    };
    (rule) => {
        "id, group_id, direction, ethertype, protocol, port_range_min, port_range_max, remote_ip_prefix, remote_group_id, description, created_at"
    };
    (task) => {
        "id, client_id, user_id, project_id, region_id, task_type, state, request_id, data, payload, error, created_resources, created_on, updated_on, finished_on, acknowledged_at, acknowledged_by"
    };
    (key) => {
        "id, client_id, user_id, name, projects, created_at, revoked_at, role, host"
    };
    (port) => {
        "id, client_id, project_id, region_id, instance_id, instance_name, host, device, mac, fixed_ips, created_at, updated_at"
    };
    (audit) => {
        "id, time, actor_key_id, actor_role, client_id, user_id, project_id, region_id, action, resource_type, resource_id, request_id, outcome, summary"
    };
}

pub(crate) use columns;

pub(crate) const GROUP_COLUMNS: &str = columns!(group);
pub(crate) const RULE_COLUMNS: &str = columns!(rule);
pub(crate) const TASK_COLUMNS: &str = columns!(task);
pub(crate) const PORT_COLUMNS: &str = columns!(port);
pub(crate) const AUDIT_COLUMNS: &str = columns!(audit);

// Groups, rules and tags.
pub(crate) const GET_GROUP: &str =
    concat!("SELECT ", columns!(group), " FROM security_groups WHERE id = $1 AND client_id = $2 AND project_id = $3 AND region_id = $4");
pub(crate) const GROUP_EXISTS: &str =
    "SELECT 1 FROM security_groups WHERE id = $1 AND client_id = $2 AND project_id = $3 AND region_id = $4";
pub(crate) const INSERT_GROUP: &str =
    concat!("INSERT INTO security_groups (", columns!(group), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)");
pub(crate) const UPDATE_GROUP: &str =
    "UPDATE security_groups SET name = $2, description = $3, updated_at = $4, revision_number = $5 WHERE id = $1";
pub(crate) const DELETE_GROUP: &str = "DELETE FROM security_groups WHERE id = $1 AND client_id = $2 AND project_id = $3 AND region_id = $4";
pub(crate) const DELETE_TAGS: &str = "DELETE FROM security_group_tags WHERE group_id = $1";
pub(crate) const INSERT_TAG: &str = "INSERT INTO security_group_tags (group_id, key, value, read_only) VALUES ($1, $2, $3, $4)";
/// The columns of a tag row as [`crate::rows::tag_from_row`] reads them.
pub(crate) const TAG_COLUMNS: &str = "group_id, key, value, read_only";
pub(crate) const INSERT_RULE: &str =
    concat!("INSERT INTO security_group_rules (", columns!(rule), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)");
/// Deletes a rule and says which group held it (the group whose hosts must hear of it).
pub(crate) const DELETE_RULE: &str = "DELETE FROM security_group_rules WHERE id = $1 RETURNING group_id";
pub(crate) const GROUP_OF_RULE: &str = "SELECT g.id FROM security_group_rules r JOIN security_groups g ON g.id = r.group_id
     WHERE r.id = $1 AND g.client_id = $2 AND g.project_id = $3 AND g.region_id = $4";
pub(crate) const COUNT_GROUPS: &str = "SELECT COUNT(*) FROM security_groups WHERE client_id = $1 AND project_id = $2 AND region_id = $3";
/// Adds a transaction's usage changes to its scope's row (`crate::pending`), once per scope.
pub(crate) const ADD_USAGE: &str = "INSERT INTO scope_usage (client_id, project_id, region_id, groups, rules) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (client_id, project_id, region_id) DO UPDATE
     SET groups = scope_usage.groups + excluded.groups, rules = scope_usage.rules + excluded.rules";
pub(crate) const SCOPE_USAGE: &str = "SELECT groups, rules FROM scope_usage WHERE client_id = $1 AND project_id = $2 AND region_id = $3";

// Quotas.
pub(crate) const GET_QUOTA: &str =
    "SELECT security_group_count, security_group_rule_count FROM quotas WHERE client_id = $1 AND project_id = $2 AND region_id = $3";
pub(crate) const SET_QUOTA: &str = "INSERT INTO quotas (client_id, project_id, region_id, security_group_count, security_group_rule_count)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (client_id, project_id, region_id) DO UPDATE
     SET security_group_count = excluded.security_group_count, security_group_rule_count = excluded.security_group_rule_count";
pub(crate) const EXPORT_QUOTAS: &str =
    "SELECT client_id, project_id, region_id, security_group_count, security_group_rule_count FROM quotas
     ORDER BY client_id, project_id, region_id";

// Ports, bindings, the policy revision and agents.
pub(crate) const INSERT_PORT: &str =
    concat!("INSERT INTO ports (", columns!(port), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)");
pub(crate) const UPDATE_PORT: &str =
    "UPDATE ports SET instance_name = $2, host = $3, device = $4, mac = $5, fixed_ips = $6, updated_at = $7 WHERE id = $1";
pub(crate) const DELETE_PORT_GROUPS: &str = "DELETE FROM port_security_groups WHERE port_id = $1";
pub(crate) const INSERT_PORT_GROUP: &str = "INSERT INTO port_security_groups (port_id, group_id, position) VALUES ($1, $2, $3)";
/// A port's host and bound groups (one row per group; one with a NULL group when it has none).
pub(crate) const PORT_HOST_AND_GROUPS: &str =
    "SELECT p.host, b.group_id FROM ports p LEFT JOIN port_security_groups b ON b.port_id = p.id WHERE p.id = $1";
pub(crate) const HIGHEST_REVISION: &str = "SELECT coalesce(max(revision), 0) FROM host_revisions";
pub(crate) const HOST_REVISION: &str = "SELECT revision FROM host_revisions WHERE host = $1";
pub(crate) const REPORT_AGENT: &str = "INSERT INTO agents (host, applied_revision, reported_at) VALUES ($1, $2, $3)
     ON CONFLICT (host) DO UPDATE SET applied_revision = excluded.applied_revision, reported_at = excluded.reported_at";

// Tasks.
pub(crate) const INSERT_TASK: &str =
    concat!("INSERT INTO tasks (", columns!(task), ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)");
pub(crate) const UPDATE_TASK: &str = "UPDATE tasks SET state = $2, error = $3, created_resources = $4, updated_on = $5, finished_on = $6,
     acknowledged_at = $7, acknowledged_by = $8 WHERE id = $1";
pub(crate) const GET_TASK: &str = concat!("SELECT ", columns!(task), " FROM tasks WHERE id = $1 AND client_id = $2");
pub(crate) const SET_TASK_POLICY_HOSTS: &str = "UPDATE tasks SET policy_hosts = $2 WHERE id = $1";
pub(crate) const COUNT_OPEN_TASKS: &str = "SELECT COUNT(*) FROM tasks WHERE client_id = $1 AND state IN ('NEW', 'RUNNING')";

// API keys.
pub(crate) const INSERT_KEY: &str = "INSERT INTO api_keys (token_hash, client_id, user_id, projects, name, created_at, role, host)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id";
pub(crate) const FIND_KEY: &str = concat!("SELECT ", columns!(key), " FROM api_keys WHERE token_hash = $1");
pub(crate) const LIST_KEYS: &str = concat!("SELECT ", columns!(key), " FROM api_keys ORDER BY id");
pub(crate) const REVOKE_KEY: &str = "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";
/// Every key with its token hash after the key columns.
pub(crate) const EXPORT_KEYS: &str = concat!("SELECT ", columns!(key), ", token_hash FROM api_keys ORDER BY id");
pub(crate) const IMPORT_KEY: &str =
    concat!("INSERT INTO api_keys (", columns!(key), ", token_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)");

// The audit log.
pub(crate) const INSERT_AUDIT: &str =
    "INSERT INTO audit_events (time, actor_key_id, actor_role, client_id, user_id, project_id, region_id, action,
     resource_type, resource_id, request_id, outcome, summary)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
pub(crate) const PRUNE_AUDIT: &str =
    "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE time < $1 ORDER BY time LIMIT $2)";

// Migrations (the table's DDL is each dialect's own: see `migrate`).
pub(crate) const MIGRATION_APPLIED: &str = "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)";
pub(crate) const RECORD_MIGRATION: &str = "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)";
