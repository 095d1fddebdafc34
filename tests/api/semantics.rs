//! Rule semantics over the real HTTP API (issue 3, docs/semantics.md): a table of rule inputs,
//! each sent through the synchronous v1 rule add, the v2 rule create (a task) and the v2 group
//! create (a task), asserting the status or task outcome, that the error names the field, that
//! nothing was stored on failure, and the canonical form on success. Then duplicates, remote
//! groups, the GET -> PATCH round trip and quotas, including under concurrency.

use futures_util_free::join_all;
use serde_json::{Value, json};

use crate::helpers::*;

/// A small `join_all` so the suite needs no extra crate.
mod futures_util_free {
    pub async fn join_all<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output>
    where
        F: Send + 'static,
        F::Output: Send + 'static,
    {
        let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
        let mut out = Vec::with_capacity(handles.len());
        for handle in handles {
            out.push(handle.await.expect("task panicked"));
        }
        out
    }
}

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Refused by the schema: 400 on every path, before any task exists.
    Schema(&'static str),
    /// Refused by the semantics: this status on v1, a task in ERROR naming the field on v2.
    Semantic(u16, &'static str),
    /// Accepted; the stored rule has these canonical values (only the keys given are compared).
    Stored(fn() -> Value),
}

use Expect::*;

struct Case {
    name: &'static str,
    rule: fn() -> Value,
    expect: Expect,
}

macro_rules! case {
    ($name:expr, $rule:tt, $expect:expr) => {
        Case { name: $name, rule: || json!($rule), expect: $expect }
    };
}

const REMOTE: &str = "{remote}";
const OWN: &str = "{own}";

fn cases() -> Vec<Case> {
    vec![
        // SEMANTICS.md §1.11 rows, then our own.
        case!("T4 bad protocol name", {"direction": "ingress", "protocol": "bad_protocol_name"}, Schema("protocol")),
        case!("T5 prefix 192.168.1./24", {"direction": "ingress", "remote_ip_prefix": "192.168.1./24"}, Schema("remote_ip_prefix")),
        case!("T5 prefix /33", {"direction": "ingress", "remote_ip_prefix": "192.168.1.1/33"}, Schema("remote_ip_prefix")),
        case!("T5 prefix bad_prefix", {"direction": "ingress", "remote_ip_prefix": "bad_prefix"}, Schema("remote_ip_prefix")),
        case!("T5 prefix 256", {"direction": "ingress", "remote_ip_prefix": "256"}, Schema("remote_ip_prefix")),
        case!("T6 remote group bad_group_id", {"direction": "ingress", "remote_group_id": "bad_group_id"}, Schema("remote_group_id")),
        case!("T6 remote group unknown", {"direction": "ingress", "remote_group_id": "6f1b4a4e-0000-4000-8000-000000000001"}, Semantic(404, "remote_group_id")),
        case!("T7 both remotes", {"direction": "ingress", "remote_ip_prefix": "10.0.0.0/8", "remote_group_id": REMOTE}, Semantic(400, "remote_group_id")),
        case!("T8 bad ethertype", {"direction": "ingress", "ethertype": "bad_ethertype"}, Schema("ethertype")),
        case!("T9 tcp -16..80", {"direction": "ingress", "protocol": "tcp", "port_range_min": -16, "port_range_max": 80}, Schema("port_range_min")),
        case!("T10 tcp 80..79", {"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 79}, Semantic(400, "port_range_min")),
        case!("T11 tcp 80..65536", {"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 65536}, Schema("port_range_max")),
        case!("T12 tcp None..6", {"direction": "ingress", "protocol": "tcp", "port_range_max": 6}, Semantic(400, "port_range_min")),
        case!("T13 tcp -16..65536", {"direction": "ingress", "protocol": "tcp", "port_range_min": -16, "port_range_max": 65536}, Schema("port_range_min")),
        case!("T14 icmp 1..256", {"direction": "ingress", "protocol": "icmp", "port_range_min": 1, "port_range_max": 256}, Semantic(400, "port_range_max")),
        case!("T15 icmp -1..25", {"direction": "ingress", "protocol": "icmp", "port_range_min": -1, "port_range_max": 25}, Schema("port_range_min")),
        case!("T16 icmp None..6", {"direction": "ingress", "protocol": "icmp", "port_range_max": 6}, Semantic(400, "port_range_max")),
        case!("T17 icmp 300..1", {"direction": "ingress", "protocol": "icmp", "port_range_min": 300, "port_range_max": 1}, Semantic(400, "port_range_min")),
        case!("T22 IPv6 with IPv4 CIDR", {"direction": "ingress", "ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/8"}, Semantic(400, "remote_ip_prefix")),
        case!("T22 IPv4 with IPv6 CIDR", {"direction": "ingress", "ethertype": "IPv4", "remote_ip_prefix": "2001:db8::/32"}, Semantic(400, "remote_ip_prefix")),
        case!("P29 ipv6-encap with IPv4", {"direction": "ingress", "protocol": "ipv6-encap"}, Semantic(400, "protocol")),
        case!("P29 ipv6-frag with IPv4", {"direction": "ingress", "protocol": "ipv6-frag"}, Semantic(400, "protocol")),
        case!("P29 ipv6-icmp with IPv4", {"direction": "ingress", "protocol": "ipv6-icmp"}, Semantic(400, "protocol")),
        case!("P29 ipv6-nonxt with IPv4", {"direction": "ingress", "protocol": "ipv6-nonxt"}, Semantic(400, "protocol")),
        case!("P29 ipv6-opts with IPv4", {"direction": "ingress", "protocol": "ipv6-opts"}, Semantic(400, "protocol")),
        case!("P29 ipv6-route with IPv4", {"direction": "ingress", "protocol": "ipv6-route"}, Semantic(400, "protocol")),
        // Gcore's enums are exact: no other case, no numbers, no Neutron aliases (issue 12).
        case!("protocol TCP", {"direction": "ingress", "protocol": "TCP", "port_range_min": 22, "port_range_max": 22}, Schema("protocol")),
        case!("protocol Udp", {"direction": "ingress", "protocol": "Udp"}, Schema("protocol")),
        case!("protocol ANY", {"direction": "ingress", "protocol": "ANY"}, Schema("protocol")),
        case!("protocol 6", {"direction": "ingress", "protocol": 6, "port_range_min": 80, "port_range_max": 81}, Schema("protocol")),
        case!("protocol \"6\"", {"direction": "ingress", "protocol": "6"}, Schema("protocol")),
        case!("protocol 17", {"direction": "ingress", "protocol": 17}, Schema("protocol")),
        case!("protocol 58 with IPv6", {"direction": "ingress", "ethertype": "IPv6", "protocol": 58}, Schema("protocol")),
        case!("protocol icmpv6", {"direction": "ingress", "ethertype": "IPv6", "protocol": "icmpv6"}, Schema("protocol")),
        case!("ethertype IPV4", {"direction": "ingress", "ethertype": "IPV4"}, Schema("ethertype")),
        case!("ethertype ipv6", {"direction": "ingress", "ethertype": "ipv6"}, Schema("ethertype")),
        // `null` only where the schema says anyOf null.
        case!("ethertype null", {"direction": "ingress", "ethertype": null}, Schema("ethertype")),
        case!("description null", {"direction": "ingress", "description": null}, Schema("description")),
        case!("C35 ports without protocol", {"direction": "ingress", "port_range_min": 80, "port_range_max": 80}, Semantic(400, "port_range_min")),
        case!("C35 max without protocol", {"direction": "ingress", "port_range_max": 80}, Semantic(400, "port_range_max")),
        case!("C36 ports with gre", {"direction": "ingress", "protocol": "gre", "port_range_min": 1, "port_range_max": 2}, Semantic(400, "port_range_min")),
        case!("C36 ports with vrrp", {"direction": "ingress", "protocol": "vrrp", "port_range_min": 1}, Semantic(400, "port_range_min")),
        case!("C36 ports with esp", {"direction": "ingress", "protocol": "esp", "port_range_max": 9}, Semantic(400, "port_range_max")),
        case!("C36 ports with ah", {"direction": "ingress", "protocol": "ah", "port_range_min": 5, "port_range_max": 5}, Semantic(400, "port_range_min")),
        case!("C36 ports with ospf", {"direction": "ingress", "protocol": "ospf", "port_range_min": 5, "port_range_max": 5}, Semantic(400, "port_range_min")),
        case!("C37 tcp port 0", {"direction": "ingress", "protocol": "tcp", "port_range_min": 0, "port_range_max": 10}, Semantic(400, "port_range_min")),
        case!("C37 udp max 0", {"direction": "ingress", "protocol": "udp", "port_range_min": 10, "port_range_max": 0}, Semantic(400, "port_range_max")),
        case!("C37 sctp 0..0", {"direction": "ingress", "protocol": "sctp", "port_range_min": 0, "port_range_max": 0}, Semantic(400, "port_range_min")),
        case!("C38 protocol 256", {"direction": "ingress", "protocol": 256}, Schema("protocol")),
        case!("C38 protocol -1", {"direction": "ingress", "protocol": -1}, Schema("protocol")),
        case!("C41 direction sideways", {"direction": "sideways"}, Schema("direction")),
        case!("C41 direction upper case", {"direction": "INGRESS"}, Schema("direction")),
        case!("C41 direction missing", {"protocol": "tcp"}, Schema("direction")),
        case!("C42 port abc", {"direction": "ingress", "protocol": "tcp", "port_range_min": "abc"}, Schema("port_range_min")),
        case!("port 1.5", {"direction": "ingress", "protocol": "tcp", "port_range_min": 1.5}, Schema("port_range_min")),
        case!("udp 5..4", {"direction": "ingress", "protocol": "udp", "port_range_min": 5, "port_range_max": 4}, Semantic(400, "port_range_min")),
        case!("IPv6 icmp code 256", {"direction": "ingress", "ethertype": "IPv6", "protocol": "ipv6-icmp", "port_range_min": 1, "port_range_max": 256}, Semantic(400, "port_range_max")),
        case!("protocol true", {"direction": "ingress", "protocol": true}, Schema("protocol")),
        case!("protocol number outside the list", {"direction": "ingress", "protocol": 200}, Schema("protocol")),
        case!("protocol hopopt 0", {"direction": "ingress", "protocol": "0"}, Schema("protocol")),
        case!("prefix a number", {"direction": "ingress", "remote_ip_prefix": 10}, Schema("remote_ip_prefix")),
        case!("description too long", {"direction": "ingress", "description": "d".repeat(256)}, Schema("description")),
        case!("description a number", {"direction": "ingress", "description": 5}, Schema("description")),
        case!("ethertype a number", {"direction": "ingress", "ethertype": 4}, Schema("ethertype")),
        // Accepted, and stored in canonical form.
        case!("any means all", {"direction": "egress", "protocol": "any"}, Stored(|| json!({"protocol": null, "direction": "egress"}))),
        case!("null means all", {"direction": "ingress", "protocol": null}, Stored(|| json!({"protocol": null}))),
        case!("tcp with ports", {"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22}, Stored(|| json!({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22}))),
        case!("IPv6 icmp becomes ipv6-icmp", {"direction": "ingress", "ethertype": "IPv6", "protocol": "icmp"}, Stored(|| json!({"protocol": "ipv6-icmp", "ethertype": "IPv6"}))),
        case!("the schema's nulls", {"direction": "ingress", "protocol": null, "port_range_min": null, "port_range_max": null, "remote_ip_prefix": null, "remote_group_id": null}, Stored(|| json!({"protocol": null, "remote_ip_prefix": null, "remote_group_id": null}))),
        case!("tcp 1..65535 is the whole range", {"direction": "ingress", "protocol": "tcp", "port_range_min": 1, "port_range_max": 65535}, Stored(|| json!({"protocol": "tcp", "port_range_min": null, "port_range_max": null}))),
        case!("udp 1..65535 is the whole range", {"direction": "egress", "protocol": "udp", "port_range_min": 1, "port_range_max": 65535}, Stored(|| json!({"port_range_min": null, "port_range_max": null}))),
        case!("bare IPv4 address", {"direction": "ingress", "remote_ip_prefix": "10.0.0.1"}, Stored(|| json!({"remote_ip_prefix": "10.0.0.1/32"}))),
        case!("bare IPv6 address", {"direction": "ingress", "ethertype": "IPv6", "remote_ip_prefix": "2001:db8::1"}, Stored(|| json!({"remote_ip_prefix": "2001:db8::1/128"}))),
        case!("IPv6 prefix lower-cased", {"direction": "ingress", "ethertype": "IPv6", "remote_ip_prefix": "2001:DB8::/32"}, Stored(|| json!({"remote_ip_prefix": "2001:db8::/32"}))),
        case!("host bits kept", {"direction": "ingress", "remote_ip_prefix": "10.0.0.5/24"}, Stored(|| json!({"remote_ip_prefix": "10.0.0.5/24"}))),
        case!("0.0.0.0/0 kept as written", {"direction": "ingress", "remote_ip_prefix": "0.0.0.0/0"}, Stored(|| json!({"remote_ip_prefix": "0.0.0.0/0"}))),
        case!("single port from min", {"direction": "ingress", "protocol": "tcp", "port_range_min": 22}, Stored(|| json!({"port_range_min": 22, "port_range_max": 22}))),
        case!("ethertype IPv6", {"direction": "ingress", "ethertype": "IPv6"}, Stored(|| json!({"ethertype": "IPv6"}))),
        case!("ethertype defaults to IPv4", {"direction": "ingress"}, Stored(|| json!({"ethertype": "IPv4", "description": ""}))),
        case!("icmp type only", {"direction": "ingress", "protocol": "icmp", "port_range_min": 8}, Stored(|| json!({"port_range_min": 8, "port_range_max": null}))),
        case!("icmp type and code", {"direction": "ingress", "protocol": "icmp", "port_range_min": 3, "port_range_max": 4}, Stored(|| json!({"port_range_min": 3, "port_range_max": 4}))),
        case!("IPv6 echo request", {"direction": "ingress", "ethertype": "IPv6", "protocol": "ipv6-icmp", "port_range_min": 128, "port_range_max": 0}, Stored(|| json!({"port_range_min": 128, "port_range_max": 0}))),
        case!("udplite ports", {"direction": "ingress", "protocol": "udplite", "port_range_min": 5, "port_range_max": 6}, Stored(|| json!({"protocol": "udplite"}))),
        case!("dccp ports", {"direction": "ingress", "protocol": "dccp", "port_range_min": 7, "port_range_max": 8}, Stored(|| json!({"protocol": "dccp"}))),
        case!("sctp ports", {"direction": "ingress", "protocol": "sctp", "port_range_min": 9, "port_range_max": 9}, Stored(|| json!({"protocol": "sctp"}))),
        case!("gre without ports", {"direction": "ingress", "protocol": "gre"}, Stored(|| json!({"protocol": "gre", "port_range_min": null}))),
        case!("remote group", {"direction": "ingress", "remote_group_id": REMOTE}, Stored(|| json!({"remote_ip_prefix": null}))),
        case!("own group as remote", {"direction": "ingress", "protocol": "tcp", "remote_group_id": OWN}, Stored(|| json!({"protocol": "tcp"}))),
        case!("description kept", {"direction": "ingress", "description": "ssh from the office"}, Stored(|| json!({"description": "ssh from the office"}))),
        case!("unknown fields ignored", {"direction": "ingress", "security_group_id": "whatever", "color": "blue"}, Stored(|| json!({"direction": "ingress"}))),
    ]
}

/// The case's rule with `{remote}` / `{own}` replaced by real group ids.
fn materialise(rule: Value, remote: &str, own: &str) -> Value {
    let mut rule = rule;
    if let Some(id) = rule.get("remote_group_id").and_then(Value::as_str) {
        let id = match id {
            REMOTE => remote.to_string(),
            OWN => own.to_string(),
            other => other.to_string(),
        };
        rule["remote_group_id"] = json!(id);
    }
    rule
}

fn assert_stored(case: &Case, rule: &Value, expected: &Value) {
    for (key, value) in expected.as_object().expect("expected values are an object") {
        assert_eq!(&rule[key], value, "{}: field {key} of the stored rule {rule}", case.name);
    }
}

#[tokio::test]
async fn rule_table_over_every_write_path() {
    let app = spawn_app().await;
    let remote = app.create_group_v1("remote-group", json!([])).await;
    let remote_id = id_of(&remote);
    let table = cases();
    assert!(table.len() >= 80, "the table has {} cases", table.len());

    for case in &table {
        // A fresh group per case, so each outcome is checked against a known state.
        let group = app.create_group_v1(&format!("case-{}", uuid::Uuid::new_v4().simple()), json!([])).await;
        let group_id = id_of(&group);
        let rule = materialise((case.rule)(), &remote_id, &group_id);
        let before = app.snapshot().await;

        // 1. v1 rule add (synchronous).
        let v1 = app.post_json(&format!("{V1}/{group_id}/rules"), &rule).await;
        match case.expect {
            Schema(field) => {
                v1.expect_invalid(field);
            }
            Semantic(status, field) => {
                let class = if status == 404 { "NotFoundError" } else { "ValidationError" };
                let body = v1.expect_error(status, class);
                assert!(body["invalid_fields"].get(field).is_some(), "{}: invalid_fields lacks {field}: {}", case.name, v1.text);
            }
            Stored(expected) => {
                let stored = v1.expect(200).body;
                assert_stored(case, &stored, &expected());
                let group_now = app.get_group(&group_id).await;
                assert_eq!(rules_of(&group_now).len(), 1, "{}: one rule stored", case.name);
                app.delete(&format!("{V1_RULES}/{}", id_of(&stored))).await.expect(204);
            }
        }
        if !matches!(case.expect, Stored(_)) {
            assert_eq!(app.snapshot().await, before, "{}: a refused v1 add stored something", case.name);
        }

        // 2. v2 rule create (a task).
        let v2 = app.post_json(&format!("{V2}/{group_id}/rules"), &rule).await;
        match case.expect {
            Schema(field) => {
                v2.expect_invalid(field);
            }
            Semantic(_, field) => {
                let task = app.wait_error(&single_task(&v2.expect(200))).await;
                let error = task["error"].as_str().unwrap_or_default();
                assert!(error.contains(field), "{}: task error {error:?} does not name {field}", case.name);
                assert!(rules_of(&app.get_group(&group_id).await).is_empty(), "{}: a failed task stored a rule", case.name);
            }
            Stored(expected) => {
                let task = app.wait_finished(&single_task(&v2.expect(200))).await;
                let rule_id = task["created_resources"]["security_group_rules"][0].as_str().expect("created rule id").to_string();
                let group_now = app.get_group(&group_id).await;
                assert_stored(case, rule_by_id(&group_now, &rule_id).expect("the created rule is in the group"), &expected());
            }
        }

        // 3. v2 group create with the rule in its list (a task).
        let name = format!("v2-{}", uuid::Uuid::new_v4().simple());
        let count_before = app.group_count().await;
        let create = app.post_json(V2, &json!({"name": name, "rules": [rule.clone()]})).await;
        match case.expect {
            Schema(field) => {
                create.expect_invalid(&format!("rules.0.{field}"));
            }
            Semantic(_, field) => {
                let task = app.wait_error(&single_task(&create.expect(200))).await;
                let error = task["error"].as_str().unwrap_or_default();
                assert!(error.contains(field), "{}: task error {error:?} does not name {field}", case.name);
            }
            Stored(expected) => {
                let task = app.wait_finished(&single_task(&create.expect(200))).await;
                let created = app.get_group(task["created_resources"]["security_groups"][0].as_str().expect("group id")).await;
                assert_eq!(rules_of(&created).len(), 1, "{}: {created}", case.name);
                assert_stored(case, &rules_of(&created)[0], &expected());
                app.delete(&format!("{V1}/{}", id_of(&created))).await.expect(204);
            }
        }
        if !matches!(case.expect, Stored(_)) {
            assert_eq!(app.group_count().await, count_before, "{}: a refused create stored a group", case.name);
        }
        app.delete(&format!("{V1}/{group_id}")).await.expect(204);
    }
}

fn ssh(extra: Value) -> Value {
    let mut rule = json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 66, "port_range_max": 67});
    for (k, v) in extra.as_object().expect("object") {
        rule[k] = v.clone();
    }
    rule
}

#[tokio::test]
async fn duplicates_are_409_on_sync_paths_and_task_errors_on_v2() {
    let app = spawn_app().await;
    let group = app.create_group_v1("dups", json!([])).await;
    let group_id = id_of(&group);
    let existing = app.add_rule_v1(&group_id, ssh(json!({"remote_ip_prefix": "0.0.0.0/0", "description": "first"}))).await;
    let existing_id = id_of(&existing);

    // Spellings of the same identity: null prefix, another description.
    for spelling in [ssh(json!({})), ssh(json!({"remote_ip_prefix": null})), ssh(json!({"description": "other"}))] {
        let before = app.snapshot().await;
        let resp = app.post_json(&format!("{V1}/{group_id}/rules"), &spelling).await;
        let body = resp.expect_error(409, "SecurityGroupRuleExists");
        assert_eq!(resp.header("x-should-retry"), Some("false"));
        assert_eq!(body["info"]["existing_rule_id"], json!(existing_id));
        assert!(body["message"].as_str().unwrap().contains(&existing_id));
        assert_eq!(app.snapshot().await, before, "a refused duplicate changed something");

        let task = app.wait_error(&app.create_rule_v2(&group_id, spelling.clone()).await).await;
        assert!(task["error"].as_str().unwrap().contains(&existing_id), "{task}");
    }

    // Not duplicates: another prefix written with host bits, another port.
    app.add_rule_v1(&group_id, ssh(json!({"remote_ip_prefix": "10.0.0.5/24"}))).await;
    app.add_rule_v1(&group_id, ssh(json!({"remote_ip_prefix": "10.0.0.0/24"}))).await;
    app.add_rule_v1(&group_id, ssh(json!({"port_range_max": 68}))).await;
    assert_eq!(rules_of(&app.get_group(&group_id).await).len(), 4);

    // The deprecated PUT and the v1 PATCH refuse duplicates too, changing nothing.
    let other = app.add_rule_v1(&group_id, json!({"direction": "egress", "protocol": "udp"})).await;
    let before = app.snapshot().await;
    let put = app.put_json(&format!("{V1_RULES}/{}", id_of(&other)), &ssh(json!({}))).await;
    put.expect_error(409, "SecurityGroupRuleExists");
    let patch = app
        .patch_json(&format!("{V1}/{group_id}"), &json!({"name": "renamed", "changed_rules": [{"action": "create", "direction": "egress", "protocol": "icmp"}, {"action": "create", "direction": "ingress", "protocol": "tcp", "port_range_min": 66, "port_range_max": 67}]}))
        .await;
    let body = patch.expect_error(409, "SecurityGroupRuleExists");
    assert!(body["invalid_fields"].get("changed_rules.1.rule").is_some(), "{}", patch.text);
    assert_eq!(app.snapshot().await, before, "a refused v1 PATCH applied part of its changes");

    // IPv6: icmp and ipv6-icmp are one identity.
    app.add_rule_v1(&group_id, json!({"direction": "ingress", "ethertype": "IPv6", "protocol": "icmp"})).await;
    for spelling in [json!("ipv6-icmp"), json!("icmp")] {
        let resp = app
            .post_json(&format!("{V1}/{group_id}/rules"), &json!({"direction": "ingress", "ethertype": "IPv6", "protocol": spelling}))
            .await;
        resp.expect_error(409, "SecurityGroupRuleExists");
    }
}

#[tokio::test]
async fn duplicates_inside_one_request_are_created_once() {
    let app = spawn_app().await;
    let rules = json!([ssh(json!({})), ssh(json!({"description": "again"})), ssh(json!({"remote_ip_prefix": "0.0.0.0/0"})), {"direction": "egress"}]);
    let v2 = app.create_group_and_wait(json!({"name": "dedupe-v2", "rules": rules.clone()})).await;
    assert_eq!(rules_of(&v2).len(), 2, "{v2}");
    assert_eq!(rules_of(&v2)[0]["description"], "", "the first spelling wins");
    let v1 = app.create_group_v1("dedupe-v1", rules.clone()).await;
    assert_eq!(rules_of(&v1).len(), 2, "{v1}");
    let patched = app.patch_group_and_wait(&id_of(&v1), json!({"rules": rules})).await;
    assert_eq!(rule_ids(&patched), rule_ids(&v1), "the same list again keeps every rule");
}

#[tokio::test]
async fn get_then_patch_back_changes_nothing() {
    let app = spawn_app().await;
    let group = app
        .create_group_and_wait(json!({"name": "round-trip", "description": "d", "tags": {"a": "b"}, "rules": [
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 1, "port_range_max": 65535},
            {"direction": "ingress", "ethertype": "IPv6", "protocol": "icmp", "port_range_min": 128},
            {"direction": "ingress", "protocol": "udp", "port_range_min": 53, "remote_ip_prefix": "10.0.0.1"},
            {"direction": "egress", "protocol": "any", "remote_ip_prefix": "0.0.0.0/0", "description": "all out"},
            {"direction": "ingress", "ethertype": "IPv6", "remote_ip_prefix": "2001:DB8::/48"}
        ]}))
        .await;
    // Everything GET returned goes back, extra fields and all.
    let body = json!({"name": group["name"], "description": group["description"], "rules": group["security_group_rules"]});
    let tasks = app.patch_group(&id_of(&group), body).await;
    assert!(tasks.is_empty(), "sending back what GET returned created tasks {tasks:?}");
    let after = app.get_group(&id_of(&group)).await;
    assert_eq!(after, group, "sending back what GET returned changed the group");
}

#[tokio::test]
async fn deleting_a_remote_group_removes_the_rules_that_name_it() {
    let app = spawn_app().await;
    let target = app.create_group_v1("target", json!([])).await;
    let user =
        app.create_group_v1("user", json!([{"direction": "ingress", "remote_group_id": id_of(&target)}, {"direction": "egress"}])).await;
    app.delete(&format!("{V1}/{}", id_of(&target))).await.expect(204);
    let after = app.get_group(&id_of(&user)).await;
    assert_eq!(rules_of(&after).len(), 1, "{after}");
    assert_eq!(rules_of(&after)[0]["direction"], "egress");
    assert_eq!(after["revision_number"], json!(user["revision_number"].as_i64().unwrap() + 1));
}

const QUOTAS: &str = "/palisade/v1/quotas/1/1";
/// Client 1's quota of project 1, region 1, as the platform sets it.
const CLIENT_1_QUOTAS: &str = "/palisade/v1/quotas/1/1?client_id=1";

#[tokio::test]
async fn quotas_refuse_growth_and_name_the_quota() {
    let app = spawn_app().await;
    let platform = app.platform();
    // Invalid limits: 400 naming the field, nothing changes.
    for bad in [json!(-2), json!(2147483648i64), json!("value"), json!(1.5)] {
        let resp = platform.put_json(CLIENT_1_QUOTAS, &json!({"security_group_count": bad})).await;
        resp.expect_invalid("security_group_count");
    }
    let quota = app.get(QUOTAS).await.expect(200).body;
    assert_eq!(quota["security_group_count_usage"], 0);

    // Group quota 0: v1 create is a 409 QuotaLimitExceed, v2 create a task ERROR.
    platform.put_json(CLIENT_1_QUOTAS, &json!({"security_group_count": 0})).await.expect(200);
    let resp = app.post_json(V1, &json!({"security_group": {"name": "nope", "security_group_rules": []}})).await;
    let body = resp.expect_error(409, "QuotaLimitExceed");
    assert_eq!(body["info"]["quota"], "security_group_count");
    assert!(body["invalid_fields"].get("security_group_count").is_some());
    let task = app.wait_error(&app.create_group(json!({"name": "nope-v2"})).await).await;
    assert!(task["error"].as_str().unwrap().contains("security_group_count"), "{task}");
    assert_eq!(app.group_count().await, 0);

    // Rule quota 0: the default template needs rule quota, an empty group does not.
    platform.put_json(CLIENT_1_QUOTAS, &json!({"security_group_count": -1, "security_group_rule_count": 0})).await.expect(200);
    let task = app.wait_error(&app.create_group(json!({"name": "with-defaults"})).await).await;
    assert!(task["error"].as_str().unwrap().contains("security_group_rule_count"), "{task}");
    let empty = app.create_group_and_wait(json!({"name": "empty", "rules": []})).await;
    let resp = app.post_json(&format!("{V1}/{}/rules", id_of(&empty)), &json!({"direction": "ingress"})).await;
    resp.expect_error(409, "QuotaLimitExceed");
    // Copy counts too; revert to the (two-rule) template is refused; deleting always works.
    platform.put_json(CLIENT_1_QUOTAS, &json!({"security_group_rule_count": 1})).await.expect(200);
    app.add_rule_v1(&id_of(&empty), json!({"direction": "ingress"})).await;
    app.post_json(&format!("{V1}/{}/revert", id_of(&empty)), &Value::Null).await.expect_error(409, "QuotaLimitExceed");
    app.post_json(&format!("{V1}/{}/copy", id_of(&empty)), &json!({"name": "copy"})).await.expect_error(409, "QuotaLimitExceed");
    let quota = app.get(QUOTAS).await.expect(200).body;
    assert_eq!((quota["security_group_count_usage"].as_u64(), quota["security_group_rule_count_usage"].as_u64()), (Some(1), Some(1)));
    app.delete(&format!("{V1}/{}", id_of(&empty))).await.expect(204);
    let quota = app.get(QUOTAS).await.expect(200).body;
    assert_eq!((quota["security_group_count_usage"].as_u64(), quota["security_group_rule_count_usage"].as_u64()), (Some(0), Some(0)));
}

#[tokio::test]
async fn quotas_hold_under_parallel_creates() {
    let app = spawn_app().await;
    let platform = app.platform();
    platform.put_json(CLIENT_1_QUOTAS, &json!({"security_group_count": 5})).await.expect(200);
    // 20 synchronous creates at once: exactly 5 fit.
    let attempts: Vec<_> = (0..20)
        .map(|i| {
            let api = app.api.clone();
            async move {
                api.post_json(V1, &json!({"security_group": {"name": format!("sync-{i}"), "security_group_rules": []}}))
                    .await
                    .status
                    .as_u16()
            }
        })
        .collect();
    let statuses = join_all(attempts).await;
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 5, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 15, "{statuses:?}");

    // 20 task-based creates at once against 5 more slots.
    platform.put_json(CLIENT_1_QUOTAS, &json!({"security_group_count": 10})).await.expect(200);
    let attempts: Vec<_> = (0..20)
        .map(|i| {
            let api = app.api.clone();
            async move {
                let task = api.create_group(json!({"name": format!("task-{i}"), "rules": []})).await;
                api.wait_task(&task).await["state"].as_str().unwrap().to_string()
            }
        })
        .collect();
    let states = join_all(attempts).await;
    assert_eq!(states.iter().filter(|s| *s == "FINISHED").count(), 5, "{states:?}");
    assert_eq!(states.iter().filter(|s| *s == "ERROR").count(), 15, "{states:?}");
    assert_eq!(app.group_count().await, 10);
}

#[tokio::test]
async fn copy_keeps_remote_group_ids_as_they_are() {
    let app = spawn_app().await;
    let source = app.create_group_v1("source", json!([])).await;
    let source_id = id_of(&source);
    app.add_rule_v1(&source_id, json!({"direction": "ingress", "remote_group_id": source_id})).await;
    let copy = app.post_json(&format!("{V1}/{source_id}/copy"), &json!({"name": "copied"})).await.expect(200).body;
    assert_ne!(id_of(&copy), source_id);
    assert_eq!(rules_of(&copy)[0]["remote_group_id"], json!(source_id), "CONTRACT.md §5.5: remote_group_id kept as is");
    assert_ne!(rules_of(&copy)[0]["id"], rules_of(&app.get_group(&source_id).await)[0]["id"]);
}
