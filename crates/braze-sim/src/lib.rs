//! `braze-sim`: a local Braze REST simulator that follows `docs/braze.md`.
//!
//! - `POST /users/track` (`track.rs`): Bearer keys with permissions, the 75-object limit,
//!   identifier rules, attribute semantics (`attributes.rs`), partial success and fatal
//!   errors, data points counted per docs/braze.md §3.
//! - `POST /users/export/ids` (`export.rs`), and segment CSV exports in the dashboard's format.
//! - Rate limits with `X-RateLimit-*` on every response and 429 (`limit.rs`).
//! - `POST /users/delete` (`delete.rs`): up to 50 identifiers of one kind per request.
//! - Fault injection: latency, a share of 5xx, 429 bursts, timeouts, and requests applied
//!   but answered with a 5xx or a timeout (`faults.rs`).
//! - Webhook campaigns (`webhook.rs`): a template with Braze's Liquid tags (docs/braze.md
//!   §4), rendered for a list of users and sent with Braze's retry rules.
//! - `/_sim/*` (`admin.rs`): users, counters, fault settings and resets, for tests.
//!
//! Invariant: the simulator never panics on input; every rejection is the documented status
//! and `{"message": ..}` body.

mod admin;
pub mod attributes;
mod delete;
mod export;
pub use export::CSV_COLUMNS;
pub mod faults;
pub mod limit;
mod track;
pub mod users;
pub mod webhook;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::json;

pub use faults::Faults;
use limit::{RateLimit, Verdict};
use users::Users;

/// Braze's payload limit: "All API endpoints have a data payload limit of 4MB".
pub const MAX_PAYLOAD_BYTES: usize = 4 * 1024 * 1024;
/// At most 75 objects per array of `/users/track`.
pub const MAX_OBJECTS: usize = 75;

#[derive(Debug, Clone)]
pub struct SimConfig {
    /// REST API keys and the permissions of each (`users.track`, `users.export.ids`, ...).
    pub keys: HashMap<String, HashSet<String>>,
    /// `/users/track`: requests per period.
    pub track_limit: u32,
    pub track_period: Duration,
    /// `/users/export/ids`: requests per minute.
    pub export_ids_per_minute: u32,
    /// `/users/delete` (with Braze's other identity endpoints): requests per minute.
    pub identity_per_minute: u32,
    /// Simple-array length cap (500 by default; 25 in the legacy mode).
    pub array_cap: usize,
    pub faults: Faults,
    /// Send `Retry-After` (seconds) with 429s. Braze does not document it (docs/braze.md
    /// §1.8), so it is off by default and clients must read `X-RateLimit-Reset`.
    pub retry_after: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            keys: HashMap::new(),
            track_limit: 3_000,
            track_period: Duration::from_secs(3),
            export_ids_per_minute: 250,
            identity_per_minute: 20_000,
            array_cap: 500,
            faults: Faults::default(),
            retry_after: false,
        }
    }
}

/// Counters tests assert on (`GET /_sim/stats`).
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    /// Every API request, whatever its outcome.
    pub requests: u64,
    pub by_status: BTreeMap<u16, u64>,
    pub data_points: u64,
    pub attributes_processed: u64,
    pub events_processed: u64,
    pub purchases_processed: u64,
    /// Items of `errors[]` in 201 and 400 answers.
    pub object_errors: u64,
    /// Attributes accepted but not applied (too long, invalid nested values).
    pub ignored_attributes: u64,
    /// Attributes objects per request, to see how full a client's batches are.
    pub objects_per_request: BTreeMap<usize, u64>,
    pub webhooks: webhook::WebhookStats,
    /// Requests applied and then answered with a 5xx or a timeout (the `applied_*` faults).
    pub applied_then_failed: u64,
    /// Users removed by `/users/delete`.
    pub users_deleted: u64,
}

pub struct Sim {
    config: SimConfig,
    state: Mutex<State>,
}

struct State {
    users: Users,
    track_limit: RateLimit,
    export_limit: RateLimit,
    identity_limit: RateLimit,
    faults: Faults,
    stats: Stats,
}

impl Sim {
    pub fn new(config: SimConfig) -> Arc<Sim> {
        let state = State {
            users: Users::default(),
            track_limit: RateLimit::new(config.track_limit, config.track_period),
            export_limit: RateLimit::new(config.export_ids_per_minute, Duration::from_secs(60)),
            identity_limit: RateLimit::new(config.identity_per_minute, Duration::from_secs(60)),
            faults: config.faults.clone(),
            stats: Stats::default(),
        };
        Arc::new(Sim {
            config,
            state: Mutex::new(state),
        })
    }

    /// The state; a poisoned lock is taken over (every update leaves it consistent).
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> Stats {
        self.state().stats.clone()
    }
}

pub fn router(sim: Arc<Sim>) -> Router {
    Router::new()
        .route("/users/track", post(track::track))
        .route("/users/export/ids", post(export::export_ids))
        .route("/users/delete", post(delete::delete))
        .route("/_sim/stats", get(admin::stats))
        .route("/_sim/users", get(admin::users))
        .route("/_sim/users/{external_id}", get(admin::user))
        .route("/_sim/faults", post(admin::set_faults).get(admin::faults))
        .route("/_sim/reset", post(admin::reset))
        .route("/_sim/webhooks", post(webhook::send_campaign))
        .route("/_sim/segments/export", post(export::segment_csv))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(MAX_PAYLOAD_BYTES * 2))
        .with_state(sim)
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    sim: Arc<Sim>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(sim))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not Found")
}

/// `{"message": text}` with a status: Braze's error body.
pub(crate) fn message(status: StatusCode, text: &str) -> Response {
    (status, axum::Json(json!({ "message": text }))).into_response()
}

/// Checks the Bearer key and its permission: the refusal, if any: 401 for a missing or unknown
/// key (also a key in quotes), 403 when the key lacks `permission`.
fn refusal(sim: &Sim, headers: &HeaderMap, permission: &str) -> Option<Response> {
    let key = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let refusal = match key.and_then(|k| sim.config.keys.get(k)) {
        None => message(StatusCode::UNAUTHORIZED, "Invalid API Key"),
        Some(perms) if !perms.contains(permission) => {
            message(StatusCode::FORBIDDEN, "Access Denied")
        }
        Some(_) => return None,
    };
    count(sim, refusal.status());
    Some(refusal)
}

/// Which rate limit an endpoint counts against.
#[derive(Clone, Copy)]
pub(crate) enum Limit {
    Track,
    ExportIds,
    /// `/users/delete`, `/users/identify`, `/users/merge`, `/users/alias/*`: one shared limit.
    Identity,
}

/// An API call: key and permission, then its rate limit, then injected faults and latency,
/// then `process`; every answer past the key check carries the rate-limit headers.
pub(crate) async fn api_call(
    sim: &Sim,
    headers: &HeaderMap,
    permission: &str,
    limit: Limit,
    process: impl FnOnce(&Sim) -> Response,
) -> Response {
    if let Some(refused) = refusal(sim, headers, permission) {
        return refused;
    }
    let verdict = {
        let mut state = sim.state();
        match limit {
            Limit::Track => state.track_limit.take(),
            Limit::ExportIds => state.export_limit.take(),
            Limit::Identity => state.identity_limit.take(),
        }
    };
    if !verdict.allowed {
        return finish(
            sim,
            verdict,
            message(StatusCode::TOO_MANY_REQUESTS, "Rate Limit Exceeded"),
        );
    }
    let injected = match inject(sim, verdict).await {
        Ok(after) => after,
        Err(response) => return response,
    };
    let response = process(sim);
    // What the client is told of a request that took effect: a 5xx at once, or a 504 after a
    // hang (a timeout, to a client that gives up sooner).
    let (code, hang) = match injected {
        faults::Injected::AppliedServerError(code) => (code, Duration::ZERO),
        faults::Injected::AppliedHang(how_long) => (504, how_long),
        _ => return finish(sim, verdict, response),
    };
    // Counted now: a client that times out drops the connection, and this handler with it.
    if response.status().is_success() {
        sim.state().stats.applied_then_failed += 1;
    }
    tokio::time::sleep(hang).await;
    finish(sim, verdict, server_error(code))
}

fn server_error(code: u16) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let text = match code {
        504 => "Gateway Timeout",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    message(status, text)
}

/// Adds the rate-limit headers to a response and counts it.
fn finish(sim: &Sim, verdict: Verdict, mut response: Response) -> Response {
    let status = response.status();
    let headers = response.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", verdict.limit.to_string()),
        ("x-ratelimit-remaining", verdict.remaining.to_string()),
        ("x-ratelimit-reset", verdict.reset.to_string()),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            headers.insert(name, v);
        }
    }
    if status == StatusCode::TOO_MANY_REQUESTS && sim.config.retry_after {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if let Ok(v) = HeaderValue::from_str(&verdict.reset.saturating_sub(now).max(1).to_string())
        {
            headers.insert("retry-after", v);
        }
    }
    count(sim, status);
    response
}

pub(crate) fn count(sim: &Sim, status: StatusCode) {
    let mut state = sim.state();
    state.stats.requests += 1;
    *state.stats.by_status.entry(status.as_u16()).or_default() += 1;
}

/// Applies the injected faults and the configured latency to an API request: `Err` is the
/// response to send instead of processing it; `Ok` is what to do after processing it.
async fn inject(sim: &Sim, verdict: Verdict) -> Result<faults::Injected, Response> {
    let (injected, latency) = {
        let mut state = sim.state();
        (state.faults.draw(), state.faults.latency_ms)
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    match injected {
        faults::Injected::RateLimited => Err(finish(
            sim,
            Verdict {
                allowed: false,
                remaining: 0,
                ..verdict
            },
            message(StatusCode::TOO_MANY_REQUESTS, "Rate Limit Exceeded"),
        )),
        faults::Injected::ServerError(code) => Err(finish(sim, verdict, server_error(code))),
        faults::Injected::Hang(how_long) => {
            tokio::time::sleep(how_long).await;
            Err(finish(sim, verdict, server_error(504)))
        }
        after => Ok(after),
    }
}
