//! SQLite: ports, their bindings, the policy revision and agent reports (migration 0002_ports).

use std::collections::HashMap;
use std::net::IpAddr;

use palisade_core::group::{Group, Scope};
use palisade_core::port::Port;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::Value;
use uuid::Uuid;

use super::{GROUP_COLUMNS, SqliteTx, bad_value, group_from_row, id_text, parse_uuid};
use crate::{AgentRecord, PortFilter, StoreResult};

const PORT_COLUMNS: &str =
    "id, client_id, project_id, region_id, instance_id, instance_name, host, device, mac, fixed_ips, created_at, updated_at";

fn port_from_row(row: &Row) -> rusqlite::Result<Port> {
    let mac: String = row.get(8)?;
    let ips: String = row.get(9)?;
    Ok(Port {
        id: parse_uuid(row.get(0)?)?,
        scope: Scope { client_id: row.get(1)?, project_id: row.get(2)?, region_id: row.get(3)? },
        instance_id: parse_uuid(row.get(4)?)?,
        instance_name: row.get(5)?,
        host: row.get(6)?,
        device: row.get(7)?,
        mac: mac.parse().map_err(|_| bad_value("mac", &mac))?,
        fixed_ips: serde_json::from_str::<Vec<IpAddr>>(&ips).map_err(|_| bad_value("fixed_ips", &ips))?,
        security_group_ids: Vec::new(),
        created_at: row.get(10)?,
        updated_at: row.get(11)?,
    })
}

fn ips_text(port: &Port) -> String {
    serde_json::to_string(&port.fixed_ips).expect("addresses serialise")
}

fn ids_json(ids: &[Uuid]) -> String {
    Value::Array(ids.iter().map(|id| Value::String(id_text(*id))).collect()).to_string()
}

/// Fills in the bound groups of `ports` with one query.
fn attach_groups(conn: &Connection, ports: &mut [Port]) -> StoreResult<()> {
    if ports.is_empty() {
        return Ok(());
    }
    let ids = ids_json(&ports.iter().map(|p| p.id).collect::<Vec<_>>());
    let index: HashMap<Uuid, usize> = ports.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
    let mut stmt = conn.prepare_cached(
        "SELECT port_id, group_id FROM port_security_groups WHERE port_id IN (SELECT value FROM json_each(?1)) ORDER BY port_id, position",
    )?;
    let mut rows = stmt.query([&ids])?;
    while let Some(row) = rows.next()? {
        let port_id = parse_uuid(row.get(0)?)?;
        if let Some(&i) = index.get(&port_id) {
            ports[i].security_group_ids.push(parse_uuid(row.get(1)?)?);
        }
    }
    Ok(())
}

impl SqliteTx<'_> {
    pub(super) fn sqlite_insert_port(&mut self, port: &Port) -> StoreResult<()> {
        self.conn
            .prepare_cached(&format!("INSERT INTO ports ({PORT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"))?
            .execute(params![
                id_text(port.id),
                port.scope.client_id,
                port.scope.project_id,
                port.scope.region_id,
                id_text(port.instance_id),
                port.instance_name,
                port.host,
                port.device,
                port.mac.to_string(),
                ips_text(port),
                port.created_at,
                port.updated_at
            ])?;
        self.sqlite_set_port_groups(port.id, &port.security_group_ids)
    }

    pub(super) fn sqlite_update_port(&mut self, port: &Port) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "UPDATE ports SET instance_name = ?2, host = ?3, device = ?4, mac = ?5, fixed_ips = ?6, updated_at = ?7 WHERE id = ?1",
            )?
            .execute(params![
                id_text(port.id),
                port.instance_name,
                port.host,
                port.device,
                port.mac.to_string(),
                ips_text(port),
                port.updated_at
            ])?;
        Ok(())
    }

    pub(super) fn sqlite_set_port_groups(&mut self, port_id: Uuid, group_ids: &[Uuid]) -> StoreResult<()> {
        let id = id_text(port_id);
        self.conn.prepare_cached("DELETE FROM port_security_groups WHERE port_id = ?1")?.execute([&id])?;
        let mut stmt = self.conn.prepare_cached("INSERT INTO port_security_groups (port_id, group_id, position) VALUES (?1, ?2, ?3)")?;
        for (position, group) in group_ids.iter().enumerate() {
            stmt.execute(params![id, id_text(*group), position as i64])?;
        }
        Ok(())
    }

    pub(super) fn sqlite_get_port(&mut self, client_id: Option<i64>, id: Uuid) -> StoreResult<Option<Port>> {
        let mut stmt =
            self.conn.prepare_cached(&format!("SELECT {PORT_COLUMNS} FROM ports WHERE id = ?1 AND (?2 IS NULL OR client_id = ?2)"))?;
        let Some(port) = stmt.query_row(params![id_text(id), client_id], port_from_row).optional()? else { return Ok(None) };
        let mut ports = [port];
        attach_groups(self.conn, &mut ports)?;
        let [port] = ports;
        Ok(Some(port))
    }

    pub(super) fn sqlite_list_ports(&mut self, client_id: Option<i64>, filter: &PortFilter) -> StoreResult<Vec<Port>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {PORT_COLUMNS} FROM ports WHERE (?1 IS NULL OR client_id = ?1) AND (?2 IS NULL OR project_id = ?2)
             AND (?3 IS NULL OR region_id = ?3) AND (?4 IS NULL OR host = ?4) AND (?5 IS NULL OR instance_id = ?5) ORDER BY rowid"
        ))?;
        let mut ports = stmt
            .query_map(
                params![client_id, filter.project_id, filter.region_id, filter.host, filter.instance_id.map(id_text)],
                port_from_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        attach_groups(self.conn, &mut ports)?;
        Ok(ports)
    }

    pub(super) fn sqlite_delete_port(&mut self, client_id: Option<i64>, id: Uuid) -> StoreResult<bool> {
        let deleted = self
            .conn
            .prepare_cached("DELETE FROM ports WHERE id = ?1 AND (?2 IS NULL OR client_id = ?2)")?
            .execute(params![id_text(id), client_id])?;
        Ok(deleted > 0)
    }

    pub(super) fn sqlite_ports_in_groups(&mut self, group_ids: &[Uuid]) -> StoreResult<Vec<Port>> {
        if group_ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {PORT_COLUMNS} FROM ports WHERE id IN
             (SELECT port_id FROM port_security_groups WHERE group_id IN (SELECT value FROM json_each(?1))) ORDER BY rowid"
        ))?;
        let mut ports = stmt.query_map([ids_json(group_ids)], port_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        attach_groups(self.conn, &mut ports)?;
        Ok(ports)
    }

    pub(super) fn sqlite_groups_by_ids(&mut self, ids: &[Uuid]) -> StoreResult<Vec<Group>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {GROUP_COLUMNS} FROM security_groups WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY rowid"
        ))?;
        let mut groups = stmt.query_map([ids_json(ids)], group_from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        self.attach_children(&mut groups)?;
        Ok(groups)
    }

    pub(super) fn sqlite_policy_revision(&mut self) -> StoreResult<i64> {
        Ok(self.conn.prepare_cached("SELECT revision FROM policy_revision WHERE id = 1")?.query_row([], |r| r.get(0))?)
    }

    pub(super) fn sqlite_report_agent(&mut self, agent: &AgentRecord) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO agents (host, applied_revision, reported_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (host) DO UPDATE SET applied_revision = excluded.applied_revision, reported_at = excluded.reported_at",
            )?
            .execute(params![agent.host, agent.applied_revision, agent.reported_at])?;
        Ok(())
    }

    pub(super) fn sqlite_list_agents(&mut self) -> StoreResult<Vec<AgentRecord>> {
        let mut stmt = self.conn.prepare_cached("SELECT host, applied_revision, reported_at FROM agents ORDER BY host")?;
        let agents = stmt.query_map([], |r| Ok(AgentRecord { host: r.get(0)?, applied_revision: r.get(1)?, reported_at: r.get(2)? }))?;
        Ok(agents.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}
