//! `/palisade/v1/ports`: the port registry the platform fills (which instance has which interface
//! on which host, with which MAC and addresses) and the groups bound to each port.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palisade_core::error::FieldErrors;
use palisade_core::group::Scope;
use palisade_core::input;
use palisade_core::port::{MAX_FIXED_IPS, MacAddr, Port, assignable_ip, valid_device, valid_host};
use palisade_store::PortFilter;
use palisade_worker::audit::{self, Action, Change};
use palisade_worker::now_ms;
use palisade_worker::ports::{self as ops, NewPort, PortChange};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::access::Role;
use crate::dto::Page;
use crate::error::Result;
use crate::extract::{Caller, JsonBody, Query, path_uuid};
use crate::state::AppState;
use crate::time;

#[derive(Serialize)]
pub struct PortOut {
    pub id: String,
    pub client_id: i64,
    pub project_id: i64,
    pub region_id: i64,
    pub instance_id: String,
    pub instance_name: String,
    pub host: String,
    pub device: String,
    pub mac_address: String,
    pub fixed_ips: Vec<String>,
    pub security_group_ids: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Port> for PortOut {
    fn from(port: &Port) -> Self {
        PortOut {
            id: port.id.to_string(),
            client_id: port.scope.client_id,
            project_id: port.scope.project_id,
            region_id: port.scope.region_id,
            instance_id: port.instance_id.to_string(),
            instance_name: port.instance_name.clone(),
            host: port.host.clone(),
            device: port.device.clone(),
            mac_address: port.mac.to_string(),
            fixed_ips: port.fixed_ips.iter().map(IpAddr::to_string).collect(),
            security_group_ids: port.security_group_ids.iter().map(Uuid::to_string).collect(),
            created_at: time::with_zone(port.created_at),
            updated_at: time::with_zone(port.updated_at),
        }
    }
}

fn uuid_field(obj: &Map<String, Value>, field: &str, errors: &mut FieldErrors) -> Option<Uuid> {
    match obj.get(field)? {
        Value::String(text) => Uuid::try_parse(text).map_err(|_| errors.add(field, "Input should be a valid UUID")).ok(),
        _ => {
            errors.add(field, "Input should be a valid UUID");
            None
        }
    }
}

fn int_field(obj: &Map<String, Value>, field: &str, errors: &mut FieldErrors) -> Option<i64> {
    match obj.get(field)? {
        Value::Number(n) if n.as_i64().is_some_and(|n| n >= 0) => n.as_i64(),
        _ => {
            errors.add(field, "Input should be a non-negative integer");
            None
        }
    }
}

fn string_field(obj: &Map<String, Value>, field: &str, check: fn(&str) -> bool, what: &str, errors: &mut FieldErrors) -> Option<String> {
    match obj.get(field)? {
        Value::String(text) if check(text) => Some(text.clone()),
        _ => {
            errors.add(field, what);
            None
        }
    }
}

fn mac_field(obj: &Map<String, Value>, errors: &mut FieldErrors) -> Option<MacAddr> {
    let field = "mac_address";
    match obj.get(field)? {
        Value::String(text) => match text.parse::<MacAddr>() {
            Ok(mac) if mac.is_assignable() => Some(mac),
            _ => {
                errors.add(field, "Input should be a unicast, non-zero MAC address such as fa:16:3e:00:00:01");
                None
            }
        },
        _ => {
            errors.add(field, "Input should be a unicast, non-zero MAC address such as fa:16:3e:00:00:01");
            None
        }
    }
}

fn ips_field(obj: &Map<String, Value>, errors: &mut FieldErrors) -> Option<Vec<IpAddr>> {
    let field = "fixed_ips";
    let Some(Value::Array(items)) = obj.get(field) else {
        if obj.contains_key(field) {
            errors.add(field, "Input should be a valid list of IP addresses");
        }
        return None;
    };
    if items.len() > MAX_FIXED_IPS {
        errors.add(field, format!("A port has at most {MAX_FIXED_IPS} fixed IPs"));
        return None;
    }
    let mut ips = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.as_str().and_then(|s| s.parse::<IpAddr>().ok()) {
            Some(ip) if assignable_ip(ip) => ips.push(ip),
            Some(_) => errors.add(
                format!("{field}.{i}"),
                "Input should be a unicast host address (not unspecified, loopback, multicast, link-local or broadcast)",
            ),
            None => errors.add(format!("{field}.{i}"), "Input should be a valid IPv4 or IPv6 address"),
        }
    }
    Some(ips)
}

fn group_ids_field(obj: &Map<String, Value>, errors: &mut FieldErrors) -> Option<Vec<Uuid>> {
    let field = "security_group_ids";
    let Some(Value::Array(items)) = obj.get(field) else {
        if obj.get(field).is_some_and(|v| !v.is_null()) {
            errors.add(field, "Input should be a valid list of security group ids");
        }
        return None;
    };
    let mut ids = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.as_str().and_then(|s| Uuid::try_parse(s).ok()) {
            Some(id) => ids.push(id),
            None => errors.add(format!("{field}.{i}"), "Input should be a valid UUID"),
        }
    }
    Some(ids)
}

const HOST_MESSAGE: &str = "Input should be a host name of letters, digits, '.', '-' and '_' (1 to 253 characters)";
const DEVICE_MESSAGE: &str = "Input should be an interface name of letters, digits, '.', '-' and '_' (1 to 15 characters)";

/// `POST /palisade/v1/ports` (platform): registers a port of client `client_id` (201).
pub async fn create(State(state): State<Arc<AppState>>, caller: Caller, JsonBody(body): JsonBody) -> Result<Response> {
    let obj = input::object(&body, "")?;
    let mut errors = FieldErrors::new();
    for required in ["client_id", "project_id", "region_id", "instance_id", "host", "mac_address", "fixed_ips"] {
        if !obj.contains_key(required) {
            errors.add(required, "Field required");
        }
    }
    let id = uuid_field(obj, "id", &mut errors);
    let client = int_field(obj, "client_id", &mut errors);
    let project = int_field(obj, "project_id", &mut errors);
    let region = int_field(obj, "region_id", &mut errors);
    let instance_id = uuid_field(obj, "instance_id", &mut errors);
    let instance_name =
        string_field(obj, "instance_name", |s| !s.is_empty() && s.len() <= 255, "Input should be 1 to 255 characters", &mut errors);
    let host = string_field(obj, "host", valid_host, HOST_MESSAGE, &mut errors);
    let device = string_field(obj, "device", valid_device, DEVICE_MESSAGE, &mut errors);
    let mac = mac_field(obj, &mut errors);
    let fixed_ips = ips_field(obj, &mut errors);
    let groups = group_ids_field(obj, &mut errors).unwrap_or_default();
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let (Some(client_id), Some(project_id), Some(region_id), Some(instance_id), Some(host), Some(mac), Some(fixed_ips)) =
        (client, project, region, instance_id, host, mac, fixed_ips)
    else {
        unreachable!("required fields were checked");
    };
    if state.region_name(region_id).is_none() {
        return Err(crate::error::ApiError::not_found(format!("Region {region_id} could not be found")));
    }
    let scope = Scope { client_id, project_id, region_id };
    let new = NewPort { id, instance_id, instance_name, host, device, mac, fixed_ips, security_group_ids: groups };
    let actor = crate::audit::actor(&caller);
    let port = state
        .write(move |tx| {
            let port = ops::create_port(tx, &scope, new, now_ms())?;
            audit::record(tx, &actor, Change::new(Action::PortCreate, &port.scope, port.id).summary(audit::port_described(&port)))?;
            Ok(port)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(PortOut::from(&port))).into_response())
}

/// `GET /palisade/v1/ports?host=&instance_id=&project_id=&region_id=`: a tenant's own ports (of
/// the projects its key may use); for the platform every client's, or one's with `client_id=`.
pub async fn list(State(state): State<Arc<AppState>>, caller: Caller, query: Query) -> Result<Json<Page<PortOut>>> {
    let mut errors = FieldErrors::new();
    let client = match caller.role {
        Role::Platform => query.int("client_id", 1, i64::MAX, &mut errors),
        _ => Some(caller.client_id),
    };
    let project_id = query.int("project_id", 0, i64::MAX, &mut errors);
    let region_id = query.int("region_id", 0, i64::MAX, &mut errors);
    let host = query.last("host").map(str::to_owned);
    let instance_id = query.last("instance_id").and_then(|text| match Uuid::try_parse(text) {
        Ok(id) => Some(id),
        Err(_) => {
            errors.add("instance_id", "Input should be a valid UUID");
            None
        }
    });
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let filter = PortFilter { project_id, region_id, host, instance_id };
    let ports = state.read(move |tx| Ok(tx.list_ports(client, &filter)?)).await?;
    let results: Vec<PortOut> = ports.iter().filter(|p| caller.may_use_project(p.scope.project_id)).map(PortOut::from).collect();
    Ok(Json(Page { count: results.len() as u64, results }))
}

/// The client whose ports the caller may see: its own for a tenant, any for the platform.
pub fn port_client(caller: &Caller) -> Option<i64> {
    (caller.role != Role::Platform).then_some(caller.client_id)
}

/// Loads a port the caller may see: a tenant's of its client and projects (404 otherwise, as if
/// it did not exist), any for the platform.
async fn load(state: &Arc<AppState>, caller: &Caller, id: Uuid) -> Result<Port> {
    let client = port_client(caller);
    let port = state.read(move |tx| Ok(ops::load_port(tx, client, id)?)).await?;
    if !caller.may_use_project(port.scope.project_id) {
        return Err(ops::port_not_found(id).into());
    }
    Ok(port)
}

/// `GET /palisade/v1/ports/{port_id}`.
pub async fn get(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> Result<Json<PortOut>> {
    let id = path_uuid(&id, "Port")?;
    let port = load(&state, &caller, id).await?;
    Ok(Json(PortOut::from(&port)))
}

/// `PATCH /palisade/v1/ports/{port_id}`: moves, re-addresses or re-binds a port; absent fields
/// keep their value, `security_group_ids` replaces the bound groups.
pub async fn update(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<PortOut>> {
    let id = path_uuid(&id, "Port")?;
    let obj = input::object(&body, "")?;
    let mut errors = FieldErrors::new();
    let change = PortChange {
        instance_name: string_field(
            obj,
            "instance_name",
            |s| !s.is_empty() && s.len() <= 255,
            "Input should be 1 to 255 characters",
            &mut errors,
        ),
        host: string_field(obj, "host", valid_host, HOST_MESSAGE, &mut errors),
        device: string_field(obj, "device", valid_device, DEVICE_MESSAGE, &mut errors),
        mac: mac_field(obj, &mut errors),
        fixed_ips: ips_field(obj, &mut errors),
        security_group_ids: group_ids_field(obj, &mut errors),
    };
    if !errors.is_empty() {
        return Err(errors.into());
    }
    let client = port_client(&caller);
    let actor = crate::audit::actor(&caller);
    let port = state
        .write(move |tx| {
            let before = ops::load_port(tx, client, id)?;
            let after = ops::update_port(tx, client, id, change, now_ms())?;
            audit::record(tx, &actor, Change::new(Action::PortUpdate, &after.scope, id).summary(audit::port_changes(&before, &after)))?;
            Ok(after)
        })
        .await?;
    Ok(Json(PortOut::from(&port)))
}

/// `DELETE /palisade/v1/ports/{port_id}` (204).
pub async fn delete(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> Result<StatusCode> {
    let id = path_uuid(&id, "Port")?;
    let client = port_client(&caller);
    let actor = crate::audit::actor(&caller);
    state
        .write(move |tx| {
            let port = ops::load_port(tx, client, id)?;
            ops::delete_port(tx, client, id)?;
            Ok(audit::record(tx, &actor, Change::new(Action::PortDelete, &port.scope, id).summary(audit::port_described(&port)))?)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
