//! The `soak` workload (issue 12, "Soak"; `scripts/soak.sh`): mixed load for `--duration`
//! seconds (and at most `--count` operations), paced so that it is the same load from the first
//! minute to the last, then checks of what a long run must not do.
//!
//! Load, each on its own loop:
//! - writers (`--soak-writers`, `--soak-rate` operations per second each): v2 creates of groups of
//!   a few rules (waiting for their tasks), v2 PATCHes that swap the desired rule set and
//!   merge-patch the tags, v2 rule adds and deletes, v1 deletes of the oldest groups, keeping about
//!   `--soak-groups` groups alive; one group bound to a port of `--soak-host` is patched too, so
//!   the host's policy keeps changing;
//! - a reader: v1 lists, GETs, task lists, verdicts, port lists;
//! - agent long-polls (`--soak-longpolls`) of the host's policy with `after`, `wait` and
//!   `If-None-Match`, as `palisade agent` does;
//! - bad inputs: malformed JSON, a body over `--soak-max-body`, unknown fields (100 KB of them),
//!   nulls and upper-case enums where Gcore's schema refuses them, a description of 100 KB,
//!   251 rules, a 64-character method; each with the answer it must get;
//! - `--soak-idle` connections that send nothing, and `--soak-slow` connections that send a
//!   request one byte per second (half the headers, half the body); each reconnects when the
//!   server closes it;
//! - `/healthz` every second.
//!
//! Sampled every `--soak-sample-s`: the server's RSS and open file descriptors (`--server-pid`),
//! the database size (`--soak-db` files), the task counts, the `/metrics` size.
//!
//! Checks (each printed with its figures; any failure fails the run): no 5xx and no request left
//! unanswered; every task finished (none NEW or RUNNING once the load stops and the queue drains);
//! RSS after the warm-up flat within `--soak-rss-growth`; the database grows by at most
//! `--soak-bytes-per-write` per write after the warm-up and stores no unknown field; `/healthz`
//! always 200 within 2 s; every bad input answered as it must be; idle and slow connections closed
//! by the server within its timeouts.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::Args;
use crate::client::{Client, Response, Target};
use crate::stats::{Summary, round3};

#[derive(clap::Args, Debug, Clone)]
pub struct SoakArgs {
    /// soak: a platform key; registers a port on `--soak-host` bound to a group the soak keeps patching.
    #[arg(long, env = "PALISADE_SOAK_PLATFORM_KEY", hide_env_values = true)]
    pub soak_platform_key: Option<String>,
    /// soak: the agent key of `--soak-host`, for the policy long-polls.
    #[arg(long, env = "PALISADE_SOAK_AGENT_KEY", hide_env_values = true)]
    pub soak_agent_key: Option<String>,
    #[arg(long, default_value = "h1")]
    pub soak_host: String,
    /// soak: the client id of `--api-key` (the port's client).
    #[arg(long, default_value_t = 1)]
    pub soak_client_id: i64,
    /// soak: files whose sizes add up to the database's (the SQLite file, its WAL).
    #[arg(long, value_delimiter = ',')]
    pub soak_db: Vec<PathBuf>,
    /// soak: seconds between samples.
    #[arg(long, default_value_t = 5.0)]
    pub soak_sample_s: f64,
    /// soak: seconds of warm-up before the flatness checks' baseline (default: a fifth of the run).
    #[arg(long)]
    pub soak_warmup_s: Option<f64>,
    /// soak: groups kept alive by the writers.
    #[arg(long, default_value_t = 100)]
    pub soak_groups: usize,
    #[arg(long, default_value_t = 2)]
    pub soak_writers: usize,
    /// soak: operations per second of each writer (and of the reader).
    #[arg(long, default_value_t = 20.0)]
    pub soak_rate: f64,
    /// soak: readers (each at `--soak-rate`).
    #[arg(long, default_value_t = 1)]
    pub soak_readers: usize,
    #[arg(long, default_value_t = 2)]
    pub soak_longpolls: usize,
    /// soak: no bad inputs (to look at the rest of the load alone).
    #[arg(long)]
    pub soak_no_bad: bool,
    /// soak: the long-polls' `wait` (seconds).
    #[arg(long, default_value_t = 10)]
    pub soak_wait_s: u64,
    #[arg(long, default_value_t = 100)]
    pub soak_idle: usize,
    #[arg(long, default_value_t = 10)]
    pub soak_slow: usize,
    /// soak: what the slow connections send slowly: `both` (half each), `headers` or `body`.
    #[arg(long, default_value = "both")]
    pub soak_slow_mode: String,
    /// soak: pause between two bad requests (ms).
    #[arg(long, default_value_t = 250)]
    pub soak_bad_pause_ms: u64,
    /// soak: the server's body limit; the oversized request sends twice as much.
    #[arg(long, default_value_t = 1 << 20)]
    pub soak_max_body: usize,
    /// soak: RSS growth allowed after the warm-up (0.10 = 10 %).
    #[arg(long, default_value_t = 0.10)]
    pub soak_rss_growth: f64,
    /// soak: database bytes per write allowed after the warm-up.
    #[arg(long, default_value_t = 4096.0)]
    pub soak_bytes_per_write: f64,
    /// soak: the server's header, body and idle timeouts (s): slow and idle connections must be
    /// closed within them (plus 5 s).
    #[arg(long, default_value_t = 10)]
    pub soak_header_timeout: u64,
    #[arg(long, default_value_t = 30)]
    pub soak_body_timeout: u64,
    #[arg(long, default_value_t = 60)]
    pub soak_idle_timeout: u64,
    /// soak: the `/metrics` URL (its size is sampled: bounded labels keep it flat).
    #[arg(long)]
    pub soak_metrics_url: Option<String>,
}

/// One sample of the server's footprint.
#[derive(Debug, Clone, Default)]
struct Sample {
    t: f64,
    rss_kb: u64,
    /// The anonymous part of the RSS (heap, stacks), without mapped files.
    anon_kb: u64,
    fds: u64,
    db_bytes: u64,
    tasks: u64,
    unfinished: u64,
    writes: u64,
    metrics_bytes: u64,
}

/// How a bad input was answered.
#[derive(Debug, Default)]
struct BadOutcome {
    sent: u64,
    expected: u64,
    unexpected: BTreeMap<String, u64>,
}

/// What a slow or idle connection came to.
#[derive(Debug, Default)]
struct ConnOutcomes {
    opened: u64,
    refused: u64,
    /// Seconds each connection the server closed (or answered) had been open, by what happened.
    closed: BTreeMap<String, Vec<f64>>,
    /// Ages (s) of the connections still open when the run ended.
    open_at_end: Vec<f64>,
    /// Longest time any connection was open, closed or not.
    longest_s: f64,
}

struct Shared {
    start: Instant,
    deadline: Instant,
    ops_left: AtomicU64,
    tag: String,
    v1: String,
    v2: String,
    statuses: Mutex<BTreeMap<u16, u64>>,
    by_op: Mutex<BTreeMap<&'static str, u64>>,
    server_errors: Mutex<Vec<String>>,
    failures: Mutex<(u64, Vec<String>)>,
    unexpected: Mutex<(u64, Vec<String>)>,
    throttled: AtomicU64,
    writes: AtomicU64,
    groups: Mutex<VecDeque<String>>,
    tasks: Mutex<Vec<String>>,
    bad: Mutex<BTreeMap<&'static str, BadOutcome>>,
    unknown_stored: AtomicU64,
    idle: Mutex<ConnOutcomes>,
    slow: Mutex<ConnOutcomes>,
    health: Mutex<(Vec<u32>, u64, Vec<String>)>,
    samples: Mutex<Vec<Sample>>,
    polls: AtomicU64,
    longpolls: Mutex<BTreeMap<u16, u64>>,
}

fn push_sample(list: &mut Vec<String>, message: String) {
    if list.len() < 5 {
        list.push(message);
    }
}

impl Shared {
    fn running(&self) -> bool {
        Instant::now() < self.deadline
    }

    /// Takes one operation from the `--count` budget.
    fn take(&self) -> bool {
        self.running() && self.ops_left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1)).is_ok()
    }

    fn op(&self, name: &'static str) {
        *self.by_op.lock().unwrap().entry(name).or_default() += 1;
    }

    /// Counts a response's status; a 5xx is kept as a sample.
    fn status(&self, what: &str, response: &Response) {
        let code = response.status.as_u16();
        *self.statuses.lock().unwrap().entry(code).or_default() += 1;
        if code >= 500 {
            push_sample(&mut self.server_errors.lock().unwrap(), format!("{what}: {code} {}", response.snippet()));
        }
    }

    /// A request that got no answer (connection error, timeout).
    fn failure(&self, what: &str, error: &anyhow::Error) {
        let mut failures = self.failures.lock().unwrap();
        failures.0 += 1;
        push_sample(&mut failures.1, format!("{what}: {error:#}"));
    }

    /// An answer a well-formed request should not get (a 4xx other than the races the load
    /// makes on purpose: 404 and 409).
    fn unexpected(&self, what: &str, response: &Response) {
        let mut unexpected = self.unexpected.lock().unwrap();
        unexpected.0 += 1;
        push_sample(&mut unexpected.1, format!("{what}: {} {}", response.status.as_u16(), response.snippet()));
    }
}

/// Sends one request, counts its status, waits out a 429's `Retry-After` (at most 2 s).
#[allow(clippy::too_many_arguments)]
async fn send(
    shared: &Shared,
    client: &mut Client,
    what: &str,
    method: Method,
    path: &str,
    body: Option<Bytes>,
    headers: &[(&'static str, HeaderValue)],
    timeout: Duration,
) -> Option<Response> {
    match tokio::time::timeout(timeout, client.send_with(method, path, body, headers)).await {
        Ok(Ok(response)) => {
            shared.status(what, &response);
            if response.status == StatusCode::TOO_MANY_REQUESTS {
                shared.throttled.fetch_add(1, Ordering::Relaxed);
                let wait = response.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<f64>().ok());
                tokio::time::sleep(Duration::from_secs_f64(wait.unwrap_or(1.0).clamp(0.05, 2.0))).await;
            }
            Some(response)
        }
        Ok(Err(e)) => {
            shared.failure(what, &e);
            None
        }
        Err(_) => {
            shared.failure(what, &anyhow::anyhow!("no answer within {} s", timeout.as_secs()));
            None
        }
    }
}

const TIMEOUT: Duration = Duration::from_secs(30);

fn json_body(value: &Value) -> Option<Bytes> {
    Some(Bytes::from(serde_json::to_vec(value).expect("JSON")))
}

/// A well-formed request: 2xx is fine, 404/409 are the races the load makes (a group deleted
/// while another loop patches it), 429 is a rate limit; anything else is unexpected.
async fn request(shared: &Shared, client: &mut Client, what: &str, method: Method, path: &str, body: Option<&Value>) -> Option<Value> {
    let response = send(shared, client, what, method, path, body.and_then(json_body), &[], TIMEOUT).await?;
    match response.status.as_u16() {
        200..=299 => Some(response.json().unwrap_or(Value::Null)),
        404 | 409 | 429 => None,
        _ => {
            shared.unexpected(what, &response);
            None
        }
    }
}

/// Polls a task until FINISHED or ERROR (at most 60 s); its last state.
async fn wait_task(shared: &Shared, client: &mut Client, id: &str) -> Option<Value> {
    let path = format!("/cloud/v1/tasks/{id}");
    let until = Instant::now() + Duration::from_secs(60);
    let mut pause = Duration::from_millis(2);
    while Instant::now() < until {
        shared.polls.fetch_add(1, Ordering::Relaxed);
        let task = request(shared, client, "GET task", Method::GET, &path, None).await?;
        if matches!(task.get("state").and_then(Value::as_str), Some("FINISHED" | "ERROR")) {
            return Some(task);
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
    None
}

fn first_task(body: &Value) -> Option<String> {
    body.pointer("/tasks/0").and_then(Value::as_str).map(str::to_owned)
}

/// The desired rule sets the PATCHes cycle through: each step creates and deletes some rules.
fn rule_set(k: u64) -> Value {
    let ssh = json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "10.0.0.0/8"});
    let http = json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 80, "port_range_max": 80});
    let dns = json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "udp", "port_range_min": 53, "port_range_max": 53});
    let ping = json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp", "port_range_min": 8, "port_range_max": 0});
    let v6 = json!({"direction": "ingress", "ethertype": "IPv6", "protocol": "tcp", "port_range_min": 8080, "port_range_max": 8090, "remote_ip_prefix": "fd00::/8"});
    let egress = json!({"direction": "egress", "ethertype": "IPv4", "protocol": "any"});
    match k % 4 {
        0 => json!([ssh, http, egress]),
        1 => json!([ssh, dns, ping]),
        2 => json!([]),
        _ => json!([ssh, http, egress, v6]),
    }
}

/// A v2 create (waiting for its task); the new group's id.
async fn create(shared: &Shared, client: &mut Client, n: u64) -> Option<String> {
    let body = json!({"name": format!("soak-{}-{n}", shared.tag), "description": "soak", "rules": rule_set(n), "tags": {"soak": "1"}});
    let created = request(shared, client, "POST v2 group", Method::POST, &shared.v2, Some(&body)).await?;
    let task = first_task(&created)?;
    shared.tasks.lock().unwrap().push(task.clone());
    shared.writes.fetch_add(1, Ordering::Relaxed);
    let done = wait_task(shared, client, &task).await?;
    done.pointer("/created_resources/security_groups/0").and_then(Value::as_str).map(str::to_owned)
}

async fn patch(shared: &Shared, client: &mut Client, group: &str, k: u64) {
    let body = json!({"rules": rule_set(k), "tags": {"round": (k % 7).to_string(), "tmp": null}});
    let path = format!("{}/{group}", shared.v2);
    if let Some(task) = request(shared, client, "PATCH v2 group", Method::PATCH, &path, Some(&body)).await.as_ref().and_then(first_task) {
        shared.tasks.lock().unwrap().push(task.clone());
        shared.writes.fetch_add(1, Ordering::Relaxed);
        wait_task(shared, client, &task).await;
    }
}

/// A v2 rule add, then its v2 delete. Writer `w`'s ports never meet another writer's, so two
/// writers on one group never ask for the same rule.
async fn rule_add_delete(shared: &Shared, client: &mut Client, group: &str, n: u64, w: u64) {
    let port = 10_000 + (n % 10_000) * 5 + w % 5;
    let rule = json!({"direction": "egress", "ethertype": "IPv4", "protocol": "udp", "port_range_min": port, "port_range_max": port});
    let path = format!("{}/{group}/rules", shared.v2);
    let Some(task) = request(shared, client, "POST v2 rule", Method::POST, &path, Some(&rule)).await.as_ref().and_then(first_task) else {
        return;
    };
    shared.tasks.lock().unwrap().push(task.clone());
    shared.writes.fetch_add(1, Ordering::Relaxed);
    let Some(done) = wait_task(shared, client, &task).await else { return };
    let Some(rule_id) = done.pointer("/created_resources/security_group_rules/0").and_then(Value::as_str) else { return };
    let path = format!("{}/{group}/rules/{rule_id}", shared.v2);
    if let Some(task) = request(shared, client, "DELETE v2 rule", Method::DELETE, &path, None).await.as_ref().and_then(first_task) {
        shared.tasks.lock().unwrap().push(task.clone());
        shared.writes.fetch_add(1, Ordering::Relaxed);
        wait_task(shared, client, &task).await;
    }
}

async fn delete_oldest(shared: &Shared, client: &mut Client) {
    let Some(group) = shared.groups.lock().unwrap().pop_front() else { return };
    let path = format!("{}/{group}", shared.v1);
    if request(shared, client, "DELETE v1 group", Method::DELETE, &path, None).await.is_some() {
        shared.writes.fetch_add(1, Ordering::Relaxed);
    }
}

fn random_group(shared: &Shared, n: u64) -> Option<String> {
    let groups = shared.groups.lock().unwrap();
    if groups.is_empty() { None } else { groups.get((n as usize).wrapping_mul(2_654_435_761) % groups.len()).cloned() }
}

pub(crate) fn pacer(rate: f64) -> tokio::time::Interval {
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.01)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval
}

async fn writer(shared: Arc<Shared>, mut client: Client, w: u64, rate: f64, target: usize, bound: Option<String>) {
    let mut pace = pacer(rate);
    let mut n = w * 1_000_000_000;
    while shared.take() {
        pace.tick().await;
        n += 1;
        let live = shared.groups.lock().unwrap().len();
        match n % 10 {
            0..=2 | 8 if live < target => {
                shared.op("create");
                if let Some(id) = create(&shared, &mut client, n).await {
                    shared.groups.lock().unwrap().push_back(id);
                }
            }
            0..=2 | 8 => {
                shared.op("delete");
                delete_oldest(&shared, &mut client).await;
            }
            3..=5 => {
                if let Some(group) = random_group(&shared, n) {
                    shared.op("patch");
                    patch(&shared, &mut client, &group, n).await;
                }
            }
            6 => {
                if let Some(group) = random_group(&shared, n) {
                    shared.op("rule add+delete");
                    rule_add_delete(&shared, &mut client, &group, n, w).await;
                }
            }
            7 => {
                if let Some(group) = &bound {
                    shared.op("patch bound group");
                    patch(&shared, &mut client, group, n).await;
                }
            }
            _ => {
                if live > target / 2 {
                    shared.op("delete");
                    delete_oldest(&shared, &mut client).await;
                }
            }
        }
    }
}

async fn reader(shared: Arc<Shared>, mut client: Client, rate: f64) {
    let mut pace = pacer(rate);
    let mut n: u64 = 0;
    while shared.take() {
        pace.tick().await;
        n += 1;
        match n % 6 {
            0 => {
                shared.op("list groups");
                let path = format!("{}?limit=50&offset={}", shared.v1, (n / 6 % 3) * 50);
                request(&shared, &mut client, "list groups", Method::GET, &path, None).await;
            }
            1 | 4 => {
                if let Some(group) = random_group(&shared, n) {
                    shared.op("get group");
                    request(&shared, &mut client, "GET group", Method::GET, &format!("{}/{group}", shared.v1), None).await;
                }
            }
            2 => {
                shared.op("list tasks");
                request(&shared, &mut client, "list tasks", Method::GET, "/cloud/v1/tasks?limit=100", None).await;
            }
            3 => {
                if let Some(group) = random_group(&shared, n) {
                    shared.op("verdict");
                    let body = json!({"security_group_ids": [group], "direction": "ingress", "remote_ip": "10.1.2.3", "protocol": "tcp", "port": 22});
                    request(&shared, &mut client, "verdict", Method::POST, "/palisade/v1/verdicts", Some(&body)).await;
                }
            }
            _ => {
                shared.op("list ports");
                request(&shared, &mut client, "list ports", Method::GET, "/palisade/v1/ports", None).await;
            }
        }
    }
}

async fn long_poll(shared: Arc<Shared>, mut client: Client, host: String, wait: u64) {
    let mut after: i64 = 0;
    let mut etag: Option<HeaderValue> = None;
    while shared.running() {
        let path = format!("/palisade/v1/agents/{host}/policy?after={after}&wait={wait}");
        let headers: Vec<(&'static str, HeaderValue)> = etag.iter().map(|t| ("if-none-match", t.clone())).collect();
        let timeout = Duration::from_secs(wait + 20);
        shared.op("agent long-poll");
        let Some(response) = send(&shared, &mut client, "agent long-poll", Method::GET, &path, None, &headers, timeout).await else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        *shared.longpolls.lock().unwrap().entry(response.status.as_u16()).or_default() += 1;
        let revision = response.headers.get("x-policy-revision").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i64>().ok());
        match response.status.as_u16() {
            200 => {
                etag = response.headers.get("etag").cloned();
                after = revision.unwrap_or(after);
            }
            304 => after = revision.unwrap_or(after),
            429 => {}
            _ => {
                shared.unexpected("agent long-poll", &response);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// The bad inputs, in turn, each with the statuses it may get.
async fn bad_inputs(shared: Arc<Shared>, mut client: Client, pause: Duration, max_body: usize, target: Target, api_key: String) {
    let mut n: u64 = 0;
    while shared.take() {
        tokio::time::sleep(pause).await;
        n += 1;
        let name = format!("soak-bad-{}-{n}", shared.tag);
        let v2 = shared.v2.clone();
        let (case, method, path, body, expected): (&'static str, Method, String, Vec<u8>, &[u16]) = match n % 10 {
            0 => ("malformed JSON", Method::POST, v2, br#"{"name": "soak", "rules": ["#.to_vec(), &[400, 422]),
            1 => {
                // Raw, reading while writing: a server that answers 413 and closes before the body
                // is all sent would make an HTTP client lose the answer to a reset.
                shared.op("bad input");
                let body = serde_json::to_vec(&json!({"name": name, "description": "d".repeat(2 * max_body)})).unwrap();
                let head = format!(
                    "POST {v2} HTTP/1.1\r\nHost: soak\r\nAuthorization: APIKey {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    api_key,
                    body.len()
                );
                let outcome = raw_exchange(&target, head.into_bytes(), body).await;
                record_bad(&shared, "body over the limit", outcome, &[413]);
                continue;
            }
            2 => {
                let rule = json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "soak_junk_rule": "j".repeat(1000)});
                let body = json!({"name": name, "rules": [rule], "soak_junk": "j".repeat(100_000)});
                ("unknown fields", Method::POST, v2, serde_json::to_vec(&body).unwrap(), &[200])
            }
            3 => match random_group(&shared, n) {
                Some(group) => {
                    ("null name in a v2 PATCH", Method::PATCH, format!("{v2}/{group}"), br#"{"name": null}"#.to_vec(), &[400, 404])
                }
                None => continue,
            },
            4 => ("null tags in a v2 create", Method::POST, v2, serde_json::to_vec(&json!({"name": name, "tags": null})).unwrap(), &[400]),
            5 => {
                let body = json!({"name": name, "rules": [{"direction": "ingress", "protocol": "TCP"}]});
                ("upper-case protocol", Method::POST, v2, serde_json::to_vec(&body).unwrap(), &[400])
            }
            6 => {
                let body = json!({"name": name, "description": "d".repeat(100_000)});
                ("description of 100 KB", Method::POST, v2, serde_json::to_vec(&body).unwrap(), &[400])
            }
            7 => match random_group(&shared, n) {
                Some(group) => ("null PATCH body", Method::PATCH, format!("{v2}/{group}"), b"null".to_vec(), &[400, 404]),
                None => continue,
            },
            8 => {
                let rules: Vec<Value> = (0..251)
                    .map(|p| json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 1000 + p, "port_range_max": 1000 + p}))
                    .collect();
                ("251 rules", Method::POST, v2, serde_json::to_vec(&json!({"name": name, "rules": rules})).unwrap(), &[400])
            }
            _ => {
                shared.op("bad input");
                let method: String = (0..64).map(|i| (b'A' + ((n + i) % 26) as u8) as char).collect();
                let head = format!("{method} /healthz HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n");
                let outcome = raw_exchange(&target, head.into_bytes(), Vec::new()).await;
                record_bad(&shared, "64-character method", outcome, &[400, 405, 414, 431]);
                continue;
            }
        };
        shared.op("bad input");
        // Counted here, not as a failed request: a bad input without an answer fails its own check.
        let response = match tokio::time::timeout(TIMEOUT, client.send_with(method, &path, Some(Bytes::from(body)), &[])).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                record_bad(&shared, case, Err(format!("no answer ({e})")), expected);
                continue;
            }
            Err(_) => {
                record_bad(&shared, case, Err("no answer within 30 s".into()), expected);
                continue;
            }
        };
        shared.status(case, &response);
        record_bad(&shared, case, Ok(response.status.as_u16()), expected);
        if case == "unknown fields" && response.status == StatusCode::OK {
            check_unknown_fields(&shared, &mut client, &response).await;
        }
    }
}

fn record_bad(shared: &Shared, case: &'static str, outcome: Result<u16, String>, expected: &[u16]) {
    let mut bad = shared.bad.lock().unwrap();
    let entry = bad.entry(case).or_default();
    entry.sent += 1;
    match outcome {
        Ok(code) if expected.contains(&code) => entry.expected += 1,
        Ok(code) => *entry.unexpected.entry(code.to_string()).or_default() += 1,
        Err(e) => *entry.unexpected.entry(e).or_default() += 1,
    }
}

/// The accepted create with unknown fields: its task must not hold them, and its group goes.
async fn check_unknown_fields(shared: &Shared, client: &mut Client, response: &Response) {
    let Some(task) = response.json().ok().as_ref().and_then(first_task) else { return };
    shared.tasks.lock().unwrap().push(task.clone());
    shared.writes.fetch_add(1, Ordering::Relaxed);
    let Some(done) = wait_task(shared, client, &task).await else { return };
    let text = done.to_string();
    if text.contains("soak_junk") {
        shared.unknown_stored.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(group) = done.pointer("/created_resources/security_groups/0").and_then(Value::as_str)
        && request(shared, client, "DELETE v1 group", Method::DELETE, &format!("{}/{group}", shared.v1), None).await.is_some()
    {
        shared.writes.fetch_add(1, Ordering::Relaxed);
    }
}

/// Sends `head` then `body` on a connection of its own while reading the answer: the answer's
/// status, or what happened instead.
async fn raw_exchange(target: &Target, head: Vec<u8>, body: Vec<u8>) -> Result<u16, String> {
    let exchange = async {
        let stream = TcpStream::connect(target.addr).await.map_err(|e| format!("connect: {e}"))?;
        let (mut read, mut write) = stream.into_split();
        let writer = async move {
            // Errors are the server closing early: the answer, if any, is what counts.
            if write.write_all(&head).await.is_ok() {
                let _ = write.write_all(&body).await;
            }
            std::future::pending::<()>().await;
        };
        let reader = async {
            let mut buf = vec![0u8; 256];
            let mut got = 0;
            while got < 12 {
                match read.read(&mut buf[got..]).await {
                    Ok(0) => return Err("closed without an answer".to_string()),
                    Ok(k) => got += k,
                    Err(e) => return Err(format!("{} before an answer", e.kind())),
                }
            }
            let line = String::from_utf8_lossy(&buf[..got]).into_owned();
            line.get(9..12).and_then(|c| c.parse::<u16>().ok()).ok_or_else(|| format!("not HTTP: {line:?}"))
        };
        tokio::select! {
            outcome = reader => outcome,
            () = writer => unreachable!("the writer never ends"),
        }
    };
    tokio::time::timeout(Duration::from_secs(20), exchange).await.unwrap_or_else(|_| Err("no answer within 20 s".into()))
}

/// Holds a connection that sends nothing until the server closes it; then opens another.
async fn idle_connection(shared: Arc<Shared>, target: Target) {
    while shared.running() {
        let Ok(mut stream) = TcpStream::connect(target.addr).await else {
            shared.idle.lock().unwrap().refused += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let opened = Instant::now();
        shared.idle.lock().unwrap().opened += 1;
        let mut buf = [0u8; 512];
        let outcome = tokio::time::timeout_at(shared.deadline.into(), stream.read(&mut buf)).await;
        let lived = opened.elapsed().as_secs_f64();
        let mut idle = shared.idle.lock().unwrap();
        idle.longest_s = idle.longest_s.max(lived);
        match outcome {
            Err(_) => idle.open_at_end.push(lived),
            Ok(Ok(0)) | Ok(Err(_)) => idle.closed.entry("closed".into()).or_default().push(lived),
            Ok(Ok(k)) => {
                let status = String::from_utf8_lossy(&buf[..k]).get(9..12).unwrap_or("???").to_string();
                idle.closed.entry(format!("answered {status}")).or_default().push(lived);
            }
        }
    }
}

/// Sends a request one byte per second (the headers, or a body after quick headers) until the
/// server answers or closes; then starts again.
async fn slow_connection(shared: Arc<Shared>, target: Target, api_key: String, body_mode: bool, v2: String) {
    while shared.running() {
        let Ok(stream) = TcpStream::connect(target.addr).await else {
            shared.slow.lock().unwrap().refused += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        let opened = Instant::now();
        shared.slow.lock().unwrap().opened += 1;
        let (mut read, mut write) = stream.into_split();
        let (quick, slow) = if body_mode {
            let headers = format!(
                "POST {v2} HTTP/1.1\r\nHost: soak\r\nAuthorization: APIKey {api_key}\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n"
            );
            (headers.into_bytes(), format!("{{\"name\": \"soak-slow\", \"description\": \"{}\"}}", "s".repeat(3950)).into_bytes())
        } else {
            (Vec::new(), format!("GET /healthz HTTP/1.1\r\nHost: soak\r\nX-Soak: {}\r\n\r\n", "s".repeat(200)).into_bytes())
        };
        let writer = async move {
            if write.write_all(&quick).await.is_err() {
                return;
            }
            for byte in slow {
                if write.write_all(&[byte]).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            std::future::pending::<()>().await;
        };
        let reader = async {
            let mut buf = [0u8; 512];
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => "closed".to_string(),
                Ok(k) => format!("answered {}", String::from_utf8_lossy(&buf[..k]).get(9..12).unwrap_or("???")),
            }
        };
        let outcome = tokio::time::timeout_at(shared.deadline.into(), async {
            tokio::select! {
                what = reader => what,
                () = writer => "sent whole".to_string(),
            }
        })
        .await;
        let lived = opened.elapsed().as_secs_f64();
        let mut slow = shared.slow.lock().unwrap();
        slow.longest_s = slow.longest_s.max(lived);
        match outcome {
            Err(_) => slow.open_at_end.push(lived),
            Ok(what) => {
                let mode = if body_mode { "body" } else { "headers" };
                slow.closed.entry(format!("{mode}: {what}")).or_default().push(lived);
            }
        }
    }
}

async fn health(shared: Arc<Shared>, mut client: Client) {
    let mut pace = pacer(1.0);
    while shared.running() {
        pace.tick().await;
        let t = Instant::now();
        let outcome = tokio::time::timeout(Duration::from_secs(2), client.get("/healthz")).await;
        let micros = t.elapsed().as_micros().min(u32::MAX as u128) as u32;
        let mut health = shared.health.lock().unwrap();
        match outcome {
            Ok(Ok(r)) if r.status == StatusCode::OK => health.0.push(micros),
            Ok(Ok(r)) => {
                health.1 += 1;
                push_sample(&mut health.2, format!("/healthz: {}", r.status.as_u16()));
            }
            Ok(Err(e)) => {
                health.1 += 1;
                push_sample(&mut health.2, format!("/healthz: {e:#}"));
            }
            Err(_) => {
                health.1 += 1;
                push_sample(&mut health.2, "/healthz: no answer within 2 s".into());
            }
        }
    }
}

/// A `kB` field of `/proc/<pid>/status` (`VmRSS`, `RssAnon`).
fn status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0)
}

/// A GET that waits out 429s (up to ten times, as the official clients do).
async fn get_patiently(client: &mut Client, path: &str) -> anyhow::Result<Response> {
    for _ in 0..10 {
        let response = client.get(path).await?;
        if response.status != StatusCode::TOO_MANY_REQUESTS {
            return Ok(response);
        }
        let wait = response.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<f64>().ok());
        tokio::time::sleep(Duration::from_secs_f64(wait.unwrap_or(1.0).clamp(0.05, 5.0))).await;
    }
    bail!("GET {path}: still 429 after ten tries")
}

/// The `count` of a list; `None` when it could not be read.
async fn count(client: &mut Client, path: &str) -> Option<u64> {
    match get_patiently(client, path).await {
        Ok(r) if r.status == StatusCode::OK => r.json().ok().and_then(|v| v.get("count").and_then(Value::as_u64)),
        _ => None,
    }
}

/// What a sample reads: the server's process and the database files.
#[derive(Clone)]
struct Probe {
    pid: u32,
    db: Vec<PathBuf>,
}

async fn sample(shared: &Shared, client: &mut Client, metrics: &mut Option<Client>, probe: &Probe) -> Sample {
    let pid = probe.pid;
    let metrics_bytes = match metrics {
        Some(m) => m.get("/metrics").await.map(|r| r.body.len() as u64).unwrap_or(0),
        None => 0,
    };
    Sample {
        t: shared.start.elapsed().as_secs_f64(),
        rss_kb: status_kb(pid, "VmRSS"),
        anon_kb: status_kb(pid, "RssAnon"),
        fds: fds(pid),
        db_bytes: probe.db.iter().filter_map(|p| std::fs::metadata(p).ok()).map(|m| m.len()).sum(),
        tasks: count(client, "/cloud/v1/tasks?limit=1").await.unwrap_or(u64::MAX),
        unfinished: count(client, "/cloud/v1/tasks?limit=1&state=NEW&state=RUNNING").await.unwrap_or(u64::MAX),
        writes: shared.writes.load(Ordering::Relaxed),
        metrics_bytes,
    }
}

async fn sampler(shared: Arc<Shared>, mut client: Client, mut metrics: Option<Client>, probe: Probe, every_s: f64) {
    let mut pace = pacer(1.0 / every_s.max(0.5));
    while shared.running() {
        pace.tick().await;
        let s = sample(&shared, &mut client, &mut metrics, &probe).await;
        shared.samples.lock().unwrap().push(s);
    }
}

/// Registers the port the long-polls watch, bound to a group the writers keep patching.
async fn prepare_port(args: &Args, targets: &Arc<Vec<Target>>, shared: &Shared, tenant: &mut Client) -> anyhow::Result<Option<String>> {
    let Some(platform_key) = &args.soak.soak_platform_key else { return Ok(None) };
    let group = create(shared, tenant, 0).await.context("creating the bound group")?;
    let mut platform = Client::new(targets.clone(), platform_key, 0)?;
    let port = json!({"client_id": args.soak.soak_client_id, "project_id": args.project, "region_id": args.region,
        "instance_id": "5e2a0c36-59a1-4f5e-9d3b-000000000001", "instance_name": "soak", "host": args.soak.soak_host,
        "device": "tapsoak0", "mac_address": "fa:16:3e:00:50:4b", "fixed_ips": ["10.0.0.5"], "security_group_ids": [group]});
    let response = platform.post("/palisade/v1/ports", &port).await?;
    if !response.status.is_success() && response.status != StatusCode::CONFLICT {
        bail!("registering the soak port: {} {}", response.status, response.snippet());
    }
    Ok(Some(group))
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub async fn run(args: &Args, targets: Arc<Vec<Target>>, tag: String) -> anyhow::Result<()> {
    let soak = &args.soak;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration);
    let shared = Arc::new(Shared {
        start,
        deadline,
        ops_left: AtomicU64::new(args.count),
        v1: format!("/cloud/v1/securitygroups/{}/{}", args.project, args.region),
        v2: format!("/cloud/v2/security_groups/{}/{}", args.project, args.region),
        tag,
        statuses: Mutex::default(),
        by_op: Mutex::default(),
        server_errors: Mutex::default(),
        failures: Mutex::default(),
        unexpected: Mutex::default(),
        throttled: AtomicU64::new(0),
        writes: AtomicU64::new(0),
        groups: Mutex::default(),
        tasks: Mutex::default(),
        bad: Mutex::default(),
        unknown_stored: AtomicU64::new(0),
        idle: Mutex::default(),
        slow: Mutex::default(),
        health: Mutex::default(),
        samples: Mutex::default(),
        polls: AtomicU64::new(0),
        longpolls: Mutex::default(),
    });
    let target = targets[0].clone();
    let tenant = |i: usize| Client::new(targets.clone(), &args.api_key, i);
    let mut prep = tenant(0)?;
    let bound = prepare_port(args, &targets, &shared, &mut prep).await?;
    let probe = Probe { pid: args.server_pid.first().copied().unwrap_or(0), db: soak.soak_db.clone() };
    let metrics_client = || -> anyhow::Result<Option<Client>> {
        Ok(match &soak.soak_metrics_url {
            Some(url) => {
                let uri: hyper::Uri = url.parse()?;
                let addr = format!("{}:{}", uri.host().unwrap_or("127.0.0.1"), uri.port_u16().unwrap_or(80)).parse()?;
                let target = Target { addr, authority: HeaderValue::from_str(&addr.to_string())?, base: String::new() };
                Some(Client::new(Arc::new(vec![target]), &args.api_key, 0)?)
            }
            None => None,
        })
    };
    let mut metrics = metrics_client()?;
    let first = sample(&shared, &mut prep, &mut metrics, &probe).await;
    shared.samples.lock().unwrap().push(first);
    eprintln!(
        "soak: {} s, {} writers and {} readers at {}/s each, {} long-polls, {}, {} idle and {} slow connections ({}){}",
        args.duration,
        soak.soak_writers,
        soak.soak_readers,
        soak.soak_rate,
        if soak.soak_agent_key.is_some() { soak.soak_longpolls } else { 0 },
        if soak.soak_no_bad { "no bad inputs".to_string() } else { format!("bad inputs every {} ms", soak.soak_bad_pause_ms) },
        soak.soak_idle,
        soak.soak_slow,
        soak.soak_slow_mode,
        if bound.is_some() { ", one port bound to a patched group" } else { "" }
    );

    let mut handles = Vec::new();
    for w in 0..soak.soak_writers {
        handles.push(tokio::spawn(writer(shared.clone(), tenant(w)?, w as u64, soak.soak_rate, soak.soak_groups, bound.clone())));
    }
    for r in 0..soak.soak_readers {
        handles.push(tokio::spawn(reader(shared.clone(), tenant(r)?, soak.soak_rate)));
    }
    if let Some(agent_key) = &soak.soak_agent_key {
        for i in 0..soak.soak_longpolls {
            let client = Client::new(targets.clone(), agent_key, i)?;
            handles.push(tokio::spawn(long_poll(shared.clone(), client, soak.soak_host.clone(), soak.soak_wait_s)));
        }
    }
    let pause = Duration::from_millis(soak.soak_bad_pause_ms);
    if !soak.soak_no_bad {
        handles.push(tokio::spawn(bad_inputs(shared.clone(), tenant(0)?, pause, soak.soak_max_body, target.clone(), args.api_key.clone())));
    }
    for _ in 0..soak.soak_idle {
        handles.push(tokio::spawn(idle_connection(shared.clone(), target.clone())));
    }
    for i in 0..soak.soak_slow {
        let body_mode = match soak.soak_slow_mode.as_str() {
            "body" => true,
            "headers" => false,
            _ => i % 2 == 1,
        };
        handles.push(tokio::spawn(slow_connection(shared.clone(), target.clone(), args.api_key.clone(), body_mode, shared.v2.clone())));
    }
    handles.push(tokio::spawn(health(shared.clone(), tenant(0)?)));
    handles.push(tokio::spawn(sampler(shared.clone(), tenant(0)?, metrics, probe.clone(), soak.soak_sample_s)));
    for handle in handles {
        handle.await?;
    }
    let load_s = start.elapsed().as_secs_f64();

    // Drain: every task the load queued must finish.
    let drain_start = Instant::now();
    let mut client = tenant(0)?;
    let mut unfinished = u64::MAX;
    while drain_start.elapsed() < Duration::from_secs(60) {
        unfinished = count(&mut client, "/cloud/v1/tasks?limit=1&state=NEW&state=RUNNING").await.unwrap_or(u64::MAX);
        if unfinished == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let drain_s = drain_start.elapsed().as_secs_f64();
    let tasks: Vec<String> = shared.tasks.lock().unwrap().clone();
    let (mut finished, mut errored, mut not_final) = (0u64, 0u64, Vec::new());
    let mut error_kinds: BTreeMap<String, u64> = BTreeMap::new();
    for id in &tasks {
        match get_patiently(&mut client, &format!("/cloud/v1/tasks/{id}")).await {
            Ok(r) if r.status == StatusCode::OK => {
                let task = r.json().unwrap_or(Value::Null);
                match task.get("state").and_then(Value::as_str) {
                    Some("FINISHED") => finished += 1,
                    Some("ERROR") => {
                        errored += 1;
                        // What failed, by the error's first words (the races: a group gone meanwhile).
                        let error = task.get("error").and_then(Value::as_str).unwrap_or("?");
                        let kind: String = error.split_whitespace().take(4).collect::<Vec<_>>().join(" ");
                        *error_kinds
                            .entry(format!("{} {kind}", task.get("task_type").and_then(Value::as_str).unwrap_or("?")))
                            .or_default() += 1;
                    }
                    other => not_final.push(format!("{id}: {other:?}")),
                }
            }
            Ok(r) => not_final.push(format!("{id}: HTTP {}", r.status.as_u16())),
            Err(e) => not_final.push(format!("{id}: {e:#}")),
        }
    }
    let last = sample(&shared, &mut client, &mut metrics_client()?, &probe).await;
    shared.samples.lock().unwrap().push(last);

    report(args, &shared, load_s, drain_s, unfinished, tasks.len() as u64, finished, (errored, error_kinds), not_final)
}

#[allow(clippy::too_many_arguments)]
fn report(
    args: &Args,
    shared: &Shared,
    load_s: f64,
    drain_s: f64,
    unfinished: u64,
    tracked: u64,
    finished: u64,
    (errored, error_kinds): (u64, BTreeMap<String, u64>),
    not_final: Vec<String>,
) -> anyhow::Result<()> {
    let soak = &args.soak;
    let samples = shared.samples.lock().unwrap().clone();
    let warmup = soak.soak_warmup_s.unwrap_or(args.duration / 5.0);
    let window = (args.duration / 10.0).max(3.0 * soak.soak_sample_s);
    let during: Vec<&Sample> = samples.iter().filter(|s| s.t <= load_s).collect();
    let in_window = |from: f64, to: f64| -> Vec<&Sample> { during.iter().copied().filter(|s| s.t >= from && s.t <= to).collect() };
    let base = in_window(warmup, warmup + window);
    let end = in_window(load_s - window, load_s);
    let rss = |set: &[&Sample]| median(&mut set.iter().map(|s| s.rss_kb as f64).collect::<Vec<_>>());
    let (rss_base, rss_end) = (rss(&base), rss(&end));
    let rss_max = during.iter().filter(|s| s.t >= warmup).map(|s| s.rss_kb).max().unwrap_or(0);
    let rss_growth = if rss_base > 0.0 { rss_end / rss_base - 1.0 } else { f64::NAN };
    let anon = |set: &[&Sample]| median(&mut set.iter().map(|s| s.anon_kb as f64).collect::<Vec<_>>());
    let (anon_base, anon_end) = (anon(&base), anon(&end));

    let first_after = base.first().copied().cloned().unwrap_or_default();
    let last = samples.last().cloned().unwrap_or_default();
    let db_growth = last.db_bytes as f64 - first_after.db_bytes as f64;
    let writes = last.writes.saturating_sub(first_after.writes);
    let bytes_per_write = if writes > 0 { db_growth / writes as f64 } else { 0.0 };
    let write_rate = if load_s > 0.0 { last.writes as f64 / load_s } else { 0.0 };
    // What the database would level at if tasks were pruned after the default 7 days and the
    // writes went on at this pace (the rows a write leaves behind, each kept 7 days).
    let at_retention_gb = bytes_per_write.max(0.0) * write_rate * 7.0 * 86_400.0 / 1e9;

    let statuses = shared.statuses.lock().unwrap().clone();
    let five_xx: u64 = statuses.iter().filter(|(c, _)| **c >= 500).map(|(_, n)| n).sum();
    let failures = shared.failures.lock().unwrap().clone();
    let unexpected = shared.unexpected.lock().unwrap().clone();
    let health = shared.health.lock().unwrap();
    let mut health_samples = health.0.clone();
    let health_summary = Summary::of(&mut health_samples);
    let idle = shared.idle.lock().unwrap();
    let slow = shared.slow.lock().unwrap();
    let bad = shared.bad.lock().unwrap();
    let unknown_stored = shared.unknown_stored.load(Ordering::Relaxed);

    let mut checks: Vec<(&str, bool, String)> = Vec::new();
    checks.push((
        "no 5xx, every request answered",
        five_xx == 0 && failures.0 == 0,
        format!(
            "{five_xx} responses 5xx, {} requests without an answer{}",
            failures.0,
            shared.server_errors.lock().unwrap().iter().chain(failures.1.iter()).map(|s| format!("; {s}")).collect::<String>()
        ),
    ));
    checks.push((
        "every task finished",
        unfinished == 0 && not_final.is_empty(),
        format!(
            "{tracked} tasks queued by the soak: {finished} FINISHED, {errored} ERROR ({}), {} not final; NEW or RUNNING after {drain_s:.1} s of drain: {unfinished}{}",
            error_kinds.iter().map(|(kind, n)| format!("{n}× {kind}")).collect::<Vec<_>>().join(", "),
            not_final.len(),
            not_final.iter().take(3).map(|s| format!("; {s}")).collect::<String>()
        ),
    ));
    checks.push((
        "RSS flat after the warm-up",
        rss_growth.is_finite() && rss_growth <= soak.soak_rss_growth,
        format!(
            "median {:.1} MB at {warmup:.0}–{:.0} s, {:.1} MB in the last {window:.0} s ({:+.1} %, limit {:+.0} %); max {:.1} MB; \
             anonymous {:.1} → {:.1} MB",
            rss_base / 1024.0,
            warmup + window,
            rss_end / 1024.0,
            rss_growth * 100.0,
            soak.soak_rss_growth * 100.0,
            rss_max as f64 / 1024.0,
            anon_base / 1024.0,
            anon_end / 1024.0
        ),
    ));
    checks.push((
        "database bounded",
        bytes_per_write <= soak.soak_bytes_per_write && unknown_stored == 0,
        format!(
            "{:.1} MB → {:.1} MB after the warm-up over {writes} writes: {bytes_per_write:.0} bytes per write (limit {:.0}); \
             {unknown_stored} tasks stored an unknown field; {write_rate:.1} writes/s would level at ~{at_retention_gb:.2} GB with 7-day task retention",
            first_after.db_bytes as f64 / 1e6,
            last.db_bytes as f64 / 1e6,
            soak.soak_bytes_per_write
        ),
    ));
    checks.push((
        "/healthz always 200 within 2 s",
        health.1 == 0 && health_summary.n > 0,
        format!(
            "{} probes, {} failed; p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms{}",
            health_summary.n + health.1 as usize,
            health.1,
            health_summary.p50_ms,
            health_summary.p99_ms,
            health_summary.max_ms,
            health.2.iter().map(|s| format!("; {s}")).collect::<String>()
        ),
    ));
    let bad_ok = bad.values().all(|b| b.unexpected.is_empty()) && (soak.soak_no_bad || !bad.is_empty());
    let bad_text: Vec<String> = bad
        .iter()
        .map(|(case, b)| {
            let other: Vec<String> = b.unexpected.iter().map(|(what, n)| format!("{n}× {what}")).collect();
            if other.is_empty() {
                format!("{case}: {}/{}", b.expected, b.sent)
            } else {
                format!("{case}: {}/{} (else {})", b.expected, b.sent, other.join(", "))
            }
        })
        .collect();
    checks.push(("bad inputs answered as they must be", bad_ok, bad_text.join("; ")));
    // Closed (or answered) within the limit; one still open at the end is fine while younger.
    let closed_within = |c: &ConnOutcomes, limit: f64| c.longest_s <= limit;
    let describe = |c: &ConnOutcomes| -> String {
        let mut parts: Vec<String> = c
            .closed
            .iter()
            .map(|(what, lives)| {
                let mut lives = lives.clone();
                format!("{} {what} after a median {:.1} s", lives.len(), median(&mut lives))
            })
            .collect();
        parts.push(format!(
            "{} open when the run ended (oldest {:.1} s); longest open {:.1} s; {} opened, {} refused",
            c.open_at_end.len(),
            c.open_at_end.iter().copied().fold(0.0, f64::max),
            c.longest_s,
            c.opened,
            c.refused
        ));
        parts.join(", ")
    };
    let idle_limit = soak.soak_idle_timeout.max(soak.soak_header_timeout) as f64 + 5.0;
    let slow_limit = soak.soak_body_timeout.max(soak.soak_header_timeout) as f64 + 5.0;
    if soak.soak_idle > 0 {
        checks.push((
            "idle connections closed by the server",
            closed_within(&idle, idle_limit),
            format!("within {idle_limit:.0} s: {}", describe(&idle)),
        ));
    }
    if soak.soak_slow > 0 {
        checks.push((
            "slow connections closed by the server",
            closed_within(&slow, slow_limit),
            format!("within {slow_limit:.0} s: {}", describe(&slow)),
        ));
    }

    let by_op = shared.by_op.lock().unwrap().clone();
    let longpolls = shared.longpolls.lock().unwrap().clone();
    let mut text = String::new();
    text.push_str(&format!(
        "soak: {load_s:.0} s of load, {} operations ({}), {} task polls, {} throttled (429)\n",
        by_op.values().sum::<u64>(),
        by_op.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", "),
        shared.polls.load(Ordering::Relaxed),
        shared.throttled.load(Ordering::Relaxed)
    ));
    text.push_str(&format!(
        "      statuses: {}; long-polls: {}; unexpected 4xx: {}{}\n",
        statuses.iter().map(|(k, v)| format!("{k} ×{v}")).collect::<Vec<_>>().join(", "),
        longpolls.iter().map(|(k, v)| format!("{k} ×{v}")).collect::<Vec<_>>().join(", "),
        unexpected.0,
        unexpected.1.iter().map(|s| format!("; {s}")).collect::<String>()
    ));
    text.push_str("      t (s)   RSS MB  anon MB   fds   DB MB    tasks  unfinished   writes  metrics KB\n");
    let known = |n: u64| if n == u64::MAX { "?".to_string() } else { n.to_string() };
    for s in &samples {
        text.push_str(&format!(
            "      {:>5.0} {:>8.1} {:>8.1} {:>5} {:>7.2} {:>8} {:>11} {:>8} {:>11.1}\n",
            s.t,
            s.rss_kb as f64 / 1024.0,
            s.anon_kb as f64 / 1024.0,
            s.fds,
            s.db_bytes as f64 / 1e6,
            known(s.tasks),
            known(s.unfinished),
            s.writes,
            s.metrics_bytes as f64 / 1024.0
        ));
    }
    let passed = checks.iter().all(|(_, ok, _)| *ok);
    for (name, ok, detail) in &checks {
        text.push_str(&format!("  {} {name}: {detail}\n", if *ok { "PASS" } else { "FAIL" }));
    }
    let result = json!({
        "workload": "soak",
        "label": args.label,
        "duration_s": round3(load_s),
        "operations": by_op,
        "statuses": statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
        "throttled": shared.throttled.load(Ordering::Relaxed),
        "rss_mb": {"base": round3(rss_base / 1024.0), "end": round3(rss_end / 1024.0), "max": round3(rss_max as f64 / 1024.0), "growth": round3(rss_growth),
            "anon_base": round3(anon_base / 1024.0), "anon_end": round3(anon_end / 1024.0)},
        "db": {"bytes_per_write": bytes_per_write.round(), "writes": last.writes, "end_mb": round3(last.db_bytes as f64 / 1e6), "at_retention_gb": round3(at_retention_gb)},
        "healthz_ms": {"p50": round3(health_summary.p50_ms), "p99": round3(health_summary.p99_ms), "max": round3(health_summary.max_ms)},
        "samples_columns": ["t_s", "rss_kb", "anon_kb", "fds", "db_bytes", "tasks", "unfinished", "writes", "metrics_bytes"],
        "samples": samples.iter().map(|s| json!([round3(s.t), s.rss_kb, s.anon_kb, s.fds, s.db_bytes, s.tasks, s.unfinished, s.writes, s.metrics_bytes])).collect::<Vec<_>>(),
        "checks": checks.iter().map(|(name, ok, detail)| json!({"check": name, "pass": ok, "detail": detail})).collect::<Vec<_>>(),
        "passed": passed,
    });
    eprint!("{text}");
    if args.json {
        println!("{result}");
    }
    if !passed {
        bail!("soak: {} of {} checks failed", checks.iter().filter(|(_, ok, _)| !ok).count(), checks.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_memory_and_descriptors() {
        let me = std::process::id();
        assert!(status_kb(me, "VmRSS") > 0);
        assert!(status_kb(me, "RssAnon") > 0);
        assert!(status_kb(me, "RssAnon") <= status_kb(me, "VmRSS"));
        assert_eq!(status_kb(me, "VmRSSnot"), 0, "a field is matched whole");
        assert!(fds(me) > 0);
    }

    #[test]
    fn medians_and_rule_sets() {
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        // Every PATCH moves to another rule set, so each one creates or deletes rules.
        for k in 0..4 {
            assert_ne!(rule_set(k), rule_set(k + 1));
        }
    }
}
