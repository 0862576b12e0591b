//! Test support (feature `testing`): a throwaway PostgreSQL cluster per test process, fresh
//! databases in it, and fresh SQLite stores, so the contract suite runs on both backends.
//!
//! The cluster is made with `initdb` and started with `pg_ctl` on a free 127.0.0.1 port.
//! PostgreSQL refuses to run as root, so as root it runs as the `postgres` user via `runuser`.
//! A watchdog shell stops the cluster and deletes its files once the test process is gone
//! (statics are never dropped, so nothing in-process could do it).
//!
//! When no PostgreSQL is installed the PostgreSQL half is skipped with a note, unless
//! `TRIBUTARY_TEST_REQUIRE_PG=1` (set by `.ci/run`), which turns the skip into a failure.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use crate::{SqlStore, Store};

pub struct PgCluster {
    pub port: u16,
    pub dir: PathBuf,
}

static CLUSTER: OnceLock<Result<PgCluster, String>> = OnceLock::new();
static DURABLE_CLUSTER: OnceLock<Result<PgCluster, String>> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

fn pg_required() -> bool {
    std::env::var("TRIBUTARY_TEST_REQUIRE_PG").is_ok_and(|v| v == "1")
}

/// The process's cluster, started on first use. `None` (with a note on stderr) when PostgreSQL
/// is not installed and not required.
/// Tests run it with `fsync=off`: they check behaviour, not durability against power loss.
pub fn pg_cluster() -> Option<&'static PgCluster> {
    found(CLUSTER.get_or_init(|| start_cluster(false)))
}

/// A cluster with PostgreSQL's durable defaults (`fsync=on`), for benchmarks: their figures
/// must be what a production server would see.
pub fn pg_durable_cluster() -> Option<&'static PgCluster> {
    found(DURABLE_CLUSTER.get_or_init(|| start_cluster(true)))
}

fn found(cluster: &'static Result<PgCluster, String>) -> Option<&'static PgCluster> {
    match cluster {
        Ok(c) => Some(c),
        Err(why) if pg_required() => {
            panic!("TRIBUTARY_TEST_REQUIRE_PG=1 but PostgreSQL could not start: {why}")
        }
        Err(why) => {
            eprintln!("skipping PostgreSQL tests: {why}");
            None
        }
    }
}

impl PgCluster {
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates an empty database and returns its URL.
    pub async fn fresh_database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let admin = PgStoreAdmin::connect(&self.url("postgres")).await;
        admin.create_database(&name).await;
        self.url(&name)
    }
}

struct PgStoreAdmin(sqlx::PgPool);

impl PgStoreAdmin {
    async fn connect(url: &str) -> Self {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test cluster: {e}"));
        PgStoreAdmin(pool)
    }

    async fn create_database(&self, name: &str) {
        let sql = format!("CREATE DATABASE {name}");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&self.0)
            .await
            .unwrap_or_else(|e| panic!("creating test database {name}: {e}"));
    }
}

/// A store on a fresh PostgreSQL database, or `None` when PostgreSQL is unavailable.
pub async fn pg_store() -> Option<Arc<dyn Store>> {
    let cluster = pg_cluster()?;
    let url = cluster.fresh_database().await;
    let store = SqlStore::postgres(&url)
        .await
        .unwrap_or_else(|e| panic!("opening the PostgreSQL store: {e}"));
    Some(Arc::new(store))
}

/// A store on a fresh SQLite file; keep the directory alive as long as the store.
pub async fn sqlite_store() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("creating a temp dir: {e}"));
    let store = SqlStore::sqlite(&dir.path().join("tributary.db"))
        .await
        .unwrap_or_else(|e| panic!("opening the SQLite store: {e}"));
    (Arc::new(store), dir)
}

fn pg_bin_dir() -> Result<PathBuf, String> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| "PostgreSQL is not installed (no /usr/lib/postgresql)".to_string())?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| "no initdb found under /usr/lib/postgresql".into())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A command run as the user PostgreSQL accepts.
fn pg_command(bin: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{what}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

fn start_cluster(durable: bool) -> Result<PgCluster, String> {
    let bin = pg_bin_dir()?;
    let dir = tempfile::Builder::new()
        .prefix("tributary-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?
        .keep();
    let data = dir.join("data");
    if is_root() {
        run(
            Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&dir),
            "chown of the cluster dir",
        )?;
    }
    run(
        pg_command(&bin.join("initdb")).arg("-D").arg(&data).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--no-sync",
        ]),
        "initdb",
    )?;
    let port = free_port()?;
    let options = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync={} -c max_connections=200",
        dir.display(),
        if durable { "on" } else { "off" }
    );
    run(
        pg_command(&bin.join("pg_ctl"))
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(dir.join("server.log"))
            .args(["-o", &options, "-w", "start"]),
        "pg_ctl start",
    )?;
    spawn_watchdog(&bin, &dir)?;
    Ok(PgCluster { port, dir })
}

/// Stops the cluster and removes its files after this process exits.
fn spawn_watchdog(bin: &Path, dir: &Path) -> Result<(), String> {
    let stop = format!(
        "{} {} -D {} -m immediate stop",
        if is_root() {
            "runuser -u postgres --"
        } else {
            ""
        },
        bin.join("pg_ctl").display(),
        dir.join("data").display()
    );
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display()
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(|_| ())
        .map_err(|e| format!("starting the cluster watchdog: {e}"))
}

/// Runs each named `async fn(store)` test once on SQLite and once on PostgreSQL, as
/// `sqlite::name` and `postgres::name`. With `wrap = path;` each test gets `path(store).await`
/// instead of the store (a harness built on it).
#[macro_export]
macro_rules! backend_tests {
    (wrap = $wrap:path; $($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let (store, _dir) = $crate::testing::sqlite_store().await;
                    super::$name($wrap(store).await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(store) = $crate::testing::pg_store().await else { return };
                    super::$name($wrap(store).await).await;
                }
            )*
        }
    };
    ($($name:ident),* $(,)?) => {
        $crate::backend_tests!(wrap = $crate::testing::as_is; $($name),*);
    };
}

/// The identity harness for `backend_tests!`.
pub async fn as_is(store: Arc<dyn Store>) -> Arc<dyn Store> {
    store
}
