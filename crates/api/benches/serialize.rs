//! Rendering a security group with 100 rules as the API's JSON (`GroupOut` + `serde_json::to_vec`):
//! the per-group cost of every GET and of each group of a list page.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_api::dto::GroupOut;
use palisade_core::group::{Group, Scope};
use palisade_core::{Direction, Ethertype, Protocol, Rule, RuleDraft, Tag};
use uuid::Uuid;

fn group(rules: usize) -> Group {
    let id = Uuid::new_v4();
    let now = 1_750_000_000_000;
    Group {
        id,
        scope: Scope { client_id: 1, project_id: 1, region_id: 1 },
        name: "bench-group".into(),
        description: "a group with many rules".into(),
        created_at: now,
        updated_at: now,
        revision_number: 3,
        rules: (0..rules)
            .map(|i| Rule {
                id: Uuid::new_v4(),
                group_id: id,
                spec: RuleDraft {
                    ethertype: Some(Ethertype::IPv4),
                    protocol: Some(Protocol::TCP),
                    port_range_min: Some(1000 + i as u16),
                    port_range_max: Some(1000 + i as u16),
                    remote_ip_prefix: Some(format!("10.0.{i}.0/24").parse().expect("cidr")),
                    description: Some(format!("rule {i}")),
                    ..RuleDraft::new(Direction::Ingress)
                }
                .normalize()
                .expect("valid"),
                created_at: now,
            })
            .collect(),
        tags: vec![Tag::user("env", "bench"), Tag::user("team", "net")],
    }
}

fn bench(c: &mut Criterion) {
    let g = group(100);
    let mut bench_group = c.benchmark_group("group_100_rules");
    bench_group.bench_function("dto_and_to_vec", |b| {
        b.iter(|| serde_json::to_vec(&GroupOut::new(black_box(&g), "Region 1".to_string())).expect("serialises"))
    });
    let dto = GroupOut::new(&g, "Region 1".to_string());
    bench_group.bench_function("to_vec_only", |b| b.iter(|| serde_json::to_vec(black_box(&dto)).expect("serialises")));
    bench_group.bench_function("dto_only", |b| b.iter(|| GroupOut::new(black_box(&g), "Region 1".to_string())));
    println!("group with 100 rules: {} bytes of JSON", serde_json::to_vec(&dto).expect("serialises").len());
    bench_group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
