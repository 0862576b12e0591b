//! LQL queries: `POST /api/query` (upsert by ALIAS, one or more statements), `GET /api/query`,
//! `GET|DELETE /api/query/{alias}`, `POST /api/query/_validate`, and Lytics' query test
//! `POST /api/query/_test?field=value...`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use serde_json::{Value as Json, json};
use tributary_core::{
    Definition, DefinitionKind, format_rfc3339, from_micros, to_micros, validate_stream_name,
};
use tributary_profile::{FieldSpec, FieldState};
use tributary_query::lql::{MappingPlan, compile};
use tributary_query::{LqlStatement, parse_lql};

use super::definitions::{check_name, statement_text, syntax_error};
use super::segments::one_or_many;
use crate::AppState;
use crate::api::{ApiError, ApiResult, ok, query_map};
use crate::auth::{Authorized, ManageQueries, ReadDefinitions};

/// A query's fields as Lytics answers them: a map by name of `{as, is_by, type, shortdesc,
/// longdesc, identities, froms}`, each with Tributary's own details (`expr`, `merge_op`, ...).
fn fields_json(plan: &MappingPlan) -> Json {
    let fields = plan.fields.iter().map(|f| {
        let mut out = serde_json::to_value(f).unwrap_or_else(|_| json!({}));
        out["as"] = json!(f.name);
        out["is_by"] = json!(f.is_identity);
        out["type"] = json!(f.kind);
        out["shortdesc"] = json!(f.short_desc.clone().unwrap_or_default());
        out["longdesc"] = json!(f.long_desc.clone().unwrap_or_default());
        out["identities"] = if f.is_identity {
            json!([f.name])
        } else {
            json!([])
        };
        out["froms"] = json!([plan.stream]);
        (f.name.clone(), out)
    });
    Json::Object(fields.collect())
}

fn query_json(def: &Definition, plan: Option<&MappingPlan>) -> Json {
    json!({
        "id": def.name,
        "alias": def.name,
        "table": "user",
        "from": plan.map(|p| p.stream.clone()),
        "by": plan.map(|p| p.identity_fields.clone()).unwrap_or_default(),
        "fields": plan.map(fields_json),
        "text": def.text,
        "created": format_rfc3339(from_micros(def.created_at)),
        "updated": format_rfc3339(from_micros(def.updated_at)),
    })
}

fn plan_of(text: &str) -> Option<MappingPlan> {
    parse_lql(text)
        .ok()?
        .first()
        .and_then(|st| compile(st).ok())
}

/// Parses and compiles every statement, or says which one is wrong and why.
fn checked(text: &str) -> Result<Vec<(LqlStatement, MappingPlan)>, ApiError> {
    let statements = parse_lql(text).map_err(|e| syntax_error(&e))?;
    statements
        .into_iter()
        .map(|st| {
            check_name("query alias", &st.alias)?;
            validate_stream_name(&st.from).map_err(|e| {
                ApiError::bad_request(format!("query {}: FROM {}: {e}", st.alias, st.from))
            })?;
            let plan = compile(&st)
                .map_err(|e| ApiError::bad_request(format!("query {}: {e}", st.alias)))?;
            Ok((st, plan))
        })
        .collect()
}

#[utoipa::path(post, path = "/api/query", tag = "queries", request_body(content = String, description = "LQL statements", content_type = "text/plain"), responses(crate::openapi::Enveloped))]
pub async fn upsert(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ManageQueries>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> ApiResult {
    let aid = auth.caller.account_id;
    let text = statement_text(&headers, &body, "text")?;
    let statements = checked(&text)?;
    let now = to_micros(time::OffsetDateTime::now_utc());
    let mut saved = Vec::new();
    for (st, plan) in &statements {
        let def = state
            .store
            .put_definition(&Definition {
                account_id: aid,
                kind: DefinitionKind::Query,
                name: st.alias.clone(),
                text: st.to_string(),
                created_at: now,
                updated_at: now,
            })
            .await?;
        tracing::info!(aid, alias = %st.alias, "LQL query saved");
        saved.push(query_json(&def, Some(plan)));
    }
    Ok(ok(StatusCode::OK, one_or_many(saved)))
}

#[utoipa::path(
    get,
    path = "/api/query",
    tag = "queries",
    responses(crate::openapi::Enveloped)
)]
pub async fn list(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadDefinitions>,
) -> ApiResult {
    let defs = state
        .store
        .definitions(auth.caller.account_id, DefinitionKind::Query)
        .await?;
    Ok(ok(
        StatusCode::OK,
        defs.iter()
            .map(|d| query_json(d, plan_of(&d.text).as_ref()))
            .collect::<Vec<_>>(),
    ))
}

#[utoipa::path(get, path = "/api/query/{alias}", tag = "queries", params(("alias" = String, Path, description = "The query")), responses(crate::openapi::Enveloped))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadDefinitions>,
    Path(alias): Path<String>,
) -> ApiResult {
    match state
        .store
        .definition(auth.caller.account_id, DefinitionKind::Query, &alias)
        .await?
    {
        Some(d) => Ok(ok(
            StatusCode::OK,
            query_json(&d, plan_of(&d.text).as_ref()),
        )),
        None => Err(ApiError::not_found(format!(
            "no LQL query with alias {alias:?}"
        ))),
    }
}

#[utoipa::path(delete, path = "/api/query/{alias}", tag = "queries", params(("alias" = String, Path, description = "The query")), responses(crate::openapi::Enveloped))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ManageQueries>,
    Path(alias): Path<String>,
) -> ApiResult {
    let aid = auth.caller.account_id;
    if !state
        .store
        .delete_definition(aid, DefinitionKind::Query, &alias)
        .await?
    {
        return Err(ApiError::not_found(format!(
            "no LQL query with alias {alias:?}"
        )));
    }
    tracing::info!(aid, alias = %alias, "LQL query deleted");
    Ok(ok(StatusCode::OK, json!({ "id": alias, "deleted": true })))
}

#[utoipa::path(post, path = "/api/query/_validate", tag = "queries", request_body(content = String, description = "LQL statements", content_type = "text/plain"), responses(crate::openapi::Enveloped))]
pub async fn validate(
    _auth: Authorized<ReadDefinitions>,
    headers: HeaderMap,
    body: bytes::Bytes,
) -> ApiResult {
    let text = statement_text(&headers, &body, "text")?;
    let statements = checked(&text)?;
    // As Lytics answers: a list, one record per statement.
    let items: Vec<Json> = statements
        .iter()
        .map(|(st, plan)| {
            json!({
                "alias": st.alias, "table": "user", "from": plan.stream,
                "by": plan.identity_fields, "fields": fields_json(plan), "text": st.to_string(),
            })
        })
        .collect();
    Ok(ok(StatusCode::OK, items))
}

/// Query parameters that are the request's, not the sample event's.
const NOT_EVENT_FIELDS: &[&str] = &["key", "access_token", "account_id"];

/// `POST /api/query/_test?field=value&...`: the entity the posted queries make of one event
/// whose fields are the query parameters (values as text, as Lytics takes them), as a profile
/// would show it after that one event. Nothing is stored.
#[utoipa::path(post, path = "/api/query/_test", tag = "queries", params(("field=value" = Option<String>, Query, description = "The sample event's fields")), request_body(content = String, description = "LQL statements", content_type = "text/plain"), responses(crate::openapi::Enveloped))]
pub async fn test(
    _auth: Authorized<ReadDefinitions>,
    headers: HeaderMap,
    uri: Uri,
    body: bytes::Bytes,
) -> ApiResult {
    let text = statement_text(&headers, &body, "text")?;
    let statements = checked(&text)?;
    let event: tributary_query::eval::Profile = query_map(&uri)?
        .into_iter()
        .filter(|(name, _)| !NOT_EVENT_FIELDS.contains(&name.as_str()))
        .map(|(name, value)| (name, tributary_query::Value::String(value)))
        .collect();
    if event.is_empty() {
        return Err(ApiError::bad_request(
            "no event to test: pass its fields as query parameters (?email=a@b.example&...)",
        ));
    }
    let now = time::OffsetDateTime::now_utc();
    let mut entity = serde_json::Map::new();
    for (_, plan) in &statements {
        let Some(mapped) = plan.apply(&event, now) else {
            continue;
        };
        for (index, value) in mapped.updates {
            let field = &plan.fields[index];
            let spec = FieldSpec::from(field);
            let state = FieldState::from_event(spec, value, to_micros(now));
            entity.insert(field.name.clone(), state.value(Some(spec)).to_json());
        }
    }
    Ok(ok(StatusCode::OK, Json::Object(entity)))
}
