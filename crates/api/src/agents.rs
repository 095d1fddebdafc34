//! `/palisade/v1/agents`: what each host's agent must enforce and what it reports it applied.
//!
//! Each host's policy has its own revision: a change grows the revisions of exactly the hosts whose
//! policy it changes (migration 0008, `palisade_store`'s pending changes). Agents long-poll
//! `GET /palisade/v1/agents/{host}/policy?after=REV&wait=SECONDS`: the answer comes at once when
//! the host's revision is past `after`, otherwise when it moves or `wait` runs out (304); a
//! change elsewhere never wakes it. The revision feed, the policy's content and the waits are
//! the service's (`palisade_service::policy`); this module parses, checks the agent's host and
//! renders.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use palisade_core::UnixMs;
use palisade_core::error::FieldErrors;
use palisade_core::input;
use palisade_core::port::valid_host;
use palisade_service::now_ms;
use palisade_service::policy;
use palisade_service::queue::wait_for_tasks;
use palisade_store::AgentRecord;
use serde::Serialize;
use serde_json::Value;

use crate::access::Role;
use crate::error::{ApiError, Result};
use crate::extract::{Caller, JsonBody, Query};
use crate::state::AppState;
use crate::time;

/// The longest long-poll a request may ask for.
const MAX_WAIT_SECONDS: i64 = 300;

pub(crate) fn host_of(text: &str) -> Result<String> {
    if valid_host(text) { Ok(text.to_string()) } else { Err(ApiError::not_found(format!("Host {text} could not be found"))) }
}

/// The host's policy at the current revision (`policy::host_policy`): its revision, its content
/// tag, and its JSON unless the agent already holds that tag (`held`). It can be large, so it is
/// read, built and serialised on the bounded pool, within the request deadline (`crate::pool`).
async fn read_policy(state: &AppState, host: String, held: Option<String>) -> Result<(i64, String, Option<Vec<u8>>)> {
    state
        .read_heavy(move |tx, deadline| {
            let policy = policy::host_policy(tx, &host, deadline)?;
            let tag = policy.content_tag();
            deadline.check()?;
            let body = if held.as_deref() == Some(tag.as_str()) { None } else { Some(crate::pool::to_json(&policy)?) };
            Ok((policy.revision, tag, body))
        })
        .await
}

/// `GET /palisade/v1/agents/{host}/policy?after=REV&wait=SECONDS` (the host's agent key): the
/// policy of every port on `host` (200, headers `x-policy-revision` and `ETag`), or 304 when the revision did not
/// pass `after` within `wait` seconds, or when it did but the policy's content still has the
/// request's `If-None-Match` tag (then `x-policy-revision` is the new revision: nothing to apply).
#[utoipa::path(
    get,
    path = "/palisade/v1/agents/{host}/policy",
    operation_id = "getHostPolicy",
    tag = "Agents",
    summary = "Get the policy of a host",
    description = "The host's own agent key only (another host's is a 403). What the host's agent enforces: every client's ports on the host (device, MAC, addresses, bound groups), the rules of every bound group (protocols by number), and the member addresses of every group those rules name as `remote_group_id`, listed once per group. Without `after` it answers at once. With `after`, it answers as soon as the host's policy revision is past `after` (a change that does not reach the host never wakes it), or with 304 (no body, `x-policy-revision` header) when `wait` seconds pass first. The `ETag` header tags the policy's content (the revision aside): with `If-None-Match` set to it, a newer revision that changes nothing for the host answers 304 with the new `x-policy-revision`, so the agent reports it without fetching the policy again.",
    params(crate::schema::HostPath, crate::schema::PolicyQuery),
    responses((status = 200, description = "The policy of the host's ports at the current revision (also in the `x-policy-revision` header)", body = crate::schema::HostPolicy), crate::openapi::ValidationError, crate::openapi::NotFound, crate::openapi::GatewayTimeout)
)]
pub async fn policy(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(host): Path<String>,
    query: Query,
    headers: axum::http::HeaderMap,
) -> Result<Response> {
    let host = host_of(&host)?;
    caller.require_host(&host)?;
    let mut errors = FieldErrors::new();
    let after = query.int("after", 0, i64::MAX, &mut errors);
    let wait = query.int("wait", 0, MAX_WAIT_SECONDS, &mut errors).unwrap_or(0);
    if !errors.is_empty() {
        return Err(errors.into());
    }
    if let Some(after) = after {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait as u64);
        // A stopping server answers its long-polls at once; the agent asks again elsewhere.
        let passed = tokio::select! {
            passed = state.policy.wait_past(&state.store, &host, after, deadline) => passed?,
            () = state.stopping() => None,
        };
        if passed.is_none() {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            response.headers_mut().insert("x-policy-revision", HeaderValue::from(after));
            return Ok(response);
        }
    }
    let held = headers.get(axum::http::header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let (revision, tag, body) = read_policy(&state, host, held).await?;
    let mut response = match body {
        None => StatusCode::NOT_MODIFIED.into_response(),
        Some(bytes) => crate::pool::json_bytes(bytes),
    };
    response.headers_mut().insert("x-policy-revision", HeaderValue::from(revision));
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        response.headers_mut().insert(axum::http::header::ETAG, tag);
    }
    Ok(response)
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Agent)]
pub struct AgentOut {
    pub host: String,
    pub applied_revision: i64,
    /// The host's current policy revision.
    pub policy_revision: i64,
    /// Time of the agent's last report, UTC, `YYYY-MM-DDTHH:MM:SS+0000`.
    pub reported_at: String,
    /// Whether the agent has applied its host's current policy revision.
    pub in_sync: bool,
    /// With `?revision=N`: whether the agent has applied revision N (or a later one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<bool>,
}

fn agent_out(agent: &AgentRecord, revision: i64) -> AgentOut {
    AgentOut {
        host: agent.host.clone(),
        applied_revision: agent.applied_revision,
        policy_revision: revision,
        reported_at: time::with_zone(UnixMs(agent.reported_at)),
        in_sync: agent.applied_revision >= revision,
        applied: None,
    }
}

/// `PUT /palisade/v1/agents/{host}/status` with `{"applied_revision": N}` (the host's agent key).
#[utoipa::path(
    put,
    path = "/palisade/v1/agents/{host}/status",
    operation_id = "reportAgentStatus",
    tag = "Agents",
    summary = "Report the applied revision",
    description = "The host's agent (its own agent key only; another host's is a 403) reports the policy revision it has applied to the kernel.",
    params(crate::schema::HostPath),
    request_body = crate::schema::AgentStatus,
    responses((status = 200, description = "The agent as recorded", body = crate::agents::AgentOut), crate::openapi::ValidationError, crate::openapi::NotFound)
)]
pub async fn report(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(host): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<AgentOut>> {
    let host = host_of(&host)?;
    caller.require_host(&host)?;
    let obj = input::object(&body, "")?;
    let applied_revision = match obj.get("applied_revision") {
        Some(Value::Number(n)) if n.as_i64().is_some_and(|n| n >= 0) => n.as_i64().unwrap_or_default(),
        Some(_) => return Err(ApiError::invalid("applied_revision", "Input should be a non-negative integer")),
        None => return Err(ApiError::invalid("applied_revision", "Field required")),
    };
    let agent = AgentRecord { host, applied_revision, reported_at: now_ms() };
    let (agent, revision) = state
        .write(move |tx| {
            tx.report_agent(&agent)?;
            let revision = tx.host_revision(&agent.host)?;
            Ok((agent, revision))
        })
        .await?;
    state.policy.agent_reported();
    Ok(Json(agent_out(&agent, revision)))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AgentList {
    /// The highest policy revision of any host (each agent's own is in its entry).
    pub policy_revision: i64,
    pub count: u64,
    pub results: Vec<AgentOut>,
}

/// `GET /palisade/v1/agents[?revision=N]` (platform): every host's agent, the revision it
/// applied, whether that is the current one, and (with `revision`) whether it has applied N.
#[utoipa::path(
    get,
    path = "/palisade/v1/agents",
    operation_id = "listAgents",
    tag = "Agents",
    summary = "List agents",
    params(crate::schema::AgentsQuery),
    responses((status = 200, description = "Every host's agent (one per host) and the current policy revision", body = crate::agents::AgentList), crate::openapi::ValidationError)
)]
pub async fn list(State(state): State<Arc<AppState>>, query: Query) -> Result<Json<AgentList>> {
    let mut errors = FieldErrors::new();
    let asked = query.int("revision", 0, i64::MAX, &mut errors);
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let (agents, revision) = state.read(move |tx| Ok((tx.list_agents()?, tx.policy_revision()?))).await?;
    let results: Vec<AgentOut> = agents
        .iter()
        .map(|(a, host_revision)| AgentOut { applied: asked.map(|n| a.applied_revision >= n), ..agent_out(a, *host_revision) })
        .collect();
    Ok(Json(AgentList { policy_revision: revision, count: results.len() as u64, results }))
}

/// The longest `wait_for_agents` a write may ask for, in seconds.
const MAX_WAIT_FOR_AGENTS: f64 = 60.0;

/// `?wait_for_agents=SECONDS` on any write: after the write succeeds (and, for a v2 write, after
/// its tasks finished), waits up to SECONDS until the agent of every host whose policy the change
/// changed has applied the revision the change gave that host — exactly those hosts, none other
/// (a change that reaches no port answers at once). A tenant hears only of hosts holding its own
/// ports: headers `x-agents-applied` and `x-agents-pending` (host names, comma-separated). The
/// platform also gets `x-policy-revision` (the highest revision among those hosts).
pub async fn wait_for_agents(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let asked = request
        .uri()
        .query()
        .and_then(|q| form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == "wait_for_agents").map(|(_, v)| v.into_owned()));
    let Some(asked) = asked else { return next.run(request).await };
    if matches!(*request.method(), Method::GET | Method::HEAD) {
        return next.run(request).await;
    }
    let seconds = match asked.parse::<f64>() {
        Ok(s) if (0.0..=MAX_WAIT_FOR_AGENTS).contains(&s) => s,
        _ => return ApiError::invalid("wait_for_agents", "Input should be a number of seconds between 0 and 60").into_response(),
    };
    let (mut parts, body) = request.into_parts();
    let caller = match Caller::from_request_parts(&mut parts, &state).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    let written = Arc::new(std::sync::Mutex::new(Vec::new()));
    let response = crate::state::WRITTEN_HOSTS.scope(written.clone(), next.run(Request::from_parts(parts, body))).await;
    if !response.status().is_success() {
        return response;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs_f64(seconds);
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, 1 << 22).await {
        Ok(bytes) => bytes,
        Err(e) => return ApiError::Internal(format!("buffering the response: {e}")).into_response(),
    };
    let tasks: Vec<String> = serde_json::from_slice::<Value>(&bytes)
        .ok()
        .and_then(|v| v.get("tasks").and_then(Value::as_array).map(|t| t.iter().filter_map(|id| id.as_str().map(str::to_owned)).collect()))
        .unwrap_or_default();
    let written = std::mem::take(&mut *written.lock().unwrap_or_else(|p| p.into_inner()));
    match settle(&state, &caller, tasks, written, deadline).await {
        Ok((revision, applied, pending)) => {
            let headers = &mut parts.headers;
            if caller.role == Role::Platform {
                headers.insert("x-policy-revision", HeaderValue::from(revision));
            }
            for (name, hosts) in [("x-agents-applied", applied), ("x-agents-pending", pending)] {
                if let Ok(value) = HeaderValue::from_str(&hosts.join(",")) {
                    headers.insert(name, value);
                }
            }
        }
        Err(e) => tracing::warn!(error = ?e, "waiting for agents"),
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// Waits for `tasks` to finish, then for the agents of the hosts the request changed (`written`
/// by its own transactions, and those its tasks recorded) to apply their new revisions
/// (`PolicyFeed::wait_for_agents`). Returns (highest revision, hosts that applied theirs, hosts
/// that have not by the deadline).
async fn settle(
    state: &Arc<AppState>,
    caller: &Caller,
    tasks: Vec<String>,
    mut written: Vec<palisade_store::HostRevision>,
    deadline: tokio::time::Instant,
) -> Result<(i64, Vec<String>, Vec<String>)> {
    // Another node may run the tasks (PostgreSQL): the database is read again at this step.
    const RECHECK: Duration = Duration::from_millis(10);
    let finished = state.tasks_done.subscribe();
    tokio::select! {
        waited = wait_for_tasks(&state.store, finished, caller.client_id, &tasks, deadline, Some(RECHECK)) => { waited?; }
        () = state.stopping() => {}
    }
    if !tasks.is_empty() {
        let client_id = caller.client_id;
        written.extend(state.read(move |tx| Ok(tx.task_policy_hosts(client_id, &tasks)?)).await?);
    }
    let viewer = (caller.role != Role::Platform).then(|| caller.viewer());
    Ok(state.policy.wait_for_agents(&state.store, viewer, written, deadline, state.stopping()).await?)
}
