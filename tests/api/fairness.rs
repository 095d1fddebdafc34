//! Fair CPU (issue 12): the verdict engine indexes remote-group members once, heavy requests run
//! on the bounded pool within the request deadline (504 beyond it), and another tenant's cheap
//! reads are answered while heavy work runs. Timing figures are in docs/benchmarks.md ("Fair
//! CPU"); the only time bounds here are generous sanity bounds of seconds.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use palisade_api::ApiConfig;
use palisade_core::group::Scope;
use palisade_core::port::{MacAddr, Port};
use palisade_store::{Store, StoreError};
use serde_json::{Value, json};

use crate::helpers::*;

const MEMBERS: u32 = 100_000;
const RULES: usize = 250;

/// The address of member `i` of the big remote group.
fn member(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + i)
}

/// Registers ports of client 1 holding `MEMBERS` addresses (32 each), all bound to `group`,
/// straight through the store: the API's registration path is not what is under test.
fn seed_members(app: &TestApp, group: &str) {
    let group = uuid::Uuid::parse_str(group).expect("a group id");
    let store = app.state.store.clone();
    blocking(move || {
        store.write(|tx| {
            for n in 0..MEMBERS.div_ceil(32) {
                let id = uuid::Uuid::new_v4();
                let b = n.to_be_bytes();
                let port = Port {
                    id,
                    scope: Scope { client_id: 1, project_id: 1, region_id: 1 },
                    instance_id: uuid::Uuid::new_v4(),
                    instance_name: format!("member-{n}"),
                    host: format!("member-host-{}", n % 100),
                    device: palisade_core::port::default_device(id),
                    mac: MacAddr([0x02, 0x01, b[0], b[1], b[2], b[3]]),
                    fixed_ips: (n * 32..((n + 1) * 32).min(MEMBERS)).map(|i| IpAddr::V4(member(i))).collect(),
                    security_group_ids: vec![group],
                    created_at: 0,
                    updated_at: 0,
                };
                tx.insert_port(&port)?;
            }
            Ok::<_, StoreError>(())
        })
    })
    .expect("seeding the member ports");
}

/// Issue 12's case: a remote group of 100,000 member addresses and a group of 250 rules naming
/// it (TCP ports 1000..=1249), bound to a port of client 1. Returns (port id, the rules).
async fn big_remote_group(app: &TestApp) -> (String, Vec<Value>, String) {
    let members = app.create_group_v1("members", json!([])).await;
    let rules: Vec<Value> = (0..RULES)
        .map(|k| {
            json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 1000 + k, "port_range_max": 1000 + k,
                "remote_group_id": id_of(&members)})
        })
        .collect();
    let heavy = app.create_group_v1("names-members", json!(rules)).await;
    seed_members(app, &id_of(&members));
    let body = json!({
        "client_id": 1, "project_id": 1, "region_id": 1, "instance_id": uuid::Uuid::new_v4(), "host": "h1",
        "mac_address": "02:00:00:00:00:01", "fixed_ips": ["192.0.2.10"], "security_group_ids": [id_of(&heavy)],
    });
    let resp = app.platform().post_json("/palisade/v1/ports", &body).await;
    assert!(resp.status.is_success(), "registering the port: {}", resp.text);
    (id_of(&resp.body), rules_of(&heavy).clone(), id_of(&heavy))
}

fn flow(port: &str, remote: Ipv4Addr, tcp_port: usize) -> Value {
    json!({"port_id": port, "direction": "ingress", "remote_ip": remote.to_string(), "protocol": "tcp", "port": tcp_port})
}

/// Flows about the heavy group that no cache can share: the i-th names the group i + 1 times.
fn uncacheable_flows(group: &str, count: usize) -> Value {
    let flows: Vec<Value> = (0..count)
        .map(|i| {
            json!({"security_group_ids": vec![group; i + 1], "direction": "ingress", "remote_ip": member(i as u32).to_string(),
                "protocol": "tcp", "port": 1000})
        })
        .collect();
    json!({ "flows": flows })
}

#[tokio::test]
async fn a_remote_group_of_100000_members_named_by_250_rules_is_answered_exactly() {
    let app = spawn_app().await;
    let (port, rules, _) = big_remote_group(&app).await;
    let started = Instant::now();
    let last = app.post_json("/palisade/v1/verdicts", &flow(&port, member(MEMBERS - 1), 1249)).await.expect(200).body;
    let elapsed = started.elapsed();
    assert_eq!(last["verdict"], "allow", "{last}");
    assert_eq!(last["decided_by"]["rule_id"], rules[RULES - 1]["id"], "{last}");
    assert_eq!(last["matching_rules"].as_array().map(Vec::len), Some(1), "{last}");
    // Rules × members took 4.7 s in a release build; the index costs milliseconds there (the
    // figures are in docs/benchmarks.md). This bound only catches a return to rules × members.
    assert!(elapsed < Duration::from_secs(5), "one verdict took {elapsed:?}");

    let batch = json!({"flows": [
        flow(&port, member(0), 1000),
        flow(&port, member(54_321), 1100),
        flow(&port, member(MEMBERS), 1000),
        flow(&port, member(7), 999),
        flow(&port, Ipv4Addr::new(192, 0, 2, 1), 1000),
    ]});
    let answers = app.post_json("/palisade/v1/verdicts", &batch).await.expect(200).body;
    let decided: Vec<Value> = answers["results"].as_array().expect("results").iter().map(|a| a["decided_by"]["rule_id"].clone()).collect();
    assert_eq!(decided, [rules[0]["id"].clone(), rules[100]["id"].clone(), Value::Null, Value::Null, Value::Null], "{answers}");

    // The effective rules list the group's members once.
    let effective = app.get(&format!("/palisade/v1/ports/{port}/effective-rules")).await.expect(200).body;
    assert_eq!(effective["remote_groups"][0]["ipv4"].as_array().map(Vec::len), Some(MEMBERS as usize));
    assert_eq!(effective["ingress"].as_array().map(Vec::len), Some(RULES));
}

#[tokio::test]
async fn heavy_work_beyond_the_deadline_answers_504_and_cheap_reads_do_not_wait_for_it() {
    // A deadline that has always passed by the time work could start: every heavy request is a
    // 504, deterministically; the cheap reads are not heavy work and answer as usual.
    let app = spawn_app_with(ApiConfig { request_deadline: Duration::from_nanos(1), ..ApiConfig::default() }).await;
    let group = app.create_group_v1("tiny-deadline", json!([{"direction": "ingress", "protocol": "tcp", "port_range_min": 22}])).await;
    let ask =
        json!({"security_group_ids": [id_of(&group)], "direction": "ingress", "remote_ip": "10.0.0.1", "protocol": "tcp", "port": 22});
    let resp = app.post_json("/palisade/v1/verdicts", &ask).await;
    let body = resp.expect_error(504, "GatewayTimeout");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("deadline")), "{body}");
    app.get(&format!("{V1}?limit=1000")).await.expect_error(504, "GatewayTimeout");
    app.get(&format!("{V1}/{}/analysis", id_of(&group))).await.expect_error(504, "GatewayTimeout");
    // Small pages and single groups keep the inline path.
    assert_eq!(app.list_groups("limit=10").await["count"], 1);
    assert_eq!(app.get_group(&id_of(&group)).await["id"], group["id"]);
    app.get("/healthz").await.expect(200);
}

#[tokio::test]
async fn another_tenants_get_is_answered_while_a_heavy_verdict_runs() {
    let app = spawn_app_with(ApiConfig { request_deadline: Duration::from_secs(3), ..ApiConfig::default() }).await;
    let (_, _, heavy) = big_remote_group(&app).await;
    let other = app.client_as(2, 2, None);
    let theirs = other.create_group_v1("theirs", json!([])).await;

    // Each flow names the group a different number of times: no index can be shared, so every
    // flow reloads 100,000 members. Far more work than the deadline allows.
    let attacker = app.api.clone();
    let body = uncacheable_flows(&heavy, 150);
    let heavy_request = tokio::spawn(async move { attacker.post_json("/palisade/v1/verdicts", &body).await });
    let started = Instant::now();
    while app.state.heavy_pool.busy() == 0 {
        assert!(!heavy_request.is_finished() && started.elapsed() < Duration::from_secs(30), "the heavy request never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // While it runs on the pool, the other tenant's read and the health check are answered.
    assert_eq!(other.get_group(&id_of(&theirs)).await["id"], theirs["id"]);
    app.get("/healthz").await.expect(200);
    assert!(!heavy_request.is_finished(), "the heavy verdict ended before the other tenant's GET");

    // It ends at the deadline with a 504, and its work stops soon after (checked between flows):
    // nothing keeps running on the pool.
    let resp = heavy_request.await.expect("the heavy request");
    resp.expect_error(504, "GatewayTimeout");
    let ended = Instant::now();
    while app.state.heavy_pool.busy() > 0 {
        assert!(ended.elapsed() < Duration::from_secs(30), "the timed-out work kept running");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_verdict_answer_lists_a_bounded_number_of_matching_rules() {
    let app = spawn_app().await;
    // 250 distinct rules that all match TCP port 80 from anywhere.
    let rules: Vec<Value> =
        (0..RULES).map(|k| json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 1, "port_range_max": 80 + k})).collect();
    let group = app.create_group_v1("all-match-80", json!(rules)).await;
    let ask = |n: usize| {
        let flows: Vec<Value> = (0..n)
            .map(|_| json!({"security_group_ids": [id_of(&group)], "direction": "ingress", "remote_ip": "10.0.0.1", "protocol": "tcp", "port": 80}))
            .collect();
        json!({ "flows": flows })
    };
    // 400 flows × 250 matching rules = 100,000 entries: the most one answer lists.
    let answers = app.post_json("/palisade/v1/verdicts", &ask(400)).await.expect(200).body;
    assert_eq!(answers["results"][399]["matching_rules"].as_array().map(Vec::len), Some(RULES));
    app.post_json("/palisade/v1/verdicts", &ask(401)).await.expect_invalid("flows");
}
