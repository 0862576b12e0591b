//! Webhooks as Braze expects them: a retried delivery stored once in a stream with
//! `dedup_fields`, and back-pressure answered at once with 503 and `Retry-After`, never by
//! making the sender wait into its timeout.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use sqlx::{Connection, Executor};
use support::{ADMIN, App};
use tower::ServiceExt;
use tributary_server::ServerConfig;
use tributary_store::WriterConfig;

async fn put_settings(
    app: &App,
    stream: &str,
    body: serde_json::Value,
) -> (StatusCode, serde_json::Value) {
    app.send(
        Request::put(format!("/v2/stream/{stream}"))
            .header("authorization", ADMIN)
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap(),
    )
    .await
}

fn delivery(dispatch: &str, braze_id: &str, email: &str) -> String {
    json!({"dispatch_id": dispatch, "braze_id": braze_id, "external_id": braze_id,
           "email": email, "campaign_name": "welcome"})
    .to_string()
}

async fn a_stream_with_dedup_fields_stores_each_delivery_once(app: App) {
    let key = app.token(1, &["data_manager"], "7d").await;
    let url = format!("/c/1/braze_users?key={key}");

    // Bad settings: 400, nothing changes; an observer may not change them.
    for bad in [
        json!({"dedup_fields": ["a", "a"]}),
        json!({"dedup_fields": [""]}),
        json!({"dedup_fields": "dispatch_id"}),
        json!({"dedupe": ["x"]}),
    ] {
        let (s, b) = put_settings(&app, "braze_users", bad.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {b}");
    }
    let (s, _) = put_settings(&app, "bad$name", json!({})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let observer = app.token(1, &["observer"], "7d").await;
    let (s, _) = app
        .send(
            Request::put("/v2/stream/braze_users")
                .header("authorization", observer.as_str())
                .body(Body::from(json!({"dedup_fields": ["x"]}).to_string()))
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);

    // Without settings, a retry is stored again.
    let (s, _) = app
        .post(&url, None, delivery("d0", "b0", "zero@example.com"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .post(&url, None, delivery("d0", "b0", "zero@example.com"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.stream_count(1, "braze_users").await, 2);

    let (s, b) = put_settings(
        &app,
        "braze_users",
        json!({"dedup_fields": ["dispatch_id", "braze_id"]}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (_, b) = app.get("/v2/stream", ADMIN).await;
    let listed = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "braze_users")
        .unwrap()
        .clone();
    assert_eq!(
        listed["settings"]["dedup_fields"],
        json!(["dispatch_id", "braze_id"])
    );

    // A delivery, its retry (answered 200: the sender must stop retrying), another user of
    // the same dispatch, and the same user in another dispatch.
    let (s, b) = app
        .post(&url, None, delivery("d1", "b1", "one@example.com"))
        .await;
    assert_eq!(
        (s, b["data"]["duplicate_count"].clone()),
        (StatusCode::OK, json!(0))
    );
    let (s, b) = app
        .post(&url, None, delivery("d1", "b1", "one@example.com"))
        .await;
    assert_eq!(
        (s, b["data"]["duplicate_count"].clone()),
        (StatusCode::OK, json!(1)),
        "{b}"
    );
    let (s, _) = app
        .post(&url, None, delivery("d1", "b2", "two@example.com"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .post(&url, None, delivery("d2", "b1", "one@example.com"))
        .await;
    assert_eq!(s, StatusCode::OK);
    // Retries inside one request (an array) count once too; an event without the fields
    // cannot be recognised and is stored.
    let batch = format!(
        "[{}, {}, {}]",
        delivery("d3", "b3", "three@example.com"),
        delivery("d3", "b3", "three@example.com"),
        json!({"braze_id": "b4", "email": "four@example.com"})
    );
    let (s, b) = app.post(&url, None, batch).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["data"]["message_count"], 3);
    assert_eq!(b["data"]["duplicate_count"], 1);
    assert_eq!(app.stream_count(1, "braze_users").await, 2 + 3 + 2);

    // Another stream with the same payloads is not affected.
    let other = format!("/c/1/other?key={key}");
    for _ in 0..2 {
        let (s, _) = app
            .post(&other, None, delivery("d1", "b1", "one@example.com"))
            .await;
        assert_eq!(s, StatusCode::OK);
    }
    assert_eq!(app.stream_count(1, "other").await, 2);

    // Settings cleared: retries are stored again.
    let (s, _) = put_settings(&app, "braze_users", json!({})).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .post(&url, None, delivery("d1", "b1", "one@example.com"))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.stream_count(1, "braze_users").await, 8);
}

http_suite!(a_stream_with_dedup_fields_stores_each_delivery_once);

/// The event log's file is locked by another connection (as a long commit or a stalled disk
/// would hold it): the writer's queue fills, and every request beyond it is answered 503 with
/// `Retry-After` at once, while the lock is still held. Once it is released, every request
/// that was accepted into the queue is stored and answered 200.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_writer_answers_503_with_retry_after_at_once() {
    let (store, dir) = tributary_store::testing::sqlite_store().await;
    let queue = 4;
    let config = ServerConfig {
        writer: WriterConfig {
            queue_requests: queue,
            max_events_per_commit: 1,
        },
        ..App::config()
    };
    let app = Arc::new(App::with_config(store, config).await);
    let key = app.token(1, &["data_manager"], "7d").await;

    let mut lock = sqlx::SqliteConnection::connect(&format!(
        "sqlite://{}",
        dir.path().join("events.db").display()
    ))
    .await
    .unwrap();
    lock.execute("BEGIN IMMEDIATE").await.unwrap();

    let sent = 40;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..sent {
        let app = app.clone();
        let tx = tx.clone();
        let uri = format!("/c/1/pressure?key={key}");
        tokio::spawn(async move {
            let request = Request::post(uri)
                .header("content-type", "application/json")
                .body(Body::from(json!({"n": n}).to_string()))
                .unwrap();
            let response = app.router.clone().oneshot(request).await.unwrap();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let _ = tx.send((response.status(), retry_after));
        });
    }
    drop(tx);

    // While the lock is held: all but the queued requests (and the one the writer holds)
    // are refused, each with Retry-After, and none waits for the lock.
    let held_since = Instant::now();
    let mut refused = 0;
    while refused < sent - queue - 1 {
        let (status, retry_after) = tokio::time::timeout(Duration::from_secs(8), rx.recv())
            .await
            .expect("refusals come at once, not after the lock")
            .unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(retry_after.is_some_and(|s| (1..=60).contains(&s)));
        refused += 1;
    }
    assert!(held_since.elapsed() < Duration::from_secs(8));
    // Nothing is acknowledged before its commit, which waits for the lock.
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok((status, _)) = rx.try_recv() {
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        refused += 1;
    }

    lock.execute("ROLLBACK").await.unwrap();
    let mut accepted = 0;
    while let Some((status, _)) = rx.recv().await {
        match status {
            StatusCode::OK => accepted += 1,
            StatusCode::SERVICE_UNAVAILABLE => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(accepted + refused, sent);
    assert!(
        (queue..=queue + 1).contains(&accepted),
        "{accepted} accepted"
    );
    assert_eq!(app.stream_count(1, "pressure").await, accepted as i64);
}
