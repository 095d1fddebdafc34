//! What a task row carries for the worker: the operation and its already schema-checked input.
//! Rules travel as the client's JSON, with only the fields of the schema
//! (`palisade_core::input::known_rule_fields`: an unknown field is never stored), and are parsed
//! again when the task runs, so the task row stays readable and the parser stays the single
//! source of truth.

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

/// Who asked for a task: the API key and its role, kept in the task row's payload under `actor`
/// (next to the operation), so the audit event the worker writes when the task ends names them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requester {
    pub key_id: i64,
    pub role: String,
}

impl TaskPayload {
    /// What a task row stores: this operation, and who asked for it.
    pub fn to_row(&self, requester: &Requester) -> Value {
        let mut value = serde_json::to_value(self).expect("payloads serialise");
        if let Value::Object(fields) = &mut value {
            fields.insert("actor".into(), serde_json::to_value(requester).expect("requesters serialise"));
        }
        value
    }
}

/// The requester stored in a task row's payload (`None` for tasks queued before the audit log).
pub fn requester(payload: &Value) -> Option<Requester> {
    payload.get("actor").and_then(|actor| serde_json::from_value(actor.clone()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requester_rides_along_and_the_operation_still_reads() {
        let payload = TaskPayload::DeleteRule { group_id: Uuid::new_v4(), rule_id: Uuid::new_v4() };
        let requester = Requester { key_id: 7, role: "tenant".into() };
        let row = payload.to_row(&requester);
        assert_eq!(super::requester(&row), Some(requester));
        assert_eq!(serde_json::from_value::<TaskPayload>(row).unwrap(), payload);
        let old = serde_json::to_value(&payload).unwrap();
        assert_eq!(super::requester(&old), None);
    }
}
