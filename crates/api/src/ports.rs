//! `/palisade/v1/ports`: the port registry the platform fills (which instance has which interface
//! on which host, with which MAC and addresses) and the groups bound to each port.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use palisade_core::UnixMs;
use palisade_core::error::FieldErrors;
use palisade_core::group::Scope;
use palisade_core::input::{self, Field, List};
use palisade_core::port::{MAX_FIXED_IPS, MacAddr, Port, assignable_ip, valid_device, valid_host};
use palisade_service::audit::{self, Action, Change};
use palisade_service::now_ms;
use palisade_service::ports::{self as ops, NewPort, PortChange};
use palisade_store::PortFilter;
use serde::Serialize;
use uuid::Uuid;

use crate::access::Role;
use crate::dto::Page;
use crate::error::Result;
use crate::extract::{Caller, JsonBody, Query, path_uuid};
use crate::state::AppState;
use crate::time;

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Port)]
pub struct PortOut {
    #[schema(format = Uuid)]
    pub id: String,
    pub client_id: i64,
    pub project_id: i64,
    pub region_id: i64,
    #[schema(format = Uuid)]
    pub instance_id: String,
    pub instance_name: String,
    pub host: String,
    pub device: String,
    pub mac_address: String,
    pub fixed_ips: Vec<String>,
    /// The bound groups, in order.
    pub security_group_ids: Vec<String>,
    /// Registration time, UTC, `YYYY-MM-DDTHH:MM:SS+0000`.
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
            created_at: time::with_zone(UnixMs(port.created_at)),
            updated_at: time::with_zone(UnixMs(port.updated_at)),
        }
    }
}

fn instance_name(field: Field<'_, '_>) -> Option<String> {
    field.text(|s| !s.is_empty() && s.len() <= 255, "Input should be 1 to 255 characters")
}

fn host(field: Field<'_, '_>) -> Option<String> {
    field.text(valid_host, HOST_MESSAGE)
}

fn device(field: Field<'_, '_>) -> Option<String> {
    field.text(valid_device, DEVICE_MESSAGE)
}

fn mac(field: Field<'_, '_>) -> Option<MacAddr> {
    field.parse(|value| {
        value
            .as_str()
            .and_then(|text| text.parse::<MacAddr>().ok())
            .filter(MacAddr::is_assignable)
            .ok_or("Input should be a unicast, non-zero MAC address such as fa:16:3e:00:00:01")
    })
}

fn fixed_ips(field: Field<'_, '_>) -> Option<Vec<IpAddr>> {
    let ips = field
        .list("Input should be a valid list of IP addresses")?
        .at_most(MAX_FIXED_IPS, |_| format!("A port has at most {MAX_FIXED_IPS} fixed IPs"))?;
    Some(ips.each(|item| match item.as_str().and_then(|s| s.parse::<IpAddr>().ok()) {
        Some(ip) if assignable_ip(ip) => Ok(ip),
        Some(_) => Err("Input should be a unicast host address (not unspecified, loopback, multicast, link-local or broadcast)"),
        None => Err("Input should be a valid IPv4 or IPv6 address"),
    }))
}

/// `null` binds no group, as absent does.
fn group_ids(field: Field<'_, '_>) -> Option<Vec<Uuid>> {
    field.nullable().list("Input should be a valid list of security group ids").map(List::uuids)
}

const HOST_MESSAGE: &str = "Input should be a host name of letters, digits, '.', '-' and '_' (1 to 253 characters)";
const DEVICE_MESSAGE: &str = "Input should be an interface name of letters, digits, '.', '-' and '_' (1 to 15 characters)";

/// `POST /palisade/v1/ports` (platform): registers a port of client `client_id` (201).
#[utoipa::path(
    post,
    path = "/palisade/v1/ports",
    operation_id = "createPort",
    tag = "Ports",
    summary = "Register a port",
    description = "Registers client `client_id`'s instance port on a host. Every bound group must be a group of the port's client, project and region (404 otherwise). A port id is unique overall and a device and a MAC address per host, whatever the client: 409 `PortExists`, `PortDeviceInUse` or `PortMacInUse` naming the existing port in `info.port_id`, and nothing is stored. Fixed IPs must be unicast host addresses (not unspecified, loopback, multicast, link-local such as 169.254.169.254, or the limited broadcast), at most 32; the MAC unicast and non-zero.",
    request_body = crate::schema::CreatePort,
    responses((status = 201, description = "The registered port", body = crate::ports::PortOut), crate::openapi::ValidationError, crate::openapi::NotFound, crate::openapi::Conflict)
)]
pub async fn create(State(state): State<Arc<AppState>>, caller: Caller, JsonBody(body): JsonBody) -> Result<Response> {
    let non_negative = "Input should be a non-negative integer";
    let (client_id, project_id, region_id, new) = input::read_object(&body, "", |port| {
        let id = port.optional("id").uuid();
        let client_id = port.required("client_id").int(0..=i64::MAX, non_negative);
        let project_id = port.required("project_id").int(0..=i64::MAX, non_negative);
        let region_id = port.required("region_id").int(0..=i64::MAX, non_negative);
        let instance_id = port.required("instance_id").uuid();
        let instance_name = instance_name(port.optional("instance_name"));
        let host = host(port.required("host"));
        let device = device(port.optional("device"));
        let mac = mac(port.required("mac_address"));
        let fixed_ips = fixed_ips(port.required("fixed_ips"));
        let security_group_ids = group_ids(port.optional("security_group_ids")).unwrap_or_default();
        let new = NewPort {
            id,
            instance_id: instance_id?,
            instance_name,
            host: host?,
            device,
            mac: mac?,
            fixed_ips: fixed_ips?,
            security_group_ids,
        };
        Some((client_id?, project_id?, region_id?, new))
    })?;
    if state.region_name(region_id).is_none() {
        return Err(crate::error::ApiError::not_found(format!("Region {region_id} could not be found")));
    }
    let scope = Scope { client_id, project_id, region_id };
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
#[utoipa::path(
    get,
    path = "/palisade/v1/ports",
    operation_id = "listPorts",
    tag = "Ports",
    summary = "List ports",
    params(crate::schema::ListPortsQuery),
    responses((status = 200, description = "The matching ports, in registration order: a tenant's own (of the projects its key may use), or for the platform every client's", body = crate::schema::PortCollection), crate::openapi::ValidationError)
)]
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
            errors.add("instance_id", input::INVALID_UUID);
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
#[utoipa::path(
    get,
    path = "/palisade/v1/ports/{port_id}",
    operation_id = "getPort",
    tag = "Ports",
    summary = "Get port",
    params(crate::schema::PortIdPath),
    responses((status = 200, description = "The port", body = crate::ports::PortOut), crate::openapi::NotFound)
)]
pub async fn get(State(state): State<Arc<AppState>>, caller: Caller, Path(id): Path<String>) -> Result<Json<PortOut>> {
    let id = path_uuid(&id, "Port")?;
    let port = load(&state, &caller, id).await?;
    Ok(Json(PortOut::from(&port)))
}

/// `PATCH /palisade/v1/ports/{port_id}`: moves, re-addresses or re-binds a port; absent fields
/// keep their value, `security_group_ids` replaces the bound groups.
#[utoipa::path(
    patch,
    path = "/palisade/v1/ports/{port_id}",
    operation_id = "updatePort",
    tag = "Ports",
    summary = "Update port",
    description = "Moves, re-addresses or re-binds a port: each given field replaces its value (`security_group_ids` replaces the bound groups, in order); absent fields are kept. Nothing changes, and the policy revision stays, when the values are the same. The same checks as registration apply (409 for a device or MAC taken on the host).",
    params(crate::schema::PortIdPath),
    request_body = crate::schema::UpdatePort,
    responses((status = 200, description = "The port as updated", body = crate::ports::PortOut), crate::openapi::ValidationError, crate::openapi::NotFound, crate::openapi::Conflict)
)]
pub async fn update(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody,
) -> Result<Json<PortOut>> {
    let id = path_uuid(&id, "Port")?;
    let change = input::read_object(&body, "", |port| {
        Some(PortChange {
            instance_name: instance_name(port.optional("instance_name")),
            host: host(port.optional("host")),
            device: device(port.optional("device")),
            mac: mac(port.optional("mac_address")),
            fixed_ips: fixed_ips(port.optional("fixed_ips")),
            security_group_ids: group_ids(port.optional("security_group_ids")),
        })
    })?;
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
#[utoipa::path(
    delete,
    path = "/palisade/v1/ports/{port_id}",
    operation_id = "deletePort",
    tag = "Ports",
    summary = "Delete port",
    params(crate::schema::PortIdPath),
    responses((status = 204, description = "The port is gone"), crate::openapi::NotFound)
)]
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
