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
