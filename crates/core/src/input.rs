//! The request bodies of the security-group API, parsed from JSON with one error per offending
//! field (the `invalid_fields` of a 400), exactly as Gcore's schema validates them: enums in their
//! exact case, `null` only where the schema allows it, every string and list within its limits.
//! Unknown fields are ignored, as the contract requires, and [`known_fields`] drops them from
//! what a task stores. Only schema checks live here; rule semantics are [`RuleDraft::normalize`].

use serde_json::{Map, Value};
use uuid::Uuid;

use crate::cidr::Cidr;
use crate::error::FieldErrors;
use crate::protocol::Protocol;
use crate::rule::{Direction, Ethertype, RuleDraft};
use crate::tags::TagPatch;

pub const MAX_RULES: usize = 250;
pub const MAX_CHANGED_RULES: usize = 500;
pub const MAX_DESCRIPTION: usize = 255;
pub const MAX_TAG_LEN: usize = 255;

/// The fields of a rule input (`CreateSecurityGroupRuleSerializer[V2]`).
pub const RULE_FIELDS: &[&str] =
    &["direction", "ethertype", "protocol", "port_range_min", "port_range_max", "remote_ip_prefix", "remote_group_id", "description"];
/// The fields of the v2 create and PATCH bodies (`CreateSecurityGroupSerializerV2`,
/// `UpdateSecurityGroupSerializerV2`).
pub const GROUP_FIELDS: &[&str] = &["name", "description", "rules", "tags"];

/// How closely a rule input must follow Gcore's schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spelling {
    /// Gcore's schema exactly (every request on the Gcore paths): `direction`, `ethertype` and
    /// `protocol` are members of their enums in their exact case (`protocol` may also be `any`);
    /// `null` only for `protocol`, the ports, `remote_ip_prefix` and `remote_group_id`.
    Exact,
    /// Neutron's spellings as well: `ethertype` and protocol names in any case, `icmpv6`, IANA
    /// protocol numbers (JSON numbers or strings), and `null` for every optional field. For rules
    /// queued by earlier versions and the configuration file's `default_rules`.
    Neutron,
}

/// Body of `POST /cloud/v2/security_groups/{p}/{r}` (and the group part of the v1 create).
#[derive(Debug, Clone, PartialEq)]
pub struct CreateGroup {
    pub name: String,
    pub description: String,
    /// `None`: apply the default template; `Some([])`: no rules.
    pub rules: Option<Vec<RuleDraft>>,
    pub tags: Vec<(String, String)>,
}

/// Body of `PATCH /cloud/v2/security_groups/{p}/{r}/{id}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UpdateGroup {
    pub name: Option<String>,
    pub description: Option<String>,
    /// The desired final rule set; `None` leaves rules alone.
    pub rules: Option<Vec<RuleDraft>>,
    pub tags: Option<TagPatch>,
}

/// Body of the legacy `PATCH /cloud/v1/securitygroups/{p}/{r}/{id}`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LegacyUpdateGroup {
    pub name: Option<String>,
    pub tags: Option<TagPatch>,
    pub changed_rules: Vec<RuleChange>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum RuleChange {
    Create(RuleDraft),
    Delete(Uuid),
}

/// Body of the legacy `POST /cloud/v1/securitygroups/{p}/{r}`.
#[derive(Debug, Clone, PartialEq)]
pub struct LegacyCreateGroup {
    pub group: CreateGroup,
    pub instances: Vec<Uuid>,
}

/// A JSON body as an object, or the error a non-object deserves.
pub fn object<'a>(body: &'a Value, field: &str) -> Result<&'a Map<String, Value>, FieldErrors> {
    body.as_object().ok_or_else(|| FieldErrors::single(field_or_body(field), "Input should be a valid dictionary or object"))
}

fn field_or_body(field: &str) -> &str {
    if field.is_empty() { "body" } else { field }
}

fn path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() { field.to_string() } else { format!("{prefix}.{field}") }
}

/// A present, non-null value of `field`.
fn present<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    obj.get(field).filter(|v| !v.is_null())
}

/// `body` with only the fields of `fields`, and each rule of a `rules` list with only
/// [`RULE_FIELDS`]: what a task stores of a request that passed its parser (its `data` and its
/// payload), so that an unknown field, whatever its size, is never stored.
pub fn known_fields(body: &Value, fields: &[&str]) -> Map<String, Value> {
    let Some(obj) = body.as_object() else { return Map::new() };
    fields
        .iter()
        .filter_map(|&field| {
            let value = obj.get(field)?;
            let value = match (field, value) {
                ("rules", Value::Array(rules)) => Value::Array(rules.iter().map(known_rule_fields).collect()),
                _ => value.clone(),
            };
            Some((field.to_string(), value))
        })
        .collect()
}

/// A rule input with only [`RULE_FIELDS`].
pub fn known_rule_fields(rule: &Value) -> Value {
    Value::Object(known_fields(rule, RULE_FIELDS))
}

/// The group name pattern `^[a-zA-Z0-9][a-zA-Z 0-9._\-]{1,61}[a-zA-Z0-9._]$`.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    if !(3..=63).contains(&bytes.len()) {
        return false;
    }
    let inner_ok = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b' ' | b'.' | b'_' | b'-');
    bytes[0].is_ascii_alphanumeric()
        && bytes[1..bytes.len() - 1].iter().all(|&b| inner_ok(b))
        && (bytes[bytes.len() - 1].is_ascii_alphanumeric() || matches!(bytes[bytes.len() - 1], b'.' | b'_'))
}

pub fn parse_name(value: &Value, field: &str, errors: &mut FieldErrors) -> Option<String> {
    match value {
        Value::String(name) if is_valid_name(name) => Some(name.clone()),
        Value::String(_) => {
            errors.add(field, "String should match pattern '^[a-zA-Z0-9][a-zA-Z 0-9._\\-]{1,61}[a-zA-Z0-9._]$' (3 to 63 characters)");
            None
        }
        _ => {
            errors.add(field, "Input should be a valid string");
            None
        }
    }
}

fn parse_string(value: &Value, field: &str, max: usize, errors: &mut FieldErrors) -> Option<String> {
    match value {
        Value::String(text) if text.chars().count() > max => {
            errors.add(field, format!("String should have at most {max} characters"));
            None
        }
        Value::String(text) => Some(text.clone()),
        _ => {
            errors.add(field, "Input should be a valid string");
            None
        }
    }
}

fn parse_uuid(value: &Value, field: &str, errors: &mut FieldErrors) -> Option<Uuid> {
    match value.as_str().map(Uuid::try_parse) {
        Some(Ok(id)) => Some(id),
        _ => {
            errors.add(field, "Input should be a valid UUID");
            None
        }
    }
}

/// A rule input (RuleInputV2 or RuleInputV1) as Gcore's schema spells it ([`Spelling::Exact`]).
/// `any` is accepted on both and means all protocols (CONTRACT.md §8 item 4).
pub fn parse_rule(value: &Value, prefix: &str) -> Result<RuleDraft, FieldErrors> {
    parse_rule_spelled(value, prefix, Spelling::Exact)
}

/// A rule input in Neutron's spellings too ([`Spelling::Neutron`]): protocol numbers 0–255 where
/// they name a protocol of the contract's list, names and ethertypes in any case.
pub fn parse_rule_lenient(value: &Value, prefix: &str) -> Result<RuleDraft, FieldErrors> {
    parse_rule_spelled(value, prefix, Spelling::Neutron)
}

pub fn parse_rule_spelled(value: &Value, prefix: &str, spelling: Spelling) -> Result<RuleDraft, FieldErrors> {
    let obj = object(value, prefix)?;
    let mut errors = FieldErrors::new();
    let exact = spelling == Spelling::Exact;

    let direction = match obj.get("direction") {
        None | Some(Value::Null) => {
            errors.add(path(prefix, "direction"), "Field required");
            None
        }
        Some(Value::String(text)) => {
            let direction = Direction::parse(text);
            if direction.is_none() {
                errors.add(path(prefix, "direction"), "Input should be 'egress' or 'ingress'");
            }
            direction
        }
        Some(_) => {
            errors.add(path(prefix, "direction"), "Input should be 'egress' or 'ingress'");
            None
        }
    };

    let ethertype = match obj.get("ethertype") {
        None => None,
        Some(Value::Null) if !exact => None,
        Some(value) => {
            let ethertype = match value.as_str() {
                Some(text) if exact => Ethertype::parse_exact(text),
                Some(text) => Ethertype::parse(text),
                None => None,
            };
            if ethertype.is_none() {
                errors.add(path(prefix, "ethertype"), "Input should be 'IPv4' or 'IPv6'");
            }
            ethertype
        }
    };

    let protocol = match present(obj, "protocol") {
        None => None,
        Some(value) => match if exact { parse_protocol_exact(value) } else { parse_protocol(value) } {
            Ok(protocol) => protocol,
            Err(reason) => {
                errors.add(path(prefix, "protocol"), reason);
                None
            }
        },
    };

    let mut port = |field: &str| match present(obj, field) {
        None => None,
        Some(Value::Number(n)) => match n.as_i64() {
            Some(port) if (0..=65535).contains(&port) => Some(port as u16),
            Some(port) => {
                errors.add(path(prefix, field), format!("Invalid value for port {port}: must be between 0 and 65535"));
                None
            }
            None => {
                errors.add(path(prefix, field), "port range must be an integer");
                None
            }
        },
        Some(_) => {
            errors.add(path(prefix, field), "port range must be an integer");
            None
        }
    };
    let port_range_min = port("port_range_min");
    let port_range_max = port("port_range_max");

    let remote_ip_prefix = match present(obj, "remote_ip_prefix") {
        None => None,
        Some(Value::String(text)) => match text.parse::<Cidr>() {
            Ok(cidr) => Some(cidr),
            Err(e) => {
                errors.add(path(prefix, "remote_ip_prefix"), format!("{e}, got '{text}'"));
                None
            }
        },
        Some(_) => {
            errors.add(path(prefix, "remote_ip_prefix"), "Input should be a valid string");
            None
        }
    };

    let remote_group_id = present(obj, "remote_group_id").and_then(|v| parse_uuid(v, &path(prefix, "remote_group_id"), &mut errors));
    let description_field = path(prefix, "description");
    let description = match obj.get("description") {
        Some(Value::Null) if !exact => None,
        Some(value) => parse_string(value, &description_field, MAX_DESCRIPTION, &mut errors),
        None => None,
    };

    match (direction, errors.is_empty()) {
        (Some(direction), true) => {
            Ok(RuleDraft { direction, ethertype, protocol, port_range_min, port_range_max, remote_ip_prefix, remote_group_id, description })
        }
        _ => Err(errors),
    }
}

fn unknown_protocol() -> String {
    format!("Input should be one of: any, {}", Protocol::names().collect::<Vec<_>>().join(", "))
}

/// Gcore's protocol enum exactly: `None` for `any` (all protocols), else one of the names of
/// [`Protocol::names`] as written there (lower case, no numbers, no aliases).
pub fn parse_protocol_exact(value: &Value) -> Result<Option<Protocol>, String> {
    match value {
        Value::String(text) if text == "any" => Ok(None),
        Value::String(text) => Protocol::all().find(|p| p.name() == text).map(Some).ok_or_else(unknown_protocol),
        _ => Err(unknown_protocol()),
    }
}

/// `None` for all protocols (`any`); a known name (any case) or number otherwise. Palisade's own
/// paths accept these spellings (the verdict queries); the Gcore paths use [`parse_protocol_exact`].
pub fn parse_protocol(value: &Value) -> Result<Option<Protocol>, String> {
    let unknown = unknown_protocol;
    match value {
        Value::String(text) if text.eq_ignore_ascii_case("any") => Ok(None),
        Value::String(text) => match text.parse::<i64>() {
            Ok(number) => protocol_number(number),
            Err(_) => Protocol::from_name(text).map(Some).ok_or_else(unknown),
        },
        Value::Number(n) => protocol_number(n.as_i64().ok_or_else(unknown)?),
        _ => Err(unknown()),
    }
}

fn protocol_number(number: i64) -> Result<Option<Protocol>, String> {
    match u8::try_from(number) {
        Ok(n) => {
            Protocol::from_number(n).map(Some).ok_or_else(|| format!("Protocol number {number} is not one of the supported protocols"))
        }
        Err(_) => Err(format!("Protocol number {number} is out of range 0..255")),
    }
}

fn parse_rules(value: &Value, field: &str, errors: &mut FieldErrors) -> Option<Vec<RuleDraft>> {
    let Some(items) = value.as_array() else {
        errors.add(field, "Input should be a valid list");
        return None;
    };
    if items.len() > MAX_RULES {
        errors.add(field, format!("List should have at most {MAX_RULES} items after validation, not {}", items.len()));
        return None;
    }
    let mut rules = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match parse_rule(item, &format!("{field}.{i}")) {
            Ok(rule) => rules.push(rule),
            Err(e) => errors.merge(e),
        }
    }
    Some(rules)
}

fn check_tag_key(key: &str, field: &str, errors: &mut FieldErrors) -> bool {
    let ok = !key.is_empty() && key.chars().count() <= MAX_TAG_LEN && !key.chars().any(|c| c.is_whitespace() || c == '=');
    if !ok {
        errors.add(field, format!("Tag key '{key}' must be 1 to {MAX_TAG_LEN} characters with no whitespace and no '='"));
    }
    ok
}

fn check_tag_value(value: &Value, field: &str, errors: &mut FieldErrors) -> Option<String> {
    let Value::String(text) = value else {
        errors.add(field, "Tag value should be a valid string");
        return None;
    };
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.chars().count() > MAX_TAG_LEN || trimmed.contains(['\t', '\n', '\r', '\x0b', '\x0c']) {
        errors.add(field, format!("Tag value must be 1 to {MAX_TAG_LEN} characters with no tab, newline, vertical tab or form feed"));
        return None;
    }
    Some(trimmed.to_string())
}

/// Tags on create: an object of string values.
pub fn parse_tags(value: &Value, field: &str, errors: &mut FieldErrors) -> Vec<(String, String)> {
    let Some(obj) = value.as_object() else {
        errors.add(field, "Input should be a valid dictionary");
        return Vec::new();
    };
    let mut tags = Vec::with_capacity(obj.len());
    for (key, value) in obj {
        let key_field = format!("{field}.{key}");
        let key_ok = check_tag_key(key, &key_field, errors);
        if let Some(value) = check_tag_value(value, &key_field, errors) {
            if key_ok {
                tags.push((key.clone(), value));
            }
        }
    }
    tags
}

/// Tags on update: `null` (clear all) or an object of string-or-null values.
pub fn parse_tag_patch(value: &Value, field: &str, errors: &mut FieldErrors) -> Option<TagPatch> {
    match value {
        Value::Null => Some(TagPatch::ClearAll),
        Value::Object(obj) => {
            let mut changes = Vec::with_capacity(obj.len());
            for (key, value) in obj {
                let key_field = format!("{field}.{key}");
                let key_ok = check_tag_key(key, &key_field, errors);
                let value = if value.is_null() { Some(None) } else { check_tag_value(value, &key_field, errors).map(Some) };
                if let (true, Some(value)) = (key_ok, value) {
                    changes.push((key.clone(), value));
                }
            }
            Some(TagPatch::Merge(changes))
        }
        _ => {
            errors.add(field, "Input should be a valid dictionary or null");
            None
        }
    }
}

/// A group's `description`: a string of at most [`MAX_DESCRIPTION`] characters, never `null`.
fn parse_description(obj: &Map<String, Value>, field: &str, errors: &mut FieldErrors) -> Option<String> {
    obj.get("description").and_then(|v| parse_string(v, field, MAX_DESCRIPTION, errors))
}

impl CreateGroup {
    pub fn parse(body: &Value) -> Result<CreateGroup, FieldErrors> {
        Self::parse_at(body, "", "rules", "tags")
    }

    fn parse_at(body: &Value, prefix: &str, rules_field: &str, tags_field: &str) -> Result<CreateGroup, FieldErrors> {
        let obj = object(body, prefix)?;
        let mut errors = FieldErrors::new();
        let name = match obj.get("name") {
            None => {
                errors.add(path(prefix, "name"), "Field required");
                None
            }
            Some(value) => parse_name(value, &path(prefix, "name"), &mut errors),
        };
        let description = parse_description(obj, &path(prefix, "description"), &mut errors).unwrap_or_default();
        // Neither the rule list nor the tags may be null (`CreateSecurityGroupSerializerV2`,
        // `SingleCreateSecurityGroupSerializer`).
        let rules = obj.get(rules_field).and_then(|value| parse_rules(value, &path(prefix, rules_field), &mut errors));
        let mut tags = match obj.get(tags_field) {
            None => Vec::new(),
            Some(value) => parse_tags(value, &path(prefix, tags_field), &mut errors),
        };
        if !prefix.is_empty() {
            // GLC and TF1 send tags as the legacy `metadata` object (not in Gcore's schema: null
            // is absent, as before).
            if let Some(value) = present(obj, "metadata") {
                for (key, value) in parse_tags(value, &path(prefix, "metadata"), &mut errors) {
                    if !tags.iter().any(|(k, _)| *k == key) {
                        tags.push((key, value));
                    }
                }
            }
        }
        match name {
            Some(name) if errors.is_empty() => Ok(CreateGroup { name, description, rules, tags }),
            _ => Err(errors),
        }
    }
}

impl UpdateGroup {
    pub fn parse(body: &Value) -> Result<UpdateGroup, FieldErrors> {
        // An empty body (no bytes) is an empty update; a `null` body never gets here (`JsonBody`).
        if body.is_null() {
            return Ok(UpdateGroup::default());
        }
        let obj = object(body, "")?;
        let mut errors = FieldErrors::new();
        // Only `tags` may be null (`UpdateSecurityGroupSerializerV2`).
        let update = UpdateGroup {
            name: obj.get("name").and_then(|v| parse_name(v, "name", &mut errors)),
            description: parse_description(obj, "description", &mut errors),
            rules: obj.get("rules").and_then(|v| parse_rules(v, "rules", &mut errors)),
            tags: obj.get("tags").and_then(|v| parse_tag_patch(v, "tags", &mut errors)),
        };
        errors.into_result(update)
    }
}

impl LegacyCreateGroup {
    pub fn parse(body: &Value) -> Result<LegacyCreateGroup, FieldErrors> {
        let obj = object(body, "")?;
        let mut errors = FieldErrors::new();
        let group = match obj.get("security_group") {
            None | Some(Value::Null) => {
                errors.add("security_group", "Field required");
                None
            }
            Some(value) => match CreateGroup::parse_at(value, "security_group", "security_group_rules", "tags") {
                Ok(group) => Some(group),
                Err(e) => {
                    errors.merge(e);
                    None
                }
            },
        };
        let mut instances = Vec::new();
        match obj.get("instances") {
            None => {}
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if let Some(id) = parse_uuid(item, &format!("instances.{i}"), &mut errors) {
                        instances.push(id);
                    }
                }
            }
            Some(_) => errors.add("instances", "Input should be a valid list"),
        }
        match group {
            // The legacy body's rule list is always exact: present means "these rules".
            Some(mut group) if errors.is_empty() => {
                group.rules.get_or_insert_with(Vec::new);
                Ok(LegacyCreateGroup { group, instances })
            }
            _ => Err(errors),
        }
    }
}

impl LegacyUpdateGroup {
    pub fn parse(body: &Value) -> Result<LegacyUpdateGroup, FieldErrors> {
        if body.is_null() {
            return Ok(LegacyUpdateGroup::default());
        }
        let obj = object(body, "")?;
        let mut errors = FieldErrors::new();
        // Only `tags` may be null (`UpdateSecurityGroupSerializer`).
        let name = obj.get("name").and_then(|v| parse_name(v, "name", &mut errors));
        let tags = obj.get("tags").and_then(|v| parse_tag_patch(v, "tags", &mut errors));
        let mut changed_rules = Vec::new();
        match obj.get("changed_rules") {
            None => {}
            Some(Value::Array(items)) if items.len() > MAX_CHANGED_RULES => {
                errors.add("changed_rules", format!("List should have at most {MAX_CHANGED_RULES} items after validation"))
            }
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let field = format!("changed_rules.{i}");
                    let action = item.get("action").and_then(Value::as_str);
                    match action {
                        Some("create") => match parse_rule(item, &field) {
                            Ok(rule) => changed_rules.push(RuleChange::Create(rule)),
                            Err(e) => errors.merge(e),
                        },
                        Some("delete") => match item.get("security_group_rule_id") {
                            None => errors.add(format!("{field}.security_group_rule_id"), "Field required"),
                            Some(v) => {
                                if let Some(id) = parse_uuid(v, &format!("{field}.security_group_rule_id"), &mut errors) {
                                    changed_rules.push(RuleChange::Delete(id));
                                }
                            }
                        },
                        _ => errors.add(format!("{field}.action"), "Input should be 'create' or 'delete'"),
                    }
                }
            }
            Some(_) => errors.add("changed_rules", "Input should be a valid list"),
        }
        errors.into_result(LegacyUpdateGroup { name, tags, changed_rules })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn names() {
        for good in ["abc", "my_security_group", "a b.c-d_", "A1.", &"x".repeat(63)] {
            assert!(is_valid_name(good), "{good}");
        }
        for bad in ["ab", "_abc", "abc-", "a\tb", "ab\u{e9}c", &"x".repeat(64), ""] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn rule_errors_name_their_fields() {
        let err = parse_rule(
            &json!({"direction": "sideways", "protocol": "bad", "port_range_min": -16, "port_range_max": "abc",
            "remote_ip_prefix": "256", "remote_group_id": "bad_group_id", "ethertype": "IPv5"}),
            "rules.0",
        )
        .unwrap_err();
        let fields: Vec<_> = err.0.keys().cloned().collect();
        assert_eq!(
            fields,
            [
                "rules.0.direction",
                "rules.0.ethertype",
                "rules.0.port_range_max",
                "rules.0.port_range_min",
                "rules.0.protocol",
                "rules.0.remote_group_id",
                "rules.0.remote_ip_prefix"
            ]
        );
    }

    #[test]
    fn protocols_any_numbers_and_names() {
        assert_eq!(parse_protocol(&json!("ANY")), Ok(None));
        assert_eq!(parse_protocol(&json!(6)), Ok(Some(Protocol::TCP)));
        assert_eq!(parse_protocol(&json!("6")), Ok(Some(Protocol::TCP)));
        assert_eq!(parse_protocol(&json!("Udp")), Ok(Some(Protocol::UDP)));
        assert!(parse_protocol(&json!(256)).is_err());
        assert!(parse_protocol(&json!(-1)).is_err());
        assert!(parse_protocol(&json!(true)).is_err());
    }

    #[test]
    fn gcore_paths_take_the_enums_exactly() {
        assert_eq!(parse_protocol_exact(&json!("any")), Ok(None));
        assert_eq!(parse_protocol_exact(&json!("tcp")), Ok(Some(Protocol::TCP)));
        assert_eq!(parse_protocol_exact(&json!("ipv6-icmp")), Ok(Some(Protocol::IPV6_ICMP)));
        for bad in [json!("TCP"), json!("Udp"), json!("ANY"), json!("6"), json!(6), json!("icmpv6"), json!(true)] {
            assert!(parse_protocol_exact(&bad).is_err(), "{bad}");
        }
        let rule = |extra: Value| {
            let mut rule = json!({"direction": "ingress"});
            rule.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            rule
        };
        for (bad, field) in [
            (json!({"protocol": "TCP"}), "protocol"),
            (json!({"protocol": 6}), "protocol"),
            (json!({"protocol": "6"}), "protocol"),
            (json!({"ethertype": "IPV4"}), "ethertype"),
            (json!({"ethertype": "ipv6"}), "ethertype"),
            (json!({"ethertype": null}), "ethertype"),
            (json!({"description": null}), "description"),
        ] {
            let err = parse_rule(&rule(bad.clone()), "").unwrap_err();
            assert!(err.0.contains_key(field), "{bad}: {err:?}");
            // Neutron's spellings stay readable where they are documented (stored payloads, config).
            assert!(parse_rule_lenient(&rule(bad.clone()), "").is_ok(), "{bad}");
        }
        assert!(parse_rule(&json!({"direction": "Ingress"}), "").is_err());
        // The schema's anyOf-null fields.
        let nulls = json!({"direction": "egress", "protocol": null, "port_range_min": null, "port_range_max": null,
            "remote_ip_prefix": null, "remote_group_id": null});
        assert!(parse_rule(&nulls, "").is_ok());
    }

    #[test]
    fn nulls_only_where_the_schema_allows_them() {
        for (body, field) in [
            (json!({"name": "web", "tags": null}), "tags"),
            (json!({"name": "web", "description": null}), "description"),
            (json!({"name": "web", "rules": null}), "rules"),
            (json!({"name": null}), "name"),
        ] {
            assert!(CreateGroup::parse(&body).unwrap_err().0.contains_key(field), "{body}");
        }
        for (body, field) in
            [(json!({"name": null}), "name"), (json!({"description": null}), "description"), (json!({"rules": null}), "rules")]
        {
            assert!(UpdateGroup::parse(&body).unwrap_err().0.contains_key(field), "{body}");
        }
        let legacy = |extra: Value| {
            let mut body = json!({"security_group": {"name": "legacy"}});
            body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            body
        };
        assert!(LegacyCreateGroup::parse(&legacy(json!({"instances": null}))).unwrap_err().0.contains_key("instances"));
        let body = json!({"security_group": {"name": "legacy", "security_group_rules": null}});
        assert!(LegacyCreateGroup::parse(&body).unwrap_err().0.contains_key("security_group.security_group_rules"));
        assert!(LegacyUpdateGroup::parse(&json!({"name": null})).unwrap_err().0.contains_key("name"));
        assert!(LegacyUpdateGroup::parse(&json!({"changed_rules": null})).unwrap_err().0.contains_key("changed_rules"));
        assert_eq!(LegacyUpdateGroup::parse(&json!({"tags": null})).unwrap().tags, Some(TagPatch::ClearAll));
    }

    #[test]
    fn group_descriptions_have_gcores_limit() {
        let long = "d".repeat(MAX_DESCRIPTION + 1);
        assert!(CreateGroup::parse(&json!({"name": "web", "description": long})).unwrap_err().0.contains_key("description"));
        assert!(UpdateGroup::parse(&json!({"description": long})).unwrap_err().0.contains_key("description"));
        let legacy = json!({"security_group": {"name": "legacy", "description": long}});
        assert!(LegacyCreateGroup::parse(&legacy).unwrap_err().0.contains_key("security_group.description"));
        let fits = "\u{e9}".repeat(MAX_DESCRIPTION);
        assert_eq!(CreateGroup::parse(&json!({"name": "web", "description": fits})).unwrap().description, fits);
    }

    #[test]
    fn known_fields_drop_the_rest() {
        let body = json!({"name": "web", "junk": "x".repeat(1000), "tags": {"k": "v"},
            "rules": [{"direction": "egress", "security_group_id": "glc", "extra": [1, 2]}]});
        let kept = Value::Object(known_fields(&body, GROUP_FIELDS));
        assert_eq!(kept, json!({"name": "web", "tags": {"k": "v"}, "rules": [{"direction": "egress"}]}));
        assert_eq!(
            known_rule_fields(&json!({"direction": "ingress", "protocol": null, "x": 1})),
            json!({"direction": "ingress", "protocol": null})
        );
        assert_eq!(known_fields(&json!("text"), GROUP_FIELDS), Map::new());
    }

    #[test]
    fn create_and_update_bodies() {
        let create = CreateGroup::parse(&json!({"name": "web", "tags": {"k": " v "}})).unwrap();
        assert_eq!(create.rules, None);
        assert_eq!(create.tags, vec![("k".to_string(), "v".to_string())]);
        assert_eq!(CreateGroup::parse(&json!({"name": "web", "rules": []})).unwrap().rules, Some(vec![]));
        assert!(CreateGroup::parse(&json!({"name": true})).unwrap_err().0.contains_key("name"));
        assert!(CreateGroup::parse(&json!({"name": "web", "tags": {"a=b": "v"}})).unwrap_err().0.contains_key("tags.a=b"));
        let update = UpdateGroup::parse(&json!({"tags": {"k": null}})).unwrap();
        assert_eq!(update.tags, Some(TagPatch::Merge(vec![("k".into(), None)])));
        assert_eq!(UpdateGroup::parse(&json!({"tags": null})).unwrap().tags, Some(TagPatch::ClearAll));
        assert_eq!(UpdateGroup::parse(&json!({})).unwrap(), UpdateGroup::default());
    }

    #[test]
    fn legacy_bodies() {
        let body = json!({"security_group": {"name": "legacy", "security_group_rules": [{"direction": "egress", "protocol": "any"}],
            "metadata": {"m": "1"}}, "instances": []});
        let parsed = LegacyCreateGroup::parse(&body).unwrap();
        assert_eq!(parsed.group.rules.unwrap().len(), 1);
        assert_eq!(parsed.group.tags, vec![("m".to_string(), "1".to_string())]);
        let update = LegacyUpdateGroup::parse(&json!({"changed_rules": [{"action": "delete"}, {"action": "create"}]})).unwrap_err();
        assert!(update.0.contains_key("changed_rules.0.security_group_rule_id"));
        assert!(update.0.contains_key("changed_rules.1.direction"));
    }
}
