//! Enqueuing v2 work: a task row written in the request's transaction, then the worker woken.

use palisade_core::group::Scope;
use palisade_store::{TaskRecord, TaskState, Tx};
use palisade_worker::now_ms;
use palisade_worker::payload::TaskPayload;
use serde_json::Value;
use uuid::Uuid;

use crate::error::ApiError;
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

/// Stores the task inside `tx`; returns its id. A client with `open_limit` unfinished tasks
/// already gets a 429 instead, so one client's flood cannot grow the queue without bound.
pub fn enqueue(tx: &mut dyn Tx, task: &TaskRecord, open_limit: u32) -> Result<String, ApiError> {
    if open_limit > 0 && tx.count_open_tasks(task.client_id)? >= u64::from(open_limit) {
        return Err(ApiError::TooManyRequests {
            message: format!("This client has {open_limit} unfinished tasks; retry when some have finished"),
            retry_after: 1,
        });
    }
    tx.insert_task(task)?;
    Ok(task.id.clone())
}

#[cfg(test)]
mod tests {
    use palisade_store::{Database, Store};

    use super::*;

    /// A rule-delete task of `client_id`, made as a request makes it.
    fn task_of(client_id: i64) -> TaskRecord {
        let caller = Caller { key_id: 1, role: crate::access::Role::Tenant, client_id, user_id: 1, projects: None, host: None };
        let scope = Scope { client_id, project_id: 1, region_id: 1 };
        let payload = TaskPayload::DeleteRule { group_id: Uuid::new_v4(), rule_id: Uuid::new_v4() };
        new_task(&caller, &scope, &payload, Value::Null)
    }

    #[test]
    fn a_client_at_its_unfinished_task_limit_gets_429_and_others_do_not() {
        let path = std::env::temp_dir().join(format!("palisade-queue-{}.db", Uuid::new_v4().simple()));
        let db = Database::open(&format!("sqlite:{}", path.display()), "normal").unwrap();
        for _ in 0..3 {
            db.write(|tx| enqueue(tx, &task_of(1), 3)).expect("below the limit");
        }
        let refused = db.write(|tx| enqueue(tx, &task_of(1), 3));
        assert!(matches!(refused, Err(ApiError::TooManyRequests { retry_after: 1, .. })), "{refused:?}");
        assert_eq!(db.read(|tx| tx.count_open_tasks(1)).unwrap(), 3, "the refused task was not stored");
        db.write(|tx| enqueue(tx, &task_of(2), 3)).expect("another client has its own count");
        db.write(|tx| enqueue(tx, &task_of(1), 0)).expect("0: no limit");
        drop(db);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
