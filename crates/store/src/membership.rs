//! How audience membership and its log are stored, the same way on both backends.
//!
//! Members are kept as bitmaps, not as a row per member: one row per (account, audience,
//! chunk), where a chunk is 65,536 consecutive profile ids and the row holds a roaring bitmap
//! of the ids' low 16 bits and its cardinality. A recompute of ten audiences over a million
//! profiles then writes a few hundred rows instead of three million, and a pipeline batch,
//! whose new profiles have neighbouring ids, rewrites one chunk per audience.
//!
//! The log is made the same way: a row is one commit's entries (or exits) of one audience
//! within one chunk, a bitmap again, under the sequence numbers `first_seq..=seq`, given to
//! its profiles in ascending id order. Readers get one [`LogEntry`] per profile, so positions
//! are still per entry and a consumer can stop in the middle of a row.
//!
//! A commit's changes are applied to the chunks in memory and only their net effect is kept:
//! the table decides what is an entry or an exit, and a change that the table already shows
//! (or that a later change in the same commit undoes) is not logged.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rustc_hash::FxHashMap;

use roaring::RoaringBitmap;
use tributary_core::{LogEntry, MembershipChange, Micros};

use crate::{Result, StoreError};

const CHUNK_BITS: u32 = 16;
const LOW_MASK: i64 = (1 << CHUNK_BITS) - 1;

/// The chunk of a profile id, and the id's place in it.
pub(crate) fn split(profile_id: i64) -> (i64, u32) {
    (profile_id >> CHUNK_BITS, (profile_id & LOW_MASK) as u32)
}

pub(crate) fn join(chunk: i64, low: u32) -> i64 {
    (chunk << CHUNK_BITS) | i64::from(low)
}

pub(crate) fn decode(bytes: &[u8], what: &str) -> Result<RoaringBitmap> {
    let bits = RoaringBitmap::deserialize_from(bytes)
        .map_err(|e| StoreError::Corrupt(format!("{what}: bitmap does not decode: {e}")))?;
    match bits.max() {
        Some(max) if i64::from(max) > LOW_MASK => Err(StoreError::Corrupt(format!(
            "{what}: bitmap holds {max}, past the chunk"
        ))),
        _ => Ok(bits),
    }
}

pub(crate) fn encode(bits: &RoaringBitmap) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bits.serialized_size());
    bits.serialize_into(&mut out)
        .map_err(|e| StoreError::Corrupt(format!("bitmap does not encode: {e}")))?;
    Ok(out)
}

/// The chunks (audience, chunk) a commit's changes fall into, each once, in key order (the
/// order rows are locked in on PostgreSQL, so concurrent commits cannot deadlock on them).
pub(crate) fn chunk_keys<'c>(
    changes: impl IntoIterator<Item = &'c MembershipChange>,
) -> BTreeSet<(&'c str, i64)> {
    changes
        .into_iter()
        .map(|c| (c.segment.as_str(), split(c.profile_id).0))
        .collect()
}

/// A log row before it has sequence numbers.
#[derive(Debug, PartialEq)]
pub(crate) struct LogRow {
    pub segment: String,
    pub chunk: i64,
    pub entered: bool,
    pub bits: RoaringBitmap,
}

/// Chunks loaded for a commit (by audience, then chunk), changed in memory.
#[derive(Default)]
pub(crate) struct ChunkEdit {
    chunks: HashMap<String, BTreeMap<i64, Chunk>>,
}

#[derive(Default)]
struct Chunk {
    bits: RoaringBitmap,
    dirty: bool,
}

impl ChunkEdit {
    pub fn load(&mut self, segment: &str, chunk: i64, bits: RoaringBitmap) {
        if let Some(loaded) = self.chunk(segment, chunk) {
            *loaded = Chunk { bits, dirty: false };
        }
    }

    /// (Looked up by `&str`: a commit's changes would otherwise allocate a key each.)
    fn chunk(&mut self, segment: &str, chunk: i64) -> Option<&mut Chunk> {
        if !self.chunks.contains_key(segment) {
            self.chunks.insert(segment.to_string(), BTreeMap::new());
        }
        self.chunks
            .get_mut(segment)
            .map(|chunks| chunks.entry(chunk).or_default())
    }

    /// Applies `changes` in order and returns the log rows of their net effect.
    pub fn apply<'c>(
        &mut self,
        changes: impl IntoIterator<Item = &'c MembershipChange>,
    ) -> Vec<LogRow> {
        // Whether each (audience, profile) touched was a member before the commit.
        let mut before: FxHashMap<(&str, i64), bool> = FxHashMap::default();
        for c in changes {
            let (chunk, low) = split(c.profile_id);
            let Some(entry) = self.chunk(&c.segment, chunk) else {
                continue;
            };
            before
                .entry((c.segment.as_str(), c.profile_id))
                .or_insert_with(|| entry.bits.contains(low));
            entry.dirty |= if c.entered {
                entry.bits.insert(low)
            } else {
                entry.bits.remove(low)
            };
        }
        let mut rows: BTreeMap<(&str, i64, bool), RoaringBitmap> = BTreeMap::new();
        for ((segment, profile_id), was) in before {
            let (chunk, low) = split(profile_id);
            let is = self
                .chunks
                .get(segment)
                .and_then(|chunks| chunks.get(&chunk))
                .is_some_and(|c| c.bits.contains(low));
            if is != was {
                rows.entry((segment, chunk, is)).or_default().insert(low);
            }
        }
        rows.into_iter()
            .map(|((segment, chunk, entered), bits)| LogRow {
                segment: segment.to_string(),
                chunk,
                entered,
                bits,
            })
            .collect()
    }

    /// The chunks to write back, an empty bitmap meaning delete the row.
    pub fn to_write(&self) -> Vec<(&str, i64, &RoaringBitmap)> {
        let mut out: Vec<(&str, i64, &RoaringBitmap)> = self
            .chunks
            .iter()
            .flat_map(|(segment, chunks)| {
                chunks
                    .iter()
                    .filter(|(_, c)| c.dirty)
                    .map(move |(chunk, c)| (segment.as_str(), *chunk, &c.bits))
            })
            .collect();
        out.sort_by_key(|(segment, chunk, _)| (*segment, *chunk));
        out
    }
}

/// Total entries in `rows`.
pub(crate) fn entry_count(rows: &[LogRow]) -> i64 {
    rows.iter().map(|r| r.bits.len() as i64).sum()
}

/// A stored log row, as read.
pub(crate) struct StoredLogRow {
    pub first_seq: i64,
    pub seq: i64,
    pub segment: String,
    pub entered: bool,
    pub at: Micros,
    pub chunk: i64,
    pub bits: Vec<u8>,
}

impl StoredLogRow {
    /// Its entries, one per profile, with sequence numbers after `after`.
    pub fn entries_after(self, after: i64, out: &mut Vec<LogEntry>) -> Result<()> {
        let what = format!("membership log row {}", self.seq);
        let bits = decode(&self.bits, &what)?;
        if bits.len() as i64 != self.seq - self.first_seq + 1 {
            return Err(StoreError::Corrupt(format!(
                "{what}: {} profiles for sequence numbers {}..={}",
                bits.len(),
                self.first_seq,
                self.seq
            )));
        }
        for (seq, low) in (self.first_seq..).zip(bits.iter()) {
            if seq > after {
                out.push(LogEntry {
                    seq,
                    segment: self.segment.clone(),
                    profile_id: join(self.chunk, low),
                    entered: self.entered,
                    at: self.at,
                });
            }
        }
        Ok(())
    }
}

/// The profile ids of a chunk's bitmap within `(after, upto]`, ascending.
pub(crate) fn ids_between(
    chunk: i64,
    bits: &RoaringBitmap,
    after: i64,
    upto: i64,
) -> impl Iterator<Item = i64> + '_ {
    bits.iter()
        .map(move |low| join(chunk, low))
        .filter(move |id| *id > after && *id <= upto)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enter(segment: &str, id: i64) -> MembershipChange {
        MembershipChange::enter(segment, id)
    }

    fn exit(segment: &str, id: i64) -> MembershipChange {
        MembershipChange::exit(segment, id)
    }

    #[test]
    fn ids_split_into_chunks_and_back() {
        for id in [1, 65_535, 65_536, 65_537, 9_000_000_123, i64::MAX] {
            let (chunk, low) = split(id);
            assert_eq!(join(chunk, low), id);
            assert!(low < 65_536);
        }
        assert_eq!(split(65_536), (1, 0));
    }

    #[test]
    fn only_net_changes_are_logged() {
        let mut edit = ChunkEdit::default();
        let mut members = RoaringBitmap::new();
        members.insert(5);
        edit.load("a", 0, members);
        let changes = [
            enter("a", 5),      // already a member: nothing
            enter("a", 6),      // enters
            exit("a", 7),       // was never in: nothing
            enter("b", 65_537), // enters (other audience and chunk)
            enter("a", 8),      // enters then leaves in the same commit: nothing
            exit("a", 8),
            exit("a", 5), // leaves
        ];
        let rows = edit.apply(&changes);
        let flat: Vec<(String, i64, bool, Vec<u32>)> = rows
            .iter()
            .map(|r| {
                (
                    r.segment.clone(),
                    r.chunk,
                    r.entered,
                    r.bits.iter().collect(),
                )
            })
            .collect();
        assert_eq!(
            flat,
            vec![
                ("a".into(), 0, false, vec![5]),
                ("a".into(), 0, true, vec![6]),
                ("b".into(), 1, true, vec![1]),
            ]
        );
        assert_eq!(entry_count(&rows), 3);
        let written: Vec<_> = edit
            .to_write()
            .into_iter()
            .map(|(s, c, b)| (s, c, b.len()))
            .collect();
        assert_eq!(written, vec![("a", 0, 1), ("b", 1, 1)]);
    }

    #[test]
    fn log_rows_expand_to_entries_after_a_position() {
        let bits: RoaringBitmap = [3u32, 9, 12].into_iter().collect();
        let row = StoredLogRow {
            first_seq: 10,
            seq: 12,
            segment: "a".into(),
            entered: true,
            at: 7,
            chunk: 2,
            bits: encode(&bits).expect("encodes"),
        };
        let mut out = Vec::new();
        row.entries_after(10, &mut out).expect("expands");
        let got: Vec<(i64, i64)> = out.iter().map(|e| (e.seq, e.profile_id)).collect();
        assert_eq!(got, vec![(11, join(2, 9)), (12, join(2, 12))]);
    }

    #[test]
    fn damaged_rows_are_errors_not_panics() {
        assert!(decode(b"not a bitmap", "x").is_err());
        let mut wide = RoaringBitmap::new();
        wide.insert(70_000);
        assert!(decode(&encode(&wide).expect("encodes"), "x").is_err());
        let row = StoredLogRow {
            first_seq: 1,
            seq: 5,
            segment: "a".into(),
            entered: true,
            at: 0,
            chunk: 0,
            bits: encode(&RoaringBitmap::from_iter([1u32])).expect("encodes"),
        };
        assert!(row.entries_after(0, &mut Vec::new()).is_err());
    }
}
