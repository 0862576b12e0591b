//! What the audience and query endpoints share: reading a statement from the body (text/plain,
//! or JSON with the text in a field), and syntax errors as 400 with their position.

use axum::http::{HeaderMap, header};
use serde_json::json;
use tributary_query::ParseError;

use crate::api::ApiError;

/// Largest FilterQL or LQL text accepted.
pub const MAX_STATEMENT_BYTES: usize = 1024 * 1024;

/// The statement text: the body itself, or `json_field` of a JSON body.
pub fn statement_text(
    headers: &HeaderMap,
    body: &[u8],
    json_field: &str,
) -> Result<String, ApiError> {
    if body.len() > MAX_STATEMENT_BYTES {
        return Err(ApiError::too_large(MAX_STATEMENT_BYTES));
    }
    // Lytics' Go client sends its JSON without a content type: a body that opens with `{` is
    // JSON too (no statement starts with one).
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"))
        || body.trim_ascii_start().starts_with(b"{");
    // A JSON object carries the statement in `json_field`. Lytics' clients also send the bare
    // statement labelled as JSON: anything that is not a JSON object is the statement.
    if is_json && let Ok(serde_json::Value::Object(v)) = serde_json::from_slice(body) {
        return v
            .get(json_field)
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| {
                ApiError::bad_request(format!("the JSON body needs a string field {json_field:?}"))
            });
    }
    String::from_utf8(body.to_vec())
        .map_err(|_| ApiError::bad_request("the body is not valid UTF-8 text"))
}

pub fn syntax_error(e: &ParseError) -> ApiError {
    ApiError::bad_request(e.to_string()).with_data(json!({
        "line": e.line,
        "column": e.column,
        "message": e.message,
    }))
}

/// Names used in URLs (audience slugs, query aliases).
pub fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(format!(
            "{what} {name:?} is not valid: use 1 to 100 letters, digits, '_', '-' or '.'"
        )))
    }
}
