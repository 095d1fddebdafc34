//! Enforcement you can see (issue 14) over HTTP: agents' rule-hit and flow-log reports, the
//! tenants' reads of them, flow-log settings in the host policy, and the impact of a change.

use palisade_api::ApiConfig;
use serde_json::{Value, json};

use crate::helpers::*;

/// Registers a port of `client` on `host` (as the platform does), with a MAC of its own.
async fn register_port(app: &TestApp, client: i64, host: &str, groups: &[&str], ip: &str) -> String {
    let id = uuid::Uuid::new_v4();
    let b = id.as_bytes();
    let body = json!({
        "id": id, "client_id": client, "project_id": 1, "region_id": 1, "instance_id": uuid::Uuid::new_v4(), "host": host,
        "mac_address": format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3]),
        "fixed_ips": [ip], "security_group_ids": groups,
    });
    let resp = app.platform().post_json("/palisade/v1/ports", &body).await;
    assert!(resp.status.is_success(), "registering a port: {}", resp.text);
    id_of(&resp.body)
}

fn now_s() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// A flow record of `port`: ingress from `src` to port `dst_port` (TCP).
fn record(port: &str, src: &str, dst_port: u16, action: &str, rule: Option<&str>) -> Value {
    json!({
        "port_id": port, "direction": "ingress", "src_addr": src, "src_port": 40000, "dst_addr": "10.0.0.5",
        "dst_port": dst_port, "protocol": 6, "icmp_type": null, "icmp_code": null, "packets": 1, "bytes": 60,
        "start": now_s() - 30, "end": now_s() - 29, "action": action, "rule_id": rule,
    })
}

#[tokio::test]
async fn every_new_route_admits_only_its_roles() {
    let app = spawn_app().await;
    let group = app.create_group_v1("web", json!([])).await;
    let group = id_of(&group);
    let port = register_port(&app, 1, "h1", &[&group], "10.0.0.5").await;
    let (platform, agent, other_agent) = (app.platform(), app.agent("h1"), app.agent("h2"));
    let stats = json!({"stats": []});
    let flows = json!({"records": [], "dropped_flows": 0});
    // Agent routes: that host's agent only.
    agent.post_json("/palisade/v1/agents/h1/rule-stats", &stats).await.expect(200);
    agent.post_json("/palisade/v1/agents/h1/flow-logs", &flows).await.expect(200);
    other_agent.post_json("/palisade/v1/agents/h1/rule-stats", &stats).await.expect_error(403, "PermissionDenied");
    other_agent.post_json("/palisade/v1/agents/h1/flow-logs", &flows).await.expect_error(403, "PermissionDenied");
    app.post_json("/palisade/v1/agents/h1/rule-stats", &stats).await.expect_error(403, "PermissionDenied");
    platform.post_json("/palisade/v1/agents/h1/flow-logs", &flows).await.expect_error(403, "PermissionDenied");
    // Tenant routes.
    let setting = json!({"enabled": true, "events": "all"});
    let tenant_routes = [
        ("GET", format!("/palisade/v1/security_groups/{group}/rule-stats"), None),
        ("GET", format!("/palisade/v1/ports/{port}/flow-log"), None),
        ("PUT", format!("/palisade/v1/ports/{port}/flow-log"), Some(&setting)),
        ("GET", format!("/palisade/v1/security_groups/{group}/flow-log"), None),
        ("PUT", format!("/palisade/v1/security_groups/{group}/flow-log"), Some(&setting)),
        ("POST", format!("/palisade/v1/security_groups/{group}/impact"), Some(&json!({"rules": []}))),
    ];
    for (method, path, body) in &tenant_routes {
        let method: reqwest::Method = method.parse().unwrap();
        app.call(method.clone(), path, *body).await.expect(200);
        platform.call(method.clone(), path, *body).await.expect_error(403, "PermissionDenied");
        agent.call(method.clone(), path, *body).await.expect_error(403, "PermissionDenied");
    }
    // Flow records: the tenant, and the platform naming a client.
    app.get("/palisade/v1/flow-logs").await.expect(200);
    platform.get("/palisade/v1/flow-logs?client_id=1").await.expect(200);
    platform.get("/palisade/v1/flow-logs").await.expect_invalid("client_id");
    agent.get("/palisade/v1/flow-logs").await.expect_error(403, "PermissionDenied");
    // Another client's port and group do not exist for this tenant.
    let other = app.client_as(2, 1, None);
    other.get(&format!("/palisade/v1/ports/{port}/flow-log")).await.expect_error(404, "NotFoundError");
    other.get(&format!("/palisade/v1/security_groups/{group}/rule-stats")).await.expect_error(404, "NotFoundError");
}

#[tokio::test]
async fn bodies_are_validated_field_by_field() {
    let app = spawn_app().await;
    let group = id_of(&app.create_group_v1("web", json!([])).await);
    let port = register_port(&app, 1, "h1", &[&group], "10.0.0.5").await;
    let path = format!("/palisade/v1/ports/{port}/flow-log");
    app.put_json(&path, &json!({"events": "all"})).await.expect_invalid("enabled");
    app.put_json(&path, &json!({"enabled": true})).await.expect_invalid("events");
    app.put_json(&path, &json!({"enabled": true, "events": "some"})).await.expect_invalid("events");
    app.put_json(&path, &json!({"enabled": "yes", "events": "all"})).await.expect_invalid("enabled");
    app.put_json(&path, &json!({"enabled": false, "color": "red"})).await.expect_invalid("color");
    let impact = format!("/palisade/v1/security_groups/{group}/impact");
    app.post_json(&impact, &json!({})).await.expect_invalid("rules");
    app.post_json(&impact, &json!({"rules": [], "minutes": 0})).await.expect_invalid("minutes");
    app.post_json(&impact, &json!({"rules": [], "minutes": 1441})).await.expect_invalid("minutes");
    app.post_json(&impact, &json!({"rules": [{"direction": "sideways"}]})).await.expect_error(400, "ValidationError");
    app.get("/palisade/v1/flow-logs?action=DROP").await.expect_invalid("action");
    app.get("/palisade/v1/flow-logs?limit=1001").await.expect_invalid("limit");
    app.get("/palisade/v1/flow-logs?since=yesterday").await.expect_invalid("since");
    app.get("/palisade/v1/flow-logs?port_id=nope").await.expect_invalid("port_id");
    let agent = app.agent("h1");
    agent.post_json("/palisade/v1/agents/h1/rule-stats", &json!({"stats": [{"port_id": port}]})).await.expect_error(400, "ValidationError");
    agent.post_json("/palisade/v1/agents/h1/flow-logs", &json!({"records": "many"})).await.expect_error(400, "ValidationError");
}

#[tokio::test]
async fn rule_stats_accumulate_and_show_in_effective_rules_and_analysis() {
    let app = spawn_app().await;
    let group = app
        .create_group_v1(
            "web",
            json!([
                {"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "10.0.0.0/8"},
                {"direction": "ingress", "protocol": "tcp", "port_range_min": 443, "port_range_max": 443},
            ]),
        )
        .await;
    let group_id = id_of(&group);
    let rules: Vec<String> =
        rules_of(&group).iter().filter(|r| r["port_range_min"] == 22 || r["port_range_min"] == 443).map(id_of).collect();
    let (ssh, https) = (rules[0].clone(), rules[1].clone());
    let port = register_port(&app, 1, "h1", &[&group_id], "10.0.0.5").await;
    let elsewhere = register_port(&app, 1, "h2", &[&group_id], "10.0.0.6").await;
    let other_group = id_of(&app.create_group_v1("other", json!([])).await);
    let unbound = register_port(&app, 1, "h1", &[&other_group], "10.0.0.7").await;
    let agent = app.agent("h1");
    let hit = |port: &str, packets: u64, at: i64| json!({"port_id": port, "rule_id": ssh, "packets": packets, "bytes": packets * 60, "last_hit_at": at});
    let first =
        agent.post_json("/palisade/v1/agents/h1/rule-stats", &json!({"stats": [hit(&port, 4, 1_700_000_000)]})).await.expect(200).body;
    assert_eq!((first["accepted"].as_u64(), first["ignored"].as_u64()), (Some(1), Some(0)));
    // The second report adds; the entry about a port of host h2 is not h1's to report, and a
    // port of h1 not bound to the rule's group cannot have hit it (it would show in the stats).
    let second = agent
        .post_json(
            "/palisade/v1/agents/h1/rule-stats",
            &json!({"stats": [hit(&port, 6, 1_700_000_100), hit(&elsewhere, 99, 1_700_000_100), hit(&unbound, 7, 1_700_000_100)]}),
        )
        .await
        .expect(200)
        .body;
    assert_eq!((second["accepted"].as_u64(), second["ignored"].as_u64()), (Some(1), Some(2)));
    let stats = app.get(&format!("/palisade/v1/security_groups/{group_id}/rule-stats")).await.expect(200).body;
    assert_eq!(stats["rules"].as_array().unwrap().len(), 1, "{stats}");
    let counted = &stats["rules"][0];
    assert_eq!((counted["rule_id"].as_str(), counted["port_id"].as_str()), (Some(ssh.as_str()), Some(port.as_str())));
    assert_eq!((counted["packets"].as_i64(), counted["bytes"].as_i64()), (Some(10), Some(600)));
    assert_eq!(counted["last_hit_at"], "2023-11-14T22:15:00.000Z");
    // Effective rules carry the port's counts; a rule never hit shows zero and null.
    let effective = app.get(&format!("/palisade/v1/ports/{port}/effective-rules")).await.expect(200).body;
    let rule = |id: &str| effective["ingress"].as_array().unwrap().iter().find(|r| r["id"] == id).cloned().unwrap();
    assert_eq!((rule(&ssh)["packets"].as_i64(), rule(&ssh)["bytes"].as_i64()), (Some(10), Some(600)));
    assert_eq!((rule(&https)["packets"].as_i64(), rule(&https)["last_hit_at"].clone()), (Some(0), Value::Null));
    // The Gcore group answer stays as it was.
    assert!(app.get_group(&group_id).await["security_group_rules"][0].get("packets").is_none());
    // Analysis: with 0 days a rule that never had a hit is unused; the hit one is not. With the
    // default 30 days rules created just now have not had their chance yet.
    let analysis = |days: &str| format!("/cloud/v1/securitygroups/1/1/{group_id}/analysis{days}");
    let unused = |body: &Value| -> Vec<String> {
        body["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["kind"] == "unused")
            .map(|f| f["rule_id"].as_str().unwrap().to_string())
            .collect()
    };
    let now = app.get(&analysis("?unused_after_days=0")).await.expect(200).body;
    assert!(unused(&now).contains(&https) && !unused(&now).contains(&ssh), "{now}");
    let month = app.get(&analysis("")).await.expect(200).body;
    assert!(unused(&month).is_empty(), "{month}");
    app.get(&analysis("?unused_after_days=-1")).await.expect_invalid("unused_after_days");
}

#[tokio::test]
async fn flow_log_settings_reach_the_host_policy() {
    let app = spawn_app().await;
    let group = id_of(&app.create_group_v1("web", json!([])).await);
    let port = register_port(&app, 1, "h1", &[&group], "10.0.0.5").await;
    let agent = app.agent("h1");
    let policy = || async { agent.get("/palisade/v1/agents/h1/policy").await.expect(200) };
    let before = policy().await;
    assert!(before.body["ports"][0].get("flow_log").is_none(), "{}", before.text);
    let revision = |resp: &Resp| resp.header("x-policy-revision").unwrap().parse::<i64>().unwrap();
    let set = app.put_json(&format!("/palisade/v1/ports/{port}/flow-log"), &json!({"enabled": true, "events": "drop"})).await.expect(200);
    assert_eq!(set.body, json!({"enabled": true, "events": "drop"}));
    let after_port = policy().await;
    assert!(revision(&after_port) > revision(&before), "a setting must make the agent reload");
    assert_eq!(after_port.body["ports"][0]["flow_log"], json!({"events": "drop"}));
    // The group's accept joins the port's drop: the port logs all.
    app.put_json(&format!("/palisade/v1/security_groups/{group}/flow-log"), &json!({"enabled": true, "events": "accept"}))
        .await
        .expect(200);
    assert_eq!(policy().await.body["ports"][0]["flow_log"], json!({"events": "all"}));
    let read = app.get(&format!("/palisade/v1/security_groups/{group}/flow-log")).await.expect(200).body;
    assert_eq!(read, json!({"enabled": true, "events": "accept"}));
    app.put_json(&format!("/palisade/v1/ports/{port}/flow-log"), &json!({"enabled": false})).await.expect(200);
    app.put_json(&format!("/palisade/v1/security_groups/{group}/flow-log"), &json!({"enabled": false})).await.expect(200);
    assert!(policy().await.body["ports"][0].get("flow_log").is_none());
    assert_eq!(app.get(&format!("/palisade/v1/ports/{port}/flow-log")).await.expect(200).body, json!({"enabled": false, "events": null}));
}

#[tokio::test]
async fn flow_logs_filter_isolate_clients_and_hold_the_cap() {
    let app = spawn_app_with(ApiConfig { flow_log_max_records_per_client: 3, ..ApiConfig::default() }).await;
    let group = id_of(&app.create_group_v1("web", json!([])).await);
    let mine = register_port(&app, 1, "h1", &[&group], "10.0.0.5").await;
    let bare = register_port(&app, 1, "h1", &[], "10.0.0.7").await;
    let theirs_client = app.client_as(2, 1, None);
    let theirs = register_port(&app, 2, "h1", &[], "10.0.0.6").await;
    let elsewhere = register_port(&app, 1, "h2", &[], "10.0.0.8").await;
    let agent = app.agent("h1");
    let records = json!({"dropped_flows": 0, "records": [
        record(&mine, "192.0.2.1", 22, "REJECT", None),
        record(&bare, "192.0.2.2", 80, "ACCEPT", Some(&uuid::Uuid::new_v4().to_string())),
        record(&theirs, "192.0.2.3", 22, "REJECT", None),
        record(&elsewhere, "192.0.2.4", 22, "REJECT", None),
    ]});
    let stored = agent.post_json("/palisade/v1/agents/h1/flow-logs", &records).await.expect(200).body;
    assert_eq!((stored["accepted"].as_u64(), stored["ignored"].as_u64()), (Some(3), Some(1)));
    let all = app.get("/palisade/v1/flow-logs").await.expect(200).body;
    assert_eq!(all["count"], 2, "client 1 sees its own two records: {all}");
    let rejected = app.get("/palisade/v1/flow-logs?action=REJECT").await.expect(200).body;
    assert_eq!(rejected["results"][0]["src_addr"], "192.0.2.1");
    assert_eq!(rejected["results"][0]["rule_id"], Value::Null);
    assert!(rejected["results"][0]["start"].as_str().unwrap().ends_with('Z'));
    let by_group = app.get(&format!("/palisade/v1/flow-logs?security_group_id={group}")).await.expect(200).body;
    assert_eq!((by_group["count"].as_u64(), by_group["results"][0]["port_id"].as_str()), (Some(1), Some(mine.as_str())));
    assert_eq!(app.get(&format!("/palisade/v1/flow-logs?port_id={bare}")).await.expect(200).body["count"], 1);
    assert_eq!(app.get("/palisade/v1/flow-logs?since=2999-01-01T00:00:00Z").await.expect(200).body["count"], 0);
    // Client 2 never sees client 1's records, nor its port.
    let other = theirs_client.get("/palisade/v1/flow-logs").await.expect(200).body;
    assert_eq!((other["count"].as_u64(), other["results"][0]["port_id"].as_str()), (Some(1), Some(theirs.as_str())));
    theirs_client.get(&format!("/palisade/v1/flow-logs?port_id={mine}")).await.expect_error(404, "NotFoundError");
    assert_eq!(app.platform().get("/palisade/v1/flow-logs?client_id=2").await.expect(200).body["count"], 1);
    // A key of client 1 limited to project 2 sees nothing of project 1's ports.
    assert_eq!(app.client_as(1, 1, Some(vec![2])).get("/palisade/v1/flow-logs").await.expect(200).body["count"], 0);
    // The cap of 3 records per client holds: the oldest go first.
    let more: Vec<Value> = (0..4).map(|i| record(&mine, &format!("198.51.100.{i}"), 443, "REJECT", None)).collect();
    let trimmed = agent.post_json("/palisade/v1/agents/h1/flow-logs", &json!({"records": more, "dropped_flows": 0})).await.expect(200).body;
    assert_eq!(trimmed["trimmed"], 3);
    let capped = app.get("/palisade/v1/flow-logs").await.expect(200).body;
    assert_eq!(capped["count"], 3, "{capped}");
    assert!(capped["results"].as_array().unwrap().iter().all(|r| r["src_addr"].as_str().unwrap().starts_with("198.51.100.")));
    assert_eq!(theirs_client.get("/palisade/v1/flow-logs").await.expect(200).body["count"], 1, "another client's cap is its own");
}

#[tokio::test]
async fn impact_lists_the_flows_a_change_would_cut_or_admit() {
    let app = spawn_app().await;
    let ssh_rule =
        json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "192.0.2.0/24"});
    let https_rule = json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 443, "port_range_max": 443});
    let group = app.create_group_v1("web", json!([ssh_rule, https_rule])).await;
    let group_id = id_of(&group);
    let ssh = rules_of(&group).iter().find(|r| r["port_range_min"] == 22).map(id_of).unwrap();
    let kept = json!([https_rule]);
    let port = register_port(&app, 1, "h1", &[&group_id], "10.0.0.5").await;
    let agent = app.agent("h1");
    let records = json!({"dropped_flows": 0, "records": [
        record(&port, "192.0.2.10", 22, "ACCEPT", Some(&ssh)),
        record(&port, "192.0.2.10", 22, "ACCEPT", Some(&ssh)),
        record(&port, "203.0.113.9", 3306, "REJECT", None),
    ]});
    agent.post_json("/palisade/v1/agents/h1/flow-logs", &records).await.expect(200);
    let impact = format!("/palisade/v1/security_groups/{group_id}/impact");
    // Removing the SSH rule cuts the logged SSH flow (seen twice, listed once).
    let cut = app.post_json(&impact, &json!({"rules": kept, "minutes": 60})).await.expect(200).body;
    assert_eq!((cut["window_minutes"].as_u64(), cut["flows_considered"].as_u64()), (Some(60), Some(2)), "{cut}");
    let denied = cut["ports"][0]["newly_denied"].as_array().unwrap();
    assert_eq!(denied.len(), 1, "{cut}");
    assert_eq!((denied[0]["src_addr"].as_str(), denied[0]["dst_port"].as_u64()), (Some("192.0.2.10"), Some(22)));
    assert_eq!(denied[0]["rule_before"]["rule_id"], ssh.as_str());
    assert!(cut["ports"][0]["newly_allowed"].as_array().unwrap().is_empty());
    // Opening MySQL admits the rejected flow, by a rule the change would create.
    let opened = json!([ssh_rule, https_rule, {"direction": "ingress", "protocol": "tcp", "port_range_min": 3306, "port_range_max": 3306}]);
    let admit = app.post_json(&impact, &json!({"rules": opened})).await.expect(200).body;
    let allowed = admit["ports"][0]["newly_allowed"].as_array().unwrap();
    assert_eq!((allowed.len(), allowed[0]["dst_port"].as_u64()), (1, Some(3306)), "{admit}");
    assert_eq!((allowed[0]["rule_after"]["proposed"].as_bool(), allowed[0]["rule_after"]["rule_id"].clone()), (Some(true), Value::Null));
    assert_eq!(admit["window_minutes"], 60);
    // A change that touches no seen flow lists none; nothing was changed by asking.
    let unrelated = json!([ssh_rule, https_rule, {"direction": "egress", "protocol": "udp", "port_range_min": 53, "port_range_max": 53}]);
    let none = app.post_json(&impact, &json!({"rules": unrelated})).await.expect(200).body;
    assert!(
        none["ports"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["newly_denied"].as_array().unwrap().is_empty() && p["newly_allowed"].as_array().unwrap().is_empty()),
        "{none}"
    );
    assert_eq!(rules_of(&app.get_group(&group_id).await).len(), rules_of(&group).len());

    // `palisade check impact` says the same in a terminal; --fail-on-deny exits 3 on a cut.
    let dir = TempDir::new("impact");
    let (cut_file, none_file) = (dir.path().join("cut.json"), dir.path().join("none.json"));
    std::fs::write(&cut_file, kept.to_string()).unwrap();
    std::fs::write(&none_file, json!({"rules": unrelated}).to_string()).unwrap();
    let args = |file: &std::path::Path| {
        ["impact", "--group", &group_id, "--rules", file.to_str().unwrap(), "--minutes", "30", "--fail-on-deny"].map(str::to_owned)
    };
    let (cut_args, none_args) = (args(&cut_file), args(&none_file));
    let (code, out) = crate::verdicts::check(&app, &cut_args.each_ref().map(String::as_str)).await;
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("last 30 minutes") && out.contains("newly DENIED") && out.contains("192.0.2.10:40000") && out.contains(&ssh),
        "{out}"
    );
    let (code, out) = crate::verdicts::check(&app, &none_args.each_ref().map(String::as_str)).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("no seen flow changes its verdict"), "{out}");
}
