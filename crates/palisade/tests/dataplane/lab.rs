//! Hosts and their instances in network namespaces, the API and the real agent binary inside the
//! first host's namespace, and a small API client per key role: the tenants (clients 1 and 2),
//! the platform and each host's agent.
//!
//! Two wirings of a host ([`Wiring`]):
//! - **routed**: each instance has a veth pair whose host end is the port's device (`tapN`), the
//!   instance's addresses are /32 and /128 with a default route to 169.254.1.1 / fe80::1 on the
//!   host end, and the host has a route per instance address. Routed traffic crosses the host's
//!   prerouting and forward hooks.
//! - **bridged** (linuxbridge / OVS-hybrid): the host ends are ports of one bridge `brlab`, the
//!   instances share 10.77.0.0/24 and fd77::/64 on it, and frames are bridged.
//!
//! With two hosts, a data link joins them (routed: `up0`, 10.99.0.0/30 with routes to the other
//! host's instances; bridged: `vx0`, a member of both bridges, one L2 segment) and a management
//! link `mg0` (10.98.0.1 – 10.98.0.2) carries the second host's agent to the API on the first.
//! Nothing is done outside the namespaces this file creates; each is deleted on drop.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use palisade::startup::{Application, KeySpec, create_api_key};
use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::server_config::server_config;
use crate::traffic::tcp_echo_server;

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// One test per wiring of a scenario `fn(Wiring)`: the first name runs it on a routed host, the
/// second on a bridged one (each name may carry its doc comment).
macro_rules! test_each_wiring {
    ($(#[$routed_doc:meta])* $routed:ident, $(#[$bridged_doc:meta])* $bridged:ident => $scenario:ident) => {
        $(#[$routed_doc])*
        #[test]
        fn $routed() {
            $scenario($crate::lab::Wiring::Routed);
        }

        $(#[$bridged_doc])*
        #[test]
        fn $bridged() {
            $scenario($crate::lab::Wiring::Bridged);
        }
    };
}
pub(crate) use test_each_wiring;

/// True when the tests can run here (root, with `ip`, `nft` and `conntrack`); otherwise says why.
pub fn can_run() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["ip", "nft", "conntrack"]
        .iter()
        .all(|t| Command::new(t).arg("-V").output().is_ok() || Command::new(t).arg("--version").output().is_ok());
    if !root || !tools {
        eprintln!("SKIPPED: the data-plane tests need root and ip, nft and conntrack (network namespaces); root={root} tools={tools}");
        return false;
    }
    true
}

#[track_caller]
pub fn run(args: &[&str]) -> String {
    let output = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(output.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A named network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(role: &str) -> Netns {
        let name = format!("pal{}-{}-{role}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        run(&["ip", "netns", "add", &name]);
        let ns = Netns { name };
        ns.sh("ip link set lo up");
        ns
    }

    /// Runs a shell command inside the namespace; panics when it fails.
    #[track_caller]
    pub fn sh(&self, command: &str) -> String {
        run(&["ip", "netns", "exec", &self.name, "sh", "-c", command])
    }

    /// Runs `f` on a thread that entered the namespace: sockets it creates, and processes it
    /// spawns, live there. A panic in `f` is the caller's.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let file = std::fs::File::open(&path).expect("opening the namespace");
                    assert_eq!(
                        unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) },
                        0,
                        "setns: {}",
                        std::io::Error::last_os_error()
                    );
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// An instance: its namespace and the port the platform registers for it.
pub struct Instance {
    pub ns: Netns,
    pub device: String,
    pub mac: String,
    pub v4: Ipv4Addr,
    pub v6: Ipv6Addr,
    pub port_id: Uuid,
    pub instance_id: Uuid,
    /// Index of its host in [`Lab::hosts`].
    pub host: usize,
}

/// How a host attaches its instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wiring {
    Routed,
    Bridged,
}

/// The bridge of a bridged host.
pub const BRIDGE: &str = "brlab";

pub struct Lab {
    pub instances: Vec<Instance>,
    /// The first host: the API runs here.
    pub host: Netns,
    /// The other hosts.
    pub others: Vec<Netns>,
    pub wiring: Wiring,
    pub dir: PathBuf,
}

/// The management address of host `h` (0-based), where the second host's agent reaches the API.
pub fn management_ip(h: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 98, 0, 1 + h as u8)
}

/// No duplicate address detection on the links made from now on in `ns`: a link-local address
/// still tentative would leave neighbour solicitations without a source for a second.
fn no_dad(ns: &Netns) {
    ns.sh("sysctl -qw net.ipv6.conf.default.accept_dad=0 && sysctl -qw net.ipv6.conf.all.accept_dad=0");
}

fn wire(host: &Netns, ns: &Netns, wiring: Wiring, device: &str, mac: &str, v4: Ipv4Addr, v6: Ipv6Addr) {
    wire_to(host, ns, wiring, BRIDGE, device, mac, v4, v6)
}

#[allow(clippy::too_many_arguments)]
fn wire_to(host: &Netns, ns: &Netns, wiring: Wiring, bridge: &str, device: &str, mac: &str, v4: Ipv4Addr, v6: Ipv6Addr) {
    no_dad(ns);
    host.sh(&format!("ip link add {device} type veth peer name eth0 netns {}", ns.name));
    match wiring {
        Wiring::Routed => {
            host.sh(&format!(
                "sysctl -qw net.ipv4.conf.{device}.rp_filter=0 && ip link set {device} up && ip addr add 169.254.1.1/32 dev {device} \
                 && ip -6 addr add fe80::1/64 dev {device} nodad && ip route add {v4}/32 dev {device} && ip -6 route add {v6}/128 dev {device}"
            ));
            ns.sh(&format!(
                "ip link set eth0 address {mac} && ip addr add {v4}/32 dev eth0 && ip -6 addr add {v6}/128 dev eth0 nodad \
                 && ip link set eth0 up && ip route add 169.254.1.1 dev eth0 && ip route add default via 169.254.1.1 dev eth0 \
                 && ip -6 route add default via fe80::1 dev eth0"
            ));
        }
        Wiring::Bridged => {
            host.sh(&format!("ip link set {device} master {bridge} && ip link set {device} up"));
            ns.sh(&format!(
                "ip link set eth0 address {mac} && ip addr add {v4}/24 dev eth0 && ip -6 addr add {v6}/64 dev eth0 nodad \
                 && ip link set eth0 up"
            ));
        }
    }
}

impl Lab {
    /// Hosts wired per `wiring`, `counts[h]` instances on host `h`; instances are numbered across
    /// hosts (`tap1`, `tap2`, … and 10.77.0.11, 10.77.0.12, …).
    pub fn with(wiring: Wiring, counts: &[usize]) -> Lab {
        let hosts: Vec<Netns> = (0..counts.len()).map(|h| Netns::new(&format!("host{}", h + 1))).collect();
        for host in &hosts {
            no_dad(host);
            for setting in [
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ] {
                host.sh(&format!("sysctl -qw {setting}"));
            }
            if wiring == Wiring::Bridged {
                host.sh(&format!("ip link add {BRIDGE} type bridge && ip link set {BRIDGE} up"));
            }
        }
        let mut instances = Vec::new();
        for (h, count) in counts.iter().enumerate() {
            for _ in 0..*count {
                let k = instances.len() + 1;
                let ns = Netns::new(&format!("vm{k}"));
                let device = format!("tap{k}");
                let mac = format!("02:00:00:00:00:{:02x}", k);
                let v4 = Ipv4Addr::new(10, 77, 0, 10 + k as u8);
                let v6: Ipv6Addr = format!("fd77::{}", 10 + k).parse().unwrap();
                wire(&hosts[h], &ns, wiring, &device, &mac, v4, v6);
                instances.push(Instance { ns, device, mac, v4, v6, port_id: Uuid::new_v4(), instance_id: Uuid::new_v4(), host: h });
            }
        }
        if hosts.len() == 2 {
            let (h1, h2) = (&hosts[0], &hosts[1]);
            h1.sh(&format!("ip link add mg0 type veth peer name mg0 netns {}", h2.name));
            for (h, ns) in [h1, h2].iter().enumerate() {
                ns.sh(&format!("ip addr add {}/30 dev mg0 && ip link set mg0 up", management_ip(h)));
            }
            match wiring {
                Wiring::Routed => {
                    h1.sh(&format!("ip link add up0 type veth peer name up0 netns {}", h2.name));
                    for (h, ns) in [h1, h2].iter().enumerate() {
                        ns.sh(&format!(
                            "ip addr add 10.99.0.{0}/30 dev up0 && ip -6 addr add fd99::{0}/64 dev up0 nodad && ip link set up0 up",
                            h + 1
                        ));
                    }
                    for vm in &instances {
                        let (other, via) = if vm.host == 0 { (h2, 1) } else { (h1, 2) };
                        other.sh(&format!(
                            "ip route add {}/32 via 10.99.0.{via} dev up0 && ip -6 route add {}/128 via fd99::{via} dev up0",
                            vm.v4, vm.v6
                        ));
                    }
                }
                Wiring::Bridged => {
                    h1.sh(&format!("ip link add vx0 type veth peer name vx0 netns {}", h2.name));
                    for ns in [h1, h2] {
                        ns.sh(&format!("ip link set vx0 master {BRIDGE} && ip link set vx0 up"));
                    }
                }
            }
        }
        let dir = std::env::temp_dir().join(format!("palisade-dataplane-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut hosts = hosts.into_iter();
        let host = hosts.next().expect("a host");
        Lab { instances, host, others: hosts.collect(), wiring, dir }
    }

    /// Host `h` (0-based).
    pub fn host_ns(&self, h: usize) -> &Netns {
        if h == 0 { &self.host } else { &self.others[h - 1] }
    }

    /// A second network on the first (bridged) host: the bridge `brlab2` and, for each of the
    /// first `count` instances, one with the same addresses (another MAC, the device `tapn<i>`),
    /// as two tenants' private networks often are.
    pub fn overlapping_network(&self, count: usize) -> Vec<Instance> {
        assert_eq!(self.wiring, Wiring::Bridged);
        self.host.sh("ip link add brlab2 type bridge && ip link set brlab2 up");
        self.instances[..count]
            .iter()
            .enumerate()
            .map(|(i, twin)| {
                let ns = Netns::new(&format!("net2vm{}", i + 1));
                let device = format!("tapn{}", i + 1);
                let mac = format!("02:00:00:00:02:{:02x}", i + 1);
                wire_to(&self.host, &ns, Wiring::Bridged, "brlab2", &device, &mac, twin.v4, twin.v6);
                Instance { ns, device, mac, v4: twin.v4, v6: twin.v6, port_id: Uuid::new_v4(), instance_id: Uuid::new_v4(), host: 0 }
            })
            .collect()
    }

    /// An instance wired to host `h` like the others, with the device `device`, that no one
    /// registers (a forgotten or half-created VM interface).
    pub fn stray(&self, h: usize, device: &str, last_octet: u8) -> Instance {
        let ns = Netns::new("stray");
        let mac = format!("02:00:00:00:01:{last_octet:02x}");
        let v4 = Ipv4Addr::new(10, 77, 0, last_octet);
        let v6: Ipv6Addr = format!("fd77::{last_octet}").parse().unwrap();
        wire(self.host_ns(h), &ns, self.wiring, device, &mac, v4, v6);
        Instance { ns, device: device.into(), mac, v4, v6, port_id: Uuid::new_v4(), instance_id: Uuid::new_v4(), host: h }
    }

    /// The ruleset of the host namespace (the agent's table and nothing else).
    pub fn nft(&self, command: &str) -> String {
        self.host.sh(&format!("nft {command}"))
    }

    /// A lab of `counts[h]` instances on host `h`, wired per `wiring` ([`Lab::with`]); `None`,
    /// after saying why, where the tests cannot run ([`can_run`]).
    pub fn if_can_run(wiring: Wiring, counts: &[usize]) -> Option<Lab> {
        can_run().then(|| Lab::with(wiring, counts))
    }

    /// Runs `body` on a runtime whose threads live in the host namespace (the API, the agent and
    /// the test's API client all run there); a panic in `body` fails the test after cleanup.
    pub fn run(&self, body: impl AsyncFnOnce(&Lab) + Send) {
        self.host.enter(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(body(self));
        })
    }

    /// [`Lab::run`] with the API started in-process first (with the keys of [`Api::create`] for
    /// `hosts`) and stopped after `body`, once everything `body` holds (its agents) is gone. With
    /// more than one host it listens on every address, so that the other hosts' agents reach it
    /// over the management link.
    pub fn run_with_api(&self, hosts: &[&str], body: impl AsyncFnOnce(&Lab, &Api) + Send) {
        let listen = if self.others.is_empty() { API } else { "0.0.0.0:8080" };
        self.run(async |lab| {
            let server = Server::start(&lab.dir, listen).await;
            let api = Api::create(&lab.dir, server.port, hosts);
            body(lab, &api).await;
            server.stop().await;
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Where the API listens inside a lab's host namespace (the namespace is the lab's own).
pub const API: &str = "127.0.0.1:8080";

/// The service, in-process, listening in the namespace of the calling thread.
pub struct Server {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
    pub port: u16,
}

impl Server {
    /// Serves on `listen` (`127.0.0.1:0` for any free port) with the database in `dir`.
    pub async fn start(dir: &std::path::Path, listen: &str) -> Server {
        let config = server_config(listen, format!("sqlite:{}", dir.join("palisade.db").display()));
        let app = Application::build(config).await.expect("starting the API");
        let port = app.port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            app.run_until_stopped(async move {
                let _ = stopped.await;
            })
            .await
            .expect("serving");
        });
        Server { stop: Some(stop), handle: Some(handle), port }
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(handle) = self.handle.take() {
            handle.abort();
            let _ = handle.await;
        }
    }
}

/// A child process, killed (SIGKILL: no graceful anything) and reaped on drop.
struct KilledOnDrop(Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `palisade serve` as a process in the namespace of the calling thread, killed on drop: a
/// restart test needs the API really gone, connections and all.
pub struct ServerProcess {
    _child: KilledOnDrop,
}

impl ServerProcess {
    pub async fn start(dir: &std::path::Path) -> ServerProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .args([
                "serve",
                "--database-url",
                &format!("sqlite:{}", dir.join("palisade.db").display()),
                "--listen",
                API,
                "--no-bootstrap-key",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning palisade serve");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(API).await.is_err() {
            assert!(Instant::now() < deadline, "palisade serve did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ServerProcess { _child: KilledOnDrop(child) }
    }

    /// SIGKILL, now.
    pub fn kill(self) {}
}

/// Creates an API key in the database at `dir`; returns its token.
fn new_key(dir: &std::path::Path, spec: &KeySpec) -> String {
    let url = format!("sqlite:{}", dir.join("palisade.db").display());
    let store = palisade_store::Database::open(&url, "normal").expect("opening the database");
    create_api_key(&store, spec).unwrap_or_else(|e| panic!("creating the key {spec:?}: {e:#}"))
}

/// The real `palisade agent` process, killed on drop.
pub struct AgentProcess {
    _child: KilledOnDrop,
    pub log: PathBuf,
}

impl AgentProcess {
    /// The agent of `host`, with that host's agent key. Spawned from a thread of the host
    /// namespace, so it runs there.
    pub fn spawn(dir: &std::path::Path, api: &Api, host: &str) -> AgentProcess {
        AgentProcess::spawn_with(dir, api, host, None, &format!("http://{API}"), &[])
    }

    /// The agent of `host` in the namespace `ns` (the calling thread's when `None`), reaching
    /// the API at `url`, with `extra` arguments.
    pub fn spawn_with(dir: &std::path::Path, api: &Api, host: &str, ns: Option<&Netns>, url: &str, extra: &[&str]) -> AgentProcess {
        let token = api.agent(host).token.clone();
        let log = dir.join(format!("agent-{host}-{}.log", NEXT.fetch_add(1, Ordering::SeqCst)));
        let mut command = Command::new(env!("CARGO_BIN_EXE_palisade"));
        command
            .args(["agent", "--api", url, "--host", host, "--wait", "20"])
            .args(extra)
            .env("PALISADE_API_KEY", &token)
            .env("RUST_LOG", "info,palisade_dataplane=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        let child = match ns {
            None => command.spawn(),
            Some(ns) => ns.enter(move || command.spawn()),
        }
        .expect("spawning palisade agent");
        AgentProcess { _child: KilledOnDrop(child), log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL, now.
    pub fn kill(self) {}
}

/// A JSON client of the API with one key.
#[derive(Clone)]
pub struct Client {
    client: reqwest::Client,
    token: String,
    base: String,
}

impl Client {
    pub fn new(token: &str, port: u16) -> Client {
        Client { client: reqwest::Client::new(), token: token.to_string(), base: format!("http://127.0.0.1:{port}") }
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let (status, _, body) = self.call_full(method, path, body).await;
        (status, body)
    }

    /// A GET with `If-None-Match`.
    pub async fn get_if_none_match(&self, path: &str, tag: &str) -> (StatusCode, reqwest::header::HeaderMap) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("Authorization", format!("APIKey {}", self.token))
            .header("If-None-Match", tag)
            .send()
            .await
            .expect("calling the API");
        (response.status(), response.headers().clone())
    }

    /// [`Client::call`] with the response headers.
    pub async fn call_full(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request =
            self.client.request(method, format!("{}{path}", self.base)).header("Authorization", format!("APIKey {}", self.token));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("calling the API");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        (status, headers, serde_json::from_str(&text).unwrap_or(Value::Null))
    }
}

/// The lab's API clients, one per key role, each used only for what its role may call:
/// - `tenant` (client 1 unless [`Api::as_client`] says otherwise, every project): the Gcore API
///   (groups, rules, tasks, instance bindings), and reading its own ports;
/// - `platform`: the port registry (register, update, delete) and the list of agents;
/// - one agent key per host ([`Api::agent`]): that host's policy and status, and the
///   `palisade agent` process of that host ([`AgentProcess::spawn`]).
///
/// The helpers below say which key they use.
#[derive(Clone)]
pub struct Api {
    pub tenant: Client,
    pub platform: Client,
    agents: BTreeMap<String, Client>,
    /// The client `tenant` speaks for, and whose ports [`Api::register`] registers.
    pub client_id: i64,
    /// Client 2's tenant key.
    tenant2: Client,
}

impl Api {
    /// Creates the keys in the database at `dir` (tenant keys of clients 1 and 2, a platform key,
    /// an agent key for each of `hosts`) for the API listening on `port`.
    pub fn create(dir: &std::path::Path, port: u16, hosts: &[&str]) -> Api {
        let client = |spec: KeySpec| Client::new(&new_key(dir, &spec), port);
        Api {
            tenant: client(KeySpec::tenant(1, 1, None, "dataplane-tenant")),
            platform: client(KeySpec::platform("dataplane-platform")),
            agents: hosts.iter().map(|host| (host.to_string(), client(KeySpec::agent(host, &format!("dataplane-agent-{host}"))))).collect(),
            client_id: 1,
            tenant2: client(KeySpec::tenant(2, 2, None, "dataplane-tenant-2")),
        }
    }

    /// The same API as client `client_id` (1 or 2) sees it.
    pub fn as_client(&self, client_id: i64) -> Api {
        let mut api = self.clone();
        if client_id != self.client_id {
            std::mem::swap(&mut api.tenant, &mut api.tenant2);
            api.client_id = client_id;
        }
        api
    }

    /// The client with the agent key of `host`.
    #[track_caller]
    pub fn agent(&self, host: &str) -> &Client {
        self.agents.get(host).unwrap_or_else(|| panic!("the lab made no agent key for host {host}"))
    }

    #[track_caller]
    pub fn expect(status: StatusCode, want: u16, body: &Value) {
        assert_eq!(status.as_u16(), want, "body: {body}");
    }

    /// Tenant: creates a group (legacy synchronous create) with the given rules; returns its id.
    pub async fn group(&self, name: &str, rules: Vec<Value>) -> Uuid {
        let (status, body) = self
            .tenant
            .call(
                reqwest::Method::POST,
                "/cloud/v1/securitygroups/1/1",
                Some(json!({"security_group": {"name": name, "security_group_rules": rules}})),
            )
            .await;
        Api::expect(status, 200, &body);
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// Tenant: [`Api::group`] with [`egress_all`] and the `ingress` rules.
    pub async fn group_with_egress(&self, name: &str, ingress: impl IntoIterator<Item = Value>) -> Uuid {
        self.group(name, egress_all().into_iter().chain(ingress).collect()).await
    }

    /// Tenant: adds a rule synchronously; returns its id.
    pub async fn add_rule(&self, group: Uuid, rule: Value) -> Uuid {
        let (status, body) =
            self.tenant.call(reqwest::Method::POST, &format!("/cloud/v1/securitygroups/1/1/{group}/rules"), Some(rule)).await;
        Api::expect(status, 200, &body);
        body["id"].as_str().unwrap().parse().unwrap()
    }

    /// Tenant: deletes a rule synchronously.
    pub async fn delete_rule(&self, rule: Uuid) {
        let (status, body) = self.tenant.call(reqwest::Method::DELETE, &format!("/cloud/v1/securitygrouprules/1/1/{rule}"), None).await;
        Api::expect(status, 204, &body);
    }

    /// Platform: registers the instance's port on `host` for the client of `tenant`, bound to
    /// `groups`.
    pub async fn register(&self, instance: &Instance, host: &str, groups: &[Uuid]) {
        let body = json!({
            "id": instance.port_id,
            "client_id": self.client_id,
            "project_id": 1,
            "region_id": 1,
            "instance_id": instance.instance_id,
            "host": host,
            "device": instance.device,
            "mac_address": instance.mac,
            "fixed_ips": [instance.v4.to_string(), instance.v6.to_string()],
            "security_group_ids": groups,
        });
        let (status, body) = self.platform.call(reqwest::Method::POST, "/palisade/v1/ports", Some(body)).await;
        Api::expect(status, 201, &body);
    }

    /// Platform: deletes the instance's port.
    pub async fn deregister(&self, instance: &Instance) {
        let (status, body) = self.platform.call(reqwest::Method::DELETE, &format!("/palisade/v1/ports/{}", instance.port_id), None).await;
        Api::expect(status, 204, &body);
    }

    /// Platform: the current policy revision (from the list of agents).
    pub async fn policy_revision(&self) -> i64 {
        let (status, body) = self.platform.call(reqwest::Method::GET, "/palisade/v1/agents", None).await;
        Api::expect(status, 200, &body);
        body["policy_revision"].as_i64().unwrap()
    }

    /// Platform: waits until the agent of `host` reports its host's current policy revision;
    /// returns it.
    pub async fn converge(&self, host: &str) -> i64 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (status, body) = self.platform.call(reqwest::Method::GET, "/palisade/v1/agents", None).await;
            Api::expect(status, 200, &body);
            let entry = body["results"].as_array().unwrap().iter().find(|a| a["host"] == host);
            let current = entry.and_then(|a| a["policy_revision"].as_i64());
            let applied = entry.and_then(|a| a["applied_revision"].as_i64());
            if let (Some(current), Some(applied)) = (current, applied)
                && applied >= current
            {
                return current;
            }
            assert!(Instant::now() < deadline, "agent of {host} did not apply revision {current:?} (applied {applied:?})");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A TCP or UDP rule body for the v1 rule create.
pub fn rule(
    direction: &str,
    ethertype: &str,
    protocol: Option<&str>,
    port: Option<u16>,
    prefix: Option<&str>,
    remote_group: Option<Uuid>,
) -> Value {
    let mut r = json!({"direction": direction, "ethertype": ethertype});
    if let Some(p) = protocol {
        r["protocol"] = json!(p);
    }
    if let Some(port) = port {
        r["port_range_min"] = json!(port);
        r["port_range_max"] = json!(port);
    }
    if let Some(prefix) = prefix {
        r["remote_ip_prefix"] = json!(prefix);
    }
    if let Some(group) = remote_group {
        r["remote_group_id"] = json!(group);
    }
    r
}

/// Egress allow-all for both families.
pub fn egress_all() -> Vec<Value> {
    vec![rule("egress", "IPv4", None, None, None, None), rule("egress", "IPv6", None, None, None, None)]
}

/// An ingress rule for `protocol` (tcp or udp) on `port` from anywhere.
pub fn ingress(ethertype: &str, protocol: &str, port: u16) -> Value {
    rule("ingress", ethertype, Some(protocol), Some(port), None, None)
}

/// An ingress rule for `protocol` on `port` from the members of `group`.
pub fn ingress_from(ethertype: &str, protocol: &str, port: u16, group: Uuid) -> Value {
    rule("ingress", ethertype, Some(protocol), Some(port), None, Some(group))
}

pub fn addr(ip: impl Into<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(ip.into(), port)
}

impl Api {
    /// Tenant: Gcore #24 / #25 with `{"name": ...}`: binds or unbinds a group on every port of
    /// the instance.
    pub async fn instance_group(&self, instance: &Instance, name: &str, add: bool) {
        let action = if add { "addsecuritygroup" } else { "delsecuritygroup" };
        let (status, body) = self
            .tenant
            .call(reqwest::Method::POST, &format!("/cloud/v1/instances/1/1/{}/{action}", instance.instance_id), Some(json!({"name": name})))
            .await;
        Api::expect(status, 204, &body);
    }
}

/// The scene of several tests: instance 0 (`a`) in a group `clients`, instance 1 (`c`) in a group
/// `web` that takes TCP on each of `open` from anyone (one rule each), both ports on `host`, echo
/// servers on c's TCP 80 and `open`, and the agent of `host` started and caught up.
pub struct ClientAndWeb {
    pub web: Uuid,
    pub clients: Uuid,
    /// The rules of `open`, in its order.
    pub open: Vec<Uuid>,
    pub agent: AgentProcess,
}

impl ClientAndWeb {
    pub async fn set_up(lab: &Lab, api: &Api, host: &str, open: &[u16]) -> ClientAndWeb {
        let (a, c) = (&lab.instances[0], &lab.instances[1]);
        let web = api.group("web", egress_all()).await;
        let mut rules = Vec::new();
        for port in open {
            rules.push(api.add_rule(web, ingress("IPv4", "tcp", *port)).await);
        }
        let clients = api.group("clients", egress_all()).await;
        api.register(a, host, &[clients]).await;
        api.register(c, host, &[web]).await;
        for port in std::iter::once(80).chain(open.iter().copied().filter(|p| *p != 80)) {
            tcp_echo_server(&c.ns, addr(c.v4, port));
        }
        let agent = AgentProcess::spawn(&lab.dir, api, host);
        api.converge(host).await;
        ClientAndWeb { web, clients, open: rules, agent }
    }
}

/// The rules of a chain with their handles, counters left out (they move with traffic).
pub fn rules_with_handles(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|l| l.contains("# handle") && !l.contains("chain "))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let mut out = Vec::new();
            let mut i = 0;
            while i < words.len() {
                if words[i] == "packets" || words[i] == "bytes" {
                    i += 2;
                    continue;
                }
                out.push(words[i]);
                i += 1;
            }
            out.join(" ")
        })
        .collect()
}

/// The packet count of the first rule of `listing` whose comment contains `comment`.
pub fn counter(listing: &str, comment: &str) -> u64 {
    let line = listing.lines().find(|l| l.contains(comment)).unwrap_or_else(|| panic!("no rule {comment:?} in {listing}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "packets").expect("a counter");
    words[at + 1].parse().unwrap()
}
