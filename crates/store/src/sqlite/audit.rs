//! SQLite: the audit log (migration 0005_audit).

use rusqlite::{Row, params};
use serde_json::Value;

use super::{SqliteTx, bad_value};
use crate::{AuditEvent, AuditFilter, StoreResult};

const AUDIT_COLUMNS: &str = "id, time, actor_key_id, actor_role, client_id, user_id, project_id, region_id, action, resource_type, \
                             resource_id, request_id, outcome, summary";

fn event_from_row(row: &Row) -> rusqlite::Result<AuditEvent> {
    let summary: String = row.get(13)?;
    Ok(AuditEvent {
        id: row.get(0)?,
        time: row.get(1)?,
        actor_key_id: row.get(2)?,
        actor_role: row.get(3)?,
        client_id: row.get(4)?,
        user_id: row.get(5)?,
        project_id: row.get(6)?,
        region_id: row.get(7)?,
        action: row.get(8)?,
        resource_type: row.get(9)?,
        resource_id: row.get(10)?,
        request_id: row.get(11)?,
        outcome: row.get(12)?,
        summary: serde_json::from_str::<Value>(&summary).map_err(|_| bad_value("audit summary", &summary))?,
    })
}

impl SqliteTx<'_> {
    pub(super) fn sqlite_insert_audit(&mut self, event: &AuditEvent) -> StoreResult<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO audit_events (time, actor_key_id, actor_role, client_id, user_id, project_id, region_id, action,
                 resource_type, resource_id, request_id, outcome, summary)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?
            .execute(params![
                event.time,
                event.actor_key_id,
                event.actor_role,
                event.client_id,
                event.user_id,
                event.project_id,
                event.region_id,
                event.action,
                event.resource_type,
                event.resource_id,
                event.request_id,
                event.outcome,
                event.summary.to_string()
            ])?;
        Ok(())
    }

    pub(super) fn sqlite_list_audit(&mut self, filter: &AuditFilter) -> StoreResult<(u64, Vec<AuditEvent>)> {
        let projects = filter.project_ids.as_ref().map(|p| serde_json::to_string(p).expect("ints serialise"));
        let condition = "(?1 IS NULL OR client_id = ?1)
            AND (?2 IS NULL OR project_id IS NULL OR project_id IN (SELECT value FROM json_each(?2)))
            AND (?3 IS NULL OR time >= ?3)
            AND (?4 IS NULL OR time <= ?4)
            AND (?5 IS NULL OR resource_id = ?5)
            AND (?6 IS NULL OR action = ?6)";
        let args = params![filter.client_id, projects, filter.since_ms, filter.until_ms, filter.resource_id, filter.action];
        let count: i64 =
            self.conn.prepare_cached(&format!("SELECT COUNT(*) FROM audit_events WHERE {condition}"))?.query_row(args, |r| r.get(0))?;
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE {condition} ORDER BY time DESC, id DESC LIMIT ?7 OFFSET ?8"
        ))?;
        let events = stmt
            .query_map(
                params![
                    filter.client_id,
                    projects,
                    filter.since_ms,
                    filter.until_ms,
                    filter.resource_id,
                    filter.action,
                    filter.limit,
                    i64::try_from(filter.offset).unwrap_or(i64::MAX)
                ],
                event_from_row,
            )?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok((count as u64, events))
    }

    pub(super) fn sqlite_prune_audit(&mut self, before_ms: i64, limit: u32) -> StoreResult<u64> {
        let deleted = self
            .conn
            .prepare_cached("DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE time < ?1 ORDER BY time LIMIT ?2)")?
            .execute(params![before_ms, limit])?;
        Ok(deleted as u64)
    }
}
