//! Structured inputs from the fuzzer's bytes (`arbitrary::Unstructured`): rules, tags and host
//! policies drawn mostly from small pools, so that identities, ids and devices collide often
//! (where the interesting cases are), and sometimes from raw bytes, so that nothing is ruled out.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::{Result, Unstructured};
use palisade_core::cidr::Cidr;
use palisade_core::policy::{GroupPolicy, HostPolicy, PortPolicy, RemoteGroup, RulePolicy};
use palisade_core::protocol::Protocol;
use palisade_core::rule::{Direction, Ethertype, RuleDraft};
use uuid::Uuid;

pub fn small<T: Copy>(u: &mut Unstructured, pool: &[T]) -> Result<T> {
    u.choose(pool).copied()
}

/// Up to `max` items made by `item` ([`count`] of them, drawn first).
pub fn several<T>(u: &mut Unstructured, max: usize, mut item: impl FnMut(&mut Unstructured) -> Result<T>) -> Result<Vec<T>> {
    (0..count(u, max)?).map(|_| item(u)).collect()
}

/// 0..=max items.
pub fn count(u: &mut Unstructured, max: usize) -> Result<usize> {
    u.int_in_range(0..=max)
}

pub fn ip(u: &mut Unstructured) -> Result<IpAddr> {
    Ok(match u.int_in_range(0..=5)? {
        0 => IpAddr::V4(Ipv4Addr::new(10, 0, 0, u.int_in_range(1..=9)?)),
        1 => IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, u.int_in_range(1..=9)?)),
        2 | 3 => IpAddr::V4(Ipv4Addr::from(u.arbitrary::<[u8; 4]>()?)),
        _ => IpAddr::V6(Ipv6Addr::from(u.arbitrary::<[u8; 16]>()?)),
    })
}

pub fn prefix(u: &mut Unstructured) -> Result<Cidr> {
    let addr = ip(u)?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match u.int_in_range(0..=3)? {
        0 => 0,
        1 => max,
        _ => u.int_in_range(0..=max)?,
    };
    Ok(Cidr::new(addr, len).expect("len within the family's range"))
}

/// A rule draft, valid or not (normalisation decides).
pub fn draft(u: &mut Unstructured) -> Result<RuleDraft> {
    let protocols = [None, Some(Protocol::TCP), Some(Protocol::UDP), Some(Protocol::ICMP), Some(Protocol::IPV6_ICMP)];
    let protocol = if u.ratio(1, 5)? { Protocol::all().nth(u.int_in_range(0..=22)?) } else { small(u, &protocols)? };
    let port = |u: &mut Unstructured| -> Result<Option<u16>> {
        Ok(match u.int_in_range(0..=5)? {
            0 | 1 => None,
            2 => Some(small(u, &[0, 1, 22, 80, 255, 256, 65535])?),
            _ => Some(u.arbitrary()?),
        })
    };
    let remote = u.int_in_range(0..=4)?;
    Ok(RuleDraft {
        direction: if u.arbitrary()? { Direction::Ingress } else { Direction::Egress },
        ethertype: small(u, &[None, Some(Ethertype::IPv4), Some(Ethertype::IPv6)])?,
        protocol,
        port_range_min: port(u)?,
        port_range_max: port(u)?,
        remote_ip_prefix: if remote == 1 || remote == 3 { Some(prefix(u)?) } else { None },
        remote_group_id: if remote >= 2 { Some(Uuid::from_u128(u.int_in_range(1..=3)?)) } else { None },
        description: small(u, &[None, Some(""), Some("a"), Some("b")])?.map(str::to_string),
    })
}

/// A short string: usually from `pool`, sometimes raw.
pub fn text(u: &mut Unstructured, pool: &[&str]) -> Result<String> {
    if u.ratio(1, 6)? {
        let raw: &str = u.arbitrary()?;
        Ok(raw.chars().take(24).collect())
    } else {
        Ok(small(u, pool)?.to_string())
    }
}

fn group_id(k: u128) -> Uuid {
    Uuid::from_u128(0x6000 + k)
}

fn rule_policy(u: &mut Unstructured) -> Result<RulePolicy> {
    let protocol = match u.int_in_range(0..=4)? {
        0 => None,
        1 => Some(small(u, &[6, 17, 1, 58, 132, 33, 136])?),
        2 => Some(small(u, &[47, 50, 41, 112, 0, 255])?),
        _ => Some(u.arbitrary()?),
    };
    let port = |u: &mut Unstructured| -> Result<Option<u16>> {
        Ok(match u.int_in_range(0..=3)? {
            0 | 1 => None,
            2 => Some(small(u, &[0, 1, 8, 22, 255, 256, 65535])?),
            _ => Some(u.arbitrary()?),
        })
    };
    let remote_ip_prefix = match u.int_in_range(0..=5)? {
        0 | 1 => None,
        2 => Some(text(u, &["0.0.0.0/0", "::/0", "10.0.0.0/8", "10.1.2.3/16", "fd00::/8", "10.0.0.1"])?),
        _ => {
            let p = prefix(u)?;
            Some(p.to_string())
        }
    };
    Ok(RulePolicy {
        id: Uuid::from_u128(u.int_in_range(1..=200)?),
        direction: text(u, &["ingress", "egress"])?,
        ethertype: text(u, &["IPv4", "IPv6", "ipv4", "IPV6"])?,
        protocol,
        port_range_min: port(u)?,
        port_range_max: port(u)?,
        remote_ip_prefix,
        remote_group_id: if u.ratio(1, 4)? { Some(group_id(u.int_in_range(0..=5)?)) } else { None },
    })
}

fn port_policy(u: &mut Unstructured, groups: &[Uuid]) -> Result<PortPolicy> {
    let security_group_ids =
        several(u, 3, |u| if !groups.is_empty() && !u.ratio(1, 10)? { small(u, groups) } else { Ok(group_id(u.int_in_range(0..=5)?)) })?;
    let mac = if u.ratio(1, 8)? {
        text(u, &["02:00:00:00:00:01"])?
    } else {
        let b: [u8; 6] = u.arbitrary()?;
        format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    };
    let fixed_ips = several(u, 4, ip)?;
    Ok(PortPolicy {
        id: Uuid::from_u128(0x9000 + u.int_in_range(0..=5)?),
        instance_id: Uuid::from_u128(u.arbitrary()?),
        device: text(u, &["tap0", "tap1", "tapee2402d0-f0", "eth-1.2_x", "-", "a"])?,
        mac_address: mac,
        fixed_ips,
        security_group_ids,
        flow_log: None,
    })
}

/// A host policy as an API could ship it (or could not: the compiler decides).
pub fn policy(u: &mut Unstructured) -> Result<HostPolicy> {
    let security_groups = several(u, 4, |u| {
        let rules = several(u, 6, rule_policy)?;
        Ok(GroupPolicy { id: group_id(u.int_in_range(0..=5)?), rules })
    })?;
    let ids: Vec<Uuid> = security_groups.iter().map(|g| g.id).collect();
    let ports = several(u, 4, |u| port_policy(u, &ids))?;
    let remote_groups = several(u, 3, |u| {
        let members = several(u, 5, ip)?;
        Ok(RemoteGroup { id: group_id(u.int_in_range(0..=5)?), members })
    })?;
    Ok(HostPolicy { host: "h1".into(), revision: u.arbitrary()?, ports, security_groups, remote_groups })
}

/// The next policy of a host: a few edits of `old` (rules added, dropped or changed, ports and
/// bindings changed, members changed), as the API's revisions produce them.
pub fn edit(u: &mut Unstructured, old: &HostPolicy) -> Result<HostPolicy> {
    let mut new = old.clone();
    new.revision = new.revision.wrapping_add(1);
    for _ in 0..u.int_in_range(0..=4)? {
        match u.int_in_range(0..=7)? {
            0 | 1 if !new.security_groups.is_empty() => {
                let g = u.choose_index(new.security_groups.len())?;
                let rule = rule_policy(u)?;
                new.security_groups[g].rules.push(rule);
            }
            2 if !new.security_groups.is_empty() => {
                let g = u.choose_index(new.security_groups.len())?;
                let rules = &mut new.security_groups[g].rules;
                if !rules.is_empty() {
                    let r = u.choose_index(rules.len())?;
                    rules.remove(r);
                }
            }
            3 if !new.ports.is_empty() => {
                let p = u.choose_index(new.ports.len())?;
                new.ports.remove(p);
            }
            4 => {
                let ids: Vec<Uuid> = new.security_groups.iter().map(|g| g.id).collect();
                let port = port_policy(u, &ids)?;
                new.ports.push(port);
            }
            5 if !new.remote_groups.is_empty() => {
                let g = u.choose_index(new.remote_groups.len())?;
                let members = &mut new.remote_groups[g].members;
                if u.arbitrary()? || members.is_empty() {
                    members.push(ip(u)?);
                } else {
                    let m = u.choose_index(members.len())?;
                    members.remove(m);
                }
            }
            6 if !new.ports.is_empty() => {
                let p = u.choose_index(new.ports.len())?;
                new.ports[p].security_group_ids.reverse();
                new.ports[p].fixed_ips.push(ip(u)?);
            }
            _ => {
                let rules = several(u, 3, rule_policy)?;
                new.security_groups.push(GroupPolicy { id: group_id(u.int_in_range(0..=5)?), rules });
            }
        }
    }
    Ok(new)
}

/// A Linux interface name as netlink may report one: 1–15 bytes, not `.` or `..`, no `/`, `:`
/// or white space (the kernel's `dev_valid_name`) — braces, `;`, `\\` and `*` included.
///
/// Except `"`, which the kernel allows too: nft has no way to quote it, and an uplink or
/// unregistered device named with one makes the whole ruleset fail to load (the open finding
/// `fuzz/known/render/quote-in-device-name`, docs/fuzzing.md). Drop `'"'` from the filter below
/// once the data plane refuses or skips such names.
pub fn linux_name(u: &mut Unstructured, pool: &[&str]) -> Result<String> {
    let name = text(u, pool)?;
    let mut name: String = name.chars().filter(|c| !matches!(c, '/' | ':' | '"') && !c.is_whitespace() && *c != '\0').collect();
    while name.len() > 15 {
        name.pop();
    }
    if name.is_empty() || name == "." || name == ".." {
        name = small(u, pool)?.to_string();
    }
    Ok(name)
}

/// How the host's devices are attached, as `dataplane::host::plan` builds it for `host`: each
/// enforceable port routed, bridged (with a unique mark id in 1..=65535 and a bridge that has a
/// zone) or refused; uplinks of the bridges and unregistered devices with the prefix named as the
/// kernel allows names.
pub fn layout(u: &mut Unstructured, host: &palisade_core::policy::CompiledHost) -> Result<crate::nft::Layout> {
    use crate::nft::{BridgeLayout, Layout, Placement};
    let prefix = small(u, &["tap", "tap", "", "t"])?.to_string();
    let mut layout = Layout { prefix: prefix.clone(), ..Layout::default() };
    let bridge_names = several(u, 2, |u| linux_name(u, &["br0", "br-int", "br.1"]))?;
    let mut next_id: u16 = u.int_in_range(1..=3)?;
    for port in &host.ports {
        match u.int_in_range(0..=5)? {
            0 | 1 => {}
            2 => {
                let reason = small(u, &["enslaved to ovs-system", "bridge br0 does not pass its packets to the IP hooks"])?;
                layout.refused.insert(port.device.clone(), reason.into());
            }
            _ if !bridge_names.is_empty() => {
                let bridge = small(u, &bridge_names.iter().map(String::as_str).collect::<Vec<_>>())?.to_string();
                layout.placements.insert(port.device.clone(), Placement::Bridged { bridge: bridge.clone(), id: next_id });
                next_id = next_id.checked_add(u.int_in_range(1..=2)?).unwrap_or(1);
                let zone = if u.ratio(1, 3)? { u.int_in_range(1..=u16::MAX)? } else { small(u, &[1, 2, 5, 65535])? };
                layout.bridges.entry(bridge).or_insert(BridgeLayout { zone, uplinks: Default::default() });
            }
            _ => {}
        }
    }
    let ports: Vec<&str> = host.ports.iter().map(|p| p.device.as_str()).chain(host.refused.iter().map(|r| r.device.as_str())).collect();
    for bridge in layout.bridges.values_mut() {
        for _ in 0..count(u, 2)? {
            let name = linux_name(u, &["vx0", "eth1", "bond0.12"])?;
            if !ports.contains(&name.as_str()) {
                bridge.uplinks.insert(name);
            }
        }
    }
    if !prefix.is_empty() {
        for _ in 0..count(u, 2)? {
            let suffix = linux_name(u, &["9", "-gone", "x"])?;
            let mut name = format!("{prefix}{suffix}");
            while name.len() > 15 {
                name.pop();
            }
            if !ports.contains(&name.as_str()) {
                layout.unregistered.insert(name);
            }
        }
    }
    Ok(layout)
}
