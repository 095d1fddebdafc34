//! Health, readiness, the OpenAPI document and its offline reference page, the web console's
//! files (documented here, served by `palisade_console`), and the JSON answers for unknown paths
//! and wrong methods.

use std::sync::{Arc, LazyLock};

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use palisade_store::Store;
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;
use crate::{openapi, reference};

/// The document and its page, rendered once: both are fixed for the life of the process.
static DOCUMENT: LazyLock<String> = LazyLock::new(|| openapi::document().to_string());
static PAGE: LazyLock<String> = LazyLock::new(|| reference::page(&openapi::document()));

#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "Service",
    summary = "Liveness",
    description = "Answers as long as the process serves HTTP; does not touch the database.",
    responses((status = 200, description = "The process serves HTTP", body = crate::schema::Health))
)]
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "Service",
    summary = "Readiness",
    description = "Pings the database.",
    responses((status = 200, description = "The database answers", body = crate::schema::Readiness), crate::openapi::InternalServerError, (status = 503, description = "The database does not answer", body = crate::schema::Readiness))
)]
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let store = state.store.clone();
    let ping = tokio::task::spawn_blocking(move || store.ping()).await;
    match ping {
        Ok(Ok(())) => Json(json!({"status": "ready", "database": state.store.backend()})).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready");
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "unavailable", "database": state.store.backend()}))).into_response()
        }
        Err(e) => ApiError::Internal(e.to_string()).into_response(),
    }
}

#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "openapiDocument",
    tag = "Service",
    summary = "OpenAPI document",
    description = "This document.",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object))
)]
pub async fn openapi_json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str()).into_response()
}

#[utoipa::path(
    get,
    path = "/docs",
    operation_id = "referencePage",
    tag = "Service",
    summary = "API reference page",
    description = "This document rendered as HTML, with no external scripts, styles or fonts.",
    responses((status = 200, description = "This document as a self-contained HTML page", content_type = "text/html", body = String))
)]
pub async fn docs() -> Html<&'static str> {
    Html(PAGE.as_str())
}

#[utoipa::path(
    get,
    path = "/console",
    operation_id = "consolePage",
    tag = "Service",
    summary = "Web console",
    description = "The web console for people (docs/console.md): plain HTML, CSS and JavaScript built into the binary. It calls this API from the browser with the user's key in `Authorization`; the files themselves need no key. Every console answer carries a strict `Content-Security-Policy` (this origin only, no inline script, no framing) and `X-Content-Type-Options: nosniff`.",
    responses((status = 200, description = "The console's page", content_type = "text/html", body = String))
)]
pub async fn console_page(headers: HeaderMap) -> Response {
    palisade_console::index(headers).await
}

#[utoipa::path(
    get,
    path = "/console/{*path}",
    operation_id = "consoleAsset",
    tag = "Service",
    summary = "Web console file",
    description = "A stylesheet, script or icon of the console (the path may contain `/`, e.g. `js/app.js`); an empty path is the page. An unknown file is a plain-text 404. Answers carry an `ETag` and `Cache-Control: no-cache`, so an unchanged file costs a 304.",
    params(crate::schema::ConsolePath),
    responses((status = 200, description = "A file of the console", content((String = "image/svg+xml"), (String = "text/css"), (String = "text/html"), (String = "text/javascript"))))
)]
pub async fn console_asset(path: Path<String>, headers: HeaderMap) -> Response {
    palisade_console::asset(path, headers).await
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("The requested URL {} was not found on this server", uri.path()))
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
