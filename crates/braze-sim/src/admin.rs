//! `/_sim/*`: what tests read and steer. Not part of Braze's API; no key needed (the simulator
//! binds to loopback).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use crate::export::export_object;
use crate::{Faults, Sim, message};

pub async fn stats(State(sim): State<Arc<Sim>>) -> Response {
    let users = sim.state().users.len();
    let mut body = json!(sim.stats());
    body["users"] = json!(users);
    Json(body).into_response()
}

#[derive(Deserialize)]
pub struct Page {
    #[serde(default)]
    offset: usize,
    #[serde(default = "default_limit")]
    limit: usize,
}

fn default_limit() -> usize {
    1_000
}

/// Users in external-id order, each with its attributes and its `updates` count.
pub async fn users(State(sim): State<Arc<Sim>>, Query(page): Query<Page>) -> Response {
    let state = sim.state();
    let mut all: Vec<_> = state.users.all().collect();
    all.sort_by(|a, b| {
        a.external_id
            .cmp(&b.external_id)
            .then(a.braze_id.cmp(&b.braze_id))
    });
    let total = all.len();
    let users: Vec<_> = all
        .into_iter()
        .skip(page.offset)
        .take(page.limit.min(100_000))
        .map(|u| json!({"user": export_object(u, None), "updates": u.updates}))
        .collect();
    Json(json!({"total": total, "users": users})).into_response()
}

pub async fn user(State(sim): State<Arc<Sim>>, Path(external_id): Path<String>) -> Response {
    let state = sim.state();
    match state.users.by_external_id(&external_id) {
        Some(u) => {
            Json(json!({"user": export_object(u, None), "updates": u.updates})).into_response()
        }
        None => message(StatusCode::NOT_FOUND, "no user with this external_id"),
    }
}

pub async fn faults(State(sim): State<Arc<Sim>>) -> Response {
    Json(json!(sim.state().faults)).into_response()
}

pub async fn set_faults(State(sim): State<Arc<Sim>>, Json(faults): Json<Faults>) -> Response {
    if !(0.0..=1.0).contains(&faults.error_rate) || !(0.0..=1.0).contains(&faults.timeout_rate) {
        return message(StatusCode::BAD_REQUEST, "rates must be between 0 and 1");
    }
    sim.state().faults = faults.clone();
    Json(json!(faults)).into_response()
}

/// Forgets users and counters and clears the faults (rate-limit buckets are kept: they
/// are time, not state).
pub async fn reset(State(sim): State<Arc<Sim>>) -> Response {
    let mut state = sim.state();
    state.users.clear();
    state.stats = Default::default();
    // Back to how the simulator started: faults set at run time go, those it was started with
    // stay.
    state.faults = sim.config.faults.clone();
    Json(json!({"message": "success"})).into_response()
}
