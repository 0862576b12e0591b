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
    /// Audience entries and exits known to change the membership table (each enter is of a
    /// non-member, each exit of a member): applied and logged as they are.
    pub changes: Vec<crate::MembershipChange>,
    /// Entries and exits whose effect on the table is unknown (the engine's record of the
    /// profile's audiences may be older than the audience): the store logs only those that
    /// change the table.
    pub checked: Vec<crate::MembershipChange>,
    /// The time the log records for this commit's changes.
    pub at: Micros,
}
