//! The response envelope every endpoint uses: `{"status", "message", "data"}`, and the one
//! error type handlers return. Error messages say what was wrong and where; they never echo a
//! token or a secret.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub retry_after_secs: Option<u32>,
    /// Machine-readable details (e.g. a syntax error's line and column).
    pub data: serde_json::Value,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            retry_after_secs: None,
            data: serde_json::Value::Null,
        }
    }
    pub fn with_data(self, data: serde_json::Value) -> Self {
        ApiError { data, ..self }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is larger than the limit of {limit} bytes"),
        )
    }
    pub fn unavailable(message: impl Into<String>, retry_after_secs: u32) -> Self {
        ApiError {
            retry_after_secs: Some(retry_after_secs),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
        }
    }
    /// A failure of ours: the details go to the log, the client gets a generic message.
    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal error while {context}; see the server log"),
        )
    }
}

/// A workflow's refusal is the request's fault (400); its storage failure is not.
impl From<tributary_jobs::WorkflowError> for ApiError {
    fn from(e: tributary_jobs::WorkflowError) -> Self {
        match e {
            tributary_jobs::WorkflowError::Invalid(message) => ApiError::bad_request(message),
            tributary_jobs::WorkflowError::Store(e) => e.into(),
        }
    }
}

impl From<tributary_jobs::authorization::InvalidConfig> for ApiError {
    fn from(e: tributary_jobs::authorization::InvalidConfig) -> Self {
        ApiError::bad_request(e.0)
    }
}

impl From<tributary_store::StoreError> for ApiError {
    fn from(e: tributary_store::StoreError) -> Self {
        ApiError::internal("accessing the store", &e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "status": self.status.as_u16(),
            "message": self.message,
            "data": self.data,
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// A successful envelope.
pub fn ok<T: Serialize>(status: StatusCode, data: T) -> Response {
    ok_beside(status, data, serde_json::Map::new())
}

/// A successful envelope with more keys beside `data`, where Lytics puts them: a page's
/// `_next` and `total`, an entity's `meta`.
pub fn ok_beside<T: Serialize>(
    status: StatusCode,
    data: T,
    beside: serde_json::Map<String, serde_json::Value>,
) -> Response {
    let mut body = beside;
    body.insert("status".into(), json!(status.as_u16()));
    body.insert("message".into(), json!("success"));
    body.insert("data".into(), json!(data));
    (status, axum::Json(serde_json::Value::Object(body))).into_response()
}

/// A page in Lytics' shape: the items in `data`, and beside it `_next` (the cursor of the
/// next page, `""` after the last) and `total`.
pub fn ok_page<T: Serialize>(items: T, next: Option<String>, total: u64) -> Response {
    let mut beside = serde_json::Map::new();
    beside.insert("_next".into(), json!(next.unwrap_or_default()));
    beside.insert("total".into(), json!(total));
    ok_beside(StatusCode::OK, items, beside)
}

pub type ApiResult = Result<Response, ApiError>;

/// `?minutes=`: how far back a per-minute series goes (each endpoint bounds it).
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MinutesParams {
    /// How many minutes back (60).
    pub minutes: Option<u32>,
}

/// A count parameter (`limit`, `minutes`, `days`): `default` when absent, else within
/// `1..=max`, or a 400 that names the parameter and its range.
pub fn bounded(name: &str, value: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::bad_request(format!(
            "{name} must be between 1 and {max}"
        ))),
    }
}

/// Query parameters as a map; malformed query strings are a 400 in the envelope.
pub fn query_map(
    uri: &axum::http::Uri,
) -> Result<std::collections::HashMap<String, String>, ApiError> {
    axum::extract::Query::<std::collections::HashMap<String, String>>::try_from_uri(uri)
        .map(|q| q.0)
        .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))
}

/// A boolean query flag: absent, `true`/`false`, `1`/`0`.
pub fn flag(
    params: &std::collections::HashMap<String, String>,
    name: &str,
) -> Result<bool, ApiError> {
    match params.get(name).map(String::as_str) {
        None | Some("false" | "0" | "no") => Ok(false),
        Some("" | "true" | "1" | "yes") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "query parameter {name}={other:?} is not a boolean; use true or false"
        ))),
    }
}

/// Longest request target (path and query) accepted; longer is a 414.
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Every error leaves in the envelope, also those no handler wrote: axum's rejections of a
/// query string or a path (plain text), a 405 (empty), a request target over
/// [`MAX_URI_BYTES`] (414). The headers of the original answer are kept (`Allow` on a 405).
pub async fn errors_as_envelopes(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len());
    if target > MAX_URI_BYTES {
        return ApiError::new(
            StatusCode::URI_TOO_LONG,
            format!("the request target is {target} bytes; at most {MAX_URI_BYTES} are accepted"),
        )
        .into_response();
    }
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let text = text.trim();
    let message = match (text.is_empty(), status) {
        (true, StatusCode::METHOD_NOT_ALLOWED) => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            format!("method not allowed here; allowed: {allowed}")
        }
        (true, _) => status.canonical_reason().unwrap_or("error").to_string(),
        (false, _) => text.to_string(),
    };
    let envelope = ApiError::new(status, message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, envelope.into_body())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job the workflow refuses is the caller's fault; a store that fails while the
    /// workflow checks it is not (it used to answer 400 for both, and 500 for any dry run).
    #[test]
    fn workflow_errors_answer_by_whose_fault_they_are() {
        let refused = ApiError::from(tributary_jobs::WorkflowError::Invalid(
            "config.segment_ids: account 1 has no audience \"x\"".into(),
        ));
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert!(refused.message.contains("config.segment_ids"));
        let broken = ApiError::from(tributary_jobs::WorkflowError::Store(
            tributary_store::StoreError::Corrupt("a damaged row".into()),
        ));
        assert_eq!(broken.status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!broken.message.contains("damaged"), "{}", broken.message);
    }
}
