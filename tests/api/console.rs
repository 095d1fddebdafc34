//! The web console as the router serves it: public files, each answer with the console's strict
//! Content-Security-Policy, nothing loaded from another origin, the API's own answers untouched.

use crate::helpers::*;

#[tokio::test]
async fn the_console_is_served_with_its_policy_and_without_a_key() {
    let app = spawn_app().await;
    let mut paths = vec!["/console".to_string()];
    paths.extend(palisade_console::ASSETS.iter().map(|a| format!("/console/{}", a.path)));
    for path in &paths {
        let response = app.api.http.get(app.url(path)).send().await.expect("GET a console file");
        assert_eq!(response.status().as_u16(), 200, "{path}");
        let headers = response.headers();
        assert_eq!(headers["content-security-policy"], palisade_console::CONTENT_SECURITY_POLICY, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert!(headers.contains_key("x-request-id"), "{path} went through the API's middleware");
        let body = response.text().await.unwrap().to_lowercase();
        let body = body.replace("xmlns=\"http://www.w3.org/2000/svg\"", "");
        assert!(!body.contains("http://") && !body.contains("https://"), "{path} refers to another origin");
    }
    let csp = palisade_console::CONTENT_SECURITY_POLICY;
    for directive in ["default-src 'self'", "script-src 'self'", "frame-ancestors 'none'", "object-src 'none'"] {
        assert!(csp.contains(directive), "{directive}");
    }
    assert!(!csp.contains("unsafe-") && !csp.contains("http"), "{csp}");

    // An unknown file is a 404 with the policy too; the API's answers do not get the console's policy.
    let missing = app.api.http.get(app.url("/console/nothing.js")).send().await.unwrap();
    assert_eq!(missing.status().as_u16(), 404);
    assert!(missing.headers().contains_key("content-security-policy"));
    let api = app.api.http.get(app.url("/cloud/v1/tasks")).send().await.unwrap();
    assert_eq!(api.status().as_u16(), 401);
    // Only GET (and HEAD) is routed.
    let post = app.api.http.post(app.url("/console")).send().await.unwrap();
    assert_eq!(post.status().as_u16(), 405);
}
