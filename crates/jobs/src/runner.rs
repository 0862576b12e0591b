//! The runner: one per process. It picks active jobs from the store, takes each one's lease
//! (`job:<id>`, so one runner at a time runs a job, across processes), and supervises the
//! run: renews the lease, watches the job's state (pause and kill from the API), and records
//! how the run ended. A node that dies stops renewing; another takes the job over when the
//! lease expires, and the job resumes from what it committed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tributary_core::crypto::MasterKey;
use tributary_core::{Job, JobState, LogLevel};
use tributary_store::Store;

use tributary_core::braze::UrlAllowList;

use crate::authorization;
use crate::now;
use crate::workflow::{Credentials, JobContext, Outcome, Registry, Stop};

#[derive(Debug, Clone)]
pub struct RunnerConfig {
    /// How long a node's hold on a job lasts without renewal.
    pub lease_ttl: Duration,
    /// How often the runner looks for jobs to run (creation wakes it sooner).
    pub poll: Duration,
    /// Base URLs beyond Braze's named instances that may receive an API key
    /// (`TRIBUTARY_BRAZE_ALLOW_URLS`); checked again when a run opens its authorization.
    pub allowed_urls: UrlAllowList,
}

impl Default for RunnerConfig {
    fn default() -> Self {
        RunnerConfig {
            lease_ttl: Duration::from_secs(15),
            poll: Duration::from_secs(1),
            allowed_urls: UrlAllowList::default(),
        }
    }
}

/// How long a run asked to stop may take to write its last accounting.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Raises a run's stop signal to `to` (a lost lease outranks a request); whether it changed.
fn ask(current: &mut Stop, to: Stop) -> bool {
    let rank = |s: Stop| match s {
        Stop::No => 0,
        Stop::Requested => 1,
        Stop::LeaseLost => 2,
    };
    if rank(to) > rank(*current) {
        *current = to;
        true
    } else {
        false
    }
}

pub struct Runner {
    store: Arc<dyn Store>,
    key: Arc<MasterKey>,
    registry: Registry,
    config: RunnerConfig,
    node: String,
    running: Mutex<HashMap<i64, watch::Sender<Stop>>>,
    wake: Notify,
}

fn lease_name(job: i64) -> String {
    format!("job:{job}")
}

impl Runner {
    pub fn new(
        store: Arc<dyn Store>,
        key: Arc<MasterKey>,
        registry: Registry,
        config: RunnerConfig,
    ) -> Arc<Runner> {
        Arc::new(Runner {
            store,
            key,
            registry,
            config,
            node: format!("jobs-{:016x}", rand::random::<u64>()),
            running: Mutex::new(HashMap::new()),
            wake: Notify::new(),
        })
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn master_key(&self) -> &MasterKey {
        &self.key
    }

    /// The URLs beyond Braze's named instances that Braze authorizations may point at.
    pub fn allowed_urls(&self) -> &tributary_core::braze::UrlAllowList {
        &self.config.allowed_urls
    }

    /// Look for work now (a job was created or resumed).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Whether this node is running the job now (from its pick-up until its run has ended
    /// and everything it started is gone).
    pub fn is_running(&self, job: i64) -> bool {
        self.running().contains_key(&job)
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<i64, watch::Sender<Stop>>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs until `shutdown`, then asks every job to stop and waits (bounded) for them.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(e) = self.pick_up().await {
                tracing::warn!(error = %e, "job runner: listing jobs failed; retrying");
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll) => {}
            }
        }
        for stop in self.running().values() {
            stop.send_if_modified(|s| ask(s, Stop::Requested));
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.running().is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn pick_up(self: &Arc<Self>) -> Result<(), tributary_store::StoreError> {
        for job in self.store.active_jobs().await? {
            if self.running().contains_key(&job.id) {
                continue;
            }
            let at = now();
            let until = at + self.config.lease_ttl.as_micros() as i64;
            if !self
                .store
                .try_lease(&lease_name(job.id), &self.node, at, until)
                .await?
            {
                continue;
            }
            let (stop_tx, stop_rx) = watch::channel(Stop::No);
            self.running().insert(job.id, stop_tx);
            let runner = self.clone();
            tokio::spawn(async move {
                let id = job.id;
                runner.supervise(job, stop_rx).await;
                runner.running().remove(&id);
                let _ = runner
                    .store
                    .release_lease(&lease_name(id), &runner.node)
                    .await;
            });
        }
        Ok(())
    }

    async fn supervise(self: &Arc<Self>, job: Job, stop: watch::Receiver<Stop>) {
        let (aid, id) = (job.account_id, job.id);
        let Some(workflow) = self.registry.get(&job.workflow) else {
            self.fail(&job, &format!("unknown workflow {:?}", job.workflow))
                .await;
            return;
        };
        let credentials = match self.open_credentials(&job).await {
            Ok(c) => c,
            Err(reason) => {
                self.fail(&job, &reason).await;
                return;
            }
        };
        tracing::info!(job = id, workflow = %job.workflow, node = %self.node, "job started");
        let ctx = JobContext {
            job: job.clone(),
            store: self.store.clone(),
            credentials,
            allowed_urls: self.config.allowed_urls.clone(),
            stop,
        };
        let run = workflow.run(ctx);
        tokio::pin!(run);
        let renew_every = (self.config.lease_ttl / 3).max(Duration::from_millis(100));
        // The state is checked more often than the lease is renewed, so a pause or kill
        // takes effect within half a second.
        let check_every = renew_every.min(Duration::from_millis(500));
        let mut last_renewal = tokio::time::Instant::now();
        // Once asked to stop, a run has this long to wind down; then it is dropped, which
        // aborts everything it started (its requests in flight are held in a JoinSet).
        let mut stop_deadline: Option<tokio::time::Instant> = None;
        let outcome = loop {
            tokio::select! {
                outcome = &mut run => break outcome,
                _ = tokio::time::sleep(check_every) => {}
            }
            if stop_deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                tracing::warn!(
                    job = id,
                    "job runner: the run did not stop in time; dropped"
                );
                break Outcome::Stopped;
            }
            let keep_going = match self.store.job(aid, id).await {
                Ok(Some(current)) => current.state.is_active(),
                Ok(None) => false,
                Err(e) => {
                    tracing::warn!(job = id, error = %e, "job runner: state check failed");
                    true
                }
            };
            let mut lease_held = true;
            if last_renewal.elapsed() >= renew_every {
                let at = now();
                let until = at + self.config.lease_ttl.as_micros() as i64;
                lease_held = self
                    .store
                    .try_lease(&lease_name(id), &self.node, at, until)
                    .await
                    .unwrap_or(true);
                last_renewal = tokio::time::Instant::now();
            }
            if !keep_going || !lease_held {
                let reason = if lease_held {
                    Stop::Requested
                } else {
                    tracing::warn!(job = id, "job runner: lost the job's lease; stopping");
                    Stop::LeaseLost
                };
                if let Some(stop) = self.running().get(&id) {
                    stop.send_if_modified(|s| ask(s, reason));
                }
                // A lost lease leaves no grace: another node may be running the job already.
                let grace = if lease_held {
                    STOP_GRACE
                } else {
                    Duration::ZERO
                };
                let deadline = tokio::time::Instant::now() + grace;
                stop_deadline = Some(stop_deadline.map_or(deadline, |d| d.min(deadline)));
            }
        };
        match outcome {
            Outcome::Completed => {
                let _ = self
                    .store
                    .set_job_state(aid, id, &JobState::ACTIVE, JobState::Completed, None, now())
                    .await;
                tracing::info!(job = id, "job completed");
            }
            Outcome::Failed(reason) => self.fail(&job, &reason).await,
            Outcome::Stopped => tracing::info!(job = id, "job stopped"),
        }
    }

    async fn open_credentials(&self, job: &Job) -> Result<Vec<Credentials>, String> {
        let mut out = Vec::new();
        for auth_id in &job.auth_ids {
            let auth = self
                .store
                .authorization(job.account_id, *auth_id)
                .await
                .map_err(|e| format!("reading authorization {auth_id}: {e}"))?
                .ok_or_else(|| format!("authorization {auth_id} was deleted"))?;
            let secrets = authorization::open(&self.key, &auth)
                .map_err(|e| format!("authorization {auth_id}: {e}"))?;
            out.push(Credentials {
                id: auth.id,
                kind: auth.kind,
                config: auth.config,
                secrets,
            });
        }
        Ok(out)
    }

    async fn fail(&self, job: &Job, reason: &str) {
        crate::job_log(self.store.as_ref(), job.id, LogLevel::Error, reason).await;
        let _ = self
            .store
            .set_job_state(
                job.account_id,
                job.id,
                &JobState::ACTIVE,
                JobState::Failed,
                Some(reason),
                now(),
            )
            .await;
    }
}
