//! Security groups: v2 create and update (tasks), v1 list/get/delete/copy/revert, the legacy v1
//! create and update, the group's instances and its legacy metadata endpoints.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palisade_core::error::FieldErrors;
use palisade_core::group::{Group, Scope};
use palisade_core::input::{self, CreateGroup, LegacyCreateGroup, LegacyUpdateGroup, UpdateGroup};
use palisade_core::{Tag, TagPatch};
use palisade_store::GroupFilter;
use palisade_worker::audit::{self, Action, Change};
use palisade_worker::now_ms;
use palisade_worker::ops::{self, NewGroup, OpError};
use palisade_worker::payload::TaskPayload;
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::dto::{GroupOut, Page, TagOut, TaskIds};
use crate::error::{ApiError, Result};
use crate::extract::{Caller, GroupPath, JsonBody, Query, path_int, path_uuid};
use crate::queue::{enqueue, new_task};
use crate::state::AppState;

type SharedState = State<Arc<AppState>>;

pub fn scope_of(state: &AppState, caller: &Caller, project: &str, region: &str) -> Result<Scope> {
    caller.scope(state, path_int(project, "Project")?, path_int(region, "Region")?)
}

pub fn group_id(text: &str) -> Result<Uuid> {
    path_uuid(text, "Security group")
}

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
pub async fn create_v2(
    State(state): SharedState,
    caller: Caller,
    Path((project, region)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Json<TaskIds>> {
    let scope = scope_of(&state, &caller, &project, &region)?;
    let input = CreateGroup::parse(&body)?;
    let group_id = Uuid::new_v4();
    let payload = TaskPayload::CreateGroup {
        group_id,
        name: input.name,
        description: input.description,
        rules: known_rules(&body),
        tags: input.tags,
    };
    let task = new_task(&caller, &scope, &payload, task_data(&body, &[("security_group_id", json!(group_id))]));
    let open_limit = state.config.max_tasks_per_client;
    let id = state.write(move |tx| Ok(enqueue(tx, &task, open_limit)?)).await?;
    state.hand_over(scope.client_id, std::slice::from_ref(&id)).await;
    Ok(Json(TaskIds { tasks: vec![id] }))
}

/// #2 `PATCH /cloud/v2/security_groups/{p}/{r}/{id}`: tags now, everything else in a task, and
/// no task at all when nothing but tags would change.
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
            let task = new_task(&caller, &scope, &payload, data);
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
pub async fn list(
    State(state): SharedState,
    caller: Caller,
    Path((project, region)): Path<(String, String)>,
    query: Query,
) -> Result<Response> {
    let scope = scope_of(&state, &caller, &project, &region)?;
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
pub async fn get(State(state): SharedState, GroupPath { scope, id, .. }: GroupPath) -> Result<Response> {
    let group = state.read(move |tx| Ok(ops::load_group(tx, &scope, id)?)).await?;
    Ok(group_json(&state, &group))
}

/// #5 `DELETE /cloud/v1/securitygroups/{p}/{r}/{id}`.
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
pub async fn create_v1(
    State(state): SharedState,
    caller: Caller,
    Path((project, region)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let scope = scope_of(&state, &caller, &project, &region)?;
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
            palisade_worker::ports::bind_to_instances(tx, &scope, created.id, &input.instances)?;
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
            let (name, tags) = (input.name.as_deref(), input.tags.as_ref());
            let before = ops::load_group_for_change(tx, &scope, id)?;
            let after = ops::legacy_update(tx, &scope, id, name, tags, &input.changed_rules, &settings, now_ms())?;
            audit::record(tx, &actor, Change::new(Action::GroupUpdate, &scope, id).summary(audit::group_changes(&before, &after)))?;
            Ok(after)
        })
        .await?;
    Ok(group_json(&state, &group))
}

/// #21 `GET .../{id}/instances`: instances whose ports use the group.
pub async fn instances(State(state): SharedState, GroupPath { scope, id, .. }: GroupPath) -> Result<Response> {
    crate::instances::using_group(&state, scope, id).await
}

/// #22 `GET .../{id}/metadata`: the group's tags as a collection.
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
pub async fn metadata_item_get(State(state): SharedState, GroupPath { scope, id, .. }: GroupPath, query: Query) -> Result<Response> {
    let key = metadata_key(&query)?;
    let group = state.read(move |tx| Ok(ops::load_group(tx, &scope, id)?)).await?;
    let tag: &Tag = group.tags.iter().find(|t| t.key == key).ok_or_else(|| ApiError::not_found(format!("Tag {key} could not be found")))?;
    Ok(Json(TagOut::from(tag)).into_response())
}

/// #23 `DELETE .../{id}/metadata_item?key=K`.
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
