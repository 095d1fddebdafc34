//! PostgreSQL: ports, their bindings, the policy revision and agent reports
//! (migrations/postgres/0002_ports.sql).

use palisade_core::port::Port;
use postgres::types::ToSql;
use uuid::Uuid;

use super::PgTx;
use crate::rows::{Columns, agent_from_row, attach, id_pair_from_row, id_text, ids_text, ips_text, port_from_row};
use crate::sql::{self, PORT_COLUMNS};
use crate::{AgentRecord, PortFilter, PortTx, StoreResult};

impl PgTx<'_> {
    /// Ports of one query, completed with their bound groups (one more query, not one per port).
    fn whole_ports(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<Port>> {
        let mut ports = self.rows(sql, params, port_from_row)?;
        if ports.is_empty() {
            return Ok(ports);
        }
        let bindings = self.rows(
            "SELECT port_id, group_id FROM port_security_groups WHERE port_id = ANY($1::text[]) ORDER BY port_id, position",
            &[&ids_text(&ports.iter().map(|p| p.id).collect::<Vec<_>>())],
            id_pair_from_row,
        )?;
        attach(&mut ports, |p| p.id, bindings, |p, group| p.security_group_ids.push(group));
        Ok(ports)
    }
}

impl PortTx for PgTx<'_> {
    fn insert_port(&mut self, port: &Port) -> StoreResult<()> {
        let scope = &port.scope;
        self.execute(
            sql::INSERT_PORT,
            &[
                &id_text(port.id),
                &scope.client_id,
                &scope.project_id,
                &scope.region_id,
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
        self.set_port_groups(port.id, &port.security_group_ids)
    }

    fn update_port(&mut self, port: &Port) -> StoreResult<()> {
        let mac = port.mac.to_string();
        self.execute(
            sql::UPDATE_PORT,
            &[&id_text(port.id), &port.instance_name, &port.host, &port.device, &mac, &ips_text(port), &port.updated_at],
        )?;
        Ok(())
    }

    fn set_port_groups(&mut self, port_id: Uuid, group_ids: &[Uuid]) -> StoreResult<()> {
        let id = id_text(port_id);
        self.execute(sql::DELETE_PORT_GROUPS, &[&id])?;
        for (position, group) in group_ids.iter().enumerate() {
            self.execute(sql::INSERT_PORT_GROUP, &[&id, &id_text(*group), &(position as i32)])?;
        }
        Ok(())
    }

    fn get_port(&mut self, client_id: Option<i64>, id: Uuid) -> StoreResult<Option<Port>> {
        let ports = self.whole_ports(
            &format!("SELECT {PORT_COLUMNS} FROM ports WHERE id = $1 AND ($2::bigint IS NULL OR client_id = $2)"),
            &[&id_text(id), &client_id],
        )?;
        Ok(ports.into_iter().next())
    }

    fn list_ports(&mut self, client_id: Option<i64>, filter: &PortFilter) -> StoreResult<Vec<Port>> {
        self.whole_ports(
            &format!(
                "SELECT {PORT_COLUMNS} FROM ports WHERE ($1::bigint IS NULL OR client_id = $1) AND ($2::bigint IS NULL OR project_id = $2)
                 AND ($3::bigint IS NULL OR region_id = $3) AND ($4::text IS NULL OR host = $4)
                 AND ($5::text IS NULL OR instance_id = $5) ORDER BY seq"
            ),
            &[&client_id, &filter.project_id, &filter.region_id, &filter.host, &filter.instance_id.map(id_text)],
        )
    }

    fn delete_port(&mut self, client_id: Option<i64>, id: Uuid) -> StoreResult<bool> {
        Ok(self.execute("DELETE FROM ports WHERE id = $1 AND ($2::bigint IS NULL OR client_id = $2)", &[&id_text(id), &client_id])? > 0)
    }

    fn lock_host(&mut self, host: &str) -> StoreResult<()> {
        // Port writers of one host, on any node, queue here until the holder's transaction ends.
        self.query_one("SELECT pg_advisory_xact_lock(hashtextextended('palisade-host/' || $1::text, 0))", &[&host])?;
        Ok(())
    }

    fn ports_in_groups(&mut self, group_ids: &[Uuid]) -> StoreResult<Vec<Port>> {
        if group_ids.is_empty() {
            return Ok(Vec::new());
        }
        self.whole_ports(
            &format!(
                "SELECT {PORT_COLUMNS} FROM ports WHERE id IN
                 (SELECT port_id FROM port_security_groups WHERE group_id = ANY($1::text[])) ORDER BY seq"
            ),
            &[&ids_text(group_ids)],
        )
    }

    fn policy_revision(&mut self) -> StoreResult<i64> {
        self.row(sql::POLICY_REVISION, &[], |r| r.column(0))
    }

    fn report_agent(&mut self, agent: &AgentRecord) -> StoreResult<()> {
        self.execute(sql::REPORT_AGENT, &[&agent.host, &agent.applied_revision, &agent.reported_at])?;
        Ok(())
    }

    fn list_agents(&mut self) -> StoreResult<Vec<AgentRecord>> {
        // Byte order, as SQLite sorts, whatever the database's collation.
        self.rows("SELECT host, applied_revision, reported_at FROM agents ORDER BY host COLLATE \"C\"", &[], agent_from_row)
    }
}
