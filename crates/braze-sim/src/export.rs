//! Exports: `POST /users/export/ids` (docs/braze.md §5.3) and the dashboard's segment CSV export
//! (§5.1), written as a ZIP holding one CSV with Braze's User Data columns.

use std::io::Write;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::attributes::STANDARD_FIELDS;
use crate::users::{Alias, User};
use crate::{Limit, Sim, api_call, message};

/// At most 50 external ids and aliases together per request.
const MAX_IDS: usize = 50;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportIds {
    #[serde(default)]
    external_ids: Vec<String>,
    #[serde(default)]
    user_aliases: Vec<Alias>,
    device_id: Option<String>,
    braze_id: Option<String>,
    email_address: Option<String>,
    phone: Option<String>,
    fields_to_export: Option<Vec<String>>,
}

pub async fn export_ids(State(sim): State<Arc<Sim>>, headers: HeaderMap, body: Bytes) -> Response {
    api_call(
        &sim,
        &headers,
        "users.export.ids",
        Limit::ExportIds,
        |sim| match serde_json::from_slice::<ExportIds>(&body) {
            Err(e) => message(StatusCode::BAD_REQUEST, &format!("Bad Request: {e}")),
            Ok(request) => lookup(sim, request),
        },
    )
    .await
}

fn lookup(sim: &Sim, request: ExportIds) -> Response {
    let by_list = request.external_ids.len() + request.user_aliases.len();
    let singles = [
        &request.device_id,
        &request.braze_id,
        &request.email_address,
        &request.phone,
    ]
    .iter()
    .filter(|s| s.is_some())
    .count();
    if by_list > MAX_IDS {
        return message(
            StatusCode::BAD_REQUEST,
            "at most 50 external_ids and user_aliases may be sent",
        );
    }
    if (by_list > 0 && singles > 0) || singles > 1 || (by_list == 0 && singles == 0) {
        return message(
            StatusCode::BAD_REQUEST,
            "send external_ids and/or user_aliases, or exactly one of device_id, braze_id, email_address, phone",
        );
    }
    let fields = request.fields_to_export.as_deref();
    let state = sim.state();
    let users = &state.users;
    let mut found = Vec::new();
    let mut invalid = Vec::new();
    for id in &request.external_ids {
        match users.by_external_id(id) {
            Some(u) => found.push(export_object(u, fields)),
            None => invalid.push(Value::from(id.as_str())),
        }
    }
    for alias in &request.user_aliases {
        if let Some(u) = users.by_alias(alias) {
            found.push(export_object(u, fields));
        }
    }
    if let Some(b) = &request.braze_id
        && let Some(u) = users.by_braze_id(b)
    {
        found.push(export_object(u, fields));
    }
    let field_match = |field: &str, value: &str| {
        users
            .all()
            .filter(|u| u.attributes.get(field).and_then(Value::as_str) == Some(value))
            .map(|u| export_object(u, fields))
            .collect::<Vec<_>>()
    };
    if let Some(e) = &request.email_address {
        found.extend(field_match("email", &e.to_lowercase()));
    }
    if let Some(p) = &request.phone {
        found.extend(field_match("phone", p));
    }
    let mut body = json!({"message": "success", "users": found});
    if !invalid.is_empty() {
        body["invalid_user_ids"] = Value::Array(invalid);
    }
    (StatusCode::CREATED, Json(body)).into_response()
}

/// The user export object (docs/braze.md §5.2): standard fields at the top, custom attributes under
/// `custom_attributes`, missing fields left out; `appboy_id` equals `braze_id`.
pub fn export_object(user: &User, fields: Option<&[String]>) -> Value {
    let mut out = Map::new();
    out.insert("created_at".into(), Value::from(user.created_at.clone()));
    if let Some(x) = &user.external_id {
        out.insert("external_id".into(), Value::from(x.clone()));
    }
    out.insert("braze_id".into(), Value::from(user.braze_id.clone()));
    out.insert("appboy_id".into(), Value::from(user.braze_id.clone()));
    if !user.user_aliases.is_empty() {
        out.insert("user_aliases".into(), json!(user.user_aliases));
    }
    let mut custom = Map::new();
    for (k, v) in &user.attributes {
        if STANDARD_FIELDS.contains(&k.as_str()) {
            out.insert(k.clone(), v.clone());
        } else {
            custom.insert(k.clone(), v.clone());
        }
    }
    if !custom.is_empty() {
        out.insert("custom_attributes".into(), Value::Object(custom));
    }
    if !user.custom_events.is_empty() {
        out.insert("custom_events".into(), json!(user.custom_events));
    }
    if !user.purchases.is_empty() {
        out.insert("purchases".into(), json!(user.purchases));
    }
    if let Some(fields) = fields {
        let keep = |k: &str| {
            fields.iter().any(|f| f == k)
                || (k == "appboy_id" && fields.iter().any(|f| f == "braze_id"))
        };
        out.retain(|k, _| keep(k));
    }
    Value::Object(out)
}

/// The dashboard's "CSV Export User Data" columns (docs/braze.md §5.1), before the chosen custom
/// attributes. The internal-id header is `appboy_id`; the real spelling is unconfirmed, which
/// is why importers must map by header name.
pub const CSV_COLUMNS: &[&str] = &[
    "appboy_id",
    "country",
    "created_at",
    "devices",
    "date_of_birth",
    "email",
    "unsubscribed_from_emails_at",
    "user_id",
    "first_name",
    "first_session",
    "gender",
    "google_ad_ids",
    "city",
    "IDFAs",
    "IDFVs",
    "language",
    "last_app_version_used",
    "last_name",
    "last_session",
    "number_of_google_ad_ids",
    "number_of_IDFAs",
    "number_of_IDFVs",
    "number_of_push_tokens",
    "number_of_roku_ad_ids",
    "number_of_windows_ad_ids",
    "phone_number",
    "opted_into_push_at",
    "unsubscribed_from_push_at",
    "random_bucket",
    "roku_ad_ids",
    "session_count",
    "timezone",
    "in_app_purchase_total",
    "user_aliases",
    "windows_ad_ids",
];

/// The user field behind a CSV column, where the simulator keeps one.
fn csv_cell(user: &User, column: &str) -> String {
    let attr = |k: &str| match user.attributes.get(k) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    match column {
        "appboy_id" => user.braze_id.clone(),
        "user_id" => user.external_id.clone().unwrap_or_default(),
        "created_at" => user.created_at.clone(),
        "date_of_birth" => attr("dob"),
        "city" => attr("home_city"),
        "phone_number" => attr("phone"),
        "timezone" => attr("time_zone"),
        "user_aliases" if !user.user_aliases.is_empty() => {
            serde_json::to_string(&user.user_aliases).unwrap_or_default()
        }
        "country" | "email" | "first_name" | "last_name" | "gender" | "language" => attr(column),
        _ => String::new(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentExport {
    /// Where to write the ZIP (a path on the simulator's machine).
    path: std::path::PathBuf,
    /// Users whose `attribute` (an array) contains `contains`; everyone when absent.
    #[serde(default)]
    attribute: Option<String>,
    #[serde(default)]
    contains: Option<String>,
    /// Custom attributes to add as columns after the standard ones.
    #[serde(default)]
    custom_attributes: Vec<String>,
}

/// `POST /_sim/segments/export`: writes what a dashboard segment export would email a link to.
pub async fn segment_csv(
    State(sim): State<Arc<Sim>>,
    Json(request): Json<SegmentExport>,
) -> Response {
    let (csv, rows) = {
        let state = sim.state();
        let members: Vec<&User> = state
            .users
            .all()
            .filter(|u| match (&request.attribute, &request.contains) {
                (Some(attr), Some(value)) => match u.attributes.get(attr) {
                    Some(Value::Array(items)) => items.iter().any(|i| i.as_str() == Some(value)),
                    Some(Value::String(s)) => s == value,
                    _ => false,
                },
                _ => true,
            })
            .collect();
        match render_csv(&members, &request.custom_attributes) {
            Ok(csv) => (csv, members.len()),
            Err(e) => return message(StatusCode::INTERNAL_SERVER_ERROR, &e),
        }
    };
    match write_zip(&request.path, &csv) {
        Ok(()) => {
            Json(json!({"message": "success", "rows": rows, "path": request.path})).into_response()
        }
        Err(e) => message(
            StatusCode::BAD_REQUEST,
            &format!("cannot write {}: {e}", request.path.display()),
        ),
    }
}

fn render_csv(users: &[&User], custom: &[String]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    {
        let mut writer = csv::Writer::from_writer(&mut out);
        let header: Vec<&str> = CSV_COLUMNS
            .iter()
            .copied()
            .chain(custom.iter().map(String::as_str))
            .collect();
        writer.write_record(&header).map_err(|e| e.to_string())?;
        for user in users {
            let mut row: Vec<String> = CSV_COLUMNS.iter().map(|c| csv_cell(user, c)).collect();
            for name in custom {
                row.push(match user.attributes.get(name) {
                    None | Some(Value::Null) => String::new(),
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                });
            }
            writer.write_record(&row).map_err(|e| e.to_string())?;
        }
        writer.flush().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn write_zip(path: &std::path::Path, csv: &[u8]) -> std::io::Result<()> {
    let file = std::fs::File::create(path)?;
    let mut zip = zip::ZipWriter::new(file);
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file("users.csv", options)
        .map_err(std::io::Error::other)?;
    zip.write_all(csv)?;
    zip.finish().map_err(std::io::Error::other)?;
    Ok(())
}
