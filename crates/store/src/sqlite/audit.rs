//! SQLite: the audit log (migration 0005_audit).

use rusqlite::params;

use super::SqliteTx;
use crate::rows::{count_from_row, event_from_row};
use crate::sql::{self, AUDIT_COLUMNS};
use crate::{AuditEvent, AuditFilter, AuditTx, StoreResult};

impl AuditTx for SqliteTx<'_> {
    fn insert_audit(&mut self, event: &AuditEvent) -> StoreResult<()> {
        self.execute(
            sql::INSERT_AUDIT,
            params![
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
            ],
        )?;
        Ok(())
    }

    fn list_audit(&mut self, filter: &AuditFilter) -> StoreResult<(u64, Vec<AuditEvent>)> {
        let projects = filter.project_ids.as_ref().map(|p| serde_json::to_string(p).expect("ints serialise"));
        let condition = "(?1 IS NULL OR client_id = ?1)
            AND (?2 IS NULL OR project_id IS NULL OR project_id IN (SELECT value FROM json_each(?2)))
            AND (?3 IS NULL OR time >= ?3)
            AND (?4 IS NULL OR time <= ?4)
            AND (?5 IS NULL OR resource_id = ?5)
            AND (?6 IS NULL OR action = ?6)";
        let filters = params![filter.client_id, projects, filter.since_ms, filter.until_ms, filter.resource_id, filter.action];
        let count = self.row(&format!("SELECT COUNT(*) FROM audit_events WHERE {condition}"), filters, |r| count_from_row(r))?;
        let offset = i64::try_from(filter.offset).unwrap_or(i64::MAX);
        let page: Vec<&dyn rusqlite::ToSql> = filters.iter().copied().chain([&filter.limit as &dyn rusqlite::ToSql, &offset]).collect();
        let events = self.rows(
            &format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE {condition} ORDER BY time DESC, id DESC LIMIT ?7 OFFSET ?8"),
            page.as_slice(),
            |r| event_from_row(r),
        )?;
        Ok((count, events))
    }

    fn prune_audit(&mut self, before_ms: i64, limit: u32) -> StoreResult<u64> {
        self.execute(sql::PRUNE_AUDIT, params![before_ms, limit])
    }
}
