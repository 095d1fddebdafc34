//! Issue 14, enforcement you can see: what agents report of the traffic they enforce, and what
//! tenants read of it.
//!
//! - Agents (their own host only): `POST /palisade/v1/agents/{host}/rule-stats` (hit-count
//!   deltas) and `POST /palisade/v1/agents/{host}/flow-logs` (records per flow per minute); the
//!   wire shapes are `palisade_core::observe`'s.
//! - Tenants: the rule hit counts of a group, the flow-log setting of a port or a group (shipped
//!   to the agents in the host policy), the flow records of their client, and the impact of a
//!   proposed rule set on the flows seen. The platform reads flow records with `?client_id=`.
//!
//! The operations are the service's (`palisade_service::observe`); this module parses, checks
//! who may see what, and renders.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use palisade_core::UnixMs;
use palisade_core::error::FieldErrors;
use palisade_core::group::Group;
use palisade_core::input::{self, Fields, UpdateGroup};
use palisade_core::observe::{FlowAction, FlowLogEvents, FlowLogReport, FlowRecord, RuleStatsReport};
use palisade_core::port::Port;
use palisade_service::now_ms;
use palisade_service::observe::{self as ops, ChangedFlow, Decider, Ingested};
use palisade_service::policy::Viewer;
use palisade_service::verdicts::Policy;
use palisade_service::verdicts::visible_port;
use palisade_store::observe::{FlowLogFilter, FlowLogTarget, RuleHitsRecord, StoredFlow};
use palisade_store::prelude::*;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::access::Role;
use crate::audit::time_param;
use crate::error::{ApiError, Result};
use crate::extract::{Caller, JsonBody, Query, group_id, path_uuid};
use crate::state::AppState;
use crate::time;

/// The most flow records one answer lists.
pub const MAX_FLOW_LOG_LIMIT: i64 = 1000;

fn rendered(ms: i64) -> String {
    time::rfc3339(UnixMs(ms))
}

/// An agent's report body in its wire shape; anything else is a 422 naming the problem.
fn report<T: DeserializeOwned>(body: Value) -> Result<T> {
    serde_json::from_value(body).map_err(|e| ApiError::invalid(input::field_or_body(""), format!("Input is not a valid report: {e}")))
}

/// What an agent's report changed.
#[derive(Serialize, utoipa::ToSchema)]
pub struct IngestOut {
    /// Entries counted (hit counts) or stored (flow records).
    pub accepted: u64,
    /// Entries ignored: ports that are not on the reporting host, rules that no longer exist.
    pub ignored: u64,
    /// Flow records deleted to keep clients within their cap.
    pub trimmed: u64,
}

impl From<Ingested> for IngestOut {
    fn from(i: Ingested) -> Self {
        IngestOut { accepted: i.accepted, ignored: i.ignored, trimmed: i.trimmed }
    }
}

/// An agent's report: for its own host only, its body in the wire shape, applied in one write.
async fn ingest<T, F>(state: &AppState, caller: &Caller, host: &str, body: Value, apply: F) -> Result<Json<IngestOut>>
where
    T: DeserializeOwned + Send + 'static,
    F: FnOnce(&mut dyn Tx, &str, &T) -> palisade_service::ops::OpResult<Ingested> + Send + 'static,
{
    let host = crate::agents::host_of(host)?;
    caller.require_host(&host)?;
    let report: T = report(body)?;
    let ingested = state.write(move |tx| Ok(apply(tx, &host, &report)?)).await?;
    Ok(Json(ingested.into()))
}

/// `POST /palisade/v1/agents/{host}/rule-stats` (the host's agent key).
#[utoipa::path(
    post,
    path = "/palisade/v1/agents/{host}/rule-stats",
    operation_id = "reportRuleStats",
    tag = "Agents",
    summary = "Report rule hit counts",
    description = "The host's agent (its own key only) reports per-rule, per-port hit-count deltas since its previous accepted report: `{\"stats\": [{\"port_id\", \"rule_id\", \"packets\", \"bytes\", \"last_hit_at\"}]}` (`last_hit_at` in Unix seconds). They are added to the counts in one transaction; entries about ports of other hosts, or rules that no longer exist or whose group is not bound to the port, are ignored and counted as such. A 2xx means the batch is counted.",
    params(crate::schema::HostPath),
    request_body = Object,
    responses((status = 200, description = "What was counted", body = IngestOut), crate::openapi::ValidationError, crate::openapi::NotFound)
)]
pub async fn rule_stats_report(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(host): Path<String>,
    body: JsonBody,
) -> Result<Json<IngestOut>> {
    ingest(&state, &caller, &host, body.0, |tx, host, report: &RuleStatsReport| ops::apply_rule_stats(tx, host, report)).await
}

/// `POST /palisade/v1/agents/{host}/flow-logs` (the host's agent key).
#[utoipa::path(
    post,
    path = "/palisade/v1/agents/{host}/flow-logs",
    operation_id = "reportFlowLogs",
    tag = "Agents",
    summary = "Report flow-log records",
    description = "The host's agent (its own key only) ships flow-log records aggregated per flow per minute: `{\"records\": [FlowRecord], \"dropped_flows\": N}` (times in Unix seconds). Records of ports not on the host are ignored; each client keeps at most `flow_log_max_records_per_client` records, the oldest going first. A 2xx means the batch is stored.",
    params(crate::schema::HostPath),
    request_body = Object,
    responses((status = 200, description = "What was stored", body = IngestOut), crate::openapi::ValidationError, crate::openapi::NotFound)
)]
pub async fn flow_logs_report(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(host): Path<String>,
    body: JsonBody,
) -> Result<Json<IngestOut>> {
    let cap = state.settings.flow_log_max_records_per_client;
    ingest(&state, &caller, &host, body.0, move |tx, host, report: &FlowLogReport| {
        if report.dropped_flows > 0 {
            tracing::warn!(host, dropped_flows = report.dropped_flows, "an agent could not hold every flow it saw");
        }
        ops::apply_flow_logs(tx, host, report, cap)
    })
    .await
}

/// The counts of one rule on one port.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RuleHitsOut {
    pub rule_id: Uuid,
    pub port_id: Uuid,
    pub packets: i64,
    pub bytes: i64,
    /// The latest hit, RFC 3339 UTC; null when none was counted.
    #[schema(required = true)]
    pub last_hit_at: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct RuleStatsOut {
    pub rules: Vec<RuleHitsOut>,
}

/// `GET /palisade/v1/security_groups/{group_id}/rule-stats` (tenant).
#[utoipa::path(
    get,
    path = "/palisade/v1/security_groups/{group_id}/rule-stats",
    operation_id = "getRuleStats",
    tag = "Verdicts and analysis",
    summary = "Rule hit counts of a group",
    description = "Per rule of the group and per port that has hits: the packets the rule admitted (the first packet of each new connection), their bytes and the latest hit. A rule without any hit is not listed.",
    params(("group_id" = Uuid, Path, description = "The security group")),
    responses((status = 200, description = "The counts", body = RuleStatsOut), crate::openapi::NotFound)
)]
pub async fn rule_stats(State(state): State<Arc<AppState>>, caller: Caller, Path(group): Path<String>) -> Result<Json<RuleStatsOut>> {
    let id = group_id(&group)?;
    let hits = state
        .read(move |tx| {
            let group = ops::visible_group(tx, &caller.viewer(), id)?;
            Ok(ops::group_rule_hits(tx, &group)?)
        })
        .await?;
    let rules = hits
        .into_iter()
        .map(|h| RuleHitsOut {
            rule_id: h.rule_id,
            port_id: h.port_id,
            packets: h.packets,
            bytes: h.bytes,
            last_hit_at: Some(rendered(h.last_hit_ms)),
        })
        .collect();
    Ok(Json(RuleStatsOut { rules }))
}

/// A flow-log setting as tenants read and write it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FlowLogOut {
    pub enabled: bool,
    /// `drop`, `accept` or `all`; null when disabled.
    #[schema(required = true, value_type = Option<String>)]
    pub events: Option<FlowLogEvents>,
}

fn flow_log_out(events: Option<FlowLogEvents>) -> FlowLogOut {
    FlowLogOut { enabled: events.is_some(), events }
}

/// `{"enabled": true, "events": "drop"|"accept"|"all"}` or `{"enabled": false}`.
fn parse_flow_log(body: &Value) -> Result<Option<FlowLogEvents>> {
    let parsed = input::read_object(body, "", |fields: &mut Fields| {
        let enabled = fields.required("enabled").bool();
        let events = fields.optional("events").nullable().parse(|v| match v.as_str() {
            Some("drop") => Ok(FlowLogEvents::Drop),
            Some("accept") => Ok(FlowLogEvents::Accept),
            Some("all") => Ok(FlowLogEvents::All),
            _ => Err("Input should be 'drop', 'accept' or 'all'"),
        });
        match (enabled?, events) {
            (true, None) if !fields.failed("events") => {
                fields.add("events", "Field required when enabled is true");
                None
            }
            (true, events) => Some(events),
            (false, _) => Some(None),
        }
    })?;
    let unknown: Vec<&String> =
        body.as_object().into_iter().flat_map(|o| o.keys()).filter(|k| !["enabled", "events"].contains(&k.as_str())).collect();
    if let Some(field) = unknown.first() {
        return Err(ApiError::invalid(field.as_str(), "Extra inputs are not permitted"));
    }
    Ok(parsed)
}

/// The port or group a flow-log route names must be the caller's (404 otherwise).
fn check_visible(tx: &mut dyn Tx, viewer: &Viewer, target: FlowLogTarget) -> Result<()> {
    match target {
        FlowLogTarget::Port(id) => drop(visible_port(tx, viewer, id)?),
        FlowLogTarget::Group(id) => drop(ops::visible_group(tx, viewer, id)?),
    }
    Ok(())
}

async fn get_flow_log(state: &AppState, caller: Caller, target: FlowLogTarget) -> Result<Json<FlowLogOut>> {
    let viewer = caller.viewer();
    let events = state
        .read(move |tx| {
            check_visible(tx, &viewer, target)?;
            Ok(tx.get_flow_log(target)?)
        })
        .await?;
    Ok(Json(flow_log_out(events)))
}

async fn put_flow_log(state: &AppState, caller: Caller, target: FlowLogTarget, body: Value) -> Result<Json<FlowLogOut>> {
    let events = parse_flow_log(&body)?;
    let viewer = caller.viewer();
    state
        .write(move |tx| {
            check_visible(tx, &viewer, target)?;
            Ok(tx.set_flow_log(target, viewer.client_id, events)?)
        })
        .await?;
    Ok(Json(flow_log_out(events)))
}

/// `GET /palisade/v1/ports/{port_id}/flow-log` (tenant).
#[utoipa::path(get, path = "/palisade/v1/ports/{port_id}/flow-log", operation_id = "getPortFlowLog", tag = "Flow logs",
    summary = "Flow-log setting of a port", params(crate::schema::PortIdPath),
    responses((status = 200, description = "The port's own setting (its groups' settings apply too)", body = FlowLogOut), crate::openapi::NotFound))]
pub async fn port_flow_log(State(state): State<Arc<AppState>>, caller: Caller, Path(port): Path<String>) -> Result<Json<FlowLogOut>> {
    get_flow_log(&state, caller, FlowLogTarget::Port(path_uuid(&port, "Port")?)).await
}

/// `PUT /palisade/v1/ports/{port_id}/flow-log` (tenant).
#[utoipa::path(put, path = "/palisade/v1/ports/{port_id}/flow-log", operation_id = "setPortFlowLog", tag = "Flow logs",
    summary = "Turn a port's flow log on or off",
    description = "`{\"enabled\": true, \"events\": \"drop\"|\"accept\"|\"all\"}` logs the port's denied packets, accepted new connections, or both; `{\"enabled\": false}` turns the port's own log off. A port logs the union of its own setting and its groups'. The agent of the port's host applies it (the policy revision grows).",
    params(crate::schema::PortIdPath), request_body = FlowLogOut,
    responses((status = 200, description = "The setting as stored", body = FlowLogOut), crate::openapi::ValidationError, crate::openapi::NotFound))]
pub async fn set_port_flow_log(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(port): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<FlowLogOut>> {
    put_flow_log(&state, caller, FlowLogTarget::Port(path_uuid(&port, "Port")?), body).await
}

/// `GET /palisade/v1/security_groups/{group_id}/flow-log` (tenant).
#[utoipa::path(get, path = "/palisade/v1/security_groups/{group_id}/flow-log", operation_id = "getGroupFlowLog", tag = "Flow logs",
    summary = "Flow-log setting of a group", params(("group_id" = Uuid, Path, description = "The security group")),
    responses((status = 200, description = "The group's setting", body = FlowLogOut), crate::openapi::NotFound))]
pub async fn group_flow_log(State(state): State<Arc<AppState>>, caller: Caller, Path(group): Path<String>) -> Result<Json<FlowLogOut>> {
    get_flow_log(&state, caller, FlowLogTarget::Group(group_id(&group)?)).await
}

/// `PUT /palisade/v1/security_groups/{group_id}/flow-log` (tenant).
#[utoipa::path(put, path = "/palisade/v1/security_groups/{group_id}/flow-log", operation_id = "setGroupFlowLog", tag = "Flow logs",
    summary = "Turn a group's flow log on or off",
    description = "As for a port, for every port bound to the group.",
    params(("group_id" = Uuid, Path, description = "The security group")), request_body = FlowLogOut,
    responses((status = 200, description = "The setting as stored", body = FlowLogOut), crate::openapi::ValidationError, crate::openapi::NotFound))]
pub async fn set_group_flow_log(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(group): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<FlowLogOut>> {
    put_flow_log(&state, caller, FlowLogTarget::Group(group_id(&group)?), body).await
}

/// One flow record as tenants read it: the agent's fields, times in RFC 3339.
#[derive(Serialize, utoipa::ToSchema)]
pub struct FlowOut {
    pub port_id: Uuid,
    /// `ingress` or `egress`, from the port's point of view.
    pub direction: &'static str,
    pub src_addr: String,
    #[schema(required = true)]
    pub src_port: Option<u16>,
    pub dst_addr: String,
    #[schema(required = true)]
    pub dst_port: Option<u16>,
    /// IP protocol number.
    pub protocol: u8,
    #[schema(required = true)]
    pub icmp_type: Option<u8>,
    #[schema(required = true)]
    pub icmp_code: Option<u8>,
    pub packets: u64,
    pub bytes: u64,
    pub start: String,
    pub end: String,
    /// `ACCEPT` or `REJECT`.
    #[schema(value_type = String)]
    pub action: FlowAction,
    /// The rule that admitted the flow; null for the default drop.
    #[schema(required = true)]
    pub rule_id: Option<Uuid>,
}

impl From<&FlowRecord> for FlowOut {
    /// `record` with times in milliseconds, as stored.
    fn from(r: &FlowRecord) -> Self {
        FlowOut {
            port_id: r.port_id,
            direction: r.direction.as_str(),
            src_addr: r.src_addr.to_string(),
            src_port: r.src_port,
            dst_addr: r.dst_addr.to_string(),
            dst_port: r.dst_port,
            protocol: r.protocol,
            icmp_type: r.icmp_type,
            icmp_code: r.icmp_code,
            packets: r.packets,
            bytes: r.bytes,
            start: rendered(r.start),
            end: rendered(r.end),
            action: r.action,
            rule_id: r.rule_id,
        }
    }
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct FlowPage {
    /// Records matching the filters in all (the page holds at most `limit`).
    pub count: u64,
    pub results: Vec<FlowOut>,
}

/// `GET /palisade/v1/flow-logs?port_id=&security_group_id=&since=&until=&action=&limit=`.
#[utoipa::path(
    get,
    path = "/palisade/v1/flow-logs",
    operation_id = "listFlowLogs",
    tag = "Flow logs",
    summary = "List flow-log records",
    description = "Records of the caller's client, newest first: `port_id` or `security_group_id` (its bound ports) narrow them, `since`/`until` (RFC 3339) bound the start of their minute, `action` is `ACCEPT` or `REJECT`, `limit` 1 to 1000 (default 100). A platform key reads one client's with `client_id`.",
    params(
        ("port_id" = Option<Uuid>, Query, description = "Records of this port"),
        ("security_group_id" = Option<Uuid>, Query, description = "Records of the ports bound to this group"),
        ("since" = Option<String>, Query, description = "RFC 3339"),
        ("until" = Option<String>, Query, description = "RFC 3339"),
        ("action" = Option<String>, Query, description = "ACCEPT or REJECT"),
        ("limit" = Option<i64>, Query, description = "1 to 1000, default 100"),
        ("client_id" = Option<i64>, Query, description = "Platform keys: the client"),
    ),
    responses((status = 200, description = "The records, newest first", body = FlowPage), crate::openapi::ValidationError, crate::openapi::NotFound)
)]
pub async fn list_flow_logs(State(state): State<Arc<AppState>>, caller: Caller, query: Query) -> Result<Json<FlowPage>> {
    let mut errors = FieldErrors::new();
    let since_ms = time_param(&query, "since", &mut errors).map(i64::from);
    let until_ms = time_param(&query, "until", &mut errors).map(i64::from);
    let limit = query.int("limit", 1, MAX_FLOW_LOG_LIMIT, &mut errors).unwrap_or(100) as u32;
    let action = match query.last("action") {
        None => None,
        Some("ACCEPT") => Some(FlowAction::Accept),
        Some("REJECT") => Some(FlowAction::Reject),
        Some(_) => {
            errors.add("action", "Input should be 'ACCEPT' or 'REJECT'");
            None
        }
    };
    let mut uuid_param = |key: &str| {
        let text = query.last(key)?;
        let id = Uuid::try_parse(text).ok();
        if id.is_none() {
            errors.add(key, "Input should be a valid UUID");
        }
        id
    };
    let (port_id, group) = (uuid_param("port_id"), uuid_param("security_group_id"));
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let client_id = caller.client_for(&query)?;
    // The platform sees every project of the client it names.
    let viewer = Viewer { client_id, projects: if caller.role == Role::Platform { None } else { caller.projects.clone() } };
    let (count, flows) = state
        .read(move |tx| {
            let mut ports: Option<Vec<Uuid>> = None;
            if let Some(id) = port_id {
                ports = Some(vec![visible_port(tx, &viewer, id)?.id]);
            }
            if let Some(id) = group {
                ops::visible_group(tx, &viewer, id)?;
                let bound: Vec<Uuid> = tx.ports_in_groups(&[id])?.into_iter().map(|p| p.id).collect();
                ports = Some(match ports {
                    Some(only) => only.into_iter().filter(|p| bound.contains(p)).collect(),
                    None => bound,
                });
            }
            if ports.is_none() && viewer.projects.is_some() {
                // A key limited to some projects reads the records of those projects' ports.
                let visible = tx.list_ports(Some(client_id), &palisade_store::PortFilter::default())?;
                ports = Some(visible.into_iter().filter(|p| viewer.may_use_project(p.scope.project_id)).map(|p| p.id).collect());
            }
            let filter = FlowLogFilter { client_id: Some(client_id), port_ids: ports, since_ms, until_ms, action, limit };
            Ok(tx.list_flows(&filter)?)
        })
        .await?;
    Ok(Json(FlowPage { count, results: flows.iter().map(|f: &StoredFlow| FlowOut::from(&f.record)).collect() }))
}

/// The rule that decided a flow under the current or the proposed rules.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DeciderOut {
    /// Null for a rule of the proposed set that does not exist yet.
    #[schema(required = true)]
    pub rule_id: Option<Uuid>,
    pub security_group_id: Uuid,
    /// Whether it is a rule the change would create.
    pub proposed: bool,
}

/// A flow whose verdict the change would turn.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ChangedFlowOut {
    #[serde(flatten)]
    pub flow: FlowOut,
    /// Newly denied: the rule that allows the flow now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_before: Option<DeciderOut>,
    /// Newly allowed: the rule that would allow it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_after: Option<DeciderOut>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PortImpactOut {
    pub port_id: Uuid,
    pub newly_denied: Vec<ChangedFlowOut>,
    pub newly_allowed: Vec<ChangedFlowOut>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ImpactOut {
    pub window_minutes: u32,
    /// Distinct flows seen on the group's ports in the window.
    pub flows_considered: u64,
    pub ports: Vec<PortImpactOut>,
}

fn decider_out(d: Decider) -> DeciderOut {
    DeciderOut { rule_id: d.rule_id, security_group_id: d.security_group_id, proposed: d.proposed }
}

fn changed_out(changed: &ChangedFlow, before: bool) -> ChangedFlowOut {
    let rule = changed.rule.map(decider_out);
    let (rule_before, rule_after) = if before { (rule, None) } else { (None, rule) };
    ChangedFlowOut { flow: FlowOut::from(&changed.flow), rule_before, rule_after }
}

/// `POST /palisade/v1/security_groups/{group_id}/impact` (tenant).
#[utoipa::path(
    post,
    path = "/palisade/v1/security_groups/{group_id}/impact",
    operation_id = "securityGroupImpact",
    tag = "Verdicts and analysis",
    summary = "Impact of a proposed rule set",
    description = "`{\"rules\": [...], \"minutes\": 60}`: `rules` as in a v2 PATCH (the desired final set). For every port bound to the group, the distinct flows of its flow log in the last `minutes` (1 to 1440, default 60) are decided by the verdict engine under the current and the proposed rules; the answer lists those newly denied (with the rule that allows them now) and newly allowed (with the rule that would). Nothing is changed.",
    params(("group_id" = Uuid, Path, description = "The security group")),
    request_body = Object,
    responses((status = 200, description = "The flows the change would turn", body = ImpactOut), crate::openapi::ValidationError, crate::openapi::NotFound, crate::openapi::GatewayTimeout)
)]
pub async fn impact(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(group): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<ImpactOut>> {
    let id = group_id(&group)?;
    let obj = input::object(&body, "")?;
    let mut errors = FieldErrors::new();
    let minutes = Fields::new(obj, "", &mut errors)
        .optional("minutes")
        .int(1..=i64::from(ops::MAX_IMPACT_MINUTES), format!("Input should be an integer from 1 to {}", ops::MAX_IMPACT_MINUTES))
        .map_or(ops::DEFAULT_IMPACT_MINUTES, |m| m as u32);
    let rules = match UpdateGroup::parse(&Value::Object(
        obj.iter().filter(|(k, _)| *k == "rules").map(|(k, v)| (k.clone(), v.clone())).collect(),
    )) {
        Ok(UpdateGroup { rules: Some(rules), .. }) => Some(rules),
        Ok(_) => {
            errors.add("rules", "Field required");
            None
        }
        Err(rule_errors) => {
            errors.0.extend(rule_errors.0);
            None
        }
    };
    let (Some(rules), true) = (rules, errors.is_empty()) else { return Err(errors.into()) };
    let now = now_ms();
    let outcome = state.read_heavy(move |tx, deadline| Ok(ops::impact(tx, &caller.viewer(), id, &rules, minutes, now, deadline)?)).await?;
    Ok(Json(ImpactOut {
        window_minutes: outcome.window_minutes,
        flows_considered: outcome.flows_considered,
        ports: outcome
            .ports
            .iter()
            .map(|p| PortImpactOut {
                port_id: p.port_id,
                newly_denied: p.newly_denied.iter().map(|c| changed_out(c, true)).collect(),
                newly_allowed: p.newly_allowed.iter().map(|c| changed_out(c, false)).collect(),
            })
            .collect(),
    }))
}

/// `unused_after_days` of the analysis: 0 to 3650, default 30.
pub fn unused_after_days(query: &Query) -> Result<u32> {
    let mut errors = FieldErrors::new();
    let days = query.int("unused_after_days", 0, 3650, &mut errors).unwrap_or(30) as u32;
    errors.into_result(days).map_err(ApiError::from)
}

/// The analysis's `unused` findings: rules of `group` without a hit on any port for `days`.
pub fn unused_findings(tx: &mut dyn Tx, group: &Group, days: u32) -> Result<Vec<Value>> {
    let hits = ops::group_rule_hits(tx, group)?;
    Ok(ops::unused_rules(&group.rules, &hits, days, now_ms())
        .into_iter()
        .map(|(rule_id, last)| json!({"kind": "unused", "rule_id": rule_id, "last_hit_at": last.map(rendered)}))
        .collect())
}

/// Adds each rule's hits on `port` (`packets`, `bytes`, `last_hit_at`) to the effective rules.
pub fn add_port_hits(tx: &mut dyn Tx, port: &Port, policy: &Policy, rules: &mut Value) -> Result<()> {
    let rule_ids: Vec<Uuid> = policy.groups.iter().flat_map(|g| g.rules.iter().map(|r| r.id)).collect();
    let hits: HashMap<Uuid, RuleHitsRecord> =
        tx.rule_hits(&rule_ids)?.into_iter().filter(|h| h.port_id == port.id).map(|h| (h.rule_id, h)).collect();
    for direction in ["ingress", "egress"] {
        let Some(list) = rules.get_mut(direction).and_then(Value::as_array_mut) else { continue };
        for rule in list {
            let hit = rule.get("id").and_then(Value::as_str).and_then(|id| Uuid::try_parse(id).ok()).and_then(|id| hits.get(&id));
            rule["packets"] = json!(hit.map_or(0, |h| h.packets));
            rule["bytes"] = json!(hit.map_or(0, |h| h.bytes));
            rule["last_hit_at"] = json!(hit.map(|h| rendered(h.last_hit_ms)));
        }
    }
    Ok(())
}
