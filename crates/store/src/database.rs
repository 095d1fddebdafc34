//! The store a running service uses, chosen at start from the database URL.

use std::sync::Arc;

use crate::postgres::{PgStore, is_postgres_url};
use crate::sqlite::SqliteStore;
use crate::{Store, StoreError, StoreResult, Tx};

pub enum Database {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

impl Database {
    /// `sqlite:PATH` (or a bare path) opens the embedded store; `postgres://...` (or
    /// `postgresql://...`) the shared one. Pending migrations are applied.
    pub fn open(url: &str, sqlite_synchronous: &str) -> StoreResult<Database> {
        Database::open_with(url, sqlite_synchronous, true)
    }

    /// Like [`Database::open`]; without `migrate`, a PostgreSQL schema that is behind this build
    /// is an error instead of being migrated (an embedded SQLite file is always migrated: only
    /// one process opens it).
    pub fn open_with(url: &str, sqlite_synchronous: &str, migrate: bool) -> StoreResult<Database> {
        if is_postgres_url(url) {
            return Ok(Database::Postgres(PgStore::open_with(url, migrate)?));
        }
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        let path = path.split('?').next().unwrap_or(path);
        Ok(Database::Sqlite(SqliteStore::open(path, sqlite_synchronous)?))
    }

    /// Whether a read may run on the caller's thread, even an async runtime's: true for SQLite
    /// (WAL readers never wait for the writer; a read takes microseconds), false for the
    /// PostgreSQL client, which blocks on its own runtime and waits on the network.
    pub fn reads_inline(&self) -> bool {
        matches!(self, Database::Sqlite(_))
    }

    /// Whether this process's worker is the only one that runs tasks (so a request may wait for
    /// it): true for the embedded SQLite, false for PostgreSQL, where any node may claim a task.
    pub fn tasks_run_locally(&self) -> bool {
        matches!(self, Database::Sqlite(_))
    }

    /// Tells `listener` of every committed change of host policy revisions: this process's
    /// writes as they commit and, on PostgreSQL once [`Database::spawn_task_listener`] runs,
    /// other nodes' through NOTIFY (`None`: some may have been missed, re-read).
    pub fn set_policy_listener(&self, listener: crate::PolicyListener) {
        match self {
            Database::Sqlite(store) => store.set_policy_listener(listener),
            Database::Postgres(store) => store.set_policy_listener(listener),
        }
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }

    /// Wakes `wake` whenever another node (or this one) queues a task: for PostgreSQL a thread
    /// LISTENs on a dedicated connection, reconnecting with backoff, until `wake` is dropped.
    /// For SQLite this does nothing: one process owns the file and wakes its worker directly.
    pub fn spawn_task_listener(&self, wake: Arc<tokio::sync::Notify>) {
        match self {
            Database::Sqlite(_) => {}
            Database::Postgres(store) => store.spawn_task_listener(wake),
        }
    }
}

impl Store for Database {
    fn read<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        match self {
            Database::Sqlite(store) => store.read(f),
            Database::Postgres(store) => store.read(f),
        }
    }

    fn write<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        match self {
            Database::Sqlite(store) => store.write(f),
            Database::Postgres(store) => store.write(f),
        }
    }

    fn ping(&self) -> StoreResult<()> {
        match self {
            Database::Sqlite(store) => store.ping(),
            Database::Postgres(store) => store.ping(),
        }
    }
}
