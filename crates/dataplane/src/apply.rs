//! Applying rulesets to the kernel: one `nft -f` transaction per change (a full replace the first
//! time and whenever an incremental one fails), nothing when nothing changed, and conntrack
//! entries of revoked rules and removed remote-group members deleted after the new ruleset is in.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::process::Stdio;

use anyhow::{Context, bail};
use palisade_core::policy::{CompiledHost, L4, Match, Remote};
use palisade_core::rule::{Direction, Ethertype};
use tokio::io::AsyncWriteExt;

use crate::nft::{Ruleset, render};

/// The commands the applier runs (overridable for tests and unusual installs).
#[derive(Debug, Clone)]
pub struct Tools {
    pub nft: String,
    pub conntrack: String,
}

impl Default for Tools {
    fn default() -> Self {
        Tools { nft: "nft".into(), conntrack: "conntrack".into() }
    }
}

/// What one apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The rendered ruleset equals the applied one: the kernel was not touched.
    Unchanged,
    /// The table was replaced whole; the script's size in bytes.
    Replaced { bytes: usize },
    /// An incremental transaction; its size in bytes and lines.
    Updated { bytes: usize, lines: usize },
}

/// The applied state of one host's table.
#[derive(Default)]
pub struct Applier {
    pub tools: Tools,
    current: Option<(Ruleset, CompiledHost)>,
    /// The last script sent to `nft`.
    pub last_script: String,
    /// Conntrack deletions of the last apply (arguments of each `conntrack -D`).
    pub last_flushes: Vec<Vec<String>>,
}

impl Applier {
    pub fn new(tools: Tools) -> Applier {
        Applier { tools, ..Applier::default() }
    }

    /// Forgets what was applied, so the next apply replaces the whole table.
    pub fn reset(&mut self) {
        self.current = None;
    }

    /// Whether the kernel still has the table this applier filled (someone may have deleted or
    /// flushed it). Lists one base chain: cheap whatever the size of the table.
    pub async fn table_present(&self) -> anyhow::Result<bool> {
        if self.current.is_none() {
            return Ok(true);
        }
        let output = tokio::process::Command::new(&self.tools.nft)
            .args(["list", "chain", "inet", "palisade", "forward"])
            .stdin(Stdio::null())
            .output()
            .await
            .with_context(|| format!("running {}", self.tools.nft))?;
        Ok(output.status.success() && String::from_utf8_lossy(&output.stdout).contains("vmap @port_ingress"))
    }

    pub async fn apply(&mut self, host: CompiledHost) -> anyhow::Result<Outcome> {
        let ruleset = render(&host);
        self.last_flushes.clear();
        let outcome = match &self.current {
            None => {
                let script = ruleset.full_script();
                self.run_nft(&script).await.context("replacing the table")?;
                Outcome::Replaced { bytes: script.len() }
            }
            Some((old, _)) => match old.diff_script(&ruleset) {
                None => Outcome::Unchanged,
                Some(script) => match self.run_nft(&script).await {
                    Ok(()) => Outcome::Updated { bytes: script.len(), lines: script.lines().count() },
                    Err(e) => {
                        // The kernel is not what we think (someone changed the table): start over.
                        tracing::warn!(error = %format!("{e:#}"), "incremental update failed; replacing the table");
                        let script = ruleset.full_script();
                        self.run_nft(&script).await.context("replacing the table")?;
                        Outcome::Replaced { bytes: script.len() }
                    }
                },
            },
        };
        if let Some((_, old_host)) = &self.current {
            self.last_flushes = revoked_flows(old_host, &host);
            for args in self.last_flushes.clone() {
                self.run_conntrack(&args).await;
            }
        }
        self.current = Some((ruleset, host));
        Ok(outcome)
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

    async fn run_conntrack(&self, args: &[String]) {
        let result = tokio::process::Command::new(&self.tools.conntrack)
            .arg("-D")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        // conntrack exits 1 when nothing matched: that is fine.
        if let Err(e) = result {
            tracing::warn!(error = %e, ?args, "conntrack -D could not run");
        }
    }
}

fn family_flag(family: Ethertype) -> &'static str {
    if family == Ethertype::IPv4 { "ipv4" } else { "ipv6" }
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

/// `conntrack -D` arguments for the flows a port may no longer have: those of each rule the port
/// enforced before and not now (by the port's address, protocol and a single destination port),
/// and those between the port and each address that left a remote group one of its rules names.
/// Flows that the remaining rules still allow are re-admitted by them at their next packet.
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
                        if let L4::Ports(min, max) = m.l4 {
                            if min == max && matches!(protocol, 6 | 17 | 132 | 33 | 136) {
                                args.extend(["--dport".to_string(), min.to_string()]);
                            }
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
mod tests {
    use super::*;
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
            }],
            security_groups: vec![GroupPolicy { id: group, rules }],
            remote_groups: vec![RemoteGroup { id: Uuid::from_u128(2), members: members.iter().map(|m| m.parse().unwrap()).collect() }],
        })
        .unwrap()
    }

    fn ssh() -> RulePolicy {
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

    #[test]
    fn revoking_a_rule_deletes_its_flows_to_the_port() {
        let flows = revoked_flows(&host(vec![ssh(), from_peers()], vec![]), &host(vec![from_peers()], vec![]));
        let expected: Vec<String> = ["-f", "ipv4", "-d", "10.0.0.5", "-p", "6", "--dport", "22"].iter().map(|s| s.to_string()).collect();
        assert_eq!(flows, vec![expected]);
        assert!(revoked_flows(&host(vec![ssh()], vec![]), &host(vec![ssh()], vec![])).is_empty());
    }

    #[test]
    fn a_member_leaving_deletes_its_flows_with_the_port() {
        let flows = revoked_flows(&host(vec![from_peers()], vec!["10.0.0.7", "10.0.0.8"]), &host(vec![from_peers()], vec!["10.0.0.8"]));
        let expected: Vec<String> = ["-f", "ipv4", "-s", "10.0.0.7", "-d", "10.0.0.5"].iter().map(|s| s.to_string()).collect();
        assert_eq!(flows, vec![expected]);
    }
}
