//! Audience membership: `GET /api/segment/{slug}/size`, `/scan` (members, paginated) and
//! `/changes` (the membership log).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::json;
use tributary_core::{AccountId, Definition, format_rfc3339, from_micros};
use tributary_profile::ProfileState;

use super::profiles::{masks, memberships, render};
use super::segments::find;
use crate::AppState;
use crate::api::{ApiError, ApiResult, ok};
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

pub async fn size(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadDefinitions>,
    Path(slug): Path<String>,
) -> ApiResult {
    let aid = auth.caller.account_id;
    let def = find(&state, aid, &slug).await?;
    let size = state.store.audience_size(aid, &def.name).await?;
    let status = status(&state, aid, &def).await?;
    Ok(ok(
        StatusCode::OK,
        json!({ "segment": def.name, "size": size, "status": status }),
    ))
}

#[derive(Deserialize)]
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
    Ok(ok(
        StatusCode::OK,
        json!({ "segment": def.name, "profiles": rendered, "_next": next }),
    ))
}

#[derive(Deserialize)]
pub struct ChangesParams {
    since: Option<i64>,
    limit: Option<u32>,
}

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
