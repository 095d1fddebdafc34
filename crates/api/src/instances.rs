//! Gcore's instance-side security-group endpoints (CONTRACT.md §3.15, #24–#26): groups are bound
//! to an instance's ports by name. An instance is known to Palisade through its ports
//! (`/palisade/v1/ports`); one without ports is a 404.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use palisade_core::error::FieldErrors;
use palisade_core::input;
use palisade_worker::audit::{self, Action, Change};
use palisade_worker::ports::{self as ops, PortGroupNames};
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::dto::Page;
use crate::error::Result;
use crate::extract::{Caller, JsonBody, path_uuid};
use crate::security_groups::scope_of;
use crate::state::AppState;

/// `InstancePortsSecurityGroupsSerializer`: `name` (all ports) and/or `ports_security_group_names`
/// (neither may be null; a `port_id` may).
fn parse_body(body: &Value) -> Result<Vec<PortGroupNames>> {
    let obj = input::object(body, "")?;
    let mut errors = FieldErrors::new();
    let mut requests = Vec::new();
    if let Some(value) = obj.get("name") {
        if let Some(name) = input::parse_name(value, "name", &mut errors) {
            requests.push(PortGroupNames { port_id: None, names: vec![name] });
        }
    }
    match obj.get("ports_security_group_names") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                let field = format!("ports_security_group_names.{i}");
                let Some(entry) = item.as_object() else {
                    errors.add(field, "Input should be a valid dictionary or object");
                    continue;
                };
                let port_id = match entry.get("port_id") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(text)) => match Uuid::try_parse(text) {
                        Ok(id) => Some(id),
                        Err(_) => {
                            errors.add(format!("{field}.port_id"), "Input should be a valid UUID or null");
                            continue;
                        }
                    },
                    Some(_) => {
                        errors.add(format!("{field}.port_id"), "Input should be a valid UUID or null");
                        continue;
                    }
                };
                let names = match entry.get("security_group_names") {
                    Some(Value::Array(names)) => names
                        .iter()
                        .enumerate()
                        .filter_map(|(j, n)| input::parse_name(n, &format!("{field}.security_group_names.{j}"), &mut errors))
                        .collect(),
                    None => {
                        errors.add(format!("{field}.security_group_names"), "Field required");
                        continue;
                    }
                    Some(_) => {
                        errors.add(format!("{field}.security_group_names"), "Input should be a valid list");
                        continue;
                    }
                };
                requests.push(PortGroupNames { port_id, names });
            }
        }
        Some(_) => errors.add("ports_security_group_names", "Input should be a valid list"),
    }
    if errors.is_empty() && requests.is_empty() {
        errors.add("name", "Either name or ports_security_group_names is required");
    }
    errors.into_result(requests).map_err(Into::into)
}

async fn bind(state: Arc<AppState>, caller: Caller, path: (String, String, String), body: Value, add: bool) -> Result<StatusCode> {
    let (project, region, instance) = path;
    let scope = scope_of(&state, &caller, &project, &region)?;
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
pub async fn add_security_group(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(path): Path<(String, String, String)>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode> {
    bind(state, caller, path, body, true).await
}

/// #25 `POST /cloud/v1/instances/{p}/{r}/{instance_id}/delsecuritygroup` (204).
pub async fn del_security_group(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(path): Path<(String, String, String)>,
    JsonBody(body): JsonBody,
) -> Result<StatusCode> {
    bind(state, caller, path, body, false).await
}

#[derive(Serialize)]
pub struct GroupRef {
    pub id: String,
    pub name: String,
}

/// #26 `GET /cloud/v1/instances/{p}/{r}/{instance_id}/securitygroups`.
pub async fn security_groups(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path((project, region, instance)): Path<(String, String, String)>,
) -> Result<Json<Page<GroupRef>>> {
    let scope = scope_of(&state, &caller, &project, &region)?;
    let instance_id = path_uuid(&instance, "Instance")?;
    let groups = state.read(move |tx| Ok(ops::instance_groups(tx, &scope, instance_id)?)).await?;
    let results: Vec<GroupRef> = groups.into_iter().map(|(id, name)| GroupRef { id: id.to_string(), name }).collect();
    Ok(Json(Page { count: results.len() as u64, results }))
}

#[derive(Serialize)]
pub struct InstancePortOut {
    pub id: String,
    pub mac_address: String,
    pub fixed_ips: Vec<String>,
}

/// An instance in #21's collection: the `Instance` fields Palisade knows, and the instance's
/// ports that use the group.
#[derive(Serialize)]
pub struct InstanceOut {
    pub id: String,
    pub name: String,
    pub project_id: i64,
    pub region_id: i64,
    pub region: String,
    pub security_groups: Vec<GroupName>,
    pub ports: Vec<InstancePortOut>,
}

#[derive(Serialize)]
pub struct GroupName {
    pub name: String,
}

/// #21 `GET /cloud/v1/securitygroups/{p}/{r}/{group_id}/instances`: instances whose ports use the
/// group (404 for an unknown group).
pub async fn using_group(state: &Arc<AppState>, scope: palisade_core::group::Scope, group_id: Uuid) -> Result<axum::response::Response> {
    use axum::response::IntoResponse;
    let (users, groups) = state
        .read(move |tx| {
            palisade_worker::ops::load_group(tx, &scope, group_id)?;
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
