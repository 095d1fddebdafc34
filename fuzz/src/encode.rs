//! Parsed request bodies written back as JSON, in the canonical form a well-behaved client would
//! send (lower-case protocol names, `IPv4`/`IPv6`, hyphenated UUIDs, no nulls but where a null
//! means something). Parsing the encoding must give the parsed value back.

use palisade_core::input::{CreateGroup, LegacyCreateGroup, LegacyUpdateGroup, RuleChange, UpdateGroup};
use palisade_core::rule::RuleDraft;
use palisade_core::tags::TagPatch;
use serde_json::{Map, Value, json};

pub fn rule(d: &RuleDraft) -> Value {
    let mut m = Map::new();
    m.insert("direction".into(), d.direction.as_str().into());
    if let Some(e) = d.ethertype {
        m.insert("ethertype".into(), e.as_str().into());
    }
    if let Some(p) = d.protocol {
        m.insert("protocol".into(), p.name().into());
    }
    if let Some(v) = d.port_range_min {
        m.insert("port_range_min".into(), v.into());
    }
    if let Some(v) = d.port_range_max {
        m.insert("port_range_max".into(), v.into());
    }
    if let Some(c) = d.remote_ip_prefix {
        m.insert("remote_ip_prefix".into(), c.to_string().into());
    }
    if let Some(id) = d.remote_group_id {
        m.insert("remote_group_id".into(), id.hyphenated().to_string().into());
    }
    if let Some(text) = &d.description {
        m.insert("description".into(), text.clone().into());
    }
    Value::Object(m)
}

pub fn rules(rules: &[RuleDraft]) -> Value {
    Value::Array(rules.iter().map(rule).collect())
}

pub fn tags(tags: &[(String, String)]) -> Value {
    Value::Object(tags.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect())
}

pub fn tag_patch(patch: &TagPatch) -> Value {
    match patch {
        TagPatch::ClearAll => Value::Null,
        TagPatch::Merge(changes) => {
            Value::Object(changes.iter().map(|(k, v)| (k.clone(), v.clone().map(Value::String).unwrap_or(Value::Null))).collect())
        }
    }
}

pub fn create(g: &CreateGroup) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), g.name.clone().into());
    m.insert("description".into(), g.description.clone().into());
    if let Some(r) = &g.rules {
        m.insert("rules".into(), rules(r));
    }
    m.insert("tags".into(), tags(&g.tags));
    Value::Object(m)
}

pub fn legacy_create(g: &LegacyCreateGroup) -> Value {
    let mut group = Map::new();
    group.insert("name".into(), g.group.name.clone().into());
    group.insert("description".into(), g.group.description.clone().into());
    if let Some(r) = &g.group.rules {
        group.insert("security_group_rules".into(), rules(r));
    }
    group.insert("tags".into(), tags(&g.group.tags));
    let instances: Vec<Value> = g.instances.iter().map(|id| id.hyphenated().to_string().into()).collect();
    json!({"security_group": group, "instances": instances})
}

pub fn update(u: &UpdateGroup) -> Value {
    let mut m = Map::new();
    if let Some(name) = &u.name {
        m.insert("name".into(), name.clone().into());
    }
    if let Some(d) = &u.description {
        m.insert("description".into(), d.clone().into());
    }
    if let Some(r) = &u.rules {
        m.insert("rules".into(), rules(r));
    }
    if let Some(t) = &u.tags {
        m.insert("tags".into(), tag_patch(t));
    }
    Value::Object(m)
}

pub fn legacy_update(u: &LegacyUpdateGroup) -> Value {
    let mut m = Map::new();
    if let Some(name) = &u.name {
        m.insert("name".into(), name.clone().into());
    }
    if let Some(t) = &u.tags {
        m.insert("tags".into(), tag_patch(t));
    }
    if !u.changed_rules.is_empty() {
        let changes: Vec<Value> = u
            .changed_rules
            .iter()
            .map(|c| match c {
                RuleChange::Create(d) => {
                    let mut r = rule(d);
                    r.as_object_mut().expect("a rule is an object").insert("action".into(), "create".into());
                    r
                }
                RuleChange::Delete(id) => json!({"action": "delete", "security_group_rule_id": id.hyphenated().to_string()}),
            })
            .collect();
        m.insert("changed_rules".into(), Value::Array(changes));
    }
    Value::Object(m)
}
