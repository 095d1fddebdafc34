//! Rules: v2 create and delete (tasks), and the deprecated synchronous v1 add, replace and delete.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palisade_core::error::FieldErrors;
use palisade_core::input::{Fields, known_rule_fields, parse_rule};
use palisade_service::audit::{self, Action, Change};
use palisade_service::now_ms;
use palisade_service::ops;
use palisade_service::payload::TaskPayload;
use palisade_service::queue::new_task;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::dto::{RuleOut, TaskIds};
use crate::error::Result;
use crate::extract::{GroupPath, JsonBody, ScopePath, path_uuid};
use crate::state::AppState;
use crate::tasks::queue_one;

fn rule_id(text: &str) -> Result<Uuid> {
    path_uuid(text, "Security group rule")
}

/// #13 `POST /cloud/v2/security_groups/{p}/{r}/{id}/rules`.
#[utoipa::path(
    post,
    path = "/cloud/v2/security_groups/{project_id}/{region_id}/{group_id}/rules",
    operation_id = "createSecurityGroupRule",
    tag = "Security group rules",
    summary = "Create security group rule",
    description = "Validates the rule (400) and queues one `create_security_group_rule` task; when it is `FINISHED`, `created_resources.security_group_rules` holds exactly the new rule's id. A rule identical to an existing one, or with semantic errors, ends the task in `ERROR`. 404 when the group does not exist.",
    params(crate::schema::ScopePath, crate::schema::GroupIdPath),
    request_body = crate::schema::SecurityGroupRuleInputV2,
    responses((status = 200, description = "One `create_security_group_rule` task", body = crate::dto::TaskIds), crate::openapi::ValidationError, crate::openapi::NotFound)
)]
pub async fn create_v2(
    State(state): State<Arc<AppState>>,
    GroupPath { caller, scope, id }: GroupPath,
    JsonBody(body): JsonBody,
) -> Result<Json<TaskIds>> {
    parse_rule(&body, "")?;
    // Only the schema's fields are stored, in the payload and in `data`.
    let rule = known_rule_fields(&body);
    let mut data = rule.as_object().cloned().unwrap_or_default();
    data.insert("security_group_id".into(), json!(id));
    let payload = TaskPayload::CreateRule { group_id: id, rule };
    let task = new_task(&crate::audit::actor(&caller), &scope, &payload, Value::Object(data));
    queue_one(&state, task, move |tx| {
        ops::load_group(tx, &scope, id)?;
        Ok(())
    })
    .await
}

/// #14 `DELETE /cloud/v2/security_groups/{p}/{r}/{id}/rules/{rule_id}`.
#[utoipa::path(
    delete,
    path = "/cloud/v2/security_groups/{project_id}/{region_id}/{group_id}/rules/{rule_id}",
    operation_id = "deleteSecurityGroupRule",
    tag = "Security group rules",
    summary = "Delete security group rule",
    description = "Queues one `delete_security_group_rule` task. 404 when the group does not exist or the rule is not one of its rules.",
    params(crate::schema::ScopePath, crate::schema::GroupIdPath, crate::schema::RuleIdPath),
    responses((status = 200, description = "One `delete_security_group_rule` task", body = crate::dto::TaskIds), crate::openapi::NotFound)
)]
pub async fn delete_v2(
    State(state): State<Arc<AppState>>,
    GroupPath { caller, scope, id }: GroupPath,
    Path((_, _, _, rule)): Path<(String, String, String, String)>,
) -> Result<Json<TaskIds>> {
    let rule = rule_id(&rule)?;
    let payload = TaskPayload::DeleteRule { group_id: id, rule_id: rule };
    let task = new_task(&crate::audit::actor(&caller), &scope, &payload, json!({"security_group_id": id, "rule_id": rule}));
    queue_one(&state, task, move |tx| {
        ops::load_group(tx, &scope, id)?;
        if tx.group_of_rule(&scope, rule)? != Some(id) {
            return Err(ops::rule_not_found(rule).into());
        }
        Ok(())
    })
    .await
}

/// #10 `POST /cloud/v1/securitygroups/{p}/{r}/{id}/rules` (deprecated, synchronous).
#[utoipa::path(
    post,
    path = "/cloud/v1/securitygroups/{project_id}/{region_id}/{group_id}/rules",
    operation_id = "addSecurityGroupRuleLegacy",
    tag = "Security group rules",
    summary = "Add security group rule (v1)",
    description = "Synchronous. Semantic rule errors answer 400, an unknown `remote_group_id` 404, a rule identical to an existing one 409 (`SecurityGroupRuleExists`, with `info.existing_rule_id`), as does exceeding the rule quota (`QuotaLimitExceed`). A `security_group_id` in the body is ignored.",
    params(crate::schema::ScopePath, crate::schema::GroupIdPath),
    request_body = crate::schema::SecurityGroupRuleInputV1,
    responses((status = 200, description = "The created rule", body = crate::dto::RuleOut), crate::openapi::ValidationError, crate::openapi::NotFound, crate::openapi::Conflict)
)]
#[deprecated = "a legacy (v1) endpoint, kept for old clients"]
pub async fn create_v1(
    State(state): State<Arc<AppState>>,
    GroupPath { caller, scope, id }: GroupPath,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let draft = parse_rule(&body, "")?;
    let settings = state.settings.clone();
    let actor = crate::audit::actor(&caller);
    let rule = state
        .write(move |tx| {
            let rule = ops::add_rule(tx, &scope, id, &draft, &settings, now_ms())?;
            audit::record(tx, &actor, Change::new(Action::RuleCreate, &scope, id).summary(audit::rules_changed(&[rule.id], &[])))?;
            Ok(rule)
        })
        .await?;
    Ok(Json(RuleOut::from(&rule)).into_response())
}

/// #11 `PUT /cloud/v1/securitygrouprules/{p}/{r}/{rule_id}`: delete and create, new id.
#[utoipa::path(
    put,
    path = "/cloud/v1/securitygrouprules/{project_id}/{region_id}/{rule_id}",
    operation_id = "replaceSecurityGroupRuleLegacy",
    tag = "Security group rules",
    summary = "Replace security group rule (v1)",
    description = "Synchronous delete and create: the rule is replaced by a rule with a NEW id and the given attributes (omitted fields take their defaults) in the same group; use the returned id afterwards. `security_group_id`, when given, must be the rule's group (400 otherwise). Use the v2 rule delete and create instead.",
    params(crate::schema::ScopePath, crate::schema::RuleIdPath),
    request_body = crate::schema::ReplaceSecurityGroupRule,
    responses((status = 200, description = "The new rule, with a new id", body = crate::dto::RuleOut), crate::openapi::ValidationError, crate::openapi::NotFound, crate::openapi::Conflict)
)]
#[deprecated = "a legacy (v1) endpoint, kept for old clients"]
pub async fn replace_v1(
    State(state): State<Arc<AppState>>,
    ScopePath { caller, scope }: ScopePath,
    Path((_, _, rule)): Path<(String, String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let rule = rule_id(&rule)?;
    let mut errors = FieldErrors::new();
    let draft = parse_rule(&body, "").map_err(|e| errors.merge(e)).ok();
    // A body that is not an object was reported by `parse_rule` already.
    let expected_group = body.as_object().and_then(|obj| Fields::new(obj, "", &mut errors).optional("security_group_id").nullable().uuid());
    let draft = errors.into_result(draft)?.expect("no errors means the rule parsed");
    let actor = crate::audit::actor(&caller);
    let rule = state
        .write(move |tx| {
            let new = ops::replace_rule(tx, &scope, rule, expected_group, &draft, now_ms())?;
            let change = Change::new(Action::RuleReplace, &scope, new.group_id).summary(audit::rules_changed(&[new.id], &[rule]));
            audit::record(tx, &actor, change)?;
            Ok(new)
        })
        .await?;
    Ok(Json(RuleOut::from(&rule)).into_response())
}

/// #12 `DELETE /cloud/v1/securitygrouprules/{p}/{r}/{rule_id}`.
#[utoipa::path(
    delete,
    path = "/cloud/v1/securitygrouprules/{project_id}/{region_id}/{rule_id}",
    operation_id = "deleteSecurityGroupRuleLegacy",
    tag = "Security group rules",
    summary = "Delete security group rule (v1)",
    description = "Synchronous. 404 when the rule does not exist.",
    params(crate::schema::ScopePath, crate::schema::RuleIdPath),
    responses((status = 204, description = "Deleted"), crate::openapi::NotFound)
)]
#[deprecated = "a legacy (v1) endpoint, kept for old clients"]
pub async fn delete_v1(
    State(state): State<Arc<AppState>>,
    ScopePath { caller, scope }: ScopePath,
    Path((_, _, rule)): Path<(String, String, String)>,
) -> Result<StatusCode> {
    let rule = rule_id(&rule)?;
    let actor = crate::audit::actor(&caller);
    state
        .write(move |tx| {
            let group = ops::delete_rule(tx, &scope, None, rule, now_ms())?;
            Ok(audit::record(tx, &actor, Change::new(Action::RuleDelete, &scope, group.id).summary(audit::rules_changed(&[], &[rule])))?)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
