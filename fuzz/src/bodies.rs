//! Target `bodies`: one JSON document through every request-body parser of `core::input`
//! (`CreateGroup`, `UpdateGroup`, `LegacyCreateGroup`, `LegacyUpdateGroup`, and `parse_rule` on
//! the whole body).
//!
//! Invariants: parsing is deterministic; an accepted body, written back in canonical form
//! ([`crate::encode`]), parses to the same value; what a task stores of a v2 body
//! (`known_fields`) parses exactly as the body did; an accepted body is within Gcore's limits
//! (name pattern, description ≤ 255 characters, ≤ 250 rules, tag keys and values); every rule it
//! holds satisfies the invariants of [`crate::rule::check_draft`]; a refused body names at least
//! one field, each with a reason.

use std::fmt::Debug;

use palisade_core::FieldErrors;
use palisade_core::input::{
    CreateGroup, GROUP_FIELDS, LegacyCreateGroup, LegacyUpdateGroup, MAX_DESCRIPTION, MAX_RULES, MAX_TAG_LEN, RuleChange, UpdateGroup,
    is_valid_name, known_fields,
};
use serde_json::Value;

use crate::{check_field_errors, encode, rule};

pub fn run(data: &[u8]) {
    // What the API does with a body: serde_json into a `Value`, then the parser.
    if let Ok(body) = serde_json::from_slice::<Value>(data) {
        check(&body);
    }
}

pub fn check(body: &Value) {
    // What a task stores of an accepted v2 body (`known_fields`) parses as the body did. (Of a
    // refused body nothing is stored; its errors may differ: a rule that is no object becomes `{}`.)
    let stored = Value::Object(known_fields(body, GROUP_FIELDS));
    if let Ok(create) = CreateGroup::parse(body) {
        assert_eq!(CreateGroup::parse(&stored), Ok(create), "known_fields changes the create body {body}");
    }
    if let (true, Ok(update)) = (body.is_object(), UpdateGroup::parse(body)) {
        assert_eq!(UpdateGroup::parse(&stored), Ok(update), "known_fields changes the PATCH body {body}");
    }
    if let Some(g) = round_trip(body, CreateGroup::parse, encode::create, sorted_tags) {
        group_limits(Some(&g.name), Some(&g.description), g.rules.as_deref(), &g.tags);
        g.rules.iter().flatten().for_each(rule::check_draft);
    }
    if let Some(u) = round_trip(body, UpdateGroup::parse, encode::update, |u| u) {
        group_limits(u.name.as_deref(), u.description.as_deref(), u.rules.as_deref(), &[]);
        u.rules.iter().flatten().for_each(rule::check_draft);
    }
    if let Some(g) =
        round_trip(body, LegacyCreateGroup::parse, encode::legacy_create, |g| LegacyCreateGroup { group: sorted_tags(g.group), ..g })
    {
        assert!(g.group.rules.is_some(), "the legacy rule list is always exact");
        group_limits(Some(&g.group.name), Some(&g.group.description), g.group.rules.as_deref(), &g.group.tags);
        g.group.rules.iter().flatten().for_each(rule::check_draft);
    }
    if let Some(u) = round_trip(body, LegacyUpdateGroup::parse, encode::legacy_update, |u| u) {
        assert!(u.name.as_deref().is_none_or(is_valid_name));
        for change in &u.changed_rules {
            if let RuleChange::Create(d) = change {
                rule::check_draft(d);
            }
        }
    }
    rule::check(body, "");
}

/// Gcore's limits on an accepted group body.
fn group_limits(name: Option<&str>, description: Option<&str>, rules: Option<&[palisade_core::RuleDraft]>, tags: &[(String, String)]) {
    assert!(name.is_none_or(is_valid_name), "name {name:?}");
    assert!(
        description.is_none_or(|d| d.chars().count() <= MAX_DESCRIPTION),
        "description of {} characters",
        description.unwrap_or("").chars().count()
    );
    assert!(rules.is_none_or(|r| r.len() <= MAX_RULES), "{} rules", rules.map_or(0, <[_]>::len));
    for rule in rules.into_iter().flatten() {
        assert!(rule.description.as_deref().is_none_or(|d| d.chars().count() <= MAX_DESCRIPTION));
    }
    for (key, value) in tags {
        assert!(
            !key.is_empty() && key.chars().count() <= MAX_TAG_LEN && !key.contains(|c: char| c.is_whitespace() || c == '='),
            "tag key {key:?}"
        );
        assert!(!value.is_empty() && value.chars().count() <= MAX_TAG_LEN && value.trim() == value, "tag value {value:?}");
    }
}

/// Tags are a set: the legacy create lists `tags` then `metadata`, the canonical form one object.
fn sorted_tags(mut g: CreateGroup) -> CreateGroup {
    g.tags.sort();
    g
}

/// Parses `body`, checks determinism and the canonical round trip (equal up to `norm`); the
/// parsed value if accepted.
fn round_trip<T: PartialEq + Debug + Clone>(
    body: &Value,
    parse: fn(&Value) -> Result<T, FieldErrors>,
    encode: fn(&T) -> Value,
    norm: fn(T) -> T,
) -> Option<T> {
    let first = parse(body);
    assert_eq!(first, parse(body), "parsing is not deterministic");
    match first {
        Ok(parsed) => {
            let encoded = encode(&parsed);
            let again = parse(&encoded).map(norm);
            assert_eq!(again, Ok(norm(parsed.clone())), "the canonical form {encoded} of {body} parses differently");
            Some(parsed)
        }
        Err(errors) => {
            check_field_errors(&errors);
            None
        }
    }
}
