//! The embedded default: SQLite in WAL mode. One writer connection serialises writes (SQLite
//! has one writer anyway); a small pool of reader connections serves snapshots concurrently.
//! `synchronous=NORMAL` in WAL mode keeps every committed transaction across a process crash;
//! `--sqlite-synchronous full` also keeps it across power loss.

use std::borrow::Cow;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{CachedStatement, Connection, Params, Row};

mod audit;
mod groups;
mod keys;
mod observe;
mod ports;
mod quotas;
mod tasks;
mod transfer;

use crate::migrate::{self, MigrationConnection};
use crate::pending::{ListenerSlot, Pending, PolicyListener};
use crate::rows::{ColumnType, Columns};
use crate::{SavepointTx, Store, StoreError, StoreResult, Tx, sql};

const READERS: usize = 8;

pub struct SqliteStore {
    path: String,
    synchronous: String,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Told of the host revisions each committed write bumped.
    policy: ListenerSlot,
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
        migrate::apply_pending(&mut writer, migrate::SQLITE)?;
        Ok(SqliteStore { path, synchronous, writer: Mutex::new(writer), readers: Mutex::new(Vec::new()), policy: ListenerSlot::default() })
    }

    /// Tells `listener` of the host revisions every committed write bumped.
    pub fn set_policy_listener(&self, listener: PolicyListener) {
        self.policy.set(listener);
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

impl MigrationConnection for Connection {
    const BACKEND: &'static str = "sqlite";
    const CREATE_TABLE: &'static str =
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)";
    const BEGIN: &'static str = "BEGIN IMMEDIATE";

    fn batch(&mut self, sql: &str) -> StoreResult<()> {
        Ok(self.execute_batch(sql)?)
    }

    fn is_applied(&mut self, version: i64) -> StoreResult<bool> {
        Ok(self.prepare_cached(&numbered(sql::MIGRATION_APPLIED))?.query_row([version], |r| r.get(0))?)
    }

    fn record(&mut self, version: i64, applied_at: i64) -> StoreResult<()> {
        self.prepare_cached(&numbered(sql::RECORD_MIGRATION))?.execute([version, applied_at])?;
        Ok(())
    }

    fn applied_versions(&mut self) -> StoreResult<Vec<i64>> {
        let mut stmt = self.prepare("SELECT version FROM schema_migrations ORDER BY version")?;
        Ok(stmt.query_map([], |r| r.get(0))?.collect::<rusqlite::Result<Vec<i64>>>()?)
    }

    fn lock(&mut self) -> StoreResult<()> {
        // One process owns the file, and each migration's BEGIN IMMEDIATE takes the write lock.
        Ok(())
    }

    fn unlock(&mut self) -> StoreResult<()> {
        Ok(())
    }
}

/// The SQL shared with PostgreSQL numbers its parameters `$1`, `$2`, …; SQLite reads `$1` as a
/// parameter *named* "$1" and numbers named parameters by first appearance. When the first
/// appearances run `$1`, `$2`, … in order (almost every statement) the two numberings agree and
/// the text is used as it is; otherwise `$N` becomes `?N` (bound by number). SQLite's own
/// statements, written with `?N`, pass through unchanged. Runs on every statement: no allocation
/// on the common path.
pub(crate) fn numbered(sql: &str) -> Cow<'_, str> {
    let bytes = sql.as_bytes();
    let mut next = 1u32; // the number the next new parameter must have for the numberings to agree
    let mut seen_max = 0u32;
    let mut i = 0;
    // `find` skips to the next `$` with memchr: statements are long, parameters few.
    while let Some(at) = sql[i..].find('$') {
        i += at + 1;
        let mut n = 0u32;
        let mut digits = 0;
        while let Some(d) = bytes.get(i).filter(|b| b.is_ascii_digit()) {
            n = n.saturating_mul(10).saturating_add(u32::from(d - b'0'));
            i += 1;
            digits += 1;
        }
        if digits > 0 && n > seen_max {
            if n != next {
                return Cow::Owned(by_number(sql));
            }
            seen_max = n;
            next += 1;
        }
    }
    Cow::Borrowed(sql)
}

/// `$N` → `?N`, leaving any other `$` alone.
fn by_number(sql: &str) -> String {
    let bytes = sql.as_bytes();
    sql.char_indices().map(|(i, c)| if c == '$' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) { '?' } else { c }).collect()
}

impl Columns for Row<'_> {
    fn column<T: ColumnType>(&self, index: usize) -> StoreResult<T> {
        Ok(self.get(index)?)
    }
}

impl Store for SqliteStore {
    fn read<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        let mut conn = self.reader()?;
        let result = {
            let tx = conn.transaction().map_err(StoreError::from)?;
            let mut handle = SqliteTx { conn: &tx, pending: Pending::default() };
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
        let mut handle = SqliteTx { conn: &tx, pending: Pending::default() };
        // What the transaction changed (usage, host revisions) is written last (`crate::pending`).
        let result = f(&mut handle).and_then(|value| handle.flush_all().map(|()| value).map_err(E::from));
        let bumped = std::mem::take(&mut handle.pending.bumped);
        match result {
            Ok(value) => {
                tx.commit().map_err(StoreError::from)?;
                if !bumped.is_empty() {
                    self.policy.tell(Some(&bumped));
                }
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

/// One transaction of either kind; `read` and `write` hand it to their closure as `&mut dyn Tx`.
struct SqliteTx<'a> {
    conn: &'a Connection,
    /// Usage and host changes to write before COMMIT (`crate::pending`).
    pending: Pending,
}

/// Statement helpers shaped like the PostgreSQL backend's, so the per-resource files of both
/// read alike: `rows`, `row_opt` and `row` decode with [`crate::rows`], `execute` counts changes.
impl SqliteTx<'_> {
    fn prepare(&self, sql: &str) -> StoreResult<CachedStatement<'_>> {
        Ok(self.conn.prepare_cached(&numbered(sql))?)
    }

    fn rows<T>(&self, sql: &str, params: impl Params, decode: impl FnMut(&Row) -> StoreResult<T>) -> StoreResult<Vec<T>> {
        self.prepare(sql)?.query_and_then(params, decode)?.collect()
    }

    fn row_opt<T>(&self, sql: &str, params: impl Params, decode: impl FnMut(&Row) -> StoreResult<T>) -> StoreResult<Option<T>> {
        self.prepare(sql)?.query_and_then(params, decode)?.next().transpose()
    }

    fn row<T>(&self, sql: &str, params: impl Params, decode: impl FnMut(&Row) -> StoreResult<T>) -> StoreResult<T> {
        self.row_opt(sql, params, decode)?.ok_or_else(|| rusqlite::Error::QueryReturnedNoRows.into())
    }

    fn execute(&self, sql: &str, params: impl Params) -> StoreResult<u64> {
        Ok(self.prepare(sql)?.execute(params)? as u64)
    }
}

impl SavepointTx for SqliteTx<'_> {
    fn savepoint(&mut self) -> StoreResult<()> {
        self.conn.execute_batch("SAVEPOINT task")?;
        self.pending.savepoint();
        Ok(())
    }

    fn release_savepoint(&mut self) -> StoreResult<()> {
        self.conn.execute_batch("RELEASE SAVEPOINT task")?;
        self.pending.release_savepoint();
        Ok(())
    }

    fn rollback_to_savepoint(&mut self) -> StoreResult<()> {
        self.conn.execute_batch("ROLLBACK TO SAVEPOINT task; RELEASE SAVEPOINT task")?;
        self.pending.rollback_to_savepoint();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::numbered;

    #[test]
    fn parameters_in_order_are_used_as_written_and_others_become_positional() {
        let in_order = "SELECT a FROM t WHERE b = $1 AND c = $2 OR d = $1 LIMIT $3";
        assert!(matches!(numbered(in_order), Cow::Borrowed(_)));
        assert!(matches!(numbered("SELECT ?1, ?2"), Cow::Borrowed(_)));
        assert_eq!(numbered("UPDATE t SET a = $2 WHERE id = $1"), "UPDATE t SET a = ?2 WHERE id = ?1");
        assert_eq!(numbered("SELECT $1, $3, $2, '$x'"), "SELECT ?1, ?3, ?2, '$x'");
        assert_eq!(numbered("SELECT $10 FROM t WHERE a = $1"), "SELECT ?10 FROM t WHERE a = ?1");
    }

    /// The two numberings agree in fact: a statement used as written binds `$1` to the first
    /// value and `$2` to the second, even where `$1` appears again after `$2`.
    #[test]
    fn sqlite_numbers_named_parameters_by_first_appearance() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let sql = numbered("SELECT $1 || '-' || $2 || '-' || $1");
        let joined: String = conn.query_row(&sql, ["a", "b"], |r| r.get(0)).unwrap();
        assert_eq!(joined, "a-b-a");
        let sql = numbered("SELECT $2 || '-' || $1");
        let joined: String = conn.query_row(&sql, ["a", "b"], |r| r.get(0)).unwrap();
        assert_eq!(joined, "b-a");
    }
}
