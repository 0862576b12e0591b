//! Audience membership: `GET /api/segment/{slug}/size` (and Lytics' `/sizes`, and
//! `/api/segment/sizes?ids=`), `/scan` (members, paginated in Lytics' shape), the ad-hoc
//! `/api/segment/scan` (a FilterQL body), and `/changes` (the membership log).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::json;
use tributary_core::{AccountId, Definition, format_rfc3339, from_micros};
use tributary_profile::{ProfileState, ProfileView};
use tributary_query::eval::{EvalContext, evaluate_bool};
use tributary_query::parse_filter;

use super::definitions::{statement_text, syntax_error};
use super::profiles::{masks, memberships, render};
use super::segments::find;
use crate::AppState;
use crate::api::{ApiError, ApiResult, bounded, ok, ok_page};
use crate::auth::{Authorized, ReadDefinitions, ReadProfiles};

const MAX_PAGE: u32 = 1_000;
const MAX_CHANGES: u32 = 10_000;

/// `ready` once the stored membership was computed for the current definition.
async fn status(
    state: &AppState,
    aid: AccountId,
    def: &Definition,
) -> Result<&'static str, ApiError> {
    let versions = state.store.audience_versions(aid).await?;
    let ready = versions
        .iter()
        .any(|v| v.segment == def.name && v.version == def.updated_at);
    Ok(if ready { "ready" } else { "computing" })
}

/// `{id, name, slug_name, size, status}`: Lytics' size record (an audience's id is its slug).
async fn size_record(
    state: &AppState,
    aid: AccountId,
    def: &Definition,
) -> Result<serde_json::Value, ApiError> {
    let size = state.store.audience_size(aid, &def.name).await?;
    let status = status(state, aid, def).await?;
    Ok(json!({
        "id": def.name, "name": def.name, "slug_name": def.name, "segment": def.name,
        "size": size, "status": status,
    }))
}

/// `GET /api/segment/{slug}/size` and Lytics' `/sizes`.
#[utoipa::path(get, path = "/api/segment/{slug}/size", tag = "audiences", params(("slug" = String, Path, description = "The audience")), responses(crate::openapi::Enveloped))]
pub async fn size(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadDefinitions>,
    Path(slug): Path<String>,
) -> ApiResult {
    let aid = auth.caller.account_id;
    let def = find(&state, aid, &slug).await?;
    Ok(ok(StatusCode::OK, size_record(&state, aid, &def).await?))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SizesParams {
    ids: Option<String>,
}

/// `GET /api/segment/sizes?ids=a,b`: the sizes of the audiences named (all without `ids`).
#[utoipa::path(
    get,
    path = "/api/segment/sizes",
    tag = "audiences",
    params(SizesParams),
    responses(crate::openapi::Enveloped)
)]
pub async fn sizes(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadDefinitions>,
    Query(params): Query<SizesParams>,
) -> ApiResult {
    let aid = auth.caller.account_id;
    let defs = match params.ids.as_deref().map(str::trim) {
        Some(ids) if !ids.is_empty() => {
            let mut defs = Vec::new();
            for slug in ids.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                defs.push(find(&state, aid, slug).await?);
            }
            defs
        }
        _ => {
            state
                .store
                .definitions(aid, tributary_core::DefinitionKind::Segment)
                .await?
        }
    };
    let mut out = Vec::with_capacity(defs.len());
    for def in &defs {
        out.push(size_record(&state, aid, def).await?);
    }
    Ok(ok(StatusCode::OK, out))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ScanParams {
    limit: Option<u32>,
    start: Option<String>,
}

/// The opaque `_next` cursor: the last profile id of the page. Keyset pagination, so members
/// joining or leaving meanwhile never make a page repeat or skip a profile that stayed.
fn encode_cursor(profile_id: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("p:{profile_id}"))
}

fn decode_cursor(text: &str) -> Result<i64, ApiError> {
    URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.strip_prefix("p:").and_then(|id| id.parse().ok()))
        .ok_or_else(|| ApiError::bad_request("start: not a cursor this API returned as _next"))
}

#[utoipa::path(get, path = "/api/segment/{slug}/scan", tag = "audiences", params(("slug" = String, Path, description = "The audience"), ScanParams), responses(crate::openapi::Enveloped))]
pub async fn scan(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadProfiles>,
    Path(slug): Path<String>,
    Query(params): Query<ScanParams>,
) -> ApiResult {
    let aid = auth.caller.account_id;
    let def = find(&state, aid, &slug).await?;
    let limit = params.limit.unwrap_or(100).clamp(1, MAX_PAGE);
    let after = match params.start.as_deref() {
        Some(s) if !s.is_empty() => decode_cursor(s)?,
        _ => 0,
    };
    let ids = state
        .store
        .audience_members(aid, &def.name, after, limit)
        .await?;
    let mut profiles = state.store.load_profiles(aid, &ids).await?;
    profiles.sort_by_key(|p| p.id);
    let plans = state.engine.account_plans(aid).await?;
    let segments = memberships(&state, aid, &ids).await?;
    let masked = masks(&auth.caller);
    let mut rendered = Vec::with_capacity(profiles.len());
    for p in &profiles {
        let parsed = ProfileState::from_json(&p.state)
            .map_err(|e| ApiError::internal("reading a profile", &e))?;
        let theirs = segments.get(&p.id).map_or(&[][..], Vec::as_slice);
        rendered.push(render(p, &parsed, &plans, masked, &[], theirs));
    }
    let next = (ids.len() == limit as usize)
        .then(|| ids.last().map(|id| encode_cursor(*id)))
        .flatten();
    let total = state.store.audience_size(aid, &def.name).await?;
    Ok(ok_page(rendered, next, total))
}

/// How many profiles an ad-hoc scan reads per request at most: a filter that few profiles
/// match answers a short (even empty) page with a `_next`, instead of reading every profile
/// in one request.
const AD_HOC_READ: usize = 50_000;

/// `GET|POST /api/segment/scan?limit=&start=` with a FilterQL statement as the body (text, or
/// JSON `{"segment_ql": ...}`): the profiles it matches now, without saving an audience.
/// `total` is the number of matches in this page (an unsaved audience has no stored size).
#[utoipa::path(method(get, post), path = "/api/segment/scan", tag = "audiences", params(ScanParams), request_body(content = String, description = "A FilterQL statement, or JSON `{\"segment_ql\": ...}`", content_type = "text/plain"), responses(crate::openapi::Enveloped))]
pub async fn scan_ad_hoc(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadProfiles>,
    Query(params): Query<ScanParams>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> ApiResult {
    let aid = auth.caller.account_id;
    let text = statement_text(&headers, &body, "segment_ql")?;
    let st = parse_filter(&text).map_err(|e| syntax_error(&e))?;
    let limit = params.limit.unwrap_or(100).clamp(1, MAX_PAGE) as usize;
    let mut after = match params.start.as_deref() {
        Some(s) if !s.is_empty() => decode_cursor(s)?,
        _ => 0,
    };
    let includes = super::segments::audiences(&state, aid).await?;
    let plans = state.engine.account_plans(aid).await?;
    let now = time::OffsetDateTime::now_utc();
    let mut matched = Vec::new();
    let mut read = 0;
    let mut exhausted = false;
    while matched.len() < limit && read < AD_HOC_READ {
        let page = state.store.scan_profiles(aid, after, 1_000).await?;
        exhausted = page.len() < 1_000;
        let ctx = EvalContext::with_includes(now, includes.statements());
        for p in page {
            after = p.id;
            read += 1;
            let parsed = ProfileState::from_json(&p.state)
                .map_err(|e| ApiError::internal("reading a profile", &e))?;
            let view = ProfileView {
                id: p.id,
                created_at: p.created_at,
                state: &parsed,
                plans: &plans,
            };
            if evaluate_bool(&st.filter, &view, &ctx) == Ok(true) {
                matched.push((p, parsed));
                if matched.len() == limit {
                    exhausted = false;
                    break;
                }
            }
        }
        if exhausted {
            break;
        }
    }
    let ids: Vec<i64> = matched.iter().map(|(p, _)| p.id).collect();
    let segments = memberships(&state, aid, &ids).await?;
    let masked = masks(&auth.caller);
    let rendered: Vec<_> = matched
        .iter()
        .map(|(p, parsed)| {
            let theirs = segments.get(&p.id).map_or(&[][..], Vec::as_slice);
            render(p, parsed, &plans, masked, &[], theirs)
        })
        .collect();
    let next = (!exhausted).then(|| encode_cursor(after));
    Ok(ok_page(rendered, next, ids.len() as u64))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ChangesParams {
    since: Option<i64>,
    limit: Option<u32>,
}

#[utoipa::path(get, path = "/api/segment/{slug}/changes", tag = "audiences", params(("slug" = String, Path, description = "The audience"), ChangesParams), responses(crate::openapi::Enveloped))]
pub async fn changes(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadProfiles>,
    Path(slug): Path<String>,
    Query(params): Query<ChangesParams>,
) -> ApiResult {
    let aid = auth.caller.account_id;
    let def = find(&state, aid, &slug).await?;
    let since = params.since.unwrap_or(0).max(0);
    let limit = params.limit.unwrap_or(1_000).clamp(1, MAX_CHANGES);
    let entries = state
        .store
        .membership_log(aid, Some(&def.name), since, limit)
        .await?;
    let next_since = entries.last().map_or(since, |e| e.seq);
    let changes: Vec<_> = entries
        .iter()
        .map(|e| {
            json!({
                "seq": e.seq,
                "profile_id": e.profile_id.to_string(),
                "change": if e.entered { "enter" } else { "exit" },
                "at": format_rfc3339(from_micros(e.at)),
            })
        })
        .collect();
    Ok(ok(
        StatusCode::OK,
        json!({ "segment": def.name, "changes": changes, "next_since": next_since }),
    ))
}

/// Lytics' name for `GET /api/segment/{slug}/size`.
#[utoipa::path(get, path = "/api/segment/{slug}/sizes", tag = "audiences", params(("slug" = String, Path, description = "The audience")), responses(crate::openapi::Enveloped))]
pub async fn lytics_sizes(
    state: State<Arc<AppState>>,
    auth: Authorized<ReadDefinitions>,
    slug: Path<String>,
) -> ApiResult {
    size(state, auth, slug).await
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryParams {
    /// How many days back, up to 400 (90).
    days: Option<u32>,
}

/// `GET /api/segment/{slug}/history?days=90`: the audience's size per day (UTC; the day's
/// last sample), oldest first; days before it existed are left out.
#[utoipa::path(get, path = "/api/segment/{slug}/history", tag = "audiences", params(("slug" = String, Path, description = "The audience"), HistoryParams), responses(crate::openapi::Enveloped))]
pub async fn history(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadDefinitions>,
    Path(slug): Path<String>,
    Query(params): Query<HistoryParams>,
) -> ApiResult {
    let days = bounded("days", params.days, 90, 400)?;
    let aid = auth.caller.account_id;
    let def = find(&state, aid, &slug).await?;
    let today = crate::routes::admin::now().div_euclid(86_400_000_000);
    let rows = state
        .store
        .audience_size_history(aid, &def.name, today - i64::from(days) + 1)
        .await?;
    let data: Vec<_> = rows
        .into_iter()
        .map(|(day, size)| {
            let date = from_micros(day * 86_400_000_000).date();
            json!({"day": date.to_string(), "size": size})
        })
        .collect();
    Ok(ok(StatusCode::OK, data))
}
