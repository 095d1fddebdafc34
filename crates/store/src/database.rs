//! The store a running service uses, chosen at start from the database URL.

use crate::sqlite::SqliteStore;
use crate::{Store, StoreError, StoreResult, Tx};

pub enum Database {
    Sqlite(SqliteStore),
}

impl Database {
    /// `sqlite:PATH` (or a bare path) opens the embedded store.
    pub fn open(url: &str, sqlite_synchronous: &str) -> StoreResult<Database> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Err(StoreError::Internal("PostgreSQL support is not built into this version".into()));
        }
        let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
        let path = path.split('?').next().unwrap_or(path);
        Ok(Database::Sqlite(SqliteStore::open(path, sqlite_synchronous)?))
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
        }
    }
}

impl Store for Database {
    fn read<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        match self {
            Database::Sqlite(store) => store.read(f),
        }
    }

    fn write<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        match self {
            Database::Sqlite(store) => store.write(f),
        }
    }

    fn ping(&self) -> StoreResult<()> {
        match self {
            Database::Sqlite(store) => store.ping(),
        }
    }
}
