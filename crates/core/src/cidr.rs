//! CIDR prefixes as rules carry them: host bits kept as written (Neutron keeps them), bare
//! addresses widened to a host prefix, text in the canonical form of `std::net`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::rule::Ethertype;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    pub fn new(addr: IpAddr, len: u8) -> Option<Cidr> {
        (len <= max_len(addr)).then_some(Cidr { addr, len })
    }

    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    pub fn len(&self) -> u8 {
        self.len
    }

    pub fn ethertype(&self) -> Ethertype {
        if self.addr.is_ipv4() { Ethertype::IPv4 } else { Ethertype::IPv6 }
    }

    /// `0.0.0.0/0` and `::/0`: the whole address family.
    pub fn is_everything(&self) -> bool {
        self.len == 0
    }

    /// The network this prefix denotes (host bits cleared), as `normalized_cidr` in Neutron.
    pub fn network(&self) -> Cidr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = if self.len == 0 { 0 } else { u32::MAX << (32 - self.len) };
                Cidr { addr: IpAddr::V4((u32::from(a) & mask).into()), len: self.len }
            }
            IpAddr::V6(a) => {
                let mask = if self.len == 0 { 0 } else { u128::MAX << (128 - self.len) };
                Cidr { addr: IpAddr::V6((u128::from(a) & mask).into()), len: self.len }
            }
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network().addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.len == 0 { 0 } else { u32::MAX << (32 - self.len) };
                u32::from(ip) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.len == 0 { 0 } else { u128::MAX << (128 - self.len) };
                u128::from(ip) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

fn max_len(addr: IpAddr) -> u8 {
    if addr.is_ipv4() { 32 } else { 128 }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CidrParseError;

impl fmt::Display for CidrParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Must be a valid IPv4 or IPv6 network in CIDR notation (e.g. 10.0.0.0/8)")
    }
}

impl FromStr for Cidr {
    type Err = CidrParseError;

    fn from_str(text: &str) -> Result<Cidr, CidrParseError> {
        let (addr_text, len_text) = match text.split_once('/') {
            Some((addr, len)) => (addr, Some(len)),
            None => (text, None),
        };
        let addr: IpAddr = addr_text.parse().map_err(|_| CidrParseError)?;
        let len = match len_text {
            None => max_len(addr),
            Some(len) if !len.is_empty() && len.len() <= 3 && len.bytes().all(|b| b.is_ascii_digit()) => {
                len.parse::<u8>().map_err(|_| CidrParseError)?
            }
            Some(_) => return Err(CidrParseError),
        };
        Cidr::new(addr, len).ok_or(CidrParseError)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_widens_bare_addresses() {
        assert_eq!("10.0.0.1".parse::<Cidr>().unwrap().to_string(), "10.0.0.1/32");
        assert_eq!("2001:DB8::1".parse::<Cidr>().unwrap().to_string(), "2001:db8::1/128");
        assert_eq!("10.0.0.5/24".parse::<Cidr>().unwrap().to_string(), "10.0.0.5/24");
        assert_eq!("10.0.0.5/24".parse::<Cidr>().unwrap().network().to_string(), "10.0.0.0/24");
    }

    #[test]
    fn refuses_malformed_prefixes() {
        for bad in ["192.168.1./24", "192.168.1.1/33", "bad_prefix", "256", "10.0.0.0/", "10.0.0.0/-1", "::/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn containment() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.2.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(!net.contains("::1".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains("1.2.3.4".parse().unwrap()));
    }
}
