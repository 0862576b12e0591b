//! Rows to values, for every query that returns them. Columns are read by name; the types
//! used (BIGINT, TEXT, BLOB/BYTEA) decode the same way on both backends.

use sqlx::Row;
use sqlx::any::AnyRow;
use tributary_core::{
    Account, AuthKind, Authorization, Definition, DefinitionKind, IdentityKey, Job, JobLogLine,
    JobState, LogLevel, MergeRecord, StoredEvent, StoredProfile, StreamInfo, TokenHash,
    TokenRecord,
};

use crate::{Result, StoreError};

/// The columns `token_from_row` reads.
pub(crate) const TOKEN_COLUMNS: &str =
    "id, account_id, name, description, roles, hash, created_at, expires_at";
/// The columns `profile_from_row` reads.
pub(crate) const PROFILE_COLUMNS: &str =
    "account_id, id, state, created_at, modified_at, next_check";
/// The columns `event_from_row` reads.
pub(crate) const EVENT_COLUMNS: &str = "id, stream, received_at, event_time, payload";
/// The columns `definition_from_row` reads.
pub(crate) const DEFINITION_COLUMNS: &str = "account_id, kind, name, text, created_at, updated_at";
pub(crate) const AUTH_COLUMNS: &str =
    "id, account_id, kind, label, description, config, sealed_secret, created_at, updated_at";
pub(crate) const JOB_COLUMNS: &str = "id, account_id, workflow, name, description, auth_ids, \
     config, state, progress, metrics, last_error, created_at, updated_at";

pub(crate) fn token_from_row(row: &AnyRow) -> Result<TokenRecord> {
    let id: i64 = row.try_get("id")?;
    let roles: String = row.try_get("roles")?;
    let hash: String = row.try_get("hash")?;
    Ok(TokenRecord {
        id,
        account_id: row.try_get("account_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        roles: tributary_core::token::roles_from_text(&roles).map_err(StoreError::Corrupt)?,
        hash: TokenHash::from_hex(&hash)
            .ok_or_else(|| StoreError::Corrupt(format!("token {id} has a malformed hash")))?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    })
}

pub(crate) fn account_from_row(row: &AnyRow) -> Result<Account> {
    Ok(Account {
        aid: row.try_get("aid")?,
        name: row.try_get("name")?,
        created: tributary_core::from_micros(row.try_get("created_at")?),
    })
}

pub(crate) fn stream_from_row(row: &AnyRow) -> Result<StreamInfo> {
    Ok(StreamInfo {
        name: row.try_get("name")?,
        count: row.try_get("event_count")?,
        last_received_micros: row.try_get("last_received")?,
    })
}

pub(crate) fn definition_from_row(row: &AnyRow) -> Result<Definition> {
    let kind: String = row.try_get("kind")?;
    Ok(Definition {
        account_id: row.try_get("account_id")?,
        kind: match kind.as_str() {
            "segment" => DefinitionKind::Segment,
            "query" => DefinitionKind::Query,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "unknown definition kind {other:?}"
                )));
            }
        },
        name: row.try_get("name")?,
        text: row.try_get("text")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(crate) fn profile_from_row(row: &AnyRow) -> Result<StoredProfile> {
    Ok(StoredProfile {
        account_id: row.try_get("account_id")?,
        id: row.try_get("id")?,
        state: row.try_get("state")?,
        created_at: row.try_get("created_at")?,
        modified_at: row.try_get("modified_at")?,
        next_check: row.try_get("next_check")?,
    })
}
pub(crate) fn merge_from_row(row: &AnyRow) -> Result<MergeRecord> {
    Ok(MergeRecord {
        winner: row.try_get("winner")?,
        loser: row.try_get("loser")?,
        event_id: row.try_get("event_id")?,
        key: IdentityKey::new(
            row.try_get::<String, _>("field")?,
            row.try_get::<String, _>("value")?,
        ),
        at: row.try_get("at")?,
    })
}

pub(crate) fn event_from_row(row: &AnyRow) -> Result<StoredEvent> {
    Ok(StoredEvent {
        id: row.try_get("id")?,
        stream: row.try_get("stream")?,
        received_at: row.try_get("received_at")?,
        event_time: row.try_get("event_time")?,
        payload: row.try_get("payload")?,
    })
}

fn json_column(text: &str, what: &str, id: i64) -> Result<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("{what} of row {id} is not JSON: {e}")))
}

pub(crate) fn auth_from_row(row: &AnyRow) -> Result<Authorization> {
    let id: i64 = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    let config: String = row.try_get("config")?;
    Ok(Authorization {
        id,
        account_id: row.try_get("account_id")?,
        kind: AuthKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("authorization {id} has kind {kind:?}")))?,
        label: row.try_get("label")?,
        description: row.try_get("description")?,
        config: json_column(&config, "config", id)?,
        sealed_secret: row.try_get("sealed_secret")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(crate) fn job_from_row(row: &AnyRow) -> Result<Job> {
    let id: i64 = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let auth_ids: String = row.try_get("auth_ids")?;
    let text = |column: &str| -> Result<serde_json::Value> {
        let value: String = row.try_get(column)?;
        json_column(&value, column, id)
    };
    Ok(Job {
        id,
        account_id: row.try_get("account_id")?,
        workflow: row.try_get("workflow")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        auth_ids: serde_json::from_str(&auth_ids)
            .map_err(|e| StoreError::Corrupt(format!("auth_ids of job {id}: {e}")))?,
        config: text("config")?,
        state: JobState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("job {id} has state {state:?}")))?,
        progress: text("progress")?,
        metrics: text("metrics")?,
        last_error: row.try_get("last_error")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

pub(crate) fn log_line_from_row(row: &AnyRow) -> Result<JobLogLine> {
    let level: String = row.try_get("level")?;
    Ok(JobLogLine {
        seq: row.try_get("seq")?,
        at: row.try_get("at")?,
        level: LogLevel::parse(&level),
        message: row.try_get("message")?,
    })
}
