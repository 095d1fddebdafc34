//! Wiring: the store, the API and the worker, started together and stopped together.

use std::sync::Arc;

use anyhow::Context;
use palisade_api::AppState;
use palisade_core::port::valid_host;
use palisade_service::audit::{self, Action, Actor, Change};
use palisade_service::retention::Retention;
use palisade_service::{Worker, now_ms};
use palisade_store::keys::{hash_token, new_secret, token};
use palisade_store::{ApiKey, Database, KeyRole, NewApiKey, Store, StoreError};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::config::{Config, ConnectionLimits};

pub struct Application {
    listener: TcpListener,
    /// The TLS configuration of the API listener; `None`: plain HTTP.
    tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
    /// The separate listener of `GET /metrics`, if configured.
    metrics_listener: Option<TcpListener>,
    state: Arc<AppState>,
    worker: Worker,
    /// How long audit events and finished tasks are kept.
    retention: Retention,
    /// Timeouts and the connection limit of the API listener.
    connections: ConnectionLimits,
}

/// What an API key is for (`palisade keys create`).
#[derive(Debug, Clone)]
pub struct KeySpec {
    pub role: KeyRole,
    /// A tenant key's client and user (0 for the other roles).
    pub client_id: i64,
    pub user_id: i64,
    /// The projects a tenant key is limited to (`None`: all).
    pub projects: Option<Vec<i64>>,
    /// An agent key's host.
    pub host: Option<String>,
    pub name: String,
}

impl KeySpec {
    /// A tenant key of `client_id`'s user `user_id`.
    pub fn tenant(client_id: i64, user_id: i64, projects: Option<Vec<i64>>, name: &str) -> KeySpec {
        KeySpec { role: KeyRole::Tenant, client_id, user_id, projects, host: None, name: name.to_string() }
    }

    pub fn platform(name: &str) -> KeySpec {
        KeySpec { role: KeyRole::Platform, client_id: 0, user_id: 0, projects: None, host: None, name: name.to_string() }
    }

    pub fn agent(host: &str, name: &str) -> KeySpec {
        KeySpec { role: KeyRole::Agent, client_id: 0, user_id: 0, projects: None, host: Some(host.to_string()), name: name.to_string() }
    }

    /// Refuses keys whose fields do not fit their role: a tenant key needs a client and no host;
    /// platform and agent keys act for no client; an agent key needs a valid host name.
    pub fn check(&self) -> anyhow::Result<()> {
        match self.role {
            KeyRole::Tenant => {
                anyhow::ensure!(self.client_id >= 1 && self.user_id >= 1, "a tenant key needs --client-id and --user-id of 1 or more");
                anyhow::ensure!(self.host.is_none(), "--host is for agent keys");
            }
            KeyRole::Platform | KeyRole::Agent => {
                anyhow::ensure!(self.projects.is_none(), "--projects is for tenant keys");
                anyhow::ensure!(self.client_id == 0 && self.user_id == 0, "--client-id and --user-id are for tenant keys");
            }
        }
        match (self.role, &self.host) {
            (KeyRole::Agent, Some(host)) if valid_host(host) => Ok(()),
            (KeyRole::Agent, Some(host)) => anyhow::bail!("{host:?} is not a host name (letters, digits, '.', '-' and '_')"),
            (KeyRole::Agent, None) => anyhow::bail!("an agent key needs --host"),
            (_, Some(_)) => anyhow::bail!("--host is for agent keys"),
            (_, None) => Ok(()),
        }
    }
}

/// Creates an API key and returns its token (shown once; only its hash is stored).
pub fn create_api_key(store: &Database, spec: &KeySpec) -> anyhow::Result<String> {
    spec.check()?;
    let secret = new_secret();
    let key = ApiKey {
        id: 0,
        role: spec.role,
        host: spec.host.clone(),
        client_id: spec.client_id,
        user_id: spec.user_id,
        projects: spec.projects.clone(),
        name: spec.name.clone(),
        created_at: now_ms(),
        revoked_at: None,
    };
    let new = NewApiKey { token_hash: hash_token(&secret), key };
    let id = store
        .write(|tx| {
            let id = tx.insert_key(&new)?;
            let key = &new.key;
            let summary = serde_json::json!({"role": key.role.as_str(), "name": key.name, "projects": key.projects, "host": key.host});
            let change = Change::new(Action::KeyCreate, key_place(key.role, key.client_id), id).summary(summary);
            audit::record(tx, &Actor::cli(), change)?;
            Ok::<_, StoreError>(id)
        })
        .context("storing the API key")?;
    Ok(token(id, &secret))
}

/// A key's changes belong to its client; platform and agent keys have none.
fn key_place(role: KeyRole, client_id: i64) -> audit::Place {
    match role {
        KeyRole::Tenant => audit::Place::client(client_id),
        KeyRole::Platform | KeyRole::Agent => audit::Place::nobody(),
    }
}

/// Revokes the active key `id` (`palisade keys revoke`); false when there is none.
pub fn revoke_api_key(store: &Database, id: i64) -> anyhow::Result<bool> {
    store
        .write(|tx| {
            let Some(key) = tx.list_keys()?.into_iter().find(|k| k.id == id) else { return Ok(false) };
            if !tx.revoke_key(id, now_ms())? {
                return Ok(false);
            }
            let summary = serde_json::json!({"role": key.role.as_str(), "name": key.name});
            audit::record(tx, &Actor::cli(), Change::new(Action::KeyRevoke, key_place(key.role, key.client_id), id).summary(summary))?;
            Ok::<_, StoreError>(true)
        })
        .context("revoking the API key")
}

/// Creates a tenant key (see [`create_api_key`]).
pub fn create_key(store: &Database, client_id: i64, user_id: i64, projects: Option<Vec<i64>>, name: &str) -> anyhow::Result<String> {
    create_api_key(store, &KeySpec::tenant(client_id, user_id, projects, name))
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Application::build_with(config, true).await
    }

    /// Like [`Application::build`]; without `migrate` a PostgreSQL schema that is behind this
    /// build is refused instead of migrated (`serve --no-migrate`).
    pub async fn build_with(config: Config, migrate: bool) -> anyhow::Result<Application> {
        // Bad certificate files fail the start before anything else is opened.
        let tls = config.tls.as_ref().map(crate::tls::server_config).transpose()?;
        // The store is synchronous: the PostgreSQL client must not run on an async worker thread.
        let (url, synchronous, bootstrap_key) = (config.database_url.clone(), config.sqlite_synchronous, config.bootstrap_key);
        let store = tokio::task::spawn_blocking(move || -> anyhow::Result<Database> {
            let store = Database::open_with(&url, synchronous.as_str(), migrate).with_context(|| format!("opening the database {url}"))?;
            if bootstrap_key {
                let keys = store.read(|tx| tx.list_keys())?;
                if keys.is_empty() {
                    let token = create_key(&store, 1, 1, None, "bootstrap")?;
                    println!("No API keys existed, so one was created for client 1, user 1. It is shown only this once:");
                    println!("  Authorization: APIKey {token}");
                }
            }
            Ok(store)
        })
        .await
        .context("opening the database")??;
        let store = Arc::new(store);
        let wake = Arc::new(Notify::new());
        // Tasks queued on other nodes wake this worker too (LISTEN/NOTIFY; a no-op for SQLite).
        store.spawn_task_listener(wake.clone());
        let state = Arc::new(AppState::new(store.clone(), wake.clone(), config.api.clone()));
        let worker = Worker::new(store, wake, state.settings.clone(), state.tasks_done.clone());
        let listener = TcpListener::bind(&config.listen).await.with_context(|| format!("binding {}", config.listen))?;
        let metrics_listener = match &config.metrics_listen {
            Some(address) => Some(TcpListener::bind(address).await.with_context(|| format!("binding {address} (--metrics-listen)"))?),
            None => None,
        };
        let retention = Retention {
            audit_days: config.audit_retention_days,
            task_days: config.task_retention_days,
            flow_log_hours: config.api.flow_log_retention_hours,
        };
        Ok(Application { listener, tls, metrics_listener, state, worker, retention, connections: config.connections.clone() })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    /// The port of the metrics listener, if there is one.
    pub fn metrics_port(&self) -> Option<u16> {
        self.metrics_listener.as_ref().and_then(|l| l.local_addr().ok()).map(|a| a.port())
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `stop` resolves; then in-flight requests finish, the worker drains the
    /// accepted tasks, and this returns.
    pub async fn run_until_stopped(self, stop: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        // Pruning of old audit events and finished tasks: at start, then hourly; it stops with the worker.
        tokio::spawn(palisade_service::retention::run(self.state.store.clone(), self.retention, shutdown_rx.clone()));
        let worker = tokio::spawn(self.worker.clone().run(shutdown_rx));
        // One stop signal for both listeners.
        let (stop_tx, stop_rx) = watch::channel(false);
        tokio::spawn(async move {
            stop.await;
            let _ = stop_tx.send(true);
        });
        let stopped = move |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stopped| *stopped).await;
        };
        let metrics = match self.metrics_listener {
            Some(listener) => {
                tracing::info!(address = %listener.local_addr()?, "serving metrics");
                let handle = palisade_api::metrics::install();
                let server = axum::serve(listener, palisade_api::metrics::router(handle.clone()))
                    .with_graceful_shutdown(stopped(stop_rx.clone()))
                    .into_future();
                // The upkeep runs as long as the metrics are served.
                Some(tokio::spawn(async move {
                    tokio::select! {
                        served = server => served,
                        () = palisade_api::metrics::upkeep(handle) => Ok(()),
                    }
                }))
            }
            None => None,
        };
        let address = self.listener.local_addr()?;
        let router = palisade_api::router(self.state.clone());
        let state = self.state.clone();
        // Long-polls and waits for agents answer at once once the stop signal came.
        let on_stop = move || state.begin_shutdown();
        let limits = &self.connections;
        match self.tls {
            Some(tls) => {
                tracing::info!(%address, database = self.state.store.backend(), "serving HTTPS");
                let listener = crate::tls::TlsListener::new(self.listener, tls).context("starting the TLS listener")?;
                crate::server::serve(listener, router, limits, stopped(stop_rx), on_stop).await;
            }
            None => {
                tracing::info!(%address, database = self.state.store.backend(), "serving");
                crate::server::serve(self.listener, router, limits, stopped(stop_rx), on_stop).await;
            }
        }
        tracing::info!("HTTP server stopped; finishing accepted tasks");
        let _ = shutdown_tx.send(true);
        if let Some(metrics) = metrics {
            metrics.await.context("metrics server task")?.context("serving metrics")?;
        }
        worker.await.context("worker task")?;
        let remaining = self.worker.clone();
        tokio::task::spawn_blocking(move || remaining.run_until_idle())
            .await
            .context("final drain")?
            .map_err(|e: StoreError| anyhow::anyhow!(e))?;
        Ok(())
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}
