//! Tributary's HTTP server: the collection API, the v2 administration API, health and metrics.
//!
//! Invariants:
//! - Every route that touches account data takes an `auth::Authorized<Policy>`; the policy is
//!   the endpoint's declared role requirement.
//! - Every response, success or error, is the `api` envelope.
//! - A 200 from a collection endpoint is sent only after the events are committed (through
//!   the store's group-commit `EventWriter`).
//! - Nothing logs a URL's query string (tokens travel there) or a token value.

pub mod api;
pub mod auth;
mod console;
pub mod listener;
mod routes;
pub mod stream_settings;
mod telemetry;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post};
use tokio::net::TcpListener;
use tributary_store::{EventWriter, Store, WriterConfig};

#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Largest request body (and largest decompressed body) for JSON collection.
    pub max_body_bytes: usize,
    /// Largest body for `/collect/bulk` uploads.
    pub max_bulk_bytes: usize,
    /// Most columns of a CSV upload.
    pub max_csv_columns: usize,
    /// Connections open at once, and how long a client may take to send headers or idle.
    pub connections: listener::ConnectionLimits,
    pub writer: WriterConfig,
    /// The managed SFTP server's address as clients reach it (told to users of
    /// `sftp-managed`); `None` when this install runs none, and such authorizations are refused.
    pub managed_sftp: Option<PublicAddress>,
}

/// A host and port as clients outside reach them (behind NAT or a load balancer, not
/// necessarily the address the server listens on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicAddress {
    pub host: String,
    pub port: u16,
}

impl std::str::FromStr for PublicAddress {
    type Err = String;

    /// `host`, `host:port`, `[v6]:port`; the port defaults to 22.
    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = || format!("{text:?} is not HOST or HOST:PORT");
        let (host, port) = match text.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') || h.ends_with(']') => {
                (h.trim_matches(['[', ']']), p.parse().map_err(|_| bad())?)
            }
            _ => (text.trim_matches(['[', ']']), 22),
        };
        if host.is_empty() || host.contains(char::is_whitespace) {
            return Err(bad());
        }
        Ok(PublicAddress {
            host: host.to_string(),
            port,
        })
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 10 * 1024 * 1024,
            max_bulk_bytes: 256 * 1024 * 1024,
            max_csv_columns: tributary_sources::DEFAULT_MAX_COLUMNS,
            connections: listener::ConnectionLimits::default(),
            writer: WriterConfig::default(),
            managed_sftp: None,
        }
    }
}

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub engine: Arc<tributary_engine::Engine>,
    pub writer: EventWriter,
    pub tokens: auth::TokenCache,
    pub stream_settings: stream_settings::StreamSettingsCache,
    pub config: ServerConfig,
    /// The job runner; it also holds the master key and the workflows.
    pub jobs: Arc<tributary_jobs::Runner>,
}

pub fn router(state: Arc<AppState>) -> Router {
    telemetry::install_metrics();
    // The console's pages are HTML: they stay outside the JSON error envelope.
    api_routes()
        .merge(console::routes())
        .layer(axum::middleware::from_fn(telemetry::observe_request))
        .with_state(state)
}

/// Every API route, its fallback and its error envelope, without state: the router serves
/// them, and the console calls them in process.
pub(crate) fn api_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/healthz", get(routes::ops::healthz))
        .route("/metrics", get(routes::ops::metrics))
        .route(
            "/c/{aid}/{stream}",
            post(routes::collect::collect_in_account),
        )
        .route(
            "/collect/json/{stream}",
            post(routes::collect::collect_by_token::<false>),
        )
        .route(
            "/collect/bulk/{stream}",
            post(routes::collect::collect_by_token::<true>),
        )
        .route("/v2/stream", get(routes::streams::list))
        .route(
            "/v2/stream/{name}",
            axum::routing::put(routes::streams::update),
        )
        .route("/v2/stream/{name}/events", get(routes::streams::events))
        .route("/v2/account", post(routes::admin::create_account))
        .route(
            "/v2/token",
            post(routes::admin::create_token).get(routes::admin::list_tokens),
        )
        .route("/v2/token/{id}", delete(routes::admin::delete_token))
        .route("/v2/auth", get(routes::authorizations::list::<false>))
        // `{key}` is a type for POST and an id for the others.
        .route(
            "/v2/auth/{key}",
            post(routes::authorizations::create)
                .get(routes::authorizations::get::<false>)
                .put(routes::authorizations::update)
                .delete(routes::authorizations::delete),
        )
        .route("/v2/job", get(routes::jobs::list::<false>))
        // `{key}` is a workflow for POST and an id for GET.
        .route(
            "/v2/job/{key}",
            post(routes::jobs::create).get(routes::jobs::get::<false>),
        )
        .route("/v2/job/{id}/logs", get(routes::jobs::logs))
        .route("/v2/job/{id}/{action}", post(routes::jobs::control))
        .route(
            "/api/segment",
            post(routes::segments::upsert).get(routes::segments::list),
        )
        .route("/api/segment/validate", post(routes::segments::validate))
        .route("/api/segment/evaluate", post(routes::segments::evaluate))
        .route(
            "/api/segment/{slug}",
            get(routes::segments::get).delete(routes::segments::delete),
        )
        .route("/api/segment/sizes", get(routes::membership::sizes))
        .route(
            "/api/segment/scan",
            get(routes::membership::scan_ad_hoc).post(routes::membership::scan_ad_hoc),
        )
        .route("/api/segment/{slug}/size", get(routes::membership::size))
        .route("/api/segment/{slug}/sizes", get(routes::membership::size))
        .route("/api/segment/{slug}/scan", get(routes::membership::scan))
        .route(
            "/api/segment/{slug}/changes",
            get(routes::membership::changes),
        )
        .route(
            "/api/entity/user/{field}/{value}",
            get(routes::profiles::get).delete(routes::profiles::erase),
        )
        .route("/api/schema", get(routes::profiles::schema))
        .route("/api/schema/_streams", get(routes::streams::list))
        .route("/api/schema/{table}", get(routes::profiles::schema))
        .route(
            "/api/schema/{table}/fieldinfo",
            get(routes::fieldinfo::field_info),
        )
        // Lytics' names for authorizations, jobs (work) and accounts.
        .route("/api/auth", get(routes::authorizations::list::<true>))
        .route("/api/auth/{id}", get(routes::authorizations::get::<true>))
        .route(
            "/api/work",
            get(routes::jobs::list::<true>).post(routes::lytics::create_work),
        )
        .route("/api/work/{id}", get(routes::jobs::get::<true>))
        .route("/api/account", get(routes::lytics::list_accounts))
        .route("/api/account/{id}", get(routes::lytics::get_account))
        .route("/api/rebuild", post(routes::profiles::rebuild))
        .route(
            "/v2/identity/blocklist",
            get(routes::profiles::blocklist).put(routes::profiles::set_blocklist),
        )
        .route(
            "/api/query",
            post(routes::queries::upsert).get(routes::queries::list),
        )
        .route("/api/query/_validate", post(routes::queries::validate))
        .route("/api/query/_test", post(routes::queries::test))
        .route(
            "/api/query/{alias}",
            get(routes::queries::get).delete(routes::queries::delete),
        )
        .fallback(routes::ops::not_found)
        .layer(axum::middleware::from_fn(api::errors_as_envelopes))
}

/// What the server drives besides HTTP, built and run by the caller (the `cli` crate is the
/// composition root: it picks the workflows and runs the pipeline worker and the job runner).
pub struct Services {
    /// The pipeline: the API asks it for rebuilds and audience recomputes.
    pub engine: Arc<tributary_engine::Engine>,
    /// The job runner: the job API validates, wakes, pauses and kills through it.
    pub jobs: Arc<tributary_jobs::Runner>,
}

/// Serves until `shutdown` resolves, then stops accepting, lets in-flight requests finish and
/// flushes the event writer before returning.
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn Store>,
    config: ServerConfig,
    services: Services,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (writer, writer_task) = EventWriter::spawn(store.clone(), config.writer);
    let state = Arc::new(AppState {
        store,
        engine: services.engine,
        writer,
        tokens: auth::TokenCache::default(),
        stream_settings: Default::default(),
        config,
        jobs: services.jobs,
    });
    let limits = state.config.connections;
    let app = router(state);
    listener::serve(
        listener,
        app,
        limits,
        shutdown,
        std::time::Duration::from_secs(30),
    )
    .await;
    // The router (and with it every EventWriter handle) is gone: the writer drains and ends.
    if let Err(e) = writer_task.await {
        tracing::error!(error = %e, "event writer task failed");
    }
    Ok(())
}
