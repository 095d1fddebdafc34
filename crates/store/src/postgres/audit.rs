//! PostgreSQL: the audit log (migrations/postgres/0005_audit.sql).

use postgres::Row;
use serde_json::Value;

use super::{PgTx, bad_value, get};
use crate::{AuditEvent, AuditFilter, StoreResult};

const AUDIT_COLUMNS: &str = "id, time, actor_key_id, actor_role, client_id, user_id, project_id, region_id, action, resource_type, \
                             resource_id, request_id, outcome, summary";

fn event_from_row(row: &Row) -> StoreResult<AuditEvent> {
    let summary: String = get(row, 13)?;
    Ok(AuditEvent {
        id: get(row, 0)?,
        time: get(row, 1)?,
        actor_key_id: get(row, 2)?,
        actor_role: get(row, 3)?,
        client_id: get(row, 4)?,
        user_id: get(row, 5)?,
        project_id: get(row, 6)?,
        region_id: get(row, 7)?,
        action: get(row, 8)?,
        resource_type: get(row, 9)?,
        resource_id: get(row, 10)?,
        request_id: get(row, 11)?,
        outcome: get(row, 12)?,
        summary: serde_json::from_str::<Value>(&summary).map_err(|_| bad_value("audit summary", &summary))?,
    })
}

impl PgTx<'_> {
    pub(super) fn pg_insert_audit(&mut self, event: &AuditEvent) -> StoreResult<()> {
        self.execute(
            "INSERT INTO audit_events (time, actor_key_id, actor_role, client_id, user_id, project_id, region_id, action,
             resource_type, resource_id, request_id, outcome, summary)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            &[
                &event.time,
                &event.actor_key_id,
                &event.actor_role,
                &event.client_id,
                &event.user_id,
                &event.project_id,
                &event.region_id,
                &event.action,
                &event.resource_type,
                &event.resource_id,
                &event.request_id,
                &event.outcome,
                &event.summary.to_string(),
            ],
        )?;
        Ok(())
    }

    pub(super) fn pg_list_audit(&mut self, filter: &AuditFilter) -> StoreResult<(u64, Vec<AuditEvent>)> {
        let condition = "($1::bigint IS NULL OR client_id = $1)
            AND ($2::bigint[] IS NULL OR project_id IS NULL OR project_id = ANY($2))
            AND ($3::bigint IS NULL OR time >= $3)
            AND ($4::bigint IS NULL OR time <= $4)
            AND ($5::text IS NULL OR resource_id = $5)
            AND ($6::text IS NULL OR action = $6)";
        let count: i64 = get(
            &self.query_one(
                &format!("SELECT COUNT(*) FROM audit_events WHERE {condition}"),
                &[&filter.client_id, &filter.project_ids, &filter.since_ms, &filter.until_ms, &filter.resource_id, &filter.action],
            )?,
            0,
        )?;
        let limit = i64::from(filter.limit);
        let offset = i64::try_from(filter.offset).unwrap_or(i64::MAX);
        let rows = self.query(
            &format!("SELECT {AUDIT_COLUMNS} FROM audit_events WHERE {condition} ORDER BY time DESC, id DESC LIMIT $7 OFFSET $8"),
            &[
                &filter.client_id,
                &filter.project_ids,
                &filter.since_ms,
                &filter.until_ms,
                &filter.resource_id,
                &filter.action,
                &limit,
                &offset,
            ],
        )?;
        let events = rows.iter().map(event_from_row).collect::<StoreResult<Vec<_>>>()?;
        Ok((count as u64, events))
    }

    pub(super) fn pg_prune_audit(&mut self, before_ms: i64, limit: u32) -> StoreResult<u64> {
        self.execute(
            "DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE time < $1 ORDER BY time LIMIT $2)",
            &[&before_ms, &i64::from(limit)],
        )
    }
}
