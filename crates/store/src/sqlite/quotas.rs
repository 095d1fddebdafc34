//! SQLite: per-scope quota limits (migration 0003_quotas).

use palisade_core::group::Scope;
use palisade_core::quota::Limits;
use rusqlite::params;

use super::SqliteTx;
use crate::rows::limits_from_row;
use crate::{QuotaTx, StoreResult, sql};

impl QuotaTx for SqliteTx<'_> {
    fn lock_scope(&mut self, _scope: &Scope) -> StoreResult<()> {
        // Write transactions are BEGIN IMMEDIATE on one connection: already serialised.
        Ok(())
    }

    fn get_quota(&mut self, scope: &Scope) -> StoreResult<Option<Limits>> {
        self.row_opt(sql::GET_QUOTA, params![scope.client_id, scope.project_id, scope.region_id], |r| limits_from_row(r, 0))
    }

    fn set_quota(&mut self, scope: &Scope, limits: &Limits) -> StoreResult<()> {
        let args = params![scope.client_id, scope.project_id, scope.region_id, limits.security_groups, limits.security_group_rules];
        self.execute(sql::SET_QUOTA, args)?;
        Ok(())
    }
}
