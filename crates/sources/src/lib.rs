//! Decoding of collected data into event records: JSON (one object, an array of objects, or
//! newline-delimited JSON), CSV, and gzip. Functions over bytes or readers with no other I/O;
//! the HTTP layer (and later the SFTP importer) call them. CSV also decodes as a stream, in
//! batches, so memory does not grow with the file.
//!
//! Invariants:
//! - A decode either returns every record it accepted plus every rejection (with its line), or
//!   fails as a whole with the position of the first error. Callers store nothing on failure.
//! - A record's payload is the text of one JSON object; for JSON input it is the sender's own
//!   text, unchanged, so nothing is lost or reformatted between the wire and the raw store.

mod csv_body;
mod gzip;
mod json_body;
mod json_check;

pub use csv_body::{CsvOptions, DEFAULT_MAX_COLUMNS, StreamSummary, decode_csv, decode_csv_stream};
pub use gzip::{BodyStream, GzipError, gunzip_if_compressed, is_gzip};
pub use json_body::decode_json;

use time::OffsetDateTime;

/// Options every format shares.
#[derive(Debug, Clone, Default)]
pub struct DecodeOptions {
    /// The field holding each record's event time; the receive time is used when absent.
    pub timestamp_field: Option<String>,
    /// Skip bad records (counting them) instead of failing the whole body.
    pub drop_errors: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// One JSON object, as text.
    pub payload: String,
    /// From `timestamp_field`, when the record had it.
    pub event_time: Option<OffsetDateTime>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub line: u64,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Decoded {
    pub records: Vec<Record>,
    pub rejected: Vec<Rejection>,
}

/// Why a body was refused, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} at line {line}{}", column.map(|c| format!(", column {c}")).unwrap_or_default())]
pub struct DecodeError {
    pub message: String,
    pub line: u64,
    pub column: Option<u64>,
}

impl DecodeError {
    fn at(line: u64, column: Option<u64>, message: impl Into<String>) -> Self {
        DecodeError {
            message: message.into(),
            line,
            column,
        }
    }
}

/// Reads the event time of a record; `Ok(None)` when the field is absent or null.
fn event_time_of(
    object: &serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<Option<OffsetDateTime>, String> {
    match object.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => tributary_core::timestamp::parse_json_timestamp(v)
            .map(Some)
            .ok_or_else(|| {
                format!("timestamp field {field:?} has a value that is not a date or time: {v}")
            }),
    }
}

/// 1-based line and column of a byte offset in `text`.
fn line_col(text: &str, offset: usize) -> (u64, u64) {
    let before = &text.as_bytes()[..offset.min(text.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() as u64 + 1;
    let col = before.iter().rev().take_while(|&&b| b != b'\n').count() as u64 + 1;
    (line, col)
}

/// Rejects a body that is not UTF-8, naming where.
fn utf8(body: &[u8]) -> Result<&str, DecodeError> {
    std::str::from_utf8(body).map_err(|e| {
        let valid = &body[..e.valid_up_to()];
        let text = std::str::from_utf8(valid).unwrap_or_default();
        let (line, col) = line_col(text, text.len());
        DecodeError::at(line, Some(col), "body is not valid UTF-8")
    })
}
