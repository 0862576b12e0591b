//! The composition root: what a `serve` process runs, put together in one place (the binary
//! and the benchmarks use it).

use std::sync::Arc;

use tributary_server::ServerConfig;
use tributary_store::Store;

/// The composition root: the pipeline worker, the job runner with the workflows this build
/// has (the Braze export, the SFTP import), and the HTTP server, all stopped by `shutdown`; returns once the
/// server has drained and both have stopped.
pub async fn run(
    listener: tokio::net::TcpListener,
    store: Arc<dyn Store>,
    config: ServerConfig,
    engine: tributary_engine::EngineConfig,
    jobs: tributary_jobs::RunnerConfig,
    master_key: Arc<tributary_core::crypto::MasterKey>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let engine = tributary_engine::Engine::new(store.clone(), engine);
    let jobs = tributary_jobs::Runner::new(
        store.clone(),
        master_key,
        tributary_sinks::braze::workflows().with(Arc::new(tributary_imports::SftpImport)),
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
    let worker = tokio::spawn(engine.clone().run(stopped(stop_rx.clone())));
    let runner = tokio::spawn(jobs.clone().run(stopped(stop_rx.clone())));
    let services = tributary_server::Services { engine, jobs };
    tributary_server::serve(listener, store, config, services, stopped(stop_rx)).await?;
    if let Err(e) = worker.await {
        tracing::error!(error = %e, "pipeline worker failed");
    }
    if let Err(e) = runner.await {
        tracing::error!(error = %e, "job runner failed");
    }
    Ok(())
}
