//! The embedded default: SQLite in WAL mode. One writer connection serialises writes (SQLite
//! has one writer anyway); a small pool of reader connections serves snapshots concurrently.
//! `synchronous=NORMAL` in WAL mode keeps every committed transaction across a process crash;
//! `--sqlite-synchronous full` also keeps it across power loss.

use std::path::Path;
use std::str::FromStr;
use std::sync::Mutex;

use palisade_core::group::{Group, Scope};
use palisade_core::port::Port;
use palisade_core::quota::{Limits, Usage};
use palisade_core::{Cidr, Direction, Ethertype, Protocol, Rule, RuleSpec, Tag};
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;
use uuid::Uuid;

mod audit;
mod ports;

use crate::{
    AckFilter, AgentRecord, ApiKey, GroupFilter, KEY_COLUMNS, KeyRole, NewApiKey, PortFilter, Store, StoreError, StoreResult, TaskFilter,
    TaskRecord, TaskState, Tx, now_ms,
};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../../migrations/sqlite/0002_ports.sql")),
    (3, include_str!("../../../migrations/sqlite/0003_quotas.sql")),
    (4, include_str!("../../../migrations/sqlite/0004_roles.sql")),
    (5, include_str!("../../../migrations/sqlite/0005_audit.sql")),
    (6, include_str!("../../../migrations/sqlite/0006_task_retention.sql")),
];

const READERS: usize = 8;

pub struct SqliteStore {
    path: String,
    synchronous: String,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(ref code, _)
                if matches!(code.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) =>
            {
                StoreError::Unavailable(e.to_string())
            }
            other => StoreError::Internal(other.to_string()),
        }
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub fn open(path: impl AsRef<Path>, synchronous: &str) -> StoreResult<SqliteStore> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError::Internal(format!("creating {}: {e}", dir.display())))?;
        }
        let synchronous = match synchronous.to_ascii_lowercase().as_str() {
            s @ ("normal" | "full" | "extra") => s.to_string(),
            other => return Err(StoreError::Internal(format!("unknown sqlite synchronous mode {other}"))),
        };
        let path = path.to_string_lossy().into_owned();
        let mut writer = open_connection(&path, &synchronous)?;
        migrate(&mut writer)?;
        Ok(SqliteStore { path, synchronous, writer: Mutex::new(writer), readers: Mutex::new(Vec::new()) })
    }

    fn reader(&self) -> StoreResult<Connection> {
        if let Some(conn) = self.readers.lock().expect("reader pool lock").pop() {
            return Ok(conn);
        }
        open_connection(&self.path, &self.synchronous)
    }

    fn give_back(&self, conn: Connection) {
        let mut pool = self.readers.lock().expect("reader pool lock");
        if pool.len() < READERS {
            pool.push(conn);
        }
    }
}

fn open_connection(path: &str, synchronous: &str) -> StoreResult<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", synchronous)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Sorts and temporary indexes in memory, not in a temp file per statement.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(conn)
}

fn migrate(conn: &mut Connection) -> StoreResult<()> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)")?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    for (version, sql) in MIGRATIONS {
        let applied: bool = tx.query_row("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = ?1)", [version], |r| r.get(0))?;
        if !applied {
            tx.execute_batch(sql)?;
            tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)", params![version, now_ms()])?;
            tracing::info!(version, "applied sqlite migration");
        }
    }
    tx.commit()?;
    Ok(())
}

impl Store for SqliteStore {
    fn read<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        let mut conn = self.reader()?;
        let result = {
            let tx = conn.transaction().map_err(StoreError::from)?;
            let mut handle = SqliteTx { conn: &tx };
            let result = f(&mut handle);
            // A read transaction has nothing to keep; ending it releases the snapshot.
            drop(tx);
            result
        };
        self.give_back(conn);
        result
    }

    fn write<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        let mut conn = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(StoreError::from)?;
        let result = f(&mut SqliteTx { conn: &tx });
        match result {
            Ok(value) => {
                tx.commit().map_err(StoreError::from)?;
                Ok(value)
            }
            Err(e) => {
                // Dropping the transaction rolls it back.
                drop(tx);
                Err(e)
            }
        }
    }

    fn ping(&self) -> StoreResult<()> {
        self.read(|_| Ok::<_, StoreError>(()))
    }
}

struct SqliteTx<'a> {
    conn: &'a Connection,
}

fn id_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

fn parse_uuid(text: String) -> rusqlite::Result<Uuid> {
    Uuid::try_parse(&text).map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

fn bad_value(what: &str, text: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, format!("stored {what} {text:?} is not valid").into())
}

const GROUP_COLUMNS: &str = "id, client_id, project_id, region_id, name, description, created_at, updated_at, revision_number";
const RULE_COLUMNS: &str = "id, group_id, direction, ethertype, protocol, port_range_min, port_range_max, remote_ip_prefix, remote_group_id, description, created_at";
const TASK_COLUMNS: &str = "id, client_id, user_id, project_id, region_id, task_type, state, request_id, data, payload, error, created_resources, created_on, updated_on, finished_on, acknowledged_at, acknowledged_by";

fn group_from_row(row: &Row) -> rusqlite::Result<Group> {
    Ok(Group {
        id: parse_uuid(row.get(0)?)?,
        scope: Scope { client_id: row.get(1)?, project_id: row.get(2)?, region_id: row.get(3)? },
        name: row.get(4)?,
        description: row.get(5)?,
        created_at: row.get(6)?,
        updated_at: row.get(7)?,
        revision_number: row.get(8)?,
        rules: Vec::new(),
        tags: Vec::new(),
    })
}

fn rule_from_row(row: &Row) -> rusqlite::Result<Rule> {
    let direction: String = row.get(2)?;
    let ethertype: String = row.get(3)?;
    let protocol: Option<String> = row.get(4)?;
    let prefix: Option<String> = row.get(7)?;
    let remote_group: Option<String> = row.get(8)?;
    Ok(Rule {
        id: parse_uuid(row.get(0)?)?,
        group_id: parse_uuid(row.get(1)?)?,
        spec: RuleSpec {
            direction: Direction::parse(&direction).ok_or_else(|| bad_value("direction", &direction))?,
            ethertype: Ethertype::parse(&ethertype).ok_or_else(|| bad_value("ethertype", &ethertype))?,
            protocol: match protocol {
                None => None,
                Some(p) => Some(Protocol::from_name(&p).ok_or_else(|| bad_value("protocol", &p))?),
            },
            port_range_min: row.get(5)?,
            port_range_max: row.get(6)?,
            remote_ip_prefix: match prefix {
                None => None,
                Some(p) => Some(Cidr::from_str(&p).map_err(|_| bad_value("remote_ip_prefix", &p))?),
            },
            remote_group_id: remote_group.map(parse_uuid).transpose()?,
            description: row.get(9)?,
        },
        created_at: row.get(10)?,
    })
}

fn json_column(text: Option<String>) -> rusqlite::Result<Option<Value>> {
    text.map(|t| serde_json::from_str(&t).map_err(|_| bad_value("json", &t))).transpose()
}

fn task_from_row(row: &Row) -> rusqlite::Result<TaskRecord> {
    let state: String = row.get(6)?;
    Ok(TaskRecord {
        id: row.get(0)?,
        client_id: row.get(1)?,
        user_id: row.get(2)?,
        project_id: row.get(3)?,
        region_id: row.get(4)?,
        task_type: row.get(5)?,
        state: TaskState::parse(&state).ok_or_else(|| bad_value("task state", &state))?,
        request_id: row.get(7)?,
        data: json_column(row.get(8)?)?,
        payload: json_column(row.get(9)?)?.unwrap_or(Value::Null),
        error: row.get(10)?,
        created_resources: json_column(row.get(11)?)?,
        created_on: row.get(12)?,
        updated_on: row.get(13)?,
        finished_on: row.get(14)?,
        acknowledged_at: row.get(15)?,
        acknowledged_by: row.get(16)?,
    })
}

fn key_from_row(row: &Row) -> rusqlite::Result<ApiKey> {
    let projects: Option<String> = row.get(4)?;
    let role: String = row.get(7)?;
    Ok(ApiKey {
        id: row.get(0)?,
        role: KeyRole::parse(&role).ok_or_else(|| bad_value("role", &role))?,
        host: row.get(8)?,
        client_id: row.get(1)?,
        user_id: row.get(2)?,
        name: row.get(3)?,
        projects: projects.map(|p| serde_json::from_str(&p).map_err(|_| bad_value("projects", &p))).transpose()?,
        created_at: row.get(5)?,
        revoked_at: row.get(6)?,
    })
}

impl SqliteTx<'_> {
    /// Fills in rules and tags of `groups` with one query each (no N+1).
    fn attach_children(&self, groups: &mut [Group]) -> StoreResult<()> {
        if groups.is_empty() {
            return Ok(());
        }
        let ids = Value::Array(groups.iter().map(|g| Value::String(id_text(g.id))).collect()).to_string();
        let index: std::collections::HashMap<Uuid, usize> = groups.iter().enumerate().map(|(i, g)| (g.id, i)).collect();
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {RULE_COLUMNS} FROM security_group_rules WHERE group_id IN (SELECT value FROM json_each(?1)) ORDER BY rowid"
        ))?;
        for rule in stmt.query_map([&ids], rule_from_row)? {
            let rule = rule?;
            if let Some(&i) = index.get(&rule.group_id) {
                groups[i].rules.push(rule);
            }
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT group_id, key, value, read_only FROM security_group_tags WHERE group_id IN (SELECT value FROM json_each(?1)) ORDER BY group_id, key",
        )?;
        let mut rows = stmt.query([&ids])?;
        while let Some(row) = rows.next()? {
            let group_id = parse_uuid(row.get(0)?)?;
            if let Some(&i) = index.get(&group_id) {
                groups[i].tags.push(Tag { key: row.get(1)?, value: row.get(2)?, read_only: row.get(3)? });
            }
        }
        Ok(())
    }
}

impl Tx for SqliteTx<'_> {
    fn get_group(&mut self, scope: &Scope, id: Uuid) -> StoreResult<Option<Group>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {GROUP_COLUMNS} FROM security_groups WHERE id = ?1 AND client_id = ?2 AND project_id = ?3 AND region_id = ?4"
        ))?;
        let group = stmt.query_row(params![id_text(id), scope.client_id, scope.project_id, scope.region_id], group_from_row).optional()?;
        let Some(group) = group else { return Ok(None) };
        let mut groups = [group];
        self.attach_children(&mut groups)?;
        let [group] = groups;
        Ok(Some(group))
    }

    fn group_exists(&mut self, scope: &Scope, id: Uuid) -> StoreResult<bool> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM security_groups WHERE id = ?1 AND client_id = ?2 AND project_id = ?3 AND region_id = ?4)",
        )?;
        Ok(stmt.query_row(params![id_text(id), scope.client_id, scope.project_id, scope.region_id], |r| r.get(0))?)
    }

    fn list_groups(&mut self, scope: &Scope, filter: &GroupFilter) -> StoreResult<(u64, Vec<Group>)> {
        let base = "client_id = ?1 AND project_id = ?2 AND region_id = ?3 AND (?4 IS NULL OR name = ?4)";
        let (limit, offset) = (filter.limit, filter.offset as i64);
        let (count, mut groups) = if filter.tag_keys.is_empty() && filter.tag_pairs.is_empty() {
            // No tag filter: no per-row subqueries, and without a name the count is the
            // trigger-kept usage row, O(1) however many groups the scope has.
            let count = match filter.name {
                None => self.usage(scope)?.security_groups,
                Some(_) => {
                    let mut stmt = self.conn.prepare_cached(&format!("SELECT COUNT(*) FROM security_groups WHERE {base}"))?;
                    stmt.query_row(params![scope.client_id, scope.project_id, scope.region_id, filter.name], |r| r.get::<_, i64>(0))? as u64
                }
            };
            let mut stmt = self
                .conn
                .prepare_cached(&format!("SELECT {GROUP_COLUMNS} FROM security_groups WHERE {base} ORDER BY rowid LIMIT ?5 OFFSET ?6"))?;
            let groups = stmt
                .query_map(params![scope.client_id, scope.project_id, scope.region_id, filter.name, limit, offset], group_from_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            (count, groups)
        } else {
            let keys = serde_json::to_string(&filter.tag_keys).expect("strings serialise");
            let pairs = serde_json::to_string(&filter.tag_pairs).expect("strings serialise");
            let condition = format!(
                "{base}
                AND NOT EXISTS (SELECT 1 FROM json_each(?5) k WHERE NOT EXISTS
                    (SELECT 1 FROM security_group_tags t WHERE t.group_id = security_groups.id AND t.key = k.value))
                AND NOT EXISTS (SELECT 1 FROM json_each(?6) p WHERE NOT EXISTS
                    (SELECT 1 FROM security_group_tags t WHERE t.group_id = security_groups.id
                     AND t.key = json_extract(p.value, '$[0]') AND t.value = json_extract(p.value, '$[1]')))"
            );
            let count: i64 = self
                .conn
                .prepare_cached(&format!("SELECT COUNT(*) FROM security_groups WHERE {condition}"))?
                .query_row(params![scope.client_id, scope.project_id, scope.region_id, filter.name, keys, pairs], |r| r.get(0))?;
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT {GROUP_COLUMNS} FROM security_groups WHERE {condition} ORDER BY rowid LIMIT ?7 OFFSET ?8"
            ))?;
            let groups = stmt
                .query_map(
                    params![scope.client_id, scope.project_id, scope.region_id, filter.name, keys, pairs, limit, offset],
                    group_from_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            (count as u64, groups)
        };
        self.attach_children(&mut groups)?;
        Ok((count, groups))
    }

    fn insert_group(&mut self, group: &Group) -> StoreResult<()> {
        self.conn
            .prepare_cached(&format!("INSERT INTO security_groups ({GROUP_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"))?
            .execute(params![
                id_text(group.id),
                group.scope.client_id,
                group.scope.project_id,
                group.scope.region_id,
                group.name,
                group.description,
                group.created_at,
                group.updated_at,
                group.revision_number
            ])?;
        for rule in &group.rules {
            self.insert_rule(rule)?;
        }
        self.replace_tags(group.id, &group.tags)
    }

    fn update_group(&mut self, group: &Group) -> StoreResult<()> {
        self.conn
            .prepare_cached("UPDATE security_groups SET name = ?2, description = ?3, updated_at = ?4, revision_number = ?5 WHERE id = ?1")?
            .execute(params![id_text(group.id), group.name, group.description, group.updated_at, group.revision_number])?;
        Ok(())
    }

    fn delete_group(&mut self, scope: &Scope, id: Uuid) -> StoreResult<bool> {
        let deleted = self
            .conn
            .prepare_cached("DELETE FROM security_groups WHERE id = ?1 AND client_id = ?2 AND project_id = ?3 AND region_id = ?4")?
            .execute(params![id_text(id), scope.client_id, scope.project_id, scope.region_id])?;
        Ok(deleted > 0)
    }

    fn replace_tags(&mut self, group_id: Uuid, tags: &[Tag]) -> StoreResult<()> {
        let id = id_text(group_id);
        self.conn.prepare_cached("DELETE FROM security_group_tags WHERE group_id = ?1")?.execute([&id])?;
        let mut stmt =
            self.conn.prepare_cached("INSERT INTO security_group_tags (group_id, key, value, read_only) VALUES (?1, ?2, ?3, ?4)")?;
        for tag in tags {
            stmt.execute(params![id, tag.key, tag.value, tag.read_only])?;
        }
        Ok(())
    }

    fn insert_rule(&mut self, rule: &Rule) -> StoreResult<()> {
        let spec = &rule.spec;
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO security_group_rules ({RULE_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)"
            ))?
            .execute(params![
                id_text(rule.id),
                id_text(rule.group_id),
                spec.direction.as_str(),
                spec.ethertype.as_str(),
                spec.protocol.map(Protocol::name),
                spec.port_range_min,
                spec.port_range_max,
                spec.remote_ip_prefix.map(|p| p.to_string()),
                spec.remote_group_id.map(id_text),
                spec.description,
                rule.created_at
            ])?;
        Ok(())
    }

    fn delete_rule(&mut self, rule_id: Uuid) -> StoreResult<bool> {
        Ok(self.conn.prepare_cached("DELETE FROM security_group_rules WHERE id = ?1")?.execute([id_text(rule_id)])? > 0)
    }

    fn group_of_rule(&mut self, scope: &Scope, rule_id: Uuid) -> StoreResult<Option<Uuid>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT g.id FROM security_group_rules r JOIN security_groups g ON g.id = r.group_id
             WHERE r.id = ?1 AND g.client_id = ?2 AND g.project_id = ?3 AND g.region_id = ?4",
        )?;
        let id: Option<String> =
            stmt.query_row(params![id_text(rule_id), scope.client_id, scope.project_id, scope.region_id], |r| r.get(0)).optional()?;
        Ok(id.map(parse_uuid).transpose()?)
    }

    fn rules_referencing(&mut self, group_id: Uuid) -> StoreResult<Vec<(Uuid, Uuid)>> {
        let mut stmt =
            self.conn.prepare_cached("SELECT id, group_id FROM security_group_rules WHERE remote_group_id = ?1 AND group_id <> ?1")?;
        let rows = stmt.query_map([id_text(group_id)], |r| Ok((parse_uuid(r.get(0)?)?, parse_uuid(r.get(1)?)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn count_groups(&mut self, scope: &Scope) -> StoreResult<u64> {
        let mut stmt =
            self.conn.prepare_cached("SELECT COUNT(*) FROM security_groups WHERE client_id = ?1 AND project_id = ?2 AND region_id = ?3")?;
        let count: i64 = stmt.query_row(params![scope.client_id, scope.project_id, scope.region_id], |r| r.get(0))?;
        Ok(count as u64)
    }

    fn usage(&mut self, scope: &Scope) -> StoreResult<Usage> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT groups, rules FROM scope_usage WHERE client_id = ?1 AND project_id = ?2 AND region_id = ?3")?;
        let usage = stmt
            .query_row(params![scope.client_id, scope.project_id, scope.region_id], |r| {
                Ok(Usage { security_groups: r.get::<_, i64>(0)?.max(0) as u64, security_group_rules: r.get::<_, i64>(1)?.max(0) as u64 })
            })
            .optional()?;
        Ok(usage.unwrap_or_default())
    }

    fn lock_scope(&mut self, _scope: &Scope) -> StoreResult<()> {
        // Write transactions are BEGIN IMMEDIATE on one connection: already serialised.
        Ok(())
    }

    fn get_quota(&mut self, scope: &Scope) -> StoreResult<Option<Limits>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT security_group_count, security_group_rule_count FROM quotas WHERE client_id = ?1 AND project_id = ?2 AND region_id = ?3",
        )?;
        Ok(stmt
            .query_row(params![scope.client_id, scope.project_id, scope.region_id], |r| {
                Ok(Limits { security_groups: r.get(0)?, security_group_rules: r.get(1)? })
            })
            .optional()?)
    }

    fn set_quota(&mut self, scope: &Scope, limits: &Limits) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO quotas (client_id, project_id, region_id, security_group_count, security_group_rule_count)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (client_id, project_id, region_id) DO UPDATE
                 SET security_group_count = excluded.security_group_count, security_group_rule_count = excluded.security_group_rule_count",
            )?
            .execute(params![scope.client_id, scope.project_id, scope.region_id, limits.security_groups, limits.security_group_rules])?;
        Ok(())
    }

    fn insert_port(&mut self, port: &Port) -> StoreResult<()> {
        self.sqlite_insert_port(port)
    }

    fn update_port(&mut self, port: &Port) -> StoreResult<()> {
        self.sqlite_update_port(port)
    }

    fn set_port_groups(&mut self, port_id: Uuid, group_ids: &[Uuid]) -> StoreResult<()> {
        self.sqlite_set_port_groups(port_id, group_ids)
    }

    fn get_port(&mut self, client_id: Option<i64>, id: Uuid) -> StoreResult<Option<Port>> {
        self.sqlite_get_port(client_id, id)
    }

    fn list_ports(&mut self, client_id: Option<i64>, filter: &PortFilter) -> StoreResult<Vec<Port>> {
        self.sqlite_list_ports(client_id, filter)
    }

    fn delete_port(&mut self, client_id: Option<i64>, id: Uuid) -> StoreResult<bool> {
        self.sqlite_delete_port(client_id, id)
    }

    fn ports_in_groups(&mut self, group_ids: &[Uuid]) -> StoreResult<Vec<Port>> {
        self.sqlite_ports_in_groups(group_ids)
    }

    fn groups_by_ids(&mut self, ids: &[Uuid]) -> StoreResult<Vec<Group>> {
        self.sqlite_groups_by_ids(ids)
    }

    fn policy_revision(&mut self) -> StoreResult<i64> {
        self.sqlite_policy_revision()
    }

    fn lock_host(&mut self, _host: &str) -> StoreResult<()> {
        // Write transactions are BEGIN IMMEDIATE on one connection: already serialised.
        Ok(())
    }

    fn report_agent(&mut self, agent: &AgentRecord) -> StoreResult<()> {
        self.sqlite_report_agent(agent)
    }

    fn list_agents(&mut self) -> StoreResult<Vec<AgentRecord>> {
        self.sqlite_list_agents()
    }

    fn savepoint(&mut self) -> StoreResult<()> {
        Ok(self.conn.execute_batch("SAVEPOINT task")?)
    }

    fn release_savepoint(&mut self) -> StoreResult<()> {
        Ok(self.conn.execute_batch("RELEASE SAVEPOINT task")?)
    }

    fn rollback_to_savepoint(&mut self) -> StoreResult<()> {
        Ok(self.conn.execute_batch("ROLLBACK TO SAVEPOINT task; RELEASE SAVEPOINT task")?)
    }

    fn insert_task(&mut self, task: &TaskRecord) -> StoreResult<()> {
        self.conn
            .prepare_cached(&format!(
                "INSERT INTO tasks ({TASK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
            ))?
            .execute(params![
                task.id,
                task.client_id,
                task.user_id,
                task.project_id,
                task.region_id,
                task.task_type,
                task.state.as_str(),
                task.request_id,
                task.data.as_ref().map(Value::to_string),
                task.payload.to_string(),
                task.error,
                task.created_resources.as_ref().map(Value::to_string),
                task.created_on,
                task.updated_on,
                task.finished_on,
                task.acknowledged_at,
                task.acknowledged_by
            ])?;
        Ok(())
    }

    fn pending_tasks(&mut self, _now_ms: i64, limit: u32) -> StoreResult<Vec<TaskRecord>> {
        // One process owns an SQLite file, and claim, execution and completion share one
        // transaction, so every NEW or RUNNING task left here is ours to (re)run.
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE state IN ('NEW', 'RUNNING') ORDER BY rowid LIMIT ?1"))?;
        Ok(stmt.query_map([limit], task_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn update_task(&mut self, task: &TaskRecord) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE tasks SET state = ?2, error = ?3, created_resources = ?4, updated_on = ?5, finished_on = ?6,
                 acknowledged_at = ?7, acknowledged_by = ?8 WHERE id = ?1",
            )?
            .execute(params![
                task.id,
                task.state.as_str(),
                task.error,
                task.created_resources.as_ref().map(Value::to_string),
                task.updated_on,
                task.finished_on,
                task.acknowledged_at,
                task.acknowledged_by
            ])?;
        Ok(())
    }

    fn get_task(&mut self, client_id: i64, id: &str) -> StoreResult<Option<TaskRecord>> {
        let mut stmt = self.conn.prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1 AND client_id = ?2"))?;
        Ok(stmt.query_row(params![id, client_id], task_from_row).optional()?)
    }

    fn list_tasks(&mut self, client_id: i64, filter: &TaskFilter) -> StoreResult<(u64, Vec<TaskRecord>)> {
        let projects = serde_json::to_string(&filter.project_ids).expect("ints serialise");
        let regions = serde_json::to_string(&filter.region_ids).expect("ints serialise");
        let states = serde_json::to_string(&filter.states.iter().map(|s| s.as_str()).collect::<Vec<_>>()).expect("strings serialise");
        let condition = "client_id = ?1
            AND (json_array_length(?2) = 0 OR project_id IN (SELECT value FROM json_each(?2)))
            AND (json_array_length(?3) = 0 OR region_id IN (SELECT value FROM json_each(?3)))
            AND (json_array_length(?4) = 0 OR state IN (SELECT value FROM json_each(?4)))
            AND (?5 IS NULL OR task_type = ?5)
            AND (?6 IS NULL OR (acknowledged_at IS NOT NULL) = ?6)
            AND (?7 IS NULL OR created_on >= ?7)
            AND (?8 IS NULL OR created_on <= ?8)";
        let args = params![client_id, projects, regions, states, filter.task_type, filter.is_acknowledged, filter.from_ms, filter.to_ms];
        let count: i64 =
            self.conn.prepare_cached(&format!("SELECT COUNT(*) FROM tasks WHERE {condition}"))?.query_row(args, |r| r.get(0))?;
        let order = if filter.ascending { "ASC" } else { "DESC" };
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE {condition} ORDER BY created_on {order}, rowid {order} LIMIT ?9 OFFSET ?10"
        ))?;
        let tasks = stmt
            .query_map(
                params![
                    client_id,
                    projects,
                    regions,
                    states,
                    filter.task_type,
                    filter.is_acknowledged,
                    filter.from_ms,
                    filter.to_ms,
                    filter.limit,
                    filter.offset as i64
                ],
                task_from_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((count as u64, tasks))
    }

    fn acknowledge_tasks(&mut self, client_id: i64, scope: &AckFilter, user_id: i64, now_ms: i64) -> StoreResult<u64> {
        let ids = scope.task_ids.as_ref().map(|ids| serde_json::to_string(ids).expect("strings serialise"));
        let changed = self
            .conn
            .prepare_cached(
                "UPDATE tasks SET acknowledged_at = ?5, acknowledged_by = ?6
                 WHERE client_id = ?1 AND acknowledged_at IS NULL
                 AND (?2 IS NULL OR project_id = ?2) AND (?3 IS NULL OR region_id = ?3)
                 AND (?4 IS NULL OR id IN (SELECT value FROM json_each(?4)))",
            )?
            .execute(params![client_id, scope.project_id, scope.region_id, ids, now_ms, user_id])?;
        Ok(changed as u64)
    }

    fn count_open_tasks(&mut self, client_id: i64) -> StoreResult<u64> {
        let mut stmt = self.conn.prepare_cached("SELECT COUNT(*) FROM tasks WHERE client_id = ?1 AND state IN ('NEW', 'RUNNING')")?;
        Ok(stmt.query_row([client_id], |r| r.get::<_, i64>(0))? as u64)
    }

    fn prune_tasks(&mut self, finished_before_ms: i64, acknowledged_before_ms: i64, limit: u32) -> StoreResult<u64> {
        let deleted = self
            .conn
            .prepare_cached(
                "DELETE FROM tasks WHERE rowid IN (SELECT rowid FROM tasks WHERE finished_on IS NOT NULL
                 AND (finished_on < ?1 OR (acknowledged_at IS NOT NULL AND finished_on < ?2)) ORDER BY finished_on LIMIT ?3)",
            )?
            .execute(params![finished_before_ms, acknowledged_before_ms, limit])?;
        Ok(deleted as u64)
    }

    fn insert_key(&mut self, key: &NewApiKey) -> StoreResult<i64> {
        let projects = key.projects.as_ref().map(|p| serde_json::to_string(p).expect("ints serialise"));
        self.conn
            .prepare_cached(
                "INSERT INTO api_keys (token_hash, client_id, user_id, projects, name, created_at, role, host)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?
            .execute(params![
                key.token_hash,
                key.client_id,
                key.user_id,
                projects,
                key.name,
                key.created_at,
                key.role.as_str(),
                key.host
            ])?;
        Ok(self.conn.last_insert_rowid())
    }

    fn find_key(&mut self, token_hash: &str) -> StoreResult<Option<ApiKey>> {
        let mut stmt = self.conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE token_hash = ?1"))?;
        Ok(stmt.query_row([token_hash], key_from_row).optional()?)
    }

    fn list_keys(&mut self) -> StoreResult<Vec<ApiKey>> {
        let mut stmt = self.conn.prepare_cached(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id"))?;
        Ok(stmt.query_map([], key_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn revoke_key(&mut self, id: i64, now_ms: i64) -> StoreResult<bool> {
        let changed = self
            .conn
            .prepare_cached("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")?
            .execute(params![id, now_ms])?;
        Ok(changed > 0)
    }

    fn insert_audit(&mut self, event: &crate::AuditEvent) -> StoreResult<()> {
        self.sqlite_insert_audit(event)
    }

    fn list_audit(&mut self, filter: &crate::AuditFilter) -> StoreResult<(u64, Vec<crate::AuditEvent>)> {
        self.sqlite_list_audit(filter)
    }

    fn prune_audit(&mut self, before_ms: i64, limit: u32) -> StoreResult<u64> {
        self.sqlite_prune_audit(before_ms, limit)
    }

    fn export_groups(&mut self, after: i64, limit: u32) -> StoreResult<Vec<(i64, Group)>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT rowid, {GROUP_COLUMNS} FROM security_groups WHERE rowid > ?1 ORDER BY rowid LIMIT ?2"))?;
        let mut rows = stmt.query(params![after, limit])?;
        let mut positions = Vec::new();
        let mut groups = Vec::new();
        while let Some(row) = rows.next()? {
            positions.push(row.get::<_, i64>(0)?);
            groups.push(Group {
                id: parse_uuid(row.get(1)?)?,
                scope: Scope { client_id: row.get(2)?, project_id: row.get(3)?, region_id: row.get(4)? },
                name: row.get(5)?,
                description: row.get(6)?,
                created_at: row.get(7)?,
                updated_at: row.get(8)?,
                revision_number: row.get(9)?,
                rules: Vec::new(),
                tags: Vec::new(),
            });
        }
        drop(rows);
        self.attach_children(&mut groups)?;
        Ok(positions.into_iter().zip(groups).collect())
    }

    fn export_tasks(&mut self, after: i64, limit: u32) -> StoreResult<Vec<(i64, TaskRecord)>> {
        let mut stmt =
            self.conn.prepare_cached(&format!("SELECT {TASK_COLUMNS}, rowid FROM tasks WHERE rowid > ?1 ORDER BY rowid LIMIT ?2"))?;
        let rows = stmt.query_map(params![after, limit], |row| Ok((row.get::<_, i64>(17)?, task_from_row(row)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn export_keys(&mut self) -> StoreResult<Vec<(ApiKey, String)>> {
        let mut stmt = self.conn.prepare_cached(&format!("SELECT {KEY_COLUMNS}, token_hash FROM api_keys ORDER BY id"))?;
        let rows = stmt.query_map([], |row| Ok((key_from_row(row)?, row.get::<_, String>(9)?)))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn export_quotas(&mut self) -> StoreResult<Vec<(Scope, Limits)>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT client_id, project_id, region_id, security_group_count, security_group_rule_count FROM quotas
             ORDER BY client_id, project_id, region_id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                Scope { client_id: r.get(0)?, project_id: r.get(1)?, region_id: r.get(2)? },
                Limits { security_groups: r.get(3)?, security_group_rules: r.get(4)? },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    fn raise_policy_revision(&mut self, revision: i64) -> StoreResult<()> {
        self.conn.prepare_cached("UPDATE policy_revision SET revision = MAX(revision, ?1) WHERE id = 1")?.execute([revision])?;
        Ok(())
    }

    fn import_key(&mut self, key: &ApiKey, token_hash: &str) -> StoreResult<()> {
        let projects = key.projects.as_ref().map(|p| serde_json::to_string(p).expect("ints serialise"));
        self.conn
            .prepare_cached(
                "INSERT INTO api_keys (id, token_hash, client_id, user_id, projects, name, created_at, revoked_at, role, host)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(params![
                key.id,
                token_hash,
                key.client_id,
                key.user_id,
                projects,
                key.name,
                key.created_at,
                key.revoked_at,
                key.role.as_str(),
                key.host
            ])?;
        Ok(())
    }
}
