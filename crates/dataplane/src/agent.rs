//! `palisade agent`: follows the policy of one host — every client's ports on it — through the
//! API and keeps the kernel in step.
//!
//! Loop: long-poll `GET /palisade/v1/agents/{host}/policy?after=REV&wait=S`; on a new policy,
//! compile it, place each port as the host has it attached ([`crate::host`]: routed or bridged,
//! or refused), render the tables, apply them (see [`crate::apply`]) and report the revision with
//! `PUT /palisade/v1/agents/{host}/status`. While it waits, it watches the host's links
//! (`ip monitor link`, and a rescan every few seconds): a device that appears, joins a bridge or
//! goes is re-placed at once, and a device with the port prefix that is no port is dropped and
//! named in the log. The API unreachable is retried every [`UNREACHABLE_RETRY`] (so the agent
//! catches up within a second of its return); other errors (refusals, `nft` failing) with
//! exponential backoff; the tables in the kernel stay as they were meanwhile. The first apply
//! after start replaces whatever tables of ours the kernel holds and reconciles connection
//! tracking with the policy.
//!
//! What the tables observe goes back too ([`Observation`]): every `--stats-interval` the agent
//! reads the per-port rule hit counts ([`crate::stats`]; also right before each apply, so a
//! replace loses nothing) and posts the deltas to `POST /palisade/v1/agents/{host}/rule-stats`;
//! a thread reads the logged packets ([`crate::flowlog`]) and every `--flow-log-interval` the
//! agent posts the flow records to `POST /palisade/v1/agents/{host}/flow-logs`. A failed post
//! keeps what it carried for the next one (bounded: [`crate::stats::MAX_PENDING`],
//! [`FLOW_OUTBOX`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use palisade_core::observe::{FlowLogEvents, FlowLogReport, RuleStatsReport};
use palisade_core::policy::{CompiledHost, HostPolicy, compile};
use reqwest::StatusCode;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

use crate::apply::{Applier, Outcome, Tools};
use crate::flowlog::{FlowAggregator, FlowOutbox, NflogSocket, parse_messages};
use crate::host::{Links, MarkIds, Mode, ensure_bridge_netfilter, plan};
use crate::nft::{FlowLogLimits, Layout};
use crate::stats::{HitTracker, PortIndex, read_hits, unix_now};

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Base URL of the API, e.g. `http://127.0.0.1:8080` or `https://palisade.example:8443`.
    pub api: String,
    pub host: String,
    pub api_key: String,
    /// Long-poll duration asked of the API, in seconds.
    pub wait: u64,
    pub tools: Tools,
    /// The CA certificate(s) (PEM) the API's HTTPS certificate must chain to; `None`: the
    /// platform's roots.
    pub ca_cert: Option<PathBuf>,
}

/// The agent's HTTP client. With `ca_cert`, an HTTPS server is trusted only if its certificate
/// chains to one of the certificates in that PEM file (the platform's roots are not used);
/// without, the platform's roots apply.
pub fn http_client(ca_cert: Option<&Path>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(5));
    if let Some(path) = ca_cert {
        let pem = std::fs::read(path).with_context(|| format!("reading the CA certificate {}", path.display()))?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).with_context(|| format!("parsing the PEM certificates of {}", path.display()))?;
        if certs.is_empty() {
            bail!("{} holds no PEM certificate", path.display());
        }
        builder = builder.tls_built_in_root_certs(false);
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder.build().context("building the HTTP client")
}

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often an unreachable API is tried again: cheap (a refused connection), and what bounds
/// the agent's catching up after an outage.
pub const UNREACHABLE_RETRY: Duration = Duration::from_millis(250);
/// A full rescan of the host's links, besides the ones `ip monitor link` triggers.
const RESCAN: Duration = Duration::from_secs(5);

/// How the agent enforces ports on its host (`--mode`, `--port-device-prefix`).
#[derive(Debug, Clone)]
pub struct Enforcement {
    pub mode: Mode,
    /// Devices with this prefix that are not ports of the host are dropped both ways (Neutron
    /// names port devices `tap…`); empty: none are.
    pub port_device_prefix: String,
}

impl Default for Enforcement {
    fn default() -> Self {
        Enforcement { mode: Mode::Auto, port_device_prefix: "tap".into() }
    }
}

/// How the agent reports what its tables observe (`--stats-interval`, `--flow-log-*`).
#[derive(Debug, Clone)]
pub struct Observation {
    /// How often hit-count deltas are read and posted.
    pub stats_interval: Duration,
    /// How often flow records are posted (a record reaches the API within this plus the post).
    pub flow_log_interval: Duration,
    /// The NFLOG group, per-port rate and snap length of the log rules.
    pub flow_log: FlowLogLimits,
}

impl Default for Observation {
    fn default() -> Self {
        Observation {
            stats_interval: Duration::from_secs(10),
            flow_log_interval: Duration::from_secs(10),
            flow_log: FlowLogLimits::default(),
        }
    }
}

/// Distinct flows aggregated between two posts; past it a flow's packets are counted as dropped.
pub const FLOW_AGGREGATE: usize = 20_000;
/// Flow records held for the API (a failed post keeps them); past it the oldest are dropped.
pub const FLOW_OUTBOX: usize = 50_000;
/// Flow records per post.
pub const FLOW_BATCH: usize = 5_000;

/// What a long-poll brought.
enum Fetched {
    /// A policy to apply, with its tag.
    New(HostPolicy, Option<String>),
    /// Nothing new to apply; the revision the API is at, if it said.
    Same(Option<i64>),
}

pub struct Agent {
    config: AgentConfig,
    enforcement: Enforcement,
    client: reqwest::Client,
    applier: Applier,
    /// The revision applied last (`None` before the first apply).
    applied: Option<i64>,
    /// The API's tag of the policy applied last: sent as `If-None-Match`, so a revision that
    /// changes nothing for this host comes as a bodiless 304.
    etag: Option<String>,
    /// Whether the API has heard of `applied`.
    reported: bool,
    /// The host's links as last scanned.
    links: Option<Links>,
    ids: MarkIds,
    /// What was logged about devices, so each refusal or stray device is named once.
    noted: Noted,
    /// Since when the API has been unreachable.
    unreachable_since: Option<Instant>,
    observation: Observation,
    /// The flow-log setting of each port of the policy applied last.
    flow_logs: BTreeMap<uuid::Uuid, FlowLogEvents>,
    hits: HitTracker,
    /// Fed by the log-reading thread.
    flows: Arc<Mutex<FlowAggregator>>,
    outbox: FlowOutbox,
    /// Whether a failed post was logged already (so an API without the endpoint is named once).
    post_failed: bool,
}

#[derive(Default)]
struct Noted {
    claimed_twice: BTreeMap<String, Vec<uuid::Uuid>>,
    refused: BTreeMap<String, String>,
    unregistered: BTreeSet<String>,
    bridged: BTreeMap<String, String>,
}

/// The request of one long-poll, owned, so the poll can wait while the agent handles link
/// events.
struct Poll {
    client: reqwest::Client,
    url: String,
    auth: String,
    after: Option<i64>,
    etag: Option<String>,
    wait: u64,
}

impl Poll {
    async fn run(self) -> anyhow::Result<Fetched> {
        let mut request = self.client.get(&self.url).header("Authorization", &self.auth);
        if let Some(revision) = self.after {
            request = request
                .query(&[("after", revision.to_string()), ("wait", self.wait.to_string())])
                .timeout(Duration::from_secs(self.wait + 15));
            if let Some(tag) = &self.etag {
                request = request.header("If-None-Match", tag);
            }
        } else {
            request = request.timeout(Duration::from_secs(30));
        }
        let response = request.send().await.context("asking the API for the policy")?;
        let revision = response.headers().get("x-policy-revision").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i64>().ok());
        match response.status() {
            StatusCode::NOT_MODIFIED => Ok(Fetched::Same(revision)),
            StatusCode::OK => {
                let tag = response.headers().get("etag").and_then(|v| v.to_str().ok()).map(str::to_owned);
                Ok(Fetched::New(response.json().await.context("reading the policy")?, tag))
            }
            status => bail!("the API answered {status}: {}", response.text().await.unwrap_or_default()),
        }
    }
}

/// Whether an error is the API being unreachable (refused, reset, timed out), as opposed to an
/// answer it gave or a local failure.
fn unreachable(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.downcast_ref::<reqwest::Error>().is_some_and(|e| e.is_connect() || e.is_timeout() || e.is_request()))
}

/// Feeds `events` with a message whenever a link changes (`ip -o monitor link`, restarted if it
/// exits), and every [`RESCAN`] in any case.
fn watch_links(ip: String, events: tokio::sync::mpsc::Sender<()>) {
    let ticker = events.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(RESCAN);
        loop {
            interval.tick().await;
            if ticker.send(()).await.is_err() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        loop {
            match monitor_links(&ip, &events).await {
                Ok(()) if events.is_closed() => return,
                Ok(()) => tracing::warn!("ip monitor link exited; restarting it"),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "cannot watch links with ip monitor; rescanning every {} s", RESCAN.as_secs())
                }
            }
            tokio::time::sleep(RESCAN).await;
        }
    });
}

/// Runs `ip -o monitor link` until it exits, sending an event per line. The child is killed
/// with the agent, however the agent dies (`PR_SET_PDEATHSIG`), so it never outlives it.
async fn monitor_links(ip: &str, events: &tokio::sync::mpsc::Sender<()>) -> anyhow::Result<()> {
    let parent = std::process::id() as libc::pid_t;
    let mut command = tokio::process::Command::new(ip);
    command.args(["-o", "monitor", "link"]).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null()).kill_on_drop(true);
    // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = command.spawn().with_context(|| format!("running {ip} -o monitor link"))?;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
    while let Ok(Some(_)) = lines.next_line().await {
        if events.try_send(()).is_err() && events.is_closed() {
            break;
        }
    }
    let _ = child.kill().await;
    Ok(())
}

impl Agent {
    pub fn new(config: AgentConfig) -> anyhow::Result<Agent> {
        let client = http_client(config.ca_cert.as_deref())?;
        let applier = Applier::new(config.tools.clone());
        Ok(Agent {
            config,
            enforcement: Enforcement::default(),
            client,
            applier,
            applied: None,
            etag: None,
            reported: false,
            links: None,
            ids: MarkIds::default(),
            noted: Noted::default(),
            unreachable_since: None,
            observation: Observation::default(),
            flow_logs: BTreeMap::new(),
            hits: HitTracker::new(),
            flows: Arc::new(Mutex::new(FlowAggregator::new(FLOW_AGGREGATE))),
            outbox: FlowOutbox::new(FLOW_OUTBOX),
            post_failed: false,
        })
    }

    /// Sets how hit counts and flow logs are read and reported.
    pub fn with_observation(mut self, observation: Observation) -> Agent {
        self.observation = observation;
        self
    }

    /// Reads the hit sets and adds the increments since the last read to the pending deltas,
    /// attributed with the policy and layout applied (or, before the first apply, `fallback`:
    /// that first read is only the baseline).
    async fn take_hits(&mut self, fallback: Option<(&CompiledHost, &Layout)>) {
        let hits = match read_hits(&self.config.tools).await {
            Ok(hits) => hits,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the rule hit counts");
                return;
            }
        };
        let Some((host, layout)) = self.applier.applied().or(fallback) else { return };
        let index = PortIndex::new(host, layout);
        self.hits.observe(&hits, &index, unix_now());
    }

    /// Posts `body` to `tail`; true when the API took it.
    async fn post(&mut self, tail: &str, body: serde_json::Value) -> bool {
        let result =
            self.client.post(self.url(tail)).header("Authorization", self.auth()).json(&body).timeout(Duration::from_secs(10)).send().await;
        let failure = match result {
            Ok(response) if response.status().is_success() => {
                self.post_failed = false;
                return true;
            }
            Ok(response) => format!("the API answered {}", response.status()),
            Err(e) => format!("{e:#}"),
        };
        if self.post_failed {
            tracing::debug!(tail, failure, "post failed again; kept for the next one");
        } else {
            tracing::warn!(tail, failure, "post failed; what it carried is kept for the next one");
            self.post_failed = true;
        }
        false
    }

    /// Reads the hit counts and posts the pending deltas.
    pub async fn ship_stats(&mut self) {
        if self.applier.applied().is_none() {
            return;
        }
        self.take_hits(None).await;
        if self.hits.overflowed > 0 || self.hits.unattributed > 0 {
            tracing::debug!(overflowed = self.hits.overflowed, unattributed = self.hits.unattributed, "hit counts not reported");
        }
        let report: RuleStatsReport = self.hits.report();
        if !report.stats.is_empty() && self.post("rule-stats", json!(report)).await {
            self.hits.sent(&report);
        }
    }

    /// Posts the flows aggregated since the last call (and whatever a failed post left).
    pub async fn ship_flows(&mut self) {
        let (records, dropped) = self.flows.lock().expect("the aggregator lock").drain();
        self.outbox.push(records, dropped);
        while !self.outbox.is_empty() {
            let report: FlowLogReport = self.outbox.report(FLOW_BATCH);
            if !self.post("flow-logs", json!(report)).await {
                return;
            }
            self.outbox.sent(&report);
        }
    }

    /// Starts the thread that reads the logged packets into the aggregator; it stops when `stop`
    /// is set. Without the socket (no `CAP_NET_ADMIN`, group taken) flow logs are off, said once.
    fn read_flow_logs(&self, stop: Arc<AtomicBool>) {
        let limits = self.observation.flow_log;
        let flows = self.flows.clone();
        let socket = match NflogSocket::open(limits.group, limits.snaplen).and_then(|s| s.set_timeout(Duration::from_secs(1)).map(|()| s)) {
            Ok(socket) => socket,
            Err(e) => {
                tracing::error!(group = limits.group, error = %e, "cannot read the flow log: no flow records will be sent");
                return;
            }
        };
        std::thread::spawn(move || {
            let mut buffer = vec![0u8; 128 * 1024];
            while !stop.load(Ordering::Relaxed) {
                match socket.recv(&mut buffer) {
                    Ok(n) => {
                        let packets = parse_messages(&buffer[..n]);
                        let now = unix_now();
                        let mut flows = flows.lock().expect("the aggregator lock");
                        for packet in &packets {
                            flows.add(packet, now);
                        }
                    }
                    // The kernel dropped what the socket buffer could not hold.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => flows.lock().expect("the aggregator lock").dropped += 1,
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted
                        ) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "reading the flow log failed; no more flow records");
                        return;
                    }
                }
            }
        });
    }

    /// Sets how ports are placed and which stray devices are dropped.
    pub fn with_enforcement(mut self, enforcement: Enforcement) -> Agent {
        self.enforcement = enforcement;
        self
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/palisade/v1/agents/{}/{tail}", self.config.api.trim_end_matches('/'), self.config.host)
    }

    fn auth(&self) -> String {
        format!("APIKey {}", self.config.api_key)
    }

    fn poll(&self) -> Poll {
        Poll {
            client: self.client.clone(),
            url: self.url("policy"),
            auth: self.auth(),
            after: self.applied,
            etag: self.etag.clone(),
            wait: self.config.wait,
        }
    }

    /// The host's current policy, without waiting for a change and without applying it.
    pub async fn policy(&self) -> anyhow::Result<HostPolicy> {
        let response = self
            .client
            .get(self.url("policy"))
            .header("Authorization", self.auth())
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .context("asking the API for the policy")?;
        let status = response.status();
        if status != StatusCode::OK {
            bail!("the API answered {status}: {}", response.text().await.unwrap_or_default());
        }
        response.json().await.context("reading the policy")
    }

    async fn report(&mut self) -> anyhow::Result<()> {
        let Some(revision) = self.applied else { return Ok(()) };
        let response = self
            .client
            .put(self.url("status"))
            .header("Authorization", self.auth())
            .json(&json!({"applied_revision": revision}))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .context("reporting the applied revision")?;
        if !response.status().is_success() {
            bail!("the API answered {} to the status report", response.status());
        }
        self.reported = true;
        Ok(())
    }

    /// Scans the host's links; bridges holding ports get their netfilter calls turned on first.
    async fn scan(&mut self, host: &CompiledHost) -> anyhow::Result<Links> {
        let ip = self.config.tools.ip.clone();
        let mut links = Links::scan(&ip).await?;
        if self.enforcement.mode != Mode::Routed {
            let mut turned_on = false;
            let ports: BTreeSet<&str> = host.ports.iter().map(|p| p.device.as_str()).collect();
            let bridges: BTreeSet<String> = links
                .devices
                .iter()
                .filter(|(name, _)| ports.contains(name.as_str()))
                .filter_map(|(_, link)| link.master.clone())
                .filter(|master| links.bridges.get(master).is_some_and(|b| !b.netfilter))
                .collect();
            for bridge in bridges {
                match ensure_bridge_netfilter(&ip, &bridge).await {
                    Ok(()) => {
                        tracing::info!(bridge, "turned on nf_call_iptables and nf_call_ip6tables: the bridge's ports are filtered");
                        turned_on = true;
                    }
                    Err(e) => tracing::error!(bridge, error = %format!("{e:#}"), "cannot pass the bridge's packets to the IP hooks"),
                }
            }
            if turned_on {
                links = Links::scan(&ip).await?;
            }
        }
        Ok(links)
    }

    /// The layout of `host` on the links last scanned, with what changed logged.
    fn layout(&mut self, host: &CompiledHost) -> Layout {
        let links = self.links.clone().unwrap_or_default();
        let mut layout = plan(host, &links, self.enforcement.mode, &self.enforcement.port_device_prefix, &mut self.ids);
        layout.flow_logs = host.ports.iter().filter_map(|p| Some((p.id, *self.flow_logs.get(&p.id)?))).collect();
        layout.flow_log_limits = self.observation.flow_log;
        let claimed: BTreeMap<String, Vec<uuid::Uuid>> = host.refused.iter().map(|r| (r.device.clone(), r.ports.clone())).collect();
        for (device, ports) in &claimed {
            if self.noted.claimed_twice.get(device) != Some(ports) {
                tracing::error!(
                    device,
                    ?ports,
                    "device claimed by several ports: none of them is enforced and the device is dropped both ways"
                );
            }
        }
        for (device, why) in &layout.refused {
            if self.noted.refused.get(device) != Some(why) {
                tracing::error!(device, reason = %why, "port cannot be enforced as attached: its device is dropped both ways");
            }
        }
        for device in layout.unregistered.difference(&self.noted.unregistered) {
            tracing::warn!(device, prefix = %self.enforcement.port_device_prefix, "device with the port prefix is not a port of this host: dropped both ways");
        }
        for device in self.noted.unregistered.difference(&layout.unregistered) {
            tracing::info!(device, "unregistered device gone or now a port");
        }
        let bridged: BTreeMap<String, String> = layout
            .placements
            .iter()
            .filter_map(|(d, p)| match p {
                crate::nft::Placement::Bridged { bridge, .. } => Some((d.clone(), bridge.clone())),
                crate::nft::Placement::Routed => None,
            })
            .collect();
        for (device, bridge) in &bridged {
            if self.noted.bridged.get(device) != Some(bridge) {
                tracing::info!(device, bridge, "port enforced as a bridge port");
            }
        }
        self.noted = Noted { claimed_twice: claimed, refused: layout.refused.clone(), unregistered: layout.unregistered.clone(), bridged };
        layout
    }

    /// A link changed (or the rescan is due): re-place the ports and apply if anything moved.
    async fn refresh_links(&mut self) -> anyhow::Result<()> {
        let Some((host, _)) = self.applier.applied() else {
            return Ok(());
        };
        let host = host.clone();
        let links = self.scan(&host).await?;
        if self.links.as_ref() == Some(&links) {
            return Ok(());
        }
        self.links = Some(links);
        let layout = self.layout(&host);
        if self.applier.applied().is_some_and(|(_, applied)| *applied == layout) {
            return Ok(());
        }
        self.take_hits(None).await;
        let outcome = self.applier.apply(host, layout).await.context("applying the new layout of the host's links")?;
        if matches!(outcome, Outcome::Replaced { .. }) {
            self.hits.table_replaced();
        }
        tracing::info!(?outcome, deletions = self.applier.last_flushes.len(), "applied the host's new links");
        Ok(())
    }

    /// Reports if needed and checks that the tables are still there; before each long-poll.
    async fn prepare(&mut self) -> anyhow::Result<()> {
        if !self.reported {
            self.report().await?;
        }
        if self.applied.is_some() && !self.applier.table_present().await? {
            // A table was deleted or flushed behind our back: fetch the policy whole and
            // replace the tables.
            tracing::warn!("an nftables table is gone or emptied; restoring them");
            self.applier.reset();
            self.applied = None;
            self.etag = None;
        }
        Ok(())
    }

    /// Applies what a long-poll brought and reports it. Returns the outcome of the apply, or
    /// `None` when nothing new came.
    async fn handle(&mut self, fetched: Fetched) -> anyhow::Result<Option<Outcome>> {
        let (policy, tag) = match fetched {
            Fetched::New(policy, tag) => (policy, tag),
            // The revision moved but nothing this host enforces changed: it is applied as it is.
            Fetched::Same(Some(revision)) if self.applied.is_some_and(|a| revision > a) => {
                tracing::debug!(revision, "policy unchanged for this host");
                self.applied = Some(revision);
                self.reported = false;
                self.report().await?;
                return Ok(Some(Outcome::Unchanged));
            }
            Fetched::Same(_) => return Ok(None),
        };
        let revision = policy.revision;
        self.flow_logs = policy.ports.iter().filter_map(|p| Some((p.id, p.flow_log?.events))).collect();
        let host = compile(&policy).map_err(|e| anyhow::anyhow!("the policy of revision {revision} is not enforceable: {e}"))?;
        if self.links.is_none() {
            self.links = Some(self.scan(&host).await.context("reading the host's links")?);
        }
        let layout = self.layout(&host);
        // The increments so far, before an apply can wipe them (the first read: the baseline).
        self.take_hits(Some((&host, &layout))).await;
        let outcome = self.applier.apply(host, layout).await.with_context(|| format!("applying revision {revision}"))?;
        if matches!(outcome, Outcome::Replaced { .. }) {
            self.hits.table_replaced();
        }
        match &outcome {
            Outcome::Unchanged => tracing::debug!(revision, "policy unchanged for this host"),
            Outcome::Replaced { bytes } => tracing::info!(revision, bytes, "replaced the nftables tables"),
            Outcome::Updated { bytes, lines } => tracing::info!(revision, bytes, lines, "updated the nftables tables"),
        }
        if !self.applier.last_flushes.is_empty() {
            tracing::info!(revision, deletions = self.applier.last_flushes.len(), "deleted conntrack entries the policy does not admit");
        }
        self.applied = Some(revision);
        self.etag = tag;
        self.reported = false;
        self.report().await?;
        Ok(Some(outcome))
    }

    /// Fetches, applies and reports once (waiting up to the long-poll time for a change).
    /// Returns the outcome of the apply, or `None` when nothing new came.
    pub async fn step(&mut self) -> anyhow::Result<Option<Outcome>> {
        self.prepare().await?;
        let fetched = self.poll().run().await?;
        self.handle(fetched).await
    }

    /// Handles what [`wake`] waited for. Not raced against the long-poll (it runs in a `select!`
    /// branch's body), so an apply is never cut short.
    async fn on_wake(&mut self, wake: Wake, events: &mut tokio::sync::mpsc::Receiver<()>) {
        match wake {
            Wake::Links => {
                while events.try_recv().is_ok() {}
                if let Err(e) = self.refresh_links().await {
                    tracing::warn!(error = %format!("{e:#}"), "could not apply the host's links");
                }
            }
            Wake::Stats => self.ship_stats().await,
            Wake::Flows => self.ship_flows().await,
        }
    }

    /// Runs until `stop` resolves.
    pub async fn run(mut self, stop: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
        tokio::pin!(stop);
        let (events_tx, mut events) = tokio::sync::mpsc::channel::<()>(8);
        watch_links(self.config.tools.ip.clone(), events_tx);
        let stop_reading = Arc::new(AtomicBool::new(false));
        self.read_flow_logs(stop_reading.clone());
        let _stop_reading = StopOnDrop(stop_reading);
        let mut ticks = Ticks::new(&self.observation);
        let mut backoff = MIN_BACKOFF;
        tracing::info!(
            api = %self.config.api,
            host = %self.config.host,
            mode = ?self.enforcement.mode,
            prefix = %self.enforcement.port_device_prefix,
            "agent started"
        );
        loop {
            let result = async {
                self.prepare().await?;
                let poll = self.poll().run();
                tokio::pin!(poll);
                let fetched = loop {
                    tokio::select! {
                        fetched = &mut poll => break fetched?,
                        Some(wake) = wake(&mut events, &mut ticks) => self.on_wake(wake, &mut events).await,
                    }
                };
                self.handle(fetched).await
            };
            let step = tokio::select! {
                _ = &mut stop => return Ok(()),
                step = result => step,
            };
            let delay = match step {
                Ok(_) => {
                    if let Some(since) = self.unreachable_since.take() {
                        tracing::info!(after_ms = since.elapsed().as_millis() as u64, "the API is reachable again");
                    }
                    backoff = MIN_BACKOFF;
                    continue;
                }
                Err(e) if unreachable(&e) => {
                    if self.unreachable_since.is_none() {
                        self.unreachable_since = Some(Instant::now());
                        tracing::warn!(error = %format!("{e:#}"), retry_in_ms = UNREACHABLE_RETRY.as_millis() as u64, "agent step failed: the API is unreachable");
                    } else {
                        tracing::debug!(error = %format!("{e:#}"), "the API is still unreachable");
                    }
                    UNREACHABLE_RETRY
                }
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), retry_in_ms = backoff.as_millis() as u64, "agent step failed");
                    let delay = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    delay
                }
            };
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = &mut sleep => break,
                    Some(wake) = wake(&mut events, &mut ticks) => self.on_wake(wake, &mut events).await,
                }
            }
        }
    }
}

/// What the agent does between policy changes.
enum Wake {
    /// A link changed, or the rescan is due.
    Links,
    /// Hit counts are due.
    Stats,
    /// Flow records are due.
    Flows,
}

/// The agent's report timers.
struct Ticks {
    stats: tokio::time::Interval,
    flows: tokio::time::Interval,
}

impl Ticks {
    fn new(observation: &Observation) -> Ticks {
        let every = |period| {
            let mut interval = tokio::time::interval(period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            interval.reset();
            interval
        };
        Ticks { stats: every(observation.stats_interval), flows: every(observation.flow_log_interval) }
    }
}

/// Waits for the next link event or report tick; `None` when the link watcher is gone.
async fn wake(events: &mut tokio::sync::mpsc::Receiver<()>, ticks: &mut Ticks) -> Option<Wake> {
    tokio::select! {
        event = events.recv() => event.map(|()| Wake::Links),
        _ = ticks.stats.tick() => Some(Wake::Stats),
        _ = ticks.flows.tick() => Some(Wake::Flows),
    }
}

/// Tells the log-reading thread to stop when the agent's loop ends.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}
