//! PostgreSQL: security groups, their rules and tags, and the per-scope usage
//! (migrations/postgres/0001_init.sql). Lists of ids travel as `text[]`; the row locks that keep
//! several nodes from losing each other's changes are explained in the `postgres` module.

use palisade_core::group::{Group, Scope};
use palisade_core::quota::Usage;
use palisade_core::{Protocol, Rule, Tag};
use postgres::types::ToSql;
use uuid::Uuid;

use super::PgTx;
use super::conn::owned;
use crate::rows::{
    Columns, attach, count_from_row, group_from_row, id_pair_from_row, id_text, ids_text, owned_rule_from_row, tag_from_row, usage_from_row,
};
use crate::sql::{self, GROUP_COLUMNS, RULE_COLUMNS, TAG_COLUMNS};
use crate::{GroupFilter, GroupTx, StoreResult};

impl PgTx<'_> {
    /// Fills in rules and tags of `groups` with one query each (no N+1).
    fn attach_children(&mut self, groups: &mut [Group]) -> StoreResult<()> {
        if groups.is_empty() {
            return Ok(());
        }
        let ids = ids_text(&groups.iter().map(|g| g.id).collect::<Vec<_>>());
        // Rules and tags in one round trip.
        let (rules, tags) = self.query_pair(
            (&format!("SELECT {RULE_COLUMNS} FROM security_group_rules WHERE group_id = ANY($1::text[]) ORDER BY seq"), &[&ids]),
            (&format!("SELECT {TAG_COLUMNS} FROM security_group_tags WHERE group_id = ANY($1::text[]) ORDER BY group_id, key"), &[&ids]),
        )?;
        let rules = rules.iter().map(owned_rule_from_row).collect::<StoreResult<Vec<_>>>()?;
        attach(groups, |g| g.id, rules, |g, rule| g.rules.push(rule));
        let tags = tags.iter().map(tag_from_row).collect::<StoreResult<Vec<_>>>()?;
        attach(groups, |g| g.id, tags, |g, tag| g.tags.push(tag));
        Ok(())
    }

    /// Groups of one query, completed with their rules and tags.
    pub(super) fn whole_groups(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<Group>> {
        let mut groups = self.rows(sql, params, |r| group_from_row(r, 0))?;
        self.attach_children(&mut groups)?;
        Ok(groups)
    }

    /// Positioned groups of an export page: the position, then the group columns.
    pub(super) fn positioned_groups(&mut self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<Vec<(i64, Group)>> {
        let rows = self.rows(sql, params, |r| Ok((r.column::<i64>(0)?, group_from_row(r, 1)?)))?;
        let (positions, mut groups): (Vec<i64>, Vec<Group>) = rows.into_iter().unzip();
        self.attach_children(&mut groups)?;
        Ok(positions.into_iter().zip(groups).collect())
    }
}

impl PgTx<'_> {
    /// Inserts tags with one statement (none: nothing).
    fn insert_tags(&mut self, group_id: Uuid, tags: &[Tag]) -> StoreResult<()> {
        if tags.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = tags.iter().map(|t| t.key.clone()).collect();
        let values: Vec<String> = tags.iter().map(|t| t.value.clone()).collect();
        let read_only: Vec<bool> = tags.iter().map(|t| t.read_only).collect();
        self.defer(
            "INSERT INTO security_group_tags (group_id, key, value, read_only) SELECT $1, k, v, r FROM unnest($2::text[], $3::text[], $4::boolean[]) AS t(k, v, r)",
            owned![id_text(group_id), keys, values, read_only],
        )
    }

    /// Inserts rules with one statement, whatever their number (one array per column).
    fn insert_rules(&mut self, rules: &[Rule]) -> StoreResult<()> {
        if rules.is_empty() {
            return Ok(());
        }
        let ids: Vec<String> = rules.iter().map(|r| id_text(r.id)).collect();
        let groups: Vec<String> = rules.iter().map(|r| id_text(r.group_id)).collect();
        let directions: Vec<&'static str> = rules.iter().map(|r| r.spec.direction.as_str()).collect();
        let ethertypes: Vec<&'static str> = rules.iter().map(|r| r.spec.ethertype.as_str()).collect();
        let protocols: Vec<Option<&'static str>> = rules.iter().map(|r| r.spec.protocol.map(Protocol::name)).collect();
        let mins: Vec<Option<i32>> = rules.iter().map(|r| r.spec.port_range_min.map(i32::from)).collect();
        let maxs: Vec<Option<i32>> = rules.iter().map(|r| r.spec.port_range_max.map(i32::from)).collect();
        let prefixes: Vec<Option<String>> = rules.iter().map(|r| r.spec.remote_ip_prefix.map(|p| p.to_string())).collect();
        let remotes: Vec<Option<String>> = rules.iter().map(|r| r.spec.remote_group_id.map(id_text)).collect();
        let descriptions: Vec<String> = rules.iter().map(|r| r.spec.description.clone()).collect();
        let created: Vec<i64> = rules.iter().map(|r| r.created_at).collect();
        self.defer(
            concat!(
                "INSERT INTO security_group_rules (",
                crate::sql::columns!(rule),
                ") SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::int[],
                 $8::text[], $9::text[], $10::text[], $11::bigint[])"
            ),
            owned![ids, groups, directions, ethertypes, protocols, mins, maxs, prefixes, remotes, descriptions, created],
        )
    }
}

impl GroupTx for PgTx<'_> {
    fn get_group(&mut self, scope: &Scope, id: Uuid) -> StoreResult<Option<Group>> {
        // In a write transaction the row is locked until commit: whoever changes a group has
        // read its latest committed state, and the next writer waits for this one.
        let lock = if self.write { " FOR NO KEY UPDATE" } else { "" };
        let groups = self
            .whole_groups(&format!("{}{lock}", sql::GET_GROUP), &[&id_text(id), &scope.client_id, &scope.project_id, &scope.region_id])?;
        Ok(groups.into_iter().next())
    }

    fn group_exists(&mut self, scope: &Scope, id: Uuid) -> StoreResult<bool> {
        // In a write transaction, keep the group from being deleted until commit (a rule may be
        // about to name it); KEY SHARE does not block other changes of the group.
        let lock = if self.write { " FOR KEY SHARE" } else { "" };
        let row = self
            .query_opt(&format!("{}{lock}", sql::GROUP_EXISTS), &[&id_text(id), &scope.client_id, &scope.project_id, &scope.region_id])?;
        Ok(row.is_some())
    }

    fn list_groups(&mut self, scope: &Scope, filter: &GroupFilter) -> StoreResult<(u64, Vec<Group>)> {
        let columns = GROUP_COLUMNS.split(", ").map(|c| format!("g.{c}")).collect::<Vec<_>>().join(", ");
        let limit = i64::from(filter.limit);
        let offset = i64::try_from(filter.offset).unwrap_or(i64::MAX);
        let base = "g.client_id = $1 AND g.project_id = $2 AND g.region_id = $3 AND ($4::text IS NULL OR g.name = $4)";
        let scope_filters: [&(dyn ToSql + Sync); 4] = [&scope.client_id, &scope.project_id, &scope.region_id, &filter.name];
        let page: [&(dyn ToSql + Sync); 2] = [&limit, &offset];
        if filter.tag_keys.is_empty() && filter.tag_pairs.is_empty() {
            // No tag filter: no per-row subqueries, and without a name the count is the
            // usage row (kept per transaction, `crate::pending`).
            let count = match filter.name {
                None => self.usage(scope)?.security_groups,
                Some(_) => self.row(&format!("SELECT COUNT(*) FROM security_groups g WHERE {base}"), &scope_filters, count_from_row)?,
            };
            let groups = self.whole_groups(
                &format!("SELECT {columns} FROM security_groups g WHERE {base} ORDER BY g.seq LIMIT $5 OFFSET $6"),
                &[&scope_filters[..], &page].concat(),
            )?;
            return Ok((count, groups));
        }
        let condition = format!(
            "{base}
            AND NOT EXISTS (SELECT 1 FROM unnest($5::text[]) AS k(key) WHERE NOT EXISTS
                (SELECT 1 FROM security_group_tags t WHERE t.group_id = g.id AND t.key = k.key))
            AND NOT EXISTS (SELECT 1 FROM unnest($6::text[], $7::text[]) AS p(key, value) WHERE NOT EXISTS
                (SELECT 1 FROM security_group_tags t WHERE t.group_id = g.id AND t.key = p.key AND t.value = p.value))"
        );
        let pair_keys: Vec<&str> = filter.tag_pairs.iter().map(|(k, _)| k.as_str()).collect();
        let pair_values: Vec<&str> = filter.tag_pairs.iter().map(|(_, v)| v.as_str()).collect();
        let tag_filters: [&(dyn ToSql + Sync); 3] = [&filter.tag_keys, &pair_keys, &pair_values];
        let filters = [&scope_filters[..], &tag_filters].concat();
        let count = self.row(&format!("SELECT COUNT(*) FROM security_groups g WHERE {condition}"), &filters, count_from_row)?;
        let groups = self.whole_groups(
            &format!("SELECT {columns} FROM security_groups g WHERE {condition} ORDER BY g.seq LIMIT $8 OFFSET $9"),
            &[&filters[..], &page].concat(),
        )?;
        Ok((count, groups))
    }

    fn groups_by_ids(&mut self, ids: &[Uuid]) -> StoreResult<Vec<Group>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        self.whole_groups(
            &format!("SELECT {GROUP_COLUMNS} FROM security_groups WHERE id = ANY($1::text[]) ORDER BY seq"),
            &[&ids_text(ids)],
        )
    }

    fn insert_group(&mut self, group: &Group) -> StoreResult<()> {
        let scope = &group.scope;
        // The group, its rules and its tags are queued: they go with the next round trip.
        self.defer(
            sql::INSERT_GROUP,
            owned![
                id_text(group.id),
                scope.client_id,
                scope.project_id,
                scope.region_id,
                group.name.clone(),
                group.description.clone(),
                group.created_at,
                group.updated_at,
                group.revision_number,
            ],
        )?;
        self.insert_rules(&group.rules)?;
        self.pending.add_usage(scope, 1, group.rules.len() as i64);
        // A new group has no tags to replace.
        self.insert_tags(group.id, &group.tags)
    }

    fn update_group(&mut self, group: &Group) -> StoreResult<()> {
        let args = owned![id_text(group.id), group.name.clone(), group.description.clone(), group.updated_at, group.revision_number];
        self.defer(sql::UPDATE_GROUP, args)
    }

    fn delete_group(&mut self, scope: &Scope, id: Uuid) -> StoreResult<bool> {
        // One statement: the group goes (its rules and tags with it, by cascade at the end of
        // the statement) and the count of its rules is read from the statement's snapshot.
        let (groups, rules): (i64, i64) = self.row(
            "WITH gone AS (DELETE FROM security_groups WHERE id = $1 AND client_id = $2 AND project_id = $3 AND region_id = $4 RETURNING id)
             SELECT (SELECT COUNT(*) FROM gone), (SELECT COUNT(*) FROM security_group_rules WHERE group_id = $1 AND EXISTS (SELECT 1 FROM gone))",
            &[&id_text(id), &scope.client_id, &scope.project_id, &scope.region_id],
            |r| Ok((r.column(0)?, r.column(1)?)),
        )?;
        if groups == 0 {
            return Ok(false);
        }
        self.pending.add_usage(scope, -1, -rules);
        self.pending.group_changed(id);
        Ok(true)
    }

    fn replace_tags(&mut self, group_id: Uuid, tags: &[Tag]) -> StoreResult<()> {
        self.defer(sql::DELETE_TAGS, owned![id_text(group_id)])?;
        self.insert_tags(group_id, tags)
    }

    fn insert_rule(&mut self, scope: &Scope, rule: &Rule) -> StoreResult<()> {
        self.insert_rules(std::slice::from_ref(rule))?;
        self.pending.add_usage(scope, 0, 1);
        self.pending.group_changed(rule.group_id);
        Ok(())
    }

    fn delete_rule(&mut self, scope: &Scope, rule_id: Uuid) -> StoreResult<bool> {
        let group = self.row_opt(sql::DELETE_RULE, &[&id_text(rule_id)], |r| r.uuid(0))?;
        let Some(group) = group else { return Ok(false) };
        self.pending.add_usage(scope, 0, -1);
        self.pending.group_changed(group);
        Ok(true)
    }

    fn group_of_rule(&mut self, scope: &Scope, rule_id: Uuid) -> StoreResult<Option<Uuid>> {
        self.row_opt(sql::GROUP_OF_RULE, &[&id_text(rule_id), &scope.client_id, &scope.project_id, &scope.region_id], |r| r.uuid(0))
    }

    fn rules_referencing(&mut self, group_id: Uuid) -> StoreResult<Vec<(Uuid, Uuid)>> {
        let id = id_text(group_id);
        if self.write {
            // Only a delete asks this: lock the group first, so a rule naming it that another
            // transaction is committing right now is seen (it held KEY SHARE on the group).
            self.query("SELECT 1 FROM security_groups WHERE id = $1 FOR UPDATE", &[&id])?;
        }
        self.rows(
            "SELECT id, group_id FROM security_group_rules WHERE remote_group_id = $1 AND group_id <> $1 ORDER BY seq",
            &[&id],
            id_pair_from_row,
        )
    }

    fn count_groups(&mut self, scope: &Scope) -> StoreResult<u64> {
        self.row(sql::COUNT_GROUPS, &[&scope.client_id, &scope.project_id, &scope.region_id], count_from_row)
    }

    fn usage(&mut self, scope: &Scope) -> StoreResult<Usage> {
        let stored = self.row_opt(sql::SCOPE_USAGE, &[&scope.client_id, &scope.project_id, &scope.region_id], usage_from_row)?;
        Ok(crate::pending::with_pending(stored.unwrap_or_default(), self.pending.usage_of(scope)))
    }
}
