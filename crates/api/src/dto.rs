//! Response bodies, field for field as CONTRACT.md §4: every key present, null only where the
//! SDK's models allow it.

use palisade_core::group::Group;
use palisade_core::{Protocol, Rule, Tag, UnixMs};
use palisade_store::TaskRecord;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::time;

#[derive(Serialize)]
pub struct Page<T> {
    pub count: u64,
    pub results: Vec<T>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = TaskIDList, examples(json!({"tasks": ["50e2042d-761b-4f5a-b5bf-e11031c747b0"]})))]
pub struct TaskIds {
    /// The ids of the tasks started (poll them).
    pub tasks: Vec<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Tag)]
pub struct TagOut<'a> {
    pub key: &'a str,
    pub value: &'a str,
    /// Server-owned tags cannot be changed or deleted by clients.
    pub read_only: bool,
}

impl<'a> From<&'a Tag> for TagOut<'a> {
    fn from(tag: &'a Tag) -> Self {
        TagOut { key: &tag.key, value: &tag.value, read_only: tag.read_only }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = SecurityGroupRule)]
pub struct RuleOut<'a> {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Uuid)]
    pub security_group_id: String,
    #[schema(value_type = crate::schema::Direction)]
    pub direction: &'static str,
    #[schema(value_type = crate::schema::Ethertype)]
    pub ethertype: &'static str,
    /// Null: all protocols (`any` is never returned).
    #[schema(value_type = Option<crate::schema::ProtocolV2>, required = true)]
    pub protocol: Option<&'static str>,
    #[schema(minimum = 0, maximum = 65535, required = true)]
    pub port_range_min: Option<u16>,
    #[schema(minimum = 0, maximum = 65535, required = true)]
    pub port_range_max: Option<u16>,
    /// Canonical CIDR.
    #[schema(required = true)]
    pub remote_ip_prefix: Option<String>,
    #[schema(format = Uuid, required = true)]
    pub remote_group_id: Option<String>,
    pub description: &'a str,
    /// Always 0: rules are immutable.
    pub revision_number: i64,
    /// Creation time, UTC, `YYYY-MM-DDTHH:MM:SS+0000`.
    #[schema(pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0000$", examples("2019-07-26T13:25:03+0000"))]
    pub created_at: String,
    /// Equal to `created_at`.
    #[schema(pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0000$")]
    pub updated_at: String,
}

impl<'a> From<&'a Rule> for RuleOut<'a> {
    fn from(rule: &'a Rule) -> Self {
        let spec = &rule.spec;
        let created = time::with_zone(UnixMs(rule.created_at));
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

#[derive(Serialize, ToSchema)]
#[schema(as = SecurityGroup)]
pub struct GroupOut<'a> {
    #[schema(format = Uuid)]
    pub id: String,
    pub name: &'a str,
    /// `""` when never set.
    pub description: &'a str,
    /// Creation time, UTC, `YYYY-MM-DDTHH:MM:SS+0000`.
    #[schema(pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0000$")]
    pub created_at: String,
    /// Time of the last change, UTC, `YYYY-MM-DDTHH:MM:SS+0000`.
    #[schema(pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+0000$")]
    pub updated_at: String,
    pub project_id: i64,
    pub region_id: i64,
    /// The region's display name (configured, else `Region <id>`).
    #[schema(examples("Luxembourg 1"))]
    pub region: String,
    /// 0 at creation, +1 on every change (name, description, tags, rules).
    pub revision_number: i64,
    pub security_group_rules: Vec<RuleOut<'a>>,
    /// Sorted by key.
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
            created_at: time::with_zone(UnixMs(group.created_at)),
            updated_at: time::with_zone(UnixMs(group.updated_at)),
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

/// Task times are naive UTC, `YYYY-MM-DDTHH:MM:SS`.
#[derive(Serialize, ToSchema)]
#[schema(as = Task)]
pub struct TaskOut<'a> {
    /// A UUID.
    pub id: &'a str,
    #[schema(value_type = crate::schema::TaskState)]
    pub state: &'static str,
    #[schema(examples("create_security_group", "update_security_group", "create_security_group_rule", "delete_security_group_rule"))]
    pub task_type: &'a str,
    /// The user whose key started the task.
    pub user_id: i64,
    /// The client (account) of that key.
    pub client_id: i64,
    /// Equal to `client_id`.
    pub user_client_id: i64,
    #[schema(required = true)]
    pub project_id: Option<i64>,
    #[schema(required = true)]
    pub region_id: Option<i64>,
    /// The id of the request that started the task.
    #[schema(required = true)]
    pub request_id: Option<&'a str>,
    /// Why the task failed; null unless `state` is `ERROR`.
    #[schema(required = true)]
    pub error: Option<&'a str>,
    /// Creation time.
    #[schema(pattern = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$", examples("2026-07-01T13:37:14"))]
    pub created_on: String,
    /// Time of the last state change.
    #[schema(required = true)]
    pub updated_on: Option<String>,
    /// Time the task became FINISHED or ERROR.
    #[schema(required = true)]
    pub finished_on: Option<String>,
    /// Acknowledgement time.
    #[schema(required = true)]
    pub acknowledged_at: Option<String>,
    /// The user who acknowledged the task.
    #[schema(required = true)]
    pub acknowledged_by: Option<i64>,
    /// The task's parameters: the request body plus the ids it applies to. Any JSON, or null.
    #[schema(value_type = Value, required = true)]
    pub data: Option<&'a Value>,
    #[schema(value_type = Option<crate::schema::CreatedResources>, required = true)]
    pub created_resources: Option<&'a Value>,
    /// Always null.
    #[schema(value_type = Option<String>, required = true)]
    pub detailed_state: Option<()>,
    /// Always null.
    #[schema(value_type = Option<String>, required = true)]
    pub job_id: Option<()>,
    /// Always null.
    #[schema(value_type = Option<i64>, required = true)]
    pub lifecycle_policy_id: Option<()>,
    /// Always null.
    #[schema(value_type = Option<String>, required = true)]
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
            created_on: time::naive(UnixMs(task.created_on)),
            updated_on: task.updated_on.map(|ms| time::naive(UnixMs(ms))),
            finished_on: task.finished_on.map(|ms| time::naive(UnixMs(ms))),
            acknowledged_at: task.acknowledged_at.map(|ms| time::naive(UnixMs(ms))),
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
