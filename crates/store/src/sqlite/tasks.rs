//! SQLite: the task queue (migrations 0001_init and 0006_task_retention). One process owns the
//! file, so claiming needs no lock beyond the single writer.

use palisade_core::group::Scope;
use rusqlite::params;

use super::SqliteTx;
use crate::pending::HostRevision;
use crate::rows::{Columns, count_from_row, hosts_json, json_text, merge_hosts, task_from_row};
use crate::sql::{self, TASK_COLUMNS};
use crate::{AckFilter, StoreResult, TaskClaim, TaskFilter, TaskRecord, TaskTx};

impl TaskTx for SqliteTx<'_> {
    fn insert_task(&mut self, task: &TaskRecord) -> StoreResult<()> {
        self.execute(
            sql::INSERT_TASK,
            params![
                task.id,
                task.client_id,
                task.user_id,
                task.project_id,
                task.region_id,
                task.task_type,
                task.state.as_str(),
                task.request_id,
                json_text(&task.data),
                task.payload.to_string(),
                task.error,
                json_text(&task.created_resources),
                task.created_on,
                task.updated_on,
                task.finished_on,
                task.acknowledged_at,
                task.acknowledged_by
            ],
        )?;
        Ok(())
    }

    fn pending_tasks(&mut self, _now_ms: i64, limit: u32) -> StoreResult<Vec<TaskRecord>> {
        // One process owns an SQLite file, and claim, execution and completion share one
        // transaction, so every NEW or RUNNING task left here is ours to (re)run.
        self.rows(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE state IN ('NEW', 'RUNNING') ORDER BY rowid LIMIT ?1"), [limit], |r| {
            task_from_row(r, 0)
        })
    }

    fn claim_task(&mut self, skip: &[Scope]) -> StoreResult<Option<TaskClaim>> {
        // The single writer already excludes every other transaction: the scope is always free.
        let skip: Vec<String> = skip.iter().map(|s| format!("{}/{}/{}", s.client_id, s.project_id, s.region_id)).collect();
        let task = self.row_opt(
            &format!(
                "SELECT {TASK_COLUMNS} FROM tasks WHERE state IN ('NEW', 'RUNNING')
                 AND (client_id || '/' || coalesce(project_id, 0) || '/' || coalesce(region_id, 0)) NOT IN (SELECT value FROM json_each(?1))
                 ORDER BY rowid LIMIT 1"
            ),
            [serde_json::to_string(&skip).unwrap_or_default()],
            |r| task_from_row(r, 0),
        )?;
        Ok(task.map(TaskClaim::Ready))
    }

    fn update_task(&mut self, task: &TaskRecord) -> StoreResult<()> {
        let TaskRecord { id, state, error, updated_on, finished_on, acknowledged_at, acknowledged_by, .. } = task;
        let resources = json_text(&task.created_resources);
        self.execute(
            sql::UPDATE_TASK,
            params![id, state.as_str(), error, resources, updated_on, finished_on, acknowledged_at, acknowledged_by],
        )?;
        Ok(())
    }

    fn set_task_policy_hosts(&mut self, id: &str, hosts: &[HostRevision]) -> StoreResult<()> {
        self.execute(sql::SET_TASK_POLICY_HOSTS, params![id, hosts_json(hosts)])?;
        Ok(())
    }

    fn task_policy_hosts(&mut self, client_id: i64, ids: &[String]) -> StoreResult<Vec<HostRevision>> {
        let lists = self.rows(
            "SELECT policy_hosts FROM tasks WHERE client_id = ?1 AND id IN (SELECT value FROM json_each(?2)) AND policy_hosts IS NOT NULL",
            params![client_id, serde_json::Value::from(ids.to_vec()).to_string()],
            |r| r.column::<String>(0),
        )?;
        merge_hosts(&lists)
    }

    fn get_task(&mut self, client_id: i64, id: &str) -> StoreResult<Option<TaskRecord>> {
        self.row_opt(sql::GET_TASK, params![id, client_id], |r| task_from_row(r, 0))
    }

    fn list_tasks(&mut self, client_id: i64, filter: &TaskFilter) -> StoreResult<(u64, Vec<TaskRecord>)> {
        let projects = serde_json::to_string(&filter.project_ids).expect("ints serialise");
        let regions = serde_json::to_string(&filter.region_ids).expect("ints serialise");
        let states = serde_json::to_string(&filter.states.iter().map(|s| s.as_str()).collect::<Vec<_>>()).expect("strings serialise");
        let condition = "client_id = ?1
            AND (json_array_length(?2) = 0 OR project_id IN (SELECT value FROM json_each(?2)))
            AND (json_array_length(?3) = 0 OR region_id IN (SELECT value FROM json_each(?3)))
            AND (json_array_length(?4) = 0 OR state IN (SELECT value FROM json_each(?4)))
            AND (?5 IS NULL OR task_type = ?5)
            AND (?6 IS NULL OR (acknowledged_at IS NOT NULL) = ?6)
            AND (?7 IS NULL OR created_on >= ?7)
            AND (?8 IS NULL OR created_on <= ?8)";
        let filters = params![client_id, projects, regions, states, filter.task_type, filter.is_acknowledged, filter.from_ms, filter.to_ms];
        let count = self.row(&format!("SELECT COUNT(*) FROM tasks WHERE {condition}"), filters, |r| count_from_row(r))?;
        let order = if filter.ascending { "ASC" } else { "DESC" };
        let offset = filter.offset as i64;
        let page: Vec<&dyn rusqlite::ToSql> = filters.iter().copied().chain([&filter.limit as &dyn rusqlite::ToSql, &offset]).collect();
        let tasks = self.rows(
            &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE {condition} ORDER BY created_on {order}, rowid {order} LIMIT ?9 OFFSET ?10"),
            page.as_slice(),
            |r| task_from_row(r, 0),
        )?;
        Ok((count, tasks))
    }

    fn acknowledge_tasks(&mut self, client_id: i64, scope: &AckFilter, user_id: i64, now_ms: i64) -> StoreResult<u64> {
        let ids = scope.task_ids.as_ref().map(|ids| serde_json::to_string(ids).expect("strings serialise"));
        self.execute(
            "UPDATE tasks SET acknowledged_at = ?5, acknowledged_by = ?6
             WHERE client_id = ?1 AND acknowledged_at IS NULL
             AND (?2 IS NULL OR project_id = ?2) AND (?3 IS NULL OR region_id = ?3)
             AND (?4 IS NULL OR id IN (SELECT value FROM json_each(?4)))",
            params![client_id, scope.project_id, scope.region_id, ids, now_ms, user_id],
        )
    }

    fn count_open_tasks(&mut self, client_id: i64) -> StoreResult<u64> {
        self.row(sql::COUNT_OPEN_TASKS, [client_id], |r| count_from_row(r))
    }

    fn prune_tasks(&mut self, finished_before_ms: i64, acknowledged_before_ms: i64, limit: u32) -> StoreResult<u64> {
        self.execute(
            "DELETE FROM tasks WHERE rowid IN (SELECT rowid FROM tasks WHERE finished_on IS NOT NULL
             AND (finished_on < ?1 OR (acknowledged_at IS NOT NULL AND finished_on < ?2)) ORDER BY finished_on LIMIT ?3)",
            params![finished_before_ms, acknowledged_before_ms, limit],
        )
    }
}
