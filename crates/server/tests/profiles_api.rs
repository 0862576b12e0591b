//! Profiles over HTTP: the built-in braze_users mapping end to end, lookups by any identity,
//! observer masking, schema, erasure and rebuild. SQLite and PostgreSQL.

#[macro_use]
mod support;

use axum::http::StatusCode;
use serde_json::json;
use support::{ADMIN, App};

const SEED_WEBHOOK: &str = r#"{
  "city": "AnyTown", "country": "United States", "first_name": "John", "gender": "male",
  "language": "English", "last_name": "Smith", "date_of_birth": "19820101",
  "phone_number": "5551231234", "time_zone": "GMT+7", "twitter_handle": "johnsmith",
  "email": "john.smith@email.com", "braze_id": "xxxxxx"
}"#;

async fn webhook_becomes_a_profile(app: App) {
    let (s, _) = app
        .post("/c/1/braze_users", Some(ADMIN), SEED_WEBHOOK)
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app
        .post(
            "/c/1/braze_users",
            Some(ADMIN),
            r#"{"braze_id": "xxxxxx", "external_id": "ext-9", "city": "Newtown",
                "home_address": "1 Main St", "loyalty_points": 120}"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    app.engine.catch_up(1).await.unwrap();

    let (s, b) = app
        .get("/api/entity/user/email/john.smith@email.com", ADMIN)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let p = &b["data"];
    assert_eq!(p["first_name"], "John");
    assert_eq!(p["city"], "Newtown");
    assert_eq!(p["date_of_birth"], "1982-01-01T00:00:00Z");
    assert_eq!(p["braze_event_count"], 2);
    assert!(p["_id"].is_string() && p["_created"].is_string() && p["_modified"].is_string());
    assert_eq!(p["_identities"]["external_id"], json!(["ext-9"]));
    // Every identity reaches the same profile; e-mail lookups ignore case.
    for path in [
        "/api/entity/user/braze_id/xxxxxx",
        "/api/entity/user/external_id/ext-9",
        "/api/entity/user/email/John.Smith@Email.com",
    ] {
        let (s, other) = app.get(path, ADMIN).await;
        assert_eq!(
            (s, other["data"]["_id"].clone()),
            (StatusCode::OK, p["_id"].clone()),
            "{path}"
        );
    }
    let (s, b) = app
        .get(
            &format!("/api/entity/user/_id/{}", p["_id"].as_str().unwrap()),
            ADMIN,
        )
        .await;
    assert_eq!(
        (s, b["data"]["city"].clone()),
        (StatusCode::OK, json!("Newtown"))
    );
    let (s, b) = app.get("/api/entity/user/email/nobody@x.io", ADMIN).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(b["message"].as_str().unwrap().contains("nobody@x.io"));

    // Observers see personal fields masked.
    let observer = app.token(1, &["observer"], "30d").await;
    let (s, masked) = app.get("/api/entity/user/braze_id/xxxxxx", &observer).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(masked["data"]["email"], "***");
    assert_eq!(masked["data"]["first_name"], "***");
    assert_eq!(masked["data"]["braze_id"], "***");
    assert_eq!(masked["data"]["country"], "United States");
    assert!(!masked.to_string().contains("john.smith"));
    // Everything personal is masked, unmapped attributes (`custom`) included; keys, counts
    // and numbers stay readable (seen: `custom` shown in full).
    assert_eq!(masked["data"]["city"], "***");
    assert_eq!(masked["data"]["date_of_birth"], "***");
    assert_eq!(masked["data"]["custom"]["home_address"], "***", "{masked}");
    assert_eq!(masked["data"]["braze_event_count"], 2);
    for personal in [
        "1 Main St",
        "Newtown",
        "John",
        "Smith",
        "5551231234",
        "xxxxxx",
        "ext-9",
    ] {
        assert!(
            !masked.to_string().contains(personal),
            "{personal}: {masked}"
        );
    }

    let (s, schema) = app.get("/api/schema/user", &observer).await;
    assert_eq!(s, StatusCode::OK);
    let email = schema["data"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "email")
        .unwrap()
        .clone();
    assert_eq!(
        (email["is_identity"].clone(), email["queries"].clone()),
        (json!(true), json!(["braze_users"]))
    );
}

async fn erasure_and_roles(app: App) {
    app.post("/c/1/braze_users", Some(ADMIN), SEED_WEBHOOK)
        .await;
    app.post(
        "/c/1/braze_users",
        Some(ADMIN),
        r#"{"braze_id": "other", "email": "other@x.io"}"#,
    )
    .await;
    app.engine.catch_up(1).await.unwrap();
    let am = app.token(1, &["audience_manager"], "30d").await;
    assert_eq!(
        app.delete("/api/entity/user/braze_id/xxxxxx", &am).await.0,
        StatusCode::FORBIDDEN
    );
    let dm = app.token(1, &["data_manager"], "30d").await;
    let (s, b) = app.delete("/api/entity/user/braze_id/xxxxxx", &dm).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["erased_events"], 1);
    assert_eq!(
        app.get("/api/entity/user/email/john.smith@email.com", ADMIN)
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.get("/api/entity/user/braze_id/other", ADMIN).await.0,
        StatusCode::OK
    );
    let (_, events) = app
        .get("/v2/stream/braze_users/events?limit=10", ADMIN)
        .await;
    assert!(
        !events.to_string().contains("john.smith"),
        "raw events are erased too"
    );
    assert_eq!(
        app.delete("/api/entity/user/braze_id/xxxxxx", &dm).await.0,
        StatusCode::NOT_FOUND
    );
}

async fn rebuild_and_blocklist(app: App) {
    let (s, b) = app.get("/v2/identity/blocklist", ADMIN).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        b["data"]
            .as_array()
            .unwrap()
            .contains(&json!("test@test.com"))
    );
    let (s, _) = app
        .send(
            axum::http::Request::put("/v2/identity/blocklist")
                .header("authorization", ADMIN)
                .body(axum::body::Body::from(
                    r#"["", "null", "Shared@Family.com"]"#,
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(s, StatusCode::OK);
    app.post(
        "/c/1/braze_users",
        Some(ADMIN),
        r#"{"braze_id": "kid", "email": "shared@family.com"}"#,
    )
    .await;
    app.post(
        "/c/1/braze_users",
        Some(ADMIN),
        r#"{"braze_id": "parent", "email": "shared@family.com"}"#,
    )
    .await;
    app.engine.catch_up(1).await.unwrap();
    let (_, kid) = app.get("/api/entity/user/braze_id/kid", ADMIN).await;
    let (_, parent) = app.get("/api/entity/user/braze_id/parent", ADMIN).await;
    assert_ne!(
        kid["data"]["_id"], parent["data"]["_id"],
        "a blocklisted value links nothing"
    );

    // A dry run says what a rebuild would do and does nothing: the profiles stay.
    let (s, b) = app.post("/api/rebuild?dryrun=true", Some(ADMIN), "").await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["dryrun"], true);
    assert_eq!(b["data"]["events_to_replay"], 2);
    assert_eq!(b["data"]["profiles_reset"], 2);
    app.engine.catch_up(1).await.unwrap();
    let (_, kid_again) = app.get("/api/entity/user/braze_id/kid", ADMIN).await;
    assert_eq!(
        kid_again["data"]["_id"], kid["data"]["_id"],
        "nothing rebuilt"
    );
    // An unknown parameter is refused, not ignored.
    let (s, b) = app.post("/api/rebuild?dry_run=true", Some(ADMIN), "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(b["message"].as_str().unwrap().contains("dry_run"), "{b}");

    let (s, _) = app.post("/api/rebuild", Some(ADMIN), "").await;
    assert_eq!(s, StatusCode::ACCEPTED);
    app.engine.catch_up(1).await.unwrap();
    assert_eq!(
        app.get("/api/entity/user/braze_id/kid", ADMIN).await.0,
        StatusCode::OK
    );
}

/// A profile's recent raw events: the person's (linked by any identity), newest first, and
/// nobody else's; raw events need a role that may read them.
async fn a_profiles_recent_events(app: App) {
    for body in [
        r#"{"braze_id": "b1", "email": "one@example.com", "n": 1}"#,
        r#"{"braze_id": "b2", "email": "two@example.com", "n": 2}"#,
        r#"{"external_id": "e1", "email": "one@example.com", "n": 3}"#,
        r#"{"braze_id": "b1", "city": "Oslo", "n": 4}"#,
    ] {
        let (s, b) = app.post("/c/1/braze_users", Some(ADMIN), body).await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    app.engine.catch_up(1).await.unwrap();
    let (s, b) = app
        .get("/api/entity/user/external_id/e1/events", ADMIN)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let ns: Vec<i64> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [4, 3, 1]);
    assert_eq!(b["data"][0]["stream"], "braze_users");
    let (s, b) = app
        .get("/api/entity/user/external_id/e1/events?limit=1", ADMIN)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"].as_array().unwrap().len(), 1);
    let (s, b) = app
        .get("/api/entity/user/external_id/e1/events?limit=101", ADMIN)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, _) = app
        .get("/api/entity/user/external_id/nobody/events", ADMIN)
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let observer = app.token(1, &["observer"], "30d").await;
    let (s, b) = app
        .get("/api/entity/user/external_id/e1/events", &observer)
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{b}");
}

http_suite!(
    webhook_becomes_a_profile,
    erasure_and_roles,
    rebuild_and_blocklist,
    a_profiles_recent_events
);
