//! The policy IR: what one host must enforce, as the API ships it to the host's agent, and its
//! compiled form that the nftables renderer (crate `dataplane`) and a verdict engine share.
//!
//! Rules and membership travel separately (SEMANTICS.md §2.4): a group's rules name a remote group
//! by id, and the members of every remote group are listed once, never multiplied by the rules or
//! the ports that use them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::cidr::Cidr;
use crate::group::Group;
use crate::port::{MacAddr, Port};
use crate::rule::{Direction, Ethertype, Rule};

/// The policy of one host at one revision (the body of `GET /palisade/v1/agents/{host}/policy`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostPolicy {
    pub host: String,
    /// The global policy revision this policy was read at.
    pub revision: i64,
    pub ports: Vec<PortPolicy>,
    /// Every group bound to a port of the host, with its rules.
    pub security_groups: Vec<GroupPolicy>,
    /// The members of every group that a rule of `security_groups` names as its remote group.
    pub remote_groups: Vec<RemoteGroup>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortPolicy {
    pub id: Uuid,
    pub instance_id: Uuid,
    pub device: String,
    pub mac_address: String,
    pub fixed_ips: Vec<IpAddr>,
    pub security_group_ids: Vec<Uuid>,
    /// The port's flow-log setting (`None`: it logs nothing). Absent from the JSON of an API
    /// that predates flow logs, and left out when `None`, so both sides stay compatible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_log: Option<crate::observe::FlowLogSetting>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct GroupPolicy {
    pub id: Uuid,
    pub rules: Vec<RulePolicy>,
}

/// A rule in canonical form, the protocol by number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RulePolicy {
    pub id: Uuid,
    pub direction: String,
    pub ethertype: String,
    pub protocol: Option<u8>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    pub remote_ip_prefix: Option<String>,
    pub remote_group_id: Option<Uuid>,
}

impl From<&Rule> for RulePolicy {
    /// A stored rule as the API ships it to an agent.
    fn from(rule: &Rule) -> RulePolicy {
        let spec = &rule.spec;
        RulePolicy {
            id: rule.id,
            direction: spec.direction.as_str().to_string(),
            ethertype: spec.ethertype.as_str().to_string(),
            protocol: spec.protocol.map(|p| p.number()),
            port_range_min: spec.port_range_min,
            port_range_max: spec.port_range_max,
            remote_ip_prefix: spec.remote_ip_prefix.map(|c| c.to_string()),
            remote_group_id: spec.remote_group_id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RemoteGroup {
    pub id: Uuid,
    /// Fixed addresses of every port bound to the group, sorted.
    pub members: Vec<IpAddr>,
}

impl HostPolicy {
    /// An entity tag of what the policy makes a kernel enforce, the revision aside: two policies
    /// with the same tag render the same ruleset, so an agent holding one needs nothing of the
    /// other but its revision. Quoted, as an HTTP `ETag`.
    pub fn content_tag(&self) -> String {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&self.host, &self.ports, &self.security_groups, &self.remote_groups).hash(&mut hasher);
        format!("\"{:016x}\"", hasher.finish())
    }

    /// Assembles a host's policy from its ports, the groups bound to them, and the ports bound to
    /// the remote groups those groups' rules name (`members`, on any host).
    pub fn build(host: &str, revision: i64, ports: &[Port], groups: &[Group], members: &[Port]) -> HostPolicy {
        let ports_out = ports
            .iter()
            .map(|p| PortPolicy {
                id: p.id,
                instance_id: p.instance_id,
                device: p.device.clone(),
                mac_address: p.mac.to_string(),
                fixed_ips: p.fixed_ips.clone(),
                security_group_ids: p.security_group_ids.clone(),
                flow_log: None,
            })
            .collect();
        let groups_out: Vec<GroupPolicy> =
            groups.iter().map(|g| GroupPolicy { id: g.id, rules: g.rules.iter().map(RulePolicy::from).collect() }).collect();
        let remote_ids: BTreeSet<Uuid> = groups_out.iter().flat_map(|g| g.rules.iter().filter_map(|r| r.remote_group_id)).collect();
        let remote_groups = remote_members(remote_ids, members)
            .into_iter()
            .map(|(id, members)| RemoteGroup { id, members: members.addresses().collect() })
            .collect();
        HostPolicy { host: host.to_string(), revision, ports: ports_out, security_groups: groups_out, remote_groups }
    }
}

/// What a rule matches at layer 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum L4 {
    Any,
    /// Destination ports, inclusive (TCP, UDP, UDP-Lite, SCTP, DCCP).
    Ports(u16, u16),
    /// ICMP or ICMPv6 type, and code if given.
    Icmp(u8, Option<u8>),
}

/// Who is on the other side of a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Remote {
    Any,
    Prefix(Cidr),
    Group(Uuid),
}

/// One rule, ready to match packets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Match {
    pub rule_id: Uuid,
    pub group_id: Uuid,
    pub direction: Direction,
    pub family: Ethertype,
    pub protocol: Option<u8>,
    pub l4: L4,
    pub remote: Remote,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledGroup {
    pub id: Uuid,
    pub ingress: Vec<Match>,
    pub egress: Vec<Match>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledPort {
    pub id: Uuid,
    pub device: String,
    pub mac: MacAddr,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    pub groups: Vec<Uuid>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Members {
    pub ipv4: BTreeSet<Ipv4Addr>,
    pub ipv6: BTreeSet<Ipv6Addr>,
}

impl Members {
    /// Every address, IPv4 first, each family sorted (the order of a `BTreeSet<IpAddr>`).
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.ipv4.iter().copied().map(IpAddr::V4).chain(self.ipv6.iter().copied().map(IpAddr::V6))
    }
}

impl FromIterator<IpAddr> for Members {
    /// The addresses split by family, each set built at once (sorting a vector and building the
    /// tree in bulk is several times cheaper than as many inserts: groups of 100,000 members).
    fn from_iter<I: IntoIterator<Item = IpAddr>>(addresses: I) -> Members {
        let (mut ipv4, mut ipv6) = (Vec::new(), Vec::new());
        for address in addresses {
            match address {
                IpAddr::V4(a) => ipv4.push(a),
                IpAddr::V6(a) => ipv6.push(a),
            }
        }
        Members { ipv4: ipv4.into_iter().collect(), ipv6: ipv6.into_iter().collect() }
    }
}

/// The members of each remote group of `remote_ids`: the fixed addresses of every port of
/// `ports` bound to it (none for a group no port is bound to). The one expansion of remote
/// groups, for the policy an agent enforces ([`HostPolicy::build`]) and for the verdict engine.
pub fn remote_members(remote_ids: impl IntoIterator<Item = Uuid>, ports: &[Port]) -> BTreeMap<Uuid, Members> {
    let mut gathered: HashMap<Uuid, Vec<IpAddr>> = remote_ids.into_iter().map(|id| (id, Vec::new())).collect();
    // One pass over the member ports, however many remote groups the rules name.
    if !gathered.is_empty() {
        for port in ports {
            for group in &port.security_group_ids {
                if let Some(addresses) = gathered.get_mut(group) {
                    addresses.extend_from_slice(&port.fixed_ips);
                }
            }
        }
    }
    gathered.into_iter().map(|(id, addresses)| (id, addresses.into_iter().collect())).collect()
}

/// A device that several ports of the policy claim (legacy data, or a race between two
/// registrations): none of them is enforced, and the device is dropped both ways.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedDevice {
    pub device: String,
    /// Every port that names the device, in the policy's order.
    pub ports: Vec<Uuid>,
}

/// A host's policy, checked and typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompiledHost {
    pub revision: i64,
    /// The enforceable ports: each device is named by exactly one port.
    pub ports: Vec<CompiledPort>,
    /// Devices claimed by more than one port: no claim wins, the device is dropped.
    pub refused: Vec<RefusedDevice>,
    pub groups: BTreeMap<Uuid, CompiledGroup>,
    /// Every remote group a rule names, with its members (empty when it has none).
    pub remote_groups: BTreeMap<Uuid, Members>,
}

/// A packet as a verdict engine sees it, from the port's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flow {
    pub direction: Direction,
    /// The other end: the source of an ingress packet, the destination of an egress one.
    pub remote: IpAddr,
    pub protocol: u8,
    /// Destination port (TCP/UDP-like) or ICMP type.
    pub dport_or_type: u16,
    /// ICMP code.
    pub code: u8,
}

impl Match {
    /// The remote group the rule names, if any.
    pub fn remote_group(&self) -> Option<Uuid> {
        if let Remote::Group(id) = self.remote { Some(id) } else { None }
    }

    pub fn matches(&self, flow: &Flow, members: &BTreeMap<Uuid, Members>) -> bool {
        if flow.direction != self.direction {
            return false;
        }
        let family = if flow.remote.is_ipv4() { Ethertype::IPv4 } else { Ethertype::IPv6 };
        if family != self.family || self.protocol.is_some_and(|p| p != flow.protocol) {
            return false;
        }
        let l4 = match self.l4 {
            L4::Any => true,
            L4::Ports(min, max) => (min..=max).contains(&flow.dport_or_type),
            L4::Icmp(kind, code) => u16::from(kind) == flow.dport_or_type && code.is_none_or(|c| c == flow.code),
        };
        l4 && match self.remote {
            Remote::Any => true,
            Remote::Prefix(cidr) => cidr.contains(flow.remote),
            Remote::Group(id) => members.get(&id).is_some_and(|m| match flow.remote {
                IpAddr::V4(a) => m.ipv4.contains(&a),
                IpAddr::V6(a) => m.ipv6.contains(&a),
            }),
        }
    }
}

impl CompiledHost {
    /// The first rule of the port's groups that allows `flow`, if any (connection tracking aside:
    /// this is the verdict for a new connection).
    pub fn verdict(&self, port: Uuid, flow: &Flow) -> Option<&Match> {
        let port = self.ports.iter().find(|p| p.id == port)?;
        port.groups.iter().filter_map(|g| self.groups.get(g)).find_map(|g| {
            let rules = if flow.direction == Direction::Ingress { &g.ingress } else { &g.egress };
            rules.iter().find(|m| m.matches(flow, &self.remote_groups))
        })
    }
}

/// Checks and types a host policy. A rule that cannot be understood is an error: an agent must
/// not enforce a policy it reads differently from the API. A device named by several ports is
/// not an error but a refusal: none of those ports is enforced (never "the last one wins") and
/// the device is listed in [`CompiledHost::refused`], so the renderer drops its traffic.
pub fn compile(policy: &HostPolicy) -> Result<CompiledHost, String> {
    let mut groups = BTreeMap::new();
    let mut remote_groups: BTreeMap<Uuid, Members> = BTreeMap::new();
    for group in &policy.security_groups {
        let mut compiled = CompiledGroup { id: group.id, ingress: Vec::new(), egress: Vec::new() };
        for rule in &group.rules {
            let m = compile_rule(group.id, rule)?;
            if let Some(id) = m.remote_group() {
                remote_groups.entry(id).or_default();
            }
            match m.direction {
                Direction::Ingress => compiled.ingress.push(m),
                Direction::Egress => compiled.egress.push(m),
            }
        }
        groups.insert(group.id, compiled);
    }
    for remote in &policy.remote_groups {
        let mut shipped: Members = remote.members.iter().copied().collect();
        let members = remote_groups.entry(remote.id).or_default();
        members.ipv4.append(&mut shipped.ipv4);
        members.ipv6.append(&mut shipped.ipv6);
    }
    let mut claims: BTreeMap<&str, Vec<Uuid>> = BTreeMap::new();
    for port in &policy.ports {
        if !crate::port::valid_device(&port.device) {
            return Err(format!("port {}: device {:?} is not a valid interface name", port.id, port.device));
        }
        claims.entry(port.device.as_str()).or_default().push(port.id);
    }
    let refused: Vec<RefusedDevice> = claims
        .iter()
        .filter(|(_, ports)| ports.len() > 1)
        .map(|(device, ports)| RefusedDevice { device: device.to_string(), ports: ports.clone() })
        .collect();
    let mut ports = Vec::new();
    for port in &policy.ports {
        if claims[port.device.as_str()].len() > 1 {
            continue;
        }
        let mac = port.mac_address.parse().map_err(|_| format!("port {}: bad MAC address {:?}", port.id, port.mac_address))?;
        for g in &port.security_group_ids {
            if !groups.contains_key(g) {
                return Err(format!("port {}: group {g} is bound but not shipped", port.id));
            }
        }
        ports.push(CompiledPort {
            id: port.id,
            device: port.device.clone(),
            mac,
            ipv4: port.fixed_ips.iter().filter_map(|ip| if let IpAddr::V4(a) = ip { Some(*a) } else { None }).collect(),
            ipv6: port.fixed_ips.iter().filter_map(|ip| if let IpAddr::V6(a) = ip { Some(*a) } else { None }).collect(),
            groups: port.security_group_ids.clone(),
        });
    }
    Ok(CompiledHost { revision: policy.revision, ports, refused, groups, remote_groups })
}

/// The rules of `groups` in order, compiled as an agent compiles them: each stored rule in the
/// form the agent receives it ([`RulePolicy`], as [`HostPolicy::build`] ships it) through
/// [`compile_rule`], the function [`compile`] is built on. The verdict engine is built from these,
/// so that it decides on the very rules the kernel enforces. An error names a stored rule that an
/// agent would refuse (normalisation never stores one).
pub fn compile_groups(groups: &[Group]) -> Result<Vec<Match>, String> {
    groups.iter().flat_map(|g| g.rules.iter().map(move |rule| compile_rule(g.id, &RulePolicy::from(rule)))).collect()
}

/// One rule, checked and typed. A rule that cannot be understood is an error: an agent must not
/// enforce a rule it reads differently from the API.
pub fn compile_rule(group_id: Uuid, rule: &RulePolicy) -> Result<Match, String> {
    let bad = |what: &str| format!("rule {}: {what}", rule.id);
    let direction = Direction::parse(&rule.direction).ok_or_else(|| bad("unknown direction"))?;
    let family = Ethertype::parse(&rule.ethertype).ok_or_else(|| bad("unknown ethertype"))?;
    // What the API never ships (normalisation refuses it) and nft cannot load, or loads in a form
    // `nft list` aborts on (nft 1.0.6: `meta l4proto 47 th dport 5-9`), is refused here too.
    let l4 = match rule.protocol {
        Some(p @ (1 | 58)) if (p == 1) != (family == Ethertype::IPv4) => return Err(bad("ICMP of the other family")),
        Some(1 | 58) => match rule.port_range_min {
            None if rule.port_range_max.is_some() => return Err(bad("ICMP code without a type")),
            None => L4::Any,
            Some(kind) => L4::Icmp(
                u8::try_from(kind).map_err(|_| bad("ICMP type out of range"))?,
                rule.port_range_max.map(u8::try_from).transpose().map_err(|_| bad("ICMP code out of range"))?,
            ),
        },
        Some(p) => match (rule.port_range_min, rule.port_range_max) {
            (None, None) => L4::Any,
            (Some(_), _) if !crate::protocol::Protocol::from_number(p).is_some_and(|p| p.takes_ports()) => {
                return Err(bad("a port range on a protocol without ports"));
            }
            (Some(min), max) if min == 0 || min > max.unwrap_or(min) => return Err(bad("a port range that is empty or starts at 0")),
            (Some(min), max) => L4::Ports(min, max.unwrap_or(min)),
            (None, Some(_)) => return Err(bad("port_range_max without port_range_min")),
        },
        None if rule.port_range_min.is_some() || rule.port_range_max.is_some() => return Err(bad("ports without a protocol")),
        None => L4::Any,
    };
    let remote = match (&rule.remote_ip_prefix, rule.remote_group_id) {
        (Some(_), Some(_)) => return Err(bad("both a remote prefix and a remote group")),
        (Some(text), None) => {
            let cidr: Cidr = text.parse().map_err(|_| bad("bad remote_ip_prefix"))?;
            if cidr.ethertype() != family {
                return Err(bad("remote_ip_prefix of the other family"));
            }
            if cidr.is_everything() { Remote::Any } else { Remote::Prefix(cidr.network()) }
        }
        (None, Some(id)) => Remote::Group(id),
        (None, None) => Remote::Any,
    };
    Ok(Match { rule_id: rule.id, group_id, direction, family, protocol: rule.protocol, l4, remote })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(
        direction: &str,
        ethertype: &str,
        protocol: Option<u8>,
        ports: (Option<u16>, Option<u16>),
        prefix: Option<&str>,
        group: Option<Uuid>,
    ) -> RulePolicy {
        RulePolicy {
            id: Uuid::new_v4(),
            direction: direction.into(),
            ethertype: ethertype.into(),
            protocol,
            port_range_min: ports.0,
            port_range_max: ports.1,
            remote_ip_prefix: prefix.map(str::to_owned),
            remote_group_id: group,
        }
    }

    fn policy() -> (HostPolicy, Uuid, Uuid) {
        let web = Uuid::new_v4();
        let remote = Uuid::new_v4();
        let port = Uuid::new_v4();
        let p = HostPolicy {
            host: "h1".into(),
            revision: 7,
            ports: vec![PortPolicy {
                id: port,
                instance_id: Uuid::new_v4(),
                device: "tap1".into(),
                mac_address: "02:00:00:00:00:01".into(),
                fixed_ips: vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()],
                security_group_ids: vec![web],
                flow_log: None,
            }],
            security_groups: vec![GroupPolicy {
                id: web,
                rules: vec![
                    rule("ingress", "IPv4", Some(6), (Some(80), Some(80)), Some("10.1.0.0/16"), None),
                    rule("ingress", "IPv4", Some(1), (Some(8), None), None, None),
                    rule("ingress", "IPv6", Some(17), (Some(53), Some(53)), None, Some(remote)),
                    rule("egress", "IPv4", None, (None, None), Some("0.0.0.0/0"), None),
                ],
            }],
            remote_groups: vec![RemoteGroup { id: remote, members: vec!["fd00::9".parse().unwrap(), "10.9.9.9".parse().unwrap()] }],
        };
        (p, port, remote)
    }

    fn flow(direction: Direction, remote: &str, protocol: u8, port: u16, code: u8) -> Flow {
        Flow { direction, remote: remote.parse().unwrap(), protocol, dport_or_type: port, code }
    }

    #[test]
    fn verdicts_follow_rules() {
        let (p, port, _) = policy();
        let host = compile(&p).unwrap();
        let allowed = |f: Flow| host.verdict(port, &f).map(|m| m.rule_id);
        let rules = &p.security_groups[0].rules;
        assert_eq!(allowed(flow(Direction::Ingress, "10.1.2.3", 6, 80, 0)), Some(rules[0].id));
        assert_eq!(allowed(flow(Direction::Ingress, "10.2.0.1", 6, 80, 0)), None, "outside the prefix");
        assert_eq!(allowed(flow(Direction::Ingress, "10.1.2.3", 6, 81, 0)), None, "other port");
        assert_eq!(allowed(flow(Direction::Ingress, "1.2.3.4", 1, 8, 0)), Some(rules[1].id), "echo request, any code");
        assert_eq!(allowed(flow(Direction::Ingress, "1.2.3.4", 1, 0, 0)), None, "echo reply is another type");
        assert_eq!(allowed(flow(Direction::Ingress, "fd00::9", 17, 53, 0)), Some(rules[2].id), "remote group member");
        assert_eq!(allowed(flow(Direction::Ingress, "fd00::8", 17, 53, 0)), None, "not a member");
        assert_eq!(allowed(flow(Direction::Egress, "8.8.8.8", 17, 53, 0)), Some(rules[3].id));
        assert_eq!(allowed(flow(Direction::Egress, "2001:db8::1", 17, 53, 0)), None, "no IPv6 egress rule");
    }

    #[test]
    fn content_tag_ignores_the_revision_only() {
        let (p, _, _) = policy();
        let mut later = p.clone();
        later.revision += 5;
        assert_eq!(p.content_tag(), later.content_tag());
        later.remote_groups[0].members.pop();
        assert_ne!(p.content_tag(), later.content_tag());
    }

    #[test]
    fn membership_is_shipped_once_per_group() {
        let (p, _, remote) = policy();
        let host = compile(&p).unwrap();
        assert_eq!(host.remote_groups.len(), 1);
        assert_eq!(host.remote_groups[&remote].ipv4.len(), 1);
        assert_eq!(host.remote_groups[&remote].ipv6.len(), 1);
        // The everything-prefix is no restriction at all.
        assert_eq!(host.groups.values().next().unwrap().egress[0].remote, Remote::Any);
    }

    #[test]
    fn a_device_claimed_twice_is_refused_for_every_claimant() {
        let (mut p, port, _) = policy();
        let mut twin = p.ports[0].clone();
        twin.id = Uuid::new_v4();
        twin.fixed_ips = vec!["10.0.0.6".parse().unwrap()];
        let mut other = p.ports[0].clone();
        other.id = Uuid::new_v4();
        other.device = "tap2".into();
        p.ports.push(twin.clone());
        p.ports.push(other.clone());
        let host = compile(&p).unwrap();
        assert_eq!(host.ports.iter().map(|p| p.id).collect::<Vec<_>>(), vec![other.id], "neither claimant wins");
        assert_eq!(host.refused, vec![RefusedDevice { device: "tap1".into(), ports: vec![port, twin.id] }]);
        // Order does not matter: the same refusal whoever registered first.
        p.ports.swap(0, 1);
        assert_eq!(compile(&p).unwrap().refused[0].ports, vec![twin.id, port]);
        assert!(compile(&policy().0).unwrap().refused.is_empty());
    }

    #[test]
    fn refuses_what_it_cannot_enforce() {
        let (mut p, _, _) = policy();
        p.ports[0].device = "bad\"name".into();
        assert!(compile(&p).is_err());
        let (mut p, _, _) = policy();
        p.security_groups[0].rules[0].direction = "sideways".into();
        assert!(compile(&p).is_err());
        let (mut p, _, _) = policy();
        p.ports[0].security_group_ids.push(Uuid::new_v4());
        assert!(compile(&p).is_err());
    }

    /// The verdict engine's rules and members are the agent's: `compile_groups` over the stored
    /// rules gives, group by group, the rules `compile` makes of `HostPolicy::build`'s policy,
    /// and `remote_members` the members the agent reads from it.
    #[test]
    fn the_engine_compiles_what_the_agent_enforces() {
        use crate::group::{Group, Scope};
        use crate::protocol::Protocol;
        use crate::rule::RuleDraft;

        let scope = Scope { client_id: 1, project_id: 1, region_id: 1 };
        let (web, db) = (Uuid::from_u128(1), Uuid::from_u128(2));
        let drafts = [
            RuleDraft {
                protocol: Some(Protocol::TCP),
                port_range_min: Some(80),
                port_range_max: Some(90),
                ..RuleDraft::new(Direction::Ingress)
            },
            RuleDraft { protocol: Some(Protocol::ICMP), port_range_min: Some(8), ..RuleDraft::new(Direction::Ingress) },
            RuleDraft {
                ethertype: Some(Ethertype::IPv6),
                protocol: Some(Protocol::ICMP),
                port_range_min: Some(128),
                port_range_max: Some(0),
                ..RuleDraft::new(Direction::Ingress)
            },
            RuleDraft { remote_ip_prefix: Some("10.1.2.3/16".parse().unwrap()), ..RuleDraft::new(Direction::Egress) },
            RuleDraft { remote_ip_prefix: Some("0.0.0.0/0".parse().unwrap()), ..RuleDraft::new(Direction::Egress) },
            RuleDraft { ethertype: Some(Ethertype::IPv6), remote_group_id: Some(db), ..RuleDraft::new(Direction::Ingress) },
            RuleDraft { protocol: Some(Protocol::UDP), remote_group_id: Some(db), ..RuleDraft::new(Direction::Ingress) },
        ];
        let rules = drafts
            .iter()
            .enumerate()
            .map(|(i, d)| Rule { id: Uuid::from_u128(100 + i as u128), group_id: web, spec: d.normalize().unwrap(), created_at: 0 })
            .collect();
        let group = |id, rules| Group {
            id,
            scope,
            name: "g".into(),
            description: String::new(),
            created_at: 0,
            updated_at: 0,
            revision_number: 0,
            rules,
            tags: Vec::new(),
        };
        let groups = [group(web, rules), group(db, Vec::new())];
        let port = |n: u128, ips: &[&str], groups: Vec<Uuid>| Port {
            id: Uuid::from_u128(200 + n),
            scope,
            instance_id: Uuid::from_u128(300 + n),
            instance_name: String::new(),
            host: "h1".into(),
            device: format!("tap{n}"),
            mac: "02:00:00:00:00:01".parse().unwrap(),
            fixed_ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
            security_group_ids: groups,
            created_at: 0,
            updated_at: 0,
        };
        let ports = [
            port(1, &["10.0.0.1"], vec![web]),
            port(2, &["fd00::2", "10.0.0.9", "10.0.0.2"], vec![db]),
            port(3, &["10.0.0.2"], vec![db, web]),
        ];

        let host = compile(&HostPolicy::build("h1", 1, &ports[..1], &groups, &ports)).unwrap();
        let engine = compile_groups(&groups).unwrap();
        let by_direction = |direction| engine.iter().filter(|m| m.direction == direction).cloned().collect::<Vec<_>>();
        assert_eq!(host.groups[&web].ingress, by_direction(Direction::Ingress));
        assert_eq!(host.groups[&web].egress, by_direction(Direction::Egress));
        assert_eq!(engine.len(), drafts.len());
        let members = remote_members(engine.iter().filter_map(Match::remote_group), &ports);
        assert_eq!(members, host.remote_groups);
        assert_eq!(members[&db].addresses().map(|ip| ip.to_string()).collect::<Vec<_>>(), ["10.0.0.2", "10.0.0.9", "fd00::2"]);
    }

    /// Rules the API never ships, found by fuzzing the renderer (fuzz/regressions/render/): `nft`
    /// refuses a reversed port range and an ICMP match of the other family, and `nft list`
    /// aborts on a port range of a protocol without ports. The agent refuses them all.
    #[test]
    fn refuses_rules_nft_cannot_load() {
        let bad = [
            ("IPv6", Some(132), (Some(38807), Some(11235))),
            ("IPv4", Some(6), (Some(0), Some(5))),
            ("IPv4", Some(47), (Some(5), Some(9))),
            ("IPv4", Some(234), (Some(1), Some(54992))),
            ("IPv6", Some(1), (Some(8), None)),
            ("IPv4", Some(58), (Some(128), None)),
            ("IPv4", Some(1), (None, Some(0))),
        ];
        for (ethertype, protocol, ports) in bad {
            let (mut p, _, _) = policy();
            p.security_groups[0].rules.push(rule("ingress", ethertype, protocol, ports, None, None));
            assert!(compile(&p).is_err(), "{ethertype} {protocol:?} {ports:?}");
        }
        let (mut p, _, _) = policy();
        p.security_groups[0].rules.push(rule("ingress", "IPv4", Some(17), (Some(53), None), None, None));
        p.security_groups[0].rules.push(rule("ingress", "IPv6", Some(58), (Some(128), Some(0)), None, None));
        p.security_groups[0].rules.push(rule("ingress", "IPv4", Some(47), (None, None), None, None));
        assert!(compile(&p).is_ok());
    }
}
