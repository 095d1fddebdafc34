//! Documentation-only types of the OpenAPI document: request bodies that `palisade_core::input`
//! parses by hand, bodies built with `json!`, path and query parameters, and the collections.
//! Nothing here is (de)serialized at run time; the types exist so that `#[utoipa::path]` can name
//! them. Limits and enums are taken from the constants validation uses (`MAX_RULES`,
//! `Protocol::names()`, the quota names...), through utoipa's builders where derive attributes
//! would need literals, so the document cannot drift from what the server checks.

#![allow(dead_code)] // Fields are read by the derives only.

use palisade_core::Protocol;
use palisade_core::input::{MAX_CHANGED_RULES, MAX_DESCRIPTION, MAX_RULES, MAX_TAG_LEN};
use palisade_core::port::MAX_FIXED_IPS;
use palisade_core::quota::{self, MAX_LIMIT};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::{IntoParams, PartialSchema, ToSchema};
use uuid::Uuid;

use crate::dto::{GroupOut, TagOut, TaskOut};

// ---------------------------------------------------------------------------------------------
// Schemas built from core's constants
// ---------------------------------------------------------------------------------------------

/// A component schema written with utoipa's builders.
macro_rules! built_schema {
    ($(#[$doc:meta])* $name:ident => $build:expr) => {
        built_schema!($(#[$doc])* $name as stringify!($name) => $build);
    };
    ($(#[$doc:meta])* $name:ident as $component:expr => $build:expr) => {
        $(#[$doc])*
        pub struct $name;
        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                $build.into()
            }
        }
        impl ToSchema for $name {
            fn name() -> std::borrow::Cow<'static, str> {
                $component.into()
            }
        }
    };
}

const ACCEPTED_TOO: &str = "Also accepted: `any` (all protocols, stored as null). Names are exact, as listed: other cases (`TCP`), numbers (`6`, `\"6\"`) and aliases (`icmpv6`) are a 400.";

fn string_enum(values: impl IntoIterator<Item = impl Into<Value>>, description: String) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).enum_values(Some(values)).description(Some(description))
}

built_schema!(
    /// The v2 protocol names (`Protocol::names()`).
    ProtocolV2 => string_enum(Protocol::names(), format!("An IP protocol (the v2 inputs: use null for all protocols). {ACCEPTED_TOO}"))
);
built_schema!(
    /// The v1 protocol names: `any` and `Protocol::names()`.
    ProtocolV1 as "Protocol" => string_enum(std::iter::once("any").chain(Protocol::names()), format!("An IP protocol or `any` (the v1 inputs). {ACCEPTED_TOO}"))
);
/// A tag key or value: 1 to `MAX_TAG_LEN` characters of `pattern`.
fn tag_text(pattern: &str, description: String, example: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(MAX_TAG_LEN))
        .pattern(Some(pattern))
        .description(Some(description))
        .examples([example])
}

built_schema!(
    TagKey => tag_text(r"^[^\s=]+$", format!("Tag key: 1 to {MAX_TAG_LEN} characters, no whitespace, no `=`."), "my-tag")
);
built_schema!(
    TagValue => tag_text(
        r"^\s*[^\t\n\r\v\f]*\S[^\t\n\r\v\f]*\s*$",
        format!("Tag value: 1 to {MAX_TAG_LEN} characters without tab, newline, carriage return, vertical tab or form feed; leading and trailing whitespace is stripped. Gcore's schema sets no limit on the number of tags (`max_body_bytes` bounds it)."),
        "my-tag-value",
    )
);
built_schema!(
    /// A value of a tags merge patch: null deletes the key.
    TagValueOrNull => utoipa::openapi::schema::OneOfBuilder::new()
        .item(TagValue::schema_ref())
        .item(ObjectBuilder::new().schema_type(Type::Null))
);
built_schema!(
    /// Audit actions (`palisade_service::audit::Action::ALL`).
    AuditAction => string_enum(
        palisade_service::audit::Action::ALL.iter().map(|a| a.as_str()),
        "What was done: `<resource>.<verb>`.".to_string(),
    )
);

fn quota_limit(description: String) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(-1)).maximum(Some(MAX_LIMIT)).description(Some(description))
}

built_schema!(
    /// `PUT /palisade/v1/quotas/...`: the body's keys are the quota names of `palisade_core::quota`.
    SetQuota => {
        let defaults = quota::Limits::default();
        let limit = |what: &str, default: i64| {
            quota_limit(format!("The most {what} the project may have in the region; -1: unlimited. Default (unless configured): {default}."))
        };
        ObjectBuilder::new()
            .description(Some("New limits; an omitted limit is unchanged."))
            .property(quota::GROUPS, limit("security groups", defaults.security_groups))
            .property(quota::RULES, limit("security group rules (over all its groups)", defaults.security_group_rules))
            .examples([json!({quota::GROUPS: 100, quota::RULES: 5000})])
    }
);

/// `QuotaOut`'s limit fields.
pub fn quota_limit_field() -> ObjectBuilder {
    quota_limit("The limit; -1: unlimited.".into())
}

fn description_field() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String).max_length(Some(MAX_DESCRIPTION)).description(Some(format!(
        "Free text of at most {MAX_DESCRIPTION} characters; not null. Absent: `\"\"` (create) or unchanged (update)."
    )))
}

fn rules_field() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(SecurityGroupRuleInputV2::schema_ref())
        .max_items(Some(MAX_RULES))
        .description(Some("Create: omitted, the default template (allow all egress, IPv4 and IPv6); `[]`, no rules; otherwise exactly these rules (identical ones once). Update: the desired final rule set (rules not in it are deleted, new ones created, matching ones kept). Null is invalid."))
}

fn legacy_rules_field() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(SecurityGroupRuleInputV1::schema_ref())
        .max_items(Some(MAX_RULES))
        .description(Some("Exactly the rules to create (identical ones once); absent: none."))
}

fn changed_rules_field() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(ChangedRule::schema_ref())
        .max_items(Some(MAX_CHANGED_RULES))
        .description(Some("Rule changes, applied in order."))
}

fn fixed_ips_field() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(ObjectBuilder::new().schema_type(Type::String))
        .max_items(Some(MAX_FIXED_IPS))
        .description(Some("The port's IPv4 and IPv6 addresses: unicast host addresses (not unspecified, loopback, multicast, link-local such as 169.254.169.254, or the limited broadcast). The port may send from them (and IPv6 link-local addresses) only."))
        .examples([json!(["10.0.0.5", "2001:db8::5"])])
}

/// A `$ref` to a component schema.
trait SchemaRef: ToSchema {
    fn schema_ref() -> RefOr<Schema> {
        RefOr::Ref(utoipa::openapi::Ref::from_schema_name(Self::name()))
    }
}
impl<T: ToSchema> SchemaRef for T {}

// ---------------------------------------------------------------------------------------------
// Rules, groups and tags (request bodies)
// ---------------------------------------------------------------------------------------------

/// Traffic direction, from the point of view of the ports of the group.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Egress,
    Ingress,
}

#[derive(Serialize, ToSchema)]
pub enum Ethertype {
    IPv4,
    IPv6,
}

/// The fields every rule input shares; `protocol` differs between v1 and v2.
#[derive(ToSchema)]
pub struct RuleFields {
    direction: Direction,
    /// Address family, exactly `IPv4` or `IPv6` (not null). Absent: `IPv4`.
    ethertype: Option<Ethertype>,
    /// First port, or ICMP type. With `tcp`, `udp`, `sctp`, `dccp` or `udplite`: ports 1..65535; a lone `port_range_min` is a single port, a lone `port_range_max` is refused, and 1..65535 is stored as null (all ports). With `icmp` or `ipv6-icmp`: `port_range_min` is the ICMP type and `port_range_max` the code (0..255; a code needs a type). With another protocol or none: must be null.
    #[schema(minimum = 0, maximum = 65535)]
    port_range_min: Option<u16>,
    /// Last port, or ICMP code (see `port_range_min`).
    #[schema(minimum = 0, maximum = 65535)]
    port_range_max: Option<u16>,
    /// The remote network, an IPv4 or IPv6 CIDR of the rule's ethertype (a bare address means a single host). Null: anywhere.
    #[schema(examples("10.0.0.0/8", "2001:db8::/32"))]
    remote_ip_prefix: Option<String>,
    /// Allow traffic of the ports of this group (of the same project and region, or the group itself).
    remote_group_id: Option<Uuid>,
    #[schema(schema_with = description_field)]
    description: Option<String>,
}

/// A rule to create (v2). Fields that are not listed are ignored.
#[derive(ToSchema)]
pub struct SecurityGroupRuleInputV2 {
    /// Null or absent: all protocols.
    protocol: Option<ProtocolV2>,
    #[serde(flatten)]
    fields: RuleFields,
}

/// A rule to create (v1): the protocol names include `any`.
#[derive(ToSchema)]
pub struct SecurityGroupRuleInputV1 {
    /// Null, absent or `any`: all protocols.
    protocol: Option<ProtocolV1>,
    #[serde(flatten)]
    fields: RuleFields,
}

/// The new attributes of a rule (v1 PUT); omitted fields take their defaults.
#[derive(ToSchema)]
pub struct ReplaceSecurityGroupRule {
    /// Optional; when given it must be the group of the rule being replaced (400 otherwise).
    security_group_id: Option<Uuid>,
    #[serde(flatten)]
    rule: SecurityGroupRuleInputV1,
}

/// One item of `changed_rules`, chosen by `action`.
#[derive(ToSchema)]
#[serde(tag = "action", rename_all = "lowercase")]
pub enum ChangedRule {
    /// Create a rule.
    Create(SecurityGroupRuleInputV1),
    /// Delete a rule of the group.
    Delete {
        /// A rule of this group.
        security_group_rule_id: Uuid,
    },
}

/// 3 to 63 characters: starts with a letter or digit, then letters, digits, spaces, `.`, `_` or `-`, and ends with a letter, digit, `.` or `_`. Names need not be unique.
#[derive(ToSchema)]
#[schema(min_length = 3, max_length = 63, pattern = r"^[a-zA-Z0-9][a-zA-Z 0-9._\-]{1,61}[a-zA-Z0-9._]$", examples("my_security_group"))]
pub struct SecurityGroupName(String);

/// Tags to set: an object of keys and values (keys are `TagKey`s).
#[derive(ToSchema)]
#[schema(examples(json!({"my-tag": "my-tag-value"})))]
pub struct CreateTags(std::collections::BTreeMap<String, TagValue>);

/// A JSON merge patch of the tags: a string sets a key, null deletes it, keys not mentioned are kept; `tags: null` deletes every user tag. Read-only tags never change, and deleting a missing key is not an error.
#[derive(ToSchema)]
#[schema(examples(json!({"env": "prod", "team": null})))]
pub struct UpdateTags(std::collections::BTreeMap<String, TagValueOrNull>);

/// `POST /cloud/v2/security_groups/...`.
#[derive(ToSchema)]
#[schema(examples(json!({"name": "web", "description": "Web servers", "rules": [{"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 443, "port_range_max": 443, "remote_ip_prefix": "0.0.0.0/0"}], "tags": {"env": "prod"}})))]
pub struct CreateSecurityGroupV2 {
    name: SecurityGroupName,
    #[schema(schema_with = description_field)]
    description: Option<String>,
    #[schema(schema_with = rules_field)]
    rules: Option<Vec<SecurityGroupRuleInputV2>>,
    tags: Option<CreateTags>,
}

/// Every field is optional; absent means unchanged. Only `tags` may be null.
#[derive(ToSchema)]
pub struct UpdateSecurityGroupV2 {
    name: Option<SecurityGroupName>,
    #[schema(schema_with = description_field)]
    description: Option<String>,
    #[schema(schema_with = rules_field)]
    rules: Option<Vec<SecurityGroupRuleInputV2>>,
    tags: Option<UpdateTags>,
}

#[derive(ToSchema)]
pub struct CopySecurityGroup {
    name: SecurityGroupName,
}

#[derive(ToSchema)]
pub struct LegacySecurityGroupInput {
    name: SecurityGroupName,
    #[schema(schema_with = description_field)]
    description: Option<String>,
    #[schema(schema_with = legacy_rules_field)]
    security_group_rules: Option<Vec<SecurityGroupRuleInputV1>>,
    tags: Option<CreateTags>,
    /// Legacy name of `tags` (gcorelabscloud-go); a key in both keeps the `tags` value.
    metadata: Option<CreateTags>,
}

/// The synchronous v1 create.
#[derive(ToSchema)]
#[schema(examples(json!({"security_group": {"name": "legacy", "security_group_rules": [{"direction": "egress", "protocol": "any"}], "metadata": {"m": "1"}}})))]
pub struct LegacyCreateSecurityGroup {
    security_group: LegacySecurityGroupInput,
    /// Instances whose ports (registered with `/palisade/v1/ports`) the new group is bound to; an instance without ports is a 404 and nothing is created.
    instances: Option<Vec<Uuid>>,
}

/// Every field is optional; absent means unchanged. Only `tags` may be null.
#[derive(ToSchema)]
pub struct LegacyUpdateSecurityGroup {
    name: Option<SecurityGroupName>,
    tags: Option<UpdateTags>,
    #[schema(schema_with = changed_rules_field)]
    changed_rules: Option<Vec<ChangedRule>>,
}

/// Gcore's `InstancePortsSecurityGroupsSerializer`: at least one of the two fields.
#[derive(ToSchema)]
#[schema(examples(json!({"name": "web"}), json!({"ports_security_group_names": [{"port_id": null, "security_group_names": ["web"]}]})))]
pub struct InstancePortsSecurityGroups {
    /// A group name; applies to every port of the instance (not null).
    name: Option<SecurityGroupName>,
    /// Not null.
    ports_security_group_names: Option<Vec<PortSecurityGroupNames>>,
}

#[derive(ToSchema)]
pub struct PortSecurityGroupNames {
    /// A port of the instance; null: every port.
    port_id: Option<Uuid>,
    security_group_names: Vec<SecurityGroupName>,
}

/// The tasks to acknowledge.
#[derive(ToSchema)]
pub struct AcknowledgeTasks {
    /// Null or absent: every unacknowledged task.
    task_ids: Option<Vec<String>>,
}

// ---------------------------------------------------------------------------------------------
// Ports, agents, verdicts (request bodies)
// ---------------------------------------------------------------------------------------------

/// The fields a port is registered or updated with.
#[derive(ToSchema)]
pub struct PortFields {
    /// Shown as the instance's `name` (default: the instance id).
    #[schema(min_length = 1, max_length = 255)]
    instance_name: Option<String>,
    /// The port's interface on the host (default: `tap` and the first 11 characters of the port id).
    #[schema(pattern = "^[A-Za-z0-9._-]{1,15}$")]
    device: Option<String>,
    /// Groups of the port's project and region to bind, in order.
    security_group_ids: Option<Vec<Uuid>>,
}

/// A port to register.
#[derive(ToSchema)]
pub struct CreatePort {
    /// The platform's port id (default: a new one).
    id: Option<Uuid>,
    /// The client (tenant) the port belongs to.
    #[schema(minimum = 1)]
    client_id: i64,
    #[schema(minimum = 0)]
    project_id: i64,
    #[schema(minimum = 0)]
    region_id: i64,
    instance_id: Uuid,
    /// The host the port lives on: the `--host` of its agent.
    #[schema(pattern = "^[A-Za-z0-9._-]{1,253}$")]
    host: String,
    /// A unicast MAC address; the port may send from it only.
    #[schema(examples("fa:16:3e:00:00:01"))]
    mac_address: String,
    #[schema(schema_with = fixed_ips_field)]
    fixed_ips: Vec<String>,
    #[serde(flatten)]
    fields: PortFields,
}

/// New values; absent fields are kept.
#[derive(ToSchema)]
pub struct UpdatePort {
    #[schema(pattern = "^[A-Za-z0-9._-]{1,253}$")]
    host: Option<String>,
    mac_address: Option<String>,
    #[schema(schema_with = fixed_ips_field)]
    fixed_ips: Option<Vec<String>>,
    #[serde(flatten)]
    fields: PortFields,
}

#[derive(ToSchema)]
pub struct AgentStatus {
    /// The policy revision the agent has applied.
    #[schema(minimum = 0)]
    applied_revision: i64,
}

/// A flow, from the port's point of view. Give `port_id` or `security_group_ids`.
#[derive(ToSchema)]
#[schema(examples(json!({"port_id": "3f0c6c9e-6e0a-4c1e-9d1e-2b7b8f7f2a10", "direction": "ingress", "remote_ip": "203.0.113.7", "protocol": "tcp", "port": 22})))]
pub struct Flow {
    port_id: Option<Uuid>,
    security_group_ids: Option<Vec<Uuid>>,
    direction: Direction,
    /// The source of an ingress packet, the destination of an egress one.
    remote_ip: String,
    /// A protocol name or number 0..255 (not `any`).
    #[schema(value_type = Value)]
    protocol: Value,
    /// Destination port.
    #[schema(minimum = 0, maximum = 65535)]
    port: Option<u16>,
    #[schema(minimum = 0, maximum = 255)]
    icmp_type: Option<u8>,
    #[schema(minimum = 0, maximum = 255)]
    icmp_code: Option<u8>,
    #[schema(default = false)]
    established: Option<bool>,
}

/// One flow, or a batch of at most 10,000 in `flows`.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum VerdictRequest {
    One(Flow),
    Batch {
        #[schema(max_items = 10000)]
        flows: Vec<Flow>,
    },
}

/// One answer, or `{"results": [...]}` for a batch, in order.
#[derive(ToSchema)]
#[serde(untagged)]
pub(crate) enum VerdictAnswer {
    One(crate::verdicts::AnswerOut),
    Batch(crate::verdicts::BatchOut),
}

// ---------------------------------------------------------------------------------------------
// Response bodies built with `json!` and the collections
// ---------------------------------------------------------------------------------------------

/// The body of every error response.
#[derive(ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// The kind of error.
    #[schema(examples(
        "ValidationError",
        "NotAuthenticated",
        "PermissionDenied",
        "NotFoundError",
        "HTTPError",
        "SecurityGroupRuleExists",
        "QuotaLimitExceed",
        "RequestEntityTooLarge",
        "InternalServerError",
        "ServiceUnavailable"
    ))]
    exception_class: String,
    /// A human-readable message.
    message: String,
    /// The request's id, as in the `x-request-id` header.
    request_id: String,
    /// Each offending field (a dotted path such as `rules.0.protocol`, `tags.env` or `body`) and its reasons. On 400, on a 404 for an unknown `remote_group_id`, and on 409.
    invalid_fields: Option<std::collections::BTreeMap<String, Vec<String>>>,
    /// Extra details: `{"existing_rule_id": ...}` on a 409 for a duplicate rule, `{"quota", "limit", "requested"}` on a 409 for a quota.
    #[schema(value_type = Option<Object>)]
    info: Option<Value>,
}

#[derive(ToSchema)]
pub struct Health {
    #[schema(pattern = "^ok$")]
    status: String,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadinessStatus {
    Ready,
    Unavailable,
}

#[derive(ToSchema)]
pub struct Readiness {
    status: ReadinessStatus,
    /// The database backend.
    #[schema(examples("sqlite"))]
    database: String,
}

/// `NEW` (queued) -> `RUNNING` -> `FINISHED` or `ERROR`; terminal states never change.
#[derive(ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaskState {
    New,
    Running,
    Finished,
    Error,
}

/// What a FINISHED task created; only the keys that apply are present.
#[derive(ToSchema)]
pub struct CreatedResources {
    /// `create_security_group`: exactly the new group.
    security_groups: Option<Vec<Uuid>>,
    /// `create_security_group`: the group's rules; `create_security_group_rule`: exactly the new rule; `update_security_group`: the rules added.
    security_group_rules: Option<Vec<Uuid>>,
}

#[derive(ToSchema)]
pub struct GroupSummary {
    id: Uuid,
    name: String,
}

#[derive(ToSchema)]
pub struct RemoteGroupMembers {
    id: Uuid,
    ipv4: Vec<String>,
    ipv6: Vec<String>,
}

/// The merged rules of every group on a port (each rule also carries `security_group_name`).
#[derive(ToSchema)]
pub struct EffectiveRules {
    port_id: Uuid,
    instance_id: Uuid,
    security_groups: Vec<GroupSummary>,
    #[schema(pattern = "^drop$")]
    default_action: String,
    /// Always true.
    stateful: bool,
    ingress: Vec<crate::dto::RuleOut<'static>>,
    egress: Vec<crate::dto::RuleOut<'static>>,
    remote_groups: Vec<RemoteGroupMembers>,
}

#[derive(ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    Duplicate,
    Shadowed,
    OverlyBroad,
    EmptyRemoteGroup,
    Unmatchable,
    /// No hit on any port for `unused_after_days` (issue 14).
    Unused,
}

#[derive(ToSchema)]
pub struct Finding {
    kind: FindingKind,
    rule_id: Uuid,
    same_as: Option<Uuid>,
    covered_by: Option<Uuid>,
    reason: Option<String>,
    remote_group_id: Option<Uuid>,
    /// `unused`: the rule's latest hit (RFC 3339), null when it never had one.
    last_hit_at: Option<String>,
}

#[derive(ToSchema)]
pub struct Analysis {
    security_group_id: Uuid,
    rule_count: u64,
    findings: Vec<Finding>,
}

#[derive(ToSchema)]
pub struct PortPolicy {
    id: Uuid,
    instance_id: Uuid,
    device: String,
    mac_address: String,
    fixed_ips: Vec<String>,
    security_group_ids: Vec<Uuid>,
}

#[derive(ToSchema)]
pub struct RulePolicy {
    id: Uuid,
    direction: Direction,
    ethertype: Ethertype,
    /// IANA protocol number; null: all.
    #[schema(minimum = 0, maximum = 255, required = true)]
    protocol: Option<u8>,
    #[schema(required = true)]
    port_range_min: Option<u16>,
    #[schema(required = true)]
    port_range_max: Option<u16>,
    #[schema(required = true)]
    remote_ip_prefix: Option<String>,
    #[schema(required = true)]
    remote_group_id: Option<Uuid>,
}

#[derive(ToSchema)]
pub struct GroupPolicy {
    id: Uuid,
    rules: Vec<RulePolicy>,
}

#[derive(ToSchema)]
pub struct RemoteGroupPolicy {
    id: Uuid,
    /// Fixed addresses of every port bound to the group, on any host.
    members: Vec<String>,
}

/// The policy of one host (`palisade_core::policy::HostPolicy`). Rules and remote-group membership are shipped separately: a rule names its remote group by id, and each remote group's members are listed once.
#[derive(ToSchema)]
pub struct HostPolicy {
    host: String,
    revision: i64,
    ports: Vec<PortPolicy>,
    security_groups: Vec<GroupPolicy>,
    remote_groups: Vec<RemoteGroupPolicy>,
}

/// A page of items (`dto::Page<T>`), named per item type.
macro_rules! collection {
    ($($(#[$doc:meta])* $name:ident of $item:ty;)*) => {$(
        $(#[$doc])*
        #[derive(ToSchema)]
        pub struct $name {
            /// The number of items that match, over all pages.
            count: u64,
            /// This page.
            results: Vec<$item>,
        }
    )*};
}

collection! {
    /// A page of security groups.
    SecurityGroupCollection of GroupOut<'static>;
    /// Tags of a group.
    TagCollection of TagOut<'static>;
    /// A page of tasks.
    TaskCollection of TaskOut<'static>;
    /// Instances using a group.
    InstanceCollection of crate::instances::InstanceOut;
    /// The groups bound to any port of an instance.
    InstanceSecurityGroupList of crate::instances::GroupRef;
    /// Ports.
    PortCollection of crate::ports::PortOut;
    /// Audit events, newest first.
    AuditEventCollection of crate::audit::AuditEventOut;
}

// ---------------------------------------------------------------------------------------------
// Path and query parameters
// ---------------------------------------------------------------------------------------------

/// `{project_id}/{region_id}` of the project-scoped paths.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ScopePath {
    /// Project ID: a non-negative integer (anything else is a 404).
    #[param(minimum = 0, example = 1)]
    project_id: i64,
    /// Region ID: a non-negative integer (anything else is a 404). Its display name is the group's `region`; with `strict_regions` configured, a region that is not configured is a 404.
    #[param(minimum = 0, example = 1)]
    region_id: i64,
}

macro_rules! uuid_path {
    ($($name:ident { $field:ident: $what:literal })*) => {$(
        #[derive(IntoParams)]
        #[into_params(parameter_in = Path)]
        pub struct $name {
            #[doc = concat!($what, " ID (a malformed UUID is a 404).")]
            $field: Uuid,
        }
    )*};
}

uuid_path! {
    GroupIdPath { group_id: "Security group" }
    RuleIdPath { rule_id: "Security group rule" }
    InstanceIdPath { instance_id: "Instance" }
    PortIdPath { port_id: "Port" }
}

/// The router names it `{id}` (axum needs one name per segment); the document says `task_id`.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct TaskIdPath {
    /// Task ID.
    #[param(example = "50e2042d-761b-4f5a-b5bf-e11031c747b0")]
    task_id: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct HostPath {
    /// The host's name, as its ports are registered with it.
    #[param(pattern = "^[A-Za-z0-9._-]{1,253}$", example = "compute-1")]
    host: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ConsolePath {
    /// A file of the web console, relative to `/console/` (it may contain `/`).
    #[param(example = "js/app.js")]
    path: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size.
    #[param(minimum = 1, maximum = 1000, default = 10)]
    limit: Option<u32>,
    /// Number of items to skip.
    #[param(minimum = 0, default = 0)]
    offset: Option<u64>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(deprecated)]
pub struct ListGroupsQuery {
    /// Only groups with exactly this name.
    #[param(example = "my_security_group")]
    name: Option<String>,
    /// Only groups that have every given tag key (repeat the key).
    #[param(style = Form, explode)]
    tag_key: Option<Vec<TagKey>>,
    /// Only groups that have every given tag, as a JSON object of keys and values (`{"env": "prod"}`, URL-encoded). Invalid JSON is a 400.
    #[param(example = "{\"env\": \"prod\"}")]
    tag_key_value: Option<String>,
    /// Legacy alias of `tag_key` (gcorelabscloud-go).
    #[deprecated]
    #[param(style = Form, explode)]
    metadata_k: Option<Vec<TagKey>>,
    /// Legacy alias of `tag_key_value` (gcorelabscloud-go).
    #[deprecated]
    metadata_kv: Option<String>,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(deprecated)]
pub struct ListTasksQuery {
    /// Order by creation time: oldest or newest first (default `desc`).
    order_by: Option<SortOrder>,
    /// Deprecated alias of `order_by`; when both are given, `order_by` wins.
    #[deprecated]
    sorting: Option<SortOrder>,
    /// Only tasks of any of these projects (repeat the key).
    #[param(style = Form, explode)]
    project_id: Option<Vec<i64>>,
    /// Only tasks of any of these regions (repeat the key).
    #[param(style = Form, explode)]
    region_id: Option<Vec<i64>>,
    /// Only tasks in any of these states (repeat the key).
    #[param(style = Form, explode)]
    state: Option<Vec<TaskState>>,
    /// Only acknowledged (`true`) or unacknowledged (`false`) tasks. `True`, `False`, `1` and `0` are accepted too.
    is_acknowledged: Option<bool>,
    /// Only tasks created at or after this ISO 8601 date or date-time (zone and fractional seconds optional; no zone means UTC).
    #[param(example = "2019-12-27T18:11:19.117000+00:00")]
    from_timestamp: Option<String>,
    /// Only tasks created at or before this ISO 8601 date or date-time (zone and fractional seconds optional; no zone means UTC).
    #[param(example = "2020-01-01T00:00:00")]
    to_timestamp: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TaskTypeQuery {
    /// Only tasks of exactly this type (not checked against a list): `create_security_group`, `update_security_group`, `create_security_group_rule` or `delete_security_group_rule`.
    #[param(example = "create_security_group")]
    task_type: Option<String>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AcknowledgeQuery {
    /// Only tasks of this project.
    project_id: Option<i64>,
    /// Only tasks of this region.
    region_id: Option<i64>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetadataKeyQuery {
    /// The tag key.
    key: TagKey,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuotaQuery {
    /// Platform keys: the client whose quota this is (required). Tenant keys read their own client's.
    #[param(minimum = 1)]
    client_id: Option<i64>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListPortsQuery {
    /// Platform keys: only this client's ports (default: every client's). Ignored for tenant keys.
    #[param(minimum = 1)]
    client_id: Option<i64>,
    /// Only ports of this project.
    #[param(minimum = 0)]
    project_id: Option<i64>,
    /// Only ports of this region.
    #[param(minimum = 0)]
    region_id: Option<i64>,
    /// Only ports on this host.
    #[param(example = "compute-1")]
    host: Option<String>,
    /// Only ports of this instance.
    instance_id: Option<Uuid>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only events at or after this RFC 3339 time (no zone means UTC).
    #[param(format = DateTime, example = "2026-01-31T00:00:00Z")]
    since: Option<String>,
    /// Only events at or before this RFC 3339 time (no zone means UTC).
    #[param(format = DateTime, example = "2026-02-01T00:00:00Z")]
    until: Option<String>,
    /// Only events of this resource (a group, port, instance or task id, or an API key's number). Rule changes are events of their group.
    resource_id: Option<String>,
    /// Only events of this action.
    action: Option<AuditAction>,
    /// Platform keys: only this client's events (default: every client's). A tenant key may name only its own client (403 otherwise).
    #[param(minimum = 0)]
    client_id: Option<i64>,
    /// Page size.
    #[param(minimum = 1, maximum = 1000, default = 100)]
    limit: Option<u32>,
    /// Number of items to skip.
    #[param(minimum = 0, default = 0)]
    offset: Option<u64>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AgentsQuery {
    /// Also say, per agent, whether it has applied this revision (`applied`).
    #[param(minimum = 0)]
    revision: Option<i64>,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PolicyQuery {
    /// Answer only with a policy newer than this revision (the one the agent applied).
    #[param(minimum = 0)]
    after: Option<i64>,
    /// With `after`: how long to wait for a newer revision before answering 304.
    #[param(minimum = 0, maximum = 300, default = 0)]
    wait: Option<u32>,
}
