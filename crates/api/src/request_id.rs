//! Every request gets an id: the client's `x-request-id` when it is usable, else a fresh one;
//! echoed in `x-request-id`, put in error bodies and task rows, and carried by the request's log
//! span. tower-http sets and echoes it and traces the request; the id also lives in a task-local
//! so error bodies built far from the request can still name it.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request};
use axum::http::HeaderName;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::Route;
use tower::util::MapRequestLayer;
use tower::{Layer, Service, ServiceBuilder};
use tower_http::request_id::{MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use tracing::Span;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest id taken from a client; longer ones are replaced.
const MAX_CLIENT_ID: usize = 64;

tokio::task_local! {
    static REQUEST_ID: HeaderValue;
}

/// The current request's id, or an empty string outside a request.
pub fn current() -> String {
    REQUEST_ID.try_with(|id| id.to_str().unwrap_or_default().to_owned()).unwrap_or_default()
}

/// Today's ids: a random UUID as 32 lowercase hex digits.
#[derive(Clone, Copy)]
struct FreshId;

impl MakeRequestId for FreshId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        let mut text = [0; uuid::fmt::Simple::LENGTH];
        let id = uuid::Uuid::new_v4().simple().encode_lower(&mut text);
        HeaderValue::from_str(id).ok().map(RequestId::new)
    }
}

/// A client's id is kept only if it is short and plain (letters, digits, `-`): it goes into logs,
/// task rows and audit events.
fn usable(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty() && bytes.len() <= MAX_CLIENT_ID && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

/// Drops an unusable client id, so that `SetRequestId` makes a fresh one (it keeps any id it finds).
fn drop_unusable_id(mut request: Request) -> Request {
    if request.headers().get(&X_REQUEST_ID).is_some_and(|id| !usable(id)) {
        request.headers_mut().remove(&X_REQUEST_ID);
    }
    request
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

/// The request's span: its id, method, route (the matched template, else the path) and path.
/// Logged as sent, but bounded: a client's 60 KB method or path must not become 60 KB of log per
/// request.
fn request_span(request: &Request) -> Span {
    let id = request.extensions().get::<RequestId>().and_then(|id| id.header_value().to_str().ok()).unwrap_or_default();
    let path = clipped(request.uri().path(), MAX_LOGGED_PATH);
    let route = request.extensions().get::<MatchedPath>().map_or(&*path, MatchedPath::as_str);
    let method = clipped(request.method().as_str(), MAX_LOGGED_METHOD);
    tracing::info_span!("request", request_id = %id, %method, route, path = %path)
}

fn log_handled(response: &Response, latency: Duration, _span: &Span) {
    tracing::info!(status = response.status().as_u16(), latency_us = latency.as_micros() as u64, "handled");
}

/// Runs the request with its id in the task-local, and counts it in the metrics. Unmatched paths
/// and extension methods share one label each, so clients cannot grow the metrics without bound.
async fn scope(request: Request, next: Next) -> Response {
    let id = request.extensions().get::<RequestId>().map(|id| id.header_value().clone()).unwrap_or(HeaderValue::from_static(""));
    let method = request.method().clone();
    let route = request.extensions().get::<MatchedPath>().cloned();
    let started = Instant::now();
    let response = REQUEST_ID.scope(id, next.run(request)).await;
    crate::metrics::observe_request(&method, route.as_ref().map(MatchedPath::as_str), response.status(), started.elapsed());
    response
}

/// The request-id, tracing and metrics layers, for `Router::layer` (outermost first).
pub fn layer() -> impl Layer<
    Route,
    Service: Service<Request, Response: IntoResponse + 'static, Error = Infallible, Future: Send + 'static> + Clone + Send + Sync + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    ServiceBuilder::new()
        .layer(MapRequestLayer::new(drop_unusable_id))
        .layer(SetRequestIdLayer::new(X_REQUEST_ID, FreshId))
        .layer(PropagateRequestIdLayer::new(X_REQUEST_ID))
        // One log line per request, when it is answered; failures are logged where they happen.
        .layer(TraceLayer::new_for_http().make_span_with(request_span).on_request(()).on_response(log_handled).on_failure(()))
        .layer(axum::middleware::from_fn(scope))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_methods_and_paths_are_clipped_for_the_log() {
        assert_eq!(clipped("GET", 16), "GET");
        assert_eq!(clipped(&"X".repeat(60_000), 16), format!("{}…", "X".repeat(16)));
        assert_eq!(clipped("/é/é/é", 3), "/é/…");
    }

    #[test]
    fn only_short_plain_client_ids_are_kept() {
        for id in ["req-0123456789abcdef", "A", &"a".repeat(64)] {
            assert!(usable(&HeaderValue::from_str(id).unwrap()), "{id}");
        }
        for id in ["", "with space", "semi;colon", "under_score", &"a".repeat(65)] {
            assert!(!usable(&HeaderValue::from_str(id).unwrap()), "{id}");
        }
    }

    /// Answers the id the handler sees, next to the header.
    async fn ids(sent: Option<&str>) -> (String, String) {
        use tower::ServiceExt;
        let app = axum::Router::new().route("/", axum::routing::get(|| async { current() })).layer(layer());
        let mut request = axum::http::Request::builder().uri("/");
        if let Some(sent) = sent {
            request = request.header("x-request-id", sent);
        }
        let response = app.oneshot(request.body(axum::body::Body::empty()).unwrap()).await.unwrap();
        let header = response.headers()["x-request-id"].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        (header, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn ids_are_kept_or_made_and_seen_by_the_handler() {
        assert_eq!(ids(Some("req-0123456789abcdef")).await, ("req-0123456789abcdef".into(), "req-0123456789abcdef".into()));
        for sent in [None, Some("not usable!"), Some("")] {
            let (header, seen) = ids(sent).await;
            assert_eq!(header, seen, "{sent:?}");
            assert_eq!(header.len(), 32, "{sent:?}: {header}");
            assert!(header.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase()), "{header}");
        }
        assert_eq!(current(), "", "outside a request");
    }
}
