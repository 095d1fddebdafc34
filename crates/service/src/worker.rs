//! The worker loop: claims pending task rows, applies their mutation and finishes the task in the
//! same transaction, so a crash never leaves a half-applied change and a finished task never runs
//! twice. On SQLite one commit covers a batch; on PostgreSQL, where several nodes run tasks, each
//! task has its own transaction and scope locks are tried, never waited for (see
//! [`Worker::try_execute_batch`]). The ids of every commit's tasks are announced on
//! [`FinishedTasks`], which is what requests waiting for their tasks listen to
//! (`crate::queue::wait_for_tasks`).

use std::sync::Arc;
use std::time::Duration;

use palisade_core::group::Scope;
use palisade_core::input::parse_rule_lenient;
use palisade_core::{RuleDraft, RuleError};
use palisade_store::{Database, Store, StoreError, StoreResult, TaskClaim, TaskRecord, TaskState, Tx, now_ms};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::audit::{Action, Actor, Change};
use crate::ops::{NewGroup, OpError, OpResult, Settings};
use crate::payload::{self, TaskPayload};
use crate::{audit, ops};

/// How many tasks one SQLite transaction executes at most. Batching amortises the commit.
const BATCH: u32 = 128;

#[derive(Clone)]
pub struct Worker {
    store: Arc<Database>,
    wake: Arc<Notify>,
    settings: Arc<Settings>,
    /// Told the ids of every committed batch.
    done: FinishedTasks,
}

/// Where the worker announces the ids of each batch of tasks it committed.
pub type FinishedTasks = tokio::sync::broadcast::Sender<Arc<Vec<String>>>;

impl Worker {
    pub fn new(store: Arc<Database>, wake: Arc<Notify>, settings: Arc<Settings>, done: FinishedTasks) -> Worker {
        Worker { store, wake, settings, done }
    }

    /// Executes pending tasks once over; returns how many ran. See [`Worker::drain`].
    pub fn try_execute_batch(&self) -> StoreResult<usize> {
        Ok(self.drain()?.ran)
    }

    /// One pass over the pending tasks. On SQLite (one writer, one node) a batch of up to
    /// [`BATCH`] tasks shares one commit. Where several nodes run tasks (PostgreSQL), every task
    /// has its own transaction and a task whose scope another transaction holds is skipped for
    /// this pass: a node that hangs inside a task then holds one task and one scope, never a
    /// batch, and never makes this node wait.
    fn drain(&self) -> StoreResult<Drained> {
        if self.store.tasks_run_locally() { self.execute_batch() } else { self.execute_one_at_a_time() }
    }

    fn execute_batch(&self) -> StoreResult<Drained> {
        let finished = self.store.write(|tx| {
            let now = now_ms();
            let tasks = tx.pending_tasks(now, BATCH)?;
            let mut finished = Vec::with_capacity(tasks.len());
            for task in tasks {
                finished.push(self.run_task(tx, task, now)?);
            }
            Ok::<_, StoreError>(finished)
        })?;
        let ran = finished.len();
        self.announce(finished);
        Ok(Drained { ran, skipped_scopes: 0 })
    }

    fn execute_one_at_a_time(&self) -> StoreResult<Drained> {
        // Scopes passed over in this pass: held by another transaction, or a task of theirs
        // failed on a lock or connection (lock_timeout, deadlock) and is retried next pass.
        let mut busy: Vec<Scope> = Vec::new();
        let mut ran = 0;
        loop {
            let mut running = None;
            let claimed = self.store.write(|tx| match tx.claim_task(&busy)? {
                None => Ok(Claimed::Nothing),
                Some(TaskClaim::ScopeBusy(task)) => Ok(Claimed::ScopeBusy(task_scope(&task))),
                Some(TaskClaim::Ready(task)) => {
                    running = Some(task_scope(&task));
                    self.run_task(tx, task, now_ms()).map(Claimed::Ran)
                }
            });
            match claimed {
                Ok(Claimed::Nothing) => return Ok(Drained { ran, skipped_scopes: busy.len() }),
                Ok(Claimed::ScopeBusy(scope)) => busy.push(scope),
                Ok(Claimed::Ran(id)) => {
                    ran += 1;
                    self.announce(vec![id]);
                }
                Err(e) => match running {
                    Some(scope) => {
                        tracing::warn!(error = %e, project_id = scope.project_id, "task failed on the database; its scope waits for the next pass");
                        busy.push(scope);
                    }
                    None => return Err(e),
                },
            }
        }
    }

    /// Runs one claimed task in `tx` under a savepoint, so that its failure undoes its mutation
    /// but still records it as ERROR; the task's audit event is written with its completion.
    /// Returns the task's id.
    fn run_task(&self, tx: &mut dyn Tx, mut task: TaskRecord, now: i64) -> StoreResult<String> {
        let payload: TaskPayload = serde_json::from_value(task.payload.clone())
            .map_err(|e| StoreError::Internal(format!("task {} has an unreadable payload: {e}", task.id)))?;
        let change = task_change(&task, &payload);
        tx.savepoint()?;
        match execute(tx, &task, payload, &self.settings, now) {
            Ok(done) => {
                tx.release_savepoint()?;
                // The hosts this task changed, for `?wait_for_agents` (which may be on another node).
                let hosts = tx.flush_policy()?;
                if !hosts.is_empty() {
                    tx.set_task_policy_hosts(&task.id, &hosts)?;
                }
                task.state = TaskState::Finished;
                task.created_resources = done.created_resources;
                let mut summary = done.summary;
                summary["task_id"] = json!(task.id);
                audit::record(tx, &task_actor(&task), change.summary(summary))?;
            }
            Err(OpError::Store(e)) => return Err(e),
            Err(e) => {
                tx.rollback_to_savepoint()?;
                task.state = TaskState::Error;
                let message = task_error_message(&e);
                let summary = json!({"task_id": task.id, "error": message});
                audit::record(tx, &task_actor(&task), change.failed(audit::outcome_of(&e)).summary(summary))?;
                task.error = Some(message);
            }
        }
        task.updated_on = Some(now);
        task.finished_on = Some(now);
        tx.update_task(&task)?;
        tracing::debug!(task_id = %task.id, task_type = %task.task_type, state = task.state.as_str(), "task done");
        Ok(task.id)
    }

    /// Tells whoever waits for these tasks that they can now read them finished (after the
    /// commit). Nobody listening is fine.
    fn announce(&self, finished: Vec<String>) {
        if !finished.is_empty() {
            let _ = self.done.send(Arc::new(finished));
        }
    }

    /// Runs passes until one runs nothing (the test hook); returns how many tasks ran.
    pub fn run_until_idle(&self) -> StoreResult<usize> {
        Ok(self.drain_until_idle()?.ran)
    }

    fn drain_until_idle(&self) -> StoreResult<Drained> {
        let mut total = 0;
        loop {
            match self.drain()? {
                Drained { ran: 0, skipped_scopes } => return Ok(Drained { ran: total, skipped_scopes }),
                Drained { ran, .. } => total += ran,
            }
        }
    }

    /// The worker loop: wakes on `wake` (every new task notifies it) or every second, and drains
    /// pending tasks. When a pass skipped scopes that other transactions held, it looks again
    /// soon (backing off while they stay held), since a holder's commit notifies nobody. On
    /// shutdown it drains once more, so accepted tasks finish before exit.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut recheck = RECHECK_BUSY_MIN;
        loop {
            let worker = self.clone();
            let mut skipped = false;
            match tokio::task::spawn_blocking(move || worker.drain_until_idle()).await {
                Ok(Ok(drained)) => skipped = drained.skipped_scopes > 0,
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "task batch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => tracing::error!(error = %e, "task batch panicked"),
            }
            if *shutdown.borrow() {
                return;
            }
            let idle = if skipped {
                let wait = recheck;
                recheck = (recheck * 2).min(IDLE_POLL);
                wait
            } else {
                recheck = RECHECK_BUSY_MIN;
                IDLE_POLL
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(idle) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// What one pass did.
struct Drained {
    ran: usize,
    /// Scopes with pending tasks that the pass passed over (held elsewhere).
    skipped_scopes: usize,
}

/// What one claiming transaction got.
enum Claimed {
    Nothing,
    ScopeBusy(Scope),
    Ran(String),
}

/// How long an idle worker sleeps when nothing wakes it.
const IDLE_POLL: Duration = Duration::from_secs(1);
/// How soon a worker looks again at scopes that were held by other transactions (doubling up to
/// [`IDLE_POLL`] while they stay held): holders are usually another node's task or request, done
/// within milliseconds.
const RECHECK_BUSY_MIN: Duration = Duration::from_millis(20);

/// The scope a task writes in (and whose lock it takes).
fn task_scope(task: &TaskRecord) -> Scope {
    Scope { client_id: task.client_id, project_id: task.project_id.unwrap_or_default(), region_id: task.region_id.unwrap_or_default() }
}

fn task_error_message(e: &OpError) -> String {
    match e {
        OpError::Rule(RuleError::Invalid { field, message }) => format!("{field}: {message}"),
        OpError::Invalid(fields) => fields.to_string(),
        other => other.to_string(),
    }
}

/// Who asked for a task: the key stored in its payload, and the user and request of its row.
/// Tasks queued before the audit log name no key; every key was a tenant's then.
fn task_actor(task: &TaskRecord) -> Actor {
    let requester = payload::requester(&task.payload);
    Actor {
        key_id: requester.as_ref().map(|r| r.key_id),
        role: requester.map(|r| r.role).unwrap_or_else(|| "tenant".into()),
        user_id: Some(task.user_id),
        request_id: task.request_id.clone(),
    }
}

/// The audit event a task leaves, before its outcome and summary are known.
fn task_change(task: &TaskRecord, payload: &TaskPayload) -> Change {
    let place = audit::Place { client_id: Some(task.client_id), project_id: task.project_id, region_id: task.region_id };
    let (action, group_id) = match payload {
        TaskPayload::CreateGroup { group_id, .. } => (Action::GroupCreate, group_id),
        TaskPayload::UpdateGroup { group_id, .. } => (Action::GroupUpdate, group_id),
        TaskPayload::CreateRule { group_id, .. } => (Action::RuleCreate, group_id),
        TaskPayload::DeleteRule { group_id, .. } => (Action::RuleDelete, group_id),
    };
    Change::new(action, place, group_id)
}

/// The rules of a task's payload. The API checked them against Gcore's schema when it queued the
/// task; they are read with Neutron's spellings too, so that tasks queued by earlier versions
/// (which accepted `TCP` or `6`) still run.
fn drafts(values: &[Value], field: &str) -> OpResult<Vec<RuleDraft>> {
    values.iter().enumerate().map(|(i, v)| parse_rule_lenient(v, &format!("{field}.{i}")).map_err(OpError::Invalid)).collect()
}

/// What a task did: its `created_resources`, and the summary of its audit event.
pub struct Done {
    pub created_resources: Option<Value>,
    pub summary: Value,
}

/// Runs one task's mutation.
pub fn execute(tx: &mut dyn Tx, task: &TaskRecord, payload: TaskPayload, settings: &Settings, now: i64) -> OpResult<Done> {
    let scope = task_scope(task);
    match payload {
        TaskPayload::CreateGroup { group_id, name, description, rules, tags } => {
            let rules = rules.as_deref().map(|r| drafts(r, "rules")).transpose()?;
            let new = NewGroup { id: group_id, name: &name, description: &description, rules: rules.as_deref(), tags: &tags };
            let group = ops::create_group(tx, &scope, new, settings, now)?;
            let rule_ids: Vec<String> = group.rules.iter().map(|r| r.id.to_string()).collect();
            Ok(Done {
                created_resources: Some(json!({"security_groups": [group.id.to_string()], "security_group_rules": rule_ids})),
                summary: audit::group_created(&group),
            })
        }
        TaskPayload::UpdateGroup { group_id, name, description, rules } => {
            let rules = rules.as_deref().map(|r| drafts(r, "rules")).transpose()?;
            let before = ops::load_group_for_change(tx, &scope, group_id)?;
            let (after, added) =
                ops::update_group(tx, &scope, group_id, name.as_deref(), description.as_deref(), rules.as_deref(), settings, now)?;
            Ok(Done {
                created_resources: (!added.is_empty())
                    .then(|| json!({"security_group_rules": added.iter().map(|id| id.to_string()).collect::<Vec<_>>()})),
                summary: audit::group_changes(&before, &after),
            })
        }
        TaskPayload::CreateRule { group_id, rule } => {
            let draft = parse_rule_lenient(&rule, "").map_err(OpError::Invalid)?;
            let rule = ops::add_rule(tx, &scope, group_id, &draft, settings, now)?;
            Ok(Done {
                created_resources: Some(json!({"security_group_rules": [rule.id.to_string()]})),
                summary: audit::rules_changed(&[rule.id], &[]),
            })
        }
        TaskPayload::DeleteRule { group_id, rule_id } => {
            ops::delete_rule(tx, &scope, Some(group_id), rule_id, now)?;
            Ok(Done { created_resources: None, summary: audit::rules_changed(&[], &[rule_id]) })
        }
    }
}
