//! Profiles: `GET|DELETE /api/entity/user/{field}/{value}`, `GET /api/schema/user`,
//! `POST /api/rebuild`, and the identity blocklist (`/v2/identity/blocklist`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use serde_json::{Map, Value as Json, json};
use tributary_core::{AccountId, IdentityKey, Role, StoredProfile, format_rfc3339, from_micros};
use tributary_engine::EngineError;
use tributary_profile::{Plans, ProfileState};

use crate::AppState;
use crate::api::{ApiError, ApiResult, flag, ok, ok_beside, query_map};
use crate::auth::{
    Authorized, Caller, ManageProfiles, ReadDefinitions, ReadProfiles, ReadRawEvents,
};

/// What an observer sees of a profile: values of the fields below, numbers and booleans (counts,
/// scores, flags). Everything else is masked: identities, text, dates, lists, and the values
/// of maps such as `custom` (their keys stay visible), since any unmapped attribute may be
/// personal (seen: `custom` shown in full).
const NON_PERSONAL_FIELDS: &[&str] = &[
    "country",
    "language",
    "time_zone",
    "braze_event_count",
    "braze_first_seen",
    "braze_last_seen",
];

/// Fields masked for an observer even when their values are numbers.
const PERSONAL_FIELDS: &[&str] = &[
    "email",
    "phone",
    "phone_number",
    "first_name",
    "last_name",
    "name",
    "date_of_birth",
    "dob",
    "twitter_handle",
    "address",
    "street",
    "ip",
    "postal_code",
    "zip",
];
const MASK: &str = "***";

fn engine_error(e: EngineError) -> ApiError {
    match e {
        EngineError::Busy(_) => ApiError::unavailable(e.to_string(), 2),
        other => ApiError::internal("working on profiles", &other),
    }
}

async fn find(
    state: &AppState,
    aid: AccountId,
    field: &str,
    value: &str,
) -> Result<StoredProfile, ApiError> {
    state
        .engine
        .find_profile(aid, &IdentityKey::new(field, value))
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no profile has {field} = {value:?}")))
}

/// An observer's view of a value: numbers and booleans as they are, a map's keys with masked
/// values, anything else masked.
fn mask_value(value: Json) -> Json {
    match value {
        Json::Number(_) | Json::Bool(_) | Json::Null => value,
        Json::Object(map) => {
            Json::Object(map.into_iter().map(|(k, v)| (k, mask_value(v))).collect())
        }
        _ => json!(MASK),
    }
}

pub(crate) fn masks(caller: &Caller) -> bool {
    !caller
        .token
        .roles
        .iter()
        .any(|r| matches!(r, Role::Admin | Role::DataManager | Role::AudienceManager))
}

/// A profile as the API shows it. `segments` are its audiences as the membership table has
/// them (see [`memberships`]).
pub(crate) fn render(
    profile: &StoredProfile,
    state: &ProfileState,
    plans: &Plans,
    masked: bool,
    merges: &[tributary_core::MergeRecord],
    segments: &[String],
) -> Json {
    let personal = |name: &str| {
        masked
            && (PERSONAL_FIELDS.contains(&name)
                || state.identities.contains_key(name)
                || plans
                    .all()
                    .any(|p| p.identity_fields.iter().any(|f| f == name)))
    };
    let mut out = Map::new();
    for (name, field) in &state.fields {
        let value = field.value(Some(plans.spec(name))).to_json();
        let value = if personal(name) {
            json!(MASK)
        } else if masked && !NON_PERSONAL_FIELDS.contains(&name.as_str()) {
            mask_value(value)
        } else {
            value
        };
        out.insert(name.clone(), value);
    }
    let identities: BTreeMap<&String, Vec<&str>> = state
        .identities
        .iter()
        .map(|(f, values)| {
            (
                f,
                values
                    .iter()
                    .map(|v| if masked { MASK } else { v.as_str() })
                    .collect(),
            )
        })
        .collect();
    out.insert("_id".into(), json!(profile.id.to_string()));
    out.insert(
        "_created".into(),
        json!(format_rfc3339(from_micros(profile.created_at))),
    );
    out.insert(
        "_modified".into(),
        json!(format_rfc3339(from_micros(profile.modified_at))),
    );
    out.insert(
        "_first_seen".into(),
        json!(format_rfc3339(from_micros(state.first_seen))),
    );
    out.insert(
        "_last_seen".into(),
        json!(format_rfc3339(from_micros(state.last_seen))),
    );
    out.insert("_event_count".into(), json!(state.events));
    // `segments` as Lytics names it; `_segments` as earlier releases did.
    out.insert("segments".into(), json!(segments));
    out.insert("_segments".into(), json!(segments));
    out.insert("_identities".into(), json!(identities));
    out.insert(
        "_merges".into(),
        Json::Array(
            merges
                .iter()
                .map(|m| {
                    json!({
                        "merged_profile": m.loser.to_string(),
                        "event_id": m.event_id,
                        "field": m.key.field,
                        "value": if masked { MASK } else { m.key.value.as_str() },
                        "at": format_rfc3339(from_micros(m.at)),
                    })
                })
                .collect(),
        ),
    );
    Json::Object(out)
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EntityParams {
    /// Comma-separated field names: only these are answered.
    fields: Option<String>,
}

/// `GET /api/entity/user/{field}/{value}[?fields=a,b]`: the profile, and beside it Lytics'
/// `meta` (`name`: the table, `by_fields`: the identity fields).
#[utoipa::path(get, path = "/api/entity/user/{field}/{value}", tag = "profiles", params(("field" = String, Path, description = "An identity field"), ("value" = String, Path, description = "Its value"), EntityParams), responses(crate::openapi::Enveloped))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadProfiles>,
    Path((field, value)): Path<(String, String)>,
    Query(params): Query<EntityParams>,
) -> ApiResult {
    let aid = auth.caller.account_id;
    let profile = find(&state, aid, &field, &value).await?;
    let parsed = ProfileState::from_json(&profile.state)
        .map_err(|e| ApiError::internal("reading a profile", &e))?;
    let plans = state.engine.account_plans(aid).await?;
    let merges = state.store.profile_merges(aid, profile.id).await?;
    let mut segments = memberships(&state, aid, &[profile.id]).await?;
    let mut entity = render(
        &profile,
        &parsed,
        &plans,
        masks(&auth.caller),
        &merges,
        &segments.remove(&profile.id).unwrap_or_default(),
    );
    if let (Some(wanted), Json::Object(all)) = (params.fields.as_deref(), &mut entity) {
        let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
        all.retain(|name, _| wanted.contains(&name.as_str()));
    }
    let mut meta = serde_json::Map::new();
    meta.insert(
        "meta".into(),
        json!({ "format": "json", "name": "user", "by_fields": identity_fields(&plans) }),
    );
    Ok(ok_beside(StatusCode::OK, entity, meta))
}

/// The fields profiles are identified by, over every query of the account, sorted.
pub(crate) fn identity_fields(plans: &Plans) -> Vec<String> {
    let mut fields: Vec<String> = plans
        .all()
        .flat_map(|p| p.identity_fields.iter().cloned())
        .collect();
    fields.sort();
    fields.dedup();
    fields
}

/// The audiences of each profile of `ids`, as the membership table has them. The table is
/// what sizes, scans, the log and the export read; a profile's own record of its audiences
/// lags behind a recompute (which leaves rows alone) until the profile next changes, so the
/// API never shows that record.
pub(crate) async fn memberships(
    state: &AppState,
    aid: AccountId,
    ids: &[i64],
) -> Result<HashMap<i64, Vec<String>>, ApiError> {
    let (Some(&low), Some(&high)) = (ids.iter().min(), ids.iter().max()) else {
        return Ok(HashMap::new());
    };
    let mut slugs: Vec<String> = state
        .store
        .definitions(aid, tributary_core::DefinitionKind::Segment)
        .await?
        .into_iter()
        .map(|d| d.name)
        .collect();
    slugs.sort_unstable();
    let members = state
        .store
        .members_between(aid, &slugs, low - 1, Some(high))
        .await?;
    let mut out: HashMap<i64, Vec<String>> = ids.iter().map(|id| (*id, Vec::new())).collect();
    for (slug, ids) in slugs.iter().zip(members) {
        for id in ids {
            if let Some(list) = out.get_mut(&id) {
                list.push(slug.clone());
            }
        }
    }
    Ok(out)
}

#[utoipa::path(delete, path = "/api/entity/user/{field}/{value}", tag = "profiles", params(("field" = String, Path, description = "An identity field"), ("value" = String, Path, description = "Its value")), responses(crate::openapi::Enveloped))]
pub async fn erase(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ManageProfiles>,
    Path((field, value)): Path<(String, String)>,
) -> ApiResult {
    let aid = auth.caller.account_id;
    let profile = find(&state, aid, &field, &value).await?;
    let events = state
        .engine
        .erase(aid, &profile)
        .await
        .map_err(engine_error)?;
    Ok(ok(
        StatusCode::OK,
        json!({ "erased_profile": profile.id.to_string(), "erased_events": events }),
    ))
}

#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsParams {
    /// How many events, newest first, up to 100 (20).
    limit: Option<u32>,
}

/// `GET /api/entity/user/{field}/{value}/events?limit=20`: the person's recent raw events,
/// newest first, from the latest events of each stream (see `Engine::recent_events_of`).
#[utoipa::path(get, path = "/api/entity/user/{field}/{value}/events", tag = "profiles", params(("field" = String, Path, description = "An identity field"), ("value" = String, Path, description = "Its value"), EventsParams), responses(crate::openapi::Enveloped))]
pub async fn events(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadRawEvents>,
    Path((field, value)): Path<(String, String)>,
    Query(params): Query<EventsParams>,
) -> ApiResult {
    let limit = crate::api::bounded("limit", params.limit, 20, 100)?;
    let aid = auth.caller.account_id;
    let profile = find(&state, aid, &field, &value).await?;
    let events = state
        .engine
        .recent_events_of(aid, &profile, limit as usize)
        .await
        .map_err(engine_error)?;
    let data: Vec<Json> = events.iter().map(super::streams::event_json).collect();
    Ok(ok(StatusCode::OK, data))
}

/// Lytics' tables in a path: profiles are the one table Tributary has, `user`.
pub(crate) fn only_user_table(table: &str) -> Result<(), ApiError> {
    if table == "user" {
        return Ok(());
    }
    Err(ApiError::not_found(format!(
        "no table {table:?}: profiles are the one table, \"user\""
    )))
}

/// `GET /api/schema/user` (and `/api/schema`, the default table): the profile fields that the
/// account's queries write, as `fields` and in Lytics' shape (`name`, `by_fields`, `columns`).
#[utoipa::path(
    get,
    path = "/api/schema",
    tag = "profiles",
    responses(crate::openapi::Enveloped)
)]
pub async fn schema(state: State<Arc<AppState>>, auth: Authorized<ReadDefinitions>) -> ApiResult {
    schema_of(state, auth, None).await
}

/// `GET /api/schema/{table}`: as `/api/schema`, for the one table there is.
#[utoipa::path(get, path = "/api/schema/{table}", tag = "profiles", params(("table" = String, Path, description = "user")), responses(crate::openapi::Enveloped))]
pub async fn table_schema(
    state: State<Arc<AppState>>,
    auth: Authorized<ReadDefinitions>,
    table: Path<String>,
) -> ApiResult {
    schema_of(state, auth, Some(table)).await
}

async fn schema_of(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadDefinitions>,
    table: Option<Path<String>>,
) -> ApiResult {
    if let Some(Path(table)) = table {
        only_user_table(&table)?;
    }
    let plans = state.engine.account_plans(auth.caller.account_id).await?;
    let mut fields: BTreeMap<String, Json> = BTreeMap::new();
    for plan in plans.all() {
        for f in &plan.fields {
            let entry = fields.entry(f.name.clone()).or_insert_with(|| {
                json!({
                    "name": f.name, "kind": f.kind, "merge_op": f.merge_op, "is_identity": false,
                    "shortdesc": f.short_desc, "longdesc": f.long_desc, "queries": [], "streams": [],
                })
            });
            entry["is_identity"] =
                json!(entry["is_identity"].as_bool().unwrap_or(false) || f.is_identity);
            for (key, item) in [("queries", &plan.alias), ("streams", &plan.stream)] {
                if let Some(list) = entry[key].as_array_mut()
                    && !list.iter().any(|x| x == item)
                {
                    list.push(json!(item));
                }
            }
        }
    }
    let columns: Vec<Json> = fields
        .values()
        .map(|f| {
            json!({
                "as": f["name"], "is_by": f["is_identity"],
                "type": f["kind"].as_str().unwrap_or("string"),
                "shortdesc": f["shortdesc"].as_str().unwrap_or_default(),
                "longdesc": f["longdesc"].as_str().unwrap_or_default(),
                "froms": f["streams"],
                "identities": if f["is_identity"] == json!(true) { json!([f["name"]]) } else { json!([]) },
            })
        })
        .collect();
    Ok(ok(
        StatusCode::OK,
        json!({
            "table": "user", "fields": fields.into_values().collect::<Vec<_>>(),
            "name": "user", "by_fields": identity_fields(&plans), "columns": columns,
        }),
    ))
}

/// `POST /api/rebuild[?dryrun=true]`: replays the account's raw events through its current
/// LQL. With `dryrun`, only says what a rebuild would replay and reset. Any other parameter is
/// refused, so a misspelt `dryrun` never rebuilds by accident.
#[utoipa::path(post, path = "/api/rebuild", tag = "profiles", params(("dryrun" = Option<bool>, Query, description = "Only say what a rebuild would replay and reset")), responses(crate::openapi::Enveloped))]
pub async fn rebuild(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ManageProfiles>,
    uri: Uri,
) -> ApiResult {
    let params = query_map(&uri)?;
    if let Some(unknown) = params.keys().find(|k| k.as_str() != "dryrun") {
        return Err(ApiError::bad_request(format!(
            "unknown query parameter {unknown:?}: /api/rebuild takes only dryrun"
        )));
    }
    let aid = auth.caller.account_id;
    if flag(&params, "dryrun")? {
        let streams = state.store.streams(aid).await?;
        let profiles = state.store.audience_size(aid, "lytics_all").await?;
        return Ok(ok(
            StatusCode::OK,
            json!({
                "dryrun": true,
                "rebuilding": false,
                "events_to_replay": streams.iter().map(|s| s.count).sum::<i64>(),
                "streams": streams.iter().map(|s| json!({"stream": s.name, "events": s.count})).collect::<Vec<_>>(),
                "profiles_reset": profiles,
            }),
        ));
    }
    state
        .engine
        .rebuild(auth.caller.account_id)
        .await
        .map_err(engine_error)?;
    Ok(ok(StatusCode::ACCEPTED, json!({ "rebuilding": true })))
}

#[utoipa::path(
    get,
    path = "/v2/identity/blocklist",
    tag = "profiles",
    responses(crate::openapi::Enveloped)
)]
pub async fn blocklist(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadDefinitions>,
) -> ApiResult {
    Ok(ok(
        StatusCode::OK,
        state
            .store
            .identity_blocklist(auth.caller.account_id)
            .await?,
    ))
}

#[utoipa::path(put, path = "/v2/identity/blocklist", tag = "profiles", request_body(content = serde_json::Value, description = "Identity values that never merge profiles", content_type = "application/json"), responses(crate::openapi::Enveloped))]
pub async fn set_blocklist(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ManageProfiles>,
    body: bytes::Bytes,
) -> ApiResult {
    let values: Vec<String> = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("send a JSON array of strings: {e}")))?;
    if values.len() > 10_000 || values.iter().any(|v| v.len() > 500) {
        return Err(ApiError::bad_request(
            "at most 10,000 values of at most 500 characters",
        ));
    }
    let values: Vec<String> = values.iter().map(|v| v.trim().to_lowercase()).collect();
    state
        .store
        .set_identity_blocklist(auth.caller.account_id, &values)
        .await?;
    Ok(ok(
        StatusCode::OK,
        state
            .store
            .identity_blocklist(auth.caller.account_id)
            .await?,
    ))
}
