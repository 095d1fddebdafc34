//! Flow verdicts, effective rules and group analysis (issue 6) over HTTP, on hand-built groups
//! whose right answers are known.

use serde_json::{Value, json};

use crate::helpers::*;

/// Registers a port of client 1 on host h1 (as the platform does), with a MAC of its own.
async fn register_port(app: &TestApp, groups: &[&str], ip: &str) -> String {
    let id = uuid::Uuid::new_v4();
    let b = id.as_bytes();
    let body = json!({
        "id": id, "client_id": 1, "project_id": 1, "region_id": 1, "instance_id": uuid::Uuid::new_v4(), "host": "h1",
        "mac_address": format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3]),
        "fixed_ips": [ip], "security_group_ids": groups,
    });
    let resp = app.platform().post_json("/palisade/v1/ports", &body).await;
    assert!(resp.status.is_success(), "registering a port: {}", resp.text);
    id_of(&resp.body)
}

async fn verdict(app: &TestApp, question: Value) -> Value {
    app.post_json("/palisade/v1/verdicts", &question).await.expect(200).body
}

#[tokio::test]
async fn verdicts_name_the_deciding_rule() {
    let app = spawn_app().await;
    let db = app.create_group_v1("db-group", json!([])).await;
    let web = app
        .create_group_v1(
            "web-group",
            json!([
                {"direction": "ingress", "protocol": "tcp", "port_range_min": 443, "port_range_max": 443},
                {"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "10.0.0.0/8"},
                {"direction": "ingress", "protocol": "icmp", "port_range_min": 8},
                {"direction": "ingress", "protocol": "udp", "port_range_min": 53, "remote_group_id": id_of(&db)},
                {"direction": "egress"}
            ]),
        )
        .await;
    let rules = rules_of(&web).clone();
    let port = register_port(&app, &[&id_of(&web)], "10.1.0.5").await;
    register_port(&app, &[&id_of(&db)], "10.2.0.7").await;

    let ask = |remote: &str, protocol: Value, extra: Value| {
        let mut q = json!({"port_id": port, "direction": "ingress", "remote_ip": remote, "protocol": protocol});
        for (k, v) in extra.as_object().unwrap() {
            q[k] = v.clone();
        }
        q
    };
    let cases = [
        (ask("8.8.8.8", json!("tcp"), json!({"port": 443})), Some(&rules[0])),
        (ask("10.3.3.3", json!("tcp"), json!({"port": 22})), Some(&rules[1])),
        (ask("8.8.8.8", json!("tcp"), json!({"port": 22})), None),
        (ask("8.8.8.8", json!(1), json!({"icmp_type": 8, "icmp_code": 0})), Some(&rules[2])),
        (ask("8.8.8.8", json!("icmp"), json!({"icmp_type": 0})), None),
        (ask("10.2.0.7", json!("udp"), json!({"port": 53})), Some(&rules[3])),
        (ask("10.2.0.8", json!("udp"), json!({"port": 53})), None),
    ];
    for (question, expected) in &cases {
        let answer = verdict(&app, question.clone()).await;
        match expected {
            Some(rule) => {
                assert_eq!(answer["verdict"], "allow", "{question} -> {answer}");
                assert_eq!(answer["decided_by"]["rule_id"], rule["id"], "{question} -> {answer}");
                assert_eq!(answer["decided_by"]["security_group_id"], web["id"]);
            }
            None => {
                assert_eq!(answer["verdict"], "deny", "{question} -> {answer}");
                assert_eq!(answer["decided_by"], Value::Null);
            }
        }
        assert_eq!(answer["connection"], "new");
    }
    // Established traffic is accepted by connection tracking whatever the rules say.
    let answer = verdict(&app, ask("8.8.8.8", json!("tcp"), json!({"port": 22, "established": true}))).await;
    assert_eq!((answer["verdict"].as_str(), answer["connection"].as_str()), (Some("allow"), Some("established")));

    // A batch by group ids gives the same answers, in order.
    let flows: Vec<Value> = cases
        .iter()
        .map(|(q, _)| {
            let mut q = q.clone();
            q.as_object_mut().unwrap().remove("port_id");
            q["security_group_ids"] = json!([web["id"]]);
            q
        })
        .collect();
    let batch = app.post_json("/palisade/v1/verdicts", &json!({"flows": flows})).await.expect(200).body;
    let verdicts: Vec<&str> = batch["results"].as_array().unwrap().iter().map(|a| a["verdict"].as_str().unwrap()).collect();
    assert_eq!(verdicts, ["allow", "allow", "deny", "allow", "deny", "allow", "deny"]);

    // Bad questions name the field; other clients' ports are unknown.
    app.post_json("/palisade/v1/verdicts", &json!({"port_id": port, "direction": "in", "remote_ip": "x", "protocol": "any"}))
        .await
        .expect_invalid("remote_ip");
    let other = app.client_as(2, 2, None);
    other.post_json("/palisade/v1/verdicts", &ask("8.8.8.8", json!("tcp"), json!({"port": 443}))).await.expect_error(404, "NotFoundError");
}

#[tokio::test]
async fn effective_rules_merge_the_groups_of_a_port() {
    let app = spawn_app().await;
    let a = app.create_group_v1("a-group", json!([{"direction": "ingress", "protocol": "tcp", "port_range_min": 80}])).await;
    let b = app.create_group_v1("b-group", json!([{"direction": "ingress", "protocol": "udp"}, {"direction": "egress"}])).await;
    let port = register_port(&app, &[&id_of(&a), &id_of(&b)], "10.1.0.9").await;
    let effective = app.get(&format!("/palisade/v1/ports/{port}/effective-rules")).await.expect(200).body;
    let ingress: Vec<&str> = effective["ingress"].as_array().unwrap().iter().map(|r| r["security_group_name"].as_str().unwrap()).collect();
    assert_eq!(ingress, ["a-group", "b-group"]);
    assert_eq!(effective["egress"].as_array().unwrap().len(), 1);
    assert_eq!(effective["default_action"], "drop");
    app.get(&format!("/palisade/v1/ports/{}/effective-rules", uuid::Uuid::new_v4())).await.expect_error(404, "NotFoundError");
}

#[tokio::test]
async fn analysis_reports_known_problems_and_nothing_on_a_clean_group() {
    let app = spawn_app().await;
    let empty = app.create_group_v1("nobody-uses-me", json!([])).await;
    let messy = app
        .create_group_v1("messy", json!([
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 443, "remote_ip_prefix": "10.0.0.0/8"},
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 443, "port_range_max": 443, "remote_ip_prefix": "10.1.0.0/16"},
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 3389, "port_range_max": 3389},
            {"direction": "ingress", "protocol": null, "remote_ip_prefix": "0.0.0.0/0"},
            {"direction": "ingress", "protocol": "udp", "port_range_min": 53, "remote_group_id": id_of(&empty)}
        ]))
        .await;
    let rules = rules_of(&messy).clone();
    let report = app.get(&format!("{V1}/{}/analysis", id_of(&messy))).await.expect(200).body;
    let findings: Vec<(String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["kind"].as_str().unwrap().to_string(), f["rule_id"].as_str().unwrap().to_string()))
        .collect();
    let has = |kind: &str, rule: &Value| findings.contains(&(kind.to_string(), rule["id"].as_str().unwrap().to_string()));
    assert!(has("shadowed", &rules[1]), "{report}");
    assert!(has("overly_broad", &rules[2]), "RDP from anywhere: {report}");
    assert!(has("overly_broad", &rules[3]), "everything from anywhere: {report}");
    assert!(has("empty_remote_group", &rules[4]), "{report}");
    assert!(has("shadowed", &rules[0]), "rule 0 is covered by rule 3 (every protocol from anywhere): {report}");

    // A duplicate cannot be stored, so duplicates show up in merged sets; a clean group is clean.
    let clean = app
        .create_group_v1(
            "clean",
            json!([
                {"direction": "ingress", "protocol": "tcp", "port_range_min": 443},
                {"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "remote_ip_prefix": "10.0.0.0/8"},
                {"direction": "egress"}
            ]),
        )
        .await;
    let report = app.get(&format!("{V1}/{}/analysis", id_of(&clean))).await.expect(200).body;
    assert_eq!(report["findings"], json!([]), "{report}");
}

/// Runs `palisade check` against the app. The child runs off the async runtime, which must keep
/// serving the app while the test waits.
pub(crate) async fn check(app: &TestApp, args: &[&str]) -> (i32, String) {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_palisade"));
    command.args(["check", "--api", &app.api.base, "--api-key", &app.api.token]).args(args);
    let output = tokio::task::spawn_blocking(move || command.output()).await.expect("join").expect("running palisade check");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stdout).into_owned())
}

#[tokio::test]
async fn check_command_answers_from_the_terminal() {
    let app = spawn_app().await;
    let group = app
        .create_group_v1(
            "cli-group",
            json!([{"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "remote_ip_prefix": "10.0.0.0/8"}]),
        )
        .await;
    let rule_id = str_of(&rules_of(&group)[0], "id").to_string();
    let gid = id_of(&group);
    let base = ["flow", "--groups", gid.as_str(), "--direction", "ingress", "--protocol", "tcp", "--port", "22"];

    let (code, out) = check(&app, &[&base[..], &["--remote-ip", "10.1.1.1"]].concat()).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ALLOW ingress tcp port 22 from 10.1.1.1") && out.contains(&rule_id), "{out}");

    let (code, out) = check(&app, &[&base[..], &["--remote-ip", "8.8.8.8", "--fail-on-deny"]].concat()).await;
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("DENY"), "{out}");

    let (code, out) = check(&app, &["--json", "analysis", "--project", "1", "--region", "1", "--group", &gid]).await;
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&out).expect("JSON output");
    assert_eq!(report["rule_count"], 1);
}
