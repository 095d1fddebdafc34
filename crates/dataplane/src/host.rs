//! What the host looks like: which port devices exist, which are ports of a Linux bridge, which
//! other devices carry the port prefix; and the [`Layout`] the tables are rendered with.
//!
//! Links are read through netlink with `ip -json link show` (so the agent sees the network
//! namespace it runs in, whatever `/sys` shows), bridges with `ip -json -details link show type
//! bridge`. A bridge that holds ports must pass its IPv4 and IPv6 packets to the IP hooks
//! (`nf_call_iptables`, `nf_call_ip6tables`: that is where conntrack and the rules see them);
//! [`ensure_bridge_netfilter`] turns both on for such a bridge, and a bridge where they stay off
//! gets its ports refused (dropped) rather than left unfiltered.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;

use anyhow::{Context, bail};
use palisade_core::policy::CompiledHost;
use serde_json::Value;

use crate::nft::{BridgeLayout, Layout, Placement};

/// How the agent decides where a port is enforced (`--mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Every port routed; a port found enslaved to a bridge is refused.
    Routed,
    /// Every port a bridge port; a port found outside a bridge is refused.
    Bridged,
    /// Per device, as found.
    #[default]
    Auto,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "routed" => Ok(Mode::Routed),
            "bridged" => Ok(Mode::Bridged),
            "auto" => Ok(Mode::Auto),
            other => Err(format!("unknown mode {other:?} (routed, bridged or auto)")),
        }
    }
}

/// One network device of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    /// The device it is enslaved to (a bridge, a bond, `ovs-system`, ...).
    pub master: Option<String>,
}

/// A Linux bridge of the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeLink {
    pub ifindex: u32,
    /// `nf_call_iptables` and `nf_call_ip6tables` both on.
    pub netfilter: bool,
}

/// The host's devices, as netlink lists them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Links {
    pub devices: BTreeMap<String, Link>,
    pub bridges: BTreeMap<String, BridgeLink>,
}

async fn ip_json(ip: &str, args: &[&str]) -> anyhow::Result<Value> {
    let output = tokio::process::Command::new(ip)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {ip} {}", args.join(" ")))?;
    if !output.status.success() {
        bail!("{ip} {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    serde_json::from_slice(&output.stdout).with_context(|| format!("reading the output of {ip} {}", args.join(" ")))
}

impl Links {
    /// Reads the links of the network namespace the agent runs in.
    pub async fn scan(ip: &str) -> anyhow::Result<Links> {
        let all = ip_json(ip, &["-json", "link", "show"]).await?;
        let bridges = ip_json(ip, &["-json", "-details", "link", "show", "type", "bridge"]).await?;
        Ok(Links::from_json(&all, &bridges))
    }

    pub fn from_json(all: &Value, bridges: &Value) -> Links {
        let mut links = Links::default();
        for link in all.as_array().into_iter().flatten() {
            let (Some(name), Some(ifindex)) = (link["ifname"].as_str(), link["ifindex"].as_u64()) else { continue };
            links.devices.insert(name.to_string(), Link { ifindex: ifindex as u32, master: link["master"].as_str().map(str::to_owned) });
        }
        for bridge in bridges.as_array().into_iter().flatten() {
            let (Some(name), Some(ifindex)) = (bridge["ifname"].as_str(), bridge["ifindex"].as_u64()) else { continue };
            let data = &bridge["linkinfo"]["info_data"];
            let netfilter = data["nf_call_iptables"].as_u64() == Some(1) && data["nf_call_ip6tables"].as_u64() == Some(1);
            links.bridges.insert(name.to_string(), BridgeLink { ifindex: ifindex as u32, netfilter });
        }
        links
    }
}

/// Turns on `nf_call_iptables` and `nf_call_ip6tables` on `bridge`, so its IPv4 and IPv6
/// packets cross the IP hooks (conntrack, the inet table).
pub async fn ensure_bridge_netfilter(ip: &str, bridge: &str) -> anyhow::Result<()> {
    let output = tokio::process::Command::new(ip)
        .args(["link", "set", "dev", bridge, "type", "bridge", "nf_call_iptables", "1", "nf_call_ip6tables", "1"])
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {ip} link set"))?;
    if !output.status.success() {
        bail!("turning on nf_call_iptables on {bridge} failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// The ids that name bridged ports in packet marks, stable for as long as a device stays
/// bridged (so a rescan changes no mark of a port that did not move).
#[derive(Debug, Default)]
pub struct MarkIds {
    ids: BTreeMap<String, u16>,
}

impl MarkIds {
    fn get(&mut self, device: &str, used: &mut BTreeSet<u16>) -> Option<u16> {
        if let Some(id) = self.ids.get(device) {
            used.insert(*id);
            return Some(*id);
        }
        let id = (1..=u16::MAX).find(|id| !used.contains(id) && !self.ids.values().any(|v| v == id))?;
        self.ids.insert(device.to_string(), id);
        used.insert(id);
        Some(id)
    }

    fn retain(&mut self, used: &BTreeSet<u16>) {
        self.ids.retain(|_, id| used.contains(id));
    }
}

/// A bridge's conntrack zone: its interface index (stable while the bridge exists), folded into
/// 1..=65535 in the unlikely case it is larger.
pub fn zone_of(ifindex: u32) -> u16 {
    if (1..=u32::from(u16::MAX)).contains(&ifindex) { ifindex as u16 } else { (ifindex % u32::from(u16::MAX)) as u16 + 1 }
}

/// Where each port of `host` is enforced on a host with `links`, and which devices are refused
/// or unregistered. Pure: the agent logs the refusals and turns on bridge netfilter before
/// rendering.
pub fn plan(host: &CompiledHost, links: &Links, mode: Mode, prefix: &str, ids: &mut MarkIds) -> Layout {
    let mut layout = Layout { prefix: prefix.to_string(), ..Layout::default() };
    let ports: BTreeSet<&str> = host.ports.iter().map(|p| p.device.as_str()).collect();
    let claimed: BTreeSet<&str> = host.refused.iter().map(|r| r.device.as_str()).collect();
    let mut used = BTreeSet::new();
    for port in &host.ports {
        let device = port.device.as_str();
        let Some(link) = links.devices.get(device) else {
            // Not there (yet): routed, so that the moment it appears as a routed device it is
            // enforced; appearing in a bridge, it is dropped by the prefix until the next scan.
            continue;
        };
        let bridge = link.master.as_deref().and_then(|m| links.bridges.get(m).map(|b| (m, b)));
        match (mode, link.master.as_deref(), bridge) {
            (Mode::Routed, None, _) => {}
            (Mode::Routed, Some(master), _) => {
                layout.refused.insert(device.into(), format!("enslaved to {master} but the agent runs with --mode routed"));
            }
            (Mode::Bridged | Mode::Auto, Some(_), Some((name, bridge))) => {
                if !bridge.netfilter {
                    layout.refused.insert(
                        device.into(),
                        format!("bridge {name} does not pass its packets to the IP hooks (nf_call_iptables / nf_call_ip6tables off)"),
                    );
                    continue;
                }
                let Some(id) = ids.get(device, &mut used) else {
                    layout.refused.insert(device.into(), "more than 65535 bridged ports".into());
                    continue;
                };
                layout.placements.insert(device.into(), Placement::Bridged { bridge: name.into(), id });
                layout
                    .bridges
                    .entry(name.to_string())
                    .or_insert_with(|| BridgeLayout { zone: zone_of(bridge.ifindex), uplinks: BTreeSet::new() });
            }
            (Mode::Bridged | Mode::Auto, Some(master), None) => {
                layout.refused.insert(device.into(), format!("enslaved to {master}, which is not a Linux bridge"));
            }
            (Mode::Bridged, None, _) => {
                layout.refused.insert(device.into(), "not a bridge port but the agent runs with --mode bridged".into());
            }
            (Mode::Auto, None, _) => {}
        }
    }
    ids.retain(&used);
    // The other members of the bridges that hold ports.
    for (name, link) in &links.devices {
        if let Some(master) = &link.master
            && let Some(bridge) = layout.bridges.get_mut(master)
            && !ports.contains(name.as_str())
        {
            bridge.uplinks.insert(name.clone());
        }
    }
    if !prefix.is_empty() {
        layout.unregistered = links
            .devices
            .keys()
            .filter(|d| d.starts_with(prefix) && !ports.contains(d.as_str()) && !claimed.contains(d.as_str()))
            .cloned()
            .collect();
    }
    layout
}

#[cfg(test)]
mod tests {
    use super::*;
    use palisade_core::policy::{GroupPolicy, HostPolicy, PortPolicy, compile};
    use serde_json::json;
    use uuid::Uuid;

    fn host(devices: &[&str]) -> CompiledHost {
        let group = Uuid::from_u128(1);
        compile(&HostPolicy {
            host: "h".into(),
            revision: 1,
            ports: devices
                .iter()
                .enumerate()
                .map(|(i, d)| PortPolicy {
                    id: Uuid::from_u128(10 + i as u128),
                    instance_id: Uuid::from_u128(100 + i as u128),
                    device: d.to_string(),
                    mac_address: format!("02:00:00:00:00:{i:02x}"),
                    fixed_ips: vec![format!("10.0.0.{}", i + 1).parse().unwrap()],
                    security_group_ids: vec![group],
                    flow_log: None,
                })
                .collect(),
            security_groups: vec![GroupPolicy { id: group, rules: vec![] }],
            remote_groups: vec![],
        })
        .unwrap()
    }

    fn links() -> Links {
        let all = json!([
            {"ifindex": 1, "ifname": "lo"},
            {"ifindex": 5, "ifname": "br0"},
            {"ifindex": 6, "ifname": "br1"},
            {"ifindex": 7, "ifname": "tap1", "master": "br0"},
            {"ifindex": 8, "ifname": "tap2"},
            {"ifindex": 9, "ifname": "vx0", "master": "br0"},
            {"ifindex": 10, "ifname": "tap3", "master": "br1"},
            {"ifindex": 11, "ifname": "tapstray"},
            {"ifindex": 12, "ifname": "tap4", "master": "ovs-system"},
        ]);
        let bridges = json!([
            {"ifindex": 5, "ifname": "br0", "linkinfo": {"info_data": {"nf_call_iptables": 1, "nf_call_ip6tables": 1}}},
            {"ifindex": 6, "ifname": "br1", "linkinfo": {"info_data": {"nf_call_iptables": 0, "nf_call_ip6tables": 1}}},
        ]);
        Links::from_json(&all, &bridges)
    }

    #[test]
    fn auto_places_each_device_as_found() {
        let mut ids = MarkIds::default();
        let layout = plan(&host(&["tap1", "tap2", "tap3", "tap4", "tap9"]), &links(), Mode::Auto, "tap", &mut ids);
        assert_eq!(layout.placements["tap1"], Placement::Bridged { bridge: "br0".into(), id: 1 });
        assert!(!layout.placements.contains_key("tap2"), "routed");
        assert!(!layout.placements.contains_key("tap9"), "absent: routed until seen");
        assert_eq!(layout.bridges["br0"], BridgeLayout { zone: 5, uplinks: BTreeSet::from(["vx0".to_string()]) });
        assert!(layout.refused["tap3"].contains("nf_call_iptables"), "{:?}", layout.refused);
        assert!(layout.refused["tap4"].contains("not a Linux bridge"), "{:?}", layout.refused);
        assert_eq!(layout.unregistered, BTreeSet::from(["tapstray".to_string()]));
        // The same ids on the next scan; a new bridged port gets a free one.
        let again = plan(&host(&["tap1", "tap2"]), &links(), Mode::Auto, "tap", &mut ids);
        assert_eq!(again.placements["tap1"], Placement::Bridged { bridge: "br0".into(), id: 1 });
    }

    #[test]
    fn forced_modes_refuse_what_does_not_fit() {
        let layout = plan(&host(&["tap1", "tap2"]), &links(), Mode::Routed, "tap", &mut MarkIds::default());
        assert!(layout.refused["tap1"].contains("--mode routed"));
        assert!(layout.placements.is_empty());
        let layout = plan(&host(&["tap1", "tap2"]), &links(), Mode::Bridged, "", &mut MarkIds::default());
        assert!(layout.refused["tap2"].contains("--mode bridged"));
        assert!(matches!(layout.placements["tap1"], Placement::Bridged { .. }));
        assert!(layout.unregistered.is_empty(), "no prefix, no unregistered devices");
    }

    #[test]
    fn zones_fit_sixteen_bits() {
        assert_eq!(zone_of(5), 5);
        assert_eq!(zone_of(65535), 65535);
        assert!((1..=65535).contains(&zone_of(70_000)));
        assert!((1..=65535).contains(&zone_of(65535 * 2)));
    }
}
