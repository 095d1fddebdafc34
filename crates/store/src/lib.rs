//! Durable state: security groups, rules, tags, the task queue, API keys and the audit log.
//!
//! [`Store`] is the one interface; [`sqlite::SqliteStore`] is the embedded default and
//! [`postgres::PgStore`] the shared store of several nodes. A store hands
//! out transactions ([`Tx`]) to closures: `write` commits when the closure returns `Ok` and rolls
//! back otherwise, so a request's resource and task rows, or a task's mutation and its completion,
//! land together or not at all. This crate knows nothing of HTTP.

pub mod keys;
pub mod postgres;
pub mod records;
pub mod sqlite;
pub mod transfer;

mod database;
pub use database::Database;

use palisade_core::group::{Group, Scope};
use palisade_core::port::Port;
use palisade_core::quota::{Limits, Usage};
use palisade_core::{Rule, Tag};
use uuid::Uuid;

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

/// What a transaction can do. Group reads return whole groups (rules and tags included).
pub trait Tx {
    // Groups.
    fn get_group(&mut self, scope: &Scope, id: Uuid) -> StoreResult<Option<Group>>;
    fn group_exists(&mut self, scope: &Scope, id: Uuid) -> StoreResult<bool>;
    fn list_groups(&mut self, scope: &Scope, filter: &GroupFilter) -> StoreResult<(u64, Vec<Group>)>;
    /// Inserts the group with its rules and tags.
    fn insert_group(&mut self, group: &Group) -> StoreResult<()>;
    /// Writes name, description, updated_at and revision_number.
    fn update_group(&mut self, group: &Group) -> StoreResult<()>;
    /// Deletes the group with its rules and tags; false when it did not exist.
    fn delete_group(&mut self, scope: &Scope, id: Uuid) -> StoreResult<bool>;
    fn replace_tags(&mut self, group_id: Uuid, tags: &[Tag]) -> StoreResult<()>;
    fn insert_rule(&mut self, rule: &Rule) -> StoreResult<()>;
    fn delete_rule(&mut self, rule_id: Uuid) -> StoreResult<bool>;
    /// The group (in `scope`) holding rule `rule_id`.
    fn group_of_rule(&mut self, scope: &Scope, rule_id: Uuid) -> StoreResult<Option<Uuid>>;
    /// Rules of other groups that name `group_id` as their remote group: (rule id, its group id).
    fn rules_referencing(&mut self, group_id: Uuid) -> StoreResult<Vec<(Uuid, Uuid)>>;
    fn count_groups(&mut self, scope: &Scope) -> StoreResult<u64>;
    /// Groups and rules of the scope (kept by the database, read in O(1)).
    fn usage(&mut self, scope: &Scope) -> StoreResult<Usage>;

    // Quotas.
    /// Serialises writers of one scope until the transaction ends, so quota checks are atomic
    /// with the writes they guard (a no-op where the store has a single writer).
    fn lock_scope(&mut self, scope: &Scope) -> StoreResult<()>;
    /// The scope's own limits, if any were set.
    fn get_quota(&mut self, scope: &Scope) -> StoreResult<Option<Limits>>;
    fn set_quota(&mut self, scope: &Scope, limits: &Limits) -> StoreResult<()>;

    // Ports and the data plane (migrations 0002_ports). Every change of a rule, a port or a
    // binding grows the policy revision in the same transaction (database triggers).
    /// Inserts the port with its bindings (`security_group_ids`, in order).
    fn insert_port(&mut self, port: &Port) -> StoreResult<()>;
    /// Writes instance name, host, device, MAC, fixed IPs and updated_at (not the bindings).
    fn update_port(&mut self, port: &Port) -> StoreResult<()>;
    /// Replaces the port's bound groups, in order.
    fn set_port_groups(&mut self, port_id: Uuid, group_ids: &[Uuid]) -> StoreResult<()>;
    /// The port `id` of client `client_id` (`None`: of any client, for the platform and agents).
    fn get_port(&mut self, client_id: Option<i64>, id: Uuid) -> StoreResult<Option<Port>>;
    /// The client's ports matching the filter (`None`: every client's), in creation order.
    fn list_ports(&mut self, client_id: Option<i64>, filter: &PortFilter) -> StoreResult<Vec<Port>>;
    fn delete_port(&mut self, client_id: Option<i64>, id: Uuid) -> StoreResult<bool>;
    /// Serialises the port registry's writers of one host until the transaction ends, so the
    /// checks that a device or MAC is free on the host are atomic with the write they guard.
    fn lock_host(&mut self, host: &str) -> StoreResult<()>;
    /// Ports bound to any of `group_ids` (on any host), in creation order.
    fn ports_in_groups(&mut self, group_ids: &[Uuid]) -> StoreResult<Vec<Port>>;
    /// Groups by id, whatever their scope (the data plane reads the groups ports are bound to).
    fn groups_by_ids(&mut self, ids: &[Uuid]) -> StoreResult<Vec<Group>>;
    /// The global policy revision.
    fn policy_revision(&mut self) -> StoreResult<i64>;
    /// Records the revision a host's agent reports it applied.
    fn report_agent(&mut self, agent: &AgentRecord) -> StoreResult<()>;
    /// Every host's agent report, by host name.
    fn list_agents(&mut self) -> StoreResult<Vec<AgentRecord>>;

    // Savepoints, so one task of a batch can fail without undoing the others.
    fn savepoint(&mut self) -> StoreResult<()>;
    fn release_savepoint(&mut self) -> StoreResult<()>;
    fn rollback_to_savepoint(&mut self) -> StoreResult<()>;

    // Tasks.
    fn insert_task(&mut self, task: &TaskRecord) -> StoreResult<()>;
    /// Tasks in NEW (or RUNNING with an expired lease), oldest first.
    fn pending_tasks(&mut self, now_ms: i64, limit: u32) -> StoreResult<Vec<TaskRecord>>;
    /// Writes state, error, created_resources, updated_on, finished_on and the acknowledgement.
    fn update_task(&mut self, task: &TaskRecord) -> StoreResult<()>;
    fn get_task(&mut self, client_id: i64, id: &str) -> StoreResult<Option<TaskRecord>>;
    fn list_tasks(&mut self, client_id: i64, filter: &TaskFilter) -> StoreResult<(u64, Vec<TaskRecord>)>;
    /// Acknowledges the client's unacknowledged tasks matching the filters; returns how many.
    fn acknowledge_tasks(&mut self, client_id: i64, scope: &AckFilter, user_id: i64, now_ms: i64) -> StoreResult<u64>;
    /// The client's tasks in NEW or RUNNING.
    fn count_open_tasks(&mut self, client_id: i64) -> StoreResult<u64>;
    /// Deletes at most `limit` finished tasks (FINISHED or ERROR) that finished before
    /// `finished_before_ms`, or before `acknowledged_before_ms` and were acknowledged, oldest
    /// first; returns how many.
    fn prune_tasks(&mut self, finished_before_ms: i64, acknowledged_before_ms: i64, limit: u32) -> StoreResult<u64>;

    // API keys.
    fn insert_key(&mut self, key: &NewApiKey) -> StoreResult<i64>;
    fn find_key(&mut self, token_hash: &str) -> StoreResult<Option<ApiKey>>;
    fn list_keys(&mut self) -> StoreResult<Vec<ApiKey>>;
    fn revoke_key(&mut self, id: i64, now_ms: i64) -> StoreResult<bool>;

    // The audit log (migration 0005_audit).
    /// Appends an event (its `id` is assigned by the store).
    fn insert_audit(&mut self, event: &AuditEvent) -> StoreResult<()>;
    /// The events matching the filter, newest first, and how many match over all pages.
    fn list_audit(&mut self, filter: &AuditFilter) -> StoreResult<(u64, Vec<AuditEvent>)>;
    /// Deletes up to `limit` of the oldest events older than `before_ms`; returns how many.
    fn prune_audit(&mut self, before_ms: i64, limit: u32) -> StoreResult<u64>;

    // Export and import (moving an installation between backends, see `transfer`). Positions are
    // opaque creation-order cursors: pass 0 to start, then the last position returned.
    /// Groups of every scope (rules and tags included) after position `after`, in creation order.
    fn export_groups(&mut self, after: i64, limit: u32) -> StoreResult<Vec<(i64, Group)>>;
    /// Tasks of every client after position `after`, in creation order.
    fn export_tasks(&mut self, after: i64, limit: u32) -> StoreResult<Vec<(i64, TaskRecord)>>;
    /// Every API key with its token hash, by id.
    fn export_keys(&mut self) -> StoreResult<Vec<(ApiKey, String)>>;
    /// Every scope's own quota limits.
    fn export_quotas(&mut self) -> StoreResult<Vec<(Scope, Limits)>>;
    /// Inserts a key keeping its id and revocation, so its tokens stay valid.
    fn import_key(&mut self, key: &ApiKey, token_hash: &str) -> StoreResult<()>;
    /// Raises the global policy revision to at least `revision` (never lowers it), so agents
    /// that applied a revision of the exported store see a newer one after an import.
    fn raise_policy_revision(&mut self, revision: i64) -> StoreResult<()>;
}
