//! Target `tags`: the tags merge patch (RFC 7386) — `parse_tag_patch` and `TagPatch::apply` — and
//! the create-time `parse_tags`.
//!
//! Input: a first line of current tags, `key=value` separated by commas, a key starting with `!`
//! being read-only (server-owned); the rest is the JSON body of the `tags` field.
//!
//! Invariants: a patch applied twice equals it applied once; read-only tags are never changed or
//! removed; a key set to a value ends with that value and a key set to null ends absent (unless
//! read-only); keys the patch does not name keep their value; `null` keeps only read-only tags;
//! the result is sorted with unique keys; a parsed patch or tag list written back as JSON parses
//! to the same value.

use std::collections::BTreeMap;

use palisade_core::FieldErrors;
use palisade_core::input::{parse_tag_patch, parse_tags};
use palisade_core::tags::{Tag, TagPatch};
use serde_json::Value;

use crate::{check_field_errors, encode};

pub fn run(data: &[u8]) {
    let (head, body) = match data.iter().position(|&b| b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&data[..0], data),
    };
    let current = current_tags(&String::from_utf8_lossy(head));
    let Ok(value) = serde_json::from_slice::<Value>(body) else { return };
    check(&current, &value);
}

/// `a=1,!b=2`: unique keys (the first wins), `!` for read-only.
pub fn current_tags(line: &str) -> Vec<Tag> {
    let mut tags: Vec<Tag> = Vec::new();
    for item in line.split(',').filter(|s| !s.is_empty()) {
        let (key, value) = item.split_once('=').unwrap_or((item, ""));
        let (key, read_only) = match key.strip_prefix('!') {
            Some(k) => (k, true),
            None => (key, false),
        };
        if !tags.iter().any(|t| t.key == key) {
            tags.push(Tag { key: key.into(), value: value.into(), read_only });
        }
    }
    tags
}

pub fn check(current: &[Tag], value: &Value) {
    let mut errors = FieldErrors::new();
    let patch = parse_tag_patch(value, "tags", &mut errors);
    if !errors.is_empty() {
        check_field_errors(&errors);
        for field in errors.0.keys() {
            assert!(field == "tags" || field.starts_with("tags."), "{field:?}");
        }
    } else {
        let patch = patch.expect("no error and no patch");
        let encoded = encode::tag_patch(&patch);
        let mut again_errors = FieldErrors::new();
        assert_eq!(parse_tag_patch(&encoded, "tags", &mut again_errors), Some(patch.clone()), "{encoded}");
        assert!(again_errors.is_empty());
        apply(current, &patch);
    }

    let mut errors = FieldErrors::new();
    let tags = parse_tags(value, "tags", &mut errors);
    if errors.is_empty() {
        let mut again_errors = FieldErrors::new();
        assert_eq!(parse_tags(&encode::tags(&tags), "tags", &mut again_errors), tags);
        assert!(again_errors.is_empty());
        // Creating with these tags is the merge patch of them onto nothing.
        let merged = TagPatch::Merge(tags.iter().map(|(k, v)| (k.clone(), Some(v.clone()))).collect()).apply(&[]);
        assert_eq!(merged.len(), tags.len(), "duplicate keys in {tags:?}");
    } else {
        check_field_errors(&errors);
    }
}

fn apply(current: &[Tag], patch: &TagPatch) {
    let once = patch.apply(current);
    let twice = patch.apply(&once);
    assert_eq!(once, twice, "the merge patch {patch:?} is not idempotent on {current:?}");

    assert!(once.windows(2).all(|w| w[0].key < w[1].key), "not sorted by unique key: {once:?}");
    let after: BTreeMap<&str, &Tag> = once.iter().map(|t| (t.key.as_str(), t)).collect();
    let before: BTreeMap<&str, &Tag> = current.iter().map(|t| (t.key.as_str(), t)).collect();
    for tag in current.iter().filter(|t| t.read_only) {
        assert_eq!(after.get(tag.key.as_str()), Some(&tag), "read-only tag changed");
    }
    match patch {
        TagPatch::ClearAll => assert!(once.iter().all(|t| t.read_only) && once.len() == current.iter().filter(|t| t.read_only).count()),
        TagPatch::Merge(changes) => {
            let named: BTreeMap<&str, &Option<String>> = changes.iter().map(|(k, v)| (k.as_str(), v)).collect();
            for (key, value) in &named {
                if before.get(key).is_some_and(|t| t.read_only) {
                    continue;
                }
                match value {
                    Some(v) => assert_eq!(after.get(key).map(|t| (t.value.as_str(), t.read_only)), Some((v.as_str(), false))),
                    None => assert!(!after.contains_key(key), "{key} not removed"),
                }
            }
            for tag in current.iter().filter(|t| !named.contains_key(t.key.as_str())) {
                assert_eq!(after.get(tag.key.as_str()), Some(&tag), "tag {} not named by the patch changed", tag.key);
            }
            for tag in &once {
                assert!(before.contains_key(tag.key.as_str()) || named.contains_key(tag.key.as_str()), "tag {} from nowhere", tag.key);
            }
        }
    }
}
