//! The composition root: what a `serve` process runs, put together in one place (the binary
//! and the benchmarks use it).

use std::path::PathBuf;
use std::sync::Arc;

use tributary_server::ServerConfig;
use tributary_store::Store;

/// How the parts of a node are configured.
#[derive(Default)]
pub struct Settings {
    pub server: ServerConfig,
    pub engine: tributary_engine::EngineConfig,
    pub jobs: tributary_jobs::RunnerConfig,
    /// The managed SFTP server, when this node runs one.
    pub managed_sftp: Option<ManagedSftpDoor>,
}

/// Where the managed SFTP server listens, and where its logins' folders are.
pub struct ManagedSftpDoor {
    pub listener: tokio::net::TcpListener,
    pub root: PathBuf,
}

/// The composition root: the pipeline worker, the job runner with the workflows this build
/// has (the Braze export, the SFTP import), the HTTP server and, when configured, the managed
/// SFTP server, all stopped by `shutdown`; returns once the server has drained and the rest
/// have stopped.
pub async fn run(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
    settings: Settings,
    master_key: Arc<tributary_core::crypto::MasterKey>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let Settings {
        server,
        engine,
        jobs,
        managed_sftp,
    } = settings;
    let engine = tributary_engine::Engine::new(store.clone(), engine);
    let import = tributary_imports::SftpImport {
        managed_root: managed_sftp.as_ref().map(|m| m.root.clone()),
    };
    let jobs = tributary_jobs::Runner::new(
        store.clone(),
        master_key.clone(),
        tributary_sinks::braze::workflows().with(Arc::new(import)),
        jobs,
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let worker = engine.spawn_worker(stopped(stop_rx.clone()));
    let runner = tokio::spawn(jobs.clone().run(stopped(stop_rx.clone())));
    let sftp = managed_sftp.map(|door| {
        let server = tributary_imports::managed::ManagedSftp {
            root: door.root,
            store: store.clone(),
            master_key,
        };
        tokio::spawn(tributary_imports::managed::serve(
            door.listener,
            server,
            stopped(stop_rx.clone()),
        ))
    });
    let services = tributary_server::Services { engine, jobs };
    tributary_server::serve(listener, store, server, services, stopped(stop_rx)).await?;
    if let Err(e) = worker.await {
        tracing::error!(error = %e, "pipeline worker failed");
    }
    if let Err(e) = runner.await {
        tracing::error!(error = %e, "job runner failed");
    }
    if let Some(Err(e)) = match sftp {
        Some(task) => Some(task.await),
        None => None,
    } {
        tracing::error!(error = %e, "managed SFTP server failed");
    }
    Ok(())
}
