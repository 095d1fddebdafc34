//! Instance ports: an instance's network interface on a host, its addresses, and the security
//! groups bound to it. The platform registers ports; the data plane enforces their groups.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use uuid::Uuid;

use crate::group::Scope;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    pub id: Uuid,
    pub scope: Scope,
    pub instance_id: Uuid,
    pub instance_name: String,
    /// The hypervisor the port lives on: the name its agent runs with (`palisade agent --host`).
    pub host: String,
    /// The port's interface on the host.
    pub device: String,
    pub mac: MacAddr,
    /// Fixed IPv4 and IPv6 addresses, in the order given.
    pub fixed_ips: Vec<IpAddr>,
    /// Bound security groups, in binding order.
    pub security_group_ids: Vec<Uuid>,
    /// Unix milliseconds, UTC.
    pub created_at: i64,
    pub updated_at: i64,
}

/// Neutron's interface name for a port: `tap` and the first 11 characters of its id.
pub fn default_device(port_id: Uuid) -> String {
    format!("tap{}", &port_id.hyphenated().to_string()[..11])
}

/// A host name as agents use it: 1–253 characters of letters, digits, `.`, `-` and `_`.
pub fn valid_host(text: &str) -> bool {
    !text.is_empty() && text.len() <= 253 && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// A Linux interface name (IFNAMSIZ - 1 = 15 bytes) of letters, digits, `.`, `-` and `_`, so it
/// can be quoted into an nftables ruleset as it is.
pub fn valid_device(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 15
        && text != "."
        && text != ".."
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
}

/// The most fixed IPs one port may carry: a VM interface has a handful; thousands would only
/// inflate every host's anti-spoofing sets.
pub const MAX_FIXED_IPS: usize = 32;

/// Whether `ip` can be a port's own address: a unicast host address. Refused: unspecified,
/// loopback, multicast, link-local (which includes the metadata address 169.254.169.254 and
/// IPv6 `fe80::/10`), and the IPv4 limited broadcast. A port holding one of these could claim
/// traffic that belongs to the host or to every instance.
pub fn assignable_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_loopback() || v4.is_multicast() || v4.is_link_local() || v4.is_broadcast()),
        IpAddr::V6(v6) => {
            let link_local = v6.segments()[0] & 0xffc0 == 0xfe80;
            // An IPv4-mapped address is the IPv4 address in disguise: judge that one.
            if let Some(v4) = v6.to_ipv4_mapped() {
                return assignable_ip(IpAddr::V4(v4));
            }
            !(v6.is_unspecified() || v6.is_loopback() || v6.is_multicast() || link_local)
        }
    }
}

/// An Ethernet address, shown as lowercase `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// A unicast address (multicast and broadcast addresses never source a frame).
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0
    }

    /// A MAC a port may own: unicast and not all zeros.
    pub fn is_assignable(&self) -> bool {
        self.is_unicast() && self.0 != [0; 6]
    }
}

impl FromStr for MacAddr {
    type Err = ();

    /// `aa:bb:cc:dd:ee:ff` or `aa-bb-cc-dd-ee-ff`, any case.
    fn from_str(text: &str) -> Result<MacAddr, ()> {
        let parts: Vec<&str> = text.split([':', '-']).collect();
        if parts.len() != 6 {
            return Err(());
        }
        let mut bytes = [0u8; 6];
        for (byte, part) in bytes.iter_mut().zip(parts) {
            // Two hex digits: `from_str_radix` alone would also take a sign (`+6`).
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| ())?;
        }
        Ok(MacAddr(bytes))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(f, "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3], b[4], b[5])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parses_and_prints_lowercase() {
        let mac: MacAddr = "FA:16:3E:0a:0B:0c".parse().unwrap();
        assert_eq!(mac.to_string(), "fa:16:3e:0a:0b:0c");
        assert_eq!("fa-16-3e-0a-0b-0c".parse::<MacAddr>().unwrap(), mac);
        // `+6` came from fuzzing (fuzz/regressions/scalars/mac-sign): two characters, but not two hex digits.
        for bad in [
            "",
            "fa:16:3e:0a:0b",
            "fa:16:3e:0a:0b:0c:0d",
            "fa:16:3e:0a:0b:zz",
            "fa:16:3e:0a:0b:c",
            "fa-+6-1e-0a-0b-0c",
            "fa:16:3e:0a:0b:-c",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert!(mac.is_unicast());
        assert!(!"01:00:5e:00:00:01".parse::<MacAddr>().unwrap().is_unicast());
    }

    #[test]
    fn names() {
        let id = Uuid::parse_str("ee2402d0-f0cd-4503-9b75-69be1d11c5f1").unwrap();
        assert_eq!(default_device(id), "tapee2402d0-f0");
        assert!(valid_device(&default_device(id)));
        assert!(!valid_device("a-name-that-is-too-long"));
        assert!(!valid_device("tap\"x"));
        assert!(valid_host("compute-1.example"));
        assert!(!valid_host("bad host"));
        for bad in ["eth/0", "tap 1", "tap:1", ""] {
            assert!(!valid_device(bad), "{bad}");
        }
    }

    #[test]
    fn only_unicast_host_addresses_are_assignable() {
        for good in ["10.0.0.5", "203.0.113.7", "192.168.1.255", "2001:db8::5", "fd00::1"] {
            assert!(assignable_ip(good.parse().unwrap()), "{good}");
        }
        for bad in [
            "0.0.0.0",
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "169.254.0.1",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "::1",
            "fe80::1",
            "febf::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!assignable_ip(bad.parse().unwrap()), "{bad}");
        }
    }

    #[test]
    fn assignable_macs_are_unicast_and_non_zero() {
        assert!("fa:16:3e:00:00:01".parse::<MacAddr>().unwrap().is_assignable());
        assert!(!"00:00:00:00:00:00".parse::<MacAddr>().unwrap().is_assignable());
        assert!(!"ff:ff:ff:ff:ff:ff".parse::<MacAddr>().unwrap().is_assignable());
        assert!(!"33:33:00:00:00:01".parse::<MacAddr>().unwrap().is_assignable());
    }
}
