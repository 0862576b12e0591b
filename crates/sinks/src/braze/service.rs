//! One `/users/track` request and what its answer means; the rate limiter and the in-flight
//! window the driver paces requests with.

use std::sync::Mutex;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::time::Instant;

use crate::braze::config::BrazeAuth;

/// What Braze answered, classified for the driver.
#[derive(Debug)]
pub enum Reply {
    /// 201 (or another 2xx): accepted. `errors` are the per-object failures of a partial
    /// success: `(index, type)`.
    Accepted { errors: Vec<(usize, String)> },
    /// 400 with nothing valid to process: every object failed. Not retried (the same body
    /// would fail again); counted as per-object errors.
    Rejected {
        message: String,
        errors: Vec<(usize, String)>,
    },
    /// 429: wait (`Retry-After` or `X-RateLimit-Reset`), then send again.
    RateLimited { wait: Option<Duration> },
    /// 5xx, a timeout or a connection error: retried with backoff.
    Retryable { detail: String },
    /// 401, 403, 404, 413 and other 4xx: the job cannot proceed.
    Fatal { reason: String },
}

/// The rate-limit headers of a response.
#[derive(Debug, Default, Clone, Copy)]
pub struct RateHeaders {
    pub remaining: Option<u64>,
    /// Epoch seconds.
    pub reset: Option<u64>,
}

pub struct BrazeClient {
    http: reqwest::Client,
    url: String,
    bearer: String,
}

impl BrazeClient {
    pub fn new(auth: &BrazeAuth) -> Result<BrazeClient, String> {
        let http = reqwest::Client::builder()
            .timeout(auth.timeout)
            .connect_timeout(auth.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(512)
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(BrazeClient {
            http,
            url: format!("{}/users/track", auth.endpoint),
            bearer: format!("Bearer {}", auth.apikey),
        })
    }

    pub async fn track(&self, body: Vec<u8>) -> (Reply, RateHeaders) {
        let sent = self
            .http
            .post(&self.url)
            .header(reqwest::header::AUTHORIZATION, &self.bearer)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            // Never include the error's URL or headers verbatim beyond its kind: reqwest's
            // Display does not include headers, so the key cannot leak through it.
            Err(e) if e.is_timeout() => {
                return (
                    Reply::Retryable {
                        detail: "timed out".into(),
                    },
                    RateHeaders::default(),
                );
            }
            Err(e) => {
                return (
                    Reply::Retryable {
                        detail: format!("connection error: {}", without_url(&e)),
                    },
                    RateHeaders::default(),
                );
            }
        };
        let status = response.status();
        let headers = rate_headers(response.headers());
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body: Value = response.json().await.unwrap_or(Value::Null);
        (classify(status, &body, retry_after, headers), headers)
    }
}

fn without_url(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    if let Some(url) = e.url() {
        text = text.replace(url.as_str(), "");
    }
    text
}

fn rate_headers(headers: &reqwest::header::HeaderMap) -> RateHeaders {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    RateHeaders {
        remaining: number("x-ratelimit-remaining"),
        reset: number("x-ratelimit-reset"),
    }
}

fn object_errors(body: &Value) -> Vec<(usize, String)> {
    body["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter(|e| e["input_array"].as_str().is_none_or(|a| a == "attributes"))
                .filter_map(|e| {
                    let index = e["index"].as_u64()? as usize;
                    let kind = e["type"].as_str().unwrap_or("unknown error").to_string();
                    Some((index, kind))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Time until an epoch second, from now.
pub fn until_epoch(reset: u64) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(reset).saturating_sub(now)
}

pub fn classify(
    status: StatusCode,
    body: &Value,
    retry_after: Option<Duration>,
    headers: RateHeaders,
) -> Reply {
    let message = body["message"].as_str().unwrap_or("").to_string();
    match status.as_u16() {
        200..=299 => Reply::Accepted {
            errors: object_errors(body),
        },
        429 => Reply::RateLimited {
            wait: retry_after.or(headers.reset.map(until_epoch)),
        },
        400 if !object_errors(body).is_empty() => Reply::Rejected {
            message,
            errors: object_errors(body),
        },
        401 => Reply::Fatal {
            reason: format!(
                "Braze rejected the API key (401 {message}): check the authorization's apikey and instance"
            ),
        },
        403 => Reply::Fatal {
            reason: format!(
                "Braze refused the request (403 {message}): the API key needs the users.track permission"
            ),
        },
        404 => Reply::Fatal {
            reason: "Braze answered 404 for /users/track: check the authorization's instance"
                .into(),
        },
        408 | 500..=599 => Reply::Retryable {
            detail: format!("HTTP {} {message}", status.as_u16()),
        },
        other => Reply::Fatal {
            reason: format!("Braze answered HTTP {other} {message}"),
        },
    }
}

/// The rate limit as a token bucket, `requests` per `per`, kept in GCRA form: each caller
/// reserves the next slot under the lock and sleeps once until it (no herd of waiters polling
/// for tokens). It allows a burst of 2 % of the limit and then paces at 98 % of it, so no fixed
/// window on Braze's side ever sees more than the limit (burst + rate × window ≤ limit).
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
}

/// The share of the limit allowed as a burst; the rest is paced.
const BURST_SHARE: f64 = 0.02;

impl RateLimiter {
    pub fn new(requests: u32, per: Duration) -> RateLimiter {
        let requests = f64::from(requests.max(1));
        let burst = (requests * BURST_SHARE).floor().max(1.0);
        let rate = (requests - burst).max(requests * 0.5) / per.as_secs_f64();
        let interval = Duration::from_secs_f64(1.0 / rate.max(1e-6));
        let now = Instant::now();
        RateLimiter {
            state: Mutex::new(Bucket {
                interval,
                tolerance: interval.mul_f64(burst - 1.0),
                next: now,
                paused_until: now,
            }),
        }
    }

    fn bucket(&self) -> std::sync::MutexGuard<'_, Bucket> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for this request's slot.
    pub async fn acquire(&self) {
        loop {
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
            // A pause that came while this request slept moves it after the pause.
            if Instant::now() >= self.bucket().paused_until {
                return;
            }
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
    use serde_json::json;

    #[test]
    fn replies_are_classified_like_the_contract_says() {
        let none = RateHeaders::default();
        let partial = json!({"message": "success", "errors": [
            {"type": "bad", "input_array": "attributes", "index": 3}]});
        assert!(matches!(
            classify(StatusCode::CREATED, &partial, None, none),
            Reply::Accepted { errors } if errors == vec![(3, "bad".to_string())]
        ));
        let fatal = json!({"message": "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields.",
                           "errors": [{"type": "x", "input_array": "attributes", "index": 0}]});
        assert!(matches!(
            classify(StatusCode::BAD_REQUEST, &fatal, None, none),
            Reply::Rejected { .. }
        ));
        assert!(matches!(
            classify(StatusCode::UNAUTHORIZED, &json!({"message": "Invalid API Key"}), None, none),
            Reply::Fatal { reason } if reason.contains("Invalid API Key")
        ));
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, &json!(null), None, none),
            Reply::Retryable { .. }
        ));
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &json!(null), Some(Duration::from_secs(2)), none),
            Reply::RateLimited { wait: Some(w) } if w == Duration::from_secs(2)
        ));
    }

    #[tokio::test]
    async fn the_limiter_paces_at_98_percent_of_the_limit() {
        let limiter = RateLimiter::new(200, Duration::from_secs(1));
        let started = Instant::now();
        for _ in 0..100 {
            limiter.acquire().await;
        }
        // A burst of 4, then 196/s: 96 more take about 0.49 s.
        let elapsed = started.elapsed();
        assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
        assert!(elapsed < Duration::from_millis(900), "{elapsed:?}");
    }

    #[tokio::test]
    async fn no_window_of_the_period_sees_more_than_the_limit() {
        // 50 per 500 ms, 8 callers at once: count the grants in every 500 ms window.
        let limiter = std::sync::Arc::new(RateLimiter::new(50, Duration::from_millis(500)));
        let started = Instant::now();
        let times = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (limiter, times) = (limiter.clone(), times.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..20 {
                    limiter.acquire().await;
                    times
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(started.elapsed());
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        let mut times = times.lock().unwrap_or_else(|p| p.into_inner()).clone();
        times.sort();
        assert_eq!(times.len(), 160);
        for (i, t) in times.iter().enumerate() {
            let in_window = times[i..]
                .iter()
                .take_while(|u| **u < *t + Duration::from_millis(500))
                .count();
            assert!(
                in_window <= 50,
                "{in_window} grants within 500 ms from {t:?}"
            );
        }
        // And it is not much slower than the limit either: 160 grants at 49/500 ms after a
        // burst of 1 take about 1.6 s.
        let total = times.last().copied().unwrap_or_default();
        assert!(total < Duration::from_millis(1_900), "{total:?}");
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
