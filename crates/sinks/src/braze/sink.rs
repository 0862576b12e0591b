//! The driver of a `braze-export` run: source → coalesced batches → requests in flight →
//! acknowledgement → committed position.
//!
//! Invariants:
//! - The position is committed only up to where every change before it was accepted by
//!   Braze (the ledger: batches in the order they were closed; the front's position commits
//!   once it and everything before it are done). A restart resumes there: nothing is lost;
//!   at most the changes since the last commit are sent again.
//! - A user's changes reach Braze in order: a batch is not sent while an earlier batch with
//!   one of its users is still in flight.
//! - One slow or failing Braze only slows its own job: each run has its own client, rate
//!   limiter and window.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;
use futures::stream::{FuturesUnordered, StreamExt};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tributary_core::{JobState, LogLevel};
use tributary_jobs::{JobContext, Outcome};

use crate::braze::config::{BrazeAuth, ExportConfig};
use crate::braze::request_builder::{BatchBuilder, Request, Shape};
use crate::braze::service::{BrazeClient, RateLimiter, Reply, Window, until_epoch};
use crate::braze::source::{Chunk, Position, Source};

/// How often progress and the position are written while sending.
const REPORT_EVERY: Duration = Duration::from_millis(500);
/// How often a caught-up export looks for new log entries.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// Per-object errors logged per batch (all are counted).
const OBJECT_ERRORS_LOGGED: usize = 3;

#[derive(Default)]
pub struct Counters {
    requests: AtomicU64,
    accepted: AtomicU64,
    rate_limited: AtomicU64,
    retries: AtomicU64,
    users_sent: AtomicU64,
    data_points: AtomicU64,
    object_errors: AtomicU64,
    rejected_requests: AtomicU64,
    changes_read: AtomicU64,
    skipped_no_identifier: AtomicU64,
    skipped_gone: AtomicU64,
    coalesced_away: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Each counter with its name in the job's metrics.
    fn named(&self) -> [(&AtomicU64, &'static str); 12] {
        [
            (&self.requests, "requests"),
            (&self.accepted, "requests_accepted"),
            (&self.rejected_requests, "requests_rejected"),
            (&self.rate_limited, "rate_limited"),
            (&self.retries, "retries"),
            (&self.users_sent, "users_sent"),
            (&self.data_points, "data_points"),
            (&self.object_errors, "object_errors"),
            (&self.changes_read, "changes_read"),
            (&self.skipped_no_identifier, "skipped_no_identifier"),
            (&self.skipped_gone, "skipped_gone"),
            (&self.coalesced_away, "batches_coalesced_away"),
        ]
    }

    /// Counters carried on from the job's saved metrics: a job's metrics cover its whole
    /// life, across restarts and pauses.
    fn resume(saved: &Value) -> Counters {
        let counters = Counters::default();
        for (counter, name) in counters.named() {
            counter.store(saved[name].as_u64().unwrap_or(0), Ordering::Relaxed);
        }
        counters
    }

    fn to_json(&self, window: usize) -> Value {
        let mut out: serde_json::Map<String, Value> = self
            .named()
            .into_iter()
            .map(|(counter, name)| (name.to_string(), json!(counter.load(Ordering::Relaxed))))
            .collect();
        out.insert("in_flight_window".into(), json!(window));
        Value::Object(out)
    }
}

/// What one request's delivery came to.
enum Delivery {
    /// Braze took it (possibly with per-object errors, possibly rejecting every object).
    Done,
    /// The job cannot go on.
    Fatal(String),
}

struct Shared {
    client: BrazeClient,
    limiter: RateLimiter,
    window: std::sync::Mutex<Window>,
    counters: Counters,
    retry_max: Duration,
    job: i64,
    store: Arc<dyn tributary_store::Store>,
}

impl Shared {
    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The window's size now (the guard is not held across an await).
    fn window_size(&self) -> usize {
        self.window().size()
    }

    fn metrics(&self) -> Value {
        self.counters.to_json(self.window_size())
    }

    async fn log(&self, level: LogLevel, message: &str) {
        tributary_jobs::job_log(self.store.as_ref(), self.job, level, message).await;
    }
}

/// Sends one request until Braze takes it, retrying 5xx and timeouts with exponential
/// backoff and jitter, and waiting out 429s.
async fn deliver(shared: Arc<Shared>, request: Request) -> Delivery {
    let started = Instant::now();
    let mut backoff = Duration::from_millis(250);
    loop {
        shared.limiter.acquire().await;
        let sent_at = Instant::now();
        let (reply, headers) = shared.client.track(request.body.clone()).await;
        Counters::add(&shared.counters.requests, 1);
        metrics::histogram!("tributary_braze_request_seconds")
            .record(sent_at.elapsed().as_secs_f64());
        if headers.remaining == Some(0)
            && let Some(reset) = headers.reset
        {
            shared.limiter.pause(until_epoch(reset));
        }
        match reply {
            Reply::Accepted { errors } => {
                metrics::counter!("tributary_braze_requests_total", "outcome" => "accepted")
                    .increment(1);
                Counters::add(&shared.counters.accepted, 1);
                shared.window().on_success();
                let sent = request.users.len() as u64;
                Counters::add(&shared.counters.users_sent, sent);
                Counters::add(&shared.counters.data_points, request.data_points);
                metrics::counter!("tributary_braze_users_sent_total").increment(sent);
                metrics::counter!("tributary_braze_data_points_total")
                    .increment(request.data_points);
                if !errors.is_empty() {
                    object_errors(&shared, &request, &errors, "").await;
                }
                return Delivery::Done;
            }
            Reply::Rejected { message, errors } => {
                metrics::counter!("tributary_braze_requests_total", "outcome" => "rejected")
                    .increment(1);
                Counters::add(&shared.counters.rejected_requests, 1);
                object_errors(&shared, &request, &errors, &message).await;
                return Delivery::Done;
            }
            Reply::RateLimited { wait } => {
                metrics::counter!("tributary_braze_requests_total", "outcome" => "rate_limited")
                    .increment(1);
                Counters::add(&shared.counters.rate_limited, 1);
                shared.window().on_rate_limited();
                shared.limiter.pause(
                    wait.unwrap_or(Duration::from_secs(1))
                        .max(Duration::from_millis(50)),
                );
            }
            Reply::Retryable { detail } => {
                metrics::counter!("tributary_braze_requests_total", "outcome" => "retried")
                    .increment(1);
                Counters::add(&shared.counters.retries, 1);
                if started.elapsed() >= shared.retry_max {
                    return Delivery::Fatal(format!(
                        "Braze kept failing for {} s (last: {detail}); giving up",
                        shared.retry_max.as_secs()
                    ));
                }
                let jittered = backoff.mul_f64(0.5 + rand::random::<f64>() * 0.5);
                shared
                    .log(
                        LogLevel::Warn,
                        &format!("Braze request failed ({detail}); retrying in {jittered:.1?}"),
                    )
                    .await;
                tokio::time::sleep(jittered).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Reply::Fatal { reason } => {
                metrics::counter!("tributary_braze_requests_total", "outcome" => "fatal")
                    .increment(1);
                return Delivery::Fatal(reason);
            }
        }
    }
}

async fn object_errors(shared: &Shared, request: &Request, errors: &[(usize, String)], why: &str) {
    Counters::add(&shared.counters.object_errors, errors.len() as u64);
    metrics::counter!("tributary_braze_object_errors_total").increment(errors.len() as u64);
    let shown: Vec<String> = errors
        .iter()
        .take(OBJECT_ERRORS_LOGGED)
        .map(|(i, kind)| {
            let user = request.users.get(*i).map_or("?", String::as_str);
            format!("{user}: {kind}")
        })
        .collect();
    let prefix = if why.is_empty() {
        String::new()
    } else {
        format!("{why} ")
    };
    shared
        .log(
            LogLevel::Warn,
            &format!(
                "{prefix}Braze refused {} of {} users in a request ({})",
                errors.len(),
                request.users.len(),
                shown.join("; ")
            ),
        )
        .await;
}

/// A closed batch waiting to be sent (`None`: its changes cancelled out).
struct Pending {
    id: u64,
    request: Option<Request>,
}

/// Requests in flight and the users they carry.
#[derive(Default)]
struct Flights {
    tasks: FuturesUnordered<JoinHandle<(u64, Delivery)>>,
    users: HashMap<u64, Vec<String>>,
    busy: HashMap<String, u32>,
}

impl Flights {
    fn len(&self) -> usize {
        self.tasks.len()
    }

    fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    fn blocks(&self, request: &Request) -> bool {
        request.users.iter().any(|u| self.busy.contains_key(u))
    }

    fn launch(&mut self, id: u64, request: Request, shared: &Arc<Shared>) {
        for user in &request.users {
            *self.busy.entry(user.clone()).or_default() += 1;
        }
        self.users.insert(id, request.users.clone());
        let shared = shared.clone();
        self.tasks.push(tokio::spawn(
            async move { (id, deliver(shared, request).await) },
        ));
    }

    /// Records a finished request: its batch is done in the ledger, or the job's fatal error.
    fn settle(
        &mut self,
        joined: Result<(u64, Delivery), tokio::task::JoinError>,
        ledger: &mut Ledger,
        fatal: &mut Option<String>,
    ) {
        let (id, delivery) = match joined {
            Ok(done) => done,
            Err(e) => {
                fatal.get_or_insert(format!("a request task failed: {e}"));
                return;
            }
        };
        for user in self.users.remove(&id).unwrap_or_default() {
            if let Some(n) = self.busy.get_mut(&user) {
                *n -= 1;
                if *n == 0 {
                    self.busy.remove(&user);
                }
            }
        }
        match delivery {
            Delivery::Done => ledger.done(id),
            Delivery::Fatal(reason) => {
                fatal.get_or_insert(reason);
            }
        }
    }
}

/// Batches in the order they were closed, with whether each is done.
#[derive(Default)]
struct Ledger {
    entries: VecDeque<(u64, Position, bool)>,
}

impl Ledger {
    fn open(&mut self, id: u64, through: Position, done: bool) {
        self.entries.push_back((id, through, done));
    }

    fn done(&mut self, id: u64) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.0 == id) {
            e.2 = true;
        }
    }

    /// The newest position before which everything is done.
    fn advance(&mut self) -> Option<Position> {
        let mut reached = None;
        while let Some(&(_, through, true)) = self.entries.front() {
            reached = Some(through);
            self.entries.pop_front();
        }
        reached
    }
}

/// How far the run has got: what it read, what Braze accepted, what is saved.
struct Progress {
    /// The log position the export started from.
    start: i64,
    /// Everything before this was accepted by Braze.
    committed: Position,
    /// The committed position last written to the store.
    saved: Position,
    last_saved: Instant,
    backfill_changes: u64,
}

impl Progress {
    fn to_json(&self, read: Position) -> Value {
        match self.committed {
            Position::Backfill { after } => json!({
                "phase": "backfill",
                "start_position": self.start,
                "backfill_after": after,
                "backfill_changes_read": self.backfill_changes,
            }),
            Position::Log { seq } => json!({
                "phase": "following",
                "start_position": self.start,
                "log_position": seq,
                "batches.read": match read {
                    Position::Log { seq } => seq,
                    Position::Backfill { .. } => self.start,
                },
                "backfill_changes_read": self.backfill_changes,
            }),
        }
    }

    /// Writes the position (the log position first, where the follow phase resumes from)
    /// and the job's report. `Ok(false)`: the job is no longer active.
    async fn save(
        &mut self,
        ctx: &JobContext,
        shared: &Shared,
        consumer: &str,
        read: Position,
        state: JobState,
        error: Option<String>,
    ) -> Result<bool, tributary_store::StoreError> {
        if let Position::Log { seq } = self.committed {
            ctx.store
                .set_log_position(ctx.job.account_id, consumer, seq)
                .await?;
        }
        let active = ctx
            .report(state, self.to_json(read), shared.metrics(), error)
            .await?;
        self.saved = self.committed;
        self.last_saved = Instant::now();
        Ok(active)
    }

    fn unsaved(&self) -> bool {
        self.committed != self.saved
    }
}

/// Where a run starts: the job's saved progress, or (first run) the log's head now.
async fn starting_point(
    ctx: &JobContext,
    config: &ExportConfig,
    consumer: &str,
) -> Result<(i64, Position), tributary_store::StoreError> {
    let aid = ctx.job.account_id;
    let progress = &ctx.job.progress;
    if let Some(start) = progress["start_position"].as_i64() {
        let position = if progress["phase"] == "backfill" {
            Position::Backfill {
                after: progress["backfill_after"].as_i64().unwrap_or(0),
            }
        } else {
            Position::Log {
                seq: ctx.store.log_position(aid, consumer).await?.max(start),
            }
        };
        return Ok((start, position));
    }
    let head = ctx.store.membership_head(aid).await?;
    ctx.store.set_log_position(aid, consumer, head).await?;
    let position = if config.withbackfill {
        Position::Backfill { after: 0 }
    } else {
        Position::Log { seq: head }
    };
    Ok((head, position))
}

pub async fn run(ctx: JobContext) -> Outcome {
    let config = match ExportConfig::parse(&ctx.job.config) {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(e),
    };
    let Some(credentials) = ctx.credentials.first() else {
        return Outcome::Failed("the job has no Braze authorization".into());
    };
    let auth = match BrazeAuth::from_credentials(credentials) {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(e),
    };
    let client = match BrazeClient::new(&auth) {
        Ok(c) => c,
        Err(e) => return Outcome::Failed(e),
    };
    match drive(&ctx, config, auth, client).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Failed(format!("storage error: {e}")),
    }
}

async fn drive(
    ctx: &JobContext,
    config: ExportConfig,
    auth: BrazeAuth,
    client: BrazeClient,
) -> Result<Outcome, tributary_store::StoreError> {
    let aid = ctx.job.account_id;
    let consumer = format!("braze-export:{}", ctx.job.id);
    let (start, position) = starting_point(ctx, &config, &consumer).await?;
    let shared = Arc::new(Shared {
        client,
        limiter: RateLimiter::new(auth.requests, auth.per),
        window: std::sync::Mutex::new(Window::new(config.max_in_flight)),
        counters: Counters::resume(&ctx.job.metrics),
        retry_max: Duration::from_secs(config.retry_max_seconds),
        job: ctx.job.id,
        store: ctx.store.clone(),
    });
    let shape = Shape {
        mode: config.attribute_mode,
        attribute: config.attribute.clone(),
        prefix: config.attribute_prefix.clone(),
    };
    let source = Source::new(ctx.store.clone(), aid, &config, start, position).await?;
    let mut progress = Progress {
        start,
        committed: position,
        saved: position,
        last_saved: Instant::now(),
        backfill_changes: 0,
    };
    // The start position is saved before anything is sent, so a restart resumes from it.
    if !progress
        .save(ctx, &shared, &consumer, position, JobState::Running, None)
        .await?
    {
        return Ok(Outcome::Stopped);
    }
    ctx.log(
        LogLevel::Info,
        &format!(
            "export started: {} audiences to {}, {}",
            config.segment_ids.len(),
            auth.endpoint,
            match position {
                Position::Backfill { .. } => "backfill first".to_string(),
                Position::Log { seq } => format!("following the membership log from {seq}"),
            }
        ),
    )
    .await;

    let mut batches = Batches {
        open: BatchBuilder::default(),
        ready: VecDeque::new(),
        ledger: Ledger::default(),
        next_id: 0,
        read: position,
        caught_up_at: None,
        shape,
    };
    let mut in_flight = Flights::default();
    let mut fatal: Option<String> = None;
    // Chunks are read ahead by a task of their own, so sending never waits for the store.
    let (chunks, reader) = read_ahead(source);
    let mut chunks = chunks;
    let _reader = AbortOnDrop(reader);

    loop {
        // 1. Completed requests: acknowledge, free their users, advance the position.
        while let Some(Some(joined)) = in_flight.tasks.next().now_or_never() {
            in_flight.settle(joined, &mut batches.ledger, &mut fatal);
        }
        if let Some(p) = batches.ledger.advance() {
            progress.committed = p;
        }

        let stopping = ctx.stop_requested() || fatal.is_some();
        if stopping && in_flight.is_empty() {
            progress
                .save(
                    ctx,
                    &shared,
                    &consumer,
                    batches.read,
                    JobState::Running,
                    fatal.clone(),
                )
                .await?;
            return Ok(match fatal {
                Some(reason) => Outcome::Failed(reason),
                None => Outcome::Stopped,
            });
        }

        // 2. Launch what the window allows, in order; a batch waits while one of its users
        // is in an earlier batch still in flight.
        while !stopping && in_flight.len() < shared.window_size() {
            let Some(front) = batches.ready.front() else {
                break;
            };
            if front.request.as_ref().is_some_and(|r| in_flight.blocks(r)) {
                break;
            }
            let Some(pending) = batches.ready.pop_front() else {
                break;
            };
            if let Some(request) = pending.request {
                in_flight.launch(pending.id, request, &shared);
            }
        }

        // 3. Progress, throttled.
        if progress.unsaved() && progress.last_saved.elapsed() >= REPORT_EVERY {
            let active = progress
                .save(
                    ctx,
                    &shared,
                    &consumer,
                    batches.read,
                    JobState::Running,
                    None,
                )
                .await?;
            if !active {
                return Ok(Outcome::Stopped);
            }
        }

        // 4. Take chunks already read while there is room ahead of the window.
        let want_more = !stopping && batches.ready.len() < 2 * shared.window_size() + 2;
        if want_more && let Ok(read) = chunks.try_recv() {
            take(read?, &mut batches, &mut progress, &shared).await;
            continue;
        }

        // 5. Idle: say so. Then wait for a completion, a stop, or time to poll the log.
        let idle = in_flight.is_empty() && batches.ready.is_empty();
        if idle && (progress.unsaved() || progress.last_saved.elapsed() >= REPORT_EVERY * 4) {
            let state = match batches.caught_up_at {
                Some(_) => JobState::Sleeping,
                None => JobState::Running,
            };
            let active = progress
                .save(ctx, &shared, &consumer, batches.read, state, None)
                .await?;
            if !active {
                return Ok(Outcome::Stopped);
            }
        }
        tokio::select! {
            Some(joined) = in_flight.tasks.next() => in_flight.settle(joined, &mut batches.ledger, &mut fatal),
            Some(read) = chunks.recv(), if want_more => {
                take(read?, &mut batches, &mut progress, &shared).await;
            }
            _ = ctx.stopped() => {}
            _ = tokio::time::sleep(IDLE_POLL) => {}
        }
    }
}

/// Takes a chunk into batches, and says in the job's log when the backfill has been read.
async fn take(read: Read, batches: &mut Batches, progress: &mut Progress, shared: &Shared) {
    let backfill_read = match (read.before, read.after) {
        (Position::Backfill { .. }, Position::Log { seq }) => Some(seq),
        _ => None,
    };
    batches.take(read, progress, shared);
    if let Some(seq) = backfill_read {
        shared
            .log(
                LogLevel::Info,
                &format!(
                    "backfill read: {} memberships to send; then following the membership log from {seq}",
                    progress.backfill_changes
                ),
            )
            .await;
    }
}

/// A chunk as read: the positions before and after it.
struct Read {
    before: Position,
    after: Position,
    chunk: Chunk,
}

/// Chunks read ahead (at most a few): the reading task polls the log every `IDLE_POLL` once
/// caught up, and ends when the receiver is dropped.
fn read_ahead(
    mut source: Source,
) -> (
    tokio::sync::mpsc::Receiver<Result<Read, tributary_store::StoreError>>,
    JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let task = tokio::spawn(async move {
        loop {
            let before = source.position;
            let read = source.next_chunk().await.map(|chunk| Read {
                before,
                after: source.position,
                chunk,
            });
            let failed = read.is_err();
            let caught_up = read.as_ref().is_ok_and(|r| r.chunk.caught_up);
            if tx.send(read).await.is_err() || failed {
                return;
            }
            if caught_up {
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
    });
    (rx, task)
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The open batch, the closed ones waiting to be sent, and the ledger of all of them.
struct Batches {
    open: BatchBuilder,
    ready: VecDeque<Pending>,
    ledger: Ledger,
    next_id: u64,
    /// Where reading has got (everything before it is in a batch or skipped).
    read: Position,
    /// When the source last had nothing more to read.
    caught_up_at: Option<Instant>,
    shape: Shape,
}

impl Batches {
    /// Puts a chunk's changes into batches; a caught-up chunk closes the open batch.
    fn take(&mut self, read: Read, progress: &mut Progress, shared: &Shared) {
        if matches!(read.before, Position::Backfill { .. }) {
            progress.backfill_changes += read.chunk.changes.len() as u64;
        }
        let caught_up = read.chunk.caught_up;
        self.absorb(read.chunk, read.before, read.after, shared);
        self.read = read.after;
        if caught_up {
            self.caught_up_at = Some(Instant::now());
            self.close(read.after, shared);
        } else {
            self.caught_up_at = None;
        }
    }

    /// Adds a chunk's changes to the open batch, closing it (at the position before this
    /// chunk: its earlier changes are all in it or before it) whenever it fills up.
    fn absorb(&mut self, chunk: Chunk, before: Position, after: Position, shared: &Shared) {
        let c = &shared.counters;
        Counters::add(&c.changes_read, chunk.read);
        Counters::add(&c.skipped_no_identifier, chunk.skipped_no_identifier);
        Counters::add(&c.skipped_gone, chunk.skipped_gone);
        for change in chunk.changes {
            if self.open.is_full() && !self.open.contains(&change.external_id) {
                self.close(before, shared);
            }
            self.open
                .push(&change.external_id, &change.segment, change.entered);
        }
        if self.open.is_empty() {
            // Nothing pending before `after`: the position may move there once the earlier
            // batches are done.
            self.next_id += 1;
            self.ledger.open(self.next_id, after, true);
        }
    }

    /// Closes the open batch (if it has anything) as of `through`.
    fn close(&mut self, through: Position, shared: &Shared) {
        if self.open.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.open);
        self.next_id += 1;
        let request = batch.finish(&self.shape);
        if request.is_none() {
            Counters::add(&shared.counters.coalesced_away, 1);
        }
        self.ledger.open(self.next_id, through, request.is_none());
        self.ready.push_back(Pending {
            id: self.next_id,
            request,
        });
    }
}
