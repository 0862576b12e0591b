//! Where the pipeline runs, and at what priority: its own runtime ([`worker_runtime`]) and,
//! while ingestion is busy, CPU work at a lower priority ([`cpu_work`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::EngineError;

/// The runtime the pipeline worker runs on: one thread, for the whole process.
///
/// Why not the server's: the worker's own async work (decoding the rows it reads, binding the
/// rows it commits) comes in polls of milliseconds, and on the server's workers every such poll
/// held up the requests queued behind it (the mapped single-event webhooks' p99 went from 1.6x
/// to 2.3x the unmapped one's, BENCHMARKS.md). Why for the whole process: a PostgreSQL
/// connection the worker opens stays registered with this runtime's I/O driver and goes back
/// to the pool the server shares, so the driver must outlive every user of the pool.
pub(crate) fn worker_runtime() -> Result<&'static tokio::runtime::Runtime, &'static str> {
    static RUNTIME: std::sync::OnceLock<Result<tokio::runtime::Runtime, String>> =
        std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("pipeline")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(String::as_str)
}

/// How much less the pipeline's CPU work weighs with the scheduler than the rest of the
/// process while ingestion is busy (a Linux nice value: 19 weighs about a seventieth of 0).
/// The lowest: its reads, lookups and commits still run at full priority on the database's
/// threads, and at 10 the mapped webhooks' p99 went over 2x the unmapped one's once those
/// reads were packed (BENCHMARKS.md).
const BACKGROUND_NICE: i32 = 19;

/// How long after ingestion last woke the worker it still counts as busy.
const FOREGROUND_QUIET: Duration = Duration::from_millis(250);

/// When ingestion last woke the worker (every append that the server acknowledges does):
/// while it keeps doing so, the pipeline's CPU work yields to it.
pub(crate) struct Foreground {
    origin: Instant,
    /// Milliseconds after `origin`, plus one (0: never).
    last: AtomicU64,
}

impl Foreground {
    pub(crate) fn new() -> Arc<Foreground> {
        Arc::new(Foreground {
            origin: Instant::now(),
            last: AtomicU64::new(0),
        })
    }

    pub(crate) fn touch(&self) {
        let now = self.origin.elapsed().as_millis() as u64 + 1;
        self.last.store(now, Ordering::Relaxed);
    }

    pub(crate) fn busy(&self) -> bool {
        self.woke_within(FOREGROUND_QUIET)
    }

    fn woke_within(&self, quiet: Duration) -> bool {
        match self.last.load(Ordering::Relaxed) {
            0 => false,
            last => {
                let now = self.origin.elapsed().as_millis() as u64 + 1;
                now.saturating_sub(last) < quiet.as_millis() as u64
            }
        }
    }
}

/// Runs the pipeline's CPU work (mapping, resolving, evaluating audiences) on a thread of its
/// own; while ingestion is busy ([`Foreground::busy`]) at a lower scheduling priority, so the
/// requests get the CPU before it: under load the pipeline uses what they leave and falls
/// behind, and once they stop it catches up at full priority. (Threads it starts, such as
/// [`crate::in_parallel`]'s, inherit the priority.)
pub(crate) async fn cpu_work<R: Send + 'static>(
    foreground: &Foreground,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, EngineError> {
    let yield_to_requests = foreground.busy();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pipeline-cpu".into())
        .spawn(move || {
            if yield_to_requests {
                lower_priority();
            }
            let _ = tx.send(f());
        })
        .map_err(|e| EngineError::Corrupt(format!("no thread for pipeline work: {e}")))?;
    rx.await
        .map_err(|_| EngineError::Corrupt("pipeline work failed (it panicked)".into()))
}

/// Lowers the calling thread's scheduling priority to [`BACKGROUND_NICE`].
fn lower_priority() {
    // On Linux a nice value belongs to a thread: `PRIO_PROCESS` with 0 names the caller.
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority reads no memory of ours; a failure leaves the priority as it was.
    unsafe {
        libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingestion_counts_as_busy_until_it_has_been_quiet() {
        let foreground = Foreground::new();
        let hour = Duration::from_secs(3600);
        assert!(!foreground.woke_within(hour), "never woken");
        foreground.touch();
        assert!(foreground.woke_within(hour));
        std::thread::sleep(Duration::from_millis(20));
        assert!(!foreground.woke_within(Duration::from_millis(10)));
    }
}
