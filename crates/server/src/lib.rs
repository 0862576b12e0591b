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
pub mod openapi;
mod routes;
pub mod stream_settings;
mod telemetry;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
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
        .merge(openapi::routes())
        .layer(axum::middleware::from_fn(telemetry::observe_request))
        .with_state(state)
}

/// Every API route, its fallback and its error envelope, without state: the router serves
/// them, and the console calls them in process.
pub(crate) fn api_routes() -> Router<Arc<AppState>> {
    documented_api_routes()
        .0
        .fallback(routes::ops::not_found)
        .layer(axum::middleware::from_fn(api::errors_as_envelopes))
}

/// The API's routes and their OpenAPI description, made together from the handlers'
/// `#[utoipa::path]` (see `openapi`). Handlers that share a path are registered together.
pub(crate) fn documented_api_routes() -> (Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    use routes::{
        admin, authorizations, collect, fieldinfo, jobs, lytics, membership, ops, profiles,
        queries, segments, streams,
    };
    use utoipa_axum::routes;
    utoipa_axum::router::OpenApiRouter::with_openapi(<openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::metrics))
        .routes(routes!(collect::collect_in_account))
        .routes(routes!(collect::collect_json))
        .routes(routes!(collect::collect_bulk))
        .routes(routes!(streams::list))
        .routes(routes!(streams::update))
        .routes(routes!(streams::events))
        .routes(routes!(streams::minutes))
        .routes(routes!(admin::create_account))
        .routes(routes!(admin::create_token, admin::list_tokens))
        .routes(routes!(admin::delete_token))
        .routes(routes!(authorizations::list))
        // `{key}` is a type for POST and an id for the others.
        .routes(routes!(
            authorizations::create,
            authorizations::get,
            authorizations::update,
            authorizations::delete
        ))
        .routes(routes!(jobs::list))
        // `{key}` is a workflow for POST and an id for GET.
        .routes(routes!(jobs::create, jobs::get))
        .routes(routes!(jobs::logs))
        .routes(routes!(jobs::minutes))
        .routes(routes!(jobs::control))
        .routes(routes!(segments::upsert, segments::list))
        .routes(routes!(segments::validate))
        .routes(routes!(segments::evaluate))
        .routes(routes!(segments::get, segments::delete))
        .routes(routes!(membership::sizes))
        .routes(routes!(membership::scan_ad_hoc))
        .routes(routes!(membership::size))
        .routes(routes!(membership::lytics_sizes))
        .routes(routes!(membership::scan))
        .routes(routes!(membership::changes))
        .routes(routes!(membership::history))
        .routes(routes!(profiles::get, profiles::erase))
        .routes(routes!(profiles::events))
        .routes(routes!(profiles::schema))
        .routes(routes!(profiles::table_schema))
        .routes(routes!(streams::lytics_list))
        .routes(routes!(fieldinfo::field_info))
        // Lytics' names for authorizations, jobs (work) and accounts.
        .routes(routes!(authorizations::lytics_list))
        .routes(routes!(authorizations::lytics_get))
        .routes(routes!(jobs::lytics_list, lytics::create_work))
        .routes(routes!(jobs::lytics_get))
        .routes(routes!(lytics::list_accounts))
        .routes(routes!(lytics::get_account))
        .routes(routes!(profiles::rebuild))
        .routes(routes!(profiles::blocklist, profiles::set_blocklist))
        .routes(routes!(queries::upsert, queries::list))
        .routes(routes!(queries::validate))
        .routes(routes!(queries::test))
        .routes(routes!(queries::get, queries::delete))
        .split_for_parts()
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
