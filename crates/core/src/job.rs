//! Authorizations (credentials for outside systems) and jobs (long-running work such as the
//! Braze export), as stored.

use serde::{Deserialize, Serialize};

use crate::{AccountId, Micros};

/// The kinds of authorization (`POST /v2/auth/{type}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuthKind {
    #[serde(rename = "braze")]
    Braze,
    #[serde(rename = "sftp")]
    Sftp,
    #[serde(rename = "sftp-pgp")]
    SftpPgp,
    #[serde(rename = "sftp-managed")]
    SftpManaged,
}

impl AuthKind {
    pub const ALL: [AuthKind; 4] = [
        AuthKind::Braze,
        AuthKind::Sftp,
        AuthKind::SftpPgp,
        AuthKind::SftpManaged,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuthKind::Braze => "braze",
            AuthKind::Sftp => "sftp",
            AuthKind::SftpPgp => "sftp-pgp",
            AuthKind::SftpManaged => "sftp-managed",
        }
    }

    pub fn parse(text: &str) -> Option<AuthKind> {
        AuthKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// An authorization: its public configuration as JSON, and its secret fields sealed (AEAD
/// under the master key; see `crypto`). The store never sees a secret in clear.
#[derive(Debug, Clone)]
pub struct Authorization {
    pub id: i64,
    pub account_id: AccountId,
    pub kind: AuthKind,
    pub label: String,
    pub description: String,
    pub config: serde_json::Value,
    pub sealed_secret: Vec<u8>,
    pub created_at: Micros,
    pub updated_at: Micros,
}

/// States of a job. Running and sleeping jobs are *active*: some node's runner holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Running,
    /// Active but waiting: nothing to do until new work arrives, or backing off.
    Sleeping,
    Paused,
    Failed,
    Completed,
    Killed,
}

impl JobState {
    pub const ACTIVE: [JobState; 2] = [JobState::Running, JobState::Sleeping];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Sleeping => "sleeping",
            JobState::Paused => "paused",
            JobState::Failed => "failed",
            JobState::Completed => "completed",
            JobState::Killed => "killed",
        }
    }

    pub fn parse(text: &str) -> Option<JobState> {
        [
            JobState::Running,
            JobState::Sleeping,
            JobState::Paused,
            JobState::Failed,
            JobState::Completed,
            JobState::Killed,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }

    pub fn is_active(self) -> bool {
        JobState::ACTIVE.contains(&self)
    }

    /// Ended for good: a killed, failed or completed job is never run again (failed ones may
    /// be resumed by hand).
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Killed | JobState::Completed)
    }
}

#[derive(Debug, Clone)]
pub struct NewJob {
    pub account_id: AccountId,
    pub workflow: String,
    pub name: String,
    pub description: String,
    pub auth_ids: Vec<i64>,
    pub config: serde_json::Value,
    pub created_at: Micros,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: i64,
    pub account_id: AccountId,
    pub workflow: String,
    pub name: String,
    pub description: String,
    pub auth_ids: Vec<i64>,
    pub config: serde_json::Value,
    pub state: JobState,
    pub progress: serde_json::Value,
    pub metrics: serde_json::Value,
    pub last_error: Option<String>,
    pub created_at: Micros,
    pub updated_at: Micros,
}

/// What a running job reports back: the store writes it only while the job is still active,
/// so a pause or kill from the API is never overwritten by its runner.
#[derive(Debug, Clone)]
pub struct JobReport {
    pub state: JobState,
    pub progress: serde_json::Value,
    pub metrics: serde_json::Value,
    pub last_error: Option<String>,
    pub at: Micros,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }

    pub fn parse(text: &str) -> LogLevel {
        match text {
            "warn" => LogLevel::Warn,
            "error" => LogLevel::Error,
            _ => LogLevel::Info,
        }
    }
}

/// One line of a job's bounded log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JobLogLine {
    pub seq: i64,
    pub at: Micros,
    pub level: LogLevel,
    pub message: String,
}

/// How far an import job has got into one of its files. A file is known by its name, size and
/// modification time together, so a file replaced under the same name is a new file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportFile {
    pub job_id: i64,
    pub name: String,
    pub size: i64,
    /// Modification time, seconds since the epoch, as the file server reports it.
    pub modified: i64,
    /// Data rows read and settled (stored, or rejected and skipped); a retry resumes after them.
    pub rows_done: i64,
    pub rejected: i64,
    /// Every row of the file is settled.
    pub done: bool,
    pub updated_at: Micros,
}
