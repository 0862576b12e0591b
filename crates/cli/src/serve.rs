//! `tributary serve`: open the store, make sure account 1 exists, serve until SIGTERM/Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tributary_core::{NewToken, Role, TokenSecret, to_micros};
use tributary_server::ServerConfig;
use tributary_store::{Bootstrap, Store};

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where the embedded SQLite database (and later, keys and uploaded files) live.
    #[arg(long, env = "TRIBUTARY_DATA_DIR", default_value = "./tributary-data")]
    data_dir: PathBuf,
    /// Address to listen on. Port 0 picks a free port (printed at start-up).
    #[arg(long, env = "TRIBUTARY_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// `postgres://user:password@host/db` to run on PostgreSQL; embedded SQLite when unset.
    #[arg(long, env = "TRIBUTARY_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Largest body accepted by the JSON collection endpoints, in bytes.
    #[arg(long, env = "TRIBUTARY_MAX_BODY_BYTES", default_value_t = 10 * 1024 * 1024)]
    max_body_bytes: usize,
    /// How long a node's hold on an account's pipeline lasts without renewal: after a node
    /// dies, another takes its accounts over after this long.
    #[arg(long, env = "TRIBUTARY_PIPELINE_LEASE_SECS", default_value_t = 15)]
    pipeline_lease_secs: u64,
    /// How long a node's hold on a job lasts without renewal: after a node dies, another
    /// takes its jobs over after this long.
    #[arg(long, env = "TRIBUTARY_JOB_LEASE_SECS", default_value_t = 15)]
    job_lease_secs: u64,
    /// Start the managed SFTP server (`sftp-managed` authorizations) on this address.
    #[arg(long, env = "TRIBUTARY_SFTP_LISTEN")]
    sftp_listen: Option<SocketAddr>,
    /// The managed SFTP server's address as clients reach it, `HOST[:PORT]` (default: the
    /// listen address).
    #[arg(long, env = "TRIBUTARY_SFTP_PUBLIC_HOST")]
    sftp_public_host: Option<tributary_server::PublicAddress>,
    /// Where the managed SFTP folders live (default: `sftp` in the data dir). Nodes sharing a
    /// PostgreSQL database must share this directory (a network file system).
    #[arg(long, env = "TRIBUTARY_SFTP_ROOT")]
    sftp_root: Option<PathBuf>,
    /// Largest body accepted by `/collect/bulk`, in bytes.
    #[arg(long, env = "TRIBUTARY_MAX_BULK_BYTES", default_value_t = 256 * 1024 * 1024)]
    max_bulk_bytes: usize,
    /// Connections open at once; one more is answered 503 and closed.
    #[arg(long, env = "TRIBUTARY_MAX_CONNECTIONS", default_value_t = 4_096)]
    max_connections: usize,
    /// Seconds a client has to send a request's headers, and the longest a keep-alive
    /// connection may stay idle.
    #[arg(long, env = "TRIBUTARY_HEADER_TIMEOUT_SECS", default_value_t = 15)]
    header_timeout_secs: u64,
    /// Most columns a CSV upload may have.
    #[arg(long, env = "TRIBUTARY_MAX_CSV_COLUMNS", default_value_t = 2_000)]
    max_csv_columns: usize,
    /// Base URLs, beyond Braze's named instances, that Braze authorizations may point at
    /// (comma-separated; `http://127.0.0.1` allows any port of that host, `http://h:9000` one).
    #[arg(long, env = "TRIBUTARY_BRAZE_ALLOW_URLS", default_value = "")]
    braze_allow_urls: String,
    /// Start even when PostgreSQL runs with `fsync` or `synchronous_commit` off, where an
    /// acknowledged event can be lost in a crash (for throwaway test clusters only).
    #[arg(long, env = "TRIBUTARY_ALLOW_UNSAFE_DURABILITY")]
    allow_unsafe_durability: bool,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let allowed_urls = tributary_core::braze::UrlAllowList::parse(&args.braze_allow_urls)
        .map_err(anyhow::Error::msg)?;
    let files = raise_file_limit();
    if files < args.max_connections as u64 + 256 {
        tracing::warn!(
            file_limit = files,
            max_connections = args.max_connections,
            "the file-handle limit is below --max-connections plus the store's needs; raise it (ulimit -n) or lower --max-connections"
        );
    }
    crate::private_files::prepare_data_dir(&args.data_dir)?;
    let store = tributary_store::open(args.database_url.as_deref(), &args.data_dir)
        .await
        .context("opening the store")?;
    let unsafe_settings = store
        .unsafe_durability()
        .await
        .context("reading the database's durability settings")?;
    if !unsafe_settings.is_empty() {
        let settings = unsafe_settings.join(", ");
        anyhow::ensure!(
            args.allow_unsafe_durability,
            "the database runs with {settings}: an acknowledged event could be lost in a crash. \
             Turn it on, or start with --allow-unsafe-durability \
             (TRIBUTARY_ALLOW_UNSAFE_DURABILITY=true) for a throwaway database"
        );
        tracing::warn!(
            settings,
            "the database is not durable and --allow-unsafe-durability is set: acknowledged events can be lost in a crash"
        );
    }
    bootstrap(store.as_ref()).await?;
    let master_key = Arc::new(crate::master_key::load(&args.data_dir)?);
    let resealed = tributary_jobs::authorization::reseal_legacy(store.as_ref(), &master_key)
        .await
        .context("re-sealing authorization secrets for their rows")?;
    if resealed > 0 {
        tracing::info!(
            resealed,
            "authorization secrets re-sealed, each bound to its row"
        );
    }

    // Bound before the HTTP line is printed, so whoever waits for that line can connect.
    let managed_sftp = match args.sftp_listen {
        None => None,
        Some(at) => {
            let root = args.sftp_root.unwrap_or_else(|| args.data_dir.join("sftp"));
            std::fs::create_dir_all(&root)
                .with_context(|| format!("creating the managed SFTP folder {}", root.display()))?;
            let sftp = tokio::net::TcpListener::bind(at)
                .await
                .with_context(|| format!("listening for SFTP on {at}"))?;
            let bound = sftp.local_addr()?;
            let public = args
                .sftp_public_host
                .unwrap_or_else(|| tributary_server::PublicAddress {
                    host: bound.ip().to_string(),
                    port: bound.port(),
                });
            tracing::info!(%bound, public_host = %public.host, public_port = public.port, "managed SFTP serving");
            println!(
                "tributary sftp listening on {bound}, host key {}",
                tributary_imports::managed::host_public_key(&master_key)
            );
            Some((
                public,
                tributary_cli::compose::ManagedSftpDoor {
                    listener: sftp,
                    root,
                },
            ))
        }
    };
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%addr, backend = ?store.backend(), "serving");
    // A fixed line on stdout, for scripts and tests that start `serve` on port 0.
    println!("tributary listening on http://{addr}");

    let mut config = ServerConfig {
        max_body_bytes: args.max_body_bytes,
        max_bulk_bytes: args.max_bulk_bytes,
        max_csv_columns: args.max_csv_columns.max(1),
        connections: tributary_server::listener::ConnectionLimits {
            max_connections: args.max_connections.max(1),
            header_timeout: std::time::Duration::from_secs(args.header_timeout_secs.max(1)),
        },
        managed_sftp: None,
        ..ServerConfig::default()
    };
    let engine = tributary_engine::EngineConfig {
        lease_ttl: std::time::Duration::from_secs(args.pipeline_lease_secs.max(1)),
        ..tributary_engine::EngineConfig::default()
    };
    let jobs = tributary_jobs::RunnerConfig {
        lease_ttl: std::time::Duration::from_secs(args.job_lease_secs.max(1)),
        allowed_urls,
        ..tributary_jobs::RunnerConfig::default()
    };
    let (public_sftp, managed_sftp) = managed_sftp.unzip();
    config.managed_sftp = public_sftp;
    let settings = tributary_cli::compose::Settings {
        server: config,
        engine,
        jobs,
        managed_sftp,
    };
    tributary_cli::compose::run(listener, store, settings, master_key, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// Creates account 1 and the install-wide admin token on an empty store.
async fn bootstrap(store: &dyn Store) -> anyhow::Result<()> {
    let (secret, chosen) = match std::env::var("TRIBUTARY_ADMIN_TOKEN") {
        Ok(value) if !value.is_empty() => (
            TokenSecret::from_operator(value)
                .map_err(|e| anyhow::anyhow!("TRIBUTARY_ADMIN_TOKEN: {e}"))?,
            true,
        ),
        _ => (TokenSecret::generate(), false),
    };
    let now = to_micros(time::OffsetDateTime::now_utc());
    let admin = NewToken {
        account_id: None,
        name: "install admin".into(),
        description: "created at first start; may act in every account".into(),
        roles: vec![Role::Admin],
        hash: secret.hash(),
        created_at: now,
        expires_at: None,
    };
    match store.bootstrap("Default", &admin, now).await? {
        Bootstrap::Created { aid } => {
            tributary_engine::builtin::seed_account(store, aid).await?;
            tracing::info!(aid, "created account {aid} and the install admin token");
            if !chosen {
                // Printed once, on stdout (not the log): it is never shown again.
                println!(
                    "install admin token (shown once, store it now): {}",
                    secret.expose()
                );
            }
        }
        Bootstrap::AlreadyInitialised => {}
    }
    Ok(())
}

/// SIGTERM or Ctrl-C. The handlers are installed here, before `serve` says it listens, so a
/// signal sent right after start-up is never met by the default action (an abrupt exit).
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = interrupt.recv() => {},
        }
        tracing::info!("shutting down: finishing in-flight requests");
    })
}

/// Raises the soft limit on open files to the hard limit (every connection holds one); the
/// soft limit now.
fn raise_file_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write only the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    tracing::info!(open_files = limit.rlim_cur, "file-handle limit");
    limit.rlim_cur
}
