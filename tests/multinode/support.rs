//! Nodes of the real binary over one PostgreSQL database, and an HTTP client for them.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_core::group::Group;
use palisade_store::{Database, Store, StoreError, TaskRecord};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

pub const BIN: &str = env!("CARGO_BIN_EXE_palisade");

pub fn admin_url() -> String {
    std::env::var("PALISADE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Runs a synchronous store call on a plain thread (the sync PostgreSQL client refuses to run
/// on an async worker thread).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("store call panicked"))
}

/// A fresh PostgreSQL database, dropped at the end.
pub struct PgDb {
    pub name: String,
    pub url: String,
}

impl PgDb {
    pub fn new() -> PgDb {
        let name = format!("palisade_test_{}", uuid::Uuid::new_v4().simple());
        let url = off_runtime(|| palisade_store::postgres::create_database(&admin_url(), &name))
            .unwrap_or_else(|e| panic!("PostgreSQL at {} is needed (set PALISADE_TEST_PG_URL): {e}", admin_url()));
        PgDb { name, url }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = off_runtime(|| palisade_store::postgres::drop_database(&admin_url(), &self.name));
    }
}

/// A scratch directory, removed at the end.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(label: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("palisade-multinode-{label}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Runs `palisade ARGS` to completion; returns stdout (panics with stderr on failure).
pub fn palisade(args: &[&str]) -> String {
    let output = Command::new(BIN).args(args).env("RUST_LOG", "warn").output().expect("run palisade");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "palisade {args:?} failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    stdout
}

/// Creates an API key for client 1, user 1 (all projects); returns its token.
pub fn create_key(database_url: &str) -> String {
    let out = palisade(&["keys", "create", "--database-url", database_url, "--name", "multinode"]);
    out.lines().last().expect("a token").trim().to_string()
}

/// One `palisade serve` process.
pub struct Node {
    pub name: &'static str,
    pub base: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Node {
    pub async fn start(name: &'static str, database_url: &str, dir: &Path) -> Node {
        let port = free_port();
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(BIN)
            .args(["serve", "--database-url", database_url, "--listen", &format!("127.0.0.1:{port}"), "--no-bootstrap-key"])
            .env("RUST_LOG", "warn")
            // These tests drive thousands of writes through one key to test consistency across
            // nodes; the per-key rate limits (tested in tests/api/limits.rs) would only slow them.
            .env("PALISADE_RATE_LIMIT_READS", "0")
            .env("PALISADE_RATE_LIMIT_WRITES", "0")
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn palisade serve");
        let node = Node { name, base: format!("http://127.0.0.1:{port}"), child: Some(child), log };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = client.get(format!("{}/readyz", node.base)).send().await {
                if response.status() == StatusCode::OK {
                    return node;
                }
            }
            assert!(Instant::now() < deadline, "node {name} did not become ready; log:\n{}", node.log_text());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (`STOP`, `CONT`, ...) with kill(1).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill");
        assert!(status.success());
    }

    /// `kill -9`: no graceful shutdown, no drain; its open transactions die with its connections.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            let _ = child.wait();
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// An API client with a key.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    token: String,
}

pub const P: i64 = 1;
pub const R: i64 = 1;

impl Api {
    pub fn new(token: &str) -> Api {
        Api::with_timeout(token, Duration::from_secs(60))
    }

    pub fn with_timeout(token: &str, timeout: Duration) -> Api {
        let http = reqwest::Client::builder().timeout(timeout).build().expect("client");
        Api { http, token: token.to_string() }
    }

    async fn call(&self, method: reqwest::Method, url: String, body: Option<&Value>) -> Result<(StatusCode, Value), reqwest::Error> {
        let mut request = self.http.request(method, url).header("Authorization", format!("APIKey {}", self.token));
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    pub async fn get(&self, base: &str, path: &str) -> Result<(StatusCode, Value), reqwest::Error> {
        self.call(reqwest::Method::GET, format!("{base}{path}"), None).await
    }

    pub async fn post(&self, base: &str, path: &str, body: &Value) -> Result<(StatusCode, Value), reqwest::Error> {
        self.call(reqwest::Method::POST, format!("{base}{path}"), Some(body)).await
    }

    pub async fn patch(&self, base: &str, path: &str, body: &Value) -> Result<(StatusCode, Value), reqwest::Error> {
        self.call(reqwest::Method::PATCH, format!("{base}{path}"), Some(body)).await
    }

    /// A v2 write that answers `{"tasks": [id]}`: the acknowledged task id, or why not.
    pub fn task_of(result: Result<(StatusCode, Value), reqwest::Error>) -> Result<String, String> {
        match result {
            Ok((StatusCode::OK, body)) => body["tasks"][0].as_str().map(String::from).ok_or_else(|| format!("no task in {body}")),
            Ok((status, body)) => Err(format!("{status}: {body}")),
            Err(e) => Err(format!("transport: {e}")),
        }
    }
}

/// Runs `count` jobs with at most `limit` in flight; results in job order.
pub async fn bounded<T, F, Fut>(count: usize, limit: usize, job: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let permits = Arc::new(Semaphore::new(limit));
    let mut set = JoinSet::new();
    for i in 0..count {
        let permit = permits.clone().acquire_owned().await.expect("semaphore");
        let future = job(i);
        set.spawn(async move {
            let result = future.await;
            drop(permit);
            (i, result)
        });
    }
    let mut results: Vec<Option<T>> = (0..count).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, result) = joined.expect("job panicked");
        results[i] = Some(result);
    }
    results.into_iter().map(|r| r.expect("every job ran")).collect()
}

/// Everything in the database, read directly (the verifier, not the system under test).
pub struct Snapshot {
    pub groups: Vec<Group>,
    pub tasks: Vec<TaskRecord>,
}

pub async fn snapshot(database_url: &str) -> Snapshot {
    let url = database_url.to_string();
    tokio::task::spawn_blocking(move || {
        let db = Database::open(&url, "normal").expect("open for verification");
        db.read(|tx| {
            let groups = every_page(|after| tx.export_groups(after, 500))?;
            let tasks = every_page(|after| tx.export_tasks(after, 500))?;
            Ok::<_, StoreError>(Snapshot { groups, tasks })
        })
        .expect("read the database")
    })
    .await
    .expect("snapshot")
}

/// Every row of an export read page by page: `page(after)` returns the rows after the cursor
/// `after`, each with its own cursor.
fn every_page<C: Copy + Default, T>(mut page: impl FnMut(C) -> Result<Vec<(C, T)>, StoreError>) -> Result<Vec<T>, StoreError> {
    let mut rows = Vec::new();
    let mut after = C::default();
    loop {
        let page = page(after)?;
        let Some((last, _)) = page.last() else { return Ok(rows) };
        after = *last;
        rows.extend(page.into_iter().map(|(_, row)| row));
    }
}

/// Waits until every task in the database is FINISHED or ERROR; returns the final snapshot.
pub async fn until_all_done(database_url: &str, within: Duration) -> Snapshot {
    let deadline = Instant::now() + within;
    loop {
        let snap = snapshot(database_url).await;
        let open = snap.tasks.iter().filter(|t| !t.state.is_terminal()).count();
        if open == 0 {
            return snap;
        }
        assert!(Instant::now() < deadline, "{open} tasks still open after {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
