//! `GET /palisade/v1/audit`: the audit log, newest first, and [`actor`], the caller as the
//! events of its changes name it. Events are written by `palisade_service::audit::record` in the
//! transaction of each change (docs/operations.md, "Audit log").
//!
//! A tenant key reads its own client's events (a project-limited key: those of its projects and
//! those of no project); a platform key reads every client's, or one client's with `client_id=`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use palisade_core::UnixMs;
use palisade_core::error::FieldErrors;
use palisade_service::audit::{Action, Actor};
use palisade_store::{AuditEvent, AuditFilter};
use serde::Serialize;
use serde_json::Value;

use crate::access::Role;
use crate::dto::Page;
use crate::error::{ApiError, Result};
use crate::extract::{Caller, Query};
use crate::state::AppState;
use crate::{request_id, time};

/// The caller as the actor of a change. Call it in the handler (not inside `state.write`): the
/// request id lives in the request's task.
pub fn actor(caller: &Caller) -> Actor {
    let request_id = request_id::current();
    Actor {
        key_id: Some(caller.key_id),
        role: caller.role.as_str().to_string(),
        // Platform and agent keys act for no user.
        user_id: (caller.role == Role::Tenant).then_some(caller.user_id),
        request_id: (!request_id.is_empty()).then_some(request_id),
    }
}

/// The `actor` of a task row's payload: who asked for the task.
pub fn requester(caller: &Caller) -> palisade_service::payload::Requester {
    palisade_service::payload::Requester { key_id: caller.key_id, role: caller.role.as_str().to_string() }
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AuditEvent)]
/// One change: who made it, to what, how it ended and what changed.
pub struct AuditEventOut {
    /// The event's number; grows with every event.
    pub id: i64,
    /// When the change was committed: RFC 3339 UTC with milliseconds.
    #[schema(format = DateTime, examples("2026-01-31T12:00:00.123Z"))]
    pub time: String,
    /// The API key that made the change; null for the `palisade` CLI.
    #[schema(required = true)]
    pub actor_key_id: Option<i64>,
    /// `tenant`, `platform`, `agent` or `cli`.
    pub actor_role: String,
    /// The client whose resources changed; null for a change of no client (a platform or agent key).
    #[schema(required = true)]
    pub client_id: Option<i64>,
    /// The acting user of a tenant key (of a task: the user who queued it); null otherwise.
    #[schema(required = true)]
    pub user_id: Option<i64>,
    /// The project of the change, if it has one.
    #[schema(required = true)]
    pub project_id: Option<i64>,
    /// The region of the change, if it has one.
    #[schema(required = true)]
    pub region_id: Option<i64>,
    #[schema(value_type = crate::schema::AuditAction)]
    pub action: String,
    /// The kind of `resource_id` (`security_group`, `port`, `instance`, `quota`, `api_key` or `task`); rule actions are changes of their group.
    pub resource_type: String,
    /// The changed resource; null for a change of many (a bulk acknowledgement, a quota).
    #[schema(required = true)]
    pub resource_id: Option<String>,
    /// The `x-request-id` of the request (of a task: the request that queued it); null for the CLI.
    #[schema(required = true)]
    pub request_id: Option<String>,
    /// `ok`, or for a task that ended in `ERROR` its error class: `NotFound`, `Invalid`, `Conflict` or `QuotaExceeded`.
    #[schema(examples("ok"))]
    pub outcome: String,
    /// What changed, such as `name`, `changed` (fields), `rules_added` and `rules_removed` (rule ids), `tags_set`, `security_groups_added`; a task's event adds `task_id` (and `error` when it failed).
    #[schema(value_type = Object)]
    pub summary: Value,
}

impl From<AuditEvent> for AuditEventOut {
    fn from(event: AuditEvent) -> Self {
        AuditEventOut {
            id: event.id,
            time: time::rfc3339(UnixMs(event.time)),
            actor_key_id: event.actor_key_id,
            actor_role: event.actor_role,
            client_id: event.client_id,
            user_id: event.user_id,
            project_id: event.project_id,
            region_id: event.region_id,
            action: event.action,
            resource_type: event.resource_type,
            resource_id: event.resource_id,
            request_id: event.request_id,
            outcome: event.outcome,
            summary: event.summary,
        }
    }
}

/// An RFC 3339 time parameter.
pub(crate) fn time_param(query: &Query, key: &str, errors: &mut FieldErrors) -> Option<UnixMs> {
    let text = query.last(key)?;
    let at = time::parse_iso8601(text);
    if at.is_none() {
        errors.add(key, "Input should be an RFC 3339 date-time such as 2026-01-31T12:00:00Z");
    }
    at
}

/// `GET /palisade/v1/audit?since=&until=&resource_id=&action=&limit=&offset=` (and `client_id=`
/// for a platform key).
#[utoipa::path(
    get,
    path = "/palisade/v1/audit",
    operation_id = "listAuditEvents",
    tag = "Audit log",
    summary = "List audit events",
    description = "The events of the caller's client, newest first (a key limited to some projects: the events of those projects and those of no project). A platform key reads every client's events, or one client's with `client_id`. A malformed time, limit or action is a 400 naming the field.",
    params(crate::schema::AuditQuery),
    responses((status = 200, description = "A page of events, newest first", body = crate::schema::AuditEventCollection), crate::openapi::ValidationError)
)]
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller, query: Query) -> Result<Json<Page<AuditEventOut>>> {
    let mut errors = FieldErrors::new();
    let since_ms = time_param(&query, "since", &mut errors).map(i64::from);
    let until_ms = time_param(&query, "until", &mut errors).map(i64::from);
    let limit = query.int("limit", 1, 1000, &mut errors).unwrap_or(100) as u32;
    let offset = query.int("offset", 0, i64::MAX, &mut errors).unwrap_or(0) as u64;
    let action = query.last("action").map(str::to_owned);
    if action.as_deref().is_some_and(|a| Action::parse(a).is_none()) {
        let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        errors.add("action", format!("Input should be one of: {}", known.join(", ")));
    }
    let resource_id = query.last("resource_id").map(str::to_owned);
    let client_param = query.int("client_id", 0, i64::MAX, &mut errors);
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let (client_id, project_ids) = match caller.role {
        Role::Platform => (client_param, None),
        _ => {
            if client_param.is_some_and(|c| c != caller.client_id) {
                return Err(ApiError::Forbidden("This API key may read only its own client's audit events".into()));
            }
            (Some(caller.client_id), caller.projects.clone())
        }
    };
    let filter = AuditFilter { client_id, project_ids, since_ms, until_ms, resource_id, action, limit, offset };
    let (count, events) = state.read(move |tx| Ok(tx.list_audit(&filter)?)).await?;
    Ok(Json(Page { count, results: events.into_iter().map(AuditEventOut::from).collect() }))
}
