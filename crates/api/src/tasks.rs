//! The tasks API that clients poll (#15–#20). Tasks are scoped to the caller's client.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palisade_core::error::FieldErrors;
use palisade_core::input::Fields;
use palisade_service::audit::{self, Action, Change};
use palisade_service::now_ms;
use palisade_service::queue::enqueue;
use palisade_store::{AckFilter, TaskFilter, TaskRecord, TaskState, Tx};
use serde_json::json;

use crate::dto::{Page, TaskIds, TaskOut};
use crate::error::{ApiError, Result};
use crate::extract::{Caller, JsonBody, Query, path_int};
use crate::state::AppState;
use crate::time::parse_iso8601;

fn task_not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("Task {id} could not be found"))
}

/// A v2 write that queues one task: `check` (that the resource exists, say) and [`enqueue`] (the
/// client's unfinished-task limit) in one transaction, then [`AppState::hand_over`]. Answers with
/// the task's id.
pub(crate) async fn queue_one(
    state: &AppState,
    task: TaskRecord,
    check: impl FnOnce(&mut dyn Tx) -> Result<()> + Send + 'static,
) -> Result<Json<TaskIds>> {
    let (client_id, open_limit) = (task.client_id, state.config.max_tasks_per_client);
    let task_id = state
        .write(move |tx| {
            check(tx)?;
            Ok(enqueue(tx, &task, open_limit)?)
        })
        .await?;
    state.hand_over(client_id, std::slice::from_ref(&task_id)).await;
    Ok(Json(TaskIds { tasks: vec![task_id] }))
}

fn ints(query: &Query, key: &str, errors: &mut FieldErrors) -> Vec<i64> {
    query
        .all(key)
        .filter_map(|v| match v.parse::<i64>() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.add(key, format!("Input should be a valid integer, got '{v}'"));
                None
            }
        })
        .collect()
}

fn timestamp(query: &Query, key: &str, errors: &mut FieldErrors) -> Option<i64> {
    let text = query.last(key)?;
    let ms = parse_iso8601(text).map(i64::from);
    if ms.is_none() {
        errors.add(key, format!("Input should be a valid ISO 8601 datetime, got '{text}'"));
    }
    ms
}

fn filter_of(query: &Query) -> Result<TaskFilter> {
    let mut errors = FieldErrors::new();
    let (limit, offset) = query.page(&mut errors);
    let mut ascending = false;
    for key in ["sorting", "order_by"] {
        match query.last(key) {
            None => {}
            Some("asc") => ascending = true,
            Some("desc") => ascending = false,
            Some(_) => errors.add(key, "Input should be 'asc' or 'desc'"),
        }
    }
    let states = query
        .all("state")
        .filter_map(|s| {
            let state = TaskState::parse(s);
            if state.is_none() {
                errors.add("state", "Input should be 'NEW', 'RUNNING', 'FINISHED' or 'ERROR'");
            }
            state
        })
        .collect();
    let is_acknowledged = match query.last("is_acknowledged") {
        None => None,
        Some("true" | "True" | "1") => Some(true),
        Some("false" | "False" | "0") => Some(false),
        Some(_) => {
            errors.add("is_acknowledged", "Input should be a valid boolean");
            None
        }
    };
    let filter = TaskFilter {
        project_ids: ints(query, "project_id", &mut errors),
        region_ids: ints(query, "region_id", &mut errors),
        states,
        task_type: query.last("task_type").map(str::to_owned),
        is_acknowledged,
        from_ms: timestamp(query, "from_timestamp", &mut errors),
        to_ms: timestamp(query, "to_timestamp", &mut errors),
        ascending,
        limit,
        offset,
    };
    Ok(errors.into_result(filter)?)
}

async fn list_page(state: &AppState, client_id: i64, filter: TaskFilter) -> Result<Response> {
    let (count, tasks) = state.read(move |tx| Ok(tx.list_tasks(client_id, &filter)?)).await?;
    let results: Vec<TaskOut> = tasks.iter().map(TaskOut::from).collect();
    Ok(Json(Page { count, results }).into_response())
}

/// #16 `GET /cloud/v1/tasks`.
#[utoipa::path(
    get,
    path = "/cloud/v1/tasks",
    operation_id = "listTasks",
    tag = "Tasks",
    summary = "List tasks",
    description = "Tasks of the caller's client, newest first unless `order_by=asc`. Repeated filters (`project_id`, `region_id`, `state`) match any of their values; different filters must all match.",
    params(crate::schema::PageQuery, crate::schema::ListTasksQuery, crate::schema::TaskTypeQuery),
    responses((status = 200, description = "A page of tasks", body = crate::schema::TaskCollection), crate::openapi::ValidationError)
)]
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller, query: Query) -> Result<Response> {
    let mut filter = filter_of(&query)?;
    if let Some(allowed) = &caller.projects {
        // A project-limited key lists its projects' tasks only; naming another is refused as
        // on every project path.
        if let Some(other) = filter.project_ids.iter().find(|p| !allowed.contains(p)) {
            return Err(forbidden_project(*other));
        }
        if filter.project_ids.is_empty() {
            filter.project_ids = allowed.clone();
        }
    }
    list_page(&state, caller.client_id, filter).await
}

fn forbidden_project(project_id: i64) -> ApiError {
    ApiError::Forbidden(format!("This API key is not allowed to access project {project_id}"))
}

/// Whether the caller's key may see `task` (a project-limited key: only its projects' tasks).
fn visible(caller: &Caller, task: &TaskRecord) -> bool {
    caller.projects.is_none() || task.project_id.is_some_and(|p| caller.may_use_project(p))
}

/// #20 `GET /cloud/v1/tasks/{p}/{r}/active`: NEW and RUNNING tasks of one project and region.
#[utoipa::path(
    get,
    path = "/cloud/v1/tasks/{id}/{region_id}/active",
    operation_id = "listActiveTasks",
    tag = "Tasks",
    summary = "List active tasks",
    description = "The `NEW` and `RUNNING` tasks of the caller's client in one project and region, newest first.",
    params(crate::schema::ScopePath, crate::schema::PageQuery, crate::schema::TaskTypeQuery),
    responses((status = 200, description = "A page of NEW and RUNNING tasks", body = crate::schema::TaskCollection), crate::openapi::ValidationError, crate::openapi::NotFound)
)]
pub async fn list_active(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((project, region)): Path<(String, String)>,
    query: Query,
) -> Result<Response> {
    let scope = caller.scope(&state, path_int(&project, "Project")?, path_int(&region, "Region")?)?;
    let mut errors = FieldErrors::new();
    let (limit, offset) = query.page(&mut errors);
    errors.into_result(())?;
    let filter = TaskFilter {
        project_ids: vec![scope.project_id],
        region_ids: vec![scope.region_id],
        states: vec![TaskState::New, TaskState::Running],
        task_type: query.last("task_type").map(str::to_owned),
        limit,
        offset,
        ..TaskFilter::default()
    };
    list_page(&state, caller.client_id, filter).await
}

/// #15 `GET /cloud/v1/tasks/{task_id}`.
#[utoipa::path(
    get,
    path = "/cloud/v1/tasks/{id}",
    operation_id = "getTask",
    tag = "Tasks",
    summary = "Get task",
    description = "404 when the caller's client has no task with this id.",
    params(crate::schema::TaskIdPath),
    responses((status = 200, description = "The task", body = crate::dto::TaskOut), crate::openapi::NotFound)
)]
pub async fn get(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> Result<Response> {
    let client_id = caller.client_id;
    let lookup = id.clone();
    let task = state
        .read(move |tx| Ok(tx.get_task(client_id, &lookup)?))
        .await?
        .filter(|task| visible(&caller, task))
        .ok_or_else(|| task_not_found(&id))?;
    Ok(Json(TaskOut::from(&task)).into_response())
}

/// #17 `POST /cloud/v1/tasks/{task_id}/acknowledge`.
#[utoipa::path(
    post,
    path = "/cloud/v1/tasks/{id}/acknowledge",
    operation_id = "acknowledgeTask",
    tag = "Tasks",
    summary = "Acknowledge one task",
    description = "Sets `acknowledged_at` and `acknowledged_by` (the caller's user) unless the task is already acknowledged. No body.",
    params(crate::schema::TaskIdPath),
    responses((status = 200, description = "The task, with `acknowledged_at` and `acknowledged_by` set", body = crate::dto::TaskOut), crate::openapi::NotFound)
)]
pub async fn acknowledge_one(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> Result<Response> {
    let lookup = id.clone();
    let actor = crate::audit::actor(&caller);
    let task = state
        .write(move |tx| {
            let Some(mut task) = tx.get_task(caller.client_id, &lookup)?.filter(|task| visible(&caller, task)) else { return Ok(None) };
            let acknowledged = task.acknowledged_at.is_none();
            if acknowledged {
                task.acknowledged_at = Some(now_ms());
                task.acknowledged_by = Some(caller.user_id);
                tx.update_task(&task)?;
            }
            let place = audit::Place { client_id: Some(task.client_id), project_id: task.project_id, region_id: task.region_id };
            let change = Change::new(Action::TaskAcknowledge, place, &task.id).summary(json!({"acknowledged": u64::from(acknowledged)}));
            audit::record(tx, &actor, change)?;
            Ok(Some(task))
        })
        .await?
        .ok_or_else(|| task_not_found(&id))?;
    Ok(Json(TaskOut::from(&task)).into_response())
}

fn optional_int(query: &Query, key: &str, errors: &mut FieldErrors) -> Option<i64> {
    query.int(key, i64::MIN, i64::MAX, errors)
}

/// #18 `POST /cloud/v1/tasks/acknowledge_all?project_id=&region_id=`.
#[utoipa::path(
    post,
    path = "/cloud/v1/tasks/acknowledge_all",
    operation_id = "acknowledgeAllTasks",
    tag = "Tasks",
    summary = "Acknowledge all tasks",
    description = "Acknowledges every unacknowledged task of the caller's client, narrowed by `project_id` and `region_id` when given. No body.",
    params(crate::schema::AcknowledgeQuery),
    responses((status = 204, description = "Acknowledged"), crate::openapi::ValidationError)
)]
pub async fn acknowledge_all(State(state): State<Arc<AppState>>, caller: Caller, query: Query) -> Result<StatusCode> {
    let mut errors = FieldErrors::new();
    let filter = AckFilter {
        project_id: optional_int(&query, "project_id", &mut errors),
        region_id: optional_int(&query, "region_id", &mut errors),
        task_ids: None,
    };
    errors.into_result(())?;
    acknowledge(&state, caller, filter).await
}

/// Acknowledges the caller's tasks matching `filter`; a project-limited key's only in its projects.
async fn acknowledge(state: &AppState, caller: Caller, filter: AckFilter) -> Result<StatusCode> {
    let filters: Vec<AckFilter> = match (&caller.projects, filter.project_id) {
        (None, _) => vec![filter],
        (Some(_), Some(project)) if !caller.may_use_project(project) => return Err(forbidden_project(project)),
        (Some(_), Some(_)) => vec![filter],
        (Some(allowed), None) => allowed.iter().map(|p| AckFilter { project_id: Some(*p), ..filter.clone() }).collect(),
    };
    let actor = crate::audit::actor(&caller);
    state
        .write(move |tx| {
            let mut acknowledged = 0;
            for filter in &filters {
                acknowledged += tx.acknowledge_tasks(caller.client_id, filter, caller.user_id, now_ms())?;
            }
            // One filter names the project and region asked for; several are a project-limited key's.
            let first = filters.first().cloned().unwrap_or_default();
            let place = match filters.len() {
                1 => audit::Place { client_id: Some(caller.client_id), project_id: first.project_id, region_id: first.region_id },
                _ => audit::Place::client(caller.client_id),
            };
            let mut summary = json!({"acknowledged": acknowledged});
            if let Some(ids) = &first.task_ids {
                summary["task_ids"] = json!(ids);
            }
            Ok(audit::record(tx, &actor, Change::of_many(Action::TaskAcknowledge, place).summary(summary))?)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// #19 `POST /cloud/v1/tasks/acknowledge` (deprecated): `{"task_ids": [...] | null}`.
#[utoipa::path(
    post,
    path = "/cloud/v1/tasks/acknowledge",
    operation_id = "acknowledgeTasks",
    tag = "Tasks",
    summary = "Acknowledge tasks",
    description = "Acknowledges the listed tasks (or, with `task_ids` null or absent, every unacknowledged task) of the caller's client, narrowed by `project_id` and `region_id`. Use `acknowledge_all` or `{task_id}/acknowledge` instead.",
    params(crate::schema::AcknowledgeQuery),
    request_body(content = Option<crate::schema::AcknowledgeTasks>, description = "Optional: an empty body (no bytes) is accepted; the JSON `null` is not."),
    responses((status = 204, description = "Acknowledged"), crate::openapi::ValidationError)
)]
#[deprecated = "a legacy (v1) endpoint, kept for old clients"]
pub async fn acknowledge_many(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Query,
    JsonBody(body): JsonBody,
) -> Result<StatusCode> {
    let mut errors = FieldErrors::new();
    let task_ids = body.as_object().and_then(|obj| {
        let mut fields = Fields::new(obj, "", &mut errors);
        let list = fields.optional("task_ids").nullable().list("Input should be a valid list")?;
        Some(list.each_or("Input should be a list of task ids", |v| v.as_str().map(str::to_owned)))
    });
    if !body.is_null() && !body.is_object() {
        errors.add("body", "Input should be a valid dictionary or object");
    }
    let filter = AckFilter {
        project_id: optional_int(&query, "project_id", &mut errors),
        region_id: optional_int(&query, "region_id", &mut errors),
        task_ids,
    };
    errors.into_result(())?;
    acknowledge(&state, caller, filter).await
}
