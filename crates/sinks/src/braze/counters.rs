//! The export's counters: the job's metrics (cumulative over the job's life, across restarts
//! and pauses) and the process's Prometheus metrics.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

#[derive(Default)]
pub struct Counters {
    /// Requests that left for Braze (`/users/track` and `/users/delete`), whatever came back.
    pub requests: AtomicU64,
    pub accepted: AtomicU64,
    pub rate_limited: AtomicU64,
    pub retries: AtomicU64,
    pub users_sent: AtomicU64,
    pub data_points: AtomicU64,
    pub object_errors: AtomicU64,
    pub rejected_requests: AtomicU64,
    /// Requests abandoned while Braze had them (the run stopped, or the request timed out):
    /// Braze may have applied them.
    pub requests_in_doubt: AtomicU64,
    /// Data points of those requests: what Braze may have counted beyond `data_points`.
    pub data_points_in_doubt: AtomicU64,
    pub changes_read: AtomicU64,
    pub skipped_no_identifier: AtomicU64,
    pub skipped_gone: AtomicU64,
    /// Exits of a profile that is gone, not sent because another member now has its
    /// identifier in that audience.
    pub skipped_still_member: AtomicU64,
    pub coalesced_away: AtomicU64,
    pub users_deleted: AtomicU64,
    pub store_retries: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Each counter with its name in the job's metrics.
    fn named(&self) -> [(&AtomicU64, &'static str); 17] {
        [
            (&self.requests, "requests"),
            (&self.accepted, "requests_accepted"),
            (&self.rejected_requests, "requests_rejected"),
            (&self.rate_limited, "rate_limited"),
            (&self.retries, "retries"),
            (&self.requests_in_doubt, "requests_in_doubt"),
            (&self.users_sent, "users_sent"),
            (&self.data_points, "data_points"),
            (&self.data_points_in_doubt, "data_points_in_doubt"),
            (&self.object_errors, "object_errors"),
            (&self.changes_read, "changes_read"),
            (&self.skipped_no_identifier, "skipped_no_identifier"),
            (&self.skipped_gone, "skipped_gone"),
            (&self.skipped_still_member, "skipped_still_member"),
            (&self.coalesced_away, "batches_coalesced_away"),
            (&self.users_deleted, "users_deleted"),
            (&self.store_retries, "store_retries"),
        ]
    }

    /// Counters carried on from the job's saved metrics.
    pub fn resume(saved: &Value) -> Counters {
        let counters = Counters::default();
        for (counter, name) in counters.named() {
            counter.store(saved[name].as_u64().unwrap_or(0), Ordering::Relaxed);
        }
        counters
    }

    pub fn to_json(&self, window: usize) -> Value {
        let mut out: serde_json::Map<String, Value> = self
            .named()
            .into_iter()
            .map(|(counter, name)| (name.to_string(), json!(counter.load(Ordering::Relaxed))))
            .collect();
        out.insert("in_flight_window".into(), json!(window));
        Value::Object(out)
    }
}
