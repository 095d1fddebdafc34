//! The mutations of security groups, each inside a caller's transaction. Task execution and the
//! synchronous v1 endpoints share them, so both paths check and change state the same way.

use palisade_core::error::FieldErrors;
use palisade_core::group::{Group, Scope};
use palisade_core::input::{LegacyUpdateGroup, RuleChange};
use palisade_core::quota::{Limits, QuotaExceeded};
use palisade_core::rule::dedupe;
use palisade_core::{Rule, RuleDraft, RuleError, RuleSpec, Tag, TagPatch, diff::diff_rules};
use palisade_store::{StoreError, Tx};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// 404 on synchronous paths.
    #[error("{0}")]
    NotFound(String),
    /// 400 on synchronous paths (schema-level, found late).
    #[error("{0}")]
    Invalid(FieldErrors),
    /// 400/404/409 on synchronous paths, task ERROR on v2 paths.
    #[error("{0}")]
    Rule(RuleError),
    /// 409 `QuotaLimitExceed` on synchronous paths, task ERROR on v2 paths.
    #[error("{0}")]
    Quota(QuotaExceeded),
    /// 409 with the exception class and structured `info` (e.g. a group still bound to ports).
    #[error("{message}")]
    Conflict { class: &'static str, message: String, info: Option<serde_json::Value> },
    /// 429 with a retry hint: the client already has `open_limit` unfinished tasks
    /// (`crate::queue::enqueue`), so one client's flood cannot grow the queue without bound.
    #[error("This client has {open_limit} unfinished tasks; retry when some have finished")]
    TooManyTasks { open_limit: u32 },
    /// 504: work bounded by a [`crate::deadline::Deadline`] ran past it.
    #[error("the deadline passed")]
    DeadlineExceeded,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub type OpResult<T> = Result<T, OpError>;

/// What the operations need from the service configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Rules of a group created without `rules`, and of a reverted group.
    pub template: Vec<RuleSpec>,
    /// Limits of scopes that have none of their own.
    pub default_quotas: Limits,
    /// Flow records one client keeps; beyond it the oldest go first.
    pub flow_log_max_records_per_client: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            template: palisade_core::rule::default_template(),
            default_quotas: Limits::default(),
            flow_log_max_records_per_client: crate::observe::DEFAULT_MAX_FLOW_RECORDS_PER_CLIENT,
        }
    }
}

/// The limits that apply to `scope`.
pub fn limits(tx: &mut dyn Tx, scope: &Scope, settings: &Settings) -> OpResult<Limits> {
    Ok(tx.get_quota(scope)?.unwrap_or(settings.default_quotas))
}

/// Runs `change` and refuses it if it grew the scope's groups or rules beyond their limits.
/// Usage is read before and after inside the same transaction, with the scope locked, so two
/// concurrent writers can never both take the last slot.
fn within_quota<T>(tx: &mut dyn Tx, scope: &Scope, settings: &Settings, change: impl FnOnce(&mut dyn Tx) -> OpResult<T>) -> OpResult<T> {
    tx.lock_scope(scope)?;
    let before = tx.usage(scope)?;
    let value = change(tx)?;
    let after = tx.usage(scope)?;
    limits(tx, scope, settings)?.check(before, after).map_err(OpError::Quota)?;
    Ok(value)
}

pub fn group_not_found(id: Uuid) -> OpError {
    OpError::NotFound(format!("Security group {id} could not be found"))
}

pub fn rule_not_found(id: Uuid) -> OpError {
    OpError::NotFound(format!("Security group rule {id} could not be found"))
}

/// Loads a group of `scope` or fails with 404.
pub fn load_group(tx: &mut dyn Tx, scope: &Scope, id: Uuid) -> OpResult<Group> {
    tx.get_group(scope, id)?.ok_or_else(|| group_not_found(id))
}

/// The group as it is before a change that will lock its scope (a quota-checked change), read
/// under the scope lock: every write takes the scope lock before the group's row lock (which a
/// write's read of the group takes on PostgreSQL), so two writers never wait on each other in
/// opposite orders.
pub fn load_group_for_change(tx: &mut dyn Tx, scope: &Scope, id: Uuid) -> OpResult<Group> {
    tx.lock_scope(scope)?;
    load_group(tx, scope, id)
}

/// Normalises drafts, reporting each error under `field.i`, and drops duplicate identities.
pub fn normalize_all(drafts: &[RuleDraft], field: &str) -> Result<Vec<RuleSpec>, RuleError> {
    let specs = drafts
        .iter()
        .enumerate()
        .map(|(i, draft)| draft.normalize().map_err(|e| e.within(&format!("{field}.{i}"))))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(dedupe(specs))
}

/// `remote_group_id` must name a group of the same client, project and region (or the group itself).
fn check_remote_groups(tx: &mut dyn Tx, scope: &Scope, own_id: Uuid, specs: &[RuleSpec], field: &str) -> OpResult<()> {
    for (i, spec) in specs.iter().enumerate() {
        if let Some(remote) = spec.remote_group_id {
            if remote != own_id && !tx.group_exists(scope, remote)? {
                let field = if field.is_empty() { "remote_group_id".to_string() } else { format!("{field}.{i}.remote_group_id") };
                return Err(OpError::Rule(RuleError::RemoteGroupNotFound { field, id: remote }));
            }
        }
    }
    Ok(())
}

fn new_rule(group_id: Uuid, spec: RuleSpec, now: i64) -> Rule {
    Rule { id: Uuid::new_v4(), group_id, spec, created_at: now }
}

fn touch(group: &mut Group, now: i64) {
    group.revision_number += 1;
    group.updated_at = now;
}

pub struct NewGroup<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub description: &'a str,
    /// `None` applies `template`.
    pub rules: Option<&'a [RuleDraft]>,
    pub tags: &'a [(String, String)],
}

pub fn create_group(tx: &mut dyn Tx, scope: &Scope, new: NewGroup<'_>, settings: &Settings, now: i64) -> OpResult<Group> {
    within_quota(tx, scope, settings, |tx| insert_new_group(tx, scope, new, &settings.template, now))
}

fn insert_new_group(tx: &mut dyn Tx, scope: &Scope, new: NewGroup<'_>, template: &[RuleSpec], now: i64) -> OpResult<Group> {
    let specs = match new.rules {
        None => template.to_vec(),
        Some(drafts) => normalize_all(drafts, "rules").map_err(OpError::Rule)?,
    };
    check_remote_groups(tx, scope, new.id, &specs, "rules")?;
    let mut tags: Vec<Tag> = new.tags.iter().map(|(k, v)| Tag::user(k.clone(), v.clone())).collect();
    tags.sort();
    let group = Group {
        id: new.id,
        scope: *scope,
        name: new.name.to_string(),
        description: new.description.to_string(),
        created_at: now,
        updated_at: now,
        revision_number: 0,
        rules: specs.into_iter().map(|spec| new_rule(new.id, spec, now)).collect(),
        tags,
    };
    tx.insert_group(&group)?;
    Ok(group)
}

/// What a v2 update changes; a `None` part stays as it is.
#[derive(Debug, Clone, Copy, Default)]
pub struct GroupEdit<'a> {
    pub name: Option<&'a str>,
    pub description: Option<&'a str>,
    /// The desired final rule set.
    pub rules: Option<&'a [RuleDraft]>,
}

/// Applies name, description and desired rules; returns the group and the ids of added rules.
/// Nothing is written when nothing changes.
#[allow(clippy::too_many_arguments)]
pub fn update_group(
    tx: &mut dyn Tx,
    scope: &Scope,
    id: Uuid,
    name: Option<&str>,
    description: Option<&str>,
    rules: Option<&[RuleDraft]>,
    settings: &Settings,
    now: i64,
) -> OpResult<(Group, Vec<Uuid>)> {
    let edit = GroupEdit { name, description, rules };
    within_quota(tx, scope, settings, |tx| apply_update(tx, scope, id, edit, now))
}

fn apply_update(tx: &mut dyn Tx, scope: &Scope, id: Uuid, edit: GroupEdit<'_>, now: i64) -> OpResult<(Group, Vec<Uuid>)> {
    let GroupEdit { name, description, rules } = edit;
    let mut group = load_group(tx, scope, id)?;
    let mut changed = false;
    if let Some(name) = name.filter(|n| *n != group.name) {
        group.name = name.to_string();
        changed = true;
    }
    if let Some(description) = description.filter(|d| *d != group.description) {
        group.description = description.to_string();
        changed = true;
    }
    let mut added = Vec::new();
    if let Some(drafts) = rules {
        let desired = normalize_all(drafts, "rules").map_err(OpError::Rule)?;
        check_remote_groups(tx, scope, id, &desired, "rules")?;
        let diff = diff_rules(&group.rules, &desired);
        for rule_id in &diff.delete {
            tx.delete_rule(scope, *rule_id)?;
        }
        group.rules.retain(|r| !diff.delete.contains(&r.id));
        for spec in diff.create {
            let rule = new_rule(id, spec, now);
            tx.insert_rule(scope, &rule)?;
            added.push(rule.id);
            group.rules.push(rule);
        }
        changed |= !diff.delete.is_empty() || !added.is_empty();
    }
    if changed {
        touch(&mut group, now);
        tx.update_group(&group)?;
    }
    Ok((group, added))
}

/// Would [`update_group`] change anything? Decides whether a v2 PATCH needs a task at all.
pub fn update_changes_something(group: &Group, name: Option<&str>, description: Option<&str>, rules: Option<&[RuleDraft]>) -> bool {
    if name.is_some_and(|n| n != group.name) || description.is_some_and(|d| d != group.description) {
        return true;
    }
    match rules {
        None => false,
        Some(drafts) => match normalize_all(drafts, "rules") {
            // An invalid rule set is a change attempt: its task reports the error.
            Err(_) => true,
            Ok(desired) => !diff_rules(&group.rules, &desired).is_empty(),
        },
    }
}

pub fn patch_tags(tx: &mut dyn Tx, scope: &Scope, id: Uuid, patch: &TagPatch, now: i64) -> OpResult<Group> {
    let mut group = load_group(tx, scope, id)?;
    let tags = patch.apply(&group.tags);
    if tags != group.tags {
        tx.replace_tags(id, &tags)?;
        group.tags = tags;
        touch(&mut group, now);
        tx.update_group(&group)?;
    }
    Ok(group)
}

pub fn add_rule(tx: &mut dyn Tx, scope: &Scope, group_id: Uuid, draft: &RuleDraft, settings: &Settings, now: i64) -> OpResult<Rule> {
    within_quota(tx, scope, settings, |tx| insert_rule(tx, scope, group_id, draft, now))
}

fn insert_rule(tx: &mut dyn Tx, scope: &Scope, group_id: Uuid, draft: &RuleDraft, now: i64) -> OpResult<Rule> {
    let mut group = load_group(tx, scope, group_id)?;
    let spec = draft.normalize().map_err(OpError::Rule)?;
    check_remote_groups(tx, scope, group_id, std::slice::from_ref(&spec), "")?;
    if let Some(existing) = group.duplicate_of(&spec) {
        return Err(OpError::Rule(RuleError::Duplicate { field: "rule".into(), existing }));
    }
    let rule = new_rule(group_id, spec, now);
    tx.insert_rule(scope, &rule)?;
    touch(&mut group, now);
    tx.update_group(&group)?;
    Ok(rule)
}

/// Deletes a rule; with `group_id` the rule must belong to that group.
pub fn delete_rule(tx: &mut dyn Tx, scope: &Scope, group_id: Option<Uuid>, rule_id: Uuid, now: i64) -> OpResult<Group> {
    let owner = tx.group_of_rule(scope, rule_id)?.ok_or_else(|| rule_not_found(rule_id))?;
    if group_id.is_some_and(|g| g != owner) {
        return Err(rule_not_found(rule_id));
    }
    let mut group = load_group(tx, scope, owner)?;
    tx.delete_rule(scope, rule_id)?;
    group.rules.retain(|r| r.id != rule_id);
    touch(&mut group, now);
    tx.update_group(&group)?;
    Ok(group)
}

/// The deprecated PUT: delete the rule and create one with the given attributes and a new id.
pub fn replace_rule(
    tx: &mut dyn Tx,
    scope: &Scope,
    rule_id: Uuid,
    expected_group: Option<Uuid>,
    draft: &RuleDraft,
    now: i64,
) -> OpResult<Rule> {
    let owner = tx.group_of_rule(scope, rule_id)?.ok_or_else(|| rule_not_found(rule_id))?;
    if let Some(expected) = expected_group.filter(|g| *g != owner) {
        return Err(OpError::Invalid(FieldErrors::single(
            "security_group_id",
            format!("Rule {rule_id} belongs to security group {owner}, not {expected}"),
        )));
    }
    let mut group = load_group(tx, scope, owner)?;
    let spec = draft.normalize().map_err(OpError::Rule)?;
    check_remote_groups(tx, scope, owner, std::slice::from_ref(&spec), "")?;
    group.rules.retain(|r| r.id != rule_id);
    if let Some(existing) = group.duplicate_of(&spec) {
        return Err(OpError::Rule(RuleError::Duplicate { field: "rule".into(), existing }));
    }
    tx.delete_rule(scope, rule_id)?;
    let rule = new_rule(owner, spec, now);
    tx.insert_rule(scope, &rule)?;
    touch(&mut group, now);
    tx.update_group(&group)?;
    Ok(rule)
}

/// The deprecated v1 PATCH: name, tags and `changed_rules` applied in order.
pub fn legacy_update(
    tx: &mut dyn Tx,
    scope: &Scope,
    id: Uuid,
    update: &LegacyUpdateGroup,
    settings: &Settings,
    now: i64,
) -> OpResult<Group> {
    within_quota(tx, scope, settings, |tx| apply_legacy_update(tx, scope, id, update, now))
}

fn apply_legacy_update(tx: &mut dyn Tx, scope: &Scope, id: Uuid, update: &LegacyUpdateGroup, now: i64) -> OpResult<Group> {
    let LegacyUpdateGroup { name, tags, changed_rules } = update;
    load_group(tx, scope, id)?;
    if let Some(patch) = tags {
        patch_tags(tx, scope, id, patch, now)?;
    }
    if name.is_some() {
        apply_update(tx, scope, id, GroupEdit { name: name.as_deref(), ..GroupEdit::default() }, now)?;
    }
    for (i, change) in changed_rules.iter().enumerate() {
        let field = format!("changed_rules.{i}");
        match change {
            RuleChange::Create(draft) => {
                insert_rule(tx, scope, id, draft, now).map_err(|e| match e {
                    OpError::Rule(rule_error) => OpError::Rule(rule_error.within(&field)),
                    other => other,
                })?;
            }
            RuleChange::Delete(rule_id) => {
                delete_rule(tx, scope, Some(id), *rule_id, now)?;
            }
        }
    }
    load_group(tx, scope, id)
}

pub fn copy_group(tx: &mut dyn Tx, scope: &Scope, id: Uuid, name: &str, settings: &Settings, now: i64) -> OpResult<Group> {
    within_quota(tx, scope, settings, |tx| insert_copy(tx, scope, id, name, now))
}

fn insert_copy(tx: &mut dyn Tx, scope: &Scope, id: Uuid, name: &str, now: i64) -> OpResult<Group> {
    let source = load_group(tx, scope, id)?;
    let new_id = Uuid::new_v4();
    let copy = Group {
        id: new_id,
        scope: *scope,
        name: name.to_string(),
        description: source.description.clone(),
        created_at: now,
        updated_at: now,
        revision_number: 0,
        rules: source
            .rules
            .iter()
            // Same attributes, `remote_group_id` kept as is (CONTRACT.md §5.5): a rule that named
            // the source group still names the source group.
            .map(|r| new_rule(new_id, r.spec.clone(), now))
            .collect(),
        tags: source.tags.iter().filter(|t| !t.read_only).cloned().collect(),
    };
    tx.insert_group(&copy)?;
    Ok(copy)
}

pub fn revert_group(tx: &mut dyn Tx, scope: &Scope, id: Uuid, settings: &Settings, now: i64) -> OpResult<Group> {
    within_quota(tx, scope, settings, |tx| reset_rules(tx, scope, id, &settings.template, now))
}

fn reset_rules(tx: &mut dyn Tx, scope: &Scope, id: Uuid, template: &[RuleSpec], now: i64) -> OpResult<Group> {
    let mut group = load_group(tx, scope, id)?;
    for rule in &group.rules {
        tx.delete_rule(scope, rule.id)?;
    }
    group.rules = template.iter().map(|spec| new_rule(id, spec.clone(), now)).collect();
    for rule in &group.rules {
        tx.insert_rule(scope, rule)?;
    }
    touch(&mut group, now);
    tx.update_group(&group)?;
    Ok(group)
}

/// Deletes a group. Rules of other groups that use it as `remote_group_id` are deleted with it,
/// as Neutron does (their groups get a new revision), so no rule points at a missing group.
/// Deletes the group (with its rules, and the rules of other groups naming it as their remote
/// group).
pub fn delete_group(tx: &mut dyn Tx, scope: &Scope, id: Uuid, now: i64) -> OpResult<()> {
    if !tx.group_exists(scope, id)? {
        return Err(group_not_found(id));
    }
    crate::ports::check_group_unused(tx, id)?;
    for (rule_id, group_id) in tx.rules_referencing(id)? {
        tx.delete_rule(scope, rule_id)?;
        if let Some(mut group) = tx.get_group(scope, group_id)? {
            touch(&mut group, now);
            tx.update_group(&group)?;
        }
    }
    tx.delete_group(scope, id)?;
    Ok(())
}
