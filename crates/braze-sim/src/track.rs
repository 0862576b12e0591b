//! `POST /users/track` (docs/braze.md §1.1–§1.8).
//!
//! Order of checks: Bearer key and permission → rate limit → injected faults → payload size →
//! JSON → each array at most 75 objects → per-object validation collecting `errors[]`. All
//! objects invalid (or none sent) is a 400; otherwise a 201 with the `*_processed` counts of
//! the arrays that were sent, and `errors` when some objects failed.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use crate::attributes::{self, CONTROL_KEYS};
use crate::users::{Creation, EventSummary, Identifier, User};
use crate::{Limit, MAX_OBJECTS, MAX_PAYLOAD_BYTES, Sim, api_call, message};

const NO_VALID_DATA: &str =
    "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields.";

const ARRAYS: [&str; 3] = ["attributes", "events", "purchases"];

pub async fn track(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    api_call(&sim, &headers, "users.track", Limit::Track, |sim| {
        handle(sim, &body)
    })
    .await
}

fn handle(sim: &Sim, body: &[u8]) -> Response {
    if body.len() > MAX_PAYLOAD_BYTES {
        return message(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
    }
    let Ok(Value::Object(request)) = serde_json::from_slice::<Value>(body) else {
        return message(StatusCode::BAD_REQUEST, "Bad Request");
    };
    let mut arrays: Vec<(&str, &Vec<Value>)> = Vec::new();
    for name in ARRAYS {
        match request.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                if items.len() > MAX_OBJECTS {
                    return message(StatusCode::BAD_REQUEST, "Max Input Length Exceeded");
                }
                arrays.push((name, items));
            }
            Some(_) => return message(StatusCode::BAD_REQUEST, "Bad Request"),
        }
    }
    // Everything below runs under the lock: one request's objects apply in order, and two
    // requests never interleave (Braze processes a request's attributes, then events, then
    // purchases).
    let mut state = sim.state();
    let state = &mut *state;
    let mut errors = Vec::new();
    let mut processed = Map::new();
    let mut valid = 0usize;
    for (name, items) in &arrays {
        let mut ok = 0u64;
        for (index, item) in items.iter().enumerate() {
            let outcome = match item {
                Value::Object(object) => match *name {
                    "attributes" => apply_attributes(sim, state, object),
                    "events" => apply_event(state, object),
                    _ => apply_purchase(state, object),
                },
                _ => Err("object is not valid".to_string()),
            };
            match outcome {
                Ok(()) => ok += 1,
                Err(kind) => {
                    errors.push(json!({"type": kind, "input_array": name, "index": index}))
                }
            }
        }
        valid += ok as usize;
        processed.insert(format!("{name}_processed"), Value::from(ok));
        let counter = match *name {
            "attributes" => &mut state.stats.attributes_processed,
            "events" => &mut state.stats.events_processed,
            _ => &mut state.stats.purchases_processed,
        };
        *counter += ok;
    }
    state.stats.object_errors += errors.len() as u64;
    if let Some((_, attrs)) = arrays.iter().find(|(n, _)| *n == "attributes") {
        *state
            .stats
            .objects_per_request
            .entry(attrs.len())
            .or_default() += 1;
    }
    if valid == 0 {
        let body = json!({"message": NO_VALID_DATA, "errors": errors});
        return (StatusCode::BAD_REQUEST, axum::Json(body)).into_response();
    }
    let mut body = processed;
    body.insert("message".into(), Value::from("success"));
    if !errors.is_empty() {
        body.insert("errors".into(), Value::Array(errors));
    }
    (StatusCode::CREATED, axum::Json(Value::Object(body))).into_response()
}

fn flag(object: &Map<String, Value>, key: &str) -> Result<Option<bool>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(format!("'{key}' must be a boolean")),
    }
}

fn apply_attributes(
    sim: &Sim,
    state: &mut crate::State,
    object: &Map<String, Value>,
) -> Result<(), String> {
    let id = Identifier::of(object)?;
    let creation = Creation {
        update_existing_only: flag(object, "_update_existing_only")?,
        alias_may_create: true,
    };
    let merge_objects = flag(object, "_merge_objects")?.unwrap_or(false);
    for (key, value) in object {
        if !CONTROL_KEYS.contains(&key.as_str()) {
            attributes::validate(key, value)?;
        }
    }
    let Some(user) = state.users.resolve(&id, creation) else {
        // Update-only and no such user: accepted and queued, nothing changes.
        return Ok(());
    };
    user.updates += 1;
    let mut points = 0;
    let mut ignored = 0;
    for (key, value) in object {
        if CONTROL_KEYS.contains(&key.as_str()) {
            continue;
        }
        let value = if key == "email" {
            value
                .as_str()
                .map_or(value.clone(), |s| Value::from(s.to_lowercase()))
        } else {
            value.clone()
        };
        let applied = attributes::apply(
            &mut user.attributes,
            key,
            &value,
            merge_objects,
            sim.config.array_cap,
        );
        points += applied.data_points;
        ignored += u64::from(applied.ignored);
    }
    state.stats.data_points += points;
    state.stats.ignored_attributes += ignored;
    Ok(())
}

fn event_time(object: &Map<String, Value>) -> Result<String, String> {
    let time = object
        .get("time")
        .and_then(Value::as_str)
        .and_then(attributes::parse_time)
        .ok_or_else(|| "'time' is required and must be a valid time".to_string())?;
    // A time in the future is replaced by the current time.
    let now = jiff::Timestamp::now();
    Ok(match time.parse::<jiff::Timestamp>() {
        Ok(t) if t > now => now.to_string(),
        _ => time,
    })
}

fn properties_valid(object: &Map<String, Value>) -> Result<(), String> {
    match object.get("properties") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Object(props)) => {
            for key in props.keys() {
                if key == "time" || key == "event_name" {
                    return Err(format!("'{key}' is a reserved property key"));
                }
                if key.is_empty() || key.len() > 255 || key.starts_with('$') {
                    return Err(format!("'{key}' is not a valid property name"));
                }
            }
            Ok(())
        }
        Some(_) => Err("'properties' must be an object".into()),
    }
}

fn record(list: &mut Vec<EventSummary>, name: &str, time: &str, count: u64) {
    match list.iter_mut().find(|e| e.name == name) {
        Some(e) => {
            e.count += count;
            if time < e.first.as_str() {
                e.first = time.to_string();
            }
            if time > e.last.as_str() {
                e.last = time.to_string();
            }
        }
        None => list.push(EventSummary {
            name: name.to_string(),
            first: time.to_string(),
            last: time.to_string(),
            count,
        }),
    }
}

/// Events and purchases with a user_alias only update existing users.
fn event_user<'u>(
    state: &'u mut crate::State,
    object: &Map<String, Value>,
) -> Result<Option<&'u mut User>, String> {
    let id = Identifier::of(object)?;
    let creation = Creation {
        update_existing_only: flag(object, "_update_existing_only")?,
        alias_may_create: false,
    };
    Ok(state.users.resolve(&id, creation))
}

fn apply_event(state: &mut crate::State, object: &Map<String, Value>) -> Result<(), String> {
    let name = match object.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && n.len() <= 255 => n.to_string(),
        _ => return Err("'name' is required".into()),
    };
    let time = event_time(object)?;
    properties_valid(object)?;
    if let Some(user) = event_user(state, object)? {
        record(&mut user.custom_events, &name, &time, 1);
        // Each event object is an occurrence: no deduplication.
        state.stats.data_points += 1;
    }
    Ok(())
}

fn apply_purchase(state: &mut crate::State, object: &Map<String, Value>) -> Result<(), String> {
    let product = match object.get("product_id").and_then(Value::as_str) {
        Some(p) if !p.is_empty() && p.len() <= 255 => p.to_string(),
        _ => return Err("'product_id' is not valid".into()),
    };
    match object.get("currency").and_then(Value::as_str) {
        Some(c) if c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()) => {}
        _ => return Err("'currency' is not valid".into()),
    }
    if !object.get("price").is_some_and(Value::is_number) {
        return Err("'price' is not valid".into());
    }
    let quantity = match object.get("quantity") {
        None => 1,
        Some(q) => match q.as_u64() {
            Some(q) if (1..=100).contains(&q) => q,
            _ => return Err("'quantity' is not valid".into()),
        },
    };
    let time = event_time(object)?;
    properties_valid(object)?;
    if let Some(user) = event_user(state, object)? {
        // Braze records quantity X as X purchases.
        record(&mut user.purchases, &product, &time, quantity);
        state.stats.data_points += quantity;
    }
    Ok(())
}
