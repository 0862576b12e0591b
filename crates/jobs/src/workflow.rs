//! What a kind of job is (`Workflow`) and what a running job gets to work with
//! (`JobContext`): its record, its opened credentials, a stop signal, and a way to report
//! progress and write its log.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::watch;
use tributary_core::{AccountId, AuthKind, Job, JobReport, JobState, LogLevel, Micros};
use tributary_store::Store;

use crate::authorization::Secrets;
use crate::now;

/// How many lines a job's log keeps.
pub const LOG_LINES_KEPT: i64 = 1_000;

/// How a run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    /// Cannot proceed: the job goes to `failed` with this reason.
    Failed(String),
    /// Asked to stop (pause, kill, lost lease, shutdown): the job's state is left as is.
    Stopped,
}

/// An authorization as a running job sees it: public config and secrets in clear.
pub struct Credentials {
    pub id: i64,
    pub kind: AuthKind,
    pub config: Value,
    pub secrets: Secrets,
}

/// Why a workflow refused or could not check a job.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// The request is wrong (its config, or what the config names): the message says what
    /// and where, starting with the field (`config.segment_ids: ...`). A 400.
    #[error("{0}")]
    Invalid(String),
    /// Reading the store failed while checking or estimating: the request may be fine.
    #[error(transparent)]
    Store(#[from] tributary_store::StoreError),
}

#[async_trait]
pub trait Workflow: Send + Sync + 'static {
    /// The name in `POST /v2/job/{workflow}`.
    fn name(&self) -> &'static str;
    /// The kinds of authorization the job accepts (it takes exactly one); the first is the
    /// one error messages name first.
    fn auth_kinds(&self) -> &'static [AuthKind];
    /// Checks a new job's config against the account (the audiences it names exist, ...);
    /// the error names the field.
    async fn validate(
        &self,
        store: &Arc<dyn Store>,
        aid: AccountId,
        config: &Value,
    ) -> Result<(), WorkflowError>;
    /// What a run would do, without doing it (`dryrun` on creation).
    async fn dryrun(
        &self,
        store: &Arc<dyn Store>,
        aid: AccountId,
        config: &Value,
    ) -> Result<Value, WorkflowError>;
    async fn run(&self, ctx: JobContext) -> Outcome;
}

/// The workflows a process knows, by name.
#[derive(Default, Clone)]
pub struct Registry(HashMap<&'static str, Arc<dyn Workflow>>);

impl Registry {
    pub fn with(mut self, workflow: Arc<dyn Workflow>) -> Registry {
        self.0.insert(workflow.name(), workflow);
        self
    }

    pub fn get(&self, name: &str) -> Option<Arc<dyn Workflow>> {
        self.0.get(name).cloned()
    }

    pub fn names(&self) -> Vec<&'static str> {
        let mut names: Vec<_> = self.0.keys().copied().collect();
        names.sort_unstable();
        names
    }
}

/// Writes a line to a job's bounded log and to the process log. A failure to write is logged,
/// not fatal: the log is for people; what a job committed is what matters.
pub async fn job_log(store: &dyn Store, job: i64, level: LogLevel, message: &str) {
    match level {
        LogLevel::Error => tracing::error!(job, "{message}"),
        LogLevel::Warn => tracing::warn!(job, "{message}"),
        LogLevel::Info => tracing::info!(job, "{message}"),
    }
    if let Err(e) = store
        .append_job_log(job, level, message, now(), LOG_LINES_KEPT)
        .await
    {
        tracing::warn!(job, error = %e, "could not write the job log");
    }
}

/// Why the runner asks a run to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Keep going.
    No,
    /// Paused, killed or shutting down: the run may write its last accounting.
    Requested,
    /// The node no longer holds the job's lease: another node may run it now, so this run
    /// writes nothing more.
    LeaseLost,
}

pub struct JobContext {
    pub job: Job,
    pub store: Arc<dyn Store>,
    pub credentials: Vec<Credentials>,
    /// Base URLs beyond Braze's named instances that may receive a key.
    pub allowed_urls: tributary_core::braze::UrlAllowList,
    pub(crate) stop: watch::Receiver<Stop>,
}

impl JobContext {
    pub fn stop_requested(&self) -> bool {
        *self.stop.borrow() != Stop::No
    }

    /// The lease was lost: nothing may be written for this job any more.
    pub fn lease_lost(&self) -> bool {
        *self.stop.borrow() == Stop::LeaseLost
    }

    /// Resolves when the runner asks the job to stop.
    pub async fn stopped(&self) {
        let mut stop = self.stop.clone();
        let _ = stop.wait_for(|s| *s != Stop::No).await;
    }

    /// Writes a line to the job's log (and to the process log): see [`job_log`].
    pub async fn log(&self, level: LogLevel, message: &str) {
        job_log(self.store.as_ref(), self.job.id, level, message).await;
    }

    /// Reports state, progress and metrics. `Ok(false)`: the job is no longer active (paused
    /// or killed from the API); stop.
    pub async fn report(
        &self,
        state: JobState,
        progress: Value,
        metrics: Value,
        last_error: Option<String>,
    ) -> Result<bool, tributary_store::StoreError> {
        if self.lease_lost() {
            return Ok(false);
        }
        let report = JobReport {
            state,
            progress,
            metrics,
            last_error,
            at: now(),
        };
        self.store.report_job(self.job.id, &report).await
    }

    /// The last accounting of a run that was asked to stop: its progress and metrics are
    /// written even though the job is no longer active (a pause or kill already changed its
    /// state), unless the lease was lost (then another node owns the job's record).
    pub async fn report_stopped(
        &self,
        progress: Value,
        metrics: Value,
    ) -> Result<(), tributary_store::StoreError> {
        if self.lease_lost() {
            return Ok(());
        }
        self.store
            .save_stopped_run(self.job.id, &progress, &metrics, now())
            .await
    }

    pub fn now(&self) -> Micros {
        now()
    }
}
