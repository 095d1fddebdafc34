//! Several Palisade nodes over one PostgreSQL (issue 4): the real binary, two processes, one
//! fresh database per test. Needs PostgreSQL at `PALISADE_TEST_PG_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`).
//!
//! - `two_nodes_share_the_load`: 1,000 concurrent creates and rule changes spread over both
//!   nodes; every task ends FINISHED exactly once and every effect happened exactly once.
//! - `failover_after_kill_9`: the same load, one node killed with SIGKILL in the middle; the
//!   other finishes the orphaned tasks and nothing acknowledged is lost.
//! - `concurrent_patches_lose_no_update`: 50 concurrent PATCHes of one group through both nodes;
//!   the final state is that of some serial order.
//! - `sqlite_to_postgres_move`: 1,000 groups made on SQLite, `palisade export`, `palisade import`
//!   into PostgreSQL, served by a PostgreSQL node: the same groups, tasks and keys.
//! - `hung_node_loses_its_claims`: one node is frozen (SIGSTOP) mid-load; PostgreSQL ends its
//!   idle transactions after `idle_in_transaction_session_timeout` (the lease), the other node
//!   finishes the tasks, and the frozen node, thawed, repeats nothing.
//! - `database_outage_is_503_then_recovers`: the database refuses connections; the node answers
//!   503 and is not ready; when the database returns, the node recovers by itself.
//! - `frozen_node_stalls_nothing` (issue 16): with the shipped session defaults, one node is
//!   frozen while it holds a project's scope lock inside a task; the other finishes a 50-task
//!   burst in that project within 10 s, and a write in another project answers at once.

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use palisade_store::TaskState;
use serde_json::{Value, json};
use support::{Api, Node, P, PgDb, R, Scratch, bounded, create_key, palisade, snapshot, until_all_done};

const GROUPS_PATH: &str = "/cloud/v2/security_groups/1/1";

fn tcp(port: u64) -> Value {
    json!({"direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": port, "port_range_max": port, "remote_ip_prefix": "10.0.0.0/8"})
}

/// What one operation of the mixed load was.
#[derive(Debug, Clone)]
enum Op {
    Create { name: String, port: u64 },
    AddRule { group: String, port: u64 },
}

/// The mixed load: even operations create a group (with one rule), odd ones add a rule (with a
/// port no other operation uses) to one of the seed groups.
fn mixed_ops(count: usize, seeds: &[String]) -> Vec<Op> {
    (0..count)
        .map(|i| {
            if i % 2 == 0 {
                Op::Create { name: format!("load-{i:04}"), port: 20_000 + i as u64 }
            } else {
                Op::AddRule { group: seeds[i % seeds.len()].clone(), port: 30_000 + i as u64 }
            }
        })
        .collect()
}

async fn send(api: &Api, base: &str, op: &Op) -> Result<String, String> {
    match op {
        Op::Create { name, port } => Api::task_of(api.post(base, GROUPS_PATH, &json!({"name": name, "rules": [tcp(*port)]})).await),
        Op::AddRule { group, port } => Api::task_of(api.post(base, &format!("{GROUPS_PATH}/{group}/rules"), &tcp(*port)).await),
    }
}

/// Creates `count` groups through `base` with no rules; returns their ids once created.
async fn seed_groups(api: &Api, base: &str, url: &str, count: usize) -> Vec<String> {
    let mut tasks = Vec::new();
    for i in 0..count {
        let body = json!({"name": format!("seed-{i:03}"), "rules": []});
        tasks.push(Api::task_of(api.post(base, GROUPS_PATH, &body).await).expect("seed create"));
    }
    let snap = until_all_done(url, Duration::from_secs(60)).await;
    let by_id: HashMap<&str, _> = snap.tasks.iter().map(|t| (t.id.as_str(), t)).collect();
    tasks
        .iter()
        .map(|id| {
            let task = by_id[id.as_str()];
            assert_eq!(task.state, TaskState::Finished, "{task:?}");
            task.created_resources.as_ref().unwrap()["security_groups"][0].as_str().unwrap().to_string()
        })
        .collect()
}

/// Two nodes, `a` and `b`, on one fresh PostgreSQL database, migrated first and then given
/// `prepare`; a key of client 1 and a client with it; the nodes' addresses for sending to either.
/// The nodes are listed first, so they are gone before their logs and their database.
struct Cluster {
    a: Node,
    b: Node,
    bases: Arc<[String; 2]>,
    token: String,
    api: Api,
    scratch: Scratch,
    db: PgDb,
}

impl Cluster {
    async fn start(label: &str, prepare: impl FnOnce(&PgDb)) -> Cluster {
        let db = PgDb::new();
        let scratch = Scratch::new(label);
        palisade(&["migrate", "--database-url", &db.url]);
        prepare(&db);
        let token = create_key(&db.url);
        let api = Api::new(&token);
        // Each node names its sessions, so the test can see which node holds what (pg_locks).
        let (url_a, url_b) = (session_named(&db.url, "palisade-a"), session_named(&db.url, "palisade-b"));
        let (a, b) = tokio::join!(Node::start("a", &url_a, &scratch.0), Node::start("b", &url_b, &scratch.0));
        let bases = Arc::new([a.base.clone(), b.base.clone()]);
        Cluster { a, b, bases, token, api, scratch, db }
    }
}

/// `url` with the sessions it opens named `name` (`application_name`, seen in pg_stat_activity).
fn session_named(url: &str, name: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={name}")
}

/// The invariants after a mixed load whose acknowledged operations are `acked`.
/// `unanswered` operations got no answer (their node died): each may have happened, once at most.
fn check_mixed_outcome(snap: &support::Snapshot, seeds: &[String], acked: &[(Op, String)], unanswered: &[Op]) -> (usize, usize) {
    // Every task is terminal, and every acknowledged task exists exactly once.
    assert!(snap.tasks.iter().all(|t| t.state.is_terminal()));
    let mut task_ids = HashSet::new();
    for task in &snap.tasks {
        assert!(task_ids.insert(task.id.clone()), "task {} twice", task.id);
        assert!(task.finished_on.is_some(), "{task:?}");
    }
    let tasks: HashMap<&str, _> = snap.tasks.iter().map(|t| (t.id.as_str(), t)).collect();

    let groups_by_name: HashMap<&str, Vec<_>> = snap.groups.iter().fold(HashMap::new(), |mut map, g| {
        map.entry(g.name.as_str()).or_default().push(g);
        map
    });
    let groups_by_id: HashMap<String, _> = snap.groups.iter().map(|g| (g.id.to_string(), g)).collect();
    let mut finished_creates = 0;
    let mut finished_adds: HashMap<&str, usize> = HashMap::new();
    let mut happened_unanswered = 0;
    for op in unanswered {
        let found = match op {
            Op::Create { name, .. } => groups_by_name.get(name.as_str()).map(Vec::len).unwrap_or(0),
            Op::AddRule { group, port } => groups_by_id[group].rules.iter().filter(|r| r.spec.port_range_min == Some(*port as u16)).count(),
        };
        assert!(found <= 1, "{op:?} happened {found} times");
        if found == 1 {
            happened_unanswered += 1;
            match op {
                Op::Create { .. } => finished_creates += 1,
                Op::AddRule { group, .. } => *finished_adds.entry(group.as_str()).or_default() += 1,
            }
        }
    }
    assert_eq!(
        snap.tasks.len(),
        seeds.len() + acked.len() + happened_unanswered,
        "exactly the acknowledged tasks (and the seeds, and unanswered ones that were committed) exist"
    );
    for (op, task_id) in acked {
        let task = tasks.get(task_id.as_str()).unwrap_or_else(|| panic!("acknowledged task {task_id} lost"));
        assert_eq!(task.state, TaskState::Finished, "{op:?}: {task:?}");
        let resources = task.created_resources.as_ref().expect("created resources");
        match op {
            Op::Create { name, port } => {
                finished_creates += 1;
                let found = groups_by_name.get(name.as_str()).map(Vec::as_slice).unwrap_or(&[]);
                assert_eq!(found.len(), 1, "group {name} exists exactly once");
                let group = found[0];
                assert_eq!(resources["security_groups"][0].as_str(), Some(group.id.to_string().as_str()));
                assert_eq!(group.rules.len(), 1);
                assert_eq!(group.rules[0].spec.port_range_min, Some(*port as u16));
                assert_eq!(group.revision_number, 0);
            }
            Op::AddRule { group, port } => {
                *finished_adds.entry(group.as_str()).or_default() += 1;
                let g = groups_by_id[group];
                let matching: Vec<_> = g.rules.iter().filter(|r| r.spec.port_range_min == Some(*port as u16)).collect();
                assert_eq!(matching.len(), 1, "rule for port {port} exists exactly once");
                assert_eq!(resources["security_group_rules"][0].as_str(), Some(matching[0].id.to_string().as_str()));
            }
        }
    }
    // Nothing else happened: no extra groups, no extra rules, one revision per rule change.
    assert_eq!(snap.groups.len(), seeds.len() + finished_creates);
    for seed in seeds {
        let g = groups_by_id[seed];
        let adds = finished_adds.get(seed.as_str()).copied().unwrap_or(0);
        assert_eq!(g.rules.len(), adds, "seed {seed}");
        assert_eq!(g.revision_number, adds as i64, "revision of {seed} counts its changes");
    }
    let rules: usize = snap.groups.iter().map(|g| g.rules.len()).sum();
    assert_eq!(rules, finished_creates + finished_adds.values().sum::<usize>());
    (finished_creates, rules)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_share_the_load() {
    let Cluster { db, scratch: _scratch, api, a, b, bases, .. } = Cluster::start("load", |_| {}).await;
    let seeds = seed_groups(&api, &a.base, &db.url, 50).await;
    let ops = Arc::new(mixed_ops(1_000, &seeds));
    let started = Instant::now();
    let results = bounded(ops.len(), 32, |i| {
        let (api, ops, bases) = (api.clone(), ops.clone(), bases.clone());
        async move { send(&api, &bases[i % 2], &ops[i]).await }
    })
    .await;
    let accepted = started.elapsed();
    let acked: Vec<(Op, String)> = results
        .into_iter()
        .enumerate()
        .map(|(i, r)| (ops[i].clone(), r.unwrap_or_else(|e| panic!("operation {i} refused: {e}"))))
        .collect();
    let snap = until_all_done(&db.url, Duration::from_secs(180)).await;
    let done = started.elapsed();
    let (creates, rules) = check_mixed_outcome(&snap, &seeds, &acked, &[]);
    assert_eq!(creates, 500);

    // Both nodes executed tasks (work is shared), and either node serves what the other made.
    let (status, group) = api.get(&b.base, &format!("/cloud/v1/securitygroups/{P}/{R}/{}", seeds[0])).await.unwrap();
    assert_eq!(status, 200, "{group}");
    let (status, task) = api.get(&a.base, &format!("/cloud/v1/tasks/{}", acked[1].1)).await.unwrap();
    assert_eq!((status, task["state"].as_str()), (reqwest::StatusCode::OK, Some("FINISHED")));
    eprintln!(
        "two nodes: 1000 operations accepted in {accepted:?} ({:.0}/s), all tasks finished after {done:?} ({:.0} tasks/s); {} groups, {rules} rules",
        1000.0 / accepted.as_secs_f64(),
        1000.0 / done.as_secs_f64(),
        snap.groups.len()
    );
    for node in [&a, &b] {
        let log = node.log_text();
        assert!(!log.contains("panicked"), "node {} panicked:\n{log}", node.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failover_after_kill_9() {
    let Cluster { db, scratch: _scratch, api, a, b, bases, .. } = Cluster::start("failover", |_| {}).await;
    let seeds = seed_groups(&api, &b.base, &db.url, 20).await;
    let ops = Arc::new(mixed_ops(1_000, &seeds));
    let a = Arc::new(std::sync::Mutex::new(a));
    let killed = Arc::new(AtomicBool::new(false));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let kill_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let failed_over = Arc::new(AtomicUsize::new(0));
    let results = bounded(ops.len(), 32, |i| {
        let (api, ops, bases, a, killed, acked_count, kill_at, failed_over) =
            (api.clone(), ops.clone(), bases.clone(), a.clone(), killed.clone(), acked_count.clone(), kill_at.clone(), failed_over.clone());
        async move {
            // After 300 acknowledgements, node A dies with work in flight.
            if acked_count.load(Ordering::SeqCst) >= 300 && !killed.swap(true, Ordering::SeqCst) {
                a.lock().unwrap().kill9();
                *kill_at.lock().unwrap() = Some(Instant::now());
            }
            let first = if killed.load(Ordering::SeqCst) { 1 } else { i % 2 };
            let result = match send(&api, &bases[first], &ops[i]).await {
                // What a load balancer does: a refused connection goes to the other node. A
                // request A may have committed before dying is not retried (it may exist).
                Err(e) if first == 0 && e.starts_with("transport") && e.contains("connect") => {
                    failed_over.fetch_add(1, Ordering::SeqCst);
                    send(&api, &bases[1], &ops[i]).await
                }
                other => other,
            };
            if result.is_ok() {
                acked_count.fetch_add(1, Ordering::SeqCst);
            }
            result
        }
    })
    .await;
    assert!(killed.load(Ordering::SeqCst));
    let kill_at = kill_at.lock().unwrap().expect("killed");
    let open_at_kill = {
        let snap = snapshot(&db.url).await;
        snap.tasks.iter().filter(|t| !t.state.is_terminal()).count()
    };
    let acked: Vec<(Op, String)> =
        results.iter().enumerate().filter_map(|(i, r)| r.as_ref().ok().map(|id| (ops[i].clone(), id.clone()))).collect();
    let lost_requests: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    let unanswered: Vec<Op> = results.iter().enumerate().filter(|(_, r)| r.is_err()).map(|(i, _)| ops[i].clone()).collect();
    let snap = until_all_done(&db.url, Duration::from_secs(180)).await;
    let recovered = kill_at.elapsed();
    check_mixed_outcome(&snap, &seeds, &acked, &unanswered);
    eprintln!(
        "failover: node A killed after 300 acknowledgements; {} operations acknowledged, {} unanswered (in flight on A when it died), {} sent to B after A refused; {open_at_kill} tasks open after the load, all finished {recovered:?} after the kill",
        acked.len(),
        lost_requests.len(),
        failed_over.load(Ordering::SeqCst)
    );
    // Only requests that were in flight on A when it died may be unanswered.
    assert!(lost_requests.len() <= 32, "{lost_requests:?}");
    let log = b.log_text();
    assert!(!log.contains("panicked"), "node b panicked:\n{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_patches_lose_no_update() {
    let Cluster { db, scratch: _scratch, api, a, b, bases, .. } = Cluster::start("patch", |_| {}).await;
    let group = seed_groups(&api, &a.base, &db.url, 1).await.remove(0);
    let path = format!("{GROUPS_PATH}/{group}");

    // Each PATCH renames the group, sets its rules to one rule of its own, and adds a tag of its own.
    let results = bounded(50, 50, |i| {
        let (api, bases, path) = (api.clone(), bases.clone(), path.clone());
        async move {
            let body = json!({
                "name": format!("patched-{i:02}"),
                "rules": [tcp(2_000 + i as u64)],
                "tags": {format!("k{i:02}"): format!("v{i}")},
            });
            Api::task_of(api.patch(&bases[i % 2], &path, &body).await)
        }
    })
    .await;
    let tasks: Vec<String> = results.into_iter().map(|r| r.expect("PATCH accepted")).collect();
    let snap = until_all_done(&db.url, Duration::from_secs(60)).await;
    let by_id: HashMap<&str, _> = snap.tasks.iter().map(|t| (t.id.as_str(), t)).collect();
    for id in &tasks {
        assert_eq!(by_id[id.as_str()].state, TaskState::Finished, "{:?}", by_id[id.as_str()]);
    }

    let (status, final_group) = api.get(&b.base, &format!("/cloud/v1/securitygroups/{P}/{R}/{group}")).await.unwrap();
    assert_eq!(status, 200);
    // The final name and rules come from one and the same PATCH (the last in some serial order).
    let name = final_group["name"].as_str().unwrap();
    let winner: u64 = name.strip_prefix("patched-").unwrap().parse().unwrap();
    let rules = final_group["security_group_rules"].as_array().unwrap();
    assert_eq!(rules.len(), 1, "{final_group}");
    assert_eq!(rules[0]["port_range_min"].as_u64(), Some(2_000 + winner), "{final_group}");
    // The winner's task created exactly that rule.
    let winner_task = by_id[tasks[winner as usize].as_str()];
    assert_eq!(winner_task.created_resources.as_ref().unwrap()["security_group_rules"][0], rules[0]["id"]);
    // Tags merge: all 50 survive. Every PATCH counted: one revision for its tags, one for its task.
    let tags: HashSet<&str> = final_group["tags_v2"].as_array().unwrap().iter().map(|t| t["key"].as_str().unwrap()).collect();
    assert_eq!(tags.len(), 50, "{final_group}");
    assert_eq!(final_group["revision_number"].as_i64(), Some(100), "{final_group}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_to_postgres_move() {
    let scratch = Scratch::new("move");
    let sqlite_url = format!("sqlite:{}", scratch.0.join("palisade.db").display());
    let token = create_key(&sqlite_url);
    let api = Api::new(&token);
    let node = Node::start("sqlite", &sqlite_url, &scratch.0).await;
    let base = node.base.clone();
    let results = bounded(1_000, 32, |i| {
        let (api, base) = (api.clone(), base.clone());
        async move {
            let mut body =
                json!({"name": format!("moved-{i:04}"), "description": format!("group {i}"), "tags": {"batch": format!("{}", i % 7)}});
            if i % 3 == 0 {
                body["rules"] = json!([tcp(1 + i as u64), {"direction": "egress", "ethertype": "IPv6"}]);
            }
            Api::task_of(api.post(&base, GROUPS_PATH, &body).await)
        }
    })
    .await;
    assert!(results.iter().all(Result::is_ok));
    let snap = until_all_done(&sqlite_url, Duration::from_secs(120)).await;
    assert_eq!(snap.groups.len(), 1_000);
    // Some acknowledged tasks, one more rule on a group, and a revoked second key.
    let (status, _) = api.post(&base, "/cloud/v1/tasks/acknowledge_all?project_id=1", &json!({})).await.unwrap();
    assert!(status.is_success());
    let first = snap.groups[0].id.to_string();
    Api::task_of(api.post(&base, &format!("{GROUPS_PATH}/{first}/rules"), &tcp(4242)).await).expect("rule");
    until_all_done(&sqlite_url, Duration::from_secs(30)).await;
    let list_all = |api: Api, base: String| async move {
        let mut groups = Vec::new();
        for offset in [0, 1000] {
            let (status, page) = api.get(&base, &format!("/cloud/v1/securitygroups/{P}/{R}?limit=1000&offset={offset}")).await.unwrap();
            assert_eq!(status, 200);
            groups.extend(page["results"].as_array().unwrap().clone());
        }
        let (_, tasks) = api.get(&base, "/cloud/v1/tasks?limit=1000&order_by=asc").await.unwrap();
        let (_, more) = api.get(&base, "/cloud/v1/tasks?limit=1000&offset=1000&order_by=asc").await.unwrap();
        (
            groups,
            tasks["count"].clone(),
            [tasks["results"].as_array().unwrap().clone(), more["results"].as_array().unwrap().clone()].concat(),
        )
    };
    let before = list_all(api.clone(), base.clone()).await;
    assert_eq!(before.0.len(), 1_000);
    drop(node);

    let export = scratch.0.join("export.jsonl");
    let export_path = export.display().to_string();
    let started = Instant::now();
    palisade(&["export", "--database-url", &sqlite_url, "--output", &export_path]);
    let db = PgDb::new();
    palisade(&["import", "--database-url", &db.url, "--input", &export_path]);
    let moved_in = started.elapsed();

    // The same token works against the PostgreSQL node, which serves the same state.
    let node = Node::start("postgres", &db.url, &scratch.0).await;
    let after = list_all(api.clone(), node.base.clone()).await;
    assert_eq!(after.0, before.0, "the same groups, rules, tags, revisions and times");
    assert_eq!(after.1, before.1, "the same task count");
    assert_eq!(after.2, before.2, "the same tasks");
    // And it goes on working: a new group, a new key that does not collide.
    let task = Api::task_of(api.post(&node.base, GROUPS_PATH, &json!({"name": "after-move"})).await).expect("create after the move");
    let snap = until_all_done(&db.url, Duration::from_secs(30)).await;
    assert!(snap.tasks.iter().any(|t| t.id == task && t.state == TaskState::Finished));
    assert_eq!(snap.groups.len(), 1_001);
    let second = create_key(&db.url);
    assert!(second.starts_with("2$"), "{second}");
    let (status, _) = Api::new(&second).get(&node.base, "/cloud/v1/tasks?limit=1").await.unwrap();
    assert_eq!(status, 200);
    eprintln!("moved 1000 groups from SQLite to PostgreSQL (export + import) in {moved_in:?}");
}

/// Runs SQL as the admin user through psql (the test's hand on the database server); returns
/// what it printed (unaligned, tuples only).
fn admin_sql(sql: &str) -> String {
    let output = std::process::Command::new("psql")
        .args([support::admin_url().as_str(), "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql])
        .output()
        .expect("run psql");
    assert!(output.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn database_outage_is_503_then_recovers() {
    let db = PgDb::new();
    let scratch = Scratch::new("outage");
    let api = Api::new(&create_key(&db.url));
    let node = Node::start("a", &db.url, &scratch.0).await;
    let group = seed_groups(&api, &node.base, &db.url, 1).await.remove(0);
    let group_path = format!("/cloud/v1/securitygroups/{P}/{R}/{group}");
    assert_eq!(api.get(&node.base, &group_path).await.unwrap().0, 200);

    // The database goes away: it refuses new connections and every open one is cut.
    admin_sql(&format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false", db.name));
    admin_sql(&format!("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'", db.name));
    let outage = Instant::now();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, body) = api.get(&node.base, "/readyz").await.unwrap();
    assert_eq!(status, 503, "{body}");
    let (status, body) = api.get(&node.base, &group_path).await.unwrap();
    assert_eq!(status, 503, "reads answer 503: {body}");
    assert!(body.is_object(), "with the error body: {body}");
    let (status, body) = api.post(&node.base, GROUPS_PATH, &json!({"name": "during-outage"})).await.unwrap();
    assert_eq!(status, 503, "writes answer 503: {body}");
    assert_eq!(api.get(&node.base, "/healthz").await.unwrap().0, 200, "the process itself is alive");

    // It comes back: the node recovers by itself.
    admin_sql(&format!("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true", db.name));
    let back = Instant::now();
    let deadline = back + Duration::from_secs(15);
    loop {
        if api.get(&node.base, "/readyz").await.unwrap().0 == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "not ready again; log:\n{}", node.log_text());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ready_after = back.elapsed();
    assert_eq!(api.get(&node.base, &group_path).await.unwrap().0, 200);
    let task = Api::task_of(api.post(&node.base, GROUPS_PATH, &json!({"name": "after-outage"})).await).expect("create after recovery");
    let snap = until_all_done(&db.url, Duration::from_secs(15)).await;
    assert!(snap.tasks.iter().any(|t| t.id == task && t.state == TaskState::Finished));
    eprintln!("outage: 503 during {:?} of outage, ready again {ready_after:?} after the database returned", back - outage);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hung_node_loses_its_claims() {
    let Cluster { db, scratch: _scratch, token, a, b, bases, .. } = Cluster::start("hung", |db| {
        // A shorter lease than the shipped 5 s, to finish sooner.
        admin_sql(&format!("ALTER DATABASE {} SET idle_in_transaction_session_timeout = '2s'", db.name));
        admin_sql(&format!("ALTER DATABASE {} SET statement_timeout = '5s'", db.name));
    })
    .await;
    let api = Api::with_timeout(&token, Duration::from_secs(5));
    let seeds = seed_groups(&api, &b.base, &db.url, 20).await;
    let ops = Arc::new(mixed_ops(600, &seeds));
    let a = Arc::new(a);
    let frozen = Arc::new(AtomicBool::new(false));
    let acked_count = Arc::new(AtomicUsize::new(0));
    let frozen_at: Arc<std::sync::Mutex<Option<Instant>>> = Arc::default();
    let results = bounded(ops.len(), 32, |i| {
        let (api, ops, bases, a, frozen, acked_count, frozen_at) =
            (api.clone(), ops.clone(), bases.clone(), a.clone(), frozen.clone(), acked_count.clone(), frozen_at.clone());
        async move {
            if acked_count.load(Ordering::SeqCst) >= 200 && !frozen.swap(true, Ordering::SeqCst) {
                a.signal("STOP");
                *frozen_at.lock().unwrap() = Some(Instant::now());
            }
            let node = if frozen.load(Ordering::SeqCst) { 1 } else { i % 2 };
            let result = send(&api, &bases[node], &ops[i]).await;
            if result.is_ok() {
                acked_count.fetch_add(1, Ordering::SeqCst);
            }
            result
        }
    })
    .await;
    let frozen_at = frozen_at.lock().unwrap().expect("frozen");
    let acked: Vec<(Op, String)> =
        results.iter().enumerate().filter_map(|(i, r)| r.as_ref().ok().map(|id| (ops[i].clone(), id.clone()))).collect();
    let unanswered: Vec<Op> = results.iter().enumerate().filter(|(_, r)| r.is_err()).map(|(i, _)| ops[i].clone()).collect();
    // While A stays frozen, B alone finishes everything, including what A had claimed.
    let snap = until_all_done(&db.url, Duration::from_secs(60)).await;
    let recovered = frozen_at.elapsed();
    check_mixed_outcome(&snap, &seeds, &acked, &unanswered);

    // Thawed, A finds its transactions gone, repeats nothing, and serves again.
    a.signal("CONT");
    let deadline = Instant::now() + Duration::from_secs(20);
    while api.get(&a.base, "/readyz").await.map(|(s, _)| s != 200).unwrap_or(true) {
        assert!(Instant::now() < deadline, "A did not recover; log:\n{}", a.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = until_all_done(&db.url, Duration::from_secs(30)).await;
    check_mixed_outcome(&after, &seeds, &acked, &unanswered);
    Api::task_of(api.post(&a.base, GROUPS_PATH, &json!({"name": "after-thaw"})).await).expect("A serves again");
    eprintln!(
        "hung node: A frozen after 200 acknowledgements; {} acknowledged, {} unanswered; B finished everything {recovered:?} after the freeze",
        acked.len(),
        unanswered.len()
    );
}

/// How many advisory (scope) locks the sessions of node `application_name` hold in `database`.
fn advisory_locks_held(database: &str, application_name: &str) -> u64 {
    admin_sql(&format!(
        "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity s ON s.pid = l.pid
         WHERE s.datname = '{database}' AND s.application_name = '{application_name}' AND l.locktype = 'advisory' AND l.granted"
    ))
    .parse()
    .expect("a count")
}

/// A v1 create of a group (default rules) in `project` through `base`: its status, its
/// `Retry-After` header and how long it took.
async fn v1_create(token: &str, base: &str, project: i64, name: &str) -> (reqwest::StatusCode, Option<String>, Duration) {
    let started = Instant::now();
    let response = reqwest::Client::new()
        .post(format!("{base}/cloud/v1/securitygroups/{project}/{R}"))
        .header("Authorization", format!("APIKey {token}"))
        .json(&json!({"security_group": {"name": name}}))
        .timeout(Duration::from_secs(60))
        .send()
        .await
        .expect("v1 create answered");
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap_or_default().to_string());
    (response.status(), retry_after, started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn frozen_node_stalls_nothing() {
    // The shipped session defaults: nothing is set on the database.
    let Cluster { db, scratch: _scratch, token, api, a, b, .. } = Cluster::start("frozen", |_| {}).await;

    // Freeze B while it is inside a task of project P, holding P's scope lock. B's burst creates
    // groups without rules, so that its tasks are short and B is caught inside one often.
    let mut attempts = 0;
    let mut b_names = Vec::new();
    loop {
        attempts += 1;
        assert!(attempts <= 20, "B was never caught holding a scope lock in 20 bursts");
        let names: Vec<String> = (0..120).map(|i| format!("b{attempts}-{i:03}")).collect();
        let burst = Arc::new(names.clone());
        let acked = bounded(names.len(), 32, |i| {
            let (api, base, burst) = (api.clone(), b.base.clone(), burst.clone());
            async move { Api::task_of(api.post(&base, GROUPS_PATH, &json!({"name": burst[i], "rules": []})).await) }
        })
        .await;
        b.signal("STOP");
        b_names.extend(names);
        for result in acked {
            result.expect("B acknowledged its burst");
        }
        // Whatever B had sent reaches the server and is answered; then B's session sits idle in
        // its transaction, holding what it holds.
        tokio::time::sleep(Duration::from_millis(30)).await;
        if advisory_locks_held(&db.name, "palisade-b") > 0 {
            break;
        }
        b.signal("CONT");
        until_all_done(&db.url, Duration::from_secs(30)).await;
    }
    let frozen_at = Instant::now();
    let backlog = snapshot(&db.url).await.tasks.iter().filter(|t| !t.state.is_terminal()).count();

    // Meanwhile, through A: a v1 create in another project answers at once, one in P answers
    // (perhaps 503 with Retry-After, after the lock wait), and a 50-task burst in P finishes.
    let (elsewhere, _, elsewhere_took) = v1_create(&token, &a.base, P + 1, "elsewhere").await;
    assert!(elsewhere.is_success(), "v1 create in another project: {elsewhere}");
    assert!(elsewhere_took < Duration::from_secs(1), "v1 create in another project took {elsewhere_took:?}");
    let (same, same_retry_after, same_took) = v1_create(&token, &a.base, P, "same-project").await;
    assert!(same.is_success() || same == 503, "v1 create in P: {same}");
    if same == 503 {
        assert_eq!(same_retry_after.as_deref(), Some("1"), "a 503 says when to retry");
    }
    assert!(same_took < Duration::from_secs(5), "v1 create in P took {same_took:?}");
    let burst_started = Instant::now();
    let a_burst =
        bounded(50, 50, |i| {
            let (api, base) = (api.clone(), a.base.clone());
            async move {
                Api::task_of(api.post(&base, GROUPS_PATH, &json!({"name": format!("a-{i:02}"), "rules": [tcp(20_000 + i as u64)]})).await)
            }
        })
        .await;
    let a_tasks: HashSet<String> = a_burst.into_iter().map(|r| r.expect("A acknowledged its burst")).collect();
    let deadline = burst_started + Duration::from_secs(10);
    loop {
        let snap = snapshot(&db.url).await;
        let open = snap.tasks.iter().filter(|t| a_tasks.contains(&t.id) && !t.state.is_terminal()).count();
        if open == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{open} of A's 50 tasks still open 10 s after the burst, B frozen");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (burst_took, since_freeze) = (burst_started.elapsed(), frozen_at.elapsed());
    let b_still_holds = advisory_locks_held(&db.name, "palisade-b");

    // Thawed, B finds its transaction gone; every task finished once, every group exists once.
    b.signal("CONT");
    let snap = until_all_done(&db.url, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let snap_after = until_all_done(&db.url, Duration::from_secs(30)).await;
    assert_eq!(snap.tasks.len(), snap_after.tasks.len());
    let mut ids = HashSet::new();
    for task in &snap_after.tasks {
        assert!(ids.insert(task.id.clone()), "task {} twice", task.id);
        assert_eq!(task.state, TaskState::Finished, "{task:?}");
    }
    assert_eq!(snap_after.tasks.len(), b_names.len() + 50);
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for group in &snap_after.groups {
        *by_name.entry(group.name.as_str()).or_default() += 1;
    }
    for name in
        b_names.iter().map(String::as_str).chain((0..50).map(|i| format!("a-{i:02}")).collect::<Vec<_>>().iter().map(String::as_str))
    {
        assert_eq!(by_name.get(name), Some(&1), "group {name} exists exactly once");
    }
    let v1_made = 1 + usize::from(same.is_success());
    assert_eq!(snap_after.groups.len(), b_names.len() + 50 + v1_made, "no other group was made");
    for node in [&a, &b] {
        let log = node.log_text();
        assert!(!log.contains("panicked"), "node {} panicked:\n{log}", node.name);
    }
    eprintln!(
        "frozen node: caught holding a scope lock after {attempts} burst(s); while frozen, a v1 create elsewhere took {elsewhere_took:?}, \
         one in the same project answered {same} in {same_took:?}; A's 50-task burst in that project finished {burst_took:?} after it \
         started ({since_freeze:?} after the freeze, behind {backlog} older tasks of B's burst); B held {b_still_holds} scope lock(s) then"
    );
}
