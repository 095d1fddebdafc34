//! `/palisade/v1/quotas/{project_id}/{region_id}`: a scope's limits and usage (a tenant reads its
//! own; the platform reads any client's with `?client_id=N`), and setting them (the platform only:
//! a tenant must never lift its own limits).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use palisade_core::input;
use palisade_core::quota::{GROUPS, Limits, MAX_LIMIT, RULES, Usage};
use palisade_service::audit::{self, Action, Change};
use palisade_service::ops;
use serde::Serialize;

use palisade_core::group::Scope;

use crate::access::Role;
use crate::error::{ApiError, Result};
use crate::extract::{Caller, JsonBody, Query, path_int, scope_of};
use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Quota)]
/// Limits (-1: unlimited) and usage of a project in a region.
pub struct QuotaOut {
    pub project_id: i64,
    pub region_id: i64,
    #[schema(schema_with = crate::schema::quota_limit_field)]
    pub security_group_count_limit: i64,
    pub security_group_count_usage: u64,
    #[schema(schema_with = crate::schema::quota_limit_field)]
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

/// The scope a quota request is about: the tenant's own project, or for the platform the project
/// of the client its `client_id` names.
fn quota_scope(state: &AppState, caller: &Caller, project: &str, region: &str, query: &Query) -> Result<Scope> {
    let scope = match caller.role {
        Role::Platform => {
            let scope = Scope {
                client_id: caller.client_for(query)?,
                project_id: path_int(project, "Project")?,
                region_id: path_int(region, "Region")?,
            };
            if state.region_name(scope.region_id).is_none() {
                return Err(ApiError::not_found(format!("Region {} could not be found", scope.region_id)));
            }
            scope
        }
        _ => scope_of(state, caller, project, region)?,
    };
    Ok(scope)
}

#[utoipa::path(
    get,
    path = "/palisade/v1/quotas/{project_id}/{region_id}",
    operation_id = "getQuota",
    tag = "Quotas",
    summary = "Get quota",
    description = "The limits of the project and region (its own, else the configured defaults) and their current usage: a tenant's own, or (platform) those of the client named by `client_id`.",
    params(crate::schema::ScopePath, crate::schema::QuotaQuery),
    responses((status = 200, description = "Limits and usage", body = crate::quotas::QuotaOut), crate::openapi::ValidationError, crate::openapi::NotFound)
)]
pub async fn get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((project, region)): Path<(String, String)>,
    query: Query,
) -> Result<Json<QuotaOut>> {
    let scope = quota_scope(&state, &caller, &project, &region, &query)?;
    let settings = state.settings.clone();
    let (limits, usage) = state.read(move |tx| Ok((ops::limits(tx, &scope, &settings)?, tx.usage(&scope)?))).await?;
    Ok(render(scope.project_id, scope.region_id, limits, usage))
}

/// `PUT ?client_id=N` (platform) with `{"security_group_count": N, "security_group_rule_count": M}`
/// (either may be omitted).
#[utoipa::path(
    put,
    path = "/palisade/v1/quotas/{project_id}/{region_id}",
    operation_id = "setQuota",
    tag = "Quotas",
    summary = "Set quota",
    description = "Sets the limits of client `client_id`'s project and region; an omitted limit keeps its current value. A limit below the current usage is accepted: it only blocks growth. Only the platform sets quotas: a tenant can never lift its own.",
    params(crate::schema::ScopePath, crate::schema::QuotaQuery),
    request_body = crate::schema::SetQuota,
    responses((status = 200, description = "The new limits and usage", body = crate::quotas::QuotaOut), crate::openapi::ValidationError, crate::openapi::NotFound)
)]
pub async fn set(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((project, region)): Path<(String, String)>,
    query: Query,
    JsonBody(body): JsonBody,
) -> Result<Json<QuotaOut>> {
    let scope = quota_scope(&state, &caller, &project, &region, &query)?;
    // A limit: an integer from -1 (unlimited) to 2147483647.
    let limit = format!("Must be an integer from -1 (unlimited) to {MAX_LIMIT}");
    let (groups, rules) = input::read_object(&body, "", |quota| {
        Some((quota.optional(GROUPS).int(-1..=MAX_LIMIT, &limit), quota.optional(RULES).int(-1..=MAX_LIMIT, &limit)))
    })?;
    let settings = state.settings.clone();
    let actor = crate::audit::actor(&caller);
    let (limits, usage) = state
        .write(move |tx| {
            let current = ops::limits(tx, &scope, &settings)?;
            let limits = Limits {
                security_groups: groups.unwrap_or(current.security_groups),
                security_group_rules: rules.unwrap_or(current.security_group_rules),
            };
            tx.set_quota(&scope, &limits)?;
            let summary = serde_json::json!({
                GROUPS: limits.security_groups,
                RULES: limits.security_group_rules,
                "previous": {GROUPS: current.security_groups, RULES: current.security_group_rules},
            });
            audit::record(tx, &actor, Change::of_many(Action::QuotaSet, &scope).summary(summary))?;
            Ok((limits, tx.usage(&scope)?))
        })
        .await?;
    Ok(render(scope.project_id, scope.region_id, limits, usage))
}
