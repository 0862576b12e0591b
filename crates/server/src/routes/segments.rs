//! Audiences (segments): FilterQL statements stored by their ALIAS slug.
//! `POST /api/segment` upserts, `GET` lists, `GET|DELETE /api/segment/{slug}`,
//! `POST /api/segment/validate`, `POST /api/segment/evaluate`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tributary_core::{
    AccountId, Definition, DefinitionKind, format_rfc3339, from_micros, to_micros,
};
use tributary_profile::IncludeGraph;
use tributary_query::eval::{EvalContext, evaluate_bool};
use tributary_query::{FilterStatement, Value, parse_filter, parse_filterql};

use super::definitions::{check_name, statement_text, syntax_error};
use crate::AppState;
use crate::api::{ApiError, ApiResult, ok};
use crate::auth::{Authorized, ManageAudiences, ReadDefinitions};

/// An audience in Lytics' segment shape (its id is its slug; what Tributary has no notion of,
/// such as public names or tags, has its empty value).
fn segment_json(def: &Definition, st: Option<&FilterStatement>) -> Json {
    json!({
        "id": def.name,
        "aid": def.account_id,
        "account_id": def.account_id.to_string(),
        "slug_name": def.name,
        "name": def.name,
        "kind": "segment",
        "table": "user",
        "segment_ql": def.text,
        "description": st.and_then(|s| s.description.clone()).unwrap_or_default(),
        "includes": st.map(|s| s.filter.includes()).unwrap_or_default(),
        "author_id": "",
        "is_public": false,
        "op": "",
        "negate": false,
        "tags": [],
        "invalid": st.is_none(),
        "invalid_reason": if st.is_none() { "the stored statement no longer parses" } else { "" },
        "deleted": false,
        "save_hist": false,
        "created": format_rfc3339(from_micros(def.created_at)),
        "updated": format_rfc3339(from_micros(def.updated_at)),
    })
}

/// Lytics' JSON form of a new segment: the statement, and its slug and description beside it.
#[derive(Deserialize)]
struct SegmentBody {
    slug_name: Option<String>,
    description: Option<String>,
}

/// The statements of a `POST /api/segment`: FilterQL text (each with its ALIAS), or Lytics'
/// JSON `{name, slug_name, segment_ql, description}`, where `slug_name` stands in for a
/// missing ALIAS.
fn posted_statements(headers: &HeaderMap, body: &[u8]) -> Result<Vec<FilterStatement>, ApiError> {
    let text = statement_text(headers, body, "segment_ql")?;
    let mut statements = parse_filterql(&text).map_err(|e| syntax_error(&e))?;
    if let Ok(extra) = serde_json::from_slice::<SegmentBody>(body)
        && let [st] = statements.as_mut_slice()
    {
        if st.alias.is_none() {
            st.alias = extra.slug_name.map(|s| s.to_lowercase());
        }
        if st.description.is_none() {
            st.description = extra.description.filter(|d| !d.is_empty());
        }
    }
    Ok(statements)
}

/// Every audience of the account, parsed, by slug, and the INCLUDE graph between them.
pub async fn audiences(state: &AppState, aid: AccountId) -> Result<IncludeGraph, ApiError> {
    let defs = state
        .store
        .definitions(aid, DefinitionKind::Segment)
        .await?;
    Ok(IncludeGraph::parse(&defs))
}

#[utoipa::path(post, path = "/api/segment", tag = "audiences", request_body(content = String, description = "FilterQL statements, each with its ALIAS; or Lytics' JSON `{name, slug_name, segment_ql, description}`", content_type = "text/plain"), responses(crate::openapi::Enveloped))]
pub async fn upsert(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ManageAudiences>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> ApiResult {
    let aid = auth.caller.account_id;
    let statements = posted_statements(&headers, &body)?;
    let mut all = audiences(&state, aid).await?;
    let mut slugs = Vec::new();
    for st in &statements {
        let slug = st.alias.clone().ok_or_else(|| {
            ApiError::bad_request(
                "an audience needs a slug: end the statement with ALIAS <slug>, or send it as \
                 slug_name",
            )
        })?;
        check_name("audience slug", &slug)?;
        all.insert(slug.clone(), st.clone());
        slugs.push(slug);
    }
    for (slug, st) in slugs.iter().zip(&statements) {
        for inc in st.filter.includes() {
            if all.get(&inc).is_none() {
                return Err(ApiError::bad_request(format!(
                    "audience {slug}: INCLUDE {inc}: there is no audience with that slug"
                )));
            }
        }
        if let Some(cycle) = all.cycle_from(slug) {
            return Err(ApiError::bad_request(format!(
                "audience {slug}: INCLUDE makes a cycle: {cycle}"
            )));
        }
    }
    // A chain deeper than evaluation follows would be saved and then never match.
    let max = tributary_query::eval::MAX_INCLUDE_DEPTH;
    let mut too_deep: Vec<(String, usize)> =
        all.depths().into_iter().filter(|(_, d)| *d > max).collect();
    too_deep.sort();
    if let Some((name, d)) = too_deep.first() {
        return Err(ApiError::bad_request(format!(
            "audience {name}: its INCLUDE chain is {d} deep; audiences evaluate at most {max} \
             levels of INCLUDE"
        )));
    }
    let now = to_micros(time::OffsetDateTime::now_utc());
    let mut saved = Vec::new();
    for (slug, st) in slugs.iter().zip(&statements) {
        let def = state
            .store
            .put_definition(&Definition {
                account_id: aid,
                kind: DefinitionKind::Segment,
                name: slug.clone(),
                text: st.to_string(),
                created_at: now,
                updated_at: now,
            })
            .await?;
        tracing::info!(aid, slug = %slug, "audience saved");
        saved.push(segment_json(&def, Some(st)));
    }
    // Membership is recomputed in the background; wake the worker rather than wait a poll.
    state.engine.wake();
    Ok(ok(StatusCode::OK, one_or_many(saved)))
}

pub fn one_or_many(mut items: Vec<Json>) -> Json {
    if items.len() == 1 {
        items.remove(0)
    } else {
        Json::Array(items)
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    table: Option<String>,
}

/// `GET /api/segment[?table=user]`: every audience. Audiences select profiles (Lytics' `user`
/// table); any other table has none.
#[utoipa::path(
    get,
    path = "/api/segment",
    tag = "audiences",
    params(ListParams),
    responses(crate::openapi::Enveloped)
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadDefinitions>,
    Query(params): Query<ListParams>,
) -> ApiResult {
    if params
        .table
        .as_deref()
        .is_some_and(|t| !t.is_empty() && t != "user")
    {
        return Ok(ok(StatusCode::OK, Vec::<Json>::new()));
    }
    let defs = state
        .store
        .definitions(auth.caller.account_id, DefinitionKind::Segment)
        .await?;
    let items: Vec<Json> = defs
        .iter()
        .map(|d| segment_json(d, parse_filter(&d.text).ok().as_ref()))
        .collect();
    Ok(ok(StatusCode::OK, items))
}

/// The audience a path names (slugs are case-insensitive), or 404.
pub async fn find(state: &AppState, aid: AccountId, slug: &str) -> Result<Definition, ApiError> {
    let slug = slug.to_lowercase();
    state
        .store
        .definition(aid, DefinitionKind::Segment, &slug)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no audience with slug {slug:?}")))
}

#[utoipa::path(get, path = "/api/segment/{slug}", tag = "audiences", params(("slug" = String, Path, description = "The audience")), responses(crate::openapi::Enveloped))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadDefinitions>,
    Path(slug): Path<String>,
) -> ApiResult {
    let d = find(&state, auth.caller.account_id, &slug).await?;
    Ok(ok(
        StatusCode::OK,
        segment_json(&d, parse_filter(&d.text).ok().as_ref()),
    ))
}

#[utoipa::path(delete, path = "/api/segment/{slug}", tag = "audiences", params(("slug" = String, Path, description = "The audience")), responses(crate::openapi::Enveloped))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ManageAudiences>,
    Path(slug): Path<String>,
) -> ApiResult {
    let aid = auth.caller.account_id;
    let slug = slug.to_lowercase();
    let dependents = audiences(&state, aid).await?.included_by(&slug);
    if !dependents.is_empty() {
        return Err(ApiError::conflict(format!(
            "audience {slug} is included by {}; change those first",
            dependents.join(", ")
        )));
    }
    if !state
        .store
        .delete_definition(aid, DefinitionKind::Segment, &slug)
        .await?
    {
        return Err(ApiError::not_found(format!(
            "no audience with slug {slug:?}"
        )));
    }
    tracing::info!(aid, slug = %slug, "audience deleted");
    Ok(ok(StatusCode::OK, json!({ "id": slug, "deleted": true })))
}

#[utoipa::path(post, path = "/api/segment/validate", tag = "audiences", request_body(content = String, description = "FilterQL text, or JSON `{\"segment_ql\": ...}`", content_type = "text/plain"), responses(crate::openapi::Enveloped))]
pub async fn validate(
    State(_state): State<Arc<AppState>>,
    _auth: Authorized<ReadDefinitions>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> ApiResult {
    let text = statement_text(&headers, &body, "segment_ql")?;
    let statements = parse_filterql(&text).map_err(|e| syntax_error(&e))?;
    let items: Vec<Json> = statements
        .iter()
        .map(|st| json!({ "alias": st.alias, "segment_ql": st.to_string(), "includes": st.filter.includes() }))
        .collect();
    Ok(ok(
        StatusCode::OK,
        json!({ "valid": true, "statements": items }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EvaluateBody {
    segment_ql: String,
    entity: serde_json::Map<String, Json>,
    /// Evaluate as of this instant (RFC 3339) instead of now, for date-relative audiences.
    #[serde(default)]
    now: Option<String>,
}

/// The longest `POST /api/segment/evaluate` may take to answer.
const EVALUATE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(5);

#[utoipa::path(post, path = "/api/segment/evaluate", tag = "audiences", request_body = EvaluateBody, responses(crate::openapi::Enveloped))]
pub async fn evaluate(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadDefinitions>,
    body: bytes::Bytes,
) -> ApiResult {
    let body: EvaluateBody = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!("invalid request body: {e}; send {{\"segment_ql\": \"FILTER ...\", \"entity\": {{...}}}}"))
    })?;
    let st = parse_filter(&body.segment_ql).map_err(|e| syntax_error(&e))?;
    let now = match &body.now {
        Some(t) => tributary_query::dates::parse_iso8601(t).ok_or_else(|| {
            ApiError::bad_request(format!("now {t:?} is not an ISO 8601 date-time"))
        })?,
        None => time::OffsetDateTime::now_utc(),
    };
    let includes = audiences(&state, auth.caller.account_id).await?;
    let entity: HashMap<String, Value> = body
        .entity
        .iter()
        .map(|(k, v)| (k.clone(), Value::from_json_with_dates(v)))
        .collect();
    // Evaluation is CPU work that the request controls: off the async workers, and answered
    // within a deadline whatever the input.
    let evaluation = tokio::task::spawn_blocking(move || {
        let ctx = EvalContext::with_includes(now, includes.statements());
        evaluate_bool(&st.filter, &entity, &ctx)
    });
    let result = tokio::time::timeout(EVALUATE_DEADLINE, evaluation)
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "the evaluation took longer than {} s; simplify the statement or the entity",
                    EVALUATE_DEADLINE.as_secs()
                ),
            )
        })?
        .map_err(|e| ApiError::internal("evaluating an audience", &e))?;
    Ok(ok(
        StatusCode::OK,
        json!({
            "match": result == Ok(true),
            "evaluable": result.is_ok(),
        }),
    ))
}
