//! A security group as stored: its scope, its attributes, its rules and tags.

use uuid::Uuid;

use crate::rule::{Rule, RuleSpec};
use crate::tags::Tag;

/// Who owns a resource and where it lives. Every read and write is scoped by it, so one client
/// never sees another client's groups, rules or tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scope {
    pub client_id: i64,
    pub project_id: i64,
    pub region_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: Uuid,
    pub scope: Scope,
    pub name: String,
    pub description: String,
    /// Unix seconds, UTC.
    pub created_at: i64,
    pub updated_at: i64,
    pub revision_number: i64,
    /// In creation order (then id), which is the stable order GET returns.
    pub rules: Vec<Rule>,
    /// Sorted by key.
    pub tags: Vec<Tag>,
}

impl Group {
    /// The id of a rule of this group with the same identity as `spec`, if there is one.
    pub fn duplicate_of(&self, spec: &RuleSpec) -> Option<Uuid> {
        let key = spec.key();
        self.rules.iter().find(|rule| rule.spec.key() == key).map(|rule| rule.id)
    }

    pub fn rule(&self, id: Uuid) -> Option<&Rule> {
        self.rules.iter().find(|rule| rule.id == id)
    }

    /// The ids of remote groups this group's rules refer to (other than itself).
    pub fn remote_group_ids(&self) -> impl Iterator<Item = Uuid> + '_ {
        self.rules.iter().filter_map(|r| r.spec.remote_group_id).filter(move |id| *id != self.id)
    }
}
