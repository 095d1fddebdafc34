//! Rows that are not domain types: tasks, API keys, and the filters of list queries.

use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskState {
    New,
    Running,
    Finished,
    Error,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::New => "NEW",
            TaskState::Running => "RUNNING",
            TaskState::Finished => "FINISHED",
            TaskState::Error => "ERROR",
        }
    }

    pub fn parse(text: &str) -> Option<TaskState> {
        match text {
            "NEW" => Some(TaskState::New),
            "RUNNING" => Some(TaskState::Running),
            "FINISHED" => Some(TaskState::Finished),
            "ERROR" => Some(TaskState::Error),
            _ => None,
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, TaskState::Finished | TaskState::Error)
    }
}

/// A task row. `payload` is what the worker executes; `data` is what clients see.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub id: String,
    pub client_id: i64,
    pub user_id: i64,
    pub project_id: Option<i64>,
    pub region_id: Option<i64>,
    pub task_type: String,
    pub state: TaskState,
    pub request_id: Option<String>,
    pub data: Option<Value>,
    pub payload: Value,
    pub error: Option<String>,
    pub created_resources: Option<Value>,
    pub created_on: i64,
    pub updated_on: Option<i64>,
    pub finished_on: Option<i64>,
    pub acknowledged_at: Option<i64>,
    pub acknowledged_by: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupFilter {
    pub name: Option<String>,
    /// The group must have every key.
    pub tag_keys: Vec<String>,
    /// The group must have every pair.
    pub tag_pairs: Vec<(String, String)>,
    pub limit: u32,
    pub offset: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskFilter {
    pub project_ids: Vec<i64>,
    pub region_ids: Vec<i64>,
    pub states: Vec<TaskState>,
    pub task_type: Option<String>,
    pub is_acknowledged: Option<bool>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub ascending: bool,
    pub limit: u32,
    pub offset: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct AckFilter {
    pub project_id: Option<i64>,
    pub region_id: Option<i64>,
    /// Only these tasks (the deprecated bulk acknowledge); `None` for all.
    pub task_ids: Option<Vec<String>>,
}

/// Who an API key speaks for (docs/security.md has what each may do).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyRole {
    /// One client (Gcore's tenant), optionally limited to some of its projects.
    Tenant,
    /// The operator's control plane: ports, quotas, agents, the audit log of every client.
    Platform,
    /// One host's agent: reads that host's policy and reports what it applied.
    Agent,
}

impl KeyRole {
    pub const ALL: [KeyRole; 3] = [KeyRole::Tenant, KeyRole::Platform, KeyRole::Agent];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Tenant => "tenant",
            KeyRole::Platform => "platform",
            KeyRole::Agent => "agent",
        }
    }

    pub fn parse(text: &str) -> Option<KeyRole> {
        KeyRole::ALL.into_iter().find(|r| r.as_str() == text)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: i64,
    pub role: KeyRole,
    /// The host of an agent key.
    pub host: Option<String>,
    /// 0 for platform and agent keys: they act for no client.
    pub client_id: i64,
    pub user_id: i64,
    /// `None`: every project of the client.
    pub projects: Option<Vec<i64>>,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// A key for `insert_key`: the key as it will read back, and the hash of its token (the token
/// itself is never stored). The store assigns `key.id` and stores the key active, so `key.id` and
/// `key.revoked_at` are not written (as `AuditEvent::id` is not).
#[derive(Debug, Clone, PartialEq)]
pub struct NewApiKey {
    pub token_hash: String,
    pub key: ApiKey,
}

/// Which ports `list_ports` returns; every filter given must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortFilter {
    pub project_id: Option<i64>,
    pub region_id: Option<i64>,
    pub host: Option<String>,
    pub instance_id: Option<uuid::Uuid>,
}

/// What a host's agent last reported (one agent per host).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub host: String,
    pub applied_revision: i64,
    /// Unix milliseconds, UTC.
    pub reported_at: i64,
}

/// One change in the audit log (migration 0005_audit): who did what to which resource, and how it
/// ended. Written in the transaction of the change itself.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// Assigned by the store on insert (ignored by `insert_audit`); orders events of the same time.
    pub id: i64,
    /// Unix milliseconds, UTC.
    pub time: i64,
    /// The API key that made the change; `None` for the CLI.
    pub actor_key_id: Option<i64>,
    /// `tenant`, `platform`, `agent` or `cli`.
    pub actor_role: String,
    /// The client whose resources changed; `None` when the change belongs to no client.
    pub client_id: Option<i64>,
    /// The acting user (of a tenant key or a task).
    pub user_id: Option<i64>,
    pub project_id: Option<i64>,
    pub region_id: Option<i64>,
    /// `<resource>.<verb>`, such as `security_group.create`.
    pub action: String,
    pub resource_type: String,
    pub resource_id: Option<String>,
    pub request_id: Option<String>,
    /// `ok`, or the error class of a task that failed.
    pub outcome: String,
    /// A short JSON object of what changed.
    pub summary: Value,
}

/// Which audit events `list_audit` returns, newest first; every filter given must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// `None`: every client's events.
    pub client_id: Option<i64>,
    /// Only events of these projects or of no project (a project-limited key); `None`: any.
    pub project_ids: Option<Vec<i64>>,
    /// At or after, unix milliseconds.
    pub since_ms: Option<i64>,
    /// At or before, unix milliseconds.
    pub until_ms: Option<i64>,
    pub resource_id: Option<String>,
    pub action: Option<String>,
    pub limit: u32,
    pub offset: u64,
}
