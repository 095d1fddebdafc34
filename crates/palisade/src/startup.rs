//! Wiring: the store, the API and the worker, started together and stopped together.

use std::sync::Arc;

use anyhow::Context;
use palisade_api::AppState;
use palisade_store::keys::{hash_token, new_secret, token};
use palisade_store::{Database, NewApiKey, Store, StoreError};
use palisade_worker::{Worker, now_ms};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::config::Config;

pub struct Application {
    listener: TcpListener,
    state: Arc<AppState>,
    worker: Worker,
}

/// Creates an API key and returns its token (shown once; only its hash is stored).
pub fn create_key(store: &Database, client_id: i64, user_id: i64, projects: Option<Vec<i64>>, name: &str) -> anyhow::Result<String> {
    let secret = new_secret();
    let key = NewApiKey { token_hash: hash_token(&secret), client_id, user_id, projects, name: name.to_string(), created_at: now_ms() };
    let id = store.write(|tx| tx.insert_key(&key)).context("storing the API key")?;
    Ok(token(id, &secret))
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Application::build_with(config, true).await
    }

    /// Like [`Application::build`]; without `migrate` a PostgreSQL schema that is behind this
    /// build is refused instead of migrated (`serve --no-migrate`).
    pub async fn build_with(config: Config, migrate: bool) -> anyhow::Result<Application> {
        // The store is synchronous: the PostgreSQL client must not run on an async worker thread.
        let (url, synchronous, bootstrap_key) = (config.database_url.clone(), config.sqlite_synchronous.clone(), config.bootstrap_key);
        let store = tokio::task::spawn_blocking(move || -> anyhow::Result<Database> {
            let store = Database::open_with(&url, &synchronous, migrate).with_context(|| format!("opening the database {url}"))?;
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
        Ok(Application { listener, state, worker })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or_default()
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves until `stop` resolves; then in-flight requests finish, the worker drains the
    /// accepted tasks, and this returns.
    pub async fn run_until_stopped(self, stop: impl std::future::Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let (shutdown_tx, shutdown_rx) = watch::channel(false);
        let worker = tokio::spawn(self.worker.clone().run(shutdown_rx));
        tracing::info!(address = %self.listener.local_addr()?, database = self.state.store.backend(), "serving");
        let router = palisade_api::router(self.state.clone());
        let served = axum::serve(self.listener, router).with_graceful_shutdown(stop).await;
        tracing::info!("HTTP server stopped; finishing accepted tasks");
        let _ = shutdown_tx.send(true);
        worker.await.context("worker task")?;
        let remaining = self.worker.clone();
        tokio::task::spawn_blocking(move || remaining.run_until_idle())
            .await
            .context("final drain")?
            .map_err(|e: StoreError| anyhow::anyhow!(e))?;
        served.context("serving HTTP")
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
