//! Lytics conformance: for each Lytics REST endpoint a Braze↔Lytics migration uses, the field
//! names and JSON types of Tributary's answer match those of Lytics' published response
//! samples (the `mock/json` files of lytics/go-lytics, read and restated here as tables: no
//! sample data is copied). Extra fields are allowed; a missing or retyped field fails.
//! SQLite and PostgreSQL.

#[macro_use]
mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::{Value, json};
use support::{ADMIN, App};

/// A JSON type as Lytics' samples have it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Str,
    Num,
    Bool,
    List,
    Map,
}
use Kind::*;

fn kind_of(v: &Value) -> Option<Kind> {
    Some(match v {
        Value::String(_) => Str,
        Value::Number(_) => Num,
        Value::Bool(_) => Bool,
        Value::Array(_) => List,
        Value::Object(_) => Map,
        Value::Null => return None,
    })
}

/// Lytics' segment record (get_segment.json, get_segments.json).
const SEGMENT: &[(&str, Kind)] = &[
    ("id", Str),
    ("aid", Num),
    ("account_id", Str),
    ("name", Str),
    ("slug_name", Str),
    ("kind", Str),
    ("table", Str),
    ("author_id", Str),
    ("updated", Str),
    ("created", Str),
    ("op", Str),
    ("negate", Bool),
    ("tags", List),
    ("invalid", Bool),
    ("invalid_reason", Str),
    ("deleted", Bool),
    ("save_hist", Bool),
    ("segment_ql", Str),
    ("is_public", Bool),
];
/// A segment size (get_segment_size.json, get_segment_sizes.json).
const SIZE: &[(&str, Kind)] = &[
    ("id", Str),
    ("name", Str),
    ("slug_name", Str),
    ("size", Num),
];
/// A work (get_work.json, get_works.json).
const WORK: &[(&str, Kind)] = &[
    ("id", Str),
    ("aid", Num),
    ("account_id", Str),
    ("user_id", Str),
    ("work_state_version", Num),
    ("config", Map),
    ("workflow_id", Str),
    ("workflow", Str),
    ("tag", Str),
    ("updated", Str),
    ("created", Str),
    ("auth_ids", List),
    ("hidden", Bool),
    ("runtime", Str),
    ("verbose_logging", Bool),
    ("statuscode", Str),
];
/// An authorization (get_auth.json, get_auths.json).
const AUTH: &[(&str, Kind)] = &[
    ("id", Str),
    ("aid", Num),
    ("name", Str),
    ("account_id", Str),
    ("provider_id", Str),
    ("provider_name", Str),
    ("user_id", Str),
    ("created", Str),
    ("updated", Str),
];
/// An account (get_account.json, get_accounts.json); its API keys are left out on purpose.
const ACCOUNT: &[(&str, Kind)] = &[
    ("id", Str),
    ("created", Str),
    ("updated", Str),
    ("fid", Str),
    ("domain", Str),
    ("aid", Num),
    ("parentaid", Num),
    ("parent_id", Str),
    ("email", Str),
    ("name", Str),
    ("timezone", Str),
    ("pubusers", Bool),
    ("whitelist_fields", List),
    ("whitelist_domains", List),
];
/// A stream (catalog.go's `_streams` example).
const STREAM: &[(&str, Kind)] = &[("stream", Str), ("ct", Num), ("last_msg_ts", Str)];
/// A table's schema and one of its columns (get_catalog_user.json).
const SCHEMA: &[(&str, Kind)] = &[("name", Str), ("by_fields", List), ("columns", List)];
const COLUMN: &[(&str, Kind)] = &[
    ("as", Str),
    ("is_by", Bool),
    ("type", Str),
    ("shortdesc", Str),
    ("longdesc", Str),
    ("froms", List),
    ("identities", List),
];
/// Field info of a table and of one field (catalog.go's `fieldinfo` example).
const FIELD_INFO: &[(&str, Kind)] = &[("table", Str), ("fields", List)];
const ONE_FIELD_INFO: &[(&str, Kind)] = &[
    ("field", Str),
    ("terms_counts", Map),
    ("more_terms", Bool),
    ("ents_present", Num),
    ("ents_absent", Num),
    ("approx_cardinality", Num),
];
/// A query (an LQL statement); its `fields` are a map by name of [`COLUMN`]s.
const QUERY: &[(&str, Kind)] = &[
    ("alias", Str),
    ("table", Str),
    ("from", Str),
    ("fields", Map),
];

/// The fields a record has, with their types.
type Fields = &'static [(&'static str, Kind)];

/// A page of a scan, beside `data` (get_segment_scan_*.json).
const PAGE: &[(&str, Kind)] = &[("_next", Str), ("total", Num), ("data", List)];
/// The envelope of every answer.
const ENVELOPE: &[(&str, Kind)] = &[("status", Num), ("message", Str)];

/// What part of the answer a table describes.
#[derive(Clone, Copy)]
enum At {
    /// The whole body.
    Body,
    /// `data`, an object.
    Data,
    /// Every element of `data`, a list (at least one).
    EachOfData,
    /// The first element of `data.columns`.
    FirstColumn,
    /// Every value of `data.fields`, a map by name (a query's fields).
    EachField,
    /// Every element of `data.fields`, a list (field info).
    EachFieldInfo,
}

fn check(what: &str, body: &Value, at: At, table: &[(&str, Kind)]) {
    let targets: Vec<&Value> = match at {
        At::Body => vec![body],
        At::Data => vec![&body["data"]],
        At::EachOfData => {
            let list = body["data"]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: data is not a list: {body}"));
            assert!(!list.is_empty(), "{what}: data is an empty list: {body}");
            list.iter().collect()
        }
        At::FirstColumn => vec![&body["data"]["columns"][0]],
        At::EachField => {
            let map = body["data"]["fields"]
                .as_object()
                .unwrap_or_else(|| panic!("{what}: data.fields is not a map: {body}"));
            assert!(!map.is_empty(), "{what}: no fields: {body}");
            map.values().collect()
        }
        At::EachFieldInfo => {
            let list = body["data"]["fields"]
                .as_array()
                .unwrap_or_else(|| panic!("{what}: data.fields is not a list: {body}"));
            assert!(!list.is_empty(), "{what}: no fields: {body}");
            list.iter().collect()
        }
    };
    for target in targets {
        for (field, kind) in table {
            assert_eq!(
                target.get(field).and_then(kind_of),
                Some(*kind),
                "{what}: field {field:?} should be {kind:?}: {target}"
            );
        }
    }
    check_envelope(what, body);
}

fn check_envelope(what: &str, body: &Value) {
    for (field, kind) in ENVELOPE {
        assert_eq!(
            body.get(field).and_then(kind_of),
            Some(*kind),
            "{what}: {field}: {body}"
        );
    }
}

async fn lytics_answers_in_lytics_shapes(app: App) {
    // Data, as a Braze webhook sends it, and the pipeline run.
    for n in 0..3 {
        let (s, b) = app
            .post(
                "/c/1/braze_users",
                Some(ADMIN),
                json!({"external_id": format!("u{n}"), "email": format!("u{n}@example.com"), "country": "FR"})
                    .to_string(),
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
    }
    // A segment created as Lytics' Go client creates it: its whole Segment record as JSON (the
    // unset fields at their zero values), the slug beside the statement, no content type.
    let go_client_body = json!({
        "id": "", "aid": 0, "account_id": "", "name": "French", "is_public": false,
        "slug_name": "french", "description": "people in France", "author_id": "",
        "updated": "0001-01-01T00:00:00Z", "created": "0001-01-01T00:00:00Z", "op": "",
        "negate": false, "tags": null, "invalid": false, "invalid_reason": "", "deleted": false,
        "save_hist": false, "segment_ql": "FILTER country == \"FR\"",
    });
    let r = Request::post("/api/segment")
        .header("authorization", ADMIN)
        .body(Body::from(go_client_body.to_string()))
        .unwrap();
    let (s, b) = app.send(r).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    check("POST /api/segment", &b, At::Data, SEGMENT);
    assert_eq!(b["data"]["description"], "people in France");
    app.engine.catch_up_all().await.unwrap();
    // An authorization and a work, through Lytics' door.
    let (s, b) = app
        .post(
            "/v2/auth/braze",
            Some(ADMIN),
            json!({"label": "Braze", "config": {"apikey": "k-conformance", "instance": "US-03"}})
                .to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let auth_id = b["data"]["id"].as_i64().unwrap().to_string();
    let (s, b) = app
        .post(
            "/api/work",
            Some(ADMIN),
            json!({"workflow": "braze-export", "name": "to braze", "auth_ids": [auth_id],
                   "config": {"identifier_field": "external_id", "segment_ids": ["french"]}})
            .to_string(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    check("POST /api/work", &b, At::Data, WORK);
    let work_id = b["data"]["id"].as_str().unwrap().to_string();

    let table: Vec<(String, At, Fields)> = vec![
        ("/api/segment?table=user".into(), At::EachOfData, SEGMENT),
        ("/api/segment/french".into(), At::Data, SEGMENT),
        ("/api/segment/french/sizes".into(), At::Data, SIZE),
        (
            "/api/segment/sizes?ids=french,lytics_all".into(),
            At::EachOfData,
            SIZE,
        ),
        ("/api/segment/french/scan?limit=2".into(), At::Body, PAGE),
        (
            "/api/segment/french/scan?limit=2".into(),
            At::EachOfData,
            &[("segments", List)],
        ),
        (
            "/api/entity/user/email/u1@example.com".into(),
            At::Data,
            &[("segments", List)],
        ),
        ("/api/schema/user".into(), At::Data, SCHEMA),
        ("/api/schema/user".into(), At::FirstColumn, COLUMN),
        ("/api/schema".into(), At::Data, SCHEMA),
        ("/api/schema/_streams".into(), At::EachOfData, STREAM),
        ("/api/query/braze_users".into(), At::Data, QUERY),
        ("/api/query/braze_users".into(), At::EachField, COLUMN),
        ("/api/query".into(), At::EachOfData, QUERY),
        (
            "/api/schema/user/fieldinfo?fields=country,email".into(),
            At::Data,
            FIELD_INFO,
        ),
        (
            "/api/schema/user/fieldinfo?fields=country,email".into(),
            At::EachFieldInfo,
            ONE_FIELD_INFO,
        ),
        ("/api/work".into(), At::EachOfData, WORK),
        (format!("/api/work/{work_id}"), At::Data, WORK),
        ("/api/auth".into(), At::EachOfData, AUTH),
        (format!("/api/auth/{auth_id}"), At::Data, AUTH),
        ("/api/account".into(), At::EachOfData, ACCOUNT),
        ("/api/account/current".into(), At::Data, ACCOUNT),
        ("/api/account/1".into(), At::Data, ACCOUNT),
    ];
    for (path, at, fields) in table {
        let (s, b) = app.get(&path, ADMIN).await;
        assert_eq!(s, StatusCode::OK, "{path}: {b}");
        check(&path, &b, at, fields);
    }

    // The entity's `meta` stands beside `data`; `fields=` keeps only the fields asked for.
    let (_, b) = app
        .get(
            "/api/entity/user/email/u1@example.com?fields=email,country",
            ADMIN,
        )
        .await;
    assert_eq!(b["meta"]["name"], "user");
    assert!(
        b["meta"]["by_fields"]
            .as_array()
            .unwrap()
            .contains(&json!("email")),
        "{b}"
    );
    let mut names: Vec<&String> = b["data"].as_object().unwrap().keys().collect();
    names.sort();
    assert_eq!(names, ["country", "email"], "{b}");

    // The pager of Lytics' clients: follow `_next` until it is "", every member once.
    let (mut start, mut seen) = (String::new(), Vec::new());
    loop {
        let (s, b) = app
            .get(
                &format!("/api/segment/french/scan?limit=1&start={start}"),
                ADMIN,
            )
            .await;
        assert_eq!(s, StatusCode::OK, "{b}");
        assert_eq!(b["total"], json!(3), "{b}");
        for e in b["data"].as_array().unwrap() {
            seen.push(e["email"].as_str().unwrap().to_string());
        }
        match b["_next"].as_str().unwrap() {
            "" => break,
            next => start = next.to_string(),
        }
        assert!(seen.len() <= 3, "the pager does not end: {seen:?}");
    }
    seen.sort();
    assert_eq!(seen, ["u0@example.com", "u1@example.com", "u2@example.com"]);

    // An ad-hoc scan: a FilterQL body, no audience saved.
    let r = Request::post("/api/segment/scan?limit=10")
        .header("authorization", ADMIN)
        .header("content-type", "application/json")
        .body(Body::from("FILTER email == \"u2@example.com\""))
        .unwrap();
    let (s, b) = app.send(r).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    check("POST /api/segment/scan", &b, At::Body, PAGE);
    assert_eq!(b["data"].as_array().unwrap().len(), 1, "{b}");
    assert_eq!(b["_next"], "", "{b}");

    // Validate takes the bare statement even labelled as JSON, as go-lytics sends it.
    let r = Request::post("/api/segment/validate")
        .header("authorization", ADMIN)
        .header("content-type", "application/json")
        .body(Body::from("FILTER country == \"FR\""))
        .unwrap();
    let (s, b) = app.send(r).await;
    assert_eq!(
        (s, &b["message"]),
        (StatusCode::OK, &json!("success")),
        "{b}"
    );

    // A query's validation answers a list, one record per statement.
    let (s, b) = app
        .post_text(
            "/api/query/_validate",
            ADMIN,
            "SELECT a FROM s INTO user BY a ALIAS ok",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    check("POST /api/query/_validate", &b, At::EachOfData, QUERY);

    // Field info counts what profiles hold.
    let (_, b) = app
        .get(
            "/api/schema/user/fieldinfo?fields=country,nothing&limit=5",
            ADMIN,
        )
        .await;
    let country = &b["data"]["fields"][0];
    assert_eq!(
        (&country["terms_counts"]["FR"], &country["ents_present"]),
        (&json!(3), &json!(3)),
        "{b}"
    );
    assert_eq!(b["data"]["fields"][1]["ents_absent"], json!(3), "{b}");
    let (s, _) = app
        .get("/api/schema/user/fieldinfo?fields=country&limit=0", ADMIN)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);

    // The query test: the entity one event (the query parameters) makes; nothing stored.
    let (s, b) = app
        .post_text(
            "/api/query/_test?email=Ann@Example.com&country=NO",
            ADMIN,
            "SELECT email(email) AS email, country FROM sample INTO user BY email ALIAS sample_test",
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (&b["data"]["email"], &b["data"]["country"]),
        (&json!("ann@example.com"), &json!("NO")),
        "{b}"
    );
    let (s, _) = app.get("/api/query/sample_test", ADMIN).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "a test stores nothing");

    // Errors and a 405 answer in the envelope too.
    let (s, b) = app.get("/api/segment/nope/sizes", ADMIN).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    check_envelope("a 404", &b);
    let (s, b) = app.delete("/api/schema/_streams", ADMIN).await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    check_envelope("a 405", &b);
    // Secrets stay write-only through Lytics' door.
    let (_, b) = app.get("/api/auth", ADMIN).await;
    assert!(!b.to_string().contains("k-conformance"), "{b}");
}

http_suite!(lytics_answers_in_lytics_shapes);
