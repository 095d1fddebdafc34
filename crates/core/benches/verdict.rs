//! Verdict engine speed: verdicts per second against 10,000 rules, and the time to build the
//! index for them (issue 6 targets: >= 1,000,000 verdicts/s per core, index < 100 ms).

use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use palisade_core::Cidr;
use palisade_core::policy::{Flow, L4, Match, Members, Remote};
use palisade_core::rule::{Direction, Ethertype};
use palisade_core::verdict::VerdictIndex;
use uuid::Uuid;

/// A deterministic pseudo-random stream (xorshift), so runs are comparable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// ClassBench-like mix: mostly TCP/UDP with a port or a range, prefixes of many lengths, some
/// any-source rules, some remote groups, some ICMP.
fn rules(count: usize, rng: &mut Rng) -> (Vec<Match>, BTreeMap<Uuid, Members>) {
    let groups: Vec<Uuid> = (0..20).map(|_| Uuid::new_v4()).collect();
    let mut members = BTreeMap::new();
    for g in &groups {
        let mut m = Members::default();
        for _ in 0..50 {
            m.ipv4.insert(Ipv4Addr::from(0x0a00_0000 | (rng.next() as u32 & 0x00ff_ffff)));
        }
        members.insert(*g, m);
    }
    let rules = (0..count)
        .map(|_| {
            let r = rng.next();
            let protocol = match r % 10 {
                0 => None,
                1 => Some(1),
                2..=5 => Some(6),
                _ => Some(17),
            };
            let l4 = match protocol {
                Some(1) => L4::Icmp((r >> 8) as u8 % 16, None),
                Some(_) if r % 3 == 0 => {
                    let lo = (r >> 16) as u16 % 60000 + 1;
                    L4::Ports(lo, lo.saturating_add((r >> 32) as u16 % 500))
                }
                Some(_) => {
                    let p = (r >> 16) as u16 % 60000 + 1;
                    L4::Ports(p, p)
                }
                None => L4::Any,
            };
            let remote = match (r >> 40) % 10 {
                0 => Remote::Any,
                1 => Remote::Group(groups[(r >> 44) as usize % groups.len()]),
                _ => {
                    let len = [8u8, 16, 20, 24, 28, 32][(r >> 44) as usize % 6];
                    let addr = Ipv4Addr::from(0x0a00_0000 | ((r >> 20) as u32 & 0x00ff_ffff));
                    Remote::Prefix(Cidr::new(IpAddr::V4(addr), len).unwrap().network())
                }
            };
            Match {
                rule_id: Uuid::new_v4(),
                group_id: Uuid::nil(),
                direction: if r & (1 << 60) == 0 { Direction::Ingress } else { Direction::Egress },
                family: Ethertype::IPv4,
                protocol,
                l4,
                remote,
            }
        })
        .collect();
    (rules, members)
}

fn flows(count: usize, rng: &mut Rng) -> Vec<Flow> {
    (0..count)
        .map(|_| {
            let r = rng.next();
            Flow {
                direction: if r & 1 == 0 { Direction::Ingress } else { Direction::Egress },
                remote: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | ((r >> 8) as u32 & 0x00ff_ffff))),
                // TCP and UDP only: most random ICMP types are decided before any rule (`verdict::Fixed`).
                protocol: [6u8, 17][(r >> 40) as usize % 2],
                dport_or_type: (r >> 44) as u16 % 60000,
                code: 0,
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (rules, members) = rules(10_000, &mut rng);
    let flows = flows(4096, &mut rng);

    c.bench_function("build index, 10k rules", |b| b.iter(|| VerdictIndex::build(black_box(rules.clone()), &members)));

    let index = VerdictIndex::build(rules.clone(), &members);
    let mut group = c.benchmark_group("decide, 10k rules");
    group.throughput(Throughput::Elements(flows.len() as u64));
    group.bench_function("4096 flows", |b| {
        b.iter(|| {
            let mut allowed = 0u32;
            for flow in &flows {
                allowed += u32::from(index.decide(black_box(flow)).allowed);
            }
            allowed
        })
    });
    group.finish();

    let (small, small_members) = self::rules(100, &mut rng);
    let small_index = VerdictIndex::build(small, &small_members);
    let mut group = c.benchmark_group("decide, 100 rules");
    group.throughput(Throughput::Elements(flows.len() as u64));
    group.bench_function("4096 flows", |b| b.iter(|| flows.iter().filter(|f| small_index.decide(black_box(f)).allowed).count()));
    group.finish();
}

/// Issue 12's abuse case: one remote group of 100,000 member addresses and 250 rules naming it
/// (distinct ports). Expanding each rule to the members' addresses cost 4.7 s and 671 MB per
/// verdict through the API; the index now holds each member once.
fn big_remote_group() -> (Vec<Match>, BTreeMap<Uuid, Members>) {
    let group = Uuid::from_u128(7);
    let mut m = Members::default();
    for i in 0..100_000u32 {
        m.ipv4.insert(Ipv4Addr::from(0x0a00_0000 + i));
    }
    let rules = (0..250u16)
        .map(|k| Match {
            rule_id: Uuid::from_u128(1000 + u128::from(k)),
            group_id: Uuid::nil(),
            direction: Direction::Ingress,
            family: Ethertype::IPv4,
            protocol: Some(6),
            l4: L4::Ports(1000 + k, 1000 + k),
            remote: Remote::Group(group),
        })
        .collect();
    (rules, BTreeMap::from([(group, m)]))
}

fn bench_big_group(c: &mut Criterion) {
    let (rules, members) = big_remote_group();
    let mut group = c.benchmark_group("remote group of 100k members, 250 rules");
    group.sample_size(10);
    group.bench_function("build index", |b| b.iter(|| VerdictIndex::build(black_box(rules.clone()), &members)));
    let index = VerdictIndex::build(rules.clone(), &members);
    let flow =
        Flow { direction: Direction::Ingress, remote: IpAddr::V4(Ipv4Addr::new(10, 0, 200, 1)), protocol: 6, dport_or_type: 1249, code: 0 };
    group.bench_function("decide one flow", |b| b.iter(|| index.decide(black_box(&flow))));
    group.bench_function("matching rules of one flow", |b| b.iter(|| index.matching(black_box(&flow), &members)));
    group.finish();
}

criterion_group!(benches, bench, bench_big_group);
criterion_main!(benches);
