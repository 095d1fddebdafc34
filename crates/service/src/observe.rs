//! Issue 14, enforcement you can see: what agents report of the traffic they enforce (rule hit
//! counts, flow records), the flow-log settings tenants set on ports and groups (shipped to the
//! agents in the host policy), and what a proposed rule set would change for the flows seen.
//!
//! Agents speak only for their own host: entries about a port of another host are ignored (and
//! counted as such), so one host's agent cannot write another's counts or records.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use palisade_core::diff::diff_rules;
use palisade_core::group::Group;
use palisade_core::observe::{FlowLogEvents, FlowLogReport, FlowLogSetting, FlowRecord, RuleStatsReport};
use palisade_core::policy::{Flow, HostPolicy};
use palisade_core::port::Port;
use palisade_core::verdict::{Decision, VerdictIndex};
use palisade_core::{Rule, RuleDraft};
use palisade_store::observe::{FlowLogFilter, FlowLogTarget, RuleHitsRecord};
use palisade_store::{PortFilter, Tx};
use uuid::Uuid;

use crate::deadline::Deadline;
use crate::ops::{self, OpError, OpResult};
use crate::policy::Viewer;
use crate::verdicts::{Policy, compile_policy, load_policy};

/// Flow records one client keeps unless configured otherwise; the oldest go first.
pub const DEFAULT_MAX_FLOW_RECORDS_PER_CLIENT: u64 = 100_000;
/// Hours a flow record is kept unless configured otherwise.
pub const DEFAULT_FLOW_LOG_RETENTION_HOURS: u32 = 24;
/// The window of an impact question unless it says otherwise, and the longest it may ask for.
pub const DEFAULT_IMPACT_MINUTES: u32 = 60;
pub const MAX_IMPACT_MINUTES: u32 = 1440;
/// The newest records of one port an impact question reads at most.
pub const MAX_IMPACT_RECORDS_PER_PORT: u32 = 10_000;

/// What a report changed: entries counted, and entries ignored (ports not on the reporting host,
/// rules that no longer exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Ingested {
    pub accepted: u64,
    pub ignored: u64,
    /// Records deleted to keep clients within their cap (flow logs only).
    pub trimmed: u64,
}

/// The clients of the ports on `host`, by port id.
fn ports_on_host(tx: &mut dyn Tx, host: &str) -> OpResult<HashMap<Uuid, i64>> {
    let ports = tx.list_ports(None, &PortFilter { host: Some(host.to_string()), ..PortFilter::default() })?;
    Ok(ports.into_iter().map(|p| (p.id, p.scope.client_id)).collect())
}

fn saturating(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Adds the hit deltas of `host`'s agent to the counts, in the caller's transaction. A hit counts
/// only for a port of the host bound to the rule's group: an agent's report never puts one
/// client's port under another client's rule (their stats would show it).
pub fn apply_rule_stats(tx: &mut dyn Tx, host: &str, report: &RuleStatsReport) -> OpResult<Ingested> {
    let ports: HashMap<Uuid, Port> = tx
        .list_ports(None, &PortFilter { host: Some(host.to_string()), ..PortFilter::default() })?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();
    // The group of each (rule, port scope) asked about, once.
    let mut group_of: HashMap<(Uuid, Uuid), Option<Uuid>> = HashMap::new();
    let mut hits = Vec::new();
    for hit in &report.stats {
        let Some(port) = ports.get(&hit.port_id) else { continue };
        let group = match group_of.get(&(hit.rule_id, port.id)) {
            Some(group) => *group,
            None => {
                let group = tx.group_of_rule(&port.scope, hit.rule_id)?;
                group_of.insert((hit.rule_id, port.id), group);
                group
            }
        };
        if group.is_some_and(|g| port.security_group_ids.contains(&g)) {
            hits.push(RuleHitsRecord {
                rule_id: hit.rule_id,
                port_id: hit.port_id,
                client_id: port.scope.client_id,
                packets: saturating(hit.packets),
                bytes: saturating(hit.bytes),
                last_hit_ms: hit.last_hit_at.saturating_mul(1000),
            });
        }
    }
    let accepted = tx.add_rule_hits(&hits)?;
    Ok(Ingested { accepted, ignored: report.stats.len() as u64 - accepted, trimmed: 0 })
}

/// Stores the flow records of `host`'s agent, each under its port's client, and keeps every
/// client within `cap` records.
pub fn apply_flow_logs(tx: &mut dyn Tx, host: &str, report: &FlowLogReport, cap: u64) -> OpResult<Ingested> {
    let clients = ports_on_host(tx, host)?;
    let mut by_client: BTreeMap<i64, Vec<FlowRecord>> = BTreeMap::new();
    for record in &report.records {
        if let Some(&client_id) = clients.get(&record.port_id) {
            let stored = FlowRecord { start: record.start.saturating_mul(1000), end: record.end.saturating_mul(1000), ..record.clone() };
            by_client.entry(client_id).or_default().push(stored);
        }
    }
    let mut outcome = Ingested::default();
    for (client_id, records) in by_client {
        outcome.accepted += records.len() as u64;
        outcome.trimmed += tx.insert_flows(client_id, &records, cap)?;
    }
    outcome.ignored = report.records.len() as u64 - outcome.accepted;
    Ok(outcome)
}

/// The group `id` if the viewer sees it; any other is not found.
pub fn visible_group(tx: &mut dyn Tx, viewer: &Viewer, id: Uuid) -> OpResult<Group> {
    tx.groups_by_ids(&[id])?.into_iter().find(|g| viewer.sees(&g.scope)).ok_or_else(|| ops::group_not_found(id))
}

/// What logging a port does given its own setting and its groups': their union (drop and accept
/// together are all).
pub fn merge_events(a: Option<FlowLogEvents>, b: Option<FlowLogEvents>) -> Option<FlowLogEvents> {
    match (a, b) {
        (Some(a), Some(b)) if a != b => Some(FlowLogEvents::All),
        (a, b) => a.or(b),
    }
}

/// Fills each port's effective flow-log setting into a host policy read in the same transaction.
pub fn fill_flow_logs(tx: &mut dyn Tx, policy: &mut HostPolicy) -> OpResult<()> {
    let port_ids: Vec<Uuid> = policy.ports.iter().map(|p| p.id).collect();
    let group_ids: Vec<Uuid> = policy.security_groups.iter().map(|g| g.id).collect();
    let settings: HashMap<FlowLogTarget, FlowLogEvents> = tx.flow_log_settings(&port_ids, &group_ids)?.into_iter().collect();
    for port in &mut policy.ports {
        let own = settings.get(&FlowLogTarget::Port(port.id)).copied();
        let events = port.security_group_ids.iter().map(|g| settings.get(&FlowLogTarget::Group(*g)).copied()).fold(own, merge_events);
        port.flow_log = events.map(|events| FlowLogSetting { events });
    }
    Ok(())
}

/// The counts of every rule of `group` on every port that has hits, of the group's client only.
pub fn group_rule_hits(tx: &mut dyn Tx, group: &Group) -> OpResult<Vec<RuleHitsRecord>> {
    let rule_ids: Vec<Uuid> = group.rules.iter().map(|r| r.id).collect();
    let mut hits = tx.rule_hits(&rule_ids)?;
    hits.retain(|h| h.client_id == group.scope.client_id);
    Ok(hits)
}

/// The totals of each rule over the ports: (packets, bytes, last hit in ms).
pub fn totals_by_rule(hits: &[RuleHitsRecord]) -> HashMap<Uuid, (i64, i64, i64)> {
    let mut totals: HashMap<Uuid, (i64, i64, i64)> = HashMap::new();
    for hit in hits {
        let total = totals.entry(hit.rule_id).or_insert((0, 0, i64::MIN));
        total.0 = total.0.saturating_add(hit.packets);
        total.1 = total.1.saturating_add(hit.bytes);
        total.2 = total.2.max(hit.last_hit_ms);
    }
    totals
}

/// Rules of `rules` with no hit on any port for `days` days before `now_ms`, with their last hit
/// if any, in the rules' order. A rule younger than that has not had its chance yet and is not
/// listed; with 0 days every rule without any hit recorded is.
pub fn unused_rules(rules: &[Rule], hits: &[RuleHitsRecord], days: u32, now_ms: i64) -> Vec<(Uuid, Option<i64>)> {
    let totals = totals_by_rule(hits);
    let since = now_ms - i64::from(days) * 86_400_000;
    rules
        .iter()
        .filter_map(|rule| {
            let last = totals.get(&rule.id).map(|t| t.2);
            let unused = match days {
                0 => last.is_none(),
                _ => rule.created_at < since && last.is_none_or(|last| last < since),
            };
            unused.then_some((rule.id, last))
        })
        .collect()
}

/// The rule that decided a flow under one of the two policies; `proposed` when it is a rule of
/// the proposed set that does not exist yet (it has no id until the change is made).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decider {
    pub rule_id: Option<Uuid>,
    pub security_group_id: Uuid,
    pub proposed: bool,
}

/// A flow whose verdict the change would turn, with the rule that allowed it before (newly
/// denied) or would allow it after (newly allowed).
#[derive(Debug, Clone)]
pub struct ChangedFlow {
    pub flow: FlowRecord,
    pub rule: Option<Decider>,
}

#[derive(Debug, Clone)]
pub struct PortImpact {
    pub port_id: Uuid,
    pub newly_denied: Vec<ChangedFlow>,
    pub newly_allowed: Vec<ChangedFlow>,
}

#[derive(Debug, Clone)]
pub struct Impact {
    pub window_minutes: u32,
    pub flows_considered: u64,
    pub ports: Vec<PortImpact>,
}

/// The verdict engine's question for a logged flow: the remote end is the source of an ingress
/// record and the destination of an egress one.
fn flow_question(record: &FlowRecord) -> Flow {
    let remote = match record.direction {
        palisade_core::Direction::Ingress => record.src_addr,
        palisade_core::Direction::Egress => record.dst_addr,
    };
    let icmp = matches!(record.protocol, 1 | 58);
    Flow {
        direction: record.direction,
        remote,
        protocol: record.protocol,
        dport_or_type: if icmp { u16::from(record.icmp_type.unwrap_or(0)) } else { record.dst_port.unwrap_or(0) },
        code: if icmp { record.icmp_code.unwrap_or(0) } else { 0 },
    }
}

fn index_of(policy: &Policy) -> VerdictIndex {
    VerdictIndex::build(policy.rules.clone(), &policy.members)
}

/// Which flows seen in the last `minutes` on the ports bound to `group_id` the rule set `drafts`
/// (the `rules` of a v2 PATCH) would newly deny or newly allow, each decided by the verdict
/// engine under the current and the proposed policy of its port. Changes nothing.
pub fn impact(
    tx: &mut dyn Tx,
    viewer: &Viewer,
    group_id: Uuid,
    drafts: &[RuleDraft],
    minutes: u32,
    now_ms: i64,
    deadline: Deadline,
) -> OpResult<Impact> {
    let current = visible_group(tx, viewer, group_id)?;
    let desired = ops::normalize_all(drafts, "rules").map_err(OpError::Rule)?;
    let diff = diff_rules(&current.rules, &desired);
    let mut proposed = current.clone();
    proposed.rules.retain(|r| !diff.delete.contains(&r.id));
    let mut new_rules = BTreeSet::new();
    for spec in diff.create {
        let rule = Rule { id: Uuid::new_v4(), group_id, spec, created_at: now_ms };
        new_rules.insert(rule.id);
        proposed.rules.push(rule);
    }
    let decider = |decision: &Decision| {
        decision.rule.map(|r| {
            let proposed = new_rules.contains(&r.rule_id);
            Decider { rule_id: (!proposed).then_some(r.rule_id), security_group_id: r.group_id, proposed }
        })
    };
    let ports: Vec<_> = tx.ports_in_groups(&[group_id])?.into_iter().filter(|p| viewer.sees(&p.scope)).collect();
    let since = now_ms - i64::from(minutes) * 60_000;
    let mut outcome = Impact { window_minutes: minutes, flows_considered: 0, ports: Vec::new() };
    for port in ports {
        deadline.check()?;
        let filter = FlowLogFilter {
            client_id: Some(viewer.client_id),
            port_ids: Some(vec![port.id]),
            since_ms: Some(since),
            limit: MAX_IMPACT_RECORDS_PER_PORT,
            ..FlowLogFilter::default()
        };
        let (_, records) = tx.list_flows(&filter)?;
        let mut seen = BTreeSet::new();
        let flows: Vec<(Flow, FlowRecord)> = records
            .into_iter()
            .map(|stored| (flow_question(&stored.record), stored.record))
            .filter(|(flow, _)| seen.insert((flow.direction.as_str(), flow.remote, flow.protocol, flow.dport_or_type, flow.code)))
            .collect();
        outcome.flows_considered += flows.len() as u64;
        if flows.is_empty() {
            continue;
        }
        let policy = load_policy(tx, viewer, &port.security_group_ids, deadline)?;
        let before = index_of(&policy);
        // The port's groups in binding order, the proposed one in place of the stored one.
        let groups: Vec<Group> = policy.groups.into_iter().map(|g| if g.id == group_id { proposed.clone() } else { g }).collect();
        let after = index_of(&compile_policy(tx, groups, deadline)?);
        let mut changed = PortImpact { port_id: port.id, newly_denied: Vec::new(), newly_allowed: Vec::new() };
        for (flow, record) in flows {
            let (was, will) = (before.decide(&flow), after.decide(&flow));
            match (was.allowed, will.allowed) {
                (true, false) => changed.newly_denied.push(ChangedFlow { flow: record, rule: decider(&was) }),
                (false, true) => changed.newly_allowed.push(ChangedFlow { flow: record, rule: decider(&will) }),
                _ => {}
            }
        }
        outcome.ports.push(changed);
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use palisade_core::RuleSpec;

    use super::*;

    const DAY_MS: i64 = 86_400_000;

    fn rule(created_at: i64) -> Rule {
        let spec: RuleSpec = palisade_core::rule::default_template().remove(0);
        Rule { id: Uuid::new_v4(), group_id: Uuid::nil(), spec, created_at }
    }

    fn hit(rule: &Rule, last_hit_ms: i64) -> RuleHitsRecord {
        RuleHitsRecord { rule_id: rule.id, port_id: Uuid::new_v4(), client_id: 1, packets: 1, bytes: 60, last_hit_ms }
    }

    #[test]
    fn unused_means_no_hit_in_the_window_for_a_rule_old_enough() {
        let now = 100 * DAY_MS;
        let (never, long_ago, recently, young) = (rule(0), rule(0), rule(0), rule(now - DAY_MS));
        let hits = [hit(&long_ago, 10 * DAY_MS), hit(&recently, now - 2 * DAY_MS), hit(&recently, 5 * DAY_MS)];
        let rules = [never.clone(), long_ago.clone(), recently.clone(), young.clone()];
        let ids = |days| unused_rules(&rules, &hits, days, now).into_iter().map(|(id, _)| id).collect::<Vec<_>>();
        assert_eq!(ids(30), vec![never.id, long_ago.id], "a rule younger than the window has not had its chance");
        assert_eq!(ids(0), vec![never.id, young.id], "0 days: no hit ever recorded");
        assert_eq!(unused_rules(&rules, &hits, 30, now)[1].1, Some(10 * DAY_MS), "the latest hit is named");
    }

    #[test]
    fn a_port_logs_the_union_of_its_settings() {
        use FlowLogEvents::*;
        assert_eq!(merge_events(None, None), None);
        assert_eq!(merge_events(Some(Drop), None), Some(Drop));
        assert_eq!(merge_events(None, Some(Accept)), Some(Accept));
        assert_eq!(merge_events(Some(Drop), Some(Accept)), Some(All));
        assert_eq!(merge_events(Some(Drop), Some(Drop)), Some(Drop));
    }
}
