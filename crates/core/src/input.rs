//! The request bodies of the security-group API, parsed from JSON with one error per offending
//! field (the `invalid_fields` of a 400), exactly as Gcore's schema validates them: enums in their
//! exact case, `null` only where the schema allows it, every string and list within its limits.
//! Unknown fields are ignored, as the contract requires, and [`known_fields`] drops them from
//! what a task stores. Only schema checks live here; rule semantics are [`RuleDraft::normalize`].
//!
//! Every JSON body of the API, Gcore's and Palisade's own (ports, verdicts, quotas, ...), is read
//! with [`Fields`]: one reader, so a field is required, nullable or typed the same way everywhere
//! and each message is written once.

use std::ops::RangeInclusive;

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

/// The reason of a field that should hold a UUID and does not.
pub const INVALID_UUID: &str = "Input should be a valid UUID";

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

/// Where an error about a whole object goes: its own path, or `body` for the request body.
pub fn field_or_body(field: &str) -> &str {
    if field.is_empty() { "body" } else { field }
}

fn path(prefix: &str, field: &str) -> String {
    if prefix.is_empty() { field.to_string() } else { format!("{prefix}.{field}") }
}

/// A string holding a UUID.
pub fn uuid_of(value: &Value) -> Option<Uuid> {
    value.as_str().and_then(|text| Uuid::try_parse(text).ok())
}

/// Reads `body`, which must be an object (the path `prefix` names it), with `read`: what `read`
/// gives when no field failed, every field error otherwise. `read` gives `None` only when a
/// field it needs failed, which has recorded the error.
pub fn read_object<'v, T>(body: &'v Value, prefix: &str, read: impl FnOnce(&mut Fields<'v, '_>) -> Option<T>) -> Result<T, FieldErrors> {
    let obj = object(body, prefix)?;
    let mut errors = FieldErrors::new();
    let value = read(&mut Fields::new(obj, prefix, &mut errors));
    match value {
        Some(value) if errors.is_empty() => Ok(value),
        _ => Err(errors),
    }
}

/// What an absent field means.
#[derive(Debug, Clone, Copy)]
enum Absent {
    /// Nothing: the field is optional.
    Allowed,
    /// `Field required`.
    Required,
    /// The field's own type error, as if it were `null`.
    Invalid,
}

/// What an [`Absent::Invalid`] field is read as.
static NULL: Value = Value::Null;

/// A JSON object read field by field, under the path of the object (`rules.3`, or `""` for the
/// body). A getter ([`Fields::required`], [`Fields::optional`], then a typed read such as
/// [`Field::uuid`]) records its field's error in the shared [`FieldErrors`] and gives `None`, so
/// a body reports every offending field at once; the caller turns the collector into its result
/// (`errors.into_result(..)`). `null` is a value of the wrong type unless the field is
/// [`Field::nullable`], as in Gcore's schema.
pub struct Fields<'v, 'e> {
    obj: &'v Map<String, Value>,
    prefix: String,
    errors: &'e mut FieldErrors,
}

impl<'v, 'e> Fields<'v, 'e> {
    pub fn new(obj: &'v Map<String, Value>, prefix: &str, errors: &'e mut FieldErrors) -> Self {
        Fields { obj, prefix: prefix.to_string(), errors }
    }

    /// The dotted path of `field` of this object.
    pub fn path(&self, field: &str) -> String {
        path(&self.prefix, field)
    }

    /// The collector, for checks across fields and for nested parsers.
    pub fn errors(&mut self) -> &mut FieldErrors {
        &mut *self.errors
    }

    /// Records an error of `field` of this object.
    pub fn add(&mut self, field: &str, reason: impl Into<String>) {
        let path = self.path(field);
        self.errors.add(path, reason);
    }

    /// Whether `field` of this object has an error.
    pub fn failed(&self, field: &str) -> bool {
        self.errors.0.contains_key(&self.path(field))
    }

    /// A field that may be absent.
    pub fn optional<'r>(&'r mut self, field: &'r str) -> Field<'r, 'v> {
        self.field(field, Absent::Allowed)
    }

    /// A field that must be present (`Field required` otherwise).
    pub fn required<'r>(&'r mut self, field: &'r str) -> Field<'r, 'v> {
        self.field(field, Absent::Required)
    }

    /// A field that must be present, where absence is reported with the field's own type error
    /// rather than `Field required` (the verdict questions).
    pub fn expected<'r>(&'r mut self, field: &'r str) -> Field<'r, 'v> {
        self.field(field, Absent::Invalid)
    }

    fn field<'r>(&'r mut self, field: &'r str, absent: Absent) -> Field<'r, 'v> {
        Field { prefix: &self.prefix, name: field, value: self.obj.get(field), absent, errors: &mut *self.errors }
    }
}

/// One field of a [`Fields`], to be read by one typed getter. Its dotted path is written out
/// only when an error or a nested parser needs it: most fields of most bodies are fine.
pub struct Field<'r, 'v> {
    errors: &'r mut FieldErrors,
    prefix: &'r str,
    name: &'r str,
    value: Option<&'v Value>,
    absent: Absent,
}

impl<'r, 'v> Field<'r, 'v> {
    /// `null` means absent.
    pub fn nullable(mut self) -> Self {
        self.value = self.value.filter(|value| !value.is_null());
        self
    }

    /// The value, this field's (prefix, name) and the collector; `None` (with `Field required`
    /// if so) when absent.
    #[allow(clippy::type_complexity)]
    fn present(self) -> Option<(&'v Value, (&'r str, &'r str), &'r mut FieldErrors)> {
        let at = (self.prefix, self.name);
        match (self.value, self.absent) {
            (Some(value), _) => Some((value, at, self.errors)),
            (None, Absent::Allowed) => None,
            (None, Absent::Required) => {
                self.errors.add(path(at.0, at.1), "Field required");
                None
            }
            (None, Absent::Invalid) => Some((&NULL, at, self.errors)),
        }
    }

    /// The value read by a parser that reports its own errors (under the field's path).
    pub fn with<T>(self, read: impl FnOnce(&'v Value, &str, &mut FieldErrors) -> Option<T>) -> Option<T> {
        let (value, (prefix, name), errors) = self.present()?;
        read(value, &path(prefix, name), errors)
    }

    /// The value read by `parse`, whose `Err` is the field's error.
    pub fn parse<T, E: Into<String>>(self, parse: impl FnOnce(&'v Value) -> Result<T, E>) -> Option<T> {
        let (value, (prefix, name), errors) = self.present()?;
        parse(value).map_err(|reason| errors.add(path(prefix, name), reason)).ok()
    }

    pub fn uuid(self) -> Option<Uuid> {
        self.parse(|value| uuid_of(value).ok_or(INVALID_UUID))
    }

    /// An integer within `range`; `message` for anything else.
    pub fn int(self, range: RangeInclusive<i64>, message: impl Into<String>) -> Option<i64> {
        self.parse(|value| value.as_i64().filter(|n| range.contains(n)).ok_or(message))
    }

    /// A string of at most `max` characters.
    pub fn string(self, max: usize) -> Option<String> {
        self.parse(|value| match value {
            Value::String(text) if text.chars().count() > max => Err(format!("String should have at most {max} characters")),
            Value::String(text) => Ok(text.clone()),
            _ => Err("Input should be a valid string".to_string()),
        })
    }

    /// A string that `valid` accepts; `message` for anything else.
    pub fn text(self, valid: impl FnOnce(&str) -> bool, message: &str) -> Option<String> {
        self.parse(|value| value.as_str().filter(|text| valid(text)).map(str::to_owned).ok_or(message))
    }

    pub fn bool(self) -> Option<bool> {
        self.parse(|value| value.as_bool().ok_or("Input should be a boolean"))
    }

    /// A list, its items to be read by [`List`]; `not_a_list` for anything else.
    pub fn list(self, not_a_list: &str) -> Option<List<'r, 'v>> {
        let (value, (prefix, name), errors) = self.present()?;
        let path = path(prefix, name);
        match value.as_array() {
            Some(items) => Some(List { errors, path, items }),
            None => {
                errors.add(path, not_a_list);
                None
            }
        }
    }
}

/// The items of a list field, each read under its own path (`rules.3`).
pub struct List<'r, 'v> {
    errors: &'r mut FieldErrors,
    path: String,
    items: &'v [Value],
}

impl<'r, 'v> List<'r, 'v> {
    /// The list if it has at most `max` items; otherwise `message(len)` is the field's error.
    pub fn at_most(self, max: usize, message: impl FnOnce(usize) -> String) -> Option<Self> {
        if self.items.len() > max {
            self.errors.add(self.path, message(self.items.len()));
            return None;
        }
        Some(self)
    }

    /// The items `read` accepts; it reports its own errors, under the item's path.
    pub fn each_with<T>(self, mut read: impl FnMut(&'v Value, &str, &mut FieldErrors) -> Option<T>) -> Vec<T> {
        let List { errors, path, items } = self;
        items.iter().enumerate().filter_map(|(i, item)| read(item, &format!("{path}.{i}"), errors)).collect()
    }

    /// The items `parse` accepts; its `Err` is the item's error.
    pub fn each<T, E: Into<String>>(self, mut parse: impl FnMut(&'v Value) -> Result<T, E>) -> Vec<T> {
        self.each_with(|item, path, errors| parse(item).map_err(|reason| errors.add(path, reason)).ok())
    }

    /// The items `parse` accepts; each other item records `message` under the list's own path.
    pub fn each_or<T>(self, message: &str, mut parse: impl FnMut(&'v Value) -> Option<T>) -> Vec<T> {
        let List { errors, path, items } = self;
        items
            .iter()
            .filter_map(|item| {
                let parsed = parse(item);
                if parsed.is_none() {
                    errors.add(path.as_str(), message);
                }
                parsed
            })
            .collect()
    }

    pub fn uuids(self) -> Vec<Uuid> {
        self.each(|item| uuid_of(item).ok_or(INVALID_UUID))
    }
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
    let exact = spelling == Spelling::Exact;
    read_object(value, prefix, |rule| {
        let direction = rule
            .required("direction")
            .nullable()
            .parse(|value| value.as_str().and_then(Direction::parse).ok_or("Input should be 'egress' or 'ingress'"));
        let ethertype = null_unless_exact(rule.optional("ethertype"), spelling).parse(|value| {
            let text = value.as_str();
            let ethertype = if exact { text.and_then(Ethertype::parse_exact) } else { text.and_then(Ethertype::parse) };
            ethertype.ok_or("Input should be 'IPv4' or 'IPv6'")
        });
        let protocol = rule
            .optional("protocol")
            .nullable()
            .parse(|value| if exact { parse_protocol_exact(value) } else { parse_protocol(value) })
            .flatten();
        let port_range_min = rule.optional("port_range_min").nullable().parse(port_number);
        let port_range_max = rule.optional("port_range_max").nullable().parse(port_number);
        let remote_ip_prefix = rule.optional("remote_ip_prefix").nullable().parse(|value| match value {
            Value::String(text) => text.parse::<Cidr>().map_err(|e| format!("{e}, got '{text}'")),
            _ => Err("Input should be a valid string".to_string()),
        });
        let remote_group_id = rule.optional("remote_group_id").nullable().uuid();
        let description = null_unless_exact(rule.optional("description"), spelling).string(MAX_DESCRIPTION);
        Some(RuleDraft {
            direction: direction?,
            ethertype,
            protocol,
            port_range_min,
            port_range_max,
            remote_ip_prefix,
            remote_group_id,
            description,
        })
    })
}

/// Gcore's schema takes `null` for only some optional fields of a rule; Neutron's spellings for
/// every one.
fn null_unless_exact<'r, 'v>(field: Field<'r, 'v>, spelling: Spelling) -> Field<'r, 'v> {
    if spelling == Spelling::Exact { field } else { field.nullable() }
}

/// A rule's port (or ICMP type or code): an integer from 0 to 65535.
fn port_number(value: &Value) -> Result<u16, String> {
    match value.as_number().map(|n| n.as_i64()) {
        Some(Some(port)) => u16::try_from(port).map_err(|_| format!("Invalid value for port {port}: must be between 0 and 65535")),
        _ => Err("port range must be an integer".to_string()),
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

/// A list of at most [`MAX_RULES`] rule inputs.
fn parse_rules(field: Field<'_, '_>) -> Option<Vec<RuleDraft>> {
    let rules = field
        .list("Input should be a valid list")?
        .at_most(MAX_RULES, |len| format!("List should have at most {MAX_RULES} items after validation, not {len}"))?;
    Some(rules.each_with(|item, path, errors| parse_rule(item, path).map_err(|e| errors.merge(e)).ok()))
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

fn tags_of(field: Field<'_, '_>) -> Vec<(String, String)> {
    field.with(|value, path, errors| Some(parse_tags(value, path, errors))).unwrap_or_default()
}

impl CreateGroup {
    pub fn parse(body: &Value) -> Result<CreateGroup, FieldErrors> {
        Self::parse_at(body, "", "rules", "tags")
    }

    fn parse_at(body: &Value, prefix: &str, rules_field: &str, tags_field: &str) -> Result<CreateGroup, FieldErrors> {
        read_object(body, prefix, |group| {
            let name = group.required("name").with(parse_name);
            // A group's description is never null, and neither are the rule list and the tags
            // (`CreateSecurityGroupSerializerV2`, `SingleCreateSecurityGroupSerializer`).
            let description = group.optional("description").string(MAX_DESCRIPTION).unwrap_or_default();
            let rules = parse_rules(group.optional(rules_field));
            let mut tags = tags_of(group.optional(tags_field));
            if !prefix.is_empty() {
                // GLC and TF1 send tags as the legacy `metadata` object (not in Gcore's schema:
                // null is absent, as before).
                for (key, value) in tags_of(group.optional("metadata").nullable()) {
                    if !tags.iter().any(|(k, _)| *k == key) {
                        tags.push((key, value));
                    }
                }
            }
            Some(CreateGroup { name: name?, description, rules, tags })
        })
    }
}

impl UpdateGroup {
    pub fn parse(body: &Value) -> Result<UpdateGroup, FieldErrors> {
        // An empty body (no bytes) is an empty update; a `null` body never gets here (`JsonBody`).
        if body.is_null() {
            return Ok(UpdateGroup::default());
        }
        // Only `tags` may be null (`UpdateSecurityGroupSerializerV2`).
        read_object(body, "", |group| {
            Some(UpdateGroup {
                name: group.optional("name").with(parse_name),
                description: group.optional("description").string(MAX_DESCRIPTION),
                rules: parse_rules(group.optional("rules")),
                tags: group.optional("tags").with(parse_tag_patch),
            })
        })
    }
}

impl LegacyCreateGroup {
    pub fn parse(body: &Value) -> Result<LegacyCreateGroup, FieldErrors> {
        read_object(body, "", |fields| {
            let group = fields.required("security_group").nullable().with(|value, _, errors| {
                CreateGroup::parse_at(value, "security_group", "security_group_rules", "tags").map_err(|e| errors.merge(e)).ok()
            });
            let instances = fields.optional("instances").list("Input should be a valid list").map(List::uuids).unwrap_or_default();
            let mut group = group?;
            // The legacy body's rule list is always exact: present means "these rules".
            group.rules.get_or_insert_with(Vec::new);
            Some(LegacyCreateGroup { group, instances })
        })
    }
}

impl LegacyUpdateGroup {
    pub fn parse(body: &Value) -> Result<LegacyUpdateGroup, FieldErrors> {
        if body.is_null() {
            return Ok(LegacyUpdateGroup::default());
        }
        // Only `tags` may be null (`UpdateSecurityGroupSerializer`).
        read_object(body, "", |group| {
            let name = group.optional("name").with(parse_name);
            let tags = group.optional("tags").with(parse_tag_patch);
            let changed_rules = group
                .optional("changed_rules")
                .list("Input should be a valid list")
                .and_then(|list| {
                    list.at_most(MAX_CHANGED_RULES, |_| format!("List should have at most {MAX_CHANGED_RULES} items after validation"))
                })
                .map(|list| list.each_with(parse_rule_change))
                .unwrap_or_default();
            Some(LegacyUpdateGroup { name, tags, changed_rules })
        })
    }
}

/// One item of `changed_rules`: `{"action": "create", ...rule}` or `{"action": "delete",
/// "security_group_rule_id": ...}`.
fn parse_rule_change(item: &Value, field: &str, errors: &mut FieldErrors) -> Option<RuleChange> {
    match (item.as_object(), item.get("action").and_then(Value::as_str)) {
        (_, Some("create")) => parse_rule(item, field).map(RuleChange::Create).map_err(|e| errors.merge(e)).ok(),
        (Some(obj), Some("delete")) => Fields::new(obj, field, errors).required("security_group_rule_id").uuid().map(RuleChange::Delete),
        _ => {
            errors.add(path(field, "action"), "Input should be 'create' or 'delete'");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The reader's rules for absent and null fields, and the paths of its errors.
    #[test]
    fn fields_report_each_field_under_its_path() {
        let body = json!({"id": "not-a-uuid", "n": 7, "nothing": null, "ids": ["00000000-0000-0000-0000-000000000001", 3, "x"],
            "flags": [true, 1]});
        let mut errors = FieldErrors::new();
        let mut fields = Fields::new(body.as_object().unwrap(), "port", &mut errors);
        assert_eq!(fields.optional("id").uuid(), None);
        assert!(fields.failed("id"));
        assert_eq!(fields.required("n").int(0..=9, "small"), Some(7));
        assert_eq!(fields.required("n").int(0..=6, "small"), None);
        assert_eq!(fields.optional("absent").uuid(), None);
        assert_eq!(fields.required("missing").bool(), None);
        assert_eq!(fields.optional("nothing").nullable().string(3), None);
        assert_eq!(fields.optional("nothing").string(3), None);
        assert_eq!(fields.expected("gone").bool(), None);
        assert_eq!(fields.optional("ids").list("a list").map(List::uuids), Some(vec![Uuid::from_u128(1)]));
        assert_eq!(fields.optional("flags").list("a list").and_then(|l| l.at_most(1, |n| format!("{n} flags"))).map(|_| ()), None);
        assert_eq!(fields.optional("flags").list("a list").unwrap().each_or("bools", Value::as_bool), vec![true]);
        let reasons = |path: &str| errors.0.get(path).cloned().unwrap_or_default();
        assert_eq!(reasons("port.id"), [INVALID_UUID]);
        assert_eq!(reasons("port.n"), ["small"]);
        assert_eq!(reasons("port.absent"), Vec::<String>::new());
        assert_eq!(reasons("port.missing"), ["Field required"]);
        assert_eq!(reasons("port.nothing"), ["Input should be a valid string"], "null only where nullable");
        assert_eq!(reasons("port.gone"), ["Input should be a boolean"], "expected: absent is the type error");
        assert_eq!((reasons("port.ids.1"), reasons("port.ids.2")), (vec![INVALID_UUID.to_string()], vec![INVALID_UUID.to_string()]));
        assert_eq!(reasons("port.flags"), ["2 flags", "bools"]);
    }

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
