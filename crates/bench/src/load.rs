//! A bounded HTTP load generator: `connections` tasks, each with its own keep-alive
//! connection, send requests back to back for a fixed time (and at most `max_requests` each).

use std::time::{Duration, Instant};

pub struct LoadResult {
    pub requests: u64,
    pub failures: u64,
    pub elapsed: Duration,
    /// Sorted request latencies in microseconds.
    pub latencies_us: Vec<u32>,
}

impl LoadResult {
    pub fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies_us[i]) / 1_000.0
    }
}

pub async fn run(
    url: String,
    token: Option<String>,
    body: String,
    connections: usize,
    duration: Duration,
    max_requests: u64,
) -> LoadResult {
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let url = url.clone();
        let token = token.clone();
        let body = body.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .http1_only()
                .build()
                .expect("building an HTTP client");
            let mut latencies = Vec::new();
            let mut failures = 0u64;
            while Instant::now() < deadline && (latencies.len() as u64) < max_requests {
                let mut request = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(body.clone());
                if let Some(t) = &token {
                    request = request.header("authorization", t);
                }
                let sent = Instant::now();
                match request.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(sent.elapsed().as_micros() as u32);
                    }
                    _ => failures += 1,
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies_us = Vec::new();
    let mut failures = 0;
    for t in tasks {
        if let Ok((l, f)) = t.await {
            latencies_us.extend(l);
            failures += f;
        }
    }
    let elapsed = started.elapsed();
    latencies_us.sort_unstable();
    LoadResult {
        requests: latencies_us.len() as u64,
        failures,
        elapsed,
        latencies_us,
    }
}
