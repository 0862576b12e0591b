//! The rate limit of an endpoint: a token bucket (contract §1.8: 3,000 requests per 3 s for
//! /users/track by default), reported on every response as `X-RateLimit-Limit`,
//! `X-RateLimit-Remaining` and `X-RateLimit-Reset` (UTC epoch seconds).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Debug)]
pub struct RateLimit {
    limit: u32,
    period: Duration,
    tokens: f64,
    refreshed: Instant,
}

/// What the bucket answered, with the header values to send.
#[derive(Debug, Clone, Copy)]
pub struct Verdict {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Epoch seconds at which the bucket is full again.
    pub reset: u64,
}

impl RateLimit {
    pub fn new(limit: u32, period: Duration) -> Self {
        RateLimit {
            limit: limit.max(1),
            period: period.max(Duration::from_millis(1)),
            tokens: f64::from(limit.max(1)),
            refreshed: Instant::now(),
        }
    }

    pub fn take(&mut self) -> Verdict {
        let now = Instant::now();
        let rate = f64::from(self.limit) / self.period.as_secs_f64();
        let elapsed = now.duration_since(self.refreshed).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(f64::from(self.limit));
        self.refreshed = now;
        let allowed = self.tokens >= 1.0;
        if allowed {
            self.tokens -= 1.0;
        }
        let to_full = (f64::from(self.limit) - self.tokens) / rate;
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        Verdict {
            allowed,
            limit: self.limit,
            remaining: self.tokens.floor() as u32,
            reset: (epoch + to_full).ceil() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_empties_and_refills() {
        let mut bucket = RateLimit::new(3, Duration::from_millis(300));
        assert!(bucket.take().allowed);
        assert!(bucket.take().allowed);
        let last = bucket.take();
        assert!(last.allowed);
        assert_eq!(last.remaining, 0);
        assert!(!bucket.take().allowed);
        std::thread::sleep(Duration::from_millis(120));
        assert!(bucket.take().allowed);
    }
}
