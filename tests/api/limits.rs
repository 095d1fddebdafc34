//! Holding under abuse (docs/operations.md, "Limits"): connection timeouts and limits, graceful
//! shutdown with long-polls open, per-key rate limits, and the unfinished-task limit, each over a
//! real socket.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use palisade::config::ConnectionLimits;
use serde_json::json;

use crate::helpers::*;

fn tight() -> ConnectionLimits {
    ConnectionLimits {
        header_timeout: Duration::from_secs(1),
        body_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(2),
        max_connections: 8,
        shutdown_timeout: Duration::from_secs(2),
    }
}

fn connect(app: &TestApp) -> TcpStream {
    let address = app.api.base.trim_start_matches("http://").trim_end_matches('/').to_string();
    let stream = TcpStream::connect(address).expect("connecting");
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    stream
}

/// Reads until the server closes the connection (or 10 s pass); returns what came and how long
/// it took.
fn read_to_close(mut stream: TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the server kept the connection open ({e}) after {:?}", started.elapsed()),
        }
    }
    (String::from_utf8_lossy(&received).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_and_unfinished_bodies_are_cut() {
    // A long idle timeout: what cuts the trickle below is the header timeout alone.
    let app = spawn_app_tuned(|c| c.connections = ConnectionLimits { idle_timeout: Duration::from_secs(30), ..tight() }).await;
    // Headers at a trickle: the head must be complete within the header timeout of its first byte.
    let slow = connect(&app);
    let trickle = std::thread::spawn(move || {
        let mut writer = slow.try_clone().unwrap();
        for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\n" {
            if writer.write_all(&[*byte]).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        read_to_close(slow)
    });
    // A body that never finishes: 408 in the Gcore body once the body timeout passes.
    let mut body = connect(&app);
    let head = format!(
        "POST /cloud/v1/securitygroups/1/1 HTTP/1.1\r\nHost: x\r\nAuthorization: APIKey {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"securi",
        app.api.token
    );
    body.write_all(head.as_bytes()).unwrap();
    let unfinished = std::thread::spawn(move || read_to_close(body));

    // A body trickled a byte at a time: never paused for long, but not whole within the timeout.
    let mut trickled = connect(&app);
    let head = format!(
        "POST /cloud/v1/securitygroups/1/1 HTTP/1.1\r\nHost: x\r\nAuthorization: APIKey {}\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\r\n",
        app.api.token
    );
    trickled.write_all(head.as_bytes()).unwrap();
    let dripping = std::thread::spawn(move || {
        let mut writer = trickled.try_clone().unwrap();
        let started = Instant::now();
        for byte in br#"{"security_group": {"name": "dripped", "description": "abcdef"}}"# {
            if writer.write_all(&[*byte]).is_err() || started.elapsed() > Duration::from_secs(8) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        read_to_close(trickled)
    });
    let (answer, _) = tokio::task::spawn_blocking(move || dripping.join().unwrap()).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");

    let (_, slow_took) = tokio::task::spawn_blocking(move || trickle.join().unwrap()).await.unwrap();
    assert!(slow_took < Duration::from_secs(8), "a trickled head held its connection {slow_took:?}");
    let (answer, _) = tokio::task::spawn_blocking(move || unfinished.join().unwrap()).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"exception_class\":\"RequestTimeout\""), "{answer}");
    assert_eq!(app.group_count().await, 0, "nothing was stored");
    // The server still serves.
    app.get("/healthz").await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed_after_the_idle_timeout() {
    let app = spawn_app_tuned(|c| c.connections = ConnectionLimits { header_timeout: Duration::from_secs(30), ..tight() }).await;
    let mut idle = connect(&app);
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let (_, idle_took) = tokio::task::spawn_blocking(move || read_to_close(idle)).await.unwrap();
    assert!(idle_took >= Duration::from_millis(1500) && idle_took < Duration::from_secs(8), "idle connection closed after {idle_took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_closed_at_once_and_the_rest_keep_working() {
    let app = spawn_app_tuned(|c| c.connections = ConnectionLimits { idle_timeout: Duration::from_secs(30), ..tight() }).await;
    // Eight connections held open (each sent half a request line, so none is idle-closed soon).
    let held: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut stream = connect(&app);
            stream.write_all(b"G").unwrap();
            stream
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = connect(&app);
    let (_, took) = tokio::task::spawn_blocking(move || read_to_close(refused)).await.unwrap();
    assert!(took < Duration::from_secs(2), "the ninth connection waited {took:?}");
    // The held ones are cut by the header timeout; then new connections are served again.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.get("/healthz").await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_long_polls_at_once_and_ends_within_the_deadline() {
    let app = spawn_app_tuned(|c| c.connections = tight()).await;
    let agent = app.agent("h1");
    let revision = agent.get("/palisade/v1/agents/h1/policy").await.expect(200).body["revision"].as_i64().unwrap();
    let poll = tokio::spawn(async move { agent.get(&format!("/palisade/v1/agents/h1/policy?after={revision}&wait=60")).await });
    // A request that never finishes its headers.
    let mut stuck = connect(&app);
    stuck.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    let (result, _leftovers) = app.stop().await;
    result.expect("a clean stop");
    let answered = poll.await.unwrap();
    assert_eq!(answered.status.as_u16(), 304, "{}", answered.text);
    assert!(started.elapsed() < Duration::from_secs(8), "stopping took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_key_beyond_its_rate_gets_429_with_retry_after_and_other_keys_do_not() {
    let app = spawn_app_tuned(|c| {
        c.api.rate_limit_reads = 5;
        c.api.rate_limit_writes = 1;
    })
    .await;
    // Reads: a burst of 10 passes, then 429 in the Gcore body with Retry-After.
    let mut statuses = Vec::new();
    for _ in 0..14 {
        statuses.push(app.get(V1).await);
    }
    assert!(statuses[..10].iter().all(|r| r.status.as_u16() == 200), "{:?}", statuses.iter().map(|r| r.status).collect::<Vec<_>>());
    let limited = statuses.last().unwrap();
    limited.expect_error(429, "TooManyRequests");
    let wait: u64 = limited.header("retry-after").expect("Retry-After").parse().unwrap();
    assert!((1..=2).contains(&wait), "Retry-After {wait}");
    // Another key, and the writes of the same key, have their own buckets.
    app.client_as(2, 2, None).get(V1).await.expect(200);
    app.post_json(V1, &json!({"security_group": {"name": "one"}})).await.expect(200);
    app.post_json(V1, &json!({"security_group": {"name": "two"}})).await.expect(200);
    let third = app.post_json(V1, &json!({"security_group": {"name": "three"}})).await;
    third.expect_error(429, "TooManyRequests");
    // After the wait, the key is served again; the refused write stored nothing.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get(V1).await.expect(200).body["count"], 2);
}

#[tokio::test]
async fn finished_tasks_are_pruned_by_age_and_acknowledged_ones_sooner() {
    use palisade_service::retention::{Retention, prune};
    let app = spawn_app().await;
    let kept = app.create_group(json!({"name": "kept", "rules": []})).await;
    let acknowledged = app.create_group(json!({"name": "seen", "rules": []})).await;
    app.wait_finished(&kept).await;
    app.wait_finished(&acknowledged).await;
    app.post_empty(&format!("{TASKS}/{acknowledged}/acknowledge")).await.expect(200);
    let retention = Retention { audit_days: 90, task_days: 7, flow_log_hours: 0 };
    let day = 86_400_000;
    let store = app.state.store.clone();
    let now = palisade_service::now_ms();
    // Two days on: the acknowledged task is gone, the other stays.
    let (_, pruned) = blocking(move || prune(&store, retention, now + 2 * day)).expect("pruning");
    assert_eq!(pruned, 1);
    app.get(&format!("{TASKS}/{acknowledged}")).await.expect_error(404, "NotFoundError");
    app.get(&format!("{TASKS}/{kept}")).await.expect(200);
    // Eight days on: every finished task is gone; the groups they made stay.
    let store = app.state.store.clone();
    let (_, pruned) = blocking(move || prune(&store, retention, now + 8 * day)).expect("pruning");
    assert_eq!(pruned, 1);
    assert_eq!(app.list_tasks("").await["count"], 0);
    assert_eq!(app.group_count().await, 2);
}
