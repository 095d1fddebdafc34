//! The trust boundary of the listeners, with the real binary: `GET /metrics` only on
//! `--metrics-listen` (never on the API port) with labels that clients cannot grow, and HTTPS with
//! `--tls-cert` / `--tls-key` for API clients and the agent's client.
//!
//! Each test runs its own `palisade serve` process, so the process-wide metrics see no other
//! test's requests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::helpers::*;
use crate::process::{ServeProcess, free_port, serve_command};

/// A `palisade serve` child on a fresh database (SQLite, or PostgreSQL with
/// `PALISADE_TEST_BACKEND=postgres`) with one API key for client 1, user 1.
struct Served {
    process: ServeProcess,
    port: u16,
    metrics_port: Option<u16>,
    token: String,
    // Last: removed after the process is gone.
    database: TestDatabase,
    dir: TempDir,
}

impl Served {
    /// Starts the server with these extra `serve` flags; with `metrics`, also `--metrics-listen`.
    async fn start(metrics: bool, extra: &[&str]) -> Served {
        let dir = TempDir::new("listeners");
        let database = TestDatabase::new(&dir, "listeners");
        let url = database.url.clone();
        let token = blocking(move || {
            let store = palisade_store::Database::open(&url, "normal").expect("opening the test database");
            palisade::startup::create_key(&store, 1, 1, None, "test")
        })
        .expect("creating the test key");
        let metrics_port = metrics.then(free_port);
        let metrics_listen = metrics_port.map(|port| format!("127.0.0.1:{port}"));
        let mut flags: Vec<&str> = metrics_listen.iter().flat_map(|listen| ["--metrics-listen", listen.as_str()]).collect();
        flags.extend(extra);
        let mut process = ServeProcess::spawn(&["--database-url", &database.url], &flags, dir.path().join("serve.log"));
        process.wait_listening(metrics_port.as_slice()).await;
        Served { port: process.port, process, metrics_port, token, database, dir }
    }

    /// Creates a key of this kind in the server's database (the server finds it on first use).
    fn create_key(&self, spec: palisade::startup::KeySpec) -> String {
        self.database.create_key(spec)
    }

    fn log_text(&self) -> String {
        self.process.log_text()
    }

    /// A client of the API with the key of client 1.
    fn api(&self) -> Api {
        Api::new(self.process.base(), self.token.clone())
    }

    fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port.expect("a metrics listener"))
    }

    /// SIGTERM, then waits for the exit (at most 20 s).
    async fn terminate(&mut self) -> std::process::ExitStatus {
        self.process.terminate().await
    }
}

// ----- metrics -----

async fn scrape(served: &Served) -> String {
    let response = reqwest::get(served.metrics_url()).await.expect("scraping the metrics");
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert!(content_type.starts_with("text/plain"), "content type {content_type:?}");
    response.text().await.expect("reading the metrics")
}

/// `palisade_http_requests_total` samples: (labels, count).
fn request_counts(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .filter_map(|line| line.strip_prefix("palisade_http_requests_total{"))
        .map(|rest| {
            let (labels, count) = rest.rsplit_once("} ").expect("a sample line");
            (labels.to_string(), count.parse().expect("an integer count"))
        })
        .collect()
}

fn count_where(text: &str, predicate: impl Fn(&str) -> bool) -> u64 {
    request_counts(text).into_iter().filter(|(labels, _)| predicate(labels)).map(|(_, n)| n).sum()
}

/// A distinct 60-byte extension method.
fn garbage_method(i: usize) -> Method {
    let token = format!("GARBAGEMETHOD{i:04}{}", "Q".repeat(43));
    assert_eq!(token.len(), 60);
    Method::from_bytes(token.as_bytes()).expect("a valid method token")
}

fn garbage_path(i: usize) -> String {
    format!("/no-such-path-zz{i:04}-{}", uuid::Uuid::new_v4().simple())
}

/// Sends garbage methods to a routed path and to unknown paths, and GETs of unknown paths.
async fn send_garbage(api: &Api, range: std::ops::Range<usize>) {
    for i in range {
        let resp = api.send(api.request(garbage_method(i), V1)).await;
        assert_eq!(resp.status, StatusCode::METHOD_NOT_ALLOWED, "{}", resp.text);
        let resp = api.send(api.request(garbage_method(i), &garbage_path(i))).await;
        assert!(resp.status.is_client_error(), "{} {}", resp.status, resp.text);
        api.get(&garbage_path(i)).await.expect_error(404, "NotFoundError");
    }
}

#[tokio::test]
async fn the_api_port_does_not_serve_metrics() {
    let app = spawn_app().await;
    app.get("/metrics").await.expect_error(404, "NotFoundError");
    let resp = app.send(app.http.get(app.url("/metrics"))).await;
    resp.expect_error(404, "NotFoundError");
}

#[tokio::test]
async fn the_metrics_listener_counts_api_requests() {
    let served = Served::start(true, &[]).await;
    let api = served.api();
    api.get("/metrics").await.expect_error(404, "NotFoundError");
    for _ in 0..3 {
        api.list_groups("").await;
    }
    api.get("/healthz").await.expect(200);
    let group = api.create_group_v1("metered", serde_json::json!([])).await;
    api.get(&format!("{V1}/{}", id_of(&group))).await.expect(200);
    api.get(&format!("{V1}/{}", uuid::Uuid::new_v4())).await.expect(404);
    let text = scrape(&served).await;
    // Routes are counted under their templates, never under a concrete id.
    let route = "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}";
    for status in ["200", "404"] {
        let series = format!("palisade_http_requests_total{{method=\"GET\",route=\"{route}\",status=\"{status}\"}} 1");
        assert!(text.contains(&series), "missing {series} in:\n{text}");
    }
    assert!(!text.contains(&id_of(&group)), "a concrete id leaked into a label:\n{text}");
    assert!(text.contains(&format!("palisade_http_request_duration_seconds_count{{route=\"{route}\"}} 2")), "{text}");
    assert!(text.contains("# TYPE palisade_http_requests_total counter"), "{text}");
    assert!(
        text.contains(
            "palisade_http_requests_total{method=\"GET\",route=\"/cloud/v1/securitygroups/{project_id}/{region_id}\",status=\"200\"} 3"
        ),
        "{text}"
    );
    assert!(text.contains("palisade_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"), "{text}");
    assert!(text.contains("palisade_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1"), "{text}");
    assert!(
        // The three GETs and the create.
        text.contains("palisade_http_request_duration_seconds_count{route=\"/cloud/v1/securitygroups/{project_id}/{region_id}\"} 4"),
        "{text}"
    );
    // Scrapes are not API requests.
    assert!(!text.contains("route=\"/metrics\""), "{text}");

    // The metrics listener serves nothing else.
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{}", served.metrics_port.unwrap());
    for path in ["/healthz", "/cloud/v1/securitygroups/1/1", "/openapi.json"] {
        let status = http.get(format!("{base}{path}")).send().await.expect("calling the metrics listener").status();
        assert_eq!(status, StatusCode::NOT_FOUND, "{path} on the metrics listener");
    }
    let status = http.post(served.metrics_url()).send().await.expect("calling the metrics listener").status();
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn garbage_methods_and_paths_share_bounded_labels() {
    let served = Served::start(true, &[]).await;
    let api = served.api();
    send_garbage(&api, 0..3).await;
    let text = scrape(&served).await;
    assert!(!text.contains("GARBAGEMETHOD"), "a garbage method reached the metrics:\n{text}");
    assert!(!text.contains("no-such-path"), "a raw path reached the metrics:\n{text}");
    assert!(!text.contains("QQQQ"), "{text}");
    let group_route = "route=\"/cloud/v1/securitygroups/{project_id}/{region_id}\"";
    assert_eq!(count_where(&text, |l| l.starts_with("method=\"OTHER\"") && l.contains(group_route)), 3, "{text}");
    assert_eq!(count_where(&text, |l| l.starts_with("method=\"OTHER\"") && l.contains("route=\"unmatched\"")), 3, "{text}");
    assert_eq!(count_where(&text, |l| l.starts_with("method=\"GET\"") && l.contains("route=\"unmatched\"")), 3, "{text}");
    for (labels, _) in request_counts(&text) {
        let method = labels.strip_prefix("method=\"").and_then(|l| l.split('"').next()).unwrap_or_default();
        assert!(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER"].contains(&method), "method label {method:?}");
    }
}

#[tokio::test]
async fn the_metrics_do_not_grow_with_distinct_garbage() {
    let served = Served::start(true, &[]).await;
    let api = served.api();
    send_garbage(&api, 0..5).await;
    let after_5 = scrape(&served).await;
    send_garbage(&api, 5..50).await;
    let after_50 = scrape(&served).await;
    // As a set: the exposition does not keep the order of series from one scrape to the next.
    let series = |text: &str| -> std::collections::BTreeSet<String> {
        text.lines().filter(|l| !l.starts_with('#')).map(|l| l.rsplit_once(' ').map(|(s, _)| s.to_string()).unwrap_or_default()).collect()
    };
    assert_eq!(series(&after_5), series(&after_50), "new series appeared:\n{after_5}\n---\n{after_50}");
    // Only the numbers changed (counts gain a digit, latency sums vary in length).
    assert!(
        after_50.len() <= after_5.len() + 400,
        "the metrics grew from {} to {} bytes:\n{after_5}\n---\n{after_50}",
        after_5.len(),
        after_50.len()
    );
    assert_eq!(count_where(&after_50, |l| l.starts_with("method=\"OTHER\"")), 100, "{after_50}");
}

// ----- TLS -----

/// A test CA and a server certificate for `localhost` and `127.0.0.1`, as PEM files.
struct Pki {
    ca_cert: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    ca_pem: String,
    _dir: TempDir,
}

fn make_pki(label: &str) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let dir = TempDir::new("pki");
    let ca_key = KeyPair::generate().expect("a CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, format!("Palisade test CA {label}"));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca_params.self_signed(&ca_key).expect("the CA certificate");
    let key = KeyPair::generate().expect("a server key");
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("server parameters");
    params.distinguished_name.push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params.signed_by(&key, &Issuer::from_params(&ca_params, &ca_key)).expect("the server certificate");
    let write = |name: &str, text: &str| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("writing a PEM file");
        path
    };
    Pki {
        ca_cert: write("ca.pem", &ca_cert.pem()),
        cert: write("server.pem", &cert.pem()),
        key: write("server-key.pem", &key.serialize_pem()),
        ca_pem: ca_cert.pem(),
        _dir: dir,
    }
}

fn client_trusting(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).expect("the CA certificate"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("building the HTTPS client")
}

async fn start_tls(pki: &Pki) -> Served {
    let (cert, key) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap());
    Served::start(false, &["--tls-cert", cert, "--tls-key", key]).await
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 path")
}

#[tokio::test]
async fn https_serves_clients_that_trust_the_ca() {
    let pki = make_pki("a");
    let mut served = start_tls(&pki).await;
    for base in [format!("https://127.0.0.1:{}", served.port), format!("https://localhost:{}", served.port)] {
        let api = Api { base, http: client_trusting(&pki.ca_pem), token: served.token.clone() };
        let health = api.send(api.http.get(api.url("/healthz"))).await;
        assert_eq!(health.status, StatusCode::OK, "{}", health.text);
        let groups = api.list_groups("").await;
        assert_eq!(groups["count"], 0, "{groups}");
        api.get(V1).await.expect(200);
        // The key is still required over HTTPS.
        api.with_token("1$nope").get(V1).await.expect_error(401, "NotAuthenticated");
    }

    // Plain HTTP to the TLS port gets no HTTP answer.
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap();
    let result = plain.get(format!("http://127.0.0.1:{}/healthz", served.port)).send().await;
    assert!(result.is_err(), "plain HTTP to the TLS port was answered: {result:?}");

    // A client that does not trust the CA fails the handshake: with the platform's roots, and
    // with another CA.
    let result = reqwest::Client::new().get(format!("https://127.0.0.1:{}/healthz", served.port)).send().await;
    let error = result.expect_err("a client without the CA was answered");
    assert!(error.is_connect(), "{error:?}");
    let other = make_pki("b");
    let result = client_trusting(&other.ca_pem).get(format!("https://127.0.0.1:{}/healthz", served.port)).send().await;
    assert!(result.expect_err("a client trusting another CA was answered").is_connect());

    // The server still answers after the failed handshakes, and stops gracefully on SIGTERM.
    let health = client_trusting(&pki.ca_pem).get(format!("https://127.0.0.1:{}/healthz", served.port)).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let status = served.terminate().await;
    assert!(status.success(), "exit status {status}:\n{}", served.log_text());
}

#[tokio::test]
async fn a_silent_client_does_not_block_other_handshakes() {
    let pki = make_pki("c");
    let served = start_tls(&pki).await;
    // Connects and never sends a ClientHello.
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", served.port)).await.expect("connecting");
    let client = client_trusting(&pki.ca_pem).get(format!("https://127.0.0.1:{}/healthz", served.port));
    let response = tokio::time::timeout(Duration::from_secs(5), client.send()).await.expect("blocked by a silent client").unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_agent_client_fetches_the_policy_over_https_with_its_ca() {
    use palisade_dataplane::agent::{Agent, AgentConfig, http_client};
    let pki = make_pki("d");
    let served = start_tls(&pki).await;
    let agent_key = served.create_key(palisade::startup::KeySpec::agent("host-a", "agent"));
    let config = |ca_cert: Option<PathBuf>| AgentConfig {
        api: format!("https://localhost:{}", served.port),
        host: "host-a".into(),
        api_key: agent_key.clone(),
        wait: 1,
        tools: Default::default(),
        ca_cert,
    };
    let agent = Agent::new(config(Some(pki.ca_cert.clone()))).expect("the agent");
    let policy = agent.policy().await.expect("fetching the policy over HTTPS");
    assert!(policy.revision >= 0);

    // Without the CA (platform roots only), or with another CA, the handshake fails.
    let error = Agent::new(config(None)).unwrap().policy().await.expect_err("fetched without trusting the CA");
    assert!(format!("{error:#}").contains("asking the API for the policy"), "{error:#}");
    let other = make_pki("e");
    Agent::new(config(Some(other.ca_cert.clone()))).unwrap().policy().await.expect_err("fetched trusting another CA");

    // A CA file without certificates is refused when the client is built.
    let empty = served.dir.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    assert!(http_client(Some(&empty)).is_err());
    assert!(http_client(Some(&served.dir.path().join("missing.pem"))).is_err());
}

#[tokio::test]
async fn tls_needs_both_the_certificate_and_the_key() {
    let pki = make_pki("f");
    // `palisade serve` with these flags exits at once; what it said on stderr.
    let refused = |database: &[&str], flags: &[&str]| -> String {
        let output = serve_command(database).args(["--listen", "127.0.0.1:0"]).args(flags).output().expect("running palisade serve");
        assert!(!output.status.success(), "serve started with {database:?} {flags:?}");
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    for args in [["--tls-cert", path_str(&pki.cert)], ["--tls-key", path_str(&pki.key)]] {
        let dir = TempDir::new("tls-args");
        let stderr = refused(&["--data-dir", path_str(dir.path())], &["--no-bootstrap-key", args[0], args[1]]);
        assert!(stderr.contains("give both or neither"), "{stderr}");
    }
    // The same from the TOML file.
    let dir = TempDir::new("tls-args");
    let config = dir.path().join("palisade.toml");
    std::fs::write(&config, format!("tls_cert = {:?}\n", path_str(&pki.cert))).unwrap();
    let stderr = refused(&["--config", path_str(&config), "--data-dir", path_str(dir.path())], &[]);
    assert!(stderr.contains("give both or neither"), "{stderr}");
    // A key that is not a key is refused at start.
    let dir = TempDir::new("tls-args");
    let stderr = refused(
        &["--data-dir", path_str(dir.path())],
        &["--no-bootstrap-key", "--tls-cert", path_str(&pki.cert), "--tls-key", path_str(&pki.ca_cert)],
    );
    assert!(stderr.contains("--tls-key"), "{stderr}");
}
