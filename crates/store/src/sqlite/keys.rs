//! SQLite: API keys (migrations 0001_init and 0004_roles).

use rusqlite::params;

use super::SqliteTx;
use crate::rows::{Columns, key_from_row, projects_text};
use crate::{ApiKey, KeyTx, NewApiKey, StoreResult, sql};

impl KeyTx for SqliteTx<'_> {
    fn insert_key(&mut self, new: &NewApiKey) -> StoreResult<i64> {
        let NewApiKey { token_hash, key } = new;
        // The store assigns the id, and a new key is active.
        let ApiKey { id: _, role, host, client_id, user_id, projects, name, created_at, revoked_at: _ } = key;
        let args = params![token_hash, client_id, user_id, projects_text(projects), name, created_at, role.as_str(), host];
        self.row(sql::INSERT_KEY, args, |r| r.column(0))
    }

    fn find_key(&mut self, token_hash: &str) -> StoreResult<Option<ApiKey>> {
        self.row_opt(sql::FIND_KEY, [token_hash], |r| key_from_row(r))
    }

    fn list_keys(&mut self) -> StoreResult<Vec<ApiKey>> {
        self.rows(sql::LIST_KEYS, [], |r| key_from_row(r))
    }

    fn revoke_key(&mut self, id: i64, now_ms: i64) -> StoreResult<bool> {
        Ok(self.execute(sql::REVOKE_KEY, params![id, now_ms])? > 0)
    }
}
