//! The shared store for several nodes: PostgreSQL through the synchronous `postgres` client.
//!
//! The store is called from blocking threads (the API and the worker use `spawn_blocking`), never
//! from an async worker thread: the sync client runs its own small runtime per connection.
//!
//! How several nodes stay correct:
//! - Write transactions run at READ COMMITTED. [`Tx::get_group`] inside one locks the group row
//!   (`FOR NO KEY UPDATE`), so two nodes changing one group serialise and every change sees the
//!   one before it: no lost update, and `revision_number` only grows. [`Tx::group_exists`] takes
//!   `FOR KEY SHARE` (the group may not be deleted underneath a rule that names it), and deleting
//!   a group locks it `FOR UPDATE` before looking for rules that reference it.
//! - [`Tx::pending_tasks`] claims with `FOR UPDATE SKIP LOCKED`. The worker claims, applies and
//!   finishes a task in one transaction, so the row lock is the lease: a task is held exactly as
//!   long as the transaction of the node running it. When that node dies its connection drops,
//!   PostgreSQL rolls the transaction back and the task is NEW again for any other node. A hung
//!   node is cut off by `idle_in_transaction_session_timeout`, `statement_timeout` and TCP
//!   keepalives (set per session unless the role or database already sets them).
//! - [`Tx::insert_task`] issues `NOTIFY palisade_tasks`, delivered at commit; every node runs a
//!   listener ([`PgStore::spawn_task_listener`]) that wakes its worker.
//! - Connection-level failures are [`StoreError::Unavailable`] (the API answers 503, `/readyz`
//!   reports not ready); the broken connection is dropped and a new one is opened on next use,
//!   so a node recovers by itself when the database returns.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use palisade_core::group::{Group, Scope};
use palisade_core::port::Port;
use palisade_core::quota::{Limits, Usage};
use palisade_core::{Cidr, Direction, Ethertype, Protocol, Rule, RuleSpec, Tag};
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};
use serde_json::Value;
use uuid::Uuid;

mod audit;
mod ports;

use crate::{
    AckFilter, AgentRecord, ApiKey, GroupFilter, KEY_COLUMNS, KeyRole, NewApiKey, PortFilter, Store, StoreError, StoreResult, TaskFilter,
    TaskRecord, TaskState, Tx, now_ms,
};

const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../migrations/postgres/0001_init.sql")),
    (2, include_str!("../../../migrations/postgres/0002_ports.sql")),
    (3, include_str!("../../../migrations/postgres/0003_quotas.sql")),
    (4, include_str!("../../../migrations/postgres/0004_roles.sql")),
    (5, include_str!("../../../migrations/postgres/0005_audit.sql")),
    (6, include_str!("../../../migrations/postgres/0006_task_retention.sql")),
];

/// The advisory lock held while migrating, so nodes starting together apply migrations once.
const MIGRATION_LOCK: i64 = 0x7061_6c69_7361_6465; // "palisade"

/// The channel `insert_task` notifies and the listeners listen on.
pub const TASK_CHANNEL: &str = "palisade_tasks";

/// Connections per node unless the URL says `pool_max_size=N`.
const DEFAULT_POOL_SIZE: usize = 16;
/// How long a caller waits for a free connection before the store reports itself unavailable.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// Session settings applied on connect, each only when the server, role and database leave it
/// at its default (so an operator's `ALTER ROLE ... SET` wins).
const SESSION_DEFAULTS: &[(&str, &str, &str)] = &[
    // (setting, its built-in default, ours)
    ("statement_timeout", "0", "30s"),
    ("idle_in_transaction_session_timeout", "0", "60s"),
    ("tcp_keepalives_idle", "0", "30"),
    ("tcp_keepalives_interval", "0", "10"),
    ("tcp_keepalives_count", "0", "3"),
];

/// Whether `url` names a PostgreSQL database.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// `url` with its database name replaced by `name` (query parameters kept).
pub fn database_url(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_start = base.find("://").map(|i| i + 3).unwrap_or(0);
    let without_db = match base[authority_start..].find('/') {
        Some(i) => &base[..authority_start + i],
        None => base,
    };
    match query {
        Some(query) => format!("{without_db}/{name}?{query}"),
        None => format!("{without_db}/{name}"),
    }
}

/// Creates the empty database `name` through the server of `admin_url` (for tests and tools);
/// returns the new database's URL.
pub fn create_database(admin_url: &str, name: &str) -> StoreResult<String> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Internal(format!("refusing the database name {name:?}")));
    }
    let (config, _) = parse_url(admin_url)?;
    let mut client = config.connect(NoTls).map_err(map_error)?;
    client.batch_execute(&format!("CREATE DATABASE {name}")).map_err(map_error)?;
    Ok(database_url(admin_url, name))
}

/// Drops the database `name` (if it exists), ending its sessions first.
pub fn drop_database(admin_url: &str, name: &str) -> StoreResult<()> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Internal(format!("refusing the database name {name:?}")));
    }
    let (config, _) = parse_url(admin_url)?;
    let mut client = config.connect(NoTls).map_err(map_error)?;
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).map_err(map_error)
}

struct PgConn {
    client: Client,
    /// Prepared statements of this connection, by SQL text.
    statements: HashMap<String, Statement>,
}

struct PoolState {
    idle: Vec<PgConn>,
    /// Connections that exist: idle plus checked out.
    open: usize,
}

struct Pool {
    config: postgres::Config,
    max: usize,
    state: Mutex<PoolState>,
    available: Condvar,
}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.state.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner()).idle);
        // Closing a sync client blocks on its private runtime, which panics on a thread that is
        // driving async tasks (the last `Arc<Database>` may well drop there): close them elsewhere.
        if !idle.is_empty() && tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::spawn(move || drop(idle)).join();
        }
    }
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn get(&self) -> StoreResult<PgConn> {
        let deadline = Instant::now() + POOL_WAIT;
        let mut state = self.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                if conn.client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(conn);
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match connect(&self.config) {
                    Ok(conn) => Ok(conn),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.available.notify_one();
                        Err(e)
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Unavailable(format!("all {} database connections are busy", self.max)));
            }
            state = self.available.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    fn put(&self, conn: PgConn) {
        self.lock().idle.push(conn);
        self.available.notify_one();
    }

    /// Forgets a checked-out connection that is broken or in an unknown state.
    fn discard(&self, conn: PgConn) {
        drop(conn);
        self.lock().open -= 1;
        self.available.notify_one();
    }

    /// Drops every idle connection: after one connection failed, the others are likely stale too.
    fn discard_idle(&self) {
        let idle = {
            let mut state = self.lock();
            let idle = std::mem::take(&mut state.idle);
            state.open -= idle.len();
            idle
        };
        drop(idle);
        self.available.notify_all();
    }
}

fn connect(config: &postgres::Config) -> StoreResult<PgConn> {
    // Whatever keeps us from connecting (server down, database not accepting connections or
    // gone, too many clients) means the store is unavailable until it is fixed: 503, not 500.
    let mut client = config.connect(NoTls).map_err(|e| match map_error(e) {
        StoreError::Internal(text) => StoreError::Unavailable(text),
        unavailable => unavailable,
    })?;
    let mut statements = String::new();
    for (name, default, ours) in SESSION_DEFAULTS {
        statements.push_str(&format!("SELECT set_config('{name}', '{ours}', false) WHERE current_setting('{name}') = '{default}';"));
    }
    client.batch_execute(&statements).map_err(map_error)?;
    Ok(PgConn { client, statements: HashMap::new() })
}

/// Whether an error means the connection (or the server) is gone rather than that a statement failed.
fn is_connection_error(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        // 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now.
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    let text = e.to_string();
    [
        "error communicating with the server",
        "error connecting to server",
        "timeout waiting for server",
        "unexpected message from server",
        "error parsing response from server",
    ]
    .iter()
    .any(|prefix| text.starts_with(prefix))
}

fn map_error(e: postgres::Error) -> StoreError {
    let text = match e.as_db_error() {
        Some(db) => format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code()),
        None => match std::error::Error::source(&e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    };
    if is_connection_error(&e) {
        return StoreError::Unavailable(text);
    }
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        // Too many connections, out of resources, serialisation failure, deadlock, lock or
        // statement timeout, operator intervention: transient, so retry later (503).
        return if code.starts_with("53") || code.starts_with("57") || matches!(code, "40001" | "40P01" | "55P03") {
            StoreError::Unavailable(text)
        } else {
            StoreError::Internal(text)
        };
    }
    StoreError::Internal(e.to_string())
}

pub struct PgStore {
    pool: Arc<Pool>,
}

/// Splits our own `pool_max_size` parameter off a URL; the rest goes to the driver.
fn parse_url(url: &str) -> StoreResult<(postgres::Config, usize)> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut pool_size = DEFAULT_POOL_SIZE;
    let mut rest = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("pool_max_size", value)) => {
                pool_size = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| StoreError::Internal(format!("pool_max_size must be a positive integer, not {value:?}")))?;
            }
            _ => rest.push(pair),
        }
    }
    let url = if rest.is_empty() { base.to_string() } else { format!("{base}?{}", rest.join("&")) };
    let mut config = postgres::Config::from_str(&url).map_err(|e| StoreError::Internal(format!("invalid PostgreSQL URL: {e}")))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(Duration::from_secs(5));
    }
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(30));
    }
    if config.get_application_name().is_none() {
        config.application_name("palisade");
    }
    config.keepalives(true).keepalives_idle(Duration::from_secs(30));
    Ok((config, pool_size))
}

impl PgStore {
    /// Connects and applies pending migrations (under an advisory lock).
    pub fn open(url: &str) -> StoreResult<PgStore> {
        PgStore::open_with(url, true)
    }

    /// Connects; with `migrate`, applies pending migrations, otherwise checks that the schema is current.
    pub fn open_with(url: &str, migrate: bool) -> StoreResult<PgStore> {
        let (config, max) = parse_url(url)?;
        let pool = Arc::new(Pool { config, max, state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }), available: Condvar::new() });
        let mut conn = pool.get()?;
        let result = if migrate { apply_migrations(&mut conn.client) } else { check_schema(&mut conn.client) };
        match result {
            Ok(()) => pool.put(conn),
            Err(e) => {
                pool.discard(conn);
                return Err(e);
            }
        }
        Ok(PgStore { pool })
    }

    /// Runs `f` in a transaction opened with `begin`. A connection whose `BEGIN` fails because it
    /// went stale (the server restarted) is replaced once, so recovery costs no failed request.
    fn run<R, E: From<StoreError>>(&self, begin: &str, write: bool, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        let mut conn = self.pool.get()?;
        if let Err(e) = conn.client.batch_execute(begin) {
            let stale = is_connection_error(&e);
            self.pool.discard(conn);
            if !stale {
                return Err(map_error(e).into());
            }
            self.pool.discard_idle();
            conn = self.pool.get()?;
            if let Err(e) = conn.client.batch_execute(begin) {
                self.pool.discard(conn);
                return Err(map_error(e).into());
            }
        }
        let PgConn { client, statements } = &mut conn;
        let mut tx = PgTx { client, statements, write, notified: false, broken: false, failed: false };
        // A panic in `f` leaves the connection mid-transaction: it must not go back to the pool.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut tx)));
        let (broken, failed) = (tx.broken, tx.failed);
        let result = match outcome {
            // PostgreSQL turns the COMMIT of a transaction in which a statement failed into a
            // ROLLBACK without an error: never report success for it, even if `f` swallowed
            // the error.
            Ok(Ok(_)) if failed => Err(StoreError::Internal("a statement of the transaction failed; it was rolled back".into()).into()),
            Ok(result) => result,
            Err(panic) => {
                self.pool.discard(conn);
                std::panic::resume_unwind(panic);
            }
        };
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        match conn.client.batch_execute(end) {
            Ok(()) if !broken => {
                self.pool.put(conn);
                result
            }
            Ok(()) => {
                self.pool.discard(conn);
                result
            }
            Err(e) => {
                let stale = is_connection_error(&e);
                self.pool.discard(conn);
                if stale {
                    self.pool.discard_idle();
                }
                match result {
                    // A failed COMMIT: the outcome is unknown to us, and the caller must hear of it.
                    Ok(_) => Err(map_error(e).into()),
                    Err(original) => Err(original),
                }
            }
        }
    }

    /// Starts a thread that LISTENs on [`TASK_CHANNEL`] with its own connection and calls
    /// `wake.notify_one()` on every notification (and after every reconnect, to catch up on
    /// anything missed). It reconnects with backoff, and ends when `wake` is dropped elsewhere.
    pub fn spawn_task_listener(&self, wake: Arc<tokio::sync::Notify>) {
        let config = self.pool.config.clone();
        let wake = Arc::downgrade(&wake);
        let spawned = std::thread::Builder::new().name("palisade-pg-listen".into()).spawn(move || listen_loop(config, wake));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the PostgreSQL task listener; tasks of other nodes are found by polling");
        }
    }
}

fn listen_loop(config: postgres::Config, wake: Weak<tokio::sync::Notify>) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if wake.strong_count() == 0 {
            return;
        }
        let started = Instant::now();
        match listen_once(&config, &wake) {
            Ok(()) => return,
            Err(e) => {
                if started.elapsed() > Duration::from_secs(30) {
                    // It had been working: a fresh outage starts with a short wait again.
                    backoff = Duration::from_millis(100);
                }
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "task listener lost its connection");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One listening connection's life; `Ok` when `wake` is gone, `Err` when the connection failed.
fn listen_once(config: &postgres::Config, wake: &Weak<tokio::sync::Notify>) -> Result<(), postgres::Error> {
    let mut client = config.connect(NoTls)?;
    client.batch_execute(&format!("LISTEN {TASK_CHANNEL}"))?;
    tracing::debug!("listening for tasks of other nodes");
    // Work may have been queued while we were not listening.
    match wake.upgrade() {
        Some(wake) => wake.notify_one(),
        None => return Ok(()),
    }
    loop {
        let got = {
            use postgres::fallible_iterator::FallibleIterator;
            let mut notifications = client.notifications();
            let first = notifications.timeout_iter(Duration::from_secs(15)).next()?.is_some();
            // Whatever else has arrived already is covered by the same wake-up.
            while notifications.iter().next()?.is_some() {}
            first
        };
        let Some(wake) = wake.upgrade() else { return Ok(()) };
        if got {
            wake.notify_one();
        } else {
            // Quiet for a while (or the server went away): make sure the connection still works.
            client.batch_execute("SELECT 1")?;
        }
    }
}

struct PgTx<'a> {
    client: &'a mut Client,
    statements: &'a mut HashMap<String, Statement>,
    write: bool,
    /// NOTIFY already issued in this transaction.
    notified: bool,
    /// A connection-level error happened: the connection must not be reused.
    broken: bool,
    /// A statement failed (the transaction is aborted) and no savepoint rollback undid it.
    failed: bool,
}

fn id_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

fn bad_value(what: &str, text: &str) -> StoreError {
    StoreError::Internal(format!("stored {what} {text:?} is not valid"))
}

fn parse_uuid(text: &str) -> StoreResult<Uuid> {
    Uuid::try_parse(text).map_err(|_| bad_value("id", text))
}

fn get<'r, T: postgres::types::FromSql<'r>>(row: &'r Row, idx: usize) -> StoreResult<T> {
    row.try_get(idx).map_err(map_error)
}

const GROUP_COLUMNS: &str = "id, client_id, project_id, region_id, name, description, created_at, updated_at, revision_number";
const RULE_COLUMNS: &str = "id, group_id, direction, ethertype, protocol, port_range_min, port_range_max, remote_ip_prefix, remote_group_id, description, created_at";
const TASK_COLUMNS: &str = "id, client_id, user_id, project_id, region_id, task_type, state, request_id, data, payload, error, created_resources, created_on, updated_on, finished_on, acknowledged_at, acknowledged_by";

/// Columns from `start` on: a group row.
fn group_from_row(row: &Row, start: usize) -> StoreResult<Group> {
    let id: String = get(row, start)?;
    Ok(Group {
        id: parse_uuid(&id)?,
        scope: Scope { client_id: get(row, start + 1)?, project_id: get(row, start + 2)?, region_id: get(row, start + 3)? },
        name: get(row, start + 4)?,
        description: get(row, start + 5)?,
        created_at: get(row, start + 6)?,
        updated_at: get(row, start + 7)?,
        revision_number: get(row, start + 8)?,
        rules: Vec::new(),
        tags: Vec::new(),
    })
}

fn port(value: Option<i32>) -> StoreResult<Option<u16>> {
    value.map(|v| u16::try_from(v).map_err(|_| bad_value("port", &v.to_string()))).transpose()
}

fn rule_from_row(row: &Row) -> StoreResult<Rule> {
    let id: String = get(row, 0)?;
    let group_id: String = get(row, 1)?;
    let direction: String = get(row, 2)?;
    let ethertype: String = get(row, 3)?;
    let protocol: Option<String> = get(row, 4)?;
    let prefix: Option<String> = get(row, 7)?;
    let remote_group: Option<String> = get(row, 8)?;
    Ok(Rule {
        id: parse_uuid(&id)?,
        group_id: parse_uuid(&group_id)?,
        spec: RuleSpec {
            direction: Direction::parse(&direction).ok_or_else(|| bad_value("direction", &direction))?,
            ethertype: Ethertype::parse(&ethertype).ok_or_else(|| bad_value("ethertype", &ethertype))?,
            protocol: match protocol {
                None => None,
                Some(p) => Some(Protocol::from_name(&p).ok_or_else(|| bad_value("protocol", &p))?),
            },
            port_range_min: port(get(row, 5)?)?,
            port_range_max: port(get(row, 6)?)?,
            remote_ip_prefix: match prefix {
                None => None,
                Some(p) => Some(Cidr::from_str(&p).map_err(|_| bad_value("remote_ip_prefix", &p))?),
            },
            remote_group_id: remote_group.as_deref().map(parse_uuid).transpose()?,
            description: get(row, 9)?,
        },
        created_at: get(row, 10)?,
    })
}

fn json_column(text: Option<String>) -> StoreResult<Option<Value>> {
    text.map(|t| serde_json::from_str(&t).map_err(|_| bad_value("json", &t))).transpose()
}

/// Columns from `start` on: a task row.
fn task_from_row(row: &Row, start: usize) -> StoreResult<TaskRecord> {
    let state: String = get(row, start + 6)?;
    Ok(TaskRecord {
        id: get(row, start)?,
        client_id: get(row, start + 1)?,
        user_id: get(row, start + 2)?,
        project_id: get(row, start + 3)?,
        region_id: get(row, start + 4)?,
        task_type: get(row, start + 5)?,
        state: TaskState::parse(&state).ok_or_else(|| bad_value("task state", &state))?,
        request_id: get(row, start + 7)?,
        data: json_column(get(row, start + 8)?)?,
        payload: json_column(get(row, start + 9)?)?.unwrap_or(Value::Null),
        error: get(row, start + 10)?,
        created_resources: json_column(get(row, start + 11)?)?,
        created_on: get(row, start + 12)?,
        updated_on: get(row, start + 13)?,
        finished_on: get(row, start + 14)?,
        acknowledged_at: get(row, start + 15)?,
        acknowledged_by: get(row, start + 16)?,
    })
}

fn key_from_row(row: &Row) -> StoreResult<ApiKey> {
    let projects: Option<String> = get(row, 4)?;
    let role: String = get(row, 7)?;
    Ok(ApiKey {
        id: get(row, 0)?,
        role: KeyRole::parse(&role).ok_or_else(|| bad_value("role", &role))?,
        host: get(row, 8)?,
        client_id: get(row, 1)?,
        user_id: get(row, 2)?,
        name: get(row, 3)?,
        projects: projects.map(|p| serde_json::from_str(&p).map_err(|_| bad_value("projects", &p))).transpose()?,
        created_at: get(row, 5)?,
        revoked_at: get(row, 6)?,
    })
}

fn json_text(value: &Option<Value>) -> Option<String> {
    value.as_ref().map(Value::to_string)
}

impl PgTx<'_> {
    fn fail(&mut self, e: postgres::Error) -> StoreError {
        if is_connection_error(&e) {
            self.broken = true;
        }
        self.failed = true;
        map_error(e)
    }

    fn statement(&mut self, sql: &str) -> StoreResult<Statement> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql).map_err(|e| self.fail(e))?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<Row>> {
        let statement = self.statement(sql)?;
        self.client.query(&statement, params).map_err(|e| self.fail(e))
    }

    fn query_opt(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Option<Row>> {
        let statement = self.statement(sql)?;
        self.client.query_opt(&statement, params).map_err(|e| self.fail(e))
    }

    fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Row> {
        let statement = self.statement(sql)?;
        self.client.query_one(&statement, params).map_err(|e| self.fail(e))
    }

    fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<u64> {
        let statement = self.statement(sql)?;
        self.client.execute(&statement, params).map_err(|e| self.fail(e))
    }

    fn batch(&mut self, sql: &str) -> StoreResult<()> {
        self.client.batch_execute(sql).map_err(|e| self.fail(e))
    }

    /// Fills in rules and tags of `groups` with one query each (no N+1).
    fn attach_children(&mut self, groups: &mut [Group]) -> StoreResult<()> {
        if groups.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = groups.iter().map(|g| id_text(g.id)).collect();
        let index: HashMap<Uuid, usize> = groups.iter().enumerate().map(|(i, g)| (g.id, i)).collect();
        let rows =
            self.query(&format!("SELECT {RULE_COLUMNS} FROM security_group_rules WHERE group_id = ANY($1::text[]) ORDER BY seq"), &[&ids])?;
        for row in &rows {
            let rule = rule_from_row(row)?;
            if let Some(&i) = index.get(&rule.group_id) {
                groups[i].rules.push(rule);
            }
        }
        let rows = self.query(
            "SELECT group_id, key, value, read_only FROM security_group_tags WHERE group_id = ANY($1::text[]) ORDER BY group_id, key",
            &[&ids],
        )?;
        for row in &rows {
            let group_id: String = get(row, 0)?;
            if let Some(&i) = index.get(&parse_uuid(&group_id)?) {
                groups[i].tags.push(Tag { key: get(row, 1)?, value: get(row, 2)?, read_only: get(row, 3)? });
            }
        }
        Ok(())
    }
}

impl Store for PgStore {
    fn read<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        self.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", false, f)
    }

    fn write<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        self.run("BEGIN ISOLATION LEVEL READ COMMITTED", true, f)
    }

    fn ping(&self) -> StoreResult<()> {
        self.read(|_| Ok::<_, StoreError>(()))
    }
}

fn apply_migrations(client: &mut Client) -> StoreResult<()> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).map_err(map_error)?;
    let result = (|| -> StoreResult<()> {
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
            .map_err(map_error)?;
        for (version, sql) in MIGRATIONS {
            let applied: bool = client
                .query_one("SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = $1)", &[version])
                .map_err(map_error)?
                .get(0);
            if applied {
                continue;
            }
            let mut tx = client.transaction().map_err(map_error)?;
            tx.batch_execute(sql).map_err(map_error)?;
            tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)", &[version, &now_ms()]).map_err(map_error)?;
            tx.commit().map_err(map_error)?;
            tracing::info!(version, "applied postgres migration");
        }
        Ok(())
    })();
    let unlocked = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).map_err(map_error);
    result.and(unlocked.map(|_| ()))
}

fn check_schema(client: &mut Client) -> StoreResult<()> {
    let exists: bool = client.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[]).map_err(map_error)?.get(0);
    let applied: Vec<i64> = if exists {
        client.query("SELECT version FROM schema_migrations", &[]).map_err(map_error)?.iter().map(|row| row.get(0)).collect()
    } else {
        Vec::new()
    };
    let missing: Vec<String> = MIGRATIONS.iter().filter(|(v, _)| !applied.contains(v)).map(|(v, _)| v.to_string()).collect();
    if !missing.is_empty() {
        return Err(StoreError::Internal(format!(
            "the database schema lacks migration(s) {} that this build needs: run `palisade migrate`",
            missing.join(", ")
        )));
    }
    Ok(())
}

impl Tx for PgTx<'_> {
    fn get_group(&mut self, scope: &Scope, id: Uuid) -> StoreResult<Option<Group>> {
        // In a write transaction the row is locked until commit: whoever changes a group has
        // read its latest committed state, and the next writer waits for this one.
        let lock = if self.write { " FOR NO KEY UPDATE" } else { "" };
        let row = self.query_opt(
            &format!(
                "SELECT {GROUP_COLUMNS} FROM security_groups WHERE id = $1 AND client_id = $2 AND project_id = $3 AND region_id = $4{lock}"
            ),
            &[&id_text(id), &scope.client_id, &scope.project_id, &scope.region_id],
        )?;
        let Some(row) = row else { return Ok(None) };
        let mut groups = [group_from_row(&row, 0)?];
        self.attach_children(&mut groups)?;
        let [group] = groups;
        Ok(Some(group))
    }

    fn group_exists(&mut self, scope: &Scope, id: Uuid) -> StoreResult<bool> {
        // In a write transaction, keep the group from being deleted until commit (a rule may be
        // about to name it); KEY SHARE does not block other changes of the group.
        let lock = if self.write { " FOR KEY SHARE" } else { "" };
        let row = self.query_opt(
            &format!("SELECT 1 FROM security_groups WHERE id = $1 AND client_id = $2 AND project_id = $3 AND region_id = $4{lock}"),
            &[&id_text(id), &scope.client_id, &scope.project_id, &scope.region_id],
        )?;
        Ok(row.is_some())
    }

    fn list_groups(&mut self, scope: &Scope, filter: &GroupFilter) -> StoreResult<(u64, Vec<Group>)> {
        let columns = GROUP_COLUMNS.split(", ").map(|c| format!("g.{c}")).collect::<Vec<_>>().join(", ");
        let limit = i64::from(filter.limit);
        let offset = i64::try_from(filter.offset).unwrap_or(i64::MAX);
        let base = "g.client_id = $1 AND g.project_id = $2 AND g.region_id = $3 AND ($4::text IS NULL OR g.name = $4)";
        if filter.tag_keys.is_empty() && filter.tag_pairs.is_empty() {
            // No tag filter: no per-row subqueries, and without a name the count is the
            // trigger-kept usage row.
            let count = match filter.name {
                None => self.usage(scope)?.security_groups,
                Some(_) => {
                    let row = self.query_one(
                        &format!("SELECT COUNT(*) FROM security_groups g WHERE {base}"),
                        &[&scope.client_id, &scope.project_id, &scope.region_id, &filter.name],
                    )?;
                    get::<i64>(&row, 0)? as u64
                }
            };
            let rows = self.query(
                &format!("SELECT {columns} FROM security_groups g WHERE {base} ORDER BY g.seq LIMIT $5 OFFSET $6"),
                &[&scope.client_id, &scope.project_id, &scope.region_id, &filter.name, &limit, &offset],
            )?;
            let mut groups = rows.iter().map(|row| group_from_row(row, 0)).collect::<StoreResult<Vec<_>>>()?;
            self.attach_children(&mut groups)?;
            return Ok((count, groups));
        }
        let condition = format!(
            "{base}
            AND NOT EXISTS (SELECT 1 FROM unnest($5::text[]) AS k(key) WHERE NOT EXISTS
                (SELECT 1 FROM security_group_tags t WHERE t.group_id = g.id AND t.key = k.key))
            AND NOT EXISTS (SELECT 1 FROM unnest($6::text[], $7::text[]) AS p(key, value) WHERE NOT EXISTS
                (SELECT 1 FROM security_group_tags t WHERE t.group_id = g.id AND t.key = p.key AND t.value = p.value))"
        );
        let pair_keys: Vec<&str> = filter.tag_pairs.iter().map(|(k, _)| k.as_str()).collect();
        let pair_values: Vec<&str> = filter.tag_pairs.iter().map(|(_, v)| v.as_str()).collect();
        let count: i64 = get(
            &self.query_one(
                &format!("SELECT COUNT(*) FROM security_groups g WHERE {condition}"),
                &[&scope.client_id, &scope.project_id, &scope.region_id, &filter.name, &filter.tag_keys, &pair_keys, &pair_values],
            )?,
            0,
        )?;
        let rows = self.query(
            &format!("SELECT {columns} FROM security_groups g WHERE {condition} ORDER BY g.seq LIMIT $8 OFFSET $9"),
            &[
                &scope.client_id,
                &scope.project_id,
                &scope.region_id,
                &filter.name,
                &filter.tag_keys,
                &pair_keys,
                &pair_values,
                &limit,
                &offset,
            ],
        )?;
        let mut groups = rows.iter().map(|row| group_from_row(row, 0)).collect::<StoreResult<Vec<_>>>()?;
        self.attach_children(&mut groups)?;
        Ok((count as u64, groups))
    }

    fn insert_group(&mut self, group: &Group) -> StoreResult<()> {
        self.execute(
            &format!("INSERT INTO security_groups ({GROUP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
            &[
                &id_text(group.id),
                &group.scope.client_id,
                &group.scope.project_id,
                &group.scope.region_id,
                &group.name,
                &group.description,
                &group.created_at,
                &group.updated_at,
                &group.revision_number,
            ],
        )?;
        for rule in &group.rules {
            self.insert_rule(rule)?;
        }
        self.replace_tags(group.id, &group.tags)
    }

    fn update_group(&mut self, group: &Group) -> StoreResult<()> {
        self.execute(
            "UPDATE security_groups SET name = $2, description = $3, updated_at = $4, revision_number = $5 WHERE id = $1",
            &[&id_text(group.id), &group.name, &group.description, &group.updated_at, &group.revision_number],
        )?;
        Ok(())
    }

    fn delete_group(&mut self, scope: &Scope, id: Uuid) -> StoreResult<bool> {
        let deleted = self.execute(
            "DELETE FROM security_groups WHERE id = $1 AND client_id = $2 AND project_id = $3 AND region_id = $4",
            &[&id_text(id), &scope.client_id, &scope.project_id, &scope.region_id],
        )?;
        Ok(deleted > 0)
    }

    fn replace_tags(&mut self, group_id: Uuid, tags: &[Tag]) -> StoreResult<()> {
        let id = id_text(group_id);
        self.execute("DELETE FROM security_group_tags WHERE group_id = $1", &[&id])?;
        for tag in tags {
            self.execute(
                "INSERT INTO security_group_tags (group_id, key, value, read_only) VALUES ($1, $2, $3, $4)",
                &[&id, &tag.key, &tag.value, &tag.read_only],
            )?;
        }
        Ok(())
    }

    fn insert_rule(&mut self, rule: &Rule) -> StoreResult<()> {
        let spec = &rule.spec;
        self.execute(
            &format!("INSERT INTO security_group_rules ({RULE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"),
            &[
                &id_text(rule.id),
                &id_text(rule.group_id),
                &spec.direction.as_str(),
                &spec.ethertype.as_str(),
                &spec.protocol.map(Protocol::name),
                &spec.port_range_min.map(i32::from),
                &spec.port_range_max.map(i32::from),
                &spec.remote_ip_prefix.map(|p| p.to_string()),
                &spec.remote_group_id.map(id_text),
                &spec.description,
                &rule.created_at,
            ],
        )?;
        Ok(())
    }

    fn delete_rule(&mut self, rule_id: Uuid) -> StoreResult<bool> {
        Ok(self.execute("DELETE FROM security_group_rules WHERE id = $1", &[&id_text(rule_id)])? > 0)
    }

    fn group_of_rule(&mut self, scope: &Scope, rule_id: Uuid) -> StoreResult<Option<Uuid>> {
        let row = self.query_opt(
            "SELECT g.id FROM security_group_rules r JOIN security_groups g ON g.id = r.group_id
             WHERE r.id = $1 AND g.client_id = $2 AND g.project_id = $3 AND g.region_id = $4",
            &[&id_text(rule_id), &scope.client_id, &scope.project_id, &scope.region_id],
        )?;
        row.map(|row| get::<String>(&row, 0).and_then(|id| parse_uuid(&id))).transpose()
    }

    fn rules_referencing(&mut self, group_id: Uuid) -> StoreResult<Vec<(Uuid, Uuid)>> {
        let id = id_text(group_id);
        if self.write {
            // Only a delete asks this: lock the group first, so a rule naming it that another
            // transaction is committing right now is seen (it held KEY SHARE on the group).
            self.query("SELECT 1 FROM security_groups WHERE id = $1 FOR UPDATE", &[&id])?;
        }
        let rows =
            self.query("SELECT id, group_id FROM security_group_rules WHERE remote_group_id = $1 AND group_id <> $1 ORDER BY seq", &[&id])?;
        rows.iter()
            .map(|row| {
                let rule: String = get(row, 0)?;
                let group: String = get(row, 1)?;
                Ok((parse_uuid(&rule)?, parse_uuid(&group)?))
            })
            .collect()
    }

    fn count_groups(&mut self, scope: &Scope) -> StoreResult<u64> {
        let row = self.query_one(
            "SELECT COUNT(*) FROM security_groups WHERE client_id = $1 AND project_id = $2 AND region_id = $3",
            &[&scope.client_id, &scope.project_id, &scope.region_id],
        )?;
        Ok(get::<i64>(&row, 0)? as u64)
    }

    fn usage(&mut self, scope: &Scope) -> StoreResult<Usage> {
        let row = self.query_opt(
            "SELECT groups, rules FROM scope_usage WHERE client_id = $1 AND project_id = $2 AND region_id = $3",
            &[&scope.client_id, &scope.project_id, &scope.region_id],
        )?;
        let Some(row) = row else { return Ok(Usage::default()) };
        Ok(Usage { security_groups: get::<i64>(&row, 0)?.max(0) as u64, security_group_rules: get::<i64>(&row, 1)?.max(0) as u64 })
    }

    fn lock_scope(&mut self, scope: &Scope) -> StoreResult<()> {
        // Writers of one scope, on any node, queue here until the holder's transaction ends.
        self.query_one(
            "SELECT pg_advisory_xact_lock(hashtextextended('palisade-scope/' || $1::bigint || '/' || $2::bigint || '/' || $3::bigint, 0))",
            &[&scope.client_id, &scope.project_id, &scope.region_id],
        )?;
        Ok(())
    }

    fn get_quota(&mut self, scope: &Scope) -> StoreResult<Option<Limits>> {
        let row = self.query_opt(
            "SELECT security_group_count, security_group_rule_count FROM quotas WHERE client_id = $1 AND project_id = $2 AND region_id = $3",
            &[&scope.client_id, &scope.project_id, &scope.region_id],
        )?;
        row.map(|row| Ok(Limits { security_groups: get(&row, 0)?, security_group_rules: get(&row, 1)? })).transpose()
    }

    fn set_quota(&mut self, scope: &Scope, limits: &Limits) -> StoreResult<()> {
        self.execute(
            "INSERT INTO quotas (client_id, project_id, region_id, security_group_count, security_group_rule_count)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (client_id, project_id, region_id) DO UPDATE
             SET security_group_count = excluded.security_group_count, security_group_rule_count = excluded.security_group_rule_count",
            &[&scope.client_id, &scope.project_id, &scope.region_id, &limits.security_groups, &limits.security_group_rules],
        )?;
        Ok(())
    }

    fn insert_port(&mut self, port: &Port) -> StoreResult<()> {
        self.pg_insert_port(port)
    }

    fn update_port(&mut self, port: &Port) -> StoreResult<()> {
        self.pg_update_port(port)
    }

    fn set_port_groups(&mut self, port_id: Uuid, group_ids: &[Uuid]) -> StoreResult<()> {
        self.pg_set_port_groups(port_id, group_ids)
    }

    fn get_port(&mut self, client_id: Option<i64>, id: Uuid) -> StoreResult<Option<Port>> {
        self.pg_get_port(client_id, id)
    }

    fn list_ports(&mut self, client_id: Option<i64>, filter: &PortFilter) -> StoreResult<Vec<Port>> {
        self.pg_list_ports(client_id, filter)
    }

    fn delete_port(&mut self, client_id: Option<i64>, id: Uuid) -> StoreResult<bool> {
        self.pg_delete_port(client_id, id)
    }

    fn ports_in_groups(&mut self, group_ids: &[Uuid]) -> StoreResult<Vec<Port>> {
        self.pg_ports_in_groups(group_ids)
    }

    fn groups_by_ids(&mut self, ids: &[Uuid]) -> StoreResult<Vec<Group>> {
        self.pg_groups_by_ids(ids)
    }

    fn policy_revision(&mut self) -> StoreResult<i64> {
        self.pg_policy_revision()
    }

    fn lock_host(&mut self, host: &str) -> StoreResult<()> {
        // Port writers of one host, on any node, queue here until the holder's transaction ends.
        self.query_one("SELECT pg_advisory_xact_lock(hashtextextended('palisade-host/' || $1::text, 0))", &[&host])?;
        Ok(())
    }

    fn report_agent(&mut self, agent: &AgentRecord) -> StoreResult<()> {
        self.pg_report_agent(agent)
    }

    fn list_agents(&mut self) -> StoreResult<Vec<AgentRecord>> {
        self.pg_list_agents()
    }

    fn savepoint(&mut self) -> StoreResult<()> {
        self.batch("SAVEPOINT task")
    }

    fn release_savepoint(&mut self) -> StoreResult<()> {
        self.batch("RELEASE SAVEPOINT task")
    }

    fn rollback_to_savepoint(&mut self) -> StoreResult<()> {
        self.batch("ROLLBACK TO SAVEPOINT task; RELEASE SAVEPOINT task")?;
        // Whatever failed after the savepoint is undone; the transaction can commit again.
        self.failed = false;
        Ok(())
    }

    fn insert_task(&mut self, task: &TaskRecord) -> StoreResult<()> {
        self.execute(
            &format!(
                "INSERT INTO tasks ({TASK_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
            ),
            &[
                &task.id,
                &task.client_id,
                &task.user_id,
                &task.project_id,
                &task.region_id,
                &task.task_type,
                &task.state.as_str(),
                &task.request_id,
                &json_text(&task.data),
                &task.payload.to_string(),
                &task.error,
                &json_text(&task.created_resources),
                &task.created_on,
                &task.updated_on,
                &task.finished_on,
                &task.acknowledged_at,
                &task.acknowledged_by,
            ],
        )?;
        if !self.notified && !task.state.is_terminal() {
            // Delivered at commit, to every node's listener (ours included).
            self.batch(&format!("NOTIFY {TASK_CHANNEL}"))?;
            self.notified = true;
        }
        Ok(())
    }

    fn pending_tasks(&mut self, _now_ms: i64, limit: u32) -> StoreResult<Vec<TaskRecord>> {
        // The row locks are the lease: held until this transaction ends, released by PostgreSQL
        // when the connection of a dead node drops. Rows another node holds are skipped.
        let lock = if self.write { " FOR UPDATE SKIP LOCKED" } else { "" };
        let rows = self.query(
            &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE state IN ('NEW', 'RUNNING') ORDER BY seq LIMIT $1{lock}"),
            &[&i64::from(limit)],
        )?;
        rows.iter().map(|row| task_from_row(row, 0)).collect()
    }

    fn update_task(&mut self, task: &TaskRecord) -> StoreResult<()> {
        self.execute(
            "UPDATE tasks SET state = $2, error = $3, created_resources = $4, updated_on = $5, finished_on = $6,
             acknowledged_at = $7, acknowledged_by = $8 WHERE id = $1",
            &[
                &task.id,
                &task.state.as_str(),
                &task.error,
                &json_text(&task.created_resources),
                &task.updated_on,
                &task.finished_on,
                &task.acknowledged_at,
                &task.acknowledged_by,
            ],
        )?;
        Ok(())
    }

    fn get_task(&mut self, client_id: i64, id: &str) -> StoreResult<Option<TaskRecord>> {
        let row = self.query_opt(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 AND client_id = $2"), &[&id, &client_id])?;
        row.map(|row| task_from_row(&row, 0)).transpose()
    }

    fn list_tasks(&mut self, client_id: i64, filter: &TaskFilter) -> StoreResult<(u64, Vec<TaskRecord>)> {
        let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        let condition = "client_id = $1
            AND (cardinality($2::bigint[]) = 0 OR project_id = ANY($2))
            AND (cardinality($3::bigint[]) = 0 OR region_id = ANY($3))
            AND (cardinality($4::text[]) = 0 OR state = ANY($4))
            AND ($5::text IS NULL OR task_type = $5)
            AND ($6::boolean IS NULL OR (acknowledged_at IS NOT NULL) = $6)
            AND ($7::bigint IS NULL OR created_on >= $7)
            AND ($8::bigint IS NULL OR created_on <= $8)";
        let count: i64 = get(
            &self.query_one(
                &format!("SELECT COUNT(*) FROM tasks WHERE {condition}"),
                &[
                    &client_id,
                    &filter.project_ids,
                    &filter.region_ids,
                    &states,
                    &filter.task_type,
                    &filter.is_acknowledged,
                    &filter.from_ms,
                    &filter.to_ms,
                ],
            )?,
            0,
        )?;
        let order = if filter.ascending { "ASC" } else { "DESC" };
        let limit = i64::from(filter.limit);
        let offset = i64::try_from(filter.offset).unwrap_or(i64::MAX);
        let rows = self.query(
            &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE {condition} ORDER BY created_on {order}, seq {order} LIMIT $9 OFFSET $10"),
            &[
                &client_id,
                &filter.project_ids,
                &filter.region_ids,
                &states,
                &filter.task_type,
                &filter.is_acknowledged,
                &filter.from_ms,
                &filter.to_ms,
                &limit,
                &offset,
            ],
        )?;
        let tasks = rows.iter().map(|row| task_from_row(row, 0)).collect::<StoreResult<Vec<_>>>()?;
        Ok((count as u64, tasks))
    }

    fn acknowledge_tasks(&mut self, client_id: i64, scope: &AckFilter, user_id: i64, now_ms: i64) -> StoreResult<u64> {
        self.execute(
            "UPDATE tasks SET acknowledged_at = $5, acknowledged_by = $6
             WHERE client_id = $1 AND acknowledged_at IS NULL
             AND ($2::bigint IS NULL OR project_id = $2) AND ($3::bigint IS NULL OR region_id = $3)
             AND ($4::text[] IS NULL OR id = ANY($4))",
            &[&client_id, &scope.project_id, &scope.region_id, &scope.task_ids, &now_ms, &user_id],
        )
    }

    fn count_open_tasks(&mut self, client_id: i64) -> StoreResult<u64> {
        let row = self.query_one("SELECT COUNT(*) FROM tasks WHERE client_id = $1 AND state IN ('NEW', 'RUNNING')", &[&client_id])?;
        Ok(get::<i64>(&row, 0)? as u64)
    }

    fn prune_tasks(&mut self, finished_before_ms: i64, acknowledged_before_ms: i64, limit: u32) -> StoreResult<u64> {
        self.execute(
            "DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE finished_on IS NOT NULL
             AND (finished_on < $1 OR (acknowledged_at IS NOT NULL AND finished_on < $2)) ORDER BY finished_on LIMIT $3)",
            &[&finished_before_ms, &acknowledged_before_ms, &i64::from(limit)],
        )
    }

    fn insert_key(&mut self, key: &NewApiKey) -> StoreResult<i64> {
        let projects = key.projects.as_ref().map(|p| serde_json::to_string(p).expect("ints serialise"));
        let row = self.query_one(
            "INSERT INTO api_keys (token_hash, client_id, user_id, projects, name, created_at, role, host)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
            &[&key.token_hash, &key.client_id, &key.user_id, &projects, &key.name, &key.created_at, &key.role.as_str(), &key.host],
        )?;
        get(&row, 0)
    }

    fn find_key(&mut self, token_hash: &str) -> StoreResult<Option<ApiKey>> {
        let row = self.query_opt(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE token_hash = $1"), &[&token_hash])?;
        row.map(|row| key_from_row(&row)).transpose()
    }

    fn list_keys(&mut self) -> StoreResult<Vec<ApiKey>> {
        let rows = self.query(&format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY id"), &[])?;
        rows.iter().map(key_from_row).collect()
    }

    fn revoke_key(&mut self, id: i64, now_ms: i64) -> StoreResult<bool> {
        Ok(self.execute("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL", &[&id, &now_ms])? > 0)
    }

    fn insert_audit(&mut self, event: &crate::AuditEvent) -> StoreResult<()> {
        self.pg_insert_audit(event)
    }

    fn list_audit(&mut self, filter: &crate::AuditFilter) -> StoreResult<(u64, Vec<crate::AuditEvent>)> {
        self.pg_list_audit(filter)
    }

    fn prune_audit(&mut self, before_ms: i64, limit: u32) -> StoreResult<u64> {
        self.pg_prune_audit(before_ms, limit)
    }

    fn export_groups(&mut self, after: i64, limit: u32) -> StoreResult<Vec<(i64, Group)>> {
        let rows = self.query(
            &format!("SELECT seq, {GROUP_COLUMNS} FROM security_groups WHERE seq > $1 ORDER BY seq LIMIT $2"),
            &[&after, &i64::from(limit)],
        )?;
        let positions = rows.iter().map(|row| get::<i64>(row, 0)).collect::<StoreResult<Vec<_>>>()?;
        let mut groups = rows.iter().map(|row| group_from_row(row, 1)).collect::<StoreResult<Vec<_>>>()?;
        self.attach_children(&mut groups)?;
        Ok(positions.into_iter().zip(groups).collect())
    }

    fn export_tasks(&mut self, after: i64, limit: u32) -> StoreResult<Vec<(i64, TaskRecord)>> {
        let rows = self
            .query(&format!("SELECT seq, {TASK_COLUMNS} FROM tasks WHERE seq > $1 ORDER BY seq LIMIT $2"), &[&after, &i64::from(limit)])?;
        rows.iter().map(|row| Ok((get(row, 0)?, task_from_row(row, 1)?))).collect()
    }

    fn export_keys(&mut self) -> StoreResult<Vec<(ApiKey, String)>> {
        let rows = self.query(&format!("SELECT {KEY_COLUMNS}, token_hash FROM api_keys ORDER BY id"), &[])?;
        rows.iter().map(|row| Ok((key_from_row(row)?, get(row, 9)?))).collect()
    }

    fn export_quotas(&mut self) -> StoreResult<Vec<(Scope, Limits)>> {
        let rows = self.query(
            "SELECT client_id, project_id, region_id, security_group_count, security_group_rule_count FROM quotas
             ORDER BY client_id, project_id, region_id",
            &[],
        )?;
        rows.iter()
            .map(|row| {
                Ok((
                    Scope { client_id: get(row, 0)?, project_id: get(row, 1)?, region_id: get(row, 2)? },
                    Limits { security_groups: get(row, 3)?, security_group_rules: get(row, 4)? },
                ))
            })
            .collect()
    }

    fn raise_policy_revision(&mut self, revision: i64) -> StoreResult<()> {
        self.execute("UPDATE policy_revision SET revision = GREATEST(revision, $1) WHERE id = 1", &[&revision])?;
        Ok(())
    }

    fn import_key(&mut self, key: &ApiKey, token_hash: &str) -> StoreResult<()> {
        let projects = key.projects.as_ref().map(|p| serde_json::to_string(p).expect("ints serialise"));
        self.execute(
            &format!("INSERT INTO api_keys ({KEY_COLUMNS}, token_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"),
            &[
                &key.id,
                &key.client_id,
                &key.user_id,
                &key.name,
                &projects,
                &key.created_at,
                &key.revoked_at,
                &key.role.as_str(),
                &key.host,
                &token_hash,
            ],
        )?;
        // Keys created later must not collide with the imported ids.
        self.query_one("SELECT setval(pg_get_serial_sequence('api_keys', 'id'), (SELECT MAX(id) FROM api_keys))", &[])?;
        Ok(())
    }
}
