//! Palisade's answers beyond Gcore: flow verdicts (`POST /palisade/v1/verdicts`), the effective
//! rules of a port, and the analysis of a group. All of them compile the stored rules with
//! `core::policy::compile_groups` — as an agent compiles the policy it renders — and decide with
//! `core::verdict::VerdictIndex`.
//!
//! Each of these can be large (a port's groups may name remote groups of many thousands of
//! members), so they run on the bounded pool within the request deadline (`crate::pool`): the
//! store read, the index, the answers and their serialisation, never on the runtime's threads.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use palisade_core::analysis::{Finding, analyze};
use palisade_core::error::FieldErrors;
use palisade_core::input::{self, Fields, parse_protocol};
use palisade_core::policy::Flow;
use palisade_core::rule::Direction;
use palisade_core::verdict::VerdictIndex;
use palisade_service::ops;
use palisade_service::verdicts::{Policy, load_policy, visible_port};
use palisade_store::Store;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::dto::RuleOut;
use crate::error::{ApiError, Result};
use crate::extract::{Caller, GroupPath, JsonBody, path_uuid};
use crate::pool::{json_bytes, to_json};
use crate::state::AppState;

/// The most flows one request may ask about.
pub const MAX_FLOWS: usize = 10_000;

/// The most `matching_rules` entries one answer may list in all (about 100 bytes each): a
/// request of a megabyte must not make an answer of hundreds (10,000 flows each matched by
/// every rule of a big port).
pub const MAX_MATCHING_RULES: usize = 100_000;

/// One flow question, parsed.
struct Question {
    port_id: Option<Uuid>,
    group_ids: Vec<Uuid>,
    flow: Flow,
    established: bool,
}

fn parse_question(value: &Value, prefix: &str, errors: &mut FieldErrors) -> Option<Question> {
    let Some(obj) = value.as_object() else {
        errors.add(input::field_or_body(prefix), "Input should be an object");
        return None;
    };
    let before = errors.0.len();
    let mut question = Fields::new(obj, prefix, errors);
    let port_id = question.optional("port_id").nullable().uuid();
    let group_ids = match question.optional("security_group_ids").nullable().list("Input should be a list of UUIDs") {
        Some(list) => list.each_or("Input should be a list of UUIDs", input::uuid_of),
        None => Vec::new(),
    };
    if port_id.is_none() && group_ids.is_empty() && question.errors().0.len() == before {
        question.add("port_id", "Give a port_id or a non-empty security_group_ids");
    }
    let direction =
        question.expected("direction").parse(|v| v.as_str().and_then(Direction::parse).ok_or("Input should be 'ingress' or 'egress'"));
    let remote = question.expected("remote_ip").parse(|v| {
        v.as_str()
            .and_then(|text| text.parse::<IpAddr>().ok())
            .ok_or("Input should be an IPv4 or IPv6 address (the source of ingress, the destination of egress)")
    });
    let protocol = question.expected("protocol").parse(|v| match parse_protocol(v) {
        Ok(Some(p)) => Ok(p.number()),
        _ => Err("Input should be a protocol name or number (not 'any': a packet has one protocol)"),
    });
    let mut number = |name: &str, max: u16| -> u16 {
        let number = question.optional(name).nullable().int(0..=i64::from(max), format!("Input should be an integer from 0 to {max}"));
        number.map_or(0, |n| n as u16)
    };
    let port = number("port", 65535);
    let icmp_type = number("icmp_type", 255);
    let icmp_code = number("icmp_code", 255);
    let established = question.optional("established").nullable().bool().unwrap_or(false);
    let (direction, remote, protocol) = (direction?, remote?, protocol?);
    if errors.0.len() != before {
        return None;
    }
    let icmp = matches!(protocol, 1 | 58);
    let flow = Flow {
        direction,
        remote,
        protocol,
        dport_or_type: if icmp { icmp_type } else { port },
        code: if icmp { icmp_code as u8 } else { 0 },
    };
    Some(Question { port_id, group_ids, flow, established })
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RuleRefOut {
    rule_id: Uuid,
    security_group_id: Uuid,
}

/// One answer; fields in the order the earlier `json!` answers had (sorted).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = VerdictAnswerOne)]
pub(crate) struct AnswerOut {
    allowed: bool,
    /// `new` or `established`.
    connection: &'static str,
    decided_by: Option<RuleRefOut>,
    matching_rules: Vec<RuleRefOut>,
    reason: String,
    /// `allow` or `deny`.
    verdict: &'static str,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = VerdictAnswerBatch)]
pub(crate) struct BatchOut {
    results: Vec<AnswerOut>,
}

/// The answer to one question; `listed` counts the `matching_rules` entries of the whole request.
fn answer(policy: &Policy, index: &VerdictIndex, question: &Question, listed: &mut usize) -> Result<AnswerOut> {
    let decision = index.decide_with_state(&question.flow, question.established);
    let matching: Vec<RuleRefOut> = if decision.established {
        Vec::new()
    } else {
        index
            .matching(&question.flow, &policy.members)
            .into_iter()
            .map(|r| RuleRefOut { rule_id: r.rule_id, security_group_id: r.group_id })
            .collect()
    };
    *listed += matching.len();
    if *listed > MAX_MATCHING_RULES {
        return Err(ApiError::invalid(
            "flows",
            format!("The answer would list more than {MAX_MATCHING_RULES} matching rules: ask about fewer flows at once"),
        ));
    }
    let reason = match (decision.established, decision.fixed, decision.rule) {
        (true, ..) => "packets of an established or related connection are accepted by connection tracking".to_string(),
        (false, Some(fixed), _) => fixed.reason().to_string(),
        (false, None, Some(rule)) => format!("allowed by rule {} of security group {}", rule.rule_id, rule.group_id),
        (false, None, None) => "no rule of the port's security groups matches: dropped by the default policy".to_string(),
    };
    Ok(AnswerOut {
        allowed: decision.allowed,
        connection: if decision.established { "established" } else { "new" },
        decided_by: decision.rule.map(|r| RuleRefOut { rule_id: r.rule_id, security_group_id: r.group_id }),
        matching_rules: matching,
        reason,
        verdict: if decision.allowed { "allow" } else { "deny" },
    })
}

/// The questions of a request body, and whether it was a batch.
fn parse_questions(body: &Value) -> Result<(Vec<Question>, bool)> {
    let mut errors = FieldErrors::new();
    let batch = body.get("flows");
    let questions: Vec<Question> = match batch {
        Some(Value::Array(items)) if items.len() > MAX_FLOWS => {
            return Err(ApiError::invalid("flows", format!("At most {MAX_FLOWS} flows per request")));
        }
        Some(Value::Array(items)) => {
            items.iter().enumerate().filter_map(|(i, item)| parse_question(item, &format!("flows.{i}"), &mut errors)).collect()
        }
        Some(_) => return Err(ApiError::invalid("flows", "Input should be a list")),
        None => parse_question(body, "", &mut errors).into_iter().collect(),
    };
    errors.into_result(())?;
    Ok((questions, batch.is_some()))
}

/// `POST /palisade/v1/verdicts`: one flow (`{port_id | security_group_ids, direction, remote_ip,
/// protocol, port | icmp_type, icmp_code, established}`) or a batch (`{"flows": [...]}`).
#[utoipa::path(
    post,
    path = "/palisade/v1/verdicts",
    operation_id = "decideFlows",
    tag = "Verdicts and analysis",
    summary = "Decide flows",
    description = "For one flow (or a batch in `flows`, at most 10,000): the groups of `port_id`, or `security_group_ids` in order, decide whether a new connection is allowed (the first matching rule decides) or dropped by the default policy; with `established: true` the answer is the connection-tracking one (accepted). Every matching rule is listed too.",
    request_body = crate::schema::VerdictRequest,
    responses((status = 200, description = "One answer, or `{\"results\": [...]}` for a batch, in order", body = crate::schema::VerdictAnswer), crate::openapi::ValidationError, crate::openapi::NotFound, crate::openapi::GatewayTimeout)
)]
pub async fn verdicts(State(state): State<Arc<AppState>>, caller: Caller, JsonBody(body): JsonBody) -> Result<Response> {
    let store = state.store.clone();
    let bytes = state
        .heavy(move |deadline| {
            let (questions, is_batch) = parse_questions(&body)?;
            drop(body);
            let answers = store.read(|tx| {
                // Flows about the same port, or the same group list, share one index.
                let mut by_question: HashMap<(Option<Uuid>, &[Uuid]), usize> = HashMap::new();
                let mut by_groups: HashMap<Vec<Uuid>, usize> = HashMap::new();
                let mut built: Vec<(Policy, VerdictIndex)> = Vec::new();
                let mut answers = Vec::with_capacity(questions.len());
                let mut listed = 0;
                for question in &questions {
                    deadline.check()?;
                    let key = (question.port_id, question.group_ids.as_slice());
                    let position = match by_question.get(&key) {
                        Some(&i) => i,
                        None => {
                            let group_ids = match question.port_id {
                                Some(port_id) => visible_port(tx, &caller.viewer(), port_id)?.security_group_ids,
                                None => question.group_ids.clone(),
                            };
                            let i = match by_groups.get(&group_ids) {
                                Some(&i) => i,
                                None => {
                                    let policy = load_policy(tx, &caller.viewer(), &group_ids, deadline)?;
                                    deadline.check()?;
                                    let index = VerdictIndex::build(policy.rules.clone(), &policy.members);
                                    built.push((policy, index));
                                    by_groups.insert(group_ids, built.len() - 1);
                                    built.len() - 1
                                }
                            };
                            by_question.insert(key, i);
                            i
                        }
                    };
                    let (policy, index) = &built[position];
                    answers.push(answer(policy, index, question, &mut listed)?);
                }
                Ok::<_, ApiError>(answers)
            })?;
            deadline.check()?;
            if is_batch {
                to_json(&BatchOut { results: answers })
            } else {
                match answers.first() {
                    Some(answer) => to_json(answer),
                    None => to_json(&Value::Null),
                }
            }
        })
        .await?;
    Ok(json_bytes(bytes))
}

/// `GET /palisade/v1/ports/{port_id}/effective-rules`: the merged rules of every group on the port.
#[utoipa::path(
    get,
    path = "/palisade/v1/ports/{port_id}/effective-rules",
    operation_id = "getEffectiveRules",
    tag = "Verdicts and analysis",
    summary = "Effective rules of a port",
    description = "The rules of every group on the port, merged by direction in binding order (each rule with its group's name), the members of the remote groups they name, and the default action.",
    params(crate::schema::PortIdPath),
    responses((status = 200, description = "The merged rules of every group bound to the port", body = crate::schema::EffectiveRules), crate::openapi::NotFound, crate::openapi::GatewayTimeout)
)]
pub async fn effective_rules(State(state): State<Arc<AppState>>, caller: Caller, Path(port): Path<String>) -> Result<Response> {
    let port_id = path_uuid(&port, "Port")?;
    let bytes = state
        .read_heavy(move |tx, deadline| {
            let port = visible_port(tx, &caller.viewer(), port_id)?;
            let policy = load_policy(tx, &caller.viewer(), &port.security_group_ids, deadline)?;
            deadline.check()?;
            let mut rules = effective_rules_json(&port, &policy);
            crate::observe::add_port_hits(tx, &port, &policy, &mut rules)?;
            to_json(&rules)
        })
        .await?;
    Ok(json_bytes(bytes))
}

fn effective_rules_json(port: &palisade_core::port::Port, policy: &Policy) -> Value {
    let rules = |direction: Direction| -> Vec<Value> {
        policy
            .groups
            .iter()
            .flat_map(|g| g.rules.iter().filter(move |r| r.spec.direction == direction).map(move |r| (g, r)))
            .map(|(g, r)| {
                let mut rule = serde_json::to_value(RuleOut::from(r)).unwrap_or(Value::Null);
                rule["security_group_name"] = json!(g.name);
                rule
            })
            .collect()
    };
    let remote_groups: Vec<Value> = policy
        .members
        .iter()
        .map(|(id, m)| json!({"id": id.to_string(), "ipv4": m.ipv4.iter().map(ToString::to_string).collect::<Vec<_>>(), "ipv6": m.ipv6.iter().map(ToString::to_string).collect::<Vec<_>>()}))
        .collect();
    json!({
        "port_id": port.id.to_string(),
        "instance_id": port.instance_id.to_string(),
        "security_groups": policy.groups.iter().map(|g| json!({"id": g.id.to_string(), "name": g.name})).collect::<Vec<_>>(),
        "default_action": "drop",
        "stateful": true,
        "ingress": rules(Direction::Ingress),
        "egress": rules(Direction::Egress),
        "remote_groups": remote_groups,
    })
}

/// `GET /palisade/v1/securitygroups/{p}/{r}/{group_id}/analysis`.
#[utoipa::path(
    get,
    path = "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/analysis",
    operation_id = "analyzeSecurityGroup",
    tag = "Verdicts and analysis",
    summary = "Analyze a security group",
    description = "Duplicates, rules covered by a broader rule of the group (shadowed), overly broad rules (every protocol from anywhere, sensitive ports such as SSH, RDP or databases open to anywhere, large port ranges from anywhere), remote groups without members, rules the kernel can never match (IPv6 rules on extension-header protocols), and unused rules (no hit on any port for `unused_after_days`, default 30; 0: no hit ever recorded).",
    params(crate::schema::ScopePath, crate::schema::GroupIdPath, ("unused_after_days" = Option<u32>, Query, description = "Days without a hit that make a rule unused (default 30; 0: no hit ever)")),
    responses((status = 200, description = "The findings, empty for a clean group", body = crate::schema::Analysis), crate::openapi::NotFound, crate::openapi::GatewayTimeout)
)]
pub async fn analysis(
    State(state): State<Arc<AppState>>,
    GroupPath { caller, scope, id }: GroupPath,
    query: crate::extract::Query,
) -> Result<Response> {
    let unused_after_days = crate::observe::unused_after_days(&query)?;
    let bytes = state
        .read_heavy(move |tx, deadline| {
            let group = ops::load_group(tx, &scope, id)?;
            let policy = load_policy(tx, &caller.viewer(), &[id], deadline)?;
            deadline.check()?;
            let mut findings: Vec<Value> = analyze(&policy.rules, &policy.members).iter().map(|f: &Finding| json!(f)).collect();
            findings.extend(crate::observe::unused_findings(tx, &group, unused_after_days)?);
            to_json(&json!({
                "security_group_id": id.to_string(),
                "rule_count": policy.rules.len(),
                "findings": findings,
            }))
        })
        .await?;
    Ok(json_bytes(bytes))
}
