//! PostgreSQL: per-scope quota limits (migrations/postgres/0003_quotas.sql) and the scope lock.

use palisade_core::group::Scope;
use palisade_core::quota::Limits;

use super::PgTx;
use crate::rows::limits_from_row;
use crate::{QuotaTx, StoreResult, sql};

/// The advisory lock key of a scope, from three SQL expressions of type bigint: one spelling for
/// [`QuotaTx::lock_scope`] and the worker's claim (`postgres/tasks.rs`), so both take one lock.
pub(super) fn scope_lock_key(client_id: &str, project_id: &str, region_id: &str) -> String {
    format!("hashtextextended('palisade-scope/' || {client_id} || '/' || {project_id} || '/' || {region_id}, 0)")
}

impl QuotaTx for PgTx<'_> {
    fn lock_scope(&mut self, scope: &Scope) -> StoreResult<()> {
        // Taken already in this transaction (the worker's claim takes it before the task runs):
        // advisory locks are re-entrant, so asking again would only cost a round trip.
        if self.locked_scopes.contains(scope) {
            return Ok(());
        }
        // Writers of one scope, on any node, queue here until the holder's transaction ends, or
        // for `lock_timeout` at most (SQLSTATE 55P03: 503), so a hung holder costs a short wait.
        let key = scope_lock_key("$1::bigint", "$2::bigint", "$3::bigint");
        self.query_one(&format!("SELECT pg_advisory_xact_lock({key})"), &[&scope.client_id, &scope.project_id, &scope.region_id])?;
        self.locked_scopes.push(*scope);
        Ok(())
    }

    fn get_quota(&mut self, scope: &Scope) -> StoreResult<Option<Limits>> {
        self.row_opt(sql::GET_QUOTA, &[&scope.client_id, &scope.project_id, &scope.region_id], |r| limits_from_row(r, 0))
    }

    fn set_quota(&mut self, scope: &Scope, limits: &Limits) -> StoreResult<()> {
        let args: [&(dyn postgres::types::ToSql + Sync); 5] =
            [&scope.client_id, &scope.project_id, &scope.region_id, &limits.security_groups, &limits.security_group_rules];
        self.execute(sql::SET_QUOTA, &args)?;
        Ok(())
    }
}
