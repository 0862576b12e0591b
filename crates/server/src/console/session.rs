//! Signing in and out of the console, and the session behind every page.
//!
//! The session cookie holds a random secret; the store keeps its SHA-256 with the token's id
//! (`console_sessions`), so a stolen database does not give sessions away and deleting the
//! token ends them. The CSRF token of a session's forms is derived from the secret, so it
//! needs no storage and cannot be guessed without the cookie. The sign-in form, which has no
//! session yet, uses a double-submit cookie instead.

use std::sync::Arc;

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tributary_core::{TokenHash, TokenRecord, TokenSecret};

use super::view::Login;
use super::{Form, error_page, query, render};
use crate::AppState;
use crate::api::ApiError;
use crate::routes::admin::now;

const SESSION_COOKIE: &str = "tributary_session";
const LOGIN_COOKIE: &str = "tributary_login";
/// A session lasts a working day (and never past its token's expiry).
const SESSION_SECS: i64 = 12 * 3600;

pub(crate) struct Session {
    pub token: Arc<TokenRecord>,
    pub csrf: String,
}

fn csrf_of(secret: &str) -> String {
    let digest = Sha256::digest(format!("tributary-console-csrf:{secret}"));
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// `Secure` when the browser reached us over HTTPS: directly, or through a proxy that says
/// so with `X-Forwarded-Proto` (or `Forwarded: proto=https`).
fn over_https(headers: &HeaderMap) -> bool {
    let says = |name: &str, needle: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains(needle))
    };
    says("x-forwarded-proto", "https") || says("forwarded", "proto=https")
}

fn set_cookie(headers: &HeaderMap, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if over_https(headers) { "; Secure" } else { "" };
    let text =
        format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub(crate) fn check_csrf(expected: &str, posted: Option<&str>) -> Result<(), Box<Response>> {
    let posted = posted.unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(posted.as_bytes())) {
        return Err(Box::new(error_page(
            StatusCode::FORBIDDEN,
            "this form was not sent by this console (its CSRF token is missing or wrong); \
             nothing was changed. Reload the page and try again.",
        )));
    }
    Ok(())
}

impl Session {
    /// The live session the request's cookie names, if any.
    pub async fn of(parts: &Parts, state: &AppState) -> Result<Option<Session>, ApiError> {
        let Some(secret) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Ok(None);
        };
        let now = now();
        let token = state
            .store
            .session_token(&TokenHash::of(&secret), now)
            .await?;
        Ok(token.filter(|t| !t.is_expired(now)).map(|t| Session {
            token: Arc::new(t),
            csrf: csrf_of(&secret),
        }))
    }
}

/// Where to go after signing in: a path of this console only (never another site).
fn safe_next(next: &str) -> String {
    if next.starts_with('/') && !next.starts_with("//") && !next.contains('\\') {
        next.to_string()
    } else {
        "/".to_string()
    }
}

/// `GET /login`.
pub(crate) async fn login_form(headers: HeaderMap, uri: axum::http::Uri) -> Response {
    let next = safe_next(query(&uri).get("next").map_or("/", String::as_str));
    login_page(&headers, next, None)
}

fn login_page(headers: &HeaderMap, next: String, error: Option<String>) -> Response {
    let csrf = TokenSecret::generate().expose().to_string();
    let mut response = render(&Login {
        csrf: csrf.clone(),
        next,
        error: error.clone(),
    });
    if error.is_some() {
        *response.status_mut() = StatusCode::UNAUTHORIZED;
    }
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(headers, LOGIN_COOKIE, &csrf, 3600),
    );
    response
}

/// `POST /login` with `token`: opens a session for a valid token.
pub(crate) async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Form,
) -> Response {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if let Err(refused) = check_csrf(&expected, form.one("csrf")) {
        return *refused;
    }
    let next = safe_next(&form.text("next"));
    let secret = form.text("token");
    let now = now();
    let token = match state.tokens.lookup(&state, &secret).await {
        Ok(t) if !t.is_expired(now) => t,
        Ok(_) => return login_page(&headers, next, Some("this access token has expired".into())),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            return login_page(
                &headers,
                next,
                Some("this access token is not valid".into()),
            );
        }
        Err(e) => return error_page(e.status, &e.message),
    };
    let session = TokenSecret::generate();
    let expires_at = token
        .expires_at
        .map_or(now + SESSION_SECS * 1_000_000, |e| {
            e.min(now + SESSION_SECS * 1_000_000)
        });
    if let Err(e) = state
        .store
        .create_session(&session.hash(), token.id, now, expires_at)
        .await
    {
        let e = ApiError::from(e);
        return error_page(e.status, &e.message);
    }
    tracing::info!(token_id = token.id, "console sign-in");
    let max_age = (expires_at - now) / 1_000_000;
    let mut response = Redirect::to(&next).into_response();
    let h = response.headers_mut();
    h.append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, session.expose(), max_age),
    );
    h.append(
        header::SET_COOKIE,
        set_cookie(&headers, LOGIN_COOKIE, "", 0),
    );
    response
}

/// `POST /logout`: closes the session (with a valid CSRF token only).
pub(crate) async fn logout(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    form: Form,
) -> Response {
    if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
        if let Err(refused) = check_csrf(&csrf_of(&secret), form.one("csrf")) {
            return *refused;
        }
        if let Err(e) = state.store.delete_session(&TokenHash::of(&secret)).await {
            let e = ApiError::from(e);
            return error_page(e.status, &e.message);
        }
    }
    let mut response = Redirect::to("/login").into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        set_cookie(&headers, SESSION_COOKIE, "", 0),
    );
    response
}
