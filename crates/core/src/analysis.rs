//! Rule analysis: duplicates, rules made redundant by a broader rule (shadowed), overly broad
//! rules, and remote groups with no members. Pure functions over compiled rules.

use std::collections::BTreeMap;

use serde::Serialize;
use uuid::Uuid;

use crate::policy::{L4, Match, Members, Remote};
use crate::rule::Direction;

/// Ports that should not be open to the whole internet.
pub const SENSITIVE_PORTS: &[(u16, &str)] = &[
    (21, "FTP"),
    (22, "SSH"),
    (23, "Telnet"),
    (445, "SMB"),
    (1433, "Microsoft SQL Server"),
    (1521, "Oracle"),
    (2375, "Docker API"),
    (3306, "MySQL"),
    (3389, "RDP"),
    (5432, "PostgreSQL"),
    (5900, "VNC"),
    (6379, "Redis"),
    (9200, "Elasticsearch"),
    (11211, "memcached"),
    (27017, "MongoDB"),
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// `rule_id` matches exactly what `same_as` matches.
    Duplicate { rule_id: Uuid, same_as: Uuid },
    /// Everything `rule_id` allows is already allowed by `covered_by`: removing it changes nothing.
    Shadowed { rule_id: Uuid, covered_by: Uuid },
    /// Ingress from anywhere to something that should not be reachable from anywhere.
    OverlyBroad { rule_id: Uuid, reason: String },
    /// The rule names a remote group that has no member addresses: it matches nothing today.
    EmptyRemoteGroup { rule_id: Uuid, remote_group_id: Uuid },
    /// The rule can never allow a new connection, whatever the traffic.
    Unmatchable { rule_id: Uuid, reason: String },
}

/// Rules the kernel can never match. With IPv6 the kernel's protocol is the one after the
/// extension headers, so rules on the extension headers themselves (and on AH, which it skips
/// too) see no packet; "no next header" cannot start a connection (conntrack marks it invalid).
/// Found by the differential test against the kernel.
fn unmatchable_reason(rule: &Match) -> Option<&'static str> {
    if rule.family != crate::rule::Ethertype::IPv6 {
        return None;
    }
    match rule.protocol? {
        43 | 44 | 51 | 60 => Some(
            "with IPv6 the kernel matches the protocol after the extension headers, so a rule on an extension header (or AH) never matches",
        ),
        59 => Some("IPv6 \"no next header\" packets cannot start a connection: connection tracking drops them as invalid"),
        _ => None,
    }
}

fn l4_covers(outer: L4, inner: L4) -> bool {
    match (outer, inner) {
        (L4::Any, _) => true,
        (L4::Ports(a, b), L4::Ports(c, d)) => a <= c && d <= b,
        (L4::Icmp(t, None), L4::Icmp(u, _)) => t == u,
        (L4::Icmp(t, Some(c)), L4::Icmp(u, Some(d))) => t == u && c == d,
        _ => false,
    }
}

fn remote_covers(outer: Remote, inner: Remote) -> bool {
    match (outer, inner) {
        (Remote::Any, _) => true,
        (Remote::Prefix(p), Remote::Prefix(q)) => p.len() <= q.len() && p.contains(q.addr()),
        (Remote::Group(a), Remote::Group(b)) => a == b,
        _ => false,
    }
}

/// Whether every packet `inner` matches is also matched by `outer` (for any membership).
pub fn covers(outer: &Match, inner: &Match) -> bool {
    outer.direction == inner.direction
        && outer.family == inner.family
        && match (outer.protocol, inner.protocol) {
            (None, _) => true,
            (Some(p), Some(q)) => p == q && l4_covers(outer.l4, inner.l4),
            (Some(_), None) => false,
        }
        && remote_covers(outer.remote, inner.remote)
}

fn same_match(a: &Match, b: &Match) -> bool {
    (a.direction, a.family, a.protocol, a.l4, a.remote) == (b.direction, b.family, b.protocol, b.l4, b.remote)
}

fn broad_reason(rule: &Match) -> Option<String> {
    if rule.direction != Direction::Ingress || rule.remote != Remote::Any {
        return None;
    }
    let protocol = match rule.protocol {
        None => return Some("allows every protocol and port from anywhere".into()),
        Some(p) => p,
    };
    let (lo, hi) = match rule.l4 {
        L4::Any if matches!(protocol, 6 | 17 | 132) => (1, u16::MAX),
        L4::Ports(lo, hi) => (lo, hi),
        _ => return None,
    };
    let exposed: Vec<String> =
        SENSITIVE_PORTS.iter().filter(|(port, _)| (lo..=hi).contains(port)).map(|(port, name)| format!("{name} ({port})")).collect();
    if hi - lo >= 1000 {
        return Some(format!(
            "opens {} ports from anywhere{}",
            u32::from(hi - lo) + 1,
            if exposed.is_empty() { String::new() } else { format!(", including {}", exposed.join(", ")) }
        ));
    }
    (!exposed.is_empty()).then(|| format!("allows {} from anywhere", exposed.join(", ")))
}

/// Findings for one group's rules (or the merged rules of a port), given remote-group members.
pub fn analyze(rules: &[Match], members: &BTreeMap<Uuid, Members>) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (j, rule) in rules.iter().enumerate() {
        if let Some(first) = rules[..j].iter().find(|earlier| same_match(earlier, rule)) {
            findings.push(Finding::Duplicate { rule_id: rule.rule_id, same_as: first.rule_id });
            continue;
        }
        if let Some(cover) = rules.iter().enumerate().find(|(i, other)| *i != j && !same_match(other, rule) && covers(other, rule)) {
            findings.push(Finding::Shadowed { rule_id: rule.rule_id, covered_by: cover.1.rule_id });
        }
        if let Some(reason) = unmatchable_reason(rule) {
            findings.push(Finding::Unmatchable { rule_id: rule.rule_id, reason: reason.to_string() });
        }
        if let Some(reason) = broad_reason(rule) {
            findings.push(Finding::OverlyBroad { rule_id: rule.rule_id, reason });
        }
        if let Remote::Group(id) = rule.remote {
            let empty = members.get(&id).is_none_or(|m| match rule.family {
                crate::rule::Ethertype::IPv4 => m.ipv4.is_empty(),
                crate::rule::Ethertype::IPv6 => m.ipv6.is_empty(),
            });
            if empty {
                findings.push(Finding::EmptyRemoteGroup { rule_id: rule.rule_id, remote_group_id: id });
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::Ethertype;

    fn m(protocol: Option<u8>, l4: L4, remote: Remote) -> Match {
        Match {
            rule_id: Uuid::new_v4(),
            group_id: Uuid::nil(),
            direction: Direction::Ingress,
            family: Ethertype::IPv4,
            protocol,
            l4,
            remote,
        }
    }

    fn prefix(text: &str) -> Remote {
        Remote::Prefix(text.parse::<crate::Cidr>().unwrap().network())
    }

    #[test]
    fn finds_duplicates_shadows_broad_rules_and_empty_groups() {
        let group = Uuid::new_v4();
        let rules = vec![
            m(Some(6), L4::Ports(80, 443), prefix("10.0.0.0/8")),
            m(Some(6), L4::Ports(443, 443), prefix("10.1.0.0/16")),
            m(Some(6), L4::Ports(80, 443), prefix("10.0.0.0/8")),
            m(Some(6), L4::Ports(22, 22), Remote::Any),
            m(None, L4::Any, Remote::Group(group)),
            m(Some(17), L4::Ports(53, 53), prefix("192.168.0.0/24")),
        ];
        let findings = analyze(&rules, &BTreeMap::new());
        assert_eq!(
            findings,
            vec![
                Finding::Shadowed { rule_id: rules[1].rule_id, covered_by: rules[0].rule_id },
                Finding::Duplicate { rule_id: rules[2].rule_id, same_as: rules[0].rule_id },
                Finding::OverlyBroad { rule_id: rules[3].rule_id, reason: "allows SSH (22) from anywhere".into() },
                Finding::EmptyRemoteGroup { rule_id: rules[4].rule_id, remote_group_id: group },
            ]
        );
    }

    #[test]
    fn a_clean_group_has_no_findings() {
        let rules = vec![
            m(Some(6), L4::Ports(443, 443), Remote::Any),
            m(Some(6), L4::Ports(22, 22), prefix("10.0.0.0/8")),
            m(Some(1), L4::Icmp(8, None), Remote::Any),
        ];
        assert_eq!(analyze(&rules, &BTreeMap::new()), vec![]);
    }

    #[test]
    fn ipv6_extension_header_rules_never_match() {
        let mut rule = m(Some(44), L4::Any, Remote::Any);
        rule.family = Ethertype::IPv6;
        assert!(matches!(&analyze(&[rule.clone()], &BTreeMap::new())[0], Finding::Unmatchable { .. }));
        rule.family = Ethertype::IPv4;
        rule.protocol = Some(51);
        assert_eq!(analyze(&[rule], &BTreeMap::new()), vec![], "AH with IPv4 is an ordinary protocol");
    }

    #[test]
    fn everything_from_anywhere_is_broad() {
        let all = m(None, L4::Any, Remote::Any);
        assert!(matches!(&analyze(&[all], &BTreeMap::new())[0], Finding::OverlyBroad { .. }));
        let ports = m(Some(6), L4::Ports(1, 10000), Remote::Any);
        let Finding::OverlyBroad { reason, .. } = &analyze(&[ports], &BTreeMap::new())[0] else { panic!() };
        assert!(reason.contains("10000 ports") && reason.contains("SSH (22)"), "{reason}");
    }
}
