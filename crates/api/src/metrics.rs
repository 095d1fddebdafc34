//! Prometheus metrics of the process (`GET /metrics`, text exposition format 0.0.4): requests by
//! method, route and status, and their latency as a histogram per route. Recorded through the
//! `metrics` facade into `metrics-exporter-prometheus`'s recorder, process-wide as Prometheus
//! expects of one target.
//!
//! The metrics are served by [`router`] on their own listener (`serve --metrics-listen`), never on
//! the API port; without that listener no recorder is installed and requests record nothing.
//! Labels are bounded whatever clients send: a non-standard method is counted as `OTHER`, a path
//! that matches no route as `unmatched`.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const REQUESTS: &str = "palisade_http_requests_total";
const LATENCY: &str = "palisade_http_request_duration_seconds";

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// How often recorded latencies are folded into their buckets between scrapes, so that their
/// memory stays flat when nobody scrapes.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// The installed recorder's handle; unset while metrics are not served.
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The method label: one of the standard methods, or `OTHER` for any extension method (a client
/// may send any token as the method).
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

fn recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(LATENCY.to_string()), &BUCKETS)
        .expect("the bucket list is not empty")
        .build_recorder()
}

fn describe() {
    metrics::describe_counter!(REQUESTS, "HTTP requests answered, by method, route and status.");
    metrics::describe_histogram!(LATENCY, "Time to answer HTTP requests, by route.");
}

/// Installs the process-wide recorder (once: later calls, such as a second server in the same
/// test process, share it) and returns its handle for [`router`].
pub fn install() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let recorder = recorder();
            let handle = recorder.handle();
            if let Err(e) = metrics::set_global_recorder(recorder) {
                tracing::warn!(error = %e, "another metrics recorder is installed; /metrics will stay empty");
            }
            describe();
            handle
        })
        .clone()
}

/// Records one answered request, if metrics are served. `route` is the matched route template, or
/// `None` when no route matched (bounded cardinality either way).
pub fn observe_request(method: &Method, route: Option<&str>, status: StatusCode, elapsed: Duration) {
    // Without a recorder, skip building the labels too.
    if HANDLE.get().is_some() {
        record(method, route, status, elapsed);
    }
}

fn record(method: &Method, route: Option<&str>, status: StatusCode, elapsed: Duration) {
    // One allocation for the route, shared by both series.
    let route: Arc<str> = Arc::from(route.unwrap_or(UNMATCHED));
    metrics::counter!(REQUESTS, "method" => method_label(method), "route" => route.clone(), "status" => status.as_str().to_owned())
        .increment(1);
    metrics::histogram!(LATENCY, "route" => route).record(elapsed);
}

/// `GET /metrics`.
async fn metrics(State(handle): State<PrometheusHandle>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], handle.render()).into_response()
}

/// The metrics listener's router: `GET /metrics` and nothing else. Its own requests are not
/// counted.
pub fn router(handle: PrometheusHandle) -> Router {
    Router::new().route("/metrics", get(metrics)).with_state(handle)
}

/// Folds the latencies recorded since the last scrape into their buckets, every few seconds, for
/// as long as it is polled (next to the metrics listener).
pub async fn upkeep(handle: PrometheusHandle) {
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    loop {
        every.tick().await;
        handle.run_upkeep();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records into a recorder of this test alone and renders it.
    fn rendered(observations: &[(Method, Option<&str>, u16, Duration)]) -> String {
        let recorder = recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe();
            for (method, route, status, elapsed) in observations {
                record(method, *route, StatusCode::from_u16(*status).unwrap(), *elapsed);
            }
        });
        handle.render()
    }

    #[test]
    fn counts_and_cumulative_buckets() {
        let route = Some("/metrics-test/{id}");
        let text = rendered(&[
            (Method::GET, route, 200, Duration::from_micros(300)),
            (Method::GET, route, 200, Duration::from_millis(30)),
            (Method::GET, route, 404, Duration::from_millis(2)),
        ]);
        assert!(text.contains("# HELP palisade_http_requests_total HTTP requests answered, by method, route and status.\n"), "{text}");
        assert!(text.contains("# TYPE palisade_http_requests_total counter\n"), "{text}");
        assert!(text.contains("# TYPE palisade_http_request_duration_seconds histogram\n"), "{text}");
        assert!(text.contains("palisade_http_requests_total{method=\"GET\",route=\"/metrics-test/{id}\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("palisade_http_requests_total{method=\"GET\",route=\"/metrics-test/{id}\",status=\"404\"} 1"), "{text}");
        assert!(text.contains("palisade_http_request_duration_seconds_bucket{route=\"/metrics-test/{id}\",le=\"0.0005\"} 1"), "{text}");
        assert!(text.contains("palisade_http_request_duration_seconds_bucket{route=\"/metrics-test/{id}\",le=\"0.0025\"} 2"), "{text}");
        assert!(text.contains("palisade_http_request_duration_seconds_bucket{route=\"/metrics-test/{id}\",le=\"0.05\"} 3"), "{text}");
        assert!(text.contains("palisade_http_request_duration_seconds_bucket{route=\"/metrics-test/{id}\",le=\"5\"} 3"), "{text}");
        assert!(text.contains("palisade_http_request_duration_seconds_bucket{route=\"/metrics-test/{id}\",le=\"+Inf\"} 3"), "{text}");
        assert!(text.contains("palisade_http_request_duration_seconds_count{route=\"/metrics-test/{id}\"} 3"), "{text}");
    }

    #[test]
    fn labels_are_bounded() {
        for method in [Method::GET, Method::HEAD, Method::POST, Method::PUT, Method::PATCH, Method::DELETE, Method::OPTIONS] {
            assert_eq!(method_label(&method), method.as_str());
        }
        for method in ["get", "TRACE", "CONNECT", "BREW", "X-GARBAGE-METHOD-TOKEN-THAT-IS-LONG"] {
            assert_eq!(method_label(&Method::from_bytes(method.as_bytes()).unwrap()), "OTHER");
        }
        let text = rendered(&[(Method::from_bytes(b"LABELTESTMETHOD").unwrap(), None, 404, Duration::from_millis(1))]);
        assert!(!text.contains("LABELTESTMETHOD"), "{text}");
        assert!(text.contains("method=\"OTHER\",route=\"unmatched\",status=\"404\""), "{text}");
    }
}
