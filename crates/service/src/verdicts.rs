//! What flow verdicts, effective rules and the analysis of a group are computed from: the
//! compiled rules of some groups (`core::policy::compile_groups`, on the function an agent compiles
//! its policy with) and the members of the remote groups they name (`core::policy::remote_members`).

use std::collections::{BTreeMap, BTreeSet};

use palisade_core::group::Group;
use palisade_core::policy::{Match, Members, compile_groups, remote_members};
use palisade_core::port::Port;
use palisade_store::{StoreError, Tx};
use uuid::Uuid;

use crate::deadline::Deadline;
use crate::ops::{self, OpError, OpResult};
use crate::policy::Viewer;

/// The compiled rules of some groups (in order), and the members of the remote groups they name.
pub struct Policy {
    pub groups: Vec<Group>,
    pub rules: Vec<Match>,
    pub members: BTreeMap<Uuid, Members>,
}

/// Loads `group_ids` (which must all be the viewer's) and the members of their remote groups.
pub fn load_policy(tx: &mut dyn Tx, viewer: &Viewer, group_ids: &[Uuid], deadline: Deadline) -> OpResult<Policy> {
    let mut groups = tx.groups_by_ids(group_ids)?;
    // Another client's group, or one of a project the key may not use, does not exist for it.
    groups.retain(|g| viewer.sees(&g.scope));
    let mut ordered = Vec::with_capacity(group_ids.len());
    for id in group_ids {
        let group = groups.iter().find(|g| g.id == *id).cloned().ok_or_else(|| ops::group_not_found(*id))?;
        ordered.push(group);
    }
    compile_policy(tx, ordered, deadline)
}

/// The compiled rules of `groups` (in order, already checked visible) and the members of the
/// remote groups they name; the impact of a change compiles groups that are not stored yet.
pub fn compile_policy(tx: &mut dyn Tx, ordered: Vec<Group>, deadline: Deadline) -> OpResult<Policy> {
    // Normalisation never stores a rule an agent would refuse: one that does not compile is a bug.
    let rules = compile_groups(&ordered).map_err(|e| StoreError::Internal(format!("a stored rule does not compile: {e}")))?;
    // Each remote group once, however many rules name it.
    let remote_ids: BTreeSet<Uuid> = rules.iter().filter_map(Match::remote_group).collect();
    let member_ports = if remote_ids.is_empty() {
        Vec::new()
    } else {
        deadline.check()?;
        tx.ports_in_groups(&remote_ids.iter().copied().collect::<Vec<_>>())?
    };
    deadline.check()?;
    let members = remote_members(remote_ids, &member_ports);
    Ok(Policy { groups: ordered, rules, members })
}

/// A port the viewer sees; any other is not found, as if it did not exist.
pub fn visible_port(tx: &mut dyn Tx, viewer: &Viewer, port_id: Uuid) -> OpResult<Port> {
    tx.get_port(Some(viewer.client_id), port_id)?
        .filter(|port| viewer.may_use_project(port.scope.project_id))
        .ok_or_else(|| OpError::NotFound(format!("Port {port_id} could not be found")))
}
