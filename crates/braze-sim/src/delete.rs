//! `POST /users/delete` (docs/braze.md, "Deleting users").
//!
//! Order of checks: Bearer key and `users.delete` → the shared identity rate limit → injected
//! faults → payload size → JSON → exactly one identifier list, of at most 50 valid entries.
//! Any refusal deletes nothing; a 202 says how many identifiers were queued.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::users::Identifier;
use crate::{Limit, MAX_PAYLOAD_BYTES, Sim, api_call, message};

/// Identifiers per request.
pub const MAX_DELETES: usize = 50;

/// The lists a request may carry (one per request), and the key each entry stands for.
const LISTS: [(&str, &str); 5] = [
    ("external_ids", "external_id"),
    ("user_aliases", "user_alias"),
    ("braze_ids", "braze_id"),
    ("email_addresses", "email"),
    ("phone_numbers", "phone"),
];

pub async fn delete(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    api_call(&sim, &headers, "users.delete", Limit::Identity, |sim| {
        handle(sim, &body)
    })
    .await
}

fn bad(text: &str) -> Response {
    message(StatusCode::BAD_REQUEST, text)
}

fn handle(sim: &Sim, body: &[u8]) -> Response {
    if body.len() > MAX_PAYLOAD_BYTES {
        return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    }
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return bad("Bad Request");
    };
    let present: Vec<(&str, &Value)> = LISTS
        .iter()
        .filter_map(|(list, key)| match request.get(*list) {
            None | Some(Value::Null) => None,
            Some(v) => Some((*key, v)),
        })
        .collect();
    let [(key, Value::Array(items))] = present.as_slice() else {
        return bad(
            "Exactly one of external_ids, user_aliases, braze_ids, email_addresses or \
             phone_numbers must be an array",
        );
    };
    if items.len() > MAX_DELETES {
        return bad("Max Input Length Exceeded");
    }
    let mut ids = Vec::with_capacity(items.len());
    for item in items {
        // Each entry is read as the object `{key: entry}` would be by /users/track.
        let object: Map<String, Value> = [(key.to_string(), item.clone())].into_iter().collect();
        match Identifier::of(&object) {
            Ok(id) => ids.push(id),
            Err(why) => return bad(&why),
        }
    }
    let mut state = sim.state();
    let removed: usize = ids.iter().map(|id| state.users.remove(id)).sum();
    state.stats.users_deleted += removed as u64;
    let body = json!({"deleted": ids.len(), "message": "success"});
    (StatusCode::ACCEPTED, axum::Json(body)).into_response()
}
