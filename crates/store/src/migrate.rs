//! The one migration runner of both backends: each backend has its numbered files under
//! `migrations/<dialect>/`, and the runner applies the pending ones in order, one transaction
//! each, recording the version in `schema_migrations` in the same transaction. The table and its
//! rows are the ones earlier builds wrote, so existing databases carry on where they are.
//!
//! No migration library: refinery and sqlx pull a `libsqlite3-sys` that conflicts with
//! rusqlite's (shared/DEPENDENCIES.md, trap 1), and the loop is a few lines.

use crate::{StoreError, StoreResult, now_ms};

/// (version, SQL) of every migration of one dialect, in order.
pub(crate) type Migrations = &'static [(i64, &'static str)];

/// Every migration, by version and file name; each dialect has its own file of each name under
/// `migrations/<dialect>/`. Never edit an applied one: add a file to both dialects and a line here.
macro_rules! migrations {
    ($dialect:literal) => {
        &[
            (1, include_str!(concat!("../../../migrations/", $dialect, "/0001_init.sql"))),
            (2, include_str!(concat!("../../../migrations/", $dialect, "/0002_ports.sql"))),
            (3, include_str!(concat!("../../../migrations/", $dialect, "/0003_quotas.sql"))),
            (4, include_str!(concat!("../../../migrations/", $dialect, "/0004_roles.sql"))),
            (5, include_str!(concat!("../../../migrations/", $dialect, "/0005_audit.sql"))),
            (6, include_str!(concat!("../../../migrations/", $dialect, "/0006_task_retention.sql"))),
            (7, include_str!(concat!("../../../migrations/", $dialect, "/0007_observe.sql"))),
            (8, include_str!(concat!("../../../migrations/", $dialect, "/0008_host_revisions.sql"))),
        ]
    };
}

pub(crate) const SQLITE: Migrations = migrations!("sqlite");
pub(crate) const POSTGRES: Migrations = migrations!("postgres");

/// What the runner needs of one backend connection.
pub(crate) trait MigrationConnection {
    /// The backend's name, for the log.
    const BACKEND: &'static str;
    /// Creates `schema_migrations` if it is missing (the column types are each dialect's own).
    const CREATE_TABLE: &'static str;
    /// Opens a migration's transaction; for SQLite it takes the write lock before the version
    /// is checked, so two processes opening one new file do not both apply a migration.
    const BEGIN: &'static str;

    /// Runs statements without parameters (a migration file, `BEGIN`, `COMMIT`).
    fn batch(&mut self, sql: &str) -> StoreResult<()>;
    /// Whether `version` is recorded (inside the migration's transaction).
    fn is_applied(&mut self, version: i64) -> StoreResult<bool>;
    /// Records `version` as applied at `applied_at` (inside the migration's transaction).
    fn record(&mut self, version: i64, applied_at: i64) -> StoreResult<()>;
    /// Every recorded version; none when the table does not exist yet. Reads only.
    fn applied_versions(&mut self) -> StoreResult<Vec<i64>>;
    /// Keeps other nodes from migrating until [`MigrationConnection::unlock`] (a no-op where
    /// one process owns the database).
    fn lock(&mut self) -> StoreResult<()>;
    fn unlock(&mut self) -> StoreResult<()>;
}

/// Applies the pending migrations of `migrations`, each in its own transaction.
pub(crate) fn apply_pending(conn: &mut impl MigrationConnection, migrations: Migrations) -> StoreResult<()> {
    conn.lock()?;
    let result = apply_unlocked(conn, migrations);
    // Unlock even when a migration failed; the first error is the one worth reporting.
    let unlocked = conn.unlock();
    result.and(unlocked)
}

fn apply_unlocked<C: MigrationConnection>(conn: &mut C, migrations: Migrations) -> StoreResult<()> {
    conn.batch(C::CREATE_TABLE)?;
    for &(version, sql) in migrations {
        conn.batch(C::BEGIN)?;
        let applied = conn.is_applied(version).and_then(|applied| {
            if !applied {
                conn.batch(sql)?;
                conn.record(version, now_ms())?;
            }
            Ok(applied)
        });
        match applied {
            Ok(applied) => {
                conn.batch("COMMIT")?;
                if !applied {
                    tracing::info!(version, backend = C::BACKEND, "applied migration");
                }
            }
            Err(e) => {
                // The migration's error is what the operator needs; a failed rollback adds nothing.
                let _ = conn.batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Refuses a schema that lacks migrations this build needs (for a node started without migrating).
pub(crate) fn check_current(conn: &mut impl MigrationConnection, migrations: Migrations) -> StoreResult<()> {
    let applied = conn.applied_versions()?;
    let missing: Vec<String> = migrations.iter().filter(|(v, _)| !applied.contains(v)).map(|(v, _)| v.to_string()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(StoreError::Internal(format!(
        "the database schema lacks migration(s) {} that this build needs: run `palisade migrate`",
        missing.join(", ")
    )))
}
