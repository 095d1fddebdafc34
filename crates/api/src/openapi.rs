//! The service's OpenAPI 3.1 document, derived from the code: each handler carries its
//! `#[utoipa::path]`, the router in `lib.rs` is a utoipa-axum `OpenApiRouter`, and the bodies are
//! the handlers' `*Out` types or the documentation types of `crate::schema`. What is the same for
//! many operations is added here by [`Modify`]s after the routes are collected: who may call an
//! operation (from `access::ROUTES`, the table the server enforces), the errors every keyed or
//! body-taking route can answer, the `x-request-id` header, and the contract's path parameter
//! names where axum needs another (`{id}` for `{task_id}`, `{*path}`).

use std::collections::BTreeMap;
use std::sync::Arc;

use palisade_core::quota;
use serde_json::{Value, json};
use utoipa::openapi::example::ExampleBuilder;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{ContentBuilder, LicenseBuilder, OpenApi as Document, Ref, RefOr};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::access::{Access, access_by_shape};
use crate::state::AppState;

const INFO_DESCRIPTION: &str = "Palisade serves the Gcore Cloud security-groups API, so that the Gcore SDKs (Python `gcore`, Go `gcore-go`, `gcorelabscloud-go`) and both Gcore Terraform providers work against it unchanged.\n\n\
**Authentication.** Every `/cloud` endpoint requires `Authorization: APIKey <token>` (the scheme is case-insensitive; the token is `<key id>$<secret>` as printed by `palisade keys create`). A missing or unknown token answers 401. Keys have roles (docs/security.md): a **tenant** key uses the Gcore API for its own client (and only its projects, if it is limited: 403 on another project's paths, 404 for another project's objects) and reads its quotas, ports and verdicts; a **platform** key runs the port registry, sets quotas and lists agents; an **agent** key reads and reports for its own host only. Each operation's `x-palisade-roles` lists the roles that may call it; any other role answers 403.\n\n\
**Asynchronous writes.** The v2 writes answer with a `TaskIDList`; poll `GET /cloud/v1/tasks/{task_id}` until the task is `FINISHED` (its `created_resources` names what was created) or `ERROR` (its `error` says why). The v1 endpoints are synchronous.\n\n\
**Errors.** Every error has the body `Error`: `{\"exception_class\", \"message\", \"request_id\", \"invalid_fields\"?, \"info\"?}`. 400 validation (`invalid_fields` maps each offending field to its reasons), 401 authentication, 403 permission, 404 unknown resource, path or id (a malformed id in a path is a 404 too), 405 a method a path does not serve (on every path), 409 conflict: duplicate rule or quota exceeded (with `x-should-retry: false`), 413 a body over `max_body_bytes` (default 1 MiB; on every path, refused unread), 500 internal failure, 503 database unavailable (retryable).\n\n\
**Validation.** The Gcore paths validate bodies exactly as Gcore's schema does: enums in their exact spelling (`tcp`, `IPv4`, `ingress`; `any` is accepted for all protocols), `null` only where a schema below allows it, every string and list within its limits (names by their pattern, descriptions up to 255 characters, tag keys and values up to 255, at most 250 rules, 500 `changed_rules`). A body that is the JSON `null` is a 400; an empty body is no fields.\n\n\
**Conventions.** Unknown request fields are ignored, and never stored (a task's `data` echoes only the known fields of its request). Every response carries `x-request-id` (the id of the request, also in error bodies and task rows; a valid incoming `x-request-id` is reused). Group and rule times are `YYYY-MM-DDTHH:MM:SS+0000`; task times are naive UTC `YYYY-MM-DDTHH:MM:SS`. Repeated query parameters repeat the key (`tag_key=a&tag_key=b`).";

/// The parts of the document no handler owns: tags (in display order), the global security
/// requirement and the schemas no handler registers.
#[derive(OpenApi)]
#[openapi(
    info(title = "Palisade"),
    servers((url = "/", description = "This server")),
    security(("APIKey" = [])),
    // Schemas that only parameters or `schema_with` fields name (utoipa registers the others).
    components(schemas(crate::schema::ErrorBody, crate::schema::ChangedRule, crate::schema::SortOrder, crate::schema::TagKey)),
    tags(
        (name = "Security groups", description = "Security groups of a project and region. The v2 writes are asynchronous: they answer with a `TaskIDList` and the change is applied when the task runs. The v1 endpoints are synchronous."),
        (name = "Security group rules", description = "Rules of a security group. There is no endpoint that reads a single rule: read the group and find the rule in `security_group_rules`."),
        (name = "Security group metadata", description = "The legacy (deprecated) view of a group's tags as `metadata`, used by gcorelabscloud-go and the old Terraform provider."),
        (name = "Tasks", description = "The tasks of the caller's client. Clients poll `GET /cloud/v1/tasks/{task_id}` until the state is `FINISHED` or `ERROR`."),
        (name = "Quotas", description = "Palisade's own extension: per-project (and region) limits on the number of security groups and rules. A change that would grow a count past its limit is refused with 409 `QuotaLimitExceed` (a v2 change ends its task in `ERROR`); a lowered limit never blocks deletes."),
        (name = "Instances", description = "Gcore's instance-side endpoints: bind and unbind security groups by name on an instance's ports, and list the groups of an instance. Palisade knows an instance through its ports (`/palisade/v1/ports`): an instance without ports is a 404."),
        (name = "Ports", description = "Palisade's own extension: the port registry the platform fills. A port is an instance's interface on a host (its device, MAC and fixed addresses) with the security groups bound to it; the host's agent enforces them. Every change grows the policy revision."),
        (name = "Agents", description = "Palisade's own extension for the host agents (`palisade agent`): the policy of a host's ports, long-polled on the host's own policy revision (a change grows the revisions of exactly the hosts whose policy it changes, so an agent wakes only for its host), and the revision each agent reports it applied. Any write accepts `?wait_for_agents=SECONDS` (0..60): the answer comes once the write (and its tasks) are done and the agent of every host the change reached has applied the revision the change gave its host, or the time is up; headers `x-agents-applied` and `x-agents-pending` (host names, comma-separated; a tenant hears only of hosts holding its ports) say which, and for the platform `x-policy-revision` the highest of those revisions."),
        (name = "Verdicts and analysis", description = "Palisade's own extension: would a flow be allowed, and which rule decides; the merged rules of a port; and an analysis of a group's rules. Answers come from the same compiled rules the host agents enforce with nftables."),
        (name = "Flow logs", description = "Palisade's own extension: per-flow records of what a port's rules accepted and its default policy dropped, logged by the host agents for the ports and groups whose flow log is on (Neutron's `log` resource, fields of an AWS flow log). Records are kept per client up to a cap and for `flow_log_retention_hours`."),
        (name = "Audit log", description = "Palisade's own extension: every change (v1 writes, v2 tasks when they end, ports, quotas, bindings, tags, acknowledgements, API keys made with the CLI) leaves one event, written in the change's own transaction. Events are kept for `--audit-retention-days` (default 90). See docs/operations.md."),
        (name = "Service", description = "Health, readiness, this document and the web console's files. No authentication. (Prometheus metrics are served on a separate listener, `serve --metrics-listen`, not on the API port.)"),
    )
)]
pub struct ApiDoc;

/// The document of every route of [`crate::api_routes`], with the [`Modify`]s of this module.
pub fn document() -> Value {
    let mut doc = crate::api_routes().into_openapi();
    let modifiers: [&dyn Modify; 4] = [&ContractPathNames, &Contract, &CommonResponses, &Roles];
    for modifier in modifiers {
        modifier.modify(&mut doc);
    }
    serde_json::to_value(&doc).expect("the OpenAPI document serializes")
}

/// The router and the document start from [`ApiDoc`].
pub fn router() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
}

// ---------------------------------------------------------------------------------------------
// Error responses
// ---------------------------------------------------------------------------------------------

/// Handlers name the errors particular to them with these (`responses(..., NotFound)`): each is
/// a `$ref` to the component response of the same name.
macro_rules! error_refs {
    ($($name:ident = $status:literal,)*) => {$(
        pub struct $name;
        impl utoipa::IntoResponses for $name {
            fn responses() -> BTreeMap<String, RefOr<Response>> {
                BTreeMap::from([($status.to_string(), Ref::from_response_name(stringify!($name)).into())])
            }
        }
    )*};
}

error_refs! {
    ValidationError = 400,
    NotFound = 404,
    Conflict = 409,
    InternalServerError = 500,
    GatewayTimeout = 504,
}

/// The component error responses: (name, description, `exception_class`, example message).
const ERRORS: &[(&str, &str, &str, &str)] = &[
    (
        "ValidationError",
        "Malformed JSON, a body or query that does not match its schema (`invalid_fields` names each field), or a rule the group cannot hold (v1).",
        "ValidationError",
        "Validation Error: {'rules.0.protocol': ['Input should be one of: any, ah, dccp, ...']}",
    ),
    (
        "Unauthenticated",
        "No `Authorization` header, another scheme than `APIKey`, or an unknown or revoked token.",
        "NotAuthenticated",
        "Authentication credentials were not provided.",
    ),
    (
        "Forbidden",
        "The API key may not use this project, or the tag is read-only.",
        "PermissionDenied",
        "This API key is not allowed to access project 7",
    ),
    (
        "NotFound",
        "The project, region, group, rule, task or tag does not exist or is not the caller's (a malformed id in the path, too). An unknown `remote_group_id` in a v1 rule is a 404 with `invalid_fields`.",
        "NotFoundError",
        "Security group 3addc7a1-e926-46da-b5a2-eb4b2f935230 could not be found",
    ),
    (
        "MethodNotAllowed",
        "The path exists but does not serve this method. Every path answers so for the methods it does not list.",
        "HTTPError",
        "Method Not Allowed",
    ),
    (
        "Conflict",
        "Conflict: a rule identical to an existing rule of the group (`SecurityGroupRuleExists`), or a change that would grow the groups or rules of the project past a quota (`QuotaLimitExceed`). Never retried: `x-should-retry: false`.",
        "SecurityGroupRuleExists",
        "",
    ),
    (
        "PayloadTooLarge",
        "The body is larger than `max_body_bytes` (default 1 MiB, `--max-body-bytes`). On every route: a `Content-Length` over the limit is refused before the body is read; a chunked body is cut at the limit.",
        "RequestEntityTooLarge",
        "The request body is larger than the limit of 1048576 bytes (max_body_bytes)",
    ),
    (
        "TooManyRequests",
        "A per-key rate limit (`--rate-limit-reads`, `--rate-limit-writes`) or the client's unfinished-task limit (`max_tasks_per_client`): retry after `Retry-After` seconds (the official clients do).",
        "TooManyRequests",
        "Too many writes with this API key; retry in 412 ms",
    ),
    (
        "GatewayTimeout",
        "Heavy work (a verdict batch, a large list page, effective rules, analysis, a host policy) did not finish within the request deadline (`--request-deadline-ms`, default 5000); it was stopped.",
        "GatewayTimeout",
        "The request did not finish within 5000 ms",
    ),
    (
        "RequestTimeout",
        "The request's body did not arrive within the body timeout (`--body-timeout`).",
        "RequestTimeout",
        "The request body did not arrive within 30 seconds",
    ),
    ("InternalServerError", "An internal failure; the details are logged, not sent.", "InternalServerError", "Internal server error"),
    (
        "ServiceUnavailable",
        "The database is unreachable; retrying later may succeed.",
        "ServiceUnavailable",
        "The service is temporarily unavailable",
    ),
];

const EXAMPLE_REQUEST_ID: &str = "0b6f4a3e9d7c4c3f9a1e2d5b7c8a9f01";

fn error_body() -> RefOr<utoipa::openapi::schema::Schema> {
    Ref::from_schema_name("Error").into()
}

/// The two kinds of 409, each with a body as `ApiError` renders it.
fn conflict_examples() -> ContentBuilder {
    let rule = "253c1ad7-8061-44b9-9f33-5616ad8ba5b6";
    let duplicate = format!("Security group rule already exists. Rule id is {rule}");
    let exceeded = format!("Quota exceeded: {} would be 11 but the limit is 10", quota::GROUPS);
    let example = |summary: &str, value: Value| ExampleBuilder::new().summary(summary).value(Some(value)).build();
    ContentBuilder::new().schema(Some(error_body())).examples_from_iter([
        (
            "SecurityGroupRuleExists",
            example("Duplicate rule", json!({"exception_class": "SecurityGroupRuleExists", "message": duplicate, "request_id": EXAMPLE_REQUEST_ID, "invalid_fields": {"rule": [duplicate]}, "info": {"existing_rule_id": rule}})),
        ),
        (
            "QuotaLimitExceed",
            example("Quota exceeded", json!({"exception_class": "QuotaLimitExceed", "message": exceeded, "request_id": EXAMPLE_REQUEST_ID, "invalid_fields": {quota::GROUPS: [exceeded]}, "info": {"quota": quota::GROUPS, "limit": 10, "requested": 11}})),
        ),
    ])
}

/// The security scheme, the shared headers and the error responses.
struct Contract;

impl Modify for Contract {
    fn modify(&self, doc: &mut Document) {
        doc.info.description = Some(INFO_DESCRIPTION.into());
        doc.info.version = env!("CARGO_PKG_VERSION").into();
        doc.info.license = Some(LicenseBuilder::new().name("Apache-2.0").identifier(Some("Apache-2.0")).build());
        let components = doc.components.get_or_insert_with(Default::default);
        components.security_schemes.insert(
            "APIKey".into(),
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`Authorization: APIKey <token>`: the word `APIKey` (any case), one space, then the token `<key id>$<secret>`.",
            )))
            .into(),
        );
        let string = || ObjectBuilder::new().schema_type(Type::String);
        components.headers.insert(
            "XRequestId".into(),
            HeaderBuilder::new()
                .schema(Some(string()))
                .description(Some("The id of this request: the incoming `x-request-id` when it is 1 to 64 letters, digits or `-`, otherwise a new one (32 hex digits)."))
                .build()
                .into(),
        );
        components.headers.insert(
            "XShouldRetry".into(),
            HeaderBuilder::new()
                .schema(Some(string().enum_values(Some(["false"]))))
                .description(Some(
                    "`false`: retrying the same request cannot succeed, so clients that honour the header (the Gcore SDKs) do not retry.",
                ))
                .build()
                .into(),
        );
        for &(name, description, class, message) in ERRORS {
            let example = json!({"exception_class": class, "message": message, "request_id": EXAMPLE_REQUEST_ID});
            let content = match name {
                "Conflict" => conflict_examples(),
                _ => ContentBuilder::new().schema(Some(error_body())).example(Some(example)),
            };
            let mut response = ResponseBuilder::new().description(description).content("application/json", content.build());
            match name {
                "Conflict" => response = response.header_ref("x-should-retry", Ref::new("#/components/headers/XShouldRetry")),
                "TooManyRequests" => {
                    let seconds = ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1));
                    response = response.header(
                        "Retry-After",
                        HeaderBuilder::new().schema(Some(seconds)).description(Some("Seconds to wait before retrying.")).build(),
                    );
                }
                _ => {}
            }
            components.responses.insert(name.into(), response.build().into());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Per-operation rules
// ---------------------------------------------------------------------------------------------

fn operations_mut(doc: &mut Document) -> impl Iterator<Item = (&String, HttpMethod, &mut Operation)> {
    doc.paths.paths.iter_mut().flat_map(|(path, item)| {
        [
            (HttpMethod::Get, &mut item.get),
            (HttpMethod::Put, &mut item.put),
            (HttpMethod::Post, &mut item.post),
            (HttpMethod::Patch, &mut item.patch),
            (HttpMethod::Delete, &mut item.delete),
        ]
        .into_iter()
        .filter_map(move |(method, op)| op.as_mut().map(|op| (path, method, op)))
    })
}

fn http_method(method: &HttpMethod) -> axum::http::Method {
    match method {
        HttpMethod::Get => axum::http::Method::GET,
        HttpMethod::Put => axum::http::Method::PUT,
        HttpMethod::Post => axum::http::Method::POST,
        HttpMethod::Patch => axum::http::Method::PATCH,
        HttpMethod::Delete => axum::http::Method::DELETE,
        HttpMethod::Head => axum::http::Method::HEAD,
        HttpMethod::Options => axum::http::Method::OPTIONS,
        HttpMethod::Trace => axum::http::Method::TRACE,
    }
}

fn add_error(op: &mut Operation, status: &str, name: &str) {
    op.responses.responses.entry(status.into()).or_insert_with(|| Ref::from_response_name(name).into());
}

/// Axum needs one parameter name per path segment (`/cloud/v1/tasks/{id}` beside
/// `/cloud/v1/tasks/{id}/{region_id}/active`) and `{*path}` for a wildcard; the document names
/// each segment as the operation's path parameters do (`{task_id}`, `{project_id}`, `{path}`).
struct ContractPathNames;

impl Modify for ContractPathNames {
    fn modify(&self, doc: &mut Document) {
        let paths = std::mem::take(&mut doc.paths.paths);
        for (routed, item) in paths {
            let op = [&item.get, &item.put, &item.post, &item.patch, &item.delete].into_iter().flatten().next();
            let mut names = op.and_then(|op| op.parameters.as_ref()).into_iter().flatten().filter_map(|p| match p {
                RefOr::T(p) if p.parameter_in == utoipa::openapi::path::ParameterIn::Path => Some(p.name.clone()),
                _ => None,
            });
            let documented: Vec<String> = routed
                .split('/')
                .map(|segment| if segment.starts_with('{') { format!("{{{}}}", names.next().unwrap_or_default()) } else { segment.into() })
                .collect();
            doc.paths.paths.insert(documented.join("/"), item);
        }
    }
}

/// The errors the middleware answers for a whole class of routes, and `x-request-id` on every
/// response.
struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, doc: &mut Document) {
        for (_, _, op) in operations_mut(doc) {
            // Every route refuses a body over `max_body_bytes`; those that take one say so.
            if op.request_body.is_some() {
                add_error(op, "413", "PayloadTooLarge");
            }
            for response in op.responses.responses.values_mut() {
                if let RefOr::T(response) = response {
                    response.headers.insert("x-request-id".into(), RefOr::Ref(Ref::new("#/components/headers/XRequestId")));
                }
            }
        }
    }
}

/// Who may call each operation, from `access::ROUTES`: `x-palisade-roles`, a line of the
/// description, and the answers of `access::authorize` (401, 403, 429) and of the store behind
/// every keyed route (500, 503). Public operations need no key (`security: []`).
struct Roles;

impl Modify for Roles {
    fn modify(&self, doc: &mut Document) {
        for (path, method, op) in operations_mut(doc) {
            match access_by_shape(&http_method(&method), path) {
                Some(Access::Public) => op.security = Some(Vec::new()),
                Some(Access::Roles(roles)) => {
                    let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
                    op.extensions
                        .get_or_insert_with(Default::default)
                        .merge(ExtensionsBuilder::new().add("x-palisade-roles", json!(names)).build());
                    let who = format!("**Roles:** {} keys (any other role: 403).", names.join(", "));
                    op.description = Some(match op.description.take() {
                        Some(description) if !description.is_empty() => format!("{who}\n\n{description}"),
                        _ => who,
                    });
                    for (status, name) in [
                        ("401", "Unauthenticated"),
                        ("403", "Forbidden"),
                        ("429", "TooManyRequests"),
                        ("500", "InternalServerError"),
                        ("503", "ServiceUnavailable"),
                    ] {
                        add_error(op, status, name);
                    }
                }
                // A route nobody decided on is refused to everyone; the drift test names it.
                None => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt;

    use super::*;

    /// A path template with its parameter names erased: `/a/{}/b`.
    fn shape(path: &str) -> String {
        path.split('/').map(|seg| if seg.starts_with('{') { "{}" } else { seg }).collect::<Vec<_>>().join("/")
    }

    /// (METHOD, path) of every operation of the document.
    fn documented(doc: &Value) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for method in item.as_object().unwrap().keys() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    /// A route missing from `access::ROUTES` is refused to everyone, so every route that works is
    /// in it: the document must list exactly those routes, no fewer (an undocumented route) and
    /// no more.
    #[test]
    fn the_document_lists_exactly_the_routes_of_the_role_table() {
        let doc = document();
        let documented: BTreeSet<(String, String)> = documented(&doc).into_iter().map(|(m, p)| (m, shape(&p))).collect();
        let decided: BTreeSet<(String, String)> = crate::access::ROUTES.iter().map(|(m, p, _)| (m.to_string(), shape(p))).collect();
        let undocumented: Vec<_> = decided.difference(&documented).collect();
        let undecided: Vec<_> = documented.difference(&decided).collect();
        assert!(undocumented.is_empty() && undecided.is_empty(), "undocumented: {undocumented:?}\nnot in access::ROUTES: {undecided:?}");
        assert_eq!(documented.len(), crate::access::ROUTES.len());
    }

    /// Every documented operation reaches a handler of the real router (with its middleware):
    /// anything but 404 and 405, which the router answers for paths and methods it does not serve.
    #[tokio::test]
    async fn every_documented_operation_is_routed() {
        let dir = std::env::temp_dir().join(format!("palisade-openapi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = palisade_store::Database::open(dir.join("routes.db").to_str().unwrap(), "normal").unwrap();
        let state = Arc::new(AppState::new(Arc::new(store), Default::default(), Default::default()));
        let router = crate::router(state);
        let doc = document();
        for (method, path) in documented(&doc) {
            // Any id routes (handlers check ids, after the key); a console file must exist.
            let value = |seg: &str| if seg == "{path}" { "index.html".to_string() } else { "1".to_string() };
            let concrete: String =
                path.split('/').map(|seg| if seg.starts_with('{') { value(seg) } else { seg.to_string() }).collect::<Vec<_>>().join("/");
            let request = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(&concrete);
            let response = router.clone().oneshot(request.body(axum::body::Body::empty()).unwrap()).await.unwrap();
            assert!(
                ![StatusCode::NOT_FOUND, StatusCode::METHOD_NOT_ALLOWED].contains(&response.status()),
                "{method} {path} ({concrete}) is documented but not routed: {}",
                response.status()
            );
        }
        // The router does answer 404 and 405 where it serves nothing.
        let request = Request::builder().uri("/palisade/v1/nothing").body(axum::body::Body::empty()).unwrap();
        assert_eq!(router.clone().oneshot(request).await.unwrap().status(), StatusCode::NOT_FOUND);
        let request = Request::builder().method(Method::DELETE).uri("/healthz").body(axum::body::Body::empty()).unwrap();
        assert_eq!(router.oneshot(request).await.unwrap().status(), StatusCode::METHOD_NOT_ALLOWED);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn operations_are_complete() {
        let doc = document();
        let tags: BTreeSet<&str> = doc["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        let mut ids = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
                assert!(ids.insert(id.to_string()), "operationId {id} is repeated");
                assert!(!op["summary"].as_str().unwrap_or_default().is_empty(), "{method} {path} has no summary");
                assert!(op["responses"].as_object().unwrap().keys().any(|s| s.starts_with('2')), "{method} {path} has no 2xx");
                for tag in op["tags"].as_array().unwrap() {
                    assert!(tags.contains(tag.as_str().unwrap()), "{method} {path}: unknown tag {tag}");
                }
                // Every template name is declared once as a path parameter, and nothing else is.
                let declared: Vec<&str> = op["parameters"]
                    .as_array()
                    .map(|ps| ps.iter().filter(|p| p["in"] == "path").map(|p| p["name"].as_str().unwrap()).collect())
                    .unwrap_or_default();
                let names: Vec<&str> = path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).collect();
                assert_eq!(declared, names, "{method} {path}: path parameters");
                let public = op["security"] == json!([]);
                let roles = op.get("x-palisade-roles").is_some();
                assert!(public != roles, "{method} {path}: public {public}, roles {roles}");
                if roles {
                    for status in ["401", "403", "429", "500", "503"] {
                        assert!(op["responses"].get(status).is_some(), "{method} {path}: no {status}");
                    }
                }
                if op.get("requestBody").is_some() {
                    assert!(op["responses"].get("413").is_some(), "{method} {path}: a body without 413");
                }
            }
        }
        assert_eq!(doc["paths"]["/cloud/v1/securitygroups/{project_id}/{region_id}"]["post"]["deprecated"], true);
        assert_eq!(doc["paths"]["/cloud/v2/security_groups/{project_id}/{region_id}"]["post"]["x-palisade-roles"], json!(["tenant"]));
        assert_eq!(doc["paths"]["/palisade/v1/quotas/{project_id}/{region_id}"]["put"]["x-palisade-roles"], json!(["platform"]));
    }

    /// Every `$ref` of the document points at something.
    #[test]
    fn references_resolve() {
        fn walk(value: &Value, doc: &Value, seen: &mut usize) {
            match value {
                Value::Object(map) => {
                    if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                        let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("non-local $ref {reference}"));
                        assert!(doc.pointer(pointer).is_some(), "dangling $ref {reference}");
                        *seen += 1;
                    }
                    map.values().for_each(|v| walk(v, doc, seen));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, doc, seen)),
                _ => {}
            }
        }
        let doc = document();
        let mut seen = 0;
        walk(&doc, &doc, &mut seen);
        assert!(seen > 50);
    }

    /// Limits and enums are the ones validation uses.
    #[test]
    fn limits_and_enums_come_from_core() {
        use palisade_core::Protocol;
        use palisade_core::input::{MAX_CHANGED_RULES, MAX_DESCRIPTION, MAX_RULES, MAX_TAG_LEN};
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let names: Vec<&str> = Protocol::names().collect();
        assert_eq!(schemas["ProtocolV2"]["enum"], json!(names));
        assert_eq!(schemas["Protocol"]["enum"][0], "any");
        assert_eq!(schemas["Protocol"]["enum"].as_array().unwrap().len(), names.len() + 1);
        assert_eq!(schemas["RuleFields"]["properties"]["description"]["maxLength"], MAX_DESCRIPTION);
        for schema in ["CreateSecurityGroupV2", "UpdateSecurityGroupV2", "LegacySecurityGroupInput"] {
            assert_eq!(schemas[schema]["properties"]["description"]["maxLength"], MAX_DESCRIPTION, "{schema}");
        }
        assert_eq!(schemas["CreateSecurityGroupV2"]["properties"]["rules"]["maxItems"], MAX_RULES);
        assert_eq!(schemas["LegacyUpdateSecurityGroup"]["properties"]["changed_rules"]["maxItems"], MAX_CHANGED_RULES);
        assert_eq!(schemas["TagKey"]["maxLength"], MAX_TAG_LEN);
        assert_eq!(schemas["TagValue"]["maxLength"], MAX_TAG_LEN);
        assert_eq!(schemas["SetQuota"]["properties"][quota::GROUPS]["maximum"], quota::MAX_LIMIT);
        let actions = schemas["AuditAction"]["enum"].as_array().unwrap().len();
        assert_eq!(actions, palisade_service::audit::Action::ALL.len());
        assert_eq!(doc["components"]["securitySchemes"]["APIKey"]["name"], "Authorization");
        assert_eq!(
            doc["components"]["responses"]["PayloadTooLarge"]["content"]["application/json"]["example"]["exception_class"],
            "RequestEntityTooLarge"
        );
    }
}
