//! What each host's agent must enforce, and waiting for agents to enforce it.
//!
//! Each host's policy has its own revision (migration 0008): a write transaction bumps the
//! revisions of exactly the hosts whose policy it changed, once, before it commits
//! (`palisade_store` keeps the list). The store tells this node's [`PolicyFeed`] of every bump as
//! the write commits, and on PostgreSQL of other nodes' bumps through `NOTIFY`, so an agent's
//! long-poll wakes when its own host changed and never for another host's change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use palisade_core::group::Scope;
use palisade_core::policy::HostPolicy;
use palisade_store::{Database, HostRevision, PortFilter, StoreResult, Tx};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use uuid::Uuid;

use crate::blocking;
use crate::deadline::Deadline;
use crate::ops::OpResult;

/// How often the revisions of hosts whose agents wait are read again anyway: the safety net for
/// a notification lost between nodes (the listener reconnects and asks for a re-read, too).
pub const RESYNC: Duration = Duration::from_secs(1);

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

/// The node's view of the revisions of the hosts whose agents wait here.
pub struct PolicyFeed {
    store: Weak<Database>,
    /// The highest revision seen per waited host; an entry lives while someone waits on it.
    hosts: Mutex<HashMap<String, watch::Sender<i64>>>,
    /// Notified when an agent of this node reports a revision.
    reported: Notify,
    /// Notified when changes may have been missed: re-read every waited host now.
    resync: Arc<Notify>,
    resyncing: AtomicBool,
}

impl PolicyFeed {
    /// A feed told of every change of `store`'s host revisions.
    pub fn new(store: &Arc<Database>) -> Arc<PolicyFeed> {
        let feed = Arc::new(PolicyFeed {
            store: Arc::downgrade(store),
            hosts: Mutex::new(HashMap::new()),
            reported: Notify::new(),
            resync: Arc::new(Notify::new()),
            resyncing: AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&feed);
        store.set_policy_listener(Arc::new(move |change: Option<&[HostRevision]>| {
            if let Some(feed) = weak.upgrade() {
                match change {
                    Some(hosts) => feed.hosts_at(hosts),
                    None => feed.resync.notify_one(),
                }
            }
        }));
        feed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, watch::Sender<i64>>> {
        self.hosts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that these hosts have (at least) these revisions; wakes those waiting on them.
    pub fn hosts_at(&self, hosts: &[HostRevision]) {
        let map = self.lock();
        for (host, revision) in hosts {
            if let Some(sender) = map.get(host) {
                sender.send_if_modified(|seen| {
                    let newer = *revision > *seen;
                    if newer {
                        *seen = *revision;
                    }
                    newer
                });
            }
        }
    }

    /// Tells those waiting for agents that an agent of this node reported what it applied.
    pub fn agent_reported(&self) {
        self.reported.notify_waiters();
    }

    fn subscribe(self: &Arc<Self>, host: &str) -> Subscription {
        let receiver = {
            let mut map = self.lock();
            map.entry(host.to_string()).or_insert_with(|| watch::Sender::new(0)).subscribe()
        };
        if !self.resyncing.swap(true, Ordering::SeqCst) {
            tokio::spawn(resync_loop(Arc::downgrade(self), self.resync.clone()));
        }
        Subscription { feed: self.clone(), host: host.to_string(), receiver: Some(receiver) }
    }

    /// Waits until the revision of `host` passes `after`; `None` when it has not by `until`.
    pub async fn wait_past(self: &Arc<Self>, store: &Arc<Database>, host: &str, after: i64, until: Instant) -> StoreResult<Option<i64>> {
        let mut subscription = self.subscribe(host);
        // Read after subscribing: a bump committed in between is in the read or in the feed.
        let name = host.to_string();
        let current = blocking::read(store, move |tx| tx.host_revision(&name)).await?;
        self.hosts_at(&[(host.to_string(), current)]);
        let receiver = subscription.receiver.as_mut().expect("a subscription holds its receiver until dropped");
        loop {
            let seen = *receiver.borrow_and_update();
            if seen > after {
                return Ok(Some(seen));
            }
            match tokio::time::timeout_at(until, receiver.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return Ok(None),
            }
        }
    }

    /// Waits until the agent of each of `hosts` has applied (at least) the host's revision given,
    /// or `until` passes, or `stop` resolves. For a tenant (`viewer`), only hosts holding its
    /// ports count (the others are not its to hear of). Returns the highest revision among the
    /// hosts, the hosts whose agents applied theirs, and those that have not (an agent that never
    /// reported is among the latter).
    pub async fn wait_for_agents(
        &self,
        store: &Arc<Database>,
        viewer: Option<Viewer>,
        hosts: Vec<HostRevision>,
        until: Instant,
        stop: impl Future<Output = ()>,
    ) -> StoreResult<(i64, Vec<String>, Vec<String>)> {
        // Wake-ups come from agent reports on this node; the step bounds the wait for those that
        // happen on other nodes.
        const STEP: Duration = Duration::from_millis(10);
        let mut wanted: BTreeMap<String, i64> = BTreeMap::new();
        for (host, revision) in hosts {
            let entry = wanted.entry(host).or_insert(revision);
            *entry = (*entry).max(revision);
        }
        if let Some(viewer) = viewer.filter(|_| !wanted.is_empty()) {
            let own: BTreeSet<String> = blocking::read(store, move |tx| {
                Ok::<_, palisade_store::StoreError>(
                    tx.list_ports(Some(viewer.client_id), &PortFilter::default())?
                        .into_iter()
                        .filter(|p| viewer.may_use_project(p.scope.project_id))
                        .map(|p| p.host)
                        .collect(),
                )
            })
            .await?;
            wanted.retain(|host, _| own.contains(host));
        }
        let revision = wanted.values().copied().max().unwrap_or(0);
        let mut stop = std::pin::pin!(stop);
        loop {
            let reported = self.reported.notified();
            let (applied, pending): (Vec<String>, Vec<String>) = if wanted.is_empty() {
                (Vec::new(), Vec::new())
            } else {
                let agents = blocking::read(store, |tx| tx.list_agents()).await?;
                let applied_at: BTreeMap<String, i64> = agents.into_iter().map(|(a, _)| (a.host, a.applied_revision)).collect();
                wanted.keys().cloned().partition(|host| applied_at.get(host).is_some_and(|&applied| applied >= wanted[host]))
            };
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

/// A waiter's hold on a host's entry in the feed; the entry goes with its last waiter.
struct Subscription {
    feed: Arc<PolicyFeed>,
    host: String,
    receiver: Option<watch::Receiver<i64>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.receiver.take());
        let mut map = self.feed.lock();
        if map.get(&self.host).is_some_and(|sender| sender.receiver_count() == 0) {
            map.remove(&self.host);
        }
    }
}

/// Re-reads the revisions of every waited host every [`RESYNC`], or at once when the store
/// says changes may have been missed; ends with the feed or the store.
async fn resync_loop(feed: Weak<PolicyFeed>, resync: Arc<Notify>) {
    loop {
        {
            let Some(strong) = feed.upgrade() else { return };
            let Some(store) = strong.store.upgrade() else { return };
            let hosts: Vec<String> = strong.lock().keys().cloned().collect();
            if !hosts.is_empty() {
                match blocking::read(&store, move |tx| tx.host_revisions(&hosts)).await {
                    Ok(revisions) => strong.hosts_at(&revisions),
                    Err(e) => tracing::warn!(error = %e, "reading host policy revisions"),
                }
            }
        }
        tokio::select! {
            _ = resync.notified() => {}
            _ = tokio::time::sleep(RESYNC) => {}
        }
    }
}

/// The policy of `host` at its current revision, read in one transaction: every client's ports
/// on the host (one agent enforces them all), their groups and the members of the remote groups
/// those name. It can be large (thousands of rules, remote groups of many members), so its steps
/// check `deadline`.
pub fn host_policy(tx: &mut dyn Tx, host: &str, deadline: Deadline) -> OpResult<HostPolicy> {
    let revision = tx.host_revision(host)?;
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
