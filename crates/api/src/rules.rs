//! Rules: v2 create and delete (tasks), and the deprecated synchronous v1 add, replace and delete.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palisade_core::error::FieldErrors;
use palisade_core::input::{known_rule_fields, parse_rule};
use palisade_worker::audit::{self, Action, Change};
use palisade_worker::now_ms;
use palisade_worker::ops;
use palisade_worker::payload::TaskPayload;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::dto::{RuleOut, TaskIds};
use crate::error::Result;
use crate::extract::{Caller, GroupPath, JsonBody, path_uuid};
use crate::queue::{enqueue, new_task};
use crate::security_groups::{group_id, scope_of};
use crate::state::AppState;

fn rule_id(text: &str) -> Result<Uuid> {
    path_uuid(text, "Security group rule")
}

/// #13 `POST /cloud/v2/security_groups/{p}/{r}/{id}/rules`.
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
    let task = new_task(&caller, &scope, &payload, Value::Object(data));
    let open_limit = state.config.max_tasks_per_client;
    let task_id = state
        .write(move |tx| {
            ops::load_group(tx, &scope, id)?;
            Ok(enqueue(tx, &task, open_limit)?)
        })
        .await?;
    state.hand_over(scope.client_id, std::slice::from_ref(&task_id)).await;
    Ok(Json(TaskIds { tasks: vec![task_id] }))
}

/// #14 `DELETE /cloud/v2/security_groups/{p}/{r}/{id}/rules/{rule_id}`.
pub async fn delete_v2(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((project, region, id, rule)): Path<(String, String, String, String)>,
) -> Result<Json<TaskIds>> {
    let scope = scope_of(&state, &caller, &project, &region)?;
    let id = group_id(&id)?;
    let rule = rule_id(&rule)?;
    let payload = TaskPayload::DeleteRule { group_id: id, rule_id: rule };
    let task = new_task(&caller, &scope, &payload, json!({"security_group_id": id, "rule_id": rule}));
    let open_limit = state.config.max_tasks_per_client;
    let task_id = state
        .write(move |tx| {
            ops::load_group(tx, &scope, id)?;
            if tx.group_of_rule(&scope, rule)? != Some(id) {
                return Err(ops::rule_not_found(rule).into());
            }
            Ok(enqueue(tx, &task, open_limit)?)
        })
        .await?;
    state.hand_over(scope.client_id, std::slice::from_ref(&task_id)).await;
    Ok(Json(TaskIds { tasks: vec![task_id] }))
}

/// #10 `POST /cloud/v1/securitygroups/{p}/{r}/{id}/rules` (deprecated, synchronous).
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
pub async fn replace_v1(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((project, region, rule)): Path<(String, String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Response> {
    let scope = scope_of(&state, &caller, &project, &region)?;
    let rule = rule_id(&rule)?;
    let mut errors = FieldErrors::new();
    let draft = parse_rule(&body, "").map_err(|e| errors.merge(e)).ok();
    let expected_group = match body.get("security_group_id") {
        None | Some(Value::Null) => None,
        Some(value) => match value.as_str().map(Uuid::try_parse) {
            Some(Ok(id)) => Some(id),
            _ => {
                errors.add("security_group_id", "Input should be a valid UUID");
                None
            }
        },
    };
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
pub async fn delete_v1(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((project, region, rule)): Path<(String, String, String)>,
) -> Result<StatusCode> {
    let scope = scope_of(&state, &caller, &project, &region)?;
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
