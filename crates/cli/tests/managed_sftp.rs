//! The managed SFTP server (`serve --sftp-listen`) driven by OpenSSH's own `sftp` and `ssh`
//! clients: key and password logins, the host key the server prints, uploads, renames and
//! deletes in the login's folder, every way out of the folder refused (`..`, absolute paths,
//! a symbolic link made by someone else, making links), no shell, no commands, no port
//! forwarding, and an `sftp-import` job reading what was uploaded.
//! Without the OpenSSH clients the test skips, unless TRIBUTARY_TEST_REQUIRE_SSHD=1 (CI).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::json;
use support::{Serve, api, assert_no_secrets, job, stream_count, wait_for};
use tributary_imports::testing::{keygen, openssh_clients};

/// How a client logs in: a key file, or a password given through `SSH_ASKPASS`.
enum Login<'a> {
    Key(&'a Path),
    Password(&'a str),
}

struct Client {
    port: u16,
    user: String,
    known_hosts: PathBuf,
    dir: PathBuf,
}

impl Client {
    fn options(&self, cmd: &mut Command, login: &Login) {
        cmd.arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()))
            .args(["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=no"])
            .args(["-o", "ConnectTimeout=10", "-F", "/dev/null"])
            // `get` writes here.
            .current_dir(&self.dir)
            .stdin(Stdio::null());
        match login {
            Login::Key(key) => {
                cmd.arg("-i")
                    .arg(key)
                    .args(["-o", "PreferredAuthentications=publickey"])
                    .args(["-o", "IdentitiesOnly=yes"]);
            }
            Login::Password(password) => {
                let askpass = self.dir.join("askpass.sh");
                std::fs::write(&askpass, format!("#!/bin/sh\necho '{password}'\n")).unwrap();
                std::fs::set_permissions(
                    &askpass,
                    std::os::unix::fs::PermissionsExt::from_mode(0o700),
                )
                .unwrap();
                cmd.env("SSH_ASKPASS", &askpass)
                    .env("SSH_ASKPASS_REQUIRE", "force")
                    .env("DISPLAY", "none")
                    .args(["-o", "PreferredAuthentications=password"])
                    .args(["-o", "NumberOfPasswordPrompts=1"]);
            }
        }
    }

    /// Runs `sftp -b` with these commands (each must succeed, as `-b` stops at the first
    /// failure); returns the output.
    fn sftp(&self, login: &Login, commands: &str) -> Output {
        let batch = self.dir.join("batch");
        std::fs::write(&batch, commands).unwrap();
        let mut cmd = Command::new("sftp");
        self.options(&mut cmd, login);
        cmd.arg("-b")
            .arg(&batch)
            .arg("-P")
            .arg(self.port.to_string())
            .arg(format!("{}@127.0.0.1", self.user));
        cmd.output().unwrap()
    }

    fn ssh(&self, login: &Login, args: &[&str]) -> Output {
        let mut cmd = Command::new("ssh");
        self.options(&mut cmd, login);
        cmd.arg("-p")
            .arg(self.port.to_string())
            .args(args)
            .arg(format!("{}@127.0.0.1", self.user));
        cmd.output().unwrap()
    }
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn succeeds(o: Output) -> String {
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn fails(o: Output) -> String {
    assert!(!o.status.success(), "should have failed: {}", text(&o));
    text(&o)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_managed_sftp_server_keeps_each_login_in_its_folder() {
    if !openssh_clients().unwrap() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (serve, root) = Serve::with_managed_sftp(
        dir.path(),
        &[("TRIBUTARY_SFTP_PUBLIC_HOST", "sftp.example.com:2022")],
    );
    let port = serve.sftp.expect("serve printed the SFTP address").port();

    // A password login: the password is shown once, with the public address.
    let (s, b) = api(
        &serve,
        "POST",
        "/v2/auth/sftp-managed",
        json!({"label": "uploads"}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(b["data"]["host"], "sftp.example.com");
    assert_eq!(b["data"]["port"], 2022);
    let password = b["data"]["password"].as_str().unwrap().to_string();
    let user = b["data"]["username"].as_str().unwrap().to_string();
    let password_auth = b["data"]["id"].as_i64().unwrap();

    // A key login.
    let key = dir.path().join("client_key");
    keygen(&key).unwrap();
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let (s, b) = api(
        &serve,
        "POST",
        "/v2/auth/sftp-managed",
        json!({"label": "partner", "config": {"public_key": public.trim()}}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert!(b["data"]["password"].is_null(), "{b}");
    let key_user = b["data"]["username"].as_str().unwrap().to_string();

    // The host key the server printed is the one it shows: pinned, strictly checked.
    let host_key = host_key_line(&serve);
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("[127.0.0.1]:{port} {host_key}\n")).unwrap();
    let client = |user: &str| Client {
        port,
        user: user.to_string(),
        known_hosts: known_hosts.clone(),
        dir: dir.path().to_path_buf(),
    };
    let by_password = client(&user);
    let by_key = client(&key_user);

    // Upload, list, rename, delete, folders.
    let csv = dir.path().join("users.csv");
    std::fs::write(
        &csv,
        "external_id,email\nm1,m1@example.com\nm2,m2@example.com\nm3,m3@example.com\n",
    )
    .unwrap();
    let out = succeeds(by_password.sftp(
        &Login::Password(&password),
        &format!(
            "put {csv} draft.csv\nmkdir incoming\nrename draft.csv incoming/users.csv\n\
             put {csv} scratch.csv\nrm scratch.csv\nls -1 incoming\npwd\n",
            csv = csv.display()
        ),
    ));
    assert!(out.contains("users.csv"), "{out}");
    assert!(out.contains("Remote working directory: /"), "{out}");
    let home = root.join(&user);
    assert!(home.join("incoming/users.csv").is_file());
    assert!(!home.join("scratch.csv").exists());
    assert!(
        std::fs::read_dir(&home).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with('.')),
        "no upload left half-published"
    );

    // Wrong password and wrong key: refused.
    fails(by_password.sftp(&Login::Password("not-the-password"), "ls\n"));
    let other_key = dir.path().join("other_key");
    keygen(&other_key).unwrap();
    fails(by_key.sftp(&Login::Key(&other_key), "ls\n"));
    // The right key works, and sees its own (empty) folder, not the other login's.
    let out = succeeds(by_key.sftp(&Login::Key(&key), "ls -1a\n"));
    assert!(!out.contains("incoming"), "{out}");
    // A key login cannot use the other login's name.
    fails(client(&user).sftp(&Login::Key(&key), "ls\n"));

    // Ways out of the folder.
    std::fs::write(dir.path().join("outside.txt"), "secret").unwrap();
    std::os::unix::fs::symlink(dir.path(), home.join("link-out")).unwrap();
    let pw = Login::Password(&password);
    for attempt in [
        "cd ..\n",
        "get ../../outside.txt\n",
        "get /../outside.txt\n",
        "ls ../..\n",
        "get link-out/outside.txt\n",
        "ls link-out\n",
        &format!("put {} ../escaped.txt\n", csv.display()),
        &format!("put {} link-out/escaped.txt\n", csv.display()),
        "rename incoming/users.csv ../users.csv\n",
        "symlink incoming/users.csv l\n",
        "get /etc/passwd\n",
    ] {
        let why = fails(by_password.sftp(&pw, attempt));
        assert!(!why.contains("root:x:0"), "{attempt}: {why}");
    }
    assert!(!dir.path().join("escaped.txt").exists());
    assert!(!root.join("users.csv").exists());
    assert!(home.join("incoming/users.csv").is_file());
    assert!(!home.join("l").exists());
    std::fs::remove_file(home.join("link-out")).unwrap();

    // No shell, no command, no port forwarding.
    fails(by_key.ssh(&Login::Key(&key), &["-T", "echo", "hello"]));
    fails(by_key.ssh(&Login::Key(&key), &["-T"]));
    let forward = format!("127.0.0.1:{}", serve.base.rsplit(':').next().unwrap());
    let why = fails(by_key.ssh(&Login::Key(&key), &["-W", &forward]));
    assert!(!why.contains("HTTP/1.1"), "{why}");

    // An import job on the managed authorization reads what was uploaded, once.
    let (s, b) = api(
        &serve,
        "POST",
        "/v2/job/sftp-import",
        json!({"name": "managed import", "auth_ids": [password_auth],
               "config": {"stream": "managed_users", "folder": "incoming"}}),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let id = b["data"]["id"].as_i64().unwrap();
    wait_for("the import to complete", async || {
        let state = job(&serve, id).await["state"].clone();
        assert_ne!(state, "failed");
        state == "completed"
    })
    .await;
    assert_eq!(stream_count(&serve, "managed_users").await, 3);
    // A folder outside the login's is refused when the job is made.
    let (s, b) = api(
        &serve,
        "POST",
        "/v2/job/sftp-import",
        json!({"name": "escape", "auth_ids": [password_auth],
               "config": {"stream": "x", "folder": "../.."}}),
    )
    .await;
    assert_eq!(s, 400, "{b}");

    assert_no_secrets(&serve.log_text(), &[&password]);
}

/// The host key `serve` printed with its SFTP address.
fn host_key_line(serve: &Serve) -> String {
    serve
        .sftp_host_key
        .clone()
        .expect("serve printed its SFTP host key")
}

/// Two nodes on one PostgreSQL database with one `--sftp-root`: both show the same host key,
/// a login made through one node works on the other, and a file uploaded to one node is
/// imported by the other after the first has stopped.
#[tokio::test(flavor = "multi_thread")]
async fn nodes_sharing_a_database_and_an_sftp_root_serve_the_same_logins() {
    if !openssh_clients().unwrap() {
        return;
    }
    let Some(cluster) = tributary_store::testing::pg_cluster() else {
        return;
    };
    let url = cluster.fresh_database().await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shared-sftp-root");
    let node = |name: &str| {
        let data = dir.path().join(name);
        std::fs::create_dir_all(&data).unwrap();
        Serve::start_with(
            &data,
            Some(&url),
            name,
            &[
                ("TRIBUTARY_SFTP_LISTEN", "127.0.0.1:0"),
                ("TRIBUTARY_SFTP_ROOT", root.to_str().unwrap()),
            ],
        )
    };
    let a = node("a");
    let mut b = node("b");
    let host_key = a.sftp_host_key.clone().unwrap();
    assert_eq!(Some(&host_key), b.sftp_host_key.as_ref());

    let (s, body) = api(
        &a,
        "POST",
        "/v2/auth/sftp-managed",
        json!({"label": "shared"}),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let auth = body["data"]["id"].as_i64().unwrap();
    let password = body["data"]["password"].as_str().unwrap().to_string();
    let user = body["data"]["username"].as_str().unwrap().to_string();

    // Upload through node b (the authorization was made on node a).
    let b_port = b.sftp.unwrap().port();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(&known_hosts, format!("[127.0.0.1]:{b_port} {host_key}\n")).unwrap();
    let csv = dir.path().join("users.csv");
    std::fs::write(&csv, "external_id\nn1\nn2\n").unwrap();
    let client = Client {
        port: b_port,
        user,
        known_hosts,
        dir: dir.path().to_path_buf(),
    };
    succeeds(client.sftp(
        &Login::Password(&password),
        &format!("put {} users.csv\n", csv.display()),
    ));
    b.signal(libc::SIGTERM);
    assert!(b.wait(Duration::from_secs(30)));

    // Node a, alone now, imports it from the shared folder.
    let (s, body) = api(
        &a,
        "POST",
        "/v2/job/sftp-import",
        json!({"name": "shared import", "auth_ids": [auth], "config": {"stream": "shared"}}),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let id = body["data"]["id"].as_i64().unwrap();
    wait_for("the import to complete", async || {
        let state = job(&a, id).await["state"].clone();
        assert_ne!(state, "failed");
        state == "completed"
    })
    .await;
    assert_eq!(stream_count(&a, "shared").await, 2);
}
