//! Enqueuing v2 work: a task row written in the request's transaction, then the worker woken.

use palisade_core::group::Scope;
use palisade_store::{TaskRecord, TaskState, Tx};
use palisade_worker::now_ms;
use palisade_worker::payload::TaskPayload;
use serde_json::Value;
use uuid::Uuid;

use crate::extract::Caller;
use crate::request_id;

/// A NEW task for `payload`; `data` is what clients see of its parameters.
pub fn new_task(caller: &Caller, scope: &Scope, payload: &TaskPayload, data: Value) -> TaskRecord {
    let request_id = request_id::current();
    TaskRecord {
        id: Uuid::new_v4().to_string(),
        client_id: caller.client_id,
        user_id: caller.user_id,
        project_id: Some(scope.project_id),
        region_id: Some(scope.region_id),
        task_type: payload.task_type().to_string(),
        state: TaskState::New,
        request_id: (!request_id.is_empty()).then_some(request_id),
        data: Some(data),
        // The operation, and who asked for it: the worker names them in the task's audit event.
        payload: payload.to_row(&crate::audit::requester(caller)),
        error: None,
        created_resources: None,
        created_on: now_ms(),
        updated_on: None,
        finished_on: None,
        acknowledged_at: None,
        acknowledged_by: None,
    }
}

/// Stores the task inside `tx`; returns its id.
pub fn enqueue(tx: &mut dyn Tx, task: &TaskRecord) -> palisade_store::StoreResult<String> {
    tx.insert_task(task)?;
    Ok(task.id.clone())
}
