//! The trust boundary (docs/security.md): which role may call which route, and the probes a
//! tenant could try against the platform's port registry, quotas and agents — each refused with
//! nothing changed.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const T: &str = "tenant";
const P: &str = "platform";
const A: &str = "agent";

/// The route × role table of docs/security.md, written out here on its own so that the server's
/// table is checked against a second statement of the decision, not against itself.
const TABLE: &[(&str, &str, &[&str])] = &[
    ("post", "/cloud/v2/security_groups/{project_id}/{region_id}", &[T]),
    ("patch", "/cloud/v2/security_groups/{project_id}/{region_id}/{group_id}", &[T]),
    ("post", "/cloud/v2/security_groups/{project_id}/{region_id}/{group_id}/rules", &[T]),
    ("delete", "/cloud/v2/security_groups/{project_id}/{region_id}/{group_id}/rules/{rule_id}", &[T]),
    ("get", "/cloud/v1/securitygroups/{project_id}/{region_id}", &[T]),
    ("post", "/cloud/v1/securitygroups/{project_id}/{region_id}", &[T]),
    ("get", "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}", &[T]),
    ("patch", "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}", &[T]),
    ("delete", "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}", &[T]),
    ("post", "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/copy", &[T]),
    ("post", "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/revert", &[T]),
    ("post", "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/rules", &[T]),
    ("get", "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/instances", &[T]),
    ("get", "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/metadata", &[T]),
    ("post", "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/metadata", &[T]),
    ("put", "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/metadata", &[T]),
    ("get", "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/metadata_item", &[T]),
    ("delete", "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/metadata_item", &[T]),
    ("get", "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/analysis", &[T]),
    ("put", "/cloud/v1/securitygrouprules/{project_id}/{region_id}/{rule_id}", &[T]),
    ("delete", "/cloud/v1/securitygrouprules/{project_id}/{region_id}/{rule_id}", &[T]),
    ("get", "/cloud/v1/tasks", &[T]),
    ("post", "/cloud/v1/tasks/acknowledge_all", &[T]),
    ("post", "/cloud/v1/tasks/acknowledge", &[T]),
    ("get", "/cloud/v1/tasks/{task_id}", &[T]),
    ("post", "/cloud/v1/tasks/{task_id}/acknowledge", &[T]),
    ("get", "/cloud/v1/tasks/{project_id}/{region_id}/active", &[T]),
    ("post", "/cloud/v1/instances/{project_id}/{region_id}/{instance_id}/addsecuritygroup", &[T]),
    ("post", "/cloud/v1/instances/{project_id}/{region_id}/{instance_id}/delsecuritygroup", &[T]),
    ("get", "/cloud/v1/instances/{project_id}/{region_id}/{instance_id}/securitygroups", &[T]),
    ("get", "/palisade/v1/quotas/{project_id}/{region_id}", &[T, P]),
    ("put", "/palisade/v1/quotas/{project_id}/{region_id}", &[P]),
    ("get", "/palisade/v1/ports", &[T, P]),
    ("post", "/palisade/v1/ports", &[P]),
    ("get", "/palisade/v1/ports/{port_id}", &[T, P]),
    ("patch", "/palisade/v1/ports/{port_id}", &[P]),
    ("delete", "/palisade/v1/ports/{port_id}", &[P]),
    ("get", "/palisade/v1/ports/{port_id}/effective-rules", &[T]),
    ("post", "/palisade/v1/verdicts", &[T]),
    ("get", "/palisade/v1/audit", &[T, P]),
    ("get", "/palisade/v1/agents", &[P]),
    ("get", "/palisade/v1/agents/{host}/policy", &[A]),
    ("put", "/palisade/v1/agents/{host}/status", &[A]),
    ("post", "/palisade/v1/agents/{host}/rule-stats", &[A]),
    ("post", "/palisade/v1/agents/{host}/flow-logs", &[A]),
    ("get", "/palisade/v1/security_groups/{group_id}/rule-stats", &[T]),
    ("get", "/palisade/v1/ports/{port_id}/flow-log", &[T]),
    ("put", "/palisade/v1/ports/{port_id}/flow-log", &[T]),
    ("get", "/palisade/v1/security_groups/{group_id}/flow-log", &[T]),
    ("put", "/palisade/v1/security_groups/{group_id}/flow-log", &[T]),
    ("get", "/palisade/v1/flow-logs", &[T, P]),
    ("post", "/palisade/v1/security_groups/{group_id}/impact", &[T]),
    // Public: health, readiness, the documentation and the web console's files.
    ("get", "/healthz", &[]),
    ("get", "/readyz", &[]),
    ("get", "/openapi.json", &[]),
    ("get", "/docs", &[]),
    ("get", "/console", &[]),
    ("get", "/console/{path}", &[]),
];

fn is_public(method: &str, template: &str) -> bool {
    ["/healthz", "/readyz", "/openapi.json", "/docs", "/console", "/console/{path}"].contains(&template) && method == "get"
}

/// A concrete path for a template: project 1, region 1, the fixture's ids, host h1.
fn concrete(template: &str, ids: &Fixture) -> String {
    template
        .replace("{project_id}", "1")
        .replace("{region_id}", "1")
        .replace("{group_id}", &ids.group)
        .replace("{rule_id}", &ids.rule)
        .replace("{task_id}", &ids.task)
        .replace("{instance_id}", &ids.instance)
        .replace("{port_id}", &ids.port)
        .replace("{host}", "h1")
        .replace("{path}", "js/app.js")
}

/// A body that would change something if the route let the caller through.
fn body_for(method: &str, template: &str) -> Option<Value> {
    let body = match (method, template) {
        ("get" | "delete", _) => return None,
        ("put", t) if t.starts_with("/palisade/v1/quotas") => json!({"security_group_count": -1, "security_group_rule_count": -1}),
        ("put", t) if t.ends_with("/status") => json!({"applied_revision": 999_999}),
        ("post", "/palisade/v1/ports") => port_body(2, "h1", "tap-evil", "fa:16:3e:00:00:99", &["10.9.9.9"]),
        ("patch", "/palisade/v1/ports/{port_id}") => json!({"device": "eth0", "fixed_ips": ["10.0.0.99"]}),
        ("post", "/cloud/v2/security_groups/{project_id}/{region_id}") => json!({"name": "intruder"}),
        ("post", "/cloud/v1/securitygroups/{project_id}/{region_id}") => json!({"security_group": {"name": "intruder"}}),
        ("post", t) if t.ends_with("/rules") => {
            json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 1, "port_range_max": 1})
        }
        ("patch", _) => json!({"name": "renamed"}),
        ("put", t) if t.ends_with("/flow-log") => json!({"enabled": true, "events": "all"}),
        ("post", t) if t.ends_with("/impact") => json!({"rules": []}),
        ("post", t) if t.ends_with("/rule-stats") => json!({"stats": []}),
        ("post", t) if t.ends_with("/flow-logs") => json!({"records": [], "dropped_flows": 0}),
        _ => json!({}),
    };
    Some(body)
}

fn port_body(client_id: i64, host: &str, device: &str, mac: &str, ips: &[&str]) -> Value {
    json!({
        "client_id": client_id, "project_id": 1, "region_id": 1, "instance_id": uuid::Uuid::new_v4(),
        "host": host, "device": device, "mac_address": mac, "fixed_ips": ips,
    })
}

/// Client 1's group, rule, task and port (on host h1), made through the roles that may.
struct Fixture {
    group: String,
    rule: String,
    task: String,
    instance: String,
    port: String,
}

async fn fixture(app: &TestApp, platform: &Api) -> Fixture {
    let task = app
        .create_group(
            json!({"name": "web", "rules": [{"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 80}]}),
        )
        .await;
    let done = app.wait_finished(&task).await;
    let group = done["created_resources"]["security_groups"][0].as_str().unwrap().to_string();
    let rule = rule_ids(&app.get_group(&group).await)[0].clone();
    let mut body = port_body(1, "h1", "tap-web", "fa:16:3e:00:00:01", &["10.0.0.1"]);
    body["security_group_ids"] = json!([group]);
    let port = platform.post_json("/palisade/v1/ports", &body).await.expect(201).body;
    Fixture { group, rule, task, instance: str_of(&port, "instance_id").to_string(), port: id_of(&port) }
}

/// Everything a forbidden call could have changed, as the platform and client 1 see it.
async fn world(app: &TestApp, platform: &Api) -> Value {
    json!({
        "client1": app.snapshot().await,
        "ports": platform.get("/palisade/v1/ports").await.expect(200).body,
        "agents": platform.get("/palisade/v1/agents").await.expect(200).body["results"],
        "quota": platform.get("/palisade/v1/quotas/1/1?client_id=1").await.expect(200).body,
    })
}

#[tokio::test]
async fn every_route_answers_exactly_the_roles_of_the_table() {
    let app = spawn_app().await;
    let platform = app.platform();
    let ids = fixture(&app, &platform).await;
    let keys = [(T, app.api.clone()), (P, platform.clone()), (A, app.agent("h1"))];

    // The document lists every route of the router (the OpenAPI drift check keeps it so); the
    // table here must decide each one, and nothing else.
    let doc = app.get("/openapi.json").await.expect(200).body;
    let mut routes = BTreeSet::new();
    for (template, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys().filter(|m| ["get", "post", "put", "patch", "delete"].contains(&m.as_str())) {
            routes.insert((method.clone(), template.clone()));
        }
    }
    let decided: BTreeSet<(String, String)> = TABLE.iter().map(|(m, t, _)| (m.to_string(), t.to_string())).collect();
    assert_eq!(routes, decided, "routes without a decision in the table, or decisions for routes that do not exist");

    // First every call a role may not make, with bodies that would change something: 401
    // without a key, 403 in the Gcore body with a key of the wrong role, and nothing changed.
    let before = world(&app, &platform).await;
    let anonymous = app.api.with_token("");
    let mut refused = 0;
    for (method, template, roles) in TABLE {
        let path = concrete(template, &ids);
        let method_of = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let body = body_for(method, template);
        if is_public(method, template) {
            let resp = anonymous.call(method_of, &path, body.as_ref()).await;
            assert_eq!(resp.status.as_u16(), 200, "{method} {path} is public: {}", resp.text);
            continue;
        }
        let resp = app.api.with_token("nobody$0000").call(method_of.clone(), &path, body.as_ref()).await;
        resp.expect_error(401, "NotAuthenticated");
        for (role, api) in &keys {
            if !roles.contains(role) {
                let resp = api.call(method_of.clone(), &path, body.as_ref()).await;
                let error = resp.expect_error(403, "PermissionDenied");
                assert!(error["message"].as_str().unwrap().contains(role), "{method} {path} as {role}: {error}");
                refused += 1;
            }
        }
    }
    assert!(refused >= 80, "only {refused} refusals walked");
    assert_eq!(world(&app, &platform).await, before, "a refused call changed something");

    // Then every call a role may make gets past the boundary (its answer may still be a 4xx of
    // the resource, but never 401 or 403). Reads first, writes after, deletes last.
    let order = |m: &str| match m {
        "get" => 0,
        "delete" => 2,
        _ => 1,
    };
    let mut allowed: Vec<_> = TABLE.iter().filter(|(m, t, _)| !is_public(m, t)).collect();
    allowed.sort_by_key(|(m, _, _)| order(m));
    for (method, template, roles) in allowed {
        let path = concrete(template, &ids);
        let method_of = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        for (role, api) in keys.iter().filter(|(role, _)| roles.contains(role)) {
            let path = if *role == P && template.starts_with("/palisade/v1/quotas") { format!("{path}?client_id=1") } else { path.clone() };
            let resp = api.call(method_of.clone(), &path, body_for(method, template).as_ref()).await;
            let status = resp.status.as_u16();
            assert!(status != 401 && status != 403 && status < 500, "{method} {path} as {role}: {status} {}", resp.text);
        }
    }
}

#[tokio::test]
async fn a_project_limited_key_sees_nothing_of_another_project() {
    let app = spawn_app().await;
    let platform = app.platform();
    // Client 1 has a group, a task and a port in project 2.
    let p2 = "/cloud/v2/security_groups/2/1";
    let task = single_task(
        &app.post_json(p2, &json!({"name": "secret", "rules": [{"direction": "ingress", "protocol": "tcp"}]})).await.expect(200),
    );
    let group = app.wait_finished(&task).await["created_resources"]["security_groups"][0].as_str().unwrap().to_string();
    let mut body = port_body(1, "h1", "tap-p2", "fa:16:3e:00:00:02", &["10.0.2.1"]);
    body["project_id"] = json!(2);
    body["security_group_ids"] = json!([group]);
    let port = id_of(&platform.post_json("/palisade/v1/ports", &body).await.expect(201).body);

    let limited = app.client_as(1, 1, Some(vec![1]));
    // Path-scoped routes: 403 naming the project.
    limited.get("/cloud/v1/securitygroups/2/1").await.expect_error(403, "PermissionDenied");
    limited.get("/palisade/v1/quotas/2/1").await.expect_error(403, "PermissionDenied");
    limited.get("/cloud/v1/tasks?project_id=2").await.expect_error(403, "PermissionDenied");
    limited.post_empty("/cloud/v1/tasks/acknowledge_all?project_id=2").await.expect_error(403, "PermissionDenied");
    // Id-addressed routes: 404, as if it did not exist.
    limited.get(&format!("{TASKS}/{task}")).await.expect_error(404, "NotFoundError");
    limited.post_empty(&format!("{TASKS}/{task}/acknowledge")).await.expect_error(404, "NotFoundError");
    limited.get(&format!("/palisade/v1/ports/{port}")).await.expect_error(404, "NotFoundError");
    limited.get(&format!("/palisade/v1/ports/{port}/effective-rules")).await.expect_error(404, "NotFoundError");
    let question = json!({"port_id": port, "direction": "ingress", "remote_ip": "203.0.113.1", "protocol": "tcp", "port": 22});
    limited.post_json("/palisade/v1/verdicts", &question).await.expect_error(404, "NotFoundError");
    let by_group =
        json!({"security_group_ids": [group], "direction": "ingress", "remote_ip": "203.0.113.1", "protocol": "tcp", "port": 22});
    limited.post_json("/palisade/v1/verdicts", &by_group).await.expect_error(404, "NotFoundError");
    // Lists: nothing of project 2.
    assert_eq!(limited.get("/palisade/v1/ports").await.expect(200).body["count"], 0);
    let tasks = limited.get(TASKS).await.expect(200).body;
    assert_eq!(tasks["count"], 0, "{tasks}");
    // Acknowledging everything acknowledges nothing of project 2.
    limited.post_empty("/cloud/v1/tasks/acknowledge_all").await.expect(204);
    limited.post_json("/cloud/v1/tasks/acknowledge", &json!({"task_ids": [task]})).await.expect(204);
    assert_eq!(app.get_task(&task).await["acknowledged_at"], Value::Null);
    // The unlimited key of the same client sees all of it.
    app.get(&format!("/palisade/v1/ports/{port}/effective-rules")).await.expect(200);
    assert_eq!(app.post_json("/palisade/v1/verdicts", &question).await.expect(200).body["allowed"], true);
}

#[tokio::test]
async fn the_port_registry_refuses_clashes_and_addresses_no_port_may_own() {
    let app = spawn_app().await;
    let platform = app.platform();
    let first =
        platform.post_json("/palisade/v1/ports", &port_body(1, "h1", "tap-one", "fa:16:3e:00:00:01", &["10.0.0.1"])).await.expect(201).body;
    let first_id = id_of(&first);
    let count = || async { platform.get("/palisade/v1/ports").await.expect(200).body["count"].as_u64().unwrap() };
    assert_eq!(count().await, 1);

    // Another client's port on the same device or MAC of the host, or with the same id: 409
    // naming the existing port, whatever the client.
    let same_device = platform.post_json("/palisade/v1/ports", &port_body(2, "h1", "tap-one", "fa:16:3e:00:00:02", &["10.0.0.2"])).await;
    let error = same_device.expect_error(409, "PortDeviceInUse");
    assert_eq!(error["info"]["port_id"], json!(first_id), "{error}");
    let same_mac = platform.post_json("/palisade/v1/ports", &port_body(2, "h1", "tap-two", "FA:16:3E:00:00:01", &["10.0.0.2"])).await;
    assert_eq!(same_mac.expect_error(409, "PortMacInUse")["info"]["port_id"], json!(first_id));
    let mut same_id = port_body(2, "h2", "tap-three", "fa:16:3e:00:00:03", &["10.0.0.3"]);
    same_id["id"] = json!(first_id);
    let error = platform.post_json("/palisade/v1/ports", &same_id).await;
    assert_eq!(error.expect_error(409, "PortExists")["info"]["port_id"], json!(first_id));
    // The same device on another host is another interface.
    let elsewhere = platform.post_json("/palisade/v1/ports", &port_body(2, "h2", "tap-one", "fa:16:3e:00:00:04", &["10.0.0.4"])).await;
    let elsewhere = id_of(&elsewhere.expect(201).body);
    // Moving that port onto h1's device is the same clash.
    platform.patch_json(&format!("/palisade/v1/ports/{elsewhere}"), &json!({"host": "h1"})).await.expect_error(409, "PortDeviceInUse");
    assert_eq!(count().await, 2);

    // Addresses no instance may own, each named by its index.
    for bad in ["127.0.0.1", "169.254.169.254", "255.255.255.255", "0.0.0.0", "224.0.0.5", "::1", "fe80::1", "ff02::1", "::"] {
        let resp = platform.post_json("/palisade/v1/ports", &port_body(1, "h3", "tap-x", "fa:16:3e:00:00:10", &["10.1.0.1", bad])).await;
        resp.expect_invalid("fixed_ips.1");
    }
    let many: Vec<String> = (0..33).map(|i| format!("10.2.0.{}", i + 1)).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    platform.post_json("/palisade/v1/ports", &port_body(1, "h3", "tap-x", "fa:16:3e:00:00:10", &many)).await.expect_invalid("fixed_ips");
    for mac in ["00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff", "01:00:5e:00:00:01"] {
        platform.post_json("/palisade/v1/ports", &port_body(1, "h3", "tap-x", mac, &["10.1.0.1"])).await.expect_invalid("mac_address");
    }
    for device in ["eth/0", "tap 1", "tap:1", "a-name-that-is-far-too-long", ""] {
        platform
            .post_json("/palisade/v1/ports", &port_body(1, "h3", device, "fa:16:3e:00:00:10", &["10.1.0.1"]))
            .await
            .expect_invalid("device");
    }
    platform
        .patch_json(&format!("/palisade/v1/ports/{first_id}"), &json!({"fixed_ips": ["169.254.169.254"]}))
        .await
        .expect_invalid("fixed_ips.0");
    platform.post_json("/palisade/v1/ports", &json!({"project_id": 1})).await.expect_invalid("client_id");
    assert_eq!(count().await, 2, "nothing refused was stored");
    assert_eq!(platform.get(&format!("/palisade/v1/ports/{first_id}")).await.expect(200).body, first, "the port is unchanged");

    // A tenant reads its own ports only: client 2's key sees its one port, not client 1's.
    let client2 = app.client_as(2, 2, None);
    let list = client2.get("/palisade/v1/ports").await.expect(200).body;
    assert_eq!(list["results"].as_array().unwrap().iter().map(id_of).collect::<Vec<_>>(), vec![elsewhere.clone()]);
    client2.get(&format!("/palisade/v1/ports/{first_id}")).await.expect_error(404, "NotFoundError");
    // The platform filters by client.
    let list = platform.get("/palisade/v1/ports?client_id=1").await.expect(200).body;
    assert_eq!(list["results"].as_array().unwrap().iter().map(id_of).collect::<Vec<_>>(), vec![first_id]);
}

#[tokio::test]
async fn an_agent_key_speaks_for_its_own_host_and_sees_every_clients_ports_there() {
    let app = spawn_app().await;
    let platform = app.platform();
    let g1 =
        app.create_group_v1("one", json!([{"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22}])).await;
    let client2 = app.client_as(2, 2, None);
    let g2 = client2
        .post_json(V1, &json!({"security_group": {"name": "two", "security_group_rules": [{"direction": "ingress", "protocol": "udp"}]}}))
        .await
        .expect(200)
        .body;
    for (client, group, device, mac, ip) in
        [(1, id_of(&g1), "tap-a", "fa:16:3e:00:00:0a", "10.0.0.10"), (2, id_of(&g2), "tap-b", "fa:16:3e:00:00:0b", "10.0.0.11")]
    {
        let mut body = port_body(client, "h1", device, mac, &[ip]);
        body["security_group_ids"] = json!([group]);
        platform.post_json("/palisade/v1/ports", &body).await.expect(201);
    }
    let h1 = app.agent("h1");
    let h2 = app.agent("h2");
    let policy = h1.get("/palisade/v1/agents/h1/policy").await.expect(200).body;
    let text = policy.to_string();
    for needle in ["tap-a", "tap-b", "10.0.0.10", "10.0.0.11"] {
        assert!(text.contains(needle), "h1's policy lacks {needle}: {text}");
    }
    let empty = h2.get("/palisade/v1/agents/h2/policy").await.expect(200).body.to_string();
    assert!(!empty.contains("tap-a") && !empty.contains("tap-b"), "h2's policy holds h1's ports: {empty}");

    // Host h2's agent can neither read h1's policy nor report for it.
    h2.get("/palisade/v1/agents/h1/policy").await.expect_error(403, "PermissionDenied");
    h2.put_json("/palisade/v1/agents/h1/status", &json!({"applied_revision": 999_999})).await.expect_error(403, "PermissionDenied");
    let agents = platform.get("/palisade/v1/agents").await.expect(200).body;
    assert_eq!(agents["count"], 0, "no report was recorded: {agents}");
    // Its own report is recorded once per host.
    let revision = policy["revision"].as_i64().unwrap();
    h1.put_json("/palisade/v1/agents/h1/status", &json!({"applied_revision": revision})).await.expect(200);
    let agents = platform.get("/palisade/v1/agents").await.expect(200).body;
    assert_eq!(agents["results"].as_array().unwrap().iter().map(|a| a["host"].clone()).collect::<Vec<_>>(), vec![json!("h1")]);
}

#[tokio::test]
async fn waiting_for_agents_names_only_the_tenants_hosts_and_no_global_revision() {
    let app = spawn_app().await;
    let platform = app.platform();
    let group = app.create_group_v1("one", json!([])).await;
    let client2 = app.client_as(2, 2, None);
    let other = client2.post_json(V1, &json!({"security_group": {"name": "two"}})).await.expect(200).body;
    let mut mine = port_body(1, "h1", "tap-a", "fa:16:3e:00:00:0a", &["10.0.0.10"]);
    mine["security_group_ids"] = json!([id_of(&group)]);
    platform.post_json("/palisade/v1/ports", &mine).await.expect(201);
    let mut theirs = port_body(2, "h2", "tap-b", "fa:16:3e:00:00:0b", &["10.0.0.11"]);
    theirs["security_group_ids"] = json!([id_of(&other)]);
    platform.post_json("/palisade/v1/ports", &theirs).await.expect(201);
    // Both hosts' agents are up to date before the write.
    for host in ["h1", "h2"] {
        let agent = app.agent(host);
        let revision = agent.get(&format!("/palisade/v1/agents/{host}/policy")).await.expect(200).body["revision"].clone();
        agent.put_json(&format!("/palisade/v1/agents/{host}/status"), &json!({"applied_revision": revision})).await.expect(200);
    }

    let resp = app
        .post_json(&format!("{V1}/{}/rules?wait_for_agents=0.2", id_of(&group)), &json!({"direction": "ingress", "protocol": "tcp"}))
        .await
        .expect(200);
    assert_eq!(resp.header("x-agents-pending"), Some("h1"), "only client 1's host, which has not applied the change");
    assert_eq!(resp.header("x-agents-applied"), Some(""));
    assert_eq!(resp.header("x-policy-revision"), None, "the global revision is not a tenant's to see");
    // The platform's waits carry the revision, and name exactly the hosts the change reached.
    let resp = platform.patch_json("/palisade/v1/ports/00000000-0000-0000-0000-000000000000?wait_for_agents=0", &json!({})).await;
    resp.expect_error(404, "NotFoundError");
    let listed = platform.get("/palisade/v1/ports?client_id=2").await.expect(200).body;
    let theirs_id = id_of(&listed["results"][0]);
    let resp = platform
        .patch_json(&format!("/palisade/v1/ports/{theirs_id}?wait_for_agents=0.2"), &json!({"fixed_ips": ["10.0.0.12"]}))
        .await
        .expect(200);
    assert!(resp.header("x-policy-revision").is_some());
    // Client 2's port changed its addresses on h2; no group on h1 names its group, so h1's
    // agent (behind since client 1's rule) is not waited for.
    assert_eq!(resp.header("x-agents-pending"), Some("h2"));
    assert_eq!(resp.header("x-agents-applied"), Some(""));
}

#[tokio::test]
async fn a_tenant_cannot_lift_its_own_quota() {
    let app = spawn_app().await;
    let platform = app.platform();
    platform.put_json("/palisade/v1/quotas/1/1?client_id=1", &json!({"security_group_count": 1})).await.expect(200);
    for api in [app.api.clone(), app.client_as(1, 1, Some(vec![1]))] {
        api.put_json("/palisade/v1/quotas/1/1", &json!({"security_group_count": -1})).await.expect_error(403, "PermissionDenied");
        api.put_json("/palisade/v1/quotas/1/1?client_id=1", &json!({"security_group_count": -1}))
            .await
            .expect_error(403, "PermissionDenied");
    }
    assert_eq!(app.get("/palisade/v1/quotas/1/1").await.expect(200).body["security_group_count_limit"], 1);
    // The platform names the client whose quota it sets, and sees its usage.
    platform.put_json("/palisade/v1/quotas/1/1", &json!({"security_group_count": 5})).await.expect_invalid("client_id");
    app.create_group_v1("one", json!([])).await;
    let quota = platform.get("/palisade/v1/quotas/1/1?client_id=1").await.expect(200).body;
    assert_eq!((quota["security_group_count_limit"].as_i64(), quota["security_group_count_usage"].as_u64()), (Some(1), Some(1)));
    let other = platform.get("/palisade/v1/quotas/1/1?client_id=2").await.expect(200).body;
    assert_eq!(other["security_group_count_usage"], 0);
}
