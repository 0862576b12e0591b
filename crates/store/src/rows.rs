//! Rows to values, for every query that returns them. Columns are read by name; the types
//! used (BIGINT, TEXT, BLOB/BYTEA) decode the same way on both backends.

use sqlx::Row;
use sqlx::any::AnyRow;
use tributary_core::{
    Account, AuthKind, Authorization, Definition, DefinitionKind, IdentityKey, ImportFile, Job,
    JobLogLine, JobState, LogLevel, MergeRecord, StoredEvent, StoredProfile, StreamInfo, TokenHash,
    TokenRecord,
};

use crate::{Result, StoreError};

/// `record!(row => Type [a, b] { c: expr })`: a `Type` whose fields `a` and `b` are read from
/// the row's columns of the same names, and whose other fields are given.
macro_rules! record {
    ($row:ident => $ty:ident [$($column:ident),* $(,)?] $({ $($field:ident $(: $value:expr)?),* $(,)? })?) => {
        $ty {
            $($column: $row.try_get(stringify!($column))?,)*
            $($($field $(: $value)?,)*)?
        }
    };
}

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
    let roles = tributary_core::token::roles_from_text(&roles).map_err(StoreError::Corrupt)?;
    let hash = TokenHash::from_hex(&hash)
        .ok_or_else(|| StoreError::Corrupt(format!("token {id} has a malformed hash")))?;
    Ok(
        record!(row => TokenRecord [account_id, name, description, created_at, expires_at] { id, roles, hash }),
    )
}

pub(crate) fn account_from_row(row: &AnyRow) -> Result<Account> {
    Ok(Account {
        aid: row.try_get("aid")?,
        name: row.try_get("name")?,
        created: tributary_core::from_micros(row.try_get("created_at")?),
    })
}

pub(crate) fn stream_from_row(row: &AnyRow) -> Result<StreamInfo> {
    let count = row.try_get("event_count")?;
    let last_received_micros = row.try_get("last_received")?;
    let settings: String = row.try_get("settings")?;
    let settings = serde_json::from_str(&settings)
        .map_err(|e| StoreError::Corrupt(format!("a stream's settings: {e}")))?;
    Ok(record!(row => StreamInfo [name] { count, last_received_micros, settings }))
}

pub(crate) fn definition_from_row(row: &AnyRow) -> Result<Definition> {
    let kind: String = row.try_get("kind")?;
    let kind = match kind.as_str() {
        "segment" => DefinitionKind::Segment,
        "query" => DefinitionKind::Query,
        other => {
            return Err(StoreError::Corrupt(format!(
                "unknown definition kind {other:?}"
            )));
        }
    };
    Ok(record!(row => Definition [account_id, name, text, created_at, updated_at] { kind }))
}

pub(crate) fn profile_from_row(row: &AnyRow) -> Result<StoredProfile> {
    Ok(record!(row => StoredProfile [account_id, id, state, created_at, modified_at, next_check]))
}
pub(crate) fn merge_from_row(row: &AnyRow) -> Result<MergeRecord> {
    let key = IdentityKey::new(
        row.try_get::<String, _>("field")?,
        row.try_get::<String, _>("value")?,
    );
    Ok(record!(row => MergeRecord [winner, loser, event_id, at] { key }))
}

pub(crate) fn event_from_row(row: &AnyRow) -> Result<StoredEvent> {
    Ok(record!(row => StoredEvent [id, stream, received_at, event_time, payload]))
}

fn json_column(text: &str, what: &str, id: i64) -> Result<serde_json::Value> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("{what} of row {id} is not JSON: {e}")))
}

pub(crate) fn auth_from_row(row: &AnyRow) -> Result<Authorization> {
    let id: i64 = row.try_get("id")?;
    let kind: String = row.try_get("kind")?;
    let config: String = row.try_get("config")?;
    let kind = AuthKind::parse(&kind)
        .ok_or_else(|| StoreError::Corrupt(format!("authorization {id} has kind {kind:?}")))?;
    let config = json_column(&config, "config", id)?;
    Ok(record!(row => Authorization
        [account_id, label, description, sealed_secret, created_at, updated_at]
        { id, kind, config }))
}

pub(crate) fn job_from_row(row: &AnyRow) -> Result<Job> {
    let id: i64 = row.try_get("id")?;
    let state: String = row.try_get("state")?;
    let auth_ids: String = row.try_get("auth_ids")?;
    let text = |column: &str| -> Result<serde_json::Value> {
        let value: String = row.try_get(column)?;
        json_column(&value, column, id)
    };
    let auth_ids = serde_json::from_str(&auth_ids)
        .map_err(|e| StoreError::Corrupt(format!("auth_ids of job {id}: {e}")))?;
    let state = JobState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("job {id} has state {state:?}")))?;
    Ok(record!(row => Job
        [account_id, workflow, name, description, last_error, created_at, updated_at]
        { id, auth_ids, state, config: text("config")?, progress: text("progress")?,
          metrics: text("metrics")? }))
}

pub(crate) fn import_file_from_row(row: &AnyRow) -> Result<ImportFile> {
    let done: i64 = row.try_get("done")?;
    Ok(record!(row => ImportFile
        [job_id, name, size, modified, rows_done, rejected, updated_at] { done: done != 0 }))
}

pub(crate) fn log_line_from_row(row: &AnyRow) -> Result<JobLogLine> {
    let level: String = row.try_get("level")?;
    Ok(record!(row => JobLogLine [seq, at, message] { level: LogLevel::parse(&level) }))
}
