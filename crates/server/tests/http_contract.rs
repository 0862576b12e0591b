//! The HTTP contract of the collection and administration APIs: every status code, roles and
//! tenant isolation. Runs in-process (no sockets) against SQLite and PostgreSQL.

#[macro_use]
mod support;

use std::io::Write;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::json;
use support::{ADMIN, App, BODY_LIMIT};
use tributary_core::{NewToken, Role, TokenSecret};

const SEED_WEBHOOK: &str = r#"{
  "city": "AnyTown", "country": "United States", "first_name": "John", "gender": "male",
  "language": "English", "last_name": "Smith", "date_of_birth": "19820101",
  "phone_number": "5551231234", "time_zone": "GMT+7", "twitter_handle": "johnsmith",
  "email": "john.smith@email.com", "braze_id": "xxxxxx"
}"#;

async fn webhook_object_array_and_ndjson_are_stored(app: App) {
    let dm = app.token(1, &["data_manager"], "30d").await;
    let (s, b) = app
        .post(&format!("/c/1/braze_users?key={dm}"), None, SEED_WEBHOOK)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["message_count"], 1);
    assert_eq!(b["data"]["rejected_count"], 0);
    let (s, b) = app
        .post("/collect/json/web", Some(&dm), r#"[{"a":1},{"a":2}]"#)
        .await;
    assert_eq!(
        (s, b["data"]["message_count"].clone()),
        (StatusCode::OK, json!(2))
    );
    let (s, b) = app
        .post(
            &format!("/collect/json/web?access_token={dm}"),
            None,
            "{\"a\":3}\n{\"a\":4}\n",
        )
        .await;
    assert_eq!(
        (s, b["data"]["message_count"].clone()),
        (StatusCode::OK, json!(2))
    );

    let (s, b) = app.get("/v2/stream", &dm).await;
    assert_eq!(s, StatusCode::OK);
    let names: Vec<_> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].clone(), s["count"].clone()))
        .collect();
    assert_eq!(
        names,
        vec![(json!("braze_users"), json!(1)), (json!("web"), json!(4))]
    );
    // Nothing is applied to profiles until the pipeline runs; then it has caught up.
    let lag = |b: &serde_json::Value| -> Vec<serde_json::Value> {
        let streams = b["data"].as_array().cloned().unwrap_or_default();
        streams
            .iter()
            .map(|s| s["pipeline_lag_events"].clone())
            .collect()
    };
    assert_eq!(lag(&b), vec![json!(1), json!(4)]);
    app.engine.catch_up_all().await.unwrap();
    let (_, b) = app.get("/v2/stream", &dm).await;
    assert_eq!(lag(&b), vec![json!(0), json!(0)]);
    let (_, b) = app.get("/v2/stream/braze_users/events?limit=5", &dm).await;
    assert_eq!(b["data"][0]["event"]["braze_id"], "xxxxxx");
    assert_eq!(b["data"][0]["event"]["date_of_birth"], "19820101");
    let (_, b) = app.get("/v2/stream/web/events?limit=2", &dm).await;
    let ns: Vec<_> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["a"].clone())
        .collect();
    assert_eq!(ns, vec![json!(4), json!(3)], "newest first");
}

async fn missing_unknown_and_expired_tokens_are_401(app: App) {
    let (s, b) = app.post("/c/1/braze_users", None, "{}").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(b["message"].as_str().unwrap().contains("no access token"));
    let (s, _) = app.post("/c/1/braze_users?key=nope", None, "{}").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _) = app.post("/collect/json/x", Some("nope"), "{}").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    let secret = TokenSecret::generate();
    app.store
        .create_token(&NewToken {
            account_id: Some(1),
            name: "old".into(),
            description: String::new(),
            roles: vec![Role::Admin],
            hash: secret.hash(),
            created_at: 0,
            expires_at: Some(1),
        })
        .await
        .unwrap();
    let (s, b) = app
        .post("/collect/json/x", Some(secret.expose()), "{}")
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(b["message"].as_str().unwrap().contains("expired"));
    assert_eq!(app.stream_count(1, "x").await, 0);
}

async fn roles_are_enforced_per_endpoint(app: App) {
    let observer = app.token(1, &["observer"], "7d").await;
    let audience = app.token(1, &["audience_manager"], "none").await;
    let dm = app.token(1, &["data_manager"], "90d").await;
    let admin = app.token(1, &["admin"], "none").await;

    for t in [&observer, &audience] {
        let (s, b) = app.post("/collect/json/x", Some(t), "{}").await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
        assert!(b["message"].as_str().unwrap().contains("data_manager"));
        let (s, _) = app.get("/v2/stream/x/events", t).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = app.get("/v2/stream", t).await;
        assert_eq!(s, StatusCode::OK);
    }
    for t in [&observer, &audience, &dm] {
        let (s, _) = app
            .post("/v2/token", Some(t), r#"{"name":"x","roles":["admin"]}"#)
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN);
        let (s, _) = app.get("/v2/token", t).await;
        assert_eq!(s, StatusCode::FORBIDDEN);
    }
    let (s, _) = app.post("/collect/json/x", Some(&admin), "{}").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .post(
            "/v2/token",
            Some(&admin),
            r#"{"name":"x","roles":["observer"]}"#,
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // Only the install admin creates accounts.
    let (s, b) = app
        .post("/v2/account", Some(&admin), r#"{"name":"Acme"}"#)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    assert_eq!(app.stream_count(1, "x").await, 1);
}

async fn tokens_never_reach_another_account(app: App) {
    let (s, b) = app
        .post("/v2/account", Some(ADMIN), r#"{"name":"Acme"}"#)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let acme = b["data"]["aid"].as_i64().unwrap();
    assert_eq!(acme, 2);
    let acme_dm = app.token(acme, &["data_manager"], "30d").await;
    let acme_admin = app.token(acme, &["admin"], "30d").await;
    let one_dm = app.token(1, &["data_manager"], "30d").await;

    // Path account and account_id parameter are both checked.
    let (s, b) = app
        .post(&format!("/c/1/braze_users?key={acme_dm}"), None, "{}")
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
    let (s, _) = app
        .post(
            &format!("/collect/json/s?account_id=1&key={acme_dm}"),
            None,
            "{}",
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = app.get("/v2/stream?account_id=1", &acme_admin).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Collected data lands in the token's own account.
    let (s, _) = app.post("/collect/json/s", Some(&acme_dm), "{}").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (
            app.stream_count(acme, "s").await,
            app.stream_count(1, "s").await
        ),
        (1, 0)
    );
    let (_, b) = app.get("/v2/stream", &one_dm).await;
    assert_eq!(b["data"], json!([]));
    // Token ids of another account cannot be listed or deleted.
    let (_, b) = app.get("/v2/token", &acme_admin).await;
    let acme_ids: Vec<i64> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_i64().unwrap())
        .collect();
    assert_eq!(acme_ids.len(), 2);
    let (_, b) = app.get("/v2/token?account_id=1", ADMIN).await;
    let one_id = b["data"][0]["id"].as_i64().unwrap();
    let (s, _) = app
        .send(
            Request::delete(format!("/v2/token/{one_id}"))
                .header("authorization", &acme_admin)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // The install admin acts in any account it names, and 404s on accounts that do not exist.
    let (s, _) = app.post("/c/2/s", Some(ADMIN), "{}").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.post("/c/9/s", Some(ADMIN), "{}").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(app.stream_count(acme, "s").await, 2);
}

async fn token_lifecycle_and_listing_hides_secrets(app: App) {
    let (s, b) = app
        .post("/v2/token", Some(ADMIN), r#"{"name":"braze webhook","description":"Braze","roles":["data_manager"],"expires":"7d"}"#)
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let token = b["data"]["token"].as_str().unwrap().to_string();
    let id = b["data"]["id"].as_i64().unwrap();
    assert!(b["data"]["expires"].is_string());
    let (_, list) = app.get("/v2/token", ADMIN).await;
    let text = list.to_string();
    assert!(!text.contains(&token));
    assert!(!text.contains("hash"));
    assert_eq!(list["data"][0]["roles"], json!(["data_manager"]));
    let (s, _) = app.post("/collect/json/s", Some(&token), "{}").await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .send(
            Request::delete(format!("/v2/token/{id}"))
                .header("authorization", ADMIN)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.post("/collect/json/s", Some(&token), "{}").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);

    for bad in [
        r#"{"name":"","roles":["admin"]}"#,
        r#"{"name":"x","roles":[]}"#,
        r#"{"name":"x","roles":["root"]}"#,
        r#"{"name":"x","roles":["admin"],"expires":"1y"}"#,
        r#"{"name":"x","roles":["admin"],"colour":"red"}"#,
        "not json",
    ] {
        let (s, b) = app.post("/v2/token", Some(ADMIN), bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {b}");
    }
    let (_, list) = app.get("/v2/token", ADMIN).await;
    assert_eq!(list["data"], json!([]));
}

async fn malformed_bodies_are_400_with_position_and_store_nothing(app: App) {
    let cases: &[(&str, &str, &str)] = &[
        ("/collect/json/s", "{\"a\":1}\n{\"a\":}", "line 2, column 6"),
        (
            "/collect/json/s",
            "[{\"a\":1}, 7]",
            "array element 2 is a number",
        ),
        ("/collect/json/s", "", "empty"),
        ("/collect/json/bad$name", "{}", "stream name"),
        (
            "/collect/json/s?timestamp_field=ts",
            r#"{"ts":"later"}"#,
            "\"ts\"",
        ),
        ("/collect/json/s?dryrun=perhaps", "{}", "dryrun"),
        ("/collect/bulk/s", "a,b\n1,2\n3\n", "at line 3"),
        ("/collect/bulk/s?delimiter=ab", "a\n1\n", "delimiter"),
        ("/c/one/s", "{}", "account number"),
    ];
    for (uri, body, expected) in cases {
        let (s, b) = app.post(uri, Some(ADMIN), body.to_string()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}: {b}");
        let message = b["message"].as_str().unwrap();
        assert!(message.contains(expected), "{uri}: {message}");
    }
    let (s, _) = app.get("/v2/stream/s/events?limit=0", ADMIN).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(app.stream_count(1, "s").await, 0);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

async fn oversized_bodies_are_413(app: App) {
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(BODY_LIMIT));
    let (s, b) = app.post("/collect/json/s", Some(ADMIN), big.clone()).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{b}");
    // Without Content-Length (streamed) the limit still holds.
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(big.clone().into_bytes())]);
    let r = Request::post("/collect/json/s")
        .header("authorization", ADMIN)
        .body(Body::from_stream(stream))
        .unwrap();
    assert_eq!(app.send(r).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    // A small gzip body that inflates past the limit.
    let r = Request::post("/collect/json/s")
        .header("authorization", ADMIN)
        .header("content-encoding", "gzip")
        .body(Body::from(gzip(big.as_bytes())))
        .unwrap();
    assert_eq!(app.send(r).await.0, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(app.stream_count(1, "s").await, 0);
}

async fn gzip_csv_bulk_with_options(app: App) {
    let csv =
        "external_id|email|signed_up\nu1|a@x.io|2024-01-02T00:00:00Z\nu2|b@x.io\nu3||2024-02-01\n";
    let r = Request::post(
        "/collect/bulk/braze_csv?delimiter=%7C&droperrors=true&timestamp_field=signed_up",
    )
    .header("authorization", ADMIN)
    .header("content-type", "text/csv")
    .header("content-encoding", "gzip")
    .body(Body::from(gzip(csv.as_bytes())))
    .unwrap();
    let (s, b) = app.send(r).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["message_count"], 2);
    assert_eq!(b["data"]["rejected_count"], 1);
    assert_eq!(b["data"]["rejected"][0]["line"], 3);
    let (_, events) = app.get("/v2/stream/braze_csv/events", ADMIN).await;
    assert_eq!(
        events["data"][0]["event"],
        json!({"external_id": "u3", "signed_up": "2024-02-01"})
    );
    assert_eq!(events["data"][0]["event_time"], "2024-02-01T00:00:00Z");
    assert_eq!(events["data"][1]["event_time"], "2024-01-02T00:00:00Z");

    // `headers` names the columns of a file without a header row.
    let (s, b) = app
        .post(
            "/collect/bulk/braze_csv?headers=external_id,email",
            Some(ADMIN),
            "u9,z@x.io\n",
        )
        .await;
    assert_eq!(
        (s, b["data"]["message_count"].clone()),
        (StatusCode::OK, json!(1))
    );
    // Bulk also takes JSON when the request says so.
    let r = Request::post("/collect/bulk/braze_csv")
        .header("authorization", ADMIN)
        .header("content-type", "application/json")
        .body(Body::from(r#"[{"external_id":"u10"}]"#))
        .unwrap();
    let (s, _) = app.send(r).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(app.stream_count(1, "braze_csv").await, 4);
}

async fn dryrun_validates_without_storing(app: App) {
    let (s, b) = app
        .post(
            "/collect/json/s?dryrun=true",
            Some(ADMIN),
            r#"[{"a":1},{"a":2}]"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["data"]["message_count"], 2);
    assert_eq!(b["data"]["dryrun"], true);
    assert_eq!(app.stream_count(1, "s").await, 0);
}

async fn health_metrics_and_unknown_routes(app: App) {
    let r = Request::get("/healthz").body(Body::empty()).unwrap();
    assert_eq!(app.send(r).await.0, StatusCode::OK);
    app.post("/collect/json/s", Some(ADMIN), "{}").await;
    let r = Request::get("/metrics").body(Body::empty()).unwrap();
    let (s, text) = app.send(r).await;
    assert_eq!(s, StatusCode::OK);
    let text = text.as_str().unwrap_or_default().to_string();
    for name in [
        "tributary_http_requests_total",
        "tributary_events_accepted_total",
        "tributary_commit_seconds",
    ] {
        assert!(text.contains(name), "metrics lack {name}");
    }
    assert!(
        text.contains("tributary_pipeline_lag_events{account=\"1\"} 1"),
        "the unapplied event is counted: {text}"
    );
    assert!(!text.contains(ADMIN));
    let r = Request::get("/nope").body(Body::empty()).unwrap();
    assert_eq!(app.send(r).await.0, StatusCode::NOT_FOUND);
}

/// Every error is the JSON envelope (seen: plain text for bad query strings and paths, an
/// empty 405, a 404 echoing a 20 KB path).
async fn every_error_is_the_json_envelope(app: App) {
    let long = format!("/{}", "a".repeat(20_000));
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            Request::get("/api/segment/lytics_all/scan?limit=-5"),
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            Request::get("/api/segment/lytics_all/changes?since=abc"),
            StatusCode::BAD_REQUEST,
            "since",
        ),
        (
            Request::get("/api/segment/%E0%A4%A"),
            StatusCode::BAD_REQUEST,
            "UTF-8",
        ),
        (
            Request::get(long.as_str()),
            StatusCode::URI_TOO_LONG,
            "at most 8192",
        ),
        (
            Request::patch("/api/segment"),
            StatusCode::METHOD_NOT_ALLOWED,
            "not allowed",
        ),
    ]
    .into_iter()
    .map(|(r, s, m)| {
        (
            r.header("authorization", ADMIN)
                .body(Body::empty())
                .unwrap(),
            s,
            m,
        )
    })
    .collect();
    for (request, status, says) in cases {
        let what = format!("{} {}", request.method(), request.uri());
        let what: String = what.chars().take(80).collect();
        let (s, body) = app.send(request).await;
        assert_eq!(s, status, "{what}: {body}");
        assert!(body.is_object(), "{what}: not an envelope: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "{what}: {message}");
        assert!(message.len() < 1_000, "{what}: the message echoes too much");
    }
}

/// Bodies that cannot be what the sender meant are refused, saying why (seen: each answered
/// 200 with nothing stored, or stored garbage).
async fn unusable_bulk_bodies_are_refused(app: App) {
    let cases: Vec<(&str, &str, &[u8], StatusCode, &str)> = vec![
        (
            "text/csv",
            "",
            b"",
            StatusCode::BAD_REQUEST,
            "the body is empty",
        ),
        (
            "text/csv",
            "",
            b"  \n",
            StatusCode::BAD_REQUEST,
            "the body is empty",
        ),
        (
            "text/csv",
            "",
            br#"{"a": 1}"#,
            StatusCode::BAD_REQUEST,
            "looks like JSON",
        ),
        (
            "application/x-www-form-urlencoded",
            "",
            b"a=1&b=2",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "not accepted by /collect/bulk",
        ),
        (
            "text/csv",
            "br",
            b"a,b\n1,2\n",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "\"br\"",
        ),
        (
            "text/csv",
            "deflate",
            b"a,b\n1,2\n",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "\"deflate\" is not supported",
        ),
    ];
    for (content_type, encoding, body, status, says) in cases {
        let mut request = Request::post("/collect/bulk/odd")
            .header("authorization", ADMIN)
            .header("content-type", content_type);
        if !encoding.is_empty() {
            request = request.header("content-encoding", encoding);
        }
        let (s, reply) = app
            .send(request.body(Body::from(body.to_vec())).unwrap())
            .await;
        assert_eq!(s, status, "{content_type} {encoding}: {reply}");
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(says),
            "{content_type} {encoding}: {message}"
        );
    }
    assert_eq!(app.stream_count(1, "odd").await, 0, "nothing stored");
}

/// What the pipeline could not read was acknowledged and then lost (seen: stored as `null`,
/// never a profile). Now it is a 400 that says what and where, and nothing is stored.
async fn events_the_pipeline_cannot_read_are_refused(app: App) {
    // Sized to this server's 4 KiB body limit: 200 levels, a 400-digit integer.
    let deep = format!("{}1{}", "{\"a\":".repeat(200), "}".repeat(200));
    let big = format!("{{\"n\": {}}}", "9".repeat(400));
    let cases = [
        (r#"{"n": 1e999999}"#.to_string(), "too large"),
        (big, "too large"),
        (r#"{"ok": 1, "s": "\ud800"}"#.to_string(), "invalid escape"),
        (deep, "128 levels"),
    ];
    for (body, says) in cases {
        let (s, reply) = app.post("/c/1/odd", Some(ADMIN), body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{reply}");
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(says) && message.contains("line 1"),
            "{message}"
        );
    }
    assert_eq!(app.stream_count(1, "odd").await, 0, "nothing stored");
}

http_suite!(
    events_the_pipeline_cannot_read_are_refused,
    unusable_bulk_bodies_are_refused,
    every_error_is_the_json_envelope,
    webhook_object_array_and_ndjson_are_stored,
    missing_unknown_and_expired_tokens_are_401,
    roles_are_enforced_per_endpoint,
    tokens_never_reach_another_account,
    token_lifecycle_and_listing_hides_secrets,
    malformed_bodies_are_400_with_position_and_store_nothing,
    oversized_bodies_are_413,
    gzip_csv_bulk_with_options,
    dryrun_validates_without_storing,
    health_metrics_and_unknown_routes,
);
