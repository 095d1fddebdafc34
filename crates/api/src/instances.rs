//! Gcore's instance-side security-group endpoints (CONTRACT.md §3.15, #24–#26): groups are bound
//! to an instance's ports by name. An instance is known to Palisade through its ports
//! (`/palisade/v1/ports`); one without ports is a 404.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use palisade_core::error::FieldErrors;
use palisade_core::input::{self, Fields};
use palisade_service::audit::{self, Action, Change};
use palisade_service::ports::{self as ops, PortGroupNames};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::dto::Page;
use crate::error::Result;
use crate::extract::{JsonBody, ScopePath, path_uuid};
use crate::state::AppState;

/// `InstancePortsSecurityGroupsSerializer`: `name` (all ports) and/or `ports_security_group_names`
/// (neither may be null; a `port_id` may).
fn parse_body(body: &Value) -> Result<Vec<PortGroupNames>> {
    let requests = input::read_object(body, "", |fields| {
        let mut requests = Vec::new();
        if let Some(name) = fields.optional("name").with(input::parse_name) {
            requests.push(PortGroupNames { port_id: None, names: vec![name] });
        }
        if let Some(list) = fields.optional("ports_security_group_names").list("Input should be a valid list") {
            requests.extend(list.each_with(parse_port_names));
        }
        if fields.errors().is_empty() && requests.is_empty() {
            fields.add("name", "Either name or ports_security_group_names is required");
        }
        Some(requests)
    })?;
    Ok(requests)
}

/// An item of `ports_security_group_names`: `{"port_id": id | null, "security_group_names": [...]}`.
fn parse_port_names(item: &Value, field: &str, errors: &mut FieldErrors) -> Option<PortGroupNames> {
    let Some(entry) = item.as_object() else {
        errors.add(field, "Input should be a valid dictionary or object");
        return None;
    };
    let mut entry = Fields::new(entry, field, errors);
    let port_id = entry.optional("port_id").nullable().parse(|v| input::uuid_of(v).ok_or("Input should be a valid UUID or null"));
    // The names of an entry with a bad port are not read.
    if entry.failed("port_id") {
        return None;
    }
    let names = entry.required("security_group_names").list("Input should be a valid list")?.each_with(input::parse_name);
    Some(PortGroupNames { port_id, names })
}

async fn bind(state: Arc<AppState>, ScopePath { caller, scope }: ScopePath, instance: &str, body: Value, add: bool) -> Result<StatusCode> {
    let instance_id = path_uuid(&instance, "Instance")?;
    let requests = parse_body(&body)?;
    let actor = crate::audit::actor(&caller);
    state
        .write(move |tx| {
            let before = ops::instance_ports(tx, &scope, instance_id)?;
            ops::bind_by_names(tx, &scope, instance_id, &requests, add)?;
            let after = ops::instance_ports(tx, &scope, instance_id)?;
            let action = if add { Action::InstanceAddGroup } else { Action::InstanceDelGroup };
            Ok(audit::record(tx, &actor, Change::new(action, &scope, instance_id).summary(binding_changes(&before, &after)))?)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The groups each port of an instance gained and lost: `{"ports": [{"port_id",
/// "security_groups_added", "security_groups_removed"}]}`, ports without a change left out.
fn binding_changes(before: &[palisade_core::port::Port], after: &[palisade_core::port::Port]) -> Value {
    let mut ports = Vec::new();
    for port in after {
        let old: &[Uuid] = before.iter().find(|p| p.id == port.id).map(|p| p.security_group_ids.as_slice()).unwrap_or_default();
        let added: Vec<String> = port.security_group_ids.iter().filter(|g| !old.contains(g)).map(Uuid::to_string).collect();
        let removed: Vec<String> = old.iter().filter(|g| !port.security_group_ids.contains(g)).map(Uuid::to_string).collect();
        if !added.is_empty() || !removed.is_empty() {
            ports.push(serde_json::json!({"port_id": port.id, "security_groups_added": added, "security_groups_removed": removed}));
        }
    }
    serde_json::json!({ "ports": ports })
}

/// #24 `POST /cloud/v1/instances/{p}/{r}/{instance_id}/addsecuritygroup` (204).
#[utoipa::path(
    post,
    path = "/cloud/v1/instances/{project_id}/{region_id}/{instance_id}/addsecuritygroup",
    operation_id = "addInstanceSecurityGroup",
    tag = "Instances",
    summary = "Assign security group",
    description = "Synchronous. Binds groups, named as in their `name`, to the instance's ports: `name` to every port, each `ports_security_group_names` item to its `port_id` (null: every port). A group already bound stays bound once. Every name and port is resolved first: an unknown instance, port or group name is a 404 and nothing changes; a name shared by several groups of the project is a 409 `NoUniqueMatch`; neither field given is a 400.",
    params(crate::schema::ScopePath, crate::schema::InstanceIdPath),
    request_body = crate::schema::InstancePortsSecurityGroups,
    responses((status = 204, description = "The groups are bound"), crate::openapi::ValidationError, crate::openapi::NotFound, crate::openapi::Conflict)
)]
pub async fn add_security_group(
    State(state): State<Arc<AppState>>,
    path: ScopePath,
    Path((_, _, instance)): Path<(String, String, String)>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode> {
    bind(state, path, &instance, body, true).await
}

/// #25 `POST /cloud/v1/instances/{p}/{r}/{instance_id}/delsecuritygroup` (204).
#[utoipa::path(
    post,
    path = "/cloud/v1/instances/{project_id}/{region_id}/{instance_id}/delsecuritygroup",
    operation_id = "delInstanceSecurityGroup",
    tag = "Instances",
    summary = "Un-assign security group",
    description = "Synchronous. The reverse of `addsecuritygroup`, with the same body and errors; unbinding a group that is not bound changes nothing.",
    params(crate::schema::ScopePath, crate::schema::InstanceIdPath),
    request_body = crate::schema::InstancePortsSecurityGroups,
    responses((status = 204, description = "The groups are unbound"), crate::openapi::ValidationError, crate::openapi::NotFound, crate::openapi::Conflict)
)]
pub async fn del_security_group(
    State(state): State<Arc<AppState>>,
    path: ScopePath,
    Path((_, _, instance)): Path<(String, String, String)>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode> {
    bind(state, path, &instance, body, false).await
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct GroupRef {
    #[schema(format = Uuid)]
    pub id: String,
    pub name: String,
}

/// #26 `GET /cloud/v1/instances/{p}/{r}/{instance_id}/securitygroups`.
#[utoipa::path(
    get,
    path = "/cloud/v1/instances/{project_id}/{region_id}/{instance_id}/securitygroups",
    operation_id = "listInstanceSecurityGroups",
    tag = "Instances",
    summary = "Get instance security groups",
    description = "The groups bound to any port of the instance, each once, in binding order; 404 for an instance without ports.",
    params(crate::schema::ScopePath, crate::schema::InstanceIdPath),
    responses((status = 200, description = "The groups bound to any port of the instance", body = crate::schema::InstanceSecurityGroupList), crate::openapi::NotFound)
)]
pub async fn security_groups(
    State(state): State<Arc<AppState>>,
    ScopePath { scope, .. }: ScopePath,
    Path((_, _, instance)): Path<(String, String, String)>,
) -> Result<Json<Page<GroupRef>>> {
    let instance_id = path_uuid(&instance, "Instance")?;
    let groups = state.read(move |tx| Ok(ops::instance_groups(tx, &scope, instance_id)?)).await?;
    let results: Vec<GroupRef> = groups.into_iter().map(|(id, name)| GroupRef { id: id.to_string(), name }).collect();
    Ok(Json(Page { count: results.len() as u64, results }))
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct InstancePortOut {
    #[schema(format = Uuid)]
    pub id: String,
    pub mac_address: String,
    pub fixed_ips: Vec<String>,
}

/// An instance in #21's collection: the `Instance` fields Palisade knows, and the instance's
/// ports that use the group.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Instance)]
pub struct InstanceOut {
    #[schema(format = Uuid)]
    pub id: String,
    /// The port's `instance_name` (the instance id when none was registered).
    pub name: String,
    pub project_id: i64,
    pub region_id: i64,
    pub region: String,
    /// Every group bound to any port of the instance.
    pub security_groups: Vec<GroupName>,
    pub ports: Vec<InstancePortOut>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct GroupName {
    pub name: String,
}

/// #21 `GET /cloud/v1/securitygroups/{p}/{r}/{group_id}/instances`: instances whose ports use the
/// group (404 for an unknown group).
pub async fn using_group(state: &Arc<AppState>, scope: palisade_core::group::Scope, group_id: Uuid) -> Result<axum::response::Response> {
    use axum::response::IntoResponse;
    let (users, groups) = state
        .read(move |tx| {
            palisade_service::ops::load_group(tx, &scope, group_id)?;
            let users = ops::group_instances(tx, group_id)?;
            let mut ids: Vec<Uuid> = users.iter().flat_map(|u| u.ports.iter().flat_map(|p| p.security_group_ids.iter().copied())).collect();
            ids.sort();
            ids.dedup();
            let groups = tx.groups_by_ids(&ids)?;
            Ok((users, groups))
        })
        .await?;
    let region = state.region_name(scope.region_id).unwrap_or_default();
    let results: Vec<InstanceOut> = users
        .iter()
        .map(|user| {
            let mut bound: Vec<Uuid> = Vec::new();
            for id in user.ports.iter().flat_map(|p| p.security_group_ids.iter()) {
                if !bound.contains(id) {
                    bound.push(*id);
                }
            }
            let first = &user.ports[0];
            InstanceOut {
                id: user.instance_id.to_string(),
                name: user.instance_name.clone(),
                project_id: first.scope.project_id,
                region_id: first.scope.region_id,
                region: region.clone(),
                security_groups: bound
                    .iter()
                    .filter_map(|id| groups.iter().find(|g| g.id == *id))
                    .map(|g| GroupName { name: g.name.clone() })
                    .collect(),
                ports: user
                    .ports
                    .iter()
                    .map(|p| InstancePortOut {
                        id: p.id.to_string(),
                        mac_address: p.mac.to_string(),
                        fixed_ips: p.fixed_ips.iter().map(|ip| ip.to_string()).collect(),
                    })
                    .collect(),
            }
        })
        .collect();
    Ok(Json(Page { count: results.len() as u64, results }).into_response())
}
