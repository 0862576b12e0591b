use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::AppState;
use crate::api::{ApiError, ok};

#[utoipa::path(get, path = "/healthz", tag = "ops", security(()), responses(crate::openapi::Enveloped))]
pub async fn healthz(State(state): State<Arc<AppState>>) -> Response {
    let backend = match state.store.backend() {
        tributary_store::Backend::Sqlite => "sqlite",
        tributary_store::Backend::Postgres => "postgres",
    };
    ok(StatusCode::OK, json!({ "backend": backend }))
}

/// The Prometheus text. The pipeline's lag is read from the store at each scrape (so every
/// node reports the same, whichever node runs an account's pipeline).
#[utoipa::path(get, path = "/metrics", tag = "ops", security(()), responses((status = 200, description = "Prometheus text exposition", content_type = "text/plain")))]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    record_pipeline_lag(&state).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::telemetry::render_metrics(),
    )
        .into_response()
}

/// `tributary_pipeline_lag_events{account}`: events received and not yet applied to profiles.
async fn record_pipeline_lag(state: &AppState) {
    let accounts = match state.store.account_ids().await {
        Ok(accounts) => accounts,
        Err(e) => {
            tracing::warn!(error = %e, "pipeline lag not measured");
            return;
        }
    };
    for aid in accounts {
        match state.store.pipeline_lag(aid).await {
            Ok(lag) => {
                let total: i64 = lag.iter().map(|(_, n)| n).sum();
                metrics::gauge!("tributary_pipeline_lag_events", "account" => aid.to_string())
                    .set(total as f64);
            }
            Err(e) => tracing::warn!(error = %e, account = aid, "pipeline lag not measured"),
        }
    }
}

pub async fn not_found(uri: Uri) -> ApiError {
    // The path is echoed at most in part: it is the client's text.
    let path: String = uri.path().chars().take(200).collect();
    ApiError::not_found(format!("no endpoint at {path}"))
}
