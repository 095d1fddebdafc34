//! Rendering a compiled host policy as nftables tables, and the smallest transaction that turns
//! one rendered ruleset into another.
//!
//! A host's ports are *routed* (the host routes to the port's device: packets cross the IP
//! stack's prerouting and forward hooks with the device as input or output interface) or
//! *bridged* (the device is a port of a Linux bridge: frames cross the bridge's hooks, and with
//! the bridge's `nf_call_iptables`/`nf_call_ip6tables` on, its IPv4/IPv6 packets also cross the
//! IP hooks — but with the *bridge* as interface). [`Layout`] says which port is which. Three
//! tables, always all three, in one transaction:
//!
//! `table inet palisade` — every stateful decision, for both kinds of port:
//! - `ge_<group>` / `gi_<group>` hold a group's rules once, shared by every port bound to it;
//!   each rule has a counter and the comment `rule <id>`. `hi_<group>` / `he_<group>` (*hit*
//!   chains, jumped to just before the group chain) hold the same matches, each adding the
//!   packet to `hg4_<group>` / `hg6_<group>` (see [`hits_set`]) and returning: a dynamic set
//!   keyed by `interface . mark . port address . rule id` with a counter per element, which is
//!   how a rule shared by every port of a group is counted per port (the agent maps the keys
//!   back to ports with the [`Layout`]); the first match returns, so the hit is the rule the
//!   group chain then accepts with. Protocols are matched by number
//!   (`meta l4proto`), ICMP by type and code. `rg4_<group>` / `rg6_<group>` are the member
//!   addresses of a remote group, so a membership change is a set-element update.
//! - `pe_<port>` (egress): for a routed port `port_spoof` (its own MAC and addresses only, by
//!   `iifname . ether saddr` / `. ip saddr` / `. ip6 saddr` set lookups), then for both kinds
//!   `port_egress_common` (no router advertisements or DHCP server, NDP, conntrack), the egress
//!   chain of each bound group, drop. `pi_<port>` (ingress): `port_ingress_common` (conntrack,
//!   link-local neighbour discovery), each group's ingress chain, drop.
//! - Routed ports are dispatched by interface: `prerouting` `iifname vmap @port_egress`,
//!   `forward` `oifname vmap @port_ingress`. Bridged ports by mark (see below):
//!   `prerouting` `meta mark & 0xffff vmap @bridged_egress`, `forward`
//!   `meta mark vmap @bridged_ingress`, and packets the host routes into a bridge by
//!   `oifname . ip daddr vmap @bridged_routed4` (and `6`).
//! - `raw` (prerouting, priority raw) puts frames bridged between members of a bridge into that
//!   bridge's conntrack zone (`@bridge_zone`), so two networks with the same addresses never
//!   share connection-tracking entries.
//!
//! `table bridge palisade` — what only the bridge sees, stateless:
//! - `prerouting` (priority -300, before the bridge's netfilter call): `iifname vmap
//!   @port_egress` → `bpe_<port>`: marks the frame with the port's id (plus [`MARK_BRIDGED`]
//!   unless it is addressed to the host), then `port_spoof`: its own MAC, ARP sender MAC and
//!   IPv4, IPv4 and IPv6 source; only IPv4, IPv6 and ARP. Frames from the bridge's other members
//!   (uplinks) get [`MARK_BRIDGED`] when bridged.
//! - `forward` (priority -100, before the bridge's netfilter call): `meta mark set oifname map
//!   @mark_out`: [`MARK_TO_MEMBER`] plus the output port's id, which the inet `forward` hook
//!   dispatches on.
//!
//! `table arp palisade` — ARP from routed ports (ARP never reaches an `inet` table): the sender
//! MAC and IPv4 address must be the port's.
//!
//! Fail closed, in every table and both ways: a device named with the port prefix (`tap*`)
//! that is not a port of the layout jumps to `unregistered_in` / `unregistered_out` (a counted
//! drop per known device, then a counted drop for the rest), and a refused device (claimed by two
//! ports, or not enforceable as it is attached) is dropped by the `refused` set. Traffic that
//! neither comes from nor goes to a port or such a device is not these tables' business (policy
//! accept).
//!
//! Flow logs: a port with a flow-log setting ([`Layout::flow_logs`]) logs to NFLOG group
//! [`FlowLogLimits::group`] through `limit name "fl_<port>"` (one token bucket per port, so a
//! flood costs bounded CPU): its default drops (events `drop`/`all`), and, for events
//! `accept`/`all`, each rule's accepts — its port chains then hold its groups' rules inline
//! (with the same hit rules) instead of jumping to the shared group chains, since only they know
//! the port. Log prefixes are parsed by `crate::flowlog` ([`log_prefix`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use palisade_core::observe::FlowLogEvents;
use palisade_core::policy::{CompiledHost, CompiledPort, L4, Match, Remote};
use palisade_core::rule::{Direction, Ethertype};
use uuid::Uuid;

pub const INET: &str = "inet palisade";
pub const BRIDGE: &str = "bridge palisade";
pub const ARP: &str = "arp palisade";
/// The inet table (kept for callers that name "the" table).
pub const TABLE: &str = INET;

/// Mark bit set by the bridge table on a frame that a bridge forwards between its members (not
/// one addressed to the host): the inet `raw` chain puts it in the bridge's conntrack zone.
pub const MARK_BRIDGED: u32 = 0x8000_0000;
/// Mark bit set by the bridge table's `forward` chain on a frame bridged to a member of a bridge
/// that holds ports; the low 16 bits are the output port's id (0 for a member that is no port).
pub const MARK_TO_MEMBER: u32 = 0x4000_0000;
/// The low bits of the mark: a bridged port's id (1..=65535), set in the bridge table.
pub const MARK_PORT: u32 = 0xffff;

/// Where a port's traffic is enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The host routes to the device.
    Routed,
    /// The device is a port of `bridge`; `id` (1..=65535) names it in packet marks.
    Bridged { bridge: String, id: u16 },
}

/// A bridge that holds at least one bridged port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeLayout {
    /// Its conntrack zone (1..=65535).
    pub zone: u16,
    /// Its members that are not ports (uplinks, router or DHCP ports).
    pub uplinks: BTreeSet<String>,
}

/// How the host's devices are attached, as the agent found them: the input of [`render`] besides
/// the policy.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// Port device → placement; a port missing here is routed.
    pub placements: BTreeMap<String, Placement>,
    pub bridges: BTreeMap<String, BridgeLayout>,
    /// Devices with this prefix that are not ports are dropped both ways; empty: no such rule.
    pub prefix: String,
    /// Devices with the prefix that are present and not ports (each gets its own counter).
    pub unregistered: BTreeSet<String>,
    /// Devices the agent cannot enforce as they are (device → why): dropped both ways.
    pub refused: BTreeMap<String, String>,
    /// Ports that log (port → which events); a port missing here logs nothing.
    pub flow_logs: BTreeMap<Uuid, FlowLogEvents>,
    pub flow_log_limits: FlowLogLimits,
}

/// Where logged packets go and how many per port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowLogLimits {
    /// The NFLOG group the agent reads.
    pub group: u16,
    /// Logged packets per second per port (both directions, drops and accepts together).
    pub rate: u32,
    /// Bytes of each packet copied to the log (headers are enough).
    pub snaplen: u32,
}

impl Default for FlowLogLimits {
    fn default() -> Self {
        FlowLogLimits { group: 2701, rate: 100, snaplen: 128 }
    }
}

/// The largest number of (port key, rule) hit elements one group's set holds per family; past
/// it new keys are not counted (enforcement is unaffected: the hit rule has no verdict).
pub const HITS_SET_SIZE: u32 = 65_535;
/// A hit element not hit for this long is dropped by the kernel: stale ports' keys do not fill
/// the set. Far longer than any stats interval, so no increment is lost with it (each hit
/// refreshes it, and the agent reads in between).
pub const HITS_TIMEOUT: &str = "1h";

impl Layout {
    /// Every port routed, with the default prefix: what a host without bridges looks like.
    pub fn routed(prefix: &str) -> Layout {
        Layout { prefix: prefix.to_string(), ..Layout::default() }
    }

    pub fn placement(&self, device: &str) -> Placement {
        self.placements.get(device).cloned().unwrap_or(Placement::Routed)
    }

    /// The conntrack zone of the frames a port exchanges with its bridge's other members
    /// (0: the default zone, for routed ports).
    pub fn zone_of(&self, device: &str) -> u16 {
        match self.placements.get(device) {
            Some(Placement::Bridged { bridge, .. }) => self.bridges.get(bridge).map_or(0, |b| b.zone),
            _ => 0,
        }
    }
}

/// A named set: its declaration (`type ifname . ether_addr`) and elements as nft writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftSet {
    pub decl: String,
    pub elements: BTreeSet<String>,
}

/// A named map: its declaration (`type ifname : verdict`) and elements, key → value, both as nft
/// writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftMap {
    pub decl: String,
    pub elements: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// `type filter hook ... priority ...; policy ...;` for base chains.
    pub base: Option<String>,
    pub rules: Vec<String>,
}

/// One rendered table: every object by name, so two rulesets can be compared object by object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ruleset {
    /// `inet palisade`, `bridge palisade` or `arp palisade`.
    pub table: &'static str,
    pub sets: BTreeMap<String, NftSet>,
    pub maps: BTreeMap<String, NftMap>,
    pub chains: BTreeMap<String, Chain>,
    /// Named limits (token buckets): name → `rate …/second burst … packets`.
    pub limits: BTreeMap<String, String>,
}

/// The host's three tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub tables: Vec<Ruleset>,
}

fn hex(id: Uuid) -> String {
    id.simple().to_string()
}

/// `<v4>_<id>` or `<v6>_<id>`: the name of an object per address family.
fn per_family(family: Ethertype, v4: &str, v6: &str, id: Uuid) -> String {
    format!("{}_{}", if family == Ethertype::IPv4 { v4 } else { v6 }, hex(id))
}

/// `<ingress>_<id>` or `<egress>_<id>`: the name of a chain per direction.
fn per_direction(direction: Direction, ingress: &str, egress: &str, id: Uuid) -> String {
    format!("{}_{}", if direction == Direction::Ingress { ingress } else { egress }, hex(id))
}

/// The dynamic set counting a group's rule hits per port, per family.
pub fn hits_set(group: Uuid, family: Ethertype) -> String {
    per_family(family, "hg4", "hg6", group)
}

/// A rule id as the last part of a hit key: 128 bits, written as an IPv6 address (the one nft
/// type that wide).
pub fn rule_key(rule: Uuid) -> std::net::Ipv6Addr {
    std::net::Ipv6Addr::from(rule.as_u128())
}

/// The named limit (token bucket) of a logging port.
pub fn log_limit(port: Uuid) -> String {
    format!("fl_{}", hex(port))
}

/// What a log prefix says: `pal a <i|e> <port> <rule>` for an accept, `pal d <i|e> <port>` for
/// the default drop (ids in simple hex).
pub fn log_prefix(accept: Option<Uuid>, direction: Direction, port: Uuid) -> String {
    let way = if direction == Direction::Ingress { "i" } else { "e" };
    match accept {
        Some(rule) => format!("pal a {way} {} {}", hex(port), hex(rule)),
        None => format!("pal d {way} {}", hex(port)),
    }
}

pub fn set_name(group: Uuid, family: Ethertype) -> String {
    per_family(family, "rg4", "rg6", group)
}

pub fn group_chain(group: Uuid, direction: Direction) -> String {
    per_direction(direction, "gi", "ge", group)
}

/// The chain that counts a group's hits per port (see [`hit_statement`]).
pub fn hit_chain(group: Uuid, direction: Direction) -> String {
    per_direction(direction, "hi", "he", group)
}

pub fn port_chain(port: Uuid, direction: Direction) -> String {
    per_direction(direction, "pi", "pe", port)
}

/// The bridge table's chain for the frames a bridged port sends.
pub fn bridge_port_chain(port: Uuid) -> String {
    format!("bpe_{}", hex(port))
}

/// One rule of a group chain.
pub fn rule_statement(m: &Match) -> String {
    format!("{} counter accept comment \"rule {}\"", match_expression(m), m.rule_id)
}

/// A rule's hit rule: its match, then its key added to the group's hits set (ingress: output
/// interface and destination, the port's side; egress: input and source).
pub fn hit_statement(m: &Match) -> String {
    let (ip, side, interface) = match (m.family, m.direction) {
        (Ethertype::IPv4, Direction::Ingress) => ("ip", "daddr", "oifname"),
        (Ethertype::IPv4, Direction::Egress) => ("ip", "saddr", "iifname"),
        (Ethertype::IPv6, Direction::Ingress) => ("ip6", "daddr", "oifname"),
        (Ethertype::IPv6, Direction::Egress) => ("ip6", "saddr", "iifname"),
    };
    format!(
        "{} update @{} {{ {interface} . meta mark . {ip} {side} . {} }}",
        match_expression(m),
        hits_set(m.group_id, m.family),
        rule_key(m.rule_id)
    )
}

/// What a rule matches, without counter or verdict.
fn match_expression(m: &Match) -> String {
    let mut s = String::new();
    let (family, ip) = match m.family {
        Ethertype::IPv4 => ("ipv4", "ip"),
        Ethertype::IPv6 => ("ipv6", "ip6"),
    };
    let side = if m.direction == Direction::Ingress { "saddr" } else { "daddr" };
    let _ = write!(s, "meta nfproto {family}");
    match m.remote {
        Remote::Any => {}
        Remote::Prefix(cidr) => {
            let _ = write!(s, " {ip} {side} {cidr}");
        }
        Remote::Group(group) => {
            let _ = write!(s, " {ip} {side} @{}", set_name(group, m.family));
        }
    }
    if let Some(protocol) = m.protocol {
        let _ = write!(s, " meta l4proto {protocol}");
    }
    match m.l4 {
        L4::Any => {}
        L4::Ports(min, max) if min == max => {
            let _ = write!(s, " th dport {min}");
        }
        L4::Ports(min, max) => {
            let _ = write!(s, " th dport {min}-{max}");
        }
        L4::Icmp(kind, code) => {
            let icmp = if m.family == Ethertype::IPv4 { "icmp" } else { "icmpv6" };
            let _ = write!(s, " {icmp} type {kind}");
            if let Some(code) = code {
                let _ = write!(s, " {icmp} code {code}");
            }
        }
    }
    s
}

const SPOOF: &str = "port_spoof";
const EGRESS_COMMON: &str = "port_egress_common";
const INGRESS_COMMON: &str = "port_ingress_common";
const UNREGISTERED_IN: &str = "unregistered_in";
const UNREGISTERED_OUT: &str = "unregistered_out";
const PORT_MAC: &str = "port_mac";
const PORT_IP4: &str = "port_ip4";
const PORT_IP6: &str = "port_ip6";
const REFUSED: &str = "refused";

fn quoted(key: &str) -> String {
    format!("\"{key}\"")
}

fn mark(value: u32) -> String {
    format!("0x{value:08x}")
}

impl Ruleset {
    fn new(table: &'static str) -> Ruleset {
        Ruleset { table, sets: BTreeMap::new(), maps: BTreeMap::new(), chains: BTreeMap::new(), limits: BTreeMap::new() }
    }

    fn set(&mut self, name: &str, decl: &str) -> &mut BTreeSet<String> {
        &mut self.sets.entry(name.to_string()).or_insert_with(|| NftSet { decl: decl.to_string(), elements: BTreeSet::new() }).elements
    }

    fn map(&mut self, name: &str, decl: &str) -> &mut BTreeMap<String, String> {
        &mut self.maps.entry(name.to_string()).or_insert_with(|| NftMap { decl: decl.to_string(), elements: BTreeMap::new() }).elements
    }

    fn chain(&mut self, name: &str, rules: Vec<String>) {
        self.chains.insert(name.to_string(), Chain { base: None, rules });
    }

    fn base(&mut self, name: &str, hook: &str, rules: Vec<String>) {
        self.chains.insert(name.to_string(), Chain { base: Some(format!("type filter hook {hook}; policy accept;")), rules });
    }

    /// The sets every table has: each port's MAC and addresses (of the ports this table checks),
    /// and the refused devices.
    fn port_sets(&mut self, with_ip6: bool) {
        self.set(PORT_MAC, "type ifname . ether_addr");
        self.set(PORT_IP4, "type ifname . ipv4_addr");
        if with_ip6 {
            self.set(PORT_IP6, "type ifname . ipv6_addr");
        }
        self.set(REFUSED, "type ifname");
    }

    fn add_port_addresses(&mut self, port: &CompiledPort, with_ip6: bool) {
        let device = quoted(&port.device);
        self.set(PORT_MAC, "").insert(format!("{device} . {}", port.mac));
        for ip in &port.ipv4 {
            self.set(PORT_IP4, "").insert(format!("{device} . {ip}"));
        }
        if with_ip6 {
            for ip in &port.ipv6 {
                self.set(PORT_IP6, "").insert(format!("{device} . {ip}"));
            }
        }
    }

    /// `unregistered_in` / `unregistered_out`: a counted drop per known unregistered device, then
    /// one for the devices not seen yet.
    fn unregistered_chains(&mut self, layout: &Layout) {
        for (name, side) in [(UNREGISTERED_IN, "iifname"), (UNREGISTERED_OUT, "oifname")] {
            let mut rules: Vec<String> = layout
                .unregistered
                .iter()
                .map(|d| format!("{side} {} counter drop comment \"unregistered device {d}\"", quoted(d)))
                .collect();
            rules.push("counter drop comment \"unregistered device\"".into());
            self.chain(name, rules);
        }
    }
}

/// The wildcard that sends the prefix's unregistered devices to `chain`, if there is a prefix.
fn unregistered_jump(side: &str, layout: &Layout, chain: &str) -> Option<String> {
    (!layout.prefix.is_empty()).then(|| format!("{side} \"{}*\" jump {chain}", layout.prefix))
}

/// Routed ports' anti-spoofing in the inet table: their own MAC and addresses only (DHCP
/// discovery and duplicate-address detection from the unspecified address excepted).
fn inet_spoof() -> Vec<String> {
    vec![
        format!("iifname . ether saddr != @{PORT_MAC} counter drop comment \"spoofed MAC\""),
        "ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept".into(),
        format!("meta nfproto ipv4 iifname . ip saddr != @{PORT_IP4} counter drop comment \"spoofed IPv4 source\""),
        "ip6 saddr :: icmpv6 type { nd-neighbor-solicit, nd-router-solicit, mld2-listener-report } accept".into(),
        format!("ip6 saddr != fe80::/10 iifname . ip6 saddr != @{PORT_IP6} counter drop comment \"spoofed IPv6 source\""),
    ]
}

/// What every port may and may not send, whatever its groups: no router advertisements and no
/// DHCP server replies, NDP and DHCP requests always, then connection tracking. Returns to the
/// port's chain for the groups' egress rules.
fn egress_common() -> Vec<String> {
    vec![
        "icmpv6 type nd-router-advert counter drop comment \"router advertisement from a port\"".into(),
        "udp sport 67 udp dport 68 counter drop comment \"DHCP server on a port\"".into(),
        "udp sport 547 udp dport 546 counter drop comment \"DHCPv6 server on a port\"".into(),
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, mld2-listener-report } accept".into(),
        "ct state established,related accept".into(),
        "ct state invalid counter drop".into(),
        "udp sport 68 udp dport 67 accept".into(),
        "udp sport 546 udp dport 547 accept".into(),
    ]
}

/// What every port may receive whatever its groups: packets of its connections, and neighbour
/// discovery on its link (hop limit 255 or MLD's 1, which no routed packet carries: a bridged
/// port resolves its neighbours with them as a routed port does with the host). Invalid packets
/// are dropped.
fn ingress_common() -> Vec<String> {
    vec![
        "ct state established,related accept".into(),
        "ip6 hoplimit 255 icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept".into(),
        "ip6 hoplimit 255 ip6 saddr fe80::/10 icmpv6 type nd-router-advert accept".into(),
        "ip6 hoplimit 1 ip6 saddr fe80::/10 icmpv6 type mld-listener-query accept".into(),
        "ct state invalid counter drop".into(),
    ]
}

/// Bridged ports' anti-spoofing in the bridge table: their own MAC, ARP sender and addresses;
/// only IPv4, IPv6 and ARP.
fn bridge_spoof() -> Vec<String> {
    vec![
        format!("iifname . ether saddr != @{PORT_MAC} counter drop comment \"spoofed MAC\""),
        format!("ether type arp iifname . arp saddr ether != @{PORT_MAC} counter drop comment \"spoofed ARP sender MAC\""),
        format!(
            "ether type arp arp saddr ip != 0.0.0.0 iifname . arp saddr ip != @{PORT_IP4} counter drop comment \"spoofed ARP sender IPv4\""
        ),
        "ether type arp accept".into(),
        "ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept".into(),
        format!("ether type ip iifname . ip saddr != @{PORT_IP4} counter drop comment \"spoofed IPv4 source\""),
        "ip6 saddr :: icmpv6 type { nd-neighbor-solicit, nd-router-solicit, mld2-listener-report } accept".into(),
        format!("ether type ip6 ip6 saddr != fe80::/10 iifname . ip6 saddr != @{PORT_IP6} counter drop comment \"spoofed IPv6 source\""),
        "ether type != { ip, ip6 } counter drop comment \"not IPv4, IPv6 or ARP\"".into(),
    ]
}

/// Routed ports' ARP in the arp table.
fn arp_spoof() -> Vec<String> {
    vec![
        format!("iifname . arp saddr ether != @{PORT_MAC} counter drop comment \"spoofed ARP sender MAC\""),
        format!("arp saddr ip != 0.0.0.0 iifname . arp saddr ip != @{PORT_IP4} counter drop comment \"spoofed ARP sender IPv4\""),
        "accept".into(),
    ]
}

fn egress_chain(host: &CompiledHost, layout: &Layout, port: &CompiledPort, routed: bool) -> Vec<String> {
    let mut rules = Vec::new();
    if routed {
        rules.push(format!("jump {SPOOF}"));
    }
    rules.push(format!("jump {EGRESS_COMMON}"));
    rules.extend(policy_rules(host, layout, port, Direction::Egress));
    rules
}

fn ingress_chain(host: &CompiledHost, layout: &Layout, port: &CompiledPort) -> Vec<String> {
    let mut rules = vec![format!("jump {INGRESS_COMMON}")];
    rules.extend(policy_rules(host, layout, port, Direction::Ingress));
    rules
}

/// A port chain after its common part: its groups' rules (a jump to each shared group chain, or
/// the rules inline with a log rule each when the port logs accepts), then the default drop,
/// logged first when the port logs drops.
fn policy_rules(host: &CompiledHost, layout: &Layout, port: &CompiledPort, direction: Direction) -> Vec<String> {
    let events = layout.flow_logs.get(&port.id).copied();
    let mut rules = Vec::new();
    for id in &port.groups {
        let group = host.groups.get(id).filter(|_| events.is_some_and(FlowLogEvents::accepts));
        match group {
            Some(group) => {
                let matches = if direction == Direction::Ingress { &group.ingress } else { &group.egress };
                for m in matches {
                    rules.push(hit_statement(m));
                    rules.push(log_statement(layout, port.id, direction, Some(m)));
                    rules.push(rule_statement(m));
                }
            }
            None => {
                rules.push(format!("jump {}", hit_chain(*id, direction)));
                rules.push(format!("jump {}", group_chain(*id, direction)));
            }
        }
    }
    if events.is_some_and(FlowLogEvents::drops) {
        rules.push(log_statement(layout, port.id, direction, None));
    }
    rules.push(format!("counter drop comment \"default drop {} {}\"", direction.as_str(), port.id));
    rules
}

/// The log rule of a port: the rule's accepts (`Some`) or its default drop, through the port's
/// token bucket, so over the rate packets are enforced as ever but not logged.
fn log_statement(layout: &Layout, port: Uuid, direction: Direction, accept: Option<&Match>) -> String {
    let limits = &layout.flow_log_limits;
    let head = accept.map(|m| format!("{} ", match_expression(m))).unwrap_or_default();
    format!(
        "{head}limit name \"{}\" log group {} snaplen {} prefix \"{}\"",
        log_limit(port),
        limits.group,
        limits.snaplen,
        log_prefix(accept.map(|m| m.rule_id), direction, port)
    )
}

/// Renders the host's policy as its three tables. Only groups bound to a port of the host get
/// chains; every remote group any of their rules names gets both sets (empty when it has no
/// member of that family).
pub fn render(host: &CompiledHost, layout: &Layout) -> Rendered {
    let mut inet = Ruleset::new(INET);
    let mut bridge = Ruleset::new(BRIDGE);
    let mut arp = Ruleset::new(ARP);

    // Groups and remote groups (inet).
    let bound: BTreeSet<Uuid> = host.ports.iter().flat_map(|p| p.groups.iter().copied()).collect();
    let mut remotes = BTreeSet::new();
    for id in &bound {
        let Some(group) = host.groups.get(id) else { continue };
        for (direction, matches) in [(Direction::Ingress, &group.ingress), (Direction::Egress, &group.egress)] {
            for m in matches {
                if let Remote::Group(remote) = m.remote {
                    remotes.insert(remote);
                }
            }
            inet.chain(&group_chain(*id, direction), matches.iter().map(rule_statement).collect());
            inet.chain(&hit_chain(*id, direction), matches.iter().map(|m| format!("{} return", hit_statement(m))).collect());
        }
    }
    let hits_decl =
        format!("type ifname . mark . {{}}_addr . ipv6_addr; size {HITS_SET_SIZE}; flags dynamic,timeout; timeout {HITS_TIMEOUT}; counter");
    for id in &bound {
        inet.set(&hits_set(*id, Ethertype::IPv4), &hits_decl.replace("{}", "ipv4"));
        inet.set(&hits_set(*id, Ethertype::IPv6), &hits_decl.replace("{}", "ipv6"));
    }
    for remote in remotes {
        let members = host.remote_groups.get(&remote).cloned().unwrap_or_default();
        inet.set(&set_name(remote, Ethertype::IPv4), "type ipv4_addr").extend(members.ipv4.iter().map(ToString::to_string));
        inet.set(&set_name(remote, Ethertype::IPv6), "type ipv6_addr").extend(members.ipv6.iter().map(ToString::to_string));
    }

    // Every object of the fixed structure, so that the tables look the same whatever the ports.
    inet.port_sets(true);
    bridge.port_sets(true);
    arp.port_sets(false);
    for table in [&mut inet, &mut arp] {
        table.set("routed_ports", "type ifname");
    }
    inet.set("port_bridges", "type ifname");
    bridge.set("bridged_ports", "type ifname");
    bridge.set("uplinks", "type ifname");
    inet.map("port_egress", "type ifname : verdict");
    inet.map("port_ingress", "type ifname : verdict");
    inet.map("bridged_egress", "type mark : verdict");
    inet.map("bridged_ingress", "type mark : verdict");
    inet.map("bridged_routed4", "type ifname . ipv4_addr : verdict");
    inet.map("bridged_routed6", "type ifname . ipv6_addr : verdict");
    inet.map("bridge_zone", "typeof iifname : ct zone");
    bridge.map("port_egress", "type ifname : verdict");
    bridge.map("mark_out", "type ifname : mark");

    // Refused devices: claimed by several ports, or not enforceable as attached.
    let refused: BTreeSet<&str> = host.refused.iter().map(|r| r.device.as_str()).chain(layout.refused.keys().map(String::as_str)).collect();
    for table in [&mut inet, &mut bridge, &mut arp] {
        table.set(REFUSED, "").extend(refused.iter().map(|d| quoted(d)));
    }

    for port in host.ports.iter().filter(|p| !refused.contains(p.device.as_str())) {
        let device = quoted(&port.device);
        let pe = port_chain(port.id, Direction::Egress);
        let pi = port_chain(port.id, Direction::Ingress);
        match layout.placement(&port.device) {
            Placement::Routed => {
                inet.add_port_addresses(port, true);
                arp.add_port_addresses(port, false);
                inet.set("routed_ports", "").insert(device.clone());
                arp.set("routed_ports", "").insert(device.clone());
                inet.map("port_egress", "").insert(device.clone(), format!("jump {pe}"));
                inet.map("port_ingress", "").insert(device.clone(), format!("jump {pi}"));
                inet.chain(&pe, egress_chain(host, layout, port, true));
            }
            Placement::Bridged { bridge: name, id } => {
                let id = u32::from(id);
                bridge.add_port_addresses(port, true);
                bridge.set("bridged_ports", "").insert(device.clone());
                let bpe = bridge_port_chain(port.id);
                bridge.map("port_egress", "").insert(device.clone(), format!("jump {bpe}"));
                bridge.map("mark_out", "").insert(device.clone(), mark(MARK_TO_MEMBER | id));
                bridge.chain(
                    &bpe,
                    vec![
                        format!("meta pkttype host meta mark set {}", mark(id)),
                        format!("meta pkttype != host meta mark set {}", mark(MARK_BRIDGED | id)),
                        format!("jump {SPOOF}"),
                        "accept".into(),
                    ],
                );
                inet.map("bridged_egress", "").insert(mark(id), format!("jump {pe}"));
                inet.map("bridged_ingress", "").insert(mark(MARK_TO_MEMBER | id), format!("jump {pi}"));
                let bridge_name = quoted(&name);
                for ip in &port.ipv4 {
                    inet.map("bridged_routed4", "").insert(format!("{bridge_name} . {ip}"), format!("jump {pi}"));
                }
                for ip in &port.ipv6 {
                    inet.map("bridged_routed6", "").insert(format!("{bridge_name} . {ip}"), format!("jump {pi}"));
                }
                inet.chain(&pe, egress_chain(host, layout, port, false));
            }
        }
        inet.chain(&pi, ingress_chain(host, layout, port));
        if layout.flow_logs.contains_key(&port.id) {
            let rate = layout.flow_log_limits.rate.max(1);
            inet.limits.insert(log_limit(port.id), format!("rate {rate}/second burst {rate} packets"));
        }
    }
    for (name, b) in &layout.bridges {
        inet.set("port_bridges", "").insert(quoted(name));
        inet.map("bridge_zone", "").insert(quoted(name), b.zone.to_string());
        for uplink in &b.uplinks {
            bridge.set("uplinks", "").insert(quoted(uplink));
            bridge.map("mark_out", "").insert(quoted(uplink), mark(MARK_TO_MEMBER));
        }
    }

    // inet: shared chains and hooks.
    inet.chain(SPOOF, inet_spoof());
    inet.chain(EGRESS_COMMON, egress_common());
    inet.chain(INGRESS_COMMON, ingress_common());
    inet.unregistered_chains(layout);
    inet.base(
        "raw",
        "prerouting priority raw",
        vec![format!(
            "iifname @port_bridges meta mark & {} == {} ct zone set iifname map @bridge_zone",
            mark(MARK_BRIDGED),
            mark(MARK_BRIDGED)
        )],
    );
    let mut rules = vec![
        format!("iifname @{REFUSED} counter drop comment \"refused device\""),
        "iifname vmap @port_egress".into(),
        format!("iifname @port_bridges meta mark & {} vmap @bridged_egress", mark(MARK_PORT)),
    ];
    rules.extend(unregistered_jump("iifname", layout, UNREGISTERED_IN));
    inet.base("prerouting", "prerouting priority filter", rules);
    let mut rules = vec![
        format!("oifname @{REFUSED} counter drop comment \"refused device\""),
        "oifname vmap @port_ingress".into(),
        "meta mark vmap @bridged_ingress".into(),
        format!(
            "meta mark & {} == {} accept comment \"bridged to a member that is not a port\"",
            mark(MARK_TO_MEMBER),
            mark(MARK_TO_MEMBER)
        ),
        "oifname . ip daddr vmap @bridged_routed4".into(),
        "oifname . ip6 daddr vmap @bridged_routed6".into(),
    ];
    rules.extend(unregistered_jump("oifname", layout, UNREGISTERED_OUT));
    inet.base("forward", "forward priority filter", rules);
    let mut rules = vec![format!("oifname @{REFUSED} counter drop comment \"refused device\""), "oifname @routed_ports accept".into()];
    rules.extend(unregistered_jump("oifname", layout, UNREGISTERED_OUT));
    inet.base("output", "output priority filter", rules);

    // bridge: anti-spoofing, marks, fail closed.
    bridge.chain(SPOOF, bridge_spoof());
    bridge.unregistered_chains(layout);
    let mut rules = vec![
        format!("iifname @{REFUSED} counter drop comment \"refused device\""),
        "iifname vmap @port_egress".into(),
        format!("iifname @uplinks meta pkttype != host meta mark set {}", mark(MARK_BRIDGED)),
    ];
    rules.extend(unregistered_jump("iifname", layout, UNREGISTERED_IN));
    bridge.base("prerouting", "prerouting priority -300", rules);
    let mut rules = vec![
        format!("oifname @{REFUSED} counter drop comment \"refused device\""),
        "meta mark set oifname map @mark_out".into(),
        "oifname @bridged_ports accept".into(),
    ];
    rules.extend(unregistered_jump("oifname", layout, UNREGISTERED_OUT));
    bridge.base("forward", "forward priority -100", rules);
    let mut rules = vec![format!("oifname @{REFUSED} counter drop comment \"refused device\""), "oifname @bridged_ports accept".into()];
    rules.extend(unregistered_jump("oifname", layout, UNREGISTERED_OUT));
    bridge.base("output", "output priority filter", rules);

    // arp: routed ports' ARP, fail closed.
    arp.chain("arp_spoof", arp_spoof());
    arp.unregistered_chains(layout);
    let mut rules =
        vec![format!("iifname @{REFUSED} counter drop comment \"refused device\""), "iifname @routed_ports jump arp_spoof".into()];
    rules.extend(unregistered_jump("iifname", layout, UNREGISTERED_IN));
    arp.base("input", "input priority filter", rules);
    let mut rules = vec![format!("oifname @{REFUSED} counter drop comment \"refused device\""), "oifname @routed_ports accept".into()];
    rules.extend(unregistered_jump("oifname", layout, UNREGISTERED_OUT));
    arp.base("output", "output priority filter", rules);

    Rendered { tables: vec![inet, bridge, arp] }
}

/// Chains in an order where every chain comes after the chains it jumps to: group and shared
/// chains, port chains, then base chains (which reach port chains through the maps).
fn chain_order(rs: &Ruleset) -> Vec<&String> {
    let rank = |name: &str, chain: &Chain| {
        if chain.base.is_some() {
            2
        } else if name.starts_with("pe_") || name.starts_with("pi_") || name.starts_with("bpe_") {
            1
        } else {
            0
        }
    };
    let mut names: Vec<&String> = rs.chains.keys().collect();
    names.sort_by_key(|n| (rank(n, &rs.chains[n.as_str()]), n.to_string()));
    names
}

impl Rendered {
    /// Every table as one transaction that replaces whatever tables of those names exist
    /// (creating each first so the delete cannot fail): the kernel switches from the old rulesets
    /// to the new ones at commit, so no packet ever meets a missing or half-built table.
    pub fn full_script(&self) -> String {
        self.tables.iter().map(Ruleset::full_script).collect()
    }

    /// The transaction that turns `self` into `new` table by table, or `None` when they are equal.
    pub fn diff_script(&self, new: &Rendered) -> Option<String> {
        if self == new {
            return None;
        }
        let mut s = String::new();
        for table in &new.tables {
            match self.tables.iter().find(|t| t.table == table.table) {
                Some(old) => s.push_str(&old.diff_script(table).unwrap_or_default()),
                None => s.push_str(&table.full_script()),
            }
        }
        Some(s)
    }

    pub fn table(&self, name: &str) -> Option<&Ruleset> {
        self.tables.iter().find(|t| t.table == name)
    }
}

impl Ruleset {
    /// The table as a transaction that replaces whatever table of that name exists.
    pub fn full_script(&self) -> String {
        let table = self.table;
        let mut s = format!("table {table} {{}}\ndelete table {table}\ntable {table} {{\n");
        for (name, set) in &self.sets {
            let _ = write!(s, "  set {name} {{\n    {}\n", set.decl);
            if !set.elements.is_empty() {
                let _ = writeln!(s, "    elements = {{ {} }}", set.elements.iter().cloned().collect::<Vec<_>>().join(", "));
            }
            s.push_str("  }\n");
        }
        for (name, spec) in &self.limits {
            let _ = writeln!(s, "  limit {name} {{ {spec} }}");
        }
        let ordered = chain_order(self);
        for name in ordered.iter().filter(|n| self.chains[n.as_str()].base.is_none()) {
            write_chain(&mut s, name, &self.chains[name.as_str()]);
        }
        for (name, map) in &self.maps {
            let _ = write!(s, "  map {name} {{\n    {}\n", map.decl);
            if !map.elements.is_empty() {
                let elements: Vec<String> = map.elements.iter().map(|(k, v)| format!("{k} : {v}")).collect();
                let _ = writeln!(s, "    elements = {{ {} }}", elements.join(", "));
            }
            s.push_str("  }\n");
        }
        for name in ordered.iter().filter(|n| self.chains[n.as_str()].base.is_some()) {
            write_chain(&mut s, name, &self.chains[name.as_str()]);
        }
        s.push_str("}\n");
        s
    }

    /// The transaction that turns `self` into `new` object by object, or `None` when they are
    /// equal. Sets and maps change element by element; a chain whose rules changed is flushed
    /// and refilled (or only appended to, when rules were only added at its end); chains, maps
    /// and sets nobody uses any more are deleted last.
    pub fn diff_script(&self, new: &Ruleset) -> Option<String> {
        if self == new {
            return None;
        }
        let table = new.table;
        let mut s = String::new();
        // 1. New limits, sets, maps and chains, empty.
        for (name, spec) in self.limits_added(new) {
            let _ = writeln!(s, "add limit {table} {name} {{ {spec} }}");
        }
        for (name, set) in new.sets.iter().filter(|(n, _)| !self.sets.contains_key(*n)) {
            let _ = writeln!(s, "add set {table} {name} {{ {}; }}", set.decl);
        }
        for (name, map) in new.maps.iter().filter(|(n, _)| !self.maps.contains_key(*n)) {
            let _ = writeln!(s, "add map {table} {name} {{ {}; }}", map.decl);
        }
        for name in chain_order(new).into_iter().filter(|n| !self.chains.contains_key(*n)) {
            match &new.chains[name].base {
                Some(base) => {
                    let _ = writeln!(s, "add chain {table} {name} {{ {base} }}");
                }
                None => {
                    let _ = writeln!(s, "add chain {table} {name}");
                }
            }
        }
        // 2. Set elements.
        for (name, set) in &new.sets {
            let old = self.sets.get(name).map(|s| &s.elements);
            let gone: Vec<&String> = old.map(|o| o.difference(&set.elements).collect()).unwrap_or_default();
            let added: Vec<&String> = set.elements.iter().filter(|e| old.is_none_or(|o| !o.contains(*e))).collect();
            if !gone.is_empty() {
                let _ = writeln!(s, "delete element {table} {name} {{ {} }}", join(&gone));
            }
            if !added.is_empty() {
                let _ = writeln!(s, "add element {table} {name} {{ {} }}", join(&added));
            }
        }
        // 3. Chains whose rules changed, and the rules of new chains.
        for name in chain_order(new) {
            let chain = &new.chains[name];
            let mut rules = chain.rules.as_slice();
            match self.chains.get(name) {
                Some(old) if old.rules == chain.rules => continue,
                // Rules only appended (a rule added to a group): append them, keeping the others
                // (and their counters) as they are.
                Some(old) if chain.rules.starts_with(&old.rules) => rules = &chain.rules[old.rules.len()..],
                Some(_) => {
                    let _ = writeln!(s, "flush chain {table} {name}");
                }
                None => {}
            }
            for rule in rules {
                let _ = writeln!(s, "add rule {table} {name} {rule}");
            }
        }
        // 4. Map elements: removed or changed ones out, new or changed ones in.
        for (name, map) in &new.maps {
            let old = self.maps.get(name);
            let gone: Vec<&String> = old
                .map(|o| o.elements.iter().filter(|(k, v)| map.elements.get(*k) != Some(*v)).map(|(k, _)| k).collect())
                .unwrap_or_default();
            if !gone.is_empty() {
                let _ = writeln!(s, "delete element {table} {name} {{ {} }}", join(&gone));
            }
            let added: Vec<String> = map
                .elements
                .iter()
                .filter(|(k, v)| old.is_none_or(|o| o.elements.get(*k) != Some(*v)))
                .map(|(k, v)| format!("{k} : {v}"))
                .collect();
            if !added.is_empty() {
                let _ = writeln!(s, "add element {table} {name} {{ {} }}", added.join(", "));
            }
        }
        for name in self.maps.keys().filter(|n| !new.maps.contains_key(*n)) {
            let _ = writeln!(s, "delete map {table} {name}");
        }
        // 5. Chains and sets no longer used: emptied first, so no jump or lookup still names them.
        let removed: Vec<&String> = chain_order(self).into_iter().filter(|n| !new.chains.contains_key(*n)).collect();
        for name in &removed {
            let _ = writeln!(s, "flush chain {table} {name}");
        }
        for name in removed.iter().rev() {
            let _ = writeln!(s, "delete chain {table} {name}");
        }
        for name in self.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
            let _ = writeln!(s, "delete set {table} {name}");
        }
        // 6. Limits no rule names any more (a changed rate: deleted here, added in step 1 under
        // the same name would fail, so a changed limit is replaced by a full apply — see
        // `limits_added`).
        for name in self.limits.keys().filter(|n| !new.limits.contains_key(*n)) {
            let _ = writeln!(s, "delete limit {table} {name}");
        }
        Some(s)
    }

    /// The limits of `new` that `self` lacks, or has with another rate (nft then refuses the
    /// transaction, and the applier falls back to a full replace: rates change only with the
    /// agent's flags, so only at its start).
    fn limits_added<'a>(&self, new: &'a Ruleset) -> impl Iterator<Item = (&'a String, &'a String)> {
        new.limits.iter().filter(|(name, spec)| self.limits.get(*name) != Some(*spec))
    }
}

fn join(items: &[&String]) -> String {
    items.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

fn write_chain(s: &mut String, name: &str, chain: &Chain) {
    let _ = writeln!(s, "  chain {name} {{");
    if let Some(base) = &chain.base {
        let _ = writeln!(s, "    {base}");
    }
    for rule in &chain.rules {
        let _ = writeln!(s, "    {rule}");
    }
    s.push_str("  }\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::policy::{GroupPolicy, HostPolicy, PortPolicy, RemoteGroup, RulePolicy, compile};

    fn rule(direction: &str, protocol: Option<u8>, min: Option<u16>, remote_group: Option<Uuid>) -> RulePolicy {
        RulePolicy {
            id: Uuid::new_v4(),
            direction: direction.into(),
            ethertype: "IPv4".into(),
            protocol,
            port_range_min: min,
            port_range_max: min,
            remote_ip_prefix: None,
            remote_group_id: remote_group,
        }
    }

    fn port(n: u128, device: &str, group: Uuid) -> PortPolicy {
        PortPolicy {
            id: Uuid::from_u128(n),
            instance_id: Uuid::from_u128(n + 1),
            device: device.into(),
            mac_address: format!("02:00:00:00:00:{n:02x}"),
            fixed_ips: vec![format!("10.0.0.{n}").parse().unwrap(), format!("fd00::{n}").parse().unwrap()],
            security_group_ids: vec![group],
            flow_log: None,
        }
    }

    fn policy(members: Vec<&str>) -> (HostPolicy, Uuid) {
        let web = Uuid::from_u128(1);
        let peers = Uuid::from_u128(2);
        let p = HostPolicy {
            host: "h".into(),
            revision: 1,
            ports: vec![port(10, "tap0", web)],
            security_groups: vec![GroupPolicy {
                id: web,
                rules: vec![
                    rule("ingress", Some(6), Some(22), None),
                    rule("ingress", Some(17), Some(53), Some(peers)),
                    rule("egress", None, None, None),
                ],
            }],
            remote_groups: vec![RemoteGroup { id: peers, members: members.iter().map(|m| m.parse().unwrap()).collect() }],
        };
        (p, peers)
    }

    fn routed(p: &HostPolicy) -> Rendered {
        render(&compile(p).unwrap(), &Layout::routed("tap"))
    }

    fn inet(r: &Rendered) -> &Ruleset {
        r.table(INET).unwrap()
    }

    #[test]
    fn renders_dispatch_sets_and_counted_rules() {
        let (p, peers) = policy(vec!["10.0.0.7"]);
        let rs = routed(&p);
        let script = rs.full_script();
        assert!(script.starts_with("table inet palisade {}\ndelete table inet palisade\ntable inet palisade {\n"));
        assert!(script.contains("table bridge palisade {}\ndelete table bridge palisade\ntable bridge palisade {\n"));
        assert!(script.contains("table arp palisade {}\ndelete table arp palisade\ntable arp palisade {\n"));
        assert!(script.contains("iifname vmap @port_egress"));
        assert!(script.contains("oifname vmap @port_ingress"));
        assert!(script.contains(&format!("\"tap0\" : jump {}", port_chain(Uuid::from_u128(10), Direction::Egress))));
        let rule_id = p.security_groups[0].rules[0].id;
        assert!(script.contains(&format!("meta nfproto ipv4 meta l4proto 6 th dport 22 counter accept comment \"rule {rule_id}\"")));
        assert!(script.contains(&format!("ip saddr @{}", set_name(peers, Ethertype::IPv4))));
        assert!(script.contains("elements = { 10.0.0.7 }"));
        assert!(script.contains("set port_mac {\n    type ifname . ether_addr\n    elements = { \"tap0\" . 02:00:00:00:00:0a }"));
        assert!(script.contains("elements = { \"tap0\" . 10.0.0.10 }"));
        assert!(script.contains("iifname . ip saddr != @port_ip4 counter drop"));
        assert!(script.contains("iifname \"tap*\" jump unregistered_in"));
        // Group chains come before the port chains that jump to them.
        let group_at = script.find(&format!("chain {} {{", group_chain(Uuid::from_u128(1), Direction::Ingress))).unwrap();
        let port_at = script.find(&format!("chain {} {{", port_chain(Uuid::from_u128(10), Direction::Ingress))).unwrap();
        assert!(group_at < port_at);
        // A routed port's ARP is checked in the arp table; the bridge table has no port.
        assert!(rs.table(ARP).unwrap().sets["routed_ports"].elements.contains("\"tap0\""));
        assert!(rs.table(BRIDGE).unwrap().maps["port_egress"].elements.is_empty());
    }

    #[test]
    fn a_bridged_port_is_marked_in_the_bridge_table_and_filtered_in_the_inet_table() {
        let (mut p, _) = policy(vec![]);
        p.ports.push(port(11, "tap1", Uuid::from_u128(1)));
        let mut layout = Layout::routed("tap");
        layout.placements.insert("tap1".into(), Placement::Bridged { bridge: "br0".into(), id: 3 });
        layout.bridges.insert("br0".into(), BridgeLayout { zone: 7, uplinks: BTreeSet::from(["up0".to_string()]) });
        let rs = render(&compile(&p).unwrap(), &layout);
        let (inet, bridge) = (rs.table(INET).unwrap(), rs.table(BRIDGE).unwrap());
        let pe = port_chain(Uuid::from_u128(11), Direction::Egress);
        let pi = port_chain(Uuid::from_u128(11), Direction::Ingress);
        assert_eq!(inet.maps["bridged_egress"].elements["0x00000003"], format!("jump {pe}"));
        assert_eq!(inet.maps["bridged_ingress"].elements["0x40000003"], format!("jump {pi}"));
        assert_eq!(inet.maps["bridged_routed4"].elements["\"br0\" . 10.0.0.11"], format!("jump {pi}"));
        assert_eq!(inet.maps["bridge_zone"].elements["\"br0\""], "7");
        assert!(!inet.chains[&pe].rules.contains(&"jump port_spoof".to_string()), "spoofing is the bridge table's");
        assert!(!inet.maps["port_egress"].elements.contains_key("\"tap1\""));
        assert!(inet.maps["port_egress"].elements.contains_key("\"tap0\""), "tap0 stays routed");
        assert_eq!(bridge.maps["mark_out"].elements["\"tap1\""], "0x40000003");
        assert_eq!(bridge.maps["mark_out"].elements["\"up0\""], "0x40000000");
        let bpe = &bridge.chains[&bridge_port_chain(Uuid::from_u128(11))].rules;
        assert_eq!(bpe[0], "meta pkttype host meta mark set 0x00000003");
        assert_eq!(bpe[1], "meta pkttype != host meta mark set 0x80000003");
        assert!(bridge.sets["port_ip4"].elements.contains("\"tap1\" . 10.0.0.11"));
        assert!(!inet.sets["port_ip4"].elements.contains("\"tap1\" . 10.0.0.11"));
        assert!(!rs.table(ARP).unwrap().sets["routed_ports"].elements.contains("\"tap1\""));
    }

    #[test]
    fn refused_and_unregistered_devices_are_dropped_both_ways() {
        let (mut p, _) = policy(vec![]);
        let mut twin = port(12, "tap0", Uuid::from_u128(1));
        twin.mac_address = "02:00:00:00:00:99".into();
        p.ports.push(twin);
        let mut layout = Layout::routed("tap");
        layout.unregistered.insert("tapx".into());
        let rs = render(&compile(&p).unwrap(), &layout);
        for table in &rs.tables {
            assert!(table.sets["refused"].elements.contains("\"tap0\""), "{}", table.table);
            assert!(table.chains["unregistered_in"].rules[0].contains("iifname \"tapx\" counter drop"), "{}", table.table);
            assert!(table.chains["unregistered_out"].rules[0].contains("oifname \"tapx\" counter drop"), "{}", table.table);
        }
        assert!(inet(&rs).maps["port_egress"].elements.is_empty(), "neither claimant of tap0 is enforced");
        // No prefix, no wildcard.
        let rs = render(&compile(&policy(vec![]).0).unwrap(), &Layout::routed(""));
        assert!(!rs.full_script().contains("jump unregistered_in"));
    }

    #[test]
    fn membership_change_is_only_set_elements() {
        let (before, peers) = policy(vec!["10.0.0.7", "10.0.0.8"]);
        let (after, _) = policy(vec!["10.0.0.8", "10.0.0.9"]);
        // Same rule ids on both sides: only membership differs.
        let mut after = after;
        after.security_groups = before.security_groups.clone();
        let old = routed(&before);
        let new = routed(&after);
        let script = old.diff_script(&new).unwrap();
        let set = set_name(peers, Ethertype::IPv4);
        assert_eq!(script, format!("delete element inet palisade {set} {{ 10.0.0.7 }}\nadd element inet palisade {set} {{ 10.0.0.9 }}\n"));
        assert_eq!(old.diff_script(&old), None, "no change, no transaction");
    }

    #[test]
    fn rule_change_rewrites_one_group_chain() {
        let (before, _) = policy(vec![]);
        let mut after = before.clone();
        after.security_groups[0].rules.remove(0);
        let script = routed(&before).diff_script(&routed(&after)).unwrap();
        let chain = group_chain(Uuid::from_u128(1), Direction::Ingress);
        assert!(script.starts_with(&format!("flush chain inet palisade {chain}\n")), "{script}");
        // The remaining rule, in the group chain and in the hit chain.
        assert!(script.contains(&format!("flush chain inet palisade {}\n", hit_chain(Uuid::from_u128(1), Direction::Ingress))));
        assert_eq!(script.lines().count(), 4, "{script}");
    }

    #[test]
    fn an_added_rule_is_appended_alone() {
        let (before, _) = policy(vec![]);
        let mut after = before.clone();
        after.security_groups[0].rules.push(rule("ingress", Some(6), Some(443), None));
        let script = routed(&before).diff_script(&routed(&after)).unwrap();
        let chain = group_chain(Uuid::from_u128(1), Direction::Ingress);
        let id = after.security_groups[0].rules[3].id;
        let matched = "meta nfproto ipv4 meta l4proto 6 th dport 443";
        let hits = hits_set(Uuid::from_u128(1), Ethertype::IPv4);
        let hit_chain = hit_chain(Uuid::from_u128(1), Direction::Ingress);
        assert_eq!(
            script,
            format!(
                "add rule inet palisade {chain} {matched} counter accept comment \"rule {id}\"\n\
                 add rule inet palisade {hit_chain} {matched} update @{hits} {{ oifname . meta mark . ip daddr . {} }} return\n",
                rule_key(id)
            )
        );
    }

    #[test]
    fn a_logging_port_logs_through_its_own_bucket() {
        let (p, _) = policy(vec![]);
        let port = Uuid::from_u128(10);
        let mut layout = Layout::routed("tap");
        layout.flow_logs.insert(port, FlowLogEvents::Drop);
        let drops = render(&compile(&p).unwrap(), &layout);
        let pi = &inet(&drops).chains[&port_chain(port, Direction::Ingress)].rules;
        let limit = log_limit(port);
        assert_eq!(
            pi[pi.len() - 2],
            format!("limit name \"{limit}\" log group 2701 snaplen 128 prefix \"{}\"", log_prefix(None, Direction::Ingress, port))
        );
        assert!(
            pi.contains(&format!("jump {}", group_chain(Uuid::from_u128(1), Direction::Ingress))),
            "accepts are not logged: shared chain"
        );
        assert_eq!(inet(&drops).limits[&limit], "rate 100/second burst 100 packets");
        // Accepts too: the group's rules inline, each after its log rule.
        layout.flow_logs.insert(port, FlowLogEvents::All);
        let all = render(&compile(&p).unwrap(), &layout);
        let pi = &inet(&all).chains[&port_chain(port, Direction::Ingress)].rules;
        let ssh = p.security_groups[0].rules[0].id;
        let at = pi.iter().position(|r| r.ends_with(&format!("comment \"rule {ssh}\""))).unwrap();
        assert!(
            pi[at - 1].ends_with(&format!("log group 2701 snaplen 128 prefix \"{}\"", log_prefix(Some(ssh), Direction::Ingress, port)))
        );
        assert!(pi[at - 2].contains("update @hg4_"), "{pi:?}");
        // Turning logging off again: the chain is rewritten, then the bucket deleted.
        let script = all.diff_script(&routed(&p)).unwrap();
        assert!(script.ends_with(&format!("delete limit inet palisade {limit}\n")), "{script}");
        let script = routed(&p).diff_script(&all).unwrap();
        assert!(script.starts_with(&format!("add limit inet palisade {limit} {{ rate 100/second burst 100 packets }}\n")), "{script}");
    }

    #[test]
    fn removing_a_port_removes_its_chains_after_its_map_entries() {
        let (before, _) = policy(vec![]);
        let mut after = before.clone();
        after.ports.clear();
        let script = routed(&before).diff_script(&routed(&after)).unwrap();
        let map_delete = script.find("delete element inet palisade port_egress { \"tap0\" }").unwrap();
        let chain_delete =
            script.find(&format!("delete chain inet palisade {}", port_chain(Uuid::from_u128(10), Direction::Egress))).unwrap();
        assert!(map_delete < chain_delete, "{script}");
        assert!(script.contains(&format!("delete chain inet palisade {}", group_chain(Uuid::from_u128(1), Direction::Ingress))));
        assert!(script.contains("delete element arp palisade routed_ports { \"tap0\" }"), "{script}");
    }
}
