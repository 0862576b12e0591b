//! The simulator over HTTP, checked against `docs/braze.md` §7.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use braze_sim::{Sim, SimConfig};
use serde_json::{Value, json};

struct Running {
    base: String,
    client: reqwest::Client,
}

async fn start(config: SimConfig) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let sim = Sim::new(config);
    tokio::spawn(braze_sim::serve(listener, sim, std::future::pending()));
    Running {
        base,
        client: reqwest::Client::new(),
    }
}

fn keys() -> HashMap<String, HashSet<String>> {
    HashMap::from([
        (
            "good".to_string(),
            HashSet::from([
                "users.track".to_string(),
                "users.export.ids".to_string(),
                "users.delete".to_string(),
            ]),
        ),
        (
            "export-only".to_string(),
            HashSet::from(["users.export.ids".to_string()]),
        ),
    ])
}

fn config() -> SimConfig {
    SimConfig {
        keys: keys(),
        ..SimConfig::default()
    }
}

impl Running {
    async fn send(&self, path: &str, key: &str, body: Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .expect("send")
    }

    async fn track(&self, key: &str, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
        let r = self.send("/users/track", key, body).await;
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        (status, headers, r.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        let r = self.send(path, key, body).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn faults(&self, faults: Value) {
        let (status, _) = self.post("/_sim/faults", "", faults).await;
        assert_eq!(status, 200);
    }

    async fn get(&self, path: &str) -> Value {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json")
    }
}

#[tokio::test]
async fn keys_permissions_and_paths() {
    let sim = start(config()).await;
    let body = json!({"attributes": [{"external_id": "u1", "a": 1}]});
    let (status, _, reply) = sim.track("wrong", body.clone()).await;
    assert_eq!(
        (status, reply),
        (401, json!({"message": "Invalid API Key"}))
    );
    let (status, _, reply) = sim.track("export-only", body.clone()).await;
    assert_eq!((status, reply), (403, json!({"message": "Access Denied"})));
    let (status, _, _) = sim.track("\"good\"", body).await;
    assert_eq!(status, 401, "a quoted key is invalid");
    let r = sim
        .client
        .post(format!("{}/users/nope", sim.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn success_partial_success_fatal_and_the_75_limit() {
    let sim = start(config()).await;
    let (status, headers, reply) = sim
        .track(
            "good",
            json!({"attributes": [{"external_id": "u1", "plan": "pro"}], "partner": "x"}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(
        reply,
        json!({"message": "success", "attributes_processed": 1})
    );
    for h in [
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
    ] {
        assert!(headers.contains_key(h), "{h} on every response");
    }

    let (status, _, reply) = sim
        .track(
            "good",
            json!({
                "attributes": [{"external_id": "u2", "x": 1}, {"email": "not-an-email"}],
                "events": [{"external_id": "u2", "name": "opened", "time": "2024-01-01T00:00:00Z"},
                           {"name": "opened", "time": "2024-01-01T00:00:00Z"}],
                "purchases": [{"external_id": "u2", "product_id": "p", "currency": "USD",
                               "price": 1.5, "quantity": 101, "time": "2024-01-01"}]
            }),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(reply["message"], "success");
    assert_eq!(reply["attributes_processed"], 1);
    assert_eq!(reply["events_processed"], 1);
    assert_eq!(reply["purchases_processed"], 0);
    let errors = reply["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 3);
    assert_eq!(
        errors[1],
        json!({"type": "'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required",
               "input_array": "events", "index": 1})
    );
    assert_eq!(errors[2]["type"], "'quantity' is not valid");

    let (status, _, reply) = sim.track("good", json!({"attributes": [{"x": 1}]})).await;
    assert_eq!(status, 400);
    assert_eq!(
        reply["message"],
        "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields."
    );
    let (status, _, _) = sim.track("good", json!({})).await;
    assert_eq!(status, 400);

    let many: Vec<Value> = (0..76)
        .map(|i| json!({"external_id": format!("m{i}"), "a": 1}))
        .collect();
    let (status, _, reply) = sim.track("good", json!({"attributes": many})).await;
    assert_eq!(
        (status, reply["message"].clone()),
        (400, json!("Max Input Length Exceeded"))
    );
    assert_eq!(
        sim.get("/_sim/stats").await["users"],
        2,
        "a rejected request changes nothing"
    );
}

#[tokio::test]
async fn attribute_semantics_and_data_points() {
    let sim = start(config()).await;
    let send = |attrs: Value| sim.track("good", json!({"attributes": [attrs]}));
    send(json!({"external_id": "u1", "lytics_segments": {"add": ["a", "b"]}, "country": "AU"}))
        .await;
    send(json!({"external_id": "u1", "lytics_segments": {"add": ["a"], "remove": ["b"]}})).await;
    send(json!({"external_id": "u1", "visits": {"inc": 2}, "tier": null})).await;
    let stats = sim.get("/_sim/stats").await;
    // add a,b = 2; add a + remove b = 2; inc = 1; null = 1; country is free.
    assert_eq!(stats["data_points"], 6);
    let user = sim.get("/_sim/users/u1").await;
    assert_eq!(
        user["user"]["custom_attributes"]["lytics_segments"],
        json!(["a"])
    );
    assert_eq!(user["user"]["custom_attributes"]["visits"], 2);
    assert_eq!(user["user"]["country"], "AU");
    assert_eq!(user["updates"], 3);

    // Update-only: no user is created.
    send(json!({"external_id": "ghost", "a": 1, "_update_existing_only": true})).await;
    // An alias creates a user only with _update_existing_only: false.
    send(json!({"user_alias": {"alias_name": "x", "alias_label": "l"}, "a": 1})).await;
    assert_eq!(sim.get("/_sim/stats").await["users"], 1);
    send(
        json!({"user_alias": {"alias_name": "x", "alias_label": "l"}, "a": 1,
                "_update_existing_only": false}),
    )
    .await;
    assert_eq!(sim.get("/_sim/stats").await["users"], 2);
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_headers() {
    let sim = start(SimConfig {
        track_limit: 3,
        // A window of an hour: the four requests below cannot straddle two windows (in
        // practice).
        track_period: Duration::from_secs(3_600),
        ..config()
    })
    .await;
    let body = json!({"attributes": [{"external_id": "u1", "a": 1}]});
    for expected_remaining in [2, 1, 0] {
        let (status, headers, _) = sim.track("good", body.clone()).await;
        assert_eq!(status, 201);
        assert_eq!(
            headers["x-ratelimit-remaining"],
            expected_remaining.to_string().as_str()
        );
    }
    let (status, headers, reply) = sim.track("good", body).await;
    assert_eq!(status, 429);
    assert_eq!(reply["message"], "Rate Limit Exceeded");
    let reset: u64 = headers["x-ratelimit-reset"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("int");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    assert!(
        reset > now && reset <= now + 3_601,
        "reset is the window's end, in epoch seconds"
    );
    assert_eq!(sim.get("/_sim/stats").await["data_points"], 3);
}

#[tokio::test]
async fn faults_are_injected_and_nothing_is_processed() {
    let sim = start(config()).await;
    let r = sim
        .client
        .post(format!("{}/_sim/faults", sim.base))
        .json(&json!({"burst_429": 2, "error_rate": 0.0}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let body = json!({"attributes": [{"external_id": "u1", "a": 1}]});
    assert_eq!(sim.track("good", body.clone()).await.0, 429);
    assert_eq!(sim.track("good", body.clone()).await.0, 429);
    assert_eq!(sim.track("good", body.clone()).await.0, 201);
    sim.client
        .post(format!("{}/_sim/faults", sim.base))
        .json(&json!({"error_rate": 1.0}))
        .send()
        .await
        .expect("send");
    let status = sim.track("good", body.clone()).await.0;
    assert!((500..=504).contains(&status), "{status}");
    sim.client
        .post(format!("{}/_sim/faults", sim.base))
        .json(&json!({"latency_ms": 150}))
        .send()
        .await
        .expect("send");
    let started = std::time::Instant::now();
    assert_eq!(sim.track("good", body).await.0, 201);
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(sim.get("/_sim/stats").await["attributes_processed"], 2);
}

#[tokio::test]
async fn applied_faults_change_the_user_and_still_answer_a_failure() {
    let sim = start(config()).await;
    sim.faults(json!({"applied_error_rate": 1.0})).await;
    let body = json!({"attributes": [{"external_id": "u1", "a": 1}]});
    let status = sim.track("good", body.clone()).await.0;
    assert!((500..=504).contains(&status), "{status}");
    sim.faults(json!({"applied_timeout_rate": 1.0, "hang_ms": 100}))
        .await;
    let started = std::time::Instant::now();
    let (status, _, _) = sim
        .track(
            "good",
            json!({"attributes": [{"external_id": "u1", "b": 2}]}),
        )
        .await;
    assert_eq!(status, 504);
    assert!(started.elapsed() >= Duration::from_millis(100));
    // Both failed requests took effect.
    let user = sim.get("/_sim/users/u1").await;
    assert_eq!(user["user"]["custom_attributes"]["a"], 1, "{user}");
    assert_eq!(user["user"]["custom_attributes"]["b"], 2, "{user}");
    let stats = sim.get("/_sim/stats").await;
    assert_eq!(stats["applied_then_failed"], 2);
    assert_eq!(stats["attributes_processed"], 2);
}

#[tokio::test]
async fn users_delete_takes_one_list_of_at_most_50() {
    let sim = start(config()).await;
    let attributes: Vec<Value> = (0..4)
        .map(|i| json!({"external_id": format!("u{i}"), "email": format!("u{i}@example.com")}))
        .collect();
    assert_eq!(
        sim.track("good", json!({"attributes": attributes})).await.0,
        201
    );
    sim.track(
        "good",
        json!({"attributes": [{"user_alias": {"alias_name": "a1", "alias_label": "crm"},
                               "_update_existing_only": false, "x": 1}]}),
    )
    .await;
    assert_eq!(sim.get("/_sim/stats").await["users"], 5);

    // Refusals delete nothing.
    let too_many: Vec<String> = (0..51).map(|i| format!("u{i}")).collect();
    let refusals = [
        ("good", json!({"external_ids": too_many})),
        ("good", json!({"external_ids": ["u0"], "braze_ids": ["x"]})),
        ("good", json!({})),
        ("good", json!({"external_ids": "u0"})),
        ("good", json!({"email_addresses": ["not-an-email"]})),
    ];
    for (key, body) in refusals {
        let (status, reply) = sim.post("/users/delete", key, body.clone()).await;
        assert_eq!(status, 400, "{body} -> {reply}");
        assert!(reply["message"].is_string(), "{reply}");
    }
    let (status, _) = sim
        .post(
            "/users/delete",
            "export-only",
            json!({"external_ids": ["u0"]}),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(sim.get("/_sim/stats").await["users"], 5);

    let deletes = [
        json!({"external_ids": ["u0", "nobody"]}),
        json!({"email_addresses": ["u1@example.com"]}),
        json!({"user_aliases": [{"alias_name": "a1", "alias_label": "crm"}]}),
    ];
    for body in deletes {
        let (status, reply) = sim.post("/users/delete", "good", body.clone()).await;
        assert_eq!(status, 202, "{body} -> {reply}");
        assert_eq!(reply["message"], "success");
    }
    let stats = sim.get("/_sim/stats").await;
    assert_eq!(stats["users"], 2, "{stats}");
    assert_eq!(stats["users_deleted"], 3);
    let users = sim.get("/_sim/users").await;
    let left: Vec<&str> = users["users"]
        .as_array()
        .expect("users")
        .iter()
        .filter_map(|u| u["user"]["external_id"].as_str())
        .collect();
    assert_eq!(left, vec!["u2", "u3"]);
}

#[tokio::test]
async fn export_ids_finds_users_and_lists_invalid_ids() {
    let sim = start(config()).await;
    sim.track(
        "good",
        json!({"attributes": [{"external_id": "u1", "first_name": "Ann", "email": "Ann@Example.com", "tier": "gold"}]}),
    )
    .await;
    let r = sim
        .client
        .post(format!("{}/users/export/ids", sim.base))
        .bearer_auth("good")
        .json(&json!({"external_ids": ["u1", "nobody"], "fields_to_export": ["external_id", "email", "custom_attributes"]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 201);
    let reply: Value = r.json().await.expect("json");
    assert_eq!(reply["invalid_user_ids"], json!(["nobody"]));
    assert_eq!(
        reply["users"][0],
        json!({"external_id": "u1", "email": "ann@example.com", "custom_attributes": {"tier": "gold"}})
    );
    let too_many: Vec<String> = (0..51).map(|i| i.to_string()).collect();
    let r = sim
        .client
        .post(format!("{}/users/export/ids", sim.base))
        .bearer_auth("good")
        .json(&json!({"external_ids": too_many}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn webhooks_are_rendered_and_retried_like_braze() {
    use axum::routing::post;
    let sim = start(config()).await;
    sim.track(
        "good",
        json!({"attributes": [{"external_id": "u1", "first_name": "Ann"}]}),
    )
    .await;
    let calls = Arc::new(AtomicUsize::new(0));
    let bodies = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let app = {
        let calls = calls.clone();
        let bodies = bodies.clone();
        axum::Router::new().route(
            "/hook",
            post(move |headers: axum::http::HeaderMap, body: String| {
                let calls = calls.clone();
                let bodies = bodies.clone();
                async move {
                    assert!(
                        headers["user-agent"]
                            .to_str()
                            .unwrap_or("")
                            .starts_with("Braze Sender")
                    );
                    // The first attempt is refused with a 503, which Braze retries.
                    if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    bodies.lock().expect("lock").push(body);
                    axum::http::StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let r = sim
        .client
        .post(format!("{}/_sim/webhooks", sim.base))
        .json(&json!({"url": url, "users": ["u1"], "backoff_ms": 10,
                      "body": "{\"name\":\"{{${first_name}}}\",\"id\":\"{{${user_id}}}\"}"}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 202);
    for _ in 0..100 {
        if sim.get("/_sim/stats").await["webhooks"]["delivered"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        *bodies.lock().expect("lock"),
        vec![r#"{"name":"Ann","id":"u1"}"#.to_string()]
    );
}

#[tokio::test]
async fn segment_exports_are_zipped_csv_in_brazes_columns() {
    let sim = start(config()).await;
    sim.track(
        "good",
        json!({"attributes": [
            {"external_id": "u1", "first_name": "Ann", "home_city": "Oslo", "lytics_segments": ["vip"]},
            {"external_id": "u2", "first_name": "Bo"}]}),
    )
    .await;
    let dir = std::env::temp_dir().join(format!("braze-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let path = dir.join("export.zip");
    let r = sim
        .client
        .post(format!("{}/_sim/segments/export", sim.base))
        .json(
            &json!({"path": path, "attribute": "lytics_segments", "contains": "vip",
                      "custom_attributes": ["lytics_segments"]}),
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let file = std::fs::File::open(&path).expect("zip written");
    let mut zip = zip::ZipArchive::new(file).expect("a ZIP");
    assert_eq!(zip.len(), 1);
    let mut csv_text = String::new();
    std::io::Read::read_to_string(&mut zip.by_index(0).expect("entry"), &mut csv_text)
        .expect("utf-8 CSV");
    let mut reader = csv::Reader::from_reader(csv_text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("header")
        .iter()
        .map(String::from)
        .collect();
    assert_eq!(header.len(), braze_sim::CSV_COLUMNS.len() + 1);
    assert_eq!(&header[..3], ["appboy_id", "country", "created_at"]);
    assert_eq!(header.last().map(String::as_str), Some("lytics_segments"));
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
    assert_eq!(rows.len(), 1, "only the segment's member");
    let cell = |name: &str| {
        let i = header.iter().position(|h| h == name).expect("column");
        rows[0][i].to_string()
    };
    assert_eq!(cell("user_id"), "u1");
    assert_eq!(cell("first_name"), "Ann");
    assert_eq!(cell("city"), "Oslo");
    assert_eq!(cell("lytics_segments"), r#"["vip"]"#);
    assert!(!cell("appboy_id").is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}
