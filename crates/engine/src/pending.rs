//! The batch committing while the next one is resolved ([`Pending`]).

use rustc_hash::FxHashMap;
use tributary_core::{IdentityKey, PipelineCommit, StoredProfile};

/// The batch committing while the next one is resolved, as the next one must see it: the
/// identities it (re)points, the profiles it writes and those it merges away. Whether a read
/// of the store meanwhile sees the state before that commit or after it, overlaying these
/// gives the state after it.
pub(crate) struct Pending<'a> {
    identities: FxHashMap<&'a IdentityKey, i64>,
    profiles: FxHashMap<i64, &'a StoredProfile>,
    /// Loser → winner, chains already collapsed.
    merged: FxHashMap<i64, i64>,
}

impl<'a> Pending<'a> {
    pub(crate) fn new(commit: &'a PipelineCommit) -> Self {
        Pending {
            identities: commit.identities.iter().map(|(k, id)| (k, *id)).collect(),
            profiles: commit.profiles.iter().map(|p| (p.id, p)).collect(),
            merged: commit.merged.iter().copied().collect(),
        }
    }

    /// Corrects what a read found for `keys` by what the pending commit writes.
    pub(crate) fn update_index(&self, keys: &[IdentityKey], index: &mut Vec<(IdentityKey, i64)>) {
        index.retain(|(k, _)| !self.identities.contains_key(k));
        for (k, id) in index.iter_mut() {
            // Every identity of a profile merged away is repointed above; this is a guard.
            if let Some(winner) = self.merged.get(id) {
                tracing::warn!(field = %k.field, "identity of a merged profile not repointed");
                *id = *winner;
            }
        }
        index.extend(
            keys.iter()
                .filter_map(|k| self.identities.get(k).map(|id| (k.clone(), *id))),
        );
    }

    /// Of `ids`, the rows the pending commit writes, and the ids left to read.
    pub(crate) fn profiles(&self, ids: &[i64]) -> (Vec<StoredProfile>, Vec<i64>) {
        let mut theirs = Vec::new();
        let mut to_read = Vec::new();
        for id in ids {
            match self.profiles.get(id) {
                Some(row) => theirs.push((*row).clone()),
                None => to_read.push(*id),
            }
        }
        (theirs, to_read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(field: &str, value: &str) -> IdentityKey {
        IdentityKey::new(field, value)
    }

    fn row(id: i64, state: &str) -> StoredProfile {
        StoredProfile {
            account_id: 1,
            id,
            state: state.into(),
            created_at: 0,
            modified_at: 0,
            next_check: None,
        }
    }

    /// A read made before the pending commit (profile 11 merged into 10, `b` newly linked)
    /// comes out as the state after it.
    #[test]
    fn a_read_from_before_the_commit_is_brought_up_to_it() {
        let commit = PipelineCommit {
            identities: vec![(key("email", "a"), 10), (key("email", "b"), 10)],
            profiles: vec![row(10, "after")],
            merged: vec![(11, 10)],
            ..PipelineCommit::default()
        };
        let pending = Pending::new(&commit);
        let keys = vec![
            key("email", "a"),
            key("email", "b"),
            key("uid", "x"),
            key("uid", "y"),
        ];
        let mut index = vec![
            (key("email", "a"), 11),
            (key("uid", "x"), 12),
            // Not repointed by the commit, yet its profile was merged away: the guard.
            (key("uid", "y"), 11),
        ];
        pending.update_index(&keys, &mut index);
        index.sort();
        assert_eq!(
            index,
            vec![
                (key("email", "a"), 10),
                (key("email", "b"), 10),
                (key("uid", "x"), 12),
                (key("uid", "y"), 10),
            ]
        );
        let (theirs, to_read) = pending.profiles(&[10, 12]);
        assert_eq!(theirs, vec![row(10, "after")]);
        assert_eq!(to_read, vec![12]);
    }
}
