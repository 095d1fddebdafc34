//! Health, readiness, the OpenAPI document and its offline reference page, and the JSON answers
//! for unknown paths and wrong methods.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use palisade_store::Store;
use serde_json::json;

use crate::error::ApiError;
use crate::openapi;
use crate::state::AppState;

/// Liveness: the process serves HTTP.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: the database answers.
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

pub async fn openapi_json() -> Response {
    Json(openapi::document()).into_response()
}

pub async fn docs() -> Html<String> {
    Html(openapi::reference_page(&openapi::document()))
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("The requested URL {} was not found on this server", uri.path()))
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
