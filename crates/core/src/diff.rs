//! The desired-state diff of a v2 PATCH (CONTRACT.md §5.2): rules that stay keep their ids.

use uuid::Uuid;

use crate::rule::{Rule, RuleSpec};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleDiff {
    /// Existing rules that already are in the desired set, unchanged.
    pub keep: Vec<Uuid>,
    /// Existing rules that the desired set drops.
    pub delete: Vec<Uuid>,
    /// Desired rules that do not exist yet, in request order.
    pub create: Vec<RuleSpec>,
}

impl RuleDiff {
    pub fn is_empty(&self) -> bool {
        self.delete.is_empty() && self.create.is_empty()
    }
}

/// `desired` must be normalised and free of duplicate identities (see [`crate::rule::dedupe`]).
///
/// A desired rule matches an existing one when their identities (Neutron's duplicate key) and
/// descriptions are equal; then the existing rule is kept. A desired rule whose identity exists
/// with another description replaces it (rules are immutable), so the group never holds two
/// rules with one identity.
pub fn diff_rules(existing: &[Rule], desired: &[RuleSpec]) -> RuleDiff {
    let mut diff = RuleDiff::default();
    let mut matched = vec![false; existing.len()];
    for spec in desired {
        let key = spec.key();
        let found = existing.iter().enumerate().find(|(i, rule)| !matched[*i] && rule.spec.key() == key);
        match found {
            Some((i, rule)) if rule.spec.description == spec.description => {
                matched[i] = true;
                diff.keep.push(rule.id);
            }
            _ => diff.create.push(spec.clone()),
        }
    }
    for (rule, matched) in existing.iter().zip(matched) {
        if !matched {
            diff.delete.push(rule.id);
        }
    }
    diff
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Protocol;
    use crate::rule::{Direction, RuleDraft};

    fn rule(spec: RuleSpec) -> Rule {
        Rule { id: Uuid::new_v4(), group_id: Uuid::nil(), spec, created_at: 0 }
    }

    fn ssh(description: &str) -> RuleSpec {
        RuleDraft {
            protocol: Some(Protocol::TCP),
            port_range_min: Some(22),
            port_range_max: Some(22),
            description: Some(description.into()),
            ..RuleDraft::new(Direction::Ingress)
        }
        .normalize()
        .unwrap()
    }

    #[test]
    fn keeps_unchanged_rules_and_replaces_changed_ones() {
        let egress = rule(RuleDraft::new(Direction::Egress).normalize().unwrap());
        let old_ssh = rule(ssh("old"));
        let existing = vec![egress.clone(), old_ssh.clone()];

        let same = diff_rules(&existing, &[egress.spec.clone(), old_ssh.spec.clone()]);
        assert!(same.is_empty());
        assert_eq!(same.keep, vec![egress.id, old_ssh.id]);

        let changed = diff_rules(&existing, &[egress.spec.clone(), ssh("new")]);
        assert_eq!(changed.keep, vec![egress.id]);
        assert_eq!(changed.delete, vec![old_ssh.id]);
        assert_eq!(changed.create, vec![ssh("new")]);

        let cleared = diff_rules(&existing, &[]);
        assert_eq!(cleared.delete, vec![egress.id, old_ssh.id]);
    }
}
