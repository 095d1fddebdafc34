//! `/palisade/v1/agents`: what each host's agent must enforce and what it reports it applied.
//!
//! Every change that can change enforcement (rules, ports, addresses, bindings) grows one global
//! policy revision in its own transaction (store triggers). Agents long-poll
//! `GET /palisade/v1/agents/{host}/policy?after=REV&wait=SECONDS`: the answer comes at once when
//! the revision is past `after`, otherwise when it moves or `wait` runs out (304). One watcher
//! task per node follows the revision in the database while anyone waits, so a change made by
//! any node, through the API or a task, reaches the waiting agents within [`POLL`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use palisade_core::error::FieldErrors;
use palisade_core::input;
use palisade_core::policy::HostPolicy;
use palisade_core::port::valid_host;
use palisade_store::{AgentRecord, Database, PortFilter, Store};
use palisade_worker::now_ms;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::{Notify, watch};
use uuid::Uuid;

use crate::access::Role;
use crate::error::{ApiError, Result};
use crate::extract::{Caller, JsonBody, Query};
use crate::state::AppState;
use crate::time;

/// How often the watcher reads the revision while an agent waits.
const POLL: Duration = Duration::from_millis(10);
/// The longest long-poll a request may ask for.
const MAX_WAIT_SECONDS: i64 = 300;

/// The node's view of the policy revision, fed by one watcher task while anyone waits.
pub struct PolicyFeed {
    revision: watch::Sender<i64>,
    started: AtomicBool,
    poke: Arc<Notify>,
    /// Notified when an agent of this node reports a revision.
    reported: Notify,
}

impl Default for PolicyFeed {
    fn default() -> Self {
        PolicyFeed {
            revision: watch::Sender::new(0),
            started: AtomicBool::new(false),
            poke: Arc::new(Notify::new()),
            reported: Notify::new(),
        }
    }
}

impl PolicyFeed {
    /// Tells the watcher to read the revision now (after a local write).
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// A receiver of revision changes; starts the watcher on first use.
    pub fn subscribe(&self, store: &Arc<Database>) -> watch::Receiver<i64> {
        let rx = self.revision.subscribe();
        if !self.started.swap(true, Ordering::SeqCst) {
            tokio::spawn(watch_revision(Arc::downgrade(store), self.revision.clone(), self.poke.clone()));
        } else {
            // The watcher may be in its idle pause: have it poll at the waiting pace now.
            self.poke();
        }
        rx
    }
}

async fn watch_revision(store: Weak<Database>, revision: watch::Sender<i64>, poke: Arc<Notify>) {
    loop {
        if revision.receiver_count() > 0 {
            let Some(db) = store.upgrade() else { return };
            match tokio::task::spawn_blocking(move || db.read(|tx| tx.policy_revision())).await {
                Ok(Ok(current)) => {
                    revision.send_if_modified(|seen| {
                        let changed = *seen != current;
                        *seen = current;
                        changed
                    });
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "reading the policy revision"),
                Err(e) => tracing::warn!(error = %e, "policy revision task failed"),
            }
        } else if store.strong_count() == 0 {
            return;
        }
        let pause = if revision.receiver_count() > 0 { POLL } else { Duration::from_secs(1) };
        tokio::select! {
            _ = poke.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

fn host_of(text: &str) -> Result<String> {
    if valid_host(text) { Ok(text.to_string()) } else { Err(ApiError::not_found(format!("Host {text} could not be found"))) }
}

/// The host's policy at the current revision, read in one transaction: every client's ports on
/// the host (one agent enforces them all). Returns its revision, its content tag, and its JSON
/// unless the agent already holds that tag (`held`). A host's policy can be large (thousands of
/// rules, remote groups of many members): it is read, built and serialised on the bounded pool,
/// within the request deadline (`crate::pool`).
async fn read_policy(state: &AppState, host: String, held: Option<String>) -> Result<(i64, String, Option<Vec<u8>>)> {
    state
        .read_heavy(move |tx, deadline| {
            let revision = tx.policy_revision()?;
            let ports = tx.list_ports(None, &PortFilter { host: Some(host.clone()), ..PortFilter::default() })?;
            let mut seen = std::collections::HashSet::new();
            let group_ids: Vec<Uuid> =
                ports.iter().flat_map(|p| p.security_group_ids.iter().copied()).filter(|id| seen.insert(*id)).collect();
            deadline.check()?;
            let groups = tx.groups_by_ids(&group_ids)?;
            let mut remote: Vec<Uuid> = groups.iter().flat_map(|g| g.rules.iter().filter_map(|r| r.spec.remote_group_id)).collect();
            remote.sort();
            remote.dedup();
            deadline.check()?;
            let members = tx.ports_in_groups(&remote)?;
            deadline.check()?;
            let policy = HostPolicy::build(&host, revision, &ports, &groups, &members);
            let tag = policy.content_tag();
            deadline.check()?;
            let body = if held.as_deref() == Some(tag.as_str()) { None } else { Some(crate::pool::to_json(&policy)?) };
            Ok((revision, tag, body))
        })
        .await
}

/// `GET /palisade/v1/agents/{host}/policy?after=REV&wait=SECONDS` (the host's agent key): the
/// policy of every port on `host` (200, headers `x-policy-revision` and `ETag`), or 304 when the revision did not
/// pass `after` within `wait` seconds, or when it did but the policy's content still has the
/// request's `If-None-Match` tag (then `x-policy-revision` is the new revision: nothing to apply).
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
        let mut rx = state.policy.subscribe(&state.store);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(wait as u64);
        let store = state.store.clone();
        let mut current = tokio::task::spawn_blocking(move || store.read(|tx| tx.policy_revision()))
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
        while current <= after {
            // A stopping server answers its long-polls at once; the agent asks again elsewhere.
            let changed = tokio::select! {
                changed = tokio::time::timeout_at(deadline, rx.changed()) => changed.ok(),
                () = state.stopping() => None,
            };
            match changed {
                Some(Ok(())) => current = *rx.borrow_and_update(),
                Some(Err(_)) | None => {
                    let mut response = StatusCode::NOT_MODIFIED.into_response();
                    response.headers_mut().insert("x-policy-revision", HeaderValue::from(current.max(after)));
                    return Ok(response);
                }
            }
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

#[derive(Serialize)]
pub struct AgentOut {
    pub host: String,
    pub applied_revision: i64,
    pub reported_at: String,
    /// Whether the agent has applied the current policy revision.
    pub in_sync: bool,
    /// With `?revision=N`: whether the agent has applied revision N (or a later one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub applied: Option<bool>,
}

fn agent_out(agent: &AgentRecord, revision: i64) -> AgentOut {
    AgentOut {
        host: agent.host.clone(),
        applied_revision: agent.applied_revision,
        reported_at: time::with_zone(agent.reported_at),
        in_sync: agent.applied_revision >= revision,
        applied: None,
    }
}

/// `PUT /palisade/v1/agents/{host}/status` with `{"applied_revision": N}` (the host's agent key).
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
            Ok((agent, tx.policy_revision()?))
        })
        .await?;
    state.policy.reported.notify_waiters();
    Ok(Json(agent_out(&agent, revision)))
}

#[derive(Serialize)]
pub struct AgentList {
    pub policy_revision: i64,
    pub count: u64,
    pub results: Vec<AgentOut>,
}

/// `GET /palisade/v1/agents[?revision=N]` (platform): every host's agent, the revision it
/// applied, whether that is the current one, and (with `revision`) whether it has applied N.
pub async fn list(State(state): State<Arc<AppState>>, query: Query) -> Result<Json<AgentList>> {
    let mut errors = FieldErrors::new();
    let asked = query.int("revision", 0, i64::MAX, &mut errors);
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let (agents, revision) = state.read(move |tx| Ok((tx.list_agents()?, tx.policy_revision()?))).await?;
    let results: Vec<AgentOut> =
        agents.iter().map(|a| AgentOut { applied: asked.map(|n| a.applied_revision >= n), ..agent_out(a, revision) }).collect();
    Ok(Json(AgentList { policy_revision: revision, count: results.len() as u64, results }))
}

/// The longest `wait_for_agents` a write may ask for, in seconds.
const MAX_WAIT_FOR_AGENTS: f64 = 60.0;

/// `?wait_for_agents=SECONDS` on any write: after the write succeeds (and, for a v2 write, after
/// its tasks finished), waits up to SECONDS until the agent of every host concerned has applied
/// the policy revision the change produced. For a tenant the hosts concerned are those holding
/// its ports (of the projects its key may use), and the answer names only them: headers
/// `x-agents-applied` and `x-agents-pending` (host names, comma-separated), nothing of the global
/// revision, which moves with every client's writes. The platform waits for every host and also
/// gets `x-policy-revision`.
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
    let response = next.run(Request::from_parts(parts, body)).await;
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
    match settle(&state, &caller, tasks, deadline).await {
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

/// Waits for `tasks` to finish, then for the agents of the caller's hosts to apply the revision
/// after them. Returns (revision, hosts that applied it, hosts that have not by the deadline; a
/// host whose agent never reported is among the latter).
async fn settle(
    state: &Arc<AppState>,
    caller: &Caller,
    tasks: Vec<String>,
    deadline: tokio::time::Instant,
) -> Result<(i64, Vec<String>, Vec<String>)> {
    // Wake-ups come from revision changes and agent reports on this node; the step bounds the
    // wait for those that happen on other nodes.
    const STEP: Duration = Duration::from_millis(10);
    let client_id = caller.client_id;
    let mut revisions = state.policy.subscribe(&state.store);
    loop {
        let ids = tasks.clone();
        let open = state
            .read(move |tx| {
                let mut open = 0;
                for id in &ids {
                    if tx.get_task(client_id, id)?.is_some_and(|t| !t.state.is_terminal()) {
                        open += 1;
                    }
                }
                Ok(open)
            })
            .await?;
        if open == 0 || tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::select! {
            _ = revisions.changed() => {}
            _ = tokio::time::sleep(STEP) => {}
            () = state.stopping() => break,
        }
    }
    let tenant = (caller.role != Role::Platform).then(|| caller.clone());
    let (revision, hosts) = state
        .read(move |tx| {
            let revision = tx.policy_revision()?;
            let hosts: Option<BTreeSet<String>> = match &tenant {
                Some(tenant) => Some(
                    tx.list_ports(Some(tenant.client_id), &PortFilter::default())?
                        .into_iter()
                        .filter(|p| tenant.may_use_project(p.scope.project_id))
                        .map(|p| p.host)
                        .collect(),
                ),
                None => None,
            };
            Ok((revision, hosts))
        })
        .await?;
    loop {
        let reported = state.policy.reported.notified();
        let agents = state.read(move |tx| Ok(tx.list_agents()?)).await?;
        let applied_at: BTreeMap<String, i64> = agents.into_iter().map(|a| (a.host, a.applied_revision)).collect();
        let concerned: Vec<String> = match &hosts {
            Some(hosts) => hosts.iter().cloned().collect(),
            None => applied_at.keys().cloned().collect(),
        };
        let (applied, pending): (Vec<String>, Vec<String>) =
            concerned.into_iter().partition(|host| applied_at.get(host).is_some_and(|&applied| applied >= revision));
        if pending.is_empty() || tokio::time::Instant::now() >= deadline {
            return Ok((revision, applied, pending));
        }
        tokio::select! {
            _ = reported => {}
            _ = tokio::time::sleep(STEP) => {}
            () = state.stopping() => return Ok((revision, applied, pending)),
        }
    }
}
