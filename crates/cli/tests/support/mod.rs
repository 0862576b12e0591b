//! Runs `tributary serve` as a real child process for the process-level tests.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN: &str = "process-test-admin-token-0123456789";
/// Every node of a test shares one master key, as nodes on one database must.
pub const MASTER_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

pub struct Serve {
    pub child: Child,
    pub base: String,
    /// The managed SFTP server's address, when started with `TRIBUTARY_SFTP_LISTEN`.
    pub sftp: Option<std::net::SocketAddr>,
    /// The host key it printed with that address (OpenSSH text).
    pub sftp_host_key: Option<String>,
    pub log: PathBuf,
}

impl Serve {
    /// Starts `serve` on a free port and waits until it listens.
    pub fn start(data_dir: &Path, database_url: Option<&str>, log_name: &str) -> Serve {
        Serve::start_with(data_dir, database_url, log_name, &[])
    }

    /// `serve` with its managed SFTP server on a free loopback port, its data in `dir/data`
    /// and the logins' folders under the returned root (`dir/sftp-root`).
    pub fn with_managed_sftp(dir: &Path, env: &[(&str, &str)]) -> (Serve, std::path::PathBuf) {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).unwrap();
        let root = dir.join("sftp-root");
        let root_text = root.to_str().unwrap().to_string();
        let mut all = vec![
            ("TRIBUTARY_SFTP_LISTEN", "127.0.0.1:0"),
            ("TRIBUTARY_SFTP_ROOT", root_text.as_str()),
        ];
        all.extend_from_slice(env);
        (Serve::start_with(&data, None, "serve", &all), root)
    }

    /// [`Serve::start`] with environment variables set over the tests' defaults.
    pub fn start_with(
        data_dir: &Path,
        database_url: Option<&str>,
        log_name: &str,
        env: &[(&str, &str)],
    ) -> Serve {
        let log = data_dir.join(format!("{log_name}.stderr"));
        let log_file = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary"));
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0"])
            .env("TRIBUTARY_ADMIN_TOKEN", ADMIN)
            .env("TRIBUTARY_LOG", "debug")
            .env("TRIBUTARY_PIPELINE_LEASE_SECS", "2")
            .env("TRIBUTARY_JOB_LEASE_SECS", "2")
            .env("TRIBUTARY_MASTER_KEY", MASTER_KEY)
            // The simulators the tests start listen on loopback.
            .env("TRIBUTARY_BRAZE_ALLOW_URLS", "http://127.0.0.1")
            // The test PostgreSQL cluster runs with fsync off, for speed.
            .env("TRIBUTARY_ALLOW_UNSAFE_DURABILITY", "true")
            .env_remove("TRIBUTARY_DATABASE_URL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log_file));
        if let Some(url) = database_url {
            cmd.arg("--database-url").arg(url);
        }
        for (name, value) in env {
            cmd.env(name, value);
        }
        let mut child = cmd.spawn().expect("spawning tributary serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // `serve` prints the SFTP line (if any) before the HTTP one.
            let mut sftp = None;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("tributary sftp listening on ") {
                    let (addr, key) = rest.split_once(", host key ").unwrap_or((rest, ""));
                    sftp = Some((addr.parse().ok(), Some(key.to_string())));
                }
                if let Some(addr) = line.strip_prefix("tributary listening on ") {
                    let _ = tx.send((addr.to_string(), sftp.clone().unwrap_or((None, None))));
                }
            }
        });
        let (base, (sftp, sftp_host_key)) = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                panic!(
                    "serve did not start; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        Serve {
            child,
            base,
            sftp,
            sftp_host_key,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
    }

    /// Waits for the process to exit; returns whether it exited cleanly.
    pub fn wait(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("serve did not exit within {timeout:?}");
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The `braze-sim` binary, built on demand when only this package's tests were built.
pub fn braze_sim_binary() -> PathBuf {
    let tributary = PathBuf::from(env!("CARGO_BIN_EXE_tributary"));
    let sim = tributary.with_file_name("braze-sim");
    if !sim.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "braze-sim", "--bin", "braze-sim"])
            .status()
            .expect("running cargo build -p braze-sim");
        assert!(status.success(), "building braze-sim failed");
    }
    sim
}

/// `braze-sim` as a child process on a free port.
pub struct BrazeSim {
    pub child: Child,
    pub base: String,
}

impl BrazeSim {
    pub fn start(args: &[&str]) -> BrazeSim {
        let mut child = Command::new(braze_sim_binary())
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning braze-sim");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let base = line
            .trim()
            .strip_prefix("braze-sim listening on ")
            .unwrap_or_else(|| panic!("braze-sim did not start: {line:?}"))
            .to_string();
        BrazeSim { child, base }
    }

    pub async fn get(&self, path: &str) -> serde_json::Value {
        client()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// `POST /users/track` with `attributes`, as the API key `key`.
    pub async fn track(&self, key: &str, attributes: serde_json::Value) {
        let r = client()
            .post(format!("{}/users/track", self.base))
            .bearer_auth(key)
            .json(&serde_json::json!({ "attributes": attributes }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    }

    pub async fn post(&self, path: &str, body: serde_json::Value) {
        let r = client()
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
}

impl Drop for BrazeSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// Creates a token in `aid` through the API and returns its secret.
pub async fn create_token(base: &str, aid: i64, roles: &[&str]) -> String {
    let r = client()
        .post(format!("{base}/v2/token?account_id={aid}"))
        .bearer_auth(ADMIN)
        .json(&serde_json::json!({"name": "test", "roles": roles, "expires": "none"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let body: serde_json::Value = r.json().await.unwrap();
    body["data"]["token"].as_str().unwrap().to_string()
}

/// All events of a stream (up to the API's 10,000), as JSON payloads.
pub async fn stream_events(base: &str, stream: &str) -> Vec<serde_json::Value> {
    let r = client()
        .get(format!("{base}/v2/stream/{stream}/events?limit=10000"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].clone())
        .collect()
}

/// Asserts that no secret appears in a process's log.
pub fn assert_no_secrets(log: &str, secrets: &[&str]) {
    assert!(!log.is_empty(), "the log is empty; logging is not wired");
    for s in secrets {
        assert!(!log.contains(s), "a secret appears in the log");
    }
}

/// Polls `GET path` until it answers 200 (bounded), returning the body.
pub async fn wait_for_ok(url: &str, token: &str, within: Duration) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let r = client().get(url).bearer_auth(token).send().await.unwrap();
        if r.status() == 200 {
            return r.json().await.unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer 200 within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A JSON API call as the install admin: `GET`, or any other method with `body` posted.
pub async fn api(
    serve: &Serve,
    method: &str,
    path: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let http = client();
    let request = match method {
        "GET" => http.get(serve.url(path)),
        _ => http.post(serve.url(path)).json(&body),
    };
    let r = request.bearer_auth(ADMIN).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

/// How many events the stream holds (0 when it has none yet).
pub async fn stream_count(serve: &Serve, stream: &str) -> i64 {
    let (_, b) = api(serve, "GET", "/v2/stream", serde_json::Value::Null).await;
    b["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == stream)
        .map_or(0, |s| s["count"].as_i64().unwrap())
}

/// `GET /v2/job/{id}`'s data.
pub async fn job(serve: &Serve, id: i64) -> serde_json::Value {
    api(
        serve,
        "GET",
        &format!("/v2/job/{id}"),
        serde_json::Value::Null,
    )
    .await
    .1["data"]
        .clone()
}

/// Polls `check` every 100 ms until it holds; fails the test after 60 s.
pub async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
