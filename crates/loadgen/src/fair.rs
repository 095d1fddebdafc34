//! The `fair` workload (issue 12, "Fair CPU"): while one tenant runs the heaviest verdict, list
//! and create loops it can, another tenant reads one group and `/healthz` at a steady pace; the
//! result is the second tenant's latency (target: GET p99 < 20 ms, `/healthz` < 5 ms).
//!
//! Preparation (not measured; skipped when `--fair-state` names a file written by an earlier run
//! against the same database):
//! - tenant A (`--api-key`, client `--client-id`): a "members" group whose ports (registered with
//!   `--platform-key`, 32 addresses each, spread over 100 hosts) hold `--members` addresses; a
//!   group of `--member-rules` rules naming it as their remote group; a port bound to that group;
//!   and `--list-groups` groups of `--list-rules` rules each (the big list page);
//! - tenant B (`--victim-key`): one group of 3 rules.
//!
//! Measured, for `--duration` seconds:
//! - tenant A: `--verdict-loops` loops of `POST /palisade/v1/verdicts` about the port (a member
//!   address, the last rule's port; `--verdict-flows` flows per request), `--list-loops` loops of
//!   `GET …?limit=1000` of its project (every big group), and `--create-loops` loops of v1
//!   creates of a group with `--list-rules` rules (in project `--project` + 1);
//! - tenant B, on a thread and runtime of its own so the attack's responses never delay its
//!   clock (the attack's thread runs at `nice` +10): a GET of its group, then `/healthz`, then a
//!   pause of `--victim-pause-ms`, repeated.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hyper::StatusCode;
use serde_json::{Value, json};

use crate::client::{Client, Target};
use crate::stats::{Summary, round3};

#[derive(clap::Args, Debug, Clone)]
pub struct FairArgs {
    /// fair: the victim tenant's key (another client than `--api-key`'s).
    #[arg(long, env = "PALISADE_VICTIM_KEY", hide_env_values = true)]
    pub victim_key: Option<String>,
    /// fair, agents: a platform key, to register the ports.
    #[arg(long, env = "PALISADE_PLATFORM_KEY", hide_env_values = true)]
    pub platform_key: Option<String>,
    /// fair, agents: the client id of `--api-key`.
    #[arg(long, default_value_t = 1)]
    pub client_id: i64,
    /// fair: member addresses of the remote group.
    #[arg(long, default_value_t = 100_000)]
    pub members: u32,
    /// fair: rules naming the remote group.
    #[arg(long, default_value_t = 250)]
    pub member_rules: u16,
    /// fair: groups of the big list page.
    #[arg(long, default_value_t = 400)]
    pub list_groups: u32,
    /// fair: rules of each of those groups (and of each created group).
    #[arg(long, default_value_t = 250)]
    pub list_rules: usize,
    #[arg(long, default_value_t = 2)]
    pub verdict_loops: usize,
    /// fair: flows per verdict request (distinct member addresses).
    #[arg(long, default_value_t = 1)]
    pub verdict_flows: usize,
    #[arg(long, default_value_t = 2)]
    pub list_loops: usize,
    #[arg(long, default_value_t = 2)]
    pub create_loops: usize,
    /// fair: the victim's pause between rounds (GET, then `/healthz`).
    #[arg(long, default_value_t = 10)]
    pub victim_pause_ms: u64,
    /// fair: where the prepared ids are kept, so later runs (against another build, on the same
    /// data directory) skip the preparation.
    #[arg(long)]
    pub fair_state: Option<std::path::PathBuf>,
}

/// What the preparation made.
struct Prepared {
    port: String,
    victim_group: String,
}

fn v1(project: i64, region: i64) -> String {
    format!("/cloud/v1/securitygroups/{project}/{region}")
}

fn member_ip(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(0x0a00_0000 + i)
}

async fn create_group(client: &mut Client, project: i64, region: i64, name: &str, rules: Value) -> anyhow::Result<String> {
    let body = json!({"security_group": {"name": name, "description": "", "security_group_rules": rules}});
    let group = client.post(&v1(project, region), &body).await?.expect(StatusCode::OK, "POST v1 group")?.json()?;
    group.get("id").and_then(Value::as_str).map(str::to_owned).context("v1 create: no id")
}

fn port_body(fair: &FairArgs, project: i64, region: i64, n: u32, ips: Vec<String>, groups: &[&str]) -> Value {
    json!({
        "client_id": fair.client_id, "project_id": project, "region_id": region,
        "instance_id": format!("00000000-0000-4000-8000-{n:012x}"),
        "host": format!("fair-{}", n % 100),
        "mac_address": format!("02:00:{:02x}:{:02x}:{:02x}:{:02x}", (n >> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff),
        "fixed_ips": ips, "security_group_ids": groups,
    })
}

fn big_rules(n: usize, remote_group: Option<&str>) -> Value {
    Value::Array(
        (0..n)
            .map(|k| {
                let mut rule = json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
                    "port_range_min": 1000 + k, "port_range_max": 1000 + k});
                match remote_group {
                    Some(g) => rule["remote_group_id"] = json!(g),
                    None => rule["remote_ip_prefix"] = json!("10.0.0.0/8"),
                }
                rule
            })
            .collect(),
    )
}

async fn prepare(args: &crate::Args, targets: &Arc<Vec<Target>>, tag: &str) -> anyhow::Result<Prepared> {
    let fair = &args.fair;
    let (project, region) = (args.project, args.region);
    let platform_key = fair.platform_key.as_deref().context("fair needs --platform-key")?;
    let victim_key = fair.victim_key.as_deref().context("fair needs --victim-key")?;
    let started = Instant::now();
    let mut a = Client::new(targets.clone(), &args.api_key, 0)?;
    let members = create_group(&mut a, project, region, &format!("fair-members-{tag}"), json!([])).await?;
    // Member ports of 32 addresses, 16 registrations at once.
    let ports = fair.members.div_ceil(32);
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut workers = Vec::new();
    for w in 0..16 {
        let (next, members, fair) = (next.clone(), members.clone(), fair.clone());
        let mut platform = Client::new(targets.clone(), platform_key, w)?;
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= ports {
                    return Ok::<_, anyhow::Error>(());
                }
                let ips = (n * 32..((n + 1) * 32).min(fair.members)).map(|i| member_ip(i).to_string()).collect();
                let body = port_body(&fair, project, region, n, ips, &[&members]);
                platform.post("/palisade/v1/ports", &body).await?.expect(StatusCode::CREATED, "POST port")?;
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    eprintln!("fair: {} member addresses on {ports} ports in {:.1} s", fair.members, started.elapsed().as_secs_f64());
    let heavy =
        create_group(&mut a, project, region, &format!("fair-heavy-{tag}"), big_rules(fair.member_rules as usize, Some(&members))).await?;
    let mut platform = Client::new(targets.clone(), platform_key, 0)?;
    let body = port_body(fair, project, region, 0xff_ffff, vec!["192.0.2.10".into()], &[&heavy]);
    let port = platform.post("/palisade/v1/ports", &body).await?.expect(StatusCode::CREATED, "POST port")?.json()?;
    let port = port.get("id").and_then(Value::as_str).context("port: no id")?.to_owned();
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut workers = Vec::new();
    for w in 0..4 {
        let (next, tag, fair) = (next.clone(), tag.to_owned(), fair.clone());
        let mut a = Client::new(targets.clone(), &args.api_key, w)?;
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= fair.list_groups {
                    return Ok::<_, anyhow::Error>(());
                }
                create_group(&mut a, project, region, &format!("fair-list-{tag}-{n}"), big_rules(fair.list_rules, None)).await?;
            }
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let mut b = Client::new(targets.clone(), victim_key, 0)?;
    let victim_group = create_group(&mut b, project, region, &format!("fair-victim-{tag}"), crate::w1_rules()).await?;
    eprintln!("fair: prepared in {:.1} s", started.elapsed().as_secs_f64());
    Ok(Prepared { port, victim_group })
}

/// Latencies (µs) and answers by status of one kind of request.
#[derive(Default)]
struct Tally {
    micros: Vec<u32>,
    statuses: std::collections::BTreeMap<u16, u64>,
    errors: u64,
}

impl Tally {
    fn record(&mut self, started: Instant, result: anyhow::Result<crate::client::Response>) {
        match result {
            Ok(response) => {
                *self.statuses.entry(response.status.as_u16()).or_default() += 1;
                self.micros.push(crate::micros(started));
            }
            Err(_) => self.errors += 1,
        }
    }

    fn json(mut self) -> Value {
        let summary = Summary::of(&mut self.micros);
        let statuses: serde_json::Map<String, Value> = self.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect();
        json!({"n": summary.n, "p50_ms": round3(summary.p50_ms), "p99_ms": round3(summary.p99_ms), "max_ms": round3(summary.max_ms),
            "statuses": statuses, "errors": self.errors})
    }
}

/// The victim's loop, on its own thread and runtime: GET its group, then `/healthz`, then pause.
fn victim(targets: Arc<Vec<Target>>, key: String, path: String, pause: Duration, stop: Arc<AtomicBool>) -> (Tally, Tally) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async move {
        let (mut get, mut health) = (Tally::default(), Tally::default());
        let (Ok(mut client), Ok(mut anonymous)) = (Client::new(targets.clone(), &key, 0), Client::new(targets, "none", 0)) else {
            return (get, health);
        };
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            get.record(t, client.get(&path).await);
            let t = Instant::now();
            health.record(t, anonymous.get("/healthz").await);
            tokio::time::sleep(pause).await;
        }
        (get, health)
    })
}

pub async fn run(args: &crate::Args, targets: Arc<Vec<Target>>, tag: String) -> anyhow::Result<()> {
    let fair = &args.fair;
    let victim_key = fair.victim_key.clone().context("fair needs --victim-key")?;
    let state = fair.fair_state.as_ref().and_then(|p| std::fs::read_to_string(p).ok()).and_then(|t| serde_json::from_str::<Value>(&t).ok());
    let prepared = match state {
        Some(state) => Prepared {
            port: state["port"].as_str().context("fair state: port")?.to_owned(),
            victim_group: state["victim_group"].as_str().context("fair state: victim_group")?.to_owned(),
        },
        None => {
            let prepared = prepare(args, &targets, &tag).await?;
            if let Some(path) = &fair.fair_state {
                std::fs::write(path, json!({"port": prepared.port, "victim_group": prepared.victim_group}).to_string())?;
            }
            prepared
        }
    };
    let (project, region) = (args.project, args.region);
    let last = fair.members.max(1) - 1;
    let flows: Vec<Value> = (0..fair.verdict_flows.max(1) as u32)
        .map(|k| {
            json!({"port_id": prepared.port, "direction": "ingress", "remote_ip": member_ip(last - k % fair.members.max(1)).to_string(),
                "protocol": "tcp", "port": 999 + fair.member_rules as u32})
        })
        .collect();
    let verdict_body = if flows.len() == 1 { flows[0].clone() } else { json!({"flows": flows}) };

    let stop = Arc::new(AtomicBool::new(false));
    let cpu_before = crate::cpu_snapshot(&args.server_pid);
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(args.duration);
    let victim_thread = {
        let (targets, stop) = (targets.clone(), stop.clone());
        let path = format!("{}/{}", v1(project, region), prepared.victim_group);
        let pause = Duration::from_millis(fair.victim_pause_ms);
        std::thread::spawn(move || victim(targets, victim_key, path, pause, stop))
    };
    // The attack's loops share this process with the victim's clock: they run at a lower priority
    // (this thread, from now on; the victim's thread was started before), so that reading their
    // big answers never delays the victim's measurement. A real attacker is another machine.
    // SAFETY: a plain system call on the calling thread (Linux: `who` 0 is the calling thread).
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
    let mut loops = Vec::new();
    for (kind, count) in [("verdict", fair.verdict_loops), ("list", fair.list_loops), ("create", fair.create_loops)] {
        for w in 0..count {
            let mut client = Client::new(targets.clone(), &args.api_key, w)?;
            let (verdict_body, tag, list_rules) = (verdict_body.clone(), tag.clone(), fair.list_rules);
            loops.push(tokio::spawn(async move {
                let mut tally = Tally::default();
                let mut i = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let result = match kind {
                        "verdict" => client.post("/palisade/v1/verdicts", &verdict_body).await,
                        "list" => client.get(&format!("{}?limit=1000", v1(project, region))).await,
                        _ => {
                            let body = json!({"security_group": {"name": format!("fair-create-{tag}-{w}-{i}"), "description": "",
                                "security_group_rules": big_rules(list_rules, None)}});
                            client.post(&v1(project + 1, region), &body).await
                        }
                    };
                    tally.record(t, result);
                    i += 1;
                }
                (kind, tally)
            }));
        }
    }
    tokio::time::sleep_until(deadline.into()).await;
    let mut attack: std::collections::BTreeMap<&str, Tally> = Default::default();
    for task in loops {
        let (kind, tally) = task.await?;
        let into = attack.entry(kind).or_default();
        into.micros.extend(tally.micros);
        into.errors += tally.errors;
        for (status, n) in tally.statuses {
            *into.statuses.entry(status).or_default() += n;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let (get, health) = victim_thread.join().map_err(|_| anyhow::anyhow!("the victim thread panicked"))?;
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = crate::cpu_snapshot(&args.server_pid);
    if get.micros.is_empty() {
        bail!("the victim got no answer at all");
    }
    let (get, health) = (get.json(), health.json());
    let result = json!({
        "workload": "fair",
        "label": args.label,
        "elapsed_s": round3(elapsed),
        "victim_get": get,
        "healthz": health,
        "attack": attack.into_iter().map(|(k, t)| (k.to_string(), t.json())).collect::<serde_json::Map<_, _>>(),
        "server_cpu_cores": if args.server_pid.is_empty() { 0.0 } else { round3((cpu_after.0 - cpu_before.0) as f64 / 1e6 / elapsed) },
    });
    eprintln!(
        "fair {}: victim GET p50 {} ms, p99 {} ms, max {} ms (n {}); /healthz p50 {} ms, p99 {} ms, max {} ms",
        args.label, get["p50_ms"], get["p99_ms"], get["max_ms"], get["n"], health["p50_ms"], health["p99_ms"], health["max_ms"]
    );
    for (kind, t) in result["attack"].as_object().into_iter().flatten() {
        eprintln!(
            "      attack {kind}: n {}, p50 {} ms, p99 {} ms, statuses {}, errors {}",
            t["n"], t["p50_ms"], t["p99_ms"], t["statuses"], t["errors"]
        );
    }
    if args.json {
        println!("{result}");
    }
    Ok(())
}
