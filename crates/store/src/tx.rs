//! What a transaction can do, one trait per resource. [`Tx`] is their sum: closures take
//! `&mut dyn Tx`, and every backend's transaction handle is a `Tx` by implementing the parts.
//!
//! Why split: one trait of some fifty methods made every backend file one long `impl` and hid
//! which statements belong together. Each part here is one resource's rows (and the locks that
//! guard them), implemented per backend in `sqlite/<resource>.rs` and `postgres/<resource>.rs`.
//! Callers import them all with `use palisade_store::prelude::*`.

use palisade_core::group::{Group, Scope};
use palisade_core::observe::{FlowLogEvents, FlowRecord};
use palisade_core::port::Port;
use palisade_core::quota::{Limits, Usage};
use palisade_core::{Rule, Tag};
use uuid::Uuid;

use crate::observe::{FlowLogFilter, FlowLogTarget, RuleHitsRecord, StoredFlow};
use crate::pending::HostRevision;
use crate::{
    AckFilter, AgentRecord, ApiKey, AuditEvent, AuditFilter, GroupFilter, NewApiKey, PortFilter, StoreResult, TaskFilter, TaskRecord,
};

/// Everything a transaction can do: the sum of the per-resource traits, so a closure needs one
/// `&mut dyn Tx` whatever it touches.
pub trait Tx: GroupTx + QuotaTx + PortTx + SavepointTx + TaskTx + KeyTx + AuditTx + TransferTx + ObserveTx {}

impl<T: GroupTx + QuotaTx + PortTx + SavepointTx + TaskTx + KeyTx + AuditTx + TransferTx + ObserveTx + ?Sized> Tx for T {}

/// Security groups with their rules and tags, and the per-scope usage the database keeps for
/// them: the tenant's own resources. Group reads return whole groups (rules and tags included).
pub trait GroupTx {
    fn get_group(&mut self, scope: &Scope, id: Uuid) -> StoreResult<Option<Group>>;
    fn group_exists(&mut self, scope: &Scope, id: Uuid) -> StoreResult<bool>;
    fn list_groups(&mut self, scope: &Scope, filter: &GroupFilter) -> StoreResult<(u64, Vec<Group>)>;
    /// Groups by id, whatever their scope (the data plane reads the groups ports are bound to).
    fn groups_by_ids(&mut self, ids: &[Uuid]) -> StoreResult<Vec<Group>>;
    /// Inserts the group with its rules and tags.
    fn insert_group(&mut self, group: &Group) -> StoreResult<()>;
    /// Writes name, description, updated_at and revision_number.
    fn update_group(&mut self, group: &Group) -> StoreResult<()>;
    /// Deletes the group with its rules and tags; false when it did not exist.
    fn delete_group(&mut self, scope: &Scope, id: Uuid) -> StoreResult<bool>;
    fn replace_tags(&mut self, group_id: Uuid, tags: &[Tag]) -> StoreResult<()>;
    /// Inserts a rule of a group of `scope` (the scope's usage is counted at commit).
    fn insert_rule(&mut self, scope: &Scope, rule: &Rule) -> StoreResult<()>;
    /// Deletes a rule of a group of `scope`; false when it did not exist.
    fn delete_rule(&mut self, scope: &Scope, rule_id: Uuid) -> StoreResult<bool>;
    /// The group (in `scope`) holding rule `rule_id`.
    fn group_of_rule(&mut self, scope: &Scope, rule_id: Uuid) -> StoreResult<Option<Uuid>>;
    /// Rules of other groups that name `group_id` as their remote group: (rule id, its group id).
    fn rules_referencing(&mut self, group_id: Uuid) -> StoreResult<Vec<(Uuid, Uuid)>>;
    fn count_groups(&mut self, scope: &Scope) -> StoreResult<u64>;
    /// Groups and rules of the scope, read in O(1): the stored count (kept by the store at the
    /// end of each write transaction, see `crate::pending`) plus this transaction's changes.
    fn usage(&mut self, scope: &Scope) -> StoreResult<Usage>;
}

/// Per-scope limits and the lock that makes a quota check atomic with the write it guards: kept
/// apart from groups because the operator, not the tenant, owns these rows.
pub trait QuotaTx {
    /// Serialises writers of one scope until the transaction ends, so quota checks are atomic
    /// with the writes they guard (a no-op where the store has a single writer).
    fn lock_scope(&mut self, scope: &Scope) -> StoreResult<()>;
    /// The scope's own limits, if any were set.
    fn get_quota(&mut self, scope: &Scope) -> StoreResult<Option<Limits>>;
    fn set_quota(&mut self, scope: &Scope, limits: &Limits) -> StoreResult<()>;
}

/// The data plane's rows (migration 0002_ports): ports and their bound groups, the per-host lock
/// of the port registry, each host's policy revision (migration 0008) and what each host's agent
/// applied. A write transaction that changes a host's policy (a rule of a group bound on the
/// host, a port there, the members of a remote group its rules name) bumps that host's revision
/// once, before it commits (`crate::pending`); no other host's.
pub trait PortTx {
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
    /// The highest policy revision of any host (0 when no host has one).
    fn policy_revision(&mut self) -> StoreResult<i64>;
    /// The policy revision of `host` (0 when nothing ever changed its policy).
    fn host_revision(&mut self, host: &str) -> StoreResult<i64>;
    /// The revisions of those of `hosts` that have one.
    fn host_revisions(&mut self, hosts: &[String]) -> StoreResult<Vec<HostRevision>>;
    /// Bumps now the revision of every host whose policy this transaction changed since the
    /// last flush, and returns those hosts with their new revisions. The store does it anyway
    /// before COMMIT; a caller flushes itself to learn the hosts of one change (the worker, per
    /// task) — `?wait_for_agents` waits for exactly them.
    fn flush_policy(&mut self) -> StoreResult<Vec<HostRevision>>;
    /// Records the revision a host's agent reports it applied.
    fn report_agent(&mut self, agent: &AgentRecord) -> StoreResult<()>;
    /// Every host's agent report, by host name, with the host's current policy revision.
    fn list_agents(&mut self) -> StoreResult<Vec<(AgentRecord, i64)>>;
}

/// One nested savepoint, so one task of a batch can fail without undoing the others. It is the
/// transaction's own control rather than a resource, so each backend implements it next to its
/// transaction handle.
pub trait SavepointTx {
    fn savepoint(&mut self) -> StoreResult<()>;
    fn release_savepoint(&mut self) -> StoreResult<()>;
    fn rollback_to_savepoint(&mut self) -> StoreResult<()>;
}

/// The task queue: the rows a request writes next to its resource, the worker claims and
/// finishes, clients list and acknowledge, and retention prunes.
pub trait TaskTx {
    fn insert_task(&mut self, task: &TaskRecord) -> StoreResult<()>;
    /// Tasks in NEW (or RUNNING with an expired lease), oldest first.
    fn pending_tasks(&mut self, now_ms: i64, limit: u32) -> StoreResult<Vec<TaskRecord>>;
    /// Claims the oldest pending task that no other transaction holds and whose scope is not in
    /// `skip`, and takes its scope's lock ([`QuotaTx::lock_scope`]) if that is free at once:
    /// never waits for another transaction, so a hung holder stalls only its own scope. For
    /// stores where several nodes run tasks, one task per transaction.
    fn claim_task(&mut self, skip: &[Scope]) -> StoreResult<Option<TaskClaim>>;
    /// Writes state, error, created_resources, updated_on, finished_on and the acknowledgement.
    fn update_task(&mut self, task: &TaskRecord) -> StoreResult<()>;
    /// Records the hosts (with their new revisions) whose policy task `id` changed.
    fn set_task_policy_hosts(&mut self, id: &str, hosts: &[HostRevision]) -> StoreResult<()>;
    /// The hosts whose policy any of the client's tasks `ids` changed, with the revisions.
    fn task_policy_hosts(&mut self, client_id: i64, ids: &[String]) -> StoreResult<Vec<HostRevision>>;
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
}

/// What [`TaskTx::claim_task`] got. Either way the task row is held until the transaction ends.
#[derive(Debug)]
pub enum TaskClaim {
    /// The task and its scope's lock: run it now.
    Ready(TaskRecord),
    /// Another transaction holds the task's scope: skip that scope for now.
    ScopeBusy(TaskRecord),
}

/// API keys, looked up on every request by token hash: authentication's only table.
pub trait KeyTx {
    fn insert_key(&mut self, key: &NewApiKey) -> StoreResult<i64>;
    fn find_key(&mut self, token_hash: &str) -> StoreResult<Option<ApiKey>>;
    fn list_keys(&mut self) -> StoreResult<Vec<ApiKey>>;
    fn revoke_key(&mut self, id: i64, now_ms: i64) -> StoreResult<bool>;
}

/// The audit log (migration 0005_audit): appended in the transaction of each change, read by
/// operators and tenants, pruned by retention.
pub trait AuditTx {
    /// Appends an event (its `id` is assigned by the store).
    fn insert_audit(&mut self, event: &AuditEvent) -> StoreResult<()>;
    /// The events matching the filter, newest first, and how many match over all pages.
    fn list_audit(&mut self, filter: &AuditFilter) -> StoreResult<(u64, Vec<AuditEvent>)>;
    /// Deletes up to `limit` of the oldest events older than `before_ms`; returns how many.
    fn prune_audit(&mut self, before_ms: i64, limit: u32) -> StoreResult<u64>;
}

/// Export and import (moving an installation between backends, see `transfer`): whole-table
/// reads across every client, and the writes that keep ids, hashes and revisions. Only
/// `palisade export` and `palisade import` use them. Positions are opaque creation-order
/// cursors: pass 0 to start, then the last position returned.
pub trait TransferTx {
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
    /// Raises the policy revisions to at least `revision` (never lowers one), so agents that
    /// applied a revision of the exported store see a newer one after an import.
    fn raise_policy_revision(&mut self, revision: i64) -> StoreResult<()>;
}

/// What agents observe (migration 0007_observe): per-rule, per-port hit counts, the flow-log
/// settings of ports and groups (a change bumps the revisions of the hosts concerned), and the
/// flow records, bounded per client and by age.
pub trait ObserveTx {
    /// Adds hit deltas to the (rule, port) counts; entries of rules that no longer exist are
    /// skipped. Returns how many were counted.
    fn add_rule_hits(&mut self, hits: &[RuleHitsRecord]) -> StoreResult<u64>;
    /// The counts of these rules, on every port that has some.
    fn rule_hits(&mut self, rule_ids: &[Uuid]) -> StoreResult<Vec<RuleHitsRecord>>;
    /// Sets (`Some`) or removes (`None`) the flow-log setting of a port or group of `client_id`.
    fn set_flow_log(&mut self, target: FlowLogTarget, client_id: i64, events: Option<FlowLogEvents>) -> StoreResult<()>;
    fn get_flow_log(&mut self, target: FlowLogTarget) -> StoreResult<Option<FlowLogEvents>>;
    /// The settings of any of these ports and groups.
    fn flow_log_settings(&mut self, port_ids: &[Uuid], group_ids: &[Uuid]) -> StoreResult<Vec<(FlowLogTarget, FlowLogEvents)>>;
    /// Appends records of `client_id` (times in ms), then deletes the client's oldest records
    /// beyond its newest `cap`. Returns how many were deleted.
    fn insert_flows(&mut self, client_id: i64, records: &[FlowRecord], cap: u64) -> StoreResult<u64>;
    /// The records matching the filter, newest first, and how many match in all.
    fn list_flows(&mut self, filter: &FlowLogFilter) -> StoreResult<(u64, Vec<StoredFlow>)>;
    /// Deletes up to `limit` of the oldest records of minutes before `before_ms`; returns how many.
    fn prune_flows(&mut self, before_ms: i64, limit: u32) -> StoreResult<u64>;
}
