//! Delivery: one request to Braze and what its answer means (classification), sending it
//! until Braze takes it (retries, backoff, 429s), and the requests in flight.
//!
//! Invariants:
//! - Every request in flight is a task of the run's [`Flights`] (a `JoinSet`): when the run
//!   ends for any reason (pause, kill, lost lease, error, the run being dropped), they are
//!   aborted. Nothing this export started sends anything after that.
//! - Every request that left for Braze is counted in the job's metrics when it leaves; one
//!   abandoned while Braze had it (aborted, timed out) is counted as in doubt, with its data
//!   points, since Braze may have applied it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tributary_core::LogLevel;

use crate::braze::config::BrazeAuth;
use crate::braze::counters::Counters;
use crate::braze::limit::{RateLimiter, Window};
use crate::braze::request_builder::Request;

/// The most of an error answer's text kept for a job's log and `last_error`.
const ERROR_TEXT_MAX: usize = 200;
/// Per-object errors logged per request (all are counted).
const OBJECT_ERRORS_LOGGED: usize = 3;

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
    /// 5xx, a timeout or a connection error: retried with backoff. `in_doubt`: Braze had the
    /// request and may have applied it (a 5xx, a timeout), as opposed to a connection that
    /// never reached it.
    Retryable { detail: String, in_doubt: bool },
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

/// Braze's REST endpoints this export calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Track,
    Delete,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Endpoint::Track => "/users/track",
            Endpoint::Delete => "/users/delete",
        }
    }
}

pub struct BrazeClient {
    http: reqwest::Client,
    base: String,
    bearer: String,
}

impl BrazeClient {
    pub fn new(auth: &BrazeAuth) -> Result<BrazeClient, String> {
        let http = reqwest::Client::builder()
            .timeout(auth.timeout)
            .connect_timeout(auth.timeout.min(Duration::from_secs(10)))
            .pool_max_idle_per_host(512)
            // A redirect would re-send the users (and, to the same host, the key) somewhere
            // the operator never chose: a 3xx is an answer, and a fatal one.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(BrazeClient {
            http,
            base: auth.endpoint.clone(),
            bearer: format!("Bearer {}", auth.apikey),
        })
    }

    pub fn url(&self, endpoint: Endpoint) -> String {
        format!("{}{}", self.base, endpoint.path())
    }

    pub async fn post(&self, endpoint: Endpoint, body: Vec<u8>) -> (Reply, RateHeaders) {
        let url = self.url(endpoint);
        let sent = self
            .http
            .post(&url)
            .header(reqwest::header::AUTHORIZATION, &self.bearer)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            // The URL is the endpoint's (never a secret: the key travels in a header, and
            // reqwest's errors do not show headers).
            Err(e) if e.is_timeout() => {
                return (
                    Reply::Retryable {
                        detail: format!("POST {url} timed out"),
                        in_doubt: true,
                    },
                    RateHeaders::default(),
                );
            }
            Err(e) => {
                return (
                    Reply::Retryable {
                        detail: format!("POST {url}: connection error: {}", cause(&e)),
                        // Connecting failed, or the connection broke after the request
                        // went: only the former is certain not to have reached Braze.
                        in_doubt: !e.is_connect(),
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
            .and_then(|v| parse_retry_after(v, time::OffsetDateTime::now_utc()));
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map(printable)
                .unwrap_or_default();
            return (
                Reply::Fatal {
                    reason: format!(
                        "Braze answered POST {url} with a redirect (HTTP {}) to {location:?}; \
                         redirects are not followed: check the authorization's instance",
                        status.as_u16()
                    ),
                },
                headers,
            );
        }
        let body: Value = match read_capped(response).await {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            Err(e) if e.is_timeout() => {
                return (
                    Reply::Retryable {
                        detail: format!("POST {url}: the answer timed out"),
                        in_doubt: true,
                    },
                    headers,
                );
            }
            Err(_) => Value::Null,
        };
        (
            classify(endpoint, status, &body, retry_after, headers),
            headers,
        )
    }
}

/// The most of an answer's body that is read. Braze's answers are small (a 75-object request's
/// error list is a few KB); a larger one is cut here rather than held in memory.
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// An answer's body, up to [`MAX_ANSWER_BYTES`] (what is beyond is not read).
async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_ANSWER_BYTES - body.len();
        if chunk.len() >= room {
            body.extend_from_slice(&chunk[..room]);
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The innermost cause of an error (reqwest's own text only says "error sending request").
fn cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut inner: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = inner.source() {
        inner = next;
    }
    inner.to_string()
}

/// `Retry-After` as Braze (or a proxy in front of it) may send it: seconds, or an HTTP date
/// (RFC 9110 §10.2.3).
pub fn parse_retry_after(value: &str, now: time::OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    Some(Duration::try_from(at - now).unwrap_or(Duration::ZERO))
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
                    let kind = e["type"].as_str().unwrap_or("unknown error");
                    Some((index, printable(kind)))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Text from an answer as logs and `last_error` show it: control characters out, at most
/// `ERROR_TEXT_MAX` characters.
fn printable(text: &str) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(ERROR_TEXT_MAX)
        .collect();
    if text.chars().count() > ERROR_TEXT_MAX {
        out.push('…');
    }
    out
}

/// Time until an epoch second, from now.
pub fn until_epoch(reset: u64) -> Duration {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    Duration::from_secs(reset).saturating_sub(now)
}

pub fn classify(
    endpoint: Endpoint,
    status: StatusCode,
    body: &Value,
    retry_after: Option<Duration>,
    headers: RateHeaders,
) -> Reply {
    let message = printable(body["message"].as_str().unwrap_or(""));
    let path = endpoint.path();
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
                "Braze refused {path} (403 {message}): the API key needs the {} permission",
                match endpoint {
                    Endpoint::Track => "users.track",
                    Endpoint::Delete => "users.delete",
                }
            ),
        },
        404 => Reply::Fatal {
            reason: format!("Braze answered 404 for {path}: check the authorization's instance"),
        },
        408 | 500..=599 => Reply::Retryable {
            detail: format!("{path} answered HTTP {} {message}", status.as_u16()),
            in_doubt: true,
        },
        other => Reply::Fatal {
            reason: format!("Braze answered HTTP {other} for {path} {message}"),
        },
    }
}

/// What one request's delivery came to.
pub enum Delivery {
    /// Braze took it (possibly with per-object errors, possibly rejecting every object).
    Done,
    /// The job cannot go on.
    Fatal(String),
}

/// One request to send.
pub struct Call {
    pub endpoint: Endpoint,
    pub request: Request,
}

/// What a run's requests share: the client, the pacing, the counters and the job's log.
pub struct Service {
    pub client: BrazeClient,
    /// Paces `/users/track` (the authorization's limit).
    pub limiter: RateLimiter,
    /// Paces `/users/delete`, which has a limit of its own (docs/braze.md, "Rate limits").
    pub delete_limiter: RateLimiter,
    pub window: std::sync::Mutex<Window>,
    pub counters: Counters,
    pub retry_max: Duration,
    pub job: i64,
    pub store: Arc<dyn tributary_store::Store>,
}

/// A request that left for Braze and has no answer yet: dropped unanswered (the run aborted
/// it), it is counted as in doubt.
struct Unanswered<'a> {
    counters: &'a Counters,
    data_points: u64,
    answered: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if !self.answered {
            Counters::add(&self.counters.requests_in_doubt, 1);
            Counters::add(&self.counters.data_points_in_doubt, self.data_points);
        }
    }
}

impl Service {
    fn limiter(&self, endpoint: Endpoint) -> &RateLimiter {
        match endpoint {
            Endpoint::Track => &self.limiter,
            Endpoint::Delete => &self.delete_limiter,
        }
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The window's size now (the guard is not held across an await).
    pub fn window_size(&self) -> usize {
        self.window().size()
    }

    pub fn metrics(&self) -> Value {
        self.counters.to_json(self.window_size())
    }

    pub async fn log(&self, level: LogLevel, message: &str) {
        tributary_jobs::job_log(self.store.as_ref(), self.job, level, message).await;
    }

    /// Sends one request until Braze takes it, retrying 5xx and timeouts with exponential
    /// backoff and jitter, and waiting out 429s.
    pub async fn deliver(&self, call: Call) -> Delivery {
        let Call { endpoint, request } = call;
        let started = Instant::now();
        let mut backoff = Duration::from_millis(250);
        let url = self.client.url(endpoint);
        loop {
            self.limiter(endpoint).acquire().await;
            let sent_at = Instant::now();
            Counters::add(&self.counters.requests, 1);
            let mut unanswered = Unanswered {
                counters: &self.counters,
                data_points: request.data_points,
                answered: false,
            };
            let (reply, headers) = self.client.post(endpoint, request.body.clone()).await;
            unanswered.answered = true;
            drop(unanswered);
            metrics::histogram!("tributary_braze_request_seconds")
                .record(sent_at.elapsed().as_secs_f64());
            if headers.remaining == Some(0)
                && let Some(reset) = headers.reset
            {
                self.limiter(endpoint).pause(until_epoch(reset));
            }
            match reply {
                Reply::Accepted { errors } => {
                    self.outcome("accepted");
                    Counters::add(&self.counters.accepted, 1);
                    self.window().on_success();
                    let users = request.users.len() as u64;
                    match endpoint {
                        Endpoint::Track => {
                            Counters::add(&self.counters.users_sent, users);
                            Counters::add(&self.counters.data_points, request.data_points);
                            metrics::counter!("tributary_braze_users_sent_total").increment(users);
                            metrics::counter!("tributary_braze_data_points_total")
                                .increment(request.data_points);
                        }
                        Endpoint::Delete => {
                            Counters::add(&self.counters.users_deleted, users);
                            self.log(
                                LogLevel::Info,
                                &format!("Braze deleted {users} erased people ({url})"),
                            )
                            .await;
                        }
                    }
                    if !errors.is_empty() {
                        self.object_errors(&request, &errors, "").await;
                    }
                    return Delivery::Done;
                }
                Reply::Rejected { message, errors } => {
                    self.outcome("rejected");
                    Counters::add(&self.counters.rejected_requests, 1);
                    self.object_errors(&request, &errors, &message).await;
                    return Delivery::Done;
                }
                Reply::RateLimited { wait } => {
                    self.outcome("rate_limited");
                    Counters::add(&self.counters.rate_limited, 1);
                    self.window().on_rate_limited();
                    self.limiter(endpoint).pause(
                        wait.unwrap_or(Duration::from_secs(1))
                            .max(Duration::from_millis(50)),
                    );
                }
                Reply::Retryable { detail, in_doubt } => {
                    self.outcome("retried");
                    Counters::add(&self.counters.retries, 1);
                    if in_doubt {
                        Counters::add(&self.counters.requests_in_doubt, 1);
                        Counters::add(&self.counters.data_points_in_doubt, request.data_points);
                    }
                    if started.elapsed() >= self.retry_max {
                        return Delivery::Fatal(format!(
                            "Braze kept failing for {} s (last: {detail}); giving up",
                            self.retry_max.as_secs()
                        ));
                    }
                    let jittered = backoff.mul_f64(0.5 + rand::random::<f64>() * 0.5);
                    self.log(
                        LogLevel::Warn,
                        &format!("Braze request failed ({detail}); retrying in {jittered:.1?}"),
                    )
                    .await;
                    tokio::time::sleep(jittered).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
                Reply::Fatal { reason } => {
                    self.outcome("fatal");
                    return Delivery::Fatal(reason);
                }
            }
        }
    }

    fn outcome(&self, outcome: &'static str) {
        metrics::counter!("tributary_braze_requests_total", "outcome" => outcome).increment(1);
    }

    async fn object_errors(&self, request: &Request, errors: &[(usize, String)], why: &str) {
        Counters::add(&self.counters.object_errors, errors.len() as u64);
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
        self.log(
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
}

/// The requests in flight and the users they carry. Dropping it aborts them all.
#[derive(Default)]
pub struct Flights {
    tasks: JoinSet<(u64, Delivery)>,
    users: HashMap<u64, Vec<String>>,
    busy: HashMap<String, u32>,
}

impl Flights {
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Whether one of the request's users is in a request still in flight (a user's changes
    /// reach Braze in order).
    pub fn blocks(&self, request: &Request) -> bool {
        request.users.iter().any(|u| self.busy.contains_key(u))
    }

    pub fn launch(&mut self, id: u64, call: Call, service: &Arc<Service>) {
        for user in &call.request.users {
            *self.busy.entry(user.clone()).or_default() += 1;
        }
        self.users.insert(id, call.request.users.clone());
        let service = service.clone();
        self.tasks
            .spawn(async move { (id, service.deliver(call).await) });
    }

    /// The next finished request: `Ok(id)` when Braze took it, `Err` when the job cannot go
    /// on. `None` when nothing is in flight.
    pub async fn next(&mut self) -> Option<Result<u64, String>> {
        let joined = self.tasks.join_next().await?;
        Some(self.settle(joined))
    }

    /// A finished request, if one is ready now.
    pub fn try_next(&mut self) -> Option<Result<u64, String>> {
        let joined = self.tasks.try_join_next()?;
        Some(self.settle(joined))
    }

    fn settle(
        &mut self,
        joined: Result<(u64, Delivery), tokio::task::JoinError>,
    ) -> Result<u64, String> {
        let (id, delivery) = joined.map_err(|e| format!("a request task failed: {e}"))?;
        for user in self.users.remove(&id).unwrap_or_default() {
            if let Some(n) = self.busy.get_mut(&user) {
                *n -= 1;
                if *n == 0 {
                    self.busy.remove(&user);
                }
            }
        }
        match delivery {
            Delivery::Done => Ok(id),
            Delivery::Fatal(reason) => Err(reason),
        }
    }

    /// Stops every request in flight now and waits until they are gone (each abandoned while
    /// Braze had it is counted as in doubt as its task is dropped).
    pub async fn abort(&mut self) {
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        self.users.clear();
        self.busy.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A server on loopback that answers every connection with `head` and then `body_len`
    /// bytes of `0` (written until the client goes away); how many connections it saw.
    async fn canned_server(
        head: String,
        body_len: usize,
    ) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let seen = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let head = head.clone();
                tokio::spawn(async move {
                    let mut request = vec![0u8; 64 * 1024];
                    let _ = socket.read(&mut request).await;
                    if socket.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let block = vec![b'0'; 64 * 1024];
                    let mut left = body_len;
                    while left > 0 {
                        let n = left.min(block.len());
                        if socket.write_all(&block[..n]).await.is_err() {
                            return;
                        }
                        left -= n;
                    }
                });
            }
        });
        (base, seen)
    }

    fn client_for(base: &str) -> BrazeClient {
        BrazeClient::new(&crate::braze::config::BrazeAuth {
            endpoint: base.to_string(),
            apikey: "the-key".into(),
            requests: 10,
            per: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        })
        .expect("client")
    }

    /// A redirect is not followed (seen: a 307 made the exporter re-POST users elsewhere): it
    /// fails the job, naming where it pointed.
    #[tokio::test]
    async fn redirects_are_not_followed() {
        let (elsewhere, visits) = canned_server(
            "HTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\n".into(),
            2,
        )
        .await;
        let (base, _) = canned_server(
            format!(
                "HTTP/1.1 307 Temporary Redirect\r\nlocation: {elsewhere}/users/track\r\n\
                 content-length: 0\r\n\r\n"
            ),
            0,
        )
        .await;
        let (reply, _) = client_for(&base)
            .post(Endpoint::Track, b"{}".to_vec())
            .await;
        match reply {
            Reply::Fatal { reason } => {
                assert!(reason.contains("redirect (HTTP 307)"), "{reason}");
                assert!(reason.contains(&elsewhere), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(visits.load(std::sync::atomic::Ordering::SeqCst), 0);
    }

    /// An answer larger than the cap is read only up to it (seen: a 200 MB answer grew the
    /// process by 430 MB). Here the answer never ends: read whole, it would time out.
    #[tokio::test]
    async fn huge_answers_are_read_only_up_to_the_cap() {
        let endless = usize::MAX;
        let (base, _) = canned_server(
            "HTTP/1.1 201 Created\r\ncontent-length: 1000000000000\r\n\r\n".into(),
            endless,
        )
        .await;
        let (reply, _) = client_for(&base)
            .post(Endpoint::Track, b"{}".to_vec())
            .await;
        assert!(matches!(reply, Reply::Accepted { .. }), "{reply:?}");
    }

    fn track(status: StatusCode, body: &Value, retry_after: Option<Duration>) -> Reply {
        classify(
            Endpoint::Track,
            status,
            body,
            retry_after,
            RateHeaders::default(),
        )
    }

    #[test]
    fn replies_are_classified_like_the_contract_says() {
        let partial = json!({"message": "success", "errors": [
            {"type": "bad", "input_array": "attributes", "index": 3}]});
        assert!(matches!(
            track(StatusCode::CREATED, &partial, None),
            Reply::Accepted { errors } if errors == vec![(3, "bad".to_string())]
        ));
        let fatal = json!({"message": "Valid data must be provided in the 'attributes', 'events', or 'purchases' fields.",
                           "errors": [{"type": "x", "input_array": "attributes", "index": 0}]});
        assert!(matches!(
            track(StatusCode::BAD_REQUEST, &fatal, None),
            Reply::Rejected { .. }
        ));
        assert!(matches!(
            track(StatusCode::UNAUTHORIZED, &json!({"message": "Invalid API Key"}), None),
            Reply::Fatal { reason } if reason.contains("Invalid API Key")
        ));
        assert!(matches!(
            track(StatusCode::SERVICE_UNAVAILABLE, &json!(null), None),
            Reply::Retryable { in_doubt: true, .. }
        ));
        assert!(matches!(
            track(StatusCode::TOO_MANY_REQUESTS, &json!(null), Some(Duration::from_secs(2))),
            Reply::RateLimited { wait: Some(w) } if w == Duration::from_secs(2)
        ));
        assert!(matches!(
            classify(Endpoint::Delete, StatusCode::FORBIDDEN, &json!({"message": "Access Denied"}), None, RateHeaders::default()),
            Reply::Fatal { reason } if reason.contains("users.delete")
        ));
    }

    #[test]
    fn error_text_from_braze_is_cut_and_stripped() {
        let long = format!("bad\n\u{1b}[31m{}", "x".repeat(10_000));
        let Reply::Fatal { reason } =
            track(StatusCode::IM_A_TEAPOT, &json!({ "message": long }), None)
        else {
            panic!("a 418 is fatal");
        };
        assert!(reason.len() < 400, "{}", reason.len());
        assert!(!reason.chars().any(char::is_control), "{reason:?}");
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_an_http_date() {
        let now = time::macros::datetime!(2026-12-02 10:00:00 UTC);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Wed, 02 Dec 2026 10:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 02 Dec 2026 09:59:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past: no wait"
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
