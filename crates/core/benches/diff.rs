//! The v2 PATCH desired-state diff with 250 existing and 250 desired rules.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_core::diff::diff_rules;
use palisade_core::{Direction, Ethertype, Protocol, Rule, RuleDraft, RuleSpec};
use uuid::Uuid;

fn spec(i: usize, description: &str) -> RuleSpec {
    RuleDraft {
        ethertype: Some(Ethertype::IPv4),
        protocol: Some(if i % 2 == 0 { Protocol::TCP } else { Protocol::UDP }),
        port_range_min: Some(1000 + i as u16),
        port_range_max: Some(1000 + i as u16),
        remote_ip_prefix: Some(format!("10.{}.{}.0/24", i / 256, i % 256).parse().expect("cidr")),
        description: Some(description.to_string()),
        ..RuleDraft::new(Direction::Ingress)
    }
    .normalize()
    .expect("valid")
}

fn existing(n: usize) -> Vec<Rule> {
    let group_id = Uuid::new_v4();
    (0..n).map(|i| Rule { id: Uuid::new_v4(), group_id, spec: spec(i, ""), created_at: 0 }).collect()
}

fn bench(c: &mut Criterion) {
    let current = existing(250);
    // Same set, request order reversed (the worst order for a linear search).
    let same: Vec<RuleSpec> = (0..250).rev().map(|i| spec(i, "")).collect();
    // 200 kept, 50 replaced by new rules.
    let fifth_new: Vec<RuleSpec> = (50..300).map(|i| spec(i, "")).collect();
    // Nothing in common: 250 deletes and 250 creates.
    let disjoint: Vec<RuleSpec> = (1000..1250).map(|i| spec(i, "")).collect();

    let mut group = c.benchmark_group("diff_250x250");
    group.bench_function("all_kept", |b| b.iter(|| diff_rules(black_box(&current), black_box(&same))));
    group.bench_function("50_changed", |b| b.iter(|| diff_rules(black_box(&current), black_box(&fifth_new))));
    group.bench_function("disjoint", |b| b.iter(|| diff_rules(black_box(&current), black_box(&disjoint))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
