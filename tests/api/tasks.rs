//! The tasks API: get, list with every filter, acknowledge one / all / the deprecated bulk form,
//! the active list, and the task body's fields and formats (CONTRACT.md §3.14, §4.7, §7).

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::groups::url_encode;
use crate::helpers::*;

const TASK_KEYS: [&str; 21] = [
    "id",
    "state",
    "task_type",
    "user_id",
    "client_id",
    "user_client_id",
    "project_id",
    "region_id",
    "request_id",
    "error",
    "created_on",
    "updated_on",
    "finished_on",
    "acknowledged_at",
    "acknowledged_by",
    "data",
    "created_resources",
    "detailed_state",
    "job_id",
    "lifecycle_policy_id",
    "schedule_id",
];

fn ids(page: &Value) -> Vec<String> {
    page["results"].as_array().unwrap_or_else(|| panic!("no results: {page}")).iter().map(id_of).collect()
}

/// Creates a group in `project`/`region` and returns the (finished) task id.
async fn task_in(app: &Api, project: i64, region: i64, name: &str) -> String {
    let resp = app
        .post_json(&format!("/cloud/v2/security_groups/{project}/{region}"), &json!({"name": format!("task-{name}"), "rules": []}))
        .await
        .expect(200);
    let id = single_task(&resp);
    app.wait_finished(&id).await;
    id
}

/// A task that ends in ERROR (a semantically invalid rule).
async fn failing_task(app: &Api) -> String {
    let id = app.create_group(json!({"name": "failing", "rules": [{"direction": "ingress", "port_range_min": 1}]})).await;
    app.wait_error(&id).await;
    id
}

#[tokio::test]
async fn a_task_carries_every_field_in_the_contract_formats() {
    let app = spawn_app().await;
    let request = app
        .request(Method::POST, V2)
        .header("X-Request-Id", "req-0123456789abcdef")
        .json(&json!({"name": "traced", "description": "d", "rules": [{"direction": "egress"}], "tags": {"k": "v"}}));
    let resp = app.send(request).await.expect(200);
    assert_eq!(resp.header("x-request-id"), Some("req-0123456789abcdef"), "the request id is echoed");
    assert_json_content_type(&resp);
    let task_id = single_task(&resp);
    let task = app.wait_finished(&task_id).await;

    let obj = task.as_object().unwrap();
    for key in TASK_KEYS {
        assert!(obj.contains_key(key), "task lacks {key}: {task}");
    }
    assert_eq!(task["id"], json!(task_id));
    assert_eq!(task["state"], "FINISHED");
    assert_eq!(task["task_type"], "create_security_group");
    assert_eq!(task["user_id"], 1);
    assert_eq!(task["client_id"], 1);
    assert_eq!(task["user_client_id"], 1);
    assert_eq!(task["project_id"], 1);
    assert_eq!(task["region_id"], 1);
    assert_eq!(task["request_id"], "req-0123456789abcdef");
    assert_eq!(task["error"], Value::Null, "error stays null unless the task failed (GLC)");
    assert_naive_time(&task["created_on"], "created_on");
    assert_naive_time(&task["updated_on"], "updated_on");
    assert_naive_time(&task["finished_on"], "finished_on");
    assert!(str_of(&task, "finished_on") >= str_of(&task, "created_on"));
    assert_recent(&task["created_on"], "created_on");
    assert_recent(&task["finished_on"], "finished_on");
    assert_eq!(task["acknowledged_at"], Value::Null);
    assert_eq!(task["acknowledged_by"], Value::Null);
    for key in ["detailed_state", "job_id", "lifecycle_policy_id", "schedule_id"] {
        assert_eq!(task[key], Value::Null, "{key}");
    }
    // data echoes the request, plus the new group's id.
    let group_id = task["created_resources"]["security_groups"][0].clone();
    assert_eq!(task["data"]["name"], "traced");
    assert_eq!(task["data"]["description"], "d");
    assert_eq!(task["data"]["rules"], json!([{"direction": "egress"}]));
    assert_eq!(task["data"]["security_group_id"], group_id);
    // The same task through the list.
    let listed = app.list_tasks("").await;
    assert_eq!(listed["count"], 1);
    assert_eq!(listed["results"][0], task);

    // Without an x-request-id header the server makes one and still records it.
    let resp = app.post_json(V2, &json!({"name": "untraced"})).await.expect(200);
    let generated = resp.header("x-request-id").expect("x-request-id").to_string();
    assert!(!generated.is_empty());
    let task = app.wait_finished(&single_task(&resp)).await;
    assert_eq!(task["request_id"], json!(generated));
}

#[tokio::test]
async fn an_error_task_has_an_error_message_and_no_created_resources() {
    let app = spawn_app().await;
    let id = failing_task(&app).await;
    let task = app.get_task(&id).await;
    assert_eq!(task["state"], "ERROR");
    assert!(task["error"].as_str().is_some_and(|e| e.contains("rules.0.port_range_min")), "{task}");
    assert_eq!(task["created_resources"], Value::Null);
    assert_naive_time(&task["finished_on"], "finished_on");
}

#[tokio::test]
async fn unknown_tasks_are_404() {
    let app = spawn_app().await;
    for id in [uuid::Uuid::new_v4().to_string(), "task_id".to_string()] {
        app.get(&format!("{TASKS}/{id}")).await.expect_error(404, "NotFoundError");
        app.post_empty(&format!("{TASKS}/{id}/acknowledge")).await.expect_error(404, "NotFoundError");
    }
}

#[tokio::test]
async fn list_orders_pages_and_counts() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for i in 0..5 {
        created.push(task_in(&app, 1, 1, &format!("t{i}")).await);
    }
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();

    let all = app.list_tasks("").await;
    assert_eq!(all["count"], 5);
    assert_eq!(ids(&all), newest_first, "default order is newest first");
    assert_eq!(ids(&app.list_tasks("order_by=desc").await), newest_first);
    assert_eq!(ids(&app.list_tasks("order_by=asc").await), created);
    assert_eq!(ids(&app.list_tasks("sorting=asc").await), created, "sorting is the deprecated alias");

    let page = app.list_tasks("order_by=asc&limit=2&offset=1").await;
    assert_eq!(page["count"], 5);
    assert_eq!(ids(&page), created[1..3].to_vec());
    let page = app.list_tasks("order_by=asc&limit=2&offset=4").await;
    assert_eq!(ids(&page), created[4..].to_vec());
    let page = app.list_tasks("offset=5").await;
    assert_eq!(page["count"], 5);
    assert_eq!(page["results"], json!([]));
    let page = app.list_tasks("limit=1").await;
    assert_eq!(ids(&page), vec![created[4].clone()]);
}

#[tokio::test]
async fn list_filters_by_state_type_project_region_and_acknowledgement() {
    let app = spawn_app().await;
    let p1 = task_in(&app, 1, 1, "p1").await;
    let p2 = task_in(&app, 2, 1, "p2").await;
    let p3 = task_in(&app, 3, 5, "p3").await;
    let failed = failing_task(&app).await;
    let group = app.create_group_and_wait(json!({"name": "forrules", "rules": []})).await;
    let rule_task = app.create_rule_v2(str_of(&group, "id"), json!({"direction": "egress"})).await;
    app.wait_finished(&rule_task).await;
    let group_task = app.list_tasks("order_by=asc").await["results"][4]["id"].as_str().unwrap().to_string();

    let set = |page: Value| {
        let mut ids = ids(&page);
        ids.sort();
        assert_eq!(page["count"], json!(ids.len()), "count matches the filtered results: {page}");
        ids
    };
    let sorted_ids = |ids: &[&String]| {
        let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };

    assert_eq!(set(app.list_tasks("state=ERROR").await), sorted_ids(&[&failed]));
    assert_eq!(set(app.list_tasks("state=FINISHED").await), sorted_ids(&[&p1, &p2, &p3, &group_task, &rule_task]));
    assert_eq!(set(app.list_tasks("state=ERROR&state=FINISHED&limit=100").await).len(), 6);
    assert_eq!(set(app.list_tasks("state=NEW&state=RUNNING").await), Vec::<String>::new());
    assert_eq!(set(app.list_tasks("task_type=create_security_group_rule").await), sorted_ids(&[&rule_task]));
    assert_eq!(set(app.list_tasks("task_type=task_type").await), Vec::<String>::new(), "task_type is not validated");
    assert_eq!(set(app.list_tasks("project_id=2").await), sorted_ids(&[&p2]));
    assert_eq!(set(app.list_tasks("project_id=2&project_id=3").await), sorted_ids(&[&p2, &p3]));
    assert_eq!(set(app.list_tasks("region_id=5").await), sorted_ids(&[&p3]));
    assert_eq!(set(app.list_tasks("project_id=1&region_id=1").await), sorted_ids(&[&p1, &failed, &group_task, &rule_task]));
    assert_eq!(set(app.list_tasks("project_id=9").await), Vec::<String>::new());

    assert_eq!(set(app.list_tasks("is_acknowledged=true").await), Vec::<String>::new());
    assert_eq!(set(app.list_tasks("is_acknowledged=false").await).len(), 6);
    app.post_empty(&format!("{TASKS}/{p2}/acknowledge")).await.expect(200);
    assert_eq!(set(app.list_tasks("is_acknowledged=true").await), sorted_ids(&[&p2]));
    assert_eq!(set(app.list_tasks("is_acknowledged=false").await).len(), 5);
    assert_eq!(set(app.list_tasks("is_acknowledged=false&project_id=2").await), Vec::<String>::new());
}

#[tokio::test]
async fn list_filters_by_creation_time() {
    let app = spawn_app().await;
    let a = task_in(&app, 1, 1, "early-a").await;
    let b = task_in(&app, 1, 1, "early-b").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let c = task_in(&app, 1, 1, "late-c").await;
    let b_on = str_of(&app.get_task(&b).await, "created_on").to_string();
    let c_on = str_of(&app.get_task(&c).await, "created_on").to_string();

    let q = |key: &str, value: &str| format!("order_by=asc&{key}={}", url_encode(value));
    assert_eq!(ids(&app.list_tasks(&q("from_timestamp", "2019-12-27T18:11:19.117000+00:00")).await), vec![a.clone(), b.clone(), c.clone()]);
    assert_eq!(ids(&app.list_tasks(&q("from_timestamp", "2999-01-01T00:00:00Z")).await), Vec::<String>::new());
    assert_eq!(ids(&app.list_tasks(&q("to_timestamp", "2020-01-01T00:00:00")).await), Vec::<String>::new());
    assert_eq!(ids(&app.list_tasks(&q("to_timestamp", "2999-01-01")).await), vec![a.clone(), b.clone(), c.clone()]);
    // created_on >= from: C's own second includes C but not the tasks 1.1 s older.
    assert_eq!(ids(&app.list_tasks(&q("from_timestamp", &c_on)).await), vec![c.clone()]);
    // created_on <= to: the end of B's second includes A and B, not C.
    let to = format!("{b_on}.999");
    assert_eq!(ids(&app.list_tasks(&q("to_timestamp", &to)).await), vec![a.clone(), b.clone()]);
    let to_zoned = format!("{b_on}.999+00:00");
    let both = app.list_tasks(&format!("order_by=asc&from_timestamp=2020-01-01&to_timestamp={}", url_encode(&to_zoned))).await;
    assert_eq!(both["count"], 2);
    assert_eq!(ids(&both), vec![a, b]);
}

#[tokio::test]
async fn acknowledge_one_sets_the_time_and_user_once() {
    let app = spawn_app().await;
    let task_id = task_in(&app, 1, 1, "ack").await;
    let user7 = app.client_as(1, 7, None);
    let resp = user7.post_empty(&format!("{TASKS}/{task_id}/acknowledge")).await.expect(200);
    assert_json_content_type(&resp);
    let acked = resp.body;
    assert_eq!(acked["id"], json!(task_id));
    assert_eq!(acked["acknowledged_by"], 7, "acknowledged_by is the caller's user id");
    assert_eq!(acked["user_id"], 1, "the task still belongs to its creator");
    assert_naive_time(&acked["acknowledged_at"], "acknowledged_at");
    assert_eq!(app.get_task(&task_id).await, acked, "stored as returned");

    // Acknowledging again keeps the first acknowledgement.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = app.post_empty(&format!("{TASKS}/{task_id}/acknowledge")).await.expect(200).body;
    assert_eq!(again, acked);
}

#[tokio::test]
async fn acknowledge_all_acknowledges_the_matching_tasks() {
    let app = spawn_app().await;
    let p1 = task_in(&app, 1, 1, "a1").await;
    let p2r1 = task_in(&app, 2, 1, "a2").await;
    let p2r2 = task_in(&app, 2, 2, "a3").await;

    let resp = app.post_empty(&format!("{TASKS}/acknowledge_all?project_id=2&region_id=2")).await.expect(204);
    assert!(resp.text.is_empty());
    let acked = |t: &Value| !t["acknowledged_at"].is_null();
    assert!(acked(&app.get_task(&p2r2).await));
    assert!(!acked(&app.get_task(&p2r1).await));
    assert!(!acked(&app.get_task(&p1).await));

    app.post_empty(&format!("{TASKS}/acknowledge_all?project_id=2")).await.expect(204);
    assert!(acked(&app.get_task(&p2r1).await));
    assert!(!acked(&app.get_task(&p1).await));

    // No body, no content type, no filters: everything (Accept: */* as the SDK sends it).
    let request = app.request(Method::POST, &format!("{TASKS}/acknowledge_all")).header("Accept", "*/*");
    app.send(request).await.expect(204);
    let p1_task = app.get_task(&p1).await;
    assert!(acked(&p1_task));
    assert_eq!(p1_task["acknowledged_by"], 1);
    assert_eq!(app.list_tasks("is_acknowledged=false").await["count"], 0);
}

#[tokio::test]
async fn deprecated_bulk_acknowledge_takes_task_ids_or_null() {
    let app = spawn_app().await;
    let a = task_in(&app, 1, 1, "b1").await;
    let b = task_in(&app, 1, 1, "b2").await;
    let c = task_in(&app, 4, 1, "b3").await;
    let acked = |t: Value| !t["acknowledged_at"].is_null();

    app.post_json(&format!("{TASKS}/acknowledge"), &json!({"task_ids": [a]})).await.expect(204);
    assert!(acked(app.get_task(&a).await));
    assert!(!acked(app.get_task(&b).await));
    assert!(!acked(app.get_task(&c).await));

    app.post_json(&format!("{TASKS}/acknowledge?project_id=4"), &json!({"task_ids": null})).await.expect(204);
    assert!(acked(app.get_task(&c).await));
    assert!(!acked(app.get_task(&b).await));

    app.post_empty(&format!("{TASKS}/acknowledge")).await.expect(204);
    assert!(acked(app.get_task(&b).await));
}

#[tokio::test]
async fn active_tasks_list_is_empty_once_everything_finished() {
    let app = spawn_app().await;
    task_in(&app, 1, 1, "done").await;
    let resp = app.get(&format!("{TASKS}/1/1/active")).await.expect(200);
    assert_json_content_type(&resp);
    assert_eq!(resp.body, json!({"count": 0, "results": []}));
    app.get(&format!("{TASKS}/1/1/active?limit=0")).await.expect_invalid("limit");
}
