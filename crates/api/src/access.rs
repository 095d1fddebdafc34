//! Who may call what: the route × role table (docs/security.md) and the middleware that holds
//! every request to it.
//!
//! Three kinds of key exist. A **tenant** key acts for one client (Gcore's tenant), optionally
//! for some of its projects only; a **platform** key is the operator's control plane (ports,
//! quotas, agents, everyone's audit log); an **agent** key is one host's agent. Each route of
//! the router names the roles that may call it in [`ROUTES`]; a route missing from the table
//! is refused to every role, so a new route is closed until someone decides who may call it.
//! Finer checks stay with the handlers: a tenant's projects, an agent's own host.

use std::sync::Arc;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
pub use palisade_store::KeyRole as Role;

use crate::error::ApiError;
use crate::extract::Caller;
use crate::state::AppState;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// No key needed: health, readiness, the API's own documentation and the web console's assets.
    Public,
    /// A key of one of these roles.
    Roles(&'static [Role]),
}

const TENANT: Access = Access::Roles(&[Role::Tenant]);
const PLATFORM: Access = Access::Roles(&[Role::Platform]);
const AGENT: Access = Access::Roles(&[Role::Agent]);
const TENANT_OR_PLATFORM: Access = Access::Roles(&[Role::Tenant, Role::Platform]);

/// Every route of the router: method, path template (as routed), who may call it.
pub const ROUTES: &[(Method, &str, Access)] = &[
    // Gcore's API: the tenant's own groups, rules, tasks and instance bindings.
    (Method::POST, "/cloud/v2/security_groups/{project_id}/{region_id}", TENANT),
    (Method::PATCH, "/cloud/v2/security_groups/{project_id}/{region_id}/{group_id}", TENANT),
    (Method::POST, "/cloud/v2/security_groups/{project_id}/{region_id}/{group_id}/rules", TENANT),
    (Method::DELETE, "/cloud/v2/security_groups/{project_id}/{region_id}/{group_id}/rules/{rule_id}", TENANT),
    (Method::GET, "/cloud/v1/securitygroups/{project_id}/{region_id}", TENANT),
    (Method::POST, "/cloud/v1/securitygroups/{project_id}/{region_id}", TENANT),
    (Method::GET, "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}", TENANT),
    (Method::DELETE, "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}", TENANT),
    (Method::PATCH, "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}", TENANT),
    (Method::POST, "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/copy", TENANT),
    (Method::POST, "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/revert", TENANT),
    (Method::POST, "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/rules", TENANT),
    (Method::GET, "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/instances", TENANT),
    (Method::GET, "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/metadata", TENANT),
    (Method::POST, "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/metadata", TENANT),
    (Method::PUT, "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/metadata", TENANT),
    (Method::GET, "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/metadata_item", TENANT),
    (Method::DELETE, "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/metadata_item", TENANT),
    (Method::GET, "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/analysis", TENANT),
    (Method::PUT, "/cloud/v1/securitygrouprules/{project_id}/{region_id}/{rule_id}", TENANT),
    (Method::DELETE, "/cloud/v1/securitygrouprules/{project_id}/{region_id}/{rule_id}", TENANT),
    (Method::GET, "/cloud/v1/tasks", TENANT),
    (Method::POST, "/cloud/v1/tasks/acknowledge_all", TENANT),
    (Method::POST, "/cloud/v1/tasks/acknowledge", TENANT),
    (Method::GET, "/cloud/v1/tasks/{id}", TENANT),
    (Method::POST, "/cloud/v1/tasks/{id}/acknowledge", TENANT),
    (Method::GET, "/cloud/v1/tasks/{id}/{region_id}/active", TENANT),
    (Method::POST, "/cloud/v1/instances/{project_id}/{region_id}/{instance_id}/addsecuritygroup", TENANT),
    (Method::POST, "/cloud/v1/instances/{project_id}/{region_id}/{instance_id}/delsecuritygroup", TENANT),
    (Method::GET, "/cloud/v1/instances/{project_id}/{region_id}/{instance_id}/securitygroups", TENANT),
    // Palisade's own: a tenant reads its quotas, ports and verdicts; the platform sets quotas and
    // runs the port registry; agents read their host's policy and report what they applied.
    (Method::GET, "/palisade/v1/quotas/{project_id}/{region_id}", TENANT_OR_PLATFORM),
    (Method::PUT, "/palisade/v1/quotas/{project_id}/{region_id}", PLATFORM),
    (Method::GET, "/palisade/v1/ports", TENANT_OR_PLATFORM),
    (Method::POST, "/palisade/v1/ports", PLATFORM),
    (Method::GET, "/palisade/v1/ports/{port_id}", TENANT_OR_PLATFORM),
    (Method::PATCH, "/palisade/v1/ports/{port_id}", PLATFORM),
    (Method::DELETE, "/palisade/v1/ports/{port_id}", PLATFORM),
    (Method::GET, "/palisade/v1/ports/{port_id}/effective-rules", TENANT),
    (Method::POST, "/palisade/v1/verdicts", TENANT),
    (Method::GET, "/palisade/v1/audit", TENANT_OR_PLATFORM),
    (Method::GET, "/palisade/v1/agents", PLATFORM),
    (Method::GET, "/palisade/v1/agents/{host}/policy", AGENT),
    (Method::PUT, "/palisade/v1/agents/{host}/status", AGENT),
    // Enforcement you can see (issue 14): agents report hits and flow records of their host;
    // tenants read them, set flow logs and ask what a change would cut; the platform reads
    // any client's flow records.
    (Method::POST, "/palisade/v1/agents/{host}/rule-stats", AGENT),
    (Method::POST, "/palisade/v1/agents/{host}/flow-logs", AGENT),
    (Method::GET, "/palisade/v1/security_groups/{group_id}/rule-stats", TENANT),
    (Method::GET, "/palisade/v1/ports/{port_id}/flow-log", TENANT),
    (Method::PUT, "/palisade/v1/ports/{port_id}/flow-log", TENANT),
    (Method::GET, "/palisade/v1/security_groups/{group_id}/flow-log", TENANT),
    (Method::PUT, "/palisade/v1/security_groups/{group_id}/flow-log", TENANT),
    (Method::GET, "/palisade/v1/flow-logs", TENANT_OR_PLATFORM),
    (Method::POST, "/palisade/v1/security_groups/{group_id}/impact", TENANT),
    // Operations and documentation.
    (Method::GET, "/healthz", Access::Public),
    (Method::GET, "/readyz", Access::Public),
    (Method::GET, "/openapi.json", Access::Public),
    (Method::GET, "/docs", Access::Public),
    // The web console: HTML, CSS and JavaScript only; it calls the routes above with the user's key.
    (Method::GET, "/console", Access::Public),
    (Method::GET, "/console/{*path}", Access::Public),
];

/// Who may call `method` on the route `template`; `None` for a route nobody decided on.
pub fn access(method: &Method, template: &str) -> Option<Access> {
    // HEAD is a GET without the body.
    let method = if method == Method::HEAD { &Method::GET } else { method };
    ROUTES.iter().find(|(m, path, _)| m == method && *path == template).map(|(_, _, access)| *access)
}

/// Like [`access`], matching the template by its shape (parameter names aside: the OpenAPI
/// document names `{task_id}` what the router calls `{id}`).
pub fn access_by_shape(method: &Method, template: &str) -> Option<Access> {
    fn shape(t: &str) -> Vec<&str> {
        t.split('/').map(|seg| if seg.starts_with('{') { "{}" } else { seg }).collect()
    }
    let wanted = shape(template);
    ROUTES.iter().find(|(m, path, _)| m == method && shape(path) == wanted).map(|(_, _, access)| *access)
}

/// Authenticates the caller of a matched route and holds it to [`ROUTES`]: 401 without a valid
/// key, 403 in the Gcore error body for a role the route does not admit, 429 beyond the key's
/// rate limit (`crate::limits`). The caller goes on in
/// the request's extensions, so handlers do not verify the key again.
pub async fn authorize(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let template = request.extensions().get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or_default();
    let roles = match access(request.method(), template) {
        Some(Access::Public) => return next.run(request).await,
        Some(Access::Roles(roles)) => roles,
        None => &[],
    };
    let (mut parts, body) = request.into_parts();
    let caller = match Caller::from_request_parts(&mut parts, &state).await {
        Ok(caller) => caller,
        Err(e) => return e.into_response(),
    };
    if !roles.contains(&caller.role) {
        let template = parts.extensions.get::<MatchedPath>().map(MatchedPath::as_str).unwrap_or_default();
        let message = format!("A {} key may not call {} {}", caller.role.as_str(), parts.method, template);
        return ApiError::Forbidden(message).into_response();
    }
    if let Err(limited) = state.rate_limits.check(caller.key_id, &parts.method) {
        return limited.into_response();
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_is_decided_as_get_and_unknown_routes_by_nobody() {
        assert_eq!(access(&Method::HEAD, "/healthz"), Some(Access::Public));
        assert_eq!(access(&Method::GET, "/palisade/v1/nothing"), None);
        assert_eq!(access(&Method::PUT, "/palisade/v1/quotas/{project_id}/{region_id}"), Some(PLATFORM));
    }
}
