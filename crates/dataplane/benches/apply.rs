//! Data-plane benchmark (docs/benchmarks.md, "Data plane"): compile + render + `nft -f` apply of
//! synthetic host policies (100 / 1,000 / 10,000 rules over 10 / 100 / 1,000 ports), and the size
//! and apply time of the incremental change for one added rule and for one remote-group member;
//! then a shared host — 1,000 ports of 50 clients, 10,000 rules — with every port routed, and
//! with every port on one bridge per client.
//!
//! Needs root; runs in a network namespace of its own (`palbench-<pid>`, deleted at the end), so
//! the host's ruleset is never touched. `cargo bench -p palisade-dataplane --bench apply`
//! (`-- quick` for the small cases only, `-- tenants` for the shared host only).

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::{Duration, Instant};

use palisade_core::policy::{GroupPolicy, HostPolicy, PortPolicy, RemoteGroup, RulePolicy, compile};
use std::collections::BTreeSet;

use palisade_dataplane::apply::{Applier, Outcome, Tools};
use palisade_dataplane::nft::{BridgeLayout, Layout, Placement, render};
use uuid::Uuid;

fn rule(i: usize, groups: &[Uuid]) -> RulePolicy {
    let id = Uuid::new_v4();
    let base = RulePolicy {
        id,
        direction: "ingress".into(),
        ethertype: "IPv4".into(),
        protocol: Some(6),
        port_range_min: Some(1000 + (i % 50_000) as u16),
        port_range_max: Some(1000 + (i % 50_000) as u16),
        remote_ip_prefix: None,
        remote_group_id: None,
    };
    match i % 10 {
        // Port ranges from a prefix.
        0..=3 => RulePolicy { remote_ip_prefix: Some(format!("10.{}.{}.0/24", (i / 256) % 256, i % 256)), ..base },
        // UDP from anywhere.
        4 | 5 => RulePolicy { protocol: Some(17), ..base },
        // From a remote group.
        6 | 7 => RulePolicy { remote_group_id: Some(groups[i % groups.len()]), ..base },
        // ICMP echo, IPv6 TCP, and egress.
        8 => RulePolicy { protocol: Some(1), port_range_min: Some(8), port_range_max: Some(0), ..base },
        _ => RulePolicy { ethertype: "IPv6".into(), direction: if i % 20 == 9 { "egress".into() } else { "ingress".into() }, ..base },
    }
}

/// `rules` rules over `groups` groups; port i is bound to group i % groups; every group is also a
/// remote group with 20 members on other hosts.
fn policy(ports: usize, rules: usize) -> HostPolicy {
    let group_count = (ports / 5).clamp(2, 50);
    let group_ids: Vec<Uuid> = (0..group_count).map(|_| Uuid::new_v4()).collect();
    let mut groups: Vec<GroupPolicy> = group_ids.iter().map(|id| GroupPolicy { id: *id, rules: Vec::new() }).collect();
    for i in 0..rules {
        groups[i % group_count].rules.push(rule(i, &group_ids));
    }
    let ports = (0..ports)
        .map(|i| PortPolicy {
            id: Uuid::new_v4(),
            instance_id: Uuid::new_v4(),
            device: format!("tap{i}"),
            mac_address: format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256),
            fixed_ips: vec![IpAddr::V4(Ipv4Addr::new(10, 200, (i / 256) as u8, (i % 256) as u8)), format!("fd00::{i:x}").parse().unwrap()],
            security_group_ids: vec![group_ids[i % group_count]],
            flow_log: None,
        })
        .collect();
    let remote_groups = group_ids
        .iter()
        .enumerate()
        .map(|(g, id)| RemoteGroup { id: *id, members: (0..20).map(|m| IpAddr::V4(Ipv4Addr::new(10, 201, g as u8, m as u8))).collect() })
        .collect();
    HostPolicy { host: "bench".into(), revision: 1, ports, security_groups: groups, remote_groups }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// A host shared by `clients` clients: each has 4 groups (every rule of a client's groups names
/// its own groups as remote groups, never another client's), `ports / clients` ports bound to one
/// or two of its groups, and 20 members of each group on other hosts. Rule ids and group ids are
/// random, as the API makes them.
fn shared_policy(clients: usize, ports: usize, rules: usize) -> HostPolicy {
    let groups_per_client = 4;
    let client_groups: Vec<Vec<Uuid>> = (0..clients).map(|_| (0..groups_per_client).map(|_| Uuid::new_v4()).collect()).collect();
    let mut groups: Vec<GroupPolicy> = client_groups.iter().flatten().map(|id| GroupPolicy { id: *id, rules: Vec::new() }).collect();
    for i in 0..rules {
        let client = i % clients;
        let g = client * groups_per_client + (i / clients) % groups_per_client;
        groups[g].rules.push(rule(i, &client_groups[client]));
    }
    let per_client = ports / clients;
    let ports = (0..ports)
        .map(|i| {
            let client = (i / per_client).min(clients - 1);
            let own = &client_groups[client];
            let mut bound = vec![own[i % groups_per_client]];
            if i % 3 == 0 {
                bound.push(own[(i + 1) % groups_per_client]);
            }
            PortPolicy {
                id: Uuid::new_v4(),
                instance_id: Uuid::new_v4(),
                device: format!("tap{i}"),
                mac_address: format!("02:00:00:00:{:02x}:{:02x}", i / 256, i % 256),
                fixed_ips: vec![
                    IpAddr::V4(Ipv4Addr::new(10, 200, (i / 256) as u8, (i % 256) as u8)),
                    format!("fd00::{i:x}").parse().unwrap(),
                ],
                security_group_ids: bound,
                flow_log: None,
            }
        })
        .collect();
    let remote_groups = client_groups
        .iter()
        .flatten()
        .enumerate()
        .map(|(g, id)| RemoteGroup {
            id: *id,
            members: (0..20).map(|m| IpAddr::V4(Ipv4Addr::new(10, 201, (g / 8) as u8, ((g % 8) * 20 + m) as u8))).collect(),
        })
        .collect();
    HostPolicy { host: "bench".into(), revision: 1, ports, security_groups: groups, remote_groups }
}

/// Every port on the bridge of its client (`br<client>`, zone 100 + client, one uplink each).
fn bridged_layout(p: &HostPolicy, clients: usize) -> Layout {
    let mut layout = Layout::routed("tap");
    let per_client = p.ports.len() / clients;
    for (i, port) in p.ports.iter().enumerate() {
        let client = (i / per_client).min(clients - 1);
        layout.placements.insert(port.device.clone(), Placement::Bridged { bridge: format!("br{client}"), id: i as u16 + 1 });
    }
    for client in 0..clients {
        layout
            .bridges
            .insert(format!("br{client}"), BridgeLayout { zone: 100 + client as u16, uplinks: BTreeSet::from([format!("vx{client}")]) });
    }
    layout
}

async fn case(ports: usize, rules: usize) {
    measure(&format!("| {rules:>6} | {ports:>5} "), policy(ports, rules), |_| Layout::routed("tap")).await;
}

async fn measure(label: &str, p: HostPolicy, layout_of: impl Fn(&HostPolicy) -> Layout) {
    let mut applier = Applier::new(Tools::default());
    let layout = layout_of(&p);
    // Compile + render + script (what the agent does before calling nft).
    let started = Instant::now();
    let compiled = compile(&p).expect("compiles");
    let script = render(&compiled, &layout).full_script();
    let compile_time = started.elapsed();
    let started = Instant::now();
    let outcome = applier.apply(compiled, layout.clone()).await.expect("full apply");
    let apply_time = started.elapsed();
    assert!(matches!(outcome, Outcome::Replaced { .. }));

    // One rule more in one group.
    let mut one_rule = p.clone();
    let rules = p.security_groups.iter().map(|g| g.rules.len()).sum::<usize>();
    one_rule.security_groups[0].rules.push(rule(rules + 1, &[p.security_groups[0].id]));
    let started = Instant::now();
    let outcome = applier.apply(compile(&one_rule).unwrap(), layout.clone()).await.expect("rule apply");
    let rule_time = started.elapsed();
    let Outcome::Updated { bytes: rule_bytes, lines: rule_lines } = outcome else { panic!("{outcome:?}") };

    // One member more in one remote group.
    let mut one_member = one_rule.clone();
    let referenced = p.security_groups.iter().flat_map(|g| g.rules.iter()).find_map(|r| r.remote_group_id).expect("a remote group rule");
    one_member.remote_groups.iter_mut().find(|g| g.id == referenced).unwrap().members.push("10.202.0.1".parse().unwrap());
    let started = Instant::now();
    let outcome = applier.apply(compile(&one_member).unwrap(), layout.clone()).await.expect("member apply");
    let member_time = started.elapsed();
    let Outcome::Updated { bytes: member_bytes, lines: member_lines } = outcome else { panic!("{outcome:?}") };

    // Unchanged: no nft call at all.
    let started = Instant::now();
    assert_eq!(applier.apply(compile(&one_member).unwrap(), layout.clone()).await.unwrap(), Outcome::Unchanged);
    let noop_time = started.elapsed();

    println!(
        "{label}| {:>8.1} | {:>8.1} | {:>9} | {:>9.1} | {rule_bytes} B / {rule_lines} lines | {:>6.1} | {member_bytes} B / {member_lines} lines | {:>6.1} | {:.3} |",
        ms(compile_time),
        ms(apply_time),
        script.len(),
        ms(compile_time + apply_time),
        ms(rule_time),
        ms(member_time),
        ms(noop_time),
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench`; a test runner listing or running targets in test mode does not.
    if !args.iter().any(|a| a == "--bench") {
        if !args.iter().any(|a| a == "--list") {
            eprintln!("the data-plane benchmark runs with: cargo bench -p palisade-dataplane --bench apply");
        }
        return;
    }
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("SKIPPED: the data-plane benchmark needs root (it loads rulesets into a network namespace)");
        return;
    }
    let quick = args.iter().any(|a| a == "quick");
    let name = format!("palbench-{}", std::process::id());
    assert!(Command::new("ip").args(["netns", "add", &name]).status().unwrap().success());
    let _cleanup = DeleteNetns(name.clone());
    let file = std::fs::File::open(format!("/run/netns/{name}")).unwrap();
    assert_eq!(unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    println!(
        "| rules | ports | compile+render ms | nft apply ms | script bytes | total ms | +1 rule: change | apply ms | +1 member: change | apply ms | unchanged ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let cases: &[(usize, usize)] = if quick {
        &[(10, 100), (100, 1_000)]
    } else {
        &[(10, 100), (100, 100), (1_000, 100), (10, 1_000), (100, 1_000), (1_000, 1_000), (10, 10_000), (100, 10_000), (1_000, 10_000)]
    };
    let tenants_only = args.iter().any(|a| a == "tenants");
    runtime.block_on(async {
        if !tenants_only {
            for &(ports, rules) in cases {
                case(ports, rules).await;
            }
        }
        // The shared host: 1,000 ports of 50 clients, 10,000 rules; three runs of each layout.
        println!();
        println!(
            "| layout (1,000 ports, 50 clients, 10,000 rules) | compile+render ms | nft apply ms | script bytes | total ms | +1 rule: change | apply ms | +1 member: change | apply ms | unchanged ms |"
        );
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for _ in 0..3 {
            let p = shared_policy(50, 1_000, 10_000);
            measure("| routed ", p.clone(), |_| Layout::routed("tap")).await;
            measure("| bridged (50 bridges) ", p, |p| bridged_layout(p, 50)).await;
        }
    });
}

/// Deletes the benchmark's namespace on the way out, panics included.
struct DeleteNetns(String);

impl Drop for DeleteNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
