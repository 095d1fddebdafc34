//! The `agents` workload (issue 16, "a simulation of a region"): `--hosts` simulated host agents
//! follow their hosts' policies while paced writes change one host's group at a time, and the run
//! tells how many agent requests each write cost and how fast the affected agent saw it.
//!
//! Setup, through the API: for each host of `--agent-token-file` (`HOST TOKEN` lines, one agent
//! key per host, as `palisade keys create --role agent --host HOST` prints them), one group of one
//! rule (v1 create, `--api-key`) and `--ports-per-host` ports on the host bound to it (platform
//! key). Then one simulated agent per host, on its own connection to one node (node `i % nodes`),
//! does what `palisade agent` does without a kernel: `GET /palisade/v1/agents/{host}/policy`, then
//! long-polls with `after=REV`, `wait=--agent-wait` and `If-None-Match` the policy's `ETag`, and
//! reports each revision it moves to with `PUT .../status` (a 304 whose revision moved is
//! reported as well, as the agent does; one whose revision did not move is the wait running out).
//!
//! Once every agent holds its first policy, `--writes` writes at `--write-rate` per second, each a
//! v1 (synchronous) rule add to the group of host `k % hosts`, with a remote prefix unique to the
//! write (its marker). After the last one, at most `--settle-s` seconds for the affected agents to
//! fetch their rules. Measured over the writes and the settling: policy answers (with a body, 304)
//! per write, in total and to agents whose policy brought no new marker (the hosts the write did
//! not affect), status reports per write, the writes' latency, the time from a write's 2xx to its
//! host's agent receiving a policy with the rule (0 when the policy came first), and the servers'
//! CPU per write (`--server-pid`). Every loop stops at the run's deadline.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};

use crate::client::{Client, Target};
use crate::stats::{Summary, round3};
use crate::{Args, Ctx, micros};

#[derive(clap::Args, Debug, Clone)]
pub struct AgentsArgs {
    /// agents: simulated hosts, one agent each (the first N hosts of `--agent-token-file`).
    #[arg(long, default_value_t = 50)]
    pub hosts: usize,
    /// agents: a file of `HOST TOKEN` lines, an agent key per host (`palisade keys create --role
    /// agent --host HOST`); `#` starts a comment.
    #[arg(long)]
    pub agent_token_file: Option<PathBuf>,
    /// agents: writes, each adding a rule to one host's group (bounded by `--duration` too).
    #[arg(long, default_value_t = 100)]
    pub writes: u64,
    /// agents: writes per second.
    #[arg(long, default_value_t = 10.0)]
    pub write_rate: f64,
    /// agents: ports registered on each host, all bound to the host's group.
    #[arg(long, default_value_t = 1)]
    pub ports_per_host: u32,
    /// agents: the long-polls' `wait` (seconds).
    #[arg(long, default_value_t = 30)]
    pub agent_wait: u64,
    /// agents: after the last write, how long the affected agents may take to fetch their rules.
    #[arg(long, default_value_t = 10.0)]
    pub settle_s: f64,
    /// agents: set up the hosts, groups and ports but start no agent: the same writes with
    /// nobody long-polling, for the server's CPU per write without agents (the baseline).
    #[arg(long)]
    pub no_agents: bool,
}

/// The `HOST TOKEN` lines of a token file, the first `n` of them.
fn read_tokens(text: &str, n: usize) -> anyhow::Result<Vec<(String, String)>> {
    let mut tokens = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [host, token] = fields[..] else { bail!("line {}: expected `HOST TOKEN`", number + 1) };
        tokens.push((host.to_string(), token.to_string()));
        if tokens.len() == n {
            break;
        }
    }
    if tokens.len() < n {
        bail!("--hosts {n}: the token file has only {} hosts", tokens.len());
    }
    Ok(tokens)
}

/// Write `k`'s marker: the remote prefix of the rule it adds (11.0.0.0/8 holds 2^24 of them).
fn marker(k: u64) -> String {
    format!("{}/32", Ipv4Addr::from(0x0b00_0000 + (k as u32 & 0x00ff_ffff)))
}

/// The remote prefixes of every rule of a policy body (`security_groups[].rules[]`).
fn prefixes(policy: &Value) -> Vec<&str> {
    let groups = policy.get("security_groups").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    groups
        .iter()
        .filter_map(|g| g.get("rules").and_then(Value::as_array))
        .flatten()
        .filter_map(|r| r.get("remote_ip_prefix").and_then(Value::as_str))
        .collect()
}

/// One write and when its host's agent saw it.
struct Write {
    acked: Option<Instant>,
    seen: Option<Instant>,
}

/// Counts of what the agents received (each a monotonic counter; a phase is a difference).
#[derive(Default)]
struct Counters {
    bodies: AtomicU64,
    not_modified: AtomicU64,
    /// 304s whose revision did not move: the `wait` ran out.
    idle: AtomicU64,
    /// Answers (200 or a moved 304) that brought the host no new marker.
    unaffected: AtomicU64,
    reports: AtomicU64,
    errors: AtomicU64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    bodies: u64,
    not_modified: u64,
    idle: u64,
    unaffected: u64,
    reports: u64,
    errors: u64,
}

impl Counters {
    fn snapshot(&self) -> Counts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Counts {
            bodies: get(&self.bodies),
            not_modified: get(&self.not_modified),
            idle: get(&self.idle),
            unaffected: get(&self.unaffected),
            reports: get(&self.reports),
            errors: get(&self.errors),
        }
    }
}

impl Counts {
    fn since(self, before: Counts) -> Counts {
        Counts {
            bodies: self.bodies - before.bodies,
            not_modified: self.not_modified - before.not_modified,
            idle: self.idle - before.idle,
            unaffected: self.unaffected - before.unaffected,
            reports: self.reports - before.reports,
            errors: self.errors - before.errors,
        }
    }
}

struct Shared {
    stop: AtomicBool,
    /// Nothing runs past it, whatever happens.
    deadline: Instant,
    counters: Counters,
    /// Agents holding their first policy.
    ready: AtomicUsize,
    writes: Mutex<Vec<Write>>,
    /// Per host: the (write, marker) pairs its agent has not seen yet.
    waiting: Vec<Mutex<Vec<(usize, String)>>>,
    error_samples: Mutex<Vec<String>>,
}

impl Shared {
    fn running(&self) -> bool {
        !self.stop.load(Ordering::Relaxed) && Instant::now() < self.deadline
    }

    fn error(&self, message: String) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        let mut samples = self.error_samples.lock().unwrap();
        if samples.len() < 5 {
            samples.push(message);
        }
    }

    /// Marks the markers of `host` that the policy `body` (received `at`) holds as seen; whether
    /// there was any.
    fn saw(&self, host: usize, body: &[u8], at: Instant) -> bool {
        let mut waiting = self.waiting[host].lock().unwrap();
        if waiting.is_empty() {
            return false;
        }
        let Ok(policy) = serde_json::from_slice::<Value>(body) else { return false };
        let held = prefixes(&policy);
        let before = waiting.len();
        let mut writes = self.writes.lock().unwrap();
        waiting.retain(|(write, marker)| {
            let found = held.contains(&marker.as_str());
            if found {
                writes[*write].seen = Some(at);
            }
            !found
        });
        waiting.len() < before
    }

    /// Sleeps `pause`, or less if the run ends first.
    async fn pause(&self, pause: Duration) {
        tokio::time::sleep(pause.min(self.deadline.saturating_duration_since(Instant::now()))).await;
    }
}

fn revision_of(headers: &hyper::HeaderMap) -> Option<i64> {
    headers.get("x-policy-revision").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// One simulated agent (see the module doc).
async fn agent(shared: Arc<Shared>, mut client: Client, index: usize, host: String, wait: u64) {
    let policy_path = format!("/palisade/v1/agents/{host}/policy");
    let status_path = format!("/palisade/v1/agents/{host}/status");
    let mut applied: Option<i64> = None;
    let mut etag: Option<HeaderValue> = None;
    while shared.running() {
        let (path, timeout) = match applied {
            Some(revision) => (format!("{policy_path}?after={revision}&wait={wait}"), Duration::from_secs(wait + 15)),
            None => (policy_path.clone(), Duration::from_secs(30)),
        };
        let headers: Vec<(&'static str, HeaderValue)> = etag.iter().map(|t| ("if-none-match", t.clone())).collect();
        let response = match tokio::time::timeout(timeout, client.send_with(Method::GET, &path, None, &headers)).await {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => {
                shared.error(format!("{host}: policy: {e:#}"));
                shared.pause(Duration::from_secs(1)).await;
                continue;
            }
            Err(_) => {
                shared.error(format!("{host}: policy: no answer within {} s", timeout.as_secs()));
                continue;
            }
        };
        let received = Instant::now();
        let revision = revision_of(&response.headers);
        let counters = &shared.counters;
        let first = applied.is_none();
        match response.status {
            StatusCode::OK => {
                counters.bodies.fetch_add(1, Ordering::Relaxed);
                if !shared.saw(index, &response.body, received) {
                    counters.unaffected.fetch_add(1, Ordering::Relaxed);
                }
                etag = response.headers.get("etag").cloned();
                let Some(revision) = revision.or_else(|| response.json().ok()?.get("revision")?.as_i64()) else {
                    shared.error(format!("{host}: a policy without a revision"));
                    shared.pause(Duration::from_secs(1)).await;
                    continue;
                };
                applied = Some(revision);
            }
            StatusCode::NOT_MODIFIED => {
                counters.not_modified.fetch_add(1, Ordering::Relaxed);
                match (revision, applied) {
                    (Some(moved), Some(held)) if moved > held => {
                        counters.unaffected.fetch_add(1, Ordering::Relaxed);
                        applied = Some(moved);
                    }
                    _ => {
                        counters.idle.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            status => {
                shared.error(format!("{host}: policy: HTTP {} {}", status.as_u16(), response.snippet()));
                shared.pause(Duration::from_secs(1)).await;
                continue;
            }
        }
        let report = Bytes::from(json!({"applied_revision": applied}).to_string());
        match tokio::time::timeout(Duration::from_secs(10), client.send(Method::PUT, &status_path, Some(report))).await {
            Ok(Ok(response)) if response.status.is_success() => {
                counters.reports.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ok(response)) => shared.error(format!("{host}: status: HTTP {} {}", response.status.as_u16(), response.snippet())),
            Ok(Err(e)) => shared.error(format!("{host}: status: {e:#}")),
            Err(_) => shared.error(format!("{host}: status: no answer within 10 s")),
        }
        if first {
            shared.ready.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The writes (see the module doc); their latencies (µs) and how many failed.
async fn writer(
    shared: Arc<Shared>,
    mut client: Client,
    v1: String,
    groups: Vec<String>,
    writes: u64,
    rate: f64,
    until: Instant,
) -> (Vec<u32>, u64) {
    let mut pace = crate::soak::pacer(rate);
    let (mut latencies, mut failed) = (Vec::new(), 0);
    for k in 0..writes {
        pace.tick().await;
        if Instant::now() >= until || !shared.running() {
            break;
        }
        let host = (k % groups.len() as u64) as usize;
        let marker = marker(k);
        let write = {
            let mut all = shared.writes.lock().unwrap();
            all.push(Write { acked: None, seen: None });
            all.len() - 1
        };
        // Registered before the write is sent: its agent may hear of it before the writer does.
        shared.waiting[host].lock().unwrap().push((write, marker.clone()));
        let rule = json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 443,
            "port_range_max": 443, "remote_ip_prefix": marker});
        let sent = Instant::now();
        let path = format!("{v1}/{}/rules", groups[host]);
        match tokio::time::timeout(Duration::from_secs(30), client.post(&path, &rule)).await {
            Ok(Ok(response)) if response.status.is_success() => {
                latencies.push(micros(sent));
                shared.writes.lock().unwrap()[write].acked = Some(Instant::now());
            }
            outcome => {
                failed += 1;
                shared.waiting[host].lock().unwrap().retain(|(w, _)| *w != write);
                shared.error(match outcome {
                    Ok(Ok(response)) => format!("write {k}: HTTP {} {}", response.status.as_u16(), response.snippet()),
                    Ok(Err(e)) => format!("write {k}: {e:#}"),
                    Err(_) => format!("write {k}: no answer within 30 s"),
                });
            }
        }
    }
    (latencies, failed)
}

/// Instance `n`'s id in this run (`tag` keeps runs apart).
fn instance_id(tag: u64, n: u64) -> String {
    format!("{:08x}-0000-4000-8000-{:012x}", n & 0xffff_ffff, tag & 0xffff_ffff_ffff)
}

/// Creates each host's group and registers its ports; the group ids, by host.
async fn prepare(args: &Args, targets: &Arc<Vec<Target>>, ctx: &Arc<Ctx>, hosts: &[(String, String)]) -> anyhow::Result<Vec<String>> {
    let platform_key = args.fair.platform_key.as_deref().context("agents needs --platform-key (to register the ports)")?;
    let per_host = args.agents.ports_per_host;
    if per_host == 0 || per_host > 250 {
        bail!("--ports-per-host must be 1 to 250");
    }
    let tag = u64::from_str_radix(&ctx.tag, 16).unwrap_or(0);
    let device_tag = &ctx.tag[ctx.tag.len().saturating_sub(8)..];
    let next = Arc::new(AtomicUsize::new(0));
    let hosts = Arc::new(hosts.iter().map(|(host, _)| host.clone()).collect::<Vec<_>>());
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let (next, hosts, ctx) = (next.clone(), hosts.clone(), ctx.clone());
        let mut tenant = Client::new(targets.clone(), &args.api_key, w)?;
        let mut platform = Client::new(targets.clone(), platform_key, w)?;
        let (client_id, device_tag) = (args.fair.client_id, device_tag.to_string());
        let op_timeout = Duration::from_secs(args.op_timeout);
        workers.push(tokio::spawn(async move {
            let mut made = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(host) = hosts.get(i) else { return Ok::<_, anyhow::Error>(made) };
                let name = format!("lg-{}-h{i}", ctx.tag);
                let group = tokio::time::timeout(op_timeout, crate::create_v1(&ctx, &mut tenant, &name, 1)).await.context("creating a group")??;
                for j in 0..per_host {
                    let n = i as u64 * per_host as u64 + j as u64;
                    let port = json!({"client_id": client_id, "project_id": ctx.project, "region_id": ctx.region,
                        "instance_id": instance_id(tag, n), "instance_name": format!("lg-{}-{n}", ctx.tag), "host": host,
                        "device": format!("lg{device_tag}-{j}"), "mac_address": format!("fa:16:3e:{:02x}:{:02x}:{j:02x}", (tag >> 8) & 0xff, tag & 0xff),
                        "fixed_ips": [crate::seed::fixed_ip(n)], "security_group_ids": [group]});
                    let response = tokio::time::timeout(op_timeout, platform.post("/palisade/v1/ports", &port)).await.context("registering a port")??;
                    response.expect(StatusCode::CREATED, "registering a port")?;
                }
                made.push((i, group));
            }
        }));
    }
    let mut groups = Vec::new();
    for worker in workers {
        groups.extend(worker.await??);
    }
    groups.sort();
    Ok(groups.into_iter().map(|(_, group)| group).collect())
}

/// Lets this process hold one connection per agent: the soft limit of open files up to the hard one.
fn raise_open_files() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit read and write one plain struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

pub async fn run(args: &Args, targets: Arc<Vec<Target>>, ctx: Ctx) -> anyhow::Result<()> {
    let opts = &args.agents;
    let path = opts.agent_token_file.as_ref().context("agents needs --agent-token-file (HOST TOKEN lines)")?;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let hosts = read_tokens(&text, opts.hosts)?;
    if hosts.is_empty() || opts.write_rate <= 0.0 || opts.writes > 1 << 24 {
        bail!("agents needs --hosts ≥ 1, --write-rate > 0 and --writes ≤ 2^24");
    }
    raise_open_files();
    let ctx = Arc::new(ctx);
    let started = Instant::now();
    let groups = prepare(args, &targets, &ctx, &hosts).await?;
    eprintln!(
        "agents: {} hosts with a group and {} port(s) each, made in {:.1} s",
        hosts.len(),
        opts.ports_per_host,
        started.elapsed().as_secs_f64()
    );

    // Setup (60 s at most), the writes (--duration) and the settling (--settle-s).
    let deadline = Instant::now() + Duration::from_secs_f64(60.0 + args.duration + opts.settle_s);
    let shared = Arc::new(Shared {
        stop: AtomicBool::new(false),
        deadline,
        counters: Counters::default(),
        ready: AtomicUsize::new(0),
        writes: Mutex::new(Vec::new()),
        waiting: hosts.iter().map(|_| Mutex::new(Vec::new())).collect(),
        error_samples: Mutex::new(Vec::new()),
    });
    let mut agents = Vec::new();
    for (i, (host, token)) in hosts.iter().enumerate().filter(|_| !opts.no_agents) {
        let node = Arc::new(vec![targets[i % targets.len()].clone()]);
        let client = Client::new(node, token, 0)?;
        agents.push(tokio::spawn(agent(shared.clone(), client, i, host.clone(), opts.agent_wait)));
    }
    if opts.no_agents {
        shared.ready.store(hosts.len(), Ordering::Relaxed);
    }
    let ready_by = Instant::now() + Duration::from_secs(60);
    while shared.ready.load(Ordering::Relaxed) < hosts.len() && Instant::now() < ready_by {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ready = shared.ready.load(Ordering::Relaxed);
    if ready < hosts.len() {
        shared.stop.store(true, Ordering::Relaxed);
        let samples = shared.error_samples.lock().unwrap().clone();
        bail!("only {ready} of {} agents got their first policy within 60 s: {samples:?}", hosts.len());
    }
    // Every agent now waits in a long-poll: what comes next is the writes'.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let before = shared.counters.snapshot();
    let cpu_before = crate::cpu_snapshot(&args.server_pid);
    let measured = Instant::now();
    let tenant = Client::new(targets.clone(), &args.api_key, 0)?;
    let until = measured + Duration::from_secs_f64(args.duration);
    let (mut latencies, failed) = writer(shared.clone(), tenant, ctx.v1(), groups, opts.writes, opts.write_rate, until).await;
    let writes_s = measured.elapsed().as_secs_f64();
    let settle_by = Instant::now() + Duration::from_secs_f64(opts.settle_s);
    while !opts.no_agents && shared.waiting.iter().any(|w| !w.lock().unwrap().is_empty()) && Instant::now() < settle_by {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let counts = shared.counters.snapshot().since(before);
    let cpu_after = crate::cpu_snapshot(&args.server_pid);
    let elapsed = measured.elapsed().as_secs_f64();
    shared.stop.store(true, Ordering::Relaxed);
    for handle in &agents {
        handle.abort();
    }

    let writes = shared.writes.lock().unwrap();
    let mut wakes: Vec<u32> = Vec::new();
    let (mut early, mut missed) = (0u64, 0u64);
    for write in writes.iter() {
        match (write.acked, write.seen) {
            (Some(acked), Some(seen)) => {
                if seen < acked {
                    early += 1;
                }
                wakes.push(seen.saturating_duration_since(acked).as_micros().min(u32::MAX as u128) as u32);
            }
            (Some(_), None) => missed += 1,
            _ => {}
        }
    }
    let done = latencies.len() as u64;
    let per_write = |n: u64| if done > 0 { round3(n as f64 / done as f64) } else { 0.0 };
    let answers = counts.bodies + counts.not_modified - counts.idle;
    let requests = counts.bodies + counts.not_modified + counts.reports + counts.errors;
    let (server_cpu, client_cpu) = (cpu_after.0.saturating_sub(cpu_before.0), cpu_after.1.saturating_sub(cpu_before.1));
    let write_ms = Summary::of(&mut latencies);
    let wake_ms = Summary::of(&mut wakes);
    let result = json!({
        "workload": "agents",
        "label": args.label,
        "targets": targets.len(),
        "hosts": hosts.len(),
        "ports_per_host": opts.ports_per_host,
        "writes": done,
        "write_errors": failed,
        "writes_s": round3(writes_s),
        "elapsed_s": round3(elapsed),
        "policy_bodies": counts.bodies,
        "policy_304": counts.not_modified - counts.idle,
        "policy_idle_304": counts.idle,
        "answers_per_write": per_write(answers),
        "unaffected_answers_per_write": per_write(counts.unaffected),
        "status_reports_per_write": per_write(counts.reports),
        "agent_requests_per_write": per_write(requests),
        "write_ms": write_ms.json(),
        "wake_ms": wake_ms.json(),
        "woken_before_2xx": early,
        "never_seen": missed,
        "server_cpu_us_per_write": if !args.server_pid.is_empty() { per_write(server_cpu) } else { 0.0 },
        "server_cpu_cores": if elapsed > 0.0 { round3(server_cpu as f64 / 1e6 / elapsed) } else { 0.0 },
        "client_cpu_us_per_write": per_write(client_cpu),
        "agent_errors": counts.errors,
        "error_samples": shared.error_samples.lock().unwrap().clone(),
    });
    eprintln!(
        "agents: {} hosts, {done} writes ({failed} failed) in {writes_s:.1} s at {}/s; {} s measured\n      \
         per write: {} policy answers ({} to hosts it did not change), {} status reports, {} agent requests\n      \
         policy answers: {} with a body, {} × 304 (revision moved), {} × 304 (wait ran out)\n      \
         write p50 {:.3} ms, p99 {:.3} ms; affected agent woken → policy fetched p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms \
         ({} before the write's 2xx, {} never)",
        hosts.len(),
        opts.write_rate,
        round3(elapsed),
        result["answers_per_write"],
        result["unaffected_answers_per_write"],
        result["status_reports_per_write"],
        result["agent_requests_per_write"],
        counts.bodies,
        counts.not_modified - counts.idle,
        counts.idle,
        write_ms.p50_ms,
        write_ms.p99_ms,
        wake_ms.p50_ms,
        wake_ms.p99_ms,
        wake_ms.max_ms,
        early,
        missed
    );
    if !args.server_pid.is_empty() {
        eprintln!(
            "      CPU per write: server {} us ({} cores busy), load generator {} us",
            result["server_cpu_us_per_write"], result["server_cpu_cores"], result["client_cpu_us_per_write"]
        );
    }
    for message in shared.error_samples.lock().unwrap().iter() {
        eprintln!("      error: {message}");
    }
    if args.json {
        println!("{result}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_files_give_the_first_hosts() {
        let text = "# host token\nh0 1$aa\n\n  h1   2$bb  # second\nh2 3$cc\n";
        let tokens = read_tokens(text, 2).expect("two hosts");
        assert_eq!(tokens, vec![("h0".to_string(), "1$aa".to_string()), ("h1".to_string(), "2$bb".to_string())]);
        assert!(read_tokens(text, 4).expect_err("only three").to_string().contains("only 3"));
        assert!(read_tokens("h0\n", 1).is_err(), "a line without a token");
    }

    #[test]
    fn markers_are_found_in_a_policy() {
        assert_eq!(marker(0), "11.0.0.0/32");
        assert_eq!(marker(258), "11.0.1.2/32");
        let policy = json!({"host": "h", "revision": 3, "ports": [], "remote_groups": [], "security_groups": [
            {"id": "g1", "rules": [{"remote_ip_prefix": "10.0.0.0/8"}, {"remote_ip_prefix": null}]},
            {"id": "g2", "rules": [{"remote_ip_prefix": marker(258)}]}]});
        assert_eq!(prefixes(&policy), vec!["10.0.0.0/8", "11.0.1.2/32"]);

        let shared = Shared {
            stop: AtomicBool::new(false),
            deadline: Instant::now() + Duration::from_secs(1),
            counters: Counters::default(),
            ready: AtomicUsize::new(0),
            writes: Mutex::new(vec![Write { acked: None, seen: None }, Write { acked: None, seen: None }]),
            waiting: vec![Mutex::new(vec![(0, marker(1)), (1, marker(258))])],
            error_samples: Mutex::new(Vec::new()),
        };
        let body = serde_json::to_vec(&policy).unwrap();
        assert!(shared.saw(0, &body, Instant::now()), "write 1's marker is in the policy");
        assert!(!shared.saw(0, &body, Instant::now()), "and is seen once");
        let writes = shared.writes.lock().unwrap();
        assert!(writes[0].seen.is_none() && writes[1].seen.is_some());
        assert_eq!(shared.waiting[0].lock().unwrap().len(), 1);
    }
}
