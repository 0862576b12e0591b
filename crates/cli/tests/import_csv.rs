//! `tributary import csv` against a running `serve`: a file with a bad row is refused whole
//! (nothing sent) and names the line; with `--droperrors` the good rows arrive, in several
//! requests, and the bad one is listed; a gzipped file works the same.

mod support;

use std::io::Write;
use std::process::Command;

use support::{ADMIN, Serve, create_token};

fn import(serve: &Serve, token: &str, file: &std::path::Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(["import", "csv"])
        .arg(file)
        .args([
            "--stream",
            "loaded",
            "--url",
            &serve.base,
            "--chunk-rows",
            "5",
        ])
        .env("TRIBUTARY_TOKEN", token)
        .args(extra)
        .output()
        .expect("running tributary import");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn count(serve: &Serve) -> i64 {
    let r = support::client()
        .get(serve.url("/v2/stream"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let b: serde_json::Value = r.json().await.unwrap();
    b["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "loaded")
        .map_or(0, |s| s["count"].as_i64().unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn import_csv_loads_a_file_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), None, "serve");
    let token = create_token(&serve.base, 1, &["data_manager"]).await;
    let mut text = String::from("external_id,email\n");
    for i in 0..12 {
        text.push_str(&format!("u{i},u{i}@example.com\n"));
        if i == 6 {
            text.push_str("broken,row,with,too,many\n");
        }
    }
    let file = dir.path().join("users.csv");
    std::fs::write(&file, &text).unwrap();

    let (ok, out) = import(&serve, &token, &file, &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("line 9"), "the bad row's line: {out}");
    assert_eq!(count(&serve).await, 0, "nothing of a refused file is sent");

    let (ok, out) = import(&serve, &token, &file, &["--droperrors"]);
    assert!(ok, "{out}");
    assert!(
        out.contains("12 rows stored") && out.contains("1 rejected"),
        "{out}"
    );
    assert!(out.contains("line 9:"), "{out}");
    assert_eq!(count(&serve).await, 12);

    let gz = dir.path().join("more.csv.gz");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b"external_id\nz1\nz2\n").unwrap();
    std::fs::write(&gz, e.finish().unwrap()).unwrap();
    let (ok, out) = import(&serve, &token, &gz, &[]);
    assert!(ok && out.contains("2 rows stored"), "{out}");
    assert_eq!(count(&serve).await, 14);

    let (ok, out) = import(&serve, "wrong-token", &gz, &[]);
    assert!(!ok && out.contains("401"), "{out}");
}
