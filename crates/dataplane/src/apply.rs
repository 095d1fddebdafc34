//! Applying rulesets to the kernel: one `nft -f` transaction per change (a full replace of the
//! three tables the first time and whenever an incremental one fails), nothing when nothing
//! changed, and connection tracking reconciled with the policy: after a full replace, or a change
//! that revoked something, every conntrack entry through a port that the policy would not admit
//! as a new connection is deleted (and only those).

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::process::Stdio;

use anyhow::{Context, bail};
use palisade_core::policy::{CompiledHost, Flow, L4, Match, Remote};
use palisade_core::rule::{Direction, Ethertype};
use tokio::io::AsyncWriteExt;

use crate::nft::{ARP, BRIDGE, INET, Layout, Rendered, render};

/// The commands the applier runs (overridable for tests and unusual installs).
#[derive(Debug, Clone)]
pub struct Tools {
    pub nft: String,
    pub conntrack: String,
    pub ip: String,
}

impl Default for Tools {
    fn default() -> Self {
        Tools { nft: "nft".into(), conntrack: "conntrack".into(), ip: "ip".into() }
    }
}

/// What one apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The rendered ruleset equals the applied one: the kernel was not touched.
    Unchanged,
    /// The tables were replaced whole; the script's size in bytes.
    Replaced { bytes: usize },
    /// An incremental transaction; its size in bytes and lines.
    Updated { bytes: usize, lines: usize },
}

/// What is applied: the rendered tables and what they were rendered from.
struct Applied {
    rendered: Rendered,
    host: CompiledHost,
    layout: Layout,
}

/// The applied state of one host's tables.
#[derive(Default)]
pub struct Applier {
    pub tools: Tools,
    current: Option<Applied>,
    /// The last script sent to `nft`.
    pub last_script: String,
    /// The conntrack entries the last apply deleted (`conntrack -R` lines).
    pub last_flushes: Vec<String>,
}

impl Applier {
    pub fn new(tools: Tools) -> Applier {
        Applier { tools, ..Applier::default() }
    }

    /// Forgets what was applied, so the next apply replaces the whole tables.
    pub fn reset(&mut self) {
        self.current = None;
    }

    /// The policy and layout applied last.
    pub fn applied(&self) -> Option<(&CompiledHost, &Layout)> {
        self.current.as_ref().map(|a| (&a.host, &a.layout))
    }

    /// Whether the kernel still has the tables this applier filled (someone may have deleted or
    /// flushed them). Lists one base chain of each: cheap whatever the size of the tables.
    pub async fn table_present(&self) -> anyhow::Result<bool> {
        if self.current.is_none() {
            return Ok(true);
        }
        // One `nft list` per table (nft 1.0.6 loses its cache on a second `list` in one batch),
        // run at once.
        let scripts =
            [format!("list chain {INET} forward\n"), format!("list chain {BRIDGE} forward\n"), format!("list chain {ARP} input\n")];
        let (inet, bridge, arp) =
            tokio::try_join!(self.nft_output(&scripts[0]), self.nft_output(&scripts[1]), self.nft_output(&scripts[2]))?;
        let has = |output: Option<String>, rule: &str| output.is_some_and(|text| text.contains(rule));
        Ok(has(inet, "vmap @port_ingress") && has(bridge, "map @mark_out") && has(arp, "@routed_ports jump arp_spoof"))
    }

    /// Renders and applies `host` as attached per `layout`.
    pub async fn apply(&mut self, host: CompiledHost, layout: Layout) -> anyhow::Result<Outcome> {
        let rendered = render(&host, &layout);
        self.last_flushes.clear();
        let (outcome, replaced) = match &self.current {
            None => {
                let script = rendered.full_script();
                self.run_nft(&script).await.context("replacing the tables")?;
                (Outcome::Replaced { bytes: script.len() }, true)
            }
            Some(old) => match old.rendered.diff_script(&rendered) {
                None => (Outcome::Unchanged, false),
                Some(script) => match self.run_nft(&script).await {
                    Ok(()) => (Outcome::Updated { bytes: script.len(), lines: script.lines().count() }, false),
                    Err(e) => {
                        // The kernel is not what we think (someone changed a table): start over.
                        tracing::warn!(error = %format!("{e:#}"), "incremental update failed; replacing the tables");
                        let script = rendered.full_script();
                        self.run_nft(&script).await.context("replacing the tables")?;
                        (Outcome::Replaced { bytes: script.len() }, true)
                    }
                },
            },
        };
        // Connection tracking: whatever the kernel held before a full replace (an agent that was
        // down, a table someone changed) is checked against the policy; after an incremental
        // change, only if something was revoked.
        let revoked = match &self.current {
            // The same tables: the same rules, members and ports, so nothing was revoked.
            Some(_) if outcome == Outcome::Unchanged => false,
            Some(old) => !revoked_flows(&old.host, &host).is_empty() || old.layout != layout,
            None => true,
        };
        self.current = Some(Applied { rendered, host, layout });
        if replaced || revoked {
            match self.reconcile().await {
                Ok(deleted) => self.last_flushes = deleted,
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "could not reconcile connection tracking"),
            }
        }
        Ok(outcome)
    }

    /// Deletes every conntrack entry through a port of the applied policy that the policy would
    /// not admit as a new connection; returns the deletions (`conntrack -R` lines).
    pub async fn reconcile(&self) -> anyhow::Result<Vec<String>> {
        let Some(applied) = &self.current else { return Ok(Vec::new()) };
        let output = tokio::process::Command::new(&self.tools.conntrack)
            .args(["-L", "-o", "save"])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {} -L", self.tools.conntrack))?;
        let text = String::from_utf8_lossy(&output.stdout);
        let entries: Vec<CtEntry> = text.lines().filter_map(CtEntry::parse).collect();
        let doomed: Vec<String> = inadmissible(&applied.host, &applied.layout, &entries).into_iter().map(|e| e.delete_line()).collect();
        if doomed.is_empty() {
            return Ok(doomed);
        }
        let batch = doomed.iter().map(|l| format!("{l}\n")).collect::<String>();
        if let Err(e) = self.run_conntrack_batch(&batch).await {
            // One bad line fails the whole batch: fall back to one line at a time.
            tracing::warn!(error = %format!("{e:#}"), "conntrack batch failed; deleting one entry at a time");
            for line in &doomed {
                if let Err(e) = self.run_conntrack_batch(&format!("{line}\n")).await {
                    tracing::warn!(error = %format!("{e:#}"), line, "conntrack -D failed");
                }
            }
        }
        Ok(doomed)
    }

    async fn run_conntrack_batch(&self, batch: &str) -> anyhow::Result<()> {
        let mut child = tokio::process::Command::new(&self.tools.conntrack)
            .args(["-R", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {} -R", self.tools.conntrack))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(batch.as_bytes()).await.context("writing to conntrack")?;
        drop(stdin);
        let output = child.wait_with_output().await.context("waiting for conntrack")?;
        if !output.status.success() {
            bail!("conntrack -R failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(())
    }

    /// Runs an `nft -f -` script that lists things; `None` when nft fails.
    async fn nft_output(&self, script: &str) -> anyhow::Result<Option<String>> {
        let mut child = tokio::process::Command::new(&self.tools.nft)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("running {}", self.tools.nft))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(script.as_bytes()).await.context("writing to nft")?;
        drop(stdin);
        let output = child.wait_with_output().await.context("waiting for nft")?;
        Ok(output.status.success().then(|| String::from_utf8_lossy(&output.stdout).into_owned()))
    }

    async fn run_nft(&mut self, script: &str) -> anyhow::Result<()> {
        self.last_script = script.to_string();
        let mut child = tokio::process::Command::new(&self.tools.nft)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", self.tools.nft))?;
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(script.as_bytes()).await.context("writing the ruleset to nft")?;
        drop(stdin);
        let output = child.wait_with_output().await.context("waiting for nft")?;
        if !output.status.success() {
            bail!("nft -f failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(())
    }
}

/// One connection-tracking entry, as `conntrack -L -o save` lists it: its original direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtEntry {
    pub zone: u16,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub protocol: u8,
    /// Source and destination port (TCP, UDP, UDP-Lite, SCTP, DCCP).
    pub ports: Option<(u16, u16)>,
    /// ICMP or ICMPv6 type, code and id.
    pub icmp: Option<(u8, u8, u16)>,
    /// The protocol as conntrack names it (`tcp`, `icmpv6`, `47`), for the deletion.
    protocol_name: String,
}

fn protocol_number(name: &str) -> Option<u8> {
    match name {
        "tcp" => Some(6),
        "udp" => Some(17),
        "udplite" => Some(136),
        "icmp" => Some(1),
        "icmpv6" => Some(58),
        "sctp" => Some(132),
        "dccp" => Some(33),
        "gre" => Some(47),
        other => other.parse().ok().or_else(|| palisade_core::Protocol::from_name(other).map(|p| p.number())),
    }
}

impl CtEntry {
    /// Parses one line of `conntrack -L -o save` (`-A -t 99 -u ASSURED -w 7 -s … -d … -r … -q …
    /// -p tcp --sport 1000 --dport 80 …`); `None` for anything else.
    pub fn parse(line: &str) -> Option<CtEntry> {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() != Some(&"-A") {
            return None;
        }
        let value = |flag: &str| words.iter().position(|w| *w == flag).and_then(|i| words.get(i + 1)).copied();
        let src: IpAddr = value("-s")?.parse().ok()?;
        let dst: IpAddr = value("-d")?.parse().ok()?;
        let protocol_name = value("-p")?.to_string();
        let protocol = protocol_number(&protocol_name)?;
        let zone = value("-w").map_or(Some(0), |z| z.parse().ok())?;
        let ports = match (value("--sport"), value("--dport")) {
            (Some(s), Some(d)) => Some((s.parse().ok()?, d.parse().ok()?)),
            _ => None,
        };
        let icmp = match (value("--icmp-type").or(value("--icmpv6-type")), value("--icmp-code").or(value("--icmpv6-code"))) {
            (Some(t), Some(c)) => {
                let id = value("--icmp-id").or(value("--icmpv6-id")).unwrap_or("0");
                Some((t.parse().ok()?, c.parse().ok()?, id.parse().ok()?))
            }
            _ => None,
        };
        Some(CtEntry { zone, src, dst, protocol, ports, icmp, protocol_name })
    }

    /// The `conntrack -R` line that deletes exactly this entry (in its zone only).
    pub fn delete_line(&self) -> String {
        let mut line = format!("-D -w {} -s {} -d {} -p {}", self.zone, self.src, self.dst, self.protocol_name);
        if let Some((sport, dport)) = self.ports {
            line.push_str(&format!(" --sport {sport} --dport {dport}"));
        }
        if let Some((kind, code, id)) = self.icmp {
            let flag = if self.protocol == 58 { "icmpv6" } else { "icmp" };
            line.push_str(&format!(" --{flag}-type {kind} --{flag}-code {code} --{flag}-id {id}"));
        }
        line
    }

    /// The flow a port sees: egress when the port is the source, ingress when it is the
    /// destination.
    fn flow(&self, direction: Direction) -> Flow {
        let (dport_or_type, code) = match (self.ports, self.icmp) {
            (_, Some((kind, code, _))) => (u16::from(kind), code),
            (Some((_, dport)), None) => (dport, 0),
            (None, None) => (0, 0),
        };
        let remote = if direction == Direction::Egress { self.dst } else { self.src };
        Flow { direction, remote, protocol: self.protocol, dport_or_type, code }
    }
}

/// The entries through a port of `host` that its policy would not admit as new connections: the
/// source port's egress rules or the destination port's ingress rules do not allow the entry's
/// original direction. A port is found by address in the entry's zone (a bridged port's own
/// zone, or the default zone for what the host routes); entries between addresses of no port
/// are not the policy's business.
pub fn inadmissible<'a>(host: &CompiledHost, layout: &Layout, entries: &'a [CtEntry]) -> Vec<&'a CtEntry> {
    let mut by_address: HashMap<(IpAddr, u16), Vec<uuid::Uuid>> = HashMap::new();
    for port in &host.ports {
        let zone = layout.zone_of(&port.device);
        let ips = port.ipv4.iter().map(|a| IpAddr::V4(*a)).chain(port.ipv6.iter().map(|a| IpAddr::V6(*a)));
        for ip in ips {
            by_address.entry((ip, 0)).or_default().push(port.id);
            if zone != 0 {
                by_address.entry((ip, zone)).or_default().push(port.id);
            }
        }
    }
    let admits = |port: uuid::Uuid, flow: &Flow| host.verdict(port, flow).is_some();
    entries
        .iter()
        .filter(|e| {
            let senders = by_address.get(&(e.src, e.zone)).map(Vec::as_slice).unwrap_or_default();
            let receivers = by_address.get(&(e.dst, e.zone)).map(Vec::as_slice).unwrap_or_default();
            senders.iter().any(|p| !admits(*p, &e.flow(Direction::Egress)))
                || receivers.iter().any(|p| !admits(*p, &e.flow(Direction::Ingress)))
        })
        .collect()
}

/// The rules each port enforces: (port id, its addresses, the matches of its groups).
fn effective(host: &CompiledHost) -> Vec<(uuid::Uuid, Vec<IpAddr>, BTreeSet<MatchKey>)> {
    host.ports
        .iter()
        .map(|port| {
            let ips: Vec<IpAddr> = port.ipv4.iter().map(|a| IpAddr::V4(*a)).chain(port.ipv6.iter().map(|a| IpAddr::V6(*a))).collect();
            let matches = port
                .groups
                .iter()
                .filter_map(|g| host.groups.get(g))
                .flat_map(|g| g.ingress.iter().chain(g.egress.iter()))
                .map(MatchKey::from)
                .collect();
            (port.id, ips, matches)
        })
        .collect()
}

/// A match with what conntrack needs, ordered so it can live in a set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct MatchKey {
    rule_id: uuid::Uuid,
    direction: Direction,
    family: Ethertype,
    protocol: Option<u8>,
    l4: L4,
    remote: Remote,
}

impl From<&Match> for MatchKey {
    fn from(m: &Match) -> Self {
        MatchKey { rule_id: m.rule_id, direction: m.direction, family: m.family, protocol: m.protocol, l4: m.l4, remote: m.remote }
    }
}

fn same_family(ip: &IpAddr, family: Ethertype) -> bool {
    ip.is_ipv4() == (family == Ethertype::IPv4)
}

fn family_flag(family: Ethertype) -> &'static str {
    if family == Ethertype::IPv4 { "ipv4" } else { "ipv6" }
}

/// What a change revoked, as `conntrack -D` filters: each rule a port enforced before and not now
/// (by the port's address, protocol and a single destination port), and each address that left a
/// remote group one of its rules names (the entries between that address and the port). The
/// applier reconciles connection tracking when this is not empty.
pub fn revoked_flows(old: &CompiledHost, new: &CompiledHost) -> Vec<Vec<String>> {
    let mut out: BTreeSet<Vec<String>> = BTreeSet::new();
    let new_effective = effective(new);
    for (port, ips, old_matches) in effective(old) {
        let now = new_effective.iter().find(|(id, _, _)| *id == port);
        for m in &old_matches {
            let still = now.is_some_and(|(_, _, matches)| matches.contains(m));
            if !still {
                for ip in ips.iter().filter(|ip| same_family(ip, m.family)) {
                    let mut args = vec!["-f".to_string(), family_flag(m.family).to_string()];
                    args.push(if m.direction == Direction::Ingress { "-d" } else { "-s" }.to_string());
                    args.push(ip.to_string());
                    if let Some(protocol) = m.protocol {
                        args.extend(["-p".to_string(), protocol.to_string()]);
                        if let L4::Ports(min, max) = m.l4
                            && min == max
                            && matches!(protocol, 6 | 17 | 132 | 33 | 136)
                        {
                            args.extend(["--dport".to_string(), min.to_string()]);
                        }
                    }
                    out.insert(args);
                }
            }
            // Members that left a remote group this (still enforced) rule names.
            if let (Remote::Group(group), Some((_, new_ips, _))) = (m.remote, now) {
                let (Some(before), after) = (old.remote_groups.get(&group), new.remote_groups.get(&group)) else { continue };
                let left: Vec<IpAddr> = before
                    .ipv4
                    .iter()
                    .filter(|a| after.is_none_or(|n| !n.ipv4.contains(a)))
                    .map(|a| IpAddr::V4(*a))
                    .chain(before.ipv6.iter().filter(|a| after.is_none_or(|n| !n.ipv6.contains(a))).map(|a| IpAddr::V6(*a)))
                    .filter(|a| same_family(a, m.family))
                    .collect();
                for member in left {
                    for ip in new_ips.iter().filter(|ip| same_family(ip, m.family)) {
                        let (src, dst) = if m.direction == Direction::Ingress { (member, *ip) } else { (*ip, member) };
                        out.insert(vec![
                            "-f".into(),
                            family_flag(m.family).into(),
                            "-s".into(),
                            src.to_string(),
                            "-d".into(),
                            dst.to_string(),
                        ]);
                    }
                }
            }
        }
    }
    out.into_iter().collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::nft::{BridgeLayout, Placement};
    use palisade_core::policy::{GroupPolicy, HostPolicy, PortPolicy, RemoteGroup, RulePolicy, compile};
    use uuid::Uuid;

    fn host(rules: Vec<RulePolicy>, members: Vec<&str>) -> CompiledHost {
        let group = Uuid::from_u128(1);
        compile(&HostPolicy {
            host: "h".into(),
            revision: 1,
            ports: vec![PortPolicy {
                id: Uuid::from_u128(10),
                instance_id: Uuid::from_u128(11),
                device: "tap0".into(),
                mac_address: "02:00:00:00:00:01".into(),
                fixed_ips: vec!["10.0.0.5".parse().unwrap(), "fd00::5".parse().unwrap()],
                security_group_ids: vec![group],
                flow_log: None,
            }],
            security_groups: vec![GroupPolicy { id: group, rules }],
            remote_groups: vec![RemoteGroup { id: Uuid::from_u128(2), members: members.iter().map(|m| m.parse().unwrap()).collect() }],
        })
        .unwrap()
    }

    pub(crate) fn ssh() -> RulePolicy {
        RulePolicy {
            id: Uuid::from_u128(100),
            direction: "ingress".into(),
            ethertype: "IPv4".into(),
            protocol: Some(6),
            port_range_min: Some(22),
            port_range_max: Some(22),
            remote_ip_prefix: None,
            remote_group_id: None,
        }
    }

    fn from_peers() -> RulePolicy {
        RulePolicy {
            id: Uuid::from_u128(101),
            protocol: None,
            port_range_min: None,
            port_range_max: None,
            remote_group_id: Some(Uuid::from_u128(2)),
            ..ssh()
        }
    }

    fn egress_all() -> RulePolicy {
        RulePolicy {
            id: Uuid::from_u128(102),
            direction: "egress".into(),
            protocol: None,
            port_range_min: None,
            port_range_max: None,
            ..ssh()
        }
    }

    #[test]
    fn revoking_a_rule_is_seen() {
        let flows = revoked_flows(&host(vec![ssh(), from_peers()], vec![]), &host(vec![from_peers()], vec![]));
        let expected: Vec<String> = ["-f", "ipv4", "-d", "10.0.0.5", "-p", "6", "--dport", "22"].iter().map(|s| s.to_string()).collect();
        assert_eq!(flows, vec![expected]);
        assert!(revoked_flows(&host(vec![ssh()], vec![]), &host(vec![ssh()], vec![])).is_empty());
    }

    #[test]
    fn a_member_leaving_is_seen() {
        let flows = revoked_flows(&host(vec![from_peers()], vec!["10.0.0.7", "10.0.0.8"]), &host(vec![from_peers()], vec!["10.0.0.8"]));
        let expected: Vec<String> = ["-f", "ipv4", "-s", "10.0.0.7", "-d", "10.0.0.5"].iter().map(|s| s.to_string()).collect();
        assert_eq!(flows, vec![expected]);
    }

    #[test]
    fn conntrack_save_lines_parse_and_delete_exactly() {
        let tcp = CtEntry::parse("-A -t 99 -u ASSURED -w 7 -s 10.0.0.1 -d 10.0.0.5 -r 10.0.0.5 -q 10.0.0.1 -p tcp --sport 40000 --dport 22 --reply-port-src 22 --reply-port-dst 40000 --state ESTABLISHED").unwrap();
        assert_eq!((tcp.zone, tcp.protocol, tcp.ports), (7, 6, Some((40000, 22))));
        assert_eq!(tcp.delete_line(), "-D -w 7 -s 10.0.0.1 -d 10.0.0.5 -p tcp --sport 40000 --dport 22");
        let ping = CtEntry::parse(
            "-A -t 29 -u UNSET -s fd00::1 -d fd00::5 -r fd00::5 -q fd00::1 -p icmpv6 --icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 9",
        )
        .unwrap();
        assert_eq!((ping.zone, ping.protocol, ping.icmp), (0, 58, Some((128, 0, 9))));
        assert_eq!(ping.delete_line(), "-D -w 0 -s fd00::1 -d fd00::5 -p icmpv6 --icmpv6-type 128 --icmpv6-code 0 --icmpv6-id 9");
        let gre = CtEntry::parse("-A -t 29 -u UNSET -s 10.0.0.1 -d 10.0.0.5 -r 10.0.0.5 -q 10.0.0.1 -p gre --srckey 0 --dstkey 0").unwrap();
        assert_eq!((gre.protocol, gre.ports, gre.delete_line().as_str()), (47, None, "-D -w 0 -s 10.0.0.1 -d 10.0.0.5 -p gre"));
        assert_eq!(CtEntry::parse("conntrack v1.4.7 (conntrack-tools): 3 flow entries have been shown."), None);
    }

    fn entry(src: &str, dst: &str, dport: u16, zone: u16) -> CtEntry {
        CtEntry::parse(&format!("-A -t 9 -w {zone} -s {src} -d {dst} -r {dst} -q {src} -p tcp --sport 40000 --dport {dport}")).unwrap()
    }

    #[test]
    fn only_entries_the_policy_would_not_admit_are_inadmissible() {
        let h = host(vec![ssh(), egress_all()], vec![]);
        let routed = Layout::routed("tap");
        let entries = vec![
            entry("10.9.9.9", "10.0.0.5", 22, 0), // ingress 22: allowed
            entry("10.9.9.9", "10.0.0.5", 80, 0), // ingress 80: not
            entry("10.0.0.5", "10.9.9.9", 80, 0), // egress: allowed
            entry("10.9.9.9", "10.9.9.8", 80, 0), // no port: not ours
            entry("10.9.9.9", "10.0.0.5", 80, 3), // another zone: not this (routed) port's
        ];
        let doomed: Vec<&CtEntry> = inadmissible(&h, &routed, &entries);
        assert_eq!(doomed, vec![&entries[1]]);
        // Bridged in zone 3: its bridged flows and what the host routes to it are both its own.
        let mut bridged = routed.clone();
        bridged.placements.insert("tap0".into(), Placement::Bridged { bridge: "br0".into(), id: 1 });
        bridged.bridges.insert("br0".into(), BridgeLayout { zone: 3, uplinks: BTreeSet::new() });
        assert_eq!(inadmissible(&h, &bridged, &entries), vec![&entries[1], &entries[4]]);
        // Without any egress rule, the port's own connections go too.
        let h = host(vec![ssh()], vec![]);
        assert_eq!(inadmissible(&h, &routed, &entries), vec![&entries[1], &entries[2]]);
    }
}
