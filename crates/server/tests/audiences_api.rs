//! Real-time audiences over HTTP: built-in audiences, membership that follows profile
//! changes (INCLUDE too), merges and erasures in the log, recompute on definition change,
//! date-relative exits, size, scan pagination and the changes feed. SQLite and PostgreSQL.

#[macro_use]
mod support;

use std::collections::BTreeSet;

use axum::http::StatusCode;
use serde_json::json;
use support::{ADMIN, App};

async fn send(app: &App, body: &str) {
    let (s, b) = app
        .post("/c/1/braze_users", Some(ADMIN), body.to_string())
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

/// Pipeline, audience recompute and due checks, as the worker does them.
async fn settle(app: &App) {
    app.engine.catch_up_all().await.unwrap();
}

async fn segments_of(app: &App, field: &str, value: &str) -> BTreeSet<String> {
    let (s, b) = app
        .get(&format!("/api/entity/user/{field}/{value}"), ADMIN)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["data"]["_segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// `(profile_id, change)` of an audience's log after `since`.
async fn changes(app: &App, slug: &str, since: i64) -> Vec<(String, String)> {
    let (s, b) = app
        .get(&format!("/api/segment/{slug}/changes?since={since}"), ADMIN)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["data"]["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["profile_id"].as_str().unwrap().to_string(),
                c["change"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn profile_id(app: &App, field: &str, value: &str) -> String {
    let (_, b) = app
        .get(&format!("/api/entity/user/{field}/{value}"), ADMIN)
        .await;
    b["data"]["_id"].as_str().unwrap().to_string()
}

async fn size(app: &App, slug: &str) -> (u64, String) {
    let (s, b) = app.get(&format!("/api/segment/{slug}/size"), ADMIN).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    (
        b["data"]["size"].as_u64().unwrap(),
        b["data"]["status"].as_str().unwrap().to_string(),
    )
}

async fn built_in_audiences_follow_the_profile(app: App) {
    send(&app, r#"{"braze_id": "b1"}"#).await;
    settle(&app).await;
    assert_eq!(
        segments_of(&app, "braze_id", "b1").await,
        set(&["lytics_all", "lytics_anonymous", "lytics_new"])
    );
    // An email arrives: the profile moves from anonymous to known, and the log says so.
    send(&app, r#"{"braze_id": "b1", "email": "Ann@Example.com"}"#).await;
    settle(&app).await;
    assert_eq!(
        segments_of(&app, "braze_id", "b1").await,
        set(&["lytics_all", "lytics_known", "lytics_new"])
    );
    let id = profile_id(&app, "braze_id", "b1").await;
    assert_eq!(
        changes(&app, "lytics_anonymous", 0).await,
        vec![(id.clone(), "enter".into()), (id.clone(), "exit".into())]
    );
    assert_eq!(
        changes(&app, "lytics_known", 0).await,
        vec![(id.clone(), "enter".into())]
    );
    assert_eq!(size(&app, "lytics_known").await, (1, "ready".into()));
    assert_eq!(size(&app, "lytics_anonymous").await.0, 0);
    let (s, _) = app.get("/api/segment/nope/size", ADMIN).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

async fn new_and_changed_audiences_are_computed_with_their_dependents(app: App) {
    for (n, city) in ["Paris", "Lyon", "Paris", "Paris", "Nice"]
        .iter()
        .enumerate()
    {
        let email = if n % 2 == 0 {
            format!(r#", "email": "p{n}@x.io""#)
        } else {
            String::new()
        };
        send(
            &app,
            &format!(r#"{{"braze_id": "p{n}", "city": "{city}"{email}}}"#),
        )
        .await;
    }
    settle(&app).await;
    let (s, b) = app
        .post_text(
            "/api/segment",
            ADMIN,
            "FILTER city == \"Paris\" ALIAS parisians",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    app.post_text(
        "/api/segment",
        ADMIN,
        "FILTER AND (INCLUDE parisians, EXISTS email) ALIAS paris_known",
    )
    .await;
    assert_eq!(size(&app, "parisians").await, (0, "computing".into()));
    settle(&app).await;
    assert_eq!(size(&app, "parisians").await, (3, "ready".into()));
    assert_eq!(size(&app, "paris_known").await, (2, "ready".into()));
    // Read right after the first computation: the profiles list the audiences they joined
    // through it, though no event has touched them since (the recompute leaves rows alone).
    assert_eq!(
        segments_of(&app, "braze_id", "p2").await,
        set(&[
            "lytics_all",
            "lytics_known",
            "lytics_new",
            "parisians",
            "paris_known"
        ])
    );
    assert!(
        !segments_of(&app, "braze_id", "p1")
            .await
            .contains("parisians")
    );
    let (s, b) = app.get("/api/segment/paris_known/scan", ADMIN).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    // Lytics' page: the entities in `data`, `total` beside it.
    let scanned = b["data"].as_array().unwrap();
    assert_eq!(b["total"], json!(2));
    assert_eq!(scanned.len(), 2);
    assert!(scanned.iter().all(|p| {
        p["_segments"]
            .as_array()
            .unwrap()
            .contains(&json!("paris_known"))
    }));

    // A profile change moves it out of both, INCLUDE followed. Another stays in: its record
    // of its audiences predates the recompute, and still no second entry is logged.
    send(&app, r#"{"braze_id": "p0", "city": "Lyon"}"#).await;
    send(&app, r#"{"braze_id": "p2", "first_name": "Zoe"}"#).await;
    settle(&app).await;
    let p2 = profile_id(&app, "braze_id", "p2").await;
    assert_eq!(
        changes(&app, "parisians", 0)
            .await
            .iter()
            .filter(|(p, _)| *p == p2)
            .count(),
        1,
        "one entry for a member who stayed"
    );
    let p0 = profile_id(&app, "braze_id", "p0").await;
    assert_eq!(
        changes(&app, "paris_known", 0)
            .await
            .iter()
            .filter(|(p, _)| *p == p0)
            .cloned()
            .collect::<Vec<_>>(),
        vec![(p0.clone(), "enter".into()), (p0.clone(), "exit".into())]
    );
    assert_eq!(size(&app, "parisians").await.0, 2);
    assert_eq!(size(&app, "paris_known").await.0, 1);
    assert!(
        !segments_of(&app, "braze_id", "p0")
            .await
            .contains("parisians")
    );

    // Changing the included audience recomputes the one that includes it.
    app.post_text(
        "/api/segment",
        ADMIN,
        "FILTER city IN (\"Paris\", \"Lyon\") ALIAS parisians",
    )
    .await;
    settle(&app).await;
    assert_eq!(size(&app, "parisians").await, (4, "ready".into()));
    assert_eq!(size(&app, "paris_known").await, (2, "ready".into()));

    // Deleting an audience makes every member leave, in the log.
    let before = changes(&app, "paris_known", 0).await.len();
    assert_eq!(
        app.delete("/api/segment/paris_known", ADMIN).await.0,
        StatusCode::OK
    );
    settle(&app).await;
    let log = app
        .store
        .membership_log(1, Some("paris_known"), 0, 100)
        .await
        .unwrap();
    assert_eq!(log.len(), before + 2);
    assert!(log[before..].iter().all(|e| !e.entered));
    assert!(
        !segments_of(&app, "braze_id", "p2")
            .await
            .contains("paris_known"),
        "a deleted audience is not shown"
    );
}

async fn scan_pages_are_stable_while_members_change(app: App) {
    for n in 0..7 {
        send(&app, &format!(r#"{{"braze_id": "s{n}", "country": "FR"}}"#)).await;
    }
    app.post_text("/api/segment", ADMIN, "FILTER country == \"FR\" ALIAS fr")
        .await;
    settle(&app).await;
    let mut seen = Vec::new();
    let mut start = String::new();
    let mut pages = 0;
    loop {
        let (s, b) = app
            .get(
                &format!("/api/segment/fr/scan?limit=3&start={start}"),
                ADMIN,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        for p in b["data"].as_array().unwrap() {
            seen.push(p["braze_id"].as_str().unwrap().to_string());
            assert!(p["_segments"].as_array().unwrap().contains(&json!("fr")));
        }
        pages += 1;
        if pages == 1 {
            // Between pages, the first page's first member leaves and a new one joins.
            send(&app, r#"{"braze_id": "s0", "country": "DE"}"#).await;
            send(&app, r#"{"braze_id": "s9", "country": "FR"}"#).await;
            settle(&app).await;
        }
        // `_next` stands beside `data`, `""` after the last page.
        match b["_next"].as_str() {
            Some("") => break,
            Some(next) => start = next.to_string(),
            None => panic!("a page without _next: {b}"),
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no profile twice: {seen:?}");
    for n in 1..7 {
        assert!(
            seen.contains(&format!("s{n}")),
            "s{n} stayed a member: {seen:?}"
        );
    }
    assert_eq!(pages, 3);
    let (s, b) = app.get("/api/segment/fr/scan?start=garbage!", ADMIN).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
}

async fn merges_and_erasures_log_the_exits_of_the_profile_that_goes(app: App) {
    app.post_text("/api/segment", ADMIN, "FILTER EXISTS city ALIAS located")
        .await;
    send(&app, r#"{"braze_id": "m1", "city": "Oslo"}"#).await;
    send(&app, r#"{"external_id": "e1", "city": "Bergen"}"#).await;
    settle(&app).await;
    let (a, b) = (
        profile_id(&app, "braze_id", "m1").await,
        profile_id(&app, "external_id", "e1").await,
    );
    assert_ne!(a, b);
    // One event links them: the later profile is merged into the earlier.
    send(&app, r#"{"braze_id": "m1", "external_id": "e1"}"#).await;
    settle(&app).await;
    assert_eq!(profile_id(&app, "external_id", "e1").await, a);
    assert_eq!(size(&app, "located").await.0, 1);
    let log = changes(&app, "located", 0).await;
    assert!(log.contains(&(b.clone(), "exit".into())), "{log:?}");
    assert_eq!(log.iter().filter(|(p, _)| *p == a).count(), 1, "{log:?}");

    let (s, _) = app.delete("/api/entity/user/braze_id/m1", ADMIN).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(size(&app, "located").await.0, 0);
    assert_eq!(
        changes(&app, "located", 0).await.last(),
        Some(&(a, "exit".to_string()))
    );
}

async fn date_relative_audiences_change_when_time_passes(app: App) {
    // First seen 7 days ago less two seconds: new now, not new in two seconds.
    let then =
        time::OffsetDateTime::now_utc() - time::Duration::days(7) + time::Duration::seconds(2);
    let ts = then.unix_timestamp_nanos() / 1_000_000;
    let (s, b) = app
        .post(
            "/c/1/braze_users?timestamp_field=ts",
            Some(ADMIN),
            format!(r#"{{"braze_id": "t1", "ts": {ts}}}"#),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    settle(&app).await;
    assert!(
        segments_of(&app, "braze_id", "t1")
            .await
            .contains("lytics_new")
    );
    let due = app.store.due_profiles(1, i64::MAX, 10).await.unwrap();
    assert_eq!(due.len(), 1, "the profile has a next check");
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    assert_eq!(app.engine.check_due(1).await.unwrap(), 1);
    assert!(
        !segments_of(&app, "braze_id", "t1")
            .await
            .contains("lytics_new")
    );
    let id = profile_id(&app, "braze_id", "t1").await;
    assert_eq!(
        changes(&app, "lytics_new", 0).await,
        vec![(id.clone(), "enter".into()), (id, "exit".into())]
    );
    assert_eq!(
        app.engine.check_due(1).await.unwrap(),
        0,
        "nothing due any more"
    );
}

/// The console's charts read these: events per minute and stream, an audience's size per day,
/// a job's metrics per minute. Each bounds its window with a clear 400.
async fn activity_is_answered_per_minute_and_per_day(app: App) {
    send(
        &app,
        r#"[{"external_id": "a1", "email": "a1@example.com"}, {"external_id": "a2"}]"#,
    )
    .await;
    let (s, b) = app.get("/v2/stream/_minutes", ADMIN).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let rows = b["data"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{b}");
    assert_eq!(rows[0]["stream"], "braze_users");
    assert_eq!(rows[0]["events"], 2);
    for bad in [
        "/v2/stream/_minutes?minutes=0",
        "/v2/stream/_minutes?minutes=20000",
    ] {
        let (s, b) = app.get(bad, ADMIN).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}: {b}");
        assert!(
            b["message"]
                .as_str()
                .unwrap()
                .contains("minutes must be between 1 and 11520"),
            "{b}"
        );
    }

    let (s, b) = app
        .post_text(
            "/api/segment",
            ADMIN,
            "FILTER EXISTS external_id FROM user ALIAS known",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    settle(&app).await;
    let (s, b) = app.get("/api/segment/known/history", ADMIN).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let today = time::OffsetDateTime::now_utc().date().to_string();
    assert_eq!(b["data"], json!([{"day": today, "size": 2}]));
    let (s, b) = app.get("/api/segment/known/history?days=401", ADMIN).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    let (s, _) = app.get("/api/segment/nothing/history", ADMIN).await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let job = app
        .store
        .create_job(&tributary_core::NewJob {
            account_id: 1,
            workflow: "braze-export".into(),
            name: "export".into(),
            description: String::new(),
            auth_ids: vec![],
            config: json!({}),
            created_at: 0,
        })
        .await
        .unwrap();
    let at = tributary_core::to_micros(time::OffsetDateTime::now_utc());
    let report = tributary_core::JobReport {
        state: tributary_core::JobState::Running,
        progress: json!({}),
        metrics: json!({"users_sent": 7}),
        last_error: None,
        at,
    };
    assert!(app.store.report_job(job.id, &report).await.unwrap());
    let (s, b) = app.get(&format!("/v2/job/{}/minutes", job.id), ADMIN).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"][0]["metrics"]["users_sent"], 7, "{b}");
    let (s, b) = app
        .get(&format!("/v2/job/{}/minutes?minutes=1441", job.id), ADMIN)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
}

http_suite!(
    built_in_audiences_follow_the_profile,
    new_and_changed_audiences_are_computed_with_their_dependents,
    scan_pages_are_stable_while_members_change,
    merges_and_erasures_log_the_exits_of_the_profile_that_goes,
    date_relative_audiences_change_when_time_passes,
    activity_is_answered_per_minute_and_per_day,
);
