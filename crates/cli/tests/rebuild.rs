//! `tributary rebuild` on a stopped install: every raw event is replayed through the mapping,
//! the same profiles come back, and progress is reported (plain lines when not on a terminal).

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::{Serve, api, wait_for};

const USERS: usize = 300;

#[tokio::test(flavor = "multi_thread")]
async fn rebuild_replays_every_event_and_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(dir.path(), None, "serve");
    // Two events per user (an attribute update after the first), in the mapped stream.
    let events: Vec<_> = (0..USERS)
        .flat_map(|i| {
            [
                json!({"external_id": format!("u{i}"), "email": format!("u{i}@example.com")}),
                json!({"external_id": format!("u{i}"), "first_name": format!("N{i}")}),
            ]
        })
        .collect();
    let (status, body) = api(&serve, "POST", "/collect/json/braze_users", json!(events)).await;
    assert_eq!(status, 200, "{body}");
    wait_for("the pipeline to apply every event", async || {
        let (_, streams) = api(&serve, "GET", "/v2/stream", json!(null)).await;
        streams["data"]
            .as_array()
            .is_some_and(|s| s.iter().all(|s| s["pipeline_lag_events"] == 0))
    })
    .await;
    serve.signal(libc::SIGTERM);
    assert!(serve.wait(Duration::from_secs(30)), "{}", serve.log_text());

    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .arg("rebuild")
        .arg("--data-dir")
        .arg(dir.path())
        .env("TRIBUTARY_MASTER_KEY", support::MASTER_KEY)
        .env_remove("TRIBUTARY_DATABASE_URL")
        .output()
        .expect("running tributary rebuild");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    let total = 2 * USERS;
    assert!(
        stdout.contains(&format!(
            "rebuilt account 1: {total} events, {USERS} profiles"
        )),
        "{stdout}"
    );
    // Not a terminal: a first line with the total, and a last one with everything applied.
    assert!(
        stderr.contains(&format!("rebuild: 0 of {total} events")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("rebuild: {total} of {total} events")),
        "{stderr}"
    );

    // The rebuilt profiles are whole: a restarted server finds both events' fields.
    let serve = Serve::start(dir.path(), None, "serve-again");
    let (status, body) = api(
        &serve,
        "GET",
        "/api/entity/user/external_id/u7",
        json!(null),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["email"], "u7@example.com", "{body}");
    assert_eq!(body["data"]["first_name"], "N7", "{body}");
}
