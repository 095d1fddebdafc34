//! Rule hit counts: reading the per-port hit sets of the inet table (`hg4_<group>`,
//! `hg6_<group>`, see [`crate::nft`]), turning their absolute per-element counters into deltas,
//! attributing each element to a port, and holding the deltas until the API has them.
//!
//! Deltas, never absolute values, so counts survive whatever happens to the kernel's counters:
//! - An element's counter that went *down* (its set or the whole table was replaced, or the
//!   element expired and came back) restarted at 0: its whole new value is new hits. Never a
//!   negative delta.
//! - An element that is gone is forgotten; one not seen before counts from 0.
//! - The agent reads just before every apply, and calls [`HitTracker::table_replaced`] after a
//!   full replace, so the increments since the previous read are taken before a replace wipes
//!   them (only the milliseconds between that read and the replace can be lost).
//! - A fresh agent takes its first read as the baseline and reports nothing of it: those
//!   counters may hold hits an earlier agent already reported, and re-reporting would double
//!   them. What happened between the earlier agent's last read and the fresh agent's first read
//!   (its downtime, besides) is not reported; the agent's first apply replaces the tables anyway,
//!   restarting every counter at 0.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::process::Stdio;

use anyhow::{Context, bail};
use palisade_core::observe::{RuleHits, RuleStatsReport};
use palisade_core::policy::CompiledHost;
use palisade_core::rule::Direction;
use serde_json::Value;
use uuid::Uuid;

use crate::apply::Tools;
use crate::nft::{Layout, MARK_PORT, MARK_TO_MEMBER, Placement};

/// One element of a hit set: the key the kernel added and its counter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawHit {
    /// The set (`hg4_<group>` / `hg6_<group>`).
    pub set: String,
    /// The interface the rule saw: the port's device, or the bridge of a bridged port.
    pub interface: String,
    pub mark: u32,
    /// The port's side of the packet: the destination of ingress, the source of egress.
    pub address: IpAddr,
    pub rule: Uuid,
    pub packets: u64,
    pub bytes: u64,
}

impl RawHit {
    fn key(&self) -> (String, String, u32, IpAddr, Uuid) {
        (self.set.clone(), self.interface.clone(), self.mark, self.address, self.rule)
    }
}

/// The hit elements of `inet palisade` in the JSON of `nft -j list sets inet`.
pub fn parse_hits(json: &str) -> anyhow::Result<Vec<RawHit>> {
    let value: Value = serde_json::from_str(json).context("parsing nft's JSON")?;
    let items = value["nftables"].as_array().context("no nftables array in nft's JSON")?;
    let mut hits = Vec::new();
    for set in items.iter().filter_map(|item| item.get("set")) {
        let name = set["name"].as_str().unwrap_or_default();
        if set["table"] != "palisade" || set["family"] != "inet" || !(name.starts_with("hg4_") || name.starts_with("hg6_")) {
            continue;
        }
        for element in set["elem"].as_array().map(Vec::as_slice).unwrap_or_default() {
            let (key, counter) = match element.get("elem") {
                Some(wrapped) => (&wrapped["val"], &wrapped["counter"]),
                None => (element, &Value::Null),
            };
            let Some([interface, mark, address, rule]) = key["concat"].as_array().map(Vec::as_slice) else { continue };
            let (Some(interface), Some(mark), Some(address), Some(rule)) = (
                interface.as_str(),
                mark.as_u64().and_then(|m| u32::try_from(m).ok()),
                address.as_str().and_then(|a| a.parse::<IpAddr>().ok()),
                rule.as_str().and_then(|r| r.parse::<std::net::Ipv6Addr>().ok()),
            ) else {
                continue;
            };
            hits.push(RawHit {
                set: name.to_string(),
                interface: interface.to_string(),
                mark,
                address,
                rule: Uuid::from_u128(u128::from(rule)),
                packets: counter["packets"].as_u64().unwrap_or(0),
                bytes: counter["bytes"].as_u64().unwrap_or(0),
            });
        }
    }
    Ok(hits)
}

/// Reads the hit sets from the kernel (`nft -j list sets inet`: the sets with their elements,
/// without the rules, so the read costs little whatever the number of rules).
pub async fn read_hits(tools: &Tools) -> anyhow::Result<Vec<RawHit>> {
    let output = tokio::process::Command::new(&tools.nft)
        .args(["-j", "list", "sets", "inet"])
        .stdin(Stdio::null())
        .output()
        .await
        .with_context(|| format!("running {} -j list sets", tools.nft))?;
    if !output.status.success() {
        bail!("nft -j list sets failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    parse_hits(&String::from_utf8_lossy(&output.stdout))
}

/// Which port a hit element belongs to, for the policy and layout applied.
pub struct PortIndex<'a> {
    host: &'a CompiledHost,
    layout: &'a Layout,
    directions: HashMap<Uuid, Direction>,
}

impl<'a> PortIndex<'a> {
    pub fn new(host: &'a CompiledHost, layout: &'a Layout) -> PortIndex<'a> {
        let directions = host.groups.values().flat_map(|g| g.ingress.iter().chain(&g.egress)).map(|m| (m.rule_id, m.direction)).collect();
        PortIndex { host, layout, directions }
    }

    /// The port of an element: a routed port by its device; a bridged port (the element names
    /// its bridge) by the id in the mark — the bridge table's, on its egress and on what a
    /// bridge forwards to it — or else (what the host routes into the bridge) by its address.
    pub fn port_of(&self, hit: &RawHit) -> Option<Uuid> {
        let direction = *self.directions.get(&hit.rule)?;
        let mut on_bridge = Vec::new();
        for port in &self.host.ports {
            match self.layout.placement(&port.device) {
                Placement::Routed if port.device == hit.interface => return Some(port.id),
                Placement::Bridged { bridge, id } if bridge == hit.interface => on_bridge.push((port, id)),
                _ => {}
            }
        }
        let marked = direction == Direction::Egress || hit.mark & MARK_TO_MEMBER != 0;
        if marked && let Some((port, _)) = on_bridge.iter().find(|(_, id)| u32::from(*id) == hit.mark & MARK_PORT) {
            return Some(port.id);
        }
        on_bridge
            .iter()
            .find(|(port, _)| match hit.address {
                IpAddr::V4(a) => port.ipv4.contains(&a),
                IpAddr::V6(a) => port.ipv6.contains(&a),
            })
            .map(|(port, _)| port.id)
    }
}

/// Deltas waiting to be sent, per (port, rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pending {
    pub packets: u64,
    pub bytes: u64,
    pub last_hit_at: i64,
}

/// The most (port, rule) pairs held for the API; past it new pairs are dropped and counted.
pub const MAX_PENDING: usize = 100_000;

/// Turns successive reads of the hit sets into per-(port, rule) deltas and holds them until sent.
#[derive(Debug, Default)]
pub struct HitTracker {
    /// Each element's counter at the last read; `None` before the first read (the baseline).
    last: Option<HashMap<(String, String, u32, IpAddr, Uuid), (u64, u64)>>,
    pending: BTreeMap<(Uuid, Uuid), Pending>,
    /// (port, rule) pairs dropped because [`MAX_PENDING`] were held.
    pub overflowed: u64,
    /// Elements no port of the policy explains (a port gone since): their hits are not reported.
    pub unattributed: u64,
}

impl HitTracker {
    pub fn new() -> HitTracker {
        HitTracker::default()
    }

    /// Takes one read (at `now`, Unix seconds): adds each element's increase since the previous
    /// read to its (port, rule). The first read only sets the baseline.
    pub fn observe(&mut self, hits: &[RawHit], ports: &PortIndex, now: i64) {
        let mut current = HashMap::with_capacity(hits.len());
        let baseline = self.last.is_none();
        let last = self.last.take().unwrap_or_default();
        for hit in hits {
            let key = hit.key();
            let (packets, bytes) = match last.get(&key) {
                // Never negative: a counter that went down restarted at 0.
                Some(&(p, b)) if hit.packets >= p => (hit.packets - p, hit.bytes.saturating_sub(b)),
                _ => (hit.packets, hit.bytes),
            };
            current.insert(key, (hit.packets, hit.bytes));
            if baseline || packets == 0 {
                continue;
            }
            let Some(port) = ports.port_of(hit) else {
                self.unattributed += packets;
                continue;
            };
            if self.pending.len() >= MAX_PENDING && !self.pending.contains_key(&(port, hit.rule)) {
                self.overflowed += 1;
                continue;
            }
            let entry = self.pending.entry((port, hit.rule)).or_default();
            entry.packets += packets;
            entry.bytes += bytes;
            entry.last_hit_at = entry.last_hit_at.max(now);
        }
        self.last = Some(current);
    }

    /// The tables were replaced whole: every counter restarted at 0, so whatever is read next is
    /// new (the baseline stays taken).
    pub fn table_replaced(&mut self) {
        if let Some(last) = &mut self.last {
            last.clear();
        }
    }

    pub fn pending(&self) -> &BTreeMap<(Uuid, Uuid), Pending> {
        &self.pending
    }

    /// The report of everything pending; the deltas stay held until [`HitTracker::sent`].
    pub fn report(&self) -> RuleStatsReport {
        RuleStatsReport {
            stats: self
                .pending
                .iter()
                .map(|(&(port_id, rule_id), p)| RuleHits {
                    port_id,
                    rule_id,
                    packets: p.packets,
                    bytes: p.bytes,
                    last_hit_at: p.last_hit_at,
                })
                .collect(),
        }
    }

    /// The API accepted `report`: its deltas are no longer pending (what was added since stays).
    pub fn sent(&mut self, report: &RuleStatsReport) {
        for hit in &report.stats {
            let key = (hit.port_id, hit.rule_id);
            if let Some(p) = self.pending.get_mut(&key) {
                p.packets = p.packets.saturating_sub(hit.packets);
                p.bytes = p.bytes.saturating_sub(hit.bytes);
                if p.packets == 0 {
                    self.pending.remove(&key);
                }
            }
        }
    }
}

/// Unix seconds now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::{BridgeLayout, rule_key};
    use palisade_core::policy::{GroupPolicy, HostPolicy, PortPolicy, RulePolicy, compile};

    const RULE: Uuid = Uuid::from_u128(100);

    fn host() -> CompiledHost {
        let group = Uuid::from_u128(1);
        let port = |n: u128, device: &str| PortPolicy {
            id: Uuid::from_u128(n),
            instance_id: Uuid::from_u128(n + 1),
            device: device.into(),
            mac_address: format!("02:00:00:00:00:{n:02x}"),
            fixed_ips: vec![format!("10.0.0.{n}").parse().unwrap()],
            security_group_ids: vec![group],
            flow_log: None,
        };
        let rule = RulePolicy { id: RULE, ..crate::apply::tests::ssh() };
        compile(&HostPolicy {
            host: "h".into(),
            revision: 1,
            ports: vec![port(10, "tap0"), port(11, "tap1"), port(12, "tap2")],
            security_groups: vec![GroupPolicy { id: group, rules: vec![rule] }],
            remote_groups: vec![],
        })
        .unwrap()
    }

    fn layout() -> Layout {
        let mut layout = Layout::routed("tap");
        for (device, id) in [("tap1", 3), ("tap2", 4)] {
            layout.placements.insert(device.into(), Placement::Bridged { bridge: "br0".into(), id });
        }
        layout.bridges.insert("br0".into(), BridgeLayout { zone: 7, uplinks: Default::default() });
        layout
    }

    fn hit(interface: &str, mark: u32, address: &str, packets: u64) -> RawHit {
        RawHit {
            set: "hg4_x".into(),
            interface: interface.into(),
            mark,
            address: address.parse().unwrap(),
            rule: RULE,
            packets,
            bytes: packets * 60,
        }
    }

    #[test]
    fn nft_json_elements_parse() {
        let json = format!(
            r#"{{"nftables": [{{"metainfo": {{}}}}, {{"set": {{"family": "inet", "name": "hg4_x", "table": "palisade", "elem": [{{"elem": {{"val": {{"concat": ["tap0", 0, "10.0.0.10", "{}"]}}, "expires": 3599, "counter": {{"packets": 3, "bytes": 180}}}}}}]}}}}, {{"set": {{"family": "inet", "name": "hg4_y", "table": "other", "elem": []}}}}]}}"#,
            rule_key(RULE)
        );
        assert_eq!(parse_hits(&json).unwrap(), vec![hit("tap0", 0, "10.0.0.10", 3)]);
    }

    #[test]
    fn elements_are_attributed_to_their_ports() {
        let (host, layout) = (host(), layout());
        let index = PortIndex::new(&host, &layout);
        assert_eq!(index.port_of(&hit("tap0", 0, "10.0.0.10", 1)), Some(Uuid::from_u128(10)));
        assert_eq!(index.port_of(&hit("br0", MARK_TO_MEMBER | 4, "10.0.0.12", 1)), Some(Uuid::from_u128(12)));
        // Routed into the bridge: no member mark, the address decides.
        assert_eq!(index.port_of(&hit("br0", 0, "10.0.0.11", 1)), Some(Uuid::from_u128(11)));
        assert_eq!(index.port_of(&hit("tap9", 0, "10.0.0.10", 1)), None);
    }

    #[test]
    fn deltas_never_go_negative_nor_re_report_the_baseline() {
        let (host, layout) = (host(), layout());
        let index = PortIndex::new(&host, &layout);
        let mut tracker = HitTracker::new();
        let port = Uuid::from_u128(10);
        tracker.observe(&[hit("tap0", 0, "10.0.0.10", 50)], &index, 1);
        assert!(tracker.pending().is_empty(), "the first read is the baseline");
        tracker.observe(&[hit("tap0", 0, "10.0.0.10", 57)], &index, 2);
        assert_eq!(tracker.pending()[&(port, RULE)].packets, 7);
        // The table was replaced and hit 3 times since: 3 new, not -54.
        tracker.observe(&[hit("tap0", 0, "10.0.0.10", 3)], &index, 3);
        assert_eq!(tracker.pending()[&(port, RULE)].packets, 10);
        // Told of the replace, a value above the old one is still all new.
        tracker.table_replaced();
        tracker.observe(&[hit("tap0", 0, "10.0.0.10", 4)], &index, 4);
        let report = tracker.report();
        assert_eq!((report.stats[0].packets, report.stats[0].last_hit_at), (14, 4));
        // Sent while 2 more came: those stay.
        tracker.observe(&[hit("tap0", 0, "10.0.0.10", 6)], &index, 5);
        tracker.sent(&report);
        assert_eq!(tracker.pending()[&(port, RULE)].packets, 2);
        tracker.sent(&tracker.report());
        assert!(tracker.report().stats.is_empty());
    }
}
