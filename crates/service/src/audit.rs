//! The writing side of the audit log: who acted ([`Actor`]), what changed ([`Change`]), and
//! [`record`], which appends the event inside the caller's transaction, so an event exists
//! exactly when its change was committed.
//!
//! Every path that changes state calls [`record`] once, right after the operation and in the same
//! transaction: the API handlers (v1 endpoints, ports, quotas, bindings, tags, acknowledgements),
//! the task loop when a v2 task ends (FINISHED or ERROR, in the transaction that marks it), and the
//! CLI for API keys. The scheme of actions, resources and summaries is in docs/operations.md.

use palisade_core::RuleError;
use palisade_core::group::{Group, Scope};
use palisade_core::port::Port;

use palisade_store::{AuditEvent, StoreResult, Tx, now_ms};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::ops::OpError;

/// The role of changes made with the `palisade` CLI (no API key).
pub const ROLE_CLI: &str = "cli";
/// The outcome of a change that was applied.
pub const OK: &str = "ok";

/// Who made a change: an API key and its role, the key's user, and the request that asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// `None` for the CLI.
    pub key_id: Option<i64>,
    /// `tenant`, `platform`, `agent`, or `cli`.
    pub role: String,
    pub user_id: Option<i64>,
    /// The `x-request-id` of the request (for a task: the one that queued it).
    pub request_id: Option<String>,
}

impl Actor {
    /// An operator at the `palisade` CLI.
    pub fn cli() -> Actor {
        Actor { key_id: None, role: ROLE_CLI.into(), user_id: None, request_id: None }
    }
}

/// What was done. The action is `<resource>.<verb>`; rule changes are changes of their group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    GroupCreate,
    GroupUpdate,
    GroupDelete,
    GroupCopy,
    GroupRevert,
    /// The group's tags (v1 metadata endpoints, and the tags of a v2 PATCH, applied at once).
    GroupMetadata,
    RuleCreate,
    RuleDelete,
    /// The deprecated v1 PUT: the rule is deleted and one with a new id created.
    RuleReplace,
    PortCreate,
    PortUpdate,
    PortDelete,
    InstanceAddGroup,
    InstanceDelGroup,
    QuotaSet,
    KeyCreate,
    KeyRevoke,
    TaskAcknowledge,
}

impl Action {
    pub const ALL: [Action; 18] = [
        Action::GroupCreate,
        Action::GroupUpdate,
        Action::GroupDelete,
        Action::GroupCopy,
        Action::GroupRevert,
        Action::GroupMetadata,
        Action::RuleCreate,
        Action::RuleDelete,
        Action::RuleReplace,
        Action::PortCreate,
        Action::PortUpdate,
        Action::PortDelete,
        Action::InstanceAddGroup,
        Action::InstanceDelGroup,
        Action::QuotaSet,
        Action::KeyCreate,
        Action::KeyRevoke,
        Action::TaskAcknowledge,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::GroupCreate => "security_group.create",
            Action::GroupUpdate => "security_group.update",
            Action::GroupDelete => "security_group.delete",
            Action::GroupCopy => "security_group.copy",
            Action::GroupRevert => "security_group.revert",
            Action::GroupMetadata => "security_group.metadata",
            Action::RuleCreate => "security_group_rule.create",
            Action::RuleDelete => "security_group_rule.delete",
            Action::RuleReplace => "security_group_rule.replace",
            Action::PortCreate => "port.create",
            Action::PortUpdate => "port.update",
            Action::PortDelete => "port.delete",
            Action::InstanceAddGroup => "instance.add_security_group",
            Action::InstanceDelGroup => "instance.del_security_group",
            Action::QuotaSet => "quota.set",
            Action::KeyCreate => "api_key.create",
            Action::KeyRevoke => "api_key.revoke",
            Action::TaskAcknowledge => "task.acknowledge",
        }
    }

    pub fn parse(text: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == text)
    }

    /// The kind of `resource_id`: a rule's changes are its group's (the rule ids are in the summary).
    pub fn resource_type(self) -> &'static str {
        match self.as_str().split_once('.').map(|(resource, _)| resource) {
            Some("security_group_rule") => "security_group",
            Some(resource) => resource,
            None => "",
        }
    }
}

/// Whose change it is: the client whose resources changed (not necessarily the actor's: a
/// platform key changes tenants' ports and quotas) and their project and region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Place {
    pub client_id: Option<i64>,
    pub project_id: Option<i64>,
    pub region_id: Option<i64>,
}

impl Place {
    pub fn client(client_id: i64) -> Place {
        Place { client_id: Some(client_id), project_id: None, region_id: None }
    }

    /// The change belongs to no client (a platform or agent key's creation).
    pub fn nobody() -> Place {
        Place::default()
    }
}

impl From<&Scope> for Place {
    fn from(scope: &Scope) -> Place {
        Place { client_id: Some(scope.client_id), project_id: Some(scope.project_id), region_id: Some(scope.region_id) }
    }
}

/// One change, ready to be recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub action: Action,
    pub place: Place,
    pub resource_id: Option<String>,
    pub outcome: String,
    pub summary: Value,
}

impl Change {
    pub fn new(action: Action, place: impl Into<Place>, resource_id: impl ToString) -> Change {
        Change { action, place: place.into(), resource_id: Some(resource_id.to_string()), outcome: OK.into(), summary: json!({}) }
    }

    /// A change of no single resource (a bulk acknowledgement, a quota).
    pub fn of_many(action: Action, place: impl Into<Place>) -> Change {
        Change { resource_id: None, ..Change::new(action, place, "") }
    }

    pub fn summary(mut self, summary: Value) -> Change {
        self.summary = summary;
        self
    }

    /// A change that was refused: `outcome` is its error class (see [`outcome_of`]).
    pub fn failed(mut self, outcome: &str) -> Change {
        self.outcome = outcome.to_string();
        self
    }
}

/// Appends the event of `change` by `actor`, in `tx`: call it in the transaction of the change.
pub fn record(tx: &mut dyn Tx, actor: &Actor, change: Change) -> StoreResult<()> {
    tx.insert_audit(&AuditEvent {
        id: 0,
        time: now_ms(),
        actor_key_id: actor.key_id,
        actor_role: actor.role.clone(),
        client_id: change.place.client_id,
        user_id: actor.user_id,
        project_id: change.place.project_id,
        region_id: change.place.region_id,
        action: change.action.as_str().to_string(),
        resource_type: change.action.resource_type().to_string(),
        resource_id: change.resource_id,
        request_id: actor.request_id.clone().filter(|id| !id.is_empty()),
        outcome: change.outcome,
        summary: change.summary,
    })
}

/// The error class of a failed operation, as a failed task's event reports it.
pub fn outcome_of(e: &OpError) -> &'static str {
    match e {
        OpError::NotFound(_) | OpError::Rule(RuleError::RemoteGroupNotFound { .. }) => "NotFound",
        OpError::Invalid(_) | OpError::Rule(RuleError::Invalid { .. }) => "Invalid",
        OpError::Rule(RuleError::Duplicate { .. }) | OpError::Conflict { .. } => "Conflict",
        OpError::Quota(_) => "QuotaExceeded",
        OpError::TooManyTasks { .. } => "TooManyTasks",
        OpError::DeadlineExceeded => "DeadlineExceeded",
        OpError::Store(_) => "StoreError",
    }
}

fn ids(ids: impl IntoIterator<Item = Uuid>) -> Value {
    Value::Array(ids.into_iter().map(|id| Value::String(id.to_string())).collect())
}

/// The ids of rules of `after` that `before` lacks.
fn rules_not_in(after: &Group, before: &Group) -> Vec<Uuid> {
    after.rules.iter().filter(|r| !before.rules.iter().any(|b| b.id == r.id)).map(|r| r.id).collect()
}

/// What changed between two states of a group: `changed` (the fields among `name`, `description`
/// and `tags` that differ), `rules_added` and `rules_removed` (rule ids), and for tags
/// `tags_set` (key: new value) and `tags_removed` (keys).
pub fn group_changes(before: &Group, after: &Group) -> Value {
    let mut changed = Vec::new();
    if before.name != after.name {
        changed.push("name");
    }
    if before.description != after.description {
        changed.push("description");
    }
    let mut summary = Map::new();
    if before.tags != after.tags {
        changed.push("tags");
        let set: Map<String, Value> = after
            .tags
            .iter()
            .filter(|t| !before.tags.iter().any(|b| b.key == t.key && b.value == t.value))
            .map(|t| (t.key.clone(), Value::String(t.value.clone())))
            .collect();
        let removed: Vec<&str> =
            before.tags.iter().filter(|b| !after.tags.iter().any(|t| t.key == b.key)).map(|b| b.key.as_str()).collect();
        summary.insert("tags_set".into(), Value::Object(set));
        summary.insert("tags_removed".into(), json!(removed));
    }
    summary.insert("changed".into(), json!(changed));
    summary.insert("rules_added".into(), ids(rules_not_in(after, before)));
    summary.insert("rules_removed".into(), ids(rules_not_in(before, after)));
    Value::Object(summary)
}

/// A new group: its name and rules.
pub fn group_created(group: &Group) -> Value {
    json!({"name": group.name, "rules_added": ids(group.rules.iter().map(|r| r.id))})
}

/// Rules added to and removed from a group.
pub fn rules_changed(added: &[Uuid], removed: &[Uuid]) -> Value {
    json!({"rules_added": ids(added.iter().copied()), "rules_removed": ids(removed.iter().copied())})
}

/// A port as its creation or deletion event shows it.
pub fn port_described(port: &Port) -> Value {
    json!({
        "instance_id": port.instance_id,
        "host": port.host,
        "device": port.device,
        "mac_address": port.mac.to_string(),
        "fixed_ips": port.fixed_ips,
        "security_group_ids": ids(port.security_group_ids.iter().copied()),
    })
}

/// What changed between two states of a port: `changed` (the fields that differ) and the groups
/// bound and unbound.
pub fn port_changes(before: &Port, after: &Port) -> Value {
    let mut changed = Vec::new();
    for (field, differs) in [
        ("instance_name", before.instance_name != after.instance_name),
        ("host", before.host != after.host),
        ("device", before.device != after.device),
        ("mac_address", before.mac != after.mac),
        ("fixed_ips", before.fixed_ips != after.fixed_ips),
        ("security_group_ids", before.security_group_ids != after.security_group_ids),
    ] {
        if differs {
            changed.push(field);
        }
    }
    let added = after.security_group_ids.iter().filter(|g| !before.security_group_ids.contains(g)).copied();
    let removed = before.security_group_ids.iter().filter(|g| !after.security_group_ids.contains(g)).copied();
    json!({"changed": changed, "security_groups_added": ids(added), "security_groups_removed": ids(removed)})
}

#[cfg(test)]
mod tests {
    use palisade_core::{Ethertype, Rule, RuleSpec, Tag};

    use super::*;

    #[test]
    fn actions_name_their_resource() {
        for action in Action::ALL {
            assert_eq!(Action::parse(action.as_str()), Some(action));
            assert!(!action.resource_type().is_empty(), "{action:?}");
        }
        assert_eq!(Action::RuleDelete.resource_type(), "security_group");
        assert_eq!(Action::GroupCopy.resource_type(), "security_group");
        assert_eq!(Action::InstanceAddGroup.resource_type(), "instance");
        assert_eq!(Action::KeyRevoke.resource_type(), "api_key");
        assert_eq!(Action::TaskAcknowledge.resource_type(), "task");
    }

    fn group(rules: &[Uuid], tags: &[(&str, &str)]) -> Group {
        let id = Uuid::nil();
        Group {
            id,
            scope: Scope { client_id: 1, project_id: 1, region_id: 1 },
            name: "web".into(),
            description: String::new(),
            created_at: 0,
            updated_at: 0,
            revision_number: 0,
            rules: rules
                .iter()
                .map(|rule_id| Rule { id: *rule_id, group_id: id, spec: RuleSpec::allow_all_egress(Ethertype::IPv4), created_at: 0 })
                .collect(),
            tags: tags.iter().map(|(k, v)| Tag::user(k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn group_changes_name_rules_and_tags() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let before = group(&[a, b], &[("env", "dev"), ("team", "x")]);
        let mut after = group(&[b, c], &[("env", "prod"), ("new", "1")]);
        after.name = "api".into();
        assert_eq!(
            group_changes(&before, &after),
            json!({
                "changed": ["name", "tags"],
                "rules_added": [c.to_string()],
                "rules_removed": [a.to_string()],
                "tags_set": {"env": "prod", "new": "1"},
                "tags_removed": ["team"],
            })
        );
        assert_eq!(group_changes(&before, &before), json!({"changed": [], "rules_added": [], "rules_removed": []}));
    }
}
