//! Enforcement you can see (issue 14), end to end: real connections through ports enforced by the
//! real agent, then what the API says of them.
//! - Rule hit counts: 10 new connections admitted by a rule are 10 hits of that rule on that port
//!   within 20 s, in the group's rule stats and the port's effective rules; a rule nothing
//!   matched has none; the counts continue across an agent restart.
//! - Flow logs: with a port's log on (`all`), its denied flows are `REJECT` records without a
//!   rule and its accepted ones `ACCEPT` records naming the admitting rule, within 30 s; a port
//!   whose log is off has no record.
//! - Impact: the flows of that log decided under a proposed rule set.
//!
//! The agents run with their default report intervals (10 s for hit counts, 10 s for flow
//! records): the latency bounds are the issue's, for the agent as it ships.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::lab::{AgentProcess, Api, ClientAndWeb, Instance, Lab, Wiring, addr, egress_all, ingress};
use crate::traffic::{Probe, mismatches, tcp_connect_bound, tcp_echo_server};

const HOST: &str = "h1";

/// How long after its connections a rule's hits must show in the API.
const HITS_WITHIN: Duration = Duration::from_secs(20);

/// How long after its packet a flow record must be queryable.
const RECORDS_WITHIN: Duration = Duration::from_secs(30);

/// Reads with `read` until it answers `Ok`, which must come within `limit` of `since` (the
/// traffic the read is about); `Err` carries what was seen, for the failure message.
async fn within<T>(what: &str, since: Instant, limit: Duration, mut read: impl AsyncFnMut() -> Result<T, String>) -> T {
    loop {
        let outcome = read().await;
        let elapsed = since.elapsed();
        match outcome {
            Ok(found) => {
                assert!(elapsed <= limit, "{what}: only after {elapsed:?} (the bound is {limit:?})");
                println!("{what}: after {} ms", elapsed.as_millis());
                return found;
            }
            Err(seen) => assert!(elapsed < limit, "{what}: not within {limit:?}; last seen: {seen}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Tenant: a GET that must answer 200.
async fn get(api: &Api, path: &str) -> Value {
    let (status, body) = api.tenant.call(Method::GET, path, None).await;
    Api::expect(status, 200, &body);
    body
}

/// The packets `rule` admitted on `port` per `GET …/rule-stats` of `group` (0 when the rule is
/// not listed for the port: no hit), with the answer.
async fn group_hits(api: &Api, group: Uuid, rule: Uuid, port: Uuid) -> (u64, Value) {
    let body = get(api, &format!("/palisade/v1/security_groups/{group}/rule-stats")).await;
    let listed: Vec<&Value> = body["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("no rules list: {body}"))
        .iter()
        .filter(|h| h["rule_id"] == rule.to_string() && h["port_id"] == port.to_string())
        .collect();
    assert!(listed.len() <= 1, "one entry per rule and port: {body}");
    let packets = listed.first().map_or(0, |h| h["packets"].as_u64().unwrap_or_else(|| panic!("packets: {body}")));
    (packets, body)
}

/// The packets of `rule` in `GET /palisade/v1/ports/{port}/effective-rules`, with the answer.
async fn effective_hits(api: &Api, port: Uuid, rule: Uuid) -> (u64, Value) {
    let body = get(api, &format!("/palisade/v1/ports/{port}/effective-rules")).await;
    let listed = ["ingress", "egress"]
        .iter()
        .flat_map(|direction| body[direction].as_array().into_iter().flatten())
        .find(|r| r["id"] == rule.to_string())
        .unwrap_or_else(|| panic!("rule {rule} is not among the effective rules: {body}"));
    let packets = listed["packets"].as_u64().unwrap_or_else(|| panic!("no packets for {rule}: {body}"));
    (packets, body)
}

/// One connection (opened, echoed, closed) from each of `source_ports` of `from` to `to`: one
/// new connection, so one SYN for a rule to admit, per port.
fn connect_from_each(from: &Instance, source_ports: RangeInclusive<u16>, to: SocketAddr) {
    for port in source_ports {
        assert!(tcp_connect_bound(&from.ns, Some(addr(from.v4, port)), to).is_some(), "{}:{port} -> {to} is open", from.v4);
    }
}

/// Waits until `rule` has exactly `want` hits on `port`, in the group's rule stats, within
/// [`HITS_WITHIN`] of `sent`; a count past `want` fails at once.
async fn expect_hits(api: &Api, group: Uuid, rule: Uuid, port: Uuid, want: u64, sent: Instant) {
    let what = format!("{want} hits of rule {rule} on port {port}");
    within(&what, sent, HITS_WITHIN, async || {
        let (packets, body) = group_hits(api, group, rule, port).await;
        assert!(packets <= want, "{packets} hits, more than the {want} connections: {body}");
        if packets == want { Ok(()) } else { Err(body.to_string()) }
    })
    .await;
}

/// 10 connections admitted by a rule are 10 hits of it on the port within 20 s, in the group's
/// rule stats and in the port's effective rules; the group's other rule, which nothing matched,
/// has none. The agent is killed and started again: 5 more connections make 15.
#[test]
fn rule_hits_count_new_connections_and_continue_across_an_agent_restart() {
    let Some(lab) = Lab::if_can_run(Wiring::Routed, &[2]) else { return };
    lab.run_with_api(&[HOST], async |lab, api| {
        let (a, c) = (&lab.instances[0], &lab.instances[1]);
        let ClientAndWeb { web, open, agent, .. } = ClientAndWeb::set_up(lab, api, HOST, &[80, 8080]).await;
        let (admitting, idle) = (open[0], open[1]);
        let to = addr(c.v4, 80);

        let sent = Instant::now();
        connect_from_each(a, 40001..=40010, to);
        expect_hits(api, web, admitting, c.port_id, 10, sent).await;
        let (idle_hits, body) = group_hits(api, web, idle, c.port_id).await;
        assert_eq!(idle_hits, 0, "the rule of TCP 8080 matched nothing: {body}");
        assert_eq!(effective_hits(api, c.port_id, admitting).await.0, 10);
        assert_eq!(effective_hits(api, c.port_id, idle).await.0, 0);

        // SIGKILL: the new agent starts from the kernel's counters as the old one left them. It
        // takes them as its baseline, so connections made before its first apply would not
        // count: wait for that apply (the policy revision does not move, so `converge` would not).
        agent.kill();
        let agent = AgentProcess::spawn(&lab.dir, api, HOST);
        let started = Instant::now();
        within("the restarted agent applies its policy", started, Duration::from_secs(20), async || {
            let log = agent.log_text();
            if log.contains("replaced the nftables tables") || log.contains("updated the nftables tables") { Ok(()) } else { Err(log) }
        })
        .await;

        let sent = Instant::now();
        connect_from_each(a, 40011..=40015, to);
        expect_hits(api, web, admitting, c.port_id, 15, sent).await;
        assert_eq!(group_hits(api, web, idle, c.port_id).await.0, 0, "still nothing matched TCP 8080");
        let (packets, body) = effective_hits(api, c.port_id, admitting).await;
        assert_eq!(packets, 15, "{body}");
        drop(agent);
    });
}

/// Client `a` (group `clients`), `c` and `d` (group `web`, TCP 80 open, nothing else in), all on
/// one host, with the flow log on (`all`) for c's port only; a's connections to TCP 80 (open) and
/// 8080 (refused) of both, and the records of them on c's port once they are queryable.
struct LoggedTraffic {
    scene: ClientAndWeb,
    /// a → c TCP 80, admitted by `scene.open[0]`.
    accepted: Value,
    /// a → c TCP 8080, refused by the default drop.
    rejected: Value,
}

impl LoggedTraffic {
    async fn set_up(lab: &Lab, api: &Api) -> LoggedTraffic {
        let (a, c, d) = (&lab.instances[0], &lab.instances[1], &lab.instances[2]);
        let scene = ClientAndWeb::set_up(lab, api, HOST, &[80]).await;
        api.register(d, HOST, &[scene.web]).await;
        tcp_echo_server(&d.ns, addr(d.v4, 80));
        let setting = json!({"enabled": true, "events": "all"});
        let (status, body) =
            api.tenant.call(Method::PUT, &format!("/palisade/v1/ports/{}/flow-log", c.port_id), Some(setting.clone())).await;
        Api::expect(status, 200, &body);
        assert_eq!(body, setting);
        api.converge(HOST).await;

        let sent = Instant::now();
        let probe = |to: SocketAddr, allowed| (format!("a -> {to}"), &a.ns, Probe::Tcp(to), allowed);
        let probes =
            [probe(addr(c.v4, 80), true), probe(addr(c.v4, 8080), false), probe(addr(d.v4, 80), true), probe(addr(d.v4, 8080), false)];
        let wrong = mismatches(&probes);
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));

        let path = format!("/palisade/v1/flow-logs?port_id={}&limit=1000", c.port_id);
        let (accepted, rejected) = within("the records of a's flows on c's port", sent, RECORDS_WITHIN, async || {
            let body = get(api, &path).await;
            let find = |dst_port: u16, action: &str| {
                body["results"].as_array().into_iter().flatten().find(|r| {
                    r["src_addr"] == a.v4.to_string()
                        && r["dst_addr"] == c.v4.to_string()
                        && r["dst_port"] == dst_port
                        && r["protocol"] == 6
                        && r["action"] == action
                })
            };
            match (find(80, "ACCEPT"), find(8080, "REJECT")) {
                (Some(accepted), Some(rejected)) => Ok((accepted.clone(), rejected.clone())),
                _ => Err(body.to_string()),
            }
        })
        .await;
        LoggedTraffic { scene, accepted, rejected }
    }
}

/// c's log (`all`) holds its refused flow as `REJECT` with no rule and its accepted one as
/// `ACCEPT` with the rule that admitted it, within 30 s; d, in the same group with its log off,
/// and a have no record.
#[test]
fn flow_logs_name_the_deciding_rule_and_only_logged_ports_record() {
    let Some(lab) = Lab::if_can_run(Wiring::Routed, &[3]) else { return };
    lab.run_with_api(&[HOST], async |lab, api| {
        let (c, d) = (&lab.instances[1], &lab.instances[2]);
        let LoggedTraffic { scene, accepted, rejected } = LoggedTraffic::set_up(lab, api).await;
        for (record, action) in [(&accepted, "ACCEPT"), (&rejected, "REJECT")] {
            assert_eq!(record["port_id"], c.port_id.to_string(), "{record}");
            assert_eq!(record["direction"], "ingress", "{record}");
            assert!(record["packets"].as_u64().is_some_and(|p| p >= 1), "{action}: {record}");
            assert!(record["src_port"].as_u64().is_some(), "{record}");
        }
        assert_eq!(accepted["rule_id"], scene.open[0].to_string(), "the rule of TCP 80 admitted it: {accepted}");
        assert_eq!(rejected["rule_id"], Value::Null, "the default drop refused it: {rejected}");

        // Whatever else c's log holds, a refusal never names a rule.
        let logged = get(api, &format!("/palisade/v1/flow-logs?port_id={}&limit=1000", c.port_id)).await;
        for record in logged["results"].as_array().unwrap() {
            assert!(record["action"] == "ACCEPT" || record["rule_id"].is_null(), "{record}");
        }
        // d's flows were shipped by the same agent as c's, which are in: none was recorded.
        let unlogged = get(api, &format!("/palisade/v1/flow-logs?port_id={}", d.port_id)).await;
        assert_eq!(unlogged, json!({"count": 0, "results": []}));
        let everything = get(api, "/palisade/v1/flow-logs?limit=1000").await;
        let ports: Vec<&Value> = everything["results"].as_array().unwrap().iter().map(|r| &r["port_id"]).collect();
        assert!(ports.iter().all(|p| **p == c.port_id.to_string()), "only c's port logs: {everything}");
    });
}

/// Tenant: the impact of replacing `group`'s rules with `rules`, over the last hour of flows.
async fn impact(api: &Api, group: Uuid, rules: Vec<Value>) -> Value {
    let (status, body) = api
        .tenant
        .call(Method::POST, &format!("/palisade/v1/security_groups/{group}/impact"), Some(json!({"rules": rules, "minutes": 60})))
        .await;
    Api::expect(status, 200, &body);
    assert_eq!(body["window_minutes"], 60, "{body}");
    body
}

/// The flows of `list` (`newly_denied` or `newly_allowed`) on `port` in an impact answer.
fn changed<'a>(body: &'a Value, port: Uuid, list: &str) -> Vec<&'a Value> {
    body["ports"]
        .as_array()
        .unwrap_or_else(|| panic!("no ports: {body}"))
        .iter()
        .filter(|p| p["port_id"] == port.to_string())
        .flat_map(|p| p[list].as_array().unwrap_or_else(|| panic!("no {list}: {body}")))
        .collect()
}

/// Every port of an impact answer with nothing newly denied or allowed.
#[track_caller]
fn expect_no_change(what: &str, body: &Value) {
    for port in body["ports"].as_array().unwrap_or_else(|| panic!("no ports: {body}")) {
        assert_eq!((&port["newly_denied"], &port["newly_allowed"]), (&json!([]), &json!([])), "{what}: {body}");
    }
}

/// Whether an impact entry is the flow of `record` (same addresses, ports and protocol).
fn same_flow(entry: &Value, record: &Value) -> bool {
    ["direction", "src_addr", "src_port", "dst_addr", "dst_port", "protocol"].iter().all(|k| entry[k] == record[k])
}

/// With the flows of [`LoggedTraffic`] in c's log: dropping the rule that admitted a → c TCP 80
/// lists that flow newly denied on c's port, naming the rule; the current rules as they are, or
/// with a rule no seen flow meets, list nothing; opening TCP 8080 lists the refused flow newly
/// allowed.
#[test]
fn impact_of_a_change_lists_the_logged_flows_it_turns() {
    let Some(lab) = Lab::if_can_run(Wiring::Routed, &[3]) else { return };
    lab.run_with_api(&[HOST], async |lab, api| {
        let c = &lab.instances[1];
        let LoggedTraffic { scene, accepted, rejected } = LoggedTraffic::set_up(lab, api).await;
        let current = || egress_all().into_iter().chain([ingress("IPv4", "tcp", 80)]).collect::<Vec<Value>>();

        let without_80 = impact(api, scene.web, egress_all()).await;
        let denied = changed(&without_80, c.port_id, "newly_denied");
        let cut = denied.iter().find(|f| same_flow(f, &accepted)).unwrap_or_else(|| panic!("{accepted} is not newly denied: {without_80}"));
        assert_eq!(cut["rule_before"]["rule_id"], scene.open[0].to_string(), "{without_80}");
        assert_eq!(cut["rule_before"]["security_group_id"], scene.web.to_string(), "{without_80}");
        assert_eq!(changed(&without_80, c.port_id, "newly_allowed"), Vec::<&Value>::new(), "{without_80}");
        assert!(without_80["flows_considered"].as_u64().is_some_and(|n| n >= 2), "{without_80}");

        expect_no_change("the current rules", &impact(api, scene.web, current()).await);
        let unrelated = current().into_iter().chain([ingress("IPv4", "udp", 53)]).collect();
        expect_no_change("a rule for UDP 53, which no flow used", &impact(api, scene.web, unrelated).await);

        let with_8080 = impact(api, scene.web, current().into_iter().chain([ingress("IPv4", "tcp", 8080)]).collect()).await;
        let allowed = changed(&with_8080, c.port_id, "newly_allowed");
        let opened =
            allowed.iter().find(|f| same_flow(f, &rejected)).unwrap_or_else(|| panic!("{rejected} is not newly allowed: {with_8080}"));
        assert_eq!(opened["rule_after"]["proposed"], true, "a rule the change creates admits it: {with_8080}");
        assert_eq!(changed(&with_8080, c.port_id, "newly_denied"), Vec::<&Value>::new(), "{with_8080}");
    });
}
