//! The shared store for several nodes: PostgreSQL through tokio-postgres, each pooled connection
//! driven by the thread running its transaction, with statements nobody reads queued and sent
//! with the next round trip (`conn`).
//!
//! The store is called from blocking threads (the API and the worker use `spawn_blocking`), never
//! from an async worker thread: each connection's round trips `block_on` its own small runtime.
//! Migrations, the admin helpers and the listener thread use the synchronous `postgres` client.
//!
//! How several nodes stay correct:
//! - Write transactions run at READ COMMITTED. [`get_group`](crate::GroupTx::get_group) inside
//!   one locks the group row (`FOR NO KEY UPDATE`), so two nodes changing one group serialise
//!   and every change sees the one before it: no lost update, and `revision_number` only grows.
//!   [`group_exists`](crate::GroupTx::group_exists) takes `FOR KEY SHARE` (the group may not be
//!   deleted underneath a rule that names it), and deleting a group locks it `FOR UPDATE` before
//!   looking for rules that reference it.
//! - [`pending_tasks`](crate::TaskTx::pending_tasks) claims with `FOR UPDATE SKIP LOCKED`. The
//!   worker claims, applies and finishes a task in one transaction, so the row lock is the lease:
//!   a task is held exactly as long as the transaction of the node running it. When that node
//!   dies its connection drops, PostgreSQL rolls the transaction back and the task is NEW again
//!   for any other node. A hung node is cut off by `idle_in_transaction_session_timeout`,
//!   `statement_timeout` and TCP keepalives (set per session unless the role or database
//!   already sets them), and nobody waits on its locks longer than `lock_timeout`.
//! - The worker runs one task per transaction here ([`claim_task`](crate::TaskTx::claim_task)),
//!   trying the task's scope lock instead of waiting for it, so a node that hangs inside a task
//!   holds one task and one scope, and other nodes run every other scope's tasks meanwhile.
//! - [`insert_task`](crate::TaskTx::insert_task) issues `NOTIFY palisade_tasks`, and a write that
//!   bumps host revisions `NOTIFY palisade_policy`, both delivered at commit; every node runs a
//!   listener ([`PgStore::spawn_task_listener`]) that wakes its worker and its policy feed.
//! - Connection-level failures are [`StoreError::Unavailable`] (the API answers 503, `/readyz`
//!   reports not ready); the broken connection is dropped and a new one is opened on next use,
//!   so a node recovers by itself when the database returns.

use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

mod audit;
pub(crate) mod conn;
mod groups;
mod keys;
mod observe;
mod ports;
mod quotas;
mod tasks;
mod transfer;

use self::conn::{OwnedParam, PgConn, Queued};
use crate::migrate::{self, MigrationConnection};
use crate::pending::{ListenerSlot, Pending, PolicyListener};
use crate::rows::{ColumnType, Columns};
use crate::{SavepointTx, Store, StoreError, StoreResult, Tx, sql};
use palisade_core::group::Scope;

/// The advisory lock held while migrating, so nodes starting together apply migrations once.
const MIGRATION_LOCK: i64 = 0x7061_6c69_7361_6465; // "palisade"

/// The channel `insert_task` notifies and the listeners listen on.
pub const TASK_CHANNEL: &str = "palisade_tasks";
/// The channel a write notifies with the hosts whose revision it bumped (`crate::pending`).
pub const POLICY_CHANNEL: &str = "palisade_policy";

/// Connections per node unless the URL says `pool_max_size=N`.
const DEFAULT_POOL_SIZE: usize = 16;
/// How long a caller waits for a free connection before the store reports itself unavailable.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// The most statements a transaction queues before it sends them (memory stays bounded).
const MAX_QUEUED: usize = 256;
/// A pooled connection idle for longer is checked before a transaction relies on it: its `BEGIN`
/// goes alone, so a connection the server dropped meanwhile is replaced without failing the
/// caller. A busier connection's `BEGIN` rides with the first statement.
const STALE_AFTER: Duration = Duration::from_millis(50);

/// Session settings applied on connect, each only when the server, role and database leave it
/// at its default (so an operator's `ALTER ROLE ... SET` wins).
const SESSION_DEFAULTS: &[(&str, &str, &str)] = &[
    // (setting, its built-in default, ours)
    ("statement_timeout", "0", "30s"),
    // No wait for a lock (a scope's, a group row's) lasts longer: a holder that hangs costs the
    // writers behind it a 503 after 2 s, not a request deadline.
    ("lock_timeout", "0", "2s"),
    // The lease of a node that hangs mid-transaction (SIGSTOP, a long pause, a dead VM whose TCP
    // session lives on): our transactions never idle for more than milliseconds, so after 5 s
    // PostgreSQL ends the session, rolls back and frees its task and locks for other nodes.
    ("idle_in_transaction_session_timeout", "0", "5s"),
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
    let (config, _, _) = parse_url(admin_url)?;
    let mut client = postgres::Config::from(config).connect(NoTls).map_err(map_error)?;
    client.batch_execute(&format!("CREATE DATABASE {name}")).map_err(map_error)?;
    Ok(database_url(admin_url, name))
}

/// Drops the database `name` (if it exists), ending its sessions first.
pub fn drop_database(admin_url: &str, name: &str) -> StoreResult<()> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(StoreError::Internal(format!("refusing the database name {name:?}")));
    }
    let (config, _, _) = parse_url(admin_url)?;
    let mut client = postgres::Config::from(config).connect(NoTls).map_err(map_error)?;
    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).map_err(map_error)
}

struct PoolState {
    idle: Vec<PgConn>,
    /// Connections that exist: idle plus checked out.
    open: usize,
}

struct Pool {
    config: tokio_postgres::Config,
    max: usize,
    /// `synchronous_commit` for every session, when the URL sets it (`synchronous_commit=off`).
    synchronous_commit: Option<String>,
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
                if conn.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(conn);
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                return match connect(&self.config, self.synchronous_commit.as_deref()) {
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

fn connect(config: &tokio_postgres::Config, synchronous_commit: Option<&str>) -> StoreResult<PgConn> {
    let mut setup = String::new();
    for (name, default, ours) in SESSION_DEFAULTS {
        setup.push_str(&format!("SELECT set_config('{name}', '{ours}', false) WHERE current_setting('{name}') = '{default}';"));
    }
    if let Some(mode) = synchronous_commit {
        // Checked against SYNCHRONOUS_COMMIT_MODES when the URL was read.
        setup.push_str(&format!("SET synchronous_commit = {mode};"));
    }
    // Whatever keeps us from connecting (server down, database not accepting connections or
    // gone, too many clients) means the store is unavailable until it is fixed: 503, not 500.
    PgConn::connect(config, &setup).map_err(|e| match map_error(e) {
        StoreError::Internal(text) => StoreError::Unavailable(text),
        unavailable => unavailable,
    })
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
    /// Told of the host revisions each committed write bumped, and (from the listener thread)
    /// of those of other nodes.
    policy: ListenerSlot,
}

/// The values `synchronous_commit=` may take in the URL (PostgreSQL's own).
const SYNCHRONOUS_COMMIT_MODES: &[&str] = &["on", "off", "local", "remote_write", "remote_apply"];

/// Splits our own parameters off a URL — `pool_max_size=N` and `synchronous_commit=MODE` (set on
/// every session; `off` acknowledges a commit before its WAL reaches the disk: a crash of the
/// PostgreSQL server or its machine can lose the last few hundred milliseconds of acknowledged
/// writes, a crash of palisade loses nothing; see docs/operations.md) — the rest goes to the
/// driver.
fn parse_url(url: &str) -> StoreResult<(tokio_postgres::Config, usize, Option<String>)> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let mut pool_size = DEFAULT_POOL_SIZE;
    let mut synchronous_commit = None;
    let mut rest = Vec::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("synchronous_commit", value)) => {
                if !SYNCHRONOUS_COMMIT_MODES.contains(&value) {
                    return Err(StoreError::Internal(format!(
                        "synchronous_commit must be one of {}, not {value:?}",
                        SYNCHRONOUS_COMMIT_MODES.join(", ")
                    )));
                }
                synchronous_commit = Some(value.to_string());
            }
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
    let mut config = tokio_postgres::Config::from_str(&url).map_err(|e| StoreError::Internal(format!("invalid PostgreSQL URL: {e}")))?;
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
    Ok((config, pool_size, synchronous_commit))
}

impl PgStore {
    /// Connects and applies pending migrations (under an advisory lock).
    pub fn open(url: &str) -> StoreResult<PgStore> {
        PgStore::open_with(url, true)
    }

    /// Connects; with `migrate`, applies pending migrations, otherwise checks that the schema is current.
    pub fn open_with(url: &str, migrate: bool) -> StoreResult<PgStore> {
        let (config, max, synchronous_commit) = parse_url(url)?;
        let pool = Arc::new(Pool {
            config,
            max,
            synchronous_commit,
            state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }),
            available: Condvar::new(),
        });
        // Migrations run on a connection of their own (the synchronous client: DDL and the
        // advisory lock, nothing to pipeline); the pool's first connection then checks the server.
        let mut client = postgres::Config::from(pool.config.clone()).connect(NoTls).map_err(|e| match map_error(e) {
            StoreError::Internal(text) => StoreError::Unavailable(text),
            unavailable => unavailable,
        })?;
        if migrate {
            migrate::apply_pending(&mut client, migrate::POSTGRES)?;
        } else {
            migrate::check_current(&mut client, migrate::POSTGRES)?;
        }
        drop(client);
        let conn = pool.get()?;
        pool.put(conn);
        Ok(PgStore { pool, policy: ListenerSlot::default() })
    }

    /// Tells `listener` of every committed change of host revisions, this node's and (once
    /// [`PgStore::spawn_task_listener`] runs) other nodes'.
    pub fn set_policy_listener(&self, listener: PolicyListener) {
        self.policy.set(listener);
    }

    /// Runs `f` in a transaction opened with `begin`. `BEGIN` is queued to go out with the first
    /// statement (one round trip less), except on a connection idle for longer than
    /// [`STALE_AFTER`]: there it is sent alone first, and a connection that went stale (the
    /// server restarted, an administrator ended the session) is replaced once, so recovery costs
    /// no failed request.
    fn run<R, E: From<StoreError>>(&self, begin: &str, write: bool, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        let mut conn = self.pool.get()?;
        let mut queue = Vec::new();
        if conn.last_used.elapsed() > STALE_AFTER {
            if let Err(e) = conn.round_trip(Vec::new(), async |client| client.batch_execute(begin).await) {
                let stale = is_connection_error(&e);
                self.pool.discard(conn);
                if !stale {
                    return Err(map_error(e).into());
                }
                self.pool.discard_idle();
                conn = self.pool.get()?;
                if let Err(e) = conn.round_trip(Vec::new(), async |client| client.batch_execute(begin).await) {
                    self.pool.discard(conn);
                    return Err(map_error(e).into());
                }
            }
        } else {
            queue.push(Queued::Batch(begin.to_string()));
        }
        let mut tx = PgTx {
            conn: &mut conn,
            queue,
            write,
            notified: false,
            broken: false,
            failed: false,
            locked_scopes: Vec::new(),
            pending: Pending::default(),
        };
        // A panic in `f` leaves the connection mid-transaction: it must not go back to the pool.
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let result = f(&mut tx);
            // What the transaction changed is written last, so the usage rows and host
            // revisions it touches are locked only for the moment before COMMIT.
            match result {
                Ok(value) if write => tx.flush_all().map(|()| value).map_err(E::from),
                other => other,
            }
        }));
        let (broken, failed) = (tx.broken, tx.failed);
        let bumped = std::mem::take(&mut tx.pending.bumped);
        let result = match outcome {
            // PostgreSQL turns the COMMIT of a transaction in which a statement failed into a
            // ROLLBACK without an error: never report success for it, even if `f` swallowed
            // the error.
            Ok(Ok(_)) if failed => Err(StoreError::Internal("a statement of the transaction failed; it was rolled back".into()).into()),
            Ok(result) => result,
            Err(panic) => {
                drop(tx);
                self.pool.discard(conn);
                std::panic::resume_unwind(panic);
            }
        };
        // COMMIT goes with whatever is still queued; a ROLLBACK drops the queue unsent (a
        // ROLLBACK without a BEGIN sent, when nothing went out, is only a warning).
        let queue = if result.is_ok() { std::mem::take(&mut tx.queue) } else { Vec::new() };
        drop(tx);
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let committed = conn.round_trip(queue, async |client| client.batch_execute(end).await);
        if committed.is_ok() && result.is_ok() && !bumped.is_empty() {
            // This node's waiting agents hear at once; other nodes through the NOTIFY.
            self.policy.tell(Some(&bumped));
        }
        match committed {
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
                    // A failed COMMIT (or a queued statement that failed with it): the outcome
                    // is known to be a rollback or unknown, and the caller must hear of it.
                    Ok(_) => Err(map_error(e).into()),
                    Err(original) => Err(original),
                }
            }
        }
    }

    /// Starts a thread that LISTENs on [`TASK_CHANNEL`] with its own connection and calls
    /// `wake.notify_one()` on every notification (and after every reconnect, to catch up on
    /// anything missed). It reconnects with backoff, and ends when `wake` is dropped elsewhere.
    /// The same connection LISTENs on [`POLICY_CHANNEL`] and hands other nodes' host revisions
    /// to the policy listener (and `None` after every reconnect: something may have been missed).
    pub fn spawn_task_listener(&self, wake: Arc<tokio::sync::Notify>) {
        let config = self.pool.config.clone();
        let wake = Arc::downgrade(&wake);
        let policy = self.policy.clone();
        let spawned = std::thread::Builder::new().name("palisade-pg-listen".into()).spawn(move || listen_loop(config, wake, policy));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "could not start the PostgreSQL task listener; tasks of other nodes are found by polling");
        }
    }
}

fn listen_loop(config: tokio_postgres::Config, wake: Weak<tokio::sync::Notify>, policy: ListenerSlot) {
    let mut backoff = Duration::from_millis(100);
    loop {
        if wake.strong_count() == 0 {
            return;
        }
        let started = Instant::now();
        match listen_once(&config, &wake, &policy) {
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
fn listen_once(config: &tokio_postgres::Config, wake: &Weak<tokio::sync::Notify>, policy: &ListenerSlot) -> Result<(), postgres::Error> {
    let mut client = postgres::Config::from(config.clone()).connect(NoTls)?;
    client.batch_execute(&format!("LISTEN {TASK_CHANNEL}; LISTEN {POLICY_CHANNEL}"))?;
    tracing::debug!("listening for tasks and policy changes of other nodes");
    // Work may have been queued, and policies changed, while we were not listening.
    match wake.upgrade() {
        Some(wake) => wake.notify_one(),
        None => return Ok(()),
    }
    policy.tell(None);
    loop {
        let (tasks, quiet) = {
            use postgres::fallible_iterator::FallibleIterator;
            let mut notifications = client.notifications();
            let mut received = Vec::new();
            if let Some(first) = notifications.timeout_iter(Duration::from_secs(15)).next()? {
                received.push(first);
            }
            // Whatever else has arrived already is covered by the same pass.
            while let Some(next) = notifications.iter().next()? {
                received.push(next);
            }
            let quiet = received.is_empty();
            let mut tasks = false;
            for notification in received {
                if notification.channel() == POLICY_CHANNEL {
                    match crate::pending::parse_notification(notification.payload()) {
                        Some(hosts) => policy.tell(Some(&hosts)),
                        None => policy.tell(None),
                    }
                } else {
                    tasks = true;
                }
            }
            (tasks, quiet)
        };
        let Some(wake) = wake.upgrade() else { return Ok(()) };
        if tasks {
            wake.notify_one();
        }
        if quiet {
            // Quiet for a while (or the server went away): make sure the connection still works.
            client.batch_execute("SELECT 1")?;
        }
    }
}

struct PgTx<'a> {
    conn: &'a mut PgConn,
    /// Statements no caller waits for, sent with the next round trip (`conn`).
    queue: Vec<Queued>,
    write: bool,
    /// NOTIFY already issued in this transaction.
    notified: bool,
    /// A connection-level error happened: the connection must not be reused.
    broken: bool,
    /// A statement failed (the transaction is aborted) and no savepoint rollback undid it.
    failed: bool,
    /// Scopes whose advisory lock this transaction holds (see `postgres/quotas.rs`).
    locked_scopes: Vec<Scope>,
    /// Usage and host changes to write before COMMIT (`crate::pending`).
    pending: Pending,
}

impl Columns for Row {
    fn column<T: ColumnType>(&self, index: usize) -> StoreResult<T> {
        self.try_get(index).map_err(map_error)
    }
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
        if let Some(statement) = self.conn.cached(sql) {
            return Ok(statement);
        }
        // Preparing is a round trip of its own: what is queued goes with it.
        let queue = std::mem::take(&mut self.queue);
        let statement = self.conn.round_trip(queue, async |client| client.prepare(sql).await).map_err(|e| self.fail(e))?;
        self.conn.remember(sql, statement.clone());
        Ok(statement)
    }

    fn query(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<Row>> {
        let statement = self.statement(sql)?;
        let queue = std::mem::take(&mut self.queue);
        self.conn.round_trip(queue, async |client| client.query(&statement, params).await).map_err(|e| self.fail(e))
    }

    fn query_opt(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Option<Row>> {
        let statement = self.statement(sql)?;
        let queue = std::mem::take(&mut self.queue);
        self.conn.round_trip(queue, async |client| client.query_opt(&statement, params).await).map_err(|e| self.fail(e))
    }

    fn query_one(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Row> {
        let statement = self.statement(sql)?;
        let queue = std::mem::take(&mut self.queue);
        self.conn.round_trip(queue, async |client| client.query_one(&statement, params).await).map_err(|e| self.fail(e))
    }

    /// Two queries in one round trip (after whatever is queued).
    fn query_pair(
        &mut self,
        first: (&str, &[&(dyn ToSql + Sync)]),
        second: (&str, &[&(dyn ToSql + Sync)]),
    ) -> StoreResult<(Vec<Row>, Vec<Row>)> {
        let (a, b) = (self.statement(first.0)?, self.statement(second.0)?);
        let queue = std::mem::take(&mut self.queue);
        self.conn
            .round_trip(queue, async |client| {
                let (x, y) = futures_util::future::join(client.query(&a, first.1), client.query(&b, second.1)).await;
                Ok((x?, y?))
            })
            .map_err(|e| self.fail(e))
    }

    /// Runs a statement now and counts the rows it changed.
    fn execute(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<u64> {
        let statement = self.statement(sql)?;
        let queue = std::mem::take(&mut self.queue);
        self.conn.round_trip(queue, async |client| client.execute(&statement, params).await).map_err(|e| self.fail(e))
    }

    /// Queues a statement whose result nobody reads: it goes with the next round trip, and its
    /// error, if any, fails that round trip (and so the transaction).
    fn defer(&mut self, sql: &str, params: Vec<OwnedParam>) -> StoreResult<()> {
        let statement = self.statement(sql)?;
        self.queue.push(Queued::Execute(statement, params));
        if self.queue.len() >= MAX_QUEUED {
            // A long transaction (an import) sends its writes in bounded batches.
            let queue = std::mem::take(&mut self.queue);
            self.conn.round_trip(queue, async |_| Ok(())).map_err(|e| self.fail(e))?;
        }
        Ok(())
    }

    /// Queues simple-protocol text (`SAVEPOINT`, `NOTIFY`, …), as [`PgTx::defer`].
    fn defer_batch(&mut self, sql: &str) {
        self.queue.push(Queued::Batch(sql.to_string()));
    }

    /// Runs simple-protocol text now.
    fn batch(&mut self, sql: &str) -> StoreResult<()> {
        let queue = std::mem::take(&mut self.queue);
        self.conn.round_trip(queue, async |client| client.batch_execute(sql).await).map_err(|e| self.fail(e))
    }

    /// Rows of a query, each decoded with `decode` (see [`crate::rows`]).
    fn rows<T>(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)], decode: impl FnMut(&Row) -> StoreResult<T>) -> StoreResult<Vec<T>> {
        self.query(sql, params)?.iter().map(decode).collect()
    }

    fn row_opt<T>(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
        decode: impl FnOnce(&Row) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        self.query_opt(sql, params)?.as_ref().map(decode).transpose()
    }

    fn row<T>(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)], decode: impl FnOnce(&Row) -> StoreResult<T>) -> StoreResult<T> {
        decode(&self.query_one(sql, params)?)
    }
}

impl SavepointTx for PgTx<'_> {
    fn savepoint(&mut self) -> StoreResult<()> {
        self.defer_batch("SAVEPOINT task");
        self.pending.savepoint();
        Ok(())
    }

    fn release_savepoint(&mut self) -> StoreResult<()> {
        self.defer_batch("RELEASE SAVEPOINT task");
        self.pending.release_savepoint();
        Ok(())
    }

    fn rollback_to_savepoint(&mut self) -> StoreResult<()> {
        self.batch("ROLLBACK TO SAVEPOINT task; RELEASE SAVEPOINT task")?;
        self.pending.rollback_to_savepoint();
        // Whatever failed after the savepoint is undone; the transaction can commit again.
        self.failed = false;
        // Locks taken after the savepoint are released with it; forgetting every scope is
        // conservative (asking again for one still held is a cheap re-entrant grant).
        self.locked_scopes.clear();
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

impl MigrationConnection for Client {
    const BACKEND: &'static str = "postgres";
    const CREATE_TABLE: &'static str =
        "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)";
    const BEGIN: &'static str = "BEGIN";

    fn batch(&mut self, sql: &str) -> StoreResult<()> {
        self.batch_execute(sql).map_err(map_error)
    }

    fn is_applied(&mut self, version: i64) -> StoreResult<bool> {
        self.query_one(sql::MIGRATION_APPLIED, &[&version]).map_err(map_error)?.column(0)
    }

    fn record(&mut self, version: i64, applied_at: i64) -> StoreResult<()> {
        self.execute(sql::RECORD_MIGRATION, &[&version, &applied_at]).map_err(map_error)?;
        Ok(())
    }

    fn applied_versions(&mut self) -> StoreResult<Vec<i64>> {
        let exists: bool = self.query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[]).map_err(map_error)?.column(0)?;
        if !exists {
            return Ok(Vec::new());
        }
        self.query("SELECT version FROM schema_migrations", &[]).map_err(map_error)?.iter().map(|row| row.column(0)).collect()
    }

    fn lock(&mut self) -> StoreResult<()> {
        // Nodes starting together queue here; the first applies, the others find nothing pending.
        self.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).map_err(map_error)?;
        Ok(())
    }

    fn unlock(&mut self) -> StoreResult<()> {
        self.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).map_err(map_error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";

    #[test]
    fn synchronous_commit_from_the_url_is_set_on_every_session() {
        let name = format!("palisade_sync_{}", std::process::id());
        let _ = drop_database(ADMIN, &name);
        let url = create_database(ADMIN, &name).expect("create a database (PostgreSQL at 127.0.0.1:5432)");
        let setting = |url: &str| {
            let store = PgStore::open(url).expect("open");
            let mut conn = store.pool.get().expect("a connection");
            let row = conn.round_trip(Vec::new(), async |client| client.query_one("SHOW synchronous_commit", &[]).await).expect("show");
            store.pool.put(conn);
            row.get::<_, String>(0)
        };
        assert_eq!(setting(&format!("{url}?synchronous_commit=off")), "off");
        assert_eq!(setting(&url), "on", "the server's default otherwise");
        assert!(matches!(PgStore::open(&format!("{url}?synchronous_commit=maybe")), Err(StoreError::Internal(_))));
        drop_database(ADMIN, &name).expect("drop");
    }
}
