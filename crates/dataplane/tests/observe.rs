//! Hit counts and flow logs against the real kernel: a host namespace holding the tables
//! (applied by the [`Applier`]) with two routed instances, each in its own namespace. Every
//! namespace is created by the test and deleted when it ends; nothing touches the host's own
//! ruleset. Needs root, `ip` and `nft`; skipped (with a line saying so) otherwise.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use palisade_core::observe::{FlowAction, FlowLogEvents, FlowRecord};
use palisade_core::policy::{CompiledHost, GroupPolicy, HostPolicy, PortPolicy, RulePolicy, compile};
use palisade_core::rule::Direction;
use palisade_dataplane::apply::{Applier, Outcome, Tools};
use palisade_dataplane::flowlog::{FlowAggregator, NflogSocket, parse_messages};
use palisade_dataplane::nft::{FlowLogLimits, Layout};
use palisade_dataplane::stats::{HitTracker, PortIndex, read_hits};
use uuid::Uuid;

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn can_run() -> bool {
    let root = unsafe { libc::geteuid() } == 0;
    let tools = ["ip", "nft"].iter().all(|t| Command::new(t).arg("-V").output().is_ok());
    if !root || !tools {
        eprintln!("SKIPPED: needs root, ip and nft (network namespaces); root={root} tools={tools}");
    }
    root && tools
}

/// A network namespace, deleted on drop.
struct Netns {
    name: String,
}

impl Netns {
    fn new(role: &str) -> Netns {
        let name = format!("palobs{}-{}-{role}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let ns = Netns { name };
        run(&["ip", "netns", "add", &ns.name]);
        ns.sh("ip link set lo up");
        ns
    }

    #[track_caller]
    fn sh(&self, command: &str) -> String {
        run(&["ip", "netns", "exec", &self.name, "sh", "-c", command])
    }

    /// Runs `f` on a thread inside the namespace (its sockets and children live there).
    fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    let file = std::fs::File::open(&path).expect("opening the namespace");
                    assert_eq!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, 0, "setns");
                    f()
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }

    /// Runs an async block inside the namespace.
    fn block_on<T: Send>(&self, f: impl Future<Output = T> + Send) -> T {
        self.enter(|| tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f))
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

#[track_caller]
fn run(args: &[&str]) -> String {
    let output = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    assert!(output.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const X: Uuid = Uuid::from_u128(0x100);
const Y: Uuid = Uuid::from_u128(0x101);
const EGRESS: Uuid = Uuid::from_u128(0x102);

/// A host routing two instances, `a` (10.77.3.1) and `b` (10.77.3.2), ports of one group:
/// ingress TCP 8022 (rule X) and UDP 5353 (rule Y), egress anything.
struct Lab {
    host: Netns,
    a: Netns,
    b: Netns,
    policy: HostPolicy,
}

fn port_id(n: u8) -> Uuid {
    Uuid::from_u128(0x10 + u128::from(n))
}

fn address(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 77, 3, n)
}

impl Lab {
    fn new() -> Lab {
        let host = Netns::new("host");
        host.sh(
            "sysctl -qw net.ipv4.ip_forward=1 && sysctl -qw net.ipv4.conf.all.rp_filter=0 && sysctl -qw net.ipv4.conf.default.rp_filter=0",
        );
        let (a, b) = (Netns::new("a"), Netns::new("b"));
        for (n, ns) in [(1u8, &a), (2u8, &b)] {
            let (device, ip, mac) = (format!("tap{n}"), address(n), format!("02:00:00:00:03:{n:02x}"));
            host.sh(&format!("ip link add {device} type veth peer name eth0 netns {}", ns.name));
            host.sh(&format!(
                "sysctl -qw net.ipv4.conf.{device}.rp_filter=0 && ip link set {device} up && ip addr add 169.254.1.1/32 dev {device} \
                 && ip route add {ip}/32 dev {device}"
            ));
            ns.sh(&format!(
                "ip link set eth0 address {mac} && ip addr add {ip}/32 dev eth0 && ip link set eth0 up \
                 && ip route add 169.254.1.1 dev eth0 && ip route add default via 169.254.1.1 dev eth0"
            ));
        }
        let group = Uuid::from_u128(1);
        let rule = |id, direction: &str, protocol, port| RulePolicy {
            id,
            direction: direction.into(),
            ethertype: "IPv4".into(),
            protocol,
            port_range_min: port,
            port_range_max: port,
            remote_ip_prefix: None,
            remote_group_id: None,
        };
        let port = |n: u8| PortPolicy {
            id: port_id(n),
            instance_id: Uuid::from_u128(0x20 + u128::from(n)),
            device: format!("tap{n}"),
            mac_address: format!("02:00:00:00:03:{n:02x}"),
            fixed_ips: vec![address(n).into()],
            security_group_ids: vec![group],
            flow_log: None,
        };
        let policy = HostPolicy {
            host: "h".into(),
            revision: 1,
            ports: vec![port(1), port(2)],
            security_groups: vec![GroupPolicy {
                id: group,
                rules: vec![
                    rule(X, "ingress", Some(6), Some(8022)),
                    rule(Y, "ingress", Some(17), Some(5353)),
                    rule(EGRESS, "egress", None, None),
                ],
            }],
            remote_groups: vec![],
        };
        Lab { host, a, b, policy }
    }

    fn compiled(&self) -> CompiledHost {
        compile(&self.policy).unwrap()
    }

    /// `count` TCP connections from `a` to `b`:`port`, each from its own source port, closed at
    /// once; `b` listens on 8022.
    fn connect(&self, count: usize) {
        let target = SocketAddr::from((address(2), 8022));
        let listener = self.b.enter(|| TcpListener::bind(("0.0.0.0", 8022)).unwrap());
        self.a.enter(|| {
            for _ in 0..count {
                let stream = TcpStream::connect_timeout(&target, Duration::from_secs(3)).expect("rule X admits the connection");
                drop(listener.accept().unwrap());
                drop(stream);
            }
        });
    }
}

fn apply(lab: &Lab, applier: &mut Applier, layout: Layout) -> Outcome {
    let host = lab.compiled();
    lab.host.block_on(applier.apply(host, layout)).expect("applying the tables")
}

fn observe(lab: &Lab, tracker: &mut HitTracker, layout: &Layout, now: i64) {
    let host = lab.compiled();
    let hits = lab.host.block_on(read_hits(&Tools::default())).expect("reading the hit sets");
    tracker.observe(&hits, &PortIndex::new(&host, layout), now);
}

#[test]
fn ten_new_connections_are_ten_hits_of_the_admitting_rule_on_the_port() {
    if !can_run() {
        return;
    }
    let lab = Lab::new();
    let layout = Layout::routed("tap");
    let mut applier = Applier::new(Tools::default());
    assert!(matches!(apply(&lab, &mut applier, layout.clone()), Outcome::Replaced { .. }));
    let mut tracker = HitTracker::new();
    // Traffic before the agent's first read is the baseline: never reported.
    lab.connect(2);
    observe(&lab, &mut tracker, &layout, 1);
    assert!(tracker.pending().is_empty(), "{:?}", tracker.pending());

    lab.connect(10);
    observe(&lab, &mut tracker, &layout, 2);
    let (a, b) = (port_id(1), port_id(2));
    assert_eq!(tracker.pending().get(&(b, X)).map(|p| p.packets), Some(10), "{:?}", tracker.pending());
    assert_eq!(tracker.pending().get(&(a, EGRESS)).map(|p| p.packets), Some(10), "{:?}", tracker.pending());
    assert!(tracker.pending()[&(b, X)].bytes >= 10 * 40);
    assert!(!tracker.pending().keys().any(|(_, rule)| *rule == Y), "rule Y matched nothing: {:?}", tracker.pending());
    assert_eq!(tracker.pending().len(), 2, "{:?}", tracker.pending());
    let report = tracker.report();
    tracker.sent(&report);

    // The tables replaced whole (counters back at 0): the next hits are counted from there.
    applier.reset();
    assert!(matches!(apply(&lab, &mut applier, layout.clone()), Outcome::Replaced { .. }));
    tracker.table_replaced();
    lab.connect(3);
    observe(&lab, &mut tracker, &layout, 3);
    assert_eq!(tracker.pending().get(&(b, X)).map(|p| p.packets), Some(3), "{:?}", tracker.pending());
    // An incremental change of the group (a rule added) keeps the counts going.
    let mut changed = lab.policy.clone();
    let extra = RulePolicy {
        id: Uuid::from_u128(0x103),
        port_range_min: Some(9),
        port_range_max: Some(9),
        ..changed.security_groups[0].rules[0].clone()
    };
    changed.security_groups[0].rules.push(extra);
    let outcome = lab.host.block_on(applier.apply(compile(&changed).unwrap(), layout.clone())).unwrap();
    assert!(matches!(outcome, Outcome::Updated { .. }), "{outcome:?}");
    lab.connect(1);
    observe(&lab, &mut tracker, &layout, 4);
    assert_eq!(tracker.pending().get(&(b, X)).map(|p| p.packets), Some(4), "{:?}", tracker.pending());
}

/// Reads the log socket until `until` holds for the aggregated records or 5 s passed.
fn read_log(socket: &NflogSocket, until: impl Fn(&[FlowRecord]) -> bool) -> Vec<FlowRecord> {
    let mut aggregator = FlowAggregator::new(1000);
    let mut records = Vec::new();
    let mut buffer = vec![0u8; 65536];
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(5) {
        if let Ok(n) = socket.recv(&mut buffer) {
            for packet in parse_messages(&buffer[..n]) {
                aggregator.add(&packet, 1000);
            }
        }
        records.extend(aggregator.drain().0);
        if until(&records) {
            break;
        }
    }
    records
}

/// The lab with `b` logging `events` to NFLOG `group`, applied, and a socket reading the group
/// in the host namespace.
fn logging_lab(events: FlowLogEvents, group: u16) -> (Lab, Applier, Layout, NflogSocket) {
    let lab = Lab::new();
    let mut layout = Layout::routed("tap");
    layout.flow_logs.insert(port_id(2), events);
    layout.flow_log_limits = FlowLogLimits { group, ..FlowLogLimits::default() };
    let mut applier = Applier::new(Tools::default());
    apply(&lab, &mut applier, layout.clone());
    let socket = lab.host.enter(|| NflogSocket::open(group, 128)).expect("binding the NFLOG group");
    socket.set_timeout(Duration::from_millis(200)).unwrap();
    (lab, applier, layout, socket)
}

fn sum(records: &[FlowRecord], port: Uuid, action: FlowAction, rule: Option<Uuid>, dst_port: u16) -> u64 {
    records
        .iter()
        .filter(|r| r.port_id == port && r.action == action && r.rule_id == rule && r.dst_port == Some(dst_port))
        .map(|r| r.packets)
        .sum()
}

#[test]
fn logged_ports_log_their_drops_and_accepts_and_others_nothing() {
    if !can_run() {
        return;
    }
    let (a, b) = (port_id(1), port_id(2));
    let (lab, mut applier, mut layout, socket) = logging_lab(FlowLogEvents::All, 2702);

    // To b: 3 datagrams to UDP 9999 (no rule: the default drop), one to 5353 (rule Y), one TCP
    // connection to 8022 (rule X). From b to a: UDP 7777, which a's default drop refuses — but a
    // does not log.
    let sender = lab.a.enter(|| UdpSocket::bind("0.0.0.0:0").unwrap());
    for _ in 0..3 {
        sender.send_to(b"denied", (address(2), 9999)).unwrap();
    }
    sender.send_to(b"allowed", (address(2), 5353)).unwrap();
    lab.connect(1);
    let from_b = lab.b.enter(|| UdpSocket::bind("0.0.0.0:0").unwrap());
    from_b.send_to(b"to a", (address(1), 7777)).unwrap();

    let done = |r: &[FlowRecord]| {
        sum(r, b, FlowAction::Reject, None, 9999) == 3
            && sum(r, b, FlowAction::Accept, Some(Y), 5353) == 1
            && sum(r, b, FlowAction::Accept, Some(X), 8022) == 1
            && sum(r, b, FlowAction::Accept, Some(EGRESS), 7777) == 1
    };
    let records = read_log(&socket, done);
    assert!(done(&records), "{records:#?}");
    let denied = records.iter().find(|r| r.dst_port == Some(9999)).unwrap();
    assert_eq!(
        (denied.direction, denied.protocol, denied.src_addr, denied.dst_addr),
        (Direction::Ingress, 17, address(1).into(), address(2).into())
    );
    assert!(denied.src_port.is_some() && denied.bytes == 3 * (20 + 8 + 6), "{denied:?}");
    let egress = records.iter().find(|r| r.dst_port == Some(7777)).unwrap();
    assert_eq!(egress.direction, Direction::Egress);
    assert!(!records.iter().any(|r| r.port_id == a), "a does not log: {records:#?}");

    // Logging off: nothing more is logged.
    layout.flow_logs.clear();
    assert!(matches!(apply(&lab, &mut applier, layout), Outcome::Updated { .. }));
    sender.send_to(b"denied", (address(2), 9999)).unwrap();
    let records = read_log(&socket, |r| !r.is_empty());
    assert!(records.is_empty(), "{records:#?}");
}

/// The flood check (docs/benchmarks.md): for `FLOOD_SECONDS`, two threads in `a` blast denied UDP
/// datagrams (`sendmmsg`, 64 at a time) at `b`, which logs its drops; the log reader (the
/// agent's code: socket, parser, aggregator) runs on its own thread. Prints what was sent, what
/// the kernel dropped, what the rate limit let through to the log, the reader's CPU time and the
/// process's peak RSS. `cargo nextest run -p palisade-dataplane --test observe --run-ignored
/// only --no-capture flood`.
#[test]
#[ignore = "a 20-second flood: run on demand"]
fn flood_of_denied_packets_at_a_logged_port() {
    const FLOOD_SECONDS: u64 = 20;
    if !can_run() {
        return;
    }
    let b = port_id(2);
    let (lab, _applier, _layout, socket) = logging_lab(FlowLogEvents::Drop, 2703);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let started = Instant::now();
    let sender_ns = &lab.a;
    let (sent, (logged, flows, overruns, reader_cpu)) = std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let mut aggregator = FlowAggregator::new(20_000);
            let (mut logged, mut flows, mut overruns) = (0u64, 0usize, 0u64);
            let mut buffer = vec![0u8; 128 * 1024];
            while !stop.load(Ordering::Relaxed) {
                match socket.recv(&mut buffer) {
                    Ok(n) => {
                        for packet in parse_messages(&buffer[..n]) {
                            aggregator.add(&packet, started.elapsed().as_secs() as i64);
                        }
                    }
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => overruns += 1,
                    Err(_) => {}
                }
                if aggregator.len() > 1000 {
                    let (records, _) = aggregator.drain();
                    flows += records.len();
                    logged += records.iter().map(|r| r.packets).sum::<u64>();
                }
            }
            let (records, _) = aggregator.drain();
            flows += records.len();
            logged += records.iter().map(|r| r.packets).sum::<u64>();
            (logged, flows, overruns, thread_cpu())
        });
        let senders: Vec<_> = (0..2)
            .map(|i| {
                scope.spawn(move || {
                    sender_ns.enter(|| {
                        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
                        socket.connect((address(2), 9000 + i)).unwrap();
                        blast(&socket, Duration::from_secs(FLOOD_SECONDS))
                    })
                })
            })
            .collect();
        let sent: u64 = senders.into_iter().map(|s| s.join().unwrap()).sum();
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, Ordering::Relaxed);
        (sent, reader.join().unwrap())
    });
    let listing = lab.host.sh(&format!("nft list chain inet palisade pi_{}", b.simple()));
    let dropped: u64 = listing
        .lines()
        .find(|l| l.contains("default drop ingress"))
        .and_then(|l| l.split_whitespace().skip_while(|w| *w != "packets").nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let rss = |key: &str| status.lines().find(|l| l.starts_with(key)).unwrap_or_default().to_string();
    println!(
        "flood: {FLOOD_SECONDS} s, sent {sent} ({:.0}/s), dropped by the default drop {dropped} ({:.0}/s); logged {logged} packets in {flows} \
         flow records ({:.1}/s, limit {}/s); socket overruns {overruns}; reader CPU {:.3} s ({:.2}% of one core); {}; {}",
        sent as f64 / FLOOD_SECONDS as f64,
        dropped as f64 / FLOOD_SECONDS as f64,
        logged as f64 / FLOOD_SECONDS as f64,
        FlowLogLimits::default().rate,
        reader_cpu.as_secs_f64(),
        100.0 * reader_cpu.as_secs_f64() / FLOOD_SECONDS as f64,
        rss("VmRSS"),
        rss("VmHWM"),
    );
    let ceiling = u64::from(FlowLogLimits::default().rate) * (FLOOD_SECONDS + 2);
    assert!(logged <= ceiling, "the rate limit let {logged} through (ceiling {ceiling})");
    assert!(logged >= u64::from(FlowLogLimits::default().rate) * (FLOOD_SECONDS - 2), "{logged} logged");
    assert!(dropped >= sent / 2, "the flood mostly reached the port's drop: {dropped} of {sent}");
}

/// Sends 64-datagram batches on a connected socket until `duration` passed; returns how many.
fn blast(socket: &UdpSocket, duration: Duration) -> u64 {
    let payload = [0u8; 18];
    let mut iov = libc::iovec { iov_base: payload.as_ptr() as *mut libc::c_void, iov_len: payload.len() };
    let mut messages: Vec<libc::mmsghdr> = (0..64)
        .map(|_| {
            let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
            m.msg_hdr.msg_iov = &raw mut iov;
            m.msg_hdr.msg_iovlen = 1;
            m
        })
        .collect();
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < duration {
        let n = unsafe { libc::sendmmsg(socket.as_raw_fd(), messages.as_mut_ptr(), messages.len() as u32, 0) };
        if n > 0 {
            sent += n as u64;
        }
    }
    sent
}

/// CPU time (user + system) of the calling thread.
fn thread_cpu() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    let time = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    time(usage.ru_utime) + time(usage.ru_stime)
}
