//! Security groups end to end: v2 create/patch (tasks), list, get, delete, copy, revert, the
//! legacy v1 create and patch, instances and the legacy metadata endpoints.

use serde_json::{Value, json};

use crate::helpers::*;

const GROUP_KEYS: [&str; 12] = [
    "id",
    "name",
    "description",
    "created_at",
    "updated_at",
    "project_id",
    "region_id",
    "region",
    "revision_number",
    "security_group_rules",
    "tags_v2",
    "metadata",
];

const RULE_KEYS: [&str; 13] = [
    "id",
    "security_group_id",
    "direction",
    "ethertype",
    "protocol",
    "port_range_min",
    "port_range_max",
    "remote_ip_prefix",
    "remote_group_id",
    "description",
    "revision_number",
    "created_at",
    "updated_at",
];

/// Every key of CONTRACT.md §4.1/§4.2 is present, with the right types and time formats.
#[track_caller]
fn assert_group_shape(group: &Value) {
    let obj = group.as_object().unwrap_or_else(|| panic!("group is not an object: {group}"));
    for key in GROUP_KEYS {
        assert!(obj.contains_key(key), "group lacks {key}: {group}");
    }
    assert!(!obj.contains_key("tags"), "a group must not carry an object-valued `tags` key (GLC): {group}");
    assert!(uuid::Uuid::try_parse(str_of(group, "id")).is_ok(), "group id is not a UUID");
    assert!(group["description"].is_string(), "description must be a non-null string: {group}");
    assert_zoned_time(&group["created_at"], "group.created_at");
    assert_zoned_time(&group["updated_at"], "group.updated_at");
    assert_recent(&group["created_at"], "group.created_at");
    assert!(str_of(group, "updated_at") >= str_of(group, "created_at"), "updated_at before created_at: {group}");
    assert!(group["project_id"].is_i64() && group["region_id"].is_i64() && group["revision_number"].is_i64());
    assert!(group["region"].as_str().is_some_and(|r| !r.is_empty()), "region must be a non-empty string");
    assert_eq!(group["metadata"], group["tags_v2"], "metadata mirrors tags_v2");
    for rule in rules_of(group) {
        let obj = rule.as_object().unwrap_or_else(|| panic!("rule is not an object: {rule}"));
        for key in RULE_KEYS {
            assert!(obj.contains_key(key), "rule lacks {key}: {rule}");
        }
        assert!(uuid::Uuid::try_parse(str_of(rule, "id")).is_ok());
        assert_eq!(rule["security_group_id"], group["id"], "rule.security_group_id names its group");
        assert!(matches!(str_of(rule, "direction"), "ingress" | "egress"));
        assert!(matches!(str_of(rule, "ethertype"), "IPv4" | "IPv6"), "ethertype is never null: {rule}");
        assert_eq!(rule["revision_number"], json!(0), "rules are immutable: revision 0");
        assert_zoned_time(&rule["created_at"], "rule.created_at");
        assert_recent(&rule["created_at"], "rule.created_at");
        assert_eq!(rule["created_at"], rule["updated_at"], "rule.updated_at == created_at");
        if let Some(protocol) = rule["protocol"].as_str() {
            assert!(protocol != "any" && protocol.parse::<u32>().is_err(), "protocol is a name and never `any`: {rule}");
        }
    }
}

fn default_template() -> Vec<Value> {
    sorted(vec![
        expected_rule(json!({"direction": "egress", "ethertype": "IPv4"})),
        expected_rule(json!({"direction": "egress", "ethertype": "IPv6"})),
    ])
}

fn revision(group: &Value) -> i64 {
    group["revision_number"].as_i64().expect("revision_number")
}

#[tokio::test]
async fn v2_create_without_rules_applies_the_default_egress_template() {
    let app = spawn_app().await;
    let task_id = app.create_group(json!({"name": "web"})).await;
    let task = app.wait_finished(&task_id).await;
    assert_eq!(task["task_type"], "create_security_group");

    let created = &task["created_resources"];
    let group_ids = created["security_groups"].as_array().expect("security_groups");
    assert_eq!(group_ids.len(), 1);
    let group = app.get_group(group_ids[0].as_str().unwrap()).await;
    assert_group_shape(&group);
    assert_eq!(group["name"], "web");
    assert_eq!(group["description"], "");
    assert_eq!(group["project_id"], 1);
    assert_eq!(group["region_id"], 1);
    assert_eq!(group["region"], "Region 1");
    assert_eq!(group["revision_number"], 0);
    assert_eq!(group["tags_v2"], json!([]));
    assert_eq!(sorted_attrs(&group), default_template());

    // created_resources names exactly the rules the group has.
    let mut listed: Vec<String> =
        created["security_group_rules"].as_array().expect("security_group_rules").iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let mut actual = rule_ids(&group);
    listed.sort();
    actual.sort();
    assert_eq!(listed, actual);
}

#[tokio::test]
async fn v2_create_with_rules_creates_exactly_those_rules_and_tags() {
    let app = spawn_app().await;
    let group = app
        .create_group_and_wait(json!({
            "name": "api servers",
            "description": "Front door",
            "rules": [
                {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
                 "remote_ip_prefix": "10.0.0.0/8", "description": "ssh"},
                {"direction": "ingress", "protocol": "tcp", "port_range_min": 8080},
                {"direction": "ingress", "protocol": "udp", "port_range_min": 1, "port_range_max": 65535},
                {"direction": "egress", "protocol": "any", "ethertype": "IPv6"},
                {"direction": "ingress", "protocol": null, "port_range_min": null, "remote_group_id": null},
            ],
            "tags": {"team": "infra", "env": " prod "},
            "unknown_field": "ignored",
        }))
        .await;
    assert_group_shape(&group);
    assert_eq!(group["name"], "api servers");
    assert_eq!(group["description"], "Front door");
    assert_eq!(group["revision_number"], 0);
    assert_eq!(
        sorted_attrs(&group),
        sorted(vec![
            expected_rule(json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
                "remote_ip_prefix": "10.0.0.0/8", "description": "ssh"})),
            // A lone port_range_min is a single port.
            expected_rule(json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 8080, "port_range_max": 8080})),
            // 1..65535 is the whole range: null/null.
            expected_rule(json!({"direction": "ingress", "protocol": "udp"})),
            // `any` is stored as null.
            expected_rule(json!({"direction": "egress", "ethertype": "IPv6"})),
            expected_rule(json!({"direction": "ingress"})),
        ]),
        "no default rule is appended to an explicit list"
    );
    // Tags: values trimmed, sorted by key, mirrored into metadata.
    assert_eq!(
        group["tags_v2"],
        json!([{"key": "env", "value": "prod", "read_only": false}, {"key": "team", "value": "infra", "read_only": false}])
    );
}

#[tokio::test]
async fn v2_create_with_empty_rules_creates_no_rules() {
    let app = spawn_app().await;
    let task_id = app.create_group(json!({"name": "empty", "rules": []})).await;
    let task = app.wait_finished(&task_id).await;
    assert_eq!(task["created_resources"]["security_group_rules"], json!([]));
    let group = app.get_group(task["created_resources"]["security_groups"][0].as_str().unwrap()).await;
    assert_group_shape(&group);
    assert_eq!(group["security_group_rules"], json!([]));
}

#[tokio::test]
async fn v2_create_deduplicates_identical_rules_in_one_request() {
    let app = spawn_app().await;
    let group = app
        .create_group_and_wait(json!({"name": "dups", "rules": [
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 22},
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"},
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "description": "again"},
        ]}))
        .await;
    assert_eq!(rules_of(&group).len(), 1, "three spellings of one rule are created once: {group}");
}

#[tokio::test]
async fn v2_create_with_a_semantically_invalid_rule_fails_in_the_task_and_creates_nothing() {
    let app = spawn_app().await;
    for (rules, field) in [
        (json!([{"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 79}]), "rules.0.port_range_min"),
        (json!([{"direction": "egress"}, {"direction": "ingress", "port_range_min": 80}]), "rules.1.port_range_min"),
        (json!([{"direction": "ingress", "ethertype": "IPv6", "remote_ip_prefix": "10.0.0.0/8"}]), "rules.0.remote_ip_prefix"),
        (json!([{"direction": "ingress", "remote_group_id": uuid::Uuid::new_v4().to_string()}]), "rules.0.remote_group_id"),
    ] {
        let resp = app.post_json(V2, &json!({"name": "broken", "rules": rules})).await.expect(200);
        let task = app.wait_error(&single_task(&resp)).await;
        let error = str_of(&task, "error");
        assert!(!error.is_empty(), "an ERROR task explains itself");
        assert!(
            error.contains(field) || field.ends_with("remote_group_id") && error.contains("could not be found"),
            "error {error:?} should name {field}"
        );
        assert_eq!(task["created_resources"], Value::Null);
        assert!(task["finished_on"].is_string());
    }
    assert_eq!(app.group_count().await, 0, "a failed create leaves no group behind");
}

#[tokio::test]
async fn list_pages_by_limit_and_offset_in_creation_order() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(id_of(&app.create_group_v1(&format!("group-{i:02}"), json!([])).await));
    }
    let names = |page: &Value| page["results"].as_array().unwrap().iter().map(|g| str_of(g, "name").to_string()).collect::<Vec<_>>();

    let default = app.list_groups("").await;
    assert_eq!(default["count"], 12);
    assert_eq!(default["results"].as_array().unwrap().len(), 10, "the default limit is 10");
    assert_eq!(default["results"][0]["id"], json!(ids[0]), "oldest first");

    let page = app.list_groups("limit=5&offset=0").await;
    assert_eq!(page["count"], 12);
    assert_eq!(names(&page), ["group-00", "group-01", "group-02", "group-03", "group-04"]);
    let page = app.list_groups("limit=5&offset=10").await;
    assert_eq!(page["count"], 12);
    assert_eq!(names(&page), ["group-10", "group-11"]);
    let page = app.list_groups("limit=5&offset=12").await;
    assert_eq!(page["count"], 12);
    assert_eq!(page["results"], json!([]));
    let page = app.list_groups("limit=1000").await;
    assert_eq!(page["results"].as_array().unwrap().len(), 12);

    // Paging the way the SDK does (offset += len while < count) visits each group once.
    let mut seen = Vec::new();
    let mut offset = 0;
    loop {
        let page = app.list_groups(&format!("limit=5&offset={offset}")).await;
        let results = page["results"].as_array().unwrap();
        if results.is_empty() {
            break;
        }
        seen.extend(results.iter().map(id_of));
        offset += results.len();
        if offset as u64 >= page["count"].as_u64().unwrap() {
            break;
        }
    }
    assert_eq!(seen, ids);
    for group in default["results"].as_array().unwrap() {
        assert_group_shape(group);
    }
}

#[tokio::test]
async fn list_filters_by_name_tag_keys_and_tag_key_value() {
    let app = spawn_app().await;
    let a = app.create_group_and_wait(json!({"name": "alpha", "rules": [], "tags": {"env": "prod", "team": "infra"}})).await;
    let b = app.create_group_and_wait(json!({"name": "beta", "rules": [], "tags": {"env": "test", "team": "infra"}})).await;
    let c = app.create_group_and_wait(json!({"name": "alpha", "rules": [], "tags": {"env": "prod"}})).await;
    let _d = app.create_group_and_wait(json!({"name": "alphabet", "rules": []})).await;

    let ids = |page: &Value| page["results"].as_array().unwrap().iter().map(id_of).collect::<Vec<_>>();
    let check = |page: Value, expected: Vec<String>| {
        assert_eq!(page["count"], json!(expected.len()), "count of {page}");
        assert_eq!(ids(&page), expected);
    };

    check(app.list_groups("name=alpha").await, vec![id_of(&a), id_of(&c)]);
    check(app.list_groups("name=alph").await, vec![]);
    check(app.list_groups("name=beta").await, vec![id_of(&b)]);
    check(app.list_groups("tag_key=team").await, vec![id_of(&a), id_of(&b)]);
    check(app.list_groups("tag_key=team&tag_key=env").await, vec![id_of(&a), id_of(&b)]);
    check(app.list_groups("tag_key=env").await, vec![id_of(&a), id_of(&b), id_of(&c)]);
    check(app.list_groups("tag_key=env&tag_key=nope").await, vec![]);
    let kv = |json: &str| format!("tag_key_value={}", url_encode(json));
    check(app.list_groups(&kv(r#"{"env":"prod"}"#)).await, vec![id_of(&a), id_of(&c)]);
    check(app.list_groups(&kv(r#"{"env":"prod","team":"infra"}"#)).await, vec![id_of(&a)]);
    check(app.list_groups(&kv(r#"{"env":"staging"}"#)).await, vec![]);
    check(app.list_groups(&format!("name=alpha&tag_key=team&{}", kv(r#"{"env":"prod"}"#))).await, vec![id_of(&a)]);
    // Legacy aliases used by gcorelabscloud-go.
    check(app.list_groups("metadata_k=team").await, vec![id_of(&a), id_of(&b)]);
    check(app.list_groups(&format!("metadata_kv={}", url_encode(r#"{"env":"test"}"#))).await, vec![id_of(&b)]);
    // Filters combine with paging: count is the filtered total.
    let page = app.list_groups("tag_key=env&limit=1&offset=1").await;
    assert_eq!(page["count"], 3);
    assert_eq!(ids(&page), vec![id_of(&b)]);
}

pub fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn get_returns_the_group_and_404_for_unknown_or_malformed_ids() {
    let app = spawn_app().await;
    let group = app.create_group_and_wait(json!({"name": "getme"})).await;
    let again = app.get_group(str_of(&group, "id")).await;
    assert_eq!(again, group, "GET is stable");
    assert_group_shape(&again);

    let missing = app.get(&format!("{V1}/{}", uuid::Uuid::new_v4())).await;
    missing.expect_error(404, "NotFoundError");
    let malformed = app.get(&format!("{V1}/not-a-uuid")).await;
    malformed.expect_error(404, "NotFoundError");
    // The same group is not visible in another project or region of the same client.
    app.get(&format!("/cloud/v1/securitygroups/2/1/{}", str_of(&group, "id"))).await.expect_error(404, "NotFoundError");
    app.get(&format!("/cloud/v1/securitygroups/1/2/{}", str_of(&group, "id"))).await.expect_error(404, "NotFoundError");
    assert_eq!(app.get("/cloud/v1/securitygroups/2/1").await.expect(200).body["count"], 0);
}

#[tokio::test]
async fn v2_patch_renames_in_a_task_and_keeps_rules() {
    let app = spawn_app().await;
    let group = app.create_group_and_wait(json!({"name": "old-name", "description": "d1"})).await;
    let id = id_of(&group);
    // Times have whole seconds: wait for the next one so the bump is visible.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let resp = app.patch_json(&format!("{V2}/{id}"), &json!({"name": "new-name", "description": "d2"})).await.expect(200);
    let task = app.wait_finished(&single_task(&resp)).await;
    assert_eq!(task["task_type"], "update_security_group");
    assert_eq!(task["created_resources"], Value::Null, "no rule was added");
    let after = app.get_group(&id).await;
    assert_group_shape(&after);
    assert_eq!(after["name"], "new-name");
    assert_eq!(after["description"], "d2");
    assert_eq!(rule_ids(&after), rule_ids(&group));
    assert_eq!(revision(&after), revision(&group) + 1);
    assert_eq!(after["created_at"], group["created_at"]);
    assert!(str_of(&after, "updated_at") > str_of(&group, "updated_at"), "updated_at is bumped on change: {after}");

    // PATCH of an unknown or malformed group: 404 and no task.
    let tasks = app.list_tasks("").await["count"].clone();
    app.patch_json(&format!("{V2}/{}", uuid::Uuid::new_v4()), &json!({"name": "ghost"})).await.expect_error(404, "NotFoundError");
    app.patch_json(&format!("{V2}/{}", uuid::Uuid::new_v4()), &json!({"tags": {"a": "b"}})).await.expect_error(404, "NotFoundError");
    app.patch_json(&format!("{V2}/not-a-uuid"), &json!({"name": "ghost"})).await.expect_error(404, "NotFoundError");
    app.patch_json(&format!("{V1}/{}", uuid::Uuid::new_v4()), &json!({"name": "ghost"})).await.expect_error(404, "NotFoundError");
    assert_eq!(app.list_tasks("").await["count"], tasks);
}

#[tokio::test]
async fn the_largest_valid_inputs_are_accepted() {
    let app = spawn_app().await;
    let rules: Vec<Value> = (0..250).map(|i| json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 10000 + i})).collect();
    let long_key = "k".repeat(255);
    let group = app
        .create_group_and_wait(json!({"name": "x".repeat(63), "description": "\u{e9}".repeat(255), "rules": rules,
            "tags": {long_key.clone(): "v".repeat(255)}}))
        .await;
    assert_eq!(rules_of(&group).len(), 250, "maxItems 250 is allowed");
    assert_eq!(group["name"], json!("x".repeat(63)));
    assert_eq!(group["description"], json!("\u{e9}".repeat(255)), "255 characters (not bytes) is the limit");
    assert_eq!(tags_of(&group)[&long_key], json!("v".repeat(255)));
    for name in ["abc", "A1.", "a b.c-d_", "0-9"] {
        app.create_group_and_wait(json!({"name": name, "rules": [{"direction": "egress", "description": "e".repeat(255)}]})).await;
    }
    assert_eq!(app.group_count().await, 5);
}

#[tokio::test]
async fn v2_patch_rules_is_a_desired_state_diff_that_keeps_unchanged_rule_ids() {
    let app = spawn_app().await;
    let group = app
        .create_group_and_wait(json!({"name": "diff", "rules": [
            {"direction": "egress"},
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22},
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 80, "description": "web"},
        ]}))
        .await;
    let id = id_of(&group);
    let find = |g: &Value, pred: &dyn Fn(&Value) -> bool| rules_of(g).iter().find(|r| pred(r)).map(id_of);
    let egress_id = find(&group, &|r| r["direction"] == "egress").unwrap();
    let ssh_id = find(&group, &|r| r["port_range_min"] == 22).unwrap();
    let web_id = find(&group, &|r| r["port_range_min"] == 80).unwrap();

    // Keep egress (written differently), drop ssh, change web's description, add dns.
    let resp = app
        .patch_json(
            &format!("{V2}/{id}"),
            &json!({"rules": [
                {"direction": "egress", "ethertype": "IPv4", "protocol": "any", "remote_ip_prefix": null},
                {"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 80, "description": "web2"},
                {"direction": "ingress", "protocol": "udp", "port_range_min": 53, "port_range_max": 53},
            ]}),
        )
        .await
        .expect(200);
    let task = app.wait_finished(&single_task(&resp)).await;
    let after = app.get_group(&id).await;
    assert_group_shape(&after);
    let ids = rule_ids(&after);
    assert_eq!(ids.len(), 3, "{after}");
    assert!(ids.contains(&egress_id), "the unchanged rule keeps its id");
    assert!(!ids.contains(&ssh_id), "a rule missing from the desired set is deleted");
    assert!(!ids.contains(&web_id), "a changed rule is replaced (rules are immutable)");
    assert_eq!(
        sorted_attrs(&after),
        sorted(vec![
            expected_rule(json!({"direction": "egress"})),
            expected_rule(
                json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 80, "port_range_max": 80, "description": "web2"})
            ),
            expected_rule(json!({"direction": "ingress", "protocol": "udp", "port_range_min": 53, "port_range_max": 53})),
        ])
    );
    // created_resources lists exactly the added rules.
    let mut added: Vec<String> = task["created_resources"]["security_group_rules"]
        .as_array()
        .expect("added rules listed")
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    added.sort();
    let mut new_ids: Vec<String> = ids.into_iter().filter(|i| *i != egress_id).collect();
    new_ids.sort();
    assert_eq!(added, new_ids);
    assert_eq!(revision(&after), revision(&group) + 1);

    // `rules: []` deletes every rule.
    let cleared = app.patch_group_and_wait(&id, json!({"rules": []})).await;
    assert_eq!(cleared["security_group_rules"], json!([]));
    assert_eq!(revision(&cleared), revision(&after) + 1);
}

#[tokio::test]
async fn v2_patch_with_an_invalid_rule_set_fails_in_the_task_and_changes_nothing() {
    let app = spawn_app().await;
    let group = app.create_group_and_wait(json!({"name": "stable"})).await;
    let id = id_of(&group);
    let resp = app
        .patch_json(&format!("{V2}/{id}"), &json!({"name": "renamed", "rules": [{"direction": "ingress", "port_range_min": 80}]}))
        .await
        .expect(200);
    let task = app.wait_error(&single_task(&resp)).await;
    assert!(str_of(&task, "error").contains("rules.0.port_range_min"), "{task}");
    assert_eq!(app.get_group(&id).await, group, "a failed update task changes nothing, not even the name");
}

#[tokio::test]
async fn v2_patch_tags_is_a_merge_patch_applied_without_a_task() {
    let app = spawn_app().await;
    let group = app.create_group_and_wait(json!({"name": "tagged", "tags": {"env": "test", "team": "infra", "keep": "me"}})).await;
    let id = id_of(&group);
    let tasks_before = app.list_tasks("").await["count"].clone();

    let resp = app
        .patch_json(&format!("{V2}/{id}"), &json!({"tags": {"env": "prod", "team": null, "new": "x", "missing": null}}))
        .await
        .expect(200);
    assert_eq!(resp.body, json!({"tasks": []}), "a tags-only update creates no task");
    let after = app.get_group(&id).await;
    assert_eq!(tags_of(&after), json!({"env": "prod", "keep": "me", "new": "x"}), "visible at once");
    assert_eq!(after["metadata"], after["tags_v2"]);
    assert_eq!(revision(&after), revision(&group) + 1);
    assert_eq!(rule_ids(&after), rule_ids(&group));

    // `tags: null` removes every user tag.
    let resp = app.patch_json(&format!("{V2}/{id}"), &json!({"tags": null})).await.expect(200);
    assert_eq!(resp.body, json!({"tasks": []}));
    let cleared = app.get_group(&id).await;
    assert_eq!(cleared["tags_v2"], json!([]));
    assert_eq!(revision(&cleared), revision(&after) + 1);
    assert_eq!(app.list_tasks("").await["count"], tasks_before, "no task was stored for tag updates");

    // Tags with another change: tags now, the rest in one task.
    let resp = app.patch_json(&format!("{V2}/{id}"), &json!({"name": "tagged2", "tags": {"a": "1"}})).await.expect(200);
    app.wait_finished(&single_task(&resp)).await;
    let both = app.get_group(&id).await;
    assert_eq!(both["name"], "tagged2");
    assert_eq!(tags_of(&both), json!({"a": "1"}));
}

#[tokio::test]
async fn v2_patch_that_changes_nothing_returns_no_task_and_keeps_the_revision() {
    let app = spawn_app().await;
    let group = app.create_group_and_wait(json!({"name": "noop", "description": "same", "tags": {"k": "v"}})).await;
    let id = id_of(&group);
    let path = format!("{V2}/{id}");
    let noops = [
        json!({}),
        json!({"name": "noop"}),
        json!({"description": "same"}),
        json!({"name": "noop", "description": "same", "ignored": 1}),
        // The default template, written another way.
        json!({"rules": [{"direction": "egress", "ethertype": "IPv6", "protocol": "any"}, {"direction": "egress", "remote_ip_prefix": "0.0.0.0/0"}]}),
        json!({"tags": {"k": "v"}}),
        json!({"tags": {"absent": null}}),
    ];
    for body in noops {
        let resp = app.patch_json(&path, &body).await.expect(200);
        assert_eq!(resp.body, json!({"tasks": []}), "no-op {body}");
    }
    // The SDK's update(id) sends an empty body with a JSON content type.
    let resp = app.call_raw(reqwest::Method::PATCH, &path, "").await.expect(200);
    assert_eq!(resp.body, json!({"tasks": []}));
    assert_eq!(app.get_group(&id).await, group, "nothing changed, revision included");
}

#[tokio::test]
async fn revision_number_grows_with_every_change() {
    let app = spawn_app().await;
    let group = app.create_group_and_wait(json!({"name": "rev", "rules": []})).await;
    let id = id_of(&group);
    assert_eq!(revision(&group), 0);
    let g = app.patch_group_and_wait(&id, json!({"name": "rev2"})).await;
    assert_eq!(revision(&g), 1);
    let g = app.patch_group_and_wait(&id, json!({"tags": {"a": "b"}})).await;
    assert_eq!(revision(&g), 2);
    let rule = app.add_rule_v1(&id, json!({"direction": "ingress", "protocol": "icmp"})).await;
    assert_eq!(revision(&app.get_group(&id).await), 3);
    app.delete(&format!("{V1_RULES}/{}", id_of(&rule))).await.expect(204);
    assert_eq!(revision(&app.get_group(&id).await), 4);
    let task = app.create_rule_v2(&id, json!({"direction": "egress"})).await;
    app.wait_finished(&task).await;
    assert_eq!(revision(&app.get_group(&id).await), 5);
    let reverted = app.post_empty(&format!("{V1}/{id}/revert")).await.expect(200).body;
    assert_eq!(revision(&reverted), 6);
    let g = app.get_group(&id).await;
    assert_eq!(revision(&g), 6);
}

#[tokio::test]
async fn delete_returns_204_then_the_group_and_its_rules_are_gone() {
    let app = spawn_app().await;
    let group = app.create_group_and_wait(json!({"name": "doomed"})).await;
    let other = app.create_group_and_wait(json!({"name": "survivor"})).await;
    let id = id_of(&group);
    let resp = app.delete(&format!("{V1}/{id}")).await.expect(204);
    assert!(resp.text.is_empty(), "204 has no body: {:?}", resp.text);
    app.get(&format!("{V1}/{id}")).await.expect_error(404, "NotFoundError");
    app.delete(&format!("{V1}/{id}")).await.expect_error(404, "NotFoundError");
    for rule in rule_ids(&group) {
        app.delete(&format!("{V1_RULES}/{rule}")).await.expect_error(404, "NotFoundError");
    }
    let list = app.list_groups("").await;
    assert_eq!(list["count"], 1);
    assert_eq!(list["results"][0], other);
    app.delete(&format!("{V1}/{}", uuid::Uuid::new_v4())).await.expect_error(404, "NotFoundError");
}

#[tokio::test]
async fn deleting_a_group_removes_rules_of_other_groups_that_reference_it() {
    let app = spawn_app().await;
    let target = app.create_group_and_wait(json!({"name": "target", "rules": []})).await;
    let user = app
        .create_group_and_wait(json!({"name": "user", "rules": [
            {"direction": "ingress", "remote_group_id": id_of(&target)},
            {"direction": "egress"},
        ]}))
        .await;
    assert_eq!(rules_of(&user).iter().filter(|r| r["remote_group_id"] == target["id"]).count(), 1);
    app.delete(&format!("{V1}/{}", id_of(&target))).await.expect(204);
    let after = app.get_group(str_of(&user, "id")).await;
    assert_eq!(sorted_attrs(&after), vec![expected_rule(json!({"direction": "egress"}))], "no rule points at a missing group");
    assert_eq!(revision(&after), revision(&user) + 1);
}

#[tokio::test]
async fn copy_creates_a_new_group_with_copied_rules_and_tags() {
    let app = spawn_app().await;
    let peer = app.create_group_and_wait(json!({"name": "peer", "rules": []})).await;
    let source = app
        .create_group_and_wait(json!({"name": "source", "description": "orig", "tags": {"env": "prod"}, "rules": [
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 443, "port_range_max": 443, "remote_ip_prefix": "192.168.0.0/16", "description": "https"},
            {"direction": "ingress", "remote_group_id": id_of(&peer)},
            {"direction": "egress", "ethertype": "IPv6"},
        ]}))
        .await;
    let source = app.patch_group_and_wait(str_of(&source, "id"), json!({"tags": {"team": "x"}})).await;
    let resp = app.post_json(&format!("{V1}/{}/copy", id_of(&source)), &json!({"name": "the copy"})).await.expect(200);
    let copy = resp.body;
    assert_group_shape(&copy);
    assert_ne!(copy["id"], source["id"]);
    assert_eq!(copy["name"], "the copy");
    assert_eq!(copy["description"], "orig");
    assert_eq!(copy["revision_number"], 0);
    assert_eq!(copy["tags_v2"], source["tags_v2"]);
    assert_eq!(sorted_attrs(&copy), sorted_attrs(&source), "deep copy of every rule, remote_group_id kept");
    for id in rule_ids(&copy) {
        assert!(!rule_ids(&source).contains(&id), "copied rules get new ids");
    }
    assert_eq!(app.get_group(str_of(&copy, "id")).await, copy, "the copy is stored as returned");
    assert_eq!(app.get_group(str_of(&source, "id")).await, source, "the source is untouched");
    assert_eq!(app.group_count().await, 3);
    app.post_json(&format!("{V1}/{}/copy", uuid::Uuid::new_v4()), &json!({"name": "x copy"})).await.expect_error(404, "NotFoundError");
}

#[tokio::test]
async fn revert_replaces_the_rules_with_the_default_template() {
    let app = spawn_app().await;
    let group = app
        .create_group_and_wait(json!({"name": "revertme", "description": "keep", "tags": {"k": "v"}, "rules": [
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 22},
            {"direction": "egress"},
        ]}))
        .await;
    let id = id_of(&group);
    let reverted = app.post_empty(&format!("{V1}/{id}/revert")).await.expect(200).body;
    assert_group_shape(&reverted);
    assert_eq!(sorted_attrs(&reverted), default_template());
    for rule in rule_ids(&reverted) {
        assert!(!rule_ids(&group).contains(&rule), "reverted rules are new rules");
    }
    assert_eq!(reverted["name"], "revertme");
    assert_eq!(reverted["description"], "keep");
    assert_eq!(reverted["tags_v2"], group["tags_v2"]);
    assert_eq!(revision(&reverted), revision(&group) + 1);
    assert_eq!(app.get_group(&id).await, reverted);
    // Without any body at all (no content type) too.
    let resp = app.send(app.request(reqwest::Method::POST, &format!("{V1}/{id}/revert"))).await.expect(200);
    assert_eq!(sorted_attrs(&resp.body), default_template());
    app.post_empty(&format!("{V1}/{}/revert", uuid::Uuid::new_v4())).await.expect_error(404, "NotFoundError");
}

#[tokio::test]
async fn legacy_v1_create_is_synchronous_and_creates_exactly_the_given_rules() {
    let app = spawn_app().await;
    let body = json!({
        "security_group": {
            "name": "legacy",
            "description": "from terraform",
            "security_group_rules": [
                {"direction": "egress", "ethertype": "IPv4", "protocol": "any", "description": "", "security_group_id": "ignored"},
                {"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "10.1.2.3"},
            ],
            "metadata": {"owner": "tf1"},
            "tags": {"env": "dev"},
        },
        "instances": [],
    });
    let tasks_before = app.list_tasks("").await["count"].clone();
    let resp = app.post_json(V1, &body).await.expect(200);
    assert_json_content_type(&resp);
    let group = resp.body;
    assert_group_shape(&group);
    assert_eq!(group["name"], "legacy");
    assert_eq!(group["description"], "from terraform");
    assert_eq!(group["revision_number"], 0);
    assert_eq!(tags_of(&group), json!({"env": "dev", "owner": "tf1"}), "legacy metadata is treated as tags");
    assert_eq!(
        sorted_attrs(&group),
        sorted(vec![
            expected_rule(json!({"direction": "egress"})),
            // A bare address gets a host prefix.
            expected_rule(
                json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "10.1.2.3/32"})
            ),
        ])
    );
    assert_eq!(app.get_group(str_of(&group, "id")).await, group, "visible at once");
    assert_eq!(app.list_tasks("").await["count"], tasks_before, "v1 create runs no task");

    // Semantic errors are a synchronous 400 naming the legacy field, and nothing is created.
    let bad = json!({"security_group": {"name": "legacy2", "security_group_rules": [
        {"direction": "egress"},
        {"direction": "ingress", "protocol": "tcp", "port_range_min": 90, "port_range_max": 80},
    ]}});
    app.post_json(V1, &bad).await.expect_invalid("security_group.security_group_rules.1.port_range_min");
    assert_eq!(app.group_count().await, 1);
}

#[tokio::test]
async fn legacy_v1_patch_applies_name_tags_and_changed_rules_in_order() {
    let app = spawn_app().await;
    let group = app
        .create_group_v1(
            "v1patch",
            json!([
                {"direction": "egress"},
                {"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22},
            ]),
        )
        .await;
    let id = id_of(&group);
    let ssh = rules_of(&group).iter().find(|r| r["port_range_min"] == 22).map(id_of).unwrap();
    let egress = rules_of(&group).iter().find(|r| r["direction"] == "egress").map(id_of).unwrap();
    let resp = app
        .patch_json(&format!("{V1}/{id}"), &json!({
            "name": "v1patched",
            "tags": {"a": "1"},
            "changed_rules": [
                {"action": "delete", "security_group_rule_id": ssh},
                {"action": "create", "direction": "ingress", "ethertype": "IPv4", "protocol": "any", "remote_ip_prefix": "172.16.0.0/12"},
            ],
        }))
        .await
        .expect(200);
    let after = resp.body;
    assert_group_shape(&after);
    assert_eq!(after["name"], "v1patched");
    assert_eq!(tags_of(&after), json!({"a": "1"}));
    let ids = rule_ids(&after);
    assert!(ids.contains(&egress) && !ids.contains(&ssh));
    assert_eq!(
        sorted_attrs(&after),
        sorted(vec![
            expected_rule(json!({"direction": "egress"})),
            expected_rule(json!({"direction": "ingress", "remote_ip_prefix": "172.16.0.0/12"}))
        ])
    );
    assert!(revision(&after) > revision(&group));
    assert_eq!(app.get_group(&id).await, after);

    // Deleting a rule that is not in this group is a 404 and the whole request is undone.
    let other = app.create_group_v1("other", json!([{"direction": "ingress", "protocol": "udp"}])).await;
    let foreign = rule_ids(&other)[0].clone();
    let resp = app
        .patch_json(
            &format!("{V1}/{id}"),
            &json!({"name": "should-not-stick", "changed_rules": [
                {"action": "create", "direction": "ingress", "protocol": "icmp"},
                {"action": "delete", "security_group_rule_id": foreign},
            ]}),
        )
        .await;
    resp.expect_error(404, "NotFoundError");
    assert_eq!(app.get_group(&id).await, after, "a failed v1 patch is atomic");
    assert_eq!(app.get_group(str_of(&other, "id")).await, other);

    // A duplicate create inside changed_rules is a 409.
    let resp = app
        .patch_json(
            &format!("{V1}/{id}"),
            &json!({"changed_rules": [{"action": "create", "direction": "egress", "remote_ip_prefix": "0.0.0.0/0"}]}),
        )
        .await;
    let body = resp.expect_error(409, "SecurityGroupRuleExists");
    assert_eq!(body["info"]["existing_rule_id"], json!(egress));
    assert_eq!(resp.header("x-should-retry"), Some("false"));
    assert_eq!(app.get_group(&id).await, after);
}

#[tokio::test]
async fn instances_of_a_group_is_an_empty_collection() {
    let app = spawn_app().await;
    let group = app.create_group_and_wait(json!({"name": "noinst"})).await;
    let resp = app.get(&format!("{V1}/{}/instances", id_of(&group))).await.expect(200);
    assert_json_content_type(&resp);
    assert_eq!(resp.body, json!({"count": 0, "results": []}));
    app.get(&format!("{V1}/{}/instances", uuid::Uuid::new_v4())).await.expect_error(404, "NotFoundError");
}

#[tokio::test]
async fn legacy_metadata_endpoints_read_and_write_the_tags() {
    let app = spawn_app().await;
    let group = app.create_group_and_wait(json!({"name": "meta", "tags": {"a": "1", "b": "2"}})).await;
    let id = id_of(&group);
    let base = format!("{V1}/{id}");

    let list = app.get(&format!("{base}/metadata")).await.expect(200).body;
    assert_eq!(
        list,
        json!({"count": 2, "results": [{"key": "a", "value": "1", "read_only": false}, {"key": "b", "value": "2", "read_only": false}]})
    );

    // POST adds or overwrites.
    let resp = app.post_json(&format!("{base}/metadata"), &json!({"b": "20", "c": "3"})).await.expect(204);
    assert!(resp.text.is_empty());
    assert_eq!(tags_of(&app.get_group(&id).await), json!({"a": "1", "b": "20", "c": "3"}));

    // PUT replaces everything.
    app.put_json(&format!("{base}/metadata"), &json!({"z": "26"})).await.expect(204);
    let after_put = app.get_group(&id).await;
    assert_eq!(tags_of(&after_put), json!({"z": "26"}));
    assert_eq!(after_put["metadata"], after_put["tags_v2"]);

    // metadata_item GET and DELETE.
    let item = app.get(&format!("{base}/metadata_item?key=z")).await.expect(200).body;
    assert_eq!(item, json!({"key": "z", "value": "26", "read_only": false}));
    app.get(&format!("{base}/metadata_item?key=nope")).await.expect_error(404, "NotFoundError");
    app.delete(&format!("{base}/metadata_item?key=z")).await.expect(204);
    assert_eq!(app.get_group(&id).await["tags_v2"], json!([]));
    app.delete(&format!("{base}/metadata_item?key=z")).await.expect_error(404, "NotFoundError");
    let empty = app.get(&format!("{base}/metadata")).await.expect(200).body;
    assert_eq!(empty, json!({"count": 0, "results": []}));

    // Unknown group: 404 on every metadata endpoint.
    let unknown = format!("{V1}/{}", uuid::Uuid::new_v4());
    app.get(&format!("{unknown}/metadata")).await.expect_error(404, "NotFoundError");
    app.post_json(&format!("{unknown}/metadata"), &json!({"k": "v"})).await.expect_error(404, "NotFoundError");
    app.put_json(&format!("{unknown}/metadata"), &json!({"k": "v"})).await.expect_error(404, "NotFoundError");
    app.get(&format!("{unknown}/metadata_item?key=k")).await.expect_error(404, "NotFoundError");
    app.delete(&format!("{unknown}/metadata_item?key=k")).await.expect_error(404, "NotFoundError");
}

#[tokio::test]
async fn region_names_come_from_the_configuration() {
    let mut config = palisade_api::ApiConfig::default();
    config.regions.insert(76, "Luxembourg 1".to_string());
    let app = spawn_app_with(config).await;
    let resp = app.post_json("/cloud/v2/security_groups/1/76", &json!({"name": "lux"})).await.expect(200);
    let task = app.wait_finished(&single_task(&resp)).await;
    assert_eq!(task["region_id"], 76);
    let id = task["created_resources"]["security_groups"][0].as_str().unwrap().to_string();
    let group = app.get(&format!("/cloud/v1/securitygroups/1/76/{id}")).await.expect(200).body;
    assert_eq!(group["region"], "Luxembourg 1");
    assert_eq!(group["region_id"], 76);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tag_patches_lose_no_update() {
    let app = spawn_app().await;
    let group = app.create_group_and_wait(json!({"name": "busy", "rules": []})).await;
    let id = id_of(&group);
    let mut handles = Vec::new();
    for i in 0..25 {
        let api = app.api.clone();
        let path = format!("{V2}/{id}");
        handles.push(tokio::spawn(async move { api.patch_json(&path, &json!({"tags": {format!("k{i:02}"): format!("v{i}")}})).await }));
    }
    for handle in handles {
        let resp = handle.await.unwrap().expect(200);
        assert_eq!(resp.body, json!({"tasks": []}));
    }
    let after = app.get_group(&id).await;
    let tags = tags_of(&after);
    assert_eq!(tags.as_object().unwrap().len(), 25, "{tags}");
    for i in 0..25 {
        assert_eq!(tags[format!("k{i:02}")], json!(format!("v{i}")));
    }
    assert_eq!(revision(&after), 25);
}

#[tokio::test]
async fn strict_regions_refuse_unconfigured_regions() {
    let mut config = palisade_api::ApiConfig::default();
    config.regions.insert(1, "Luxembourg 1".to_string());
    config.strict_regions = true;
    let app = spawn_app_with(config).await;
    let group = app.create_group_and_wait(json!({"name": "lux"})).await;
    assert_eq!(group["region"], "Luxembourg 1");
    app.get("/cloud/v1/securitygroups/1/2").await.expect_error(404, "NotFoundError");
    app.post_json("/cloud/v2/security_groups/1/2", &json!({"name": "nowhere"})).await.expect_error(404, "NotFoundError");
    assert_eq!(app.list_tasks("").await["count"], 1);
}

#[tokio::test]
async fn body_less_requests_with_a_json_content_type_are_accepted() {
    // The Python SDK sends `Content-Type: application/json` on DELETE and body-less POSTs.
    let app = spawn_app().await;
    let group = app.create_group_and_wait(json!({"name": "sdkstyle"})).await;
    let id = id_of(&group);
    let rule = rule_ids(&group)[0].clone();
    let resp = app.call_raw(reqwest::Method::DELETE, &format!("{V2}/{id}/rules/{rule}"), "").await.expect(200);
    app.wait_finished(&single_task(&resp)).await;
    app.call_raw(reqwest::Method::POST, &format!("{TASKS}/acknowledge_all"), "").await.expect(204);
    app.call_raw(reqwest::Method::DELETE, &format!("{V1}/{id}"), "").await.expect(204);
    app.get(&format!("{V1}/{id}")).await.expect_error(404, "NotFoundError");
}
