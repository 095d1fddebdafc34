//! The HTTP face of Palisade: the Gcore Cloud security-groups API (CONTRACT.md §3), Palisade's
//! own `/palisade/v1` extensions, health and readiness, and the OpenAPI document; it also mounts
//! the web console's static files (`palisade_console`, public, with their own strict CSP). The
//! Prometheus metrics are served apart, on their own listener ([`metrics::router`]).
//!
//! Handlers are thin: extract and validate (with `core`), call the application layer
//! (`palisade_service`: its operations inside a store transaction, the task queue, policies and
//! verdicts), render the contract's JSON. No business rule lives here.
//!
//! Modules are layered, each importing only those before it: `error` (with `request_id`), then
//! `pool` and `limits`, then `state`, then `extract` (the caller, bodies, queries, `ScopePath`
//! and `GroupPath`), then `access` (the role middleware), then the handler modules. Neither
//! `state` nor `extract` imports a handler module.

pub mod access;
pub mod agents;
pub mod audit;
pub mod dto;
pub mod error;
pub mod extract;
pub mod instances;
pub mod limits;
pub mod metrics;
pub mod observe;
pub mod openapi;
pub mod pool;
pub mod ports;
pub mod quotas;
pub mod reference;
pub mod request_id;
pub mod rules;
pub mod schema;
pub mod security_groups;
pub mod state;
pub mod system;
pub mod tasks;
pub mod time;
pub mod verdicts;

use std::sync::Arc;

use axum::Router;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use crate::error::ApiError;
pub use crate::state::{ApiConfig, AppState};

/// Every route of the service, each handler with its `#[utoipa::path]`: the route table of both
/// the router and the OpenAPI document (`openapi::document`). One `routes!` per path.
#[allow(deprecated)] // The v1 handlers are `#[deprecated]` so that the document says so.
pub fn api_routes() -> OpenApiRouter<Arc<AppState>> {
    use crate::{rules as r, security_groups as sg, tasks as t};
    openapi::router()
        .routes(routes!(sg::create_v2))
        .routes(routes!(sg::update_v2))
        .routes(routes!(r::create_v2))
        .routes(routes!(r::delete_v2))
        .routes(routes!(sg::list, sg::create_v1))
        .routes(routes!(sg::get, sg::delete, sg::update_v1))
        .routes(routes!(sg::copy))
        .routes(routes!(sg::revert))
        .routes(routes!(r::create_v1))
        .routes(routes!(sg::instances))
        .routes(routes!(sg::metadata_list, sg::metadata_create, sg::metadata_replace))
        .routes(routes!(sg::metadata_item_get, sg::metadata_item_delete))
        .routes(routes!(r::replace_v1, r::delete_v1))
        .routes(routes!(t::list))
        .routes(routes!(t::acknowledge_all))
        .routes(routes!(t::acknowledge_many))
        .routes(routes!(t::get))
        .routes(routes!(t::acknowledge_one))
        .routes(routes!(t::list_active))
        .routes(routes!(quotas::get, quotas::set))
        .routes(routes!(instances::add_security_group))
        .routes(routes!(instances::del_security_group))
        .routes(routes!(instances::security_groups))
        .routes(routes!(ports::list, ports::create))
        .routes(routes!(ports::get, ports::update, ports::delete))
        .routes(routes!(verdicts::effective_rules))
        .routes(routes!(verdicts::verdicts))
        .routes(routes!(verdicts::analysis))
        .routes(routes!(audit::list))
        .routes(routes!(agents::list))
        .routes(routes!(agents::policy))
        .routes(routes!(agents::report))
        .routes(routes!(observe::rule_stats_report))
        .routes(routes!(observe::flow_logs_report))
        .routes(routes!(observe::rule_stats))
        .routes(routes!(observe::port_flow_log, observe::set_port_flow_log))
        .routes(routes!(observe::group_flow_log, observe::set_group_flow_log))
        .routes(routes!(observe::list_flow_logs))
        .routes(routes!(observe::impact))
        .routes(routes!(system::healthz))
        .routes(routes!(system::readyz))
        .routes(routes!(system::openapi_json))
        .routes(routes!(system::docs))
        // The web console (crates/console): static assets with their own strict CSP, public.
        .routes(routes!(system::console_page))
        .routes(routes!(system::console_asset))
}

/// Every route of the service, with the middleware.
pub fn router(state: Arc<AppState>) -> Router {
    let (routes, _) = api_routes().split_for_parts();
    routes
        // Every matched route answers only the roles `access::ROUTES` names for it.
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), access::authorize))
        .fallback(system::not_found)
        .method_not_allowed_fallback(system::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), agents::wait_for_agents))
        // Bodies over `max_body_bytes`: 413, unread when their length is announced.
        .layer(axum::extract::DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), extract::limit_body))
        .layer(request_id::layer())
        .with_state(state)
}
