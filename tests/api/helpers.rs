//! The test harness: an in-process Palisade on a random port with a fresh SQLite database, and a
//! typed HTTP client ([`Api`]) that speaks the contract's wire format. The same client drives the
//! real binary in the crash tests.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use palisade::config::Config;
use palisade::startup::{Application, KeySpec, create_api_key, create_key};
use palisade_api::{ApiConfig, AppState};
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::server_config::server_config;

/// Project and region every test uses unless it says otherwise.
pub const V1: &str = "/cloud/v1/securitygroups/1/1";
pub const V2: &str = "/cloud/v2/security_groups/1/1";
pub const V1_RULES: &str = "/cloud/v1/securitygrouprules/1/1";
pub const TASKS: &str = "/cloud/v1/tasks";

/// How long a task may take to reach FINISHED or ERROR in the in-process tests.
const TASK_TIMEOUT: Duration = Duration::from_secs(15);

static LOGGING: Once = Once::new();

fn init_test_logging() {
    LOGGING.call_once(|| {
        if std::env::var("TEST_LOG").is_ok_and(|v| !v.is_empty() && v != "0") {
            palisade::init_logging(palisade::config::LogFormat::Text);
        }
        // Otherwise no subscriber is installed: tracing output goes nowhere.
    });
}

/// A directory under the system temp dir, removed when dropped.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("palisade-{prefix}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("creating the test directory");
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A response, read completely: status, headers and the body as JSON (`Null` when empty, a JSON
/// string holding the raw text when it is not JSON).
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub body: Value,
}

impl Resp {
    /// Panics with the body when the status is not `status`; returns the response for chaining.
    #[track_caller]
    pub fn expect(self, status: u16) -> Resp {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        if !self.text.is_empty() {
            assert_json_content_type(&self);
        }
        self
    }

    pub fn content_type(&self) -> Option<&str> {
        self.headers.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the contract's error body (§6.1) with this status and exception class, and a
    /// JSON content type; returns the body.
    #[track_caller]
    pub fn expect_error(&self, status: u16, class: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        assert_json_content_type(self);
        assert_eq!(self.body["exception_class"], json!(class), "body: {}", self.text);
        assert!(self.body["message"].as_str().is_some_and(|m| !m.is_empty()), "error without a message: {}", self.text);
        let request_id = self.body["request_id"].as_str().unwrap_or_default();
        assert!(!request_id.is_empty(), "error without a request_id: {}", self.text);
        assert_eq!(Some(request_id), self.header("x-request-id"), "request_id differs from the x-request-id header");
        &self.body
    }

    /// Asserts a 400 ValidationError whose `invalid_fields` names `field`.
    #[track_caller]
    pub fn expect_invalid(&self, field: &str) -> &Value {
        let body = self.expect_error(400, "ValidationError");
        let fields = body["invalid_fields"].as_object().unwrap_or_else(|| panic!("no invalid_fields object: {}", self.text));
        assert!(fields.contains_key(field), "invalid_fields lacks {field:?}: {}", self.text);
        assert!(
            fields[field].as_array().is_some_and(|reasons| !reasons.is_empty() && reasons.iter().all(Value::is_string)),
            "invalid_fields.{field} should be a non-empty list of strings: {}",
            self.text
        );
        body
    }
}

#[track_caller]
pub fn assert_json_content_type(resp: &Resp) {
    let ct = resp.content_type().unwrap_or_default();
    assert!(
        ct.starts_with("application/json"),
        "Content-Type is {ct:?}, not application/json (status {}, body {})",
        resp.status,
        resp.text
    );
}

/// A client of one Palisade server with one API key.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

impl Api {
    pub fn new(base: impl Into<String>, token: impl Into<String>) -> Api {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().expect("building the HTTP client");
        Api { base: base.into(), http, token: token.into() }
    }

    /// The same server with another key.
    pub fn with_token(&self, token: impl Into<String>) -> Api {
        Api { base: self.base.clone(), http: self.http.clone(), token: token.into() }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// A request with the `Authorization: APIKey <token>` header and nothing else.
    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).header("Authorization", format!("APIKey {}", self.token))
    }

    pub async fn send(&self, builder: reqwest::RequestBuilder) -> Resp {
        let response = builder.send().await.expect("sending the request");
        read(response).await
    }

    /// `method path` with an optional JSON body (sent with `Content-Type: application/json`).
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Resp {
        let mut builder = self.request(method, path);
        if let Some(body) = body {
            builder = builder.json(body);
        }
        self.send(builder).await
    }

    /// `method path` with a raw body and a JSON content type (malformed JSON, empty bodies).
    pub async fn call_raw(&self, method: Method, path: &str, body: &str) -> Resp {
        let builder = self.request(method, path).header("Content-Type", "application/json").body(body.to_string());
        self.send(builder).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, None).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Resp {
        self.call(Method::POST, path, Some(body)).await
    }

    /// A body-less POST with a JSON content type, as the Python SDK sends it.
    pub async fn post_empty(&self, path: &str) -> Resp {
        self.call_raw(Method::POST, path, "").await
    }

    pub async fn patch_json(&self, path: &str, body: &Value) -> Resp {
        self.call(Method::PATCH, path, Some(body)).await
    }

    pub async fn put_json(&self, path: &str, body: &Value) -> Resp {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.call(Method::DELETE, path, None).await
    }

    // ----- security groups -----

    /// v2 create: asserts 200 and exactly one task; returns the task id.
    pub async fn create_group(&self, body: Value) -> String {
        let resp = self.post_json(V2, &body).await.expect(200);
        single_task(&resp)
    }

    /// v2 create, then waits for FINISHED and returns the group as GET shows it.
    pub async fn create_group_and_wait(&self, body: Value) -> Value {
        let task_id = self.create_group(body).await;
        let task = self.wait_finished(&task_id).await;
        let groups = task["created_resources"]["security_groups"].as_array().expect("created_resources.security_groups");
        assert_eq!(groups.len(), 1, "a create task creates exactly one group: {task}");
        self.get_group(groups[0].as_str().expect("group id string")).await
    }

    /// v1 (legacy, synchronous) create of a group with exactly these rules.
    pub async fn create_group_v1(&self, name: &str, rules: Value) -> Value {
        let body = json!({"security_group": {"name": name, "security_group_rules": rules}});
        self.post_json(V1, &body).await.expect(200).body
    }

    pub async fn get_group(&self, id: &str) -> Value {
        self.get(&format!("{V1}/{id}")).await.expect(200).body
    }

    /// GET list with a raw query string (`""` for none).
    pub async fn list_groups(&self, query: &str) -> Value {
        let path = if query.is_empty() { V1.to_string() } else { format!("{V1}?{query}") };
        self.get(&path).await.expect(200).body
    }

    pub async fn group_count(&self) -> u64 {
        self.list_groups("limit=1").await["count"].as_u64().expect("count")
    }

    /// v2 PATCH: asserts 200; returns the task ids.
    pub async fn patch_group(&self, id: &str, body: Value) -> Vec<String> {
        let resp = self.patch_json(&format!("{V2}/{id}"), &body).await.expect(200);
        task_ids(&resp)
    }

    /// v2 PATCH, waits for every task to finish, returns the group.
    pub async fn patch_group_and_wait(&self, id: &str, body: Value) -> Value {
        for task in self.patch_group(id, body).await {
            self.wait_finished(&task).await;
        }
        self.get_group(id).await
    }

    /// v2 rule create: asserts 200 and one task; returns the task id.
    pub async fn create_rule_v2(&self, group_id: &str, rule: Value) -> String {
        let resp = self.post_json(&format!("{V2}/{group_id}/rules"), &rule).await.expect(200);
        single_task(&resp)
    }

    /// v1 rule add: asserts 200; returns the rule.
    pub async fn add_rule_v1(&self, group_id: &str, rule: Value) -> Value {
        self.post_json(&format!("{V1}/{group_id}/rules"), &rule).await.expect(200).body
    }

    // ----- tasks -----

    pub async fn get_task(&self, id: &str) -> Value {
        self.get(&format!("{TASKS}/{id}")).await.expect(200).body
    }

    /// Polls the task until it is FINISHED or ERROR; panics after a timeout.
    pub async fn wait_task(&self, id: &str) -> Value {
        self.wait_task_for(id, TASK_TIMEOUT).await
    }

    pub async fn wait_task_for(&self, id: &str, timeout: Duration) -> Value {
        let started = Instant::now();
        loop {
            let task = self.get_task(id).await;
            match task["state"].as_str() {
                Some("FINISHED" | "ERROR") => return task,
                Some("NEW" | "RUNNING") => {}
                other => panic!("task {id} has an unknown state {other:?}: {task}"),
            }
            assert!(started.elapsed() < timeout, "task {id} did not finish within {timeout:?}: {task}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// [`Api::wait_task`] and asserts FINISHED.
    pub async fn wait_finished(&self, id: &str) -> Value {
        let task = self.wait_task(id).await;
        assert_eq!(task["state"], "FINISHED", "task {id} failed: {task}");
        task
    }

    /// [`Api::wait_task`] and asserts ERROR; returns the task.
    pub async fn wait_error(&self, id: &str) -> Value {
        let task = self.wait_task(id).await;
        assert_eq!(task["state"], "ERROR", "task {id} should have failed: {task}");
        task
    }

    pub async fn list_tasks(&self, query: &str) -> Value {
        let path = if query.is_empty() { TASKS.to_string() } else { format!("{TASKS}?{query}") };
        self.get(&path).await.expect(200).body
    }

    /// Everything this key can see: every group (with rules and tags) and every task, for
    /// before/after comparisons.
    pub async fn snapshot(&self) -> Value {
        json!({
            "groups": self.list_groups("limit=1000").await,
            "tasks": self.list_tasks("limit=1000&order_by=asc").await,
        })
    }
}

async fn read(response: reqwest::Response) -> Resp {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("reading the body");
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone())) };
    Resp { status, headers, text, body }
}

/// The ids of a `{"tasks": [...]}` body (asserting its shape).
#[track_caller]
pub fn task_ids(resp: &Resp) -> Vec<String> {
    assert_json_content_type(resp);
    let tasks = resp.body["tasks"].as_array().unwrap_or_else(|| panic!("no tasks array: {}", resp.text));
    tasks.iter().map(|t| t.as_str().expect("task ids are strings").to_string()).collect()
}

#[track_caller]
pub fn single_task(resp: &Resp) -> String {
    let ids = task_ids(resp);
    assert_eq!(ids.len(), 1, "expected exactly one task: {}", resp.text);
    assert!(uuid::Uuid::try_parse(&ids[0]).is_ok(), "task id is not a UUID: {}", ids[0]);
    ids[0].clone()
}

// ----- the server -----

/// A Palisade started in-process with a fresh database and an API key for client 1, user 1.
pub struct TestApp {
    pub api: Api,
    pub state: Arc<AppState>,
    pub database_url: String,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
    // Last: dropped after the server has been told to stop.
    leftovers: Option<Leftovers>,
}

/// What a stopped app leaves behind until the caller drops it: its data directory and database.
pub struct Leftovers {
    _database: TestDatabase,
    _dir: TempDir,
}

/// The database of one test: SQLite in the test's directory, or with
/// `PALISADE_TEST_BACKEND=postgres` a new PostgreSQL database, dropped with this (WITH (FORCE):
/// the sessions of a server still stopping end too).
pub struct TestDatabase {
    pub url: String,
    pg_name: Option<String>,
}

impl TestDatabase {
    /// A fresh database for the test whose directory is `dir`; `prefix` names it.
    pub fn new(dir: &TempDir, prefix: &str) -> TestDatabase {
        if backend() == "postgres" {
            let name = format!("palisade_{prefix}_{}", uuid::Uuid::new_v4().simple());
            let (admin, db) = (pg_admin_url(), name.clone());
            let url = blocking(move || palisade_store::postgres::create_database(&admin, &db)).expect("creating the test database");
            TestDatabase { url, pg_name: Some(name) }
        } else {
            TestDatabase { url: format!("sqlite:{}", dir.path().join("palisade.db").display()), pg_name: None }
        }
    }

    /// A new key of `spec`'s role in this database (a server on it finds the key on first use).
    pub fn create_key(&self, spec: KeySpec) -> String {
        let url = self.url.clone();
        blocking(move || {
            let store = palisade_store::Database::open(&url, "normal").expect("opening the test database");
            create_api_key(&store, &spec)
        })
        .expect("creating a key")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            let admin = pg_admin_url();
            let _ = blocking(move || palisade_store::postgres::drop_database(&admin, &name));
        }
    }
}

impl std::ops::Deref for TestApp {
    type Target = Api;
    fn deref(&self) -> &Api {
        &self.api
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(ApiConfig::default()).await
}

/// Runs blocking store code (the PostgreSQL client must not run on the async runtime's thread).
pub fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(f).join().expect("the blocking call panicked")
}

/// The backend the suite runs on: SQLite unless `PALISADE_TEST_BACKEND=postgres`, which gives
/// every test a fresh database on the server of `PALISADE_TEST_PG_URL`
/// (default `postgres://postgres@127.0.0.1:5432/test`).
pub fn backend() -> &'static str {
    match std::env::var("PALISADE_TEST_BACKEND").as_deref() {
        Ok("postgres") => "postgres",
        _ => "sqlite",
    }
}

fn pg_admin_url() -> String {
    std::env::var("PALISADE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub async fn spawn_app_with(api_config: ApiConfig) -> TestApp {
    spawn_app_tuned(move |config| config.api = api_config).await
}

/// A test server whose configuration `tune` adjusts first (timeouts, limits, ...).
pub async fn spawn_app_tuned(tune: impl FnOnce(&mut Config)) -> TestApp {
    init_test_logging();
    let dir = TempDir::new("api");
    let database = TestDatabase::new(&dir, "api");
    let mut config = server_config("127.0.0.1:0", database.url.clone());
    tune(&mut config);
    let app = Application::build(config).await.expect("building the application");
    let port = app.port();
    let state = app.state();
    let store = state.store.clone();
    let token = blocking(move || create_key(&store, 1, 1, None, "test")).expect("creating the test key");
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(app.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));
    TestApp {
        api: Api::new(format!("http://127.0.0.1:{port}"), token),
        state,
        database_url: database.url.clone(),
        stop: Some(stop_tx),
        handle: Some(handle),
        leftovers: Some(Leftovers { _database: database, _dir: dir }),
    }
}

impl TestApp {
    /// A new key of this server; `projects: None` allows every project.
    pub fn create_key(&self, client_id: i64, user_id: i64, projects: Option<Vec<i64>>) -> String {
        let store = self.state.store.clone();
        blocking(move || create_key(&store, client_id, user_id, projects, "test")).expect("creating a key")
    }

    /// A client of this server with a new key.
    pub fn client_as(&self, client_id: i64, user_id: i64, projects: Option<Vec<i64>>) -> Api {
        self.api.with_token(self.create_key(client_id, user_id, projects))
    }

    /// A client with a new key of `spec`'s role.
    pub fn client_with(&self, spec: KeySpec) -> Api {
        let store = self.state.store.clone();
        self.api.with_token(blocking(move || create_api_key(&store, &spec)).expect("creating a key"))
    }

    /// The operator's control plane: a new platform key.
    pub fn platform(&self) -> Api {
        self.client_with(KeySpec::platform("test-platform"))
    }

    /// The agent of `host`: a new agent key.
    pub fn agent(&self, host: &str) -> Api {
        self.client_with(KeySpec::agent(host, "test-agent"))
    }

    /// Stops the server gracefully and waits for it; returns how it ended and the data
    /// directory (removed when the caller drops it).
    pub async fn stop(mut self) -> (anyhow::Result<()>, Leftovers) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = match self.handle.take() {
            Some(handle) => handle.await.expect("the server task panicked"),
            None => Ok(()),
        };
        (result, self.leftovers.take().expect("the data directory and database"))
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

// ----- value helpers -----

/// `YYYY-MM-DDTHH:MM:SS`, checked digit by digit with plausible ranges.
pub fn is_naive_time(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() != 19 || !text.is_ascii() || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return false;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = &text[r];
        part.bytes().all(|c| c.is_ascii_digit()).then(|| part.parse().ok()).flatten()
    };
    num(0..4).is_some_and(|y| (2020..=2200).contains(&y))
        && num(5..7).is_some_and(|m| (1..=12).contains(&m))
        && num(8..10).is_some_and(|d| (1..=31).contains(&d))
        && num(11..13).is_some_and(|h| h < 24)
        && num(14..16).is_some_and(|m| m < 60)
        && num(17..19).is_some_and(|s| s <= 60)
}

/// `YYYY-MM-DDTHH:MM:SS+0000` (group and rule times, CONTRACT.md §2).
pub fn is_zoned_time(text: &str) -> bool {
    text.len() == 24 && text.ends_with("+0000") && is_naive_time(&text[..19])
}

#[track_caller]
pub fn assert_zoned_time(value: &Value, what: &str) {
    let text = value.as_str().unwrap_or_else(|| panic!("{what} is not a string: {value}"));
    assert!(is_zoned_time(text), "{what} = {text:?} is not YYYY-MM-DDTHH:MM:SS+0000");
}

#[track_caller]
pub fn assert_naive_time(value: &Value, what: &str) {
    let text = value.as_str().unwrap_or_else(|| panic!("{what} is not a string: {value}"));
    assert!(is_naive_time(text), "{what} = {text:?} is not YYYY-MM-DDTHH:MM:SS");
}

pub fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_else(|| panic!("{key} is not a string in {value}"))
}

pub fn id_of(value: &Value) -> String {
    str_of(value, "id").to_string()
}

pub fn rules_of(group: &Value) -> &Vec<Value> {
    group["security_group_rules"].as_array().unwrap_or_else(|| panic!("no security_group_rules array: {group}"))
}

pub fn rule_ids(group: &Value) -> Vec<String> {
    rules_of(group).iter().map(id_of).collect()
}

/// The rule of `group` with this id.
pub fn rule_by_id<'a>(group: &'a Value, id: &str) -> Option<&'a Value> {
    rules_of(group).iter().find(|r| r["id"] == id)
}

/// The rule's attributes without id, times and group: what identifies it for a client.
pub fn rule_attrs(rule: &Value) -> Value {
    json!({
        "direction": rule["direction"],
        "ethertype": rule["ethertype"],
        "protocol": rule["protocol"],
        "port_range_min": rule["port_range_min"],
        "port_range_max": rule["port_range_max"],
        "remote_ip_prefix": rule["remote_ip_prefix"],
        "remote_group_id": rule["remote_group_id"],
        "description": rule["description"],
    })
}

/// The rules' attributes, sorted so comparisons ignore order.
pub fn sorted_attrs(group: &Value) -> Vec<Value> {
    let mut attrs: Vec<Value> = rules_of(group).iter().map(rule_attrs).collect();
    attrs.sort_by_key(|a| a.to_string());
    attrs
}

/// `{key: value}` of a `tags_v2` array.
pub fn tags_of(group: &Value) -> Value {
    let tags = group["tags_v2"].as_array().unwrap_or_else(|| panic!("no tags_v2 array: {group}"));
    let mut map = serde_json::Map::new();
    for tag in tags {
        assert_eq!(tag["read_only"], json!(false), "user tags are not read-only: {tag}");
        map.insert(str_of(tag, "key").to_string(), tag["value"].clone());
    }
    Value::Object(map)
}

/// A rule attribute set as the server should return it, from the fields a test cares about.
pub fn expected_rule(fields: Value) -> Value {
    let mut rule = json!({
        "direction": null, "ethertype": "IPv4", "protocol": null, "port_range_min": null, "port_range_max": null,
        "remote_ip_prefix": null, "remote_group_id": null, "description": "",
    });
    for (k, v) in fields.as_object().expect("an object of rule fields") {
        rule[k] = v.clone();
    }
    rule
}

/// Sorts rule attribute values the way [`sorted_attrs`] does.
pub fn sorted(mut values: Vec<Value>) -> Vec<Value> {
    values.sort_by_key(|a| a.to_string());
    values
}

/// Unix seconds of a `YYYY-MM-DDTHH:MM:SS` prefix (UTC).
pub fn unix_seconds(text: &str) -> i64 {
    assert!(is_naive_time(&text[..19.min(text.len())]), "not a timestamp: {text}");
    let n = |r: std::ops::Range<usize>| text[r].parse::<i64>().unwrap();
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19)
}

/// The timestamp is UTC "now" within two minutes (catches local-time and unit mix-ups).
#[track_caller]
pub fn assert_recent(value: &Value, what: &str) {
    let text = value.as_str().unwrap_or_else(|| panic!("{what} is not a string: {value}"));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let at = unix_seconds(text);
    assert!((now - at).abs() <= 120, "{what} = {text} is not the current UTC time (now is {now}, got {at})");
}
