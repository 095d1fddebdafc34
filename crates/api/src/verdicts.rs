//! Palisade's answers beyond Gcore: flow verdicts (`POST /palisade/v1/verdicts`), the effective
//! rules of a port, and the analysis of a group. All of them compile the stored rules with
//! `core::verdict::compile_rule` — the same IR the nftables renderer consumes — and decide with
//! `core::verdict::VerdictIndex`.
//!
//! Each of these can be large (a port's groups may name remote groups of many thousands of
//! members), so they run on the bounded pool within the request deadline (`crate::pool`): the
//! store read, the index, the answers and their serialisation, never on the runtime's threads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::Response;
use palisade_core::analysis::{Finding, analyze};
use palisade_core::error::FieldErrors;
use palisade_core::group::Group;
use palisade_core::input::parse_protocol;
use palisade_core::policy::{Flow, Match, Members};
use palisade_core::rule::Direction;
use palisade_core::verdict::{VerdictIndex, compile_rule};
use palisade_store::{Store, Tx};
use palisade_worker::ops;
use serde::Serialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::dto::RuleOut;
use crate::error::{ApiError, Result};
use crate::extract::{Caller, GroupPath, JsonBody, path_uuid};
use crate::pool::{Deadline, json_bytes, to_json};
use crate::state::AppState;

/// The most flows one request may ask about.
pub const MAX_FLOWS: usize = 10_000;

/// The most `matching_rules` entries one answer may list in all (about 100 bytes each): a
/// request of a megabyte must not make an answer of hundreds (10,000 flows each matched by
/// every rule of a big port).
pub const MAX_MATCHING_RULES: usize = 100_000;

/// The compiled rules of some groups (in order), and the members of the remote groups they name.
struct Policy {
    groups: Vec<Group>,
    rules: Vec<Match>,
    members: BTreeMap<Uuid, Members>,
}

/// Loads `group_ids` (which must all be the caller's) and the members of their remote groups.
fn load_policy(tx: &mut dyn Tx, caller: &Caller, group_ids: &[Uuid], deadline: Deadline) -> Result<Policy> {
    let mut groups = tx.groups_by_ids(group_ids)?;
    // Another client's group, or one of a project the key may not use, does not exist for it.
    groups.retain(|g| g.scope.client_id == caller.client_id && caller.may_use_project(g.scope.project_id));
    let mut ordered = Vec::with_capacity(group_ids.len());
    for id in group_ids {
        let group = groups.iter().find(|g| g.id == *id).cloned().ok_or_else(|| ops::group_not_found(*id))?;
        ordered.push(group);
    }
    let rules: Vec<Match> = ordered.iter().flat_map(|g| g.rules.iter().map(compile_rule)).collect();
    // Each remote group once, however many rules name it.
    let remote_ids: HashSet<Uuid> =
        rules.iter().filter_map(|m| if let palisade_core::policy::Remote::Group(id) = m.remote { Some(id) } else { None }).collect();
    // Addresses are gathered first and each set built at once from them (sorting a vector and
    // building the tree in bulk is several times cheaper than as many inserts).
    let mut gathered: HashMap<Uuid, (Vec<Ipv4Addr>, Vec<Ipv6Addr>)> = remote_ids.iter().map(|id| (*id, Default::default())).collect();
    if !remote_ids.is_empty() {
        deadline.check()?;
        let ids: Vec<Uuid> = remote_ids.iter().copied().collect();
        for (n, port) in tx.ports_in_groups(&ids)?.into_iter().enumerate() {
            deadline.check_every(n, 1024)?;
            for group in &port.security_group_ids {
                if let Some((v4, v6)) = gathered.get_mut(group) {
                    for ip in &port.fixed_ips {
                        match ip {
                            IpAddr::V4(a) => v4.push(*a),
                            IpAddr::V6(a) => v6.push(*a),
                        }
                    }
                }
            }
        }
    }
    deadline.check()?;
    let members: BTreeMap<Uuid, Members> = gathered
        .into_iter()
        .map(|(id, (v4, v6))| (id, Members { ipv4: v4.into_iter().collect(), ipv6: v6.into_iter().collect() }))
        .collect();
    Ok(Policy { groups: ordered, rules, members })
}

/// A port of the caller's client in a project its key may use; any other is a 404, as if it did
/// not exist.
fn visible_port(tx: &mut dyn Tx, caller: &Caller, port_id: Uuid) -> Result<palisade_core::port::Port> {
    tx.get_port(Some(caller.client_id), port_id)?
        .filter(|port| caller.may_use_project(port.scope.project_id))
        .ok_or_else(|| ApiError::not_found(format!("Port {port_id} could not be found")))
}

/// One flow question, parsed.
struct Question {
    port_id: Option<Uuid>,
    group_ids: Vec<Uuid>,
    flow: Flow,
    established: bool,
}

fn parse_question(value: &Value, prefix: &str, errors: &mut FieldErrors) -> Option<Question> {
    let field = |name: &str| if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") };
    let Some(obj) = value.as_object() else {
        errors.add(if prefix.is_empty() { "body".to_string() } else { prefix.to_string() }, "Input should be an object");
        return None;
    };
    let before = errors.0.len();
    let port_id = match obj.get("port_id") {
        None | Some(Value::Null) => None,
        Some(v) => match v.as_str().map(Uuid::try_parse) {
            Some(Ok(id)) => Some(id),
            _ => {
                errors.add(field("port_id"), "Input should be a valid UUID");
                None
            }
        },
    };
    let mut group_ids = Vec::new();
    match obj.get("security_group_ids") {
        None | Some(Value::Null) => {}
        Some(Value::Array(items)) => {
            for item in items {
                match item.as_str().map(Uuid::try_parse) {
                    Some(Ok(id)) => group_ids.push(id),
                    _ => errors.add(field("security_group_ids"), "Input should be a list of UUIDs"),
                }
            }
        }
        Some(_) => errors.add(field("security_group_ids"), "Input should be a list of UUIDs"),
    }
    if port_id.is_none() && group_ids.is_empty() && errors.0.len() == before {
        errors.add(field("port_id"), "Give a port_id or a non-empty security_group_ids");
    }
    let direction = match obj.get("direction").and_then(Value::as_str).and_then(Direction::parse) {
        Some(d) => Some(d),
        None => {
            errors.add(field("direction"), "Input should be 'ingress' or 'egress'");
            None
        }
    };
    let remote = match obj.get("remote_ip").and_then(Value::as_str).map(str::parse::<IpAddr>) {
        Some(Ok(ip)) => Some(ip),
        _ => {
            errors.add(field("remote_ip"), "Input should be an IPv4 or IPv6 address (the source of ingress, the destination of egress)");
            None
        }
    };
    let protocol = match obj.get("protocol").map(parse_protocol) {
        Some(Ok(Some(p))) => Some(p.number()),
        _ => {
            errors.add(field("protocol"), "Input should be a protocol name or number (not 'any': a packet has one protocol)");
            None
        }
    };
    let mut number = |name: &str, max: u64| -> u16 {
        match obj.get(name) {
            None | Some(Value::Null) => 0,
            Some(v) => match v.as_u64() {
                Some(n) if n <= max => n as u16,
                _ => {
                    errors.add(field(name), format!("Input should be an integer from 0 to {max}"));
                    0
                }
            },
        }
    };
    let port = number("port", 65535);
    let icmp_type = number("icmp_type", 255);
    let icmp_code = number("icmp_code", 255);
    let established = match obj.get("established") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            errors.add(field("established"), "Input should be a boolean");
            false
        }
    };
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

#[derive(Serialize)]
struct RuleRefOut {
    rule_id: Uuid,
    security_group_id: Uuid,
}

/// One answer; fields in the order the earlier `json!` answers had (sorted).
#[derive(Serialize)]
struct AnswerOut {
    allowed: bool,
    connection: &'static str,
    decided_by: Option<RuleRefOut>,
    matching_rules: Vec<RuleRefOut>,
    reason: String,
    verdict: &'static str,
}

#[derive(Serialize)]
struct BatchOut {
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
                                Some(port_id) => visible_port(tx, &caller, port_id)?.security_group_ids,
                                None => question.group_ids.clone(),
                            };
                            let i = match by_groups.get(&group_ids) {
                                Some(&i) => i,
                                None => {
                                    let policy = load_policy(tx, &caller, &group_ids, deadline)?;
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
pub async fn effective_rules(State(state): State<Arc<AppState>>, caller: Caller, Path(port): Path<String>) -> Result<Response> {
    let port_id = path_uuid(&port, "Port")?;
    let bytes = state
        .read_heavy(move |tx, deadline| {
            let port = visible_port(tx, &caller, port_id)?;
            let policy = load_policy(tx, &caller, &port.security_group_ids, deadline)?;
            deadline.check()?;
            to_json(&effective_rules_json(&port, &policy))
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
pub async fn analysis(State(state): State<Arc<AppState>>, GroupPath { caller, scope, id }: GroupPath) -> Result<Response> {
    let bytes = state
        .read_heavy(move |tx, deadline| {
            ops::load_group(tx, &scope, id)?;
            let policy = load_policy(tx, &caller, &[id], deadline)?;
            deadline.check()?;
            let findings: Vec<Finding> = analyze(&policy.rules, &policy.members);
            to_json(&json!({
                "security_group_id": id.to_string(),
                "rule_count": policy.rules.len(),
                "findings": findings,
            }))
        })
        .await?;
    Ok(json_bytes(bytes))
}
