//! Every request gets an id: echoed in `x-request-id`, put in error bodies and task rows, and
//! carried by the request's log span. It lives in a task-local so error bodies built far from the
//! request can still name it.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The current request's id, or an empty string outside a request.
pub fn current() -> String {
    REQUEST_ID.try_with(Clone::clone).unwrap_or_default()
}

fn fresh_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The longest method and path a log line shows; longer ones end in `…`.
const MAX_LOGGED_METHOD: usize = 16;
const MAX_LOGGED_PATH: usize = 256;

fn clipped(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]).into(),
        None => text.into(),
    }
}

pub async fn middleware(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map(str::to_owned)
        .unwrap_or_else(fresh_id);
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned());
    // Logged as sent, but bounded: a client's 60 KB method or path must not become 60 KB of log
    // per request.
    let path = clipped(request.uri().path(), MAX_LOGGED_PATH).into_owned();
    let logged_method = clipped(method.as_str(), MAX_LOGGED_METHOD);
    let span = tracing::info_span!("request", request_id = %id, method = %logged_method, route = route.as_deref().unwrap_or(&path));
    let started = Instant::now();
    let mut response = REQUEST_ID.scope(id.clone(), next.run(request).instrument(span.clone())).await;
    let status = response.status().as_u16();
    // Unmatched paths and extension methods share one label each, so clients cannot grow the
    // metrics without bound.
    crate::metrics::observe_request(method.as_str(), route.as_deref(), status, started.elapsed());
    span.in_scope(|| {
        tracing::info!(status, latency_us = started.elapsed().as_micros() as u64, %path, "handled");
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::clipped;

    #[test]
    fn long_methods_and_paths_are_clipped_for_the_log() {
        assert_eq!(clipped("GET", 16), "GET");
        assert_eq!(clipped(&"X".repeat(60_000), 16), format!("{}…", "X".repeat(16)));
        assert_eq!(clipped("/é/é/é", 3), "/é/…");
    }
}
