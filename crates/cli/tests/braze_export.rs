//! End to end: `tributary serve` and `braze-sim` as real processes. Backfill, entries and
//! exits, coalescing, data points, faults, a SIGKILL in the middle of a backfill followed by
//! a restart, and the no-backfill case.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{ADMIN, BrazeSim, Serve, api, assert_no_secrets, client};

const SIM_KEY: &str = "sim-rest-key-7d3a9f";

async fn post_text(serve: &Serve, path: &str, text: &str) {
    let r = client()
        .post(serve.url(path))
        .bearer_auth(ADMIN)
        .body(text.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{path}");
}

/// Braze-webhook-shaped events, as one JSON array.
async fn send_users(serve: &Serve, users: &[(String, &str)]) {
    let body: Vec<Value> = users
        .iter()
        .map(|(id, plan)| json!({"external_id": id, "plan": plan}))
        .collect();
    post_text(serve, "/c/1/braze_users", &Value::Array(body).to_string()).await;
}

fn users(prefix: &str, n: usize, plan: &'static str) -> Vec<(String, &'static str)> {
    (0..n).map(|i| (format!("{prefix}{i:05}"), plan)).collect()
}

async fn wait_until(what: &str, within: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn audience_size(serve: &Serve, slug: &str) -> i64 {
    let (_, b) = api(
        serve,
        "GET",
        &format!("/api/segment/{slug}/size"),
        json!({}),
    )
    .await;
    if b["data"]["status"] != "ready" {
        return -1;
    }
    b["data"]["size"].as_i64().unwrap_or(-1)
}

async fn setup(serve: &Serve, sim: &BrazeSim, rate: Option<(u32, f64)>) -> i64 {
    post_text(
        serve,
        "/api/segment",
        r#"FILTER custom.plan = "gold" FROM user ALIAS vip"#,
    )
    .await;
    let mut config = json!({"apikey": SIM_KEY, "instance": sim.base});
    if let Some((requests, per)) = rate {
        config["rate_limit"] = json!({"requests": requests, "per_seconds": per});
    }
    let (s, b) = api(
        serve,
        "POST",
        "/v2/auth/braze",
        json!({"label": "sim", "config": config}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b["data"]["id"].as_i64().unwrap()
}

async fn create_job(serve: &Serve, auth: i64, backfill: bool) -> i64 {
    let (s, b) = api(
        serve,
        "POST",
        "/v2/job/braze-export",
        json!({"name": "vip to Braze", "auth_ids": [auth],
               "config": {"identifier_field": "external_id", "segment_ids": ["vip"], "withbackfill": backfill}}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b["data"]["id"].as_i64().unwrap()
}

async fn job(serve: &Serve, id: i64) -> Value {
    api(serve, "GET", &format!("/v2/job/{id}"), json!({}))
        .await
        .1["data"]
        .clone()
}

/// Waits until the job has sent everything in the log (caught up and idle).
async fn caught_up(serve: &Serve, id: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = job(serve, id).await;
        if j["state"] == "sleeping" && j["progress"]["phase"] == "following" {
            return j;
        }
        assert!(j["state"] != "failed", "job failed: {j}");
        assert!(Instant::now() < deadline, "job did not catch up: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sim_segments(sim: &BrazeSim, external_id: &str) -> Option<Value> {
    let u = sim.get(&format!("/_sim/users/{external_id}")).await;
    u.get("user")
        .map(|u| u["custom_attributes"]["lytics_segments"].clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_survives_a_sigkill_and_then_follows_entries_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let sim = BrazeSim::start(&[
        "--key",
        &format!("{SIM_KEY}=users.track"),
        "--latency-ms",
        "20",
    ]);
    let serve = Serve::start(dir.path(), None, "first");
    // 10 requests a second: the backfill of 3,000 users (40 requests) takes about 4 s.
    let auth = setup(&serve, &sim, Some((10, 1.0))).await;
    send_users(&serve, &users("u", 3_000, "gold")).await;
    wait_until("vip computed", Duration::from_secs(30), async || {
        audience_size(&serve, "vip").await == 3_000
    })
    .await;

    let id = create_job(&serve, auth, true).await;
    wait_until(
        "part of the backfill",
        Duration::from_secs(30),
        async || {
            let n = sim.get("/_sim/stats").await["users"].as_u64().unwrap_or(0);
            n >= 750
        },
    )
    .await;
    let mut serve = serve;
    serve.signal(libc::SIGKILL);
    let _ = serve.wait(Duration::from_secs(5));
    let sent_before_kill = sim.get("/_sim/stats").await["users"].as_u64().unwrap();
    assert!(
        sent_before_kill < 3_000,
        "the kill came in the middle of the backfill"
    );
    let first_log = serve.log_text();
    drop(serve);

    let serve = Serve::start(dir.path(), None, "second");
    let done = caught_up(&serve, id).await;
    let stats = sim.get("/_sim/stats").await;
    assert_eq!(stats["users"], 3_000);
    assert_eq!(sim_segments(&sim, "u00000").await, Some(json!(["vip"])));
    assert_eq!(sim_segments(&sim, "u02999").await, Some(json!(["vip"])));
    // The restart resumed from the committed position: at most what was in flight or not
    // yet saved (well under a second of requests) was sent twice.
    let points = stats["data_points"].as_u64().unwrap();
    assert!(
        (3_000..=3_000 + 15 * 75).contains(&points),
        "data points: {points}"
    );
    // The job's metrics cover its whole life, across the restart.
    let users_sent = done["metrics"]["users_sent"].as_u64().unwrap();
    assert!(
        (3_000..=3_000 + 15 * 75).contains(&users_sent),
        "users_sent: {users_sent}"
    );

    // Entries and exits follow the log.
    send_users(
        &serve,
        &[("u00001".into(), "silver"), ("newbie".into(), "gold")],
    )
    .await;
    wait_until(
        "the exit and the entry",
        Duration::from_secs(30),
        async || {
            sim_segments(&sim, "u00001").await == Some(json!([]))
                && sim_segments(&sim, "newbie").await == Some(json!(["vip"]))
        },
    )
    .await;

    // Changes that cancel out inside a batch send nothing: pause, enter and leave, resume.
    let (s, _) = api(&serve, "POST", &format!("/v2/job/{id}/pause"), json!({})).await;
    assert_eq!(s, 200);
    let before = sim.get("/_sim/stats").await;
    send_users(&serve, &[("blink".into(), "gold")]).await;
    send_users(
        &serve,
        &[("blink".into(), "silver"), ("stays".into(), "gold")],
    )
    .await;
    wait_until(
        "blink's entry and exit in the log",
        Duration::from_secs(30),
        async || {
            let (_, b) = api(
                &serve,
                "GET",
                "/api/entity/user/external_id/stays",
                json!({}),
            )
            .await;
            b["data"]["_segments"]
                .as_array()
                .is_some_and(|s| s.contains(&json!("vip")))
        },
    )
    .await;
    let (s, _) = api(&serve, "POST", &format!("/v2/job/{id}/resume"), json!({})).await;
    assert_eq!(s, 200);
    wait_until("stays sent", Duration::from_secs(30), async || {
        sim_segments(&sim, "stays").await == Some(json!(["vip"]))
    })
    .await;
    let after = sim.get("/_sim/stats").await;
    assert_eq!(
        sim_segments(&sim, "blink").await,
        None,
        "blink never reached Braze"
    );
    assert_eq!(
        after["data_points"].as_u64().unwrap() - before["data_points"].as_u64().unwrap(),
        1
    );

    // Faults: the next three requests fail with 5xx, then one in five does (300 users make
    // only a few requests, so the burst is what makes a retry certain); everything still
    // arrives, nothing is wasted. (One in two made a run of eight failures, and backoff past
    // the test's patience, a few percent likely.)
    sim.post(
        "/_sim/faults",
        json!({"burst_5xx": 3, "error_rate": 0.2, "latency_ms": 20}),
    )
    .await;
    let before = sim.get("/_sim/stats").await["data_points"]
        .as_u64()
        .unwrap();
    send_users(&serve, &users("f", 300, "gold")).await;
    wait_until(
        "the 300 users despite the faults",
        Duration::from_secs(60),
        async || {
            sim.get("/_sim/stats").await["data_points"]
                .as_u64()
                .unwrap()
                >= before + 300
        },
    )
    .await;
    let j = caught_up(&serve, id).await;
    let after = sim.get("/_sim/stats").await["data_points"]
        .as_u64()
        .unwrap();
    assert_eq!(
        after - before,
        300,
        "retried requests were never processed twice"
    );
    assert!(j["metrics"]["retries"].as_u64().unwrap() > 0, "{j}");

    let log = format!("{first_log}{}", serve.log_text());
    assert_no_secrets(&log, &[SIM_KEY, ADMIN]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_backfill_only_later_changes_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let sim = BrazeSim::start(&["--key", &format!("{SIM_KEY}=users.track")]);
    let serve = Serve::start(dir.path(), None, "serve");
    let auth = setup(&serve, &sim, None).await;
    send_users(&serve, &users("old", 200, "gold")).await;
    wait_until("vip computed", Duration::from_secs(30), async || {
        audience_size(&serve, "vip").await == 200
    })
    .await;
    let id = create_job(&serve, auth, false).await;
    caught_up(&serve, id).await;
    assert_eq!(sim.get("/_sim/stats").await["requests"], 0);
    send_users(
        &serve,
        &[("old00007".into(), "silver"), ("fresh".into(), "gold")],
    )
    .await;
    wait_until("two changes", Duration::from_secs(30), async || {
        sim.get("/_sim/stats").await["users"] == 2
    })
    .await;
    assert_eq!(sim_segments(&sim, "old00007").await, Some(json!([])));
    assert_eq!(sim_segments(&sim, "fresh").await, Some(json!(["vip"])));
    assert_eq!(sim.get("/_sim/stats").await["data_points"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_fails_the_job_with_a_clear_reason() {
    let dir = tempfile::tempdir().unwrap();
    let sim = BrazeSim::start(&["--key", "another-key=users.track"]);
    let serve = Serve::start(dir.path(), None, "serve");
    let auth = setup(&serve, &sim, None).await;
    send_users(&serve, &[("u1".into(), "gold")]).await;
    wait_until("vip computed", Duration::from_secs(30), async || {
        audience_size(&serve, "vip").await == 1
    })
    .await;
    let id = create_job(&serve, auth, true).await;
    let mut last = Value::Null;
    wait_until("failed", Duration::from_secs(30), async || {
        last = job(&serve, id).await;
        last["state"] == "failed"
    })
    .await;
    let reason = last["last_error"].as_str().unwrap();
    assert!(
        reason.contains("401") && reason.contains("apikey"),
        "{reason}"
    );
    assert_no_secrets(&serve.log_text(), &[SIM_KEY]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_moves_to_the_surviving_node() {
    let Some(cluster) = tributary_store::testing::pg_cluster() else {
        return;
    };
    let url = cluster.fresh_database().await;
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let sim = BrazeSim::start(&[
        "--key",
        &format!("{SIM_KEY}=users.track"),
        "--latency-ms",
        "20",
    ]);
    let a = Serve::start(dirs[0].path(), Some(&url), "a");
    let b = Serve::start(dirs[1].path(), Some(&url), "b");
    let auth = setup(&a, &sim, Some((10, 1.0))).await;
    send_users(&a, &users("u", 2_000, "gold")).await;
    wait_until("vip computed", Duration::from_secs(60), async || {
        audience_size(&b, "vip").await == 2_000
    })
    .await;
    let id = create_job(&a, auth, true).await;
    wait_until(
        "part of the backfill",
        Duration::from_secs(30),
        async || sim.get("/_sim/stats").await["users"].as_u64().unwrap_or(0) >= 300,
    )
    .await;
    // Kill the node running the job (its log says so); the other takes it over.
    let started = |s: &Serve| ran_job(&s.log_text(), id);
    let (mut runner, survivor) = if started(&a) { (a, b) } else { (b, a) };
    runner.signal(libc::SIGKILL);
    let _ = runner.wait(Duration::from_secs(5));
    drop(runner);
    caught_up(&survivor, id).await;
    assert_eq!(sim.get("/_sim/stats").await["users"], 2_000);
    assert!(started(&survivor), "the surviving node ran the job");
}

/// Whether a node's log says it started job `id`.
fn ran_job(log: &str, id: i64) -> bool {
    let field = format!("job={id} ");
    log.lines()
        .any(|line| line.contains("job started") && line.contains(&field))
}
