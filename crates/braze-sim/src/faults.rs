//! Fault injection, set at start (`--latency-ms` ...) or at run time (`POST /_sim/faults`).

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every API response.
    pub latency_ms: u64,
    /// Share (0..1) of API requests answered with a 5xx before any processing.
    pub error_rate: f64,
    /// The next N API requests are answered 429, whatever the bucket says.
    pub burst_429: u32,
    /// The next N API requests (after any 429 burst) are answered 503, unprocessed.
    pub burst_5xx: u32,
    /// Share (0..1) of API requests that hang for `hang_ms` and are then dropped unprocessed:
    /// the client sees a timeout.
    pub timeout_rate: f64,
    pub hang_ms: u64,
}

/// What to do with one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Injected {
    None,
    ServerError(u16),
    RateLimited,
    Hang(Duration),
}

impl Faults {
    pub fn draw(&mut self) -> Injected {
        if self.burst_429 > 0 {
            self.burst_429 -= 1;
            return Injected::RateLimited;
        }
        if self.burst_5xx > 0 {
            self.burst_5xx -= 1;
            return Injected::ServerError(503);
        }
        let mut rng = rand::rng();
        if self.timeout_rate > 0.0 && rng.random_bool(self.timeout_rate.clamp(0.0, 1.0)) {
            return Injected::Hang(Duration::from_millis(self.hang_ms.max(1)));
        }
        if self.error_rate > 0.0 && rng.random_bool(self.error_rate.clamp(0.0, 1.0)) {
            let codes = [500, 502, 503, 504];
            return Injected::ServerError(codes[rng.random_range(0..codes.len())]);
        }
        Injected::None
    }
}
