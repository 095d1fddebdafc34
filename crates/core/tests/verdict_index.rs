//! The indexed verdict engine agrees with the plain definition (a linear scan of
//! `Match::matches`, first match decides) on random rule sets, memberships and flows.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use palisade_core::Cidr;
use palisade_core::policy::{Flow, L4, Match, Members, Remote};
use palisade_core::rule::{Direction, Ethertype};
use palisade_core::verdict::{Fixed, VerdictIndex};
use proptest::prelude::*;
use uuid::Uuid;

const GROUPS: [u128; 3] = [1, 2, 3];

fn small_v4() -> impl Strategy<Value = Ipv4Addr> {
    // A small address space so flows hit prefixes and members often.
    (0u8..4, 0u8..4).prop_map(|(c, d)| Ipv4Addr::new(10, 0, c, d))
}

fn small_v6() -> impl Strategy<Value = Ipv6Addr> {
    (0u16..4).prop_map(|d| Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, d))
}

fn rule() -> impl Strategy<Value = Match> {
    let l4 = prop_oneof![
        Just(L4::Any),
        (0u16..8, 0u16..8).prop_map(|(a, b)| L4::Ports(a.min(b), a.max(b))),
        (0u8..3, proptest::option::of(0u8..3)).prop_map(|(t, c)| L4::Icmp(t, c)),
    ];
    let v4_remote = prop_oneof![
        Just(Remote::Any),
        (small_v4(), 22u8..=32).prop_map(|(a, len)| Remote::Prefix(Cidr::new(IpAddr::V4(a), len).unwrap().network())),
        proptest::sample::select(GROUPS.to_vec()).prop_map(|g| Remote::Group(Uuid::from_u128(g))),
    ];
    let v6_remote = prop_oneof![
        Just(Remote::Any),
        (small_v6(), 126u8..=128).prop_map(|(a, len)| Remote::Prefix(Cidr::new(IpAddr::V6(a), len).unwrap().network())),
        proptest::sample::select(GROUPS.to_vec()).prop_map(|g| Remote::Group(Uuid::from_u128(g))),
    ];
    (any::<bool>(), any::<bool>(), proptest::option::of(proptest::sample::select(vec![1u8, 6, 17, 58, 47])), l4, v4_remote, v6_remote)
        .prop_map(|(ingress, v4, protocol, l4, r4, r6)| {
            let l4 = match protocol {
                Some(1 | 58) if matches!(l4, L4::Icmp(..)) => l4,
                Some(6 | 17) if matches!(l4, L4::Ports(..)) => l4,
                _ => L4::Any,
            };
            Match {
                rule_id: Uuid::new_v4(),
                group_id: Uuid::nil(),
                direction: if ingress { Direction::Ingress } else { Direction::Egress },
                family: if v4 { Ethertype::IPv4 } else { Ethertype::IPv6 },
                protocol,
                l4,
                remote: if v4 { r4 } else { r6 },
            }
        })
}

fn flow() -> impl Strategy<Value = Flow> {
    let remote = prop_oneof![small_v4().prop_map(IpAddr::V4), small_v6().prop_map(IpAddr::V6)];
    (any::<bool>(), remote, proptest::sample::select(vec![1u8, 6, 17, 58, 47, 132]), 0u16..9, 0u8..4).prop_map(
        |(ingress, remote, protocol, port, code)| Flow {
            direction: if ingress { Direction::Ingress } else { Direction::Egress },
            remote,
            protocol,
            dport_or_type: port,
            code,
        },
    )
}

fn members() -> impl Strategy<Value = BTreeMap<Uuid, Members>> {
    proptest::collection::vec((proptest::sample::select(GROUPS.to_vec()), small_v4(), small_v6()), 0..8).prop_map(|entries| {
        let mut members: BTreeMap<Uuid, Members> = BTreeMap::new();
        for (g, a, b) in entries {
            let m = members.entry(Uuid::from_u128(g)).or_default();
            m.ipv4.insert(a);
            m.ipv6.insert(b);
        }
        members
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn index_equals_linear_scan(rules in proptest::collection::vec(rule(), 0..40), members in members(), flows in proptest::collection::vec(flow(), 50)) {
        let index = VerdictIndex::build(rules.clone(), &members);
        for flow in &flows {
            // The table decides some flows before any rule (`Fixed`); the rules decide the rest.
            let expected = rules.iter().find(|m| m.matches(flow, &members)).map(|m| m.rule_id).filter(|_| Fixed::of(flow).is_none());
            prop_assert_eq!(index.decide(flow).rule.map(|r| r.rule_id), expected, "flow {:?}", flow);
        }
    }
}
