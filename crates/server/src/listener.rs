//! Accepting connections, with the defences `axum::serve` does not have: a client must send a
//! request's headers within `header_timeout`, and an idle keep-alive connection is closed after
//! the same time (seen: a client sending one header byte a second stayed connected 85 s); at most
//! `max_connections` are open at once, and one more gets a 503 in the JSON envelope and is closed
//! (seen: 20,000 idle connections used up the file handles and `/healthz` timed out).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// How connections are accepted and held.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Connections open at once; more are refused with a 503.
    pub max_connections: usize,
    /// Time to send a request's headers, and the longest a keep-alive connection may idle.
    pub header_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 4_096,
            header_timeout: Duration::from_secs(15),
        }
    }
}

/// What a connection over the limit is told before it is closed.
fn refusal(limit: usize) -> Vec<u8> {
    let body = serde_json::json!({
        "status": 503,
        "message": format!("the server holds its limit of {limit} connections; retry shortly"),
        "data": null,
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Serves `app` on `listener` until `shutdown`; then stops accepting and waits up to
/// `drain` for the connections' requests in flight.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl std::future::Future<Output = ()>,
    drain: Duration,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.header_timeout))
        .keep_alive_timeout(limits.header_timeout);
    let open = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (mut stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file handles, say: wait a little rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            metrics::counter!("tributary_connections_refused_total").increment(1);
            let answer = refusal(limits.max_connections);
            tokio::spawn(async move {
                // Read (a little of) the request first: an answer that comes before the
                // request confuses clients. Bounded in time and size, like the rest.
                let mut request = [0u8; 4096];
                let _ = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut request))
                    .await;
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), stream.write_all(&answer)).await;
                let _ = stream.shutdown().await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let header_timeout = limits.header_timeout;
        tokio::spawn(async move {
            // A client that connects and sends nothing is closed after the header time (the
            // protocol detection below would otherwise wait for its first byte forever).
            let mut first = [0u8; 1];
            match tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
            let connection = builder
                .serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(app))
                .into_owned();
            let _ = watcher.watch(connection).await;
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(drain, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after the drain period; closing them");
    }
}
