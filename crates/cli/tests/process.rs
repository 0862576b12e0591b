//! Process-level tests: `tributary serve` as a real child process. Crash safety (SIGKILL
//! under load loses no acknowledged event), graceful shutdown (SIGTERM lets an in-flight request
//! finish), two processes on one PostgreSQL database, and no secret in any log line.

mod support;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{ADMIN, Serve, assert_no_secrets, client, create_token, stream_events, wait_for_ok};

/// Load for the crash test is bounded in events and in time.
const CRASH_SENDERS: usize = 16;
/// At most 16 × 150 requests × 2 events on average: within the events API's 10,000.
const CRASH_MAX_REQUESTS_PER_SENDER: usize = 150;
/// SIGKILL once this many events were acknowledged, or after `CRASH_LOAD_FOR`.
const CRASH_KILL_AFTER_ACKS: usize = 1_500;
const CRASH_LOAD_FOR: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), None, "first");
    let token = create_token(&serve.base, 1, &["data_manager"]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    for sender in 0..CRASH_SENDERS {
        let url = serve.url(&format!("/c/1/crash?key={token}"));
        let stop = stop.clone();
        let acks = acks.clone();
        senders.push(tokio::spawn(async move {
            let http = client();
            let mut acknowledged = Vec::new();
            let mut n = 0;
            while n < CRASH_MAX_REQUESTS_PER_SENDER && !stop.load(Ordering::Relaxed) {
                // Every fourth request is a small array, so group commits mix both shapes.
                let ids: Vec<String> = (0..if n % 4 == 3 { 5 } else { 1 })
                    .map(|i| format!("{sender}-{n}-{i}"))
                    .collect();
                let body = if ids.len() == 1 {
                    json!({"id": ids[0], "braze_id": "b"})
                } else {
                    json!(ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>())
                };
                n += 1;
                match http.post(&url).json(&body).send().await {
                    Ok(r) if r.status() == 200 => {
                        acks.fetch_add(ids.len(), Ordering::Relaxed);
                        acknowledged.extend(ids);
                    }
                    _ => break,
                }
            }
            acknowledged
        }));
    }
    let started = Instant::now();
    while acks.load(Ordering::Relaxed) < CRASH_KILL_AFTER_ACKS && started.elapsed() < CRASH_LOAD_FOR
    {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    serve.signal(libc::SIGKILL);
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = HashSet::new();
    for s in senders {
        acknowledged.extend(s.await.unwrap());
    }
    assert!(
        acknowledged.len() > 100,
        "too little load reached the server: {}",
        acknowledged.len()
    );
    drop(serve);

    let restarted = Serve::start(dir.path(), None, "second");
    let stored: HashSet<String> = stream_events(&restarted.base, "crash")
        .await
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    let lost: Vec<_> = acknowledged.difference(&stored).collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged events lost, e.g. {:?}",
        lost.len(),
        lost.first()
    );
    assert_no_secrets(&restarted.log_text(), &[ADMIN, &token]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_requests_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(dir.path(), None, "first");
    let addr = serve.base.trim_start_matches("http://").to_string();
    let body = json!({"id": "in-flight"}).to_string();
    let (head, tail) = body.split_at(body.len() / 2);
    let mut socket = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        socket,
        "POST /collect/json/graceful?key={ADMIN} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{head}",
        body.len()
    )
    .unwrap();
    socket.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    serve.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    socket.write_all(tail.as_bytes()).unwrap();
    let mut response = String::new();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let n = socket.read(&mut buf).unwrap();
    response.push_str(&String::from_utf8_lossy(&buf[..n]));
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    drop(socket);
    assert!(
        serve.wait(Duration::from_secs(15)),
        "serve did not exit cleanly"
    );
    assert!(
        std::net::TcpStream::connect(&addr).is_err(),
        "still accepting after SIGTERM"
    );

    let restarted = Serve::start(dir.path(), None, "second");
    let events = stream_events(&restarted.base, "graceful").await;
    assert_eq!(events, vec![json!({"id": "in-flight"})]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_postgres_database() {
    let Some(cluster) = tributary_store::testing::pg_cluster() else {
        return;
    };
    let url = cluster.fresh_database().await;
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    // Both start at once: account 1 and the admin token must be created exactly once.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Serve::start(dir_a.path(), Some(&url), "a"));
        let b = s.spawn(|| Serve::start(dir_b.path(), Some(&url), "b"));
        (a.join().unwrap(), b.join().unwrap())
    });
    let http = client();

    // A token made on one node works on the other.
    let token = create_token(&a.base, 1, &["data_manager"]).await;
    let r = http
        .post(b.url("/v2/account"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let acme: serde_json::Value = r.json().await.unwrap();
    assert_eq!(acme["data"]["aid"], 2);

    // Both nodes take load at once; every event is stored once and visible on both.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (i, node) in [a.base.clone(), b.base.clone()].into_iter().enumerate() {
        for worker in 0..4 {
            let url = format!("{node}/c/1/shared?key={token}");
            tasks.push(tokio::spawn(async move {
                let http = client();
                for n in 0..50 {
                    let r = http
                        .post(&url)
                        .json(&json!({"id": format!("{i}-{worker}-{n}")}))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(60));
    for node in [&a, &b] {
        let ids: HashSet<String> = stream_events(&node.base, "shared")
            .await
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(ids.len(), 400);
        let r = http
            .get(node.url("/v2/stream"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let streams: serde_json::Value = r.json().await.unwrap();
        assert_eq!(streams["data"][0]["count"], 400);
    }

    // A token deleted on one node stops working on the other within the cache lifetime.
    let r = http
        .get(a.url("/v2/token"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let list: serde_json::Value = r.json().await.unwrap();
    let id = list["data"][0]["id"].as_i64().unwrap();
    let r = http
        .delete(a.url(&format!("/v2/token/{id}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(tributary_server::auth::TOKEN_CACHE_TTL + Duration::from_millis(500)).await;
    let r = http
        .post(b.url("/collect/json/shared"))
        .bearer_auth(&token)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    for node in [&a, &b] {
        assert_no_secrets(&node.log_text(), &[ADMIN, &token]);
    }
}

/// Two `serve` nodes, each with its own data dir, on one fresh PostgreSQL database; `None`
/// when there is no PostgreSQL here (and the tests are not required to run). The dirs come
/// first, so a caller's bindings drop the processes before their dirs.
async fn two_nodes() -> Option<([tempfile::TempDir; 2], Serve, Serve, String)> {
    let url = tributary_store::testing::pg_cluster()?
        .fresh_database()
        .await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let a = Serve::start(dirs[0].path(), Some(&url), "a");
    let b = Serve::start(dirs[1].path(), Some(&url), "b");
    Some((dirs, a, b, url))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipeline_work_moves_to_a_surviving_node() {
    let Some((_dirs, a, b, url)) = two_nodes().await else {
        return;
    };
    let http = client();
    // A webhook through node A becomes a profile readable on node B, whoever processed it.
    send_webhook(
        &http,
        &a,
        r#"{"braze_id": "b-1", "email": "One@X.io", "city": "AnyTown"}"#,
    )
    .await;
    let profile = wait_for_ok(
        &b.url("/api/entity/user/email/one@x.io"),
        ADMIN,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(profile["data"]["city"], "AnyTown");
    // Kill the node that holds account 1's pipeline lease, hard; the other takes the account
    // over once the lease lapses.
    let db = sqlx::PgPool::connect(&url).await.unwrap();
    let holder = pipeline_holder(&db).await;
    let (mut dead, survivor) = if a.log_text().contains(&holder) {
        (a, b)
    } else {
        (b, a)
    };
    assert!(
        dead.log_text().contains(&holder),
        "the lease holder {holder} is one of the two nodes"
    );
    dead.signal(libc::SIGKILL);
    let _ = dead.wait(Duration::from_secs(5));
    send_webhook(
        &http,
        &survivor,
        r#"{"braze_id": "b-2", "email": "two@x.io", "city": "Newtown"}"#,
    )
    .await;
    let profile = wait_for_ok(
        &survivor.url("/api/entity/user/braze_id/b-2"),
        ADMIN,
        Duration::from_secs(15),
    )
    .await;
    assert_eq!(profile["data"]["city"], "Newtown");
    let new_holder = pipeline_holder(&db).await;
    assert_ne!(new_holder, holder);
    assert!(survivor.log_text().contains(&new_holder));
}

/// Sends one webhook to account 1's `braze_users` through `node`; it must be acknowledged.
async fn send_webhook(http: &reqwest::Client, node: &Serve, body: &'static str) {
    let r = http
        .post(node.url("/c/1/braze_users"))
        .bearer_auth(ADMIN)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The node holding account 1's pipeline lease now (waits for one).
async fn pipeline_holder(db: &sqlx::PgPool) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_micros() as i64;
        let holder: Option<String> = sqlx::query_scalar(
            "SELECT holder FROM leases WHERE name = 'pipeline:1' AND expires_at > $1",
        )
        .bind(now)
        .fetch_optional(db)
        .await
        .unwrap();
        if let Some(holder) = holder {
            return holder;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "nobody holds the lease"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two nodes on one PostgreSQL database: events arrive through both while an audience is
/// created through one; the membership log that results is the same as one node would write
/// (per profile, entries and exits alternate; the final members are the audience's size).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_keep_one_membership_log() {
    let Some((_dirs, a, b, _)) = two_nodes().await else {
        return;
    };
    let http = client();
    let nodes = [&a, &b];
    let send = |node: &Serve, body: String| {
        let request = http
            .post(node.url("/c/1/braze_users"))
            .bearer_auth(ADMIN)
            .body(body);
        async move {
            let r = request.send().await.unwrap();
            assert_eq!(r.status(), 200);
        }
    };
    for n in 0..60 {
        let city = if n % 3 == 0 { "Paris" } else { "Rome" };
        send(
            nodes[n % 2],
            format!(r#"{{"braze_id": "p{n}", "city": "{city}"}}"#),
        )
        .await;
    }
    let r = http
        .post(a.url("/api/segment"))
        .bearer_auth(ADMIN)
        .body("FILTER city == \"Paris\" ALIAS paris")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // Moves in both directions while the audience is being computed.
    for n in 0..30 {
        let city = if n % 2 == 0 { "Paris" } else { "Rome" };
        send(
            nodes[(n + 1) % 2],
            format!(r#"{{"braze_id": "p{n}", "city": "{city}"}}"#),
        )
        .await;
    }
    // Paris now: p0..p29 with even n, and p30..p59 with n % 3 == 0.
    let expected = (0..30).filter(|n| n % 2 == 0).count() + (30..60).filter(|n| n % 3 == 0).count();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let size = wait_for_ok(
            &b.url("/api/segment/paris/size"),
            ADMIN,
            Duration::from_secs(5),
        )
        .await;
        if size["data"]["status"] == "ready" && size["data"]["size"] == expected {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "size never settled: {size}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = wait_for_ok(
        &a.url("/api/segment/paris/changes?since=0&limit=10000"),
        ADMIN,
        Duration::from_secs(5),
    )
    .await;
    let mut state: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    let mut last_seq = 0;
    for c in log["data"]["changes"].as_array().unwrap() {
        let seq = c["seq"].as_i64().unwrap();
        assert!(seq > last_seq, "sequence goes forward: {log}");
        last_seq = seq;
        let entered = c["change"] == "enter";
        let was = state.insert(c["profile_id"].as_str().unwrap().to_string(), entered);
        assert_ne!(
            was,
            Some(entered),
            "a change repeated for one profile: {log}"
        );
        assert!(was.is_some() || entered, "an exit before any entry: {log}");
    }
    assert_eq!(state.values().filter(|m| **m).count(), expected);
}
