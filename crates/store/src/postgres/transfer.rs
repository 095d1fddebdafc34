//! PostgreSQL: export and import. Positions are the `seq` columns, which follow creation order.

use palisade_core::group::{Group, Scope};
use palisade_core::quota::Limits;

use super::PgTx;
use crate::rows::{Columns, key_and_hash_from_row, projects_text, quota_from_row, task_from_row};
use crate::sql::{self, GROUP_COLUMNS, TASK_COLUMNS};
use crate::{ApiKey, StoreResult, TaskRecord, TransferTx};

impl TransferTx for PgTx<'_> {
    fn export_groups(&mut self, after: i64, limit: u32) -> StoreResult<Vec<(i64, Group)>> {
        self.positioned_groups(
            &format!("SELECT seq, {GROUP_COLUMNS} FROM security_groups WHERE seq > $1 ORDER BY seq LIMIT $2"),
            &[&after, &i64::from(limit)],
        )
    }

    fn export_tasks(&mut self, after: i64, limit: u32) -> StoreResult<Vec<(i64, TaskRecord)>> {
        self.rows(
            &format!("SELECT seq, {TASK_COLUMNS} FROM tasks WHERE seq > $1 ORDER BY seq LIMIT $2"),
            &[&after, &i64::from(limit)],
            |r| Ok((r.column(0)?, task_from_row(r, 1)?)),
        )
    }

    fn export_keys(&mut self) -> StoreResult<Vec<(ApiKey, String)>> {
        self.rows(sql::EXPORT_KEYS, &[], key_and_hash_from_row)
    }

    fn export_quotas(&mut self) -> StoreResult<Vec<(Scope, Limits)>> {
        self.rows(sql::EXPORT_QUOTAS, &[], quota_from_row)
    }

    fn import_key(&mut self, key: &ApiKey, token_hash: &str) -> StoreResult<()> {
        let ApiKey { id, role, host, client_id, user_id, projects, name, created_at, revoked_at } = key;
        let args: [&(dyn postgres::types::ToSql + Sync); 10] =
            [id, client_id, user_id, name, &projects_text(projects), created_at, revoked_at, &role.as_str(), host, &token_hash];
        self.execute(sql::IMPORT_KEY, &args)?;
        // Keys created later must not collide with the imported ids.
        self.query_one("SELECT setval(pg_get_serial_sequence('api_keys', 'id'), (SELECT MAX(id) FROM api_keys))", &[])?;
        Ok(())
    }

    fn raise_policy_revision(&mut self, revision: i64) -> StoreResult<()> {
        self.query_one("SELECT setval('policy_revision_seq', GREATEST((SELECT last_value FROM policy_revision_seq), $1))", &[&revision])?;
        self.execute("UPDATE host_revisions SET revision = $1 WHERE revision < $1", &[&revision])?;
        Ok(())
    }
}
