//! Pacing requests to Braze: the rate limiter and the in-flight window.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// The rate limit, `requests` per `per`, as two rules:
/// - a paced schedule (GCRA): each caller reserves the next slot under the lock and sleeps
///   once until it (no herd of waiters polling for tokens); a burst of 2 % of the limit, then
///   98 % of it, evenly spread;
/// - a hard cap checked when a request is let go: never more than 98 % of the limit within
///   any span of `per`. A slot is a plan; a caller that wakes late (a busy machine, a stalled
///   runtime) could otherwise go out together with the callers whose slots came meanwhile,
///   and a window on Braze's side would see more than the limit (and answer 429).
///
/// Braze's own signals (a 429, `X-RateLimit-Remaining: 0`) pause it until the time Braze gave.
pub struct RateLimiter {
    state: Mutex<Bucket>,
}

struct Bucket {
    /// Time between requests at the paced rate.
    interval: Duration,
    /// How far ahead of the paced schedule a request may go (the burst).
    tolerance: Duration,
    /// The theoretical arrival time of the next request on the paced schedule.
    next: Instant,
    paused_until: Instant,
    /// When the requests of the last `per` were let go, oldest first (at most `cap`).
    granted: VecDeque<Instant>,
    cap: usize,
    per: Duration,
}

/// The share of the limit allowed as a burst; the rest is paced.
/// `/users/delete` shares 20,000 requests a minute with Braze's other identity endpoints
/// (docs/braze.md, "Rate limits"); an export uses none of the others.
pub const DELETE_REQUESTS_PER_MINUTE: u32 = 20_000;

const BURST_SHARE: f64 = 0.02;
/// The share of the limit any span of the period may see.
const CAP_SHARE: f64 = 0.98;

impl RateLimiter {
    pub fn new(requests: u32, per: Duration) -> RateLimiter {
        let requests = f64::from(requests.max(1));
        let burst = (requests * BURST_SHARE).floor().max(1.0);
        let rate = (requests - burst).max(requests * 0.5) / per.as_secs_f64();
        let interval = Duration::from_secs_f64(1.0 / rate.max(1e-6));
        let now = Instant::now();
        let cap = ((requests * CAP_SHARE).floor() as usize).max(1);
        RateLimiter {
            state: Mutex::new(Bucket {
                interval,
                tolerance: interval.mul_f64(burst - 1.0),
                next: now,
                paused_until: now,
                granted: VecDeque::with_capacity(cap.min(100_000)),
                cap,
                per,
            }),
        }
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for this request's turn; returns the instant it was let go.
    pub async fn acquire(&self) -> Instant {
        let slot = {
            let mut b = self.bucket();
            let earliest = Instant::now().max(b.paused_until);
            let next = b.next.max(earliest);
            b.next = next + b.interval;
            next.checked_sub(b.tolerance)
                .unwrap_or(earliest)
                .max(earliest)
        };
        tokio::time::sleep_until(slot).await;
        loop {
            let wait_until = {
                let mut b = self.bucket();
                let now = Instant::now();
                while b
                    .granted
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= b.per)
                {
                    b.granted.pop_front();
                }
                if now < b.paused_until {
                    // A pause that came while this request slept moves it after the pause.
                    b.paused_until
                } else if b.granted.len() >= b.cap {
                    // The span's share is used up: wait until its oldest request leaves it.
                    b.granted.front().map_or(now, |t| *t + b.per)
                } else {
                    b.granted.push_back(now);
                    return now;
                }
            };
            tokio::time::sleep_until(wait_until).await;
        }
    }

    /// Sends nothing before `now + wait` (a 429, or Braze saying nothing is left of this
    /// window); the paced schedule restarts there.
    pub fn pause(&self, wait: Duration) {
        let mut b = self.bucket();
        let until = Instant::now() + wait.min(Duration::from_secs(300));
        if until > b.paused_until {
            b.paused_until = until;
            b.next = b.next.max(until);
        }
    }
}

/// The in-flight window: additive increase (one more request per window's worth of
/// successes), multiplicative decrease (halved on a 429, at most once per `cooldown`).
pub struct Window {
    size: f64,
    max: f64,
    last_decrease: Option<Instant>,
    cooldown: Duration,
}

impl Window {
    pub fn new(max: usize) -> Window {
        let max = max.max(1) as f64;
        Window {
            size: 4f64.min(max),
            max,
            last_decrease: None,
            cooldown: Duration::from_millis(200),
        }
    }

    pub fn size(&self) -> usize {
        self.size.floor().max(1.0) as usize
    }

    pub fn on_success(&mut self) {
        self.size = (self.size + 1.0 / self.size).min(self.max);
    }

    pub fn on_rate_limited(&mut self) {
        let now = Instant::now();
        if self
            .last_decrease
            .is_none_or(|t| now.duration_since(t) >= self.cooldown)
        {
            self.size = (self.size / 2.0).max(1.0);
            self.last_decrease = Some(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// The most grants within any span of `span`.
    fn busiest(times: &mut [Instant], span: Duration) -> usize {
        times.sort();
        (0..times.len())
            .map(|i| {
                times[i..]
                    .iter()
                    .take_while(|t| **t < times[i] + span)
                    .count()
            })
            .max()
            .unwrap_or(0)
    }

    /// `callers` tasks taking `each` grants from `limiter`: the tasks, to join.
    fn callers(
        limiter: &Arc<RateLimiter>,
        callers: usize,
        each: usize,
    ) -> tokio::task::JoinSet<Vec<Instant>> {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..callers {
            let limiter = limiter.clone();
            tasks.spawn(async move {
                let mut granted = Vec::new();
                for _ in 0..each {
                    granted.push(limiter.acquire().await);
                }
                granted
            });
        }
        tasks
    }

    // Paused time: sleeps end exactly when due, whatever the machine is doing.
    #[tokio::test(start_paused = true)]
    async fn the_limiter_paces_at_98_percent_of_the_limit() {
        let limiter = RateLimiter::new(200, Duration::from_secs(1));
        let started = Instant::now();
        for _ in 0..100 {
            limiter.acquire().await;
        }
        // A burst of 4, then 196/s: 96 more take 96/196 s.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(480), "{elapsed:?}");
        assert!(elapsed <= Duration::from_millis(500), "{elapsed:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn no_window_of_the_period_sees_more_than_the_limit() {
        // 50 per 500 ms, 8 callers at once: count the grants in every 500 ms span.
        let limiter = Arc::new(RateLimiter::new(50, Duration::from_millis(500)));
        let started = Instant::now();
        let tasks = callers(&limiter, 8, 20);
        let mut times: Vec<Instant> = tasks.join_all().await.into_iter().flatten().collect();
        assert_eq!(times.len(), 160);
        assert!(busiest(&mut times, Duration::from_millis(500)) <= 49);
        // And it is not slower than the pace: 160 grants at 49 per 500 ms after a burst of 1.
        let total = times.iter().max().map(|t| t.duration_since(started));
        assert!(total <= Some(Duration::from_millis(1_650)), "{total:?}");
    }

    /// Real time, one thread, and a task that blocks it for 300 ms: every caller whose slot
    /// came meanwhile wakes late at once. The cap still spreads them: no span of the period
    /// sees more than 98 % of the limit. (Without the cap, the late callers went out together
    /// and a span saw the limit exceeded.)
    #[tokio::test(flavor = "current_thread")]
    async fn callers_that_wake_late_do_not_go_out_together() {
        let limiter = Arc::new(RateLimiter::new(50, Duration::from_millis(500)));
        let mut tasks = callers(&limiter, 8, 15);
        tasks.spawn(async {
            tokio::time::sleep(Duration::from_millis(200)).await;
            // Blocks the only worker thread: the runtime stalls.
            std::thread::sleep(Duration::from_millis(300));
            Vec::new()
        });
        let mut times: Vec<Instant> = tasks.join_all().await.into_iter().flatten().collect();
        assert_eq!(times.len(), 120);
        let busiest = busiest(&mut times, Duration::from_millis(500));
        assert!(busiest <= 49, "{busiest} grants within 500 ms");
    }

    #[test]
    fn the_window_grows_additively_and_halves_on_429() {
        let mut w = Window::new(64);
        assert_eq!(w.size(), 4);
        for _ in 0..100 {
            w.on_success();
        }
        let grown = w.size();
        assert!(grown > 10, "{grown}");
        w.on_rate_limited();
        assert_eq!(w.size(), grown / 2);
        w.on_rate_limited(); // within the cooldown: once per round trip
        assert_eq!(w.size(), grown / 2);
    }
}
