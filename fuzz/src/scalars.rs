//! Target `scalars`: the text and number parsers under the bodies — CIDR prefixes, protocol names
//! and numbers (`parse_protocol`), ethertypes, directions, MAC addresses, group names, host and
//! device names.
//!
//! Invariants: whatever parses prints back to text that parses to the same value; a prefix
//! contains its own address and exactly the addresses its network contains; a protocol's name
//! and number both lead back to it; the string and number forms of `parse_protocol` agree.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use palisade_core::cidr::Cidr;
use palisade_core::input::{is_valid_name, parse_protocol, parse_protocol_exact};
use palisade_core::port::{MacAddr, valid_device, valid_host};
use palisade_core::protocol::Protocol;
use palisade_core::rule::{Direction, Ethertype};
use serde_json::{Value, json};

pub fn run(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        text_parsers(text);
    }
    if data.len() >= 17 {
        // Raw bytes: an address of either family, a prefix length and a probe address.
        let len = data[0];
        let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(&data[1..17]).expect("16 bytes"));
        let v4 = Ipv4Addr::new(data[1], data[2], data[3], data[4]);
        let probe6 = data.get(17..33).map(|b| Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes")));
        let probe4 = data.get(17..21).map(|b| Ipv4Addr::new(b[0], b[1], b[2], b[3]));
        prefix(IpAddr::V4(v4), len, probe4.map(IpAddr::V4));
        prefix(IpAddr::V6(v6), len, probe6.map(IpAddr::V6));
        let number = i64::from_le_bytes(data[1..9].try_into().expect("8 bytes"));
        protocol_number(number);
        protocol_number(i64::from(data[0]));
    }
}

fn text_parsers(text: &str) {
    if let Ok(cidr) = text.parse::<Cidr>() {
        let printed = cidr.to_string();
        assert_eq!(printed.parse::<Cidr>(), Ok(cidr), "{text:?} printed as {printed:?}");
        let addr_text = text.split_once('/').map_or(text, |(a, _)| a);
        assert_eq!(addr_text.parse::<IpAddr>().ok(), Some(cidr.addr()), "{text:?}");
        prefix(cidr.addr(), cidr.len(), None);
    }

    let name = Protocol::from_name(text);
    if let Some(p) = name {
        assert_eq!(Protocol::from_name(p.name()), Some(p));
        assert_eq!(Protocol::from_number(p.number()), Some(p));
        assert_eq!(p.to_string(), p.name());
    }
    let parsed = parse_protocol(&Value::String(text.to_string()));
    match &parsed {
        Ok(Some(p)) => {
            // Accepted by name or by number; the canonical name says the same.
            assert_eq!(parse_protocol(&json!(p.name())), Ok(Some(*p)));
            assert_eq!(parse_protocol(&json!(p.number())), Ok(Some(*p)));
        }
        Ok(None) => assert!(text.eq_ignore_ascii_case("any"), "{text:?} read as any"),
        Err(reason) => assert!(!reason.is_empty()),
    }
    if name.is_some() {
        assert_eq!(parsed, Ok(name), "name {text:?}");
    }
    // Gcore's enum exactly: the canonical names and `any`, and the lenient parser agrees.
    match parse_protocol_exact(&Value::String(text.to_string())) {
        Ok(Some(p)) => assert_eq!(p.name(), text),
        Ok(None) => assert_eq!(text, "any"),
        Err(reason) => assert!(!reason.is_empty()),
    }
    if let Ok(exact) = parse_protocol_exact(&Value::String(text.to_string())) {
        assert_eq!(parsed, Ok(exact), "{text:?}");
    }
    if let Some(e) = Ethertype::parse_exact(text) {
        assert_eq!(e.as_str(), text);
        assert_eq!(Ethertype::parse(text), Some(e));
    }

    if let Some(e) = Ethertype::parse(text) {
        assert_eq!(Ethertype::parse(e.as_str()), Some(e));
        assert!(e.as_str().eq_ignore_ascii_case(text));
    }
    if let Some(d) = Direction::parse(text) {
        assert_eq!(d.as_str(), text);
    }
    if let Ok(mac) = text.parse::<MacAddr>() {
        let printed = mac.to_string();
        assert_eq!(printed.parse::<MacAddr>(), Ok(mac));
        assert_eq!(printed.len(), 17);
        assert!(printed.eq_ignore_ascii_case(&text.replace('-', ":")), "{text:?} printed as {printed:?}");
    }
    if is_valid_name(text) {
        assert!((3..=63).contains(&text.len()) && text.is_ascii(), "{text:?}");
    }
    if valid_device(text) {
        // Quoted into nftables as it is: nothing that could end or escape the quotes.
        assert!(text.len() <= 15 && !text.contains(['"', '\\', ' ', '\n', ';', '{', '}']), "{text:?}");
    }
    if valid_host(text) {
        assert!(!text.is_empty() && text.len() <= 253 && !text.contains(['/', ' ', '?', '&', '#']), "{text:?}");
    }
}

fn protocol_number(number: i64) {
    match parse_protocol(&json!(number)) {
        Ok(Some(p)) => {
            assert_eq!(i64::from(p.number()), number);
            assert_eq!(parse_protocol(&json!(number.to_string())), Ok(Some(p)));
        }
        Ok(None) => panic!("number {number} read as any"),
        Err(_) => assert!(u8::try_from(number).ok().and_then(Protocol::from_number).is_none(), "{number} refused"),
    }
}

/// A prefix built from parts: valid exactly up to the family's length, and consistent.
fn prefix(addr: IpAddr, len: u8, probe: Option<IpAddr>) {
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let Some(cidr) = Cidr::new(addr, len) else {
        assert!(len > max);
        return;
    };
    assert!(len <= max);
    assert_eq!(cidr.to_string().parse::<Cidr>(), Ok(cidr));
    let net = cidr.network();
    assert_eq!(net.len(), len);
    assert_eq!(net.network(), net, "network() is idempotent");
    assert!(cidr.contains(addr), "{cidr} does not contain its own address");
    assert!(cidr.contains(net.addr()), "{cidr} does not contain its network address");
    assert_eq!(cidr.is_everything(), len == 0);
    assert_eq!(cidr.ethertype() == Ethertype::IPv4, addr.is_ipv4());
    if let Some(probe) = probe {
        assert_eq!(cidr.contains(probe), net.contains(probe));
        // Reference: the first `len` bits agree.
        let agree = match (addr, probe) {
            (IpAddr::V4(a), IpAddr::V4(b)) => len == 0 || (u32::from(a) ^ u32::from(b)) >> (32 - u32::from(len)) == 0,
            (IpAddr::V6(a), IpAddr::V6(b)) => len == 0 || (u128::from(a) ^ u128::from(b)) >> (128 - u32::from(len)) == 0,
            _ => false,
        };
        assert_eq!(cidr.contains(probe), agree, "{cidr} contains {probe}?");
        let other_family = match probe {
            IpAddr::V4(b) => IpAddr::V6(b.to_ipv6_mapped()),
            IpAddr::V6(b) => IpAddr::V4(Ipv4Addr::from(u128::from(b) as u32)),
        };
        assert!(!cidr.contains(other_family), "{cidr} contains {other_family} of the other family");
    }
}
