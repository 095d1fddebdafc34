//! The task queue: v2 writes store a task row in the request's transaction ([`new_task`],
//! [`enqueue`]), the worker runs it (`crate::worker`), and whoever wants to answer only once it
//! has ended waits for it with [`wait_for_tasks`].

use std::sync::Arc;
use std::time::Duration;

use palisade_core::group::Scope;
use palisade_store::{Database, StoreResult, TaskRecord, TaskState, Tx, now_ms};
use serde_json::Value;
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use uuid::Uuid;

use crate::audit::Actor;
use crate::blocking;
use crate::ops::{OpError, OpResult};
use crate::payload::{Requester, TaskPayload};

/// A NEW task of `scope` for `payload`, asked for by `actor`; `data` is what clients see of its
/// parameters. The task row keeps who asked (the key in its payload, the user and the request in
/// its columns), so the worker names them in the task's audit event.
pub fn new_task(actor: &Actor, scope: &Scope, payload: &TaskPayload, data: Value) -> TaskRecord {
    // Requests queue tasks, and a request's actor always names its key.
    let requester = Requester { key_id: actor.key_id.unwrap_or_default(), role: actor.role.clone() };
    TaskRecord {
        id: Uuid::new_v4().to_string(),
        client_id: scope.client_id,
        user_id: actor.user_id.unwrap_or_default(),
        project_id: Some(scope.project_id),
        region_id: Some(scope.region_id),
        task_type: payload.task_type().to_string(),
        state: TaskState::New,
        request_id: actor.request_id.clone(),
        data: Some(data),
        payload: payload.to_row(&requester),
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
/// already gets [`OpError::TooManyTasks`] instead (0: no limit).
pub fn enqueue(tx: &mut dyn Tx, task: &TaskRecord, open_limit: u32) -> OpResult<String> {
    if open_limit > 0 && tx.count_open_tasks(task.client_id)? >= u64::from(open_limit) {
        return Err(OpError::TooManyTasks { open_limit });
    }
    tx.insert_task(task)?;
    Ok(task.id.clone())
}

/// Waits until every task of `task_ids` (of `client_id`) has ended, or `until` passes; returns
/// whether they all ended. `finished` hears the batches this process's worker commits: subscribe
/// it before waking the worker, so no batch can end unseen. Tasks that other nodes run are seen
/// only in the database, read again every `recheck` (`None`: only when `finished` lags).
pub async fn wait_for_tasks(
    store: &Arc<Database>,
    mut finished: Receiver<Arc<Vec<String>>>,
    client_id: i64,
    task_ids: &[String],
    until: Instant,
    recheck: Option<Duration>,
) -> StoreResult<bool> {
    let mut pending: Vec<String> = task_ids.to_vec();
    loop {
        // The worker may have run them before `finished` was subscribed, or on another node.
        pending = unfinished(store, client_id, pending).await?;
        if pending.is_empty() {
            return Ok(true);
        }
        let look_again = recheck.map_or(until, |every| (Instant::now() + every).min(until));
        loop {
            match tokio::time::timeout_at(look_again, finished.recv()).await {
                Ok(Ok(ids)) => {
                    pending.retain(|id| !ids.contains(id));
                    if pending.is_empty() {
                        return Ok(true);
                    }
                }
                Ok(Err(RecvError::Lagged(_))) => break,
                // No worker announces any more: only the database can tell, at each recheck.
                Ok(Err(RecvError::Closed)) if recheck.is_some() => tokio::time::sleep_until(look_again).await,
                Ok(Err(RecvError::Closed)) => return Ok(false),
                Err(_) if Instant::now() >= until => return Ok(false),
                Err(_) => break,
            }
        }
    }
}

/// The tasks of `task_ids` that have not ended.
async fn unfinished(store: &Arc<Database>, client_id: i64, task_ids: Vec<String>) -> StoreResult<Vec<String>> {
    blocking::read(store, move |tx| {
        let mut open = Vec::new();
        for id in task_ids {
            if tx.get_task(client_id, &id)?.is_some_and(|t| !t.state.is_terminal()) {
                open.push(id);
            }
        }
        Ok(open)
    })
    .await
}

#[cfg(test)]
mod tests {
    use palisade_store::Store;

    use super::*;

    /// A test database in a file of its own, removed when dropped.
    struct TempDb {
        db: Arc<Database>,
        path: std::path::PathBuf,
    }

    impl TempDb {
        fn new() -> TempDb {
            let path = std::env::temp_dir().join(format!("palisade-queue-{}.db", Uuid::new_v4().simple()));
            let db = Database::open(&format!("sqlite:{}", path.display()), "normal").unwrap();
            TempDb { db: Arc::new(db), path }
        }
    }

    impl Drop for TempDb {
        fn drop(&mut self) {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", self.path.display()));
            }
        }
    }

    /// A rule-delete task of `client_id`, made as a request makes it.
    fn task_of(client_id: i64) -> TaskRecord {
        let actor = Actor { key_id: Some(1), role: "tenant".into(), user_id: Some(1), request_id: None };
        let scope = Scope { client_id, project_id: 1, region_id: 1 };
        let payload = TaskPayload::DeleteRule { group_id: Uuid::new_v4(), rule_id: Uuid::new_v4() };
        new_task(&actor, &scope, &payload, Value::Null)
    }

    #[test]
    fn a_client_at_its_unfinished_task_limit_is_refused_and_others_are_not() {
        let temp = TempDb::new();
        let db = &temp.db;
        for _ in 0..3 {
            db.write(|tx| enqueue(tx, &task_of(1), 3)).expect("below the limit");
        }
        let refused = db.write(|tx| enqueue(tx, &task_of(1), 3));
        assert!(matches!(refused, Err(OpError::TooManyTasks { open_limit: 3 })), "{refused:?}");
        assert_eq!(db.read(|tx| tx.count_open_tasks(1)).unwrap(), 3, "the refused task was not stored");
        db.write(|tx| enqueue(tx, &task_of(2), 3)).expect("another client has its own count");
        db.write(|tx| enqueue(tx, &task_of(1), 0)).expect("0: no limit");
    }

    #[test]
    fn the_task_row_names_who_asked() {
        let actor = Actor { key_id: Some(7), role: "tenant".into(), user_id: Some(9), request_id: Some("req-1".into()) };
        let scope = Scope { client_id: 3, project_id: 4, region_id: 5 };
        let payload = TaskPayload::DeleteRule { group_id: Uuid::new_v4(), rule_id: Uuid::new_v4() };
        let task = new_task(&actor, &scope, &payload, Value::Null);
        assert_eq!((task.client_id, task.user_id, task.project_id, task.region_id), (3, 9, Some(4), Some(5)));
        assert_eq!(task.request_id.as_deref(), Some("req-1"));
        assert_eq!(crate::payload::requester(&task.payload), Some(Requester { key_id: 7, role: "tenant".into() }));
    }

    /// Marks `task` finished in the database, as the worker does.
    fn finish(db: &Database, task: &TaskRecord) {
        let mut done = task.clone();
        done.state = TaskState::Finished;
        done.finished_on = Some(now_ms());
        db.write(|tx| tx.update_task(&done)).unwrap();
    }

    #[tokio::test]
    async fn a_wait_ends_when_the_worker_announces_the_tasks() {
        let temp = TempDb::new();
        let task = task_of(1);
        temp.db.write(|tx| enqueue(tx, &task, 0)).unwrap();
        let (announce, finished) = tokio::sync::broadcast::channel(4);
        let waiting = wait_for_tasks(&temp.db, finished, 1, std::slice::from_ref(&task.id), Instant::now() + Duration::from_secs(30), None);
        let announced = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            finish(&temp.db, &task);
            announce.send(Arc::new(vec![task.id.clone()])).unwrap();
        };
        let (ended, ()) = tokio::join!(waiting, announced);
        assert!(ended.unwrap());
    }

    #[tokio::test]
    async fn a_wait_with_rechecks_sees_tasks_ended_elsewhere_and_one_without_gives_up_at_its_deadline() {
        let temp = TempDb::new();
        let task = task_of(1);
        temp.db.write(|tx| enqueue(tx, &task, 0)).unwrap();
        let (_announce, finished) = tokio::sync::broadcast::channel::<Arc<Vec<String>>>(4);
        let ids = std::slice::from_ref(&task.id);
        let unseen = wait_for_tasks(&temp.db, finished.resubscribe(), 1, ids, Instant::now() + Duration::from_millis(30), None);
        assert!(!unseen.await.unwrap(), "nothing announced, nothing finished: the wait ends at its deadline");
        // Another node finishes the task: no announcement here, only the database knows.
        let elsewhere = async {
            tokio::time::sleep(Duration::from_millis(20)).await;
            finish(&temp.db, &task);
        };
        let rechecking =
            wait_for_tasks(&temp.db, finished, 1, ids, Instant::now() + Duration::from_secs(30), Some(Duration::from_millis(5)));
        let (ended, ()) = tokio::join!(rechecking, elsewhere);
        assert!(ended.unwrap());
    }
}
