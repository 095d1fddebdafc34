//! What a task row carries for the worker: the operation and its already schema-checked input.
//! Rules travel as the client's JSON and are parsed again when the task runs, so the task row
//! stays readable and the parser stays the single source of truth.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

pub const CREATE_SECURITY_GROUP: &str = "create_security_group";
pub const UPDATE_SECURITY_GROUP: &str = "update_security_group";
pub const CREATE_SECURITY_GROUP_RULE: &str = "create_security_group_rule";
pub const DELETE_SECURITY_GROUP_RULE: &str = "delete_security_group_rule";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum TaskPayload {
    CreateGroup {
        group_id: Uuid,
        name: String,
        description: String,
        /// `None` applies the default template.
        rules: Option<Vec<Value>>,
        tags: Vec<(String, String)>,
    },
    UpdateGroup {
        group_id: Uuid,
        name: Option<String>,
        description: Option<String>,
        rules: Option<Vec<Value>>,
    },
    CreateRule {
        group_id: Uuid,
        rule: Value,
    },
    DeleteRule {
        group_id: Uuid,
        rule_id: Uuid,
    },
}

impl TaskPayload {
    pub fn task_type(&self) -> &'static str {
        match self {
            TaskPayload::CreateGroup { .. } => CREATE_SECURITY_GROUP,
            TaskPayload::UpdateGroup { .. } => UPDATE_SECURITY_GROUP,
            TaskPayload::CreateRule { .. } => CREATE_SECURITY_GROUP_RULE,
            TaskPayload::DeleteRule { .. } => DELETE_SECURITY_GROUP_RULE,
        }
    }
}
