//! Security groups: v2 create and update (tasks), v1 list/get/delete/copy/revert, the legacy v1
//! create and update, the group's instances and its legacy metadata endpoints.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palisade_core::error::FieldErrors;
use palisade_core::group::Group;
use palisade_core::input::{self, CreateGroup, LegacyCreateGroup, LegacyUpdateGroup, UpdateGroup};
use palisade_core::{Tag, TagPatch};
use palisade_service::audit::{self, Action, Change};
use palisade_service::now_ms;
use palisade_service::ops::{self, NewGroup, OpError};
use palisade_service::payload::TaskPayload;
use palisade_service::queue::{enqueue, new_task};
use palisade_store::GroupFilter;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::dto::{GroupOut, Page, TagOut, TaskIds};
use crate::error::{ApiError, Result};
use crate::extract::{GroupPath, JsonBody, Query, ScopePath};
use crate::state::AppState;
use crate::tasks::queue_one;

type SharedState = State<Arc<AppState>>;

pub fn group_json(state: &AppState, group: &Group) -> Response {
    let region = state.region_name(group.scope.region_id).unwrap_or_default();
    Json(GroupOut::new(group, region)).into_response()
}

/// A task's `data`: the fields of the request body that the schema defines (unknown ones are
/// never stored), with `extra` fields merged in.
fn task_data(body: &Value, extra: &[(&str, Value)]) -> Value {
    let mut data = input::known_fields(body, input::GROUP_FIELDS);
    for (key, value) in extra {
        data.insert((*key).to_string(), value.clone());
    }
    Value::Object(data)
}

/// The `rules` of a v2 body for the task's payload, each with only the schema's fields.
fn known_rules(body: &Value) -> Option<Vec<Value>> {
    body.get("rules").and_then(Value::as_array).map(|rules| rules.iter().map(input::known_rule_fields).collect())
}

/// #1 `POST /cloud/v2/security_groups/{p}/{r}`: validate, store a task, answer with its id.
#[utoipa::path(
    post,
    path = "/cloud/v2/security_groups/{project_id}/{region_id}",
    operation_id = "createSecurityGroup",
    tag = "Security groups",
    summary = "Create security group",
    description = "Validates the body (400 on any schema error) and queues one `create_security_group` task. The group becomes visible when the task is `FINISHED`; the task's `created_resources.security_groups` then holds its id and `created_resources.security_group_rules` the ids of its rules.\n\nRules depend on `rules`:\n- omitted: the default template is applied (allow all egress, IPv4 and IPv6);\n- `[]`: no rules are created;\n- otherwise exactly the given rules are created (identical rules once).\n\nSemantic rule errors (port range without a port protocol, `port_range_min` > `port_range_max`, a `remote_ip_prefix` of the other ethertype, an unknown `remote_group_id`) and exceeded quotas end the task in `ERROR` with the reason in `error`.",
    params(crate::schema::ScopePath),
    request_body = crate::schema::CreateSecurityGroupV2,
    responses((status = 200, description = "One `create_security_group` task", body = crate::dto::TaskIds), crate::openapi::ValidationError, crate::openapi::NotFound)
)]
pub async fn create_v2(
    State(state): SharedState,
    ScopePath { caller, scope }: ScopePath,
    JsonBody(body): JsonBody,
) -> Result<Json<TaskIds>> {
    let input = CreateGroup::parse(&body)?;
    let group_id = Uuid::new_v4();
    let payload = TaskPayload::CreateGroup {
        group_id,
        name: input.name,
        description: input.description,
        rules: known_rules(&body),
        tags: input.tags,
    };
    let task = new_task(&crate::audit::actor(&caller), &scope, &payload, task_data(&body, &[("security_group_id", json!(group_id))]));
    queue_one(&state, task, |_| Ok(())).await
}

/// #2 `PATCH /cloud/v2/security_groups/{p}/{r}/{id}`: tags now, everything else in a task, and
/// no task at all when nothing but tags would change.
#[utoipa::path(
    patch,
    path = "/cloud/v2/security_groups/{project_id}/{region_id}/{group_id}",
    operation_id = "updateSecurityGroup",
    tag = "Security groups",
    summary = "Update security group",
    description = "`tags` is a JSON merge patch applied immediately. `name`, `description` and `rules` are applied by one `update_security_group` task; `rules` is the desired final rule set: rules of the group that are not in it are deleted, new ones are created, matching ones keep their ids.\n\nWhen nothing but tags would change, no task is created and the answer is `{\"tasks\": []}`. An empty body is an empty update.",
    params(crate::schema::ScopePath, crate::schema::GroupIdPath),
    request_body(content = Option<crate::schema::UpdateSecurityGroupV2>, description = "Optional: an empty body (no bytes) is accepted; the JSON `null` is not."),
    responses((status = 200, description = "One `update_security_group` task, or none when only tags (or nothing) changed", body = crate::dto::TaskIds), crate::openapi::ValidationError, crate::openapi::NotFound)
)]
pub async fn update_v2(
    State(state): SharedState,
    GroupPath { caller, scope, id }: GroupPath,
    JsonBody(body): JsonBody,
) -> Result<Json<TaskIds>> {
    let input = UpdateGroup::parse(&body)?;
    let raw_rules = known_rules(&body);
    let data = task_data(&body, &[("security_group_id", json!(id))]);
    let actor = crate::audit::actor(&caller);
    let open_limit = state.config.max_tasks_per_client;
    let tasks = state
        .write(move |tx| {
            let group = ops::load_group(tx, &scope, id)?;
            if let Some(patch) = &input.tags {
                // Tags change at once, so they are an event of this request; the rest is the task's.
                let tagged = ops::patch_tags(tx, &scope, id, patch, now_ms())?;
                let change = Change::new(Action::GroupMetadata, &scope, id).summary(audit::group_changes(&group, &tagged));
                audit::record(tx, &actor, change)?;
            }
            let changes =
                ops::update_changes_something(&group, input.name.as_deref(), input.description.as_deref(), input.rules.as_deref());
            if !changes {
                return Ok(Vec::new());
            }
            let payload = TaskPayload::UpdateGroup { group_id: id, name: input.name, description: input.description, rules: raw_rules };
            let task = new_task(&actor, &scope, &payload, data);
            Ok(vec![enqueue(tx, &task, open_limit)?])
        })
        .await?;
    state.hand_over(scope.client_id, &tasks).await;
    Ok(Json(TaskIds { tasks }))
}

/// Parses `tag_key_value`-style JSON object filters.
fn tag_pairs(text: &str, field: &str, errors: &mut FieldErrors) -> Vec<(String, String)> {
    match serde_json::from_str::<Map<String, Value>>(text) {
        Ok(obj) => obj
            .into_iter()
            .filter_map(|(k, v)| match v {
                Value::String(s) => Some((k, s)),
                _ => {
                    errors.add(field, format!("The value of tag {k} should be a string"));
                    None
                }
            })
            .collect(),
        Err(_) => {
            errors.add(field, "Should be a JSON object of tag keys and values, such as {\"key\": \"value\"}");
            Vec::new()
        }
    }
}

/// #3 `GET /cloud/v1/securitygroups/{p}/{r}`.
#[utoipa::path(
    get,
    path = "/cloud/v1/securitygroups/{project_id}/{region_id}",
    operation_id = "listSecurityGroups",
    tag = "Security groups",
    summary = "List security groups",
    description = "The groups of the project and region in creation order. Page with `offset` until `offset + len(results) >= count`. Every filter narrows the result: a group must have the exact `name`, every `tag_key` and every pair of `tag_key_value`.",
    params(crate::schema::ScopePath, crate::schema::PageQuery, crate::schema::ListGroupsQuery),
    responses((status = 200, description = "A page of groups, each with all of its rules", body = crate::schema::SecurityGroupCollection), crate::openapi::ValidationError, crate::openapi::NotFound, crate::openapi::GatewayTimeout)
)]
pub async fn list(State(state): SharedState, ScopePath { scope, .. }: ScopePath, query: Query) -> Result<Response> {
    let mut errors = FieldErrors::new();
    let (limit, offset) = query.page(&mut errors);
    let mut filter = GroupFilter { name: query.last("name").map(str::to_owned), limit, offset, ..GroupFilter::default() };
    filter.tag_keys = query.all("tag_key").chain(query.all("metadata_k")).map(str::to_owned).collect();
    for field in ["tag_key_value", "metadata_kv"] {
        if let Some(text) = query.last(field) {
            filter.tag_pairs.extend(tag_pairs(text, field, &mut errors));
        }
    }
    if !errors.is_empty() {
        return Err(errors.into());
    }
    if limit > INLINE_PAGE {
        // Up to 1,000 groups of hundreds of rules each (tens of megabytes): read, built and
        // serialised on the bounded pool, within the request deadline (`crate::pool`).
        let region = state.region_name(scope.region_id).unwrap_or_default();
        let bytes = state
            .read_heavy(move |tx, deadline| {
                let (count, groups) = tx.list_groups(&scope, &filter)?;
                let mut results = Vec::with_capacity(groups.len());
                for (n, group) in groups.iter().enumerate() {
                    deadline.check_every(n, 16)?;
                    results.push(GroupOut::new(group, region.clone()));
                }
                deadline.check()?;
                crate::pool::to_json(&Page { count, results })
            })
            .await?;
        return Ok(crate::pool::json_bytes(bytes));
    }
    let (count, groups) = state.read(move |tx| Ok(tx.list_groups(&scope, &filter)?)).await?;
    let region = state.region_name(scope.region_id).unwrap_or_default();
    let results = groups.iter().map(|g| GroupOut::new(g, region.clone())).collect();
    Ok(Json(Page { count, results }).into_response())
}

/// Pages of at most this many groups (the default `limit`) are read on the request's thread, as
/// a GET of one group is; bigger ones go to the bounded pool.
const INLINE_PAGE: u32 = 10;

/// #4 `GET /cloud/v1/securitygroups/{p}/{r}/{id}`.
#[utoipa::path(
    get,
    path = "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}",
    operation_id = "getSecurityGroup",
    tag = "Security groups",
    summary = "Get security group",
    description = "404 when the group does not exist (clients treat this as \"deleted\").",
    params(crate::schema::ScopePath, crate::schema::GroupIdPath),
    responses((status = 200, description = "The group with all of its rules", body = crate::dto::GroupOut), crate::openapi::NotFound)
)]
pub async fn get(State(state): SharedState, GroupPath { scope, id, .. }: GroupPath) -> Result<Response> {
    let group = state.read(move |tx| Ok(ops::load_group(tx, &scope, id)?)).await?;
    Ok(group_json(&state, &group))
}

/// #5 `DELETE /cloud/v1/securitygroups/{p}/{r}/{id}`.
#[utoipa::path(
    delete,
    path = "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}",
    operation_id = "deleteSecurityGroup",
    tag = "Security groups",
    summary = "Delete security group",
    description = "Synchronous. Deletes the group and its rules; rules of other groups whose `remote_group_id` is this group are deleted too (as Neutron does).",
    params(crate::schema::ScopePath, crate::schema::GroupIdPath),
    responses((status = 204, description = "Deleted"), crate::openapi::NotFound)
)]
pub async fn delete(State(state): SharedState, GroupPath { caller, scope, id }: GroupPath) -> Result<StatusCode> {
    let actor = crate::audit::actor(&caller);
    state
        .write(move |tx| {
            // The event names the group by its id; reading the whole group for its name and rule
            // ids would double what a delete costs.
            ops::delete_group(tx, &scope, id, now_ms())?;
            Ok(audit::record(tx, &actor, Change::new(Action::GroupDelete, &scope, id))?)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// #6 `POST .../{id}/copy` with `{"name": ...}`.
#[utoipa::path(
    post,
    path = "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/copy",
    operation_id = "copySecurityGroup",
    tag = "Security groups",
    summary = "Copy security group",
    description = "Synchronous. A new group with the given name, the same description, a copy of every rule (new ids; a rule that refers to the group itself refers to the copy) and the user tags (read-only tags are not copied). 409 when the copy would exceed a quota.",
    params(crate::schema::ScopePath, crate::schema::GroupIdPath),
    request_body = crate::schema::CopySecurityGroup,
    responses((status = 200, description = "The new group", body = crate::dto::GroupOut), crate::openapi::ValidationError, crate::openapi::NotFound, crate::openapi::Conflict)
)]
pub async fn copy(State(state): SharedState, GroupPath { caller, scope, id }: GroupPath, JsonBody(body): JsonBody) -> Result<Response> {
    let obj = input::object(&body, "")?;
    let mut errors = FieldErrors::new();
    let name = match obj.get("name") {
        None => {
            errors.add("name", "Field required");
            None
        }
        Some(value) => input::parse_name(value, "name", &mut errors),
    };
    let name = errors.into_result(name)?.unwrap_or_default();
    let settings = state.settings.clone();
    let actor = crate::audit::actor(&caller);
    let group = state
        .write(move |tx| {
            let copy = ops::copy_group(tx, &scope, id, &name, &settings, now_ms())?;
            let mut summary = audit::group_created(&copy);
            summary["source_id"] = json!(id);
            audit::record(tx, &actor, Change::new(Action::GroupCopy, &scope, copy.id).summary(summary))?;
            Ok(copy)
        })
        .await?;
    Ok(group_json(&state, &group))
}

/// #7 `POST .../{id}/revert`: the default template replaces every rule.
#[utoipa::path(
    post,
    path = "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/revert",
    operation_id = "revertSecurityGroup",
    tag = "Security groups",
    summary = "Revert security group",
    description = "Synchronous. Replaces every rule of the group with the default template (allow all egress, IPv4 and IPv6, new rule ids); name, description and tags are kept. No body. 409 when the template would exceed the rule quota.",
    params(crate::schema::ScopePath, crate::schema::GroupIdPath),
    responses((status = 200, description = "The reverted group", body = crate::dto::GroupOut), crate::openapi::NotFound, crate::openapi::Conflict)
)]
pub async fn revert(State(state): SharedState, GroupPath { caller, scope, id }: GroupPath) -> Result<Response> {
    let settings = state.settings.clone();
    let actor = crate::audit::actor(&caller);
    let group = state
        .write(move |tx| {
            let before = ops::load_group_for_change(tx, &scope, id)?;
            let after = ops::revert_group(tx, &scope, id, &settings, now_ms())?;
            audit::record(tx, &actor, Change::new(Action::GroupRevert, &scope, id).summary(audit::group_changes(&before, &after)))?;
            Ok(after)
        })
        .await?;
    Ok(group_json(&state, &group))
}

/// #8 `POST /cloud/v1/securitygroups/{p}/{r}` (deprecated, synchronous).
#[utoipa::path(
    post,
    path = "/cloud/v1/securitygroups/{project_id}/{region_id}",
    operation_id = "createSecurityGroupLegacy",
    tag = "Security groups",
    summary = "Create security group (v1)",
    description = "Synchronous legacy create (gcorelabscloud-go, the old Terraform provider). Exactly the rules of `security_group.security_group_rules` are created (an absent list means no rules), identical rules once. Rule errors answer 400, an unknown `remote_group_id` 404, a quota that would be exceeded 409. Use `POST /cloud/v2/security_groups/{project_id}/{region_id}` instead.",
    params(crate::schema::ScopePath),
    request_body = crate::schema::LegacyCreateSecurityGroup,
    responses((status = 200, description = "The created group", body = crate::dto::GroupOut), crate::openapi::ValidationError, crate::openapi::NotFound, crate::openapi::Conflict)
)]
#[deprecated = "a legacy (v1) endpoint, kept for old clients"]
pub async fn create_v1(State(state): SharedState, ScopePath { caller, scope }: ScopePath, JsonBody(body): JsonBody) -> Result<Response> {
    let input = LegacyCreateGroup::parse(&body)?;
    let settings = state.settings.clone();
    let actor = crate::audit::actor(&caller);
    let group = state
        .write(move |tx| {
            let group = input.group;
            let new = NewGroup {
                id: Uuid::new_v4(),
                name: &group.name,
                description: &group.description,
                rules: group.rules.as_deref(),
                tags: &group.tags,
            };
            let created = ops::create_group(tx, &scope, new, &settings, now_ms())
                .map_err(|e| legacy_fields(e, "security_group.security_group_rules"))?;
            // `instances`: the new group is bound to every port of each (404 for one without ports).
            palisade_service::ports::bind_to_instances(tx, &scope, created.id, &input.instances)?;
            let mut summary = audit::group_created(&created);
            if !input.instances.is_empty() {
                summary["instances"] = json!(input.instances);
            }
            audit::record(tx, &actor, Change::new(Action::GroupCreate, &scope, created.id).summary(summary))?;
            Ok(created)
        })
        .await?;
    Ok(group_json(&state, &group))
}

/// The legacy create names its rule list `security_group.security_group_rules`, not `rules`.
fn legacy_fields(e: OpError, field: &str) -> OpError {
    match e {
        OpError::Rule(rule) => {
            let renamed = rule.field().strip_prefix("rules").map(|rest| format!("{field}{rest}"));
            match renamed {
                Some(name) => OpError::Rule(rename_field(rule, name)),
                None => OpError::Rule(rule),
            }
        }
        other => other,
    }
}

fn rename_field(rule: palisade_core::RuleError, field: String) -> palisade_core::RuleError {
    use palisade_core::RuleError::*;
    match rule {
        Invalid { message, .. } => Invalid { field, message },
        RemoteGroupNotFound { id, .. } => RemoteGroupNotFound { field, id },
        Duplicate { existing, .. } => Duplicate { field, existing },
    }
}

/// #9 `PATCH /cloud/v1/securitygroups/{p}/{r}/{id}` (deprecated, synchronous).
#[utoipa::path(
    patch,
    path = "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}",
    operation_id = "updateSecurityGroupLegacy",
    tag = "Security groups",
    summary = "Update security group (v1)",
    description = "Synchronous legacy update: `tags` (merge patch) and `name` first, then every item of `changed_rules` in order. Creating a rule that already exists, or growing past a quota, answers 409; deleting a rule that is not in this group answers 404. Use `PATCH /cloud/v2/security_groups/{project_id}/{region_id}/{group_id}` instead.",
    params(crate::schema::ScopePath, crate::schema::GroupIdPath),
    request_body(content = Option<crate::schema::LegacyUpdateSecurityGroup>, description = "Optional: an empty body (no bytes) is accepted; the JSON `null` is not."),
    responses((status = 200, description = "The updated group", body = crate::dto::GroupOut), crate::openapi::ValidationError, crate::openapi::NotFound, crate::openapi::Conflict)
)]
#[deprecated = "a legacy (v1) endpoint, kept for old clients"]
pub async fn update_v1(
    State(state): SharedState,
    GroupPath { caller, scope, id }: GroupPath,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let input = LegacyUpdateGroup::parse(&body)?;
    let settings = state.settings.clone();
    let actor = crate::audit::actor(&caller);
    let group = state
        .write(move |tx| {
            let before = ops::load_group_for_change(tx, &scope, id)?;
            let after = ops::legacy_update(tx, &scope, id, &input, &settings, now_ms())?;
            audit::record(tx, &actor, Change::new(Action::GroupUpdate, &scope, id).summary(audit::group_changes(&before, &after)))?;
            Ok(after)
        })
        .await?;
    Ok(group_json(&state, &group))
}

/// #21 `GET .../{id}/instances`: instances whose ports use the group.
#[utoipa::path(
    get,
    path = "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/instances",
    operation_id = "listSecurityGroupInstances",
    tag = "Security groups",
    summary = "List instances of security group",
    description = "The instances with at least one port bound to the group (ports are registered with `/palisade/v1/ports`), in the order their first port was registered; 404 when the group does not exist.",
    params(crate::schema::ScopePath, crate::schema::GroupIdPath),
    responses((status = 200, description = "Instances whose ports use the group", body = crate::schema::InstanceCollection), crate::openapi::NotFound)
)]
pub async fn instances(State(state): SharedState, GroupPath { scope, id, .. }: GroupPath) -> Result<Response> {
    crate::instances::using_group(&state, scope, id).await
}

/// #22 `GET .../{id}/metadata`: the group's tags as a collection.
#[utoipa::path(
    get,
    path = "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/metadata",
    operation_id = "listSecurityGroupMetadata",
    tag = "Security group metadata",
    summary = "List security group tags",
    description = "The group's tags (the same as its `tags_v2`), sorted by key.",
    params(crate::schema::ScopePath, crate::schema::GroupIdPath),
    responses((status = 200, description = "Every tag of the group", body = crate::schema::TagCollection), crate::openapi::NotFound)
)]
#[deprecated = "a legacy (v1) endpoint, kept for old clients"]
pub async fn metadata_list(State(state): SharedState, GroupPath { scope, id, .. }: GroupPath) -> Result<Response> {
    let group = state.read(move |tx| Ok(ops::load_group(tx, &scope, id)?)).await?;
    let results: Vec<TagOut> = group.tags.iter().map(TagOut::from).collect();
    Ok(Json(Page { count: results.len() as u64, results }).into_response())
}

fn metadata_body(body: &Value) -> Result<Vec<(String, String)>> {
    let mut errors = FieldErrors::new();
    let tags = input::parse_tags(body, "body", &mut errors);
    errors.into_result(tags).map_err(ApiError::from)
}

/// #22 `POST .../{id}/metadata`: adds or overwrites the given tags.
#[utoipa::path(
    post,
    path = "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/metadata",
    operation_id = "createSecurityGroupMetadata",
    tag = "Security group metadata",
    summary = "Create or update security group tags",
    description = "Adds the given tags and overwrites the values of existing keys; other tags are kept. Read-only tags never change.",
    params(crate::schema::ScopePath, crate::schema::GroupIdPath),
    request_body = crate::schema::CreateTags,
    responses((status = 204, description = "Tags set"), crate::openapi::ValidationError, crate::openapi::NotFound)
)]
#[deprecated = "a legacy (v1) endpoint, kept for old clients"]
pub async fn metadata_create(
    State(state): SharedState,
    GroupPath { caller, scope, id }: GroupPath,
    JsonBody(body): JsonBody,
) -> Result<StatusCode> {
    let tags = metadata_body(&body)?;
    let patch = TagPatch::Merge(tags.into_iter().map(|(k, v)| (k, Some(v))).collect());
    let actor = crate::audit::actor(&caller);
    state
        .write(move |tx| {
            let before = ops::load_group_for_change(tx, &scope, id)?;
            let after = ops::patch_tags(tx, &scope, id, &patch, now_ms())?;
            Ok(record_metadata(tx, &actor, &before, &after)?)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// #22 `PUT .../{id}/metadata`: replaces every user tag with the given ones.
#[utoipa::path(
    put,
    path = "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/metadata",
    operation_id = "replaceSecurityGroupMetadata",
    tag = "Security group metadata",
    summary = "Replace security group tags",
    description = "The user tags become exactly the given ones. Read-only tags are kept.",
    params(crate::schema::ScopePath, crate::schema::GroupIdPath),
    request_body = crate::schema::CreateTags,
    responses((status = 204, description = "Tags replaced"), crate::openapi::ValidationError, crate::openapi::NotFound)
)]
#[deprecated = "a legacy (v1) endpoint, kept for old clients"]
pub async fn metadata_replace(
    State(state): SharedState,
    GroupPath { caller, scope, id }: GroupPath,
    JsonBody(body): JsonBody,
) -> Result<StatusCode> {
    let tags = metadata_body(&body)?;
    let actor = crate::audit::actor(&caller);
    state
        .write(move |tx| {
            let group = ops::load_group_for_change(tx, &scope, id)?;
            let mut changes: Vec<(String, Option<String>)> =
                group.tags.iter().filter(|t| !tags.iter().any(|(k, _)| *k == t.key)).map(|t| (t.key.clone(), None)).collect();
            changes.extend(tags.into_iter().map(|(k, v)| (k, Some(v))));
            let after = ops::patch_tags(tx, &scope, id, &TagPatch::Merge(changes), now_ms())?;
            Ok(record_metadata(tx, &actor, &group, &after)?)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The event of a change of the group's tags through the metadata endpoints.
fn record_metadata(
    tx: &mut dyn palisade_store::Tx,
    actor: &audit::Actor,
    before: &Group,
    after: &Group,
) -> palisade_store::StoreResult<()> {
    audit::record(tx, actor, Change::new(Action::GroupMetadata, &after.scope, after.id).summary(audit::group_changes(before, after)))
}

fn metadata_key(query: &Query) -> Result<String> {
    query.last("key").map(str::to_owned).ok_or_else(|| ApiError::invalid("key", "Field required"))
}

/// #23 `GET .../{id}/metadata_item?key=K`.
#[utoipa::path(
    get,
    path = "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/metadata_item",
    operation_id = "getSecurityGroupMetadataItem",
    tag = "Security group metadata",
    summary = "Get security group tag",
    description = "404 when the group has no tag with this key; 400 when `key` is missing.",
    params(crate::schema::ScopePath, crate::schema::GroupIdPath, crate::schema::MetadataKeyQuery),
    responses((status = 200, description = "The tag", body = crate::dto::TagOut), crate::openapi::ValidationError, crate::openapi::NotFound)
)]
#[deprecated = "a legacy (v1) endpoint, kept for old clients"]
pub async fn metadata_item_get(State(state): SharedState, GroupPath { scope, id, .. }: GroupPath, query: Query) -> Result<Response> {
    let key = metadata_key(&query)?;
    let group = state.read(move |tx| Ok(ops::load_group(tx, &scope, id)?)).await?;
    let tag: &Tag = group.tags.iter().find(|t| t.key == key).ok_or_else(|| ApiError::not_found(format!("Tag {key} could not be found")))?;
    Ok(Json(TagOut::from(tag)).into_response())
}

/// #23 `DELETE .../{id}/metadata_item?key=K`.
#[utoipa::path(
    delete,
    path = "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/metadata_item",
    operation_id = "deleteSecurityGroupMetadataItem",
    tag = "Security group metadata",
    summary = "Delete security group tag",
    description = "404 when the group has no tag with this key, 403 when the tag is read-only, 400 when `key` is missing.",
    params(crate::schema::ScopePath, crate::schema::GroupIdPath, crate::schema::MetadataKeyQuery),
    responses((status = 204, description = "Deleted"), crate::openapi::ValidationError, crate::openapi::NotFound)
)]
#[deprecated = "a legacy (v1) endpoint, kept for old clients"]
pub async fn metadata_item_delete(
    State(state): SharedState,
    GroupPath { caller, scope, id }: GroupPath,
    query: Query,
) -> Result<StatusCode> {
    let key = metadata_key(&query)?;
    let actor = crate::audit::actor(&caller);
    state
        .write(move |tx| {
            let group = ops::load_group_for_change(tx, &scope, id)?;
            match group.tags.iter().find(|t| t.key == key) {
                None => Err(ApiError::not_found(format!("Tag {key} could not be found"))),
                Some(tag) if tag.read_only => Err(ApiError::Forbidden(format!("Tag {key} is read-only"))),
                Some(_) => {
                    let after = ops::patch_tags(tx, &scope, id, &TagPatch::Merge(vec![(key, None)]), now_ms())?;
                    Ok(record_metadata(tx, &actor, &group, &after)?)
                }
            }
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
