//! Audience (FilterQL) and LQL query definitions over HTTP, on SQLite and PostgreSQL.

#[macro_use]
mod support;

use axum::http::StatusCode;
use serde_json::json;
use support::{ADMIN, App};

async fn audiences_upsert_list_get_delete(app: App) {
    let (s, b) = app
        .post_text("/api/segment", ADMIN, "-- Paying customers\nFILTER AND (paying_user = \"t\", visits > 3) FROM user ALIAS Paying")
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["slug_name"], "paying");
    assert_eq!(b["data"]["description"], "Paying customers");
    assert_eq!(
        b["data"]["segment_ql"],
        "-- Paying customers\nFILTER AND ( paying_user == \"t\", visits > 3 )\nFROM user\nALIAS paying"
    );
    let created = b["data"]["created"].clone();
    let (s, b) = app
        .post_text("/api/segment", ADMIN, "FILTER visits > 5 ALIAS paying")
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        b["data"]["created"], created,
        "an upsert keeps the creation time"
    );
    assert_eq!(b["data"]["segment_ql"], "FILTER visits > 5\nALIAS paying");
    app.post_text("/api/segment", ADMIN, "FILTER * ALIAS everyone")
        .await;

    let (_, list) = app.get("/api/segment", ADMIN).await;
    let slugs: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].clone())
        .collect();
    assert_eq!(
        slugs,
        vec![
            json!("everyone"),
            json!("lytics_all"),
            json!("lytics_anonymous"),
            json!("lytics_known"),
            json!("lytics_new"),
            json!("paying")
        ],
        "the account's own audiences next to the built-in ones"
    );
    let (s, one) = app.get("/api/segment/PAYING", ADMIN).await;
    assert_eq!(
        (s, one["data"]["id"].clone()),
        (StatusCode::OK, json!("paying"))
    );
    let (s, _) = app.delete("/api/segment/paying", ADMIN).await;
    assert_eq!(s, StatusCode::OK);
    let (s, b) = app.get("/api/segment/paying", ADMIN).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(b["message"].as_str().unwrap().contains("paying"));
    assert_eq!(
        app.delete("/api/segment/paying", ADMIN).await.0,
        StatusCode::NOT_FOUND
    );
}

async fn bad_audiences_are_400_with_position_and_store_nothing(app: App) {
    // (text, what the message says, the error's line and column when it is a syntax error)
    type Case<'a> = (&'a str, &'a str, Option<(u64, u64)>);
    let cases: &[Case] = &[
        ("FILTER a == 1", "ALIAS", None),
        ("FILTER AND (a == 1 ALIAS x", "expected", Some((1, 20))),
        (
            "FILTER\n  nope(a) ALIAS x",
            "unknown function nope()",
            Some((2, 3)),
        ),
        (
            "FILTER last_seen > \"now-3x\" ALIAS x",
            "malformed date math",
            Some((1, 20)),
        ),
        ("FILTER INCLUDE ghost ALIAS x", "INCLUDE ghost", None),
        ("FILTER * ALIAS `bad slug!`", "not valid", None),
    ];
    for (text, message, position) in cases {
        let (s, b) = app.post_text("/api/segment", ADMIN, text).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{text}: {b}");
        assert!(
            b["message"].as_str().unwrap().contains(message),
            "{text}: {b}"
        );
        if let Some((line, column)) = position {
            assert_eq!(
                (b["data"]["line"].as_u64(), b["data"]["column"].as_u64()),
                (Some(*line), Some(*column)),
                "{text}"
            );
        }
    }
    let (_, list) = app.get("/api/segment", ADMIN).await;
    let slugs: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["id"].as_str())
        .collect();
    assert!(
        slugs.iter().all(|s| s.starts_with("lytics_")),
        "only the built-in audiences: {slugs:?}"
    );
}

async fn include_cycles_and_dependents(app: App) {
    assert_eq!(
        app.post_text("/api/segment", ADMIN, "FILTER name == \"Yoda\" ALIAS jedi")
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        app.post_text(
            "/api/segment",
            ADMIN,
            "FILTER AND (INCLUDE jedi, zip == 5) ALIAS jedi_zip"
        )
        .await
        .0,
        StatusCode::OK
    );
    // Changing jedi to include jedi_zip would make a cycle.
    let (s, b) = app
        .post_text("/api/segment", ADMIN, "FILTER INCLUDE jedi_zip ALIAS jedi")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert!(
        b["message"]
            .as_str()
            .unwrap()
            .contains("jedi -> jedi_zip -> jedi"),
        "{b}"
    );
    let (s, b) = app.delete("/api/segment/jedi", ADMIN).await;
    assert_eq!(s, StatusCode::CONFLICT, "{b}");
    assert!(b["message"].as_str().unwrap().contains("jedi_zip"));
    // Several statements at once may include each other.
    let (s, b) = app
        .post_text(
            "/api/segment",
            ADMIN,
            "FILTER a == 1 ALIAS one; FILTER INCLUDE one ALIAS two",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"].as_array().unwrap().len(), 2);

    // A chain of INCLUDE deeper than evaluation follows is refused at save (seen: accepted,
    // then never matching). 32 levels are fine; the 33rd is refused, naming the limit.
    let chain = |top: usize| {
        (1..=top)
            .map(|i| format!("FILTER INCLUDE c{} ALIAS c{i}", i - 1))
            .chain(std::iter::once("FILTER a == 1 ALIAS c0".to_string()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let (s, b) = app.post_text("/api/segment", ADMIN, &chain(32)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let (s, b) = app
        .post_text("/api/segment", ADMIN, "FILTER INCLUDE c32 ALIAS c33")
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");
    assert_eq!(
        b["message"],
        "audience c33: its INCLUDE chain is 33 deep; audiences evaluate at most 32 levels of INCLUDE"
    );
}

async fn validate_and_evaluate(app: App) {
    let (s, b) = app
        .post_text(
            "/api/segment/validate",
            ADMIN,
            "FILTER last_seen > \"now-30d\" ALIAS recent",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["valid"], true);
    for bad in ["FILTER x > \"now-3x\"", "FILTER nope(x)", "FILTER (a == 1"] {
        let (s, b) = app.post_text("/api/segment/validate", ADMIN, bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            b["data"]["line"].is_u64() && b["data"]["column"].is_u64(),
            "{bad}: {b}"
        );
    }
    app.post_text(
        "/api/segment",
        ADMIN,
        "FILTER tolower(name) == \"yoda\" ALIAS jedi",
    )
    .await;
    let eval = |ql: &str, entity: serde_json::Value| {
        json!({"segment_ql": ql, "entity": entity, "now": "2026-06-15T12:00:00Z"}).to_string()
    };
    let cases = [
        (
            eval(
                "FILTER AND (INCLUDE jedi, zip == \"5\")",
                json!({"name": "Yoda", "zip": 5}),
            ),
            true,
        ),
        (eval("FILTER INCLUDE jedi", json!({"name": "Luke"})), false),
        (
            eval(
                "FILTER last_seen > \"now-30d\"",
                json!({"last_seen": "2026-06-01T00:00:00Z"}),
            ),
            true,
        ),
        (
            eval(
                "FILTER last_seen > \"now-7d\"",
                json!({"last_seen": "2026-06-01"}),
            ),
            false,
        ),
        (eval("FILTER missing != \"x\"", json!({})), true),
        (eval("FILTER INCLUDE nobody", json!({})), false),
    ];
    for (body, want) in cases {
        let (s, b) = app
            .post("/api/segment/evaluate", Some(ADMIN), body.clone())
            .await;
        assert_eq!(s, StatusCode::OK, "{body}: {b}");
        assert_eq!(b["data"]["match"], want, "{body}");
    }
    let (s, b) = app
        .post(
            "/api/segment/evaluate",
            Some(ADMIN),
            json!({"segment_ql": "FILTER x > \"now-1x\"", "entity": {}}).to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(b["data"]["column"], 12);
    let (s, _) = app
        .post("/api/segment/evaluate", Some(ADMIN), r#"{"entity": {}}"#)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
}

async fn lql_queries(app: App) {
    let text = "SELECT braze_id, email(email) AS email, city, count(braze_id) AS webhook_ct
                FROM braze_users INTO user BY braze_id OR email ALIAS braze_webhook;
                SELECT external_id FROM braze_csv INTO user BY external_id ALIAS braze_csv";
    let (s, b) = app.post_text("/api/query", ADMIN, text).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"].as_array().unwrap().len(), 2);
    let (s, q) = app.get("/api/query/braze_webhook", ADMIN).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(q["data"]["from"], "braze_users");
    assert_eq!(q["data"]["by"], json!(["braze_id", "email"]));
    // Lytics' shape: a map by name.
    let ct = &q["data"]["fields"]["webhook_ct"];
    assert_eq!(
        (&ct["as"], &ct["type"], &ct["is_by"]),
        (&json!("webhook_ct"), &json!("int"), &json!(false))
    );
    assert_eq!(
        (
            ct["kind"].clone(),
            ct["merge_op"].clone(),
            ct["is_identity"].clone()
        ),
        (json!("int"), json!("count"), json!(false))
    );
    let (_, list) = app.get("/api/query", ADMIN).await;
    let aliases: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["alias"].clone())
        .collect();
    assert_eq!(
        aliases,
        vec![
            json!("braze_csv"),
            json!("braze_users"),
            json!("braze_webhook")
        ],
        "with the built-in query"
    );

    let (s, b) = app
        .post_text(
            "/api/query/_validate",
            ADMIN,
            "SELECT a FROM s INTO user BY a ALIAS ok",
        )
        .await;
    // A list, one record per statement, as Lytics answers.
    assert_eq!(
        (s, b["data"][0]["alias"].clone()),
        (StatusCode::OK, json!("ok"))
    );
    for (bad, message) in [
        ("SELECT a FROM s INTO user BY b ALIAS x", "BY b"),
        ("SELECT a FROM s INTO user BY a", "expected ALIAS"),
        (
            "SELECT a FROM `bad stream` INTO user BY a ALIAS x",
            "FROM bad stream",
        ),
    ] {
        let (s, b) = app.post_text("/api/query/_validate", ADMIN, bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad}");
        assert!(
            b["message"].as_str().unwrap().contains(message),
            "{bad}: {b}"
        );
        let (s, _) = app.post_text("/api/query", ADMIN, bad).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }
    assert_eq!(
        app.delete("/api/query/braze_csv", ADMIN).await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.get("/api/query/braze_csv", ADMIN).await.0,
        StatusCode::NOT_FOUND
    );
}

async fn roles_and_tenants_for_definitions(app: App) {
    let dm = app.token(1, &["data_manager"], "30d").await;
    let am = app.token(1, &["audience_manager"], "30d").await;
    let observer = app.token(1, &["observer"], "30d").await;
    assert_eq!(
        app.post_text("/api/segment", &dm, "FILTER * ALIAS a")
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post_text("/api/segment", &observer, "FILTER * ALIAS a")
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post_text("/api/segment", &am, "FILTER * ALIAS a")
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        app.delete("/api/segment/a", &dm).await.0,
        StatusCode::FORBIDDEN
    );
    let query = "SELECT a FROM s INTO user BY a ALIAS q";
    assert_eq!(
        app.post_text("/api/query", &am, query).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        app.post_text("/api/query", &dm, query).await.0,
        StatusCode::OK
    );
    assert_eq!(
        app.delete("/api/query/q", &am).await.0,
        StatusCode::FORBIDDEN
    );
    for t in [&dm, &am, &observer] {
        assert_eq!(app.get("/api/segment/a", t).await.0, StatusCode::OK);
        assert_eq!(app.get("/api/query/q", t).await.0, StatusCode::OK);
        assert_eq!(
            app.post_text("/api/segment/validate", t, "FILTER *")
                .await
                .0,
            StatusCode::OK
        );
    }
    // Another account sees none of it.
    app.post("/v2/account", Some(ADMIN), r#"{"name":"Other"}"#)
        .await;
    let other = app.token(2, &["admin"], "30d").await;
    assert_eq!(
        app.get("/api/segment/a", &other).await.0,
        StatusCode::NOT_FOUND
    );
    let (_, theirs) = app.get("/api/query", &other).await;
    let aliases: Vec<_> = theirs["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["alias"].clone())
        .collect();
    assert_eq!(
        aliases,
        vec![json!("braze_users")],
        "a new account has only the built-in query"
    );
    assert_eq!(
        app.delete("/api/segment/a", &other).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(app.get("/api/segment/a", &am).await.0, StatusCode::OK);
}

http_suite!(
    audiences_upsert_list_get_delete,
    bad_audiences_are_400_with_position_and_store_nothing,
    include_cycles_and_dependents,
    validate_and_evaluate,
    lql_queries,
    roles_and_tenants_for_definitions,
);
