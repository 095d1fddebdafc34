//! SQLite: security groups, their rules and tags, and the per-scope usage (migration 0001_init).
//! Lists of ids travel as one JSON array read with `json_each`.

use palisade_core::group::{Group, Scope};
use palisade_core::quota::Usage;
use palisade_core::{Protocol, Rule, Tag};
use rusqlite::params;
use serde_json::Value;
use uuid::Uuid;

use super::SqliteTx;
use crate::rows::{
    Columns, attach, count_from_row, group_from_row, id_pair_from_row, id_text, ids_text, owned_rule_from_row, tag_from_row, usage_from_row,
};
use crate::sql::{self, GROUP_COLUMNS, RULE_COLUMNS, TAG_COLUMNS};
use crate::{GroupFilter, GroupTx, StoreResult};

/// A list of ids as the JSON array `json_each(?N)` reads.
pub(super) fn ids_json(ids: &[Uuid]) -> String {
    Value::from(ids_text(ids)).to_string()
}

impl SqliteTx<'_> {
    /// Fills in rules and tags of `groups` with one query each (no N+1).
    fn attach_children(&self, groups: &mut [Group]) -> StoreResult<()> {
        if groups.is_empty() {
            return Ok(());
        }
        let ids = ids_json(&groups.iter().map(|g| g.id).collect::<Vec<_>>());
        let rules = self.rows(
            &format!("SELECT {RULE_COLUMNS} FROM security_group_rules WHERE group_id IN (SELECT value FROM json_each(?1)) ORDER BY rowid"),
            [&ids],
            |r| owned_rule_from_row(r),
        )?;
        attach(groups, |g| g.id, rules, |g, rule| g.rules.push(rule));
        let tags = self.rows(
            &format!(
                "SELECT {TAG_COLUMNS} FROM security_group_tags WHERE group_id IN (SELECT value FROM json_each(?1)) ORDER BY group_id, key"
            ),
            [&ids],
            |r| tag_from_row(r),
        )?;
        attach(groups, |g| g.id, tags, |g, tag| g.tags.push(tag));
        Ok(())
    }

    /// Groups of one query, completed with their rules and tags.
    pub(super) fn whole_groups(&self, sql: &str, params: impl rusqlite::Params) -> StoreResult<Vec<Group>> {
        let mut groups = self.rows(sql, params, |r| group_from_row(r, 0))?;
        self.attach_children(&mut groups)?;
        Ok(groups)
    }

    /// Positioned groups of an export page: the position, then the group columns.
    pub(super) fn positioned_groups(&self, sql: &str, params: impl rusqlite::Params) -> StoreResult<Vec<(i64, Group)>> {
        let rows = self.rows(sql, params, |r| Ok((r.column::<i64>(0)?, group_from_row(r, 1)?)))?;
        let (positions, mut groups): (Vec<i64>, Vec<Group>) = rows.into_iter().unzip();
        self.attach_children(&mut groups)?;
        Ok(positions.into_iter().zip(groups).collect())
    }
}

impl SqliteTx<'_> {
    fn insert_rule_row(&mut self, rule: &Rule) -> StoreResult<()> {
        let spec = &rule.spec;
        self.execute(
            sql::INSERT_RULE,
            params![
                id_text(rule.id),
                id_text(rule.group_id),
                spec.direction.as_str(),
                spec.ethertype.as_str(),
                spec.protocol.map(Protocol::name),
                spec.port_range_min,
                spec.port_range_max,
                spec.remote_ip_prefix.map(|p| p.to_string()),
                spec.remote_group_id.map(id_text),
                spec.description,
                rule.created_at
            ],
        )?;
        Ok(())
    }
}

impl GroupTx for SqliteTx<'_> {
    fn get_group(&mut self, scope: &Scope, id: Uuid) -> StoreResult<Option<Group>> {
        let groups = self.whole_groups(sql::GET_GROUP, params![id_text(id), scope.client_id, scope.project_id, scope.region_id])?;
        Ok(groups.into_iter().next())
    }

    fn group_exists(&mut self, scope: &Scope, id: Uuid) -> StoreResult<bool> {
        let found =
            self.row_opt(sql::GROUP_EXISTS, params![id_text(id), scope.client_id, scope.project_id, scope.region_id], |_| Ok(()))?;
        Ok(found.is_some())
    }

    fn list_groups(&mut self, scope: &Scope, filter: &GroupFilter) -> StoreResult<(u64, Vec<Group>)> {
        let base = "client_id = ?1 AND project_id = ?2 AND region_id = ?3 AND (?4 IS NULL OR name = ?4)";
        let (limit, offset) = (filter.limit, filter.offset as i64);
        if filter.tag_keys.is_empty() && filter.tag_pairs.is_empty() {
            // No tag filter: no per-row subqueries, and without a name the count is the
            // usage row (kept per transaction), O(1) however many groups the scope has.
            let scope_args = params![scope.client_id, scope.project_id, scope.region_id, filter.name];
            let count = match filter.name {
                None => self.usage(scope)?.security_groups,
                Some(_) => self.row(&format!("SELECT COUNT(*) FROM security_groups WHERE {base}"), scope_args, |r| count_from_row(r))?,
            };
            let groups = self.whole_groups(
                &format!("SELECT {GROUP_COLUMNS} FROM security_groups WHERE {base} ORDER BY rowid LIMIT ?5 OFFSET ?6"),
                params![scope.client_id, scope.project_id, scope.region_id, filter.name, limit, offset],
            )?;
            return Ok((count, groups));
        }
        let keys = serde_json::to_string(&filter.tag_keys).expect("strings serialise");
        let pairs = serde_json::to_string(&filter.tag_pairs).expect("strings serialise");
        let condition = format!(
            "{base}
            AND NOT EXISTS (SELECT 1 FROM json_each(?5) k WHERE NOT EXISTS
                (SELECT 1 FROM security_group_tags t WHERE t.group_id = security_groups.id AND t.key = k.value))
            AND NOT EXISTS (SELECT 1 FROM json_each(?6) p WHERE NOT EXISTS
                (SELECT 1 FROM security_group_tags t WHERE t.group_id = security_groups.id
                 AND t.key = json_extract(p.value, '$[0]') AND t.value = json_extract(p.value, '$[1]')))"
        );
        let count = self.row(
            &format!("SELECT COUNT(*) FROM security_groups WHERE {condition}"),
            params![scope.client_id, scope.project_id, scope.region_id, filter.name, keys, pairs],
            |r| count_from_row(r),
        )?;
        let groups = self.whole_groups(
            &format!("SELECT {GROUP_COLUMNS} FROM security_groups WHERE {condition} ORDER BY rowid LIMIT ?7 OFFSET ?8"),
            params![scope.client_id, scope.project_id, scope.region_id, filter.name, keys, pairs, limit, offset],
        )?;
        Ok((count, groups))
    }

    fn groups_by_ids(&mut self, ids: &[Uuid]) -> StoreResult<Vec<Group>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.whole_groups(
            &format!("SELECT {GROUP_COLUMNS} FROM security_groups WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY rowid"),
            [ids_json(ids)],
        )
    }

    fn insert_group(&mut self, group: &Group) -> StoreResult<()> {
        let scope = &group.scope;
        self.execute(
            sql::INSERT_GROUP,
            params![
                id_text(group.id),
                scope.client_id,
                scope.project_id,
                scope.region_id,
                group.name,
                group.description,
                group.created_at,
                group.updated_at,
                group.revision_number
            ],
        )?;
        for rule in &group.rules {
            self.insert_rule_row(rule)?;
        }
        self.pending.add_usage(scope, 1, group.rules.len() as i64);
        self.replace_tags(group.id, &group.tags)
    }

    fn update_group(&mut self, group: &Group) -> StoreResult<()> {
        self.execute(
            sql::UPDATE_GROUP,
            params![id_text(group.id), group.name, group.description, group.updated_at, group.revision_number],
        )?;
        Ok(())
    }

    fn delete_group(&mut self, scope: &Scope, id: Uuid) -> StoreResult<bool> {
        let rules: i64 = self.row("SELECT COUNT(*) FROM security_group_rules WHERE group_id = ?1", [id_text(id)], |r| r.column(0))?;
        if self.execute(sql::DELETE_GROUP, params![id_text(id), scope.client_id, scope.project_id, scope.region_id])? == 0 {
            return Ok(false);
        }
        self.pending.add_usage(scope, -1, -rules);
        self.pending.group_changed(id);
        Ok(true)
    }

    fn replace_tags(&mut self, group_id: Uuid, tags: &[Tag]) -> StoreResult<()> {
        let id = id_text(group_id);
        self.execute(sql::DELETE_TAGS, [&id])?;
        let mut insert = self.prepare(sql::INSERT_TAG)?;
        for tag in tags {
            insert.execute(params![id, tag.key, tag.value, tag.read_only])?;
        }
        Ok(())
    }

    fn insert_rule(&mut self, scope: &Scope, rule: &Rule) -> StoreResult<()> {
        self.insert_rule_row(rule)?;
        self.pending.add_usage(scope, 0, 1);
        self.pending.group_changed(rule.group_id);
        Ok(())
    }

    fn delete_rule(&mut self, scope: &Scope, rule_id: Uuid) -> StoreResult<bool> {
        let group = self.row_opt(sql::DELETE_RULE, [id_text(rule_id)], |r| r.uuid(0))?;
        let Some(group) = group else { return Ok(false) };
        self.pending.add_usage(scope, 0, -1);
        self.pending.group_changed(group);
        Ok(true)
    }

    fn group_of_rule(&mut self, scope: &Scope, rule_id: Uuid) -> StoreResult<Option<Uuid>> {
        self.row_opt(sql::GROUP_OF_RULE, params![id_text(rule_id), scope.client_id, scope.project_id, scope.region_id], |r| r.uuid(0))
    }

    fn rules_referencing(&mut self, group_id: Uuid) -> StoreResult<Vec<(Uuid, Uuid)>> {
        self.rows("SELECT id, group_id FROM security_group_rules WHERE remote_group_id = ?1 AND group_id <> ?1", [id_text(group_id)], |r| {
            id_pair_from_row(r)
        })
    }

    fn count_groups(&mut self, scope: &Scope) -> StoreResult<u64> {
        self.row(sql::COUNT_GROUPS, params![scope.client_id, scope.project_id, scope.region_id], |r| count_from_row(r))
    }

    fn usage(&mut self, scope: &Scope) -> StoreResult<Usage> {
        let stored = self.row_opt(sql::SCOPE_USAGE, params![scope.client_id, scope.project_id, scope.region_id], |r| usage_from_row(r))?;
        Ok(crate::pending::with_pending(stored.unwrap_or_default(), self.pending.usage_of(scope)))
    }
}
