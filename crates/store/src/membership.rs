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

/// `MembershipStore` for a backend type with pools `$write` and `$read`; `$lock` is what
/// a transaction's read of chunk rows appends to lock them (`FOR UPDATE` on PostgreSQL,
/// nothing on SQLite, whose one writer serializes commits anyway); `$has_table` counts the
/// tables named `$1`. Also defines, in the backend's module, `apply_changes` and
/// `erase_memberships` (which its own commits call inside their transaction, of its type
/// `Tx`) and `convert_v1_memberships` (called at open, on a `$conn`).
macro_rules! membership_store_impl {
    ($store:ty, $conn:ty, $write:ident, $read:ident, $lock:literal, $has_table:literal) => {
        /// Applies membership changes inside a commit and logs their net effect.
        async fn apply_changes<'c>(
            tx: &mut Tx<'_>,
            aid: AccountId,
            changes: impl IntoIterator<Item = &'c MembershipChange> + Clone,
            at: Micros,
        ) -> Result<()> {
            let keys = crate::membership::chunk_keys(changes.clone());
            if keys.is_empty() {
                return Ok(());
            }
            let mut edit = crate::membership::ChunkEdit::default();
            for (segment, chunk) in keys {
                let bits: Option<Vec<u8>> = sqlx::query_scalar(concat!(
                    "SELECT bits FROM membership_chunks
                     WHERE account_id = $1 AND segment = $2 AND chunk = $3",
                    $lock
                ))
                .bind(aid)
                .bind(segment)
                .bind(chunk)
                .fetch_optional(&mut **tx)
                .await?;
                let bits = match bits {
                    Some(b) => crate::membership::decode(&b, &format!("members of {segment}"))?,
                    None => roaring::RoaringBitmap::new(),
                };
                edit.load(segment, chunk, bits);
            }
            let rows = edit.apply(changes);
            for (segment, chunk, bits) in edit.to_write() {
                write_chunk(tx, aid, segment, chunk, bits).await?;
            }
            append_log(tx, aid, &rows, at).await
        }

        /// Appends log rows under the account's next sequence numbers (the counter row's lock
        /// orders concurrent writers of one account on PostgreSQL).
        async fn append_log(
            tx: &mut Tx<'_>,
            aid: AccountId,
            rows: &[crate::membership::LogRow],
            at: Micros,
        ) -> Result<()> {
            let n = crate::membership::entry_count(rows);
            if n == 0 {
                return Ok(());
            }
            let last: i64 = sqlx::query_scalar(
                "INSERT INTO membership_seq (account_id, last) VALUES ($1, $2)
                 ON CONFLICT (account_id) DO UPDATE SET last = membership_seq.last + excluded.last
                 RETURNING last",
            )
            .bind(aid)
            .bind(n)
            .fetch_one(&mut **tx)
            .await?;
            let mut first = last - n + 1;
            for row in rows {
                insert_log_row(tx, aid, first, row, at).await?;
                first += row.bits.len() as i64;
            }
            Ok(())
        }

        /// Stores `row` under the sequence numbers from `first` on, one per profile.
        async fn insert_log_row(
            tx: &mut Tx<'_>,
            aid: AccountId,
            first: i64,
            row: &crate::membership::LogRow,
            at: Micros,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO membership_log
                 (account_id, seq, first_seq, segment, entered, at, chunk, bits)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(aid)
            .bind(first + row.bits.len() as i64 - 1)
            .bind(first)
            .bind(row.segment.as_str())
            .bind(row.entered)
            .bind(at)
            .bind(row.chunk)
            .bind(crate::membership::encode(&row.bits)?)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        /// The exits of a profile that is erased, from every audience it is in.
        async fn erase_memberships(
            tx: &mut Tx<'_>,
            aid: AccountId,
            profile_id: i64,
            at: Micros,
        ) -> Result<()> {
            let (chunk, _) = crate::membership::split(profile_id);
            let segments: Vec<String> = sqlx::query_scalar(
                "SELECT segment FROM membership_chunks WHERE account_id = $1 AND chunk = $2
                 ORDER BY segment",
            )
            .bind(aid)
            .bind(chunk)
            .fetch_all(&mut **tx)
            .await?;
            let exits: Vec<MembershipChange> = segments
                .into_iter()
                .map(|s| MembershipChange::exit(s, profile_id))
                .collect();
            apply_changes(tx, aid, &exits, at).await?;
            sqlx::query(
                "INSERT INTO erasures (account_id, profile_id, at) VALUES ($1, $2, $3)
                 ON CONFLICT (account_id, profile_id) DO NOTHING",
            )
            .bind(aid)
            .bind(profile_id)
            .bind(at)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        /// Moves the members and log of schema 5 (a row per member and per entry, renamed
        /// `*_v1` by migration 7) into chunks, then drops the old tables. Runs at open, in one
        /// transaction: a crash midway leaves the old tables, and the next open starts again.
        pub(crate) async fn convert_v1_memberships(conn: &mut $conn) -> Result<()> {
            /// Rows read per query.
            const PAGE: i64 = 50_000;
            let present: i64 = sqlx::query_scalar($has_table)
                .bind("memberships_v1")
                .fetch_one(&mut *conn)
                .await?;
            if present == 0 {
                return Ok(());
            }
            let mut tx = sqlx::Connection::begin(&mut *conn).await?;
            let mut members = 0u64;
            let mut after = (i64::MIN, String::new(), i64::MIN);
            let mut open: Option<((i64, String, i64), roaring::RoaringBitmap)> = None;
            loop {
                let rows = sqlx::query(
                    "SELECT account_id, segment, profile_id FROM memberships_v1
                     WHERE (account_id, segment, profile_id) > ($1, $2, $3)
                     ORDER BY account_id, segment, profile_id LIMIT $4",
                )
                .bind(after.0)
                .bind(after.1.as_str())
                .bind(after.2)
                .bind(PAGE)
                .fetch_all(&mut *tx)
                .await?;
                let done = (rows.len() as i64) < PAGE;
                for r in rows {
                    let (aid, segment, id): (i64, String, i64) =
                        (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
                    let (chunk, low) = crate::membership::split(id);
                    let key = (aid, segment.clone(), chunk);
                    if open.as_ref().is_some_and(|(k, _)| *k != key) {
                        if let Some(((a, s, c), bits)) = open.take() {
                            write_chunk(&mut tx, a, &s, c, &bits).await?;
                        }
                    }
                    open.get_or_insert_with(|| (key, roaring::RoaringBitmap::new()))
                        .1
                        .insert(low);
                    members += 1;
                    after = (aid, segment, id);
                }
                if done {
                    break;
                }
            }
            if let Some(((a, s, c), bits)) = open.take() {
                write_chunk(&mut tx, a, &s, c, &bits).await?;
            }
            let mut entries = 0u64;
            let mut after = (i64::MIN, i64::MIN);
            loop {
                let rows = sqlx::query(
                    "SELECT account_id, seq, segment, profile_id, entered, at FROM membership_log_v1
                     WHERE (account_id, seq) > ($1, $2) ORDER BY account_id, seq LIMIT $3",
                )
                .bind(after.0)
                .bind(after.1)
                .bind(PAGE)
                .fetch_all(&mut *tx)
                .await?;
                let done = (rows.len() as i64) < PAGE;
                for r in rows {
                    let (aid, seq, id): (i64, i64, i64) =
                        (r.try_get(0)?, r.try_get(1)?, r.try_get(3)?);
                    let (chunk, low) = crate::membership::split(id);
                    let row = crate::membership::LogRow {
                        segment: r.try_get(2)?,
                        chunk,
                        entered: r.try_get(4)?,
                        bits: std::iter::once(low).collect(),
                    };
                    insert_log_row(&mut tx, aid, seq, &row, r.try_get(5)?).await?;
                    entries += 1;
                    after = (aid, seq);
                }
                if done {
                    break;
                }
            }
            sqlx::query("DROP TABLE memberships_v1").execute(&mut *tx).await?;
            sqlx::query("DROP TABLE membership_log_v1").execute(&mut *tx).await?;
            tx.commit().await?;
            tracing::info!(members, entries, "memberships and their log moved to chunks");
            Ok(())
        }

        /// Writes (or, when empty, deletes) one chunk of an audience's members.
        async fn write_chunk(
            tx: &mut Tx<'_>,
            aid: AccountId,
            segment: &str,
            chunk: i64,
            bits: &roaring::RoaringBitmap,
        ) -> Result<()> {
            if bits.is_empty() {
                sqlx::query(
                    "DELETE FROM membership_chunks
                     WHERE account_id = $1 AND segment = $2 AND chunk = $3",
                )
                .bind(aid)
                .bind(segment)
                .bind(chunk)
                .execute(&mut **tx)
                .await?;
            } else {
                sqlx::query(
                    "INSERT INTO membership_chunks (account_id, segment, chunk, size, bits)
                     VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (account_id, segment, chunk)
                     DO UPDATE SET size = excluded.size, bits = excluded.bits",
                )
                .bind(aid)
                .bind(segment)
                .bind(chunk)
                .bind(bits.len() as i64)
                .bind(crate::membership::encode(bits)?)
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        }

        #[async_trait::async_trait]
        impl crate::MembershipStore for $store {
            async fn members_between(
                &self,
                aid: AccountId,
                segments: &[String],
                after: i64,
                upto: Option<i64>,
            ) -> Result<Vec<Vec<i64>>> {
                let upto = upto.unwrap_or(i64::MAX);
                let mut out = Vec::with_capacity(segments.len());
                for segment in segments {
                    let mut ids = Vec::new();
                    let rows = sqlx::query(
                        "SELECT chunk, bits FROM membership_chunks
                         WHERE account_id = $1 AND segment = $2 AND chunk >= $3 AND chunk <= $4
                         ORDER BY chunk",
                    )
                    .bind(aid)
                    .bind(segment.as_str())
                    .bind(crate::membership::split(after).0)
                    .bind(crate::membership::split(upto).0)
                    .fetch_all(&self.$read)
                    .await?;
                    for r in rows {
                        let chunk: i64 = r.try_get(0)?;
                        let bytes: Vec<u8> = r.try_get(1)?;
                        let bits = crate::membership::decode(&bytes, segment)?;
                        ids.extend(crate::membership::ids_between(chunk, &bits, after, upto));
                    }
                    out.push(ids);
                }
                Ok(out)
            }

            async fn drop_audience(&self, aid: AccountId, segment: &str, at: Micros) -> Result<u64> {
                let mut conn = self.$write.acquire().await?;
                let mut tx = conn.begin().await?;
                let rows = sqlx::query(
                    "DELETE FROM membership_chunks WHERE account_id = $1 AND segment = $2
                     RETURNING chunk, bits",
                )
                .bind(aid)
                .bind(segment)
                .fetch_all(&mut *tx)
                .await?;
                let mut log = Vec::with_capacity(rows.len());
                for r in rows {
                    let bytes: Vec<u8> = r.try_get(1)?;
                    log.push(crate::membership::LogRow {
                        segment: segment.to_string(),
                        chunk: r.try_get(0)?,
                        entered: false,
                        bits: crate::membership::decode(&bytes, segment)?,
                    });
                }
                log.sort_by_key(|r| r.chunk);
                append_log(&mut tx, aid, &log, at).await?;
                sqlx::query("DELETE FROM audience_versions WHERE account_id = $1 AND segment = $2")
                    .bind(aid)
                    .bind(segment)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(crate::membership::entry_count(&log) as u64)
            }

            async fn audience_size(&self, aid: AccountId, segment: &str) -> Result<u64> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM membership_chunks
                     WHERE account_id = $1 AND segment = $2",
                )
                .bind(aid)
                .bind(segment)
                .fetch_one(&self.$read)
                .await?;
                Ok(n as u64)
            }

            async fn audience_members(
                &self,
                aid: AccountId,
                segment: &str,
                after: i64,
                limit: u32,
            ) -> Result<Vec<i64>> {
                // Chunks a few at a time until `limit` members are found: a sparse audience
                // may need many, a dense one needs one.
                const CHUNKS_PER_READ: i64 = 4;
                let limit = limit as usize;
                let mut out = Vec::with_capacity(limit.min(65_536));
                let mut from = crate::membership::split(after).0;
                while out.len() < limit {
                    let rows = sqlx::query(
                        "SELECT chunk, bits FROM membership_chunks
                         WHERE account_id = $1 AND segment = $2 AND chunk >= $3
                         ORDER BY chunk LIMIT $4",
                    )
                    .bind(aid)
                    .bind(segment)
                    .bind(from)
                    .bind(CHUNKS_PER_READ)
                    .fetch_all(&self.$read)
                    .await?;
                    let Some(last) = rows.last() else { break };
                    let last: i64 = last.try_get(0)?;
                    for r in &rows {
                        let chunk: i64 = r.try_get(0)?;
                        let bytes: Vec<u8> = r.try_get(1)?;
                        let bits = crate::membership::decode(&bytes, segment)?;
                        let room = limit - out.len();
                        out.extend(
                            crate::membership::ids_between(chunk, &bits, after, i64::MAX)
                                .take(room),
                        );
                    }
                    if (rows.len() as i64) < CHUNKS_PER_READ {
                        break;
                    }
                    from = last + 1;
                }
                Ok(out)
            }

            async fn membership_log(
                &self,
                aid: AccountId,
                segment: Option<&str>,
                after: i64,
                limit: u32,
            ) -> Result<Vec<LogEntry>> {
                // A row holds at least one entry, so `limit` rows hold enough.
                let rows = sqlx::query(
                    "SELECT first_seq, seq, segment, entered, at, chunk, bits FROM membership_log
                     WHERE account_id = $1 AND ($2 IS NULL OR segment = $2) AND seq > $3
                     ORDER BY seq LIMIT $4",
                )
                .bind(aid)
                .bind(segment)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.$read)
                .await?;
                let mut out = Vec::new();
                for r in rows {
                    if out.len() >= limit as usize {
                        break;
                    }
                    crate::membership::StoredLogRow {
                        first_seq: r.try_get(0)?,
                        seq: r.try_get(1)?,
                        segment: r.try_get(2)?,
                        entered: r.try_get(3)?,
                        at: r.try_get(4)?,
                        chunk: r.try_get(5)?,
                        bits: r.try_get(6)?,
                    }
                    .entries_after(after, &mut out)?;
                }
                out.truncate(limit as usize);
                Ok(out)
            }

            async fn membership_head(&self, aid: AccountId) -> Result<i64> {
                let last: Option<i64> =
                    sqlx::query_scalar("SELECT last FROM membership_seq WHERE account_id = $1")
                        .bind(aid)
                        .fetch_optional(&self.$read)
                        .await?;
                Ok(last.unwrap_or(0))
            }
        }
    };
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
