//! `palisade-loadgen seed-file`: writes a `palisade import` file (the `palisade-export` JSON lines
//! of `crates/store/src/transfer.rs`) holding `--groups` groups of `--rules` rules and `--ports`
//! ports spread over `--hosts` hosts, without an API or a database: the fast way to fill a store
//! for the scale runs of issue 16 (a million groups through the API would take hours).
//!
//! Streamed: one line per group or port, written as it is made, so memory stays flat whatever the
//! size. Ids are derived from the item's number (and so are the same from one run to the next):
//! groups, rules, ports and instances each have their own first UUID field. Every group has the
//! same rule shapes (ingress TCP to ports 1000, 1001, … from 10.0.0.0/8, as `--workload seed`
//! makes them); port `k` is on host `{host_prefix}{k % hosts}` and bound to group `k % groups`.
//! Groups go round-robin over projects `1..=projects` of client `client_id`, region 1, and each of
//! those projects gets an unlimited quota, so writes after the import are not refused by the
//! default quota. No API key is written: create them with `palisade keys create` after the import.

use std::io::Write;

use serde_json::{Value, json};

/// What the import file holds.
#[derive(clap::Args, Debug, Clone)]
pub struct SeedFile {
    #[arg(long, default_value_t = 10_000)]
    pub groups: u64,
    /// Rules per group.
    #[arg(long, default_value_t = 10)]
    pub rules: u64,
    #[arg(long, default_value_t = 1_000)]
    pub ports: u64,
    #[arg(long, default_value_t = 50)]
    pub hosts: u64,
    /// Groups are spread round-robin over projects 1..=N.
    #[arg(long, default_value_t = 1)]
    pub projects: i64,
    #[arg(long, default_value_t = 1)]
    pub client_id: i64,
    /// Host names are this prefix and the host's number.
    #[arg(long, default_value = "seed-h")]
    pub host_prefix: String,
}

/// The first field of each kind of id, so that no two ids of the file are equal.
const GROUP_ID: u32 = 0x5eed_0001;
const RULE_ID: u32 = 0x5eed_0002;
const PORT_ID: u32 = 0x5eed_0003;
const INSTANCE_ID: u32 = 0x5eed_0004;

/// A version-4-shaped UUID made of a kind and a 48-bit number.
fn id(kind: u32, n: u64) -> String {
    format!("{kind:08x}-0000-4000-8000-{:012x}", n & 0xffff_ffff_ffff)
}

/// Port `k`'s address: 10.a.b.c with c in 1..=250, so no address ends in .0 or .255.
pub(crate) fn fixed_ip(k: u64) -> String {
    format!("10.{}.{}.{}", (k / 62_500) % 256, (k / 250) % 250, 1 + k % 250)
}

/// Port `k`'s MAC address (locally administered, unique for 2^24 ports).
fn mac(k: u64) -> String {
    format!("fa:16:3e:{:02x}:{:02x}:{:02x}", (k >> 16) & 0xff, (k >> 8) & 0xff, k & 0xff)
}

impl SeedFile {
    fn project_of(&self, group: u64) -> i64 {
        1 + (group % self.projects.max(1) as u64) as i64
    }

    fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.projects >= 1, "--projects must be at least 1");
        anyhow::ensure!(self.ports == 0 || (self.groups > 0 && self.hosts > 0), "ports need at least one group and one host");
        anyhow::ensure!(self.rules <= 64_000, "--rules: at most 64,000 distinct rules per group");
        anyhow::ensure!(self.ports < 1 << 24, "--ports: at most 2^24 (distinct MAC addresses)");
        Ok(())
    }

    fn group(&self, i: u64, created_at: i64) -> Value {
        let rules: Vec<Value> = (0..self.rules)
            .map(|j| {
                json!({"id": id(RULE_ID, i * self.rules + j), "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
                    "port_range_min": 1000 + j, "port_range_max": 1000 + j, "remote_ip_prefix": "10.0.0.0/8",
                    "remote_group_id": null, "description": "", "created_at": created_at})
            })
            .collect();
        json!({"type": "group", "id": id(GROUP_ID, i), "client_id": self.client_id, "project_id": self.project_of(i), "region_id": 1,
            "name": format!("seed-{i}"), "description": "", "created_at": created_at, "updated_at": created_at,
            "revision_number": 0, "rules": rules, "tags": []})
    }

    fn port(&self, k: u64, created_at: i64) -> Value {
        let group = k % self.groups;
        json!({"type": "port", "id": id(PORT_ID, k), "client_id": self.client_id, "project_id": self.project_of(group), "region_id": 1,
            "instance_id": id(INSTANCE_ID, k), "instance_name": format!("seed-vm-{k}"),
            "host": format!("{}{}", self.host_prefix, k % self.hosts), "device": format!("tap{k:x}"), "mac": mac(k),
            "fixed_ips": [fixed_ip(k)], "security_group_ids": [id(GROUP_ID, group)], "created_at": created_at, "updated_at": created_at})
    }

    /// Writes the whole file; `now_ms` is the creation time of the last group (each earlier one a
    /// millisecond before the next, so creation order and time agree).
    pub fn write(&self, out: &mut dyn Write, now_ms: i64) -> anyhow::Result<()> {
        self.check()?;
        let mut line = |value: &Value| -> anyhow::Result<()> {
            serde_json::to_writer(&mut *out, value)?;
            out.write_all(b"\n")?;
            Ok(())
        };
        let first = now_ms - self.groups as i64;
        line(
            &json!({"type": "header", "format": "palisade-export", "version": 1, "source": "palisade-loadgen seed-file", "exported_at": now_ms}),
        )?;
        for project in 1..=self.projects {
            line(&json!({"type": "quota", "client_id": self.client_id, "project_id": project, "region_id": 1,
                "security_group_count": -1, "security_group_rule_count": -1}))?;
        }
        for i in 0..self.groups {
            line(&self.group(i, first + i as i64))?;
        }
        for k in 0..self.ports {
            line(&self.port(k, now_ms))?;
        }
        line(&json!({"type": "end", "groups": self.groups, "rules": self.groups * self.rules, "tags": 0, "tasks": 0,
            "api_keys": 0, "quotas": self.projects, "ports": self.ports}))?;
        out.flush()?;
        Ok(())
    }
}

/// `seed-file`: the file on standard output, a summary on standard error.
pub fn run(seed: &SeedFile) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    seed.write(&mut out, now_ms)?;
    eprintln!(
        "wrote {} groups of {} rules, {} ports on {} hosts, {} projects in {:.1} s",
        seed.groups,
        seed.rules,
        seed.ports,
        seed.hosts,
        seed.projects,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use palisade_store::prelude::*;
    use palisade_store::transfer;
    use palisade_store::{Database, PortFilter};

    use super::*;

    fn tiny() -> SeedFile {
        SeedFile { groups: 7, rules: 3, ports: 5, hosts: 2, projects: 2, client_id: 4, host_prefix: "h".into() }
    }

    /// The file is what `palisade import` reads: the store's own importer takes it whole and
    /// holds exactly what it says.
    #[test]
    fn the_store_imports_the_file() {
        let mut file = Vec::new();
        tiny().write(&mut file, 1_700_000_000_000).expect("write");
        let path = std::env::temp_dir().join(format!("palisade-seed-file-{}.db", std::process::id()));
        let db = Database::open(&format!("sqlite:{}", path.display()), "normal").expect("open sqlite");
        let summary = transfer::import(&db, &mut Cursor::new(&file)).expect("import");
        assert_eq!((summary.groups, summary.rules, summary.ports, summary.quotas, summary.api_keys), (7, 21, 5, 2, 0));

        let ports = db.read(|tx| tx.list_ports(None, &PortFilter::default())).expect("ports");
        let on_h1: Vec<_> = ports.iter().filter(|p| p.host == "h1").collect();
        assert_eq!((ports.len(), on_h1.len()), (5, 2), "ports 1 and 3 are on host h1");
        assert!(ports.iter().all(|p| p.scope.client_id == 4 && p.security_group_ids.len() == 1));
        let groups = db.read(|tx| tx.export_groups(0, 100)).expect("groups");
        assert_eq!(groups.len(), 7);
        let (_, last) = &groups[6];
        assert_eq!((last.name.as_str(), last.scope.project_id, last.rules.len()), ("seed-6", 1, 3));
        assert!(last.created_at > groups[0].1.created_at, "creation times follow creation order");
        drop(db);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    #[test]
    fn ids_and_addresses_never_repeat() {
        let ids: std::collections::HashSet<String> =
            (0..1000).flat_map(|n| [id(GROUP_ID, n), id(RULE_ID, n), id(PORT_ID, n), id(INSTANCE_ID, n)]).collect();
        assert_eq!(ids.len(), 4000);
        let ips: std::collections::HashSet<String> = (0..100_000).map(fixed_ip).collect();
        assert_eq!(ips.len(), 100_000);
        assert!(ips.iter().all(|ip| !ip.ends_with(".0") && !ip.ends_with(".255")));
        assert_eq!(mac(0x01_02_03), "fa:16:3e:01:02:03");
        assert!(SeedFile { ports: 1, groups: 0, ..tiny() }.write(&mut Vec::new(), 0).is_err(), "a port needs a group");
    }
}
