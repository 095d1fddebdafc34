//! Shared state of the API: the store, the worker's wake-up, configuration, and the API-key cache;
//! and the ways handlers reach the store: transactions off the runtime's threads, heavy work on
//! the bounded pool ([`crate::pool`]), and handing v2 tasks over to the worker.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_core::RuleSpec;
use palisade_service::blocking;
use palisade_service::deadline::Deadline;
use palisade_service::ops::Settings;
use palisade_service::policy::PolicyFeed;
use palisade_service::queue::wait_for_tasks;
use palisade_store::keys::hash_token;
use palisade_store::{ApiKey, Database, Store, Tx};
use tokio::sync::Notify;

use crate::error::Result;
use crate::limits::RateLimits;
use crate::pool::HeavyPool;

/// What the API needs from the service configuration.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Region id -> display name (the `region` field).
    pub regions: BTreeMap<i64, String>,
    /// Refuse region ids that are not in `regions` (404). Off by default: any id is accepted.
    pub strict_regions: bool,
    /// Rules of a group created without `rules`, and of a reverted group.
    pub default_rules: Vec<RuleSpec>,
    /// Quotas of scopes that have none of their own.
    pub default_quotas: palisade_core::quota::Limits,
    /// On the embedded store, how long a v2 write waits for its task to finish before answering,
    /// so that a client's first poll finds it done (0: answer at once).
    pub task_wait: Duration,
    /// How long a verified API key is trusted before the database is asked again.
    pub key_cache_ttl: Duration,
    /// The largest request body, in bytes; a larger one is a 413, unread (`extract::limit_body`).
    pub max_body_bytes: usize,
    /// How long work that can be large (verdicts, big list pages, policy builds) may take before
    /// the request answers 504 (`crate::pool`).
    pub request_deadline: Duration,
    /// How many such requests run at once (the bounded pool's size; default: the cores).
    pub heavy_workers: usize,
    /// Reads (GET, HEAD) per second per API key, bursts of twice as many; 0: unlimited.
    pub rate_limit_reads: u32,
    /// Writes per second per API key, bursts of twice as many; 0: unlimited.
    pub rate_limit_writes: u32,
    /// Unfinished tasks one client may have at once (429 beyond); 0: unlimited.
    pub max_tasks_per_client: u32,
    /// Flow-log records one client keeps; beyond it the oldest go first.
    pub flow_log_max_records_per_client: u64,
    /// Hours flow-log records are kept (the serve process's retention loop); 0: until the cap.
    pub flow_log_retention_hours: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            regions: BTreeMap::new(),
            strict_regions: false,
            default_rules: palisade_core::rule::default_template(),
            default_quotas: palisade_core::quota::Limits::default(),
            task_wait: Duration::from_millis(50),
            key_cache_ttl: Duration::from_secs(5),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            request_deadline: Duration::from_secs(5),
            heavy_workers: crate::pool::default_pool_size(),
            // Far above what a person or the official clients do (the SDK polls a task a few
            // times a second), far below what one key's loop could take from everyone.
            rate_limit_reads: 1_000,
            rate_limit_writes: 200,
            max_tasks_per_client: 1_000,
            flow_log_max_records_per_client: palisade_service::observe::DEFAULT_MAX_FLOW_RECORDS_PER_CLIENT,
            flow_log_retention_hours: palisade_service::observe::DEFAULT_FLOW_LOG_RETENTION_HOURS,
        }
    }
}

/// The default `max_body_bytes`: 1 MiB, eight times the largest group Gcore's schema allows
/// without tags (250 rules of every field at its longest: about 130 KB).
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// At most this many v2 writes wait for their tasks at once (see [`AppState::hand_over`]).
const MAX_HAND_OVER_WAITERS: usize = 2;

/// Leaves the count of waiting requests when dropped.
struct WaiterSlot<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for WaiterSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How often a hand-over on PostgreSQL reads the state of tasks another node may be running.
pub const TASK_RECHECK: Duration = Duration::from_millis(10);

tokio::task_local! {
    /// The hosts (with their new revisions) whose policy the writes of the current request
    /// changed, collected while a `?wait_for_agents` request runs (`crate::agents`).
    pub static WRITTEN_HOSTS: Arc<Mutex<Vec<palisade_store::HostRevision>>>;
}

pub struct AppState {
    pub store: Arc<Database>,
    pub wake: Arc<Notify>,
    pub config: ApiConfig,
    pub settings: Arc<Settings>,
    /// The host policy revisions agents long-poll on (`/palisade/v1/agents`).
    pub policy: Arc<PolicyFeed>,
    /// The ids of every batch of tasks the worker has committed.
    pub tasks_done: palisade_service::FinishedTasks,
    /// Requests waiting in [`AppState::hand_over`] now.
    hand_over_waiters: std::sync::atomic::AtomicUsize,
    key_cache: Mutex<HashMap<String, (Option<ApiKey>, Instant)>>,
    /// Where work that can be large runs (`crate::pool`).
    pub heavy_pool: HeavyPool,
    /// Per-key token buckets for reads and writes.
    pub rate_limits: RateLimits,
    /// Turns true when the server stops: long-polls answer at once.
    shutdown: tokio::sync::watch::Sender<bool>,
}

impl AppState {
    pub fn new(store: Arc<Database>, wake: Arc<Notify>, config: ApiConfig) -> AppState {
        let settings = Arc::new(Settings {
            template: config.default_rules.clone(),
            default_quotas: config.default_quotas,
            flow_log_max_records_per_client: config.flow_log_max_records_per_client,
        });
        AppState {
            policy: PolicyFeed::new(&store),
            store,
            wake,
            settings,
            tasks_done: tokio::sync::broadcast::channel(256).0,
            hand_over_waiters: Default::default(),
            key_cache: Mutex::new(HashMap::new()),
            heavy_pool: HeavyPool::new(config.heavy_workers),
            rate_limits: RateLimits::new(config.rate_limit_reads, config.rate_limit_writes),
            shutdown: tokio::sync::watch::Sender::new(false),
            config,
        }
    }

    /// The server is stopping: long-polls and waits for agents answer now.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Resolves once the server is stopping (at once if it already is).
    pub async fn stopping(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|stopping| *stopping).await;
    }

    pub fn region_name(&self, region_id: i64) -> Option<String> {
        match self.config.regions.get(&region_id) {
            Some(name) => Some(name.clone()),
            None if self.config.strict_regions => None,
            None => Some(format!("Region {region_id}")),
        }
    }

    /// Runs `f` in a read transaction (on the blocking pool, except the embedded store's reads).
    pub async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<R> + Send + 'static,
    {
        blocking::read(&self.store, f).await
    }

    /// Runs `f` in a write transaction on the blocking pool; commits when it returns `Ok`.
    pub async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<R> + Send + 'static,
    {
        // The store bumps the hosts whose policy the write changed (and wakes their agents) as
        // it commits; flushing here names them, for this request's `?wait_for_agents`.
        let (value, hosts) = blocking::write(&self.store, move |tx| {
            let value = f(tx)?;
            let hosts = tx.flush_policy()?;
            Ok::<_, crate::error::ApiError>((value, hosts))
        })
        .await?;
        if !hosts.is_empty() {
            let _ = WRITTEN_HOSTS.try_with(|written| written.lock().unwrap_or_else(|p| p.into_inner()).extend(hosts));
        }
        Ok(value)
    }

    /// Runs `f` on the heavy pool within the request deadline: 504 when the deadline passes
    /// first (time in the queue included).
    pub async fn heavy<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(Deadline) -> Result<R> + Send + 'static,
    {
        self.heavy_pool.run(Deadline::after(self.config.request_deadline), f).await
    }

    /// [`AppState::heavy`] with a read transaction: the store's read runs on the pool's thread.
    pub async fn read_heavy<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx, Deadline) -> Result<R> + Send + 'static,
    {
        let store = self.store.clone();
        self.heavy(move |deadline| store.read(|tx| f(tx, deadline))).await
    }

    /// Wakes the worker for the client's new tasks and waits (at most `task_wait`) until they are
    /// finished: the answer still carries only task ids, but the client's first poll finds them
    /// done. On PostgreSQL another node may run a task (this node's worker is woken first, so it
    /// usually wins): there the wait also reads the tasks' state every [`TASK_RECHECK`].
    pub async fn hand_over(&self, client_id: i64, task_ids: &[String]) {
        let wait = self.config.task_wait;
        // Waiting makes a quiet service answer "done" at the first poll; under load the worker
        // drains bigger batches when answers go out at once, so only a few requests wait.
        let waiters = self.hand_over_waiters.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _leave = WaiterSlot(&self.hand_over_waiters);
        if wait.is_zero() || task_ids.is_empty() || waiters >= MAX_HAND_OVER_WAITERS {
            self.wake_worker();
            return;
        }
        let deadline = tokio::time::Instant::now() + wait;
        // Subscribed before the worker wakes, so no batch can end unseen.
        let finished = self.tasks_done.subscribe();
        self.wake_worker();
        // On the embedded store this process's worker runs every task: its announcements are
        // enough. A failed read ends the wait: the client polls anyway.
        let recheck = (!self.store.tasks_run_locally()).then_some(TASK_RECHECK);
        let _ = wait_for_tasks(&self.store, finished, client_id, task_ids, deadline, recheck).await;
    }

    pub fn wake_worker(&self) {
        self.wake.notify_one();
    }

    /// The key a token belongs to, if it is valid and not revoked.
    pub async fn verify_token(&self, token: &str) -> Result<Option<ApiKey>> {
        let Some((id, secret)) = token.split_once('$') else { return Ok(None) };
        let Ok(id) = id.parse::<i64>() else { return Ok(None) };
        let hash = hash_token(secret);
        let cached = {
            let cache = self.key_cache.lock().expect("key cache lock");
            cache.get(&hash).filter(|(_, at)| at.elapsed() < self.config.key_cache_ttl).map(|(key, _)| key.clone())
        };
        let key = match cached {
            Some(key) => key,
            None => {
                let lookup = hash.clone();
                let key = self.read(move |tx| Ok(tx.find_key(&lookup)?)).await?.filter(|k| k.revoked_at.is_none());
                let mut cache = self.key_cache.lock().expect("key cache lock");
                if cache.len() > 10_000 {
                    cache.clear();
                }
                cache.insert(hash, (key.clone(), Instant::now()));
                key
            }
        };
        Ok(key.filter(|k| k.id == id))
    }
}
