//! The driver of a `braze-export` run, one chain: source (read ahead) → coalesced batches
//! (`batch.rs`) → requests in flight (`service.rs`) → acknowledgement and the committed
//! position (`acks.rs`).
//!
//! Invariants:
//! - A user's changes reach Braze in order: a batch is not sent while an earlier batch with
//!   one of its users is still in flight.
//! - When the run stops (pause, kill, lost lease, a fatal error), its requests in flight are
//!   aborted at once, then the run writes its last accounting (not after a lost lease) and
//!   returns. Nothing it started acts afterwards.
//! - One slow or failing Braze only slows its own job: each run has its own client, rate
//!   limiter and window.
//! - A store that fails for a while (a pool timeout under load) does not fail the export:
//!   transient errors are retried with backoff for up to `STORE_PATIENCE`.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tributary_core::{JobState, LogLevel};
use tributary_jobs::{JobContext, Outcome};
use tributary_store::StoreError;

use crate::braze::acks::Progress;
use crate::braze::batch::Batches;
use crate::braze::config::{BrazeAuth, ExportConfig};
use crate::braze::counters::Counters;
use crate::braze::limit::{DELETE_REQUESTS_PER_MINUTE, RateLimiter, Window};
use crate::braze::request_builder::{IdentifierKey, Shape};
use crate::braze::service::{BrazeClient, Endpoint, Flights, Service};
use crate::braze::source::{IDLE_POLL, Position, Read, STORE_PATIENCE, Source, read_ahead};

/// How often progress and the position are written while sending.
const REPORT_EVERY: Duration = Duration::from_millis(500);

/// Where a run starts: the job's saved progress, or (first run) the log's head now.
async fn starting_point(
    ctx: &JobContext,
    config: &ExportConfig,
    consumer: &str,
) -> Result<(i64, Position), StoreError> {
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
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let Some(credentials) = ctx.credentials.first() else {
        return Outcome::Failed("the job has no Braze authorization".into());
    };
    let auth = match BrazeAuth::from_credentials(credentials, &ctx.allowed_urls) {
        Ok(a) => a,
        Err(e) => return Outcome::Failed(e.to_string()),
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

/// Transient store failures in a row: tolerated for `STORE_PATIENCE`.
#[derive(Default)]
struct StorePatience {
    failing_since: Option<Instant>,
}

impl StorePatience {
    /// `Ok` to carry on (the write is made again later), `Err` to fail the run.
    fn absorb<T>(
        &mut self,
        result: Result<T, StoreError>,
        counters: &Counters,
    ) -> Result<Option<T>, StoreError> {
        match result {
            Ok(v) => {
                self.failing_since = None;
                Ok(Some(v))
            }
            Err(e) if e.is_transient() => {
                let since = *self.failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= STORE_PATIENCE {
                    return Err(e);
                }
                Counters::add(&counters.store_retries, 1);
                tracing::warn!(error = %e, "export: writing progress failed; retrying");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }
}

async fn drive(
    ctx: &JobContext,
    config: ExportConfig,
    auth: BrazeAuth,
    client: BrazeClient,
) -> Result<Outcome, StoreError> {
    let aid = ctx.job.account_id;
    let consumer = format!("braze-export:{}", ctx.job.id);
    let (start, position) = starting_point(ctx, &config, &consumer).await?;
    let service = Arc::new(Service {
        client,
        limiter: RateLimiter::new(auth.requests, auth.per),
        delete_limiter: RateLimiter::new(DELETE_REQUESTS_PER_MINUTE, Duration::from_secs(60)),
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
        identifier: IdentifierKey {
            kind: config.identifier_type,
            alias_label: config.alias_label.clone().unwrap_or_default(),
        },
    };
    let source = Source::new(ctx.store.clone(), aid, ctx.job.id, &config, start, position).await?;
    let mut progress = Progress::new(start, position);
    // The start position is saved before anything is sent, so a restart resumes from it.
    if !progress
        .save(ctx, &service, &consumer, position, JobState::Running, None)
        .await?
    {
        return Ok(Outcome::Stopped);
    }
    ctx.log(
        LogLevel::Info,
        &format!(
            "export started: {} audiences to {}, {}",
            config.segment_ids.len(),
            service.client.url(Endpoint::Track),
            match position {
                Position::Backfill { .. } => "backfill first".to_string(),
                Position::Log { seq } => format!("following the membership log from {seq}"),
            }
        ),
    )
    .await;

    let mut batches = Batches::new(position, shape);
    let mut in_flight = Flights::default();
    let mut fatal: Option<String> = None;
    let mut patience = StorePatience::default();
    let (mut chunks, _reader) = read_ahead(source, service.clone());

    let outcome = loop {
        // 1. Completed requests: acknowledge, free their users, advance the position.
        while let Some(done) = in_flight.try_next() {
            settle(done, &mut batches, &mut fatal);
        }
        if let Some(p) = batches.ledger.advance() {
            progress.committed = p;
        }

        // 2. A stop or a fatal error: abort what is in flight now, and end.
        if ctx.stop_requested() || fatal.is_some() {
            break fatal.map_or(Outcome::Stopped, Outcome::Failed);
        }

        // 3. Launch what the window allows, in order; a batch waits while one of its users
        // is in an earlier batch still in flight.
        while in_flight.len() < service.window_size() {
            let Some(front) = batches.ready.front() else {
                break;
            };
            if front
                .call
                .as_ref()
                .is_some_and(|c| in_flight.blocks(&c.request))
            {
                break;
            }
            let Some(pending) = batches.ready.pop_front() else {
                break;
            };
            if let Some(call) = pending.call {
                in_flight.launch(pending.id, call, &service);
            }
        }

        // 4. Progress and metrics, throttled (also while nothing advances, so a job stuck
        // on retries shows them climbing); and said when idle.
        let idle = in_flight.is_empty() && batches.ready.is_empty();
        let due = (progress.unsaved() || !idle) && progress.last_saved.elapsed() >= REPORT_EVERY;
        let idle_due =
            idle && (progress.unsaved() || progress.last_saved.elapsed() >= REPORT_EVERY * 4);
        if due || idle_due {
            let state = match (idle, batches.caught_up_at) {
                (true, Some(_)) => JobState::Sleeping,
                _ => JobState::Running,
            };
            let saved = progress
                .save(ctx, &service, &consumer, batches.read, state, None)
                .await;
            if patience.absorb(saved, &service.counters)? == Some(false) {
                break Outcome::Stopped;
            }
        }

        // 5. Take chunks already read while there is room ahead of the window.
        let want_more = batches.ready.len() < 2 * service.window_size() + 2;
        if want_more && let Ok(read) = chunks.try_recv() {
            take(read?, &mut batches, &mut progress, &service).await;
            continue;
        }

        // 6. Wait for a completion, a chunk, a stop, or time to poll.
        tokio::select! {
            Some(done) = in_flight.next() => settle(done, &mut batches, &mut fatal),
            Some(read) = chunks.recv(), if want_more => {
                take(read?, &mut batches, &mut progress, &service).await;
            }
            _ = ctx.stopped() => {}
            _ = tokio::time::sleep(IDLE_POLL) => {}
        }
    };

    // The end, for any reason: nothing in flight goes on; the last accounting is written.
    in_flight.abort().await;
    if let Some(p) = batches.ledger.advance() {
        progress.committed = p;
    }
    let last = match &outcome {
        Outcome::Failed(reason) => progress
            .save(
                ctx,
                &service,
                &consumer,
                batches.read,
                JobState::Running,
                Some(reason.clone()),
            )
            .await
            .map(|_| ()),
        _ => {
            progress
                .save_stopped(ctx, &service, &consumer, batches.read)
                .await
        }
    };
    if let Err(e) = last {
        tracing::warn!(job = ctx.job.id, error = %e, "export: could not write the run's last accounting");
    }
    Ok(outcome)
}

/// A finished request: its batch is done in the ledger, or the job's fatal error.
fn settle(done: Result<u64, String>, batches: &mut Batches, fatal: &mut Option<String>) {
    match done {
        Ok(id) => batches.ledger.done(id),
        Err(reason) => {
            fatal.get_or_insert(reason);
        }
    }
}

/// Takes a chunk into batches, and says in the job's log when the backfill has been read.
async fn take(read: Read, batches: &mut Batches, progress: &mut Progress, service: &Service) {
    let backfill_read = match (read.before, read.after) {
        (Position::Backfill { .. }, Position::Log { seq }) => Some(seq),
        _ => None,
    };
    batches.take(read, progress, &service.counters);
    if let Some(seq) = backfill_read {
        service
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pool_timeout() -> StoreError {
        StoreError::Database(sqlx::Error::PoolTimedOut)
    }

    /// A store that stalls (pool timeouts) is waited out for `STORE_PATIENCE`, each failure
    /// counted; a success resets the patience; a store that stays down, or an error that is not
    /// transient, fails the run.
    #[tokio::test(start_paused = true)]
    async fn transient_store_errors_are_waited_out_for_a_while() {
        let counters = Counters::default();
        let mut patience = StorePatience::default();
        for _ in 0..3 {
            let absorbed = patience.absorb::<()>(Err(pool_timeout()), &counters);
            assert!(matches!(absorbed, Ok(None)), "a stall is not fatal");
            tokio::time::advance(Duration::from_secs(30)).await;
        }
        assert_eq!(
            counters
                .store_retries
                .load(std::sync::atomic::Ordering::Relaxed),
            3
        );
        assert!(matches!(patience.absorb(Ok(7), &counters), Ok(Some(7))));
        // Patience starts again after a success...
        tokio::time::advance(Duration::from_secs(100)).await;
        assert!(matches!(
            patience.absorb::<()>(Err(pool_timeout()), &counters),
            Ok(None)
        ));
        // ...and runs out when the store stays down.
        tokio::time::advance(STORE_PATIENCE).await;
        assert!(
            patience
                .absorb::<()>(Err(pool_timeout()), &counters)
                .is_err()
        );
        let mut fresh = StorePatience::default();
        let corrupt = StoreError::Corrupt("bad row".into());
        assert!(!corrupt.is_transient());
        assert!(fresh.absorb::<()>(Err(corrupt), &counters).is_err());
    }
}
