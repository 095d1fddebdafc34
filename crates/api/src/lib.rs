//! The HTTP face of Palisade: the Gcore Cloud security-groups API (CONTRACT.md §3), Palisade's
//! own `/palisade/v1` extensions, health and readiness, and the OpenAPI document; it also mounts
//! the web console's static files (`palisade_console`, public, with their own strict CSP). The
//! Prometheus metrics are served apart, on their own listener ([`metrics::router`]).
//!
//! Handlers are thin: extract and validate (with `core`), run a store transaction (with the
//! `worker` crate's operations), render the contract's JSON. No business rule lives here.

pub mod access;
pub mod agents;
pub mod audit;
pub mod dto;
pub mod error;
pub mod extract;
pub mod instances;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod pool;
pub mod ports;
pub mod queue;
pub mod quotas;
pub mod request_id;
pub mod rules;
pub mod security_groups;
pub mod state;
pub mod system;
pub mod tasks;
pub mod time;
pub mod verdicts;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post, put};

pub use crate::error::ApiError;
pub use crate::state::{ApiConfig, AppState};

/// Every route of the service.
pub fn router(state: Arc<AppState>) -> Router {
    use crate::{rules as r, security_groups as sg, tasks as t};
    const V1_SG: &str = "/cloud/v1/securitygroups/{project_id}/{region_id}";
    const V2_SG: &str = "/cloud/v2/security_groups/{project_id}/{region_id}";
    Router::new()
        .route(V2_SG, post(sg::create_v2))
        .route(&format!("{V2_SG}/{{group_id}}"), axum::routing::patch(sg::update_v2))
        .route(&format!("{V2_SG}/{{group_id}}/rules"), post(r::create_v2))
        .route(&format!("{V2_SG}/{{group_id}}/rules/{{rule_id}}"), axum::routing::delete(r::delete_v2))
        .route(V1_SG, get(sg::list).post(sg::create_v1))
        .route(&format!("{V1_SG}/{{group_id}}"), get(sg::get).delete(sg::delete).patch(sg::update_v1))
        .route(&format!("{V1_SG}/{{group_id}}/copy"), post(sg::copy))
        .route(&format!("{V1_SG}/{{group_id}}/revert"), post(sg::revert))
        .route(&format!("{V1_SG}/{{group_id}}/rules"), post(r::create_v1))
        .route(&format!("{V1_SG}/{{group_id}}/instances"), get(sg::instances))
        .route(&format!("{V1_SG}/{{group_id}}/metadata"), get(sg::metadata_list).post(sg::metadata_create).put(sg::metadata_replace))
        .route(&format!("{V1_SG}/{{group_id}}/metadata_item"), get(sg::metadata_item_get).delete(sg::metadata_item_delete))
        .route("/cloud/v1/securitygrouprules/{project_id}/{region_id}/{rule_id}", put(r::replace_v1).delete(r::delete_v1))
        .route("/cloud/v1/tasks", get(t::list))
        .route("/cloud/v1/tasks/acknowledge_all", post(t::acknowledge_all))
        .route("/cloud/v1/tasks/acknowledge", post(t::acknowledge_many))
        .route("/cloud/v1/tasks/{id}", get(t::get))
        .route("/cloud/v1/tasks/{id}/acknowledge", post(t::acknowledge_one))
        .route("/cloud/v1/tasks/{id}/{region_id}/active", get(t::list_active))
        .route("/palisade/v1/quotas/{project_id}/{region_id}", get(quotas::get).put(quotas::set))
        .route("/cloud/v1/instances/{project_id}/{region_id}/{instance_id}/addsecuritygroup", post(instances::add_security_group))
        .route("/cloud/v1/instances/{project_id}/{region_id}/{instance_id}/delsecuritygroup", post(instances::del_security_group))
        .route("/cloud/v1/instances/{project_id}/{region_id}/{instance_id}/securitygroups", get(instances::security_groups))
        .route("/palisade/v1/ports", get(ports::list).post(ports::create))
        .route("/palisade/v1/ports/{port_id}", get(ports::get).patch(ports::update).delete(ports::delete))
        .route("/palisade/v1/ports/{port_id}/effective-rules", get(verdicts::effective_rules))
        .route("/palisade/v1/verdicts", post(verdicts::verdicts))
        .route(&format!("{V1_SG}/{{group_id}}/analysis"), get(verdicts::analysis))
        .route("/palisade/v1/audit", get(audit::list))
        .route("/palisade/v1/agents", get(agents::list))
        .route("/palisade/v1/agents/{host}/policy", get(agents::policy))
        .route("/palisade/v1/agents/{host}/status", put(agents::report))
        .route("/healthz", get(system::healthz))
        .route("/readyz", get(system::readyz))
        .route("/openapi.json", get(system::openapi_json))
        .route("/docs", get(system::docs))
        // The web console (crates/console): static assets with their own strict CSP, public.
        .route("/console", get(palisade_console::index))
        .route("/console/{*path}", get(palisade_console::asset))
        // Every matched route answers only the roles `access::ROUTES` names for it.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), access::authorize))
        .fallback(system::not_found)
        .method_not_allowed_fallback(system::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), agents::wait_for_agents))
        // Bodies over `max_body_bytes`: 413, unread when their length is announced.
        .layer(axum::extract::DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), extract::limit_body))
        .layer(axum::middleware::from_fn(request_id::middleware))
        .with_state(state)
}
