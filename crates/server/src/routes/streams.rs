//! `GET /v2/stream` and `GET /v2/stream/{name}/events`: how a user checks that a webhook or an
//! upload arrived, and how far the profiles are behind it. `PUT /v2/stream/{name}`: a stream's
//! settings (`dedup_fields`).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use serde_json::json;
use tributary_core::{StreamSettings, format_rfc3339, from_micros, validate_stream_name};

use crate::AppState;
use crate::api::{ApiError, ApiResult, bounded, ok, query_map};
use crate::auth::{Authorized, ManageStreams, ReadRawEvents, ReadStreams};
use crate::routes::admin::json_body;

const DEFAULT_EVENTS: u32 = 10;
const MAX_EVENTS: u32 = 10_000;

/// `GET /v2/stream`, and Lytics' `GET /api/schema/_streams`.
#[utoipa::path(
    get,
    path = "/v2/stream",
    tag = "streams",
    responses(crate::openapi::Enveloped)
)]
pub async fn list(State(state): State<Arc<AppState>>, auth: Authorized<ReadStreams>) -> ApiResult {
    let aid = auth.caller.account_id;
    let streams = state.store.streams(aid).await?;
    let lag = state.store.pipeline_lag(aid).await?;
    let data: Vec<_> = streams
        .iter()
        .map(|s| {
            let behind = lag
                .iter()
                .find(|(name, _)| *name == s.name)
                .map_or(0, |l| l.1);
            json!({
                "name": s.name,
                "count": s.count,
                "last_received": format_rfc3339(from_micros(s.last_received_micros)),
                // Lytics' names (`/api/schema/_streams`): the time in epoch milliseconds, as
                // a string.
                "stream": s.name,
                "ct": s.count,
                "last_msg_ts": (s.last_received_micros / 1_000).to_string(),
                // Received but not yet applied to profiles: it falls to 0 once the pipeline
                // has caught up.
                "pipeline_lag_events": behind,
                "settings": s.settings,
            })
        })
        .collect();
    Ok(ok(StatusCode::OK, data))
}

/// `PUT /v2/stream/{name}` with `{"dedup_fields": [...]}`: the stream's settings, whole (a
/// field left out takes its default). The stream is made if it has no events yet.
#[utoipa::path(put, path = "/v2/stream/{name}", tag = "streams", params(("name" = String, Path, description = "The stream")), request_body(content = serde_json::Value, description = "The stream's settings, whole: `{\"dedup_fields\": [...]}`", content_type = "application/json"), responses(crate::openapi::Enveloped))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ManageStreams>,
    Path(name): Path<String>,
    body: bytes::Bytes,
) -> ApiResult {
    validate_stream_name(&name).map_err(ApiError::bad_request)?;
    let settings: StreamSettings = json_body(&body)?;
    settings.validate().map_err(ApiError::bad_request)?;
    let aid = auth.caller.account_id;
    state
        .store
        .set_stream_settings(aid, &name, &settings)
        .await?;
    state.stream_settings.forget(aid);
    tracing::info!(aid, stream = %name, dedup_fields = ?settings.dedup_fields, "stream settings changed");
    Ok(ok(
        StatusCode::OK,
        json!({ "name": name, "settings": settings }),
    ))
}

#[utoipa::path(get, path = "/v2/stream/{name}/events", tag = "streams", params(("name" = String, Path, description = "The stream"), ("limit" = Option<u32>, Query, description = "How many of the latest events")), responses(crate::openapi::Enveloped))]
pub async fn events(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadRawEvents>,
    Path(name): Path<String>,
    uri: Uri,
) -> ApiResult {
    let params = query_map(&uri)?;
    let limit = match params.get("limit") {
        None => DEFAULT_EVENTS,
        Some(text) => match text.parse::<u32>() {
            Ok(n) if (1..=MAX_EVENTS).contains(&n) => n,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "limit={text:?} must be a whole number from 1 to {MAX_EVENTS}"
                )));
            }
        },
    };
    let events = state
        .store
        .recent_events(auth.caller.account_id, &name, limit)
        .await?;
    let data: Vec<_> = events.iter().map(event_json).collect();
    Ok(ok(StatusCode::OK, data))
}

/// A raw event as the API shows it.
pub(crate) fn event_json(e: &tributary_core::StoredEvent) -> serde_json::Value {
    json!({
        "id": e.id,
        "stream": e.stream,
        "received": format_rfc3339(from_micros(e.received_at)),
        "event_time": format_rfc3339(from_micros(e.event_time)),
        "event": e.payload_json(),
    })
}

/// Lytics' name for `GET /v2/stream`.
#[utoipa::path(
    get,
    path = "/api/schema/_streams",
    tag = "streams",
    responses(crate::openapi::Enveloped)
)]
pub async fn lytics_list(state: State<Arc<AppState>>, auth: Authorized<ReadStreams>) -> ApiResult {
    list(state, auth).await
}

/// `GET /v2/stream/_minutes?minutes=60`: events stored per minute and stream, oldest first;
/// minutes without events are left out. `minutes` goes back at most 8 days, as far as the
/// counts are kept.
#[utoipa::path(
    get,
    path = "/v2/stream/_minutes",
    tag = "streams",
    params(crate::api::MinutesParams),
    responses(crate::openapi::Enveloped)
)]
pub async fn minutes(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadStreams>,
    axum::extract::Query(params): axum::extract::Query<crate::api::MinutesParams>,
) -> ApiResult {
    let kept = (tributary_store::MINUTES_KEPT_SECS / 60) as u32;
    let minutes = bounded("minutes", params.minutes, 60, kept)?;
    let since = crate::routes::admin::now() - i64::from(minutes) * 60_000_000;
    let rows = state
        .store
        .events_per_minute(auth.caller.account_id, since)
        .await?;
    let data: Vec<_> = rows
        .into_iter()
        .map(|(minute, stream, events)| {
            json!({"minute": format_rfc3339(from_micros(minute)), "stream": stream, "events": events})
        })
        .collect();
    Ok(ok(StatusCode::OK, data))
}
