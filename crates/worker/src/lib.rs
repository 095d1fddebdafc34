//! Executes tasks: claims pending task rows, applies their mutation and finishes the task in the
//! same transaction, so a crash never leaves a half-applied change and a finished task never runs
//! twice. Also home of [`ops`], the mutations the synchronous v1 endpoints share with tasks, and
//! of [`audit`], which records every change in the change's own transaction.
//!
//! Depends on `core` and `store`; knows nothing of HTTP.

pub mod audit;
pub mod ops;
pub mod payload;
pub mod ports;
pub mod retention;

use std::sync::Arc;
use std::time::Duration;

use palisade_core::group::Scope;
use palisade_core::input::parse_rule_lenient;
use palisade_core::{RuleDraft, RuleError};
use palisade_store::{Database, Store, StoreError, StoreResult, TaskRecord, TaskState, Tx};
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};

use crate::audit::{Action, Actor, Change};
use crate::ops::{NewGroup, OpError, OpResult, Settings};
use crate::payload::TaskPayload;

/// How many tasks one transaction executes at most. Batching amortises the commit.
const BATCH: u32 = 128;

pub use palisade_store::now_ms;

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

    /// Executes one batch of pending tasks; returns how many ran.
    pub fn try_execute_batch(&self) -> StoreResult<usize> {
        let finished = self.store.write(|tx| {
            let now = now_ms();
            let tasks = tx.pending_tasks(now, BATCH)?;
            for mut task in tasks.iter().cloned() {
                let payload: TaskPayload = serde_json::from_value(task.payload.clone())
                    .map_err(|e| StoreError::Internal(format!("task {} has an unreadable payload: {e}", task.id)))?;
                let change = task_change(&task, &payload);
                tx.savepoint()?;
                // The task's audit event is written with its completion, in the same transaction.
                match execute(tx, &task, payload, &self.settings, now) {
                    Ok(done) => {
                        tx.release_savepoint()?;
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
            }
            Ok(tasks.into_iter().map(|t| t.id).collect::<Vec<_>>())
        })?;
        let ran = finished.len();
        if ran > 0 {
            // After the commit: whoever waits for these tasks can now read them finished.
            // Nobody listening is fine.
            let _ = self.done.send(Arc::new(finished));
        }
        Ok(ran)
    }

    /// Runs batches until no task is pending (the test hook).
    pub fn run_until_idle(&self) -> StoreResult<usize> {
        let mut total = 0;
        loop {
            match self.try_execute_batch()? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    /// The worker loop: wakes on `wake` (every new task notifies it) or every second, and drains
    /// pending tasks. On shutdown it drains once more, so accepted tasks finish before exit.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            let worker = self.clone();
            match tokio::task::spawn_blocking(move || worker.run_until_idle()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "task batch failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => tracing::error!(error = %e, "task batch panicked"),
            }
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
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
    let scope =
        Scope { client_id: task.client_id, project_id: task.project_id.unwrap_or_default(), region_id: task.region_id.unwrap_or_default() };
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
