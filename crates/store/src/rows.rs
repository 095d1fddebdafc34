//! Reading rows, once for both backends: [`Columns`] is what either driver's row offers (a
//! typed value by column position), and the decoders below turn the column lists of
//! [`crate::sql`] into domain types and records. Both backends store ids as hyphenated text,
//! JSON as text and times as unix milliseconds, so one decoder serves both.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;

use palisade_core::group::{Group, Scope};
use palisade_core::port::Port;
use palisade_core::quota::{Limits, Usage};
use palisade_core::{Cidr, Direction, Ethertype, Protocol, Rule, RuleSpec, Tag};
use serde_json::Value;
use uuid::Uuid;

use crate::{AgentRecord, ApiKey, AuditEvent, KeyRole, StoreError, StoreResult, TaskRecord, TaskState};

/// A Rust type both drivers can read from a column.
pub(crate) trait ColumnType: rusqlite::types::FromSql + postgres::types::FromSqlOwned {}

impl<T: rusqlite::types::FromSql + postgres::types::FromSqlOwned> ColumnType for T {}

/// A result row of either backend (each implements it next to its driver's error mapping).
pub(crate) trait Columns {
    /// The value of column `index` (0-based).
    fn column<T: ColumnType>(&self, index: usize) -> StoreResult<T>;

    fn uuid(&self, index: usize) -> StoreResult<Uuid> {
        parse_uuid(&self.column::<String>(index)?)
    }

    fn json(&self, index: usize) -> StoreResult<Option<Value>> {
        self.column::<Option<String>>(index)?.map(|text| serde_json::from_str(&text).map_err(|_| bad_value("json", &text))).transpose()
    }
}

/// How ids are stored: hyphenated text, readable in `sqlite3` and `psql` alike.
pub(crate) fn id_text(id: Uuid) -> String {
    id.hyphenated().to_string()
}

pub(crate) fn ids_text(ids: &[Uuid]) -> Vec<String> {
    ids.iter().map(|id| id_text(*id)).collect()
}

pub(crate) fn parse_uuid(text: &str) -> StoreResult<Uuid> {
    Uuid::try_parse(text).map_err(|_| bad_value("id", text))
}

/// A stored value this build cannot read: corruption or a bug, never the caller's fault.
pub(crate) fn bad_value(what: &str, text: &str) -> StoreError {
    StoreError::Internal(format!("stored {what} {text:?} is not valid"))
}

pub(crate) fn json_text(value: &Option<Value>) -> Option<String> {
    value.as_ref().map(Value::to_string)
}

/// How a key's project list is stored: a JSON array, or NULL for every project.
pub(crate) fn projects_text(projects: &Option<Vec<i64>>) -> Option<String> {
    projects.as_ref().map(|p| serde_json::to_string(p).expect("ints serialise"))
}

/// How a port's fixed IPs are stored: a JSON array of addresses.
pub(crate) fn ips_text(port: &Port) -> String {
    serde_json::to_string(&port.fixed_ips).expect("addresses serialise")
}

/// Hands each child to its owner (rules and tags to their groups, bindings to their ports), in
/// the order the children come, with one query per kind of child rather than one per owner.
pub(crate) fn attach<T, C>(owners: &mut [T], id_of: impl Fn(&T) -> Uuid, children: Vec<(Uuid, C)>, mut push: impl FnMut(&mut T, C)) {
    let index: HashMap<Uuid, usize> = owners.iter().enumerate().map(|(i, owner)| (id_of(owner), i)).collect();
    for (owner_id, child) in children {
        if let Some(&i) = index.get(&owner_id) {
            push(&mut owners[i], child);
        }
    }
}

/// Columns from `start` on: client, project and region.
fn scope_from_row(row: &impl Columns, start: usize) -> StoreResult<Scope> {
    Ok(Scope { client_id: row.column(start)?, project_id: row.column(start + 1)?, region_id: row.column(start + 2)? })
}

/// Columns from `start` on: a group row ([`crate::sql::GROUP_COLUMNS`]), without rules and tags.
pub(crate) fn group_from_row(row: &impl Columns, start: usize) -> StoreResult<Group> {
    Ok(Group {
        id: row.uuid(start)?,
        scope: scope_from_row(row, start + 1)?,
        name: row.column(start + 4)?,
        description: row.column(start + 5)?,
        created_at: row.column(start + 6)?,
        updated_at: row.column(start + 7)?,
        revision_number: row.column(start + 8)?,
        rules: Vec::new(),
        tags: Vec::new(),
    })
}

/// Both backends store port numbers as a 32-bit integer.
fn port_number(row: &impl Columns, index: usize) -> StoreResult<Option<u16>> {
    row.column::<Option<i32>>(index)?.map(|v| u16::try_from(v).map_err(|_| bad_value("port", &v.to_string()))).transpose()
}

/// A rule row ([`crate::sql::RULE_COLUMNS`]).
pub(crate) fn rule_from_row(row: &impl Columns) -> StoreResult<Rule> {
    let direction: String = row.column(2)?;
    let ethertype: String = row.column(3)?;
    let protocol: Option<String> = row.column(4)?;
    let prefix: Option<String> = row.column(7)?;
    let remote_group: Option<String> = row.column(8)?;
    Ok(Rule {
        id: row.uuid(0)?,
        group_id: row.uuid(1)?,
        spec: RuleSpec {
            direction: Direction::parse(&direction).ok_or_else(|| bad_value("direction", &direction))?,
            ethertype: Ethertype::parse(&ethertype).ok_or_else(|| bad_value("ethertype", &ethertype))?,
            protocol: protocol.map(|p| Protocol::from_name(&p).ok_or_else(|| bad_value("protocol", &p))).transpose()?,
            port_range_min: port_number(row, 5)?,
            port_range_max: port_number(row, 6)?,
            remote_ip_prefix: prefix.map(|p| Cidr::from_str(&p).map_err(|_| bad_value("remote_ip_prefix", &p))).transpose()?,
            remote_group_id: remote_group.as_deref().map(parse_uuid).transpose()?,
            description: row.column(9)?,
        },
        created_at: row.column(10)?,
    })
}

/// A rule as [`attach`] hands it to its group.
pub(crate) fn owned_rule_from_row(row: &impl Columns) -> StoreResult<(Uuid, Rule)> {
    let rule = rule_from_row(row)?;
    Ok((rule.group_id, rule))
}

/// A tag row ([`crate::sql::TAG_COLUMNS`]): its group and the tag.
pub(crate) fn tag_from_row(row: &impl Columns) -> StoreResult<(Uuid, Tag)> {
    Ok((row.uuid(0)?, Tag { key: row.column(1)?, value: row.column(2)?, read_only: row.column(3)? }))
}

/// Two ids, such as a binding row (`port_id, group_id`) or a rule and its group.
pub(crate) fn id_pair_from_row(row: &impl Columns) -> StoreResult<(Uuid, Uuid)> {
    Ok((row.uuid(0)?, row.uuid(1)?))
}

/// Columns from `start` on: a task row ([`crate::sql::TASK_COLUMNS`]).
pub(crate) fn task_from_row(row: &impl Columns, start: usize) -> StoreResult<TaskRecord> {
    let state: String = row.column(start + 6)?;
    Ok(TaskRecord {
        id: row.column(start)?,
        client_id: row.column(start + 1)?,
        user_id: row.column(start + 2)?,
        project_id: row.column(start + 3)?,
        region_id: row.column(start + 4)?,
        task_type: row.column(start + 5)?,
        state: TaskState::parse(&state).ok_or_else(|| bad_value("task state", &state))?,
        request_id: row.column(start + 7)?,
        data: row.json(start + 8)?,
        payload: row.json(start + 9)?.unwrap_or(Value::Null),
        error: row.column(start + 10)?,
        created_resources: row.json(start + 11)?,
        created_on: row.column(start + 12)?,
        updated_on: row.column(start + 13)?,
        finished_on: row.column(start + 14)?,
        acknowledged_at: row.column(start + 15)?,
        acknowledged_by: row.column(start + 16)?,
    })
}

/// An API key row ([`crate::sql::KEY_COLUMNS`]).
pub(crate) fn key_from_row(row: &impl Columns) -> StoreResult<ApiKey> {
    let projects: Option<String> = row.column(4)?;
    let role: String = row.column(7)?;
    Ok(ApiKey {
        id: row.column(0)?,
        role: KeyRole::parse(&role).ok_or_else(|| bad_value("role", &role))?,
        host: row.column(8)?,
        client_id: row.column(1)?,
        user_id: row.column(2)?,
        name: row.column(3)?,
        projects: projects.map(|p| serde_json::from_str(&p).map_err(|_| bad_value("projects", &p))).transpose()?,
        created_at: row.column(5)?,
        revoked_at: row.column(6)?,
    })
}

/// An exported key: the key columns, then its token hash ([`crate::sql::EXPORT_KEYS`]).
pub(crate) fn key_and_hash_from_row(row: &impl Columns) -> StoreResult<(ApiKey, String)> {
    Ok((key_from_row(row)?, row.column(9)?))
}

/// A port row ([`crate::sql::PORT_COLUMNS`]), without its bound groups.
pub(crate) fn port_from_row(row: &impl Columns) -> StoreResult<Port> {
    let mac: String = row.column(8)?;
    let ips: String = row.column(9)?;
    Ok(Port {
        id: row.uuid(0)?,
        scope: scope_from_row(row, 1)?,
        instance_id: row.uuid(4)?,
        instance_name: row.column(5)?,
        host: row.column(6)?,
        device: row.column(7)?,
        mac: mac.parse().map_err(|_| bad_value("mac", &mac))?,
        fixed_ips: serde_json::from_str::<Vec<IpAddr>>(&ips).map_err(|_| bad_value("fixed_ips", &ips))?,
        security_group_ids: Vec::new(),
        created_at: row.column(10)?,
        updated_at: row.column(11)?,
    })
}

/// An agent row: `host, applied_revision, reported_at`.
pub(crate) fn agent_from_row(row: &impl Columns) -> StoreResult<AgentRecord> {
    Ok(AgentRecord { host: row.column(0)?, applied_revision: row.column(1)?, reported_at: row.column(2)? })
}

/// An audit row ([`crate::sql::AUDIT_COLUMNS`]).
pub(crate) fn event_from_row(row: &impl Columns) -> StoreResult<AuditEvent> {
    let summary: String = row.column(13)?;
    Ok(AuditEvent {
        id: row.column(0)?,
        time: row.column(1)?,
        actor_key_id: row.column(2)?,
        actor_role: row.column(3)?,
        client_id: row.column(4)?,
        user_id: row.column(5)?,
        project_id: row.column(6)?,
        region_id: row.column(7)?,
        action: row.column(8)?,
        resource_type: row.column(9)?,
        resource_id: row.column(10)?,
        request_id: row.column(11)?,
        outcome: row.column(12)?,
        summary: serde_json::from_str::<Value>(&summary).map_err(|_| bad_value("audit summary", &summary))?,
    })
}

/// Columns from `start` on: `security_group_count, security_group_rule_count`.
pub(crate) fn limits_from_row(row: &impl Columns, start: usize) -> StoreResult<Limits> {
    Ok(Limits { security_groups: row.column(start)?, security_group_rules: row.column(start + 1)? })
}

/// A quota row of [`crate::sql::EXPORT_QUOTAS`]: the scope, then its limits.
pub(crate) fn quota_from_row(row: &impl Columns) -> StoreResult<(Scope, Limits)> {
    Ok((scope_from_row(row, 0)?, limits_from_row(row, 3)?))
}

/// A `scope_usage` row: `groups, rules` (kept per transaction, `crate::pending`; never shown below zero).
pub(crate) fn usage_from_row(row: &impl Columns) -> StoreResult<Usage> {
    Ok(Usage { security_groups: row.column::<i64>(0)?.max(0) as u64, security_group_rules: row.column::<i64>(1)?.max(0) as u64 })
}

/// A `COUNT(*)` (or any one integer) in the first column.
pub(crate) fn count_from_row(row: &impl Columns) -> StoreResult<u64> {
    Ok(row.column::<i64>(0)?.max(0) as u64)
}

/// Host revisions as stored in `tasks.policy_hosts`: JSON `[["host", revision], ...]`.
pub(crate) fn hosts_json(hosts: &[crate::HostRevision]) -> String {
    serde_json::to_string(hosts).unwrap_or_else(|_| "[]".into())
}

/// Several tasks' `policy_hosts`, merged: each host once, with the highest revision.
pub(crate) fn merge_hosts(lists: &[String]) -> StoreResult<Vec<crate::HostRevision>> {
    let mut merged = std::collections::BTreeMap::<String, i64>::new();
    for list in lists {
        let hosts: Vec<crate::HostRevision> = serde_json::from_str(list).map_err(|e| bad_value("task policy hosts", &e.to_string()))?;
        for (host, revision) in hosts {
            let entry = merged.entry(host).or_insert(revision);
            *entry = (*entry).max(revision);
        }
    }
    Ok(merged.into_iter().collect())
}
