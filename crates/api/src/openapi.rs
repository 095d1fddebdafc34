//! The service's OpenAPI 3.1 document and its offline HTML reference page.
//!
//! The document is built from [`ROUTES`], one row per (method, path) the router serves: adding a
//! route to [`crate::router`] means adding a row here (a unit test parses `lib.rs` and fails
//! otherwise). Limits come from `palisade_core::input` and protocol names from
//! `palisade_core::Protocol`, so the document cannot drift from the validation it describes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use palisade_core::Protocol;
use palisade_core::input::{MAX_CHANGED_RULES, MAX_DESCRIPTION, MAX_RULES, MAX_TAG_LEN};
use palisade_core::quota::{self, MAX_LIMIT};
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------------------------------------
// The route table
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Method {
    Get,
    Put,
    Post,
    Patch,
    Delete,
}

impl Method {
    /// The OpenAPI key of the method (lower case).
    pub const fn key(self) -> &'static str {
        match self {
            Method::Get => "get",
            Method::Put => "put",
            Method::Post => "post",
            Method::Patch => "patch",
            Method::Delete => "delete",
        }
    }
}

/// A query parameter; each is defined once, in [`query_parameter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    Limit,
    Offset,
    Name,
    TagKey,
    TagKeyValue,
    MetadataK,
    MetadataKv,
    OrderBy,
    Sorting,
    ProjectIds,
    RegionIds,
    States,
    TaskType,
    IsAcknowledged,
    FromTimestamp,
    ToTimestamp,
    ProjectId,
    RegionId,
    MetadataKey,
    PortProjectId,
    PortRegionId,
    PortHost,
    PortClientId,
    QuotaClientId,
    PortInstanceId,
    PolicyAfter,
    PolicyWait,
    AgentRevision,
    AuditSince,
    AuditUntil,
    AuditResourceId,
    AuditAction,
    AuditLimit,
    AuditClientId,
}

/// A request body: the name of a component schema, sent as `application/json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    Required(&'static str),
    /// An empty body is accepted (clients send body-less requests with a JSON content type).
    Optional(&'static str),
}

/// The success response of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Success {
    /// (status, component schema, description), `application/json`.
    Json(u16, &'static str, &'static str),
    /// 204 with no body.
    NoContent(&'static str),
    /// 200 `text/html`.
    Html(&'static str),
    /// 200 `application/json` holding an OpenAPI document.
    OpenApi,
    /// 200, a static file of the web console (HTML, CSS, JavaScript or SVG).
    Asset(&'static str),
}

/// One (method, path) of the router.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub method: Method,
    /// The path template with the contract's parameter names (`{task_id}`, not the router's `{id}`).
    pub path: &'static str,
    pub operation_id: &'static str,
    pub tag: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    pub deprecated: bool,
    /// `Authorization: APIKey <token>` required.
    pub authenticated: bool,
    pub query: &'static [Param],
    pub body: Body,
    pub success: Success,
    /// Error statuses answered with the `Error` body (see [`error_response_name`]).
    pub errors: &'static [u16],
    /// Other non-success responses: (status, component schema, description).
    pub extra: &'static [(u16, &'static str, &'static str)],
}

impl Route {
    const fn new(method: Method, path: &'static str, operation_id: &'static str, tag: &'static str, summary: &'static str) -> Route {
        Route {
            method,
            path,
            operation_id,
            tag,
            summary,
            description: "",
            deprecated: false,
            authenticated: true,
            query: &[],
            body: Body::None,
            success: Success::NoContent("Done"),
            errors: &[],
            extra: &[],
        }
    }

    const fn describe(mut self, description: &'static str) -> Route {
        self.description = description;
        self
    }

    const fn deprecated(mut self) -> Route {
        self.deprecated = true;
        self
    }

    const fn public(mut self) -> Route {
        self.authenticated = false;
        self
    }

    const fn query(mut self, query: &'static [Param]) -> Route {
        self.query = query;
        self
    }

    const fn body(mut self, body: Body) -> Route {
        self.body = body;
        self
    }

    const fn ok(mut self, success: Success) -> Route {
        self.success = success;
        self
    }

    const fn errors(mut self, errors: &'static [u16]) -> Route {
        self.errors = errors;
        self
    }

    const fn extra(mut self, extra: &'static [(u16, &'static str, &'static str)]) -> Route {
        self.extra = extra;
        self
    }
}

macro_rules! v1_sg {
    ($rest:literal) => {
        concat!("/cloud/v1/securitygroups/{project_id}/{region_id}", $rest)
    };
}

macro_rules! v2_sg {
    ($rest:literal) => {
        concat!("/cloud/v2/security_groups/{project_id}/{region_id}", $rest)
    };
}

const GROUPS: &str = "Security groups";
const RULES: &str = "Security group rules";
const METADATA: &str = "Security group metadata";
const TASKS: &str = "Tasks";
const QUOTAS: &str = "Quotas";
const INSTANCES: &str = "Instances";
const PORTS: &str = "Ports";
const AGENTS: &str = "Agents";
const SERVICE: &str = "Service";
const VERDICTS: &str = "Verdicts and analysis";
const AUDIT: &str = "Audit log";

/// Tags in display order, with their descriptions.
const TAGS: &[(&str, &str)] = &[
    (
        GROUPS,
        "Security groups of a project and region. The v2 writes are asynchronous: they answer with a `TaskIDList` and the change is applied when the task runs. The v1 endpoints are synchronous.",
    ),
    (
        RULES,
        "Rules of a security group. There is no endpoint that reads a single rule: read the group and find the rule in `security_group_rules`.",
    ),
    (METADATA, "The legacy (deprecated) view of a group's tags as `metadata`, used by gcorelabscloud-go and the old Terraform provider."),
    (TASKS, "The tasks of the caller's client. Clients poll `GET /cloud/v1/tasks/{task_id}` until the state is `FINISHED` or `ERROR`."),
    (
        QUOTAS,
        "Palisade's own extension: per-project (and region) limits on the number of security groups and rules. A change that would grow a count past its limit is refused with 409 `QuotaLimitExceed` (a v2 change ends its task in `ERROR`); a lowered limit never blocks deletes.",
    ),
    (
        INSTANCES,
        "Gcore's instance-side endpoints: bind and unbind security groups by name on an instance's ports, and list the groups of an instance. Palisade knows an instance through its ports (`/palisade/v1/ports`): an instance without ports is a 404.",
    ),
    (
        PORTS,
        "Palisade's own extension: the port registry the platform fills. A port is an instance's interface on a host (its device, MAC and fixed addresses) with the security groups bound to it; the host's agent enforces them. Every change grows the policy revision.",
    ),
    (
        AGENTS,
        "Palisade's own extension for the host agents (`palisade agent`): the policy of a host's ports, long-polled on the global policy revision, and the revision each agent reports it applied. Any write accepts `?wait_for_agents=SECONDS` (0..60): the answer comes once the write (and its tasks) are done and every agent of the client has applied the resulting revision, or the time is up; headers `x-policy-revision`, `x-agents-applied` and `x-agents-pending` (host names, comma-separated) say which.",
    ),
    (
        VERDICTS,
        "Palisade's own extension: would a flow be allowed, and which rule decides; the merged rules of a port; and an analysis of a group's rules. Answers come from the same compiled rules the host agents enforce with nftables.",
    ),
    (
        AUDIT,
        "Palisade's own extension: every change (v1 writes, v2 tasks when they end, ports, quotas, bindings, tags, acknowledgements, API keys made with the CLI) leaves one event, written in the change's own transaction. Events are kept for `--audit-retention-days` (default 90). See docs/operations.md.",
    ),
    (
        SERVICE,
        "Health, readiness, this document and the web console's files. No authentication. (Prometheus metrics are served on a separate listener, `serve --metrics-listen`, not on the API port.)",
    ),
];

/// Errors of an authenticated, project-scoped request with a body or query.
const SCOPED_INPUT: &[u16] = &[400, 401, 403, 404, 500, 503];
/// Errors of an authenticated, project-scoped request without body or query.
const SCOPED: &[u16] = &[401, 403, 404, 500, 503];
/// `SCOPED_INPUT` plus 409 for a rule that already exists in the group.
const SCOPED_CONFLICT: &[u16] = &[400, 401, 403, 404, 409, 500, 503];
/// Errors of an authenticated task request with a query but no path id.
const TASK_QUERY: &[u16] = &[400, 401, 500, 503];
/// Errors of an authenticated task request by id.
const TASK_BY_ID: &[u16] = &[401, 404, 500, 503];

/// Every (method, path) the router serves.
pub const ROUTES: &[Route] = &[
    // --- v2 security groups (asynchronous) ---
    Route::new(Method::Post, v2_sg!(""), "createSecurityGroup", GROUPS, "Create security group")
        .body(Body::Required("CreateSecurityGroupV2"))
        .ok(Success::Json(200, "TaskIDList", "One `create_security_group` task"))
        .errors(SCOPED_INPUT)
        .describe(
            "Validates the body (400 on any schema error) and queues one `create_security_group` task. The group becomes visible when the task is `FINISHED`; the task's `created_resources.security_groups` then holds its id and `created_resources.security_group_rules` the ids of its rules.\n\n\
             Rules depend on `rules`:\n\
             - omitted: the default template is applied (allow all egress, IPv4 and IPv6);\n\
             - `[]`: no rules are created;\n\
             - otherwise exactly the given rules are created (identical rules once).\n\n\
             Semantic rule errors (port range without a port protocol, `port_range_min` > `port_range_max`, a `remote_ip_prefix` of the other ethertype, an unknown `remote_group_id`) and exceeded quotas end the task in `ERROR` with the reason in `error`.",
        ),
    Route::new(Method::Patch, v2_sg!("/{group_id}"), "updateSecurityGroup", GROUPS, "Update security group")
        .body(Body::Optional("UpdateSecurityGroupV2"))
        .ok(Success::Json(200, "TaskIDList", "One `update_security_group` task, or none when only tags (or nothing) changed"))
        .errors(SCOPED_INPUT)
        .describe(
            "`tags` is a JSON merge patch applied immediately. `name`, `description` and `rules` are applied by one `update_security_group` task; `rules` is the desired final rule set: rules of the group that are not in it are deleted, new ones are created, matching ones keep their ids.\n\n\
             When nothing but tags would change, no task is created and the answer is `{\"tasks\": []}`. An empty body is an empty update.",
        ),
    // --- v1 security groups (synchronous) ---
    Route::new(Method::Get, v1_sg!(""), "listSecurityGroups", GROUPS, "List security groups")
        .query(&[
            Param::Limit,
            Param::Offset,
            Param::Name,
            Param::TagKey,
            Param::TagKeyValue,
            Param::MetadataK,
            Param::MetadataKv,
        ])
        .ok(Success::Json(200, "SecurityGroupCollection", "A page of groups, each with all of its rules"))
        .errors(&[400, 401, 403, 404, 500, 503, 504])
        .describe(
            "The groups of the project and region in creation order. Page with `offset` until `offset + len(results) >= count`. Every filter narrows the result: a group must have the exact `name`, every `tag_key` and every pair of `tag_key_value`.",
        ),
    Route::new(Method::Post, v1_sg!(""), "createSecurityGroupLegacy", GROUPS, "Create security group (v1)")
        .deprecated()
        .body(Body::Required("LegacyCreateSecurityGroup"))
        .ok(Success::Json(200, "SecurityGroup", "The created group"))
        .errors(SCOPED_CONFLICT)
        .describe(
            "Synchronous legacy create (gcorelabscloud-go, the old Terraform provider). Exactly the rules of `security_group.security_group_rules` are created (an absent list means no rules), identical rules once. Rule errors answer 400, an unknown `remote_group_id` 404, a quota that would be exceeded 409. Use `POST /cloud/v2/security_groups/{project_id}/{region_id}` instead.",
        ),
    Route::new(Method::Get, v1_sg!("/{group_id}"), "getSecurityGroup", GROUPS, "Get security group")
        .ok(Success::Json(200, "SecurityGroup", "The group with all of its rules"))
        .errors(SCOPED)
        .describe("404 when the group does not exist (clients treat this as \"deleted\")."),
    Route::new(Method::Delete, v1_sg!("/{group_id}"), "deleteSecurityGroup", GROUPS, "Delete security group")
        .ok(Success::NoContent("Deleted"))
        .errors(SCOPED)
        .describe(
            "Synchronous. Deletes the group and its rules; rules of other groups whose `remote_group_id` is this group are deleted too (as Neutron does).",
        ),
    Route::new(Method::Patch, v1_sg!("/{group_id}"), "updateSecurityGroupLegacy", GROUPS, "Update security group (v1)")
        .deprecated()
        .body(Body::Optional("LegacyUpdateSecurityGroup"))
        .ok(Success::Json(200, "SecurityGroup", "The updated group"))
        .errors(SCOPED_CONFLICT)
        .describe(
            "Synchronous legacy update: `tags` (merge patch) and `name` first, then every item of `changed_rules` in order. Creating a rule that already exists, or growing past a quota, answers 409; deleting a rule that is not in this group answers 404. Use `PATCH /cloud/v2/security_groups/{project_id}/{region_id}/{group_id}` instead.",
        ),
    Route::new(Method::Post, v1_sg!("/{group_id}/copy"), "copySecurityGroup", GROUPS, "Copy security group")
        .body(Body::Required("CopySecurityGroup"))
        .ok(Success::Json(200, "SecurityGroup", "The new group"))
        .errors(SCOPED_CONFLICT)
        .describe(
            "Synchronous. A new group with the given name, the same description, a copy of every rule (new ids; a rule that refers to the group itself refers to the copy) and the user tags (read-only tags are not copied). 409 when the copy would exceed a quota.",
        ),
    Route::new(Method::Post, v1_sg!("/{group_id}/revert"), "revertSecurityGroup", GROUPS, "Revert security group")
        .ok(Success::Json(200, "SecurityGroup", "The reverted group"))
        .errors(&[401, 403, 404, 409, 500, 503])
        .describe(
            "Synchronous. Replaces every rule of the group with the default template (allow all egress, IPv4 and IPv6, new rule ids); name, description and tags are kept. No body. 409 when the template would exceed the rule quota.",
        ),
    Route::new(Method::Get, v1_sg!("/{group_id}/instances"), "listSecurityGroupInstances", GROUPS, "List instances of security group")
        .ok(Success::Json(200, "InstanceCollection", "Instances whose ports use the group"))
        .errors(SCOPED)
        .describe("The instances with at least one port bound to the group (ports are registered with `/palisade/v1/ports`), in the order their first port was registered; 404 when the group does not exist."),
    // --- rules ---
    Route::new(Method::Post, v2_sg!("/{group_id}/rules"), "createSecurityGroupRule", RULES, "Create security group rule")
        .body(Body::Required("SecurityGroupRuleInputV2"))
        .ok(Success::Json(200, "TaskIDList", "One `create_security_group_rule` task"))
        .errors(SCOPED_INPUT)
        .describe(
            "Validates the rule (400) and queues one `create_security_group_rule` task; when it is `FINISHED`, `created_resources.security_group_rules` holds exactly the new rule's id. A rule identical to an existing one, or with semantic errors, ends the task in `ERROR`. 404 when the group does not exist.",
        ),
    Route::new(Method::Delete, v2_sg!("/{group_id}/rules/{rule_id}"), "deleteSecurityGroupRule", RULES, "Delete security group rule")
        .ok(Success::Json(200, "TaskIDList", "One `delete_security_group_rule` task"))
        .errors(SCOPED)
        .describe("Queues one `delete_security_group_rule` task. 404 when the group does not exist or the rule is not one of its rules."),
    Route::new(Method::Post, v1_sg!("/{group_id}/rules"), "addSecurityGroupRuleLegacy", RULES, "Add security group rule (v1)")
        .deprecated()
        .body(Body::Required("SecurityGroupRuleInputV1"))
        .ok(Success::Json(200, "SecurityGroupRule", "The created rule"))
        .errors(SCOPED_CONFLICT)
        .describe(
            "Synchronous. Semantic rule errors answer 400, an unknown `remote_group_id` 404, a rule identical to an existing one 409 (`SecurityGroupRuleExists`, with `info.existing_rule_id`), as does exceeding the rule quota (`QuotaLimitExceed`). A `security_group_id` in the body is ignored.",
        ),
    Route::new(
        Method::Put,
        "/cloud/v1/securitygrouprules/{project_id}/{region_id}/{rule_id}",
        "replaceSecurityGroupRuleLegacy",
        RULES,
        "Replace security group rule (v1)",
    )
    .deprecated()
    .body(Body::Required("ReplaceSecurityGroupRule"))
    .ok(Success::Json(200, "SecurityGroupRule", "The new rule, with a new id"))
    .errors(SCOPED_CONFLICT)
    .describe(
        "Synchronous delete and create: the rule is replaced by a rule with a NEW id and the given attributes (omitted fields take their defaults) in the same group; use the returned id afterwards. `security_group_id`, when given, must be the rule's group (400 otherwise). Use the v2 rule delete and create instead.",
    ),
    Route::new(
        Method::Delete,
        "/cloud/v1/securitygrouprules/{project_id}/{region_id}/{rule_id}",
        "deleteSecurityGroupRuleLegacy",
        RULES,
        "Delete security group rule (v1)",
    )
    .deprecated()
    .ok(Success::NoContent("Deleted"))
    .errors(SCOPED)
    .describe("Synchronous. 404 when the rule does not exist."),
    // --- legacy metadata ---
    Route::new(Method::Get, v1_sg!("/{group_id}/metadata"), "listSecurityGroupMetadata", METADATA, "List security group tags")
        .deprecated()
        .ok(Success::Json(200, "TagCollection", "Every tag of the group"))
        .errors(SCOPED)
        .describe("The group's tags (the same as its `tags_v2`), sorted by key."),
    Route::new(Method::Post, v1_sg!("/{group_id}/metadata"), "createSecurityGroupMetadata", METADATA, "Create or update security group tags")
        .deprecated()
        .body(Body::Required("CreateTags"))
        .ok(Success::NoContent("Tags set"))
        .errors(SCOPED_INPUT)
        .describe("Adds the given tags and overwrites the values of existing keys; other tags are kept. Read-only tags never change."),
    Route::new(Method::Put, v1_sg!("/{group_id}/metadata"), "replaceSecurityGroupMetadata", METADATA, "Replace security group tags")
        .deprecated()
        .body(Body::Required("CreateTags"))
        .ok(Success::NoContent("Tags replaced"))
        .errors(SCOPED_INPUT)
        .describe("The user tags become exactly the given ones. Read-only tags are kept."),
    Route::new(Method::Get, v1_sg!("/{group_id}/metadata_item"), "getSecurityGroupMetadataItem", METADATA, "Get security group tag")
        .deprecated()
        .query(&[Param::MetadataKey])
        .ok(Success::Json(200, "Tag", "The tag"))
        .errors(SCOPED_INPUT)
        .describe("404 when the group has no tag with this key; 400 when `key` is missing."),
    Route::new(Method::Delete, v1_sg!("/{group_id}/metadata_item"), "deleteSecurityGroupMetadataItem", METADATA, "Delete security group tag")
        .deprecated()
        .query(&[Param::MetadataKey])
        .ok(Success::NoContent("Deleted"))
        .errors(SCOPED_INPUT)
        .describe("404 when the group has no tag with this key, 403 when the tag is read-only, 400 when `key` is missing."),
    // --- tasks ---
    Route::new(Method::Get, "/cloud/v1/tasks", "listTasks", TASKS, "List tasks")
        .query(&[
            Param::Limit,
            Param::Offset,
            Param::OrderBy,
            Param::Sorting,
            Param::ProjectIds,
            Param::RegionIds,
            Param::States,
            Param::TaskType,
            Param::IsAcknowledged,
            Param::FromTimestamp,
            Param::ToTimestamp,
        ])
        .ok(Success::Json(200, "TaskCollection", "A page of tasks"))
        .errors(TASK_QUERY)
        .describe(
            "Tasks of the caller's client, newest first unless `order_by=asc`. Repeated filters (`project_id`, `region_id`, `state`) match any of their values; different filters must all match.",
        ),
    Route::new(Method::Post, "/cloud/v1/tasks/acknowledge_all", "acknowledgeAllTasks", TASKS, "Acknowledge all tasks")
        .query(&[Param::ProjectId, Param::RegionId])
        .ok(Success::NoContent("Acknowledged"))
        .errors(TASK_QUERY)
        .describe("Acknowledges every unacknowledged task of the caller's client, narrowed by `project_id` and `region_id` when given. No body."),
    Route::new(Method::Post, "/cloud/v1/tasks/acknowledge", "acknowledgeTasks", TASKS, "Acknowledge tasks")
        .deprecated()
        .query(&[Param::ProjectId, Param::RegionId])
        .body(Body::Optional("AcknowledgeTasks"))
        .ok(Success::NoContent("Acknowledged"))
        .errors(TASK_QUERY)
        .describe(
            "Acknowledges the listed tasks (or, with `task_ids` null or absent, every unacknowledged task) of the caller's client, narrowed by `project_id` and `region_id`. Use `acknowledge_all` or `{task_id}/acknowledge` instead.",
        ),
    Route::new(Method::Get, "/cloud/v1/tasks/{task_id}", "getTask", TASKS, "Get task")
        .ok(Success::Json(200, "Task", "The task"))
        .errors(TASK_BY_ID)
        .describe("404 when the caller's client has no task with this id."),
    Route::new(Method::Post, "/cloud/v1/tasks/{task_id}/acknowledge", "acknowledgeTask", TASKS, "Acknowledge one task")
        .ok(Success::Json(200, "Task", "The task, with `acknowledged_at` and `acknowledged_by` set"))
        .errors(TASK_BY_ID)
        .describe("Sets `acknowledged_at` and `acknowledged_by` (the caller's user) unless the task is already acknowledged. No body."),
    Route::new(Method::Get, "/cloud/v1/tasks/{project_id}/{region_id}/active", "listActiveTasks", TASKS, "List active tasks")
        .query(&[Param::Limit, Param::Offset, Param::TaskType])
        .ok(Success::Json(200, "TaskCollection", "A page of NEW and RUNNING tasks"))
        .errors(SCOPED_INPUT)
        .describe("The `NEW` and `RUNNING` tasks of the caller's client in one project and region, newest first."),
    // --- quotas ---
    Route::new(Method::Get, "/palisade/v1/quotas/{project_id}/{region_id}", "getQuota", QUOTAS, "Get quota")
        .query(&[Param::QuotaClientId])
        .ok(Success::Json(200, "Quota", "Limits and usage"))
        .errors(SCOPED_INPUT)
        .describe("The limits of the project and region (its own, else the configured defaults) and their current usage: a tenant's own, or (platform) those of the client named by `client_id`."),
    Route::new(Method::Put, "/palisade/v1/quotas/{project_id}/{region_id}", "setQuota", QUOTAS, "Set quota")
        .query(&[Param::QuotaClientId])
        .body(Body::Required("SetQuota"))
        .ok(Success::Json(200, "Quota", "The new limits and usage"))
        .errors(SCOPED_INPUT)
        .describe("Sets the limits of client `client_id`'s project and region; an omitted limit keeps its current value. A limit below the current usage is accepted: it only blocks growth. Only the platform sets quotas: a tenant can never lift its own."),
    // --- instances ---
    Route::new(Method::Post, "/cloud/v1/instances/{project_id}/{region_id}/{instance_id}/addsecuritygroup", "addInstanceSecurityGroup", INSTANCES, "Assign security group")
        .body(Body::Required("InstancePortsSecurityGroups"))
        .ok(Success::NoContent("The groups are bound"))
        .errors(SCOPED_CONFLICT)
        .describe("Synchronous. Binds groups, named as in their `name`, to the instance's ports: `name` to every port, each `ports_security_group_names` item to its `port_id` (null: every port). A group already bound stays bound once. Every name and port is resolved first: an unknown instance, port or group name is a 404 and nothing changes; a name shared by several groups of the project is a 409 `NoUniqueMatch`; neither field given is a 400."),
    Route::new(Method::Post, "/cloud/v1/instances/{project_id}/{region_id}/{instance_id}/delsecuritygroup", "delInstanceSecurityGroup", INSTANCES, "Un-assign security group")
        .body(Body::Required("InstancePortsSecurityGroups"))
        .ok(Success::NoContent("The groups are unbound"))
        .errors(SCOPED_CONFLICT)
        .describe("Synchronous. The reverse of `addsecuritygroup`, with the same body and errors; unbinding a group that is not bound changes nothing."),
    Route::new(Method::Get, "/cloud/v1/instances/{project_id}/{region_id}/{instance_id}/securitygroups", "listInstanceSecurityGroups", INSTANCES, "Get instance security groups")
        .ok(Success::Json(200, "InstanceSecurityGroupList", "The groups bound to any port of the instance"))
        .errors(SCOPED)
        .describe("The groups bound to any port of the instance, each once, in binding order; 404 for an instance without ports."),
    // --- ports ---
    Route::new(Method::Post, "/palisade/v1/ports", "createPort", PORTS, "Register a port")
        .body(Body::Required("CreatePort"))
        .ok(Success::Json(201, "Port", "The registered port"))
        .errors(&[400, 401, 403, 404, 409, 500, 503])
        .describe("Registers client `client_id`'s instance port on a host. Every bound group must be a group of the port's client, project and region (404 otherwise). A port id is unique overall and a device and a MAC address per host, whatever the client: 409 `PortExists`, `PortDeviceInUse` or `PortMacInUse` naming the existing port in `info.port_id`, and nothing is stored. Fixed IPs must be unicast host addresses (not unspecified, loopback, multicast, link-local such as 169.254.169.254, or the limited broadcast), at most 32; the MAC unicast and non-zero."),
    Route::new(Method::Get, "/palisade/v1/ports", "listPorts", PORTS, "List ports")
        .query(&[Param::PortClientId, Param::PortProjectId, Param::PortRegionId, Param::PortHost, Param::PortInstanceId])
        .ok(Success::Json(200, "PortCollection", "The matching ports, in registration order: a tenant's own (of the projects its key may use), or for the platform every client's"))
        .errors(&[400, 401, 500, 503]),
    Route::new(Method::Get, "/palisade/v1/ports/{port_id}", "getPort", PORTS, "Get port")
        .ok(Success::Json(200, "Port", "The port"))
        .errors(&[401, 403, 404, 500, 503]),
    Route::new(Method::Patch, "/palisade/v1/ports/{port_id}", "updatePort", PORTS, "Update port")
        .body(Body::Required("UpdatePort"))
        .ok(Success::Json(200, "Port", "The port as updated"))
        .errors(&[400, 401, 403, 404, 409, 500, 503])
        .describe("Moves, re-addresses or re-binds a port: each given field replaces its value (`security_group_ids` replaces the bound groups, in order); absent fields are kept. Nothing changes, and the policy revision stays, when the values are the same. The same checks as registration apply (409 for a device or MAC taken on the host)."),
    Route::new(Method::Delete, "/palisade/v1/ports/{port_id}", "deletePort", PORTS, "Delete port")
        .ok(Success::NoContent("The port is gone"))
        .errors(&[401, 403, 404, 500, 503]),
    // --- audit log ---
    Route::new(Method::Get, "/palisade/v1/audit", "listAuditEvents", AUDIT, "List audit events")
        .query(&[Param::AuditSince, Param::AuditUntil, Param::AuditResourceId, Param::AuditAction, Param::AuditClientId, Param::AuditLimit, Param::Offset])
        .ok(Success::Json(200, "AuditEventCollection", "A page of events, newest first"))
        .errors(&[400, 401, 403, 500, 503])
        .describe("The events of the caller's client, newest first (a key limited to some projects: the events of those projects and those of no project). A platform key reads every client's events, or one client's with `client_id`. A malformed time, limit or action is a 400 naming the field."),
    // --- agents ---
    Route::new(Method::Get, "/palisade/v1/agents", "listAgents", AGENTS, "List agents")
        .query(&[Param::AgentRevision])
        .ok(Success::Json(200, "AgentList", "Every host's agent (one per host) and the current policy revision"))
        .errors(&[400, 401, 500, 503]),
    Route::new(Method::Get, "/palisade/v1/agents/{host}/policy", "getHostPolicy", AGENTS, "Get the policy of a host")
        .query(&[Param::PolicyAfter, Param::PolicyWait])
        .ok(Success::Json(200, "HostPolicy", "The policy of the host's ports at the current revision (also in the `x-policy-revision` header)"))
        .errors(&[400, 401, 404, 500, 503, 504])
        .describe("The host's own agent key only (another host's is a 403). What the host's agent enforces: every client's ports on the host (device, MAC, addresses, bound groups), the rules of every bound group (protocols by number), and the member addresses of every group those rules name as `remote_group_id`, listed once per group. Without `after` it answers at once. With `after`, it answers as soon as the policy revision is past `after`, or with 304 (no body, `x-policy-revision` header) when `wait` seconds pass first. The `ETag` header tags the policy's content (the revision aside): with `If-None-Match` set to it, a newer revision that changes nothing for the host answers 304 with the new `x-policy-revision`, so the agent reports it without fetching the policy again."),
    Route::new(Method::Put, "/palisade/v1/agents/{host}/status", "reportAgentStatus", AGENTS, "Report the applied revision")
        .body(Body::Required("AgentStatus"))
        .ok(Success::Json(200, "Agent", "The agent as recorded"))
        .errors(&[400, 401, 404, 500, 503])
        .describe("The host's agent (its own agent key only; another host's is a 403) reports the policy revision it has applied to the kernel."),
    // --- verdicts and analysis ---
    Route::new(Method::Post, "/palisade/v1/verdicts", "decideFlows", VERDICTS, "Decide flows")
        .body(Body::Required("VerdictRequest"))
        .ok(Success::Json(200, "VerdictAnswer", "One answer, or `{\"results\": [...]}` for a batch, in order"))
        .errors(&[400, 401, 404, 500, 503, 504])
        .describe("For one flow (or a batch in `flows`, at most 10,000): the groups of `port_id`, or `security_group_ids` in order, decide whether a new connection is allowed (the first matching rule decides) or dropped by the default policy; with `established: true` the answer is the connection-tracking one (accepted). Every matching rule is listed too."),
    Route::new(Method::Get, "/palisade/v1/ports/{port_id}/effective-rules", "getEffectiveRules", VERDICTS, "Effective rules of a port")
        .ok(Success::Json(200, "EffectiveRules", "The merged rules of every group bound to the port"))
        .errors(&[401, 404, 500, 503, 504])
        .describe("The rules of every group on the port, merged by direction in binding order (each rule with its group's name), the members of the remote groups they name, and the default action."),
    Route::new(Method::Get, v1_sg!("/{group_id}/analysis"), "analyzeSecurityGroup", VERDICTS, "Analyze a security group")
        .ok(Success::Json(200, "Analysis", "The findings, empty for a clean group"))
        .errors(&[401, 403, 404, 500, 503, 504])
        .describe("Duplicates, rules covered by a broader rule of the group (shadowed), overly broad rules (every protocol from anywhere, sensitive ports such as SSH, RDP or databases open to anywhere, large port ranges from anywhere), remote groups without members, and rules the kernel can never match (IPv6 rules on extension-header protocols)."),
    // --- service ---
    Route::new(Method::Get, "/healthz", "healthz", SERVICE, "Liveness")
        .public()
        .ok(Success::Json(200, "Health", "The process serves HTTP"))
        .describe("Answers as long as the process serves HTTP; does not touch the database."),
    Route::new(Method::Get, "/readyz", "readyz", SERVICE, "Readiness")
        .public()
        .ok(Success::Json(200, "Readiness", "The database answers"))
        .errors(&[500])
        .extra(&[(503, "Readiness", "The database does not answer")])
        .describe("Pings the database."),
    Route::new(Method::Get, "/openapi.json", "openapiDocument", SERVICE, "OpenAPI document")
        .public()
        .ok(Success::OpenApi)
        .describe("This document."),
    Route::new(Method::Get, "/docs", "referencePage", SERVICE, "API reference page")
        .public()
        .ok(Success::Html("This document as a self-contained HTML page"))
        .describe("This document rendered as HTML, with no external scripts, styles or fonts."),
    Route::new(Method::Get, "/console", "consolePage", SERVICE, "Web console")
        .public()
        .ok(Success::Html("The console's page"))
        .describe("The web console for people (docs/console.md): plain HTML, CSS and JavaScript built into the binary. It calls this API from the browser with the user's key in `Authorization`; the files themselves need no key. Every console answer carries a strict `Content-Security-Policy` (this origin only, no inline script, no framing) and `X-Content-Type-Options: nosniff`."),
    Route::new(Method::Get, "/console/{path}", "consoleAsset", SERVICE, "Web console file")
        .public()
        .ok(Success::Asset("A file of the console"))
        .describe("A stylesheet, script or icon of the console (the path may contain `/`, e.g. `js/app.js`); an empty path is the page. An unknown file is a plain-text 404. Answers carry an `ETag` and `Cache-Control: no-cache`, so an unchanged file costs a 304."),
];

// ---------------------------------------------------------------------------------------------
// The document
// ---------------------------------------------------------------------------------------------

const INFO_DESCRIPTION: &str = "Palisade serves the Gcore Cloud security-groups API, so that the Gcore SDKs (Python `gcore`, Go `gcore-go`, `gcorelabscloud-go`) and both Gcore Terraform providers work against it unchanged.\n\n\
**Authentication.** Every `/cloud` endpoint requires `Authorization: APIKey <token>` (the scheme is case-insensitive; the token is `<key id>$<secret>` as printed by `palisade keys create`). A missing or unknown token answers 401. Keys have roles (docs/security.md): a **tenant** key uses the Gcore API for its own client (and only its projects, if it is limited: 403 on another project's paths, 404 for another project's objects) and reads its quotas, ports and verdicts; a **platform** key runs the port registry, sets quotas and lists agents; an **agent** key reads and reports for its own host only. Each operation's `x-palisade-roles` lists the roles that may call it; any other role answers 403.\n\n\
**Asynchronous writes.** The v2 writes answer with a `TaskIDList`; poll `GET /cloud/v1/tasks/{task_id}` until the task is `FINISHED` (its `created_resources` names what was created) or `ERROR` (its `error` says why). The v1 endpoints are synchronous.\n\n\
**Errors.** Every error has the body `Error`: `{\"exception_class\", \"message\", \"request_id\", \"invalid_fields\"?, \"info\"?}`. 400 validation (`invalid_fields` maps each offending field to its reasons), 401 authentication, 403 permission, 404 unknown resource, path or id (a malformed id in a path is a 404 too), 405 a method a path does not serve (on every path), 409 conflict: duplicate rule or quota exceeded (with `x-should-retry: false`), 413 a body over `max_body_bytes` (default 1 MiB; on every path, refused unread), 500 internal failure, 503 database unavailable (retryable).\n\n\
**Validation.** The Gcore paths validate bodies exactly as Gcore's schema does: enums in their exact spelling (`tcp`, `IPv4`, `ingress`; `any` is accepted for all protocols), `null` only where a schema below allows it, every string and list within its limits (names by their pattern, descriptions up to 255 characters, tag keys and values up to 255, at most 250 rules, 500 `changed_rules`). A body that is the JSON `null` is a 400; an empty body is no fields.\n\n\
**Conventions.** Unknown request fields are ignored, and never stored (a task's `data` echoes only the known fields of its request). Every response carries `x-request-id` (the id of the request, also in error bodies and task rows; a valid incoming `x-request-id` is reused). Group and rule times are `YYYY-MM-DDTHH:MM:SS+0000`; task times are naive UTC `YYYY-MM-DDTHH:MM:SS`. Repeated query parameters repeat the key (`tag_key=a&tag_key=b`).";

/// The OpenAPI 3.1 document of every route in [`ROUTES`].
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let item = paths.entry(route.path).or_insert_with(|| json!({}));
        item[route.method.key()] = operation(route);
    }
    let tags: Vec<Value> = TAGS.iter().map(|(name, description)| json!({"name": name, "description": description})).collect();
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "Palisade",
            "version": env!("CARGO_PKG_VERSION"),
            "summary": "A Gcore Cloud compatible security-groups API",
            "description": INFO_DESCRIPTION,
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "servers": [{"url": "/", "description": "This server"}],
        "security": [{"APIKey": []}],
        "tags": tags,
        "paths": paths,
        "components": {
            "securitySchemes": {
                "APIKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "`Authorization: APIKey <token>`: the word `APIKey` (any case), one space, then the token `<key id>$<secret>`.",
                },
            },
            "parameters": path_parameters(),
            "headers": {
                "XRequestId": {
                    "description": "The id of this request: the incoming `x-request-id` when it is 1 to 64 letters, digits or `-`, otherwise a new one (32 hex digits).",
                    "schema": {"type": "string"},
                },
                "XShouldRetry": {
                    "description": "`false`: retrying the same request cannot succeed, so clients that honour the header (the Gcore SDKs) do not retry.",
                    "schema": {"type": "string", "enum": ["false"]},
                },
            },
            "responses": error_responses(),
            "schemas": schemas(),
        },
    })
}

fn schema_ref(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

fn or_null(schema: Value) -> Value {
    json!({"anyOf": [schema, {"type": "null"}]})
}

fn request_id_header() -> Value {
    json!({"x-request-id": {"$ref": "#/components/headers/XRequestId"}})
}

/// The component response for an error status.
pub fn error_response_name(status: u16) -> Option<&'static str> {
    Some(match status {
        400 => "ValidationError",
        401 => "Unauthenticated",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        408 => "RequestTimeout",
        409 => "Conflict",
        413 => "PayloadTooLarge",
        429 => "TooManyRequests",
        504 => "GatewayTimeout",
        500 => "InternalServerError",
        503 => "ServiceUnavailable",
        _ => return None,
    })
}

/// Path parameters by their name in a path template.
fn path_parameter_component(name: &str) -> Option<&'static str> {
    Some(match name {
        "project_id" => "ProjectId",
        "region_id" => "RegionId",
        "group_id" => "GroupId",
        "rule_id" => "RuleId",
        "task_id" => "TaskId",
        "instance_id" => "InstanceId",
        "port_id" => "PortId",
        "host" => "Host",
        "path" => "ConsolePath",
        _ => return None,
    })
}

/// The `{name}` segments of a path template, in order.
pub fn template_names(path: &str) -> Vec<&str> {
    path.split('/').filter_map(|seg| seg.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect()
}

use crate::access::{Access, access_by_shape};

fn operation(route: &Route) -> Value {
    let mut parameters: Vec<Value> = template_names(route.path)
        .into_iter()
        .map(|name| {
            let component = path_parameter_component(name)
                .unwrap_or_else(|| panic!("path parameter {{{name}}} of {} has no definition in openapi.rs", route.path));
            json!({"$ref": format!("#/components/parameters/{component}")})
        })
        .collect();
    parameters.extend(route.query.iter().map(|&param| query_parameter(param)));

    let mut responses = Map::new();
    let (status, response) = match route.success {
        Success::Json(status, schema, description) => (
            status,
            json!({"description": description, "headers": request_id_header(), "content": {"application/json": {"schema": schema_ref(schema)}}}),
        ),
        Success::NoContent(description) => (204, json!({"description": description, "headers": request_id_header()})),
        Success::Html(description) => (
            200,
            json!({"description": description, "headers": request_id_header(), "content": {"text/html": {"schema": {"type": "string"}}}}),
        ),
        Success::Asset(description) => (
            200,
            json!({"description": description, "headers": request_id_header(), "content": {
                "text/html": {"schema": {"type": "string"}},
                "text/css": {"schema": {"type": "string"}},
                "text/javascript": {"schema": {"type": "string"}},
                "image/svg+xml": {"schema": {"type": "string"}},
            }}),
        ),
        Success::OpenApi => (
            200,
            json!({"description": "The OpenAPI 3.1 document", "headers": request_id_header(),
                   "content": {"application/json": {"schema": {"type": "object", "description": "An OpenAPI 3.1 document"}}}}),
        ),
    };
    responses.insert(status.to_string(), response);
    for &(status, schema, description) in route.extra {
        responses.insert(
            status.to_string(),
            json!({"description": description, "headers": request_id_header(), "content": {"application/json": {"schema": schema_ref(schema)}}}),
        );
    }
    for &status in route.errors {
        let name = error_response_name(status).unwrap_or_else(|| panic!("no error response for status {status}"));
        responses.insert(status.to_string(), json!({"$ref": format!("#/components/responses/{name}")}));
    }

    let mut op = json!({
        "operationId": route.operation_id,
        "summary": route.summary,
        "tags": [route.tag],
        "responses": responses,
    });
    if !route.description.is_empty() {
        op["description"] = json!(route.description);
    }
    if !parameters.is_empty() {
        op["parameters"] = Value::Array(parameters);
    }
    match route.body {
        Body::None => {}
        Body::Required(schema) | Body::Optional(schema) => {
            let required = matches!(route.body, Body::Required(_));
            let mut body = json!({"required": required, "content": {"application/json": {"schema": schema_ref(schema)}}});
            if !required {
                body["description"] = json!("Optional: an empty body (no bytes) is accepted; the JSON `null` is not.");
            }
            op["requestBody"] = body;
            // Every route refuses a body over `max_body_bytes`; those that take one say so.
            op["responses"]["413"] = json!({"$ref": "#/components/responses/PayloadTooLarge"});
        }
    }
    if route.deprecated {
        op["deprecated"] = json!(true);
    }
    if !route.authenticated {
        op["security"] = json!([]);
    }
    // Who may call it, from the table the server enforces (`access::ROUTES`).
    let method = axum::http::Method::from_bytes(route.method.key().to_uppercase().as_bytes()).expect("an HTTP method");
    if let Some(Access::Roles(roles)) = access_by_shape(&method, route.path) {
        let names: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
        op["x-palisade-roles"] = json!(names);
        let who = format!("**Roles:** {} keys (any other role: 403).", names.join(", "));
        op["description"] = json!(if route.description.is_empty() { who } else { format!("{who}\n\n{}", route.description) });
        if let Some(responses) = op["responses"].as_object_mut() {
            responses.entry("403").or_insert_with(|| json!({"$ref": "#/components/responses/Forbidden"}));
            // Every keyed route is under the key's rate limits.
            responses.entry("429").or_insert_with(|| json!({"$ref": "#/components/responses/TooManyRequests"}));
        }
    }
    op
}

fn path_parameters() -> Value {
    let param = |name: &str, description: &str, schema: Value| json!({"name": name, "in": "path", "required": true, "description": description, "schema": schema});
    json!({
        "ProjectId": param("project_id", "Project ID: a non-negative integer (anything else is a 404).", json!({"type": "integer", "minimum": 0, "examples": [1]})),
        "RegionId": param("region_id", "Region ID: a non-negative integer (anything else is a 404). Its display name is the group's `region`; with `strict_regions` configured, a region that is not configured is a 404.", json!({"type": "integer", "minimum": 0, "examples": [1]})),
        "GroupId": param("group_id", "Security group ID (a malformed UUID is a 404).", json!({"type": "string", "format": "uuid"})),
        "RuleId": param("rule_id", "Security group rule ID (a malformed UUID is a 404).", json!({"type": "string", "format": "uuid"})),
        "TaskId": param("task_id", "Task ID.", json!({"type": "string", "examples": ["50e2042d-761b-4f5a-b5bf-e11031c747b0"]})),
        "InstanceId": param("instance_id", "Instance ID (a malformed UUID is a 404).", json!({"type": "string", "format": "uuid"})),
        "PortId": param("port_id", "Port ID (a malformed UUID is a 404).", json!({"type": "string", "format": "uuid"})),
        "ConsolePath": param("path", "A file of the web console, relative to `/console/` (it may contain `/`).", json!({"type": "string", "examples": ["js/app.js"]})),
        "Host": param("host", "The host's name, as its ports are registered with it.", json!({"type": "string", "pattern": "^[A-Za-z0-9._-]{1,253}$", "examples": ["compute-1"]})),
    })
}

fn query_parameter(param: Param) -> Value {
    let q = |name: &str, description: &str, schema: Value| json!({"name": name, "in": "query", "required": false, "description": description, "schema": schema});
    // Repeated keys: `key=a&key=b` (form style, exploded: the OpenAPI default for query arrays).
    let repeated = |name: &str, description: &str, items: Value| {
        json!({"name": name, "in": "query", "required": false, "description": description,
               "style": "form", "explode": true, "schema": {"type": "array", "items": items}})
    };
    let tag_pairs = json!({
        "type": "string",
        "contentMediaType": "application/json",
        "contentSchema": {"type": "object", "propertyNames": schema_ref("TagKey"), "additionalProperties": {"type": "string"}},
        "examples": ["{\"env\": \"prod\"}"],
    });
    match param {
        Param::Limit => q("limit", "Page size.", json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 10})),
        Param::Offset => q("offset", "Number of items to skip.", json!({"type": "integer", "minimum": 0, "default": 0})),
        Param::Name => q("name", "Only groups with exactly this name.", json!({"type": "string", "examples": ["my_security_group"]})),
        Param::TagKey => repeated("tag_key", "Only groups that have every given tag key.", schema_ref("TagKey")),
        Param::TagKeyValue => q(
            "tag_key_value",
            "Only groups that have every given tag, as a JSON object of keys and values (`{\"env\": \"prod\"}`, URL-encoded). Invalid JSON is a 400.",
            tag_pairs.clone(),
        ),
        Param::MetadataK => {
            let mut p = repeated("metadata_k", "Legacy alias of `tag_key` (gcorelabscloud-go).", schema_ref("TagKey"));
            p["deprecated"] = json!(true);
            p
        }
        Param::MetadataKv => {
            let mut p = q("metadata_kv", "Legacy alias of `tag_key_value` (gcorelabscloud-go).", tag_pairs);
            p["deprecated"] = json!(true);
            p
        }
        Param::OrderBy => q(
            "order_by",
            "Order by creation time: oldest or newest first.",
            json!({"type": "string", "enum": ["asc", "desc"], "default": "desc"}),
        ),
        Param::Sorting => {
            let mut p = q(
                "sorting",
                "Deprecated alias of `order_by`; when both are given, `order_by` wins.",
                json!({"type": "string", "enum": ["asc", "desc"], "default": "desc"}),
            );
            p["deprecated"] = json!(true);
            p
        }
        Param::ProjectIds => repeated("project_id", "Only tasks of any of these projects.", json!({"type": "integer"})),
        Param::RegionIds => repeated("region_id", "Only tasks of any of these regions.", json!({"type": "integer"})),
        Param::States => repeated("state", "Only tasks in any of these states.", schema_ref("TaskState")),
        Param::TaskType => q(
            "task_type",
            "Only tasks of exactly this type (not checked against a list): `create_security_group`, `update_security_group`, `create_security_group_rule` or `delete_security_group_rule`.",
            json!({"type": "string", "examples": ["create_security_group"]}),
        ),
        Param::IsAcknowledged => q(
            "is_acknowledged",
            "Only acknowledged (`true`) or unacknowledged (`false`) tasks. `True`, `False`, `1` and `0` are accepted too.",
            json!({"type": "boolean"}),
        ),
        Param::FromTimestamp => q(
            "from_timestamp",
            "Only tasks created at or after this ISO 8601 date or date-time (zone and fractional seconds optional; no zone means UTC).",
            json!({"type": "string", "examples": ["2019-12-27T18:11:19.117000+00:00"]}),
        ),
        Param::ToTimestamp => q(
            "to_timestamp",
            "Only tasks created at or before this ISO 8601 date or date-time (zone and fractional seconds optional; no zone means UTC).",
            json!({"type": "string", "examples": ["2020-01-01T00:00:00"]}),
        ),
        Param::ProjectId => q("project_id", "Only tasks of this project.", json!({"type": "integer"})),
        Param::RegionId => q("region_id", "Only tasks of this region.", json!({"type": "integer"})),
        Param::PortProjectId => q("project_id", "Only ports of this project.", json!({"type": "integer", "minimum": 0})),
        Param::PortRegionId => q("region_id", "Only ports of this region.", json!({"type": "integer", "minimum": 0})),
        Param::PortHost => q("host", "Only ports on this host.", json!({"type": "string", "examples": ["compute-1"]})),
        Param::PortClientId => q(
            "client_id",
            "Platform keys: only this client's ports (default: every client's). Ignored for tenant keys.",
            json!({"type": "integer", "minimum": 1}),
        ),
        Param::QuotaClientId => q(
            "client_id",
            "Platform keys: the client whose quota this is (required). Tenant keys read their own client's.",
            json!({"type": "integer", "minimum": 1}),
        ),
        Param::PortInstanceId => q("instance_id", "Only ports of this instance.", json!({"type": "string", "format": "uuid"})),
        Param::PolicyAfter => q(
            "after",
            "Answer only with a policy newer than this revision (the one the agent applied).",
            json!({"type": "integer", "minimum": 0}),
        ),
        Param::PolicyWait => q(
            "wait",
            "With `after`: how long to wait for a newer revision before answering 304.",
            json!({"type": "integer", "minimum": 0, "maximum": 300, "default": 0}),
        ),
        Param::AgentRevision => q(
            "revision",
            "Also say, per agent, whether it has applied this revision (`applied`).",
            json!({"type": "integer", "minimum": 0}),
        ),
        Param::AuditSince => q(
            "since",
            "Only events at or after this RFC 3339 time (no zone means UTC).",
            json!({"type": "string", "format": "date-time", "examples": ["2026-01-31T00:00:00Z"]}),
        ),
        Param::AuditUntil => q(
            "until",
            "Only events at or before this RFC 3339 time (no zone means UTC).",
            json!({"type": "string", "format": "date-time", "examples": ["2026-02-01T00:00:00Z"]}),
        ),
        Param::AuditResourceId => q(
            "resource_id",
            "Only events of this resource (a group, port, instance or task id, or an API key's number). Rule changes are events of their group.",
            json!({"type": "string"}),
        ),
        Param::AuditAction => q("action", "Only events of this action.", schema_ref("AuditAction")),
        Param::AuditLimit => q("limit", "Page size.", json!({"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})),
        Param::AuditClientId => q(
            "client_id",
            "Platform keys: only this client's events (default: every client's). A tenant key may name only its own client (403 otherwise).",
            json!({"type": "integer", "minimum": 0}),
        ),
        Param::MetadataKey => {
            let mut p = q("key", "The tag key.", schema_ref("TagKey"));
            p["required"] = json!(true);
            p
        }
    }
}

fn error_responses() -> Value {
    let response = |description: &str, class: &str, message: &str, extra: Value| {
        let mut example = json!({"exception_class": class, "message": message, "request_id": "0b6f4a3e9d7c4c3f9a1e2d5b7c8a9f01"});
        if let (Some(example), Value::Object(extra)) = (example.as_object_mut(), extra) {
            example.extend(extra);
        }
        json!({
            "description": description,
            "headers": request_id_header(),
            "content": {"application/json": {"schema": schema_ref("Error"), "example": example}},
        })
    };
    let mut conflict = response(
        "Conflict: a rule identical to an existing rule of the group (`SecurityGroupRuleExists`), or a change that would grow the groups or rules of the project past a quota (`QuotaLimitExceed`). Never retried: `x-should-retry: false`.",
        "SecurityGroupRuleExists",
        "",
        json!({}),
    );
    let exceeded = format!("Quota exceeded: {} would be 11 but the limit is 10", quota::GROUPS);
    conflict["content"]["application/json"] = json!({
        "schema": schema_ref("Error"),
        "examples": {
            "SecurityGroupRuleExists": {"summary": "Duplicate rule", "value": {
                "exception_class": "SecurityGroupRuleExists",
                "message": "Security group rule already exists. Rule id is 253c1ad7-8061-44b9-9f33-5616ad8ba5b6",
                "request_id": "0b6f4a3e9d7c4c3f9a1e2d5b7c8a9f01",
                "invalid_fields": {"rule": ["Security group rule already exists. Rule id is 253c1ad7-8061-44b9-9f33-5616ad8ba5b6"]},
                "info": {"existing_rule_id": "253c1ad7-8061-44b9-9f33-5616ad8ba5b6"},
            }},
            "QuotaLimitExceed": {"summary": "Quota exceeded", "value": {
                "exception_class": "QuotaLimitExceed",
                "message": exceeded.clone(),
                "request_id": "0b6f4a3e9d7c4c3f9a1e2d5b7c8a9f01",
                "invalid_fields": {quota::GROUPS: [exceeded]},
                "info": {"quota": quota::GROUPS, "limit": 10, "requested": 11},
            }},
        },
    });
    conflict["headers"]["x-should-retry"] = json!({"$ref": "#/components/headers/XShouldRetry"});
    let mut limited = response(
        "A per-key rate limit (`--rate-limit-reads`, `--rate-limit-writes`) or the client's unfinished-task limit (`max_tasks_per_client`): retry after `Retry-After` seconds (the official clients do).",
        "TooManyRequests",
        "Too many writes with this API key; retry in 412 ms",
        json!({}),
    );
    limited["headers"]["Retry-After"] =
        json!({"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 1}});
    json!({
        "ValidationError": response(
            "Malformed JSON, a body or query that does not match its schema (`invalid_fields` names each field), or a rule the group cannot hold (v1).",
            "ValidationError",
            "Validation Error: {'rules.0.protocol': ['Input should be one of: any, ah, dccp, ...']}",
            json!({"invalid_fields": {"rules.0.protocol": ["Input should be one of: any, ah, dccp, ..."]}}),
        ),
        "Unauthenticated": response(
            "No `Authorization` header, another scheme than `APIKey`, or an unknown or revoked token.",
            "NotAuthenticated",
            "Authentication credentials were not provided.",
            json!({}),
        ),
        "Forbidden": response(
            "The API key may not use this project, or the tag is read-only.",
            "PermissionDenied",
            "This API key is not allowed to access project 7",
            json!({}),
        ),
        "NotFound": response(
            "The project, region, group, rule, task or tag does not exist or is not the caller's (a malformed id in the path, too). An unknown `remote_group_id` in a v1 rule is a 404 with `invalid_fields`.",
            "NotFoundError",
            "Security group 3addc7a1-e926-46da-b5a2-eb4b2f935230 could not be found",
            json!({}),
        ),
        "MethodNotAllowed": response(
            "The path exists but does not serve this method. Every path answers so for the methods it does not list.",
            "HTTPError",
            "Method Not Allowed",
            json!({}),
        ),
        "Conflict": conflict,
        "PayloadTooLarge": response(
            "The body is larger than `max_body_bytes` (default 1 MiB, `--max-body-bytes`). On every route: a `Content-Length` over the limit is refused before the body is read; a chunked body is cut at the limit.",
            "RequestEntityTooLarge",
            "The request body is larger than the limit of 1048576 bytes (max_body_bytes)",
            json!({}),
        ),
        "TooManyRequests": limited,
        "GatewayTimeout": response(
            "Heavy work (a verdict batch, a large list page, effective rules, analysis, a host policy) did not finish within the request deadline (`--request-deadline-ms`, default 5000); it was stopped.",
            "GatewayTimeout",
            "The request did not finish within 5000 ms",
            json!({}),
        ),
        "RequestTimeout": response(
            "The request's body did not arrive within the body timeout (`--body-timeout`).",
            "RequestTimeout",
            "The request body did not arrive within 30 seconds",
            json!({}),
        ),
        "InternalServerError": response("An internal failure; the details are logged, not sent.", "InternalServerError", "Internal server error", json!({})),
        "ServiceUnavailable": response(
            "The database is unreachable; retrying later may succeed.",
            "ServiceUnavailable",
            "The service is temporarily unavailable",
            json!({}),
        ),
    })
}

const NAME_PATTERN: &str = r"^[a-zA-Z0-9][a-zA-Z 0-9._\-]{1,61}[a-zA-Z0-9._]$";
const ZONED_TIME_PATTERN: &str = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0000$";
const NAIVE_TIME_PATTERN: &str = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$";

fn zoned_time(description: &str) -> Value {
    json!({"type": "string", "pattern": ZONED_TIME_PATTERN, "description": format!("{description} UTC, `YYYY-MM-DDTHH:MM:SS+0000`."), "examples": ["2019-07-26T13:25:03+0000"]})
}

fn naive_time(description: &str, nullable: bool) -> Value {
    let ty = if nullable { json!(["string", "null"]) } else { json!("string") };
    json!({"type": ty, "pattern": NAIVE_TIME_PATTERN, "description": format!("{description} Naive UTC, `YYYY-MM-DDTHH:MM:SS`."), "examples": ["2026-07-01T13:37:14"]})
}

fn collection(item: &str, description: &str) -> Value {
    json!({
        "type": "object",
        "description": description,
        "required": ["count", "results"],
        "properties": {
            "count": {"type": "integer", "minimum": 0, "description": "The number of items that match, over all pages."},
            "results": {"type": "array", "items": schema_ref(item), "description": "This page."},
        },
    })
}

/// The properties of a rule input; `protocol` differs between the v1 and v2 inputs.
fn rule_input_properties(protocol: Value) -> Map<String, Value> {
    let port = |which: &str| {
        json!({"type": ["integer", "null"], "minimum": 0, "maximum": 65535, "default": null,
               "description": format!("{which}. With `tcp`, `udp`, `sctp`, `dccp` or `udplite`: ports 1..65535; a lone `port_range_min` is a single port, a lone `port_range_max` is refused, and 1..65535 is stored as null (all ports). With `icmp` or `ipv6-icmp`: `port_range_min` is the ICMP type and `port_range_max` the code (0..255; a code needs a type). With another protocol or none: must be null.")})
    };
    let mut properties = Map::new();
    properties.insert("direction".into(), schema_ref("Direction"));
    properties.insert(
        "ethertype".into(),
        json!({"allOf": [schema_ref("Ethertype")], "default": "IPv4", "description": "Address family, exactly `IPv4` or `IPv6` (not null). Absent: `IPv4`."}),
    );
    properties.insert("protocol".into(), protocol);
    properties.insert("port_range_min".into(), port("First port, or ICMP type"));
    properties.insert("port_range_max".into(), port("Last port, or ICMP code"));
    properties.insert(
        "remote_ip_prefix".into(),
        json!({"type": ["string", "null"], "default": null, "examples": ["10.0.0.0/8", "2001:db8::/32"],
               "description": "The remote network, an IPv4 or IPv6 CIDR of the rule's ethertype (a bare address means a single host). Null: anywhere."}),
    );
    properties.insert(
        "remote_group_id".into(),
        json!({"type": ["string", "null"], "format": "uuid", "default": null,
               "description": "Allow traffic of the ports of this group (of the same project and region, or the group itself)."}),
    );
    properties.insert(
        "description".into(),
        json!({"type": "string", "maxLength": MAX_DESCRIPTION, "default": "", "description": format!("At most {MAX_DESCRIPTION} characters (not null).")}),
    );
    properties
}

/// A group's `description` (create, v1 create, v2 PATCH): a string of at most 255 characters.
fn group_description(description: &str) -> Value {
    json!({"type": "string", "maxLength": MAX_DESCRIPTION, "description": format!("{description} At most {MAX_DESCRIPTION} characters; not null.")})
}

fn object(description: &str, required: &[&str], properties: Map<String, Value>) -> Value {
    let mut schema = json!({"type": "object", "description": description, "properties": properties});
    if !required.is_empty() {
        schema["required"] = json!(required);
    }
    schema
}

fn schemas() -> Value {
    let v2_names: Vec<&str> = Protocol::names().collect();
    let mut v1_names = vec!["any"];
    v1_names.extend(Protocol::names());
    let accepted_too = "Also accepted: `any` (all protocols, stored as null). Names are exact, as listed: other cases (`TCP`), numbers (`6`, `\"6\"`) and aliases (`icmpv6`) are a 400.";

    let rule_v2 = object(
        "A rule to create (v2). Fields that are not listed are ignored.",
        &["direction"],
        rule_input_properties(json!({
            "anyOf": [schema_ref("ProtocolV2"), {"type": "null"}],
            "default": null,
            "description": format!("Null or absent: all protocols. {accepted_too}"),
        })),
    );
    let rule_v1 = object(
        "A rule to create (v1). Like `SecurityGroupRuleInputV2`, but the protocol enum includes `any`.",
        &["direction"],
        rule_input_properties(json!({
            "anyOf": [schema_ref("Protocol"), {"type": "null"}],
            "default": null,
            "description": format!("Null, absent or `any`: all protocols. {accepted_too}"),
        })),
    );
    let mut replace = rule_input_properties(json!({"anyOf": [schema_ref("Protocol"), {"type": "null"}], "default": null,
        "description": format!("Null, absent or `any`: all protocols. {accepted_too}")}));
    replace.insert(
        "security_group_id".into(),
        json!({"type": ["string", "null"], "format": "uuid", "description": "Optional; when given it must be the group of the rule being replaced (400 otherwise)."}),
    );
    let mut changed_create = rule_input_properties(json!({"anyOf": [schema_ref("Protocol"), {"type": "null"}], "default": null,
        "description": format!("Null, absent or `any`: all protocols. {accepted_too}")}));
    changed_create.insert("action".into(), json!({"const": "create"}));
    let mut changed_delete = Map::new();
    changed_delete.insert("action".into(), json!({"const": "delete"}));
    changed_delete
        .insert("security_group_rule_id".into(), json!({"type": "string", "format": "uuid", "description": "A rule of this group."}));

    let tag_value_description = format!(
        "Tag value: 1 to {MAX_TAG_LEN} characters without tab, newline, carriage return, vertical tab or form feed; leading and trailing whitespace is stripped. Gcore's schema sets no limit on the number of tags (`max_body_bytes` bounds it)."
    );
    let rules_list = |description: &str| json!({"type": "array", "maxItems": MAX_RULES, "items": schema_ref("SecurityGroupRuleInputV2"), "description": description});

    let mut schemas = Map::new();
    let mut add = |name: &str, schema: Value| {
        schemas.insert(name.to_string(), schema);
    };
    add(
        "Error",
        json!({
            "type": "object",
            "description": "The body of every error response.",
            "required": ["exception_class", "message", "request_id"],
            "properties": {
                "exception_class": {"type": "string", "description": "The kind of error.",
                    "examples": ["ValidationError", "NotAuthenticated", "PermissionDenied", "NotFoundError", "HTTPError", "SecurityGroupRuleExists", "QuotaLimitExceed", "RequestEntityTooLarge", "InternalServerError", "ServiceUnavailable"]},
                "message": {"type": "string", "description": "A human-readable message."},
                "request_id": {"type": "string", "description": "The request's id, as in the `x-request-id` header."},
                "invalid_fields": {
                    "type": "object",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                    "description": "Each offending field (a dotted path such as `rules.0.protocol`, `tags.env` or `body`) and its reasons. On 400, on a 404 for an unknown `remote_group_id`, and on 409.",
                },
                "info": {"type": "object", "description": "Extra details: `{\"existing_rule_id\": ...}` on a 409 for a duplicate rule, `{\"quota\", \"limit\", \"requested\"}` on a 409 for a quota."},
            },
        }),
    );
    add(
        "Direction",
        json!({"type": "string", "enum": ["egress", "ingress"], "description": "Traffic direction, from the point of view of the ports of the group."}),
    );
    add("Ethertype", json!({"type": "string", "enum": ["IPv4", "IPv6"]}));
    add(
        "ProtocolV2",
        json!({"type": "string", "enum": v2_names, "description": format!("An IP protocol (the v2 inputs: use null for all protocols). {accepted_too}")}),
    );
    add(
        "Protocol",
        json!({"type": "string", "enum": v1_names, "description": format!("An IP protocol or `any` (the v1 inputs). {accepted_too}")}),
    );
    add(
        "SecurityGroupName",
        json!({
            "type": "string", "minLength": 3, "maxLength": 63, "pattern": NAME_PATTERN,
            "description": "3 to 63 characters: starts with a letter or digit, then letters, digits, spaces, `.`, `_` or `-`, and ends with a letter, digit, `.` or `_`. Names need not be unique.",
            "examples": ["my_security_group"],
        }),
    );
    add(
        "TagKey",
        json!({
            "type": "string", "minLength": 1, "maxLength": MAX_TAG_LEN, "pattern": r"^[^\s=]+$",
            "description": format!("Tag key: 1 to {MAX_TAG_LEN} characters, no whitespace, no `=`."), "examples": ["my-tag"],
        }),
    );
    add(
        "TagValue",
        json!({
            "type": "string", "minLength": 1, "maxLength": MAX_TAG_LEN, "pattern": r"^\s*[^\t\n\r\v\f]*\S[^\t\n\r\v\f]*\s*$",
            "description": tag_value_description, "examples": ["my-tag-value"],
        }),
    );
    add(
        "Tag",
        json!({
            "type": "object",
            "required": ["key", "value", "read_only"],
            "properties": {
                "key": {"type": "string", "description": "The key."},
                "value": {"type": "string", "description": "The value."},
                "read_only": {"type": "boolean", "description": "Server-owned tags cannot be changed or deleted by clients."},
            },
            "examples": [{"key": "my-tag", "value": "my-tag-value", "read_only": false}],
        }),
    );
    add(
        "CreateTags",
        json!({
            "type": "object",
            "description": "Tags to set: an object of keys and values.",
            "propertyNames": schema_ref("TagKey"),
            "additionalProperties": schema_ref("TagValue"),
            "examples": [{"my-tag": "my-tag-value"}],
        }),
    );
    add(
        "UpdateTags",
        json!({
            "type": ["object", "null"],
            "description": "A JSON merge patch of the tags: a string sets a key, null deletes it, keys not mentioned are kept; `tags: null` deletes every user tag. Read-only tags never change, and deleting a missing key is not an error.",
            "propertyNames": schema_ref("TagKey"),
            "additionalProperties": {"anyOf": [schema_ref("TagValue"), {"type": "null"}]},
            "examples": [{"env": "prod", "team": null}],
        }),
    );
    add("SecurityGroupRuleInputV2", rule_v2);
    add("SecurityGroupRuleInputV1", rule_v1);
    add(
        "ReplaceSecurityGroupRule",
        object("The new attributes of a rule (v1 PUT); `security_group_id` is optional.", &["direction"], replace),
    );
    add(
        "CreateSecurityGroupV2",
        json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": schema_ref("SecurityGroupName"),
                "description": group_description("Free text; absent: `\"\"`."),
                "rules": rules_list("Omitted: the default template (allow all egress, IPv4 and IPv6). `[]`: no rules. Otherwise exactly these rules (identical ones once). Null is invalid."),
                "tags": schema_ref("CreateTags"),
            },
            "examples": [{"name": "web", "description": "Web servers",
                          "rules": [{"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 443, "port_range_max": 443, "remote_ip_prefix": "0.0.0.0/0"}],
                          "tags": {"env": "prod"}}],
        }),
    );
    add(
        "UpdateSecurityGroupV2",
        json!({
            "type": "object",
            "description": "Every field is optional; absent means unchanged. Only `tags` may be null.",
            "properties": {
                "name": schema_ref("SecurityGroupName"),
                "description": group_description("The new description."),
                "rules": rules_list("The desired final rule set: rules not in it are deleted, new ones created, matching ones kept."),
                "tags": schema_ref("UpdateTags"),
            },
            "examples": [{"name": "web-2", "rules": [{"direction": "egress", "ethertype": "IPv6"}], "tags": {"old": null}}],
        }),
    );
    add(
        "CopySecurityGroup",
        json!({
            "type": "object",
            "required": ["name"],
            "properties": {"name": schema_ref("SecurityGroupName")},
        }),
    );
    add(
        "LegacySecurityGroupInput",
        json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": schema_ref("SecurityGroupName"),
                "description": group_description("Free text; absent: `\"\"`."),
                "security_group_rules": {"type": "array", "maxItems": MAX_RULES, "items": schema_ref("SecurityGroupRuleInputV1"),
                    "description": "Exactly the rules to create (identical ones once); absent: none."},
                "tags": schema_ref("CreateTags"),
                "metadata": {"anyOf": [schema_ref("CreateTags"), {"type": "null"}], "description": "Legacy name of `tags` (gcorelabscloud-go); a key in both keeps the `tags` value."},
            },
        }),
    );
    add(
        "LegacyCreateSecurityGroup",
        json!({
            "type": "object",
            "required": ["security_group"],
            "properties": {
                "security_group": schema_ref("LegacySecurityGroupInput"),
                "instances": {"type": "array", "items": {"type": "string", "format": "uuid"},
                    "description": "Instances whose ports (registered with `/palisade/v1/ports`) the new group is bound to; an instance without ports is a 404 and nothing is created."},
            },
            "examples": [{"security_group": {"name": "legacy", "security_group_rules": [{"direction": "egress", "protocol": "any"}], "metadata": {"m": "1"}}}],
        }),
    );
    add("ChangedRuleCreate", object("Create a rule.", &["action", "direction"], changed_create));
    add("ChangedRuleDelete", object("Delete a rule of the group.", &["action", "security_group_rule_id"], changed_delete));
    add(
        "LegacyUpdateSecurityGroup",
        json!({
            "type": "object",
            "description": "Every field is optional; absent means unchanged. Only `tags` may be null.",
            "properties": {
                "name": schema_ref("SecurityGroupName"),
                "tags": schema_ref("UpdateTags"),
                "changed_rules": {
                    "type": "array",
                    "maxItems": MAX_CHANGED_RULES,
                    "description": "Rule changes, applied in order.",
                    "items": {
                        "oneOf": [schema_ref("ChangedRuleCreate"), schema_ref("ChangedRuleDelete")],
                        "discriminator": {"propertyName": "action", "mapping": {
                            "create": "#/components/schemas/ChangedRuleCreate",
                            "delete": "#/components/schemas/ChangedRuleDelete",
                        }},
                    },
                },
            },
            "examples": [{"name": "default", "changed_rules": [
                {"action": "delete", "security_group_rule_id": "2f89b3a6-5d0c-4b8e-9d1a-3c7e5f6a8b90"},
                {"action": "create", "direction": "ingress", "ethertype": "IPv4", "protocol": "any"},
            ]}],
        }),
    );
    add(
        "SecurityGroupRule",
        json!({
            "type": "object",
            "required": ["id", "security_group_id", "direction", "ethertype", "protocol", "port_range_min", "port_range_max",
                         "remote_ip_prefix", "remote_group_id", "description", "revision_number", "created_at", "updated_at"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "security_group_id": {"type": "string", "format": "uuid"},
                "direction": schema_ref("Direction"),
                "ethertype": schema_ref("Ethertype"),
                "protocol": {"anyOf": [schema_ref("ProtocolV2"), {"type": "null"}], "description": "Null: all protocols (`any` is never returned)."},
                "port_range_min": {"type": ["integer", "null"], "minimum": 0, "maximum": 65535},
                "port_range_max": {"type": ["integer", "null"], "minimum": 0, "maximum": 65535},
                "remote_ip_prefix": {"type": ["string", "null"], "description": "Canonical CIDR."},
                "remote_group_id": {"type": ["string", "null"], "format": "uuid"},
                "description": {"type": "string"},
                "revision_number": {"type": "integer", "description": "Always 0: rules are immutable."},
                "created_at": zoned_time("Creation time,"),
                "updated_at": zoned_time("Equal to `created_at`,"),
            },
            "examples": [{"id": "253c1ad7-8061-44b9-9f33-5616ad8ba5b6", "security_group_id": "3addc7a1-e926-46da-b5a2-eb4b2f935230",
                          "direction": "egress", "ethertype": "IPv4", "protocol": null, "port_range_min": null, "port_range_max": null,
                          "remote_ip_prefix": null, "remote_group_id": null, "description": "", "revision_number": 0,
                          "created_at": "2019-07-26T13:25:03+0000", "updated_at": "2019-07-26T13:25:03+0000"}],
        }),
    );
    add(
        "SecurityGroup",
        json!({
            "type": "object",
            "required": ["id", "name", "description", "created_at", "updated_at", "project_id", "region_id", "region",
                         "revision_number", "security_group_rules", "tags_v2", "metadata"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "name": {"type": "string"},
                "description": {"type": "string", "description": "`\"\"` when never set."},
                "created_at": zoned_time("Creation time,"),
                "updated_at": zoned_time("Time of the last change,"),
                "project_id": {"type": "integer"},
                "region_id": {"type": "integer"},
                "region": {"type": "string", "description": "The region's display name (configured, else `Region <id>`).", "examples": ["Luxembourg 1"]},
                "revision_number": {"type": "integer", "description": "0 at creation, +1 on every change (name, description, tags, rules)."},
                "security_group_rules": {"type": "array", "items": schema_ref("SecurityGroupRule")},
                "tags_v2": {"type": "array", "items": schema_ref("Tag"), "description": "Sorted by key."},
                "metadata": {"type": "array", "items": schema_ref("Tag"), "description": "A copy of `tags_v2` for legacy clients (gcorelabscloud-go, the old Terraform provider)."},
            },
        }),
    );
    add("SecurityGroupCollection", collection("SecurityGroup", "A page of security groups."));
    add("TagCollection", collection("Tag", "Tags of a group."));
    add(
        "Instance",
        json!({
            "type": "object",
            "description": "An instance using the group: the fields of Gcore's `InstanceSerializer` that Palisade knows, and the instance's ports that use the group.",
            "required": ["id", "name", "project_id", "region_id", "region", "security_groups", "ports"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "name": {"type": "string", "description": "The port's `instance_name` (the instance id when none was registered)."},
                "project_id": {"type": "integer"},
                "region_id": {"type": "integer"},
                "region": {"type": "string"},
                "security_groups": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
                    "description": "Every group bound to any port of the instance."},
                "ports": {"type": "array", "items": {"type": "object", "required": ["id", "mac_address", "fixed_ips"], "properties": {
                    "id": {"type": "string", "format": "uuid"}, "mac_address": {"type": "string"}, "fixed_ips": {"type": "array", "items": {"type": "string"}}}}},
            },
        }),
    );
    add("InstanceCollection", collection("Instance", "Instances using a group."));
    add(
        "InstancePortsSecurityGroups",
        json!({
            "type": "object",
            "description": "Gcore's `InstancePortsSecurityGroupsSerializer`: at least one of the two fields.",
            "properties": {
                "name": {"allOf": [schema_ref("SecurityGroupName")], "description": "A group name; applies to every port of the instance (not null)."},
                "ports_security_group_names": {"type": "array", "description": "Not null.", "items": {
                    "type": "object",
                    "required": ["security_group_names"],
                    "properties": {
                        "port_id": {"type": ["string", "null"], "format": "uuid", "description": "A port of the instance; null: every port."},
                        "security_group_names": {"type": "array", "items": schema_ref("SecurityGroupName")},
                    },
                }},
            },
            "examples": [{"name": "web"}, {"ports_security_group_names": [{"port_id": null, "security_group_names": ["web"]}]}],
        }),
    );
    add(
        "InstanceSecurityGroupList",
        json!({
            "type": "object",
            "required": ["count", "results"],
            "properties": {
                "count": {"type": "integer", "minimum": 0},
                "results": {"type": "array", "items": {"type": "object", "required": ["id", "name"],
                    "properties": {"id": {"type": "string", "format": "uuid"}, "name": {"type": "string"}}}},
            },
        }),
    );
    let port_fields = |required: bool| {
        let mut p = Map::new();
        p.insert("instance_name".into(), json!({"type": "string", "minLength": 1, "maxLength": 255, "description": "Shown as the instance's `name` (default: the instance id)."}));
        p.insert("host".into(), json!({"type": "string", "pattern": "^[A-Za-z0-9._-]{1,253}$", "description": "The host the port lives on: the `--host` of its agent."}));
        p.insert(
            "device".into(),
            json!({"type": "string", "pattern": "^[A-Za-z0-9._-]{1,15}$",
            "description": "The port's interface on the host (default: `tap` and the first 11 characters of the port id)."}),
        );
        p.insert("mac_address".into(), json!({"type": "string", "examples": ["fa:16:3e:00:00:01"], "description": "A unicast MAC address; the port may send from it only."}));
        p.insert(
            "fixed_ips".into(),
            json!({"type": "array", "items": {"type": "string"}, "examples": [["10.0.0.5", "2001:db8::5"]],
            "description": "The port's IPv4 and IPv6 addresses; the port may send from them (and IPv6 link-local addresses) only."}),
        );
        p.insert(
            "security_group_ids".into(),
            json!({"type": if required { json!("array") } else { json!(["array", "null"]) }, "items": {"type": "string", "format": "uuid"},
            "description": "Groups of the port's project and region to bind, in order."}),
        );
        p
    };
    let mut create = port_fields(true);
    create.insert("id".into(), json!({"type": "string", "format": "uuid", "description": "The platform's port id (default: a new one)."}));
    create.insert("client_id".into(), json!({"type": "integer", "minimum": 1, "description": "The client (tenant) the port belongs to."}));
    create.insert("project_id".into(), json!({"type": "integer", "minimum": 0}));
    create.insert("region_id".into(), json!({"type": "integer", "minimum": 0}));
    create.insert("instance_id".into(), json!({"type": "string", "format": "uuid"}));
    add(
        "CreatePort",
        object("A port to register.", &["client_id", "project_id", "region_id", "instance_id", "host", "mac_address", "fixed_ips"], create),
    );
    add("UpdatePort", object("New values; absent fields are kept.", &[], port_fields(false)));
    let mut port = port_fields(true);
    port.insert("id".into(), json!({"type": "string", "format": "uuid"}));
    port.insert("client_id".into(), json!({"type": "integer"}));
    port.insert("project_id".into(), json!({"type": "integer"}));
    port.insert("region_id".into(), json!({"type": "integer"}));
    port.insert("instance_id".into(), json!({"type": "string", "format": "uuid"}));
    port.insert("created_at".into(), zoned_time("Registration time,"));
    port.insert("updated_at".into(), zoned_time("Time of the last change,"));
    let port_required: Vec<&str> = port.keys().map(String::as_str).collect::<Vec<_>>();
    let port_required: Vec<String> = port_required.iter().map(|k| k.to_string()).collect();
    add("Port", json!({"type": "object", "description": "A registered port.", "required": port_required, "properties": port}));
    add("PortCollection", collection("Port", "Ports."));
    add(
        "AgentStatus",
        json!({"type": "object", "required": ["applied_revision"],
        "properties": {"applied_revision": {"type": "integer", "minimum": 0, "description": "The policy revision the agent has applied."}}}),
    );
    add(
        "Agent",
        json!({
            "type": "object",
            "required": ["host", "applied_revision", "reported_at", "in_sync"],
            "properties": {
                "host": {"type": "string"},
                "applied_revision": {"type": "integer"},
                "reported_at": zoned_time("Time of the agent's last report,"),
                "in_sync": {"type": "boolean", "description": "Whether the agent has applied the current policy revision."},
                "applied": {"type": "boolean", "description": "With `?revision=N`: whether the agent has applied revision N."},
            },
        }),
    );
    add(
        "AgentList",
        json!({
            "type": "object",
            "required": ["policy_revision", "count", "results"],
            "properties": {
                "policy_revision": {"type": "integer", "description": "The current global policy revision."},
                "count": {"type": "integer", "minimum": 0},
                "results": {"type": "array", "items": schema_ref("Agent")},
            },
        }),
    );
    add(
        "HostPolicy",
        json!({
            "type": "object",
            "description": "The policy of one host (`palisade_core::policy::HostPolicy`). Rules and remote-group membership are shipped separately: a rule names its remote group by id, and each remote group's members are listed once.",
            "required": ["host", "revision", "ports", "security_groups", "remote_groups"],
            "properties": {
                "host": {"type": "string"},
                "revision": {"type": "integer"},
                "ports": {"type": "array", "items": {"type": "object",
                    "required": ["id", "instance_id", "device", "mac_address", "fixed_ips", "security_group_ids"],
                    "properties": {
                        "id": {"type": "string", "format": "uuid"},
                        "instance_id": {"type": "string", "format": "uuid"},
                        "device": {"type": "string"},
                        "mac_address": {"type": "string"},
                        "fixed_ips": {"type": "array", "items": {"type": "string"}},
                        "security_group_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
                    }}},
                "security_groups": {"type": "array", "items": {"type": "object", "required": ["id", "rules"], "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "rules": {"type": "array", "items": {"type": "object",
                        "required": ["id", "direction", "ethertype", "protocol", "port_range_min", "port_range_max", "remote_ip_prefix", "remote_group_id"],
                        "properties": {
                            "id": {"type": "string", "format": "uuid"},
                            "direction": schema_ref("Direction"),
                            "ethertype": schema_ref("Ethertype"),
                            "protocol": {"type": ["integer", "null"], "minimum": 0, "maximum": 255, "description": "IANA protocol number; null: all."},
                            "port_range_min": {"type": ["integer", "null"]},
                            "port_range_max": {"type": ["integer", "null"]},
                            "remote_ip_prefix": {"type": ["string", "null"]},
                            "remote_group_id": {"type": ["string", "null"], "format": "uuid"},
                        }}},
                }}},
                "remote_groups": {"type": "array", "items": {"type": "object", "required": ["id", "members"], "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "members": {"type": "array", "items": {"type": "string"}, "description": "Fixed addresses of every port bound to the group, on any host."},
                }}},
            },
        }),
    );
    add(
        "TaskState",
        json!({"type": "string", "enum": ["NEW", "RUNNING", "FINISHED", "ERROR"],
            "description": "`NEW` (queued) -> `RUNNING` -> `FINISHED` or `ERROR`; terminal states never change."}),
    );
    add(
        "CreatedResources",
        json!({
            "type": "object",
            "description": "What a FINISHED task created; only the keys that apply are present.",
            "properties": {
                "security_groups": {"type": "array", "items": {"type": "string", "format": "uuid"}, "description": "`create_security_group`: exactly the new group."},
                "security_group_rules": {"type": "array", "items": {"type": "string", "format": "uuid"},
                    "description": "`create_security_group`: the group's rules; `create_security_group_rule`: exactly the new rule; `update_security_group`: the rules added."},
            },
            "additionalProperties": {"type": "array", "items": {"type": ["string", "integer"]}},
        }),
    );
    add(
        "Task",
        json!({
            "type": "object",
            "required": ["id", "state", "task_type", "user_id", "client_id", "user_client_id", "project_id", "region_id", "request_id",
                         "error", "created_on", "updated_on", "finished_on", "acknowledged_at", "acknowledged_by", "data",
                         "created_resources", "detailed_state", "job_id", "lifecycle_policy_id", "schedule_id"],
            "properties": {
                "id": {"type": "string", "description": "A UUID."},
                "state": schema_ref("TaskState"),
                "task_type": {"type": "string", "examples": ["create_security_group", "update_security_group", "create_security_group_rule", "delete_security_group_rule"]},
                "user_id": {"type": "integer", "description": "The user whose key started the task."},
                "client_id": {"type": "integer", "description": "The client (account) of that key."},
                "user_client_id": {"type": "integer", "description": "Equal to `client_id`."},
                "project_id": {"type": ["integer", "null"]},
                "region_id": {"type": ["integer", "null"]},
                "request_id": {"type": ["string", "null"], "description": "The id of the request that started the task."},
                "error": {"type": ["string", "null"], "description": "Why the task failed; null unless `state` is `ERROR`."},
                "created_on": naive_time("Creation time,", false),
                "updated_on": naive_time("Time of the last state change,", true),
                "finished_on": naive_time("Time the task became FINISHED or ERROR,", true),
                "acknowledged_at": naive_time("Acknowledgement time,", true),
                "acknowledged_by": {"type": ["integer", "null"], "description": "The user who acknowledged the task."},
                "data": {"description": "The task's parameters: the request body plus the ids it applies to. Any JSON, or null."},
                "created_resources": or_null(schema_ref("CreatedResources")),
                "detailed_state": {"type": ["string", "null"], "description": "Always null."},
                "job_id": {"type": ["string", "null"], "description": "Always null."},
                "lifecycle_policy_id": {"type": ["integer", "null"], "description": "Always null."},
                "schedule_id": {"type": ["string", "null"], "description": "Always null."},
            },
        }),
    );
    add("TaskCollection", collection("Task", "A page of tasks."));
    add(
        "TaskIDList",
        json!({
            "type": "object",
            "required": ["tasks"],
            "properties": {"tasks": {"type": "array", "items": {"type": "string"}, "description": "The ids of the tasks started (poll them)."}},
            "examples": [{"tasks": ["50e2042d-761b-4f5a-b5bf-e11031c747b0"]}],
        }),
    );
    add(
        "AcknowledgeTasks",
        json!({
            "type": "object",
            "properties": {"task_ids": {"type": ["array", "null"], "items": {"type": "string"},
                "description": "The tasks to acknowledge; null or absent: every unacknowledged task."}},
        }),
    );
    let defaults = quota::Limits::default();
    let limit = |what: &str, default: i64| {
        json!({"type": "integer", "minimum": -1, "maximum": MAX_LIMIT,
               "description": format!("The most {what} the project may have in the region; -1: unlimited. Default (unless configured): {default}.")})
    };
    let mut set = Map::new();
    set.insert(quota::GROUPS.into(), limit("security groups", defaults.security_groups));
    set.insert(quota::RULES.into(), limit("security group rules (over all its groups)", defaults.security_group_rules));
    add(
        "SetQuota",
        json!({"type": "object", "description": "New limits; an omitted limit is unchanged.", "properties": set,
        "examples": [{quota::GROUPS: 100, quota::RULES: 5000}]}),
    );
    let mut out = Map::new();
    out.insert("project_id".into(), json!({"type": "integer"}));
    out.insert("region_id".into(), json!({"type": "integer"}));
    for (name, what) in [(quota::GROUPS, "security groups"), (quota::RULES, "security group rules")] {
        out.insert(
            format!("{name}_limit"),
            json!({"type": "integer", "minimum": -1, "maximum": MAX_LIMIT, "description": format!("The limit on {what}; -1: unlimited.")}),
        );
        out.insert(
            format!("{name}_usage"),
            json!({"type": "integer", "minimum": 0, "description": format!("The number of {what} the project has in the region.")}),
        );
    }
    let required: Vec<String> = out.keys().cloned().collect();
    add("Quota", json!({"type": "object", "required": required, "properties": out}));
    let actions: Vec<&str> = palisade_worker::audit::Action::ALL.iter().map(|a| a.as_str()).collect();
    add("AuditAction", json!({"type": "string", "enum": actions, "description": "What was done: `<resource>.<verb>`."}));
    let nullable_int = |description: &str| json!({"type": ["integer", "null"], "description": description});
    add(
        "AuditEvent",
        json!({
            "type": "object",
            "description": "One change: who made it, to what, how it ended and what changed.",
            "required": ["id", "time", "actor_key_id", "actor_role", "client_id", "user_id", "project_id", "region_id", "action",
                         "resource_type", "resource_id", "request_id", "outcome", "summary"],
            "properties": {
                "id": {"type": "integer", "description": "The event's number; grows with every event."},
                "time": {"type": "string", "format": "date-time", "description": "When the change was committed: RFC 3339 UTC with milliseconds.", "examples": ["2026-01-31T12:00:00.123Z"]},
                "actor_key_id": nullable_int("The API key that made the change; null for the `palisade` CLI."),
                "actor_role": {"type": "string", "enum": ["tenant", "platform", "agent", "cli"]},
                "client_id": nullable_int("The client whose resources changed; null for a change of no client (a platform or agent key)."),
                "user_id": nullable_int("The acting user of a tenant key (of a task: the user who queued it); null otherwise."),
                "project_id": nullable_int("The project of the change, if it has one."),
                "region_id": nullable_int("The region of the change, if it has one."),
                "action": schema_ref("AuditAction"),
                "resource_type": {"type": "string", "enum": ["security_group", "port", "instance", "quota", "api_key", "task"],
                    "description": "The kind of `resource_id`; rule actions are changes of their group."},
                "resource_id": {"type": ["string", "null"], "description": "The changed resource; null for a change of many (a bulk acknowledgement, a quota)."},
                "request_id": {"type": ["string", "null"], "description": "The `x-request-id` of the request (of a task: the request that queued it); null for the CLI."},
                "outcome": {"type": "string", "description": "`ok`, or for a task that ended in `ERROR` its error class: `NotFound`, `Invalid`, `Conflict` or `QuotaExceeded`.", "examples": ["ok"]},
                "summary": {"type": "object", "description": "What changed, such as `name`, `changed` (fields), `rules_added` and `rules_removed` (rule ids), `tags_set`, `security_groups_added`; a task's event adds `task_id` (and `error` when it failed).",
                    "examples": [{"changed": ["name"], "rules_added": ["253c1ad7-8061-44b9-9f33-5616ad8ba5b6"], "rules_removed": [], "task_id": "1f0b5c1e-0c7a-4c1e-8a53-1d2f3b4c5d6e"}]},
            },
        }),
    );
    add("AuditEventCollection", collection("AuditEvent", "Audit events, newest first."));
    let flow = json!({
        "type": "object",
        "required": ["direction", "remote_ip", "protocol"],
        "description": "A flow, from the port's point of view. Give `port_id` or `security_group_ids`.",
        "properties": {
            "port_id": {"type": "string", "format": "uuid"},
            "security_group_ids": {"type": "array", "items": {"type": "string", "format": "uuid"}},
            "direction": {"type": "string", "enum": ["ingress", "egress"]},
            "remote_ip": {"type": "string", "description": "The source of an ingress packet, the destination of an egress one."},
            "protocol": {"oneOf": [{"type": "string"}, {"type": "integer", "minimum": 0, "maximum": 255}], "description": "A protocol name or number (not `any`)."},
            "port": {"type": "integer", "minimum": 0, "maximum": 65535, "description": "Destination port."},
            "icmp_type": {"type": "integer", "minimum": 0, "maximum": 255},
            "icmp_code": {"type": "integer", "minimum": 0, "maximum": 255},
            "established": {"type": "boolean", "default": false},
        },
        "examples": [{"port_id": "3f0c6c9e-6e0a-4c1e-9d1e-2b7b8f7f2a10", "direction": "ingress", "remote_ip": "203.0.113.7", "protocol": "tcp", "port": 22}],
    });
    add(
        "VerdictRequest",
        json!({"oneOf": [flow.clone(), {"type": "object", "required": ["flows"], "properties": {"flows": {"type": "array", "maxItems": 10000, "items": flow}}}]}),
    );
    let answer = json!({
        "type": "object",
        "required": ["allowed", "verdict", "connection", "decided_by", "matching_rules", "reason"],
        "properties": {
            "allowed": {"type": "boolean"},
            "verdict": {"type": "string", "enum": ["allow", "deny"]},
            "connection": {"type": "string", "enum": ["new", "established"]},
            "decided_by": {"type": ["object", "null"], "properties": {"rule_id": {"type": "string"}, "security_group_id": {"type": "string"}}},
            "matching_rules": {"type": "array", "items": {"type": "object", "properties": {"rule_id": {"type": "string"}, "security_group_id": {"type": "string"}}}},
            "reason": {"type": "string"},
        },
    });
    add(
        "VerdictAnswer",
        json!({"oneOf": [answer.clone(), {"type": "object", "required": ["results"], "properties": {"results": {"type": "array", "items": answer}}}]}),
    );
    add(
        "EffectiveRules",
        json!({
            "type": "object",
            "required": ["port_id", "instance_id", "security_groups", "default_action", "stateful", "ingress", "egress", "remote_groups"],
            "properties": {
                "port_id": {"type": "string"},
                "instance_id": {"type": "string"},
                "security_groups": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}, "name": {"type": "string"}}}},
                "default_action": {"const": "drop"},
                "stateful": {"const": true},
                "ingress": {"type": "array", "items": {"$ref": "#/components/schemas/SecurityGroupRule"}},
                "egress": {"type": "array", "items": {"$ref": "#/components/schemas/SecurityGroupRule"}},
                "remote_groups": {"type": "array", "items": {"type": "object", "properties": {"id": {"type": "string"}, "ipv4": {"type": "array", "items": {"type": "string"}}, "ipv6": {"type": "array", "items": {"type": "string"}}}}},
            },
        }),
    );
    add(
        "Analysis",
        json!({
            "type": "object",
            "required": ["security_group_id", "rule_count", "findings"],
            "properties": {
                "security_group_id": {"type": "string"},
                "rule_count": {"type": "integer"},
                "findings": {"type": "array", "items": {
                    "type": "object",
                    "required": ["kind", "rule_id"],
                    "properties": {
                        "kind": {"type": "string", "enum": ["duplicate", "shadowed", "overly_broad", "empty_remote_group", "unmatchable"]},
                        "rule_id": {"type": "string"},
                        "same_as": {"type": "string"},
                        "covered_by": {"type": "string"},
                        "reason": {"type": "string"},
                        "remote_group_id": {"type": "string"},
                    },
                }},
            },
        }),
    );
    add("Health", json!({"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}));
    add(
        "Readiness",
        json!({
            "type": "object",
            "required": ["status", "database"],
            "properties": {
                "status": {"type": "string", "enum": ["ready", "unavailable"]},
                "database": {"type": "string", "description": "The database backend.", "examples": ["sqlite"]},
            },
        }),
    );
    Value::Object(schemas)
}

// ---------------------------------------------------------------------------------------------
// The reference page
// ---------------------------------------------------------------------------------------------

const STYLE: &str = "
body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1d2330;background:#fafbfc}
header{background:#1d2330;color:#fff;padding:1.2em 2em}header h1{margin:0;font-size:1.6em}header p{margin:.3em 0 0;color:#c7cede}
main{display:flex;align-items:flex-start}
nav{position:sticky;top:0;max-height:100vh;overflow:auto;width:20em;flex:none;padding:1em;box-sizing:border-box;border-right:1px solid #dde1e8;font-size:.85em}
nav ul{list-style:none;padding-left:.6em;margin:.2em 0}nav a{text-decoration:none;color:#1d2330}nav a:hover{text-decoration:underline}
article{padding:1em 2em 4em;min-width:0;flex:1}
h2{border-bottom:2px solid #dde1e8;padding-bottom:.2em;margin-top:2em}
section.op,section.schema{background:#fff;border:1px solid #dde1e8;border-radius:6px;padding:.6em 1.2em 1em;margin:1.2em 0}
section.op h3,section.schema h3{margin:.4em 0;font-size:1.05em;word-break:break-all}
.method{display:inline-block;min-width:4.2em;text-align:center;border-radius:4px;color:#fff;font-size:.8em;padding:.15em .4em;margin-right:.5em;font-family:ui-monospace,monospace}
.get{background:#2f7d32}.post{background:#1565c0}.put{background:#8e5b00}.patch{background:#6a1b9a}.delete{background:#b71c1c}
.deprecated{color:#b71c1c;font-size:.8em;border:1px solid #b71c1c;border-radius:4px;padding:0 .3em;margin-left:.5em}
.summary{font-weight:600;margin:.2em 0}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.9em;background:#eef1f5;padding:0 .25em;border-radius:3px}
table{border-collapse:collapse;width:100%;margin:.4em 0;font-size:.9em}
th,td{border:1px solid #dde1e8;padding:.3em .5em;text-align:left;vertical-align:top}th{background:#f1f3f6}
td table{margin:.3em 0 0}
.muted{color:#5f6b7a}.req{color:#b71c1c;font-weight:600}
h4{margin:.9em 0 .2em}
";

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escaped text with `code` spans and `**bold**`.
fn inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            let _ = write!(out, "<code>{}</code>", escape(part));
        } else {
            for (j, piece) in part.split("**").enumerate() {
                if j % 2 == 1 {
                    let _ = write!(out, "<strong>{}</strong>", escape(piece));
                } else {
                    out.push_str(&escape(piece));
                }
            }
        }
    }
    out
}

/// Paragraphs and `- ` lists of a description.
fn blocks(text: &str) -> String {
    let mut out = String::new();
    for block in text.split("\n\n").map(str::trim).filter(|b| !b.is_empty()) {
        let lines: Vec<&str> = block.lines().map(str::trim).collect();
        let items = lines.iter().filter(|l| l.starts_with("- ")).count();
        if items > 0 {
            let mut open = false;
            for line in lines {
                if let Some(item) = line.strip_prefix("- ") {
                    if !open {
                        out.push_str("<ul>");
                        open = true;
                    }
                    let _ = write!(out, "<li>{}</li>", inline(item));
                } else {
                    if open {
                        out.push_str("</ul>");
                        open = false;
                    }
                    let _ = write!(out, "<p>{}</p>", inline(line));
                }
            }
            if open {
                out.push_str("</ul>");
            }
        } else {
            let _ = write!(out, "<p>{}</p>", inline(&lines.join(" ")));
        }
    }
    out
}

fn anchor(kind: &str, name: &str) -> String {
    let slug: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '-' }).collect();
    format!("{kind}-{slug}")
}

struct Renderer<'a> {
    doc: &'a Value,
}

impl<'a> Renderer<'a> {
    /// Follows a local `$ref`.
    fn resolve(&self, value: &'a Value) -> &'a Value {
        let mut value = value;
        for _ in 0..8 {
            match value.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix('#')) {
                Some(pointer) => match self.doc.pointer(pointer) {
                    Some(target) => value = target,
                    None => break,
                },
                None => break,
            }
        }
        value
    }

    /// A short, linked description of a schema's type.
    fn type_html(&self, schema: &Value) -> String {
        if let Value::Bool(b) = schema {
            return if *b { "any JSON".into() } else { "nothing".into() };
        }
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            let name = reference.rsplit('/').next().unwrap_or(reference);
            return format!("<a href=\"#{}\">{}</a>", escape(&anchor("schema", name)), escape(name));
        }
        for key in ["anyOf", "oneOf", "allOf"] {
            if let Some(options) = schema.get(key).and_then(Value::as_array) {
                let sep = if key == "allOf" { " &amp; " } else { " | " };
                return options.iter().map(|o| self.type_html(o)).collect::<Vec<_>>().join(sep);
            }
        }
        if let Some(value) = schema.get("const") {
            return format!("<code>{}</code>", escape(&value.to_string()));
        }
        let types: Vec<&str> = match schema.get("type") {
            Some(Value::String(t)) => vec![t.as_str()],
            Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if types.is_empty() {
            return "any JSON".into();
        }
        types
            .iter()
            .map(|&t| match t {
                "array" => match schema.get("items") {
                    Some(items) => format!("array of {}", self.type_html(items)),
                    None => "array".into(),
                },
                "object" => match schema.get("additionalProperties") {
                    Some(values) if values.is_object() && schema.get("properties").is_none() => {
                        let keys = schema.get("propertyNames").map(|k| self.type_html(k)).unwrap_or_else(|| "string".into());
                        format!("object of {keys} → {}", self.type_html(values))
                    }
                    _ => "object".into(),
                },
                "string" => match schema.get("format").and_then(Value::as_str) {
                    Some(format) => format!("string ({})", escape(format)),
                    None => "string".into(),
                },
                other => escape(other),
            })
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// Limits, enums, defaults and patterns of a schema.
    fn constraints_html(&self, schema: &Value) -> String {
        let mut parts = Vec::new();
        let code = |v: &Value| format!("<code>{}</code>", escape(&v.to_string()));
        if let Some(values) = schema.get("enum").and_then(Value::as_array) {
            parts.push(format!("one of {}", values.iter().map(code).collect::<Vec<_>>().join(", ")));
        }
        for (key, label) in [
            ("minimum", "minimum"),
            ("maximum", "maximum"),
            ("minLength", "min length"),
            ("maxLength", "max length"),
            ("maxItems", "max items"),
            ("pattern", "pattern"),
            ("default", "default"),
        ] {
            if let Some(value) = schema.get(key) {
                let shown = match value {
                    Value::String(s) if key == "pattern" => format!("<code>{}</code>", escape(s)),
                    other => code(other),
                };
                parts.push(format!("{label} {shown}"));
            }
        }
        if let Some(media) = schema.get("contentMediaType").and_then(Value::as_str) {
            let inner = schema.get("contentSchema").map(|s| self.type_html(s)).unwrap_or_default();
            parts.push(format!("holds {} {inner}", escape(media)));
        }
        if let Some(examples) = schema.get("examples").and_then(Value::as_array) {
            if !examples.is_empty() && examples.iter().all(|e| !e.is_object()) {
                parts.push(format!("e.g. {}", examples.iter().map(code).collect::<Vec<_>>().join(", ")));
            }
        }
        if schema.get("deprecated").and_then(Value::as_bool) == Some(true) {
            parts.push("<span class=\"deprecated\">deprecated</span>".into());
        }
        if parts.is_empty() { String::new() } else { format!("<div class=\"muted\">{}</div>", parts.join("; ")) }
    }

    /// A schema: a property table for objects with properties, else its type and limits.
    fn schema_html(&self, schema: &Value, depth: usize) -> String {
        let mut out = String::new();
        if let Some(description) = schema.get("description").and_then(Value::as_str) {
            out.push_str(&blocks(description));
        }
        let properties = schema.get("properties").and_then(Value::as_object);
        match properties {
            Some(properties) if !properties.is_empty() => {
                let required: Vec<&str> = schema
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|r| r.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                out.push_str("<table><tr><th>field</th><th>type</th><th>description</th></tr>");
                for (name, property) in properties {
                    let req = if required.contains(&name.as_str()) { " <span class=\"req\">required</span>" } else { "" };
                    let mut cell = property.get("description").and_then(Value::as_str).map(blocks).unwrap_or_default();
                    cell.push_str(&self.constraints_html(property));
                    // Inline objects with their own fields get a nested table.
                    if depth < 3 && property.get("properties").is_some() && property.get("$ref").is_none() {
                        let mut nested = property.clone();
                        if let Some(obj) = nested.as_object_mut() {
                            obj.remove("description");
                        }
                        cell.push_str(&self.schema_html(&nested, depth + 1));
                    }
                    let _ = write!(
                        out,
                        "<tr><td><code>{}</code>{req}</td><td>{}</td><td>{cell}</td></tr>",
                        escape(name),
                        self.type_html(property)
                    );
                }
                out.push_str("</table>");
                if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
                    let _ = write!(out, "<p class=\"muted\">Other keys: {}</p>", self.type_html(extra));
                }
            }
            _ => {
                let _ = write!(out, "<p>Type: {}</p>", self.type_html(schema));
                out.push_str(&self.constraints_html(schema));
            }
        }
        if let Some(mapping) = schema.get("discriminator").and_then(|d| d.get("propertyName")).and_then(Value::as_str) {
            let _ = write!(out, "<p class=\"muted\">Chosen by <code>{}</code>.</p>", escape(mapping));
        }
        if let Some(examples) = schema.get("examples").and_then(Value::as_array) {
            for example in examples.iter().filter(|e| e.is_object()) {
                let pretty = serde_json::to_string_pretty(example).unwrap_or_default();
                let _ = write!(out, "<details><summary>Example</summary><pre><code>{}</code></pre></details>", escape(&pretty));
            }
        }
        out
    }

    fn parameters_html(&self, op: &Value) -> String {
        let Some(parameters) = op.get("parameters").and_then(Value::as_array).filter(|p| !p.is_empty()) else {
            return String::new();
        };
        let mut out = String::from("<h4>Parameters</h4><table><tr><th>name</th><th>in</th><th>type</th><th>description</th></tr>");
        for parameter in parameters {
            let parameter = self.resolve(parameter);
            let text = |key: &str| parameter.get(key).and_then(Value::as_str).unwrap_or_default();
            let schema = parameter.get("schema").cloned().unwrap_or(Value::Null);
            let mut location = escape(text("in"));
            if parameter.get("explode").and_then(Value::as_bool) == Some(true)
                && schema.get("type").and_then(Value::as_str) == Some("array")
            {
                location.push_str(" (repeat the key)");
            }
            let req =
                if parameter.get("required").and_then(Value::as_bool) == Some(true) { " <span class=\"req\">required</span>" } else { "" };
            let deprecated = if parameter.get("deprecated").and_then(Value::as_bool) == Some(true) {
                " <span class=\"deprecated\">deprecated</span>"
            } else {
                ""
            };
            let _ = write!(
                out,
                "<tr><td><code>{}</code>{req}{deprecated}</td><td>{location}</td><td>{}</td><td>{}{}</td></tr>",
                escape(text("name")),
                self.type_html(&schema),
                blocks(text("description")),
                self.constraints_html(&schema),
            );
        }
        out.push_str("</table>");
        out
    }

    fn body_html(&self, op: &Value) -> String {
        let Some(body) = op.get("requestBody") else { return String::new() };
        let body = self.resolve(body);
        let mut out = String::from("<h4>Request body</h4>");
        let required = body.get("required").and_then(Value::as_bool) == Some(true);
        if let Some(description) = body.get("description").and_then(Value::as_str) {
            out.push_str(&blocks(description));
        }
        if let Some(content) = body.get("content").and_then(Value::as_object) {
            for (media, media_type) in content {
                let schema = media_type.get("schema").cloned().unwrap_or(Value::Null);
                let _ = write!(
                    out,
                    "<p><code>{}</code>{}: {}</p>",
                    escape(media),
                    if required { " <span class=\"req\">required</span>" } else { " (optional)" },
                    self.type_html(&schema)
                );
                if schema.get("$ref").is_some() {
                    out.push_str(&self.schema_html(self.resolve(&schema), 1));
                }
            }
        }
        out
    }

    fn responses_html(&self, op: &Value) -> String {
        let Some(responses) = op.get("responses").and_then(Value::as_object) else { return String::new() };
        let mut out = String::from("<h4>Responses</h4><table><tr><th>status</th><th>description</th><th>body</th></tr>");
        for (status, response) in responses {
            let response = self.resolve(response);
            let description = response.get("description").and_then(Value::as_str).unwrap_or_default();
            let mut body = Vec::new();
            if let Some(content) = response.get("content").and_then(Value::as_object) {
                for (media, media_type) in content {
                    let schema = media_type.get("schema").map(|s| self.type_html(s)).unwrap_or_default();
                    body.push(format!("<code>{}</code> {schema}", escape(media)));
                }
            }
            let mut headers = String::new();
            if let Some(hs) = response.get("headers").and_then(Value::as_object) {
                let names: Vec<String> =
                    hs.keys().filter(|k| *k != "x-request-id").map(|k| format!("<code>{}</code>", escape(k))).collect();
                if !names.is_empty() {
                    let _ = write!(headers, "<div class=\"muted\">headers: {}</div>", names.join(", "));
                }
            }
            let body = if body.is_empty() { "<span class=\"muted\">none</span>".to_string() } else { body.join("<br>") };
            let _ =
                write!(out, "<tr><td><code>{}</code></td><td>{}{headers}</td><td>{body}</td></tr>", escape(status), blocks(description));
        }
        out.push_str("</table>");
        out
    }

    fn operation_html(&self, path: &str, method: &str, op: &Value) -> String {
        let text = |key: &str| op.get(key).and_then(Value::as_str).unwrap_or_default();
        let id = text("operationId");
        let mut out = String::new();
        let _ = write!(
            out,
            "<section class=\"op\" id=\"{}\"><h3><span class=\"method {m}\">{M}</span><code>{}</code>{}</h3>",
            escape(&anchor("op", id)),
            escape(path),
            if op.get("deprecated").and_then(Value::as_bool) == Some(true) { "<span class=\"deprecated\">deprecated</span>" } else { "" },
            m = escape(method),
            M = escape(&method.to_uppercase()),
        );
        let _ = write!(out, "<p class=\"summary\">{}</p>", escape(text("summary")));
        out.push_str(&blocks(text("description")));
        let security = op.get("security").or_else(|| self.doc.get("security"));
        let schemes: Vec<String> = security
            .and_then(Value::as_array)
            .map(|reqs| reqs.iter().filter_map(Value::as_object).flat_map(|r| r.keys().map(|k| escape(k))).collect())
            .unwrap_or_default();
        let auth = if schemes.is_empty() {
            "none".to_string()
        } else {
            schemes.iter().map(|s| format!("<a href=\"#auth\">{s}</a>")).collect::<Vec<_>>().join(", ")
        };
        let _ = write!(out, "<p class=\"muted\">Operation <code>{}</code> · authentication: {auth}</p>", escape(id));
        out.push_str(&self.parameters_html(op));
        out.push_str(&self.body_html(op));
        out.push_str(&self.responses_html(op));
        out.push_str("</section>");
        out
    }

    fn page(&self) -> String {
        let doc = self.doc;
        let info = doc.get("info").cloned().unwrap_or(Value::Null);
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        let title = text(&info, "title");
        let version = text(&info, "version");

        // Operations grouped by their first tag, in the order of the document's tags.
        const METHODS: [&str; 8] = ["get", "put", "post", "patch", "delete", "options", "head", "trace"];
        let mut tag_order: Vec<(String, String)> = doc
            .get("tags")
            .and_then(Value::as_array)
            .map(|tags| tags.iter().map(|t| (text(t, "name"), text(t, "description"))).collect())
            .unwrap_or_default();
        let mut grouped: BTreeMap<String, Vec<(&str, &str, &Value)>> = BTreeMap::new();
        if let Some(paths) = doc.get("paths").and_then(Value::as_object) {
            for (path, item) in paths {
                for method in METHODS {
                    if let Some(op) = item.get(method) {
                        let tag = op.get("tags").and_then(|t| t.get(0)).and_then(Value::as_str).unwrap_or("Other").to_string();
                        if !tag_order.iter().any(|(name, _)| *name == tag) {
                            tag_order.push((tag.clone(), String::new()));
                        }
                        grouped.entry(tag).or_default().push((path.as_str(), method, op));
                    }
                }
            }
        }
        let schemas = doc.pointer("/components/schemas").and_then(Value::as_object);

        let mut nav = String::from(
            "<nav><strong>Contents</strong><ul><li><a href=\"#overview\">Overview</a></li><li><a href=\"#auth\">Authentication</a></li>",
        );
        for (tag, _) in &tag_order {
            let Some(ops) = grouped.get(tag) else { continue };
            let _ = write!(nav, "<li><a href=\"#{}\">{}</a><ul>", escape(&anchor("tag", tag)), escape(tag));
            for (path, method, op) in ops {
                let id = op.get("operationId").and_then(Value::as_str).unwrap_or_default();
                let summary = op.get("summary").and_then(Value::as_str).unwrap_or(path);
                let _ = write!(
                    nav,
                    "<li><a href=\"#{}\"><span class=\"muted\">{}</span> {}</a></li>",
                    escape(&anchor("op", id)),
                    escape(&method.to_uppercase()),
                    escape(summary)
                );
            }
            nav.push_str("</ul></li>");
        }
        if let Some(schemas) = schemas {
            nav.push_str("<li><a href=\"#schemas\">Schemas</a><ul>");
            for name in schemas.keys() {
                let _ = write!(nav, "<li><a href=\"#{}\">{}</a></li>", escape(&anchor("schema", name)), escape(name));
            }
            nav.push_str("</ul></li>");
        }
        nav.push_str("</ul></nav>");

        let mut body = String::new();
        let _ = write!(body, "<section id=\"overview\"><h2>Overview</h2>{}", blocks(&text(&info, "description")));
        let _ = write!(
            body,
            "<p class=\"muted\">OpenAPI {} · the machine-readable document is at <a href=\"openapi.json\">openapi.json</a>.</p></section>",
            escape(&text(doc, "openapi"))
        );
        body.push_str("<section id=\"auth\"><h2>Authentication</h2>");
        if let Some(schemes) = doc.pointer("/components/securitySchemes").and_then(Value::as_object) {
            for (name, scheme) in schemes {
                let _ = write!(
                    body,
                    "<p><strong>{}</strong>: {} in {} <code>{}</code>.</p>{}",
                    escape(name),
                    escape(&text(scheme, "type")),
                    escape(&text(scheme, "in")),
                    escape(&text(scheme, "name")),
                    blocks(&text(scheme, "description"))
                );
            }
        }
        body.push_str("</section>");
        for (tag, description) in &tag_order {
            let Some(ops) = grouped.get(tag) else { continue };
            let _ = write!(body, "<section id=\"{}\"><h2>{}</h2>{}", escape(&anchor("tag", tag)), escape(tag), blocks(description));
            for (path, method, op) in ops {
                body.push_str(&self.operation_html(path, method, op));
            }
            body.push_str("</section>");
        }
        if let Some(responses) = doc.pointer("/components/responses").and_then(Value::as_object) {
            body.push_str("<section id=\"errors\"><h2>Error responses</h2><table><tr><th>name</th><th>description</th><th>body</th></tr>");
            for (name, response) in responses {
                let schema = response.pointer("/content/application~1json/schema").map(|s| self.type_html(s)).unwrap_or_default();
                let _ = write!(
                    body,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{schema}</td></tr>",
                    escape(name),
                    blocks(&text(response, "description"))
                );
            }
            body.push_str("</table></section>");
        }
        if let Some(schemas) = schemas {
            body.push_str("<section id=\"schemas\"><h2>Schemas</h2>");
            for (name, schema) in schemas {
                let _ = write!(
                    body,
                    "<section class=\"schema\" id=\"{}\"><h3>{}</h3>{}</section>",
                    escape(&anchor("schema", name)),
                    escape(name),
                    self.schema_html(schema, 0)
                );
            }
            body.push_str("</section>");
        }

        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{t} API reference</title><style>{STYLE}</style></head>\n<body><header><h1>{t} API reference</h1><p>Version {v}{s}</p></header>\
             <main>{nav}<article>{body}</article></main></body></html>\n",
            t = escape(&title),
            v = escape(&version),
            s = info.get("summary").and_then(Value::as_str).map(|s| format!(" · {}", escape(s))).unwrap_or_default(),
        )
    }
}

/// The document as a self-contained HTML page (no scripts, external styles or fonts).
pub fn reference_page(doc: &Value) -> String {
    Renderer { doc }.page()
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use super::*;

    // ---- a small reader of `router()` in lib.rs ----

    /// `text` without `//` comments (string literals are respected).
    fn strip_comments(text: &str) -> String {
        let mut out = String::new();
        for line in text.lines() {
            let mut in_string = false;
            let mut escaped = false;
            let mut cut = line.len();
            let bytes = line.as_bytes();
            for (i, &b) in bytes.iter().enumerate() {
                if in_string {
                    match (escaped, b) {
                        (true, _) => escaped = false,
                        (false, b'\\') => escaped = true,
                        (false, b'"') => in_string = false,
                        _ => {}
                    }
                } else if b == b'"' {
                    in_string = true;
                } else if b == b'/' && bytes.get(i + 1) == Some(&b'/') {
                    cut = i;
                    break;
                }
            }
            out.push_str(&line[..cut]);
            out.push('\n');
        }
        out
    }

    /// The string literal at the start of `text` (after whitespace) and the rest.
    fn string_literal(text: &str) -> (String, &str) {
        let text = text.trim_start();
        assert!(text.starts_with('"'), "expected a string literal at: {}", &text[..text.len().min(60)]);
        let mut value = String::new();
        let mut chars = text.char_indices().skip(1);
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    let (_, next) = chars.next().expect("escape at the end of a literal");
                    match next {
                        'n' => value.push('\n'),
                        't' => value.push('\t'),
                        other => value.push(other),
                    }
                }
                '"' => return (value, &text[i + 1..]),
                c => value.push(c),
            }
        }
        panic!("unterminated string literal");
    }

    /// The position of the first `stop` outside string literals and brackets, if any.
    fn top_level(text: &str, stop: char) -> Option<usize> {
        let mut depth = 0usize;
        let mut in_string = false;
        let mut escaped = false;
        for (i, c) in text.char_indices() {
            if in_string {
                match (escaped, c) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match c {
                '"' => in_string = true,
                c if c == stop && depth == 0 => return Some(i),
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ => {}
            }
        }
        None
    }

    /// The text up to the `)` that closes an already opened `(`, and after it.
    fn balanced(text: &str) -> (&str, &str) {
        let i = top_level(text, ')').expect("unbalanced parentheses");
        (&text[..i], &text[i + 1..])
    }

    /// The text before the first top-level comma, and after it.
    fn split_first_arg(text: &str) -> (&str, &str) {
        let i = top_level(text, ',').unwrap_or_else(|| panic!("expected two arguments in `{text}`"));
        (&text[..i], &text[i + 1..])
    }

    fn is_ident(c: char) -> bool {
        c.is_ascii_alphanumeric() || c == '_'
    }

    /// `format!` of a literal with `{CONST}` captures and `{{`/`}}` escapes only.
    fn expand_format(template: &str, consts: &HashMap<String, String>) -> String {
        let mut out = String::new();
        let mut chars = template.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    out.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    out.push('}');
                }
                '{' => {
                    let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    assert!(name.chars().all(is_ident), "unsupported format argument {{{name}}}");
                    out.push_str(consts.get(&name).unwrap_or_else(|| panic!("unknown constant {name} in a route path")));
                }
                c => out.push(c),
            }
        }
        out
    }

    fn eval_path(expr: &str, consts: &HashMap<String, String>) -> String {
        let expr = expr.trim();
        if expr.starts_with('"') {
            let (value, rest) = string_literal(expr);
            assert!(rest.trim().is_empty(), "unsupported path expression `{expr}`");
            return value;
        }
        if let Some(inner) = expr.strip_prefix("&format!(").or_else(|| expr.strip_prefix("format!(")) {
            let (args, rest) = balanced(inner);
            assert!(rest.trim().is_empty(), "unsupported path expression `{expr}`");
            let (template, rest) = string_literal(args);
            assert!(rest.trim().trim_end_matches(',').is_empty(), "format! with positional arguments is not supported: `{expr}`");
            return expand_format(&template, consts);
        }
        if expr.chars().all(is_ident) {
            return consts.get(expr).unwrap_or_else(|| panic!("unknown constant {expr}")).clone();
        }
        panic!("unsupported path expression `{expr}`: teach openapi.rs's test to read it");
    }

    /// The routing functions named in a method router expression such as `get(a).post(b)`.
    fn methods_of(expr: &str) -> Vec<Method> {
        let mut methods = Vec::new();
        let mut rest = expr;
        while let Some(open) = rest.find('(') {
            let before = &rest[..open];
            let name: String = before.chars().rev().take_while(|&c| is_ident(c)).collect::<Vec<_>>().into_iter().rev().collect();
            let method = match name.as_str() {
                "get" => Some(Method::Get),
                "post" => Some(Method::Post),
                "put" => Some(Method::Put),
                "patch" => Some(Method::Patch),
                "delete" => Some(Method::Delete),
                "any" | "on" | "head" | "options" | "trace" | "connect" | "get_service" | "post_service" | "on_service" => {
                    panic!("routing function `{name}` is not supported by openapi.rs's test")
                }
                _ => None,
            };
            methods.extend(method);
            // Skip the arguments: handler expressions are not routing functions.
            let (_, after) = balanced(&rest[open + 1..]);
            rest = after;
        }
        assert!(!methods.is_empty(), "no method in `{expr}`");
        methods
    }

    /// (METHOD, path) of every `.route(...)` in `source`.
    fn router_routes(source: &str) -> BTreeSet<(Method, String)> {
        let code = strip_comments(source);
        for unsupported in [".nest(", ".merge(", ".route_service(", ".nest_service("] {
            assert!(!code.contains(unsupported), "`{unsupported}` in lib.rs is not supported by openapi.rs's test");
        }
        let mut consts = HashMap::new();
        for part in code.split("const ").skip(1) {
            let Some((name, rest)) = part.split_once(':') else { continue };
            let name = name.trim();
            let Some((ty, value)) = rest.split_once('=') else { continue };
            if name.chars().all(is_ident) && ty.trim() == "&str" {
                consts.insert(name.to_string(), string_literal(value).0);
            }
        }
        let mut routes = BTreeSet::new();
        for part in code.split(".route(").skip(1) {
            let (args, _) = balanced(part);
            let (path, methods) = split_first_arg(args);
            let path = eval_path(path, &consts);
            for method in methods_of(methods) {
                assert!(routes.insert((method, path.clone())), "{method:?} {path} is routed twice");
            }
        }
        routes
    }

    /// A path template with its parameter names erased: `/a/{}/b`.
    fn shape(path: &str) -> String {
        path.split('/').map(|seg| if seg.starts_with('{') && seg.ends_with('}') { "{}" } else { seg }).collect::<Vec<_>>().join("/")
    }

    fn documented(doc: &Value) -> BTreeSet<(Method, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (key, _) in item.as_object().unwrap() {
                let method = [Method::Get, Method::Put, Method::Post, Method::Patch, Method::Delete]
                    .into_iter()
                    .find(|m| m.key() == key)
                    .unwrap_or_else(|| panic!("unexpected key {key} under {path}"));
                out.insert((method, path.clone()));
            }
        }
        out
    }

    #[test]
    fn every_route_of_the_router_is_documented() {
        let routed: BTreeSet<(Method, String)> = router_routes(include_str!("lib.rs")).into_iter().map(|(m, p)| (m, shape(&p))).collect();
        assert!(routed.len() >= 30, "the reader of lib.rs found only {} routes", routed.len());
        let doc = document();
        let documented: BTreeSet<(Method, String)> = documented(&doc).into_iter().map(|(m, p)| (m, shape(&p))).collect();
        let missing: Vec<_> = routed.difference(&documented).collect();
        let extra: Vec<_> = documented.difference(&routed).collect();
        assert!(missing.is_empty() && extra.is_empty(), "routed but not documented: {missing:?}\ndocumented but not routed: {extra:?}");
    }

    #[test]
    fn the_reader_of_lib_rs_understands_its_forms() {
        let source = r#"
            const A: &str = "/x/{p}";
            // .route("/commented", get(h))
            Router::new()
                .route(A, get(m::get).post(m::post))
                .route(&format!("{A}/{{id}}"), axum::routing::patch(h).delete(m::delete))
                .route("/plain", put(handler_with_get_in_name))
        "#;
        let routes: Vec<_> = router_routes(source).into_iter().collect();
        assert_eq!(
            routes,
            vec![
                (Method::Get, "/x/{p}".to_string()),
                (Method::Put, "/plain".to_string()),
                (Method::Post, "/x/{p}".to_string()),
                (Method::Patch, "/x/{p}/{id}".to_string()),
                (Method::Delete, "/x/{p}/{id}".to_string()),
            ]
        );
    }

    #[test]
    fn operations_are_complete() {
        let doc = document();
        let mut ids = BTreeSet::new();
        let tags: BTreeSet<&str> = TAGS.iter().map(|(name, _)| *name).collect();
        let mut shapes = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            assert!(shapes.insert(shape(path)), "two documented paths differ only in parameter names: {path}");
            for (method, op) in item.as_object().unwrap() {
                let id = op["operationId"].as_str().unwrap_or_else(|| panic!("{method} {path} has no operationId"));
                assert!(!id.is_empty() && ids.insert(id.to_string()), "operationId {id} is empty or repeated");
                let responses = op["responses"].as_object().unwrap();
                assert!(responses.keys().any(|s| s.starts_with('2')), "{method} {path} has no 2xx response");
                assert!(!op["summary"].as_str().unwrap_or_default().is_empty(), "{method} {path} has no summary");
                for tag in op["tags"].as_array().unwrap() {
                    assert!(tags.contains(tag.as_str().unwrap()), "{method} {path}: unknown tag {tag}");
                }
                // Every template name is declared once as a path parameter, and nothing else is.
                let declared: Vec<String> = op["parameters"]
                    .as_array()
                    .map(|ps| {
                        ps.iter()
                            .map(|p| {
                                let p = p.get("$ref").and_then(Value::as_str).map(|r| doc.pointer(&r[1..]).unwrap()).unwrap_or(p);
                                (p["in"].as_str().unwrap().to_string(), p["name"].as_str().unwrap().to_string())
                            })
                            .filter(|(location, _)| location == "path")
                            .map(|(_, name)| name)
                            .collect()
                    })
                    .unwrap_or_default();
                assert_eq!(declared, template_names(path), "{method} {path}: path parameters");
                let authenticated = op.get("security") != Some(&json!([]));
                if authenticated {
                    assert!(responses.contains_key("401"), "{method} {path}: authenticated without 401");
                }
            }
        }
        for status in ["400", "401", "403", "404", "409", "500", "503"] {
            assert!(
                doc["paths"]
                    .as_object()
                    .unwrap()
                    .values()
                    .flat_map(|i| i.as_object().unwrap().values())
                    .any(|op| op["responses"].get(status).is_some()),
                "no operation documents {status}"
            );
        }
        assert!(doc.pointer("/components/responses/MethodNotAllowed").is_some());
    }

    /// Every `$ref` of the document points at something.
    #[test]
    fn references_resolve() {
        fn walk(value: &Value, doc: &Value, seen: &mut usize) {
            match value {
                Value::Object(map) => {
                    if let Some(reference) = map.get("$ref").and_then(Value::as_str) {
                        let pointer = reference.strip_prefix('#').unwrap_or_else(|| panic!("non-local $ref {reference}"));
                        assert!(doc.pointer(pointer).is_some(), "dangling $ref {reference}");
                        *seen += 1;
                    }
                    map.values().for_each(|v| walk(v, doc, seen));
                }
                Value::Array(items) => items.iter().for_each(|v| walk(v, doc, seen)),
                _ => {}
            }
        }
        let doc = document();
        let mut seen = 0;
        walk(&doc, &doc, &mut seen);
        assert!(seen > 50);
    }

    #[test]
    fn limits_and_enums_come_from_core() {
        let doc = document();
        let schemas = &doc["components"]["schemas"];
        let names: Vec<&str> = Protocol::names().collect();
        assert_eq!(schemas["ProtocolV2"]["enum"], json!(names));
        assert!(!names.contains(&"any"));
        assert_eq!(schemas["Protocol"]["enum"][0], "any");
        assert_eq!(schemas["Protocol"]["enum"].as_array().unwrap().len(), names.len() + 1);
        assert_eq!(schemas["SecurityGroupRuleInputV2"]["properties"]["description"]["maxLength"], MAX_DESCRIPTION);
        for schema in ["CreateSecurityGroupV2", "UpdateSecurityGroupV2", "LegacySecurityGroupInput"] {
            assert_eq!(schemas[schema]["properties"]["description"]["maxLength"], MAX_DESCRIPTION, "{schema}");
        }
        assert_eq!(
            doc["components"]["responses"]["PayloadTooLarge"]["content"]["application/json"]["example"]["exception_class"],
            "RequestEntityTooLarge"
        );
        assert_eq!(schemas["CreateSecurityGroupV2"]["properties"]["rules"]["maxItems"], MAX_RULES);
        assert_eq!(schemas["LegacyUpdateSecurityGroup"]["properties"]["changed_rules"]["maxItems"], MAX_CHANGED_RULES);
        assert_eq!(schemas["TagKey"]["maxLength"], MAX_TAG_LEN);
        assert_eq!(schemas["TagValue"]["maxLength"], MAX_TAG_LEN);
        for name in ["my_security_group", "a b.c-d_", "A1."] {
            assert!(palisade_core::input::is_valid_name(name), "{name}");
        }
        assert_eq!(doc["components"]["securitySchemes"]["APIKey"]["name"], "Authorization");
    }

    #[test]
    fn the_page_is_self_contained_and_escaped() {
        let page = reference_page(&document());
        for route in ROUTES {
            assert!(page.contains(&format!("id=\"op-{}\"", route.operation_id)), "{} missing from the page", route.operation_id);
        }
        assert!(page.contains("id=\"schema-SecurityGroup\""));
        let lower = page.to_lowercase();
        for forbidden in ["<script", "<link", "src=", "@import", "url(", "http://", "https://"] {
            assert!(!lower.contains(forbidden), "the page contains {forbidden}");
        }

        let hostile = json!({
            "openapi": "3.1.0",
            "info": {"title": "<T&'\">", "version": "1"},
            "tags": [{"name": "x<y"}],
            "paths": {"/a/<b>": {"get": {"operationId": "o\"><script>", "summary": "<script>alert(1)</script>", "tags": ["x<y"],
                "description": "`<i>` and <b>", "responses": {"200": {"description": "<ok>"}}}}},
            "components": {"schemas": {"<Schema1>": {"type": "object", "properties": {"<prop1>": {"type": "string", "description": "<desc1>", "enum": ["<enum1>"]}}}}},
        });
        let page = reference_page(&hostile);
        assert!(!page.contains("<script"), "unescaped script in {page}");
        for raw in ["<T&", "<i>", "<b>", "<ok>", "<Schema1>", "<prop1>", "<desc1>", "<enum1>", "/a/<b>", "x<y"] {
            assert!(!page.contains(raw), "{raw} was not escaped");
        }
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("<code>&lt;i&gt;</code>"));
    }
}
