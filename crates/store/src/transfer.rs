//! Moving an installation between stores: `palisade export` writes every group (with its rules
//! and tags), task, API key, quota and port (with its bindings) as JSON lines, and the policy
//! revision; `palisade import` loads them into an empty store in
//! one transaction. Ids, times, revisions, creation order, task states and key hashes are kept,
//! so clients, their tokens and their task ids keep working after the move.
//!
//! Format (one JSON object per line, `type` says which):
//! `header` (format, version, source backend, time), then `api_key`s, `quota`s, `group`s, `task`s,
//! `port`s and the `policy_revision`, then
//! `end` with the counts, which import checks, so a truncated file is refused.

use std::io::{BufRead, Write};
use std::net::IpAddr;
use std::str::FromStr;

use palisade_core::group::{Group, Scope};
use palisade_core::port::{MacAddr, Port};
use palisade_core::quota::Limits;
use palisade_core::{Cidr, Direction, Ethertype, Protocol, Rule, RuleSpec, Tag};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::{ApiKey, KeyRole, PortFilter, Store, StoreError, TaskRecord, TaskState, now_ms};

pub const FORMAT: &str = "palisade-export";
pub const VERSION: u32 = 1;
const PAGE: u32 = 500;

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: {message}")]
    Format { line: u64, message: String },
    #[error("the target database is not empty ({0}); import only into a fresh database")]
    NotEmpty(String),
}

/// What was written or read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub groups: u64,
    pub rules: u64,
    pub tags: u64,
    pub tasks: u64,
    pub api_keys: u64,
    #[serde(default)]
    pub quotas: u64,
    #[serde(default)]
    pub ports: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Line {
    Header { format: String, version: u32, source: String, exported_at: i64 },
    ApiKey(KeyLine),
    Quota(QuotaLine),
    Group(GroupLine),
    Task(TaskLine),
    Port(PortLine),
    PolicyRevision { revision: i64 },
    End(Summary),
}

#[derive(Debug, Serialize, Deserialize)]
struct KeyLine {
    id: i64,
    token_hash: String,
    client_id: i64,
    user_id: i64,
    projects: Option<Vec<i64>>,
    name: String,
    created_at: i64,
    revoked_at: Option<i64>,
    /// Absent in exports made before key roles: those keys were tenant keys.
    #[serde(default = "tenant_role")]
    role: String,
    #[serde(default)]
    host: Option<String>,
}

fn tenant_role() -> String {
    KeyRole::Tenant.as_str().to_string()
}

#[derive(Debug, Serialize, Deserialize)]
struct QuotaLine {
    client_id: i64,
    project_id: i64,
    region_id: i64,
    security_group_count: i64,
    security_group_rule_count: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct GroupLine {
    id: Uuid,
    client_id: i64,
    project_id: i64,
    region_id: i64,
    name: String,
    description: String,
    created_at: i64,
    updated_at: i64,
    revision_number: i64,
    rules: Vec<RuleLine>,
    tags: Vec<TagLine>,
}

#[derive(Debug, Serialize, Deserialize)]
struct RuleLine {
    id: Uuid,
    direction: String,
    ethertype: String,
    protocol: Option<String>,
    port_range_min: Option<u16>,
    port_range_max: Option<u16>,
    remote_ip_prefix: Option<String>,
    remote_group_id: Option<Uuid>,
    description: String,
    created_at: i64,
}

#[derive(Debug, Serialize, Deserialize)]
struct TagLine {
    key: String,
    value: String,
    read_only: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct PortLine {
    id: Uuid,
    client_id: i64,
    project_id: i64,
    region_id: i64,
    instance_id: Uuid,
    instance_name: String,
    host: String,
    device: String,
    mac: String,
    fixed_ips: Vec<String>,
    security_group_ids: Vec<Uuid>,
    created_at: i64,
    updated_at: i64,
}

impl From<&Port> for PortLine {
    fn from(p: &Port) -> PortLine {
        PortLine {
            id: p.id,
            client_id: p.scope.client_id,
            project_id: p.scope.project_id,
            region_id: p.scope.region_id,
            instance_id: p.instance_id,
            instance_name: p.instance_name.clone(),
            host: p.host.clone(),
            device: p.device.clone(),
            mac: p.mac.to_string(),
            fixed_ips: p.fixed_ips.iter().map(ToString::to_string).collect(),
            security_group_ids: p.security_group_ids.clone(),
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

impl PortLine {
    fn into_port(self) -> Result<Port, String> {
        Ok(Port {
            id: self.id,
            scope: Scope { client_id: self.client_id, project_id: self.project_id, region_id: self.region_id },
            instance_id: self.instance_id,
            instance_name: self.instance_name,
            host: self.host,
            device: self.device,
            mac: MacAddr::from_str(&self.mac).map_err(|_| format!("bad mac {:?}", self.mac))?,
            fixed_ips: self
                .fixed_ips
                .iter()
                .map(|ip| IpAddr::from_str(ip).map_err(|_| format!("bad fixed ip {ip:?}")))
                .collect::<Result<_, _>>()?,
            security_group_ids: self.security_group_ids,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct TaskLine {
    id: String,
    client_id: i64,
    user_id: i64,
    project_id: Option<i64>,
    region_id: Option<i64>,
    task_type: String,
    state: String,
    request_id: Option<String>,
    data: Option<Value>,
    payload: Value,
    error: Option<String>,
    created_resources: Option<Value>,
    created_on: i64,
    updated_on: Option<i64>,
    finished_on: Option<i64>,
    acknowledged_at: Option<i64>,
    acknowledged_by: Option<i64>,
}

impl From<&Group> for GroupLine {
    fn from(g: &Group) -> GroupLine {
        GroupLine {
            id: g.id,
            client_id: g.scope.client_id,
            project_id: g.scope.project_id,
            region_id: g.scope.region_id,
            name: g.name.clone(),
            description: g.description.clone(),
            created_at: g.created_at,
            updated_at: g.updated_at,
            revision_number: g.revision_number,
            rules: g
                .rules
                .iter()
                .map(|r| RuleLine {
                    id: r.id,
                    direction: r.spec.direction.as_str().to_string(),
                    ethertype: r.spec.ethertype.as_str().to_string(),
                    protocol: r.spec.protocol.map(|p| p.name().to_string()),
                    port_range_min: r.spec.port_range_min,
                    port_range_max: r.spec.port_range_max,
                    remote_ip_prefix: r.spec.remote_ip_prefix.map(|p| p.to_string()),
                    remote_group_id: r.spec.remote_group_id,
                    description: r.spec.description.clone(),
                    created_at: r.created_at,
                })
                .collect(),
            tags: g.tags.iter().map(|t| TagLine { key: t.key.clone(), value: t.value.clone(), read_only: t.read_only }).collect(),
        }
    }
}

impl GroupLine {
    fn into_group(self) -> Result<Group, String> {
        let id = self.id;
        let rules = self
            .rules
            .into_iter()
            .map(|r| {
                Ok(Rule {
                    id: r.id,
                    group_id: id,
                    spec: RuleSpec {
                        direction: Direction::parse(&r.direction).ok_or_else(|| format!("bad direction {:?}", r.direction))?,
                        ethertype: Ethertype::parse(&r.ethertype).ok_or_else(|| format!("bad ethertype {:?}", r.ethertype))?,
                        protocol: r.protocol.map(|p| Protocol::from_name(&p).ok_or_else(|| format!("bad protocol {p:?}"))).transpose()?,
                        port_range_min: r.port_range_min,
                        port_range_max: r.port_range_max,
                        remote_ip_prefix: r
                            .remote_ip_prefix
                            .map(|p| Cidr::from_str(&p).map_err(|_| format!("bad remote_ip_prefix {p:?}")))
                            .transpose()?,
                        remote_group_id: r.remote_group_id,
                        description: r.description,
                    },
                    created_at: r.created_at,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(Group {
            id,
            scope: Scope { client_id: self.client_id, project_id: self.project_id, region_id: self.region_id },
            name: self.name,
            description: self.description,
            created_at: self.created_at,
            updated_at: self.updated_at,
            revision_number: self.revision_number,
            rules,
            tags: self.tags.into_iter().map(|t| Tag { key: t.key, value: t.value, read_only: t.read_only }).collect(),
        })
    }
}

impl From<&TaskRecord> for TaskLine {
    fn from(t: &TaskRecord) -> TaskLine {
        TaskLine {
            id: t.id.clone(),
            client_id: t.client_id,
            user_id: t.user_id,
            project_id: t.project_id,
            region_id: t.region_id,
            task_type: t.task_type.clone(),
            state: t.state.as_str().to_string(),
            request_id: t.request_id.clone(),
            data: t.data.clone(),
            payload: t.payload.clone(),
            error: t.error.clone(),
            created_resources: t.created_resources.clone(),
            created_on: t.created_on,
            updated_on: t.updated_on,
            finished_on: t.finished_on,
            acknowledged_at: t.acknowledged_at,
            acknowledged_by: t.acknowledged_by,
        }
    }
}

impl TaskLine {
    fn into_task(self) -> Result<TaskRecord, String> {
        Ok(TaskRecord {
            state: TaskState::parse(&self.state).ok_or_else(|| format!("bad task state {:?}", self.state))?,
            id: self.id,
            client_id: self.client_id,
            user_id: self.user_id,
            project_id: self.project_id,
            region_id: self.region_id,
            task_type: self.task_type,
            request_id: self.request_id,
            data: self.data,
            payload: self.payload,
            error: self.error,
            created_resources: self.created_resources,
            created_on: self.created_on,
            updated_on: self.updated_on,
            finished_on: self.finished_on,
            acknowledged_at: self.acknowledged_at,
            acknowledged_by: self.acknowledged_by,
        })
    }
}

fn write_line(out: &mut dyn Write, line: &Line) -> Result<(), TransferError> {
    serde_json::to_writer(&mut *out, line).map_err(std::io::Error::from)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Calls `visit` on every item of a creation-ordered export (`export_groups`, `export_tasks`),
/// fetched a page at a time after the last position seen.
fn for_each_exported<T>(
    mut fetch: impl FnMut(i64) -> Result<Vec<(i64, T)>, StoreError>,
    mut visit: impl FnMut(T) -> Result<(), TransferError>,
) -> Result<(), TransferError> {
    let mut after = 0;
    loop {
        let page = fetch(after)?;
        let Some(&(last, _)) = page.last() else { return Ok(()) };
        after = last;
        for (_, item) in page {
            visit(item)?;
        }
    }
}

/// Writes the whole store, from one consistent snapshot. `source` names the backend.
pub fn export(store: &impl Store, source: &str, out: &mut dyn Write) -> Result<Summary, TransferError> {
    let summary = store.read(|tx| {
        let mut summary = Summary::default();
        // Ports are listed per client: every client that has a key, a group or a task.
        write_line(out, &Line::Header { format: FORMAT.into(), version: VERSION, source: source.into(), exported_at: now_ms() })?;
        for (key, token_hash) in tx.export_keys()? {
            write_line(
                out,
                &Line::ApiKey(KeyLine {
                    id: key.id,
                    token_hash,
                    client_id: key.client_id,
                    user_id: key.user_id,
                    projects: key.projects,
                    name: key.name,
                    created_at: key.created_at,
                    revoked_at: key.revoked_at,
                    role: key.role.as_str().to_string(),
                    host: key.host,
                }),
            )?;
            summary.api_keys += 1;
        }
        for (scope, limits) in tx.export_quotas()? {
            write_line(
                out,
                &Line::Quota(QuotaLine {
                    client_id: scope.client_id,
                    project_id: scope.project_id,
                    region_id: scope.region_id,
                    security_group_count: limits.security_groups,
                    security_group_rule_count: limits.security_group_rules,
                }),
            )?;
            summary.quotas += 1;
        }
        for_each_exported(
            |after| tx.export_groups(after, PAGE),
            |group| {
                summary.groups += 1;
                summary.rules += group.rules.len() as u64;
                summary.tags += group.tags.len() as u64;
                write_line(out, &Line::Group((&group).into()))
            },
        )?;
        for_each_exported(
            |after| tx.export_tasks(after, PAGE),
            |task| {
                summary.tasks += 1;
                write_line(out, &Line::Task((&task).into()))
            },
        )?;
        for port in tx.list_ports(None, &PortFilter::default())? {
            summary.ports += 1;
            write_line(out, &Line::Port((&port).into()))?;
        }
        write_line(out, &Line::PolicyRevision { revision: tx.policy_revision()? })?;
        write_line(out, &Line::End(summary))?;
        Ok::<_, TransferError>(summary)
    })?;
    out.flush()?;
    Ok(summary)
}

/// Loads an export into an empty store, all or nothing.
pub fn import(store: &impl Store, input: &mut dyn BufRead) -> Result<Summary, TransferError> {
    store.write(|tx| {
        if !tx.export_keys()?.is_empty() {
            return Err(TransferError::NotEmpty("it has API keys".into()));
        }
        if !tx.export_groups(0, 1)?.is_empty() {
            return Err(TransferError::NotEmpty("it has security groups".into()));
        }
        if !tx.export_quotas()?.is_empty() {
            return Err(TransferError::NotEmpty("it has quotas".into()));
        }
        if !tx.export_tasks(0, 1)?.is_empty() {
            return Err(TransferError::NotEmpty("it has tasks".into()));
        }
        let mut summary = Summary::default();
        let mut number = 0u64;
        let mut buffer = String::new();
        let mut header = false;
        let mut end = None;
        let mut policy_revision = None;
        loop {
            buffer.clear();
            if input.read_line(&mut buffer)? == 0 {
                break;
            }
            number += 1;
            let text = buffer.trim();
            if text.is_empty() {
                continue;
            }
            let bad = |message: String| TransferError::Format { line: number, message };
            if end.is_some() {
                return Err(bad("data after the end record".into()));
            }
            let line: Line = serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
            if !header && !matches!(line, Line::Header { .. }) {
                return Err(bad("the file does not start with a palisade-export header".into()));
            }
            match line {
                Line::Header { format, version, .. } => {
                    if header || format != FORMAT || version != VERSION {
                        return Err(bad(format!("unexpected header {format} version {version}")));
                    }
                    header = true;
                }
                Line::ApiKey(k) => {
                    let role = KeyRole::parse(&k.role).ok_or_else(|| bad(format!("unknown key role {}", k.role)))?;
                    let key = ApiKey {
                        id: k.id,
                        role,
                        host: k.host,
                        client_id: k.client_id,
                        user_id: k.user_id,
                        projects: k.projects,
                        name: k.name,
                        created_at: k.created_at,
                        revoked_at: k.revoked_at,
                    };
                    tx.import_key(&key, &k.token_hash)?;
                    summary.api_keys += 1;
                }
                Line::Quota(q) => {
                    let scope = Scope { client_id: q.client_id, project_id: q.project_id, region_id: q.region_id };
                    let limits = Limits { security_groups: q.security_group_count, security_group_rules: q.security_group_rule_count };
                    tx.set_quota(&scope, &limits)?;
                    summary.quotas += 1;
                }
                Line::Group(g) => {
                    let group = g.into_group().map_err(bad)?;
                    summary.groups += 1;
                    summary.rules += group.rules.len() as u64;
                    summary.tags += group.tags.len() as u64;
                    tx.insert_group(&group)?;
                }
                Line::Task(t) => {
                    tx.insert_task(&t.into_task().map_err(bad)?)?;
                    summary.tasks += 1;
                }
                Line::Port(p) => {
                    tx.insert_port(&p.into_port().map_err(bad)?)?;
                    summary.ports += 1;
                }
                Line::PolicyRevision { revision } => policy_revision = Some(revision),
                Line::End(expected) => end = Some(expected),
            }
        }
        match end {
            None => Err(TransferError::Format { line: number, message: "no end record: the file is truncated".into() }),
            Some(expected) if expected != summary => Err(TransferError::Format {
                line: number,
                message: format!("the end record counts {expected:?} but the file holds {summary:?}"),
            }),
            Some(_) => {
                // Above the exported revision, so agents that applied it fetch again.
                if let Some(revision) = policy_revision {
                    tx.raise_policy_revision(revision + 1)?;
                }
                Ok(summary)
            }
        }
    })
}
