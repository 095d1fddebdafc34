//! PostgreSQL: the audit log (migrations/postgres/0005_audit.sql).

use postgres::types::ToSql;

use super::PgTx;
use super::conn::owned;
use crate::rows::{count_from_row, event_from_row};
use crate::sql::{self, AUDIT_COLUMNS};
use crate::{AuditEvent, AuditFilter, AuditTx, StoreResult};

impl AuditTx for PgTx<'_> {
    fn insert_audit(&mut self, event: &AuditEvent) -> StoreResult<()> {
        // Nobody reads the result: it goes with the transaction's next round trip.
        let e = event.clone();
        self.defer(
            sql::INSERT_AUDIT,
            owned![
                e.time,
                e.actor_key_id,
                e.actor_role,
                e.client_id,
                e.user_id,
                e.project_id,
                e.region_id,
                e.action,
                e.resource_type,
                e.resource_id,
                e.request_id,
                e.outcome,
                e.summary.to_string(),
            ],
        )
    }

    fn list_audit(&mut self, filter: &AuditFilter) -> StoreResult<(u64, Vec<AuditEvent>)> {
        let condition = "($1::bigint IS NULL OR client_id = $1)
            AND ($2::bigint[] IS NULL OR project_id IS NULL OR project_id = ANY($2))
            AND ($3::bigint IS NULL OR time >= $3)
            AND ($4::bigint IS NULL OR time <= $4)
            AND ($5::text IS NULL OR resource_id = $5)
            AND ($6::text IS NULL OR action = $6)";
        let filters: [&(dyn ToSql + Sync); 6] =
            [&filter.client_id, &filter.project_ids, &filter.since_ms, &filter.until_ms, &filter.resource_id, &filter.action];
        let count = self.row(&format!("SELECT COUNT(*) FROM audit_events WHERE {condition}"), &filters, count_from_row)?;
        let (limit, offset) = (i64::from(filter.limit), i64::try_from(filter.offset).unwrap_or(i64::MAX));
        let events = self.rows(
            &format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE {condition} ORDER BY time DESC, id DESC LIMIT $7 OFFSET $8"),
            &[&filters[..], &[&limit, &offset]].concat(),
            event_from_row,
        )?;
        Ok((count, events))
    }

    fn prune_audit(&mut self, before_ms: i64, limit: u32) -> StoreResult<u64> {
        self.execute(sql::PRUNE_AUDIT, &[&before_ms, &i64::from(limit)])
    }
}
