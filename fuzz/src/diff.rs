//! Target `diff`: the desired-state diff of a v2 PATCH (`core::diff::diff_rules`).
//!
//! Input: the rules a group holds (normalised, one per identity, as the store keeps them) and the
//! desired rule list of a PATCH (normalised and deduplicated, as the handler passes it), both
//! drawn from small pools so that identities and descriptions collide.
//!
//! Invariants: every existing rule is either kept or deleted, once; kept and created rules
//! together are the desired list, in its order; the diff applied to the old rules gives the new
//! ones (the same identities and descriptions, no identity twice); diffing the result against the
//! same desired list is empty; diffing a group against its own rules is empty.

use std::collections::BTreeSet;

use arbitrary::Unstructured;
use palisade_core::diff::diff_rules;
use palisade_core::rule::{Rule, RuleKey, RuleSpec, dedupe};
use uuid::Uuid;

use crate::generate;

pub fn run(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok((existing, desired)) = input(&mut u) else { return };
    check(&existing, &desired);
}

fn specs(u: &mut Unstructured, max: usize) -> arbitrary::Result<Vec<RuleSpec>> {
    let mut specs = Vec::new();
    for _ in 0..generate::count(u, max)? {
        if let Ok(spec) = generate::draft(u)?.normalize() {
            specs.push(spec);
        }
    }
    Ok(dedupe(specs))
}

pub fn input(u: &mut Unstructured) -> arbitrary::Result<(Vec<Rule>, Vec<RuleSpec>)> {
    let existing = specs(u, 12)?
        .into_iter()
        .enumerate()
        .map(|(i, spec)| Rule { id: Uuid::from_u128(i as u128 + 1), group_id: Uuid::nil(), spec, created_at: i as i64 })
        .collect();
    Ok((existing, specs(u, 12)?))
}

fn identity(spec: &RuleSpec) -> (RuleKey, String) {
    (spec.key(), spec.description.clone())
}

pub fn check(existing: &[Rule], desired: &[RuleSpec]) {
    let diff = diff_rules(existing, desired);
    let ids: Vec<Uuid> = existing.iter().map(|r| r.id).collect();

    let kept: BTreeSet<Uuid> = diff.keep.iter().copied().collect();
    let deleted: BTreeSet<Uuid> = diff.delete.iter().copied().collect();
    assert_eq!(kept.len(), diff.keep.len(), "a rule kept twice");
    assert_eq!(deleted.len(), diff.delete.len(), "a rule deleted twice");
    assert!(kept.is_disjoint(&deleted), "kept and deleted");
    assert_eq!(kept.union(&deleted).copied().collect::<BTreeSet<_>>(), ids.iter().copied().collect(), "rules unaccounted for");
    assert_eq!(diff.keep.len() + diff.create.len(), desired.len());
    assert_eq!(diff.is_empty(), diff.delete.is_empty() && diff.create.is_empty());

    // Kept and created, merged in the desired order, are the desired list (by identity and description).
    let by_id = |id: &Uuid| existing.iter().find(|r| r.id == *id).expect("kept rule exists");
    let (mut keep, mut create) = (diff.keep.iter().map(by_id), diff.create.iter());
    for want in desired {
        let got = match existing.iter().find(|r| kept.contains(&r.id) && identity(&r.spec) == identity(want)) {
            Some(_) => keep.next().expect("one kept rule per matching desired rule").spec.clone(),
            None => create.next().expect("one created rule per unmatched desired rule").clone(),
        };
        assert_eq!(identity(&got), identity(want), "out of the desired order");
    }

    // Apply: the old rules minus the deleted ones, then the created ones with fresh ids.
    let mut after: Vec<Rule> = existing.iter().filter(|r| !deleted.contains(&r.id)).cloned().collect();
    let next = existing.len() as u128 + 1000;
    after.extend(diff.create.iter().enumerate().map(|(i, spec)| Rule {
        id: Uuid::from_u128(next + i as u128),
        group_id: Uuid::nil(),
        spec: spec.clone(),
        created_at: 0,
    }));
    let mut got: Vec<(RuleKey, String)> = after.iter().map(|r| identity(&r.spec)).collect();
    let mut want: Vec<(RuleKey, String)> = desired.iter().map(identity).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "the diff applied to the old rules is not the desired set");
    let keys: BTreeSet<RuleKey> = after.iter().map(|r| r.spec.key()).collect();
    assert_eq!(keys.len(), after.len(), "two rules with one identity after the PATCH");

    let again = diff_rules(&after, desired);
    assert!(again.is_empty(), "the same PATCH again is not a no-op: {again:?}");
    assert_eq!(again.keep.len(), after.len());

    let own: Vec<RuleSpec> = existing.iter().map(|r| r.spec.clone()).collect();
    let unchanged = diff_rules(existing, &own);
    assert!(unchanged.is_empty() && unchanged.keep == ids, "a PATCH with the current rules changes something");
}
