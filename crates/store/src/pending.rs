//! What a write transaction changed that must be told once, at its end: per-scope usage and the
//! hosts whose policy it changed.
//!
//! Until migration 0008 database triggers did this row by row: every rule grew its scope's usage
//! row and every statement grew the one global policy revision, so the writers of the whole
//! cluster queued on that row until commit, and every agent woke on every write. Now each
//! backend notes here what its statements changed, and before COMMIT (or when the caller asks,
//! see [`PortTx::flush_policy`](crate::PortTx::flush_policy)) writes it with a few statements:
//! one usage upsert per scope touched, one query for the hosts concerned, one bump of exactly
//! those hosts' revisions.
//!
//! Which hosts a change concerns:
//! - a group whose rules changed (or whose flow-log setting changed): the hosts of the ports
//!   bound to it;
//! - a group whose members changed (a port bound to it came, went, or changed its addresses):
//!   the hosts of the ports bound to any group with a rule naming it as `remote_group_id`;
//! - a port that came, went, moved or changed: its host (old and new).

use std::collections::{BTreeMap, BTreeSet};

use palisade_core::group::Scope;
use uuid::Uuid;

use crate::rows::id_text;

/// A host whose policy a transaction changed, and the revision its policy now has.
pub type HostRevision = (String, i64);

/// Told of committed host revisions: `Some(hosts)` after a write (of this node, or of another
/// one through PostgreSQL's NOTIFY), `None` when some may have been missed (the notification
/// connection was lost, or a payload was too long): re-read the hosts you care about.
pub type PolicyListener = std::sync::Arc<dyn Fn(Option<&[HostRevision]>) + Send + Sync>;

/// Where a store keeps its listener (set once the service is wired up).
#[derive(Default, Clone)]
pub(crate) struct ListenerSlot(std::sync::Arc<std::sync::Mutex<Option<PolicyListener>>>);

impl ListenerSlot {
    pub fn set(&self, listener: PolicyListener) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(listener);
    }

    pub fn tell(&self, change: Option<&[HostRevision]>) {
        let listener = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(listener) = listener {
            listener(change);
        }
    }
}

/// See [`Pending::is_bulk`].
const BULK_GROUPS: usize = 1_000;

#[derive(Debug, Clone, Default)]
pub(crate) struct Pending {
    /// (groups, rules) added (negative: removed) per scope, by (client, project, region).
    usage: BTreeMap<(i64, i64, i64), (i64, i64)>,
    /// Groups whose rules (or flow-log setting) changed, as id text.
    pub groups: BTreeSet<String>,
    /// Groups whose members changed, as id text.
    pub members: BTreeSet<String>,
    /// Hosts whose ports changed.
    pub hosts: BTreeSet<String>,
    /// Every host revision this transaction has bumped so far.
    pub bumped: Vec<HostRevision>,
    /// The state when the open savepoint was taken, restored if it is rolled back.
    saved: Option<Box<Pending>>,
}

impl Pending {
    pub fn add_usage(&mut self, scope: &Scope, groups: i64, rules: i64) {
        let entry = self.usage.entry((scope.client_id, scope.project_id, scope.region_id)).or_default();
        entry.0 += groups;
        entry.1 += rules;
    }

    /// The scope's not yet written change, to add to its stored usage.
    pub fn usage_of(&self, scope: &Scope) -> (i64, i64) {
        self.usage.get(&(scope.client_id, scope.project_id, scope.region_id)).copied().unwrap_or_default()
    }

    pub fn group_changed(&mut self, id: Uuid) {
        self.groups.insert(id_text(id));
    }

    pub fn members_changed(&mut self, ids: impl IntoIterator<Item = String>) {
        self.members.extend(ids);
    }

    pub fn host_changed(&mut self, host: &str) {
        self.hosts.insert(host.to_string());
    }

    /// Whether the transaction changed so many groups (an import, a bulk change) that finding
    /// the hosts they reach one by one costs more than bumping every host with a port: then
    /// every such host is bumped (more wake-ups than needed, never fewer).
    pub fn is_bulk(&self) -> bool {
        self.groups.len() + self.members.len() > BULK_GROUPS
    }

    /// Whether some host may need a new revision.
    pub fn touches_hosts(&self) -> bool {
        !(self.groups.is_empty() && self.members.is_empty() && self.hosts.is_empty())
    }

    /// Takes the usage changes to write (non-zero ones), leaving none.
    pub fn take_usage(&mut self) -> Vec<((i64, i64, i64), (i64, i64))> {
        std::mem::take(&mut self.usage).into_iter().filter(|(_, delta)| *delta != (0, 0)).collect()
    }

    /// Takes what decides the hosts concerned: (groups, members, hosts), leaving none.
    pub fn take_hosts(&mut self) -> (Vec<String>, Vec<String>, BTreeSet<String>) {
        (
            std::mem::take(&mut self.groups).into_iter().collect(),
            std::mem::take(&mut self.members).into_iter().collect(),
            std::mem::take(&mut self.hosts),
        )
    }

    pub fn savepoint(&mut self) {
        let mut copy = self.clone();
        copy.saved = None;
        self.saved = Some(Box::new(copy));
    }

    pub fn release_savepoint(&mut self) {
        self.saved = None;
    }

    pub fn rollback_to_savepoint(&mut self) {
        if let Some(saved) = self.saved.take() {
            *self = *saved;
        }
    }
}

/// The NOTIFY payload announcing bumped hosts: `host=revision` separated by spaces (host names
/// have neither). A payload longer than PostgreSQL allows becomes `*`: re-read every host.
pub fn notification(bumped: &[HostRevision]) -> String {
    const MAX: usize = 7_900;
    let mut text = String::new();
    for (host, revision) in bumped {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(host);
        text.push('=');
        text.push_str(&revision.to_string());
        if text.len() > MAX {
            return "*".into();
        }
    }
    text
}

/// What [`notification`] wrote; `None` for `*` (or anything unreadable): re-read every host.
pub fn parse_notification(payload: &str) -> Option<Vec<HostRevision>> {
    payload
        .split(' ')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (host, revision) = part.split_once('=')?;
            Some((host.to_string(), revision.parse().ok()?))
        })
        .collect()
}

/// A stored usage plus a transaction's unwritten (groups, rules) change.
pub(crate) fn with_pending(stored: palisade_core::quota::Usage, (groups, rules): (i64, i64)) -> palisade_core::quota::Usage {
    palisade_core::quota::Usage {
        security_groups: (stored.security_groups as i64 + groups).max(0) as u64,
        security_group_rules: (stored.security_group_rules as i64 + rules).max(0) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rolled_back_savepoint_forgets_what_came_after_it() {
        let scope = Scope { client_id: 1, project_id: 2, region_id: 3 };
        let mut pending = Pending::default();
        pending.add_usage(&scope, 1, 3);
        pending.host_changed("a");
        pending.savepoint();
        pending.add_usage(&scope, 1, 10);
        pending.host_changed("b");
        assert_eq!(pending.usage_of(&scope), (2, 13));
        pending.rollback_to_savepoint();
        assert_eq!(pending.usage_of(&scope), (1, 3));
        assert_eq!(pending.hosts.iter().collect::<Vec<_>>(), ["a"]);
        pending.savepoint();
        pending.add_usage(&scope, -1, -3);
        pending.release_savepoint();
        pending.rollback_to_savepoint();
        assert_eq!(pending.take_usage(), []);
    }

    #[test]
    fn more_than_a_thousand_changed_groups_is_a_bulk_change() {
        let mut pending = Pending::default();
        (0..BULK_GROUPS).for_each(|i| pending.members_changed([format!("g{i}")]));
        assert!(!pending.is_bulk());
        pending.group_changed(Uuid::new_v4());
        assert!(pending.is_bulk());
        pending.take_hosts();
        assert!(!pending.is_bulk(), "a flush starts over");
    }

    #[test]
    fn notifications_read_back_and_overflow_to_everything() {
        let bumped = vec![("host-1".to_string(), 7), ("h.example_2".to_string(), 12)];
        assert_eq!(parse_notification(&notification(&bumped)), Some(bumped));
        let many: Vec<HostRevision> = (0..2_000).map(|i| (format!("compute-{i:05}"), i)).collect();
        assert_eq!(notification(&many), "*");
        assert_eq!(parse_notification("*"), None);
        assert_eq!(parse_notification(""), Some(vec![]));
    }
}
