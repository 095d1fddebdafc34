//! Tenancy: a client sees and changes only its own groups, rules and tasks; a key limited to
//! some projects cannot use others.

use serde_json::{Value, json};

use crate::helpers::*;

/// Client 1's state as client 1 sees it: its group, its tasks.
async fn client1_view(app: &TestApp, group_id: &str) -> Value {
    json!({"group": app.get_group(group_id).await, "snapshot": app.snapshot().await})
}

#[tokio::test]
async fn another_client_can_neither_see_nor_change_a_clients_resources() {
    let app = spawn_app().await;
    let group = app
        .create_group_and_wait(json!({"name": "private", "tags": {"owner": "one"}, "rules": [
            {"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22},
            {"direction": "egress"},
        ]}))
        .await;
    let gid = id_of(&group);
    let rule = rule_ids(&group)[0].clone();
    let task = app.list_tasks("").await["results"][0]["id"].as_str().unwrap().to_string();
    let before = client1_view(&app, &gid).await;

    let other = app.client_as(2, 2, None);
    let g = format!("{V1}/{gid}");
    let not_found = [
        other.get(&g).await,
        other.patch_json(&format!("{V2}/{gid}"), &json!({"name": "stolen"})).await,
        other.patch_json(&format!("{V2}/{gid}"), &json!({"tags": {"owner": "two"}})).await,
        other.patch_json(&g, &json!({"name": "stolen"})).await,
        other.delete(&g).await,
        other.post_json(&format!("{g}/copy"), &json!({"name": "copied"})).await,
        other.post_empty(&format!("{g}/revert")).await,
        other.post_json(&format!("{g}/rules"), &json!({"direction": "ingress", "protocol": "udp"})).await,
        other.post_json(&format!("{V2}/{gid}/rules"), &json!({"direction": "ingress", "protocol": "udp"})).await,
        other.delete(&format!("{V2}/{gid}/rules/{rule}")).await,
        other.put_json(&format!("{V1_RULES}/{rule}"), &json!({"direction": "ingress"})).await,
        other.delete(&format!("{V1_RULES}/{rule}")).await,
        other.get(&format!("{g}/instances")).await,
        other.get(&format!("{g}/metadata")).await,
        other.post_json(&format!("{g}/metadata"), &json!({"owner": "two"})).await,
        other.put_json(&format!("{g}/metadata"), &json!({"owner": "two"})).await,
        other.get(&format!("{g}/metadata_item?key=owner")).await,
        other.delete(&format!("{g}/metadata_item?key=owner")).await,
        other.get(&format!("{TASKS}/{task}")).await,
        other.post_empty(&format!("{TASKS}/{task}/acknowledge")).await,
    ];
    for resp in &not_found {
        resp.expect_error(404, "NotFoundError");
    }

    // Lists show nothing of client 1.
    assert_eq!(other.list_groups("").await, json!({"count": 0, "results": []}));
    assert_eq!(other.list_groups("name=private").await["count"], 0);
    assert_eq!(other.list_groups("tag_key=owner").await["count"], 0);
    assert_eq!(other.list_tasks("").await, json!({"count": 0, "results": []}));
    assert_eq!(other.list_tasks("project_id=1").await["count"], 0);
    assert_eq!(other.get(&format!("{TASKS}/1/1/active")).await.expect(200).body["count"], 0);

    // Bulk acknowledgements of client 2 do not touch client 1's tasks.
    other.post_empty(&format!("{TASKS}/acknowledge_all")).await.expect(204);
    other.post_json(&format!("{TASKS}/acknowledge"), &json!({"task_ids": [task]})).await.expect(204);

    // Client 2 cannot point a rule of its own group at client 1's group.
    let own = other.create_group_and_wait(json!({"name": "mine", "rules": []})).await;
    other
        .post_json(&format!("{V1}/{}/rules", id_of(&own)), &json!({"direction": "ingress", "remote_group_id": gid}))
        .await
        .expect_error(404, "NotFoundError");
    let failed = other.create_group(json!({"name": "sneaky", "rules": [{"direction": "ingress", "remote_group_id": gid}]})).await;
    other.wait_error(&failed).await;
    // Client 2's own work is visible to client 2 only.
    assert_eq!(other.list_groups("").await["count"], 1);
    assert_eq!(other.list_tasks("").await["count"], 2);
    app.get(&format!("{V1}/{}", id_of(&own))).await.expect_error(404, "NotFoundError");
    app.get(&format!("{TASKS}/{failed}")).await.expect_error(404, "NotFoundError");

    assert_eq!(client1_view(&app, &gid).await, before, "client 1's state is unchanged");
    assert_eq!(app.get_task(&task).await["acknowledged_at"], Value::Null);
}

#[tokio::test]
async fn a_key_limited_to_a_project_gets_403_on_other_projects_on_every_kind_of_path() {
    let app = spawn_app().await;
    // A group of client 1 in project 6, created with the unrestricted key.
    let resp = app.post_json("/cloud/v2/security_groups/6/1", &json!({"name": "project-6"})).await.expect(200);
    let task = app.wait_finished(&single_task(&resp)).await;
    let gid = task["created_resources"]["security_groups"][0].as_str().unwrap().to_string();
    let group = app.get(&format!("/cloud/v1/securitygroups/6/1/{gid}")).await.expect(200).body;
    let rule = rule_ids(&group)[0].clone();

    let limited = app.client_as(1, 3, Some(vec![5]));
    let g = format!("/cloud/v1/securitygroups/6/1/{gid}");
    let forbidden = [
        limited.get("/cloud/v1/securitygroups/6/1").await,
        limited.get(&g).await,
        limited.delete(&g).await,
        limited.patch_json(&format!("/cloud/v2/security_groups/6/1/{gid}"), &json!({"name": "x-renamed"})).await,
        limited.post_json(&format!("{g}/copy"), &json!({"name": "copied"})).await,
        limited.post_empty(&format!("{g}/revert")).await,
        limited.post_json(&format!("/cloud/v2/security_groups/6/1/{gid}/rules"), &json!({"direction": "ingress"})).await,
        limited.delete(&format!("/cloud/v1/securitygrouprules/6/1/{rule}")).await,
        limited.get(&format!("{TASKS}/6/1/active")).await,
    ];
    for resp in &forbidden {
        resp.expect_error(403, "PermissionDenied");
    }
    assert_eq!(app.get(&g).await.expect(200).body, group, "nothing changed");
    // The limited key works in its own project.
    limited.get("/cloud/v1/securitygroups/5/1").await.expect(200);
}
