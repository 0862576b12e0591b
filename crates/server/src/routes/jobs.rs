//! `/v2/job`: creating jobs (or estimating them with `dryrun`), reading their state,
//! progress, metrics and logs, and pausing, resuming or killing them.

use std::sync::Arc;

use axum::extract::{OriginalUri, Path, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};
use tributary_core::{Job, JobState, LogLevel, NewJob, format_rfc3339, from_micros};

use tributary_jobs::job_log;

use crate::AppState;
use crate::api::{ApiError, ApiResult, bounded, flag, ok, query_map};
use crate::auth::{Authorized, ManageJobs, ReadJobs};
use crate::routes::admin::{check_description, check_name, json_body, now};

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct NewJobBody {
    name: String,
    #[serde(default)]
    description: String,
    auth_ids: Vec<i64>,
    #[serde(default)]
    config: Value,
    #[serde(default)]
    dryrun: bool,
}

/// A job as the API shows it; with `lytics`, in the shape of Lytics' work too (a string `id`,
/// `aid`, string `auth_ids`, `statuscode` from the state).
pub(crate) fn job_json(j: &Job, lytics: bool) -> Value {
    let mut out = job_fields(j);
    if lytics {
        out["id"] = json!(j.id.to_string());
        out["aid"] = json!(j.account_id);
        out["account_id"] = json!(j.account_id.to_string());
        out["auth_ids"] = json!(j.auth_ids.iter().map(i64::to_string).collect::<Vec<_>>());
        out["statuscode"] = json!(j.state);
        out["workflow_id"] = json!(j.workflow);
        out["tag"] = json!("");
        out["user_id"] = json!("");
        out["hidden"] = json!(false);
        out["verbose_logging"] = json!(false);
        out["work_state_version"] = json!(0);
        out["runtime"] = json!("");
    }
    out
}

fn job_fields(j: &Job) -> Value {
    json!({
        "id": j.id,
        "account_id": j.account_id,
        "workflow": j.workflow,
        "name": j.name,
        "description": j.description,
        "auth_ids": j.auth_ids,
        "config": j.config,
        "state": j.state,
        "progress": j.progress,
        "metrics": j.metrics,
        "last_error": j.last_error,
        "created": format_rfc3339(from_micros(j.created_at)),
        "updated": format_rfc3339(from_micros(j.updated_at)),
    })
}

/// `POST /v2/job/{workflow}` (`?dryrun=true` or `"dryrun": true` estimates instead).
#[utoipa::path(post, path = "/v2/job/{key}", tag = "jobs", params(("key" = String, Path, description = "The workflow: braze-export or sftp-import"), ("dryrun" = Option<bool>, Query, description = "Estimate users, requests and data points instead of creating")), request_body = NewJobBody, responses(crate::openapi::Enveloped))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ManageJobs>,
    Path(workflow_name): Path<String>,
    OriginalUri(uri): OriginalUri,
    body: bytes::Bytes,
) -> ApiResult {
    create_job(&state, &auth, workflow_name, &uri, &body, false).await
}

/// Validates and creates a job of `workflow_name` from a JSON body; answers in Lytics' work
/// shape with `lytics`.
pub(crate) async fn create_job(
    state: &AppState,
    auth: &Authorized<ManageJobs>,
    workflow_name: String,
    uri: &axum::http::Uri,
    body: &[u8],
    lytics: bool,
) -> ApiResult {
    let registry = state.jobs.registry();
    let workflow = registry.get(&workflow_name).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown workflow {workflow_name:?} (known: {})",
            registry.names().join(", ")
        ))
    })?;
    let body: NewJobBody = json_body(body)?;
    check_name(&body.name)?;
    check_description(&body.description)?;
    let aid = auth.caller.account_id;
    let wanted = workflow.auth_kinds();
    let wanted_names = wanted
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(" or ");
    if body.auth_ids.len() != 1 {
        return Err(ApiError::bad_request(format!(
            "auth_ids must name exactly one {wanted_names} authorization"
        )));
    }
    for id in &body.auth_ids {
        let found = state.store.authorization(aid, *id).await?.ok_or_else(|| {
            ApiError::bad_request(format!("auth_ids: account {aid} has no authorization {id}"))
        })?;
        if !wanted.contains(&found.kind) {
            return Err(ApiError::bad_request(format!(
                "auth_ids: authorization {id} is {}, the {workflow_name} workflow needs {wanted_names}",
                found.kind.as_str(),
            )));
        }
    }
    workflow.validate(&state.store, aid, &body.config).await?;
    let query = query_map(uri)?;
    if body.dryrun || flag(&query, "dryrun")? {
        let estimate = workflow.dryrun(&state.store, aid, &body.config).await?;
        return Ok(ok(
            StatusCode::OK,
            json!({ "dryrun": true, "estimate": estimate }),
        ));
    }
    let job = state
        .store
        .create_job(&NewJob {
            account_id: aid,
            workflow: workflow_name,
            name: body.name.trim().to_string(),
            description: body.description,
            auth_ids: body.auth_ids,
            config: body.config,
            created_at: now(),
        })
        .await?;
    tracing::info!(aid, workflow = %job.workflow, "job created");
    job_log(state.store.as_ref(), job.id, LogLevel::Info, "job created").await;
    state.jobs.wake();
    Ok(ok(StatusCode::CREATED, job_json(&job, lytics)))
}

/// `GET /v2/job`, and with `lytics` Lytics' `GET /api/work`.
async fn list_as(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadJobs>,
    lytics: bool,
) -> ApiResult {
    let jobs = state.store.jobs(auth.caller.account_id).await?;
    Ok(ok(
        StatusCode::OK,
        jobs.iter().map(|j| job_json(j, lytics)).collect::<Vec<_>>(),
    ))
}

async fn find(state: &AppState, aid: i64, id: &str) -> Result<Job, ApiError> {
    let id: i64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{id:?} is not a job id")))?;
    state
        .store
        .job(aid, id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("account {aid} has no job {id}")))
}

/// `GET /v2/job/{id}`, and with `lytics` Lytics' `GET /api/work/{id}`.
async fn get_as(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadJobs>,
    Path(id): Path<String>,
    lytics: bool,
) -> ApiResult {
    let job = find(&state, auth.caller.account_id, &id).await?;
    Ok(ok(StatusCode::OK, job_json(&job, lytics)))
}

/// `POST /v2/job/{id}/{pause|resume|kill}`.
#[utoipa::path(post, path = "/v2/job/{id}/{action}", tag = "jobs", params(("id" = String, Path, description = "The job id"), ("action" = String, Path, description = "pause, resume or kill")), responses(crate::openapi::Enveloped))]
pub async fn control(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ManageJobs>,
    Path((id, action)): Path<(String, String)>,
) -> ApiResult {
    use JobState::*;
    let aid = auth.caller.account_id;
    let job = find(&state, aid, &id).await?;
    let (from, to): (&[JobState], JobState) = match action.as_str() {
        "pause" => (&[Running, Sleeping], Paused),
        "resume" => (&[Paused, Failed], Running),
        "kill" => (&[Running, Sleeping, Paused, Failed], Killed),
        other => {
            return Err(ApiError::not_found(format!(
                "unknown job action {other:?} (known: pause, resume, kill)"
            )));
        }
    };
    if !state
        .store
        .set_job_state(aid, job.id, from, to, None, now())
        .await?
    {
        let current = find(&state, aid, &id).await?;
        return Err(ApiError::conflict(format!(
            "job {} is {}: it cannot {action}",
            job.id,
            current.state.as_str()
        )));
    }
    job_log(
        state.store.as_ref(),
        job.id,
        LogLevel::Info,
        &format!("{action} requested"),
    )
    .await;
    state.jobs.wake();
    let job = find(&state, aid, &id).await?;
    Ok(ok(StatusCode::OK, job_json(&job, false)))
}

/// `GET /v2/job/{id}/logs?limit=`: the newest lines, oldest first.
#[utoipa::path(get, path = "/v2/job/{id}/logs", tag = "jobs", params(("id" = String, Path, description = "The job id"), ("limit" = Option<u32>, Query, description = "The newest lines, 1 to 1000 (200)")), responses(crate::openapi::Enveloped))]
pub async fn logs(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadJobs>,
    Path(id): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> ApiResult {
    let job = find(&state, auth.caller.account_id, &id).await?;
    let query = query_map(&uri)?;
    let max = tributary_jobs::LOG_LINES_KEPT as u32;
    let limit = query.get("limit").map(|v| v.parse::<u32>().unwrap_or(0));
    let limit = bounded("limit", limit, 200, max)?;
    let lines = state.store.job_logs(job.id, limit).await?;
    let lines: Vec<Value> = lines
        .iter()
        .map(|l| {
            json!({
                "seq": l.seq,
                "at": format_rfc3339(from_micros(l.at)),
                "level": l.level,
                "message": l.message,
            })
        })
        .collect();
    Ok(ok(StatusCode::OK, lines))
}

#[utoipa::path(
    get,
    path = "/v2/job",
    tag = "jobs",
    responses(crate::openapi::Enveloped)
)]
pub async fn list(state: State<Arc<AppState>>, auth: Authorized<ReadJobs>) -> ApiResult {
    list_as(state, auth, false).await
}

/// Lytics' name for `GET /v2/job` (its jobs are "work"), in Lytics' shape.
#[utoipa::path(
    get,
    path = "/api/work",
    tag = "jobs",
    responses(crate::openapi::Enveloped)
)]
pub async fn lytics_list(state: State<Arc<AppState>>, auth: Authorized<ReadJobs>) -> ApiResult {
    list_as(state, auth, true).await
}

#[utoipa::path(get, path = "/v2/job/{key}", tag = "jobs", params(("key" = String, Path, description = "The job id")), responses(crate::openapi::Enveloped))]
pub async fn get(
    state: State<Arc<AppState>>,
    auth: Authorized<ReadJobs>,
    id: Path<String>,
) -> ApiResult {
    get_as(state, auth, id, false).await
}

/// Lytics' name for `GET /v2/job/{id}`, in Lytics' shape.
#[utoipa::path(get, path = "/api/work/{id}", tag = "jobs", params(("id" = String, Path, description = "The job id")), responses(crate::openapi::Enveloped))]
pub async fn lytics_get(
    state: State<Arc<AppState>>,
    auth: Authorized<ReadJobs>,
    id: Path<String>,
) -> ApiResult {
    get_as(state, auth, id, true).await
}

/// `GET /v2/job/{id}/minutes?minutes=60`: the job's metrics as they stood at its last report
/// of each minute (cumulative: a minute's throughput is the difference from the one before),
/// beginning with the last minute before the window, if any, to count the first from.
/// `minutes` goes back at most a day, as far as the rows are kept.
#[utoipa::path(get, path = "/v2/job/{id}/minutes", tag = "jobs", params(("id" = String, Path, description = "The job id"), crate::api::MinutesParams), responses(crate::openapi::Enveloped))]
pub async fn minutes(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadJobs>,
    Path(id): Path<String>,
    axum::extract::Query(params): axum::extract::Query<crate::api::MinutesParams>,
) -> ApiResult {
    let kept = (tributary_store::JOB_MINUTES_KEPT_SECS / 60) as u32;
    let minutes = bounded("minutes", params.minutes, 60, kept)?;
    let job = find(&state, auth.caller.account_id, &id).await?;
    let since = now() - i64::from(minutes) * 60_000_000;
    let rows = state.store.job_minutes(job.id, since).await?;
    let data: Vec<Value> = rows
        .into_iter()
        .map(|(minute, metrics)| {
            json!({"minute": format_rfc3339(from_micros(minute)), "metrics": metrics})
        })
        .collect();
    Ok(ok(StatusCode::OK, data))
}
