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
    /// Share (0..1) of API requests that are *applied* and then answered with a 5xx: the
    /// change stands (and its data points are spent) although the client sees a failure.
    /// Braze says it cannot replay calls that failed during an incident, not that a failed
    /// call did nothing; a client that retries one pays twice.
    pub applied_error_rate: f64,
    /// Share (0..1) of API requests that are applied and then hang for `hang_ms` before a
    /// 504: the client times out on a request that took effect.
    pub applied_timeout_rate: f64,
}

/// What to do with one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Injected {
    None,
    ServerError(u16),
    RateLimited,
    Hang(Duration),
    /// Process the request, then answer this 5xx instead of the result.
    AppliedServerError(u16),
    /// Process the request, then hang this long and answer 504.
    AppliedHang(Duration),
}

const SERVER_ERRORS: [u16; 4] = [500, 502, 503, 504];

fn chance(rng: &mut impl Rng, share: f64) -> bool {
    share > 0.0 && rng.random_bool(share.clamp(0.0, 1.0))
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
        let hang = Duration::from_millis(self.hang_ms.max(1));
        let code = SERVER_ERRORS[rng.random_range(0..SERVER_ERRORS.len())];
        if chance(&mut rng, self.timeout_rate) {
            return Injected::Hang(hang);
        }
        if chance(&mut rng, self.error_rate) {
            return Injected::ServerError(code);
        }
        if chance(&mut rng, self.applied_timeout_rate) {
            return Injected::AppliedHang(hang);
        }
        if chance(&mut rng, self.applied_error_rate) {
            return Injected::AppliedServerError(code);
        }
        Injected::None
    }
}
