//! Prometheus metrics of the process (`GET /metrics`, text exposition format 0.0.4): requests by
//! method, route and status, their latency as a histogram per route, and the tasks the worker
//! finished. Counters are process-wide, as Prometheus expects of one target.
//!
//! The metrics are served by [`router`] on their own listener (`serve --metrics-listen`), never on
//! the API port. Labels are bounded whatever clients send: a non-standard method is counted as
//! `OTHER`, a path that matches no route as `unmatched`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{LazyLock, Mutex};
use std::time::Duration;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

#[derive(Default)]
struct Latency {
    /// Observations at or below each bound (not cumulative here; summed when rendered).
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Registry {
    requests: BTreeMap<(String, String, u16), u64>,
    latency: BTreeMap<String, Latency>,
}

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(Default::default);

/// The route label of a request that matched no route.
pub const UNMATCHED: &str = "unmatched";

/// The method label: one of the standard methods, or `OTHER` for any extension method (a client
/// may send any token as the method).
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

/// Records one answered request. `route` is the matched route template, or `None` when no route
/// matched (bounded cardinality either way).
pub fn observe_request(method: &str, route: Option<&str>, status: u16, elapsed: Duration) {
    let route = route.unwrap_or(UNMATCHED);
    let mut registry = REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    *registry.requests.entry((method_label(method).to_string(), route.to_string(), status)).or_default() += 1;
    let latency = registry.latency.entry(route.to_string()).or_default();
    let seconds = elapsed.as_secs_f64();
    if let Some(i) = BUCKETS.iter().position(|bound| seconds <= *bound) {
        latency.buckets[i] += 1;
    }
    latency.count += 1;
    latency.sum += seconds;
}

fn escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The exposition text.
pub fn render() -> String {
    let registry = REGISTRY.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut out = String::new();
    out.push_str("# HELP palisade_http_requests_total HTTP requests answered, by method, route and status.\n");
    out.push_str("# TYPE palisade_http_requests_total counter\n");
    for ((method, route, status), count) in &registry.requests {
        let _ =
            writeln!(out, "palisade_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {count}", escape(route));
    }
    out.push_str("# HELP palisade_http_request_duration_seconds Time to answer HTTP requests, by route.\n");
    out.push_str("# TYPE palisade_http_request_duration_seconds histogram\n");
    for (route, latency) in &registry.latency {
        let route = escape(route);
        let mut cumulative = 0;
        for (bound, count) in BUCKETS.iter().zip(latency.buckets) {
            cumulative += count;
            let _ = writeln!(out, "palisade_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "palisade_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}", latency.count);
        let _ = writeln!(out, "palisade_http_request_duration_seconds_sum{{route=\"{route}\"}} {}", latency.sum);
        let _ = writeln!(out, "palisade_http_request_duration_seconds_count{{route=\"{route}\"}} {}", latency.count);
    }
    out
}

/// `GET /metrics`.
pub async fn metrics() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], render()).into_response()
}

/// The metrics listener's router: `GET /metrics` and nothing else. Its own requests are not
/// counted.
pub fn router() -> Router {
    Router::new().route("/metrics", get(metrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_cumulative_buckets() {
        observe_request("GET", Some("/metrics-test/{id}"), 200, Duration::from_micros(300));
        observe_request("GET", Some("/metrics-test/{id}"), 200, Duration::from_millis(30));
        observe_request("GET", Some("/metrics-test/{id}"), 404, Duration::from_millis(2));
        let text = render();
        assert!(text.contains("palisade_http_requests_total{method=\"GET\",route=\"/metrics-test/{id}\",status=\"200\"} 2"), "{text}");
        assert!(text.contains("palisade_http_requests_total{method=\"GET\",route=\"/metrics-test/{id}\",status=\"404\"} 1"), "{text}");
        assert!(text.contains("palisade_http_request_duration_seconds_bucket{route=\"/metrics-test/{id}\",le=\"0.0005\"} 1"), "{text}");
        assert!(text.contains("palisade_http_request_duration_seconds_bucket{route=\"/metrics-test/{id}\",le=\"0.0025\"} 2"), "{text}");
        assert!(text.contains("palisade_http_request_duration_seconds_bucket{route=\"/metrics-test/{id}\",le=\"0.05\"} 3"), "{text}");
        assert!(text.contains("palisade_http_request_duration_seconds_count{route=\"/metrics-test/{id}\"} 3"), "{text}");
    }

    #[test]
    fn labels_are_bounded() {
        for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            assert_eq!(method_label(method), method);
        }
        for method in ["get", "TRACE", "CONNECT", "BREW", "X-GARBAGE-METHOD-TOKEN-THAT-IS-LONG"] {
            assert_eq!(method_label(method), "OTHER");
        }
        observe_request("LABELTESTMETHOD", None, 404, Duration::from_millis(1));
        let text = render();
        assert!(!text.contains("LABELTESTMETHOD"), "{text}");
        assert!(text.contains("method=\"OTHER\",route=\"unmatched\",status=\"404\""), "{text}");
    }
}
