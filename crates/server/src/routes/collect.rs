//! Collection: `POST /c/{aid}/{stream}`, `/collect/json/{stream}`, `/collect/bulk/{stream}`.
//! Order of checks: token (401/403), then the URL, then the body (413, 400); nothing is stored
//! unless the whole request is accepted, and the 200 goes out after the commit.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::Response;
use bytes::BytesMut;
use futures::StreamExt;
use serde_json::json;
use tributary_core::{AccountId, NewEvent, to_micros, validate_stream_name};
use tributary_sources::{
    BodyStream, CsvOptions, DecodeOptions, Rejection, decode_csv_stream, decode_json,
    gunzip_if_compressed, is_gzip,
};
use tributary_store::WriteError;

use crate::AppState;
use crate::api::{ApiError, ApiResult, flag, ok, query_map};
use crate::auth::{Authorized, Caller, Collect};

/// How many rejections a response lists (all are counted).
const REJECTIONS_SHOWN: usize = 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    /// CSV unless the request says it is JSON.
    Bulk,
}

#[utoipa::path(post, path = "/c/{aid}/{stream}", tag = "collect", params(("aid" = i64, Path, description = "The account number"), ("stream" = String, Path, description = "The stream the events go to"), ("dryrun" = Option<bool>, Query, description = "Validate and count without storing"), ("timestamp_field" = Option<String>, Query, description = "The field holding each event's time"), ("filename" = Option<String>, Query, description = "Recorded with the events")), request_body(content = serde_json::Value, description = "One JSON event or an array of events (gzip allowed)", content_type = "application/json"), responses(crate::openapi::Enveloped))]
pub async fn collect_in_account(
    State(state): State<Arc<AppState>>,
    auth: Authorized<Collect>,
    Path((aid, stream)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    let aid: AccountId = aid.parse().map_err(|_| {
        ApiError::bad_request(format!("{aid:?} in the URL is not an account number"))
    })?;
    let caller = auth.caller.act_in(&state, aid).await?;
    collect(&state, &caller, &stream, &uri, &headers, body, Format::Json).await
}

async fn collect(
    state: &AppState,
    caller: &Caller,
    stream: &str,
    uri: &Uri,
    headers: &HeaderMap,
    body: Body,
    format: Format,
) -> ApiResult {
    validate_stream_name(stream).map_err(ApiError::bad_request)?;
    let params = query_map(uri)?;
    let dryrun = flag(&params, "dryrun")?;
    let options = DecodeOptions {
        timestamp_field: params
            .get("timestamp_field")
            .filter(|f| !f.is_empty())
            .cloned(),
        drop_errors: flag(&params, "droperrors")?,
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    check_encoding(headers)?;
    let csv = if format == Format::Bulk && !content_type.contains("json") {
        check_bulk_content_type(&content_type)?;
        Some(csv_options(&params, state.config.max_csv_columns)?)
    } else {
        None
    };

    let settings = state
        .stream_settings
        .get(state.store.as_ref(), caller.account_id, stream)
        .await?;
    let limit = match format {
        Format::Json => state.config.max_body_bytes,
        Format::Bulk => state.config.max_bulk_bytes,
    };
    let raw = read_body(headers, body, limit).await?;
    let declared_gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"));
    // Inflating and decoding are CPU work proportional to the body: they run on the blocking
    // pool, so a large or hostile upload never holds an async worker (and `/healthz`) up.
    let decode_options = options.clone();
    let outcome = match csv {
        Some(csv) => {
            let target = Target {
                writer: (!dryrun).then(|| state.writer.clone()),
                aid: caller.account_id,
                stream: stream.to_string(),
                settings,
            };
            let summary = tokio::task::spawn_blocking(move || {
                stream_csv(&raw, declared_gzip, limit, &decode_options, &csv, target)
            })
            .await
            .map_err(|e| ApiError::internal("decoding a body", &e))??;
            let (summary, duplicates) = summary;
            Outcome {
                accepted: summary.accepted,
                rejected_count: summary.rejected_count,
                rejected: summary.rejected,
                duplicates,
            }
        }
        None => {
            let small = raw.len() <= INLINE_DECODE_BYTES && !is_gzip(&raw, declared_gzip);
            let decode = move || {
                let inflated =
                    gunzip_if_compressed(&raw, declared_gzip, limit).map_err(gzip_refusal)?;
                let bytes: &[u8] = inflated.as_deref().unwrap_or(&raw);
                decode_json(bytes, &decode_options).map_err(decode_refusal)
            };
            // A small plain body (a webhook) decodes in microseconds: here. Anything larger,
            // or compressed (it may inflate a thousandfold), on the blocking pool.
            let mut decoded = if small {
                decode()?
            } else {
                tokio::task::spawn_blocking(decode)
                    .await
                    .map_err(|e| ApiError::internal("decoding a body", &e))??
            };
            let accepted = decoded.records.len();
            let mut duplicates = 0;
            if !dryrun {
                let events = to_events(
                    caller.account_id,
                    stream,
                    settings.as_ref(),
                    std::mem::take(&mut decoded.records),
                );
                duplicates = state.writer.write(events).await.map_err(write_refusal)?;
            }
            Outcome {
                accepted,
                rejected_count: decoded.rejected.len(),
                rejected: decoded.rejected,
                duplicates,
            }
        }
    };
    if !dryrun {
        metrics::counter!("tributary_events_accepted_total").increment(outcome.accepted as u64);
        metrics::counter!("tributary_events_duplicate_total").increment(outcome.duplicates as u64);
        state.engine.wake();
    }
    metrics::counter!("tributary_events_rejected_total").increment(outcome.rejected_count as u64);
    Ok(response(stream, &content_type, &options, dryrun, &outcome))
}

/// Largest plain JSON body decoded on the request's own task (bounded work: well under a
/// millisecond); larger or compressed ones go to the blocking pool.
const INLINE_DECODE_BYTES: usize = 64 * 1024;

/// Records per write of a streamed upload: what is held in memory at once.
const STREAM_BATCH: usize = 10_000;

/// Where a streamed upload's records go: the writer, or nowhere on a dry run.
struct Target {
    writer: Option<tributary_store::EventWriter>,
    aid: AccountId,
    stream: String,
    settings: Option<tributary_core::StreamSettings>,
}

/// Decodes a CSV upload as a stream (checked whole first, so a refused body stores nothing)
/// and writes it in batches of [`STREAM_BATCH`]: memory stays flat whatever the row count
/// (seen: 32 million tiny rows took the process to 2.4 GB). Runs on the blocking pool.
fn stream_csv(
    raw: &[u8],
    declared_gzip: bool,
    limit: usize,
    options: &DecodeOptions,
    csv: &CsvOptions,
    target: Target,
) -> Result<(tributary_sources::StreamSummary, usize), ApiError> {
    let body = BodyStream::open(raw, declared_gzip, limit).map_err(gzip_refusal)?;
    if let Some(refusal) = csv_body_refusal(&body.head(4096)) {
        return Err(refusal);
    }
    let handle = tokio::runtime::Handle::current();
    let mut failed = None;
    let mut duplicates = 0;
    let summary = decode_csv_stream(
        &|| body.reader(),
        options,
        csv,
        STREAM_BATCH,
        &mut |records| {
            let Some(writer) = &target.writer else {
                return true;
            };
            let events = to_events(
                target.aid,
                &target.stream,
                target.settings.as_ref(),
                records,
            );
            match handle.block_on(writer.write(events)) {
                Ok(n) => {
                    duplicates += n;
                    true
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        },
    )
    .map_err(decode_refusal)?;
    match failed {
        // The batches before this one are stored; the client is told to retry.
        Some(e) => Err(write_refusal(e)),
        None => Ok((summary, duplicates)),
    }
}

fn gzip_refusal(e: tributary_sources::GzipError) -> ApiError {
    match e {
        tributary_sources::GzipError::TooLarge(limit) => ApiError::too_large(limit),
        other => ApiError::bad_request(other.to_string()),
    }
}

fn decode_refusal(e: tributary_sources::DecodeError) -> ApiError {
    metrics::counter!("tributary_requests_rejected_total").increment(1);
    ApiError::bad_request(e.to_string())
}

fn write_refusal(e: WriteError) -> ApiError {
    match e {
        WriteError::Overloaded => {
            ApiError::unavailable("the server is busy storing other events; retry shortly", 1)
        }
        WriteError::Closed => ApiError::unavailable("the server is shutting down", 5),
        WriteError::Store(e) => ApiError::internal("storing events", &e),
    }
}

fn to_events(
    aid: AccountId,
    stream: &str,
    settings: Option<&tributary_core::StreamSettings>,
    records: Vec<tributary_sources::Record>,
) -> Vec<NewEvent> {
    let now = to_micros(time::OffsetDateTime::now_utc());
    records
        .into_iter()
        .map(|r| NewEvent {
            // Parsed again only for a deduplicating stream (the decoder checked it is JSON).
            dedup_key: settings
                .and_then(|s| s.dedup_key(&serde_json::from_str(&r.payload).unwrap_or_default())),
            account_id: aid,
            stream: stream.to_string(),
            received_at: now,
            event_time: r.event_time.map_or(now, to_micros),
            payload: r.payload,
        })
        .collect()
}

/// What a request's body came to.
struct Outcome {
    accepted: usize,
    rejected_count: usize,
    /// The first rejections (all are counted).
    rejected: Vec<Rejection>,
    /// Accepted but not stored again: retries of deliveries the stream already holds.
    duplicates: usize,
}

fn response(
    stream: &str,
    content_type: &str,
    options: &DecodeOptions,
    dryrun: bool,
    outcome: &Outcome,
) -> Response {
    let rejected: Vec<_> = outcome
        .rejected
        .iter()
        .take(REJECTIONS_SHOWN)
        .map(|r| json!({ "line": r.line, "message": r.message }))
        .collect();
    ok(
        StatusCode::OK,
        json!({
            "stream": stream,
            "message_count": outcome.accepted,
            "rejected_count": outcome.rejected_count,
            "duplicate_count": outcome.duplicates,
            "rejected": rejected,
            "content-type": content_type,
            "droperrors": options.drop_errors,
            "dryrun": dryrun,
            "timestamp_field": options.timestamp_field,
        }),
    )
}

/// Only gzip (or no encoding) is inflated; any other declared encoding would be read as
/// plain text and stored as garbage (seen: `br` and `deflate` answered 200).
fn check_encoding(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(encoding) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(());
    };
    let encoding = encoding.to_str().unwrap_or("?").trim().to_ascii_lowercase();
    if matches!(encoding.as_str(), "gzip" | "x-gzip" | "identity" | "") {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "Content-Encoding {encoding:?} is not supported: send the body gzip-compressed \
             (Content-Encoding: gzip) or uncompressed"
        ),
    ))
}

/// `/collect/bulk` takes CSV (text/csv, application/csv, text/plain, or no type) or JSON;
/// anything else (a form post, say) was read as CSV and stored nothing.
fn check_bulk_content_type(content_type: &str) -> Result<(), ApiError> {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if matches!(
        essence,
        "" | "text/csv" | "application/csv" | "text/plain" | "application/octet-stream"
    ) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "Content-Type {essence:?} is not accepted by /collect/bulk: send text/csv, or \
             application/json for JSON"
        ),
    ))
}

/// A CSV body that cannot be what the sender meant: empty, or JSON sent as CSV.
fn csv_body_refusal(body: &[u8]) -> Option<ApiError> {
    let first = body
        .iter()
        .copied()
        .find(|b| !b.is_ascii_whitespace() && *b != 0xEF && *b != 0xBB && *b != 0xBF);
    match first {
        None => Some(ApiError::bad_request(
            "the body is empty: send a CSV file with a header row",
        )),
        Some(b'{') | Some(b'[') => Some(ApiError::bad_request(
            "the body looks like JSON but was sent as CSV: send it with \
             Content-Type: application/json",
        )),
        Some(_) => None,
    }
}

fn csv_options(
    params: &HashMap<String, String>,
    max_columns: usize,
) -> Result<CsvOptions, ApiError> {
    let delimiter = match params.get("delimiter") {
        Some(d) => CsvOptions::parse_delimiter(d).map_err(ApiError::bad_request)?,
        None => b',',
    };
    let headers = params.get("headers").filter(|h| !h.is_empty()).map(|h| {
        h.split(',')
            .map(|s| s.trim().to_string())
            .collect::<Vec<_>>()
    });
    Ok(CsvOptions {
        delimiter,
        headers,
        max_columns,
        ..CsvOptions::default()
    })
}

/// Reads the body, refusing it with 413 as soon as it passes `limit` (before reading it all
/// when `Content-Length` already says so).
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<bytes::Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let mut buffer = BytesMut::with_capacity(declared.unwrap_or(8 * 1024).min(limit));
    let mut chunks = body.into_data_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::bad_request(format!("could not read the request body: {e}")))?;
        if buffer.len() + chunk.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

/// Events into a stream of the token's account: one JSON event or an array of them.
#[utoipa::path(post, path = "/collect/json/{stream}", tag = "collect", params(("stream" = String, Path, description = "The stream the events go to"), ("dryrun" = Option<bool>, Query, description = "Validate and count without storing")), request_body(content = serde_json::Value, description = "One JSON event or an array of events (gzip allowed)", content_type = "application/json"), responses(crate::openapi::Enveloped))]
pub async fn collect_json(
    State(state): State<Arc<AppState>>,
    auth: Authorized<Collect>,
    Path(stream): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    collect(
        &state,
        &auth.caller,
        &stream,
        &uri,
        &headers,
        body,
        Format::Json,
    )
    .await
}

/// Many events at once: CSV with a header row (text/csv), or JSON (application/json).
#[utoipa::path(post, path = "/collect/bulk/{stream}", tag = "collect", params(("stream" = String, Path, description = "The stream the events go to"), ("dryrun" = Option<bool>, Query, description = "Validate and count without storing")), request_body(content = String, description = "CSV with a header row, or JSON (gzip allowed)", content_type = "text/csv"), responses(crate::openapi::Enveloped))]
pub async fn collect_bulk(
    State(state): State<Arc<AppState>>,
    auth: Authorized<Collect>,
    Path(stream): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> ApiResult {
    collect(
        &state,
        &auth.caller,
        &stream,
        &uri,
        &headers,
        body,
        Format::Bulk,
    )
    .await
}
