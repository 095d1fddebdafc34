//! PostgreSQL: ports, their bindings, the policy revision and agent reports
//! (migrations/postgres/0002_ports.sql).

use std::collections::HashMap;
use std::net::IpAddr;

use palisade_core::group::{Group, Scope};
use palisade_core::port::Port;
use postgres::Row;
use uuid::Uuid;

use super::{GROUP_COLUMNS, PgTx, bad_value, get, group_from_row, id_text, parse_uuid};
use crate::{AgentRecord, PortFilter, StoreResult};

const PORT_COLUMNS: &str =
    "id, client_id, project_id, region_id, instance_id, instance_name, host, device, mac, fixed_ips, created_at, updated_at";

fn port_from_row(row: &Row) -> StoreResult<Port> {
    let id: String = get(row, 0)?;
    let instance: String = get(row, 4)?;
    let mac: String = get(row, 8)?;
    let ips: String = get(row, 9)?;
    Ok(Port {
        id: parse_uuid(&id)?,
        scope: Scope { client_id: get(row, 1)?, project_id: get(row, 2)?, region_id: get(row, 3)? },
        instance_id: parse_uuid(&instance)?,
        instance_name: get(row, 5)?,
        host: get(row, 6)?,
        device: get(row, 7)?,
        mac: mac.parse().map_err(|_| bad_value("mac", &mac))?,
        fixed_ips: serde_json::from_str::<Vec<IpAddr>>(&ips).map_err(|_| bad_value("fixed_ips", &ips))?,
        security_group_ids: Vec::new(),
        created_at: get(row, 10)?,
        updated_at: get(row, 11)?,
    })
}

fn ips_text(port: &Port) -> String {
    serde_json::to_string(&port.fixed_ips).expect("addresses serialise")
}

impl PgTx<'_> {
    fn attach_port_groups(&mut self, ports: &mut [Port]) -> StoreResult<()> {
        if ports.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = ports.iter().map(|p| id_text(p.id)).collect();
        let index: HashMap<Uuid, usize> = ports.iter().enumerate().map(|(i, p)| (p.id, i)).collect();
        let rows = self.query(
            "SELECT port_id, group_id FROM port_security_groups WHERE port_id = ANY($1::text[]) ORDER BY port_id, position",
            &[&ids],
        )?;
        for row in &rows {
            let port: String = get(row, 0)?;
            let group: String = get(row, 1)?;
            if let Some(&i) = index.get(&parse_uuid(&port)?) {
                ports[i].security_group_ids.push(parse_uuid(&group)?);
            }
        }
        Ok(())
    }

    fn ports_from(&mut self, rows: &[Row]) -> StoreResult<Vec<Port>> {
        let mut ports = rows.iter().map(port_from_row).collect::<StoreResult<Vec<_>>>()?;
        self.attach_port_groups(&mut ports)?;
        Ok(ports)
    }

    pub(super) fn pg_insert_port(&mut self, port: &Port) -> StoreResult<()> {
        self.execute(
            &format!("INSERT INTO ports ({PORT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"),
            &[
                &id_text(port.id),
                &port.scope.client_id,
                &port.scope.project_id,
                &port.scope.region_id,
                &id_text(port.instance_id),
                &port.instance_name,
                &port.host,
                &port.device,
                &port.mac.to_string(),
                &ips_text(port),
                &port.created_at,
                &port.updated_at,
            ],
        )?;
        self.pg_set_port_groups(port.id, &port.security_group_ids)
    }

    pub(super) fn pg_update_port(&mut self, port: &Port) -> StoreResult<()> {
        self.execute(
            "UPDATE ports SET instance_name = $2, host = $3, device = $4, mac = $5, fixed_ips = $6, updated_at = $7 WHERE id = $1",
            &[&id_text(port.id), &port.instance_name, &port.host, &port.device, &port.mac.to_string(), &ips_text(port), &port.updated_at],
        )?;
        Ok(())
    }

    pub(super) fn pg_set_port_groups(&mut self, port_id: Uuid, group_ids: &[Uuid]) -> StoreResult<()> {
        let id = id_text(port_id);
        self.execute("DELETE FROM port_security_groups WHERE port_id = $1", &[&id])?;
        for (position, group) in group_ids.iter().enumerate() {
            self.execute(
                "INSERT INTO port_security_groups (port_id, group_id, position) VALUES ($1, $2, $3)",
                &[&id, &id_text(*group), &(position as i32)],
            )?;
        }
        Ok(())
    }

    pub(super) fn pg_get_port(&mut self, client_id: Option<i64>, id: Uuid) -> StoreResult<Option<Port>> {
        let rows = self.query(
            &format!("SELECT {PORT_COLUMNS} FROM ports WHERE id = $1 AND ($2::bigint IS NULL OR client_id = $2)"),
            &[&id_text(id), &client_id],
        )?;
        Ok(self.ports_from(&rows)?.into_iter().next())
    }

    pub(super) fn pg_list_ports(&mut self, client_id: Option<i64>, filter: &PortFilter) -> StoreResult<Vec<Port>> {
        let rows = self.query(
            &format!(
                "SELECT {PORT_COLUMNS} FROM ports WHERE ($1::bigint IS NULL OR client_id = $1) AND ($2::bigint IS NULL OR project_id = $2)
                 AND ($3::bigint IS NULL OR region_id = $3) AND ($4::text IS NULL OR host = $4)
                 AND ($5::text IS NULL OR instance_id = $5) ORDER BY seq"
            ),
            &[&client_id, &filter.project_id, &filter.region_id, &filter.host, &filter.instance_id.map(id_text)],
        )?;
        self.ports_from(&rows)
    }

    pub(super) fn pg_delete_port(&mut self, client_id: Option<i64>, id: Uuid) -> StoreResult<bool> {
        Ok(self.execute("DELETE FROM ports WHERE id = $1 AND ($2::bigint IS NULL OR client_id = $2)", &[&id_text(id), &client_id])? > 0)
    }

    pub(super) fn pg_ports_in_groups(&mut self, group_ids: &[Uuid]) -> StoreResult<Vec<Port>> {
        if group_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = group_ids.iter().map(|id| id_text(*id)).collect();
        let rows = self.query(
            &format!(
                "SELECT {PORT_COLUMNS} FROM ports WHERE id IN
                 (SELECT port_id FROM port_security_groups WHERE group_id = ANY($1::text[])) ORDER BY seq"
            ),
            &[&ids],
        )?;
        self.ports_from(&rows)
    }

    pub(super) fn pg_groups_by_ids(&mut self, ids: &[Uuid]) -> StoreResult<Vec<Group>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = ids.iter().map(|id| id_text(*id)).collect();
        let rows = self.query(&format!("SELECT {GROUP_COLUMNS} FROM security_groups WHERE id = ANY($1::text[]) ORDER BY seq"), &[&ids])?;
        let mut groups = rows.iter().map(|row| group_from_row(row, 0)).collect::<StoreResult<Vec<_>>>()?;
        self.attach_children(&mut groups)?;
        Ok(groups)
    }

    pub(super) fn pg_policy_revision(&mut self) -> StoreResult<i64> {
        get(&self.query_one("SELECT revision FROM policy_revision WHERE id = 1", &[])?, 0)
    }

    pub(super) fn pg_report_agent(&mut self, agent: &AgentRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO agents (host, applied_revision, reported_at) VALUES ($1, $2, $3)
             ON CONFLICT (host) DO UPDATE SET applied_revision = EXCLUDED.applied_revision, reported_at = EXCLUDED.reported_at",
            &[&agent.host, &agent.applied_revision, &agent.reported_at],
        )?;
        Ok(())
    }

    pub(super) fn pg_list_agents(&mut self) -> StoreResult<Vec<AgentRecord>> {
        let rows = self.query("SELECT host, applied_revision, reported_at FROM agents ORDER BY host COLLATE \"C\"", &[])?;
        rows.iter().map(|r| Ok(AgentRecord { host: get(r, 0)?, applied_revision: get(r, 1)?, reported_at: get(r, 2)? })).collect()
    }
}
