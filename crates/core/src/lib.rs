//! Tributary's data model. Plain types and pure functions only: nothing here does I/O, so every
//! other crate can depend on it and its behaviour is tested without a database or a network.

pub mod account;
pub mod braze;
pub mod crypto;
pub mod definition;
pub mod event;
pub mod job;
pub mod membership;
pub mod profile;
pub mod timestamp;
pub mod token;

pub use account::{Account, AccountId};
pub use definition::{Definition, DefinitionKind};
pub use event::{
    DEDUP_RETENTION_SECS, NewEvent, StoredEvent, StreamInfo, StreamSettings, validate_stream_name,
};
pub use job::{
    AuthKind, Authorization, ImportFile, Job, JobLogLine, JobReport, JobState, LogLevel, NewJob,
};
pub use membership::{AudienceVersion, LogEntry, MembershipChange};
pub use profile::{IdentityKey, MergeRecord, PipelineCommit, StoredProfile};
pub use token::{Expiry, NewToken, Role, TokenHash, TokenRecord, TokenSecret};

/// Microseconds since the Unix epoch: how every instant is stored, on both backends.
pub type Micros = i64;

pub fn to_micros(t: time::OffsetDateTime) -> Micros {
    (t.unix_timestamp_nanos() / 1_000) as Micros
}

pub fn from_micros(micros: Micros) -> time::OffsetDateTime {
    // Out-of-range values cannot come from `to_micros`; clamp rather than panic on a corrupt row.
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

/// RFC 3339 text for API output.
pub fn format_rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}
