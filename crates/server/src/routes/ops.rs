use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::api::{ApiError, ok};

pub async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let backend = match state.store.backend() {
        tributary_store::Backend::Sqlite => "sqlite",
        tributary_store::Backend::Postgres => "postgres",
    };
    ok(StatusCode::OK, json!({ "backend": backend }))
}

pub async fn metrics() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::render_metrics(),
    )
        .into_response()
}

pub async fn not_found(uri: Uri) -> ApiError {
    // The path is echoed at most in part: it is the client's text.
    let path: String = uri.path().chars().take(200).collect();
    ApiError::not_found(format!("no endpoint at {path}"))
}
