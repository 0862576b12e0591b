//! One module per screen group; each turns API answers into a [`Page`](super::view::Page).

mod audiences;
mod authorizations;
mod charts;
mod data;
mod jobs;
mod tokens;

use std::sync::Arc;

use axum::Router;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::Value;

use super::view::{Flash, Section};
use super::{ApiRefusal, Console, error_page, percent_encode, query};
use crate::AppState;

pub(super) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(data::overview))
        .route("/streams", get(data::streams))
        .route("/streams/{name}", get(data::stream))
        .route("/profiles", get(data::profiles))
        .route("/profiles/{id}", get(data::profile))
        .route("/profiles/{id}/erase", post(data::erase))
        .route("/audiences", get(audiences::list))
        .route(
            "/audiences/new",
            get(audiences::new_form).post(audiences::create),
        )
        .route("/audiences/{slug}", get(audiences::show))
        .route("/audiences/{slug}/delete", post(audiences::delete))
        .route("/authorizations", get(authorizations::list))
        .route(
            "/authorizations/new",
            get(authorizations::new_form).post(authorizations::create),
        )
        .route("/authorizations/{id}/delete", post(authorizations::delete))
        .route("/jobs", get(jobs::list))
        .route("/jobs/new", get(jobs::new_form).post(jobs::create))
        .route("/jobs/{id}", get(jobs::show))
        .route("/jobs/{id}/{action}", post(jobs::control))
        .route("/tokens", get(tokens::list).post(tokens::create))
        .route("/tokens/{id}/delete", post(tokens::delete))
}

/// The message a finished action leaves for the next page (`?done=` or `?error=`).
fn flash(uri: &axum::http::Uri) -> Option<Flash> {
    let q = query(uri);
    if let Some(text) = q.get("error") {
        return Some(Flash {
            error: true,
            text: text.clone(),
        });
    }
    q.get("done").map(|text| Flash {
        error: false,
        text: text.clone(),
    })
}

/// After a change: back to `to` with the outcome shown there.
fn back(to: &str, outcome: Result<String, ApiRefusal>) -> Response {
    let (key, text) = match outcome {
        Ok(done) => ("done", done),
        Err(refusal) => ("error", refusal.message),
    };
    let sep = if to.contains('?') { '&' } else { '?' };
    Redirect::to(&format!("{to}{sep}{key}={}", percent_encode(&text))).into_response()
}

/// A one-button action (delete, pause...): the API call, then back to `to` with its outcome
/// (`done` on success, the API's message otherwise).
async fn act(
    console: &Console,
    method: axum::http::Method,
    path: &str,
    done: String,
    to: &str,
) -> Response {
    let outcome = console.api(method, path, None).await.map(|_| done);
    back(to, outcome)
}

/// A page that could not be read: the API's refusal (403, 404...) shown as such.
fn refused(refusal: ApiRefusal) -> Response {
    error_page(refusal.status, &refusal.message)
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// An empty section list reads better than nothing: a one-line hint.
fn or_hint(mut sections: Vec<Section>, hint: &str) -> Vec<Section> {
    if sections.is_empty() {
        sections.push(Section::Text(hint.into()));
    }
    sections
}

/// The form's fields as the API's JSON object: empty inputs left out, numbers as numbers.
fn json_fields(
    form: &super::Form,
    names: &[&str],
    numbers: &[&str],
) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for name in names {
        let value = form.text(name);
        if value.is_empty() {
            continue;
        }
        let json = match numbers.contains(name) {
            true => value
                .parse::<i64>()
                .map_or(Value::String(value), Value::from),
            false => Value::String(value),
        };
        out.insert((*name).to_string(), json);
    }
    out
}
