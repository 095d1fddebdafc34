//! `/palisade/v1/quotas/{project_id}/{region_id}`: a scope's limits and usage, and setting them.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use palisade_core::error::FieldErrors;
use palisade_core::quota::{GROUPS, Limits, MAX_LIMIT, RULES, Usage};
use palisade_worker::ops;
use serde::Serialize;
use serde_json::Value;

use crate::error::Result;
use crate::extract::{Caller, JsonBody};
use crate::security_groups::scope_of;
use crate::state::AppState;

#[derive(Serialize)]
pub struct QuotaOut {
    pub project_id: i64,
    pub region_id: i64,
    pub security_group_count_limit: i64,
    pub security_group_count_usage: u64,
    pub security_group_rule_count_limit: i64,
    pub security_group_rule_count_usage: u64,
}

fn render(project_id: i64, region_id: i64, limits: Limits, usage: Usage) -> Json<QuotaOut> {
    Json(QuotaOut {
        project_id,
        region_id,
        security_group_count_limit: limits.security_groups,
        security_group_count_usage: usage.security_groups,
        security_group_rule_count_limit: limits.security_group_rules,
        security_group_rule_count_usage: usage.security_group_rules,
    })
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((project, region)): Path<(String, String)>,
) -> Result<Json<QuotaOut>> {
    let scope = scope_of(&state, &caller, &project, &region)?;
    let settings = state.settings.clone();
    let (limits, usage) = state.read(move |tx| Ok((ops::limits(tx, &scope, &settings)?, tx.usage(&scope)?))).await?;
    Ok(render(scope.project_id, scope.region_id, limits, usage))
}

/// A limit: an integer from -1 (unlimited) to 2147483647.
fn limit(body: &Value, field: &str, errors: &mut FieldErrors) -> Option<i64> {
    match body.get(field)? {
        Value::Number(n) => match n.as_i64() {
            Some(v) if (-1..=MAX_LIMIT).contains(&v) => Some(v),
            _ => {
                errors.add(field, format!("Must be an integer from -1 (unlimited) to {MAX_LIMIT}"));
                None
            }
        },
        _ => {
            errors.add(field, format!("Must be an integer from -1 (unlimited) to {MAX_LIMIT}"));
            None
        }
    }
}

/// `PUT` with `{"security_group_count": N, "security_group_rule_count": M}` (either may be omitted).
pub async fn set(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((project, region)): Path<(String, String)>,
    JsonBody(body): JsonBody,
) -> Result<Json<QuotaOut>> {
    let scope = scope_of(&state, &caller, &project, &region)?;
    let mut errors = FieldErrors::new();
    if !body.is_object() {
        errors.add("body", "Input should be a valid dictionary or object");
    }
    let groups = limit(&body, GROUPS, &mut errors);
    let rules = limit(&body, RULES, &mut errors);
    errors.into_result(())?;
    let settings = state.settings.clone();
    let (limits, usage) = state
        .write(move |tx| {
            let current = ops::limits(tx, &scope, &settings)?;
            let limits = Limits {
                security_groups: groups.unwrap_or(current.security_groups),
                security_group_rules: rules.unwrap_or(current.security_group_rules),
            };
            tx.set_quota(&scope, &limits)?;
            Ok((limits, tx.usage(&scope)?))
        })
        .await?;
    Ok(render(scope.project_id, scope.region_id, limits, usage))
}
