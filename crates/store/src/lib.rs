//! Durable state: security groups, rules, tags, the task queue, API keys and the audit log.
//!
//! [`Store`] is the one interface; [`sqlite::SqliteStore`] is the embedded default and
//! [`postgres::PgStore`] the shared store of several nodes. A store hands
//! out transactions ([`Tx`]) to closures: `write` commits when the closure returns `Ok` and rolls
//! back otherwise, so a request's resource and task rows, or a task's mutation and its completion,
//! land together or not at all. This crate knows nothing of HTTP.
//!
//! Layout: `tx` splits what a transaction can do by resource ([`GroupTx`], [`QuotaTx`],
//! [`PortTx`], [`TaskTx`], [`KeyTx`], [`AuditTx`], [`TransferTx`], [`SavepointTx`]); each backend
//! implements them in `sqlite/<resource>.rs` and `postgres/<resource>.rs`. What the two backends
//! share is written once: `sql` (column lists and the statements both dialects run word for
//! word), `rows` (the row decoders) and `migrate` (the migration runner).

pub mod keys;
pub mod observe;
pub mod postgres;
pub mod records;
pub mod sqlite;
pub mod transfer;

mod database;
mod migrate;
mod pending;
mod rows;
mod sql;
mod tx;

pub use database::Database;
pub use pending::{HostRevision, PolicyListener, notification as policy_notification, parse_notification as parse_policy_notification};
pub use tx::{AuditTx, GroupTx, KeyTx, ObserveTx, PortTx, QuotaTx, SavepointTx, TaskClaim, TaskTx, TransferTx, Tx};

/// The store's traits in one import (`use palisade_store::prelude::*;`). Calling methods on a
/// `&mut dyn Tx` needs only `Tx` in scope (a trait object's supertrait methods are found without
/// importing them); code that names the parts, such as a helper taking `&mut dyn PortTx`, or
/// implements them, needs those traits, and this brings them all.
pub mod prelude {
    pub use crate::{AuditTx, GroupTx, KeyTx, ObserveTx, PortTx, QuotaTx, SavepointTx, Store, TaskTx, TransferTx, Tx};
}

pub use records::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or is busy beyond our patience: retry later (503).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else the database reported: a bug or corruption (500).
    #[error("database error: {0}")]
    Internal(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The time every stored timestamp uses: unix milliseconds, UTC.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A database that runs closures in transactions.
pub trait Store: Send + Sync + 'static {
    /// A read-only snapshot.
    fn read<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E>;
    /// A serialised read-write transaction, committed when `f` returns `Ok`.
    fn write<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E>;
    /// Whether the database answers (readiness).
    fn ping(&self) -> StoreResult<()>;
}
