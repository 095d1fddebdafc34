//! Properties of normalisation and rule identity, over randomly generated rule inputs in the
//! JSON form clients send, Neutron's spellings included (read with the lenient parser, as stored
//! payloads are); what GET returns must pass the exact parser of the Gcore paths.

use palisade_core::input::{parse_rule, parse_rule_lenient};
use palisade_core::{Protocol, RuleSpec};
use proptest::prelude::*;
use serde_json::{Value, json};

/// Any JSON rule a client could send that passes the schema checks (semantics may still fail).
fn rule_json() -> impl Strategy<Value = Value> {
    let protocol = prop_oneof![
        Just(Value::Null),
        Just(json!("any")),
        proptest::sample::select(Protocol::all().collect::<Vec<_>>()).prop_map(|p| json!(p.name())),
        proptest::sample::select(Protocol::all().collect::<Vec<_>>()).prop_map(|p| json!(p.number())),
        Just(json!("TCP")),
        Just(json!("icmpv6")),
    ];
    let port = prop_oneof![Just(Value::Null), (0u16..=300).prop_map(|p| json!(p)), Just(json!(65535)), Just(json!(1))];
    let prefix = prop_oneof![
        Just(Value::Null),
        Just(json!("0.0.0.0/0")),
        Just(json!("::/0")),
        Just(json!("10.0.0.1")),
        Just(json!("10.0.0.0/8")),
        Just(json!("10.0.0.5/24")),
        Just(json!("2001:DB8::/32")),
        Just(json!("fe80::1")),
    ];
    let remote_group = prop_oneof![Just(Value::Null), Just(json!("00000000-0000-4000-8000-000000000000"))];
    (
        proptest::sample::select(vec!["ingress", "egress"]),
        proptest::sample::select(vec![Value::Null, json!("IPv4"), json!("IPv6"), json!("ipv6")]),
        protocol,
        port.clone(),
        port,
        prefix,
        remote_group,
        proptest::sample::select(vec![Value::Null, json!(""), json!("web"), json!("ssh from office")]),
    )
        .prop_map(|(direction, ethertype, protocol, min, max, prefix, group, description)| {
            json!({"direction": direction, "ethertype": ethertype, "protocol": protocol, "port_range_min": min,
                   "port_range_max": max, "remote_ip_prefix": prefix, "remote_group_id": group, "description": description})
        })
}

fn normalized(value: &Value) -> Option<RuleSpec> {
    parse_rule_lenient(value, "").ok()?.normalize().ok()
}

/// As the Gcore paths read a rule: Gcore's schema exactly.
fn normalized_exact(value: &Value) -> Option<RuleSpec> {
    parse_rule(value, "").ok()?.normalize().ok()
}

/// The JSON a GET returns for a rule (the input fields of it).
fn as_returned(spec: &RuleSpec) -> Value {
    json!({
        "direction": spec.direction.as_str(),
        "ethertype": spec.ethertype.as_str(),
        "protocol": spec.protocol.map(Protocol::name),
        "port_range_min": spec.port_range_min,
        "port_range_max": spec.port_range_max,
        "remote_ip_prefix": spec.remote_ip_prefix.map(|p| p.to_string()),
        "remote_group_id": spec.remote_group_id.map(|g| g.to_string()),
        "description": spec.description,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn normalisation_is_idempotent(input in rule_json()) {
        if let Some(spec) = normalized(&input) {
            prop_assert_eq!(spec.to_draft().normalize(), Ok(spec.clone()));
            prop_assert_eq!(normalized_exact(&as_returned(&spec)), Some(spec));
        }
    }

    #[test]
    fn identity_ignores_spelling_and_description(input in rule_json()) {
        let Some(spec) = normalized(&input) else { return Ok(()) };
        let mut respelled = input.clone();
        // Another description, the protocol as a number, "anywhere" as null: one identity.
        respelled["description"] = json!("something else");
        if let Some(p) = spec.protocol {
            respelled["protocol"] = json!(p.number());
        }
        if spec.remote_ip_prefix.is_some_and(|p| p.is_everything()) {
            respelled["remote_ip_prefix"] = Value::Null;
        }
        let other = normalized(&respelled).expect("a respelled valid rule stays valid");
        prop_assert_eq!(spec.key(), other.key());
    }

    #[test]
    fn duplicates_exactly_when_identities_are_equal(a in rule_json(), b in rule_json()) {
        let (Some(a), Some(b)) = (normalized(&a), normalized(&b)) else { return Ok(()) };
        let same_match = a.direction == b.direction
            && a.ethertype == b.ethertype
            && a.protocol == b.protocol
            && a.port_range_min == b.port_range_min
            && a.port_range_max == b.port_range_max
            && a.remote_ip_prefix.filter(|p| !p.is_everything()) == b.remote_ip_prefix.filter(|p| !p.is_everything())
            && a.remote_group_id == b.remote_group_id;
        prop_assert_eq!(a.key() == b.key(), same_match);
        let deduped = palisade_core::rule::dedupe(vec![a.clone(), b.clone()]);
        prop_assert_eq!(deduped.len(), if same_match { 1 } else { 2 });
    }

    #[test]
    fn unchanged_rules_diff_to_nothing(inputs in proptest::collection::vec(rule_json(), 0..12)) {
        let specs = palisade_core::rule::dedupe(inputs.iter().filter_map(normalized).collect());
        let existing: Vec<_> = specs.iter().map(|spec| palisade_core::Rule {
            id: uuid::Uuid::new_v4(), group_id: uuid::Uuid::nil(), spec: spec.clone(), created_at: 0,
        }).collect();
        let echoed: Vec<RuleSpec> = existing.iter().filter_map(|r| normalized_exact(&as_returned(&r.spec))).collect();
        let diff = palisade_core::diff::diff_rules(&existing, &echoed);
        prop_assert!(diff.is_empty());
        prop_assert_eq!(diff.keep.len(), existing.len());
    }
}
