//! The store conformance suite: one set of test bodies, stamped for SQLite (a temporary file) and
//! for PostgreSQL (a fresh database per test, dropped at the end). Then PostgreSQL-only tests of
//! what several nodes rely on: row locks, SKIP LOCKED claims, the connection as the lease,
//! LISTEN/NOTIFY, connection loss and recovery, concurrent migrations.
//!
//! PostgreSQL: `PALISADE_TEST_PG_URL` (default `postgres://postgres@127.0.0.1:5432/test`) is the
//! admin connection used to create and drop the per-test databases.

use std::io::Cursor;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use palisade_core::group::{Group, Scope};
use palisade_core::observe::{FlowAction, FlowLogEvents, FlowRecord};
use palisade_core::port::{MacAddr, Port};
use palisade_core::quota::{Limits, Usage};
use palisade_core::{Cidr, Direction, Ethertype, Protocol, Rule, RuleSpec, Tag};
use palisade_store::observe::{FlowLogFilter, FlowLogTarget, RuleHitsRecord};
use palisade_store::transfer::{self, TransferError};
use palisade_store::{
    AckFilter, ApiKey, Database, GroupFilter, KeyRole, NewApiKey, PortFilter, Store, StoreError, StoreResult, TaskFilter, TaskRecord,
    TaskState, Tx,
};
use serde_json::json;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Fixtures

fn admin_url() -> String {
    std::env::var("PALISADE_TEST_PG_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// Creates an empty database; returns its name and URL.
fn create_pg_database() -> (String, String) {
    let admin = admin_url();
    let name = format!("palisade_test_{}", Uuid::new_v4().simple());
    let url = palisade_store::postgres::create_database(&admin, &name)
        .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed for these tests (set PALISADE_TEST_PG_URL): {e}"));
    (name, url)
}

fn drop_pg_database(name: &str) {
    let _ = palisade_store::postgres::drop_database(&admin_url(), name);
}

enum Cleanup {
    File(PathBuf),
    Pg(String),
}

struct Fixture {
    db: Option<Database>,
    url: String,
    cleanup: Cleanup,
}

impl Fixture {
    fn sqlite() -> Fixture {
        let path = std::env::temp_dir().join(format!("palisade-conformance-{}.db", Uuid::new_v4().simple()));
        let url = format!("sqlite:{}", path.display());
        let db = Database::open(&url, "normal").expect("open sqlite");
        Fixture { db: Some(db), url, cleanup: Cleanup::File(path) }
    }

    fn postgres() -> Fixture {
        let (name, url) = create_pg_database();
        let db = Database::open(&url, "normal").expect("open postgres");
        assert_eq!(db.backend(), "postgres");
        Fixture { db: Some(db), url, cleanup: Cleanup::Pg(name) }
    }

    /// Another, empty store of the same backend.
    fn sibling(&self) -> Fixture {
        match self.cleanup {
            Cleanup::File(_) => Fixture::sqlite(),
            Cleanup::Pg(_) => Fixture::postgres(),
        }
    }

    fn db(&self) -> &Database {
        self.db.as_ref().expect("open")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        drop(self.db.take());
        match &self.cleanup {
            Cleanup::File(path) => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
                }
            }
            Cleanup::Pg(name) => drop_pg_database(name),
        }
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(&super::Fixture::sqlite()); } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(&super::Fixture::postgres()); } )*
        }
    };
}

conformance!(
    groups_crud_with_rules_and_tags,
    group_scope_isolation,
    list_groups_filters_pagination_count,
    rule_lookup_and_references,
    delete_group_cascades,
    tasks_insert_pending_update,
    list_tasks_filters,
    acknowledge_tasks_filters,
    api_keys,
    write_rolls_back_on_error,
    savepoints,
    a_swallowed_statement_error_is_not_committed,
    quotas_and_usage,
    export_import_round_trip,
    import_refuses_non_empty_and_truncated,
    read_sees_a_snapshot_of_committed_writes,
    calls_from_spawn_blocking,
    ports_bindings_revision_and_agents,
    audit_insert_and_list_filters,
    audit_prune_deletes_oldest_in_batches,
    tasks_open_count_and_prune,
    audit_event_rolls_back_with_its_change,
    observe_rule_hits_accumulate_and_go_with_rules_and_ports,
    observe_flow_log_settings_grow_the_revision,
    observe_flows_filters_cap_and_prune,
    host_revisions_follow_exactly_the_hosts_a_change_reaches,
);

// ---------------------------------------------------------------------------------------------
// Builders

const SCOPE: Scope = Scope { client_id: 1, project_id: 10, region_id: 100 };
const OTHER_PROJECT: Scope = Scope { client_id: 1, project_id: 11, region_id: 100 };
const OTHER_CLIENT: Scope = Scope { client_id: 2, project_id: 10, region_id: 100 };

fn w<R>(db: &Database, f: impl FnOnce(&mut dyn Tx) -> StoreResult<R>) -> R {
    db.write(f).expect("write")
}

fn r<R>(db: &Database, f: impl FnOnce(&mut dyn Tx) -> StoreResult<R>) -> R {
    db.read(f).expect("read")
}

fn spec(direction: &str, protocol: Option<&str>, ports: Option<(u16, u16)>, prefix: Option<&str>) -> RuleSpec {
    RuleSpec {
        direction: Direction::parse(direction).unwrap(),
        ethertype: if prefix.is_some_and(|p| p.contains(':')) { Ethertype::IPv6 } else { Ethertype::IPv4 },
        protocol: protocol.map(|p| Protocol::from_name(p).unwrap()),
        port_range_min: ports.map(|p| p.0),
        port_range_max: ports.map(|p| p.1),
        remote_ip_prefix: prefix.map(|p| Cidr::from_str(p).unwrap()),
        remote_group_id: None,
        description: format!("{direction} {protocol:?}"),
    }
}

fn rule(group_id: Uuid, spec: RuleSpec, at: i64) -> Rule {
    Rule { id: Uuid::new_v4(), group_id, spec, created_at: at }
}

fn group(scope: Scope, name: &str, at: i64) -> Group {
    let id = Uuid::new_v4();
    let mut self_ref = spec("ingress", None, None, None);
    self_ref.remote_group_id = Some(id);
    Group {
        id,
        scope,
        name: name.to_string(),
        description: format!("about {name}"),
        created_at: at,
        updated_at: at,
        revision_number: 0,
        rules: vec![
            rule(id, spec("egress", None, None, None), at),
            rule(id, spec("ingress", Some("tcp"), Some((22, 22)), Some("10.0.0.0/8")), at),
            rule(id, spec("ingress", Some("udp"), Some((1000, 2000)), Some("2001:db8::/32")), at),
            rule(id, self_ref, at),
        ],
        tags: vec![
            Tag { key: "env".into(), value: "prod".into(), read_only: false },
            Tag { key: "owner".into(), value: name.into(), read_only: true },
        ],
    }
}

fn task(client_id: i64, project_id: i64, region_id: i64, task_type: &str, created_on: i64) -> TaskRecord {
    TaskRecord {
        id: Uuid::new_v4().to_string(),
        client_id,
        user_id: 7,
        project_id: Some(project_id),
        region_id: Some(region_id),
        task_type: task_type.to_string(),
        state: TaskState::New,
        request_id: Some(format!("req-{created_on}")),
        data: Some(json!({"name": "x", "n": created_on})),
        payload: json!({"type": task_type, "values": [1, 2, {"a": null}]}),
        error: None,
        created_resources: None,
        created_on,
        updated_on: None,
        finished_on: None,
        acknowledged_at: None,
        acknowledged_by: None,
    }
}

fn page(limit: u32, offset: u64) -> GroupFilter {
    GroupFilter { limit, offset, ..GroupFilter::default() }
}

fn names(groups: &[Group]) -> Vec<String> {
    groups.iter().map(|g| g.name.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// Test bodies, run against each backend

fn groups_crud_with_rules_and_tags(f: &Fixture) {
    let db = f.db();
    let g = group(SCOPE, "web", 1_700_000_000);
    w(db, |tx| tx.insert_group(&g));
    let got = r(db, |tx| tx.get_group(&SCOPE, g.id)).expect("stored");
    assert_eq!(got, g, "a group reads back exactly, rules in creation order and tags sorted");
    assert!(r(db, |tx| tx.group_exists(&SCOPE, g.id)));
    assert!(!r(db, |tx| tx.group_exists(&SCOPE, Uuid::new_v4())));

    // Update name, description, time and revision; in a write transaction (locked read).
    let updated = w(db, |tx| {
        let mut current = tx.get_group(&SCOPE, g.id)?.unwrap();
        current.name = "web-2".into();
        current.description = String::new();
        current.updated_at += 5;
        current.revision_number += 1;
        tx.update_group(&current)?;
        Ok(current)
    });
    assert_eq!(r(db, |tx| tx.get_group(&SCOPE, g.id)).unwrap(), updated);

    // Tags replaced wholesale, returned sorted by key (byte order on both backends).
    let tags = vec![
        Tag { key: "Zeta".into(), value: "1".into(), read_only: false },
        Tag { key: "alpha".into(), value: "".into(), read_only: true },
        Tag { key: "beta".into(), value: "ünï".into(), read_only: false },
    ];
    w(db, |tx| tx.replace_tags(g.id, &tags));
    let got = r(db, |tx| tx.get_group(&SCOPE, g.id)).unwrap();
    assert_eq!(got.tags, tags);

    // Rules added and removed one at a time keep creation order.
    let extra = rule(g.id, spec("ingress", Some("icmp"), None, Some("0.0.0.0/0")), 1_700_000_100);
    w(db, |tx| tx.insert_rule(&SCOPE, &extra));
    assert!(w(db, |tx| tx.delete_rule(&SCOPE, g.rules[1].id)));
    assert!(!w(db, |tx| tx.delete_rule(&SCOPE, g.rules[1].id)));
    let got = r(db, |tx| tx.get_group(&SCOPE, g.id)).unwrap();
    let mut expected: Vec<Rule> = g.rules.clone();
    expected.remove(1);
    expected.push(extra);
    assert_eq!(got.rules, expected);

    assert_eq!(r(db, |tx| tx.count_groups(&SCOPE)), 1);
    assert!(w(db, |tx| tx.delete_group(&SCOPE, g.id)));
    assert!(!w(db, |tx| tx.delete_group(&SCOPE, g.id)));
    assert_eq!(r(db, |tx| tx.get_group(&SCOPE, g.id)), None);
    assert_eq!(r(db, |tx| tx.count_groups(&SCOPE)), 0);
}

fn group_scope_isolation(f: &Fixture) {
    let db = f.db();
    let g = group(SCOPE, "mine", 1);
    w(db, |tx| tx.insert_group(&g));
    for other in [OTHER_PROJECT, OTHER_CLIENT, Scope { region_id: 101, ..SCOPE }] {
        assert_eq!(r(db, |tx| tx.get_group(&other, g.id)), None);
        assert!(!r(db, |tx| tx.group_exists(&other, g.id)));
        assert_eq!(r(db, |tx| tx.group_of_rule(&other, g.rules[0].id)), None);
        assert!(!w(db, |tx| tx.delete_group(&other, g.id)));
        assert_eq!(r(db, |tx| tx.list_groups(&other, &page(10, 0))).0, 0);
        assert_eq!(r(db, |tx| tx.count_groups(&other)), 0);
    }
    assert!(r(db, |tx| tx.group_exists(&SCOPE, g.id)));
}

fn list_groups_filters_pagination_count(f: &Fixture) {
    let db = f.db();
    let mut all = Vec::new();
    w(db, |tx| {
        for i in 0..25 {
            let mut g = group(SCOPE, &format!("g{i:02}"), 1000 + i);
            g.tags = vec![Tag::user("env", if i % 2 == 0 { "prod" } else { "dev" })];
            if i % 5 == 0 {
                g.tags.push(Tag::user("team", "net"));
            }
            if i == 7 || i == 8 {
                g.name = "dup".into();
            }
            tx.insert_group(&g)?;
            all.push(g);
        }
        for i in 0..3 {
            tx.insert_group(&group(OTHER_PROJECT, &format!("other{i}"), 5000 + i))?;
        }
        Ok(())
    });
    let (count, groups) = r(db, |tx| tx.list_groups(&SCOPE, &page(1000, 0)));
    assert_eq!(count, 25);
    assert_eq!(groups, all, "whole groups, in creation order");

    // Pagination: count is the total whatever the page.
    let (count, groups) = r(db, |tx| tx.list_groups(&SCOPE, &page(10, 20)));
    assert_eq!(count, 25);
    assert_eq!(names(&groups), names(&all[20..]));
    let (count, groups) = r(db, |tx| tx.list_groups(&SCOPE, &page(0, 0)));
    assert_eq!((count, groups.len()), (25, 0));
    let (count, groups) = r(db, |tx| tx.list_groups(&SCOPE, &page(5, 100)));
    assert_eq!((count, groups.len()), (25, 0));

    let filter = GroupFilter { name: Some("dup".into()), ..page(10, 0) };
    let (count, groups) = r(db, |tx| tx.list_groups(&SCOPE, &filter));
    assert_eq!(count, 2);
    assert_eq!(groups.iter().map(|g| g.id).collect::<Vec<_>>(), vec![all[7].id, all[8].id]);

    let filter = GroupFilter { tag_keys: vec!["team".into()], ..page(10, 0) };
    let (count, groups) = r(db, |tx| tx.list_groups(&SCOPE, &filter));
    assert_eq!(count, 5);
    assert_eq!(names(&groups), vec!["g00", "g05", "g10", "g15", "g20"]);

    let filter = GroupFilter { tag_keys: vec!["team".into(), "env".into()], tag_pairs: vec![("env".into(), "dev".into())], ..page(10, 0) };
    let (count, groups) = r(db, |tx| tx.list_groups(&SCOPE, &filter));
    assert_eq!(count, 2);
    assert_eq!(names(&groups), vec!["g05", "g15"]);

    let filter = GroupFilter { tag_pairs: vec![("env".into(), "prod".into()), ("team".into(), "net".into())], ..page(2, 1) };
    let (count, groups) = r(db, |tx| tx.list_groups(&SCOPE, &filter));
    assert_eq!(count, 3);
    assert_eq!(names(&groups), vec!["g10", "g20"]);

    let filter = GroupFilter { tag_keys: vec!["missing".into()], ..page(10, 0) };
    assert_eq!(r(db, |tx| tx.list_groups(&SCOPE, &filter)).0, 0);
    let filter = GroupFilter { name: Some("g01".into()), tag_pairs: vec![("env".into(), "prod".into())], ..page(10, 0) };
    assert_eq!(r(db, |tx| tx.list_groups(&SCOPE, &filter)).0, 0);
    assert_eq!(r(db, |tx| tx.count_groups(&SCOPE)), 25);
    assert_eq!(r(db, |tx| tx.count_groups(&OTHER_PROJECT)), 3);
}

fn rule_lookup_and_references(f: &Fixture) {
    let db = f.db();
    let a = group(SCOPE, "a", 1);
    let b = group(SCOPE, "b", 2);
    let mut to_a = spec("ingress", Some("tcp"), Some((443, 443)), None);
    to_a.remote_group_id = Some(a.id);
    let ref_rule = rule(b.id, to_a, 3);
    w(db, |tx| {
        tx.insert_group(&a)?;
        tx.insert_group(&b)?;
        tx.insert_rule(&SCOPE, &ref_rule)
    });
    assert_eq!(r(db, |tx| tx.group_of_rule(&SCOPE, ref_rule.id)), Some(b.id));
    assert_eq!(r(db, |tx| tx.group_of_rule(&SCOPE, a.rules[2].id)), Some(a.id));
    assert_eq!(r(db, |tx| tx.group_of_rule(&SCOPE, Uuid::new_v4())), None);
    // A's own self-referencing rule does not count; B's rule does.
    assert_eq!(r(db, |tx| tx.rules_referencing(a.id)), vec![(ref_rule.id, b.id)]);
    assert_eq!(w(db, |tx| tx.rules_referencing(a.id)), vec![(ref_rule.id, b.id)]);
    assert_eq!(r(db, |tx| tx.rules_referencing(b.id)), vec![]);
}

fn delete_group_cascades(f: &Fixture) {
    let db = f.db();
    let a = group(SCOPE, "a", 1);
    let b = group(SCOPE, "b", 2);
    w(db, |tx| {
        tx.insert_group(&a)?;
        tx.insert_group(&b)
    });
    assert!(w(db, |tx| tx.delete_group(&SCOPE, a.id)));
    for rule in &a.rules {
        assert_eq!(r(db, |tx| tx.group_of_rule(&SCOPE, rule.id)), None, "rules leave with their group");
    }
    // Re-creating a group with the same id and no tags finds no leftover tags or rules.
    let mut again = a.clone();
    again.rules.clear();
    again.tags.clear();
    w(db, |tx| tx.insert_group(&again));
    assert_eq!(r(db, |tx| tx.get_group(&SCOPE, a.id)).unwrap(), again);
    assert_eq!(r(db, |tx| tx.get_group(&SCOPE, b.id)).unwrap(), b);
}

fn tasks_insert_pending_update(f: &Fixture) {
    let db = f.db();
    let tasks: Vec<TaskRecord> = (0..6).map(|i| task(1, 10, 100, "create_security_group", 1_000 + i)).collect();
    w(db, |tx| tasks.iter().try_for_each(|t| tx.insert_task(t)));
    let got = r(db, |tx| tx.get_task(1, &tasks[0].id)).unwrap();
    assert_eq!(got, tasks[0], "a task reads back exactly (JSON included)");
    assert_eq!(r(db, |tx| tx.get_task(2, &tasks[0].id)), None, "another client's task is invisible");
    assert_eq!(r(db, |tx| tx.get_task(1, "nope")), None);

    let pending = w(db, |tx| tx.pending_tasks(0, 4));
    assert_eq!(pending.iter().map(|t| t.id.clone()).collect::<Vec<_>>(), tasks[..4].iter().map(|t| t.id.clone()).collect::<Vec<_>>());

    let mut done = tasks[1].clone();
    done.state = TaskState::Finished;
    done.created_resources = Some(json!({"security_groups": ["x"]}));
    done.updated_on = Some(2_000);
    done.finished_on = Some(2_000);
    let mut failed = tasks[2].clone();
    failed.state = TaskState::Error;
    failed.error = Some("name: too long".into());
    failed.updated_on = Some(2_001);
    failed.finished_on = Some(2_001);
    w(db, |tx| {
        tx.update_task(&done)?;
        tx.update_task(&failed)
    });
    assert_eq!(r(db, |tx| tx.get_task(1, &done.id)).unwrap(), done);
    assert_eq!(r(db, |tx| tx.get_task(1, &failed.id)).unwrap(), failed);
    let pending = w(db, |tx| tx.pending_tasks(0, 100));
    let ids: Vec<&str> = pending.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, vec![tasks[0].id.as_str(), tasks[3].id.as_str(), tasks[4].id.as_str(), tasks[5].id.as_str()]);

    // A RUNNING task (left by an older version) is pending too.
    let mut running = tasks[3].clone();
    running.state = TaskState::Running;
    w(db, |tx| tx.update_task(&running));
    assert_eq!(w(db, |tx| tx.pending_tasks(0, 100)).len(), 4);
}

fn list_tasks_filters(f: &Fixture) {
    let db = f.db();
    let mut tasks = Vec::new();
    for i in 0..12i64 {
        let kind = if i % 4 == 0 { "delete_rule" } else { "create_security_group" };
        let mut t = task(1, 10 + i % 3, 100 + i % 2, kind, 10_000 + i * 10);
        if i % 3 == 0 {
            t.state = TaskState::Finished;
            t.finished_on = Some(t.created_on + 1);
        }
        if i == 5 {
            t.state = TaskState::Error;
            t.error = Some("boom".into());
        }
        if i % 2 == 0 {
            t.acknowledged_at = Some(50_000);
            t.acknowledged_by = Some(7);
        }
        tasks.push(t);
    }
    // Two tasks with the same created_on: creation order breaks the tie.
    let mut same = task(1, 10, 100, "create_security_group", 10_000);
    same.id = "zzz-same-time".into();
    tasks.push(same);
    tasks.push(task(2, 10, 100, "create_security_group", 10_005));
    w(db, |tx| tasks.iter().try_for_each(|t| tx.insert_task(t)));

    let list = |filter: TaskFilter| r(db, |tx| tx.list_tasks(1, &filter));
    let ids = |v: &[TaskRecord]| v.iter().map(|t| t.id.clone()).collect::<Vec<_>>();
    let all = TaskFilter { limit: 100, ..TaskFilter::default() };

    let (count, desc) = list(all.clone());
    assert_eq!(count, 13, "only the client's tasks");
    assert_eq!(desc[0].id, tasks[11].id, "newest first by default");
    assert_eq!(desc.last().unwrap().id, tasks[0].id, "ties broken by creation order, reversed");
    assert_eq!(desc[desc.len() - 2].id, "zzz-same-time");
    let (_, asc) = list(TaskFilter { ascending: true, ..all.clone() });
    let mut reversed = ids(&desc);
    reversed.reverse();
    assert_eq!(ids(&asc), reversed);

    let (count, page) = list(TaskFilter { limit: 5, offset: 10, ..all.clone() });
    assert_eq!((count, page.len()), (13, 3));
    assert_eq!(ids(&page), ids(&desc[10..]));

    let (count, got) = list(TaskFilter { project_ids: vec![10, 12], ..all.clone() });
    let expected: Vec<_> = desc.iter().filter(|t| matches!(t.project_id, Some(10 | 12))).cloned().collect();
    assert_eq!((count as usize, ids(&got)), (expected.len(), ids(&expected)));

    let (count, got) = list(TaskFilter { region_ids: vec![101], ..all.clone() });
    assert_eq!(count, 6);
    assert!(got.iter().all(|t| t.region_id == Some(101)));

    let (count, got) = list(TaskFilter { states: vec![TaskState::Finished, TaskState::Error], ..all.clone() });
    assert_eq!(count, 5);
    assert!(got.iter().all(|t| t.state.is_terminal()));

    let (count, _) = list(TaskFilter { task_type: Some("delete_rule".into()), ..all.clone() });
    assert_eq!(count, 3);
    let (count, _) = list(TaskFilter { is_acknowledged: Some(true), ..all.clone() });
    assert_eq!(count, 6);
    let (count, _) = list(TaskFilter { is_acknowledged: Some(false), ..all.clone() });
    assert_eq!(count, 7);
    let (count, got) = list(TaskFilter { from_ms: Some(10_050), to_ms: Some(10_080), ..all.clone() });
    assert_eq!(count, 4);
    assert_eq!(ids(&got), vec![tasks[8].id.clone(), tasks[7].id.clone(), tasks[6].id.clone(), tasks[5].id.clone()]);
    let (count, _) = list(TaskFilter {
        project_ids: vec![10],
        region_ids: vec![100],
        states: vec![TaskState::New],
        task_type: Some("create_security_group".into()),
        is_acknowledged: Some(false),
        ..all.clone()
    });
    // i in {3, 9} are project 10 but FINISHED, i = 6 is region 100 but acknowledged: only the tie task.
    assert_eq!(count, 1);
}

fn acknowledge_tasks_filters(f: &Fixture) {
    let db = f.db();
    let tasks: Vec<TaskRecord> = (0..6).map(|i| task(1, 10 + i % 2, 100, "create_security_group", i)).collect();
    let foreign = task(2, 10, 100, "create_security_group", 99);
    w(db, |tx| {
        tasks.iter().try_for_each(|t| tx.insert_task(t))?;
        tx.insert_task(&foreign)
    });
    let only = AckFilter { task_ids: Some(vec![tasks[0].id.clone(), tasks[1].id.clone(), foreign.id.clone()]), ..AckFilter::default() };
    assert_eq!(w(db, |tx| tx.acknowledge_tasks(1, &only, 7, 5_000)), 2);
    assert_eq!(w(db, |tx| tx.acknowledge_tasks(1, &only, 7, 6_000)), 0, "already acknowledged");
    let got = r(db, |tx| tx.get_task(1, &tasks[0].id)).unwrap();
    assert_eq!((got.acknowledged_at, got.acknowledged_by), (Some(5_000), Some(7)));
    let project = AckFilter { project_id: Some(10), region_id: Some(100), task_ids: None };
    assert_eq!(w(db, |tx| tx.acknowledge_tasks(1, &project, 8, 7_000)), 2, "tasks 2 and 4");
    let elsewhere = AckFilter { region_id: Some(999), ..AckFilter::default() };
    assert_eq!(w(db, |tx| tx.acknowledge_tasks(1, &elsewhere, 8, 7_000)), 0);
    assert_eq!(w(db, |tx| tx.acknowledge_tasks(1, &AckFilter::default(), 9, 8_000)), 2, "tasks 3 and 5");
    assert_eq!(r(db, |tx| tx.get_task(2, &foreign.id)).unwrap().acknowledged_at, None, "never another client's");
    let unacknowledged = TaskFilter { is_acknowledged: Some(false), limit: 10, ..TaskFilter::default() };
    assert_eq!(r(db, |tx| tx.list_tasks(1, &unacknowledged)).0, 0);
}

fn api_keys(f: &Fixture) {
    let db = f.db();
    let first = tenant_key("h1", 1, 2, None);
    let mut second = tenant_key("h2", 3, 4, Some(vec![7, 8]));
    (second.key.name, second.key.created_at) = (String::new(), 20);
    let mut platform = tenant_key("h3", 0, 0, None);
    platform.key.role = KeyRole::Platform;
    let mut agent = tenant_key("h4", 0, 0, None);
    (agent.key.role, agent.key.host) = (KeyRole::Agent, Some("compute-7".into()));
    let id1 = w(db, |tx| tx.insert_key(&first));
    let id2 = w(db, |tx| tx.insert_key(&second));
    let id3 = w(db, |tx| tx.insert_key(&platform));
    let id4 = w(db, |tx| tx.insert_key(&agent));
    assert!(id2 > id1);
    let key = r(db, |tx| tx.find_key("h2")).unwrap();
    assert_eq!(
        (key.id, key.role, key.client_id, key.user_id, key.projects.clone(), key.created_at, key.revoked_at, key.host.clone()),
        (id2, KeyRole::Tenant, 3, 4, Some(vec![7, 8]), 20, None, None)
    );
    let key = r(db, |tx| tx.find_key("h3")).unwrap();
    assert_eq!((key.id, key.role, key.host), (id3, KeyRole::Platform, None));
    let key = r(db, |tx| tx.find_key("h4")).unwrap();
    assert_eq!((key.id, key.role, key.host.as_deref()), (id4, KeyRole::Agent, Some("compute-7")));
    assert_eq!(r(db, |tx| tx.find_key("nope")), None);
    assert_eq!(
        r(db, |tx| tx.list_keys()).iter().map(|k| (k.id, k.role)).collect::<Vec<_>>(),
        vec![(id1, KeyRole::Tenant), (id2, KeyRole::Tenant), (id3, KeyRole::Platform), (id4, KeyRole::Agent)]
    );
    assert!(w(db, |tx| tx.revoke_key(id1, 99)));
    assert!(!w(db, |tx| tx.revoke_key(id1, 100)));
    assert!(!w(db, |tx| tx.revoke_key(12345, 100)));
    assert_eq!(r(db, |tx| tx.find_key("h1")).unwrap().revoked_at, Some(99));
    // Token hashes are unique.
    assert!(db.write(|tx| tx.insert_key(&first)).is_err());
    let exported = r(db, |tx| tx.export_keys());
    assert_eq!(
        exported.iter().map(|(k, h)| (k.id, k.role, h.as_str())).collect::<Vec<_>>(),
        vec![(id1, KeyRole::Tenant, "h1"), (id2, KeyRole::Tenant, "h2"), (id3, KeyRole::Platform, "h3"), (id4, KeyRole::Agent, "h4")]
    );
}

fn tenant_key(token_hash: &str, client_id: i64, user_id: i64, projects: Option<Vec<i64>>) -> NewApiKey {
    let key = ApiKey {
        id: 0,
        role: KeyRole::Tenant,
        host: None,
        client_id,
        user_id,
        projects,
        name: "ops".into(),
        created_at: 10,
        revoked_at: None,
    };
    NewApiKey { token_hash: token_hash.into(), key }
}

fn write_rolls_back_on_error(f: &Fixture) {
    let db = f.db();
    let g = group(SCOPE, "never", 1);
    let t = task(1, 10, 100, "create_security_group", 1);
    let result: Result<(), StoreError> = db.write(|tx| {
        tx.insert_group(&g)?;
        tx.insert_task(&t)?;
        Err(StoreError::Internal("changed my mind".into()))
    });
    assert!(result.is_err());
    assert_eq!(r(db, |tx| tx.get_group(&SCOPE, g.id)), None);
    assert_eq!(r(db, |tx| tx.get_task(1, &t.id)), None);
    // A failed statement (duplicate id) fails the transaction and leaves nothing behind.
    w(db, |tx| tx.insert_group(&g));
    let other = group(SCOPE, "other", 2);
    let result = db.write(|tx| {
        tx.insert_group(&other)?;
        tx.insert_group(&g)
    });
    assert!(matches!(result, Err(StoreError::Internal(_))), "{result:?}");
    assert_eq!(r(db, |tx| tx.get_group(&SCOPE, other.id)), None);
    // And the store is still usable afterwards (the connection went back clean).
    for _ in 0..3 {
        assert_eq!(r(db, |tx| tx.count_groups(&SCOPE)), 1);
        w(db, |tx| tx.count_groups(&SCOPE));
    }
}

fn a_swallowed_statement_error_is_not_committed(f: &Fixture) {
    let db = f.db();
    let g = group(SCOPE, "first", 1);
    w(db, |tx| tx.insert_group(&g));
    let other = group(SCOPE, "second", 2);
    // The caller ignores a failed statement and returns Ok: the store must not report a commit
    // of writes that did not happen (PostgreSQL rolls such a transaction back).
    let result = db.write(|tx| {
        let _ = tx.insert_group(&g);
        let _ = tx.insert_group(&other);
        Ok::<_, StoreError>(())
    });
    let stored = r(db, |tx| tx.group_exists(&SCOPE, other.id));
    assert_eq!(result.is_ok(), stored, "Ok exactly when the write was kept: {result:?}");
    // After a failure undone by a savepoint rollback, the rest commits.
    let third = group(SCOPE, "third", 3);
    w(db, |tx| {
        tx.savepoint()?;
        assert!(tx.insert_group(&g).is_err());
        tx.rollback_to_savepoint()?;
        tx.insert_group(&third)
    });
    assert!(r(db, |tx| tx.group_exists(&SCOPE, third.id)));
}

fn savepoints(f: &Fixture) {
    let db = f.db();
    let kept = group(SCOPE, "kept", 1);
    let undone = group(SCOPE, "undone", 2);
    let released = group(SCOPE, "released", 3);
    w(db, |tx| {
        tx.insert_group(&kept)?;
        tx.savepoint()?;
        tx.insert_group(&undone)?;
        tx.rollback_to_savepoint()?;
        tx.savepoint()?;
        tx.insert_group(&released)?;
        tx.release_savepoint()?;
        // The same savepoint name again, as the worker does for every task of a batch.
        tx.savepoint()?;
        tx.rollback_to_savepoint()
    });
    assert!(r(db, |tx| tx.group_exists(&SCOPE, kept.id)));
    assert!(!r(db, |tx| tx.group_exists(&SCOPE, undone.id)));
    assert!(r(db, |tx| tx.group_exists(&SCOPE, released.id)));
}

fn quotas_and_usage(f: &Fixture) {
    let db = f.db();
    assert_eq!(r(db, |tx| tx.usage(&SCOPE)), Usage::default());
    assert_eq!(r(db, |tx| tx.get_quota(&SCOPE)), None);
    let a = group(SCOPE, "a", 1);
    let b = group(SCOPE, "b", 2);
    w(db, |tx| {
        tx.lock_scope(&SCOPE)?;
        tx.insert_group(&a)?;
        tx.insert_group(&b)?;
        tx.insert_group(&group(OTHER_PROJECT, "c", 3))
    });
    assert_eq!(r(db, |tx| tx.usage(&SCOPE)), Usage { security_groups: 2, security_group_rules: 8 });
    w(db, |tx| tx.delete_rule(&SCOPE, a.rules[0].id));
    assert_eq!(r(db, |tx| tx.usage(&SCOPE)), Usage { security_groups: 2, security_group_rules: 7 });
    w(db, |tx| tx.delete_group(&SCOPE, a.id));
    assert_eq!(r(db, |tx| tx.usage(&SCOPE)), Usage { security_groups: 1, security_group_rules: 4 });
    assert_eq!(r(db, |tx| tx.usage(&OTHER_PROJECT)), Usage { security_groups: 1, security_group_rules: 4 });

    let limits = Limits { security_groups: 5, security_group_rules: -1 };
    w(db, |tx| tx.set_quota(&SCOPE, &limits));
    assert_eq!(r(db, |tx| tx.get_quota(&SCOPE)), Some(limits));
    let limits = Limits { security_groups: 6, security_group_rules: 60 };
    w(db, |tx| tx.set_quota(&SCOPE, &limits));
    assert_eq!(r(db, |tx| tx.get_quota(&SCOPE)), Some(limits));
    assert_eq!(r(db, |tx| tx.get_quota(&OTHER_PROJECT)), None);
    assert_eq!(r(db, |tx| tx.export_quotas()), vec![(SCOPE, limits)]);
}

/// Everything in a store, for comparing two of them.
#[derive(Debug, PartialEq)]
struct Dump {
    groups: Vec<Group>,
    tasks: Vec<TaskRecord>,
    keys: Vec<(ApiKey, String)>,
    quotas: Vec<(Scope, Limits)>,
    usage: Vec<Usage>,
    ports: Vec<Port>,
}

/// Every item of a creation-ordered export, read in small pages to cross page boundaries.
fn all_pages<T>(mut fetch: impl FnMut(i64) -> StoreResult<Vec<(i64, T)>>) -> StoreResult<Vec<T>> {
    let mut items = Vec::new();
    let mut after = 0;
    loop {
        let page = fetch(after)?;
        let Some(&(last, _)) = page.last() else { return Ok(items) };
        after = last;
        items.extend(page.into_iter().map(|(_, item)| item));
    }
}

fn dump(db: &Database) -> Dump {
    r(db, |tx| {
        let groups = all_pages(|after| tx.export_groups(after, 7))?;
        let tasks = all_pages(|after| tx.export_tasks(after, 7))?;
        let usage = vec![tx.usage(&SCOPE)?, tx.usage(&OTHER_PROJECT)?, tx.usage(&OTHER_CLIENT)?];
        let mut ports = tx.list_ports(Some(1), &PortFilter::default())?;
        ports.extend(tx.list_ports(Some(2), &PortFilter::default())?);
        Ok(Dump { groups, tasks, keys: tx.export_keys()?, quotas: tx.export_quotas()?, usage, ports })
    })
}

/// A store with a bit of everything.
fn fill(db: &Database, groups: usize) {
    w(db, |tx| {
        let mut made = Vec::new();
        for i in 0..groups {
            let scope = [SCOPE, OTHER_PROJECT, OTHER_CLIENT][i % 3];
            let g = group(scope, &format!("group-{i}"), 1_000 + i as i64);
            tx.insert_group(&g)?;
            made.push(g);
        }
        // A port in each of the first three groups' scopes, bound to that group (and unbound ones).
        for (i, g) in made.iter().take(3).enumerate() {
            let id = Uuid::new_v4();
            tx.insert_port(&Port {
                id,
                scope: g.scope,
                instance_id: Uuid::new_v4(),
                instance_name: format!("vm-{i}"),
                host: format!("host-{}", i % 2),
                device: palisade_core::port::default_device(id),
                mac: MacAddr::from_str(&format!("02:00:00:00:00:0{i}")).unwrap(),
                fixed_ips: vec!["10.0.0.5".parse().unwrap(), "2001:db8::5".parse().unwrap()],
                security_group_ids: vec![g.id],
                created_at: 7_000 + i as i64,
                updated_at: 7_000 + i as i64,
            })?;
        }
        for i in 0..10 {
            let mut t = task(1 + i % 2, 10, 100, "create_security_group", 2_000 + i);
            if i % 3 == 0 {
                t.state = TaskState::Finished;
                t.created_resources = Some(json!({"security_groups": [Uuid::new_v4().to_string()]}));
                t.acknowledged_at = Some(3_000);
                t.acknowledged_by = Some(1);
            }
            tx.insert_task(&t)?;
        }
        tx.set_quota(&OTHER_PROJECT, &Limits { security_groups: 100, security_group_rules: 1000 })?;
        Ok(())
    });
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        // The last one is an agent key: roles and hosts move with the export too.
        let mut key = tenant_key(&format!("hash-{name}"), 1, i as i64, (i == 1).then(|| vec![10]));
        (key.key.name, key.key.created_at) = (name.to_string(), 5);
        if i == 2 {
            (key.key.role, key.key.host) = (KeyRole::Agent, Some("compute-9".to_string()));
        }
        let id = w(db, |tx| tx.insert_key(&key));
        if i == 0 {
            w(db, |tx| tx.revoke_key(id, 6));
        }
    }
}

fn export_import_round_trip(f: &Fixture) {
    fill(f.db(), 40);
    let mut file = Vec::new();
    let summary = transfer::export(f.db(), f.db().backend(), &mut file).expect("export");
    assert_eq!(
        (summary.groups, summary.rules, summary.tags, summary.tasks, summary.api_keys, summary.quotas, summary.ports),
        (40, 160, 80, 10, 3, 1, 3)
    );
    let target = f.sibling();
    let imported = transfer::import(target.db(), &mut Cursor::new(&file)).expect("import");
    assert_eq!(imported, summary);
    let source = dump(f.db());
    assert_eq!(source.ports.len(), 3);
    assert_eq!(dump(target.db()), source);
    // Agents that applied the old store's revision see a newer one.
    let old_revision = r(f.db(), |tx| tx.policy_revision());
    assert!(r(target.db(), |tx| tx.policy_revision()) > old_revision);
    // New keys do not collide with imported ids.
    let id = w(target.db(), |tx| tx.insert_key(&tenant_key("fresh", 1, 1, None)));
    assert!(id > 3, "{id}");
}

fn import_refuses_non_empty_and_truncated(f: &Fixture) {
    fill(f.db(), 5);
    let mut file = Vec::new();
    transfer::export(f.db(), "test", &mut file).expect("export");
    let before = dump(f.db());
    let err = transfer::import(f.db(), &mut Cursor::new(&file)).unwrap_err();
    assert!(matches!(err, TransferError::NotEmpty(_)), "{err}");
    assert_eq!(dump(f.db()), before);

    let target = f.sibling();
    let text = String::from_utf8(file).unwrap();
    let truncated: String = text.lines().take(text.lines().count() - 1).map(|l| format!("{l}\n")).collect();
    let err = transfer::import(target.db(), &mut Cursor::new(truncated.as_bytes())).unwrap_err();
    assert!(matches!(err, TransferError::Format { .. }), "{err}");
    let err = transfer::import(target.db(), &mut Cursor::new(b"{\"type\":\"task\"}\n".as_slice())).unwrap_err();
    assert!(matches!(err, TransferError::Format { .. }), "{err}");
    assert_eq!(dump(target.db()).groups.len(), 0, "a refused import leaves nothing");
    transfer::import(target.db(), &mut Cursor::new(text.as_bytes())).expect("the whole file imports");
}

fn read_sees_a_snapshot_of_committed_writes(f: &Fixture) {
    let db = f.db();
    let g = group(SCOPE, "x", 1);
    w(db, |tx| tx.insert_group(&g));
    let (count, groups) = r(db, |tx| {
        let count = tx.count_groups(&SCOPE)?;
        let (_, groups) = tx.list_groups(&SCOPE, &page(10, 0))?;
        Ok((count, groups))
    });
    assert_eq!((count, groups.len()), (1, 1));
}

fn calls_from_spawn_blocking(f: &Fixture) {
    // The API and the worker call the store from tokio's blocking pool: that must work (the
    // PostgreSQL client drives its own runtime there; on an async worker thread it would panic).
    let db = Arc::new(Database::open(&f.url, "normal").expect("reopen"));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let counts = runtime.block_on(async {
        let mut handles = Vec::new();
        for i in 0..8 {
            let db = db.clone();
            handles.push(tokio::task::spawn_blocking(move || {
                db.write(|tx| tx.insert_group(&group(SCOPE, &format!("b{i}"), i)))?;
                db.read(|tx| tx.count_groups(&SCOPE))
            }));
        }
        let mut counts = Vec::new();
        for handle in handles {
            counts.push(handle.await.unwrap().unwrap());
        }
        counts
    });
    assert!(counts.iter().all(|c| (1..=8).contains(c)));
    assert_eq!(r(&db, |tx| tx.count_groups(&SCOPE)), 8);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL only: what several nodes rely on.

mod postgres_nodes {
    use super::*;

    /// Two "nodes": two stores over one database.
    fn two_nodes() -> (Fixture, Database) {
        let f = Fixture::postgres();
        let second = Database::open(&f.url, "normal").expect("second node");
        (f, second)
    }

    /// No global serialisation: while one client's write transaction is open — its scope locked,
    /// a group with rules inserted, a port bound, its host's revision bumped — another client's
    /// write of the same kinds (on another node, another host) commits. Before migration 0008
    /// the second write waited on the one row of `policy_revision` until the first committed.
    /// (SQLite has one writer by design: there the second write waits; see docs/architecture.md.)
    #[test]
    fn a_write_in_another_project_commits_while_one_is_open() {
        let (f, second) = two_nodes();
        let (opened_tx, opened_rx) = std::sync::mpsc::channel::<()>();
        let (other_done_tx, other_done_rx) = std::sync::mpsc::channel::<Duration>();
        std::thread::scope(|s| {
            let first = f.db();
            let holder = s.spawn(move || {
                let a = group(SCOPE, "held-open", 1);
                let port = new_port(SCOPE, "host-a", "tapa", &["10.2.0.1"], &[a.id], 2);
                first
                    .write(|tx| {
                        tx.lock_scope(&SCOPE)?;
                        tx.insert_group(&a)?;
                        tx.insert_port(&port)?;
                        let bumped = tx.flush_policy()?;
                        assert_eq!(bumped.len(), 1);
                        opened_tx.send(()).unwrap();
                        // Held open until the other client's write has committed (or 10 s).
                        let waited = other_done_rx.recv_timeout(Duration::from_secs(10));
                        Ok::<_, StoreError>(waited.is_ok())
                    })
                    .unwrap()
            });
            opened_rx.recv_timeout(Duration::from_secs(10)).expect("the first transaction opened");
            let started = std::time::Instant::now();
            let b = group(OTHER_CLIENT, "meanwhile", 3);
            let port = new_port(OTHER_CLIENT, "host-b", "tapb", &["10.2.0.2"], &[b.id], 4);
            w(&second, |tx| {
                tx.lock_scope(&OTHER_CLIENT)?;
                tx.insert_group(&b)?;
                tx.insert_rule(&OTHER_CLIENT, &rule(b.id, spec("ingress", Some("tcp"), Some((80, 80)), None), 5))?;
                tx.insert_port(&port)
            });
            let took = started.elapsed();
            other_done_tx.send(took).unwrap();
            assert!(holder.join().unwrap(), "the other client's write committed while the first was still open");
            assert_eq!(r(&second, |tx| tx.usage(&OTHER_CLIENT)).security_group_rules, 5);
            assert!(r(&second, |tx| tx.host_revision("host-b")) > 0);
        });
        assert_eq!(r(f.db(), |tx| tx.usage(&SCOPE)).security_groups, 1, "and the first committed after it");
    }

    #[test]
    fn skip_locked_claims_each_task_once() {
        let (f, second) = two_nodes();
        let tasks: Vec<TaskRecord> = (0..10).map(|i| task(1, 10, 100, "create_security_group", i)).collect();
        w(f.db(), |tx| tasks.iter().try_for_each(|t| tx.insert_task(t)));
        let barrier = Arc::new(Barrier::new(2));
        let claim = |db: &Database, limit: u32, wait_first: bool| {
            let barrier = barrier.clone();
            db.write(|tx| {
                if wait_first {
                    barrier.wait(); // the other node holds its claim now
                }
                let claimed = tx.pending_tasks(0, limit)?;
                if !wait_first {
                    barrier.wait();
                }
                // Hold the claim while the other node looks.
                std::thread::sleep(Duration::from_millis(200));
                Ok::<_, StoreError>(claimed.into_iter().map(|t| t.id).collect::<Vec<_>>())
            })
            .unwrap()
        };
        let (claimed_a, claimed_b) = std::thread::scope(|s| {
            let (claim, first, second) = (&claim, f.db(), &second);
            let a = s.spawn(move || claim(first, 4, false));
            let b = s.spawn(move || claim(second, 100, true));
            (a.join().unwrap(), b.join().unwrap())
        });
        assert_eq!(claimed_a.len(), 4);
        assert_eq!(claimed_b.len(), 6, "the other node skips the rows that are claimed");
        assert!(claimed_a.iter().all(|id| !claimed_b.contains(id)));
    }

    #[test]
    fn locked_group_reads_never_lose_an_update() {
        let (f, second) = two_nodes();
        let g = group(SCOPE, "counter", 0);
        w(f.db(), |tx| tx.insert_group(&g));
        std::thread::scope(|s| {
            for db in [f.db(), &second, f.db(), &second] {
                s.spawn(move || {
                    for _ in 0..25 {
                        w(db, |tx| {
                            let mut current = tx.get_group(&SCOPE, g.id)?.unwrap();
                            current.revision_number += 1;
                            current.description.push('x');
                            tx.update_group(&current)
                        });
                    }
                });
            }
        });
        let last = r(f.db(), |tx| tx.get_group(&SCOPE, g.id)).unwrap();
        assert_eq!(last.revision_number, 100);
        assert_eq!(last.description.len(), "about counter".len() + 100);
    }

    #[test]
    fn a_dropped_connection_releases_its_claim() {
        let f = Fixture::postgres();
        let t = task(1, 10, 100, "create_security_group", 1);
        w(f.db(), |tx| tx.insert_task(&t));
        // A "node" that claims the task and then dies without committing.
        let mut dying = ::postgres::Client::connect(&f.url, ::postgres::NoTls).unwrap();
        dying.batch_execute("BEGIN").unwrap();
        let rows = dying.query("SELECT id FROM tasks WHERE state = 'NEW' FOR UPDATE SKIP LOCKED", &[]).unwrap();
        assert_eq!(rows.len(), 1);
        assert!(w(f.db(), |tx| tx.pending_tasks(0, 10)).is_empty(), "held by the other node");
        drop(rows);
        drop(dying); // the connection closes; PostgreSQL rolls its transaction back
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let pending = w(f.db(), |tx| tx.pending_tasks(0, 10));
            if pending.len() == 1 {
                assert_eq!(pending[0].id, t.id);
                break;
            }
            assert!(Instant::now() < deadline, "the claim was never released");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn notify_wakes_listeners_of_every_node() {
        let (f, second) = two_nodes();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let wake = Arc::new(tokio::sync::Notify::new());
        second.spawn_task_listener(wake.clone());
        let db = f.db();
        // The store is synchronous: call it from plain threads, never from the async block.
        let in_thread = |task: TaskRecord, commit: bool| {
            std::thread::scope(|s| {
                s.spawn(|| {
                    let _ = db.write(|tx| {
                        tx.insert_task(&task)?;
                        if commit { Ok(()) } else { Err(StoreError::Internal("rolled back".into())) }
                    });
                });
            })
        };
        runtime.block_on(async {
            // The listener wakes once when it (re)connects; consume that.
            tokio::time::timeout(Duration::from_secs(5), wake.notified()).await.expect("initial wake-up");
            tokio::time::sleep(Duration::from_millis(100)).await;
            let quiet = tokio::time::timeout(Duration::from_millis(300), wake.notified()).await;
            assert!(quiet.is_err(), "woken without a task");
            let started = Instant::now();
            in_thread(task(1, 10, 100, "create_security_group", 1), true);
            tokio::time::timeout(Duration::from_secs(5), wake.notified()).await.expect("woken by the other node's task");
            assert!(started.elapsed() < Duration::from_secs(2));
            // A rolled-back task notifies no one.
            tokio::time::sleep(Duration::from_millis(100)).await;
            in_thread(task(1, 10, 100, "create_security_group", 2), false);
            let quiet = tokio::time::timeout(Duration::from_millis(300), wake.notified()).await;
            assert!(quiet.is_err(), "woken by a rolled-back task");
        });
        drop(wake); // ends the listener thread
    }

    #[test]
    fn recovers_after_connections_are_killed() {
        let f = Fixture::postgres();
        let db = f.db();
        w(db, |tx| tx.insert_group(&group(SCOPE, "a", 1)));
        // Warm the pool with several connections.
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| r(db, |tx| tx.count_groups(&SCOPE)));
            }
        });
        let Cleanup::Pg(name) = &f.cleanup else { unreachable!() };
        let mut admin = ::postgres::Client::connect(&admin_url(), ::postgres::NoTls).unwrap();
        let killed = admin
            .query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", &[name])
            .unwrap();
        assert!(!killed.is_empty());
        std::thread::sleep(Duration::from_millis(100));
        // Stale pooled connections are replaced without failing the caller.
        assert_eq!(r(db, |tx| tx.count_groups(&SCOPE)), 1);
        db.ping().expect("ready again");
        w(db, |tx| tx.insert_group(&group(SCOPE, "b", 2)));
        assert_eq!(r(db, |tx| tx.count_groups(&SCOPE)), 2);
    }

    #[test]
    fn unreachable_database_is_unavailable() {
        // Nothing listens on port 1.
        let err = Database::open("postgres://postgres@127.0.0.1:1/test", "normal").err().expect("cannot open");
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }

    #[test]
    fn concurrent_migrations_do_not_race() {
        let (name, url) = create_pg_database();
        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4).map(|_| s.spawn(|| Database::open(&url, "normal").map(|_| ()))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        drop_pg_database(&name);
        for result in results {
            result.expect("every node opens the database");
        }
    }

    #[test]
    fn open_without_migrating_checks_the_schema() {
        let (name, url) = create_pg_database();
        let err = Database::open_with(&url, "normal", false).err().expect("an empty database is behind");
        assert!(err.to_string().contains("palisade migrate"), "{err}");
        Database::open(&url, "normal").expect("migrate");
        Database::open_with(&url, "normal", false).expect("current schema");
        drop_pg_database(&name);
    }

    #[test]
    fn pool_size_from_the_url() {
        let f = Fixture::postgres();
        let db = Database::open(&format!("{}?pool_max_size=2&application_name=conformance", f.url), "normal").expect("open");
        // Four concurrent writers share two connections.
        std::thread::scope(|s| {
            for i in 0..4 {
                let db = &db;
                s.spawn(move || {
                    w(db, |tx| {
                        std::thread::sleep(Duration::from_millis(50));
                        tx.insert_group(&group(SCOPE, &format!("p{i}"), i))
                    })
                });
            }
        });
        assert_eq!(r(&db, |tx| tx.count_groups(&SCOPE)), 4);
        assert!(Database::open(&format!("{}?pool_max_size=0", f.url), "normal").is_err());
    }

    #[test]
    fn database_urls() {
        use palisade_store::postgres::database_url;
        assert_eq!(database_url("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
        assert_eq!(database_url("postgres://u@h/test?sslmode=disable", "x"), "postgres://u@h/x?sslmode=disable");
        assert_eq!(database_url("postgresql://h", "x"), "postgresql://h/x");
        assert!(palisade_store::postgres::create_database(&admin_url(), "bad;name").is_err());
    }

    #[test]
    fn sqlite_to_postgres_move_keeps_everything() {
        let source = Fixture::sqlite();
        fill(source.db(), 1_000);
        let mut file = Vec::new();
        let summary = transfer::export(source.db(), "sqlite", &mut file).expect("export");
        assert_eq!(summary.groups, 1_000);
        let target = Fixture::postgres();
        let started = Instant::now();
        transfer::import(target.db(), &mut Cursor::new(&file)).expect("import");
        eprintln!("imported {} groups, {} rules into PostgreSQL in {:?}", summary.groups, summary.rules, started.elapsed());
        assert_eq!(dump(target.db()), dump(source.db()));
        // And back again: the same export (apart from the header and the policy revision, which
        // the import raised above the exported one).
        let mut again = Vec::new();
        transfer::export(target.db(), "sqlite", &mut again).expect("export again");
        let body = |bytes: &[u8]| {
            String::from_utf8(bytes.to_vec())
                .unwrap()
                .lines()
                .skip(1)
                .filter(|line| !line.starts_with("{\"type\":\"policy_revision\""))
                .map(String::from)
                .collect::<Vec<_>>()
        };
        let (again, file) = (body(&again), body(&file));
        assert_eq!(again.len(), file.len());
        assert!(again == file, "the exports differ");
    }
}

// ---------------------------------------------------------------------------------------------
// Ports, bindings, the policy revision and agents (migration 0002_ports)

fn new_port(scope: Scope, host: &str, device: &str, ips: &[&str], groups: &[Uuid], at: i64) -> Port {
    let instance_id = Uuid::new_v4();
    Port {
        id: Uuid::new_v4(),
        scope,
        instance_id,
        instance_name: format!("vm-{device}"),
        host: host.into(),
        device: device.into(),
        mac: MacAddr::from_str("fa:16:3e:00:00:01").unwrap(),
        fixed_ips: ips.iter().map(|ip| ip.parse().unwrap()).collect(),
        security_group_ids: groups.to_vec(),
        created_at: at,
        updated_at: at,
    }
}

fn ports_bindings_revision_and_agents(f: &Fixture) {
    let db = f.db();
    let (g1, g2) = (group(SCOPE, "one", 1), group(SCOPE, "two", 2));
    w(db, |tx| {
        tx.insert_group(&g1)?;
        tx.insert_group(&g2)
    });
    let revision = |db: &Database| r(db, |tx| tx.policy_revision());
    let start = revision(db);
    let mut p1 = new_port(SCOPE, "h1", "tap1", &["10.0.0.1", "fd00::1"], &[g2.id, g1.id], 10);
    let p2 = new_port(SCOPE, "h2", "tap2", &["10.0.0.2"], &[g1.id], 11);
    let p3 = new_port(OTHER_CLIENT, "h1", "tap3", &["10.0.0.3"], &[], 12);
    w(db, |tx| {
        tx.insert_port(&p1)?;
        tx.insert_port(&p2)?;
        tx.insert_port(&p3)
    });
    assert!(revision(db) > start, "ports and bindings grow the policy revision");

    // Reads: by id (client-scoped), with bindings in order; filters; by group.
    assert_eq!(r(db, |tx| tx.get_port(Some(1), p1.id)), Some(p1.clone()));
    assert_eq!(r(db, |tx| tx.get_port(Some(2), p1.id)), None, "another client's port is invisible");
    assert_eq!(r(db, |tx| tx.get_port(None, p3.id)), Some(p3.clone()), "any client's, for the platform");
    let on_h1 = r(db, |tx| tx.list_ports(Some(1), &PortFilter { host: Some("h1".into()), ..PortFilter::default() }));
    assert_eq!(on_h1, vec![p1.clone()]);
    let every_client_on_h1 = r(db, |tx| tx.list_ports(None, &PortFilter { host: Some("h1".into()), ..PortFilter::default() }));
    assert_eq!(every_client_on_h1, vec![p1.clone(), p3.clone()], "an agent's host holds every client's ports");
    w(db, |tx| tx.lock_host("h1"));
    let all = r(db, |tx| tx.list_ports(Some(1), &PortFilter::default()));
    assert_eq!(all.iter().map(|p| p.id).collect::<Vec<_>>(), vec![p1.id, p2.id], "creation order");
    let by_instance = r(db, |tx| {
        tx.list_ports(Some(1), &PortFilter { instance_id: Some(p2.instance_id), project_id: Some(10), ..PortFilter::default() })
    });
    assert_eq!(by_instance, vec![p2.clone()]);
    assert!(r(db, |tx| tx.list_ports(Some(1), &PortFilter { region_id: Some(999), ..PortFilter::default() })).is_empty());
    let users = r(db, |tx| tx.ports_in_groups(&[g1.id]));
    assert_eq!(users.iter().map(|p| p.id).collect::<Vec<_>>(), vec![p1.id, p2.id]);
    assert!(r(db, |tx| tx.ports_in_groups(&[])).is_empty());
    let groups = r(db, |tx| tx.groups_by_ids(&[g2.id, g1.id]));
    assert_eq!(groups.iter().map(|g| g.id).collect::<Vec<_>>(), vec![g1.id, g2.id], "creation order");
    assert_eq!(groups[0].rules.len(), 4);

    // Updates: addresses and bindings each grow the revision; a rule change does too.
    let before = revision(db);
    p1.fixed_ips = vec!["10.0.0.9".parse().unwrap()];
    p1.updated_at = 20;
    w(db, |tx| tx.update_port(&p1));
    let after_update = revision(db);
    assert!(after_update > before);
    w(db, |tx| tx.set_port_groups(p1.id, &[g1.id]));
    let after_bind = revision(db);
    assert!(after_bind > after_update);
    p1.security_group_ids = vec![g1.id];
    assert_eq!(r(db, |tx| tx.get_port(Some(1), p1.id)), Some(p1.clone()));
    w(db, |tx| tx.delete_rule(&SCOPE, g1.rules[0].id));
    assert!(revision(db) > after_bind, "rule changes grow the revision");

    // Deleting a port takes its bindings with it.
    let before = revision(db);
    assert!(w(db, |tx| tx.delete_port(Some(1), p2.id)));
    assert!(!w(db, |tx| tx.delete_port(Some(1), p2.id)));
    assert!(!w(db, |tx| tx.delete_port(Some(1), p3.id)), "another client's port");
    assert!(revision(db) > before);
    assert_eq!(r(db, |tx| tx.ports_in_groups(&[g1.id])).len(), 1);

    // Agents: one per host, upserted, listed by host.
    let agent = |host: &str, applied_revision: i64| palisade_store::AgentRecord { host: host.into(), applied_revision, reported_at: 5 };
    w(db, |tx| {
        tx.report_agent(&agent("h2", 3))?;
        tx.report_agent(&agent("h1", 4))?;
        tx.report_agent(&agent("h1", 7))
    });
    let listed = r(db, |tx| tx.list_agents());
    let h1 = r(db, |tx| tx.host_revision("h1"));
    let h2 = r(db, |tx| tx.host_revision("h2"));
    assert_eq!(listed, vec![(agent("h1", 7), h1), (agent("h2", 3), h2)], "each agent with its host's revision");
    assert_eq!(r(db, |tx| tx.host_revision("no-such-host")), 0);
}

/// A write bumps the revision of exactly the hosts whose policy it changes: the hosts of ports
/// bound to a group whose rules change, and for a change of a group's members (a port bound to
/// it), the hosts of ports bound to groups whose rules name it as remote group. Nothing else.
fn host_revisions_follow_exactly_the_hosts_a_change_reaches(f: &Fixture) {
    let db = f.db();
    // web names db as remote group; web's port is on h-web, db's on h-db; lone's on h-lone.
    let web = group(SCOPE, "web", 1);
    let db_group = group(SCOPE, "db", 2);
    let lone = group(SCOPE, "lone", 3);
    let mut from_db = spec("ingress", Some("tcp"), Some((80, 80)), None);
    from_db.remote_group_id = Some(db_group.id);
    let remote_rule = rule(web.id, from_db, 4);
    w(db, |tx| {
        tx.insert_group(&web)?;
        tx.insert_group(&db_group)?;
        tx.insert_group(&lone)?;
        tx.insert_rule(&SCOPE, &remote_rule)
    });
    let web_port = new_port(SCOPE, "h-web", "tapw", &["10.1.0.1"], &[web.id], 5);
    let lone_port = new_port(SCOPE, "h-lone", "tapl", &["10.1.0.3"], &[lone.id], 6);
    let bumped = w(db, |tx| {
        tx.insert_port(&web_port)?;
        tx.insert_port(&lone_port)?;
        tx.flush_policy()
    });
    let mut hosts: Vec<&str> = bumped.iter().map(|(h, _)| h.as_str()).collect();
    hosts.sort();
    assert_eq!(hosts, ["h-lone", "h-web"], "new ports bump their own hosts");
    let revisions = |db: &Database| ["h-web", "h-db", "h-lone"].map(|h| r(db, |tx| tx.host_revision(h)));
    let start = revisions(db);

    // A rule of lone: only h-lone.
    let extra = rule(lone.id, spec("ingress", Some("icmp"), None, Some("0.0.0.0/0")), 7);
    let bumped = w(db, |tx| {
        tx.insert_rule(&SCOPE, &extra)?;
        tx.flush_policy()
    });
    assert_eq!(bumped.iter().map(|(h, _)| h.as_str()).collect::<Vec<_>>(), ["h-lone"]);
    let now = revisions(db);
    assert!(now[2] > start[2]);
    assert_eq!((now[0], now[1]), (start[0], start[1]), "no other host moves");
    assert_eq!(now[2], bumped[0].1, "the revision reported is the one stored");

    // A member joins db (a port on h-db bound to it): h-db itself, and h-web, whose web rules
    // name db as remote group. Not h-lone.
    let before = revisions(db);
    let db_port = new_port(SCOPE, "h-db", "tapd", &["10.1.0.2"], &[db_group.id], 8);
    w(db, |tx| tx.insert_port(&db_port));
    let now = revisions(db);
    assert!(now[0] > before[0] && now[1] > before[1], "h-web hears of db's new member: {before:?} -> {now:?}");
    assert_eq!(now[2], before[2]);

    // Nothing bound: a new group with rules bumps no host at all.
    let before = revisions(db);
    let bumped = w(db, |tx| {
        tx.insert_group(&group(SCOPE, "unbound", 9))?;
        tx.flush_policy()
    });
    assert!(bumped.is_empty());
    assert_eq!(revisions(db), before);

    // A rolled-back savepoint takes its hosts back; a failed transaction bumps nothing.
    let other = rule(lone.id, spec("egress", Some("udp"), Some((53, 53)), None), 10);
    let bumped = w(db, |tx| {
        tx.savepoint()?;
        tx.insert_rule(&SCOPE, &other)?;
        tx.rollback_to_savepoint()?;
        tx.flush_policy()
    });
    assert!(bumped.is_empty());
    let failed: StoreResult<()> = db.write(|tx| {
        tx.insert_rule(&SCOPE, &other)?;
        Err(palisade_store::StoreError::Internal("abandoned".into()))
    });
    assert!(failed.is_err());
    assert_eq!(revisions(db), before);
    assert_eq!(r(db, |tx| tx.usage(&SCOPE)).security_group_rules, 4 * 4 + 2, "usage counted once per committed rule");

    // Moving a port bumps its old and new host.
    let before = revisions(db);
    let mut moved = lone_port.clone();
    moved.host = "h-db".into();
    let bumped = w(db, |tx| {
        tx.update_port(&moved)?;
        tx.flush_policy()
    });
    let mut hosts: Vec<&str> = bumped.iter().map(|(h, _)| h.as_str()).collect();
    hosts.sort();
    assert_eq!(hosts, ["h-db", "h-lone"]);
    assert_eq!(revisions(db)[0], before[0], "h-web is not concerned");
}

// ---------------------------------------------------------------------------------------------
// The audit log

fn audit_event(time: i64, client_id: Option<i64>, project_id: Option<i64>, action: &str, resource_id: &str) -> palisade_store::AuditEvent {
    palisade_store::AuditEvent {
        id: 0,
        time,
        actor_key_id: Some(3),
        actor_role: "tenant".into(),
        client_id,
        user_id: Some(7),
        project_id,
        region_id: project_id.map(|_| 100),
        action: action.into(),
        resource_type: action.split('.').next().unwrap_or_default().into(),
        resource_id: Some(resource_id.into()),
        request_id: Some(format!("req-{time}")),
        outcome: "ok".into(),
        summary: json!({"name": "web", "rules_added": [resource_id], "nested": {"n": time}}),
    }
}

fn audit_page(filter: palisade_store::AuditFilter) -> palisade_store::AuditFilter {
    palisade_store::AuditFilter { limit: if filter.limit == 0 { 100 } else { filter.limit }, ..filter }
}

fn audit_times(events: &[palisade_store::AuditEvent]) -> Vec<i64> {
    events.iter().map(|e| e.time).collect()
}

fn audit_insert_and_list_filters(f: &Fixture) {
    use palisade_store::AuditFilter;
    let db = f.db();
    w(db, |tx| {
        tx.insert_audit(&audit_event(1_000, Some(1), Some(10), "security_group.create", "g1"))?;
        tx.insert_audit(&audit_event(2_000, Some(1), Some(11), "security_group.update", "g1"))?;
        tx.insert_audit(&audit_event(3_000, Some(2), Some(10), "security_group.create", "g2"))?;
        tx.insert_audit(&audit_event(4_000, Some(1), None, "api_key.create", "5"))?;
        let mut cli = audit_event(4_000, None, None, "api_key.create", "6");
        cli.actor_key_id = None;
        cli.actor_role = "cli".into();
        cli.user_id = None;
        cli.request_id = None;
        cli.resource_id = None;
        tx.insert_audit(&cli)
    });

    // Everything, newest first; events of one time by insertion, newest first.
    let (count, all) = r(db, |tx| tx.list_audit(&audit_page(AuditFilter::default())));
    assert_eq!(count, 5);
    assert_eq!(audit_times(&all), [4_000, 4_000, 3_000, 2_000, 1_000]);
    assert_eq!(all[0].actor_role, "cli");
    assert!(all[0].id > all[1].id, "ids grow with insertion");
    let cli = &all[0];
    assert_eq!((cli.actor_key_id, cli.client_id, cli.user_id, cli.project_id, cli.region_id), (None, None, None, None, None));
    assert_eq!((cli.resource_id.as_deref(), cli.request_id.as_deref()), (None, None));
    let mut expected = audit_event(1_000, Some(1), Some(10), "security_group.create", "g1");
    expected.id = all[4].id;
    assert_eq!(all[4], expected, "every field round-trips");

    // One client.
    let (count, mine) = r(db, |tx| tx.list_audit(&audit_page(AuditFilter { client_id: Some(1), ..AuditFilter::default() })));
    assert_eq!((count, audit_times(&mine)), (3, vec![4_000, 2_000, 1_000]));
    // A project-limited view: its projects, or no project.
    let filter = AuditFilter { client_id: Some(1), project_ids: Some(vec![10]), ..AuditFilter::default() };
    let (count, limited) = r(db, |tx| tx.list_audit(&audit_page(filter)));
    assert_eq!((count, audit_times(&limited)), (2, vec![4_000, 1_000]));
    let filter = AuditFilter { client_id: Some(1), project_ids: Some(vec![]), ..AuditFilter::default() };
    let (count, _) = r(db, |tx| tx.list_audit(&audit_page(filter)));
    assert_eq!(count, 1, "no projects: only events of no project");
    // Time window, both ends inclusive.
    let filter = AuditFilter { since_ms: Some(2_000), until_ms: Some(3_000), ..AuditFilter::default() };
    let (count, window) = r(db, |tx| tx.list_audit(&audit_page(filter)));
    assert_eq!((count, audit_times(&window)), (2, vec![3_000, 2_000]));
    // Resource and action.
    let filter = AuditFilter { resource_id: Some("g1".into()), ..AuditFilter::default() };
    assert_eq!(r(db, |tx| tx.list_audit(&audit_page(filter))).0, 2);
    let filter = AuditFilter { action: Some("security_group.create".into()), ..AuditFilter::default() };
    let (count, created) = r(db, |tx| tx.list_audit(&audit_page(filter)));
    assert_eq!((count, audit_times(&created)), (2, vec![3_000, 1_000]));
    let filter = AuditFilter { client_id: Some(2), action: Some("security_group.update".into()), ..AuditFilter::default() };
    assert_eq!(r(db, |tx| tx.list_audit(&audit_page(filter))).0, 0);
    // Pages: the count is of every match.
    let filter = AuditFilter { limit: 2, offset: 1, ..AuditFilter::default() };
    let (count, page) = r(db, |tx| tx.list_audit(&filter));
    assert_eq!((count, audit_times(&page)), (5, vec![4_000, 3_000]));
    let filter = AuditFilter { limit: 10, offset: 5, ..AuditFilter::default() };
    let (count, page) = r(db, |tx| tx.list_audit(&filter));
    assert_eq!((count, page.len()), (5, 0));
}

fn tasks_open_count_and_prune(f: &Fixture) {
    let db = f.db();
    let finished = |created_on: i64, finished_on: i64, acknowledged: bool| {
        let mut t = task(1, 10, 100, "create_security_group", created_on);
        t.state = TaskState::Finished;
        t.finished_on = Some(finished_on);
        t.acknowledged_at = acknowledged.then_some(finished_on + 1);
        t
    };
    let old = finished(1, 1_000, false);
    let old_acknowledged = finished(2, 5_000, true);
    let recent_acknowledged = finished(3, 9_000, true);
    let recent = finished(4, 9_500, false);
    let open = task(1, 10, 100, "create_security_group", 5);
    let mut running = task(1, 10, 100, "create_security_group", 6);
    running.state = TaskState::Running;
    let others = task(2, 10, 100, "create_security_group", 7);
    w(db, |tx| {
        for t in [&old, &old_acknowledged, &recent_acknowledged, &recent, &open, &running, &others] {
            tx.insert_task(t)?;
        }
        Ok(())
    });
    assert_eq!(r(db, |tx| tx.count_open_tasks(1)), 2, "NEW and RUNNING");
    assert_eq!(r(db, |tx| tx.count_open_tasks(2)), 1);
    assert_eq!(r(db, |tx| tx.count_open_tasks(3)), 0);
    // Finished before 2,000, or acknowledged and finished before 6,000: the first two only.
    assert_eq!(w(db, |tx| tx.prune_tasks(2_000, 6_000, 100)), 2);
    let left = |db: &Database| {
        let mut ids: Vec<String> =
            r(db, |tx| tx.list_tasks(1, &TaskFilter { limit: 100, ..TaskFilter::default() })).1.into_iter().map(|t| t.id).collect();
        ids.sort();
        ids
    };
    let mut expected = vec![recent_acknowledged.id.clone(), recent.id.clone(), open.id.clone(), running.id.clone()];
    expected.sort();
    assert_eq!(left(db), expected, "unfinished tasks are never pruned");
    // Batches: the oldest first, at most `limit` per call.
    assert_eq!(w(db, |tx| tx.prune_tasks(i64::MAX, i64::MAX, 1)), 1);
    assert!(r(db, |tx| tx.get_task(1, &recent_acknowledged.id)).is_none(), "the oldest went first");
    assert_eq!(w(db, |tx| tx.prune_tasks(i64::MAX, i64::MAX, 100)), 1);
    assert_eq!(r(db, |tx| tx.count_open_tasks(1)), 2);
    assert!(r(db, |tx| tx.get_task(2, &others.id)).is_some());
}

fn audit_prune_deletes_oldest_in_batches(f: &Fixture) {
    use palisade_store::AuditFilter;
    let db = f.db();
    w(db, |tx| {
        for time in 1..=10 {
            tx.insert_audit(&audit_event(time * 1_000, Some(1), Some(10), "port.update", "p"))?;
        }
        Ok(())
    });
    // Older than 8 s: seven events, taken three at a time, oldest first.
    assert_eq!(w(db, |tx| tx.prune_audit(8_000, 3)), 3);
    let (_, left) = r(db, |tx| tx.list_audit(&audit_page(AuditFilter::default())));
    assert_eq!(audit_times(&left), [10_000, 9_000, 8_000, 7_000, 6_000, 5_000, 4_000]);
    assert_eq!(w(db, |tx| tx.prune_audit(8_000, 3)), 3);
    assert_eq!(w(db, |tx| tx.prune_audit(8_000, 3)), 1);
    assert_eq!(w(db, |tx| tx.prune_audit(8_000, 3)), 0);
    let (count, left) = r(db, |tx| tx.list_audit(&audit_page(AuditFilter::default())));
    assert_eq!((count, audit_times(&left)), (3, vec![10_000, 9_000, 8_000]), "the event at the cut-off is kept");
}

fn audit_event_rolls_back_with_its_change(f: &Fixture) {
    use palisade_store::AuditFilter;
    let db = f.db();
    let g = group(SCOPE, "audited", 1);
    let failed: Result<(), StoreError> = db.write(|tx| {
        tx.insert_group(&g)?;
        tx.insert_audit(&audit_event(1, Some(1), Some(10), "security_group.create", &g.id.to_string()))?;
        Err(StoreError::Internal("the change fails after its event".into()))
    });
    assert!(failed.is_err());
    assert_eq!(r(db, |tx| tx.list_audit(&audit_page(AuditFilter::default()))).0, 0, "no event without its change");
    assert!(r(db, |tx| tx.get_group(&SCOPE, g.id)).is_none());
    // A savepoint rolled back takes its event with it; the one after it stays.
    w(db, |tx| {
        tx.savepoint()?;
        tx.insert_audit(&audit_event(2, Some(1), Some(10), "security_group.update", "undone"))?;
        tx.rollback_to_savepoint()?;
        tx.insert_audit(&audit_event(3, Some(1), Some(10), "security_group.update", "kept"))
    });
    let (count, events) = r(db, |tx| tx.list_audit(&audit_page(AuditFilter::default())));
    assert_eq!((count, events[0].resource_id.as_deref()), (1, Some("kept")));
}

// ---------------------------------------------------------------------------------------------
// What agents observe (migration 0007_observe)

fn flow(port_id: Uuid, src: &str, start_ms: i64, action: FlowAction) -> FlowRecord {
    FlowRecord {
        port_id,
        direction: Direction::Ingress,
        src_addr: src.parse().unwrap(),
        src_port: Some(40000),
        dst_addr: "10.0.0.1".parse().unwrap(),
        dst_port: Some(22),
        protocol: 6,
        icmp_type: None,
        icmp_code: None,
        packets: 2,
        bytes: 120,
        start: start_ms,
        end: start_ms + 1000,
        action,
        rule_id: None,
    }
}

/// A stored group and a stored port (host `h1`, address 10.0.0.1) bound to it.
fn group_with_port(db: &Database) -> (Group, Port) {
    let g = group(SCOPE, "web", 1);
    let port = new_port(SCOPE, "h1", "tap1", &["10.0.0.1"], &[g.id], 10);
    w(db, |tx| {
        tx.insert_group(&g)?;
        tx.insert_port(&port)
    });
    (g, port)
}

fn observe_rule_hits_accumulate_and_go_with_rules_and_ports(f: &Fixture) {
    let db = f.db();
    let (g, port) = group_with_port(db);
    let (rule, other) = (g.rules[0].id, g.rules[1].id);
    let hit = |rule_id: Uuid, packets: i64, last_hit_ms: i64| RuleHitsRecord {
        rule_id,
        port_id: port.id,
        client_id: 1,
        packets,
        bytes: packets * 60,
        last_hit_ms,
    };
    assert_eq!(w(db, |tx| tx.add_rule_hits(&[hit(rule, 3, 5_000)])), 1);
    // Deltas add up, the latest hit wins whatever the order, and a deleted rule counts nothing.
    assert_eq!(w(db, |tx| tx.add_rule_hits(&[hit(rule, 7, 4_000), hit(Uuid::new_v4(), 1, 1)])), 1);
    assert_eq!(r(db, |tx| tx.rule_hits(&[rule, other])), vec![hit(rule, 10, 5_000)]);
    w(db, |tx| tx.add_rule_hits(&[hit(other, 1, 9_000)]));
    w(db, |tx| tx.delete_rule(&SCOPE, other));
    assert_eq!(r(db, |tx| tx.rule_hits(&[rule, other])).len(), 1, "the counts go with their rule");
    w(db, |tx| tx.delete_port(None, port.id));
    assert!(r(db, |tx| tx.rule_hits(&[rule])).is_empty(), "and with their port");
}

fn observe_flow_log_settings_grow_the_revision(f: &Fixture) {
    let db = f.db();
    let (g, port) = group_with_port(db);
    let revision = |db: &Database| r(db, |tx| tx.policy_revision());
    let start = revision(db);
    w(db, |tx| tx.set_flow_log(FlowLogTarget::Port(port.id), 1, Some(FlowLogEvents::Drop)));
    w(db, |tx| tx.set_flow_log(FlowLogTarget::Group(g.id), 1, Some(FlowLogEvents::Accept)));
    assert!(revision(db) > start, "an agent must reload a changed flow-log setting");
    assert_eq!(r(db, |tx| tx.get_flow_log(FlowLogTarget::Port(port.id))), Some(FlowLogEvents::Drop));
    w(db, |tx| tx.set_flow_log(FlowLogTarget::Port(port.id), 1, Some(FlowLogEvents::All)));
    let mut settings = r(db, |tx| tx.flow_log_settings(&[port.id], &[g.id]));
    settings.sort();
    assert_eq!(settings, vec![(FlowLogTarget::Port(port.id), FlowLogEvents::All), (FlowLogTarget::Group(g.id), FlowLogEvents::Accept)]);
    let before_off = revision(db);
    w(db, |tx| tx.set_flow_log(FlowLogTarget::Group(g.id), 1, None));
    assert!(revision(db) > before_off);
    assert_eq!(r(db, |tx| tx.get_flow_log(FlowLogTarget::Group(g.id))), None);
    w(db, |tx| tx.delete_port(None, port.id));
    assert!(r(db, |tx| tx.flow_log_settings(&[port.id], &[])).is_empty(), "a setting goes with its port");
}

fn observe_flows_filters_cap_and_prune(f: &Fixture) {
    let db = f.db();
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let batch = [flow(a, "192.0.2.1", 1_000, FlowAction::Reject), flow(b, "192.0.2.2", 2_000, FlowAction::Accept)];
    assert_eq!(w(db, |tx| tx.insert_flows(1, &batch, 10)), 0);
    w(db, |tx| tx.insert_flows(2, &[flow(a, "198.51.100.1", 3_000, FlowAction::Reject)], 10));
    let list = |filter: FlowLogFilter| r(db, |tx| tx.list_flows(&FlowLogFilter { limit: 100, ..filter }));
    let (count, mine) = list(FlowLogFilter { client_id: Some(1), ..FlowLogFilter::default() });
    assert_eq!(count, 2);
    assert_eq!(mine.iter().map(|s| s.record.clone()).collect::<Vec<_>>(), vec![batch[1].clone(), batch[0].clone()], "newest first");
    assert_eq!(list(FlowLogFilter { action: Some(FlowAction::Reject), ..FlowLogFilter::default() }).0, 2);
    assert_eq!(list(FlowLogFilter { port_ids: Some(vec![b]), ..FlowLogFilter::default() }).0, 1);
    assert_eq!(list(FlowLogFilter { port_ids: Some(vec![]), ..FlowLogFilter::default() }).0, 0);
    assert_eq!(list(FlowLogFilter { since_ms: Some(2_000), until_ms: Some(2_500), ..FlowLogFilter::default() }).0, 1);
    // The cap keeps the newest records of that client only.
    let more: Vec<FlowRecord> = (0..3).map(|i| flow(a, "203.0.113.1", 10_000 + i, FlowAction::Reject)).collect();
    assert_eq!(w(db, |tx| tx.insert_flows(1, &more, 3)), 2);
    let (count, kept) = list(FlowLogFilter { client_id: Some(1), ..FlowLogFilter::default() });
    assert_eq!((count, kept.iter().all(|s| s.record.start >= 10_000)), (3, true));
    assert_eq!(list(FlowLogFilter { client_id: Some(2), ..FlowLogFilter::default() }).0, 1);
    // Age: records of minutes before the cutoff go, in batches.
    assert_eq!(w(db, |tx| tx.prune_flows(10_001, 1)), 1);
    assert_eq!(w(db, |tx| tx.prune_flows(10_001, 10)), 1);
    assert_eq!(list(FlowLogFilter::default()).0, 2);
}
