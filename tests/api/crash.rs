//! Durability with the real binary: `kill -9` while 200 creates are in flight, then a restart on
//! the same data directory; and a graceful SIGTERM that drains accepted work before exiting.
//!
//! Invariants: every acknowledged task survives and ends FINISHED; every finished create has
//! exactly one group with all its rules; no group exists without a finished task (no
//! half-created group).

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::process::{BIN, ServeProcess, sigterm};

const REQUESTS: usize = 200;

/// `palisade serve` on the data directory `dir`, logging to `<label>.log` there, once healthy;
/// and a client of it with `token`.
async fn serve(dir: &Path, label: &str, token: &str) -> (ServeProcess, Api) {
    let data_dir = dir.to_str().expect("a UTF-8 path");
    // Answer before the worker runs the task, so the queue is deep when the server dies.
    let mut server = ServeProcess::spawn(&["--data-dir", data_dir], &["--task-wait-ms", "0"], dir.join(format!("{label}.log")));
    server.wait_healthy().await;
    let api = Api::new(server.base(), token.to_string());
    (server, api)
}

/// A new data directory with a key made by `palisade keys create`: (directory, token).
fn data_dir_with_key(label: &str) -> (TempDir, String) {
    let dir = TempDir::new(label);
    let token = create_key_cli(dir.path());
    (dir, token)
}

/// `palisade keys create --data-dir D`: the token is the last line of stdout.
fn create_key_cli(dir: &Path) -> String {
    let output = Command::new(BIN).args(["keys", "create", "--data-dir"]).arg(dir).output().expect("running palisade keys create");
    assert!(output.status.success(), "keys create failed: {}", String::from_utf8_lossy(&output.stderr));
    let stdout = String::from_utf8(output.stdout).expect("utf-8 output");
    let token = stdout.lines().rev().find(|l| !l.trim().is_empty()).expect("a token line").trim().to_string();
    assert!(token.contains('$'), "unexpected token {token:?}");
    token
}

/// The rules of request `i`: 2 or 3, all distinct.
fn rules_for(i: usize) -> Vec<Value> {
    let mut rules = vec![
        json!({"direction": "ingress", "protocol": "tcp", "port_range_min": 1000 + i, "port_range_max": 1000 + i}),
        json!({"direction": "egress", "protocol": "udp", "port_range_min": 53, "port_range_max": 53, "remote_ip_prefix": "10.0.0.0/8"}),
    ];
    if i.is_multiple_of(2) {
        rules.push(json!({"direction": "ingress", "ethertype": "IPv6", "protocol": "icmp"}));
    }
    rules
}

/// (unfinished, total) tasks in the database of `dir`, read directly while no server runs.
fn tasks_in_database(dir: &Path) -> (u64, u64) {
    let url = format!("sqlite:{}", dir.join("palisade.db").display());
    let db = palisade_store::Database::open(&url, "normal").expect("opening the database");
    palisade_store::Store::read(&db, |tx| {
        let client_id = tx.list_keys()?[0].client_id;
        let unfinished = palisade_store::TaskFilter {
            states: vec![palisade_store::TaskState::New, palisade_store::TaskState::Running],
            limit: 1000,
            ..Default::default()
        };
        let all = palisade_store::TaskFilter { limit: 1000, ..Default::default() };
        Ok::<_, palisade_store::StoreError>((tx.list_tasks(client_id, &unfinished)?.0, tx.list_tasks(client_id, &all)?.0))
    })
    .expect("reading tasks")
}

struct Sent {
    name: String,
    rules: usize,
    /// The task id, when the server answered 200 with one.
    task: Option<String>,
}

/// Fires every create at once; calls `interrupt` once `threshold` of them have been answered.
async fn fire_creates(api: &Api, threshold: usize, interrupt: impl FnOnce()) -> (Vec<Sent>, usize) {
    let acked = Arc::new(AtomicUsize::new(0));
    let mut handles = Vec::with_capacity(REQUESTS);
    for i in 0..REQUESTS {
        let api = api.clone();
        let acked = acked.clone();
        handles.push(tokio::spawn(async move {
            let name = format!("crash-{i:03}");
            let rules = rules_for(i);
            let body = json!({"name": name, "rules": rules});
            let sent = api.request(reqwest::Method::POST, V2).json(&body).send().await;
            let task = match sent {
                Ok(resp) if resp.status() == reqwest::StatusCode::OK => match resp.json::<Value>().await {
                    Ok(body) => body["tasks"].as_array().filter(|t| t.len() == 1).and_then(|t| t[0].as_str()).map(str::to_owned),
                    Err(_) => None,
                },
                _ => None,
            };
            if task.is_some() {
                acked.fetch_add(1, Ordering::SeqCst);
            }
            Sent { name, rules: rules.len(), task }
        }));
    }
    let started = Instant::now();
    while acked.load(Ordering::SeqCst) < threshold && started.elapsed() < Duration::from_secs(60) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let at_interrupt = acked.load(Ordering::SeqCst);
    interrupt();
    let mut sent = Vec::with_capacity(REQUESTS);
    for handle in handles {
        sent.push(handle.await.expect("request task"));
    }
    (sent, at_interrupt)
}

/// Polls every acknowledged task until it is FINISHED or ERROR; returns the tasks and the time taken.
async fn drain(api: &Api, sent: &[Sent]) -> (HashMap<String, Value>, Duration) {
    let started = Instant::now();
    let mut done = HashMap::new();
    loop {
        for task_id in sent.iter().filter_map(|s| s.task.as_ref()) {
            if done.contains_key(task_id) {
                continue;
            }
            let resp = api.get(&format!("{TASKS}/{task_id}")).await;
            assert_eq!(resp.status.as_u16(), 200, "acknowledged task {task_id} is lost after the restart: {}", resp.text);
            if matches!(resp.body["state"].as_str(), Some("FINISHED" | "ERROR")) {
                done.insert(task_id.clone(), resp.body);
            }
        }
        if done.len() == sent.iter().filter(|s| s.task.is_some()).count() {
            return (done, started.elapsed());
        }
        assert!(started.elapsed() < Duration::from_secs(30), "acknowledged tasks did not finish within 30 s after the restart");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Figures {
    accepted: usize,
    finished: usize,
    errors: usize,
    groups: usize,
    server_tasks: usize,
}

/// Checks the invariants against the restarted server.
async fn verify(api: &Api, sent: &[Sent], done: &HashMap<String, Value>) -> Figures {
    let all_tasks = api.list_tasks("limit=1000&order_by=asc").await;
    let tasks = all_tasks["results"].as_array().unwrap();
    assert_eq!(all_tasks["count"], json!(tasks.len()));
    assert!(tasks.len() <= REQUESTS, "more tasks than requests: {}", tasks.len());
    let server_ids: HashSet<&str> = tasks.iter().map(|t| str_of(t, "id")).collect();
    for task_id in done.keys() {
        assert!(server_ids.contains(task_id.as_str()), "acknowledged task {task_id} is missing from the list");
    }
    for task in tasks {
        let state = str_of(task, "state");
        assert!(state == "FINISHED" || state == "ERROR", "a task is left {state} after the drain: {task}");
    }

    let list = api.list_groups("limit=1000").await;
    let groups = list["results"].as_array().unwrap();
    assert_eq!(list["count"], json!(groups.len()));
    let mut by_name: HashMap<&str, Vec<&Value>> = HashMap::new();
    for group in groups {
        by_name.entry(str_of(group, "name")).or_default().push(group);
    }

    // Every acknowledged, finished create has exactly one complete group.
    let (mut finished, mut errors) = (0, 0);
    for request in sent {
        let Some(task_id) = &request.task else { continue };
        let task = &done[task_id];
        match str_of(task, "state") {
            "FINISHED" => {
                finished += 1;
                let group_id = task["created_resources"]["security_groups"][0].as_str().expect("created group id");
                let named = api.list_groups(&format!("name={}", request.name)).await;
                assert_eq!(named["count"], 1, "{} must exist exactly once: {named}", request.name);
                let group = &named["results"][0];
                assert_eq!(group["id"], json!(group_id));
                assert_eq!(rules_of(group).len(), request.rules, "{} has all its rules: {group}", request.name);
                let mut expected: Vec<String> = task["created_resources"]["security_group_rules"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_string())
                    .collect();
                let mut actual = rule_ids(group);
                expected.sort();
                actual.sort();
                assert_eq!(actual, expected, "the rules are the ones the task created");
            }
            _ => errors += 1,
        }
    }

    // No group without a finished create task, and no group twice.
    let finished_by_group: HashMap<&str, &Value> = tasks
        .iter()
        .filter(|t| t["state"] == "FINISHED")
        .filter_map(|t| t["created_resources"]["security_groups"][0].as_str().map(|g| (g, t)))
        .collect();
    for group in groups {
        let id = str_of(group, "id");
        let task = finished_by_group.get(id).unwrap_or_else(|| panic!("group {id} exists without a FINISHED task"));
        assert_eq!(task["data"]["name"], group["name"]);
        let name = str_of(group, "name");
        assert_eq!(by_name[name].len(), 1, "{name} was created twice");
        let index: usize = name.trim_start_matches("crash-").parse().expect("a crash-NNN name");
        assert_eq!(rules_of(group).len(), rules_for(index).len(), "{name} is complete: {group}");
    }
    assert_eq!(groups.len(), finished_by_group.len(), "groups == FINISHED create tasks (no half-created group)");

    Figures {
        accepted: sent.iter().filter(|s| s.task.is_some()).count(),
        finished,
        errors,
        groups: groups.len(),
        server_tasks: tasks.len(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_200_concurrent_creates_loses_no_acknowledged_work() {
    let (dir, token) = data_dir_with_key("crash");
    let (mut server, api) = serve(dir.path(), "first", &token).await;

    let (sent, at_kill) = fire_creates(&api, REQUESTS / 2, || server.kill_9()).await;
    let accepted = sent.iter().filter(|s| s.task.is_some()).count();
    assert!(accepted >= REQUESTS / 2, "the kill came after {accepted} acknowledgements");
    let (pending_at_crash, stored_at_crash) = tasks_in_database(dir.path());

    let restart = Instant::now();
    let (_restarted, api) = serve(dir.path(), "second", &token).await;
    let (done, drain_time) = drain(&api, &sent).await;
    let since_restart = restart.elapsed();
    let figures = verify(&api, &sent, &done).await;

    println!(
        "kill -9: requests={REQUESTS} accepted_at_kill={at_kill} accepted={} stored_at_crash={stored_at_crash} \
         unfinished_at_crash={pending_at_crash} finished={} error={} groups={} tasks_on_server={} \
         drain_after_healthy={drain_time:?} restart_to_drained={since_restart:?}",
        figures.accepted, figures.finished, figures.errors, figures.groups, figures.server_tasks
    );
    assert_eq!(figures.errors, 0, "valid creates must not end in ERROR after a crash");
    assert_eq!(figures.finished, figures.accepted, "every acknowledged task finished");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_accepted_creates_before_exiting() {
    let (dir, token) = data_dir_with_key("sigterm");
    let (mut server, api) = serve(dir.path(), "first", &token).await;

    let pid = server.pid();
    let (sent, at_term) = fire_creates(&api, REQUESTS / 2, || {
        sigterm(pid);
    })
    .await;
    let status = server.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "graceful shutdown exits 0, got {status}:\n{}", server.log_text());

    // Before any restart: the database holds no unfinished task, so the drain happened at shutdown.
    let (pending, stored) = tasks_in_database(dir.path());
    assert_eq!(pending, 0, "SIGTERM left {pending} of {stored} accepted tasks unfinished");

    let restart = Instant::now();
    let (_restarted, api) = serve(dir.path(), "second", &token).await;
    let (done, drain_time) = drain(&api, &sent).await;
    let figures = verify(&api, &sent, &done).await;
    println!(
        "SIGTERM: requests={REQUESTS} accepted_at_term={at_term} accepted={} finished={} error={} groups={} tasks_on_server={} \
         drain_after_healthy={drain_time:?} restart_to_drained={:?}",
        figures.accepted,
        figures.finished,
        figures.errors,
        figures.groups,
        figures.server_tasks,
        restart.elapsed()
    );
    assert_eq!(figures.errors, 0);
    assert_eq!(figures.finished, figures.accepted, "every acknowledged task is FINISHED");
}
