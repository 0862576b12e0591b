//! Where the export's changes come from: first (with backfill) the current members of the
//! selected audiences, then the membership log from the position the backfill started at.
//! Each change is resolved to the identifier the profile is known by in Braze.
//!
//! Invariants:
//! - An entry is sent under the profile's identifier when it is read, and the export
//!   remembers it (`export_identifiers`). An exit is sent under the identifier its entry was
//!   sent under, so a profile erased or merged away still leaves its audiences in Braze, and a
//!   profile whose identifier changed leaves them where it joined them.
//! - An exit of a profile that is gone is not sent while another profile with the same
//!   identifier is a member of that audience (a merge whose survivor carries the same id).
//! - A chunk is read whole or not at all: a store error leaves the source where it was, so
//!   the read is simply made again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tributary_core::{AccountId, DefinitionKind, IdentityKey};
use tributary_profile::{Plans, ProfileState, identifier};
use tributary_store::{Store, StoreError};

use crate::braze::config::{AudienceEvents, ExportConfig};
use crate::braze::counters::Counters;
use crate::braze::service::Service;

/// Profiles (backfill) or log entries (follow) read per chunk.
pub const CHUNK: u32 = 2_000;
/// How often a caught-up export looks for new log entries.
pub const IDLE_POLL: Duration = Duration::from_millis(200);
/// How long transient store errors are retried before the export fails.
pub const STORE_PATIENCE: Duration = Duration::from_secs(120);

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
    pub identifier: String,
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
    /// Changes of profiles gone (merged away or erased) that this export never sent: skipped.
    pub skipped_gone: u64,
    /// Exits of gone profiles whose identifier another member of the audience now has.
    pub skipped_still_member: u64,
    /// Profiles gone whose exits this chunk carries: the export forgets their identifiers
    /// once the chunk is committed.
    pub gone: Vec<i64>,
    /// Identifiers of erased people to delete in Braze (`delete_on_erase`).
    pub deletes: Vec<String>,
    /// Nothing more to read for now.
    pub caught_up: bool,
}

pub struct Source {
    store: Arc<dyn Store>,
    aid: AccountId,
    /// The export job: whose sent identifiers are remembered.
    job: i64,
    delete_on_erase: bool,
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
    /// `job` is the export's job id (0 for a dry run: nothing is remembered).
    pub async fn new(
        store: Arc<dyn Store>,
        aid: AccountId,
        job: i64,
        config: &ExportConfig,
        start: i64,
        position: Position,
    ) -> Result<Source, StoreError> {
        let plans = Plans::compile(&store.definitions(aid, DefinitionKind::Query).await?);
        Ok(Source {
            store,
            aid,
            job,
            delete_on_erase: config.delete_on_erase,
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
        let mut taken = Vec::with_capacity(self.ahead.len());
        for (segment, ahead) in self.segments.iter().zip(&self.ahead) {
            let before = members.len();
            members.extend(
                ahead
                    .buffered
                    .iter()
                    .take_while(|id| **id <= bound)
                    .map(|id| (*id, segment.as_str())),
            );
            taken.push(members.len() - before);
        }
        members.sort_unstable();
        let exhausted = bound == i64::MAX;
        let mut chunk = Chunk {
            read: members.len() as u64,
            ..Chunk::default()
        };
        let ids: Vec<i64> = dedup_ids(members.iter().map(|(id, _)| *id));
        let identifiers = self.identifiers(&ids).await?;
        let mut sent = Vec::new();
        if self.events.sends(true) {
            for (id, segment) in &members {
                match identifiers.get(id) {
                    Some(Some(identifier)) => {
                        chunk.changes.push(Change {
                            identifier: identifier.clone(),
                            segment: (*segment).to_string(),
                            entered: true,
                        });
                        sent.push((*id, identifier.clone()));
                    }
                    Some(None) => chunk.skipped_no_identifier += 1,
                    None => chunk.skipped_gone += 1,
                }
            }
        }
        self.remember(sent).await?;
        // Only now, with every store call made, is the source moved on.
        for (ahead, n) in self.ahead.iter_mut().zip(taken) {
            ahead.buffered.drain(..n);
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
        let current = self.identifiers(&ids).await?;
        let exits = dedup_ids(wanted.iter().filter(|e| !e.entered).map(|e| e.profile_id));
        let sent: HashMap<i64, String> = if self.job == 0 {
            HashMap::new()
        } else {
            self.store
                .export_identifiers(self.job, &exits)
                .await?
                .into_iter()
                .collect()
        };
        let gone: Vec<i64> = exits
            .iter()
            .copied()
            .filter(|id| !current.contains_key(id) && sent.contains_key(id))
            .collect();
        let holders = self.live_holders(&gone, &sent).await?;
        let mut remember = Vec::new();
        for entry in wanted {
            let now_known = current.get(&entry.profile_id);
            let identifier = if entry.entered {
                match now_known {
                    Some(Some(identifier)) => {
                        remember.push((entry.profile_id, identifier.clone()));
                        identifier.clone()
                    }
                    Some(None) => {
                        chunk.skipped_no_identifier += 1;
                        continue;
                    }
                    None => {
                        chunk.skipped_gone += 1;
                        continue;
                    }
                }
            } else {
                // An exit goes where the entry went.
                match (sent.get(&entry.profile_id), now_known) {
                    (Some(identifier), None) => {
                        // Gone: unless another member now holds the identifier there.
                        let held = holders.get(identifier).is_some_and(|h| {
                            h.iter().any(|(segment, _)| *segment == entry.segment)
                        });
                        if held {
                            chunk.skipped_still_member += 1;
                            continue;
                        }
                        identifier.clone()
                    }
                    (Some(identifier), Some(_)) => identifier.clone(),
                    (None, Some(Some(identifier))) => identifier.clone(),
                    (None, Some(None)) => {
                        chunk.skipped_no_identifier += 1;
                        continue;
                    }
                    (None, None) => {
                        chunk.skipped_gone += 1;
                        continue;
                    }
                }
            };
            chunk.changes.push(Change {
                identifier,
                segment: entry.segment,
                entered: entry.entered,
            });
        }
        if self.delete_on_erase && !gone.is_empty() {
            for id in self.store.erased_profiles(self.aid, &gone).await? {
                if let Some(identifier) = sent.get(&id)
                    && !holders.contains_key(identifier)
                    && !chunk.deletes.contains(identifier)
                {
                    chunk.deletes.push(identifier.clone());
                }
            }
        }
        self.remember(remember).await?;
        chunk.gone = gone;
        self.position = Position::Log { seq: last };
        Ok(chunk)
    }

    /// Records the identifiers entries are sent under (not in a dry run).
    async fn remember(&self, sent: Vec<(i64, String)>) -> Result<(), StoreError> {
        if self.job == 0 || sent.is_empty() {
            return Ok(());
        }
        self.store
            .remember_export_identifiers(self.job, &sent)
            .await
    }

    /// For the identifiers gone profiles were sent under: the live profile that now holds
    /// each (looked up as an identity of the identifier field), with the selected audiences
    /// it is a member of. Identifiers no live profile holds are absent.
    async fn live_holders(
        &self,
        gone: &[i64],
        sent: &HashMap<i64, String>,
    ) -> Result<HashMap<String, Vec<(String, i64)>>, StoreError> {
        let mut out = HashMap::new();
        let keys: Vec<IdentityKey> = gone
            .iter()
            .filter_map(|id| sent.get(id))
            .map(|v| IdentityKey::new(&self.identifier_field, v))
            .collect();
        if keys.is_empty() {
            return Ok(out);
        }
        for (key, holder) in self.store.lookup_identities(self.aid, &keys).await? {
            let members = self
                .store
                .members_between(self.aid, &self.segments, holder - 1, Some(holder))
                .await?;
            let of: Vec<(String, i64)> = self
                .segments
                .iter()
                .zip(members)
                .filter(|(_, m)| !m.is_empty())
                .map(|(s, _)| (s.clone(), holder))
                .collect();
            out.insert(key.value, of);
        }
        Ok(out)
    }

    /// Profile id → its identifier (`None`: the profile has no such field). Profiles that no
    /// longer exist are absent.
    async fn identifiers(&self, ids: &[i64]) -> Result<HashMap<i64, Option<String>>, StoreError> {
        let mut out = HashMap::with_capacity(ids.len());
        for part in ids.chunks(1_000) {
            for profile in self.store.load_profiles(self.aid, part).await? {
                let value = ProfileState::from_json(&profile.state)
                    .ok()
                    .and_then(|state| identifier(&state, &self.plans, &self.identifier_field));
                out.insert(profile.id, value);
            }
        }
        Ok(out)
    }
}

/// A chunk as read: the positions before and after it.
pub struct Read {
    pub before: Position,
    pub after: Position,
    pub chunk: Chunk,
}

/// Reads chunks ahead (at most a few) on a task of its own, so sending never waits for the
/// store. Once caught up it polls the log every `IDLE_POLL`. Transient store errors are
/// retried with backoff for up to `STORE_PATIENCE`; then, or on any other error, the error
/// is the last item. The task ends when the receiver is dropped (and is aborted with the
/// returned guard).
pub fn read_ahead(
    mut source: Source,
    service: Arc<Service>,
) -> (
    tokio::sync::mpsc::Receiver<Result<Read, StoreError>>,
    AbortOnDrop,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let task = tokio::spawn(async move {
        let mut failing_since: Option<tokio::time::Instant> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            let before = source.position;
            let read = match source.next_chunk().await {
                Ok(chunk) => {
                    failing_since = None;
                    backoff = Duration::from_millis(100);
                    Ok(Read {
                        before,
                        after: source.position,
                        chunk,
                    })
                }
                Err(e) if e.is_transient() => {
                    let since = *failing_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() < STORE_PATIENCE {
                        Counters::add(&service.counters.store_retries, 1);
                        tracing::warn!(error = %e, "export: reading the store failed; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                        continue;
                    }
                    Err(e)
                }
                Err(e) => Err(e),
            };
            let failed = read.is_err();
            let caught_up = read.as_ref().is_ok_and(|r| r.chunk.caught_up);
            if tx.send(read).await.is_err() || failed {
                return;
            }
            if caught_up {
                tokio::time::sleep(IDLE_POLL).await;
            }
        }
    });
    (rx, AbortOnDrop(task))
}

pub struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn dedup_ids(ids: impl Iterator<Item = i64>) -> Vec<i64> {
    let mut ids: Vec<i64> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}
