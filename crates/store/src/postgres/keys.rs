//! PostgreSQL: API keys (migrations/postgres/0001_init.sql, 0004_roles.sql).

use super::PgTx;
use crate::rows::{Columns, key_from_row, projects_text};
use crate::{ApiKey, KeyTx, NewApiKey, StoreResult, sql};

impl KeyTx for PgTx<'_> {
    fn insert_key(&mut self, new: &NewApiKey) -> StoreResult<i64> {
        let NewApiKey { token_hash, key } = new;
        // The store assigns the id, and a new key is active.
        let ApiKey { id: _, role, host, client_id, user_id, projects, name, created_at, revoked_at: _ } = key;
        let args: [&(dyn postgres::types::ToSql + Sync); 8] =
            [token_hash, client_id, user_id, &projects_text(projects), name, created_at, &role.as_str(), host];
        self.row(sql::INSERT_KEY, &args, |r| r.column(0))
    }

    fn find_key(&mut self, token_hash: &str) -> StoreResult<Option<ApiKey>> {
        self.row_opt(sql::FIND_KEY, &[&token_hash], key_from_row)
    }

    fn list_keys(&mut self) -> StoreResult<Vec<ApiKey>> {
        self.rows(sql::LIST_KEYS, &[], key_from_row)
    }

    fn revoke_key(&mut self, id: i64, now_ms: i64) -> StoreResult<bool> {
        Ok(self.execute(sql::REVOKE_KEY, &[&id, &now_ms])? > 0)
    }
}
