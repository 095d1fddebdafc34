//! PostgreSQL: ports, their bindings, the policy revision and agent reports
//! (migrations/postgres/0002_ports.sql).

use palisade_core::port::Port;
use postgres::types::ToSql;
use uuid::Uuid;

use super::conn::owned;
use super::{POLICY_CHANNEL, PgTx};
use crate::pending::{HostRevision, notification};
use crate::rows::{Columns, agent_from_row, attach, id_pair_from_row, id_text, ids_text, ips_text, port_from_row};
use crate::sql::{self, PORT_COLUMNS};

/// A port's bindings in one statement, one array per column.
const INSERT_PORT_GROUPS: &str =
    "INSERT INTO port_security_groups (port_id, group_id, position) SELECT $1, g, p FROM unnest($2::text[], $3::int[]) AS b(g, p)";
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

    /// Notes that the port `id` changes: its host's policy, and the members of its groups.
    fn port_changing(&mut self, id: &str) -> StoreResult<()> {
        let rows = self.query(sql::PORT_HOST_AND_GROUPS, &[&id])?;
        for row in rows {
            let host: String = row.column(0)?;
            self.pending.host_changed(&host);
            if let Some(group) = row.column::<Option<String>>(1)? {
                self.pending.members.insert(group);
            }
        }
        Ok(())
    }

    /// Writes the transaction's usage changes and bumps its hosts (`crate::pending`).
    pub(super) fn flush_all(&mut self) -> StoreResult<()> {
        for ((client_id, project_id, region_id), (groups, rules)) in self.pending.take_usage() {
            self.defer(sql::ADD_USAGE, owned![client_id, project_id, region_id, groups, rules])?;
        }
        self.flush_policy()?;
        Ok(())
    }
}

impl PortTx for PgTx<'_> {
    fn insert_port(&mut self, port: &Port) -> StoreResult<()> {
        let scope = &port.scope;
        // A new port: nothing to look up before it, so the port and its bindings are queued.
        self.defer(
            sql::INSERT_PORT,
            owned![
                id_text(port.id),
                scope.client_id,
                scope.project_id,
                scope.region_id,
                id_text(port.instance_id),
                port.instance_name.clone(),
                port.host.clone(),
                port.device.clone(),
                port.mac.to_string(),
                ips_text(port),
                port.created_at,
                port.updated_at,
            ],
        )?;
        self.pending.host_changed(&port.host);
        let groups = ids_text(&port.security_group_ids);
        let positions: Vec<i32> = (0..groups.len() as i32).collect();
        self.defer(INSERT_PORT_GROUPS, owned![id_text(port.id), groups.clone(), positions])?;
        self.pending.members_changed(groups);
        Ok(())
    }

    fn update_port(&mut self, port: &Port) -> StoreResult<()> {
        self.port_changing(&id_text(port.id))?;
        self.pending.host_changed(&port.host);
        let mac = port.mac.to_string();
        self.execute(
            sql::UPDATE_PORT,
            &[&id_text(port.id), &port.instance_name, &port.host, &port.device, &mac, &ips_text(port), &port.updated_at],
        )?;
        Ok(())
    }

    fn set_port_groups(&mut self, port_id: Uuid, group_ids: &[Uuid]) -> StoreResult<()> {
        let id = id_text(port_id);
        self.port_changing(&id)?;
        self.execute(sql::DELETE_PORT_GROUPS, &[&id])?;
        let groups = ids_text(group_ids);
        let positions: Vec<i32> = (0..group_ids.len() as i32).collect();
        self.execute(INSERT_PORT_GROUPS, &[&id, &groups, &positions])?;
        self.pending.members_changed(groups);
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
        self.port_changing(&id_text(id))?;
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
        self.row(sql::HIGHEST_REVISION, &[], |r| r.column(0))
    }

    fn host_revision(&mut self, host: &str) -> StoreResult<i64> {
        Ok(self.row_opt(sql::HOST_REVISION, &[&host], |r| r.column(0))?.unwrap_or(0))
    }

    fn host_revisions(&mut self, hosts: &[String]) -> StoreResult<Vec<HostRevision>> {
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        self.rows("SELECT host, revision FROM host_revisions WHERE host = ANY($1::text[])", &[&hosts], |r| Ok((r.column(0)?, r.column(1)?)))
    }

    fn flush_policy(&mut self) -> StoreResult<Vec<HostRevision>> {
        if !self.pending.touches_hosts() {
            return Ok(Vec::new());
        }
        let bulk = self.pending.is_bulk();
        let (groups, members, mut hosts) = self.pending.take_hosts();
        if bulk {
            for row in self.query("SELECT DISTINCT host FROM ports", &[])? {
                hosts.insert(row.column(0)?);
            }
        } else if !groups.is_empty() || !members.is_empty() {
            let rows = self.query(
                "SELECT DISTINCT p.host FROM ports p JOIN port_security_groups b ON b.port_id = p.id
                 WHERE b.group_id = ANY($1::text[])
                 OR b.group_id IN (SELECT r.group_id FROM security_group_rules r WHERE r.remote_group_id = ANY($2::text[]))",
                &[&groups, &members],
            )?;
            for row in rows {
                hosts.insert(row.column(0)?);
            }
        }
        if hosts.is_empty() {
            return Ok(Vec::new());
        }
        // One revision from the sequence for all of them (no row every writer locks). A host
        // row is locked from here to COMMIT, by writers of that host only; sorted, so two
        // transactions bumping overlapping hosts lock them in one order. A newer revision may
        // already be committed for a host (a transaction that drew later and committed first):
        // the host then gets one past it, so a host's revision only grows.
        let hosts: Vec<String> = hosts.into_iter().collect();
        let bumped: Vec<HostRevision> = self.rows(
            "INSERT INTO host_revisions AS h (host, revision)
             SELECT host, (SELECT nextval('policy_revision_seq')) FROM unnest($1::text[]) AS u(host) ORDER BY host
             ON CONFLICT (host) DO UPDATE SET revision = GREATEST(h.revision + 1, excluded.revision)
             RETURNING host, revision",
            &[&hosts],
            |r| Ok((r.column(0)?, r.column(1)?)),
        )?;
        // Delivered at commit, to every node's listener.
        self.defer("SELECT pg_notify($1, $2)", owned![POLICY_CHANNEL, notification(&bumped)])?;
        self.pending.bumped.extend(bumped.iter().cloned());
        Ok(bumped)
    }

    fn report_agent(&mut self, agent: &AgentRecord) -> StoreResult<()> {
        self.defer(sql::REPORT_AGENT, owned![agent.host.clone(), agent.applied_revision, agent.reported_at])
    }

    fn list_agents(&mut self) -> StoreResult<Vec<(AgentRecord, i64)>> {
        // Byte order, as SQLite sorts, whatever the database's collation.
        self.rows(
            "SELECT a.host, a.applied_revision, a.reported_at, coalesce(h.revision, 0) FROM agents a
             LEFT JOIN host_revisions h ON h.host = a.host ORDER BY a.host COLLATE \"C\"",
            &[],
            |r| Ok((agent_from_row(r)?, r.column(3)?)),
        )
    }
}
