//! Differential test of the verdict engine against the kernel (issues 6 and 11): for random groups
//! bound to a port, the engine's verdict on random new flows must be what the kernel does with the
//! agent's ruleset, every time — on a routed port, and on a bridged port (the same run with the
//! port and the world on one bridge: frames addressed to each other's MAC cross the bridge table,
//! then the inet table through the bridge's netfilter call; vm1's own IPv6 and multicast are off
//! so that only the flows reach the port).
//!
//! How it works. One lab for the whole run: a host namespace and two instance namespaces behind
//! veth pairs ([`Lab`]). `vm2` is the port under test (`tap2`); `vm1` stands for the rest of the
//! world: it is not a port of the policy (so the table lets its traffic through) and the host
//! routes the remote address space (198.18.0.0/15, 2001:db8::/32) to it. Each proptest case
//! generates 1–3 groups of random rules (direction, IPv4/IPv6, any protocol, tcp, udp, icmp or one
//! of the contract's other protocols, port ranges, ICMP type/code, remote prefixes over a small
//! address space, remote groups), random member ports of the remote groups, and 100 random flows.
//! The rules are normalised as the API stores them; the host policy is built with
//! `HostPolicy::build`, compiled and loaded by the data plane's own `Applier` (the agent's
//! `nft -f` of the rendered table); the engine is a `VerdictIndex` over the same groups' rules
//! compiled with `policy::compile_groups` and their remote groups expanded with
//! `policy::remote_members`, as the verdicts API builds it.
//!
//! The kernel's verdict: every flow becomes one real packet (TCP SYN, UDP, UDP-Lite, SCTP INIT,
//! DCCP request, ICMP/ICMPv6 of the flow's type and code, or a bare IP payload), with correct
//! checksums, a source port (or ICMP id) unique in the case and a marker naming the flow in its
//! payload. Ingress flows are written as Ethernet frames onto `vm1`'s wire with the flow's remote
//! address as the source, so the host routes them to the port through its forward hook; egress
//! flows are written onto `vm2`'s wire with the port's own MAC and addresses, so they cross the
//! prerouting hook (anti-spoofing, then the port's egress chain) before the host routes them to
//! `vm1`. A packet socket on the receiving side's wire records what arrives: a flow was allowed by
//! the kernel exactly when its packet came out on the other side. All flows of a case are sent at
//! once and collected together (the wait ends when everything the engine allows has arrived, plus
//! a grace period for what it does not), so a case takes a few tens of milliseconds; conntrack is
//! flushed between cases and no two flows of a case share a conntrack tuple, so every packet is
//! the first of a new connection. On top of the verdicts, the per-rule counters of the table must
//! equal the number of flows the engine says each rule decided: the deciding rules agree too.
//!
//! The flows cover what the table decides before the rules too (the engine's `verdict::Fixed`):
//! ICMP and ICMPv6 types that cannot start a connection (conntrack calls them invalid), IPv6 "no
//! next header", and the neighbour discovery a port may always send and the router advertisements
//! it never may. Outside the engine's input, hence not generated: source ports of DHCP (the
//! table always lets a port's DHCP client out and never its DHCP server), and IPv6 flows whose
//! "protocol" is an extension header (hop-by-hop, routing, fragment, AH, destination options: the
//! kernel matches the upper-layer protocol behind them, so no packet has such a protocol).
//! Conntrack's checksum verification is off in the lab's host namespace (see [`Env::new`]).
//!
//! A disagreement fails the case with a reproduction — the host policy as JSON (rules and remote
//! group members), the flows that disagree with both verdicts, the per-rule counts, and the
//! table as the kernel holds it — and proptest shrinks its rules and members. A run checks about
//! 1,600 flows in about a second (docs/benchmarks.md, "Verdict engine"); set
//! `PALISADE_DIFFERENTIAL_CASES` for longer runs. Needs root (CI runs as root).

use std::cell::Cell;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use palisade_core::group::{Group, Scope};
use palisade_core::policy::{Flow, HostPolicy, Match, compile, compile_groups, remote_members};
use palisade_core::port::Port;
use palisade_core::rule::{Direction, Ethertype, Rule, RuleDraft, RuleSpec, dedupe};
use palisade_core::verdict::{Decision, VerdictIndex};
use palisade_core::{Cidr, Protocol};
use palisade_dataplane::apply::Applier;
use palisade_dataplane::host::{Links, MarkIds, Mode, plan};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use uuid::Uuid;

use crate::lab::{BRIDGE, Lab, Netns, Wiring, can_run, counter, test_each_wiring};
use crate::traffic::{eth0_packet_socket, parse_mac};

/// Cases per run (`PALISADE_DIFFERENTIAL_CASES` for more) and flows per case: at least 1,000
/// flows per run.
const CASES: u32 = 16;
const FLOWS: usize = 100;
const HOST: &str = "h1";

// ---------------------------------------------------------------------------------------------
// The generated world.

/// Group `i` of the case: 0–2 may be bound to the port (in that order), 3 and 4 are only remote.
fn group_id(i: usize) -> Uuid {
    Uuid::from_u128(0xa0 + i as u128)
}

fn rule_id(group: usize, rule: usize) -> Uuid {
    Uuid::from_u128(((group as u128 + 1) << 64) | rule as u128)
}

const POOL: usize = 5;

/// The remote address space: 24 addresses per family, in 4 subnets.
fn remote_v4(i: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, i / 6, 1 + i % 6)
}

fn remote_v6(i: u8) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, u16::from(i / 6), 0, 0, 0, 1 + u16::from(i % 6))
}

const ADDRESSES: u8 = 24;
const V4_LENGTHS: &[u8] = &[0, 8, 15, 16, 22, 23, 24, 29, 30, 31, 32];
const V6_LENGTHS: &[u8] = &[0, 32, 48, 62, 63, 64, 125, 126, 127, 128];
const PORTS: &[u16] = &[1, 21, 22, 23, 53, 80, 443, 1000, 1001, 8080, 65535];
const ICMP_TYPES: &[u8] = &[0, 1, 2, 3, 4, 5, 8, 11, 13, 14, 15, 17, 128, 129, 130, 133, 134, 135, 136, 139, 143, 151, 200];
/// Protocols of flows besides tcp, udp and the family's ICMP.
const OTHER_V4: &[u8] = &[2, 4, 8, 33, 41, 46, 47, 50, 51, 89, 94, 112, 113, 132, 136];
const OTHER_V6: &[u8] = &[2, 4, 8, 33, 41, 46, 47, 50, 58, 59, 89, 94, 112, 113, 132, 136];

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![3 => proptest::sample::select(PORTS), 1 => any::<u16>()]
}

fn icmp_type() -> impl Strategy<Value = u8> {
    prop_oneof![3 => proptest::sample::select(ICMP_TYPES), 1 => any::<u8>()]
}

fn icmp_code() -> impl Strategy<Value = u8> {
    prop_oneof![4 => Just(0u8), 2 => 0u8..4, 1 => any::<u8>()]
}

#[derive(Debug, Clone)]
enum RemoteGen {
    Any,
    /// Address index and prefix length index (host bits kept, as clients may write them).
    Prefix(u8, usize),
    Group(usize),
}

/// A random rule as a client would send it, normalised as the API stores it.
fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    let protocol = prop_oneof![
        2 => Just(None),
        3 => Just(Some(Protocol::TCP)),
        2 => Just(Some(Protocol::UDP)),
        2 => Just(Some(Protocol::ICMP)),
        2 => proptest::sample::select(Protocol::all().collect::<Vec<_>>()).prop_map(Some),
    ];
    let ports = prop_oneof![
        1 => Just(None),
        2 => (port(), prop_oneof![Just(0u16), 1u16..=10, Just(100), Just(1000), Just(u16::MAX)])
            .prop_map(|(min, span)| Some((min.max(1), min.max(1).saturating_add(span)))),
    ];
    let icmp = prop_oneof![1 => Just(None), 3 => (icmp_type(), proptest::option::of(icmp_code())).prop_map(Some)];
    let remote = prop_oneof![
        2 => Just(RemoteGen::Any),
        3 => (0..ADDRESSES, 0usize..16).prop_map(|(a, l)| RemoteGen::Prefix(a, l)),
        2 => (0..POOL).prop_map(RemoteGen::Group),
    ];
    (any::<bool>(), any::<bool>(), protocol, ports, icmp, remote).prop_filter_map(
        "the API refuses it",
        |(ingress, v4, protocol, ports, icmp, remote)| {
            let mut draft = RuleDraft::new(if ingress { Direction::Ingress } else { Direction::Egress });
            draft.ethertype = Some(if v4 { Ethertype::IPv4 } else { Ethertype::IPv6 });
            draft.protocol = protocol;
            match protocol {
                Some(p) if p.is_icmp() => {
                    if let Some((kind, code)) = icmp {
                        draft.port_range_min = Some(kind.into());
                        draft.port_range_max = code.map(u16::from);
                    }
                }
                Some(p) if p.takes_ports() => {
                    if let Some((min, max)) = ports {
                        draft.port_range_min = Some(min);
                        draft.port_range_max = Some(max);
                    }
                }
                _ => {}
            }
            match remote {
                RemoteGen::Any => {}
                RemoteGen::Prefix(a, l) => {
                    draft.remote_ip_prefix = Some(if v4 {
                        Cidr::new(IpAddr::V4(remote_v4(a)), V4_LENGTHS[l % V4_LENGTHS.len()]).unwrap()
                    } else {
                        Cidr::new(IpAddr::V6(remote_v6(a)), V6_LENGTHS[l % V6_LENGTHS.len()]).unwrap()
                    });
                }
                RemoteGen::Group(g) => draft.remote_group_id = Some(group_id(g)),
            }
            draft.normalize().ok()
        },
    )
}

/// A port elsewhere, member of some of the pool's groups.
#[derive(Debug, Clone)]
struct MemberGen {
    v4: Vec<u8>,
    v6: Vec<u8>,
    /// Bit i: member of group i.
    groups: u8,
}

fn member() -> impl Strategy<Value = MemberGen> {
    (proptest::collection::vec(0..ADDRESSES, 0..3), proptest::collection::vec(0..ADDRESSES, 0..3), 1u8..32)
        .prop_map(|(v4, v6, groups)| MemberGen { v4, v6, groups })
}

#[derive(Debug, Clone, Copy)]
struct FlowGen {
    ingress: bool,
    v4: bool,
    /// 6, 17, 1 (the family's ICMP), or an index into the family's other protocols.
    protocol: ProtoGen,
    remote: u8,
    port: u16,
    icmp_type: u8,
    icmp_code: u8,
}

#[derive(Debug, Clone, Copy)]
enum ProtoGen {
    Tcp,
    Udp,
    Icmp,
    Other(usize),
}

fn flow_gen() -> impl Strategy<Value = FlowGen> {
    let protocol = prop_oneof![
        4 => Just(ProtoGen::Tcp),
        3 => Just(ProtoGen::Udp),
        3 => Just(ProtoGen::Icmp),
        3 => (0usize..64).prop_map(ProtoGen::Other),
    ];
    (any::<bool>(), any::<bool>(), protocol, 0..ADDRESSES, port(), icmp_type(), icmp_code()).prop_map(
        |(ingress, v4, protocol, remote, port, icmp_type, icmp_code)| FlowGen { ingress, v4, protocol, remote, port, icmp_type, icmp_code },
    )
}

#[derive(Debug, Clone)]
struct Case {
    /// The rules of the groups bound to the port, in binding order.
    bound: Vec<Vec<RuleSpec>>,
    members: Vec<MemberGen>,
    flows: Vec<FlowGen>,
}

fn case() -> impl Strategy<Value = Case> {
    (
        proptest::collection::vec(proptest::collection::vec(rule_spec(), 0..8), 1..=3),
        proptest::collection::vec(member(), 0..5),
        // Flows do not shrink (only the ones that disagree are shown): shrinking goes to the
        // rules and members, which is what makes a reproduction small.
        proptest::collection::vec(flow_gen(), FLOWS).no_shrink(),
    )
        .prop_map(|(bound, members, flows)| Case { bound, members, flows })
}

// ---------------------------------------------------------------------------------------------
// The lab: who is where.

struct Env {
    lab: Lab,
    /// vm1: the rest of the world (not a port), where egress flows arrive.
    world: Wire,
    /// vm2: the port under test, where ingress flows arrive.
    port: Wire,
    /// Destination MAC of the frames written on the world's wire (ingress flows): the host's
    /// `tap1` when routed, the port's own MAC when bridged.
    ingress_next_hop: [u8; 6],
    /// Destination MAC of the frames written on the port's wire (egress flows): the host's `tap2`
    /// when routed, the world's MAC when bridged.
    egress_next_hop: [u8; 6],
    nonce: AtomicU32,
}

impl Env {
    fn new(wiring: Wiring) -> Env {
        let lab = Lab::with(wiring, &[2]);
        let (w, p) = (&lab.instances[0], &lab.instances[1]);
        let mac = |device: &str| parse_mac(lab.host.sh(&format!("cat /sys/class/net/{device}/address")).trim());
        let (ingress_next_hop, egress_next_hop) = match wiring {
            Wiring::Routed => {
                // Static neighbours (no resolution delays or probes during a case) and the remote
                // address space routed to vm1.
                for vm in [w, p] {
                    lab.host.sh(&format!(
                        "ip neigh replace {0} lladdr {1} dev {2} nud permanent && ip -6 neigh replace {3} lladdr {1} dev {2} nud permanent",
                        vm.v4, vm.mac, vm.device, vm.v6
                    ));
                }
                lab.host.sh(&format!(
                    "ip route add 198.18.0.0/15 via {0} dev {1} onlink && ip -6 route add 2001:db8::/32 via {2} dev {1} onlink",
                    w.v4, w.device, w.v6
                ));
                (mac(&w.device), mac(&p.device))
            }
            // One L2 segment: the remote address space is wherever vm1 is, and frames are
            // addressed to the other side's MAC. The bridge hands its packets to the IP hooks (the
            // agent turns that on for a bridge that holds ports).
            Wiring::Bridged => {
                lab.host.sh(&format!("ip link set {BRIDGE} type bridge nf_call_iptables 1 nf_call_ip6tables 1"));
                // vm1 shares the port's link: its own IPv6 and multicast chatter (MLD and IGMP
                // reports, neighbour discovery) would reach the port through its ingress rules and
                // move their counters. Only the flows' frames may.
                w.ns.sh("sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1 && ip link set eth0 multicast off");
                (parse_mac(&p.mac), parse_mac(&w.mac))
            }
        };
        // Frames written to a packet socket reach the host with checksums to verify, where an
        // instance's offloaded ones would not be verified; conntrack verifies UDP-Lite with UDP's
        // pseudo-header (udplite_error passes IPPROTO_UDP), so it would call every correct
        // UDP-Lite packet invalid. The sysctl belongs to the lab's host namespace only.
        lab.host.sh("sysctl -qw net.netfilter.nf_conntrack_checksum=0");
        let world = Wire::open(&w.ns);
        let port = Wire::open(&p.ns);
        Env { world, port, ingress_next_hop, egress_next_hop, nonce: AtomicU32::new(std::process::id()), lab }
    }

    fn world_mac(&self) -> [u8; 6] {
        parse_mac(&self.lab.instances[0].mac)
    }

    fn port_mac(&self) -> [u8; 6] {
        parse_mac(&self.lab.instances[1].mac)
    }

    fn port_v4(&self) -> Ipv4Addr {
        self.lab.instances[1].v4
    }

    fn port_v6(&self) -> Ipv6Addr {
        self.lab.instances[1].v6
    }
}

/// A packet socket on an instance's `eth0`: writes frames onto the wire, reads what arrives.
struct Wire {
    fd: OwnedFd,
}

impl Wire {
    fn open(ns: &Netns) -> Wire {
        let fd = ns.enter(|| {
            let fd = eth0_packet_socket(libc::ETH_P_ALL as u16, libc::SOCK_NONBLOCK);
            let size: libc::c_int = 8 << 20;
            unsafe {
                libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &size as *const _ as *const libc::c_void, 4)
            };
            fd
        });
        Wire { fd }
    }

    fn send(&self, frame: &[u8]) {
        let sent = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(sent, frame.len() as isize, "sending a frame: {}", std::io::Error::last_os_error());
    }

    /// Every frame received since the last call (not the ones sent from here).
    fn drain(&self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let mut buf = vec![0u8; 65536];
        loop {
            let mut from: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    0,
                    &mut from as *mut _ as *mut libc::sockaddr,
                    &mut len,
                )
            };
            if n < 0 {
                break;
            }
            if from.sll_pkttype != libc::PACKET_OUTGOING {
                frames.push(buf[..n as usize].to_vec());
            }
        }
        frames
    }
}

// ---------------------------------------------------------------------------------------------
// Packets.

const MAGIC: &[u8; 4] = b"PALD";

fn checksum_add(mut sum: u32, data: &[u8]) -> u32 {
    for chunk in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]));
    }
    sum
}

fn checksum_fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> u32 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let sum = checksum_add(checksum_add(0, &s.octets()), &d.octets());
            checksum_add(sum, &[0, protocol]) + len as u32
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let sum = checksum_add(checksum_add(0, &s.octets()), &d.octets());
            checksum_add(sum, &(len as u32).to_be_bytes()) + u32::from(protocol)
        }
        _ => unreachable!("mixed families"),
    }
}

/// CRC32c (Castagnoli), as SCTP uses it.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0x82f6_3b78 } else { crc >> 1 };
        }
    }
    !crc
}

/// What goes on the wire for one flow.
#[derive(Debug, Clone, Copy)]
struct Wired {
    src: IpAddr,
    dst: IpAddr,
    protocol: u8,
    sport: u16,
    /// ICMP identifier.
    ident: u16,
}

/// The transport header and payload of a flow's first packet, checksummed.
fn transport(flow: &Flow, wired: &Wired, marker: &[u8]) -> Vec<u8> {
    let (src, dst) = (wired.src, wired.dst);
    let dport = flow.dport_or_type;
    let mut l4 = Vec::new();
    match flow.protocol {
        6 => {
            l4.extend_from_slice(&wired.sport.to_be_bytes());
            l4.extend_from_slice(&dport.to_be_bytes());
            l4.extend_from_slice(&(u32::from(wired.ident) << 8 | 1).to_be_bytes()); // sequence number
            l4.extend_from_slice(&0u32.to_be_bytes()); // acknowledgement
            l4.extend_from_slice(&[0x50, 0x02]); // data offset 5, SYN
            l4.extend_from_slice(&64240u16.to_be_bytes()); // window
            l4.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
            l4.extend_from_slice(marker);
            let sum = checksum_fold(checksum_add(pseudo_header(src, dst, 6, l4.len()), &l4));
            l4[16..18].copy_from_slice(&sum.to_be_bytes());
        }
        17 | 136 => {
            let len = 8 + marker.len();
            l4.extend_from_slice(&wired.sport.to_be_bytes());
            l4.extend_from_slice(&dport.to_be_bytes());
            // UDP: the length; UDP-Lite: the checksum coverage, 0 for all of it.
            l4.extend_from_slice(&(if flow.protocol == 17 { len as u16 } else { 0 }).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
            l4.extend_from_slice(marker);
            let mut sum = checksum_fold(checksum_add(pseudo_header(src, dst, flow.protocol, len), &l4));
            if sum == 0 {
                sum = 0xffff;
            }
            l4[6..8].copy_from_slice(&sum.to_be_bytes());
        }
        132 => {
            // Common header (verification tag 0), then one INIT chunk carrying the marker as an
            // optional parameter of a type receivers skip.
            l4.extend_from_slice(&wired.sport.to_be_bytes());
            l4.extend_from_slice(&dport.to_be_bytes());
            l4.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]); // verification tag, checksum
            let param_len = 4 + marker.len();
            let chunk_len = 20 + param_len;
            l4.extend_from_slice(&[1, 0]);
            l4.extend_from_slice(&(chunk_len as u16).to_be_bytes());
            l4.extend_from_slice(&(0x1000_0000 | u32::from(wired.ident)).to_be_bytes()); // initiate tag
            l4.extend_from_slice(&65535u32.to_be_bytes()); // a_rwnd
            l4.extend_from_slice(&1u16.to_be_bytes()); // outbound streams
            l4.extend_from_slice(&1u16.to_be_bytes()); // inbound streams
            l4.extend_from_slice(&1u32.to_be_bytes()); // initial TSN
            l4.extend_from_slice(&0x8ace_u16.to_be_bytes());
            l4.extend_from_slice(&(param_len as u16).to_be_bytes());
            l4.extend_from_slice(marker);
            while l4.len() % 4 != 0 {
                l4.push(0);
            }
            let crc = crc32c(&l4);
            l4[8..12].copy_from_slice(&crc.to_le_bytes());
        }
        33 => {
            // DCCP-Request with 48-bit sequence numbers and a service code.
            l4.extend_from_slice(&wired.sport.to_be_bytes());
            l4.extend_from_slice(&dport.to_be_bytes());
            l4.extend_from_slice(&[5, 0, 0, 0]); // data offset (words), CCVal/CsCov, checksum
            l4.extend_from_slice(&[0x01, 0]); // type Request, X = 1
            l4.extend_from_slice(&[0, 0, 0, 0, 0, 1]); // sequence number
            l4.extend_from_slice(&0u32.to_be_bytes()); // service code
            l4.extend_from_slice(marker);
            let sum = checksum_fold(checksum_add(pseudo_header(src, dst, 33, l4.len()), &l4));
            l4[6..8].copy_from_slice(&sum.to_be_bytes());
        }
        1 | 58 if (flow.protocol == 1) == src.is_ipv4() => {
            l4.extend_from_slice(&[flow.dport_or_type as u8, flow.code, 0, 0]);
            l4.extend_from_slice(&wired.ident.to_be_bytes());
            l4.extend_from_slice(&1u16.to_be_bytes());
            l4.extend_from_slice(marker);
            let sum = if flow.protocol == 1 {
                checksum_fold(checksum_add(0, &l4))
            } else {
                checksum_fold(checksum_add(pseudo_header(src, dst, 58, l4.len()), &l4))
            };
            l4[2..4].copy_from_slice(&sum.to_be_bytes());
        }
        47 => {
            l4.extend_from_slice(&[0, 0, 0x08, 0x00]); // GRE v0 carrying IPv4
            l4.extend_from_slice(marker);
        }
        _ => l4.extend_from_slice(marker),
    }
    l4
}

/// The whole Ethernet frame.
fn frame(src_mac: [u8; 6], dst_mac: [u8; 6], wired: &Wired, ip_id: u16, l4: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + 40 + l4.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    match (wired.src, wired.dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            f.extend_from_slice(&[0x08, 0x00]);
            let mut ip = vec![0x45, 0];
            ip.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&ip_id.to_be_bytes());
            ip.extend_from_slice(&[0x40, 0, 64, wired.protocol, 0, 0]);
            ip.extend_from_slice(&s.octets());
            ip.extend_from_slice(&d.octets());
            let sum = checksum_fold(checksum_add(0, &ip));
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            f.extend_from_slice(&ip);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            f.extend_from_slice(&[0x86, 0xdd]);
            f.extend_from_slice(&[0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            f.extend_from_slice(&[wired.protocol, 64]);
            f.extend_from_slice(&s.octets());
            f.extend_from_slice(&d.octets());
        }
        _ => unreachable!("mixed families"),
    }
    f.extend_from_slice(l4);
    f
}

/// (source, destination, protocol, marker) of a received frame, if it carries a marker.
fn parse_frame(f: &[u8]) -> Option<(IpAddr, IpAddr, u8, [u8; 12])> {
    if f.len() < 14 {
        return None;
    }
    let ip = &f[14..];
    let (src, dst, protocol, payload) = match u16::from_be_bytes([f[12], f[13]]) {
        0x0800 if ip.len() >= 20 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
            let src = IpAddr::from([ip[12], ip[13], ip[14], ip[15]]);
            let dst = IpAddr::from([ip[16], ip[17], ip[18], ip[19]]);
            (src, dst, ip[9], ip.get(ihl..total)?)
        }
        0x86dd if ip.len() >= 40 => {
            let src = IpAddr::from(<[u8; 16]>::try_from(&ip[8..24]).unwrap());
            let dst = IpAddr::from(<[u8; 16]>::try_from(&ip[24..40]).unwrap());
            (src, dst, ip[6], &ip[40..])
        }
        _ => return None,
    };
    let at = payload.windows(4).position(|w| w == MAGIC)?;
    let marker = payload.get(at..at + 12)?;
    Some((src, dst, protocol, marker.try_into().unwrap()))
}

// ---------------------------------------------------------------------------------------------
// One case.

/// What a case built: the policy, the engine, the flows.
struct Built {
    policy: HostPolicy,
    index: VerdictIndex,
    /// (flow, what goes on the wire), conntrack-distinct.
    flows: Vec<(Flow, Wired)>,
}

fn build(env: &Env, case: &Case) -> Built {
    let scope = Scope { client_id: 1, project_id: 1, region_id: 1 };
    let vm = &env.lab.instances[1];
    let bound_ids: Vec<Uuid> = (0..case.bound.len()).map(group_id).collect();
    let groups: Vec<Group> = case
        .bound
        .iter()
        .enumerate()
        .map(|(g, specs)| Group {
            id: group_id(g),
            scope,
            name: format!("g{g}"),
            description: String::new(),
            created_at: 0,
            updated_at: 0,
            revision_number: 1,
            rules: dedupe(specs.clone())
                .into_iter()
                .enumerate()
                .map(|(r, spec)| Rule { id: rule_id(g, r), group_id: group_id(g), spec, created_at: 0 })
                .collect(),
            tags: Vec::new(),
        })
        .collect();
    let port = Port {
        id: vm.port_id,
        scope,
        instance_id: vm.instance_id,
        instance_name: "vm2".into(),
        host: HOST.into(),
        device: vm.device.clone(),
        mac: vm.mac.parse().unwrap(),
        fixed_ips: vec![vm.v4.into(), vm.v6.into()],
        security_group_ids: bound_ids.clone(),
        created_at: 0,
        updated_at: 0,
    };
    // Every port bound to a group of the pool: the port itself and the generated members.
    let mut ports = vec![port.clone()];
    for (i, m) in case.members.iter().enumerate() {
        let mut fixed_ips: Vec<IpAddr> = m.v4.iter().map(|a| IpAddr::V4(remote_v4(*a))).collect();
        fixed_ips.extend(m.v6.iter().map(|a| IpAddr::V6(remote_v6(*a))));
        ports.push(Port {
            id: Uuid::from_u128(0xb0 + i as u128),
            instance_id: Uuid::from_u128(0xc0 + i as u128),
            instance_name: format!("member{i}"),
            host: "elsewhere".into(),
            device: format!("m{i}"),
            fixed_ips,
            security_group_ids: (0..POOL).filter(|g| m.groups & (1 << g) != 0).map(group_id).collect(),
            ..port.clone()
        });
    }
    let policy = HostPolicy::build(HOST, 1, std::slice::from_ref(&port), &groups, &ports);

    // The engine, as the verdicts API builds it: the groups' rules in binding order, and the
    // members of every remote group they name.
    let rules = compile_groups(&groups).expect("normalised rules compile");
    let members = remote_members(rules.iter().filter_map(Match::remote_group), &ports);
    let index = VerdictIndex::build(rules, &members);

    // Flows: ports and ICMP ids unique in the case, and at most one flow per (family, remote,
    // protocol) for the protocols conntrack tracks without ports.
    let dports: HashSet<u16> = case.flows.iter().map(|f| f.port).collect();
    let mut next_sport = 32768u16;
    let mut portless = HashSet::new();
    let mut flows = Vec::new();
    for (i, g) in case.flows.iter().enumerate() {
        let others = if g.v4 { OTHER_V4 } else { OTHER_V6 };
        let protocol = match g.protocol {
            ProtoGen::Tcp => 6,
            ProtoGen::Udp => 17,
            ProtoGen::Icmp => {
                if g.v4 {
                    1
                } else {
                    58
                }
            }
            ProtoGen::Other(k) => others[k % others.len()],
        };
        let remote = if g.v4 { IpAddr::V4(remote_v4(g.remote)) } else { IpAddr::V6(remote_v6(g.remote)) };
        let icmp = (protocol == 1 && g.v4) || (protocol == 58 && !g.v4);
        let with_ports = matches!(protocol, 6 | 17 | 132 | 136);
        if !icmp && !with_ports && !portless.insert((g.v4, remote, protocol)) {
            continue;
        }
        let dport_or_type = if icmp {
            u16::from(g.icmp_type)
        } else if with_ports || protocol == 33 {
            g.port
        } else {
            0
        };
        let flow = Flow {
            direction: if g.ingress { Direction::Ingress } else { Direction::Egress },
            remote,
            protocol,
            dport_or_type,
            code: if icmp { g.icmp_code } else { 0 },
        };
        while dports.contains(&next_sport) {
            next_sport += 1;
        }
        let sport = next_sport;
        next_sport += 1;
        let local: IpAddr = if g.v4 { env.port_v4().into() } else { env.port_v6().into() };
        let (src, dst) = if g.ingress { (remote, local) } else { (local, remote) };
        flows.push((flow, Wired { src, dst, protocol, sport, ident: 0x1000 + i as u16 }));
    }
    Built { policy, index, flows }
}

/// Loads the case's ruleset, sends its flows, and compares. Runs on a thread of the host
/// namespace (`nft` and `conntrack` act there).
/// Returns the number of flows checked, allowed, and decided before the rules.
fn run_case(env: &Env, runtime: &tokio::runtime::Runtime, case: &Case) -> Result<[usize; 3], String> {
    let built = build(env, case);
    let compiled = compile(&built.policy).map_err(|e| format!("the agent refuses the policy: {e}"))?;
    // The layout as the agent finds it (routed, or a bridge port), then the agent's own applier.
    // The world's device (`tap1`) is no port: without a port prefix it is not dropped as a stray.
    let links = runtime.block_on(Links::scan("ip")).map_err(|e| format!("scanning the links: {e:#}"))?;
    let layout = plan(&compiled, &links, Mode::Auto, "", &mut MarkIds::default());
    let mut applier = Applier::default();
    runtime.block_on(applier.apply(compiled, layout)).map_err(|e| format!("loading the ruleset failed: {e:#}\n{}", applier.last_script))?;
    let flushed = Command::new("conntrack").arg("-F").output().map_err(|e| format!("conntrack -F: {e}"))?;
    if !flushed.status.success() {
        return Err(format!("conntrack -F failed: {}", String::from_utf8_lossy(&flushed.stderr)));
    }

    let nonce = env.nonce.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
    let marker = |i: usize| {
        let mut m = [0u8; 12];
        m[..4].copy_from_slice(MAGIC);
        m[4..8].copy_from_slice(&nonce.to_be_bytes());
        m[8..].copy_from_slice(&(i as u32).to_be_bytes());
        m
    };
    let decisions: Vec<Decision> = built.flows.iter().map(|(f, _)| built.index.decide(f)).collect();
    env.world.drain();
    env.port.drain();
    for (i, (flow, wired)) in built.flows.iter().enumerate() {
        let l4 = transport(flow, wired, &marker(i));
        if flow.direction == Direction::Ingress {
            env.world.send(&frame(env.world_mac(), env.ingress_next_hop, wired, i as u16, &l4));
        } else {
            env.port.send(&frame(env.port_mac(), env.egress_next_hop, wired, i as u16, &l4));
        }
    }
    // Collect until every flow the engine allows has arrived (or a deadline), then a grace period
    // for the ones it does not allow.
    let mut arrived = vec![false; built.flows.len()];
    let expected = decisions.iter().filter(|d| d.allowed).count();
    let started = Instant::now();
    let mut settled: Option<Instant> = None;
    loop {
        for (wire, direction) in [(&env.port, Direction::Ingress), (&env.world, Direction::Egress)] {
            for f in wire.drain() {
                let Some((src, dst, protocol, m)) = parse_frame(&f) else { continue };
                if m[4..8] != nonce.to_be_bytes() {
                    continue;
                }
                let i = u32::from_be_bytes(m[8..].try_into().unwrap()) as usize;
                // The packet itself, on the side it was sent to (not a reply or an ICMP error
                // quoting it).
                if let Some((flow, wired)) = built.flows.get(i)
                    && flow.direction == direction
                    && (wired.src, wired.dst, wired.protocol) == (src, dst, protocol)
                {
                    arrived[i] = true;
                }
            }
        }
        let allowed_arrived = arrived.iter().zip(&decisions).filter(|(a, d)| **a && d.allowed).count();
        if settled.is_none() && (allowed_arrived == expected || started.elapsed() > Duration::from_secs(2)) {
            settled = Some(Instant::now());
        }
        if settled.is_some_and(|s| s.elapsed() > Duration::from_millis(40)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }

    // Verdicts, then the deciding rules through the per-rule counters.
    let mut report = String::new();
    let mut bad = 0;
    for (i, ((flow, wired), (decision, arrived))) in built.flows.iter().zip(decisions.iter().zip(&arrived)).enumerate() {
        if decision.allowed != *arrived {
            bad += 1;
            let _ = writeln!(
                report,
                "flow #{i}: {}\n    engine: {}\n    kernel: {}",
                describe(flow, wired),
                engine_verdict(decision),
                kernel_verdict(*arrived)
            );
        }
    }
    let listing = Command::new("nft").args(["list", "ruleset"]).output().map_err(|e| format!("nft list: {e}"))?;
    let listing = String::from_utf8_lossy(&listing.stdout).into_owned();
    let mut counts = String::new();
    for group in &built.policy.security_groups {
        for rule in &group.rules {
            let engine = decisions.iter().filter(|d| d.rule.is_some_and(|r| r.rule_id == rule.id)).count() as u64;
            let kernel = counter(&listing, &format!("rule {}", rule.id));
            let _ = writeln!(
                counts,
                "    rule {}: engine {engine}, kernel {kernel}{}",
                rule.id,
                if engine == kernel { "" } else { "   <-- differs" }
            );
            if engine != kernel {
                bad += 1;
            }
        }
    }
    if bad == 0 {
        let allowed = decisions.iter().filter(|d| d.allowed).count();
        return Ok([built.flows.len(), allowed, decisions.iter().filter(|d| d.fixed.is_some()).count()]);
    }
    Err(format!(
        "the verdict engine and the kernel disagree ({} flows in the case)\n{report}\
         flows decided by each rule (engine) and the rule's packet counter (kernel):\n{counts}\
         host policy (rules and remote-group members):\n{}\n\
         the table as the kernel holds it after the flows:\n{listing}",
        built.flows.len(),
        serde_json::to_string_pretty(&built.policy).unwrap(),
    ))
}

fn describe(flow: &Flow, wired: &Wired) -> String {
    let family = if flow.remote.is_ipv4() { "IPv4" } else { "IPv6" };
    let name = Protocol::from_number(flow.protocol).map_or_else(|| flow.protocol.to_string(), |p| p.name().to_string());
    let l4 = match flow.protocol {
        1 | 58 if (flow.protocol == 1) == flow.remote.is_ipv4() => format!(" type {} code {}", flow.dport_or_type, flow.code),
        6 | 17 | 33 | 132 | 136 => format!(" dport {} (sport {})", flow.dport_or_type, wired.sport),
        _ => String::new(),
    };
    format!("{} {family} {name}{l4}, {} -> {}", flow.direction.as_str(), wired.src, wired.dst)
}

fn engine_verdict(d: &Decision) -> String {
    let verdict = if d.allowed { "allow" } else { "deny" };
    match (d.fixed, d.rule) {
        (Some(fixed), _) => format!("{verdict} ({})", fixed.reason()),
        (None, Some(r)) => format!("{verdict} (rule {} of group {})", r.rule_id, r.group_id),
        (None, None) => format!("{verdict} (no rule matches)"),
    }
}

fn kernel_verdict(arrived: bool) -> &'static str {
    if arrived { "allow (the packet came out on the other side)" } else { "deny (the packet never came out)" }
}

test_each_wiring!(
    verdict_engine_agrees_with_the_kernel,
    /// The same on a bridged host: the port is a bridge port, flows are bridged between it and
    /// the world (another member of the bridge), so they cross the bridge table (anti-spoofing,
    /// marks) and, through the bridge's netfilter call, the inet table's bridged dispatch and zone.
    verdict_engine_agrees_with_the_kernel_on_a_bridged_host => differential
);

fn differential(wiring: Wiring) {
    if !can_run() {
        return;
    }
    let env = Env::new(wiring);
    let started = Instant::now();
    let ([checked, allowed, fixed], cases) = env.lab.host.enter(|| {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let config = Config {
            cases: std::env::var("PALISADE_DIFFERENTIAL_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(CASES),
            failure_persistence: None,
            max_shrink_iters: 300,
            max_shrink_time: 60_000,
            ..Config::default()
        };
        let mut runner = TestRunner::new(config);
        let checked = Cell::new([0usize; 3]);
        let cases = Cell::new(0usize);
        let result = runner.run(&case(), |c| {
            let flows = run_case(&env, &runtime, &c).map_err(TestCaseError::fail)?;
            let mut sum = checked.get();
            sum.iter_mut().zip(flows).for_each(|(s, n)| *s += n);
            checked.set(sum);
            cases.set(cases.get() + 1);
            Ok(())
        });
        match result {
            Ok(()) => (checked.get(), cases.get()),
            Err(TestError::Fail(why, _)) => panic!("{why}"),
            Err(e) => panic!("{e}"),
        }
    });
    let elapsed = started.elapsed();
    println!(
        "differential ({wiring:?}): {checked} flows in {cases} cases agree with the kernel ({allowed} allowed, {fixed} decided before the rules; {:.1} s)",
        elapsed.as_secs_f64()
    );
    assert!(checked >= 1000, "only {checked} flows were checked");
}
