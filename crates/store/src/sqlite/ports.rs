//! SQLite: ports, their bindings, the policy revision and agent reports (migration 0002_ports).

use palisade_core::port::Port;
use rusqlite::params;
use uuid::Uuid;

use super::SqliteTx;
use super::groups::ids_json;
use crate::rows::{Columns, agent_from_row, attach, id_pair_from_row, id_text, ips_text, port_from_row};
use crate::sql::{self, PORT_COLUMNS};
use crate::{AgentRecord, PortFilter, PortTx, StoreResult};

impl SqliteTx<'_> {
    /// Ports of one query, completed with their bound groups (one more query, not one per port).
    fn whole_ports(&self, sql: &str, params: impl rusqlite::Params) -> StoreResult<Vec<Port>> {
        let mut ports = self.rows(sql, params, |r| port_from_row(r))?;
        if ports.is_empty() {
            return Ok(ports);
        }
        let bindings = self.rows(
            "SELECT port_id, group_id FROM port_security_groups WHERE port_id IN (SELECT value FROM json_each(?1)) ORDER BY port_id, position",
            [ids_json(&ports.iter().map(|p| p.id).collect::<Vec<_>>())],
            |r| id_pair_from_row(r),
        )?;
        attach(&mut ports, |p| p.id, bindings, |p, group| p.security_group_ids.push(group));
        Ok(ports)
    }
}

impl PortTx for SqliteTx<'_> {
    fn insert_port(&mut self, port: &Port) -> StoreResult<()> {
        let scope = &port.scope;
        self.execute(
            sql::INSERT_PORT,
            params![
                id_text(port.id),
                scope.client_id,
                scope.project_id,
                scope.region_id,
                id_text(port.instance_id),
                port.instance_name,
                port.host,
                port.device,
                port.mac.to_string(),
                ips_text(port),
                port.created_at,
                port.updated_at
            ],
        )?;
        self.set_port_groups(port.id, &port.security_group_ids)
    }

    fn update_port(&mut self, port: &Port) -> StoreResult<()> {
        let mac = port.mac.to_string();
        self.execute(
            sql::UPDATE_PORT,
            params![id_text(port.id), port.instance_name, port.host, port.device, mac, ips_text(port), port.updated_at],
        )?;
        Ok(())
    }

    fn set_port_groups(&mut self, port_id: Uuid, group_ids: &[Uuid]) -> StoreResult<()> {
        let id = id_text(port_id);
        self.execute(sql::DELETE_PORT_GROUPS, [&id])?;
        let mut insert = self.prepare(sql::INSERT_PORT_GROUP)?;
        for (position, group) in group_ids.iter().enumerate() {
            insert.execute(params![id, id_text(*group), position as i64])?;
        }
        Ok(())
    }

    fn get_port(&mut self, client_id: Option<i64>, id: Uuid) -> StoreResult<Option<Port>> {
        let ports = self.whole_ports(
            &format!("SELECT {PORT_COLUMNS} FROM ports WHERE id = ?1 AND (?2 IS NULL OR client_id = ?2)"),
            params![id_text(id), client_id],
        )?;
        Ok(ports.into_iter().next())
    }

    fn list_ports(&mut self, client_id: Option<i64>, filter: &PortFilter) -> StoreResult<Vec<Port>> {
        self.whole_ports(
            &format!(
                "SELECT {PORT_COLUMNS} FROM ports WHERE (?1 IS NULL OR client_id = ?1) AND (?2 IS NULL OR project_id = ?2)
                 AND (?3 IS NULL OR region_id = ?3) AND (?4 IS NULL OR host = ?4) AND (?5 IS NULL OR instance_id = ?5) ORDER BY rowid"
            ),
            params![client_id, filter.project_id, filter.region_id, filter.host, filter.instance_id.map(id_text)],
        )
    }

    fn delete_port(&mut self, client_id: Option<i64>, id: Uuid) -> StoreResult<bool> {
        Ok(self.execute("DELETE FROM ports WHERE id = ?1 AND (?2 IS NULL OR client_id = ?2)", params![id_text(id), client_id])? > 0)
    }

    fn lock_host(&mut self, _host: &str) -> StoreResult<()> {
        // Write transactions are BEGIN IMMEDIATE on one connection: already serialised.
        Ok(())
    }

    fn ports_in_groups(&mut self, group_ids: &[Uuid]) -> StoreResult<Vec<Port>> {
        if group_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.whole_ports(
            &format!(
                "SELECT {PORT_COLUMNS} FROM ports WHERE id IN
                 (SELECT port_id FROM port_security_groups WHERE group_id IN (SELECT value FROM json_each(?1))) ORDER BY rowid"
            ),
            [ids_json(group_ids)],
        )
    }

    fn policy_revision(&mut self) -> StoreResult<i64> {
        self.row(sql::POLICY_REVISION, [], |r| r.column(0))
    }

    fn report_agent(&mut self, agent: &AgentRecord) -> StoreResult<()> {
        self.execute(sql::REPORT_AGENT, params![agent.host, agent.applied_revision, agent.reported_at])?;
        Ok(())
    }

    fn list_agents(&mut self) -> StoreResult<Vec<AgentRecord>> {
        self.rows("SELECT host, applied_revision, reported_at FROM agents ORDER BY host", [], |r| agent_from_row(r))
    }
}
