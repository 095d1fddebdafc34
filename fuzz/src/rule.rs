//! Target `rule`: one JSON rule through `core::input::parse_rule` (as the rule of a request's
//! list, `rules.3`) and `RuleDraft::normalize`.
//!
//! Invariants: every schema error is reported under the rule's own path; an accepted rule written
//! back in canonical form parses to the same draft; what the Gcore paths accept (exact spelling)
//! the lenient parser accepts alike; a rule with its unknown fields dropped (`known_rule_fields`,
//! what a task stores) parses as it did; a normalised rule is in canonical form
//! (normalising its draft gives it back, with the same identity) and obeys Neutron's constraints
//! (ports ordered and non-zero, ICMP type/code ≤ 255, prefix family = ethertype, not both remotes).

use palisade_core::input::{known_rule_fields, parse_rule, parse_rule_lenient};
use palisade_core::protocol::Protocol;
use palisade_core::rule::{Ethertype, RuleDraft};
use serde_json::Value;

use crate::{check_field_errors, encode};

pub fn run(data: &[u8]) {
    if let Ok(body) = serde_json::from_slice::<Value>(data) {
        check(&body, "rules.3");
        check(&body, "");
    }
}

/// `parse_rule` at `prefix`, then the draft's invariants.
pub fn check(body: &Value, prefix: &str) {
    let exact = parse_rule(body, prefix);
    if let Ok(draft) = &exact {
        assert_eq!(parse_rule(&known_rule_fields(body), prefix).as_ref(), Ok(draft), "known_rule_fields changes {body}");
    }
    let lenient = parse_rule_lenient(body, prefix);
    match &lenient {
        Ok(draft) => {
            assert_eq!(parse_rule_lenient(&encode::rule(draft), prefix).as_ref(), Ok(draft));
            check_draft(draft);
        }
        Err(errors) => check_field_errors(errors),
    }
    if let Ok(draft) = &exact {
        assert_eq!(lenient.as_ref(), Ok(draft), "the exact spelling of {body} reads differently when lenient");
    }
    match exact {
        Ok(draft) => {
            let encoded = encode::rule(&draft);
            assert_eq!(parse_rule(&encoded, prefix).as_ref(), Ok(&draft), "canonical form {encoded} of {body}");
            check_draft(&draft);
        }
        Err(errors) => {
            check_field_errors(&errors);
            if !prefix.is_empty() {
                for field in errors.0.keys() {
                    assert!(
                        field == prefix || field.starts_with(&format!("{prefix}.")),
                        "error {field:?} outside the rule's path {prefix:?}"
                    );
                }
            }
        }
    }
}

/// A schema-valid draft: its normal form is canonical and obeys Neutron's constraints.
pub fn check_draft(draft: &RuleDraft) {
    let Ok(spec) = draft.normalize() else {
        // A refused rule names the field to change.
        assert!(!draft.normalize().unwrap_err().field().is_empty());
        return;
    };
    let again = spec.to_draft().normalize().expect("a normalised rule normalises again");
    assert_eq!(again, spec, "normalisation is not idempotent for {draft:?}");
    assert_eq!(again.key(), spec.key());
    assert_eq!(spec.direction, draft.direction);
    if let Some(prefix) = spec.remote_ip_prefix {
        assert_eq!(prefix.ethertype(), spec.ethertype, "prefix of the other family");
        assert!(spec.remote_group_id.is_none(), "both remotes");
    }
    if let Some(p) = spec.protocol {
        assert!(!(spec.ethertype == Ethertype::IPv4 && p.is_ipv6_only()), "{p} with IPv4");
        assert!(!(spec.ethertype == Ethertype::IPv6 && p == Protocol::ICMP), "icmp with IPv6 is not canonical");
    }
    match (spec.protocol, spec.port_range_min, spec.port_range_max) {
        (_, None, None) => {}
        (None, _, _) => panic!("ports without a protocol: {spec:?}"),
        (Some(p), min, max) if p.is_icmp() => {
            assert!(min.is_some(), "ICMP code without a type: {spec:?}");
            assert!(min.is_none_or(|t| t <= 255) && max.is_none_or(|c| c <= 255), "ICMP out of range: {spec:?}");
        }
        (Some(p), Some(min), Some(max)) => {
            assert!(p.takes_ports(), "ports on {p}");
            assert!(0 < min && min <= max, "bad range {min}-{max}");
            assert!(!(min == 1 && max == u16::MAX), "the full range is canonically no range");
        }
        (Some(_), min, max) => panic!("half a port range {min:?}-{max:?}"),
    }
}
