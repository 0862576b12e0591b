use serde::Serialize;

use crate::{AccountId, Micros};

/// An event as collected, before it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub account_id: AccountId,
    pub stream: String,
    pub received_at: Micros,
    /// From the request's `timestamp_field` when given, else the receive time.
    pub event_time: Micros,
    /// The event's JSON object, as text.
    pub payload: String,
    /// For a stream with `dedup_fields`: the event's key ([`StreamSettings::dedup_key`]). An
    /// event whose key the stream already holds is not stored again.
    pub dedup_key: Option<String>,
}

/// A stream's settings (`PUT /v2/stream/{name}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamSettings {
    /// Fields that together identify a delivery (`["dispatch_id", "braze_id"]`): a second
    /// event with the same values, received within [`DEDUP_RETENTION_SECS`], is dropped, as a
    /// sender's retry of a delivery already stored. Empty: every event is stored.
    #[serde(default)]
    pub dedup_fields: Vec<String>,
}

/// How long a stream remembers the keys of the events it stored: well beyond the longest
/// retry schedule of a webhook sender (Braze retries over about 30 minutes).
pub const DEDUP_RETENTION_SECS: i64 = 24 * 3600;
/// Most `dedup_fields` a stream may have.
pub const MAX_DEDUP_FIELDS: usize = 8;

impl StreamSettings {
    /// Checks what a user sent; the error names the problem.
    pub fn validate(&self) -> Result<(), String> {
        if self.dedup_fields.len() > MAX_DEDUP_FIELDS {
            return Err(format!(
                "dedup_fields may name at most {MAX_DEDUP_FIELDS} fields"
            ));
        }
        for f in &self.dedup_fields {
            if f.trim().is_empty() || f.len() > 200 {
                return Err(format!(
                    "dedup_fields: {f:?} is not a field name (1-200 characters)"
                ));
            }
        }
        let mut unique = self.dedup_fields.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != self.dedup_fields.len() {
            return Err("dedup_fields names a field twice".into());
        }
        Ok(())
    }

    /// The event's key: a hash of the named fields' values (top-level fields of the JSON
    /// object). `None` (the event is always stored) without `dedup_fields`, or when one of the
    /// fields is missing or null: an event that does not say which delivery it is cannot be
    /// recognised as a retry.
    pub fn dedup_key(&self, payload: &serde_json::Value) -> Option<String> {
        use sha2::Digest;
        if self.dedup_fields.is_empty() {
            return None;
        }
        let mut hash = sha2::Sha256::new();
        for field in &self.dedup_fields {
            let value = payload.get(field).filter(|v| !v.is_null())?;
            // Each value as JSON text, with its length: no two lists of values hash alike.
            let text = value.to_string();
            hash.update((text.len() as u64).to_be_bytes());
            hash.update(text.as_bytes());
        }
        Some(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
    }
}

/// A raw event read back from a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    pub id: i64,
    pub stream: String,
    pub received_at: Micros,
    pub event_time: Micros,
    /// The event's JSON object, as stored (it was checked to be JSON when collected; the
    /// pipeline parses it straight into its own value type).
    pub payload: String,
}

impl StoredEvent {
    /// The payload as a JSON tree (`Null` if the stored text is not JSON, which collection
    /// never stores).
    pub fn payload_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.payload).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StreamInfo {
    pub name: String,
    pub count: i64,
    #[serde(skip)]
    pub last_received_micros: Micros,
    pub settings: StreamSettings,
}

const MAX_STREAM_NAME: usize = 100;

/// Stream names appear in URLs, logs and (later) LQL `FROM` clauses, so they are kept to a
/// conservative alphabet.
pub fn validate_stream_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("stream name is empty".into());
    }
    if name.len() > MAX_STREAM_NAME {
        return Err(format!(
            "stream name is longer than {MAX_STREAM_NAME} characters"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "stream name {name:?} contains {bad:?}; use letters, digits, '_', '-' and '.'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names() {
        assert!(validate_stream_name("braze_users").is_ok());
        assert!(validate_stream_name("web.events-2").is_ok());
        assert!(validate_stream_name("").is_err());
        assert!(validate_stream_name("a/b").unwrap_err().contains("'/'"));
        assert!(validate_stream_name(&"x".repeat(101)).is_err());
    }
}
