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

#[derive(Debug, Clone, PartialEq)]
pub struct NewApiKey {
    pub token_hash: String,
    pub client_id: i64,
    pub user_id: i64,
    /// `None`: every project of the client.
    pub projects: Option<Vec<i64>>,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: i64,
    pub client_id: i64,
    pub user_id: i64,
    pub projects: Option<Vec<i64>>,
    pub name: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// Which ports `list_ports` returns; every filter given must match.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PortFilter {
    pub project_id: Option<i64>,
    pub region_id: Option<i64>,
    pub host: Option<String>,
    pub instance_id: Option<uuid::Uuid>,
}

/// What a host's agent last reported.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub client_id: i64,
    pub host: String,
    pub applied_revision: i64,
    /// Unix milliseconds, UTC.
    pub reported_at: i64,
}
