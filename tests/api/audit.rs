//! The audit log: every kind of change leaves exactly one event naming its actor, failed tasks
//! leave one with their error class, tenants see only their client's events, the filters work,
//! and the CLI's key changes are recorded.

use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::*;

const AUDIT: &str = "/palisade/v1/audit";

/// The key id of a token (`<id>$<secret>`).
fn key_id(api: &Api) -> i64 {
    api.token.split('$').next().and_then(|id| id.parse().ok()).expect("a token of the form <id>$<secret>")
}

async fn audit(api: &Api, query: &str) -> Value {
    let path = if query.is_empty() { AUDIT.to_string() } else { format!("{AUDIT}?{query}") };
    api.get(&path).await.expect(200).body
}

fn results(page: &Value) -> &Vec<Value> {
    page["results"].as_array().unwrap_or_else(|| panic!("no results array: {page}"))
}

/// Reads one client's log as the changes go: [`Log::next`] asserts that exactly one event
/// arrived since the last look.
struct Log {
    reader: Api,
    seen: u64,
}

impl Log {
    async fn new(reader: Api) -> Log {
        let seen = audit(&reader, "limit=1").await["count"].as_u64().expect("count");
        Log { reader, seen }
    }

    /// The one event written since the last call; asserts its action and actor.
    async fn next(&mut self, action: &str, actor: &Api, role: &str) -> Value {
        let page = audit(&self.reader, "limit=10").await;
        let count = page["count"].as_u64().expect("count");
        assert_eq!(count, self.seen + 1, "expected exactly one new event ({action}): {page}");
        self.seen = count;
        let event = results(&page)[0].clone();
        assert_eq!(event["action"], action, "{event}");
        assert_eq!(event["actor_key_id"], key_id(actor), "{event}");
        assert_eq!(event["actor_role"], role, "{event}");
        assert_eq!(event["outcome"], "ok", "{event}");
        let time = event["time"].as_str().expect("time");
        assert!(time.ends_with('Z') && time.len() == 24, "time is RFC 3339 UTC with milliseconds: {time}");
        assert_recent(&event["time"], "time");
        assert!(event["summary"].is_object(), "{event}");
        event
    }
}

fn strings(value: &Value) -> Vec<String> {
    value.as_array().unwrap_or_else(|| panic!("not an array: {value}")).iter().map(|v| v.as_str().unwrap().to_string()).collect()
}

#[tokio::test]
async fn every_change_leaves_one_event_naming_its_actor() {
    let app = spawn_app().await;
    let tenant = app.api.clone();
    let platform = app.platform();
    let mut log = Log::new(tenant.clone()).await;

    // v1 create.
    let web = app.create_group_v1("web", json!([{"direction": "egress"}])).await;
    let web_id = id_of(&web);
    let event = log.next("security_group.create", &tenant, "tenant").await;
    assert_eq!((event["resource_type"].as_str(), event["resource_id"].as_str()), (Some("security_group"), Some(web_id.as_str())));
    assert_eq!((event["client_id"].as_i64(), event["user_id"].as_i64()), (Some(1), Some(1)));
    assert_eq!((event["project_id"].as_i64(), event["region_id"].as_i64()), (Some(1), Some(1)));
    assert_eq!(strings(&event["summary"]["rules_added"]), rule_ids(&web));
    assert!(event["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{event}");

    // v2 create, recorded when its task finishes, with the request's id.
    let request = tenant.request(reqwest::Method::POST, V2).header("x-request-id", "audit-v2-create").json(&json!({"name": "api"}));
    let task_id = single_task(&tenant.send(request).await.expect(200));
    let task = app.wait_finished(&task_id).await;
    let api_id = task["created_resources"]["security_groups"][0].as_str().unwrap().to_string();
    let event = log.next("security_group.create", &tenant, "tenant").await;
    assert_eq!(event["resource_id"], api_id.as_str());
    assert_eq!(event["request_id"], "audit-v2-create");
    assert_eq!(event["summary"]["task_id"], task_id.as_str());
    assert_eq!(event["user_id"], 1);

    // v2 rule create and delete.
    let task = app
        .wait_finished(&app.create_rule_v2(&api_id, json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 22})).await)
        .await;
    let rule = task["created_resources"]["security_group_rules"][0].as_str().unwrap().to_string();
    let event = log.next("security_group_rule.create", &tenant, "tenant").await;
    assert_eq!((event["resource_id"].as_str(), strings(&event["summary"]["rules_added"])), (Some(api_id.as_str()), vec![rule.clone()]));
    let resp = app.delete(&format!("{V2}/{api_id}/rules/{rule}")).await.expect(200);
    app.wait_finished(&single_task(&resp)).await;
    let event = log.next("security_group_rule.delete", &tenant, "tenant").await;
    assert_eq!(strings(&event["summary"]["rules_removed"]), [rule]);

    // v1 rule create and delete.
    let rule = id_of(&app.add_rule_v1(&web_id, json!({"direction": "ingress", "protocol": "udp", "port_range_min": 53})).await);
    let event = log.next("security_group_rule.create", &tenant, "tenant").await;
    assert_eq!((event["resource_id"].as_str(), strings(&event["summary"]["rules_added"])), (Some(web_id.as_str()), vec![rule.clone()]));
    app.delete(&format!("{V1_RULES}/{rule}")).await.expect(204);
    let event = log.next("security_group_rule.delete", &tenant, "tenant").await;
    assert_eq!((event["resource_id"].as_str(), strings(&event["summary"]["rules_removed"])), (Some(web_id.as_str()), vec![rule]));

    // v2 PATCH: name and rules, in its task.
    let before = app.get_group(&api_id).await;
    let after = app.patch_group_and_wait(&api_id, json!({"name": "api-2", "rules": [{"direction": "ingress", "protocol": "icmp"}]})).await;
    let event = log.next("security_group.update", &tenant, "tenant").await;
    assert_eq!(event["summary"]["changed"], json!(["name"]));
    assert_eq!(strings(&event["summary"]["rules_added"]), rule_ids(&after));
    let mut removed = strings(&event["summary"]["rules_removed"]);
    removed.sort();
    let mut expected = rule_ids(&before);
    expected.sort();
    assert_eq!(removed, expected);

    // v1 PATCH.
    app.patch_json(&format!("{V1}/{web_id}"), &json!({"name": "web-2"})).await.expect(200);
    let event = log.next("security_group.update", &tenant, "tenant").await;
    assert_eq!(event["summary"]["changed"], json!(["name"]));

    // Tags through the metadata endpoints.
    app.post_json(&format!("{V1}/{web_id}/metadata"), &json!({"env": "prod"})).await.expect(204);
    let event = log.next("security_group.metadata", &tenant, "tenant").await;
    assert_eq!(event["summary"]["tags_set"], json!({"env": "prod"}));

    // Copy and revert.
    let copy = app.post_json(&format!("{V1}/{web_id}/copy"), &json!({"name": "web-copy"})).await.expect(200).body;
    let event = log.next("security_group.copy", &tenant, "tenant").await;
    assert_eq!(
        (event["resource_id"].as_str(), event["summary"]["source_id"].as_str()),
        (Some(id_of(&copy).as_str()), Some(web_id.as_str()))
    );
    app.post_empty(&format!("{V1}/{}/revert", id_of(&copy))).await.expect(200);
    log.next("security_group.revert", &tenant, "tenant").await;

    // Ports (the platform's), recorded as changes of the port's client.
    let instance = uuid::Uuid::new_v4();
    let body = json!({
        "client_id": 1, "project_id": 1, "region_id": 1, "instance_id": instance, "host": "h1", "device": "tap1",
        "mac_address": "02:00:00:00:00:01", "fixed_ips": ["10.0.0.5"],
    });
    let port = platform.post_json("/palisade/v1/ports", &body).await.expect(201).body;
    let port_id = id_of(&port);
    let event = log.next("port.create", &platform, "platform").await;
    assert_eq!((event["resource_type"].as_str(), event["resource_id"].as_str()), (Some("port"), Some(port_id.as_str())));
    assert_eq!((event["client_id"].as_i64(), event["user_id"].as_i64()), (Some(1), None));
    platform.patch_json(&format!("/palisade/v1/ports/{port_id}"), &json!({"security_group_ids": [web_id]})).await.expect(200);
    let event = log.next("port.update", &platform, "platform").await;
    assert_eq!(strings(&event["summary"]["security_groups_added"]), [web_id.as_str()]);

    // A binding through the instance endpoints.
    app.post_json(&format!("/cloud/v1/instances/1/1/{instance}/addsecuritygroup"), &json!({"name": "web-copy"})).await.expect(204);
    let event = log.next("instance.add_security_group", &tenant, "tenant").await;
    assert_eq!((event["resource_type"].as_str(), event["resource_id"].as_str()), (Some("instance"), Some(instance.to_string().as_str())));
    assert_eq!(event["summary"]["ports"][0]["port_id"], port_id.as_str());
    assert_eq!(strings(&event["summary"]["ports"][0]["security_groups_added"]), [id_of(&copy)]);
    app.post_json(&format!("/cloud/v1/instances/1/1/{instance}/delsecuritygroup"), &json!({"name": "web-copy"})).await.expect(204);
    log.next("instance.del_security_group", &tenant, "tenant").await;

    platform.delete(&format!("/palisade/v1/ports/{port_id}")).await.expect(204);
    log.next("port.delete", &platform, "platform").await;

    // Quotas.
    platform.put_json("/palisade/v1/quotas/1/1?client_id=1", &json!({"security_group_count": 50})).await.expect(200);
    let event = log.next("quota.set", &platform, "platform").await;
    assert_eq!((event["resource_type"].as_str(), event["summary"]["security_group_count"].as_i64()), (Some("quota"), Some(50)));

    // Delete.
    app.delete(&format!("{V1}/{}", id_of(&copy))).await.expect(204);
    let event = log.next("security_group.delete", &tenant, "tenant").await;
    assert_eq!((event["resource_type"].as_str(), event["resource_id"].as_str()), (Some("security_group"), Some(id_of(&copy).as_str())));

    // Task acknowledgement.
    app.post_empty(&format!("{TASKS}/{task_id}/acknowledge")).await.expect(200);
    let event = log.next("task.acknowledge", &tenant, "tenant").await;
    assert_eq!((event["resource_type"].as_str(), event["resource_id"].as_str()), (Some("task"), Some(task_id.as_str())));

    // Failed synchronous requests change nothing and leave nothing.
    app.delete(&format!("{V1}/{}", uuid::Uuid::new_v4())).await.expect_error(404, "NotFoundError");
    let https = json!({"direction": "egress", "protocol": "tcp", "port_range_min": 443});
    app.add_rule_v1(&web_id, https.clone()).await;
    log.next("security_group_rule.create", &tenant, "tenant").await;
    app.post_json(&format!("{V1}/{web_id}/rules"), &https).await.expect_error(409, "SecurityGroupRuleExists");
    assert_eq!(audit(&tenant, "limit=1").await["count"], log.seen, "a refused request leaves no event");
}

#[tokio::test]
async fn a_failed_task_leaves_one_event_with_its_error_class() {
    let app = spawn_app().await;
    let group = app
        .create_group_and_wait(json!({"name": "dup", "rules": [{"direction": "ingress", "protocol": "tcp", "port_range_min": 80}]}))
        .await;
    let mut log = Log::new(app.api.clone()).await;
    let task_id = app.create_rule_v2(&id_of(&group), json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 80})).await;
    let task = app.wait_error(&task_id).await;
    let page = audit(&app, "limit=10").await;
    assert_eq!(page["count"].as_u64(), Some(log.seen + 1), "one event: {page}");
    log.seen += 1;
    let event = &results(&page)[0];
    assert_eq!(event["action"], "security_group_rule.create");
    assert_eq!(event["outcome"], "Conflict");
    assert_eq!(event["resource_id"], id_of(&group).as_str());
    assert_eq!(event["actor_key_id"], key_id(&app));
    assert_eq!(event["summary"]["task_id"], task_id.as_str());
    assert_eq!(event["summary"]["error"], task["error"]);

    // A task whose group is gone: NotFound.
    let task_id = app.patch_group(&id_of(&group), json!({"name": "renamed"})).await;
    app.delete(&format!("{V1}/{}", id_of(&group))).await.expect(204);
    for id in task_id {
        app.wait_task(&id).await;
    }
    let page = audit(&app, "action=security_group.update").await;
    let outcomes: Vec<&str> = results(&page).iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes.len(), 1, "{page}");
    assert!(["ok", "NotFound"].contains(&outcomes[0]), "the rename ran before or after the delete: {page}");
}

#[tokio::test]
async fn a_tenant_sees_only_its_own_clients_events() {
    let app = spawn_app().await;
    let other = app.client_as(2, 20, None);
    let group = other.create_group_v1("theirs", json!([])).await;
    app.create_group_v1("mine", json!([])).await;
    let limited = app.client_as(1, 1, Some(vec![7]));
    let limited_group =
        limited.post_json("/cloud/v1/securitygroups/7/1", &json!({"security_group": {"name": "proj-7", "security_group_rules": []}})).await;
    let limited_group = id_of(&limited_group.expect(200).body);

    let mine = audit(&app, "action=security_group.create").await;
    assert!(results(&mine).iter().all(|e| e["client_id"] == 1), "{mine}");
    assert!(!results(&mine).iter().any(|e| e["resource_id"] == id_of(&group).as_str()), "{mine}");
    let theirs = audit(&other, "").await;
    assert!(results(&theirs).iter().all(|e| e["client_id"] == 2), "{theirs}");
    assert!(results(&theirs).iter().any(|e| e["resource_id"] == id_of(&group).as_str()), "{theirs}");
    // Naming another client is refused; naming one's own is fine.
    other.get(&format!("{AUDIT}?client_id=1")).await.expect_error(403, "PermissionDenied");
    assert_eq!(audit(&other, "client_id=2").await["count"], theirs["count"]);
    // A project-limited key: its projects' events and those of no project.
    let seen = audit(&limited, "limit=1000").await;
    assert!(results(&seen).iter().all(|e| e["project_id"] == 7 || e["project_id"].is_null()), "{seen}");
    assert!(results(&seen).iter().any(|e| e["resource_id"] == limited_group.as_str()), "{seen}");
    // The platform sees everyone's, or one client's.
    let platform = app.platform();
    let all = audit(&platform, "action=security_group.create&limit=1000").await;
    let clients: Vec<i64> = results(&all).iter().map(|e| e["client_id"].as_i64().unwrap()).collect();
    assert!(clients.contains(&1) && clients.contains(&2), "{all}");
    let two = audit(&platform, "client_id=2&limit=1000").await;
    assert_eq!(two["count"], theirs["count"]);
}

#[tokio::test]
async fn audit_filters_and_bad_queries() {
    let app = spawn_app().await;
    let a = app.create_group_v1("grp-a", json!([])).await;
    let b = app.create_group_v1("grp-b", json!([])).await;
    app.patch_json(&format!("{V1}/{}", id_of(&a)), &json!({"name": "grp-a2"})).await.expect(200);

    let by_resource = audit(&app, &format!("resource_id={}", id_of(&a))).await;
    let actions: Vec<&str> = results(&by_resource).iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["security_group.update", "security_group.create"], "newest first: {by_resource}");
    let created = audit(&app, "action=security_group.create").await;
    assert_eq!(created["count"], 2);
    assert_eq!(results(&created)[0]["resource_id"], id_of(&b).as_str());
    let page = audit(&app, "action=security_group.create&limit=1&offset=1").await;
    assert_eq!((page["count"].as_u64(), results(&page).len()), (Some(2), 1));
    assert_eq!(results(&page)[0]["resource_id"], id_of(&a).as_str());

    // Time window: the newest event's own time bounds it on both sides.
    let newest = results(&audit(&app, "limit=1").await)[0].clone();
    let time = newest["time"].as_str().unwrap();
    let only = audit(&app, &format!("since={time}&until={time}")).await;
    assert!(results(&only).iter().any(|e| e["id"] == newest["id"]) && results(&only).iter().all(|e| e["time"] == time), "{only}");
    assert_eq!(audit(&app, "since=2999-01-01T00:00:00Z").await["count"], 0);
    assert_eq!(audit(&app, "until=2000-01-01T00:00:00%2B02:00").await["count"], 0);

    for (query, field) in [
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("offset=-1", "offset"),
        ("action=security_group.explode", "action"),
        ("client_id=x", "client_id"),
    ] {
        app.get(&format!("{AUDIT}?{query}")).await.expect_invalid(field);
    }
    app.with_token("1$nope").get(AUDIT).await.expect_error(401, "NotAuthenticated");
}

/// `palisade keys --database-url URL ARGS...`; returns stdout.
fn palisade_keys(database_url: &str, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["keys", "--database-url", database_url])
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("running palisade keys");
    assert!(output.status.success(), "palisade keys {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("utf-8 output")
}

#[tokio::test]
async fn the_cli_records_key_creation_and_revocation() {
    let app = spawn_app().await;
    let url = app.database_url.clone();
    let stdout =
        blocking(move || palisade_keys(&url, &["create", "--client-id", "1", "--user-id", "4", "--projects", "1,2", "--name", "ci"]));
    let token = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap().trim().to_string();
    let id: i64 = token.split('$').next().unwrap().parse().unwrap();

    let page = audit(&app, "action=api_key.create").await;
    let event = results(&page).iter().find(|e| e["resource_id"] == id.to_string().as_str()).unwrap_or_else(|| panic!("{page}")).clone();
    assert_eq!((event["actor_role"].as_str(), event["actor_key_id"].is_null(), event["request_id"].is_null()), (Some("cli"), true, true));
    assert_eq!(
        (event["resource_type"].as_str(), event["client_id"].as_i64(), event["outcome"].as_str()),
        (Some("api_key"), Some(1), Some("ok"))
    );
    assert_eq!(event["summary"]["name"], "ci");
    assert_eq!(event["summary"]["projects"], json!([1, 2]));

    let url = app.database_url.clone();
    let revoke = id.to_string();
    blocking(move || palisade_keys(&url, &["revoke", &revoke]));
    let page = audit(&app, &format!("action=api_key.revoke&resource_id={id}")).await;
    assert_eq!(page["count"], 1, "{page}");
    assert_eq!((results(&page)[0]["actor_role"].as_str(), results(&page)[0]["client_id"].as_i64()), (Some("cli"), Some(1)));

    // A platform key belongs to no client: only the platform sees its creation.
    let url = app.database_url.clone();
    let stdout = blocking(move || palisade_keys(&url, &["create", "--role", "platform", "--name", "ops"]));
    let platform_id = stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap().trim().split('$').next().unwrap().to_string();
    assert_eq!(audit(&app, &format!("resource_id={platform_id}")).await["count"], 0);
    let page = audit(&app.platform(), &format!("action=api_key.create&resource_id={platform_id}")).await;
    assert_eq!(page["count"], 1, "{page}");
    assert!(results(&page)[0]["client_id"].is_null(), "{page}");
    assert_eq!(results(&page)[0]["summary"]["role"], "platform");
}

#[tokio::test]
async fn retention_prunes_old_events_only() {
    let app = spawn_app().await;
    app.create_group_v1("recent", json!([])).await;
    let store = app.state.store.clone();
    let ancient = 1_000_000_000_000; // 2001
    blocking(move || {
        use palisade_store::Store;
        store.write(|tx| {
            for i in 0..3 {
                tx.insert_audit(&palisade_store::AuditEvent {
                    id: 0,
                    time: ancient + i,
                    actor_key_id: None,
                    actor_role: "cli".into(),
                    client_id: Some(1),
                    user_id: None,
                    project_id: None,
                    region_id: None,
                    action: "api_key.create".into(),
                    resource_type: "api_key".into(),
                    resource_id: Some(format!("old-{i}")),
                    request_id: None,
                    outcome: "ok".into(),
                    summary: json!({}),
                })?;
            }
            Ok::<_, palisade_store::StoreError>(())
        })
    })
    .expect("inserting old events");
    let before = audit(&app, "limit=1").await["count"].as_u64().unwrap();
    let store = app.state.store.clone();
    let cutoff = palisade_store::now_ms() - 90 * 86_400_000;
    let pruned = blocking(move || palisade_service::retention::prune_audit(&store, cutoff)).expect("pruning");
    assert_eq!(pruned, 3);
    let after = audit(&app, "limit=1000").await;
    assert_eq!(after["count"].as_u64(), Some(before - 3));
    assert!(results(&after).iter().any(|e| e["action"] == "security_group.create"), "recent events stay: {after}");
}
