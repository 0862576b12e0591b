//! `/v2/auth`: authorizations (credentials for Braze and SFTP). Secrets are write-only: they
//! are sealed under the master key before they reach the store, and every read shows them
//! as `[redacted]`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tributary_core::{AuthKind, Authorization, format_rfc3339, from_micros};
use tributary_jobs::authorization::{self, Previous, Split};

use crate::AppState;
use crate::api::{ApiError, ApiResult, ok};
use crate::auth::{Authorized, ManageAuthorizations, ReadAuthorizations};
use crate::routes::admin::{check_description, check_name, json_body, now};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewAuthBody {
    label: String,
    #[serde(default)]
    description: String,
    #[serde(default = "empty_object")]
    config: Value,
}

fn empty_object() -> Value {
    json!({})
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateAuthBody {
    label: Option<String>,
    description: Option<String>,
    config: Option<Value>,
}

/// An authorization as the API shows it; with `lytics`, in Lytics' shape too (a string `id`,
/// `aid`, `name` = the label, `provider_name` = the type). Secrets are never in it.
pub(crate) fn auth_json(a: &Authorization, lytics: bool) -> Value {
    let mut out = auth_fields(a);
    if lytics {
        out["id"] = json!(a.id.to_string());
        out["aid"] = json!(a.account_id);
        out["account_id"] = json!(a.account_id.to_string());
        out["name"] = json!(a.label);
        out["provider_name"] = json!(a.kind.as_str());
        out["provider_id"] = json!(a.kind.as_str());
        out["user_id"] = json!("");
    }
    out
}

fn auth_fields(a: &Authorization) -> Value {
    json!({
        "id": a.id,
        "account_id": a.account_id,
        "type": a.kind.as_str(),
        "label": a.label,
        "description": a.description,
        "config": a.config,
        "created": format_rfc3339(from_micros(a.created_at)),
        "updated": format_rfc3339(from_micros(a.updated_at)),
    })
}

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse()
        .map_err(|_| ApiError::bad_request(format!("{id:?} is not an authorization id")))
}

/// A random credential for the managed SFTP server: 24 characters from a 62-letter alphabet.
fn generated_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..24)
        .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
        .collect()
}

/// `POST /v2/auth/{type}`.
#[utoipa::path(post, path = "/v2/auth/{key}", tag = "authorizations", params(("key" = String, Path, description = "The type: braze, sftp, sftp-pgp or sftp-managed")), request_body = NewAuthBody, responses(crate::openapi::Enveloped))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ManageAuthorizations>,
    Path(kind): Path<String>,
    body: bytes::Bytes,
) -> ApiResult {
    let kind = AuthKind::parse(&kind).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown authorization type {kind:?} (known: braze, sftp, sftp-pgp, sftp-managed)"
        ))
    })?;
    let body: NewAuthBody = json_body(&body)?;
    check_name(&body.label)?;
    check_description(&body.description)?;
    let aid = auth.caller.account_id;
    let mut config = body.config;
    let mut shown_once = None;
    if kind == AuthKind::SftpManaged {
        let Some(address) = &state.config.managed_sftp else {
            return Err(ApiError::bad_request(
                "this install runs no managed SFTP server: start serve with --sftp-listen \
                 (TRIBUTARY_SFTP_LISTEN) to create sftp-managed authorizations",
            ));
        };
        // The server makes the account on its own SFTP server: the user sends at most a
        // public key, and gets a password when they did not.
        let Some(object) = config.as_object_mut() else {
            return Err(ApiError::bad_request("config must be a JSON object"));
        };
        if object.contains_key("username") || object.contains_key("password") {
            return Err(ApiError::bad_request(
                "config.username and config.password of sftp-managed are generated, not sent",
            ));
        }
        let username = format!("a{aid}-{:08x}", rand::random::<u32>());
        object.insert("username".into(), Value::from(username.clone()));
        let password = (!object.contains_key("public_key")).then(generated_password);
        if let Some(p) = &password {
            object.insert("password".into(), Value::from(p.clone()));
        }
        shown_once = Some(json!({
            "host": address.host,
            "port": address.port,
            "username": username,
            "password": password,
        }));
    }
    let Split { public, secrets } =
        authorization::split(kind, &config, None, state.jobs.allowed_urls())?;
    let now = now();
    let record = authorization::create(
        state.store.as_ref(),
        state.jobs.master_key(),
        &Authorization {
            id: 0,
            account_id: aid,
            kind,
            label: body.label.trim().to_string(),
            description: body.description,
            config: public,
            sealed_secret: Vec::new(),
            created_at: now,
            updated_at: now,
        },
        &secrets,
    )
    .await?;
    tracing::info!(
        aid,
        auth_id = record.id,
        kind = kind.as_str(),
        "authorization created"
    );
    let mut data = auth_json(&record, false);
    if let (Some(Value::Object(extra)), Some(out)) = (shown_once, data.as_object_mut()) {
        out.extend(extra);
    }
    Ok(ok(StatusCode::CREATED, data))
}

/// `GET /v2/auth`, and with `lytics` Lytics' `GET /api/auth`.
async fn list_as(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadAuthorizations>,
    lytics: bool,
) -> ApiResult {
    let all = state.store.authorizations(auth.caller.account_id).await?;
    Ok(ok(
        StatusCode::OK,
        all.iter().map(|a| auth_json(a, lytics)).collect::<Vec<_>>(),
    ))
}

async fn find(state: &AppState, aid: i64, id: &str) -> Result<Authorization, ApiError> {
    let id = parse_id(id)?;
    state
        .store
        .authorization(aid, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("account {aid} has no authorization {id}")))
}

/// `GET /v2/auth/{id}`, and with `lytics` Lytics' `GET /api/auth/{id}`.
async fn get_as(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadAuthorizations>,
    Path(id): Path<String>,
    lytics: bool,
) -> ApiResult {
    let found = find(&state, auth.caller.account_id, &id).await?;
    Ok(ok(StatusCode::OK, auth_json(&found, lytics)))
}

/// `PUT /v2/auth/{id}`: label, description and config; secrets left out (or sent as
/// `[redacted]`) keep their values. Running jobs pick the change up when they next start.
#[utoipa::path(put, path = "/v2/auth/{key}", tag = "authorizations", params(("key" = String, Path, description = "The authorization id")), request_body = UpdateAuthBody, responses(crate::openapi::Enveloped))]
pub async fn update(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ManageAuthorizations>,
    Path(id): Path<String>,
    body: bytes::Bytes,
) -> ApiResult {
    let body: UpdateAuthBody = json_body(&body)?;
    let mut record = find(&state, auth.caller.account_id, &id).await?;
    if let Some(label) = body.label {
        check_name(&label)?;
        record.label = label.trim().to_string();
    }
    if let Some(description) = body.description {
        check_description(&description)?;
        record.description = description;
    }
    if let Some(config) = body.config {
        if record.kind == AuthKind::SftpManaged {
            return Err(ApiError::bad_request(
                "an sftp-managed authorization's config cannot be changed; delete it and create another",
            ));
        }
        let previous = authorization::open(state.jobs.master_key(), &record)
            .map_err(|e| ApiError::internal("opening an authorization's secrets", &e))?;
        let Split { public, secrets } = authorization::split(
            record.kind,
            &config,
            Some(Previous {
                config: &record.config,
                secrets: &previous,
            }),
            state.jobs.allowed_urls(),
        )?;
        record.config = public;
        record.sealed_secret = authorization::seal(
            state.jobs.master_key(),
            record.account_id,
            record.kind,
            record.id,
            &secrets,
        );
    }
    record.updated_at = now();
    if !state.store.update_authorization(&record).await? {
        return Err(ApiError::not_found(format!(
            "account {} has no authorization {}",
            record.account_id, record.id
        )));
    }
    tracing::info!(
        aid = record.account_id,
        auth_id = record.id,
        "authorization updated"
    );
    Ok(ok(StatusCode::OK, auth_json(&record, false)))
}

/// `DELETE /v2/auth/{id}`: jobs that use it stop with that reason.
#[utoipa::path(delete, path = "/v2/auth/{key}", tag = "authorizations", params(("key" = String, Path, description = "The authorization id")), responses(crate::openapi::Enveloped))]
pub async fn delete(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ManageAuthorizations>,
    Path(id): Path<String>,
) -> ApiResult {
    let aid = auth.caller.account_id;
    let id = parse_id(&id)?;
    if !state.store.delete_authorization(aid, id, now()).await? {
        return Err(ApiError::not_found(format!(
            "account {aid} has no authorization {id}"
        )));
    }
    tracing::info!(aid, auth_id = id, "authorization deleted");
    Ok(ok(StatusCode::OK, json!({ "id": id, "deleted": true })))
}

#[utoipa::path(
    get,
    path = "/v2/auth",
    tag = "authorizations",
    responses(crate::openapi::Enveloped)
)]
pub async fn list(state: State<Arc<AppState>>, auth: Authorized<ReadAuthorizations>) -> ApiResult {
    list_as(state, auth, false).await
}

/// Lytics' name for `GET /v2/auth`, in Lytics' shape.
#[utoipa::path(
    get,
    path = "/api/auth",
    tag = "authorizations",
    responses(crate::openapi::Enveloped)
)]
pub async fn lytics_list(
    state: State<Arc<AppState>>,
    auth: Authorized<ReadAuthorizations>,
) -> ApiResult {
    list_as(state, auth, true).await
}

#[utoipa::path(get, path = "/v2/auth/{key}", tag = "authorizations", params(("key" = String, Path, description = "The authorization id")), responses(crate::openapi::Enveloped))]
pub async fn get(
    state: State<Arc<AppState>>,
    auth: Authorized<ReadAuthorizations>,
    id: Path<String>,
) -> ApiResult {
    get_as(state, auth, id, false).await
}

/// Lytics' name for `GET /v2/auth/{id}`, in Lytics' shape.
#[utoipa::path(get, path = "/api/auth/{id}", tag = "authorizations", params(("id" = String, Path, description = "The authorization id")), responses(crate::openapi::Enveloped))]
pub async fn lytics_get(
    state: State<Arc<AppState>>,
    auth: Authorized<ReadAuthorizations>,
    id: Path<String>,
) -> ApiResult {
    get_as(state, auth, id, true).await
}
