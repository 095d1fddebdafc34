//! `palisade-loadgen`: drives a Gcore-compatible security-group endpoint (Palisade, or anything
//! speaking the same API) with the workloads of docs/benchmarks.md and prints ops/s and latency
//! percentiles as a table or as JSON.
//!
//! - W1: create a group with 3 ingress rules (v2 POST), poll its task until FINISHED, GET the group.
//! - W2: GET one group by id.
//! - W3: list 100 groups of a project holding (at least) `--seed-groups` groups (seeded if missing).
//! - W4: add one rule to an existing group (v2 rule POST), poll the task, GET the group, find the rule.
//! - W5: delete a group (the groups are created first, outside the measurement).
//! - seed: create `--count` groups with `--seed-rules` rules each through the synchronous v1 create.
//! - fair: one tenant's heaviest verdict, list and create loops against another tenant's GET and
//!   `/healthz` latency (issue 12; see `fair.rs`).
//! - soak: minutes of mixed, paced load with bad inputs and idle and slow connections, then checks
//!   of the server's errors, tasks, memory and database size (issue 12; see `soak.rs`).
//! - agents: `--hosts` simulated host agents long-polling their policies while paced writes change
//!   one host's group at a time: agent requests per write and wake-up latency (issue 16; see
//!   `agents.rs`).
//!
//! `palisade-loadgen seed-file --groups G --rules R --ports P --hosts H > FILE` writes a
//! `palisade import` file instead (no server involved; see `seed.rs`).
//!
//! Every run is bounded by `--count` operations and `--duration` seconds, and refuses targets that
//! are not loopback addresses unless `--allow-remote` is given.

mod agents;
mod client;
mod fair;
mod seed;
mod soak;
mod stats;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::client::{Client, Target};
use crate::stats::{Samples, Summary, round3};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Workload {
    #[value(name = "W1", alias = "w1")]
    W1,
    #[value(name = "W2", alias = "w2")]
    W2,
    #[value(name = "W3", alias = "w3")]
    W3,
    #[value(name = "W4", alias = "w4")]
    W4,
    #[value(name = "W5", alias = "w5")]
    W5,
    /// Only create `--count` groups of `--seed-rules` rules (v1 create), measured like a workload.
    #[value(name = "seed", alias = "SEED")]
    Seed,
    /// Another tenant's latency while one tenant runs heavy loops (`fair.rs`).
    #[value(name = "fair", alias = "FAIR")]
    Fair,
    /// Long mixed load and its checks (`soak.rs`).
    #[value(name = "soak", alias = "SOAK")]
    Soak,
    /// Simulated host agents while writes run (`agents.rs`).
    #[value(name = "agents", alias = "AGENTS")]
    Agents,
}

#[derive(Parser, Debug)]
#[command(name = "palisade-loadgen", version, about = "Load generator for Gcore-compatible security-group APIs")]
struct Args {
    /// Base URL of the API (http only). Repeat (or separate with commas) to spread requests over
    /// several nodes round-robin.
    #[arg(long, required = true, value_delimiter = ',')]
    url: Vec<String>,
    /// API key token (`Authorization: APIKey <token>`).
    #[arg(long, env = "PALISADE_API_KEY", hide_env_values = true)]
    api_key: String,
    #[arg(long, default_value_t = 1)]
    project: i64,
    #[arg(long, default_value_t = 1)]
    region: i64,
    #[arg(long, value_enum, ignore_case = true)]
    workload: Workload,
    /// Operations in flight at once (one connection per target each).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Stop after this many operations (W5 and seed also create or use at most this many groups).
    #[arg(long, default_value_t = 100_000)]
    count: u64,
    /// Stop after this many seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Print one JSON object on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// Allow targets that are not loopback addresses.
    #[arg(long)]
    allow_remote: bool,
    /// W3: the project must hold at least this many groups; missing ones are created first.
    #[arg(long, default_value_t = 1000)]
    seed_groups: u64,
    /// Rules per group created by seeding (W3, seed).
    #[arg(long, default_value_t = 0)]
    seed_rules: usize,
    /// W3: groups per page (`limit`); pages rotate over the first 1,000 groups.
    #[arg(long, default_value_t = 100)]
    page: u32,
    /// W4: how many groups the rules are spread over (created first).
    #[arg(long, default_value_t = 1000)]
    groups: u64,
    /// Threads of the load generator's runtime (1 keeps it off the server's second core as much as possible).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Give up on one operation after this many seconds (counted as an error).
    #[arg(long, default_value_t = 30)]
    op_timeout: u64,
    /// A label copied into the output (e.g. "sqlite" or "postgres-2-nodes").
    #[arg(long, default_value = "")]
    label: String,
    /// Process ids of the servers (same machine): their CPU time during the run is reported per
    /// operation next to the load generator's own, which tells where the cores went.
    #[arg(long, value_delimiter = ',')]
    server_pid: Vec<u32>,
    /// Also report the CPU time of every process with this command name (e.g. `postgres`: the
    /// database server's backends), per operation.
    #[arg(long)]
    db_comm: Option<String>,
    #[command(flatten)]
    fair: fair::FairArgs,
    #[command(flatten)]
    soak: soak::SoakArgs,
    #[command(flatten)]
    agents: agents::AgentsArgs,
}

/// CPU time (user + system, all threads) of a process, in microseconds, from `/proc/<pid>/stat`.
fn cpu_micros(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start at field 3 (state).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(ticks * 10_000)
}

/// CPU time of the servers and of this process.
fn cpu_snapshot(pids: &[u32]) -> (u64, u64) {
    let servers = pids.iter().filter_map(|pid| cpu_micros(&pid.to_string())).sum();
    (servers, cpu_micros("self").unwrap_or(0))
}

/// CPU time of every process named `comm`, per pid (processes may come and go during a run).
fn cpu_by_comm(comm: &str) -> std::collections::HashMap<String, u64> {
    let mut found = std::collections::HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return found };
    for entry in entries.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm) {
            if let Some(cpu) = cpu_micros(&pid) {
                found.insert(pid, cpu);
            }
        }
    }
    found
}

/// CPU used by processes named `comm` between two snapshots (new processes count from zero).
fn cpu_delta(before: &std::collections::HashMap<String, u64>, after: &std::collections::HashMap<String, u64>) -> u64 {
    after.iter().map(|(pid, cpu)| cpu.saturating_sub(before.get(pid).copied().unwrap_or(0))).sum()
}

/// Everything an operation needs, shared by the workers.
struct Ctx {
    workload: Workload,
    project: i64,
    region: i64,
    /// Unique per run: names never collide with an earlier run's.
    tag: String,
    /// W2: the group read; W4/W5: the groups used.
    groups: Vec<String>,
    page: u32,
    list_span: u64,
    seed_rules: usize,
}

impl Ctx {
    fn v1(&self) -> String {
        format!("/cloud/v1/securitygroups/{}/{}", self.project, self.region)
    }

    fn v2(&self) -> String {
        format!("/cloud/v2/security_groups/{}/{}", self.project, self.region)
    }
}

fn micros(since: Instant) -> u32 {
    since.elapsed().as_micros().min(u32::MAX as u128) as u32
}

/// Rules of a W1 group: SSH, HTTP and HTTPS from anywhere.
fn w1_rules() -> Value {
    json!([
        {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"},
        {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 80, "port_range_max": 80, "remote_ip_prefix": "0.0.0.0/0"},
        {"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 443, "port_range_max": 443, "remote_ip_prefix": "0.0.0.0/0"},
    ])
}

/// `n` distinct ingress rules for seeded groups.
fn seed_rules(n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|k| {
                let port = 1000 + k as u64;
                json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": port, "port_range_max": port, "remote_ip_prefix": "10.0.0.0/8"})
            })
            .collect(),
    )
}

/// Polls a task until it is FINISHED (returns `created_resources`) or ERROR: immediately, once
/// more right after yielding, then after 1, 2 and 5 ms (tokio's timer does not go finer).
async fn wait_task(client: &mut Client, id: &str, samples: &mut Samples) -> anyhow::Result<Value> {
    const PAUSE_US: [u64; 5] = [0, 1000, 1000, 2000, 5000];
    let path = format!("/cloud/v1/tasks/{id}");
    for attempt in 0.. {
        let response = client.get(&path).await?.expect(StatusCode::OK, "GET task")?;
        samples.polls += 1;
        let task = response.json()?;
        match task.get("state").and_then(Value::as_str) {
            Some("FINISHED") => return Ok(task.get("created_resources").cloned().unwrap_or(Value::Null)),
            Some("ERROR") => bail!("task {id} failed: {}", task.get("error").unwrap_or(&Value::Null)),
            _ => {}
        }
        match PAUSE_US[attempt.min(PAUSE_US.len() - 1)] {
            0 => tokio::task::yield_now().await,
            us => tokio::time::sleep(Duration::from_micros(us)).await,
        }
    }
    unreachable!()
}

fn first_task(response: client::Response, what: &str) -> anyhow::Result<String> {
    let body = response.expect(StatusCode::OK, what)?.json()?;
    body.get("tasks")
        .and_then(|t| t.get(0))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("{what}: no task id in {body}"))
}

/// A v2 create: POSTs `body` to `path` (the phase "post"), waits for its task ("wait") and returns
/// the first id the task created under `resources` (`security_groups`, `security_group_rules`).
async fn create_v2(
    client: &mut Client,
    samples: &mut Samples,
    path: &str,
    body: &Value,
    what: &str,
    resources: &str,
) -> anyhow::Result<String> {
    let t = Instant::now();
    let task = first_task(client.post(path, body).await?, what)?;
    samples.phase("post", micros(t));
    let t = Instant::now();
    let created = wait_task(client, &task, samples).await?;
    samples.phase("wait", micros(t));
    created
        .pointer(&format!("/{resources}/0"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .with_context(|| format!("task {task}: no {resources} in {created}"))
}

/// One operation of the workload; `i` is its sequence number in the run.
async fn run_op(ctx: &Ctx, client: &mut Client, i: u64, samples: &mut Samples) -> anyhow::Result<()> {
    match ctx.workload {
        Workload::W1 => {
            let body = json!({"name": format!("lg-{}-{i}", ctx.tag), "rules": w1_rules()});
            let id = create_v2(client, samples, &ctx.v2(), &body, "POST v2 group", "security_groups").await?;
            let t = Instant::now();
            let group = client.get(&format!("{}/{id}", ctx.v1())).await?.expect(StatusCode::OK, "GET group")?.json()?;
            samples.phase("get", micros(t));
            let rules = group.get("security_group_rules").and_then(Value::as_array).map_or(0, Vec::len);
            if rules != 3 {
                bail!("group {id} has {rules} rules, expected 3");
            }
        }
        Workload::W2 => {
            client.get(&format!("{}/{}", ctx.v1(), ctx.groups[0])).await?.expect(StatusCode::OK, "GET group")?;
        }
        Workload::W3 => {
            let pages = (ctx.list_span / ctx.page as u64).max(1);
            let offset = (i % pages) * ctx.page as u64;
            let path = format!("{}?limit={}&offset={offset}", ctx.v1(), ctx.page);
            client.get(&path).await?.expect(StatusCode::OK, "list groups")?;
        }
        Workload::W4 => {
            let n = ctx.groups.len() as u64;
            let group = &ctx.groups[(i % n) as usize];
            // Distinct (protocol, port) per group: never a duplicate rule.
            let round = i / n;
            let protocol = ["tcp", "udp", "sctp", "dccp"][((round / 65535) % 4) as usize];
            let port = 1 + round % 65535;
            let rule = json!({"direction": "ingress", "ethertype": "IPv4", "protocol": protocol,
                "port_range_min": port, "port_range_max": port, "remote_ip_prefix": "192.0.2.0/24"});
            let path = format!("{}/{group}/rules", ctx.v2());
            let rule_id = create_v2(client, samples, &path, &rule, "POST v2 rule", "security_group_rules").await?;
            let t = Instant::now();
            let group = client.get(&format!("{}/{group}", ctx.v1())).await?.expect(StatusCode::OK, "GET group")?.json()?;
            samples.phase("get", micros(t));
            let found = group
                .get("security_group_rules")
                .and_then(Value::as_array)
                .is_some_and(|rules| rules.iter().any(|r| r.get("id").and_then(Value::as_str) == Some(&rule_id)));
            if !found {
                bail!("rule {rule_id} not found in group {group} after its task finished");
            }
        }
        Workload::W5 => {
            let id = &ctx.groups[i as usize];
            client.delete(&format!("{}/{id}", ctx.v1())).await?.expect(StatusCode::NO_CONTENT, "DELETE group")?;
        }
        Workload::Seed => {
            create_v1(ctx, client, &format!("lg-{}-{i}", ctx.tag), ctx.seed_rules).await?;
        }
        Workload::Fair | Workload::Soak | Workload::Agents => bail!("the {:?} workload has its own driver", ctx.workload),
    }
    Ok(())
}

/// The synchronous legacy create: the fast way to make groups to work on. Returns the new id.
async fn create_v1(ctx: &Ctx, client: &mut Client, name: &str, rules: usize) -> anyhow::Result<String> {
    let body = json!({"security_group": {"name": name, "description": "", "security_group_rules": seed_rules(rules)}});
    let group = client.post(&ctx.v1(), &body).await?.expect(StatusCode::OK, "POST v1 group")?.json()?;
    group.get("id").and_then(Value::as_str).map(str::to_owned).context("v1 create: no id in the response")
}

struct Outcome {
    samples: Samples,
    elapsed: Duration,
    server_cpu_us: u64,
    client_cpu_us: u64,
    db_cpu_us: u64,
}

/// Runs `ops` operations (at most) on `concurrency` workers until `deadline`.
async fn drive(ctx: Arc<Ctx>, targets: Arc<Vec<Target>>, args: &Args, ops: u64, deadline: Instant) -> anyhow::Result<Outcome> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..args.concurrency {
        let ctx = ctx.clone();
        let next = next.clone();
        let mut client = Client::new(targets.clone(), &args.api_key, w)?;
        let op_timeout = Duration::from_secs(args.op_timeout);
        workers.push(tokio::spawn(async move {
            let mut samples = Samples::default();
            loop {
                if Instant::now() >= deadline {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= ops {
                    break;
                }
                let t = Instant::now();
                match tokio::time::timeout(op_timeout, run_op(&ctx, &mut client, i, &mut samples)).await {
                    Ok(Ok(())) => samples.ops.push(micros(t)),
                    Ok(Err(e)) => samples.error(format!("{e:#}")),
                    Err(_) => samples.error(format!("operation {i} timed out")),
                }
            }
            samples.requests = client.requests;
            samples
        }));
    }
    let mut samples = Samples::default();
    for worker in workers {
        samples.merge(worker.await?);
    }
    Ok(Outcome { samples, elapsed: started.elapsed(), server_cpu_us: 0, client_cpu_us: 0, db_cpu_us: 0 })
}

/// Creates `n` groups of `rules` rules (v1 create, `concurrency` at once); returns their ids.
async fn seed(ctx: &Arc<Ctx>, targets: &Arc<Vec<Target>>, args: &Args, n: u64, rules: usize) -> anyhow::Result<Vec<String>> {
    if n == 0 {
        return Ok(Vec::new());
    }
    let started = Instant::now();
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for w in 0..args.concurrency.max(1) {
        let ctx = ctx.clone();
        let next = next.clone();
        let mut client = Client::new(targets.clone(), &args.api_key, w)?;
        workers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(ids);
                }
                ids.push(create_v1(&ctx, &mut client, &format!("lg-seed-{}-{i}", ctx.tag), rules).await?);
            }
        }));
    }
    let mut ids = Vec::with_capacity(n as usize);
    for worker in workers {
        ids.extend(worker.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("seeded {n} groups of {rules} rules in {secs:.1} s ({:.0}/s)", n as f64 / secs);
    Ok(ids)
}

/// Groups in the project (the `count` of a one-item list).
async fn count_groups(ctx: &Ctx, targets: &Arc<Vec<Target>>, api_key: &str) -> anyhow::Result<u64> {
    let mut client = Client::new(targets.clone(), api_key, 0)?;
    let page = client.get(&format!("{}?limit=1", ctx.v1())).await?.expect(StatusCode::OK, "list groups")?.json()?;
    page.get("count").and_then(Value::as_u64).context("list: no count")
}

fn run_tag() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!("{:x}{:x}", (nanos as u64) & 0xffff_ffff, std::process::id() & 0xffff)
}

async fn run(args: Args) -> anyhow::Result<()> {
    if args.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let mut targets = Vec::new();
    for url in &args.url {
        targets.push(Target::resolve(url, args.allow_remote).await?);
    }
    let targets = Arc::new(targets);
    let mut ctx = Ctx {
        workload: args.workload,
        project: args.project,
        region: args.region,
        tag: run_tag(),
        groups: Vec::new(),
        page: args.page.max(1),
        list_span: args.seed_groups.clamp(1, 1000),
        seed_rules: args.seed_rules,
    };
    let mut ops = args.count;
    if args.workload == Workload::Fair {
        return fair::run(&args, targets, ctx.tag).await;
    }
    if args.workload == Workload::Soak {
        return soak::run(&args, targets, ctx.tag).await;
    }
    if args.workload == Workload::Agents {
        return agents::run(&args, targets, ctx).await;
    }

    // Preparation, outside the measurement.
    let prep = Arc::new(ctx.clone_shallow());
    match args.workload {
        Workload::W2 => {
            let mut client = Client::new(targets.clone(), &args.api_key, 0)?;
            ctx.groups = vec![create_v1(&prep, &mut client, &format!("lg-{}-w2", ctx.tag), 3).await?];
        }
        Workload::W3 => {
            let have = count_groups(&prep, &targets, &args.api_key).await?;
            if have < args.seed_groups {
                seed(&prep, &targets, &args, args.seed_groups - have, args.seed_rules).await?;
            }
        }
        Workload::W4 => {
            ctx.groups = seed(&prep, &targets, &args, args.groups.clamp(1, ops.max(1)), 0).await?;
        }
        Workload::W5 => {
            ops = ops.min(1_000_000);
            ctx.groups = seed(&prep, &targets, &args, ops, 3).await?;
        }
        Workload::W1 | Workload::Seed | Workload::Fair | Workload::Soak | Workload::Agents => {}
    }

    let deadline = Instant::now() + Duration::from_secs_f64(args.duration);
    let db_before = args.db_comm.as_deref().map(cpu_by_comm).unwrap_or_default();
    let cpu_before = cpu_snapshot(&args.server_pid);
    let mut outcome = drive(Arc::new(ctx), targets.clone(), &args, ops, deadline).await?;
    let cpu_after = cpu_snapshot(&args.server_pid);
    let db_after = args.db_comm.as_deref().map(cpu_by_comm).unwrap_or_default();
    outcome.db_cpu_us = cpu_delta(&db_before, &db_after);
    outcome.server_cpu_us = cpu_after.0.saturating_sub(cpu_before.0);
    outcome.client_cpu_us = cpu_after.1.saturating_sub(cpu_before.1);
    report(&args, outcome);
    Ok(())
}

impl Ctx {
    fn clone_shallow(&self) -> Ctx {
        Ctx {
            workload: self.workload,
            project: self.project,
            region: self.region,
            tag: self.tag.clone(),
            groups: Vec::new(),
            page: self.page,
            list_span: self.list_span,
            seed_rules: self.seed_rules,
        }
    }
}

fn report(args: &Args, outcome: Outcome) {
    let Outcome { mut samples, elapsed, server_cpu_us, client_cpu_us, db_cpu_us } = outcome;
    let secs = elapsed.as_secs_f64();
    let summary = Summary::of(&mut samples.ops);
    let ok = summary.n as u64;
    let ops_per_s = if secs > 0.0 { ok as f64 / secs } else { 0.0 };
    let phases: serde_json::Map<String, Value> =
        samples.phases.iter_mut().map(|(name, values)| (name.to_string(), Summary::of(values).json())).collect();
    let workload = args.workload.to_possible_value().map(|v| v.get_name().to_string()).unwrap_or_default();
    let result = json!({
        "workload": workload,
        "label": args.label,
        "targets": args.url.len(),
        "concurrency": args.concurrency,
        "ops": ok,
        "errors": samples.errors,
        "requests": samples.requests,
        "elapsed_s": round3(secs),
        "ops_per_s": ops_per_s.round(),
        "mean_ms": round3(summary.mean_ms),
        "p50_ms": round3(summary.p50_ms),
        "p90_ms": round3(summary.p90_ms),
        "p99_ms": round3(summary.p99_ms),
        "max_ms": round3(summary.max_ms),
        "polls_per_op": if ok > 0 { round3(samples.polls as f64 / (ok + samples.errors) as f64) } else { 0.0 },
        "phases": phases,
        // CPU per successful operation (µs); the server's only with --server-pid.
        "server_cpu_us_per_op": if ok > 0 && !args.server_pid.is_empty() { round3(server_cpu_us as f64 / ok as f64) } else { 0.0 },
        "client_cpu_us_per_op": if ok > 0 { round3(client_cpu_us as f64 / ok as f64) } else { 0.0 },
        "server_cpu_cores": if secs > 0.0 { round3(server_cpu_us as f64 / 1e6 / secs) } else { 0.0 },
        "client_cpu_cores": if secs > 0.0 { round3(client_cpu_us as f64 / 1e6 / secs) } else { 0.0 },
        "db_cpu_us_per_op": if ok > 0 && args.db_comm.is_some() { round3(db_cpu_us as f64 / ok as f64) } else { 0.0 },
        "db_cpu_cores": if secs > 0.0 { round3(db_cpu_us as f64 / 1e6 / secs) } else { 0.0 },
        "error_samples": samples.error_samples,
    });
    let mut table = String::new();
    table.push_str(&format!(
        "{:<5} {:>4} {:>8} {:>6} {:>9} {:>8} {:>8} {:>8}  {}\n",
        "load", "conc", "ops", "errors", "ops/s", "p50 ms", "p99 ms", "max ms", "label"
    ));
    table.push_str(&format!(
        "{:<5} {:>4} {:>8} {:>6} {:>9.0} {:>8.3} {:>8.3} {:>8.3}  {}\n",
        workload, args.concurrency, ok, samples.errors, ops_per_s, summary.p50_ms, summary.p99_ms, summary.max_ms, args.label
    ));
    for (name, phase) in &phases {
        table.push_str(&format!(
            "      phase {name:<5} mean {:.3} ms, p50 {:.3} ms, p99 {:.3} ms\n",
            phase["mean_ms"].as_f64().unwrap_or(0.0),
            phase["p50_ms"].as_f64().unwrap_or(0.0),
            phase["p99_ms"].as_f64().unwrap_or(0.0)
        ));
    }
    if !args.server_pid.is_empty() {
        table.push_str(&format!(
            "      CPU per operation: server {} us, load generator {} us (cores busy: server {}, load generator {})\n",
            result["server_cpu_us_per_op"], result["client_cpu_us_per_op"], result["server_cpu_cores"], result["client_cpu_cores"]
        ));
    }
    if args.db_comm.is_some() {
        table.push_str(&format!(
            "      database processes: {} us CPU per operation ({} cores busy)\n",
            result["db_cpu_us_per_op"], result["db_cpu_cores"]
        ));
    }
    if samples.polls > 0 {
        table.push_str(&format!("      task polls per operation: {}\n", result["polls_per_op"]));
    }
    for message in &samples.error_samples {
        table.push_str(&format!("      error: {message}\n"));
    }
    if args.json {
        eprint!("{table}");
        println!("{result}");
    } else {
        print!("{table}");
    }
}

/// `palisade-loadgen seed-file ...`: a command of its own, outside the workloads' arguments
/// (which require `--url` and a key).
#[derive(Parser, Debug)]
#[command(name = "palisade-loadgen seed-file", about = "Writes a `palisade import` file of many groups and ports to standard output")]
struct SeedFileCommand {
    #[command(flatten)]
    seed: seed::SeedFile,
}

fn main() -> anyhow::Result<()> {
    if std::env::args().nth(1).as_deref() == Some("seed-file") {
        let command = SeedFileCommand::parse_from(std::env::args().skip(1));
        return seed::run(&command.seed);
    }
    let args = Args::parse();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads).enable_all().build()?
    };
    runtime.block_on(run(args))
}
