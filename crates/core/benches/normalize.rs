//! Validation and normalisation of a 250-rule list: what a create or PATCH with the maximum rule
//! count costs before any I/O (`input::parse_rule` then `RuleDraft::normalize`, then `dedupe`).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palisade_core::input::parse_rule;
use palisade_core::rule::{RuleSpec, dedupe};
use serde_json::{Value, json};

/// 250 distinct rules in the shapes clients send: TCP/UDP ports and ranges, ICMP type/code,
/// IPv6 (`icmp` that becomes `ipv6-icmp`), protocol `any`, descriptions, null fields.
pub fn rule_list(n: usize) -> Vec<Value> {
    (0..n)
        .map(|i| match i % 5 {
            0 => json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
                "port_range_min": 1000 + i, "port_range_max": 1000 + i, "remote_ip_prefix": format!("10.{}.0.0/16", i % 256),
                "description": format!("rule {i}")}),
            1 => json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "udp",
                "port_range_min": 2000 + i, "port_range_max": 2100 + i, "remote_ip_prefix": "0.0.0.0/0"}),
            2 => json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "icmp",
                "port_range_min": i % 256, "port_range_max": 0, "remote_ip_prefix": format!("192.168.{}.0/24", i % 256)}),
            3 => json!({"direction": "egress", "ethertype": "IPv6", "protocol": "icmp",
                "port_range_min": null, "port_range_max": null, "remote_ip_prefix": format!("2001:db8:{:x}::/48", i)}),
            _ => json!({"direction": "egress", "ethertype": "IPv4", "protocol": "any",
                "remote_ip_prefix": format!("172.16.{}.{}/32", i / 256, i % 256), "description": ""}),
        })
        .collect()
}

/// Each rule input parsed and normalised, as a create does.
fn parse_normalize(rules: &[Value]) -> Vec<RuleSpec> {
    rules.iter().enumerate().map(|(i, v)| parse_rule(v, &format!("rules.{i}")).expect("valid").normalize().expect("valid")).collect()
}

fn bench(c: &mut Criterion) {
    let rules = rule_list(250);
    let mut group = c.benchmark_group("rules_250");
    group.throughput(Throughput::Elements(rules.len() as u64));
    group.bench_function("parse_normalize", |b| b.iter(|| parse_normalize(black_box(&rules))));
    group.bench_function("parse_normalize_dedupe", |b| b.iter(|| dedupe(parse_normalize(black_box(&rules)))));
    // The JSON text of the request body, for scale: parsing it is part of every create.
    let body = serde_json::to_vec(&json!({"name": "bench", "rules": rules})).expect("serialises");
    group.bench_function("json_body_from_slice", |b| b.iter(|| serde_json::from_slice::<Value>(black_box(&body)).expect("json")));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
