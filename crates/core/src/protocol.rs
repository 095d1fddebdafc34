//! IP protocols as the contract names them, with their IANA numbers.

use std::fmt;

use crate::rule::Ethertype;

/// One of the 23 named protocols of the contract's V2 enum (`any` is not a protocol: it is the
/// absence of one, `None` wherever a protocol is optional).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Protocol(u8);

/// (name, number). Names are the contract's enum; numbers are IANA's (`/etc/protocols`).
/// `ipencap` is IP-in-IP (4) and `ipip` is the older IPIP number (94), as in `/etc/protocols`.
const TABLE: &[(&str, u8)] = &[
    ("ah", 51),
    ("dccp", 33),
    ("egp", 8),
    ("esp", 50),
    ("gre", 47),
    ("icmp", 1),
    ("igmp", 2),
    ("ipencap", 4),
    ("ipip", 94),
    ("ipv6-encap", 41),
    ("ipv6-frag", 44),
    ("ipv6-icmp", 58),
    ("ipv6-nonxt", 59),
    ("ipv6-opts", 60),
    ("ipv6-route", 43),
    ("ospf", 89),
    ("pgm", 113),
    ("rsvp", 46),
    ("sctp", 132),
    ("tcp", 6),
    ("udp", 17),
    ("udplite", 136),
    ("vrrp", 112),
];

impl Protocol {
    pub const TCP: Protocol = Protocol(6);
    pub const UDP: Protocol = Protocol(17);
    pub const ICMP: Protocol = Protocol(1);
    pub const IPV6_ICMP: Protocol = Protocol(58);

    /// Every protocol the contract names, in the contract's order.
    pub fn all() -> impl Iterator<Item = Protocol> {
        TABLE.iter().map(|&(_, number)| Protocol(number))
    }

    /// Every accepted protocol name (the contract's V2 enum).
    pub fn names() -> impl Iterator<Item = &'static str> {
        TABLE.iter().map(|&(name, _)| name)
    }

    pub fn from_number(number: u8) -> Option<Protocol> {
        TABLE.iter().find(|&&(_, n)| n == number).map(|&(_, n)| Protocol(n))
    }

    /// A name, case-insensitively; `icmpv6` is Neutron's legacy alias of `ipv6-icmp`.
    pub fn from_name(name: &str) -> Option<Protocol> {
        let lower = name.to_ascii_lowercase();
        if lower == "icmpv6" {
            return Some(Protocol::IPV6_ICMP);
        }
        TABLE.iter().find(|&&(n, _)| n == lower).map(|&(_, number)| Protocol(number))
    }

    pub fn number(self) -> u8 {
        self.0
    }

    pub fn name(self) -> &'static str {
        TABLE.iter().find(|&&(_, n)| n == self.0).map(|&(name, _)| name).expect("constructed from the table")
    }

    /// Protocols whose rules may carry a port range.
    pub fn takes_ports(self) -> bool {
        matches!(self.0, 6 | 17 | 33 | 132 | 136)
    }

    /// ICMP and ICMPv6 read the port fields as type and code.
    pub fn is_icmp(self) -> bool {
        matches!(self.0, 1 | 58)
    }

    /// Protocols Neutron refuses with `IPv4` (`SecurityGroupEthertypeConflictWithProtocol`).
    pub fn is_ipv6_only(self) -> bool {
        matches!(self.0, 41 | 43 | 44 | 58 | 59 | 60)
    }

    /// Neutron's `_make_canonical_ipv6_icmp_protocol`: with IPv6, `icmp` means ICMPv6.
    pub fn canonical_for(self, ethertype: Ethertype) -> Protocol {
        if ethertype == Ethertype::IPv6 && self == Protocol::ICMP { Protocol::IPV6_ICMP } else { self }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_round_trip() {
        for protocol in Protocol::all() {
            assert_eq!(Protocol::from_name(protocol.name()), Some(protocol));
            assert_eq!(Protocol::from_number(protocol.number()), Some(protocol));
        }
        assert_eq!(Protocol::all().count(), 23);
    }

    #[test]
    fn aliases_and_case() {
        assert_eq!(Protocol::from_name("TCP"), Some(Protocol::TCP));
        assert_eq!(Protocol::from_name("icmpv6"), Some(Protocol::IPV6_ICMP));
        assert_eq!(Protocol::from_name("any"), None);
        assert_eq!(Protocol::from_name("bad_protocol_name"), None);
        assert_eq!(Protocol::from_number(0), None);
    }

    #[test]
    fn icmp_becomes_icmpv6_only_with_ipv6() {
        assert_eq!(Protocol::ICMP.canonical_for(Ethertype::IPv6), Protocol::IPV6_ICMP);
        assert_eq!(Protocol::ICMP.canonical_for(Ethertype::IPv4), Protocol::ICMP);
        assert_eq!(Protocol::TCP.canonical_for(Ethertype::IPv6), Protocol::TCP);
    }
}
