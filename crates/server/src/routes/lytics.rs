//! What only Lytics' REST API has: `POST /api/work` (the workflow named in the body, ids as
//! strings) and `/api/account`. Everything else Lytics calls shares the `/v2` handler that
//! serves the same thing (see `lib.rs`).

use std::sync::Arc;

use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};
use tributary_core::{Account, AccountId, format_rfc3339};

use super::jobs::create_job;
use crate::AppState;
use crate::api::{ApiError, ApiResult, ok};
use crate::auth::{Authorized, ManageJobs, ReadDefinitions};

/// `POST /api/work`: Lytics' `{workflow, name, description, auth_ids, config}`, where
/// `auth_ids` may be strings, as Lytics' ids are.
#[utoipa::path(post, path = "/api/work", tag = "jobs", request_body(content = serde_json::Value, description = "Lytics' `{workflow, name, description, auth_ids, config}`", content_type = "application/json"), responses(crate::openapi::Enveloped))]
pub async fn create_work(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ManageJobs>,
    OriginalUri(uri): OriginalUri,
    body: bytes::Bytes,
) -> ApiResult {
    let mut body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))?;
    let Some(fields) = body.as_object_mut() else {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    };
    let workflow = match fields.remove("workflow") {
        Some(Value::String(w)) => w,
        _ => {
            return Err(ApiError::bad_request(
                "the body needs a string field \"workflow\"",
            ));
        }
    };
    if let Some(Value::Array(ids)) = fields.get_mut("auth_ids") {
        for id in ids.iter_mut() {
            if let Value::String(text) = id {
                let parsed: i64 = text.parse().map_err(|_| {
                    ApiError::bad_request(format!("auth_ids: {text:?} is not an authorization id"))
                })?;
                *id = json!(parsed);
            }
        }
    }
    let body = serde_json::to_vec(&body).map_err(|e| ApiError::internal("re-encoding", &e))?;
    create_job(&state, &auth, workflow, &uri, &body, true).await
}

fn account_json(a: &Account) -> Value {
    let created = format_rfc3339(a.created);
    json!({
        "id": a.aid.to_string(), "aid": a.aid, "name": a.name,
        "created": created, "updated": created,
        "parentaid": a.aid, "parent_id": a.aid.to_string(),
        "domain": "", "fid": "", "email": "", "timezone": "UTC", "pubusers": false,
        "whitelist_fields": [], "whitelist_domains": [],
    })
}

async fn account(state: &AppState, aid: AccountId) -> Result<Account, ApiError> {
    state
        .store
        .account(aid)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no account {aid}")))
}

/// `GET /api/account`: the caller's account (every account, for the install's admin token).
#[utoipa::path(
    get,
    path = "/api/account",
    tag = "admin",
    responses(crate::openapi::Enveloped)
)]
pub async fn list_accounts(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadDefinitions>,
) -> ApiResult {
    let ids = if auth.caller.token.is_install_admin() {
        state.store.account_ids().await?
    } else {
        vec![auth.caller.account_id]
    };
    let mut out = Vec::with_capacity(ids.len());
    for aid in ids {
        out.push(account_json(&account(&state, aid).await?));
    }
    Ok(ok(StatusCode::OK, out))
}

/// `GET /api/account/{id}`, where `current` is the caller's account.
#[utoipa::path(get, path = "/api/account/{id}", tag = "admin", params(("id" = String, Path, description = "The account number, or current")), responses(crate::openapi::Enveloped))]
pub async fn get_account(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadDefinitions>,
    Path(id): Path<String>,
) -> ApiResult {
    let aid = if id == "current" {
        auth.caller.account_id
    } else {
        let aid: AccountId = id
            .parse()
            .map_err(|_| ApiError::bad_request(format!("{id:?} is not an account id")))?;
        auth.caller.act_in(&state, aid).await?.account_id
    };
    Ok(ok(
        StatusCode::OK,
        account_json(&account(&state, aid).await?),
    ))
}
