//! Group commit. Collection handlers hand their events to one [`EventWriter`] per process and
//! wait for the acknowledgement. The writer task takes every request that is waiting, appends
//! them all in one transaction (one fsync), then acknowledges each. While a commit is running
//! new requests queue up and form the next group, so commits get bigger exactly when load
//! rises and durability never costs one fsync per request.
//!
//! The queue is bounded: when it is full, `write` fails fast with [`WriteError::Overloaded`]
//! and the HTTP layer answers 503 with `Retry-After`, which senders such as Braze retry.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tributary_core::NewEvent;

use crate::{Store, StoreError};

#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Requests that may wait for the writer before new ones are refused.
    pub queue_requests: usize,
    /// The most events one commit takes; more waiting requests form the next commit.
    pub max_events_per_commit: usize,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue_requests: 4096,
            max_events_per_commit: 50_000,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("the event writer is overloaded; retry shortly")]
    Overloaded,
    #[error("the event writer has shut down")]
    Closed,
    #[error(transparent)]
    Store(Arc<StoreError>),
}

struct Request {
    events: Vec<NewEvent>,
    /// Answered with how many of the request's events were duplicates (not stored).
    done: oneshot::Sender<Result<usize, Arc<StoreError>>>,
}

#[derive(Clone)]
pub struct EventWriter {
    queue: mpsc::Sender<Request>,
}

impl EventWriter {
    /// Starts the writer task. It ends once every `EventWriter` clone is dropped and the queue
    /// is drained, so awaiting the handle after dropping them flushes all accepted work.
    pub fn spawn(store: Arc<dyn Store>, config: WriterConfig) -> (EventWriter, JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(config.queue_requests.max(1));
        let task = tokio::spawn(run(store, rx, config.max_events_per_commit.max(1)));
        (EventWriter { queue }, task)
    }

    /// Returns once the events are committed, with how many of them were not stored as
    /// duplicates of events their stream already holds (`dedup_key`).
    pub async fn write(&self, events: Vec<NewEvent>) -> Result<usize, WriteError> {
        if events.is_empty() {
            return Ok(0);
        }
        let (done, ack) = oneshot::channel();
        self.queue
            .try_send(Request { events, done })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => WriteError::Overloaded,
                mpsc::error::TrySendError::Closed(_) => WriteError::Closed,
            })?;
        match ack.await {
            Ok(result) => result.map_err(WriteError::Store),
            Err(_) => Err(WriteError::Closed),
        }
    }
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::Receiver<Request>, max_events: usize) {
    let mut waiting = Vec::new();
    let mut events: Vec<NewEvent> = Vec::new();
    while let Some(first) = rx.recv().await {
        waiting.push((events.len(), first.events.len(), first.done));
        events.extend(first.events);
        while events.len() < max_events {
            let Ok(next) = rx.try_recv() else { break };
            waiting.push((events.len(), next.events.len(), next.done));
            events.extend(next.events);
        }
        let started = Instant::now();
        let result = store.append_events(&events).await.map_err(Arc::new);
        metrics::histogram!("tributary_commit_seconds").record(started.elapsed().as_secs_f64());
        metrics::histogram!("tributary_commit_events").record(events.len() as f64);
        if let Err(e) = &result {
            tracing::error!(error = %e, events = events.len(), "event commit failed");
        }
        for (start, len, done) in waiting.drain(..) {
            let answer = result.as_ref().map_err(Arc::clone).map(|duplicates| {
                let from = duplicates.partition_point(|&i| i < start);
                let to = duplicates.partition_point(|&i| i < start + len);
                to - from
            });
            // A requester that went away (client disconnected) no longer needs its answer.
            let _ = done.send(answer);
        }
        events.clear();
    }
}

#[cfg(all(test, feature = "testing"))]
mod tests {
    use super::*;

    fn event(n: i64) -> NewEvent {
        NewEvent {
            account_id: 1,
            stream: "s".into(),
            received_at: n,
            event_time: n,
            payload: "{}".into(),
            dedup_key: None,
        }
    }

    /// On a current-thread runtime the writer task cannot run while `join_all` makes its first
    /// pass, so exactly `queue_requests` writes get a place and the rest are refused at once.
    #[tokio::test]
    async fn a_full_queue_refuses_instead_of_waiting() {
        let (store, _dir) = crate::testing::sqlite_store().await;
        let config = WriterConfig {
            queue_requests: 2,
            max_events_per_commit: 10,
        };
        let (writer, task) = EventWriter::spawn(store.clone(), config);
        let results = futures::future::join_all((0..6).map(|n| writer.write(vec![event(n)]))).await;
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(WriteError::Overloaded)))
            .count();
        assert_eq!((accepted, refused), (2, 4));
        drop(writer);
        task.await.unwrap();
        assert_eq!(store.streams(1).await.unwrap()[0].count, 2);
    }
}
