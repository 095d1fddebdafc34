//! Rules: the v2 rule create/delete tasks and the deprecated synchronous v1 add, PUT and DELETE.

use serde_json::{Value, json};

use crate::helpers::*;

async fn group_with(app: &TestApp, rules: Value) -> Value {
    app.create_group_and_wait(json!({"name": "rules-test", "rules": rules})).await
}

fn revision(group: &Value) -> i64 {
    group["revision_number"].as_i64().expect("revision_number")
}

#[tokio::test]
async fn v1_add_rule_returns_the_new_rule_and_the_group_holds_it() {
    let app = spawn_app().await;
    let group = group_with(&app, json!([])).await;
    let gid = id_of(&group);
    let resp = app
        .post_json(
            &format!("{V1}/{gid}/rules"),
            &json!({
                "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 80, "port_range_max": 443,
                "remote_ip_prefix": "0.0.0.0/0", "description": "", "security_group_id": gid,
            }),
        )
        .await
        .expect(200);
    assert_json_content_type(&resp);
    let rule = resp.body;
    assert!(uuid::Uuid::try_parse(str_of(&rule, "id")).is_ok());
    assert_eq!(rule["security_group_id"], json!(gid));
    assert_eq!(
        rule_attrs(&rule),
        expected_rule(
            json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 443, "remote_ip_prefix": "0.0.0.0/0"})
        )
    );
    assert_eq!(rule["revision_number"], 0);
    assert_zoned_time(&rule["created_at"], "rule.created_at");
    assert_eq!(rule["created_at"], rule["updated_at"]);

    let after = app.get_group(&gid).await;
    assert_eq!(rule_by_id(&after, str_of(&rule, "id")), Some(&rule), "GET group shows the rule exactly as returned");
    assert_eq!(revision(&after), revision(&group) + 1);
    assert_eq!(app.list_tasks("").await["count"], 1, "v1 add runs no task (only the create task exists)");

    // Unknown group: 404.
    app.post_json(&format!("{V1}/{}/rules", uuid::Uuid::new_v4()), &json!({"direction": "egress"}))
        .await
        .expect_error(404, "NotFoundError");
}

#[tokio::test]
async fn v1_add_duplicate_rule_is_409_with_the_existing_rule_id_and_no_retry() {
    let app = spawn_app().await;
    let group = group_with(
        &app,
        json!([{"direction": "ingress", "protocol": "tcp", "port_range_min": 66, "port_range_max": 67}, {"direction": "egress"}]),
    )
    .await;
    let gid = id_of(&group);
    let tcp_id = rules_of(&group).iter().find(|r| r["protocol"] == "tcp").map(id_of).unwrap();
    let egress_id = rules_of(&group).iter().find(|r| r["direction"] == "egress").map(id_of).unwrap();
    let duplicates = [
        (json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 66, "port_range_max": 67}), &tcp_id),
        // Other description, "anywhere" prefix: same identity (Neutron's _rule_to_key).
        (json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 66, "port_range_max": 67, "description": "other"}), &tcp_id),
        (
            json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 66, "port_range_max": 67, "remote_ip_prefix": "0.0.0.0/0"}),
            &tcp_id,
        ),
        (json!({"direction": "egress", "protocol": "any", "remote_ip_prefix": "0.0.0.0/0"}), &egress_id),
    ];
    for (body, existing) in duplicates {
        let resp = app.post_json(&format!("{V1}/{gid}/rules"), &body).await;
        let err = resp.expect_error(409, "SecurityGroupRuleExists");
        assert_eq!(resp.header("x-should-retry"), Some("false"), "409 must not be retried by the SDKs");
        assert_eq!(err["info"]["existing_rule_id"], json!(existing), "{body}");
        assert!(str_of(err, "message").contains(existing.as_str()), "the message names the existing rule");
    }
    assert_eq!(app.get_group(&gid).await, group, "duplicates change nothing");

    // Not a duplicate: a different prefix.
    app.add_rule_v1(
        &gid,
        json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 66, "port_range_max": 67, "remote_ip_prefix": "10.0.0.0/24"}),
    )
    .await;
    assert_eq!(rules_of(&app.get_group(&gid).await).len(), 3);
}

#[tokio::test]
async fn v1_rule_semantics_follow_neutron() {
    let app = spawn_app().await;
    let group = group_with(&app, json!([])).await;
    let gid = id_of(&group);
    let path = format!("{V1}/{gid}/rules");

    // Accepted with normalisation.
    let icmp6 = app.add_rule_v1(&gid, json!({"direction": "ingress", "ethertype": "IPv6", "protocol": "icmp"})).await;
    assert_eq!(icmp6["protocol"], "ipv6-icmp", "IPv6 + icmp becomes ipv6-icmp");
    let ping = app.add_rule_v1(&gid, json!({"direction": "ingress", "protocol": "icmp", "port_range_min": 8, "port_range_max": 0})).await;
    assert_eq!((ping["port_range_min"].clone(), ping["port_range_max"].clone()), (json!(8), json!(0)), "ICMP type/code kept");
    let whole =
        app.add_rule_v1(&gid, json!({"direction": "egress", "protocol": "udp", "port_range_min": 1, "port_range_max": 65535})).await;
    assert_eq!((whole["port_range_min"].clone(), whole["port_range_max"].clone()), (Value::Null, Value::Null));
    let host = app
        .add_rule_v1(&gid, json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 5432, "remote_ip_prefix": "10.0.0.5/24"}))
        .await;
    assert_eq!(host["remote_ip_prefix"], "10.0.0.5/24", "host bits are kept as written");
    assert_eq!(host["port_range_max"], 5432);
    let own = app.add_rule_v1(&gid, json!({"direction": "ingress", "remote_group_id": gid})).await;
    assert_eq!(own["remote_group_id"], json!(gid), "a group may name itself as remote group");

    let before = app.get_group(&gid).await;
    assert_eq!(rules_of(&before).len(), 5);

    // Refused synchronously, naming the field.
    let cases = [
        (json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 79}), "port_range_min"),
        (json!({"direction": "ingress", "protocol": "tcp", "port_range_max": 6}), "port_range_min"),
        (json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 0, "port_range_max": 10}), "port_range_min"),
        (json!({"direction": "ingress", "port_range_min": 80, "port_range_max": 80}), "port_range_min"),
        (json!({"direction": "ingress", "protocol": "gre", "port_range_min": 1, "port_range_max": 2}), "port_range_min"),
        (json!({"direction": "ingress", "protocol": "icmp", "port_range_min": 1, "port_range_max": 256}), "port_range_max"),
        (json!({"direction": "ingress", "protocol": "icmp", "port_range_min": 300, "port_range_max": 1}), "port_range_min"),
        (json!({"direction": "ingress", "protocol": "icmp", "port_range_max": 6}), "port_range_max"),
        (json!({"direction": "ingress", "ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/8"}), "remote_ip_prefix"),
        (json!({"direction": "ingress", "ethertype": "IPv4", "remote_ip_prefix": "2001:db8::/32"}), "remote_ip_prefix"),
        (json!({"direction": "ingress", "protocol": "ipv6-icmp"}), "protocol"),
        (json!({"direction": "ingress", "remote_ip_prefix": "10.0.0.0/8", "remote_group_id": gid}), "remote_group_id"),
    ];
    for (body, field) in cases {
        let resp = app.post_json(&path, &body).await;
        assert_eq!(resp.status.as_u16(), 400, "{body} -> {}", resp.text);
        resp.expect_invalid(field);
    }
    // A remote group that does not exist: 404 (Neutron; SEMANTICS.md §1.3).
    let resp = app.post_json(&path, &json!({"direction": "ingress", "remote_group_id": uuid::Uuid::new_v4().to_string()})).await;
    resp.expect_error(404, "NotFoundError");
    assert_eq!(app.get_group(&gid).await, before, "refused rules change nothing");
}

#[tokio::test]
async fn v1_put_replaces_a_rule_with_a_new_id() {
    let app = spawn_app().await;
    let group = group_with(
        &app,
        json!([
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 80, "description": "http"},
            {"direction": "egress"},
        ]),
    )
    .await;
    let gid = id_of(&group);
    let old = rules_of(&group).iter().find(|r| r["port_range_min"] == 80).map(id_of).unwrap();

    let resp = app
        .put_json(
            &format!("{V1_RULES}/{old}"),
            &json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 443, "port_range_max": 443}),
        )
        .await
        .expect(200);
    assert_json_content_type(&resp);
    let new = resp.body;
    let new_id = id_of(&new);
    assert_ne!(new_id, old, "replace gives a new id");
    assert_eq!(new["security_group_id"], json!(gid));
    assert_eq!(
        rule_attrs(&new),
        expected_rule(json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 443, "port_range_max": 443})),
        "omitted fields take their defaults (the old description is not kept)"
    );
    let after = app.get_group(&gid).await;
    assert!(rule_by_id(&after, &old).is_none(), "the old rule is gone");
    assert_eq!(rule_by_id(&after, &new_id), Some(&new));
    assert_eq!(rules_of(&after).len(), 2);
    assert_eq!(revision(&after), revision(&group) + 1);

    // The old id no longer exists.
    app.put_json(&format!("{V1_RULES}/{old}"), &json!({"direction": "ingress"})).await.expect_error(404, "NotFoundError");
    // security_group_id, when sent, must be the rule's group.
    let resp = app
        .put_json(&format!("{V1_RULES}/{new_id}"), &json!({"direction": "ingress", "protocol": "any", "security_group_id": gid}))
        .await
        .expect(200);
    let newer = resp.body;
    assert_eq!(rule_attrs(&newer), expected_rule(json!({"direction": "ingress"})), "protocol any is stored as null");
    let other_group = uuid::Uuid::new_v4().to_string();
    let resp =
        app.put_json(&format!("{V1_RULES}/{}", id_of(&newer)), &json!({"direction": "ingress", "security_group_id": other_group})).await;
    resp.expect_invalid("security_group_id");
    // Replacing into a duplicate of another rule of the group: 409, and the rule stays.
    let egress = rules_of(&after).iter().find(|r| r["direction"] == "egress").map(id_of).unwrap();
    let before = app.get_group(&gid).await;
    let resp = app.put_json(&format!("{V1_RULES}/{}", id_of(&newer)), &json!({"direction": "egress"})).await;
    let body = resp.expect_error(409, "SecurityGroupRuleExists");
    assert_eq!(body["info"]["existing_rule_id"], json!(egress));
    assert_eq!(resp.header("x-should-retry"), Some("false"));
    assert_eq!(app.get_group(&gid).await, before);
    app.put_json(&format!("{V1_RULES}/not-a-uuid"), &json!({"direction": "ingress"})).await.expect_error(404, "NotFoundError");
}

#[tokio::test]
async fn v1_delete_rule_returns_204_and_the_rule_is_gone() {
    let app = spawn_app().await;
    let group = group_with(&app, json!([{"direction": "egress"}, {"direction": "ingress", "protocol": "udp"}])).await;
    let gid = id_of(&group);
    let victim = rules_of(&group).iter().find(|r| r["protocol"] == "udp").map(id_of).unwrap();
    let resp = app.delete(&format!("{V1_RULES}/{victim}")).await.expect(204);
    assert!(resp.text.is_empty());
    let after = app.get_group(&gid).await;
    assert_eq!(sorted_attrs(&after), vec![expected_rule(json!({"direction": "egress"}))]);
    assert_eq!(revision(&after), revision(&group) + 1);
    app.delete(&format!("{V1_RULES}/{victim}")).await.expect_error(404, "NotFoundError");
    app.delete(&format!("{V1_RULES}/{}", uuid::Uuid::new_v4())).await.expect_error(404, "NotFoundError");
    // The rule lives in project 1 / region 1 only.
    let keep = rule_ids(&after)[0].clone();
    app.delete(&format!("/cloud/v1/securitygrouprules/2/1/{keep}")).await.expect_error(404, "NotFoundError");
    assert_eq!(app.get_group(&gid).await, after);
}

#[tokio::test]
async fn v2_rule_create_runs_a_task_that_names_exactly_the_new_rule() {
    let app = spawn_app().await;
    let group = group_with(&app, json!([])).await;
    let gid = id_of(&group);
    let rule_body = json!({"direction": "ingress", "ethertype": "IPv4", "port_range_max": 22, "port_range_min": 22, "protocol": "tcp",
        "remote_ip_prefix": "0.0.0.0/0", "description": "ssh"});
    let task_id = app.create_rule_v2(&gid, rule_body.clone()).await;
    let task = app.wait_finished(&task_id).await;
    assert_eq!(task["task_type"], "create_security_group_rule");
    let created = task["created_resources"].as_object().expect("created_resources object");
    assert_eq!(created.keys().collect::<Vec<_>>(), ["security_group_rules"], "only the rule key: {task}");
    let ids = created["security_group_rules"].as_array().unwrap();
    assert_eq!(ids.len(), 1, "the SDKs require exactly one rule id");
    let rule_id = ids[0].as_str().unwrap();
    assert_eq!(task["data"]["security_group_id"], json!(gid));
    assert_eq!(task["data"]["direction"], "ingress");

    let after = app.get_group(&gid).await;
    let rule = rule_by_id(&after, rule_id).expect("the created rule is in the group");
    assert_eq!(
        rule_attrs(rule),
        expected_rule(json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
            "remote_ip_prefix": "0.0.0.0/0", "description": "ssh"}))
    );
    assert_eq!(revision(&after), revision(&group) + 1);

    // Minimal body.
    let task = app.wait_finished(&app.create_rule_v2(&gid, json!({"direction": "egress"})).await).await;
    let id = task["created_resources"]["security_group_rules"][0].as_str().unwrap();
    assert_eq!(rule_attrs(rule_by_id(&app.get_group(&gid).await, id).unwrap()), expected_rule(json!({"direction": "egress"})));
}

#[tokio::test]
async fn v2_rule_create_duplicate_ends_in_error_naming_the_existing_rule() {
    let app = spawn_app().await;
    let group = group_with(&app, json!([{"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22}])).await;
    let gid = id_of(&group);
    let existing = rule_ids(&group)[0].clone();
    let task_id =
        app.create_rule_v2(&gid, json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "description": "again"})).await;
    let task = app.wait_error(&task_id).await;
    let error = str_of(&task, "error");
    assert!(error.contains(&existing), "error {error:?} should name the existing rule {existing}");
    assert!(error.to_lowercase().contains("already exists"), "{error}");
    assert_eq!(task["created_resources"], Value::Null);
    assert_naive_time(&task["finished_on"], "finished_on");
    assert_eq!(app.get_group(&gid).await, group, "nothing changed");
}

#[tokio::test]
async fn v2_rule_create_with_invalid_semantics_fails_in_the_task() {
    let app = spawn_app().await;
    let group = group_with(&app, json!([])).await;
    let gid = id_of(&group);
    for (body, fragment) in [
        (json!({"direction": "ingress", "port_range_min": 80}), "port_range_min"),
        (json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 79}), "port_range_min"),
        (json!({"direction": "ingress", "ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/8"}), "remote_ip_prefix"),
        (json!({"direction": "ingress", "remote_group_id": uuid::Uuid::new_v4().to_string()}), "could not be found"),
    ] {
        let task = app.wait_error(&app.create_rule_v2(&gid, body.clone()).await).await;
        assert!(str_of(&task, "error").contains(fragment), "{body}: {task}");
    }
    assert_eq!(app.get_group(&gid).await, group);
}

#[tokio::test]
async fn v2_rule_create_on_an_unknown_group_is_404_and_stores_no_task() {
    let app = spawn_app().await;
    let tasks = app.list_tasks("").await["count"].clone();
    app.post_json(&format!("{V2}/{}/rules", uuid::Uuid::new_v4()), &json!({"direction": "egress"}))
        .await
        .expect_error(404, "NotFoundError");
    app.post_json(&format!("{V2}/not-a-uuid/rules"), &json!({"direction": "egress"})).await.expect_error(404, "NotFoundError");
    assert_eq!(app.list_tasks("").await["count"], tasks);
}

#[tokio::test]
async fn v2_rule_delete_runs_a_task_and_removes_the_rule() {
    let app = spawn_app().await;
    let group = group_with(&app, json!([{"direction": "egress"}, {"direction": "ingress", "protocol": "icmp"}])).await;
    let other = group_with(&app, json!([{"direction": "ingress", "protocol": "udp"}])).await;
    let gid = id_of(&group);
    let icmp = rules_of(&group).iter().find(|r| r["protocol"] == "icmp").map(id_of).unwrap();

    let resp = app.delete(&format!("{V2}/{gid}/rules/{icmp}")).await.expect(200);
    let task = app.wait_finished(&single_task(&resp)).await;
    assert_eq!(task["task_type"], "delete_security_group_rule");
    assert_eq!(task["created_resources"], Value::Null);
    let after = app.get_group(&gid).await;
    assert!(rule_by_id(&after, &icmp).is_none());
    assert_eq!(sorted_attrs(&after), vec![expected_rule(json!({"direction": "egress"}))]);
    assert_eq!(revision(&after), revision(&group) + 1);

    let tasks = app.list_tasks("").await["count"].clone();
    // Deleted already, a rule of another group, unknown ids: 404 at once, no task.
    app.delete(&format!("{V2}/{gid}/rules/{icmp}")).await.expect_error(404, "NotFoundError");
    let foreign = rule_ids(&other)[0].clone();
    app.delete(&format!("{V2}/{gid}/rules/{foreign}")).await.expect_error(404, "NotFoundError");
    app.delete(&format!("{V2}/{}/rules/{foreign}", uuid::Uuid::new_v4())).await.expect_error(404, "NotFoundError");
    app.delete(&format!("{V2}/{gid}/rules/not-a-uuid")).await.expect_error(404, "NotFoundError");
    assert_eq!(app.list_tasks("").await["count"], tasks);
    assert_eq!(app.get_group(str_of(&other, "id")).await, other);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_identical_v1_adds_create_the_rule_once() {
    let app = spawn_app().await;
    let group = group_with(&app, json!([])).await;
    let gid = id_of(&group);
    let mut handles = Vec::new();
    for _ in 0..20 {
        let api = app.api.clone();
        let path = format!("{V1}/{gid}/rules");
        handles.push(tokio::spawn(async move {
            api.post_json(&path, &json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 8443})).await
        }));
    }
    let mut created = Vec::new();
    let mut conflicts = Vec::new();
    for handle in handles {
        let resp = handle.await.unwrap();
        match resp.status.as_u16() {
            200 => created.push(id_of(&resp.body)),
            409 => conflicts.push(resp.body["info"]["existing_rule_id"].as_str().unwrap().to_string()),
            other => panic!("unexpected {other}: {}", resp.text),
        }
    }
    assert_eq!(created.len(), 1, "exactly one concurrent add wins");
    assert_eq!(conflicts.len(), 19);
    assert!(conflicts.iter().all(|id| *id == created[0]), "every 409 names the winner");
    let after = app.get_group(&gid).await;
    assert_eq!(rule_ids(&after), created);
    assert_eq!(revision(&after), revision(&group) + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_v2_rule_creates_all_land_and_duplicates_fail() {
    let app = spawn_app().await;
    let group = group_with(&app, json!([])).await;
    let gid = id_of(&group);
    let mut handles = Vec::new();
    for i in 0..30u16 {
        let api = app.api.clone();
        let gid = gid.clone();
        // Ten distinct rules, each sent three times.
        let port = 7000 + i % 10;
        handles.push(tokio::spawn(async move {
            let task = api.create_rule_v2(&gid, json!({"direction": "ingress", "protocol": "udp", "port_range_min": port})).await;
            api.wait_task(&task).await
        }));
    }
    let mut finished = 0;
    let mut errors = 0;
    for handle in handles {
        let task = handle.await.unwrap();
        match str_of(&task, "state") {
            "FINISHED" => finished += 1,
            _ => {
                assert!(str_of(&task, "error").contains("already exists"), "{task}");
                errors += 1;
            }
        }
    }
    assert_eq!((finished, errors), (10, 20));
    let after = app.get_group(&gid).await;
    let mut ports: Vec<i64> = rules_of(&after).iter().map(|r| r["port_range_min"].as_i64().unwrap()).collect();
    ports.sort();
    assert_eq!(ports, (7000..7010).collect::<Vec<i64>>());
    assert_eq!(revision(&after), revision(&group) + 10);
}
