//! Shared state of the API: the store, the worker's wake-up, configuration, and the API-key cache.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use palisade_core::RuleSpec;
use palisade_store::keys::hash_token;
use palisade_store::{ApiKey, Database, Store, Tx};
use palisade_worker::ops::Settings;
use tokio::sync::Notify;

use crate::error::{ApiError, Result};

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
    /// How long a verified API key is trusted before the database is asked again.
    pub key_cache_ttl: Duration,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            regions: BTreeMap::new(),
            strict_regions: false,
            default_rules: palisade_core::rule::default_template(),
            default_quotas: palisade_core::quota::Limits::default(),
            key_cache_ttl: Duration::from_secs(5),
        }
    }
}

pub struct AppState {
    pub store: Arc<Database>,
    pub wake: Arc<Notify>,
    pub config: ApiConfig,
    pub settings: Arc<Settings>,
    /// The policy revision agents long-poll on (`/palisade/v1/agents`).
    pub policy: crate::agents::PolicyFeed,
    key_cache: Mutex<HashMap<String, (Option<ApiKey>, Instant)>>,
}

impl AppState {
    pub fn new(store: Arc<Database>, wake: Arc<Notify>, config: ApiConfig) -> AppState {
        let settings = Arc::new(Settings { template: config.default_rules.clone(), default_quotas: config.default_quotas });
        AppState { store, wake, config, settings, policy: Default::default(), key_cache: Mutex::new(HashMap::new()) }
    }

    pub fn region_name(&self, region_id: i64) -> Option<String> {
        match self.config.regions.get(&region_id) {
            Some(name) => Some(name.clone()),
            None if self.config.strict_regions => None,
            None => Some(format!("Region {region_id}")),
        }
    }

    /// Runs `f` in a read transaction on the blocking pool.
    pub async fn read<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<R> + Send + 'static,
    {
        if self.store.reads_inline() {
            // An embedded read is tens of microseconds and never waits for a writer (WAL):
            // cheaper on the calling thread than a hand-off to the blocking pool and back.
            return self.store.read(f);
        }
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.read(f))
            .await
            .map_err(|e| ApiError::Internal(format!("read task failed: {e}")))?
    }

    /// Runs `f` in a write transaction on the blocking pool; commits when it returns `Ok`.
    pub async fn write<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<R> + Send + 'static,
    {
        let store = self.store.clone();
        let result = tokio::task::spawn_blocking(move || store.write(f))
            .await
            .map_err(|e| ApiError::Internal(format!("write task failed: {e}")))?;
        if result.is_ok() {
            // A committed write may have grown the policy revision: let waiting agents know now.
            self.policy.poke();
        }
        result
    }

    /// Tells the worker that a task is waiting.
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
