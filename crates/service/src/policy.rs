//! What each host's agent must enforce, and waiting for agents to enforce it.
//!
//! Every change that can change enforcement (rules, ports, addresses, bindings) grows one global
//! policy revision in its own transaction (store triggers). One watcher task per node follows the
//! revision in the database while anyone waits ([`PolicyFeed`]), so a change made by any node,
//! through the API or a task, reaches the waiting agents within [`POLL`].

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use palisade_core::group::Scope;
use palisade_core::policy::HostPolicy;
use palisade_store::{Database, PortFilter, Store, StoreResult, Tx};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use uuid::Uuid;

use crate::blocking;
use crate::deadline::Deadline;
use crate::ops::OpResult;

/// How often the watcher reads the revision while an agent waits.
pub const POLL: Duration = Duration::from_millis(10);

/// Whose data a reader sees: one client's and, for a key limited to some projects, only theirs.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub client_id: i64,
    /// `None`: every project of the client.
    pub projects: Option<Vec<i64>>,
}

impl Viewer {
    pub fn may_use_project(&self, project_id: i64) -> bool {
        self.projects.as_ref().is_none_or(|projects| projects.contains(&project_id))
    }

    /// Whether something of `scope` is the viewer's: its client's, of a project it may use.
    pub fn sees(&self, scope: &Scope) -> bool {
        scope.client_id == self.client_id && self.may_use_project(scope.project_id)
    }
}

/// The node's view of the policy revision, fed by one watcher task while anyone waits.
pub struct PolicyFeed {
    revision: watch::Sender<i64>,
    started: AtomicBool,
    poke: Arc<Notify>,
    /// Notified when an agent of this node reports a revision.
    reported: Notify,
}

impl Default for PolicyFeed {
    fn default() -> Self {
        PolicyFeed {
            revision: watch::Sender::new(0),
            started: AtomicBool::new(false),
            poke: Arc::new(Notify::new()),
            reported: Notify::new(),
        }
    }
}

impl PolicyFeed {
    /// Tells the watcher to read the revision now (after a local write).
    pub fn poke(&self) {
        self.poke.notify_one();
    }

    /// Tells those waiting for agents that an agent of this node reported what it applied.
    pub fn agent_reported(&self) {
        self.reported.notify_waiters();
    }

    /// A receiver of revision changes; starts the watcher on first use.
    pub fn subscribe(&self, store: &Arc<Database>) -> watch::Receiver<i64> {
        let rx = self.revision.subscribe();
        if !self.started.swap(true, Ordering::SeqCst) {
            tokio::spawn(watch_revision(Arc::downgrade(store), self.revision.clone(), self.poke.clone()));
        } else {
            // The watcher may be in its idle pause: have it poll at the waiting pace now.
            self.poke();
        }
        rx
    }

    /// Waits until the revision passes `after`; `None` when it has not by `until`.
    pub async fn wait_past(&self, store: &Arc<Database>, after: i64, until: Instant) -> StoreResult<Option<i64>> {
        let mut revisions = self.subscribe(store);
        let mut current = blocking::read(store, |tx| tx.policy_revision()).await?;
        while current <= after {
            match tokio::time::timeout_at(until, revisions.changed()).await {
                Ok(Ok(())) => current = *revisions.borrow_and_update(),
                Ok(Err(_)) | Err(_) => return Ok(None),
            }
        }
        Ok(Some(current))
    }

    /// Waits until the agent of every host concerned has applied the current policy revision, or
    /// `until` passes, or `stop` resolves. The hosts concerned are those holding ports `viewer`
    /// sees, or every host that has an agent (`viewer` is `None`: the platform). Returns the
    /// revision, the hosts that applied it and those that have not (a host whose agent never
    /// reported is among the latter).
    pub async fn wait_for_agents(
        &self,
        store: &Arc<Database>,
        viewer: Option<Viewer>,
        until: Instant,
        stop: impl Future<Output = ()>,
    ) -> StoreResult<(i64, Vec<String>, Vec<String>)> {
        // Wake-ups come from agent reports on this node; the step bounds the wait for those that
        // happen on other nodes.
        const STEP: Duration = Duration::from_millis(10);
        let (revision, hosts) = blocking::read(store, move |tx| {
            let revision = tx.policy_revision()?;
            let hosts: Option<BTreeSet<String>> = match &viewer {
                Some(viewer) => Some(
                    tx.list_ports(Some(viewer.client_id), &PortFilter::default())?
                        .into_iter()
                        .filter(|p| viewer.may_use_project(p.scope.project_id))
                        .map(|p| p.host)
                        .collect(),
                ),
                None => None,
            };
            Ok::<_, palisade_store::StoreError>((revision, hosts))
        })
        .await?;
        let mut stop = std::pin::pin!(stop);
        loop {
            let reported = self.reported.notified();
            let agents = blocking::read(store, |tx| tx.list_agents()).await?;
            let applied_at: BTreeMap<String, i64> = agents.into_iter().map(|a| (a.host, a.applied_revision)).collect();
            let concerned: Vec<String> = match &hosts {
                Some(hosts) => hosts.iter().cloned().collect(),
                None => applied_at.keys().cloned().collect(),
            };
            let (applied, pending): (Vec<String>, Vec<String>) =
                concerned.into_iter().partition(|host| applied_at.get(host).is_some_and(|&applied| applied >= revision));
            if pending.is_empty() || Instant::now() >= until {
                return Ok((revision, applied, pending));
            }
            tokio::select! {
                _ = reported => {}
                _ = tokio::time::sleep(STEP) => {}
                () = &mut stop => return Ok((revision, applied, pending)),
            }
        }
    }
}

async fn watch_revision(store: Weak<Database>, revision: watch::Sender<i64>, poke: Arc<Notify>) {
    loop {
        if revision.receiver_count() > 0 {
            let Some(db) = store.upgrade() else { return };
            match tokio::task::spawn_blocking(move || db.read(|tx| tx.policy_revision())).await {
                Ok(Ok(current)) => {
                    revision.send_if_modified(|seen| {
                        let changed = *seen != current;
                        *seen = current;
                        changed
                    });
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "reading the policy revision"),
                Err(e) => tracing::warn!(error = %e, "policy revision task failed"),
            }
        } else if store.strong_count() == 0 {
            return;
        }
        let pause = if revision.receiver_count() > 0 { POLL } else { Duration::from_secs(1) };
        tokio::select! {
            _ = poke.notified() => {}
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// The policy of `host` at the current revision, read in one transaction: every client's ports
/// on the host (one agent enforces them all), their groups and the members of the remote groups
/// those name. It can be large (thousands of rules, remote groups of many members), so its steps
/// check `deadline`.
pub fn host_policy(tx: &mut dyn Tx, host: &str, deadline: Deadline) -> OpResult<HostPolicy> {
    let revision = tx.policy_revision()?;
    let ports = tx.list_ports(None, &PortFilter { host: Some(host.to_string()), ..PortFilter::default() })?;
    let mut seen = std::collections::HashSet::new();
    let group_ids: Vec<Uuid> = ports.iter().flat_map(|p| p.security_group_ids.iter().copied()).filter(|id| seen.insert(*id)).collect();
    deadline.check()?;
    let groups = tx.groups_by_ids(&group_ids)?;
    let mut remote: Vec<Uuid> = groups.iter().flat_map(|g| g.rules.iter().filter_map(|r| r.spec.remote_group_id)).collect();
    remote.sort();
    remote.dedup();
    deadline.check()?;
    let members = tx.ports_in_groups(&remote)?;
    deadline.check()?;
    let mut policy = HostPolicy::build(host, revision, &ports, &groups, &members);
    crate::observe::fill_flow_logs(tx, &mut policy)?;
    Ok(policy)
}
