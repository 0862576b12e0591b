//! The rate limit of an endpoint: `limit` requests per fixed window of `period` (docs/braze.md
//! §1.8: 3,000 requests per 3 s for /users/track by default), reported on every response as
//! `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (UTC epoch seconds at
//! which the current window ends).
//!
//! A fixed window makes the headers exact: `remaining` is what is left of this window, and
//! nothing more is allowed before `reset`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub struct RateLimit {
    limit: u32,
    period: Duration,
    window_start: Duration,
    used: u32,
}

/// What the limit answered, with the header values to send.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Epoch seconds at which the current window ends.
    pub reset: u64,
}

fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl RateLimit {
    pub fn new(limit: u32, period: Duration) -> Self {
        RateLimit {
            limit: limit.max(1),
            period: period.max(Duration::from_millis(1)),
            window_start: Duration::ZERO,
            used: 0,
        }
    }

    pub fn take(&mut self) -> Verdict {
        let now = since_epoch();
        if now >= self.window_start + self.period {
            // Windows are aligned to multiples of the period since the epoch.
            let period = self.period.as_nanos().max(1);
            let start = now.as_nanos() / period * period;
            self.window_start = Duration::from_nanos(start.min(u128::from(u64::MAX)) as u64);
            self.used = 0;
        }
        let allowed = self.used < self.limit;
        if allowed {
            self.used += 1;
        }
        let end = self.window_start + self.period;
        Verdict {
            allowed,
            limit: self.limit,
            remaining: self.limit - self.used,
            reset: end.as_secs() + u64::from(end.subsec_nanos() > 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_empties_and_the_next_one_is_fresh() {
        let mut limit = RateLimit::new(3, Duration::from_millis(200));
        // Start at the beginning of a window so the test does not straddle two.
        let period = 200_000_000u128;
        let into = since_epoch().as_nanos() % period;
        std::thread::sleep(Duration::from_nanos((period - into) as u64 + 1_000_000));
        assert!(limit.take().allowed);
        assert!(limit.take().allowed);
        let last = limit.take();
        assert!(last.allowed);
        assert_eq!(last.remaining, 0);
        assert!(!limit.take().allowed);
        std::thread::sleep(Duration::from_millis(210));
        let fresh = limit.take();
        assert!(fresh.allowed);
        assert_eq!(fresh.remaining, 2);
    }
}
