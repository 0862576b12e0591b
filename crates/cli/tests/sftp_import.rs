//! The `sftp-import` workflow end to end: `tributary serve` reading files from a real OpenSSH
//! `sshd` on a loopback port (key authentication): a plain, a gzipped and a zipped CSV, a file seen
//! again, a new file while the job keeps watching, a replaced file, a file with a bad row
//! with and without `droperrors`, a server whose host key is not the pinned one, a Braze
//! segment export ZIP made by `braze-sim`, and a connection dropped mid-file.
//! Without sshd the test skips, unless TRIBUTARY_TEST_REQUIRE_SSHD=1 (CI) makes it fail.

mod support;

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Serve, api, assert_no_secrets, job, stream_count, wait_for};
use tributary_imports::testing::{Sshd, keygen};

async fn create_job(serve: &Serve, auth: i64, config: Value) -> i64 {
    let (s, b) = api(
        serve,
        "POST",
        "/v2/job/sftp-import",
        json!({"name": "import", "auth_ids": [auth], "config": config}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b["data"]["id"].as_i64().unwrap()
}

/// An `sftp` authorization logging in as root with `private_key` at `127.0.0.1:port`.
async fn sftp_auth(serve: &Serve, label: &str, port: u16, private_key: &str) -> i64 {
    let (s, b) = api(
        serve,
        "POST",
        "/v2/auth/sftp",
        json!({"label": label, "config": {"host": "127.0.0.1", "port": port,
               "username": "root", "private_key": private_key}}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    b["data"]["id"].as_i64().unwrap()
}

fn zipped(name: &str, text: &str) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    w.start_file(name, zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(text.as_bytes()).unwrap();
    w.finish().unwrap().into_inner()
}

fn gzip(text: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn sftp_import_reads_each_file_once_from_a_real_sshd() {
    let dir = tempfile::tempdir().unwrap();
    let Some(sshd) = Sshd::start(&dir.path().join("sshd")).unwrap() else {
        return;
    };
    let folder = dir.path().join("drop").tap_mkdir();
    let header = "external_id,email,country,updated_at\n";
    std::fs::write(
        folder.join("users_1.csv"),
        format!(
            "{header}u1,u1@example.com,FR,2024-05-01T10:00:00Z\nu2,u2@example.com,DE,\nu3,,FR,\n"
        ),
    )
    .unwrap();
    std::fs::write(
        folder.join("users_2.csv.gz"),
        gzip(&format!(
            "{header}u4,u4@example.com,NO,\nu5,u5@example.com,NO,\n"
        )),
    )
    .unwrap();
    std::fs::write(
        folder.join("users_0.zip"),
        zipped(
            "users_0.csv",
            &format!("{header}u8,u8@example.com,IT,\nu9,u9@example.com,IT,\n"),
        ),
    )
    .unwrap();
    std::fs::write(folder.join("other.txt"), "not for this job").unwrap();
    std::fs::write(folder.join("bad.csv"), "a,b\n1,2\n3\n4,5\n").unwrap();

    let data = dir.path().join("data").tap_mkdir();
    let serve = Serve::start(&data, None, "serve");
    let key = sshd.client_key();
    let auth = sftp_auth(&serve, "drop box", sshd.port, &key).await;

    // A watching job: the three matching files (plain, gzip, ZIP), once each; the event time
    // from `updated_at`.
    let watcher = create_job(
        &serve,
        auth,
        json!({"stream": "braze_users", "folder": folder.to_str().unwrap(), "prefix": "^users_",
               "timestamps": ["updated_at"], "continuous_update": true, "file_frequency": "1s"}),
    )
    .await;
    wait_for("the first three files", async || {
        stream_count(&serve, "braze_users").await == 7
    })
    .await;
    let j = job(&serve, watcher).await;
    assert!(
        j["progress"]["host_key"]
            .as_str()
            .unwrap()
            .starts_with("ssh-ed25519 "),
        "{j}"
    );
    // Looked at again and again: nothing more is stored.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(stream_count(&serve, "braze_users").await, 7);
    // A new file, and a replaced one (another size): both read.
    std::fs::write(
        folder.join("users_3.csv"),
        format!("{header}u6,u6@example.com,SE,\n"),
    )
    .unwrap();
    std::fs::write(
        folder.join("users_1.csv"),
        format!("{header}u1,u1@example.com,FR,\nu7,u7@example.com,FR,\n"),
    )
    .unwrap();
    wait_for("the new and the replaced file", async || {
        stream_count(&serve, "braze_users").await == 10
    })
    .await;
    let j = job(&serve, watcher).await;
    assert_eq!(j["metrics"]["files_imported"], 5, "{j}");
    let (s, _) = api(
        &serve,
        "POST",
        &format!("/v2/job/{watcher}/pause"),
        Value::Null,
    )
    .await;
    assert_eq!(s, 200);

    // The event time came from the file.
    let (_, events) = api(
        &serve,
        "GET",
        "/v2/stream/braze_users/events?limit=100",
        Value::Null,
    )
    .await;
    let u1 = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"]["updated_at"] == "2024-05-01T10:00:00Z")
        .expect("u1's first row");
    assert!(
        u1["event_time"]
            .as_str()
            .unwrap()
            .starts_with("2024-05-01T10:00:00"),
        "{u1}"
    );

    // A bad row without droperrors: the job fails naming the line, and nothing is stored.
    let strict = create_job(
        &serve,
        auth,
        json!({"stream": "strict", "folder": folder.to_str().unwrap(), "filename": "bad.csv"}),
    )
    .await;
    wait_for("the strict job to fail", async || {
        job(&serve, strict).await["state"] == "failed"
    })
    .await;
    let j = job(&serve, strict).await;
    assert!(j["last_error"].as_str().unwrap().contains("line 3"), "{j}");
    assert_eq!(stream_count(&serve, "strict").await, 0);
    // With droperrors: the good rows, and the bad one in the log with its line.
    let lenient = create_job(
        &serve,
        auth,
        json!({"stream": "lenient", "folder": folder.to_str().unwrap(), "filename": "bad.csv",
               "droperrors": true}),
    )
    .await;
    wait_for("the lenient job", async || {
        job(&serve, lenient).await["state"] == "completed"
    })
    .await;
    assert_eq!(stream_count(&serve, "lenient").await, 2);
    let (_, logs) = api(
        &serve,
        "GET",
        &format!("/v2/job/{lenient}/logs"),
        Value::Null,
    )
    .await;
    assert!(logs.to_string().contains("1 rejected; line 3"), "{logs}");

    // A pinned host key that is not the server's: refused before logging in.
    let other = dir.path().join("other_host_key");
    keygen(&other).unwrap();
    let wrong = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let (s, b) = api(
        &serve,
        "POST",
        "/v2/auth/sftp",
        json!({"label": "pinned", "config": {"host": "127.0.0.1", "port": sshd.port,
               "username": "root", "private_key": key, "host_key": wrong}}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let pinned = create_job(
        &serve,
        b["data"]["id"].as_i64().unwrap(),
        json!({"stream": "pinned", "folder": folder.to_str().unwrap()}),
    )
    .await;
    wait_for("the pinned job to fail", async || {
        job(&serve, pinned).await["state"] == "failed"
    })
    .await;
    let j = job(&serve, pinned).await;
    assert!(
        j["last_error"].as_str().unwrap().contains("host key"),
        "{j}"
    );
    assert_eq!(stream_count(&serve, "pinned").await, 0);

    let secret_line = key.lines().nth(1).unwrap().to_string();
    assert_no_secrets(&serve.log_text(), &[&secret_line]);
}

/// gpg with a home of its own; its agent is stopped when the test ends.
struct Gpg {
    home: PathBuf,
}

impl Gpg {
    fn new(home: PathBuf) -> Gpg {
        std::fs::create_dir_all(&home).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        Gpg { home }
    }

    fn run(&self, args: &[&str]) -> Vec<u8> {
        let out = Command::new("gpg")
            .env("GNUPGHOME", &self.home)
            .args(["--batch", "--yes", "--pinentry-mode", "loopback"])
            .args(args)
            .output()
            .expect("running gpg");
        assert!(
            out.status.success(),
            "gpg {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.home)
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sftp_pgp_decrypts_files_made_by_gpg() {
    let dir = tempfile::tempdir().unwrap();
    let Some(sshd) = Sshd::start(&dir.path().join("sshd")).unwrap() else {
        return;
    };
    let gpg = Gpg::new(dir.path().join("gnupg"));
    let passphrase = "pgp-pass-4c1e";
    gpg.run(&[
        "--passphrase",
        passphrase,
        "--quick-gen-key",
        "Import <import@example.invalid>",
        "future-default",
        "default",
        "never",
    ]);
    let secret_key = String::from_utf8(gpg.run(&[
        "--passphrase",
        passphrase,
        "--armor",
        "--export-secret-keys",
        "import@example.invalid",
    ]))
    .unwrap();
    let public_key =
        String::from_utf8(gpg.run(&["--armor", "--export", "import@example.invalid"])).unwrap();
    let folder = dir.path().join("drop").tap_mkdir();
    let plain = folder.join("plain.tmp");
    // gpg compresses before it encrypts: the import has to inflate what it decrypts.
    std::fs::write(&plain, "external_id,country\np1,FR\np2,FR\np3,DE\n").unwrap();
    let encrypted = folder.join("users.csv.gpg");
    gpg.run(&[
        "--trust-model",
        "always",
        "-r",
        "import@example.invalid",
        "-o",
        encrypted.to_str().unwrap(),
        "--encrypt",
        plain.to_str().unwrap(),
    ]);
    std::fs::remove_file(&plain).unwrap();

    let serve = Serve::start(&dir.path().join("data").tap_mkdir(), None, "serve");
    let auth = async |pgp_key: &str, pass: &str| -> i64 {
        let (s, b) = api(
            &serve,
            "POST",
            "/v2/auth/sftp-pgp",
            json!({"label": "encrypted drop", "config": {"host": "127.0.0.1", "port": sshd.port,
                   "username": "root", "private_key": sshd.client_key(),
                   "pgp_private_key": pgp_key, "pgp_passphrase": pass}}),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        b["data"]["id"].as_i64().unwrap()
    };
    let config = |stream: &str| json!({"stream": stream, "folder": folder.to_str().unwrap()});

    let good = create_job(&serve, auth(&secret_key, passphrase).await, config("pgp")).await;
    wait_for("the decrypted rows", async || {
        job(&serve, good).await["state"] == "completed"
    })
    .await;
    assert_eq!(stream_count(&serve, "pgp").await, 3);

    let wrong = create_job(
        &serve,
        auth(&secret_key, "not-the-passphrase").await,
        config("wrong"),
    )
    .await;
    wait_for("a wrong passphrase to fail", async || {
        job(&serve, wrong).await["state"] == "failed"
    })
    .await;
    let j = job(&serve, wrong).await;
    assert!(
        j["last_error"]
            .as_str()
            .unwrap()
            .contains("decrypting failed"),
        "{j}"
    );
    assert_eq!(stream_count(&serve, "wrong").await, 0);

    let public = create_job(&serve, auth(&public_key, "unused").await, config("public")).await;
    wait_for("a public key to be refused", async || {
        job(&serve, public).await["state"] == "failed"
    })
    .await;
    let j = job(&serve, public).await;
    assert!(
        j["last_error"].as_str().unwrap().contains("public key"),
        "{j}"
    );

    // An encrypted file without a PGP key: refused, naming the file.
    let (_, b) = api(&serve, "POST", "/v2/auth/sftp", json!({"label": "plain", "config": {
        "host": "127.0.0.1", "port": sshd.port, "username": "root", "private_key": sshd.client_key()}})).await;
    let plain_job = create_job(&serve, b["data"]["id"].as_i64().unwrap(), config("nokey")).await;
    wait_for("no key to fail", async || {
        job(&serve, plain_job).await["state"] == "failed"
    })
    .await;
    let j = job(&serve, plain_job).await;
    assert!(
        j["last_error"]
            .as_str()
            .unwrap()
            .contains("users.csv.gpg is PGP-encrypted"),
        "{j}"
    );

    let key_line = secret_key.lines().nth(3).unwrap_or_default().to_string();
    assert_no_secrets(&serve.log_text(), &[passphrase, &key_line]);
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for PathBuf {
    fn tap_mkdir(self) -> PathBuf {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}

/// A Braze dashboard segment export (a ZIP holding one CSV in Braze's User Data columns), made
/// by `braze-sim`, dropped on the SFTP server and imported into `braze_users`: the built-in
/// mapping builds the profiles from Braze's own column names.
#[tokio::test(flavor = "multi_thread")]
async fn a_segment_export_zip_made_by_braze_sim_builds_profiles() {
    let dir = tempfile::tempdir().unwrap();
    let Some(sshd) = Sshd::start(&dir.path().join("sshd")).unwrap() else {
        return;
    };
    let folder = dir.path().join("exports").tap_mkdir();
    let sim = support::BrazeSim::start(&["--key", "export-key=users.track"]);
    sim.track(
        "export-key",
        json!([
            {"external_id": "zip1", "email": "zip1@example.com", "first_name": "Zed", "country": "NO"},
            {"external_id": "zip2", "email": "zip2@example.com", "first_name": "Zoe"},
        ]),
    )
    .await;
    sim.post(
        "/_sim/segments/export",
        json!({"path": folder.join("segment-export.zip")}),
    )
    .await;

    let data = dir.path().join("data").tap_mkdir();
    let serve = Serve::start(&data, None, "serve");
    let auth = sftp_auth(&serve, "braze exports", sshd.port, &sshd.client_key()).await;
    let id = create_job(
        &serve,
        auth,
        json!({"stream": "braze_users", "folder": folder.to_str().unwrap()}),
    )
    .await;
    wait_for("the import to complete", async || {
        let state = job(&serve, id).await["state"].clone();
        assert_ne!(state, "failed", "{}", job(&serve, id).await);
        state == "completed"
    })
    .await;
    assert_eq!(stream_count(&serve, "braze_users").await, 2);
    wait_for("the profiles", async || {
        let (_, b) = api(
            &serve,
            "GET",
            "/api/entity/user/external_id/zip1",
            Value::Null,
        )
        .await;
        b["data"]["first_name"] == "Zed" && b["data"]["email"] == "zip1@example.com"
    })
    .await;
}

/// A TCP proxy in front of sshd that cuts its first connection once `cut_after` bytes have
/// come from the server (a server or network dropping the connection mid-file), then passes
/// every later connection whole. Tells `cut` when it cuts.
async fn dropping_proxy(
    sshd_port: u16,
    cut_after: usize,
    cut: tokio::sync::oneshot::Sender<()>,
) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut cut = Some(cut);
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", sshd_port)).await else {
                return;
            };
            let signal = cut.take();
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let upstream = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
                });
                let mut sent = 0usize;
                let mut buffer = vec![0u8; 16 * 1024];
                loop {
                    let n = match server_read.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if client_write.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                    sent += n;
                    if signal.is_some() && sent >= cut_after {
                        break;
                    }
                }
                upstream.abort();
                if let Some(signal) = signal {
                    let _ = signal.send(());
                }
            });
        }
    });
    port
}

/// The connection drops while the file's rows are being stored: the job logs it, looks again,
/// resumes after the last committed batch and ends with every row stored exactly once.
#[tokio::test(flavor = "multi_thread")]
async fn a_connection_dropped_mid_file_resumes_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let Some(sshd) = Sshd::start(&dir.path().join("sshd")).unwrap() else {
        return;
    };
    let folder = dir.path().join("drop").tap_mkdir();
    let rows = 40_000;
    let mut text = String::from("external_id,email\n");
    for i in 0..rows {
        text.push_str(&format!("d{i:06},d{i:06}@example.com\n"));
    }
    std::fs::write(folder.join("big.csv"), &text).unwrap();
    // The file is read twice (a check, then the import): cut half-way through the second read.
    let (cut_tx, cut_rx) = tokio::sync::oneshot::channel();
    let proxy = dropping_proxy(sshd.port, text.len() * 3 / 2, cut_tx).await;

    let data = dir.path().join("data").tap_mkdir();
    let serve = Serve::start(&data, None, "serve");
    let auth = sftp_auth(&serve, "flaky", proxy, &sshd.client_key()).await;
    let id = create_job(
        &serve,
        auth,
        json!({"stream": "flaky", "folder": folder.to_str().unwrap(),
               "continuous_update": true, "file_frequency": "1s"}),
    )
    .await;
    tokio::time::timeout(Duration::from_secs(60), cut_rx)
        .await
        .expect("the proxy cut the connection")
        .unwrap();
    let at_cut = stream_count(&serve, "flaky").await;
    assert!(
        at_cut > 0 && at_cut < rows,
        "cut while storing: {at_cut} of {rows} stored"
    );
    wait_for("every row", async || {
        stream_count(&serve, "flaky").await >= rows
    })
    .await;
    wait_for("the file to be recorded as imported", async || {
        job(&serve, id).await["progress"]["files_imported"] == 1
    })
    .await;
    assert_eq!(stream_count(&serve, "flaky").await, rows, "no row twice");
    let (_, logs) = api(&serve, "GET", &format!("/v2/job/{id}/logs"), Value::Null).await;
    assert!(
        logs.to_string().contains("trying again at the next look"),
        "{logs}"
    );
}

/// `diff`: the first file is imported whole; a later file (the day's new export) stores only
/// the rows that are new or changed since it, and the one after is compared with that one.
#[tokio::test(flavor = "multi_thread")]
async fn diff_imports_only_the_rows_that_changed_since_the_previous_file() {
    let dir = tempfile::tempdir().unwrap();
    let Some(sshd) = Sshd::start(&dir.path().join("sshd")).unwrap() else {
        return;
    };
    let folder = dir.path().join("daily").tap_mkdir();
    let header = "external_id,email,country\n";
    let write = |name: &str, rows: &str, modified: i64| {
        let path = folder.join(name);
        std::fs::write(&path, format!("{header}{rows}")).unwrap();
        let time = std::time::UNIX_EPOCH + Duration::from_secs(modified as u64);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(time)
            .unwrap();
    };
    write(
        "export_1.csv",
        "a,a@example.com,FR\nb,b@example.com,DE\nc,c@example.com,NO\n",
        1_700_000_000,
    );
    let data = dir.path().join("data").tap_mkdir();
    let serve = Serve::start(&data, None, "serve");
    let auth = sftp_auth(&serve, "daily", sshd.port, &sshd.client_key()).await;
    let id = create_job(
        &serve,
        auth,
        json!({"stream": "daily", "folder": folder.to_str().unwrap(), "prefix": "^export_",
               "diff": true, "continuous_update": true, "file_frequency": "1s"}),
    )
    .await;
    wait_for("the first file", async || {
        job(&serve, id).await["metrics"]["files_imported"] == 1
    })
    .await;
    assert_eq!(stream_count(&serve, "daily").await, 3);

    // The next export: a and c unchanged, b changed country, d new.
    write(
        "export_2.csv",
        "a,a@example.com,FR\nb,b@example.com,IT\nc,c@example.com,NO\nd,d@example.com,ES\n",
        1_700_086_400,
    );
    wait_for("the second file", async || {
        job(&serve, id).await["metrics"]["files_imported"] == 2
    })
    .await;
    assert_eq!(stream_count(&serve, "daily").await, 3 + 2);
    let j = job(&serve, id).await;
    assert_eq!(j["metrics"]["rows_unchanged"], 2, "{j}");

    // Compared with the second file, not the first: b back to DE is a change again.
    write(
        "export_3.csv",
        "a,a@example.com,FR\nb,b@example.com,DE\nd,d@example.com,ES\n",
        1_700_172_800,
    );
    wait_for("the third file", async || {
        job(&serve, id).await["metrics"]["files_imported"] == 3
    })
    .await;
    assert_eq!(stream_count(&serve, "daily").await, 3 + 2 + 1);
    let events = support::stream_events(&serve.base, "daily").await;
    assert_eq!(events.len(), 6);
}
