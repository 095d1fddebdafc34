//! Ports and their security groups: registering the platform's ports, binding groups to them by
//! id (`/palisade/v1/ports`) or by name (Gcore's `addsecuritygroup` / `delsecuritygroup`), and the
//! reverse look-ups (groups of an instance, instances of a group). Synchronous, in the caller's
//! transaction; every change bumps the revisions of the hosts it reaches (the store, before COMMIT).

use std::collections::BTreeSet;
use std::net::IpAddr;

use palisade_core::group::Scope;
use palisade_core::port::{MacAddr, Port, default_device};
use palisade_store::{GroupFilter, PortFilter, Tx};
use serde_json::json;
use uuid::Uuid;

use crate::ops::{OpError, OpResult, group_not_found};

pub fn port_not_found(id: Uuid) -> OpError {
    OpError::NotFound(format!("Port {id} could not be found"))
}

pub fn instance_not_found(id: Uuid) -> OpError {
    OpError::NotFound(format!("Instance {id} could not be found"))
}

/// A port as the platform registers it.
#[derive(Debug, Clone)]
pub struct NewPort {
    pub id: Option<Uuid>,
    pub instance_id: Uuid,
    pub instance_name: Option<String>,
    pub host: String,
    pub device: Option<String>,
    pub mac: MacAddr,
    pub fixed_ips: Vec<IpAddr>,
    pub security_group_ids: Vec<Uuid>,
}

/// The fields of a port update; `None` keeps the value.
#[derive(Debug, Clone, Default)]
pub struct PortChange {
    pub instance_name: Option<String>,
    pub host: Option<String>,
    pub device: Option<String>,
    pub mac: Option<MacAddr>,
    pub fixed_ips: Option<Vec<IpAddr>>,
    pub security_group_ids: Option<Vec<Uuid>>,
}

/// Every id must name a group of the port's scope; duplicates are bound once.
fn check_groups(tx: &mut dyn Tx, scope: &Scope, ids: &[Uuid]) -> OpResult<Vec<Uuid>> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for id in ids {
        if seen.insert(*id) {
            if !tx.group_exists(scope, *id)? {
                return Err(group_not_found(*id));
            }
            out.push(*id);
        }
    }
    Ok(out)
}

/// A device is one interface of one host and a MAC one NIC: no two ports of a host, whatever
/// their clients, may share either (another client's port on the device would take over the
/// first one's enforcement). Locks the host's registry first, so the check holds until commit.
fn check_registry_free(tx: &mut dyn Tx, port: &Port) -> OpResult<()> {
    tx.lock_host(&port.host)?;
    let filter = PortFilter { host: Some(port.host.clone()), ..PortFilter::default() };
    for other in tx.list_ports(None, &filter)?.into_iter().filter(|p| p.id != port.id) {
        let (class, what) = if other.device == port.device {
            ("PortDeviceInUse", format!("Device {}", port.device))
        } else if other.mac == port.mac {
            ("PortMacInUse", format!("MAC address {}", port.mac))
        } else {
            continue;
        };
        return Err(OpError::Conflict {
            class,
            message: format!("{what} on host {} is already used by port {}", port.host, other.id),
            info: Some(json!({"port_id": other.id.to_string()})),
        });
    }
    Ok(())
}

pub fn create_port(tx: &mut dyn Tx, scope: &Scope, new: NewPort, now: i64) -> OpResult<Port> {
    let id = new.id.unwrap_or_else(Uuid::new_v4);
    // Port ids are global (agents and the verdict engine key on them), whichever client holds one.
    if tx.get_port(None, id)?.is_some() {
        return Err(OpError::Conflict {
            class: "PortExists",
            message: format!("Port {id} already exists"),
            info: Some(json!({"port_id": id.to_string()})),
        });
    }
    let security_group_ids = check_groups(tx, scope, &new.security_group_ids)?;
    let port = Port {
        id,
        scope: *scope,
        instance_id: new.instance_id,
        instance_name: new.instance_name.unwrap_or_else(|| new.instance_id.to_string()),
        host: new.host,
        device: new.device.unwrap_or_else(|| default_device(id)),
        mac: new.mac,
        fixed_ips: dedupe_ips(new.fixed_ips),
        security_group_ids,
        created_at: now,
        updated_at: now,
    };
    check_registry_free(tx, &port)?;
    tx.insert_port(&port)?;
    Ok(port)
}

fn dedupe_ips(ips: Vec<IpAddr>) -> Vec<IpAddr> {
    let mut seen = BTreeSet::new();
    ips.into_iter().filter(|ip| seen.insert(*ip)).collect()
}

/// The port `id` of client `client_id` (`None`: of any client, for the platform).
pub fn load_port(tx: &mut dyn Tx, client_id: Option<i64>, id: Uuid) -> OpResult<Port> {
    tx.get_port(client_id, id)?.ok_or_else(|| port_not_found(id))
}

/// Applies `change`; writes only what differs, so an unchanged port keeps its policy revision.
pub fn update_port(tx: &mut dyn Tx, client_id: Option<i64>, id: Uuid, change: PortChange, now: i64) -> OpResult<Port> {
    let mut port = load_port(tx, client_id, id)?;
    let before = port.clone();
    if let Some(name) = change.instance_name {
        port.instance_name = name;
    }
    if let Some(host) = change.host {
        port.host = host;
    }
    if let Some(device) = change.device {
        port.device = device;
    }
    if let Some(mac) = change.mac {
        port.mac = mac;
    }
    if let Some(ips) = change.fixed_ips {
        port.fixed_ips = dedupe_ips(ips);
    }
    if let Some(groups) = change.security_group_ids {
        port.security_group_ids = check_groups(tx, &port.scope, &groups)?;
    }
    if (&port.instance_name, &port.host, &port.device, port.mac, &port.fixed_ips)
        != (&before.instance_name, &before.host, &before.device, before.mac, &before.fixed_ips)
    {
        check_registry_free(tx, &port)?;
        port.updated_at = now;
        tx.update_port(&port)?;
    }
    if port.security_group_ids != before.security_group_ids {
        tx.set_port_groups(port.id, &port.security_group_ids)?;
    }
    Ok(port)
}

pub fn delete_port(tx: &mut dyn Tx, client_id: Option<i64>, id: Uuid) -> OpResult<()> {
    if !tx.delete_port(client_id, id)? {
        return Err(port_not_found(id));
    }
    Ok(())
}

/// The ports of an instance, or 404 when it has none (an instance Palisade knows is one with ports).
pub fn instance_ports(tx: &mut dyn Tx, scope: &Scope, instance_id: Uuid) -> OpResult<Vec<Port>> {
    let filter =
        PortFilter { project_id: Some(scope.project_id), region_id: Some(scope.region_id), instance_id: Some(instance_id), host: None };
    let ports = tx.list_ports(Some(scope.client_id), &filter)?;
    if ports.is_empty() {
        return Err(instance_not_found(instance_id));
    }
    Ok(ports)
}

/// One entry of Gcore's `ports_security_group_names`: `port_id: None` is every port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortGroupNames {
    pub port_id: Option<Uuid>,
    pub names: Vec<String>,
}

/// The group of `scope` called `name`: 404 when there is none, 409 when several share it.
fn group_by_name(tx: &mut dyn Tx, scope: &Scope, name: &str) -> OpResult<Uuid> {
    let filter = GroupFilter { name: Some(name.to_string()), limit: 2, ..GroupFilter::default() };
    let (count, groups) = tx.list_groups(scope, &filter)?;
    match (count, groups.first()) {
        (1, Some(group)) => Ok(group.id),
        (0, _) | (_, None) => Err(OpError::NotFound(format!("Security group {name} could not be found"))),
        _ => Err(OpError::Conflict {
            class: "NoUniqueMatch",
            message: format!("Multiple security groups are named {name}; use the group id to be more specific"),
            info: Some(json!({"security_group_ids": groups.iter().map(|g| g.id.to_string()).collect::<Vec<_>>(), "count": count})),
        }),
    }
}

/// Gcore's #24 (`add`) and #25 (remove): binds or unbinds groups, by name, on the instance's
/// ports. Every name and port is resolved before anything changes, so an unknown one changes
/// nothing. Adding a bound group or removing an unbound one is no change.
pub fn bind_by_names(tx: &mut dyn Tx, scope: &Scope, instance_id: Uuid, requests: &[PortGroupNames], add: bool) -> OpResult<()> {
    let ports = instance_ports(tx, scope, instance_id)?;
    let mut plan: Vec<(usize, Uuid)> = Vec::new();
    for request in requests {
        let targets: Vec<usize> = match request.port_id {
            None => (0..ports.len()).collect(),
            Some(id) => vec![ports.iter().position(|p| p.id == id).ok_or_else(|| port_not_found(id))?],
        };
        for name in &request.names {
            let group = group_by_name(tx, scope, name)?;
            plan.extend(targets.iter().map(|&i| (i, group)));
        }
    }
    for (i, port) in ports.iter().enumerate() {
        let mut groups = port.security_group_ids.clone();
        for &(_, group) in plan.iter().filter(|(target, _)| *target == i) {
            if add && !groups.contains(&group) {
                groups.push(group);
            } else if !add {
                groups.retain(|g| *g != group);
            }
        }
        if groups != port.security_group_ids {
            tx.set_port_groups(port.id, &groups)?;
        }
    }
    Ok(())
}

/// Binds `group_id` to every port of each instance (the legacy create's `instances`); an
/// instance without ports is a 404.
pub fn bind_to_instances(tx: &mut dyn Tx, scope: &Scope, group_id: Uuid, instances: &[Uuid]) -> OpResult<()> {
    for instance in instances {
        for port in instance_ports(tx, scope, *instance)? {
            if !port.security_group_ids.contains(&group_id) {
                let mut groups = port.security_group_ids.clone();
                groups.push(group_id);
                tx.set_port_groups(port.id, &groups)?;
            }
        }
    }
    Ok(())
}

/// #26: the groups bound to any port of the instance, in binding order: (id, name).
pub fn instance_groups(tx: &mut dyn Tx, scope: &Scope, instance_id: Uuid) -> OpResult<Vec<(Uuid, String)>> {
    let ports = instance_ports(tx, scope, instance_id)?;
    let mut ids = Vec::new();
    for id in ports.iter().flat_map(|p| p.security_group_ids.iter()) {
        if !ids.contains(id) {
            ids.push(*id);
        }
    }
    let groups = tx.groups_by_ids(&ids)?;
    Ok(ids.iter().filter_map(|id| groups.iter().find(|g| g.id == *id)).map(|g| (g.id, g.name.clone())).collect())
}

/// An instance using a group, with the ports through which it does.
#[derive(Debug, Clone)]
pub struct InstanceUse {
    pub instance_id: Uuid,
    pub instance_name: String,
    pub ports: Vec<Port>,
}

/// #21: instances whose ports use the group, in the order their first port was registered.
pub fn group_instances(tx: &mut dyn Tx, group_id: Uuid) -> OpResult<Vec<InstanceUse>> {
    let mut out: Vec<InstanceUse> = Vec::new();
    for port in tx.ports_in_groups(&[group_id])? {
        match out.iter_mut().find(|u| u.instance_id == port.instance_id) {
            Some(entry) => entry.ports.push(port),
            None => out.push(InstanceUse { instance_id: port.instance_id, instance_name: port.instance_name.clone(), ports: vec![port] }),
        }
    }
    Ok(out)
}

/// A group bound to a port cannot be deleted: 409 naming the ports and instances that use it.
pub fn check_group_unused(tx: &mut dyn Tx, group_id: Uuid) -> OpResult<()> {
    let users = group_instances(tx, group_id)?;
    if users.is_empty() {
        return Ok(());
    }
    let ports: Vec<String> = users.iter().flat_map(|u| u.ports.iter().map(|p| p.id.to_string())).collect();
    let instances: Vec<String> = users.iter().map(|u| u.instance_id.to_string()).collect();
    Err(OpError::Conflict {
        class: "SecurityGroupInUse",
        message: format!(
            "Security group {group_id} is in use by {} port(s) of {} instance(s): ports {}; instances {}",
            ports.len(),
            instances.len(),
            ports.join(", "),
            instances.join(", ")
        ),
        info: Some(json!({"ports": ports, "instances": instances})),
    })
}
