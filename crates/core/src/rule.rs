//! Security-group rules: the draft a client sent (schema-valid), the normalised spec we store,
//! and the identity Neutron uses to call two rules duplicates.

use std::fmt;

use uuid::Uuid;

use crate::cidr::Cidr;
use crate::error::RuleError;
use crate::protocol::Protocol;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Direction {
    Egress,
    Ingress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Egress => "egress",
            Direction::Ingress => "ingress",
        }
    }

    pub fn parse(text: &str) -> Option<Direction> {
        [Direction::Egress, Direction::Ingress].into_iter().find(|d| d.as_str() == text)
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Ethertype {
    #[default]
    IPv4,
    IPv6,
}

impl Ethertype {
    pub fn as_str(self) -> &'static str {
        match self {
            Ethertype::IPv4 => "IPv4",
            Ethertype::IPv6 => "IPv6",
        }
    }

    /// As Gcore's schema spells it: `IPv4` or `IPv6`, nothing else.
    pub fn parse_exact(text: &str) -> Option<Ethertype> {
        [Ethertype::IPv4, Ethertype::IPv6].into_iter().find(|e| e.as_str() == text)
    }

    /// Case-insensitive, as Neutron matches it (`ipv4` is `IPv4`).
    pub fn parse(text: &str) -> Option<Ethertype> {
        [Ethertype::IPv4, Ethertype::IPv6].into_iter().find(|e| e.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for Ethertype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule as the client sent it, after the schema checks (types, enums, ranges, formats) and
/// before the semantic ones. Port values keep the client's numbers so the semantic checks can
/// name them in their messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleDraft {
    pub direction: Direction,
    pub ethertype: Option<Ethertype>,
    /// `None` is "all protocols" (null, absent or `any`).
    pub protocol: Option<Protocol>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    pub remote_ip_prefix: Option<Cidr>,
    pub remote_group_id: Option<Uuid>,
    pub description: Option<String>,
}

impl RuleDraft {
    pub fn new(direction: Direction) -> RuleDraft {
        RuleDraft {
            direction,
            ethertype: None,
            protocol: None,
            port_range_min: None,
            port_range_max: None,
            remote_ip_prefix: None,
            remote_group_id: None,
            description: None,
        }
    }

    /// Neutron's checks (SEMANTICS.md §1.4–§1.6) and its canonical form (docs/semantics.md):
    /// IPv6 + `icmp` is `ipv6-icmp`; the full port range 1–65535 is no range; a lone
    /// `port_range_min` is a single port; the description defaults to `""`.
    pub fn normalize(&self) -> Result<RuleSpec, RuleError> {
        let ethertype = self.ethertype.unwrap_or_default();
        let protocol = self.protocol.map(|p| p.canonical_for(ethertype));

        if let Some(prefix) = self.remote_ip_prefix {
            if prefix.ethertype() != ethertype {
                return Err(RuleError::invalid("remote_ip_prefix", format!("Conflicting value ethertype {ethertype} for CIDR {prefix}")));
            }
            if self.remote_group_id.is_some() {
                return Err(RuleError::invalid("remote_group_id", "Only one of remote_ip_prefix and remote_group_id may be set"));
            }
        }
        if let Some(protocol) = protocol {
            if ethertype == Ethertype::IPv4 && protocol.is_ipv6_only() {
                return Err(RuleError::invalid("protocol", format!("Protocol {protocol} is only supported with ethertype IPv6, not IPv4")));
            }
        }

        let (port_range_min, port_range_max) = match protocol {
            _ if self.port_range_min.is_none() && self.port_range_max.is_none() => (None, None),
            None => {
                let field = if self.port_range_min.is_some() { "port_range_min" } else { "port_range_max" };
                return Err(RuleError::invalid(field, "Must also specify protocol if port range is given"));
            }
            Some(p) if p.is_icmp() => icmp_type_code(self.port_range_min, self.port_range_max)?,
            Some(p) if p.takes_ports() => port_range(self.port_range_min, self.port_range_max)?,
            Some(p) => {
                let field = if self.port_range_min.is_some() { "port_range_min" } else { "port_range_max" };
                return Err(RuleError::invalid(
                    field,
                    format!("Invalid protocol {p} for port range, only supported for TCP, UDP, UDPLITE, SCTP and DCCP"),
                ));
            }
        };

        Ok(RuleSpec {
            direction: self.direction,
            ethertype,
            protocol,
            port_range_min,
            port_range_max,
            remote_ip_prefix: self.remote_ip_prefix,
            remote_group_id: self.remote_group_id,
            description: self.description.clone().unwrap_or_default(),
        })
    }
}

fn port_range(min: Option<u16>, max: Option<u16>) -> Result<(Option<u16>, Option<u16>), RuleError> {
    let (min, max) = match (min, max) {
        (Some(min), Some(max)) => (min, max),
        (Some(min), None) => (min, min),
        (None, _) => {
            return Err(RuleError::invalid("port_range_min", "port_range_min must be <= port_range_max"));
        }
    };
    if min == 0 {
        return Err(RuleError::invalid("port_range_min", "Invalid value for port 0"));
    }
    if max == 0 {
        return Err(RuleError::invalid("port_range_max", "Invalid value for port 0"));
    }
    if min > max {
        return Err(RuleError::invalid("port_range_min", "port_range_min must be <= port_range_max"));
    }
    if min == 1 && max == u16::MAX {
        return Ok((None, None));
    }
    Ok((Some(min), Some(max)))
}

fn icmp_type_code(kind: Option<u16>, code: Option<u16>) -> Result<(Option<u16>, Option<u16>), RuleError> {
    if let Some(kind) = kind {
        if kind > 255 {
            return Err(RuleError::invalid("port_range_min", format!("Invalid value for ICMP type {kind}")));
        }
    }
    if let Some(code) = code {
        if code > 255 {
            return Err(RuleError::invalid("port_range_max", format!("Invalid value for ICMP code {code}")));
        }
        if kind.is_none() {
            return Err(RuleError::invalid(
                "port_range_max",
                format!("ICMP code (port-range-max) {code} is provided but ICMP type (port-range-min) is missing"),
            ));
        }
    }
    Ok((kind, code))
}

/// A rule in canonical form: what is stored and what GET returns.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RuleSpec {
    pub direction: Direction,
    pub ethertype: Ethertype,
    pub protocol: Option<Protocol>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    pub remote_ip_prefix: Option<Cidr>,
    pub remote_group_id: Option<Uuid>,
    pub description: String,
}

impl RuleSpec {
    /// Neutron's `_rule_to_key`: description is not part of it, the protocol is compared by
    /// number, and "from anywhere" written as `0.0.0.0/0`, `::/0` or null is one key.
    pub fn key(&self) -> RuleKey {
        RuleKey {
            direction: self.direction,
            ethertype: self.ethertype,
            protocol: self.protocol.map(Protocol::number),
            port_range_min: self.port_range_min,
            port_range_max: self.port_range_max,
            remote_ip_prefix: self.remote_ip_prefix.filter(|p| !p.is_everything()),
            remote_group_id: self.remote_group_id,
        }
    }

    /// The same rule as a draft: normalising it gives it back unchanged.
    pub fn to_draft(&self) -> RuleDraft {
        RuleDraft {
            direction: self.direction,
            ethertype: Some(self.ethertype),
            protocol: self.protocol,
            port_range_min: self.port_range_min,
            port_range_max: self.port_range_max,
            remote_ip_prefix: self.remote_ip_prefix,
            remote_group_id: self.remote_group_id,
            description: Some(self.description.clone()),
        }
    }

    /// Egress to everywhere over every protocol for one family: the default template's rules.
    pub fn allow_all_egress(ethertype: Ethertype) -> RuleSpec {
        RuleSpec {
            direction: Direction::Egress,
            ethertype,
            protocol: None,
            port_range_min: None,
            port_range_max: None,
            remote_ip_prefix: None,
            remote_group_id: None,
            description: String::new(),
        }
    }
}

/// The identity of a rule for duplicate detection (see [`RuleSpec::key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleKey {
    pub direction: Direction,
    pub ethertype: Ethertype,
    pub protocol: Option<u8>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    pub remote_ip_prefix: Option<Cidr>,
    pub remote_group_id: Option<Uuid>,
}

/// A stored rule. Rules are immutable: a change is a delete and a create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub id: Uuid,
    pub group_id: Uuid,
    pub spec: RuleSpec,
    /// Unix seconds, UTC.
    pub created_at: i64,
}

/// The default template when a create omits `rules`: egress allow-all for IPv4 and for IPv6
/// (CONTRACT.md §5.1, Neutron's template for non-default groups).
pub fn default_template() -> Vec<RuleSpec> {
    vec![RuleSpec::allow_all_egress(Ethertype::IPv4), RuleSpec::allow_all_egress(Ethertype::IPv6)]
}

/// Keeps the first rule of each identity, in order: "duplicates inside one request are created once".
pub fn dedupe(specs: Vec<RuleSpec>) -> Vec<RuleSpec> {
    let mut seen = std::collections::HashSet::new();
    specs.into_iter().filter(|spec| seen.insert(spec.key())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(min: Option<u16>, max: Option<u16>) -> RuleDraft {
        RuleDraft { protocol: Some(Protocol::TCP), port_range_min: min, port_range_max: max, ..RuleDraft::new(Direction::Ingress) }
    }

    #[test]
    fn port_rules_follow_neutron() {
        assert_eq!(tcp(Some(80), Some(80)).normalize().unwrap().port_range_max, Some(80));
        assert_eq!(tcp(Some(22), None).normalize().unwrap().port_range_max, Some(22));
        let whole = tcp(Some(1), Some(65535)).normalize().unwrap();
        assert_eq!((whole.port_range_min, whole.port_range_max), (None, None));
        assert!(tcp(Some(80), Some(79)).normalize().unwrap_err().to_string().contains("port_range_min must be <= port_range_max"));
        assert!(tcp(None, Some(6)).normalize().is_err());
        assert!(tcp(Some(0), Some(10)).normalize().unwrap_err().to_string().contains("Invalid value for port 0"));
    }

    #[test]
    fn icmp_uses_type_and_code() {
        let icmp =
            |t, c| RuleDraft { protocol: Some(Protocol::ICMP), port_range_min: t, port_range_max: c, ..RuleDraft::new(Direction::Ingress) };
        assert!(icmp(Some(8), Some(0)).normalize().is_ok());
        assert!(icmp(Some(8), None).normalize().is_ok());
        assert!(icmp(Some(1), Some(256)).normalize().unwrap_err().to_string().contains("Invalid value for ICMP code"));
        assert!(icmp(Some(300), Some(1)).normalize().unwrap_err().to_string().contains("Invalid value for ICMP type"));
        assert!(icmp(None, Some(6)).normalize().unwrap_err().to_string().contains("ICMP type (port-range-min) is missing"));
    }

    #[test]
    fn ipv6_icmp_is_canonical_and_ipv6_only() {
        let draft = RuleDraft { ethertype: Some(Ethertype::IPv6), protocol: Some(Protocol::ICMP), ..RuleDraft::new(Direction::Ingress) };
        assert_eq!(draft.normalize().unwrap().protocol, Some(Protocol::IPV6_ICMP));
        let v4 = RuleDraft { protocol: Some(Protocol::IPV6_ICMP), ..RuleDraft::new(Direction::Ingress) };
        assert_eq!(v4.normalize().unwrap_err().field(), "protocol");
    }

    #[test]
    fn family_and_remote_conflicts() {
        let v6_prefix = RuleDraft { remote_ip_prefix: Some("::/0".parse().unwrap()), ..RuleDraft::new(Direction::Ingress) };
        assert!(v6_prefix.normalize().unwrap_err().to_string().contains("Conflicting value ethertype"));
        let both = RuleDraft {
            remote_ip_prefix: Some("10.0.0.0/8".parse().unwrap()),
            remote_group_id: Some(Uuid::nil()),
            ..RuleDraft::new(Direction::Ingress)
        };
        assert_eq!(both.normalize().unwrap_err().field(), "remote_group_id");
        let ports_without_protocol = RuleDraft { port_range_min: Some(80), ..RuleDraft::new(Direction::Ingress) };
        assert!(ports_without_protocol.normalize().unwrap_err().to_string().contains("Must also specify protocol"));
        let gre = RuleDraft { protocol: Protocol::from_name("gre"), port_range_min: Some(1), ..RuleDraft::new(Direction::Ingress) };
        assert_eq!(gre.normalize().unwrap_err().field(), "port_range_min");
    }

    #[test]
    fn anywhere_prefixes_share_one_identity() {
        let none = RuleDraft::new(Direction::Ingress).normalize().unwrap();
        let zero =
            RuleDraft { remote_ip_prefix: Some("0.0.0.0/0".parse().unwrap()), ..RuleDraft::new(Direction::Ingress) }.normalize().unwrap();
        let described = RuleDraft { description: Some("x".into()), ..RuleDraft::new(Direction::Ingress) }.normalize().unwrap();
        assert_eq!(none.key(), zero.key());
        assert_eq!(none.key(), described.key());
        assert_eq!(dedupe(vec![none.clone(), zero, described]), vec![none]);
    }
}
