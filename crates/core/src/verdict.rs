//! The verdict engine: "would this flow be allowed, and which rule decided?", answered from the
//! same compiled policy ([`crate::policy::Match`]) that the nftables renderer enforces: stored
//! rules are compiled by [`crate::policy::compile_groups`], on the function an agent compiles its
//! policy with, and remote groups expanded by [`crate::policy::remote_members`], as for the agent.
//!
//! Security groups are allow-lists: a new connection is allowed when any rule of any group on the
//! port matches it, and dropped otherwise; packets of an established connection are accepted by
//! connection tracking whatever the rules say. The deciding rule is the first matching rule in
//! the order the rules were given (the port's groups in order, each group's rules in order).
//! Before any rule, the table decides a few packets by itself, and so does the engine
//! ([`Fixed`]): a port may always send neighbour discovery and never a router advertisement, and
//! a packet that cannot start a connection (an ICMP reply or error without its connection) is
//! dropped as invalid — Neutron's order, SEMANTICS.md §2.1.
//!
//! The index partitions rules by (direction, family, protocol), then by remote prefix length: a
//! lookup masks the remote address once per distinct prefix length, finds the rules of that prefix
//! in a hash map, and binary-searches their port (or ICMP type/code) intervals, each interval
//! holding the first rule that covers it. Rules naming a remote group are kept per group (the
//! same intervals, keyed by the group instead of a prefix), and the members are indexed once,
//! address -> the groups it belongs to: a group of N members costs N entries however many rules
//! name it (expanding each rule to the members' host prefixes cost rules × members — seconds and
//! hundreds of megabytes for 250 rules naming a group of 100,000 members). A lookup finds the
//! flow's address in that index once, then probes each of its groups like a prefix. Membership
//! changes mean a rebuild (milliseconds).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use uuid::Uuid;

use crate::policy::{Flow, L4, Match, Members, Remote};
use crate::rule::{Direction, Ethertype};

/// The answer for one flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The first rule that allows the flow (none when denied, or when allowed as established).
    pub rule: Option<RuleRef>,
    /// True when the answer assumes a packet of an established connection.
    pub established: bool,
    /// Set when the table decides the flow before any rule (the rules do not matter then).
    pub fixed: Option<Fixed>,
}

/// Flows the nftables table decides before the port's rules (`port_egress_common`, and
/// `ct state invalid drop` ahead of the groups' chains).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fixed {
    /// ICMPv6 router or neighbour solicitation, neighbour advertisement or MLDv2 report sent by
    /// the port: always allowed.
    NeighbourDiscovery,
    /// An ICMPv6 router advertisement sent by the port: always dropped.
    RouterAdvertisement,
    /// Connection tracking cannot start a connection with it (an ICMP type other than echo,
    /// timestamp, information or address mask request; an ICMPv6 type other than echo request,
    /// node information query, MLD, neighbour and multicast router discovery; IPv6 "no next
    /// header"): dropped as invalid unless it belongs to an established connection.
    NotNew,
}

impl Fixed {
    pub fn allowed(self) -> bool {
        self == Fixed::NeighbourDiscovery
    }

    pub fn reason(self) -> &'static str {
        match self {
            Fixed::NeighbourDiscovery => "neighbour discovery and MLDv2 reports from a port are always allowed",
            Fixed::RouterAdvertisement => "router advertisements from a port are always dropped",
            Fixed::NotNew => {
                "this packet cannot start a connection: connection tracking drops it as invalid unless it belongs to an established one"
            }
        }
    }

    /// What the table decides for a new flow before any rule, if anything.
    #[inline]
    pub fn of(flow: &Flow) -> Option<Fixed> {
        let egress = flow.direction == Direction::Egress;
        match (flow.remote.is_ipv4(), flow.protocol, flow.dport_or_type) {
            (true, 1, 8 | 13 | 15 | 17) => None,
            (true, 1, _) => Some(Fixed::NotNew),
            (false, 58, 133 | 135 | 136 | 143) if egress => Some(Fixed::NeighbourDiscovery),
            (false, 58, 134) if egress => Some(Fixed::RouterAdvertisement),
            // Echo request and node information query start connections; MLD, neighbour
            // discovery and multicast router discovery (151, 152; older kernels call those two
            // invalid) are not tracked, so the rules decide them.
            (false, 58, 128 | 139 | 130..=136 | 143 | 151 | 152) => None,
            (false, 58 | 59, _) => Some(Fixed::NotNew),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RuleRef {
    pub rule_id: Uuid,
    pub group_id: Uuid,
}

/// A multiply-xor hasher for the fixed-size keys of the index (masked addresses).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn write_u128(&mut self, n: u128) {
        self.write_u64(n as u64);
        self.write_u64((n >> 64) as u64);
    }
}

type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<AddrHasher>>;

const NONE: u32 = u32::MAX;

/// Elementary intervals of the 16-bit L4 key space, each with the first rule covering it.
#[derive(Debug, Default, Clone)]
struct Intervals {
    starts: Vec<u32>,
    first_rule: Vec<u32>,
}

impl Intervals {
    /// `ranges`: (lo, hi inclusive, rule index).
    fn build(mut ranges: Vec<(u32, u32, u32)>) -> Intervals {
        ranges.sort_unstable();
        let mut bounds: Vec<u32> = ranges.iter().flat_map(|&(lo, hi, _)| [lo, hi + 1]).collect();
        bounds.push(0);
        bounds.sort_unstable();
        bounds.dedup();
        let mut active: BinaryHeap<Reverse<(u32, u32)>> = BinaryHeap::new(); // (rule index, hi)
        let mut next = 0;
        let mut out = Intervals::default();
        for &start in &bounds {
            if start > 0xFFFF {
                break;
            }
            while next < ranges.len() && ranges[next].0 <= start {
                active.push(Reverse((ranges[next].2, ranges[next].1)));
                next += 1;
            }
            while let Some(&Reverse((_, hi))) = active.peek() {
                if hi < start {
                    active.pop();
                } else {
                    break;
                }
            }
            // The heap's top is the lowest rule index among active entries whose own end has not
            // passed; entries below it that expired were popped, deeper expired ones are harmless
            // because the top is checked first.
            let first = active.peek().map_or(NONE, |&Reverse((idx, _))| idx);
            if out.first_rule.last() != Some(&first) {
                out.starts.push(start);
                out.first_rule.push(first);
            }
        }
        out
    }

    #[inline]
    fn lookup(&self, key: u32) -> u32 {
        match self.starts.binary_search(&key) {
            Ok(i) => self.first_rule[i],
            Err(0) => NONE,
            Err(i) => self.first_rule[i - 1],
        }
    }
}

/// Rules of one (direction, family, protocol) bucket, by remote prefix and by remote group.
#[derive(Debug, Default, Clone)]
struct Bucket {
    /// (prefix length, masked address -> intervals), longest first.
    by_length: Vec<(u8, FastMap<u128, Intervals>)>,
    /// Remote group (its slot in [`Membership`]) -> intervals of the rules naming it.
    by_group: FastMap<u32, Intervals>,
}

impl Bucket {
    /// `groups`: the slots of the remote groups the address belongs to.
    #[inline]
    fn lookup(&self, addr: u128, width: u8, key: u32, groups: &[u32]) -> u32 {
        let mut best = NONE;
        for (len, map) in &self.by_length {
            if let Some(intervals) = map.get(&mask(addr, *len, width)) {
                best = best.min(intervals.lookup(key));
            }
        }
        if !self.by_group.is_empty() {
            for slot in groups {
                if let Some(intervals) = self.by_group.get(slot) {
                    best = best.min(intervals.lookup(key));
                }
            }
        }
        best
    }
}

/// The members of the remote groups the rules name, indexed once: address -> the slots of the
/// groups it belongs to (one family; IPv4 addresses as their 32 bits). A hash map rather than a
/// sorted array: a binary search per flow made `decide` a third slower, while the map costs under
/// a millisecond more to build for 100,000 members.
#[derive(Debug, Default, Clone)]
struct Membership {
    /// Address -> range of `slots`.
    of: FastMap<u128, (u32, u32)>,
    slots: Vec<u32>,
}

impl Membership {
    /// `pairs`: (address, group slot), in any order, repeats allowed.
    fn build(mut pairs: Vec<(u128, u32)>) -> Membership {
        pairs.sort_unstable();
        pairs.dedup();
        let mut out = Membership { of: FastMap::default(), slots: Vec::with_capacity(pairs.len()) };
        out.of.reserve(pairs.len());
        let mut i = 0;
        while i < pairs.len() {
            let addr = pairs[i].0;
            let start = out.slots.len() as u32;
            while i < pairs.len() && pairs[i].0 == addr {
                out.slots.push(pairs[i].1);
                i += 1;
            }
            out.of.insert(addr, (start, out.slots.len() as u32));
        }
        out
    }

    #[inline]
    fn groups(&self, addr: u128) -> &[u32] {
        match self.of.get(&addr) {
            Some(&(start, end)) => &self.slots[start as usize..end as usize],
            None => &[],
        }
    }
}

#[inline]
fn mask(addr: u128, len: u8, width: u8) -> u128 {
    if len == 0 {
        0
    } else {
        let shift = width - len;
        (addr >> shift) << shift
    }
}

fn addr_bits(ip: IpAddr) -> (u128, u8, Ethertype) {
    match ip {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32, Ethertype::IPv4),
        IpAddr::V6(a) => (u128::from(a), 128, Ethertype::IPv6),
    }
}

/// The L4 key of a flow: the destination port, or ICMP type * 256 + code.
#[inline]
fn flow_key(flow: &Flow) -> u32 {
    if matches!(flow.protocol, 1 | 58) {
        u32::from(flow.dport_or_type.min(255)) * 256 + u32::from(flow.code)
    } else {
        u32::from(flow.dport_or_type)
    }
}

fn l4_range(l4: L4) -> (u32, u32) {
    match l4 {
        L4::Any => (0, 0xFFFF),
        L4::Ports(lo, hi) => (u32::from(lo), u32::from(hi)),
        L4::Icmp(kind, None) => (u32::from(kind) * 256, u32::from(kind) * 256 + 255),
        L4::Icmp(kind, Some(code)) => {
            let k = u32::from(kind) * 256 + u32::from(code);
            (k, k)
        }
    }
}

type BucketKey = (Direction, Ethertype, Option<u8>);

/// An index over an ordered list of rules and the members of the remote groups they name.
#[derive(Debug, Clone)]
pub struct VerdictIndex {
    rules: Vec<Match>,
    buckets: HashMap<BucketKey, Bucket>,
    members_v4: Membership,
    members_v6: Membership,
}

/// L4 ranges: (lo, hi inclusive, rule index).
type Ranges = Vec<(u32, u32, u32)>;

/// The ranges staged for one bucket.
#[derive(Default)]
struct Staged {
    /// Prefix length -> masked address -> ranges.
    by_length: BTreeMap<u8, FastMap<u128, Ranges>>,
    /// Remote-group slot -> ranges.
    by_group: FastMap<u32, Ranges>,
}

impl VerdictIndex {
    /// Builds the index in time linear in the rules plus the members of the groups they name
    /// (each member once, however many rules name its group).
    pub fn build(rules: Vec<Match>, members: &BTreeMap<Uuid, Members>) -> VerdictIndex {
        let mut staged: HashMap<BucketKey, Staged> = HashMap::new();
        // Remote group -> (slot, named by an IPv4 rule, named by an IPv6 rule).
        let mut slots: HashMap<Uuid, (u32, bool, bool)> = HashMap::new();
        for (index, rule) in rules.iter().enumerate() {
            let index = index as u32;
            let (lo, hi) = l4_range(rule.l4);
            let width = if rule.family == Ethertype::IPv4 { 32 } else { 128 };
            let bucket = staged.entry((rule.direction, rule.family, rule.protocol)).or_default();
            let mut add = |addr: u128, len: u8| {
                bucket.by_length.entry(len).or_default().entry(mask(addr, len, width)).or_default().push((lo, hi, index));
            };
            match rule.remote {
                Remote::Any => add(0, 0),
                Remote::Prefix(cidr) => {
                    let (addr, _, _) = addr_bits(cidr.addr());
                    add(addr, cidr.len());
                }
                Remote::Group(id) => {
                    let next = slots.len() as u32;
                    let entry = slots.entry(id).or_insert((next, false, false));
                    if rule.family == Ethertype::IPv4 {
                        entry.1 = true;
                    } else {
                        entry.2 = true;
                    }
                    bucket.by_group.entry(entry.0).or_default().push((lo, hi, index));
                }
            }
        }
        let (mut v4, mut v6) = (Vec::new(), Vec::new());
        for (id, &(slot, named_v4, named_v6)) in &slots {
            let Some(m) = members.get(id) else { continue };
            if named_v4 {
                v4.extend(m.ipv4.iter().map(|a| (u128::from(u32::from(*a)), slot)));
            }
            if named_v6 {
                v6.extend(m.ipv6.iter().map(|a| (u128::from(*a), slot)));
            }
        }
        let buckets = staged
            .into_iter()
            .map(|(key, staged)| {
                let by_length = staged
                    .by_length
                    .into_iter()
                    .rev()
                    .map(|(len, prefixes)| (len, prefixes.into_iter().map(|(p, ranges)| (p, Intervals::build(ranges))).collect()))
                    .collect();
                let by_group = staged.by_group.into_iter().map(|(slot, ranges)| (slot, Intervals::build(ranges))).collect();
                (key, Bucket { by_length, by_group })
            })
            .collect();
        VerdictIndex { rules, buckets, members_v4: Membership::build(v4), members_v6: Membership::build(v6) }
    }

    pub fn rules(&self) -> &[Match] {
        &self.rules
    }

    /// The verdict for a new connection.
    #[inline]
    pub fn decide(&self, flow: &Flow) -> Decision {
        if let Some(fixed) = Fixed::of(flow) {
            return Decision { allowed: fixed.allowed(), rule: None, established: false, fixed: Some(fixed) };
        }
        let (addr, width, family) = addr_bits(flow.remote);
        let key = flow_key(flow);
        let membership = if family == Ethertype::IPv4 { &self.members_v4 } else { &self.members_v6 };
        let groups = if membership.of.is_empty() { &[][..] } else { membership.groups(addr) };
        let mut best = NONE;
        for protocol in [Some(flow.protocol), None] {
            if let Some(bucket) = self.buckets.get(&(flow.direction, family, protocol)) {
                best = best.min(bucket.lookup(addr, width, key, groups));
            }
        }
        match self.rules.get(best as usize) {
            Some(rule) => Decision {
                allowed: true,
                rule: Some(RuleRef { rule_id: rule.rule_id, group_id: rule.group_id }),
                established: false,
                fixed: None,
            },
            None => Decision { allowed: false, rule: None, established: false, fixed: None },
        }
    }

    /// The verdict, with connection tracking: an established connection's packets are accepted.
    pub fn decide_with_state(&self, flow: &Flow, established: bool) -> Decision {
        if established { Decision { allowed: true, rule: None, established: true, fixed: None } } else { self.decide(flow) }
    }

    /// Every rule that matches the flow, in order (for explanations; linear).
    pub fn matching(&self, flow: &Flow, members: &BTreeMap<Uuid, Members>) -> Vec<RuleRef> {
        self.rules.iter().filter(|m| m.matches(flow, members)).map(|m| RuleRef { rule_id: m.rule_id, group_id: m.group_id }).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::cidr::Cidr;

    fn rule(direction: Direction, family: Ethertype, protocol: Option<u8>, l4: L4, remote: Remote) -> Match {
        Match { rule_id: Uuid::new_v4(), group_id: Uuid::nil(), direction, family, protocol, l4, remote }
    }

    fn flow(direction: Direction, remote: &str, protocol: u8, port: u16, code: u8) -> Flow {
        Flow { direction, remote: remote.parse().unwrap(), protocol, dport_or_type: port, code }
    }

    fn prefix(text: &str) -> Remote {
        Remote::Prefix(text.parse::<Cidr>().unwrap().network())
    }

    #[test]
    fn first_matching_rule_decides() {
        let group = Uuid::new_v4();
        let mut members = BTreeMap::new();
        members.insert(group, Members { ipv4: [Ipv4Addr::new(10, 9, 9, 9)].into(), ipv6: [Ipv6Addr::LOCALHOST].into() });
        let rules = vec![
            rule(Direction::Ingress, Ethertype::IPv4, Some(6), L4::Ports(80, 90), prefix("10.1.0.0/16")),
            rule(Direction::Ingress, Ethertype::IPv4, Some(6), L4::Ports(85, 85), Remote::Any),
            rule(Direction::Ingress, Ethertype::IPv4, Some(1), L4::Icmp(8, None), Remote::Any),
            rule(Direction::Ingress, Ethertype::IPv4, None, L4::Any, Remote::Group(group)),
            rule(Direction::Egress, Ethertype::IPv6, Some(17), L4::Ports(53, 53), Remote::Any),
        ];
        let index = VerdictIndex::build(rules.clone(), &members);
        let decided = |f: Flow| index.decide(&f).rule.map(|r| r.rule_id);
        assert_eq!(decided(flow(Direction::Ingress, "10.1.2.3", 6, 85, 0)), Some(rules[0].rule_id));
        assert_eq!(decided(flow(Direction::Ingress, "10.2.2.3", 6, 85, 0)), Some(rules[1].rule_id));
        assert_eq!(decided(flow(Direction::Ingress, "10.2.2.3", 6, 86, 0)), None);
        assert_eq!(decided(flow(Direction::Ingress, "1.1.1.1", 1, 8, 3)), Some(rules[2].rule_id));
        assert_eq!(decided(flow(Direction::Ingress, "1.1.1.1", 1, 0, 0)), None);
        assert_eq!(decided(flow(Direction::Ingress, "10.9.9.9", 47, 0, 0)), Some(rules[3].rule_id));
        assert_eq!(decided(flow(Direction::Egress, "2001:db8::1", 17, 53, 0)), Some(rules[4].rule_id));
        assert_eq!(decided(flow(Direction::Ingress, "2001:db8::1", 17, 53, 0)), None);
        assert!(index.decide_with_state(&flow(Direction::Ingress, "8.8.8.8", 6, 1, 0), true).allowed);
    }

    /// Found by the differential test against the kernel (crates/palisade/tests/dataplane/
    /// differential.rs): the table decides these before any rule, whatever the rules say.
    #[test]
    fn the_table_decides_some_flows_before_the_rules() {
        let everything = vec![
            rule(Direction::Ingress, Ethertype::IPv4, None, L4::Any, Remote::Any),
            rule(Direction::Ingress, Ethertype::IPv6, None, L4::Any, Remote::Any),
            rule(Direction::Egress, Ethertype::IPv4, None, L4::Any, Remote::Any),
            rule(Direction::Egress, Ethertype::IPv6, None, L4::Any, Remote::Any),
        ];
        let all = VerdictIndex::build(everything, &BTreeMap::new());
        let nothing = VerdictIndex::build(Vec::new(), &BTreeMap::new());
        let (i, e) = (Direction::Ingress, Direction::Egress);
        let icmp = |direction, icmp_type, code| flow(direction, "1.1.1.1", 1, icmp_type, code);
        let icmpv6 = |direction, icmp_type, code| flow(direction, "2001:db8::1", 58, icmp_type, code);
        // Requests start connections: the rules decide.
        let requests = [icmp(i, 8, 0), icmp(e, 13, 0), icmpv6(i, 128, 0), icmpv6(i, 135, 0), icmpv6(e, 151, 0)];
        // Replies, errors and unknown types without a connection are invalid: dropped even when a
        // rule matches them.
        let invalid_v4 = [icmp(i, 0, 0), icmp(i, 3, 4), icmp(e, 11, 0), icmp(i, 200, 0)];
        let invalid_v6 = [icmpv6(i, 129, 0), icmpv6(e, 2, 0), flow(i, "2001:db8::1", 59, 0, 0)];
        let invalid = invalid_v4.iter().chain(&invalid_v6);
        for (f, fixed) in requests.iter().map(|f| (f, None)).chain(invalid.map(|f| (f, Some(Fixed::NotNew)))) {
            let d = all.decide(f);
            assert_eq!(d.fixed, fixed, "{f:?}");
            if fixed.is_none() {
                assert!(d.allowed && !nothing.decide(f).allowed, "{f:?}");
            } else {
                assert_eq!((d.allowed, d.rule), (false, None), "{f:?}");
                assert!(all.decide_with_state(f, true).allowed, "an established connection's packets pass");
            }
        }
        // A port may always send neighbour discovery, never a router advertisement.
        for kind in [133, 135, 136, 143] {
            let d = nothing.decide(&flow(e, "2001:db8::1", 58, kind, 0));
            assert_eq!((d.allowed, d.fixed), (true, Some(Fixed::NeighbourDiscovery)), "type {kind}");
        }
        let d = all.decide(&flow(e, "2001:db8::1", 58, 134, 0));
        assert_eq!((d.allowed, d.fixed), (false, Some(Fixed::RouterAdvertisement)));
        // Ingress, those are rules' business; other protocol numbers too.
        assert!(!nothing.decide(&flow(i, "2001:db8::1", 58, 134, 0)).allowed);
        assert!(all.decide(&flow(i, "2001:db8::1", 58, 134, 0)).allowed);
        assert_eq!(all.decide(&flow(i, "1.1.1.1", 58, 0, 0)).fixed, None, "protocol 58 over IPv4 is no ICMP");
    }

    /// Issue 12: many rules naming one big remote group index each member once (a rules ×
    /// members expansion took seconds and hundreds of megabytes here); answers stay exact,
    /// also for an address in two groups and for the other family.
    #[test]
    fn many_rules_naming_a_big_remote_group() {
        let (big, small) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let mut members = BTreeMap::new();
        let mut m = Members::default();
        for i in 0..100_000u32 {
            m.ipv4.insert(Ipv4Addr::from(0x0a00_0000 + i));
        }
        m.ipv6.insert(Ipv6Addr::LOCALHOST);
        members.insert(big, m);
        members.insert(small, Members { ipv4: [Ipv4Addr::new(10, 0, 0, 5)].into(), ipv6: Default::default() });
        let mut rules: Vec<Match> = (0..250)
            .map(|k| rule(Direction::Ingress, Ethertype::IPv4, Some(6), L4::Ports(1000 + k, 1000 + k), Remote::Group(big)))
            .collect();
        rules.insert(0, rule(Direction::Ingress, Ethertype::IPv4, Some(6), L4::Ports(1100, 1100), Remote::Group(small)));
        rules.push(rule(Direction::Ingress, Ethertype::IPv6, None, L4::Any, Remote::Group(big)));
        let index = VerdictIndex::build(rules.clone(), &members);
        let decided = |f: Flow| index.decide(&f).rule.map(|r| r.rule_id);
        assert_eq!(decided(flow(Direction::Ingress, "10.1.134.159", 6, 1249, 0)), Some(rules[250].rule_id), "the last member");
        assert_eq!(decided(flow(Direction::Ingress, "10.0.0.5", 6, 1100, 0)), Some(rules[0].rule_id), "in both groups: the first rule");
        assert_eq!(decided(flow(Direction::Ingress, "10.0.0.6", 6, 1100, 0)), Some(rules[101].rule_id));
        assert_eq!(decided(flow(Direction::Ingress, "10.1.134.160", 6, 1000, 0)), None, "not a member");
        assert_eq!(decided(flow(Direction::Ingress, "10.0.0.7", 6, 1250, 0)), None, "no rule for the port");
        assert_eq!(decided(flow(Direction::Egress, "10.0.0.7", 6, 1000, 0)), None, "other direction");
        assert_eq!(decided(flow(Direction::Ingress, "::1", 17, 53, 0)), Some(rules[251].rule_id), "IPv6 members");
        assert_eq!(decided(flow(Direction::Ingress, "::2", 17, 53, 0)), None);
        assert_eq!(index.matching(&flow(Direction::Ingress, "10.0.0.5", 6, 1100, 0), &members).len(), 2);
    }

    #[test]
    fn intervals_pick_the_first_covering_rule() {
        let intervals = Intervals::build(vec![(10, 20, 5), (15, 30, 2), (0, 0xFFFF, 9), (18, 18, 1)]);
        let expect = [(0, 9), (10, 5), (14, 5), (15, 2), (18, 1), (19, 2), (30, 2), (31, 9), (65535, 9)];
        for (key, rule) in expect {
            assert_eq!(intervals.lookup(key), rule, "key {key}");
        }
    }
}
