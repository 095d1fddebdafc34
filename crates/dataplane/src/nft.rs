//! Rendering a compiled host policy as one nftables table, and the smallest transaction that
//! turns one rendered ruleset into another.
//!
//! Layout of `table inet palisade`:
//! - `prerouting` (hook prerouting, priority filter) dispatches every packet a port sends by
//!   `iifname vmap @port_egress` to the port's egress chain `pe_<port>`: a jump to
//!   `port_egress_common`, a jump to the egress chain of each bound group, then drop.
//!   `port_egress_common` is shared by every port: anti-spoofing by set lookups
//!   (`iifname . ether saddr` in `@port_mac`, `iifname . ip saddr` in `@port_ip4`,
//!   `iifname . ip6 saddr` in `@port_ip6` or link-local), no RA or DHCP server from a port, NDP and
//!   DHCP client allowed, `ct state established,related accept`, `ct state invalid drop`.
//! - `forward` (hook forward, priority filter) dispatches every packet routed to a port by
//!   `oifname vmap @port_ingress` to `pi_<port>`: conntrack, the groups' ingress chains, drop.
//! - `ge_<group>` / `gi_<group>` hold a group's rules once, shared by every port bound to it;
//!   each rule has a counter and the comment `rule <id>`. Protocols are matched by number
//!   (`meta l4proto`), ICMP by type and code.
//! - `rg4_<group>` / `rg6_<group>` are the member addresses of a remote group per family, so a
//!   membership change is a set-element update.
//!
//! Traffic that neither comes from nor goes to a port is not this table's business (policy accept).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use palisade_core::policy::{CompiledHost, CompiledPort, L4, Match, Remote};
use palisade_core::rule::{Direction, Ethertype};
use uuid::Uuid;

pub const TABLE: &str = "inet palisade";

/// A named set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftSet {
    /// The element type: `ipv4_addr`, `ipv6_addr`, `ifname . ether_addr`, ...
    pub kind: &'static str,
    pub elements: BTreeSet<String>,
}

/// A verdict map keyed by interface name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NftMap {
    /// Interface name -> verdict (`jump pe_...`).
    pub elements: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    /// `type filter hook ... priority ...; policy ...;` for base chains.
    pub base: Option<&'static str>,
    pub rules: Vec<String>,
}

/// A rendered table: every object by name, so two rulesets can be compared object by object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    pub sets: BTreeMap<String, NftSet>,
    pub maps: BTreeMap<String, NftMap>,
    pub chains: BTreeMap<String, Chain>,
}

fn hex(id: Uuid) -> String {
    id.simple().to_string()
}

pub fn set_name(group: Uuid, family: Ethertype) -> String {
    match family {
        Ethertype::IPv4 => format!("rg4_{}", hex(group)),
        Ethertype::IPv6 => format!("rg6_{}", hex(group)),
    }
}

pub fn group_chain(group: Uuid, direction: Direction) -> String {
    match direction {
        Direction::Ingress => format!("gi_{}", hex(group)),
        Direction::Egress => format!("ge_{}", hex(group)),
    }
}

pub fn port_chain(port: Uuid, direction: Direction) -> String {
    match direction {
        Direction::Ingress => format!("pi_{}", hex(port)),
        Direction::Egress => format!("pe_{}", hex(port)),
    }
}

const EGRESS_MAP: &str = "port_egress";
const INGRESS_MAP: &str = "port_ingress";

/// One rule of a group chain.
pub fn rule_statement(m: &Match) -> String {
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
    let _ = write!(s, " counter accept comment \"rule {}\"", m.rule_id);
    s
}

const EGRESS_COMMON: &str = "port_egress_common";
const PORT_MAC: &str = "port_mac";
const PORT_IP4: &str = "port_ip4";
const PORT_IP6: &str = "port_ip6";

/// What every port may and may not send, whatever its groups: its own MAC and addresses only,
/// no router advertisements and no DHCP server replies, NDP and DHCP requests always, then
/// connection tracking. Returns to the port's chain for the groups' egress rules.
fn egress_common() -> Chain {
    let rules = vec![
        format!("iifname . ether saddr != @{PORT_MAC} counter drop comment \"spoofed MAC\""),
        "ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept".into(),
        format!("meta nfproto ipv4 iifname . ip saddr != @{PORT_IP4} counter drop comment \"spoofed IPv4 source\""),
        "ip6 saddr :: icmpv6 type { nd-neighbor-solicit, nd-router-solicit, mld2-listener-report } accept".into(),
        format!("ip6 saddr != fe80::/10 iifname . ip6 saddr != @{PORT_IP6} counter drop comment \"spoofed IPv6 source\""),
        "icmpv6 type nd-router-advert counter drop comment \"router advertisement from a port\"".into(),
        "udp sport 67 udp dport 68 counter drop comment \"DHCP server on a port\"".into(),
        "udp sport 547 udp dport 546 counter drop comment \"DHCPv6 server on a port\"".into(),
        "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, mld2-listener-report } accept".into(),
        "ct state established,related accept".into(),
        "ct state invalid counter drop".into(),
        "udp sport 68 udp dport 67 accept".into(),
        "udp sport 546 udp dport 547 accept".into(),
    ];
    Chain { base: None, rules }
}

fn egress_chain(port: &CompiledPort) -> Chain {
    let mut rules = vec![format!("jump {EGRESS_COMMON}")];
    rules.extend(port.groups.iter().map(|g| format!("jump {}", group_chain(*g, Direction::Egress))));
    rules.push(format!("counter drop comment \"default drop egress {}\"", port.id));
    Chain { base: None, rules }
}

fn ingress_chain(port: &CompiledPort) -> Chain {
    let mut rules = vec!["ct state established,related accept".into(), "ct state invalid counter drop".into()];
    rules.extend(port.groups.iter().map(|g| format!("jump {}", group_chain(*g, Direction::Ingress))));
    rules.push(format!("counter drop comment \"default drop ingress {}\"", port.id));
    Chain { base: None, rules }
}

/// Renders the host's policy. Only groups bound to a port of the host get chains; every remote
/// group any of their rules names gets both sets (empty when it has no member of that family).
pub fn render(host: &CompiledHost) -> Ruleset {
    let mut rs = Ruleset::default();
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
            rs.chains.insert(group_chain(*id, direction), Chain { base: None, rules: matches.iter().map(rule_statement).collect() });
        }
    }
    for remote in remotes {
        let members = host.remote_groups.get(&remote).cloned().unwrap_or_default();
        rs.sets.insert(
            set_name(remote, Ethertype::IPv4),
            NftSet { kind: "ipv4_addr", elements: members.ipv4.iter().map(ToString::to_string).collect() },
        );
        rs.sets.insert(
            set_name(remote, Ethertype::IPv6),
            NftSet { kind: "ipv6_addr", elements: members.ipv6.iter().map(ToString::to_string).collect() },
        );
    }
    let mut egress = NftMap::default();
    let mut ingress = NftMap::default();
    let mut macs = NftSet { kind: "ifname . ether_addr", elements: BTreeSet::new() };
    let mut ip4 = NftSet { kind: "ifname . ipv4_addr", elements: BTreeSet::new() };
    let mut ip6 = NftSet { kind: "ifname . ipv6_addr", elements: BTreeSet::new() };
    for port in &host.ports {
        let device = quoted_key(&port.device);
        macs.elements.insert(format!("{device} . {}", port.mac));
        ip4.elements.extend(port.ipv4.iter().map(|ip| format!("{device} . {ip}")));
        ip6.elements.extend(port.ipv6.iter().map(|ip| format!("{device} . {ip}")));
        let pe = port_chain(port.id, Direction::Egress);
        let pi = port_chain(port.id, Direction::Ingress);
        egress.elements.insert(port.device.clone(), format!("jump {pe}"));
        ingress.elements.insert(port.device.clone(), format!("jump {pi}"));
        rs.chains.insert(pe, egress_chain(port));
        rs.chains.insert(pi, ingress_chain(port));
    }
    rs.sets.insert(PORT_MAC.into(), macs);
    rs.sets.insert(PORT_IP4.into(), ip4);
    rs.sets.insert(PORT_IP6.into(), ip6);
    rs.chains.insert(EGRESS_COMMON.into(), egress_common());
    rs.maps.insert(EGRESS_MAP.into(), egress);
    rs.maps.insert(INGRESS_MAP.into(), ingress);
    rs.chains.insert(
        "prerouting".into(),
        Chain {
            base: Some("type filter hook prerouting priority filter; policy accept;"),
            rules: vec![format!("iifname vmap @{EGRESS_MAP}")],
        },
    );
    rs.chains.insert(
        "forward".into(),
        Chain {
            base: Some("type filter hook forward priority filter; policy accept;"),
            rules: vec![format!("oifname vmap @{INGRESS_MAP}")],
        },
    );
    rs
}

fn quoted_key(key: &str) -> String {
    format!("\"{key}\"")
}

/// Chains in an order where every chain comes after the chains it jumps to: group chains, port
/// chains, then base chains (which reach port chains through the maps).
fn chain_order(rs: &Ruleset) -> Vec<&String> {
    let rank = |name: &str| match name.get(..3) {
        Some("ge_" | "gi_") => 0,
        _ if name == EGRESS_COMMON => 0,
        Some("pe_" | "pi_") => 1,
        _ => 2,
    };
    let mut names: Vec<&String> = rs.chains.keys().collect();
    names.sort_by_key(|n| (rank(n), n.to_string()));
    names
}

impl Ruleset {
    /// The whole table as one transaction that replaces whatever table of that name exists
    /// (creating it first so the delete cannot fail): the kernel switches from the old ruleset to
    /// the new one at commit, so no packet ever meets a missing or half-built table.
    pub fn full_script(&self) -> String {
        let mut s = format!("table {TABLE} {{}}\ndelete table {TABLE}\ntable {TABLE} {{\n");
        for (name, set) in &self.sets {
            let _ = write!(s, "  set {name} {{\n    type {}\n", set.kind);
            if !set.elements.is_empty() {
                let _ = writeln!(s, "    elements = {{ {} }}", set.elements.iter().cloned().collect::<Vec<_>>().join(", "));
            }
            s.push_str("  }\n");
        }
        let ordered = chain_order(self);
        for name in ordered.iter().filter(|n| self.chains[n.as_str()].base.is_none()) {
            write_chain(&mut s, name, &self.chains[name.as_str()]);
        }
        for (name, map) in &self.maps {
            let _ = write!(s, "  map {name} {{\n    type ifname : verdict\n");
            if !map.elements.is_empty() {
                let elements: Vec<String> = map.elements.iter().map(|(k, v)| format!("{} : {v}", quoted_key(k))).collect();
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
    /// and refilled; chains and sets nobody uses any more are deleted last.
    pub fn diff_script(&self, new: &Ruleset) -> Option<String> {
        if self == new {
            return None;
        }
        let mut s = String::new();
        // 1. New sets and chains, empty.
        for (name, set) in new.sets.iter().filter(|(n, _)| !self.sets.contains_key(*n)) {
            let _ = writeln!(s, "add set {TABLE} {name} {{ type {}; }}", set.kind);
        }
        for (name, map) in new.maps.iter().filter(|(n, _)| !self.maps.contains_key(*n)) {
            let _ = writeln!(s, "add map {TABLE} {name} {{ type ifname : verdict; }}");
            let _ = map;
        }
        for name in chain_order(new).into_iter().filter(|n| !self.chains.contains_key(*n)) {
            match new.chains[name].base {
                Some(base) => {
                    let _ = writeln!(s, "add chain {TABLE} {name} {{ {base} }}");
                }
                None => {
                    let _ = writeln!(s, "add chain {TABLE} {name}");
                }
            }
        }
        // 2. Set elements.
        for (name, set) in &new.sets {
            let old = self.sets.get(name).map(|s| &s.elements);
            let gone: Vec<&String> = old.map(|o| o.difference(&set.elements).collect()).unwrap_or_default();
            let added: Vec<&String> = set.elements.iter().filter(|e| old.is_none_or(|o| !o.contains(*e))).collect();
            if !gone.is_empty() {
                let _ = writeln!(s, "delete element {TABLE} {name} {{ {} }}", join(&gone));
            }
            if !added.is_empty() {
                let _ = writeln!(s, "add element {TABLE} {name} {{ {} }}", join(&added));
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
                    let _ = writeln!(s, "flush chain {TABLE} {name}");
                }
                None => {}
            }
            for rule in rules {
                let _ = writeln!(s, "add rule {TABLE} {name} {rule}");
            }
        }
        // 4. Map elements: removed or changed ones out, new or changed ones in.
        for (name, map) in &new.maps {
            let old = self.maps.get(name);
            let gone: Vec<String> = old
                .map(|o| o.elements.iter().filter(|(k, v)| map.elements.get(*k) != Some(*v)).map(|(k, _)| quoted_key(k)).collect())
                .unwrap_or_default();
            if !gone.is_empty() {
                let _ = writeln!(s, "delete element {TABLE} {name} {{ {} }}", gone.join(", "));
            }
            let added: Vec<String> = map
                .elements
                .iter()
                .filter(|(k, v)| old.is_none_or(|o| o.elements.get(*k) != Some(*v)))
                .map(|(k, v)| format!("{} : {v}", quoted_key(k)))
                .collect();
            if !added.is_empty() {
                let _ = writeln!(s, "add element {TABLE} {name} {{ {} }}", added.join(", "));
            }
        }
        for name in self.maps.keys().filter(|n| !new.maps.contains_key(*n)) {
            let _ = writeln!(s, "delete map {TABLE} {name}");
        }
        // 5. Chains and sets no longer used: emptied first, so no jump or lookup still names them.
        let removed: Vec<&String> = chain_order(self).into_iter().filter(|n| !new.chains.contains_key(*n)).collect();
        for name in &removed {
            let _ = writeln!(s, "flush chain {TABLE} {name}");
        }
        for name in removed.iter().rev() {
            let _ = writeln!(s, "delete chain {TABLE} {name}");
        }
        for name in self.sets.keys().filter(|n| !new.sets.contains_key(*n)) {
            let _ = writeln!(s, "delete set {TABLE} {name}");
        }
        Some(s)
    }
}

fn join(items: &[&String]) -> String {
    items.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
}

fn write_chain(s: &mut String, name: &str, chain: &Chain) {
    let _ = writeln!(s, "  chain {name} {{");
    if let Some(base) = chain.base {
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

    fn policy(members: Vec<&str>) -> (HostPolicy, Uuid) {
        let web = Uuid::from_u128(1);
        let peers = Uuid::from_u128(2);
        let p = HostPolicy {
            host: "h".into(),
            revision: 1,
            ports: vec![PortPolicy {
                id: Uuid::from_u128(10),
                instance_id: Uuid::from_u128(11),
                device: "tap0".into(),
                mac_address: "02:00:00:00:00:01".into(),
                fixed_ips: vec!["10.0.0.5".parse().unwrap()],
                security_group_ids: vec![web],
            }],
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

    #[test]
    fn renders_dispatch_sets_and_counted_rules() {
        let (p, peers) = policy(vec!["10.0.0.7"]);
        let rs = render(&compile(&p).unwrap());
        let script = rs.full_script();
        assert!(script.starts_with("table inet palisade {}\ndelete table inet palisade\ntable inet palisade {\n"));
        assert!(script.contains("iifname vmap @port_egress"));
        assert!(script.contains("oifname vmap @port_ingress"));
        assert!(script.contains(&format!("\"tap0\" : jump {}", port_chain(Uuid::from_u128(10), Direction::Egress))));
        let rule_id = p.security_groups[0].rules[0].id;
        assert!(script.contains(&format!("meta nfproto ipv4 meta l4proto 6 th dport 22 counter accept comment \"rule {rule_id}\"")));
        assert!(script.contains(&format!("ip saddr @{}", set_name(peers, Ethertype::IPv4))));
        assert!(script.contains("elements = { 10.0.0.7 }"));
        assert!(script.contains("set port_mac {\n    type ifname . ether_addr\n    elements = { \"tap0\" . 02:00:00:00:00:01 }"));
        assert!(script.contains("elements = { \"tap0\" . 10.0.0.5 }"));
        assert!(script.contains("iifname . ip saddr != @port_ip4 counter drop"));
        // Group chains come before the port chains that jump to them.
        let group_at = script.find(&format!("chain {} {{", group_chain(Uuid::from_u128(1), Direction::Ingress))).unwrap();
        let port_at = script.find(&format!("chain {} {{", port_chain(Uuid::from_u128(10), Direction::Ingress))).unwrap();
        assert!(group_at < port_at);
    }

    #[test]
    fn membership_change_is_only_set_elements() {
        let (before, peers) = policy(vec!["10.0.0.7", "10.0.0.8"]);
        let (after, _) = policy(vec!["10.0.0.8", "10.0.0.9"]);
        // Same rule ids on both sides: only membership differs.
        let mut after = after;
        after.security_groups = before.security_groups.clone();
        let old = render(&compile(&before).unwrap());
        let new = render(&compile(&after).unwrap());
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
        let old = render(&compile(&before).unwrap());
        let new = render(&compile(&after).unwrap());
        let script = old.diff_script(&new).unwrap();
        let chain = group_chain(Uuid::from_u128(1), Direction::Ingress);
        assert!(script.starts_with(&format!("flush chain inet palisade {chain}\n")), "{script}");
        assert_eq!(script.lines().count(), 2, "{script}");
    }

    #[test]
    fn an_added_rule_is_appended_alone() {
        let (before, _) = policy(vec![]);
        let mut after = before.clone();
        after.security_groups[0].rules.push(rule("ingress", Some(6), Some(443), None));
        let old = render(&compile(&before).unwrap());
        let new = render(&compile(&after).unwrap());
        let script = old.diff_script(&new).unwrap();
        let chain = group_chain(Uuid::from_u128(1), Direction::Ingress);
        let id = after.security_groups[0].rules[3].id;
        assert_eq!(
            script,
            format!("add rule inet palisade {chain} meta nfproto ipv4 meta l4proto 6 th dport 443 counter accept comment \"rule {id}\"\n")
        );
    }

    #[test]
    fn removing_a_port_removes_its_chains_after_its_map_entries() {
        let (before, _) = policy(vec![]);
        let mut after = before.clone();
        after.ports.clear();
        let old = render(&compile(&before).unwrap());
        let new = render(&compile(&after).unwrap());
        let script = old.diff_script(&new).unwrap();
        let map_delete = script.find("delete element inet palisade port_egress { \"tap0\" }").unwrap();
        let chain_delete =
            script.find(&format!("delete chain inet palisade {}", port_chain(Uuid::from_u128(10), Direction::Egress))).unwrap();
        assert!(map_delete < chain_delete, "{script}");
        assert!(script.contains(&format!("delete chain inet palisade {}", group_chain(Uuid::from_u128(1), Direction::Ingress))));
    }
}
