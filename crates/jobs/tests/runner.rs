//! The job runner against real stores: one runner per job across nodes, takeover after a
//! node dies, pause/resume/kill, failures with reasons, deleted authorizations.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tributary_core::crypto::MasterKey;
use tributary_core::{AuthKind, Authorization, JobState, NewJob};
use tributary_jobs::{
    JobContext, Outcome, Registry, Runner, RunnerConfig, Workflow, WorkflowError, authorization,
};
use tributary_store::Store;

/// Counts ticks while it runs (one per node); fails when asked.
struct Ticker {
    ticks: AtomicU64,
    /// Runs going on right now on every node (shared by the nodes' tickers).
    concurrent: Arc<AtomicU64>,
    max_concurrent: Arc<AtomicU64>,
}

#[async_trait]
impl Workflow for Ticker {
    fn name(&self) -> &'static str {
        "ticker"
    }
    fn auth_kinds(&self) -> &'static [AuthKind] {
        &[AuthKind::Braze]
    }
    async fn validate(&self, _: &Arc<dyn Store>, _: i64, _: &Value) -> Result<(), WorkflowError> {
        Ok(())
    }
    async fn dryrun(&self, _: &Arc<dyn Store>, _: i64, _: &Value) -> Result<Value, WorkflowError> {
        Ok(json!({}))
    }
    async fn run(&self, ctx: JobContext) -> Outcome {
        if ctx.job.config["fail"].as_bool() == Some(true) {
            return Outcome::Failed("the test asked for a failure".into());
        }
        let apikey = ctx.credentials[0].secrets.get("apikey");
        if apikey.as_deref() != Some("secret-key") {
            return Outcome::Failed("credentials did not open".into());
        }
        let now = self.concurrent.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_concurrent.fetch_max(now, Ordering::SeqCst);
        let outcome = loop {
            if ctx.stop_requested() {
                break Outcome::Stopped;
            }
            let n = self.ticks.fetch_add(1, Ordering::SeqCst) + 1;
            let state = ctx
                .report(JobState::Running, json!({"ticks": n}), json!({}), None)
                .await;
            if !matches!(state, Ok(true)) {
                break Outcome::Stopped;
            }
            if ctx.job.config["complete_after"]
                .as_u64()
                .is_some_and(|c| n >= c)
            {
                break Outcome::Completed;
            }
            tokio::select! {
                _ = ctx.stopped() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        };
        self.concurrent.fetch_sub(1, Ordering::SeqCst);
        outcome
    }
}

fn ticker() -> Arc<Ticker> {
    Arc::new(Ticker {
        ticks: AtomicU64::new(0),
        concurrent: Arc::new(AtomicU64::new(0)),
        max_concurrent: Arc::new(AtomicU64::new(0)),
    })
}

/// Another node's ticker, sharing the concurrency counts.
fn sibling(of: &Ticker) -> Arc<Ticker> {
    Arc::new(Ticker {
        ticks: AtomicU64::new(0),
        concurrent: of.concurrent.clone(),
        max_concurrent: of.max_concurrent.clone(),
    })
}

/// A node: a runner on a runtime of its own, so that killing the runtime kills everything
/// the node started (its runs and lease renewals), as a process's death would.
struct Node {
    runner: Arc<Runner>,
    runtime: tokio::runtime::Runtime,
}

fn node(store: &Arc<dyn Store>, key: &Arc<MasterKey>, workflow: Arc<Ticker>) -> Node {
    let runner = Runner::new(
        store.clone(),
        key.clone(),
        Registry::default().with(workflow),
        RunnerConfig {
            lease_ttl: Duration::from_millis(900),
            poll: Duration::from_millis(50),
            ..RunnerConfig::default()
        },
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.spawn(runner.clone().run(std::future::pending()));
    Node { runner, runtime }
}

impl Node {
    /// Dies: every task of the node stops where it is; nothing is released.
    fn kill(self) {
        self.runtime.shutdown_background();
    }
}

async fn braze_auth(store: &Arc<dyn Store>, key: &MasterKey) -> i64 {
    let split = authorization::split(
        AuthKind::Braze,
        &json!({"apikey": "secret-key", "instance": "US-03"}),
        None,
        &Default::default(),
    )
    .expect("valid");
    let auth = Authorization {
        id: 0,
        account_id: 1,
        kind: AuthKind::Braze,
        label: "braze".into(),
        description: String::new(),
        config: split.public,
        sealed_secret: Vec::new(),
        created_at: 0,
        updated_at: 0,
    };
    authorization::create(store.as_ref(), key, &auth, &split.secrets)
        .await
        .expect("auth")
        .id
}

async fn create(store: &Arc<dyn Store>, auth: i64, config: Value) -> i64 {
    store
        .create_job(&NewJob {
            account_id: 1,
            workflow: "ticker".into(),
            name: "t".into(),
            description: String::new(),
            auth_ids: vec![auth],
            config,
            created_at: 0,
        })
        .await
        .expect("job")
        .id
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn state(store: &Arc<dyn Store>, id: i64) -> JobState {
    store.job(1, id).await.expect("read").expect("job").state
}

async fn one_runner_per_job_and_takeover_when_a_node_dies(store: Arc<dyn Store>) {
    let key = Arc::new(MasterKey::generate());
    let auth = braze_auth(&store, &key).await;
    let on_a = ticker();
    let on_b = sibling(&on_a);
    let a = node(&store, &key, on_a.clone());
    let b = node(&store, &key, on_b.clone());
    let id = create(&store, auth, json!({})).await;
    a.runner.wake();
    b.runner.wake();
    let ticks = |t: &Ticker| t.ticks.load(Ordering::SeqCst);
    wait_for("ticks", async || ticks(&on_a) + ticks(&on_b) > 5).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        on_a.max_concurrent.load(Ordering::SeqCst),
        1,
        "one runner at a time"
    );
    assert!(
        ticks(&on_a) == 0 || ticks(&on_b) == 0,
        "only one node ran the job"
    );

    // The node running the job dies; the other takes it over once the lease expires.
    let (dead, dead_ticker, survivor, survivor_ticker) = if ticks(&on_a) > 0 {
        (a, on_a, b, on_b)
    } else {
        (b, on_b, a, on_a)
    };
    dead.kill();
    // The dead node's run never ended, so its share of the count is stale.
    dead_ticker.concurrent.store(0, Ordering::SeqCst);
    let frozen = ticks(&dead_ticker);
    wait_for("takeover", async || ticks(&survivor_ticker) > 5).await;
    assert_eq!(ticks(&dead_ticker), frozen, "the dead node does nothing");
    assert_eq!(state(&store, id).await, JobState::Running);
    survivor.kill();
}

async fn pause_resume_kill_and_failures(store: Arc<dyn Store>) {
    let key = Arc::new(MasterKey::generate());
    let auth = braze_auth(&store, &key).await;
    let work = ticker();
    let n = node(&store, &key, work.clone());
    let id = create(&store, auth, json!({})).await;
    n.runner.wake();
    wait_for("running", async || {
        work.concurrent.load(Ordering::SeqCst) == 1
    })
    .await;

    assert!(
        store
            .set_job_state(1, id, &JobState::ACTIVE, JobState::Paused, None, 1)
            .await
            .expect("pause")
    );
    wait_for("paused run stops", async || {
        work.concurrent.load(Ordering::SeqCst) == 0
    })
    .await;
    let paused_at = work.ticks.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        work.ticks.load(Ordering::SeqCst),
        paused_at,
        "a paused job does nothing"
    );
    assert_eq!(state(&store, id).await, JobState::Paused);

    store
        .set_job_state(1, id, &[JobState::Paused], JobState::Running, None, 2)
        .await
        .expect("resume");
    n.runner.wake();
    wait_for("resumed", async || {
        work.ticks.load(Ordering::SeqCst) > paused_at + 2
    })
    .await;
    let progress = store.job(1, id).await.expect("read").expect("job").progress;
    assert!(progress["ticks"].as_u64().is_some_and(|t| t > paused_at));

    store
        .set_job_state(1, id, &JobState::ACTIVE, JobState::Killed, None, 3)
        .await
        .expect("kill");
    wait_for("killed run stops", async || {
        work.concurrent.load(Ordering::SeqCst) == 0
    })
    .await;
    assert_eq!(state(&store, id).await, JobState::Killed);

    let failing = create(&store, auth, json!({"fail": true})).await;
    let done = create(&store, auth, json!({"complete_after": 3})).await;
    n.runner.wake();
    wait_for("failed", async || {
        state(&store, failing).await == JobState::Failed
    })
    .await;
    let job = store.job(1, failing).await.expect("read").expect("job");
    assert_eq!(
        job.last_error.as_deref(),
        Some("the test asked for a failure")
    );
    let logs = store.job_logs(failing, 10).await.expect("logs");
    assert!(
        logs.iter()
            .any(|l| l.message == "the test asked for a failure")
    );
    wait_for("completed", async || {
        state(&store, done).await == JobState::Completed
    })
    .await;

    // Deleting the authorization stops a running job with that reason.
    let running = create(&store, auth, json!({})).await;
    n.runner.wake();
    wait_for("running again", async || {
        work.concurrent.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(
        store
            .delete_authorization(1, auth, 5)
            .await
            .expect("delete")
    );
    wait_for("stopped", async || {
        work.concurrent.load(Ordering::SeqCst) == 0
    })
    .await;
    let job = store.job(1, running).await.expect("read").expect("job");
    assert_eq!(job.state, JobState::Failed);
    assert_eq!(
        job.last_error,
        Some(format!("authorization {auth} was deleted"))
    );
    n.kill();
}

tributary_store::backend_tests!(
    one_runner_per_job_and_takeover_when_a_node_dies,
    pause_resume_kill_and_failures,
);
