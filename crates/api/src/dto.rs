//! Response bodies, field for field as CONTRACT.md §4: every key present, null only where the
//! SDK's models allow it.

use palisade_core::group::Group;
use palisade_core::{Protocol, Rule, Tag};
use palisade_store::TaskRecord;
use serde::Serialize;
use serde_json::Value;

use crate::time;

#[derive(Serialize)]
pub struct Page<T> {
    pub count: u64,
    pub results: Vec<T>,
}

#[derive(Serialize)]
pub struct TaskIds {
    pub tasks: Vec<String>,
}

#[derive(Serialize)]
pub struct TagOut<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub read_only: bool,
}

impl<'a> From<&'a Tag> for TagOut<'a> {
    fn from(tag: &'a Tag) -> Self {
        TagOut { key: &tag.key, value: &tag.value, read_only: tag.read_only }
    }
}

#[derive(Serialize)]
pub struct RuleOut<'a> {
    pub id: String,
    pub security_group_id: String,
    pub direction: &'static str,
    pub ethertype: &'static str,
    pub protocol: Option<&'static str>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    pub remote_ip_prefix: Option<String>,
    pub remote_group_id: Option<String>,
    pub description: &'a str,
    pub revision_number: i64,
    pub created_at: String,
    pub updated_at: String,
}

impl<'a> From<&'a Rule> for RuleOut<'a> {
    fn from(rule: &'a Rule) -> Self {
        let spec = &rule.spec;
        let created = time::with_zone(rule.created_at);
        RuleOut {
            id: rule.id.to_string(),
            security_group_id: rule.group_id.to_string(),
            direction: spec.direction.as_str(),
            ethertype: spec.ethertype.as_str(),
            protocol: spec.protocol.map(Protocol::name),
            port_range_min: spec.port_range_min,
            port_range_max: spec.port_range_max,
            remote_ip_prefix: spec.remote_ip_prefix.map(|p| p.to_string()),
            remote_group_id: spec.remote_group_id.map(|id| id.to_string()),
            description: &spec.description,
            revision_number: 0,
            updated_at: created.clone(),
            created_at: created,
        }
    }
}

#[derive(Serialize)]
pub struct GroupOut<'a> {
    pub id: String,
    pub name: &'a str,
    pub description: &'a str,
    pub created_at: String,
    pub updated_at: String,
    pub project_id: i64,
    pub region_id: i64,
    pub region: String,
    pub revision_number: i64,
    pub security_group_rules: Vec<RuleOut<'a>>,
    pub tags_v2: Vec<TagOut<'a>>,
    /// The legacy mirror of `tags_v2` that GLC and the old Terraform provider read.
    pub metadata: Vec<TagOut<'a>>,
}

impl<'a> GroupOut<'a> {
    pub fn new(group: &'a Group, region: String) -> Self {
        GroupOut {
            id: group.id.to_string(),
            name: &group.name,
            description: &group.description,
            created_at: time::with_zone(group.created_at),
            updated_at: time::with_zone(group.updated_at),
            project_id: group.scope.project_id,
            region_id: group.scope.region_id,
            region,
            revision_number: group.revision_number,
            security_group_rules: group.rules.iter().map(RuleOut::from).collect(),
            tags_v2: group.tags.iter().map(TagOut::from).collect(),
            metadata: group.tags.iter().map(TagOut::from).collect(),
        }
    }
}

#[derive(Serialize)]
pub struct TaskOut<'a> {
    pub id: &'a str,
    pub state: &'static str,
    pub task_type: &'a str,
    pub user_id: i64,
    pub client_id: i64,
    pub user_client_id: i64,
    pub project_id: Option<i64>,
    pub region_id: Option<i64>,
    pub request_id: Option<&'a str>,
    pub error: Option<&'a str>,
    pub created_on: String,
    pub updated_on: Option<String>,
    pub finished_on: Option<String>,
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<i64>,
    pub data: Option<&'a Value>,
    pub created_resources: Option<&'a Value>,
    pub detailed_state: Option<()>,
    pub job_id: Option<()>,
    pub lifecycle_policy_id: Option<()>,
    pub schedule_id: Option<()>,
}

impl<'a> From<&'a TaskRecord> for TaskOut<'a> {
    fn from(task: &'a TaskRecord) -> Self {
        TaskOut {
            id: &task.id,
            state: task.state.as_str(),
            task_type: &task.task_type,
            user_id: task.user_id,
            client_id: task.client_id,
            user_client_id: task.client_id,
            project_id: task.project_id,
            region_id: task.region_id,
            request_id: task.request_id.as_deref(),
            error: task.error.as_deref(),
            created_on: time::naive(task.created_on),
            updated_on: task.updated_on.map(time::naive),
            finished_on: task.finished_on.map(time::naive),
            acknowledged_at: task.acknowledged_at.map(time::naive),
            acknowledged_by: task.acknowledged_by,
            data: task.data.as_ref(),
            created_resources: task.created_resources.as_ref(),
            detailed_state: None,
            job_id: None,
            lifecycle_policy_id: None,
            schedule_id: None,
        }
    }
}
