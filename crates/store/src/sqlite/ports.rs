//! SQLite: ports, their bindings, the policy revision and agent reports (migration 0002_ports).

use palisade_core::port::Port;
use rusqlite::params;
use uuid::Uuid;

use super::SqliteTx;
use super::groups::ids_json;
use crate::pending::HostRevision;
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

    /// Notes that the port `id` changes: its host's policy, and the members of its groups.
    fn port_changing(&mut self, id: &str) -> StoreResult<()> {
        let rows = self.rows(sql::PORT_HOST_AND_GROUPS, [id], |r| Ok((r.column::<String>(0)?, r.column::<Option<String>>(1)?)))?;
        for (host, group) in rows {
            self.pending.host_changed(&host);
            self.pending.members_changed(group);
        }
        Ok(())
    }

    /// Writes the transaction's usage changes and bumps its hosts (`crate::pending`).
    pub(super) fn flush_all(&mut self) -> StoreResult<()> {
        for ((client_id, project_id, region_id), (groups, rules)) in self.pending.take_usage() {
            self.execute(sql::ADD_USAGE, params![client_id, project_id, region_id, groups, rules])?;
        }
        self.flush_policy()?;
        Ok(())
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
        self.pending.host_changed(&port.host);
        self.set_port_groups(port.id, &port.security_group_ids)
    }

    fn update_port(&mut self, port: &Port) -> StoreResult<()> {
        self.port_changing(&id_text(port.id))?;
        self.pending.host_changed(&port.host);
        let mac = port.mac.to_string();
        self.execute(
            sql::UPDATE_PORT,
            params![id_text(port.id), port.instance_name, port.host, port.device, mac, ips_text(port), port.updated_at],
        )?;
        Ok(())
    }

    fn set_port_groups(&mut self, port_id: Uuid, group_ids: &[Uuid]) -> StoreResult<()> {
        let id = id_text(port_id);
        self.port_changing(&id)?;
        self.execute(sql::DELETE_PORT_GROUPS, [&id])?;
        {
            let mut insert = self.prepare(sql::INSERT_PORT_GROUP)?;
            for (position, group) in group_ids.iter().enumerate() {
                insert.execute(params![id, id_text(*group), position as i64])?;
            }
        }
        self.pending.members_changed(group_ids.iter().map(|g| id_text(*g)));
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
        self.port_changing(&id_text(id))?;
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
        self.row(sql::HIGHEST_REVISION, [], |r| r.column(0))
    }

    fn host_revision(&mut self, host: &str) -> StoreResult<i64> {
        Ok(self.row_opt(sql::HOST_REVISION, [host], |r| r.column(0))?.unwrap_or(0))
    }

    fn host_revisions(&mut self, hosts: &[String]) -> StoreResult<Vec<HostRevision>> {
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        self.rows(
            "SELECT host, revision FROM host_revisions WHERE host IN (SELECT value FROM json_each(?1))",
            [serde_json::Value::from(hosts.to_vec()).to_string()],
            |r| Ok((r.column(0)?, r.column(1)?)),
        )
    }

    fn flush_policy(&mut self) -> StoreResult<Vec<HostRevision>> {
        if !self.pending.touches_hosts() {
            return Ok(Vec::new());
        }
        let bulk = self.pending.is_bulk();
        let (groups, members, mut hosts) = self.pending.take_hosts();
        if bulk {
            hosts.extend(self.rows("SELECT DISTINCT host FROM ports", [], |r| r.column::<String>(0))?);
        } else if !groups.is_empty() || !members.is_empty() {
            let found = self.rows(
                "SELECT DISTINCT p.host FROM ports p JOIN port_security_groups b ON b.port_id = p.id
                 WHERE b.group_id IN (SELECT value FROM json_each(?1))
                 OR b.group_id IN (SELECT r.group_id FROM security_group_rules r WHERE r.remote_group_id IN (SELECT value FROM json_each(?2)))",
                params![serde_json::Value::from(groups).to_string(), serde_json::Value::from(members).to_string()],
                |r| r.column::<String>(0),
            )?;
            hosts.extend(found);
        }
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        // One writer: the counter row is no contention here, and each revision is above all before.
        let revision: i64 =
            self.row("UPDATE policy_revision SET revision = revision + 1 WHERE id = 1 RETURNING revision", [], |r| r.column(0))?;
        let mut bumped = Vec::with_capacity(hosts.len());
        {
            let mut upsert = self.prepare(
                "INSERT INTO host_revisions (host, revision) VALUES (?1, ?2) ON CONFLICT (host)
                 DO UPDATE SET revision = max(host_revisions.revision + 1, excluded.revision) RETURNING revision",
            )?;
            for host in hosts {
                // A host's revision only grows, even past the counter (an import raised it).
                let stored: i64 = upsert.query_row(params![host, revision], |r| r.get(0))?;
                bumped.push((host, stored));
            }
        }
        self.pending.bumped.extend(bumped.iter().cloned());
        Ok(bumped)
    }

    fn report_agent(&mut self, agent: &AgentRecord) -> StoreResult<()> {
        self.execute(sql::REPORT_AGENT, params![agent.host, agent.applied_revision, agent.reported_at])?;
        Ok(())
    }

    fn list_agents(&mut self) -> StoreResult<Vec<(AgentRecord, i64)>> {
        self.rows(
            "SELECT a.host, a.applied_revision, a.reported_at, coalesce(h.revision, 0) FROM agents a
             LEFT JOIN host_revisions h ON h.host = a.host ORDER BY a.host",
            [],
            |r| Ok((agent_from_row(r)?, r.column(3)?)),
        )
    }
}
