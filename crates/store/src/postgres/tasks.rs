//! PostgreSQL: the task queue (migrations/postgres/0001_init.sql, 0006_task_retention.sql).
//! Claims take `FOR UPDATE SKIP LOCKED` and inserts NOTIFY the other nodes (see the `postgres`
//! module for why the row lock is the lease). The worker claims one task per transaction with
//! [`claim_task`](TaskTx::claim_task), which only tries the task's scope lock, so that neither a
//! batch nor a waiting claim holds anything longer than one task.

use palisade_core::group::Scope;
use postgres::types::ToSql;

use super::conn::owned;
use super::quotas::scope_lock_key;
use super::{PgTx, TASK_CHANNEL};
use crate::pending::HostRevision;
use crate::rows::{Columns, count_from_row, hosts_json, json_text, merge_hosts, task_from_row};
use crate::sql::{self, TASK_COLUMNS};
use crate::{AckFilter, StoreResult, TaskClaim, TaskFilter, TaskRecord, TaskTx};

impl TaskTx for PgTx<'_> {
    fn insert_task(&mut self, task: &TaskRecord) -> StoreResult<()> {
        let t = task.clone();
        self.defer(
            sql::INSERT_TASK,
            owned![
                t.id,
                t.client_id,
                t.user_id,
                t.project_id,
                t.region_id,
                t.task_type,
                t.state.as_str(),
                t.request_id,
                json_text(&t.data),
                t.payload.to_string(),
                t.error,
                json_text(&t.created_resources),
                t.created_on,
                t.updated_on,
                t.finished_on,
                t.acknowledged_at,
                t.acknowledged_by,
            ],
        )?;
        if !self.notified && !task.state.is_terminal() {
            // Delivered at commit, to every node's listener (ours included).
            self.defer_batch(&format!("NOTIFY {TASK_CHANNEL}"));
            self.notified = true;
        }
        Ok(())
    }

    fn pending_tasks(&mut self, _now_ms: i64, limit: u32) -> StoreResult<Vec<TaskRecord>> {
        // The row locks are the lease: held until this transaction ends, released by PostgreSQL
        // when the connection of a dead node drops. Rows another node holds are skipped.
        let lock = if self.write { " FOR UPDATE SKIP LOCKED" } else { "" };
        self.rows(
            &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE state IN ('NEW', 'RUNNING') ORDER BY seq LIMIT $1{lock}"),
            &[&i64::from(limit)],
            |r| task_from_row(r, 0),
        )
    }

    fn claim_task(&mut self, skip: &[Scope]) -> StoreResult<Option<TaskClaim>> {
        // One round trip: the inner query locks the oldest free task row (SKIP LOCKED: rows of
        // other nodes' transactions are passed over), and only then is its scope's lock tried,
        // once, on that row. A scope held elsewhere is reported, never waited for.
        let key = scope_lock_key("client_id", "coalesce(project_id, 0)", "coalesce(region_id, 0)");
        let (clients, projects, regions): (Vec<i64>, Vec<i64>, Vec<i64>) =
            skip.iter().map(|s| (s.client_id, s.project_id, s.region_id)).collect();
        let claimed = self.row_opt(
            &format!(
                "SELECT pg_try_advisory_xact_lock({key}), {TASK_COLUMNS} FROM (
                     SELECT * FROM tasks WHERE state IN ('NEW', 'RUNNING')
                     AND NOT EXISTS (SELECT 1 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS busy(client_id, project_id, region_id)
                         WHERE busy.client_id = tasks.client_id AND busy.project_id = coalesce(tasks.project_id, 0)
                         AND busy.region_id = coalesce(tasks.region_id, 0))
                     ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED) claimed"
            ),
            &[&clients, &projects, &regions],
            |r| Ok((r.column::<bool>(0)?, task_from_row(r, 1)?)),
        )?;
        Ok(claimed.map(|(locked, task)| {
            if !locked {
                return TaskClaim::ScopeBusy(task);
            }
            let scope =
                Scope { client_id: task.client_id, project_id: task.project_id.unwrap_or(0), region_id: task.region_id.unwrap_or(0) };
            self.locked_scopes.push(scope);
            TaskClaim::Ready(task)
        }))
    }

    fn update_task(&mut self, task: &TaskRecord) -> StoreResult<()> {
        let TaskRecord { id, state, error, updated_on, finished_on, acknowledged_at, acknowledged_by, .. } = task.clone();
        let resources = json_text(&task.created_resources);
        self.defer(
            sql::UPDATE_TASK,
            owned![id, state.as_str(), error, resources, updated_on, finished_on, acknowledged_at, acknowledged_by],
        )
    }

    fn set_task_policy_hosts(&mut self, id: &str, hosts: &[HostRevision]) -> StoreResult<()> {
        self.defer(sql::SET_TASK_POLICY_HOSTS, owned![id.to_string(), hosts_json(hosts)])
    }

    fn task_policy_hosts(&mut self, client_id: i64, ids: &[String]) -> StoreResult<Vec<HostRevision>> {
        let lists = self.rows(
            "SELECT policy_hosts FROM tasks WHERE client_id = $1 AND id = ANY($2::text[]) AND policy_hosts IS NOT NULL",
            &[&client_id, &ids],
            |r| r.column::<String>(0),
        )?;
        merge_hosts(&lists)
    }

    fn get_task(&mut self, client_id: i64, id: &str) -> StoreResult<Option<TaskRecord>> {
        self.row_opt(sql::GET_TASK, &[&id, &client_id], |r| task_from_row(r, 0))
    }

    fn list_tasks(&mut self, client_id: i64, filter: &TaskFilter) -> StoreResult<(u64, Vec<TaskRecord>)> {
        let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        let condition = "client_id = $1
            AND (cardinality($2::bigint[]) = 0 OR project_id = ANY($2))
            AND (cardinality($3::bigint[]) = 0 OR region_id = ANY($3))
            AND (cardinality($4::text[]) = 0 OR state = ANY($4))
            AND ($5::text IS NULL OR task_type = $5)
            AND ($6::boolean IS NULL OR (acknowledged_at IS NOT NULL) = $6)
            AND ($7::bigint IS NULL OR created_on >= $7)
            AND ($8::bigint IS NULL OR created_on <= $8)";
        let filters: [&(dyn ToSql + Sync); 8] = [
            &client_id,
            &filter.project_ids,
            &filter.region_ids,
            &states,
            &filter.task_type,
            &filter.is_acknowledged,
            &filter.from_ms,
            &filter.to_ms,
        ];
        let count = self.row(&format!("SELECT COUNT(*) FROM tasks WHERE {condition}"), &filters, count_from_row)?;
        let order = if filter.ascending { "ASC" } else { "DESC" };
        let (limit, offset) = (i64::from(filter.limit), i64::try_from(filter.offset).unwrap_or(i64::MAX));
        let tasks = self.rows(
            &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE {condition} ORDER BY created_on {order}, seq {order} LIMIT $9 OFFSET $10"),
            &[&filters[..], &[&limit, &offset]].concat(),
            |r| task_from_row(r, 0),
        )?;
        Ok((count, tasks))
    }

    fn acknowledge_tasks(&mut self, client_id: i64, scope: &AckFilter, user_id: i64, now_ms: i64) -> StoreResult<u64> {
        self.execute(
            "UPDATE tasks SET acknowledged_at = $5, acknowledged_by = $6
             WHERE client_id = $1 AND acknowledged_at IS NULL
             AND ($2::bigint IS NULL OR project_id = $2) AND ($3::bigint IS NULL OR region_id = $3)
             AND ($4::text[] IS NULL OR id = ANY($4))",
            &[&client_id, &scope.project_id, &scope.region_id, &scope.task_ids, &now_ms, &user_id],
        )
    }

    fn count_open_tasks(&mut self, client_id: i64) -> StoreResult<u64> {
        self.row(sql::COUNT_OPEN_TASKS, &[&client_id], count_from_row)
    }

    fn prune_tasks(&mut self, finished_before_ms: i64, acknowledged_before_ms: i64, limit: u32) -> StoreResult<u64> {
        self.execute(
            "DELETE FROM tasks WHERE seq IN (SELECT seq FROM tasks WHERE finished_on IS NOT NULL
             AND (finished_on < $1 OR (acknowledged_at IS NOT NULL AND finished_on < $2)) ORDER BY finished_on LIMIT $3)",
            &[&finished_before_ms, &acknowledged_before_ms, &i64::from(limit)],
        )
    }
}
