//! Audience membership: what the pipeline decides (a [`MembershipChange`]) and what the
//! membership log records once the store applied it (a [`LogEntry`]).

use crate::Micros;

/// A profile entering or leaving an audience, as the engine computed it. The store applies it
/// against the membership table, so a change that is already true (an enter for a member)
/// is dropped and never reaches the log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MembershipChange {
    pub segment: String,
    pub profile_id: i64,
    pub entered: bool,
}

impl MembershipChange {
    pub fn enter(segment: impl Into<String>, profile_id: i64) -> Self {
        MembershipChange {
            segment: segment.into(),
            profile_id,
            entered: true,
        }
    }

    pub fn exit(segment: impl Into<String>, profile_id: i64) -> Self {
        MembershipChange {
            segment: segment.into(),
            profile_id,
            entered: false,
        }
    }
}

/// One line of an account's membership log. `seq` is dense and increasing per account, in
/// commit order: a consumer that has read up to `seq` has seen every earlier change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: i64,
    pub segment: String,
    pub profile_id: i64,
    pub entered: bool,
    pub at: Micros,
}

/// Where an audience's stored membership stands against its definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudienceVersion {
    pub segment: String,
    /// The definition's `updated_at` that the membership was computed for.
    pub version: Micros,
}
