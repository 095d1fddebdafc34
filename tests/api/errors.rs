//! Authentication, the error body on every failure path, and the system endpoints.

use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

async fn raw(app: &TestApp, builder: reqwest::RequestBuilder) -> Resp {
    app.send(builder).await
}

#[tokio::test]
async fn missing_or_bad_credentials_are_401_json() {
    let app = spawn_app().await;
    let group = app.create_group_and_wait(json!({"name": "secret"})).await;
    let path = format!("{V1}/{}", id_of(&group));

    let resp = raw(&app, app.http.get(app.url(&path))).await;
    let body = resp.expect_error(401, "NotAuthenticated");
    assert_eq!(body["message"], "Authentication credentials were not provided.");

    let (id, _) = app.token.split_once('$').expect("tokens look like <id>$<secret>");
    for header in [
        "APIKey".to_string(),
        "APIKey ".to_string(),
        "APIKey nonsense".to_string(),
        format!("APIKey {id}$wrong-secret"),
        format!("APIKey 999{}", &app.token[id.len()..]),
        format!("Basic {}", app.token),
        format!("APIKey{}", app.token),
        "My API Key".to_string(),
    ] {
        let resp = raw(&app, app.http.get(app.url(&path)).header("Authorization", header.as_str())).await;
        assert_eq!(resp.status.as_u16(), 401, "{header:?} -> {}", resp.text);
        resp.expect_error(401, "NotAuthenticated");
    }
    // Writes are refused too, and store nothing.
    let resp = raw(&app, app.http.post(app.url(V2)).json(&json!({"name": "sneaky"}))).await;
    resp.expect_error(401, "NotAuthenticated");
    let resp = raw(&app, app.http.get(app.url(TASKS))).await;
    resp.expect_error(401, "NotAuthenticated");
    assert_eq!(app.group_count().await, 1);
    assert_eq!(app.list_tasks("").await["count"], 1);
}

#[tokio::test]
async fn the_apikey_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    for scheme in ["APIKey", "apikey", "APIKEY", "ApiKey"] {
        let resp = raw(&app, app.http.get(app.url(V1)).header("Authorization", format!("{scheme} {}", app.token))).await.expect(200);
        assert_eq!(resp.body, json!({"count": 0, "results": []}), "{scheme}");
    }
}

#[tokio::test]
async fn keys_limited_to_projects_get_403_elsewhere() {
    let app = spawn_app().await;
    let limited = app.client_as(1, 1, Some(vec![5]));
    limited.get("/cloud/v1/securitygroups/5/1").await.expect(200);
    let resp = limited.get("/cloud/v1/securitygroups/6/1").await;
    resp.expect_error(403, "PermissionDenied");
    let resp = limited.post_json("/cloud/v2/security_groups/6/1", &json!({"name": "nope"})).await;
    resp.expect_error(403, "PermissionDenied");
    let resp =
        limited.post_json("/cloud/v1/securitygroups/6/1", &json!({"security_group": {"name": "nope", "security_group_rules": []}})).await;
    resp.expect_error(403, "PermissionDenied");
    assert_eq!(app.get("/cloud/v1/securitygroups/6/1").await.expect(200).body["count"], 0, "nothing was created in project 6");
    assert_eq!(app.list_tasks("").await["count"], 0);
    // In its own project it works end to end.
    let resp = limited.post_json("/cloud/v2/security_groups/5/1", &json!({"name": "allowed"})).await.expect(200);
    limited.wait_finished(&single_task(&resp)).await;
    assert_eq!(limited.get("/cloud/v1/securitygroups/5/1").await.expect(200).body["count"], 1);
}

#[tokio::test]
async fn unknown_paths_are_404_json() {
    let app = spawn_app().await;
    for path in ["/nope", "/cloud/v3/securitygroups/1/1", "/cloud/v1/securitygroups/1/1/abc/unknown"] {
        let resp = app.get(path).await;
        resp.expect_error(404, "NotFoundError");
    }
    // Even without credentials, the answer is the JSON error body.
    let resp = raw(&app, app.http.get(app.url("/definitely/not/here"))).await;
    resp.expect_error(404, "NotFoundError");
    // Project and region ids must be non-negative integers.
    app.get("/cloud/v1/securitygroups/abc/1").await.expect_error(404, "NotFoundError");
    app.get("/cloud/v1/securitygroups/1/-1").await.expect_error(404, "NotFoundError");
}

#[tokio::test]
async fn wrong_methods_are_405_json() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::PUT, TASKS.to_string()),
        (Method::DELETE, V2.to_string()),
        (Method::GET, V2.to_string()),
        (Method::PUT, format!("{V1}/{}", uuid::Uuid::new_v4())),
        (Method::GET, format!("{TASKS}/acknowledge_all")),
        (Method::POST, format!("{V1_RULES}/{}", uuid::Uuid::new_v4())),
    ] {
        let resp = app.call(method.clone(), &path, None).await;
        assert_eq!(resp.status.as_u16(), 405, "{method} {path} -> {}", resp.text);
        let body = resp.expect_error(405, "HTTPError");
        assert_eq!(body["message"], "Method Not Allowed");
    }
}

#[tokio::test]
async fn malformed_json_is_400_validation_error() {
    let app = spawn_app().await;
    for body in ["{", "{\"name\": ", "not json", "{\"name\": \"x\",}"] {
        let resp = app.call_raw(Method::POST, V2, body).await;
        resp.expect_invalid("body");
    }
    let resp = app.call_raw(Method::POST, V2, "").await;
    resp.expect_invalid("body");
    assert_eq!(app.list_tasks("").await["count"], 0);
}

#[tokio::test]
async fn health_readiness_and_openapi() {
    let app = spawn_app().await;
    let resp = raw(&app, app.http.get(app.url("/healthz"))).await.expect(200);
    assert_json_content_type(&resp);
    assert_eq!(resp.body, json!({"status": "ok"}));
    let resp = raw(&app, app.http.get(app.url("/readyz"))).await.expect(200);
    assert_eq!(resp.body, json!({"status": "ready", "database": backend()}));
    let resp = raw(&app, app.http.get(app.url("/openapi.json"))).await.expect(200);
    assert_json_content_type(&resp);
    assert!(resp.body["paths"].as_object().is_some_and(|p| !p.is_empty()), "openapi.json has paths");
}

#[tokio::test]
async fn graceful_stop_of_the_in_process_app_finishes() {
    let app = spawn_app().await;
    let task = app.create_group(json!({"name": "last"})).await;
    let api = app.api.clone();
    let url = app.database_url.clone();
    let (result, _dir) = app.stop().await;
    result.expect("the server stops cleanly");
    assert!(api.http.get(api.url("/healthz")).send().await.is_err(), "the listener is closed");
    // The task was finished before the server returned.
    let state = blocking(move || {
        let store = palisade_store::Database::open(&url, "normal").expect("reopening the database");
        palisade_store::Store::read(&store, |tx| {
            let filter = palisade_store::TaskFilter { limit: 10, ..Default::default() };
            tx.list_tasks(1, &filter)
        })
    })
    .expect("reading tasks");
    assert_eq!(state.0, 1);
    assert_eq!(state.1[0].id, task);
    assert!(state.1[0].state.is_terminal(), "accepted work is drained at shutdown");
}

#[tokio::test]
async fn a_revoked_key_is_refused() {
    let config = palisade_api::ApiConfig { key_cache_ttl: std::time::Duration::ZERO, ..Default::default() };
    let app = spawn_app_with(config).await;
    let other = app.client_as(1, 2, None);
    other.get(V1).await.expect(200);
    let key_id: i64 = other.token.split_once('$').unwrap().0.parse().unwrap();
    let store = app.state.store.clone();
    let revoked = blocking(move || palisade_store::Store::write(&*store, |tx| tx.revoke_key(key_id, 1))).expect("revoking");
    assert!(revoked);
    other.get(V1).await.expect_error(401, "NotAuthenticated");
    app.get(V1).await.expect(200);
}
