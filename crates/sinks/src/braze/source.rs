//! Where the export's changes come from: first (with backfill) the current members of the
//! selected audiences, then the membership log from the position the backfill started at.
//! Each change is resolved to the profile's Braze `external_id`.

use std::collections::HashMap;
use std::sync::Arc;

use tributary_core::{AccountId, DefinitionKind};
use tributary_engine::{Plans, ProfileState};
use tributary_store::{Store, StoreError};

use crate::braze::config::{AudienceEvents, ExportConfig};

/// Profiles (backfill) or log entries (follow) read per chunk.
pub const CHUNK: u32 = 2_000;

/// How far the export has got. Backfill positions come before every log position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// Members with a profile id up to `after` were read.
    Backfill { after: i64 },
    /// Log entries up to `seq` were read (and the backfill, if any, is done).
    Log { seq: i64 },
}

/// One change, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub external_id: String,
    pub segment: String,
    pub entered: bool,
}

#[derive(Debug, Default)]
pub struct Chunk {
    pub changes: Vec<Change>,
    /// Members or log entries read (before filtering and resolution).
    pub read: u64,
    /// Profiles without the identifier field: skipped.
    pub skipped_no_identifier: u64,
    /// Profiles gone (merged away or erased) by the time their change was read: skipped.
    pub skipped_gone: u64,
    /// Nothing more to read for now.
    pub caught_up: bool,
}

pub struct Source {
    store: Arc<dyn Store>,
    aid: AccountId,
    segments: Vec<String>,
    events: AudienceEvents,
    identifier_field: String,
    plans: Plans,
    /// The log position the backfill started at: the follow phase starts there.
    start: i64,
    pub position: Position,
    /// Backfill: per audience, its members read but not yet taken.
    ahead: Vec<MembersAhead>,
}

/// One audience's members read ahead during the backfill, so an audience much sparser or
/// denser than another is never read twice.
#[derive(Default)]
struct MembersAhead {
    buffered: std::collections::VecDeque<i64>,
    /// Every member up to this profile id has been read.
    read_to: i64,
    /// Every member has been read.
    done: bool,
}

impl Source {
    pub async fn new(
        store: Arc<dyn Store>,
        aid: AccountId,
        config: &ExportConfig,
        start: i64,
        position: Position,
    ) -> Result<Source, StoreError> {
        let plans = Plans::compile(&store.definitions(aid, DefinitionKind::Query).await?);
        Ok(Source {
            store,
            aid,
            segments: config.segment_ids.clone(),
            events: config.audience_events,
            identifier_field: config.identifier_field.clone(),
            plans,
            start,
            position,
            ahead: config
                .segment_ids
                .iter()
                .map(|_| MembersAhead {
                    read_to: match position {
                        Position::Backfill { after } => after,
                        Position::Log { .. } => i64::MAX,
                    },
                    ..MembersAhead::default()
                })
                .collect(),
        })
    }

    /// The next chunk of changes, and advances `position` past it.
    pub async fn next_chunk(&mut self) -> Result<Chunk, StoreError> {
        match self.position {
            Position::Backfill { .. } => self.backfill_chunk().await,
            Position::Log { seq } => self.log_chunk(seq).await,
        }
    }

    /// The next members of all selected audiences, merged by profile (each audience's members
    /// come in id order), so a user in several audiences becomes one attributes object.
    async fn backfill_chunk(&mut self) -> Result<Chunk, StoreError> {
        for (segment, ahead) in self.segments.iter().zip(&mut self.ahead) {
            if ahead.buffered.is_empty() && !ahead.done {
                let page = self
                    .store
                    .audience_members(self.aid, segment, ahead.read_to, CHUNK)
                    .await?;
                ahead.done = (page.len() as u32) < CHUNK;
                if let Some(&last) = page.last() {
                    ahead.read_to = last;
                }
                ahead.buffered.extend(page);
            }
        }
        // Members are complete up to `bound`: an audience not read to its end may have more
        // past what was read of it.
        let bound = self
            .ahead
            .iter()
            .filter(|a| !a.done)
            .map(|a| a.read_to)
            .min()
            .unwrap_or(i64::MAX);
        let mut members: Vec<(i64, &str)> = Vec::new();
        for (segment, ahead) in self.segments.iter().zip(&mut self.ahead) {
            while let Some(&id) = ahead.buffered.front()
                && id <= bound
            {
                members.push((id, segment.as_str()));
                ahead.buffered.pop_front();
            }
        }
        members.sort_unstable();
        let exhausted = bound == i64::MAX;
        let mut chunk = Chunk {
            read: members.len() as u64,
            ..Chunk::default()
        };
        let ids: Vec<i64> = dedup_ids(members.iter().map(|(id, _)| *id));
        let identifiers = self.identifiers(&ids).await?;
        if self.events.sends(true) {
            for (id, segment) in &members {
                match identifiers.get(id) {
                    Some(Some(external_id)) => chunk.changes.push(Change {
                        external_id: external_id.clone(),
                        segment: (*segment).to_string(),
                        entered: true,
                    }),
                    Some(None) => chunk.skipped_no_identifier += 1,
                    None => chunk.skipped_gone += 1,
                }
            }
        }
        self.position = if exhausted {
            Position::Log { seq: self.start }
        } else {
            Position::Backfill { after: bound }
        };
        Ok(chunk)
    }

    async fn log_chunk(&mut self, after: i64) -> Result<Chunk, StoreError> {
        let entries = self
            .store
            .membership_log(self.aid, None, after, CHUNK)
            .await?;
        let mut chunk = Chunk {
            read: entries.len() as u64,
            caught_up: (entries.len() as u32) < CHUNK,
            ..Chunk::default()
        };
        let Some(last) = entries.last().map(|e| e.seq) else {
            return Ok(chunk);
        };
        let wanted: Vec<_> = entries
            .into_iter()
            .filter(|e| self.segments.contains(&e.segment) && self.events.sends(e.entered))
            .collect();
        let ids = dedup_ids(wanted.iter().map(|e| e.profile_id));
        let identifiers = self.identifiers(&ids).await?;
        for entry in wanted {
            match identifiers.get(&entry.profile_id) {
                Some(Some(external_id)) => chunk.changes.push(Change {
                    external_id: external_id.clone(),
                    segment: entry.segment,
                    entered: entry.entered,
                }),
                Some(None) => chunk.skipped_no_identifier += 1,
                None => chunk.skipped_gone += 1,
            }
        }
        self.position = Position::Log { seq: last };
        Ok(chunk)
    }

    /// Profile id → its identifier (`None`: the profile has no such field). Profiles that no
    /// longer exist are absent.
    async fn identifiers(&self, ids: &[i64]) -> Result<HashMap<i64, Option<String>>, StoreError> {
        let mut out = HashMap::with_capacity(ids.len());
        for part in ids.chunks(1_000) {
            for profile in self.store.read_profiles(self.aid, part).await? {
                let value = ProfileState::from_json(&profile.state)
                    .ok()
                    .and_then(|state| identifier(&state, &self.plans, &self.identifier_field));
                out.insert(profile.id, value);
            }
        }
        Ok(out)
    }
}

fn dedup_ids(ids: impl Iterator<Item = i64>) -> Vec<i64> {
    let mut ids: Vec<i64> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The text of a profile's identifier field: a string or number as is; of a list (a field
/// collecting several values), the most recent element.
pub fn identifier(state: &ProfileState, plans: &Plans, field: &str) -> Option<String> {
    let value = match state.fields.get(field) {
        Some(f) => f.value(Some(plans.spec(field))).to_json(),
        None => {
            let values = state.identities.get(field)?;
            return values.iter().next_back().cloned();
        }
    };
    let text = |v: &serde_json::Value| match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    match &value {
        serde_json::Value::Array(items) => items.iter().rev().find_map(text),
        other => text(other),
    }
}
