use crate::{AccountId, Micros};

/// One identity value of a profile: `("email", "a@x.io")`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityKey {
    pub field: String,
    pub value: String,
}

impl IdentityKey {
    pub fn new(field: impl Into<String>, value: impl Into<String>) -> Self {
        IdentityKey {
            field: field.into(),
            value: value.into(),
        }
    }
}

/// A profile as stored: its merged state is the engine's JSON, opaque to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredProfile {
    pub account_id: AccountId,
    /// The id of the event that created the profile.
    pub id: i64,
    pub state: String,
    pub created_at: Micros,
    pub modified_at: Micros,
    /// When a date-relative audience may next change its mind about this profile.
    pub next_check: Option<Micros>,
}

/// One merge: `loser` was folded into `winner` when `event_id` linked them through `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeRecord {
    pub winner: i64,
    pub loser: i64,
    pub event_id: i64,
    pub key: IdentityKey,
    pub at: Micros,
}

/// Everything one pipeline batch changes, committed in one transaction together with the
/// account's cursor, so a batch is applied exactly once or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineCommit {
    /// The cursor the batch started from; the commit fails if another node moved it.
    pub expected_cursor: i64,
    pub new_cursor: i64,
    pub profiles: Vec<StoredProfile>,
    /// Identity rows to create or point at a (new) profile.
    pub identities: Vec<(IdentityKey, i64)>,
    /// `(loser, winner)`: `loser` is deleted and its merge records move to `winner`. Its
    /// identities move by being listed in `identities` with the winner.
    pub merged: Vec<(i64, i64)>,
    pub merges: Vec<MergeRecord>,
    /// Audience entries and exits, applied to the membership table in order; the log gets
    /// their net effect on it (an entry of a member, or an exit undone later in the same
    /// commit, is not logged).
    pub changes: Vec<crate::MembershipChange>,
    /// `(profile, next_check)` for profiles of which only the next check moved (their
    /// rows are not in `profiles`).
    pub next_checks: Vec<(i64, Option<Micros>)>,
    /// The time the log records for this commit's changes.
    pub at: Micros,
}
