//! Identity resolution for one batch of events, in memory. The worker loads what the batch's
//! identity values point at, runs every event through [`Resolver::apply`] in id order, and
//! commits [`Resolver::finish`]'s result in one transaction.
//!
//! Rules:
//! - Events that share a value of any identity (BY) field belong to one profile; an event that
//!   links several profiles merges them into the one first seen earliest (ties: lowest id), so
//!   the survivor does not depend on arrival order.
//! - Blocklisted values (junk such as "", "null", "test@test.com") never link anything.
//! - A profile holds at most `cap` distinct values per identity field; a link that would exceed
//!   it is refused, logged and counted (the top cause of over-merged profiles).

use std::collections::{BTreeSet, HashSet};

use rustc_hash::{FxHashMap, FxHashSet};

use tributary_core::{
    IdentityKey, MembershipChange, MergeRecord, Micros, PipelineCommit, StoredProfile,
};

use tributary_profile::{
    EVENT_META_FIELDS, FieldSpec, FieldState, Mapped, Plans, ProfileState, ProfileView,
};

use crate::audiences::{Audiences, Scope};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub events: u64,
    pub unidentified: u64,
    pub profiles_created: u64,
    pub merges: u64,
    pub blocked_values: u64,
    pub refused_links: u64,
}

/// A profile as the resolver holds it: parsed, with its creation time.
pub(crate) struct Entry {
    pub state: ProfileState,
    pub created_at: Micros,
}

impl Entry {
    pub fn parse(p: &StoredProfile) -> Result<Entry, String> {
        Ok(Entry {
            state: ProfileState::from_json(&p.state)
                .map_err(|e| format!("profile {}: {e}", p.id))?,
            created_at: p.created_at,
        })
    }
}

/// What a batch changed in a profile, for choosing the audiences to evaluate again.
enum Touched<'a> {
    /// New, or it absorbed another profile: every audience.
    All,
    Fields(FxHashSet<&'a str>),
}

pub struct Resolver<'a> {
    plans: &'a Plans,
    audiences: &'a Audiences,
    touched: FxHashMap<i64, Touched<'a>>,
    /// Exits of profiles merged away, in merge order.
    exits: Vec<MembershipChange>,
    blocklist: &'a HashSet<String>,
    cap: usize,
    index: FxHashMap<IdentityKey, i64>,
    profiles: FxHashMap<i64, Entry>,
    /// Profiles merged away in this batch → the profile they went into.
    alias: FxHashMap<i64, i64>,
    dirty: BTreeSet<i64>,
    new_identities: Vec<IdentityKey>,
    merged: Vec<(i64, i64)>,
    merges: Vec<MergeRecord>,
    pub stats: Stats,
}

pub fn is_blocked(blocklist: &HashSet<String>, value: &str) -> bool {
    blocklist.contains(&value.trim().to_lowercase())
}

impl<'a> Resolver<'a> {
    pub fn new(
        plans: &'a Plans,
        audiences: &'a Audiences,
        blocklist: &'a HashSet<String>,
        cap: usize,
        index: Vec<(IdentityKey, i64)>,
        loaded: Vec<StoredProfile>,
    ) -> Result<Self, String> {
        let mut profiles = FxHashMap::default();
        profiles.reserve(loaded.len());
        for p in loaded {
            profiles.insert(p.id, Entry::parse(&p)?);
        }
        Ok(Resolver {
            plans,
            audiences,
            touched: FxHashMap::default(),
            exits: Vec::new(),
            blocklist,
            cap,
            index: index.into_iter().collect(),
            profiles,
            alias: FxHashMap::default(),
            dirty: BTreeSet::new(),
            new_identities: Vec::new(),
            merged: Vec::new(),
            merges: Vec::new(),
            stats: Stats::default(),
        })
    }

    fn resolve(&self, mut id: i64) -> i64 {
        while let Some(next) = self.alias.get(&id) {
            id = *next;
        }
        id
    }

    fn rank(&self, id: i64) -> (Micros, i64) {
        (
            self.profiles
                .get(&id)
                .map_or(Micros::MAX, |e| e.state.first_seen),
            id,
        )
    }

    /// Whether `a` and `b` together stay within the cap for every identity field.
    fn within_cap(&self, a: i64, b: i64) -> bool {
        let (Some(x), Some(y)) = (self.profiles.get(&a), self.profiles.get(&b)) else {
            return true;
        };
        y.state
            .identities
            .iter()
            .all(|(field, values)| match x.state.identities.get(field) {
                Some(mine) => mine.union(values).count() <= self.cap,
                None => values.len() <= self.cap,
            })
    }

    pub fn apply(&mut self, m: Mapped, now: Micros) {
        self.stats.events += 1;
        let mut keys = Vec::with_capacity(m.keys.len());
        for k in m.keys {
            if is_blocked(self.blocklist, &k.value) {
                self.stats.blocked_values += 1;
            } else {
                keys.push(k);
            }
        }
        if keys.is_empty() {
            self.stats.unidentified += 1;
            return;
        }
        // The profiles this event's identities point at, survivor first.
        let mut found: Vec<i64> = keys
            .iter()
            .filter_map(|k| self.index.get(k))
            .map(|id| self.resolve(*id))
            .collect();
        found.sort_by_key(|id| self.rank(*id));
        found.dedup();
        let target = match found.first() {
            Some(t) => *t,
            None => {
                self.stats.profiles_created += 1;
                self.profiles.insert(
                    m.event_id,
                    Entry {
                        state: ProfileState {
                            first_seen: m.event_time,
                            last_seen: m.event_time,
                            // A new profile is in no audience, whatever their versions.
                            segments_version: self.audiences.newest_version(),
                            ..ProfileState::default()
                        },
                        created_at: now,
                    },
                );
                self.touched.insert(m.event_id, Touched::All);
                m.event_id
            }
        };
        for other in found.iter().skip(1).copied() {
            let via = keys
                .iter()
                .find(|k| self.index.get(*k).map(|id| self.resolve(*id)) == Some(other))
                .cloned();
            if !self.within_cap(target, other) {
                self.stats.refused_links += 1;
                tracing::warn!(
                    target,
                    other,
                    event = m.event_id,
                    "merge refused: it would exceed the identity cap"
                );
                continue;
            }
            let Some(loser) = self.profiles.remove(&other) else {
                continue;
            };
            self.audiences
                .departures(other, &loser.state, &mut self.exits);
            // The loser's identity rows are re-pointed by this batch's identity writes (the
            // store keeps no index from profile to identities).
            for (field, values) in &loser.state.identities {
                for value in values {
                    let key = IdentityKey::new(field, value);
                    self.index.insert(key.clone(), target);
                    self.new_identities.push(key);
                }
            }
            let plans = self.plans;
            if let Some(t) = self.profiles.get_mut(&target) {
                t.state.absorb(loser.state, &|name| plans.spec(name));
                t.created_at = t.created_at.min(loser.created_at);
            }
            self.alias.insert(other, target);
            self.dirty.remove(&other);
            self.touched.remove(&other);
            self.touched.insert(target, Touched::All);
            self.merged.push((other, target));
            self.stats.merges += 1;
            if let Some(key) = via {
                self.merges.push(MergeRecord {
                    winner: target,
                    loser: other,
                    event_id: m.event_id,
                    key,
                    at: now,
                });
            }
        }
        let Some(entry) = self.profiles.get_mut(&target) else {
            return;
        };
        for k in keys {
            // Already this profile's, or still another's because that merge was refused.
            if self.index.contains_key(&k) {
                continue;
            }
            let values = entry.state.identities.entry(k.field.clone()).or_default();
            if values.len() >= self.cap && !values.contains(&k.value) {
                self.stats.refused_links += 1;
                tracing::warn!(profile = target, field = %k.field, "identity value refused: the profile has reached the cap for this field");
                continue;
            }
            values.insert(k.value.clone());
            self.index.insert(k.clone(), target);
            self.new_identities.push(k);
        }
        let touched = match self
            .touched
            .entry(target)
            .or_insert_with(|| Touched::Fields(EVENT_META_FIELDS.iter().copied().collect()))
        {
            Touched::All => None,
            Touched::Fields(set) => Some(set),
        };
        let plans = self.plans;
        let mut touched = touched;
        for (p, f, value) in m.updates {
            let mapping = &plans.plan(p).fields[f];
            if let Some(set) = touched.as_mut() {
                set.insert(mapping.name.as_str());
            }
            let spec = FieldSpec::from(mapping);
            let contribution = FieldState::from_event(spec, value, m.event_time);
            match entry.state.fields.get_mut(mapping.name.as_str()) {
                Some(existing) => existing.combine(contribution, spec),
                None => {
                    entry
                        .state
                        .fields
                        .insert(mapping.name.clone(), contribution);
                }
            }
        }
        entry.state.first_seen = if entry.state.events == 0 {
            m.event_time
        } else {
            entry.state.first_seen.min(m.event_time)
        };
        entry.state.last_seen = entry.state.last_seen.max(m.event_time);
        entry.state.events += 1;
        self.dirty.insert(target);
    }

    /// The batch's commit: changed profiles with their audiences evaluated again, and the
    /// membership changes that follow.
    pub fn finish(mut self, expected_cursor: i64, new_cursor: i64, now: Micros) -> PipelineCommit {
        let at = tributary_core::from_micros(now);
        let mut changes = std::mem::take(&mut self.exits);
        let (audiences, plans, touched) = (self.audiences, self.plans, &self.touched);
        let mut work: Vec<(i64, &mut Entry)> = self
            .profiles
            .iter_mut()
            .filter(|(id, _)| self.dirty.contains(id))
            .map(|(id, e)| (*id, e))
            .collect();
        work.sort_unstable_by_key(|(id, _)| *id);
        // Evaluating audiences and writing the stored JSON is per-profile CPU work.
        let done = crate::in_parallel_mut(&mut work, |(id, e)| {
            let scope = match touched.get(id) {
                Some(Touched::Fields(set)) => Scope::Fields(set),
                _ => Scope::All,
            };
            let view = ProfileView {
                id: *id,
                created_at: e.created_at,
                state: &e.state,
                plans,
            };
            let (segments, next_check) = audiences.evaluate(&view, &scope, at);
            let mut changes = Vec::new();
            audiences.changes(*id, &e.state, &segments, &mut changes);
            e.state.segments = segments;
            e.state.segments_version = audiences.newest_version();
            let row = StoredProfile {
                account_id: 0,
                id: *id,
                state: e.state.to_json(),
                created_at: e.created_at,
                modified_at: now,
                next_check,
            };
            Some((row, changes))
        });
        let mut profiles = Vec::with_capacity(done.len());
        for (row, c) in done {
            profiles.push(row);
            changes.extend(c);
        }
        let resolve = |id: i64| {
            let mut id = id;
            while let Some(next) = self.alias.get(&id) {
                id = *next;
            }
            id
        };
        // A key can be written twice in a batch (linked, then moved by a merge): once is enough,
        // and PostgreSQL refuses an upsert that touches a row twice.
        let mut written = FxHashSet::default();
        let identities = self
            .new_identities
            .iter()
            .filter(|k| written.insert(*k))
            .filter_map(|k| self.index.get(k).map(|id| (k.clone(), resolve(*id))))
            .collect();
        let merges = self
            .merges
            .into_iter()
            .map(|m| MergeRecord {
                winner: resolve(m.winner),
                ..m
            })
            .collect();
        // Chains (a into b, then b into c) collapse to their end, so the store can move every
        // loser's rows in one statement.
        let merged = self
            .merged
            .iter()
            .map(|(loser, _)| (*loser, resolve(*loser)))
            .collect();
        PipelineCommit {
            expected_cursor,
            new_cursor,
            profiles,
            identities,
            merged,
            merges,
            changes,
            next_checks: Vec::new(),
            at: now,
        }
    }
}
