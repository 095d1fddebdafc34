//! SQLite: export and import. Positions are rowids, which follow creation order.

use palisade_core::group::{Group, Scope};
use palisade_core::quota::Limits;
use rusqlite::params;

use super::SqliteTx;
use crate::rows::{Columns, key_and_hash_from_row, projects_text, quota_from_row, task_from_row};
use crate::sql::{self, GROUP_COLUMNS, TASK_COLUMNS};
use crate::{ApiKey, StoreResult, TaskRecord, TransferTx};

impl TransferTx for SqliteTx<'_> {
    fn export_groups(&mut self, after: i64, limit: u32) -> StoreResult<Vec<(i64, Group)>> {
        self.positioned_groups(
            &format!("SELECT rowid, {GROUP_COLUMNS} FROM security_groups WHERE rowid > ?1 ORDER BY rowid LIMIT ?2"),
            params![after, limit],
        )
    }

    fn export_tasks(&mut self, after: i64, limit: u32) -> StoreResult<Vec<(i64, TaskRecord)>> {
        self.rows(
            &format!("SELECT rowid, {TASK_COLUMNS} FROM tasks WHERE rowid > ?1 ORDER BY rowid LIMIT ?2"),
            params![after, limit],
            |r| Ok((r.column(0)?, task_from_row(r, 1)?)),
        )
    }

    fn export_keys(&mut self) -> StoreResult<Vec<(ApiKey, String)>> {
        self.rows(sql::EXPORT_KEYS, [], |r| key_and_hash_from_row(r))
    }

    fn export_quotas(&mut self) -> StoreResult<Vec<(Scope, Limits)>> {
        self.rows(sql::EXPORT_QUOTAS, [], |r| quota_from_row(r))
    }

    fn import_key(&mut self, key: &ApiKey, token_hash: &str) -> StoreResult<()> {
        let ApiKey { id, role, host, client_id, user_id, projects, name, created_at, revoked_at } = key;
        let args = params![id, client_id, user_id, name, projects_text(projects), created_at, revoked_at, role.as_str(), host, token_hash];
        self.execute(sql::IMPORT_KEY, args)?;
        Ok(())
    }

    fn raise_policy_revision(&mut self, revision: i64) -> StoreResult<()> {
        self.execute("UPDATE policy_revision SET revision = MAX(revision, ?1) WHERE id = 1", [revision])?;
        self.execute("UPDATE host_revisions SET revision = ?1 WHERE revision < ?1", [revision])?;
        Ok(())
    }
}
