//! v2 administration: accounts and access tokens.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tributary_core::{
    Expiry, NewToken, Role, TokenRecord, TokenSecret, format_rfc3339, from_micros, to_micros,
};

use crate::AppState;
use crate::api::{ApiError, ApiResult, ok};
use crate::auth::{Authorized, ManageAccounts, ManageTokens};

const MAX_NAME: usize = 200;
const MAX_DESCRIPTION: usize = 2_000;

/// Parses a JSON body into `T`, with a 400 that says which field was wrong.
pub(crate) fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid request body: {e}")))
}

pub(crate) fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("name must not be empty"));
    }
    if name.chars().count() > MAX_NAME {
        return Err(ApiError::bad_request(format!(
            "name is longer than {MAX_NAME} characters"
        )));
    }
    Ok(())
}

pub(crate) fn check_description(description: &str) -> Result<(), ApiError> {
    if description.chars().count() > MAX_DESCRIPTION {
        return Err(ApiError::bad_request(format!(
            "description is longer than {MAX_DESCRIPTION} characters"
        )));
    }
    Ok(())
}

pub(crate) fn now() -> i64 {
    to_micros(time::OffsetDateTime::now_utc())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewAccountBody {
    name: String,
}

#[utoipa::path(post, path = "/v2/account", tag = "admin", request_body = NewAccountBody, responses(crate::openapi::Enveloped))]
pub async fn create_account(
    State(state): State<Arc<AppState>>,
    _auth: Authorized<ManageAccounts>,
    body: bytes::Bytes,
) -> ApiResult {
    let body: NewAccountBody = json_body(&body)?;
    check_name(&body.name)?;
    let account = state.store.create_account(body.name.trim(), now()).await?;
    tributary_engine::builtin::seed_account(state.store.as_ref(), account.aid).await?;
    tracing::info!(aid = account.aid, "account created");
    Ok(ok(
        StatusCode::CREATED,
        json!({
            "aid": account.aid,
            "name": account.name,
            "created": format_rfc3339(account.created),
        }),
    ))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewTokenBody {
    name: String,
    #[serde(default)]
    description: String,
    roles: Vec<String>,
    #[serde(default)]
    expires: Option<String>,
}

fn token_json(t: &TokenRecord, now: i64) -> Value {
    json!({
        "id": t.id,
        "account_id": t.account_id,
        "name": t.name,
        "description": t.description,
        "roles": t.roles,
        "created": format_rfc3339(from_micros(t.created_at)),
        "expires": t.expires_at.map(|e| format_rfc3339(from_micros(e))),
        "expired": t.is_expired(now),
    })
}

#[utoipa::path(post, path = "/v2/token", tag = "admin", request_body = NewTokenBody, responses(crate::openapi::Enveloped))]
pub async fn create_token(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ManageTokens>,
    body: bytes::Bytes,
) -> ApiResult {
    let body: NewTokenBody = json_body(&body)?;
    check_name(&body.name)?;
    check_description(&body.description)?;
    if body.roles.is_empty() {
        return Err(ApiError::bad_request(
            "roles must name at least one of admin, data_manager, audience_manager, observer",
        ));
    }
    let mut roles = body
        .roles
        .iter()
        .map(|r| r.parse::<Role>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::bad_request)?;
    roles.sort();
    roles.dedup();
    let expiry: Expiry = body
        .expires
        .as_deref()
        .unwrap_or("90d")
        .parse()
        .map_err(ApiError::bad_request)?;
    let now = now();
    let secret = TokenSecret::generate();
    let record = state
        .store
        .create_token(&NewToken {
            account_id: Some(auth.caller.account_id),
            name: body.name.trim().to_string(),
            description: body.description,
            roles,
            hash: secret.hash(),
            created_at: now,
            expires_at: expiry.expires_at(now),
        })
        .await?;
    tracing::info!(
        token_id = record.id,
        aid = auth.caller.account_id,
        "access token created"
    );
    let mut data = token_json(&record, now);
    data["token"] = Value::String(secret.expose().to_string());
    Ok(ok(StatusCode::CREATED, data))
}

#[utoipa::path(
    get,
    path = "/v2/token",
    tag = "admin",
    responses(crate::openapi::Enveloped)
)]
pub async fn list_tokens(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ManageTokens>,
) -> ApiResult {
    let now = now();
    let tokens = state.store.tokens(auth.caller.account_id).await?;
    Ok(ok(
        StatusCode::OK,
        tokens
            .iter()
            .map(|t| token_json(t, now))
            .collect::<Vec<_>>(),
    ))
}

#[utoipa::path(delete, path = "/v2/token/{id}", tag = "admin", params(("id" = String, Path, description = "The token id")), responses(crate::openapi::Enveloped))]
pub async fn delete_token(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ManageTokens>,
    Path(id): Path<String>,
) -> ApiResult {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{id:?} is not a token id")))?;
    if !state.store.delete_token(auth.caller.account_id, id).await? {
        return Err(ApiError::not_found(format!(
            "account {} has no token {id}",
            auth.caller.account_id
        )));
    }
    state.tokens.forget(id);
    tracing::info!(
        token_id = id,
        aid = auth.caller.account_id,
        "access token deleted"
    );
    Ok(ok(StatusCode::OK, json!({ "id": id, "deleted": true })))
}
