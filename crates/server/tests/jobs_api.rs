//! Authorizations and jobs over HTTP, with the Braze simulator in process: write-only
//! secrets, validation errors, roles, dryrun, and an export job's life (run, pause, resume,
//! kill, logs). SQLite and PostgreSQL.

#[macro_use]
mod support;

use std::time::Duration;

use axum::http::StatusCode;
use serde_json::{Value, json};
use support::{ADMIN, App};

async fn start_sim() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = braze_sim::SimConfig {
        keys: [(
            "sim-key".to_string(),
            ["users.track".to_string()].into_iter().collect(),
        )]
        .into_iter()
        .collect(),
        ..braze_sim::SimConfig::default()
    };
    tokio::spawn(braze_sim::serve(
        listener,
        braze_sim::Sim::new(config),
        std::future::pending(),
    ));
    url
}

async fn create_auth(app: &App, kind: &str, body: Value) -> (StatusCode, Value) {
    app.post(&format!("/v2/auth/{kind}"), Some(ADMIN), body.to_string())
        .await
}

async fn authorizations_are_write_only(app: App) {
    let secret = "braze-rest-key-5f1d2c";
    let (s, b) = create_auth(
        &app,
        "braze",
        json!({"label": "Braze US-03", "config": {"apikey": secret, "instance": "US-03"}}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert!(
        !b.to_string().contains(secret),
        "the key is never shown: {b}"
    );
    assert_eq!(
        b["data"]["config"],
        json!({"apikey": "[redacted]", "instance": "US-03"})
    );
    assert_eq!(b["data"]["type"], "braze");
    let id = b["data"]["id"].as_i64().unwrap();

    let (_, listed) = app.get("/v2/auth", ADMIN).await;
    assert!(!listed.to_string().contains(secret));
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    let stored = app.store.authorization(1, id).await.unwrap().unwrap();
    assert!(
        !String::from_utf8_lossy(&stored.sealed_secret).contains(secret),
        "sealed at rest"
    );
    assert!(!stored.config.to_string().contains(secret));

    // Other settings change without the key; moving the key to another instance needs it.
    let (s, b) = app
        .put(
            &format!("/v2/auth/{id}"),
            ADMIN,
            json!({"config": {"instance": "US-03", "timeout_seconds": 10}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["config"]["instance"], "US-03");
    let (s, b) = app
        .put(
            &format!("/v2/auth/{id}"),
            ADMIN,
            json!({"config": {"instance": "EU-01"}}),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(
        b["message"],
        "config.instance changes where this authorization's secrets are sent: send config.apikey again with it"
    );
    let (s, b) = app
        .put(
            &format!("/v2/auth/{id}"),
            ADMIN,
            json!({"config": {"instance": "EU-01", "apikey": "new-key"}}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["config"]["apikey"], "[redacted]");
    assert_eq!(b["data"]["config"]["instance"], "EU-01");

    // No key leaves for a host the operator did not list.
    for url in [
        "http://169.254.169.254",
        "http://[::1]:8080",
        "https://internal.example",
    ] {
        let (s, b) = create_auth(
            &app,
            "braze",
            json!({"label": "x", "config": {"apikey": "k", "instance": url}}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{url}");
        assert!(
            b["message"]
                .as_str()
                .unwrap_or_default()
                .contains("TRIBUTARY_BRAZE_ALLOW_URLS"),
            "{b}"
        );
    }

    // Errors say what and where, and change nothing.
    let (s, b) = create_auth(
        &app,
        "braze",
        json!({"label": "x", "config": {"instance": "US-03"}}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["message"], "config.apikey is required for braze");
    let (s, b) = create_auth(
        &app,
        "braze",
        json!({"label": "x", "config": {"apikey": "k", "instance": "US-99"}}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .starts_with("config.instance \"US-99\""),
        "{b}"
    );
    let (s, _) = create_auth(&app, "ftp", json!({"label": "x"})).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, b) = create_auth(
        &app,
        "sftp",
        json!({"label": "x", "config": {"host": "h", "username": "u"}}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b["message"],
        "config.password or config.private_key is required for sftp"
    );
    assert_eq!(app.store.authorizations(1).await.unwrap().len(), 1);

    // The managed SFTP account's generated password is shown once.
    let (s, b) = create_auth(&app, "sftp-managed", json!({"label": "uploads"})).await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let password = b["data"]["password"].as_str().unwrap().to_string();
    assert_eq!(password.len(), 24);
    assert!(b["data"]["username"].as_str().unwrap().starts_with("a1-"));
    assert_eq!(b["data"]["port"], 2222);
    let managed = b["data"]["id"].as_i64().unwrap();
    let (_, b) = app.get(&format!("/v2/auth/{managed}"), ADMIN).await;
    assert!(!b.to_string().contains(&password));

    // Roles and accounts.
    let observer = app.token(1, &["observer"], "7d").await;
    let (s, _) = app
        .post(
            "/v2/auth/braze",
            Some(&observer),
            json!({"label": "x", "config": {}}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, b) = app.get("/v2/auth", &observer).await;
    assert_eq!(s, StatusCode::OK);
    assert!(!b.to_string().contains(secret));
    let (_, b) = app
        .post(
            "/v2/account",
            Some(ADMIN),
            json!({"name": "other"}).to_string(),
        )
        .await;
    let other = b["data"]["aid"].as_i64().unwrap();
    let (s, _) = app
        .get(&format!("/v2/auth/{id}?account_id={other}"), ADMIN)
        .await;
    assert_eq!(
        s,
        StatusCode::NOT_FOUND,
        "no authorization crosses accounts"
    );

    let (s, _) = app.delete(&format!("/v2/auth/{id}"), ADMIN).await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = app.get(&format!("/v2/auth/{id}"), ADMIN).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

async fn job(app: &App, id: i64) -> Value {
    let (s, b) = app.get(&format!("/v2/job/{id}"), ADMIN).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    b["data"].clone()
}

async fn wait_for_state(app: &App, id: i64, state: &str) -> Value {
    for _ in 0..300 {
        let j = job(app, id).await;
        if j["state"] == state {
            return j;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("job {id} never became {state}: {}", job(app, id).await);
}

async fn an_export_job_runs_pauses_resumes_and_is_killed(app: App) {
    let sim = start_sim().await;
    let (s, b) = app
        .post_text(
            "/api/segment",
            ADMIN,
            r#"FILTER custom.plan = "gold" FROM user ALIAS vip"#,
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    for i in 0..10 {
        let body = json!({"external_id": format!("u{i}"), "plan": "gold"}).to_string();
        let (s, _) = app.post("/c/1/braze_users", Some(ADMIN), body).await;
        assert_eq!(s, StatusCode::OK);
    }
    app.engine.catch_up_all().await.unwrap();
    let (_, b) = create_auth(
        &app,
        "braze",
        json!({"label": "sim", "config": {"apikey": "sim-key", "instance": sim}}),
    )
    .await;
    let braze = b["data"]["id"].as_i64().unwrap();
    let (_, b) = create_auth(
        &app,
        "sftp",
        json!({"label": "s", "config": {"host": "h", "username": "u", "password": "p"}}),
    )
    .await;
    let sftp = b["data"]["id"].as_i64().unwrap();
    let config =
        json!({"identifier_field": "external_id", "segment_ids": ["vip"], "withbackfill": true});

    // Validation.
    let (s, b) = app
        .post(
            "/v2/job/braze-export",
            Some(ADMIN),
            json!({"name": "x", "auth_ids": [sftp], "config": config}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        b["message"].as_str().unwrap().contains("needs braze"),
        "{b}"
    );
    let (s, b) = app.post("/v2/job/braze-export", Some(ADMIN), json!({"name": "x", "auth_ids": [braze], "config": {"identifier_field": "external_id", "segment_ids": ["nope"]}}).to_string()).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(
        b["message"],
        "config.segment_ids: account 1 has no audience \"nope\""
    );
    let (s, b) = app
        .post(
            "/v2/job/braze-export",
            Some(ADMIN),
            json!({"name": "x", "auth_ids": [braze], "config": {"segment_ids": ["vip"]}})
                .to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        b["message"].as_str().unwrap().contains("identifier_field"),
        "{b}"
    );
    let (s, _) = app
        .post(
            "/v2/job/teleport",
            Some(ADMIN),
            json!({"name": "x", "auth_ids": [braze]}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Dryrun: users and data points, nothing created.
    let (s, b) = app
        .post(
            "/v2/job/braze-export?dryrun=true",
            Some(ADMIN),
            json!({"name": "x", "auth_ids": [braze], "config": config}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["estimate"]["users"], 10);
    assert_eq!(b["data"]["estimate"]["data_points"], 10);
    assert_eq!(app.store.jobs(1).await.unwrap().len(), 0);

    let (s, b) = app
        .post(
            "/v2/job/braze-export",
            Some(ADMIN),
            json!({"name": "vip to Braze", "auth_ids": [braze], "config": config}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let id = b["data"]["id"].as_i64().unwrap();
    let done = wait_for_state(&app, id, "sleeping").await;
    assert_eq!(done["metrics"]["users_sent"], 10);
    assert_eq!(done["progress"]["phase"], "following");
    let stats: Value = reqwest::get(format!("{sim}/_sim/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["users"], 10);

    let (s, b) = app
        .post(&format!("/v2/job/{id}/pause"), Some(ADMIN), "")
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["state"], "paused");
    let (s, _) = app
        .post(&format!("/v2/job/{id}/pause"), Some(ADMIN), "")
        .await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, _) = app
        .post(&format!("/v2/job/{id}/resume"), Some(ADMIN), "")
        .await;
    assert_eq!(s, StatusCode::OK);
    wait_for_state(&app, id, "sleeping").await;
    let (s, _) = app
        .post(&format!("/v2/job/{id}/kill"), Some(ADMIN), "")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(job(&app, id).await["state"], "killed");
    let (s, _) = app
        .post(&format!("/v2/job/{id}/resume"), Some(ADMIN), "")
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "a killed job stays killed");

    let (s, b) = app.get(&format!("/v2/job/{id}/logs"), ADMIN).await;
    assert_eq!(s, StatusCode::OK);
    let messages: Vec<&str> = b["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["message"].as_str().unwrap())
        .collect();
    assert!(messages.contains(&"job created"), "{messages:?}");
    assert!(
        messages.iter().any(|m| m.starts_with("export started")),
        "{messages:?}"
    );
    assert!(messages.contains(&"kill requested"), "{messages:?}");
    let (_, b) = app.get("/v2/job", ADMIN).await;
    assert_eq!(b["data"].as_array().unwrap().len(), 1);
    assert!(!b.to_string().contains("sim-key"));
}

http_suite!(
    authorizations_are_write_only,
    an_export_job_runs_pauses_resumes_and_is_killed
);
