//! Storage. One [`Store`], implemented once ([`SqlStore`]) over embedded SQLite (the default)
//! and PostgreSQL (scale-out: several `serve` processes on one database). Everything above this
//! crate talks to `Arc<dyn Store>` and never learns which backend it runs on.
//!
//! `Store` is five traits, one per domain, each implemented in one file of `sql/`:
//! [`AccountStore`] (accounts, tokens, definitions, leases), [`EventLog`] (raw events and
//! stream counters), [`ProfileStore`] (the profile pipeline's state), [`AudienceStore`]
//! (members and the membership log) and [`JobStore`] (authorizations, jobs, what exports
//! sent). What differs between the databases is in `dialect.rs`; the SQL is written once
//! (numbered `$n` placeholders work on both).
//!
//! Invariants:
//! - Every method is one transaction: it either fully happens or not at all (except
//!   `erase_profile`, two transactions in a safe order: see `sql/profiles.rs`).
//! - Instants are stored as microseconds since the epoch (`BIGINT`/`INTEGER`) on both backends.
//! - Event ids increase in commit order within an account and stream, on both backends, so
//!   consumers can tail a stream by id (see `dialect.rs` for how that holds across nodes).
//! - On SQLite the raw event log lives in a file of its own (`events.db`) with its own writer,
//!   so an acknowledged event never waits for a profile, membership or job commit. The
//!   pipeline's cursor lives with the state it produced (`tributary.db`): a crash anywhere
//!   loses nothing and applies nothing twice.

mod dialect;
mod membership;
mod migrate;
mod rows;
mod sql;
#[cfg(feature = "testing")]
pub mod testing;
mod writer;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use tributary_core::{
    Account, AccountId, AudienceVersion, Authorization, Definition, DefinitionKind, IdentityKey,
    ImportFile, Job, JobLogLine, JobReport, JobState, LogEntry, LogLevel, MergeRecord, Micros,
    NewEvent, NewJob, NewToken, PipelineCommit, StoredEvent, StoredProfile, StreamInfo, TokenHash,
    TokenRecord,
};

pub use sql::SqlStore;
pub use sql::events::MINUTES_KEPT_SECS;
pub use sql::jobs::JOB_MINUTES_KEPT_SECS;
pub use writer::{EventWriter, WriteError, WriterConfig};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("schema migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        source: sqlx::Error,
    },
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("the database at {0} was written by a newer Tributary (schema version {1})")]
    TooNew(String, i64),
    #[error("unsupported database URL: {0}")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// An error that may pass if the same call is made again shortly: the pool had no free
    /// connection in time, the connection broke, the database was busy or locked, or it
    /// asked for a retry (serialization failure, deadlock, shutting down, too many clients).
    pub fn is_transient(&self) -> bool {
        let StoreError::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
            sqlx::Error::Database(db) => db.code().is_some_and(|code| {
                // SQLite: BUSY, LOCKED, BUSY_RECOVERY, BUSY_SNAPSHOT. PostgreSQL: class 08
                // (connection), 40001, 40P01, 53300, 57P01-57P03.
                matches!(
                    code.as_ref(),
                    "5" | "6"
                        | "261"
                        | "517"
                        | "40001"
                        | "40P01"
                        | "53300"
                        | "57P01"
                        | "57P02"
                        | "57P03"
                ) || code.starts_with("08")
            }),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What `bootstrap` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootstrap {
    /// The store was empty: account 1 and the install admin token now exist.
    Created { aid: AccountId },
    /// Accounts already existed; nothing changed.
    AlreadyInitialised,
}

/// Everything Tributary stores. Implemented by [`SqlStore`]; see the crate docs.
pub trait Store: AccountStore + EventLog + ProfileStore + AudienceStore + JobStore {}

impl<T: AccountStore + EventLog + ProfileStore + AudienceStore + JobStore> Store for T {}

/// Accounts, their tokens and definitions, and leases.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// The database's settings that make an acknowledged write less than durable
    /// (PostgreSQL's `fsync` or `synchronous_commit` off), as `name = value`; empty when every
    /// commit reaches the disk before it returns.
    async fn unsafe_durability(&self) -> Result<Vec<String>>;

    /// On an empty store, creates account 1 (named `account_name`) and the install-wide admin
    /// token, atomically, and safely when several processes start at once.
    async fn bootstrap(
        &self,
        account_name: &str,
        admin: &NewToken,
        now: Micros,
    ) -> Result<Bootstrap>;

    async fn create_account(&self, name: &str, now: Micros) -> Result<Account>;
    async fn account(&self, aid: AccountId) -> Result<Option<Account>>;

    async fn create_token(&self, token: &NewToken) -> Result<TokenRecord>;
    /// Tokens of one account, oldest first.
    async fn tokens(&self, aid: AccountId) -> Result<Vec<TokenRecord>>;
    /// Deletes a token of `aid`, and its console sessions with it; false when no such token
    /// exists in that account.
    async fn delete_token(&self, aid: AccountId, id: i64) -> Result<bool>;
    async fn token_by_hash(&self, hash: &TokenHash) -> Result<Option<TokenRecord>>;

    /// Opens a web console session (its secret's hash) for a token until `expires_at`;
    /// sessions already expired at `now` are removed on the way.
    async fn create_session(
        &self,
        hash: &TokenHash,
        token_id: i64,
        now: Micros,
        expires_at: Micros,
    ) -> Result<()>;
    /// The token a live session acts for: none once the session expired or was closed, or
    /// its token was deleted.
    async fn session_token(&self, hash: &TokenHash, now: Micros) -> Result<Option<TokenRecord>>;
    /// Closes a session (sign-out); closing one that is gone is not an error.
    async fn delete_session(&self, hash: &TokenHash) -> Result<()>;

    async fn account_ids(&self) -> Result<Vec<AccountId>>;

    /// Creates or replaces a definition by (account, kind, name); `created_at` of an existing
    /// one is kept. Returns the stored definition.
    async fn put_definition(&self, def: &Definition) -> Result<Definition>;
    /// Definitions of one kind, by name.
    async fn definitions(&self, aid: AccountId, kind: DefinitionKind) -> Result<Vec<Definition>>;
    async fn definition(
        &self,
        aid: AccountId,
        kind: DefinitionKind,
        name: &str,
    ) -> Result<Option<Definition>>;
    /// False when there was no such definition.
    async fn delete_definition(
        &self,
        aid: AccountId,
        kind: DefinitionKind,
        name: &str,
    ) -> Result<bool>;

    // ---- leases: one holder at a time per name, across processes ----

    /// Takes or renews the lease `name` for `holder` until `until`; false when another holder
    /// has it and it has not expired at `now`.
    async fn try_lease(&self, name: &str, holder: &str, now: Micros, until: Micros)
    -> Result<bool>;
    async fn release_lease(&self, name: &str, holder: &str) -> Result<()>;
}

/// The raw events and the per-stream counters. On SQLite, a database file of its own with its
/// own writer (see the crate docs).
#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends events (any accounts and streams) in one transaction and updates the per-stream
    /// counters. Called by [`EventWriter`], which groups concurrent requests into one call.
    /// Events with a `dedup_key` already held by their stream (stored earlier, or earlier in
    /// the same call) are not stored; their indices are returned, ascending.
    async fn append_events(&self, events: &[NewEvent]) -> Result<Vec<usize>>;
    /// Creates the stream (with no events) if needed, and sets its settings.
    async fn set_stream_settings(
        &self,
        aid: AccountId,
        stream: &str,
        settings: &tributary_core::StreamSettings,
    ) -> Result<()>;
    async fn streams(&self, aid: AccountId) -> Result<Vec<StreamInfo>>;
    /// Events stored per minute and stream from the minute of `since` on, as
    /// `(minute, stream, events)` ordered by minute then stream; minutes with none are absent.
    /// Counted in each append's transaction; kept for [`MINUTES_KEPT_SECS`].
    async fn events_per_minute(
        &self,
        aid: AccountId,
        since: Micros,
    ) -> Result<Vec<(Micros, String, i64)>>;
    /// The most recent events of a stream, newest first.
    async fn recent_events(
        &self,
        aid: AccountId,
        stream: &str,
        limit: u32,
    ) -> Result<Vec<StoredEvent>>;

    /// The account's events after `after`, all streams, in id order.
    async fn events_after(
        &self,
        aid: AccountId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>>;

    /// Appends a batch an import read from a file and records how far into the file the
    /// import is, in one transaction: a retry resumes after `file.rows_done`, so no row is
    /// stored twice and none is lost.
    /// With `rows` (an import with `diff`), the batch's row fingerprints are recorded under
    /// the file's generation in the same transaction; once `file.done`, the job's other
    /// generations are dropped, so this file becomes the one the next is compared with.
    async fn append_import_batch(
        &self,
        events: &[NewEvent],
        file: &ImportFile,
        rows: Option<RowHashes<'_>>,
    ) -> Result<()>;
    /// Every file an import job has started or finished.
    async fn import_files(&self, job_id: i64) -> Result<Vec<ImportFile>>;
    /// Which of `hashes` the job recorded under `generation` (a file imported before).
    async fn import_rows_seen(
        &self,
        job_id: i64,
        generation: i64,
        hashes: &[i64],
    ) -> Result<Vec<i64>>;
}

/// The fingerprints of a batch's rows, and the file (`generation`) they belong to.
#[derive(Debug, Clone, Copy)]
pub struct RowHashes<'a> {
    pub generation: i64,
    pub hashes: &'a [i64],
}

/// The profile pipeline's state: profiles, identities, merges, and its cursor.
#[async_trait]
pub trait ProfileStore: Send + Sync + 'static {
    /// The id of the last event the pipeline applied for this account (0 before the first).
    async fn pipeline_cursor(&self, aid: AccountId) -> Result<i64>;
    /// Events received but not yet applied by the pipeline, per stream of the account (streams
    /// with none are left out), by stream name.
    async fn pipeline_lag(&self, aid: AccountId) -> Result<Vec<(String, i64)>>;
    /// The profiles the given identity values belong to (absent keys are left out). Like
    /// [`Store::load_profiles`], it reads through the read pool: on SQLite it never queues
    /// behind the pipeline's commits (so the pipeline can read its next batch while one
    /// commits, and the API's entity lookups never wait on the writer), and it sees every
    /// transaction committed before it began.
    async fn lookup_identities(
        &self,
        aid: AccountId,
        keys: &[IdentityKey],
    ) -> Result<Vec<(IdentityKey, i64)>>;
    async fn load_profiles(&self, aid: AccountId, ids: &[i64]) -> Result<Vec<StoredProfile>>;
    /// Applies a batch atomically; `Ok(false)` (and nothing changed) when the cursor is no
    /// longer `expected_cursor` because another node got there first.
    async fn commit_pipeline(&self, aid: AccountId, commit: &PipelineCommit) -> Result<bool>;
    async fn profile_identities(&self, aid: AccountId, profile_id: i64)
    -> Result<Vec<IdentityKey>>;
    async fn profile_merges(&self, aid: AccountId, profile_id: i64) -> Result<Vec<MergeRecord>>;
    /// Deletes every profile, identity and merge of the account and resets its cursor, so the
    /// pipeline rebuilds from the raw events. Memberships stay (a rebuild must not make every
    /// member leave and come back); the audiences' versions are forgotten, so every audience
    /// is recomputed once the rebuild has caught up.
    async fn reset_profiles(&self, aid: AccountId) -> Result<()>;
    /// Erases a person: the profile, its identities, merges and memberships (logging the
    /// exits at `at`), and the given raw events.
    async fn erase_profile(
        &self,
        aid: AccountId,
        profile_id: i64,
        event_ids: &[i64],
        at: Micros,
    ) -> Result<()>;
    async fn identity_blocklist(&self, aid: AccountId) -> Result<Vec<String>>;

    /// The account's profiles with ids after `after`, in id order.
    async fn scan_profiles(
        &self,
        aid: AccountId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredProfile>>;
    /// Profiles whose `next_check` is at or before `now`, soonest first.
    async fn due_profiles(
        &self,
        aid: AccountId,
        now: Micros,
        limit: u32,
    ) -> Result<Vec<StoredProfile>>;
    async fn set_identity_blocklist(&self, aid: AccountId, values: &[String]) -> Result<()>;
    /// Which of these profiles were erased on request (`erase_profile`), as opposed to merged
    /// away or reset by a rebuild.
    async fn erased_profiles(&self, aid: AccountId, profile_ids: &[i64]) -> Result<Vec<i64>>;
}

/// Audience versions, consumers' log positions, members and the membership log (stored as
/// bitmaps: see `membership.rs`). Members and log change only inside the pipeline's commits,
/// an erasure, and [`AudienceStore::drop_audience`].
#[async_trait]
pub trait AudienceStore: Send + Sync + 'static {
    async fn audience_versions(&self, aid: AccountId) -> Result<Vec<AudienceVersion>>;
    async fn set_audience_version(&self, aid: AccountId, version: &AudienceVersion) -> Result<()>;
    /// The last log position a consumer committed (0 before its first).
    async fn log_position(&self, aid: AccountId, consumer: &str) -> Result<i64>;
    async fn set_log_position(&self, aid: AccountId, consumer: &str, position: i64) -> Result<()>;
    /// The members of each of `segments` (in their order) whose profile id is in
    /// `(after, upto]` (no upper bound when `upto` is `None`), ascending.
    async fn members_between(
        &self,
        aid: AccountId,
        segments: &[String],
        after: i64,
        upto: Option<i64>,
    ) -> Result<Vec<Vec<i64>>>;
    /// Removes an audience's members, logging each exit, and forgets its version. Returns how
    /// many members left.
    async fn drop_audience(&self, aid: AccountId, segment: &str, at: Micros) -> Result<u64>;
    async fn audience_size(&self, aid: AccountId, segment: &str) -> Result<u64>;
    /// Member profile ids after `after`, ascending (keyset pagination: stable while members
    /// come and go).
    async fn audience_members(
        &self,
        aid: AccountId,
        segment: &str,
        after: i64,
        limit: u32,
    ) -> Result<Vec<i64>>;
    /// The membership log after `after`, for one audience or all: one entry per profile,
    /// at most `limit`.
    async fn membership_log(
        &self,
        aid: AccountId,
        segment: Option<&str>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<LogEntry>>;
    /// The last sequence number of the account's membership log (0 when empty).
    async fn membership_head(&self, aid: AccountId) -> Result<i64>;
    /// Records the sizes of audiences on `day` (days since 1970-01-01, UTC), replacing any
    /// recorded earlier that day: the last sample of a day is its size.
    async fn record_audience_sizes(
        &self,
        aid: AccountId,
        day: i64,
        sizes: &[(String, u64)],
    ) -> Result<()>;
    /// An audience's recorded size per day from `since_day` on, as `(day, size)` ascending.
    async fn audience_size_history(
        &self,
        aid: AccountId,
        segment: &str,
        since_day: i64,
    ) -> Result<Vec<(i64, u64)>>;
}

/// Authorizations (secrets sealed by the caller), jobs, their logs, and what exports sent.
#[async_trait]
pub trait JobStore: Send + Sync + 'static {
    /// Stores a new authorization (its `id` and `sealed_secret` are ignored) and returns it
    /// with its id. `seal` makes the sealed secret for the row's id, in the same transaction,
    /// so the secret can be bound to its row (it must not open anywhere else).
    async fn create_authorization(
        &self,
        auth: &Authorization,
        seal: &(dyn Fn(i64) -> Vec<u8> + Send + Sync),
    ) -> Result<Authorization>;
    async fn authorizations(&self, aid: AccountId) -> Result<Vec<Authorization>>;
    async fn authorization(&self, aid: AccountId, id: i64) -> Result<Option<Authorization>>;
    /// Replaces label, description, config and secret; false when there is no such row.
    async fn update_authorization(&self, auth: &Authorization) -> Result<bool>;
    /// Deletes it, and in the same transaction fails every running, sleeping or paused job
    /// that uses it ("authorization N was deleted"). False when there is no such row.
    async fn delete_authorization(&self, aid: AccountId, id: i64, at: Micros) -> Result<bool>;

    // ---- jobs ----

    /// A new job, in state running.
    async fn create_job(&self, job: &NewJob) -> Result<Job>;
    async fn jobs(&self, aid: AccountId) -> Result<Vec<Job>>;
    async fn job(&self, aid: AccountId, id: i64) -> Result<Option<Job>>;
    /// Running and sleeping jobs of every account: what the runners pick work from.
    async fn active_jobs(&self) -> Result<Vec<Job>>;
    /// Moves a job from one of `from` to `to` (compare-and-set); keeps `last_error` when
    /// `None`. False when the job is not in one of `from`.
    async fn set_job_state(
        &self,
        aid: AccountId,
        id: i64,
        from: &[JobState],
        to: JobState,
        last_error: Option<&str>,
        at: Micros,
    ) -> Result<bool>;
    /// A runner's report; written only while the job is active (so a pause or kill from the
    /// API wins), and then also as the metrics of the report's minute (`job_minutes`). False
    /// when the job is no longer active: its runner must stop.
    async fn report_job(&self, id: i64, report: &JobReport) -> Result<bool>;
    /// Appends a line to the job's log, keeping only the newest `keep` lines.
    async fn append_job_log(
        &self,
        job_id: i64,
        level: LogLevel,
        message: &str,
        at: Micros,
        keep: i64,
    ) -> Result<()>;
    /// The newest `limit` lines, oldest first.
    async fn job_logs(&self, job_id: i64, limit: u32) -> Result<Vec<JobLogLine>>;
    /// The job's metrics as they stood at its last report of each minute, from the minute of
    /// `since` on, as `(minute, metrics)` ascending, preceded by the last recorded minute
    /// before it (where the window's first increase is measured from), if any. Every report
    /// that is written records its minute (see `report_job`); [`JOB_MINUTES_KEPT_SECS`] of
    /// minutes are kept per job.
    async fn job_minutes(
        &self,
        job_id: i64,
        since: Micros,
    ) -> Result<Vec<(Micros, serde_json::Value)>>;
    /// The progress and metrics of a run that stopped (pause, kill), whatever the job's
    /// state now: a stopped run's last accounting is kept. The state is left as it is.
    async fn save_stopped_run(
        &self,
        id: i64,
        progress: &serde_json::Value,
        metrics: &serde_json::Value,
        at: Micros,
    ) -> Result<()>;

    // ---- what an export sent ----

    /// Records the identifier each profile was sent under by export job `job_id`.
    async fn remember_export_identifiers(&self, job_id: i64, sent: &[(i64, String)]) -> Result<()>;
    /// The identifiers export `job_id` sent these profiles under (profiles never sent are
    /// absent).
    async fn export_identifiers(
        &self,
        job_id: i64,
        profile_ids: &[i64],
    ) -> Result<Vec<(i64, String)>>;
    async fn forget_export_identifiers(&self, job_id: i64, profile_ids: &[i64]) -> Result<()>;
}

/// Opens the store a `serve` process was configured with: PostgreSQL when `database_url` is a
/// `postgres://` URL, otherwise `tributary.db` (and its event log, `events.db`) in `data_dir`.
/// Runs pending migrations.
pub async fn open(database_url: Option<&str>, data_dir: &Path) -> Result<Arc<dyn Store>> {
    match database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Arc::new(SqlStore::postgres(url).await?))
        }
        Some(url) if url.starts_with("sqlite:") => {
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            Ok(Arc::new(SqlStore::sqlite(Path::new(path)).await?))
        }
        Some(other) => Err(StoreError::UnsupportedUrl(redact_url(other))),
        None => Ok(Arc::new(
            SqlStore::sqlite(&data_dir.join("tributary.db")).await?,
        )),
    }
}

/// A database URL fit for a log line: the password, if any, replaced.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_string();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("mysql://x"), "mysql://x");
    }
}
