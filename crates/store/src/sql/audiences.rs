//! [`AudienceStore`]: audience versions, consumers' positions, and members and their log as
//! bitmaps (the layout is explained in `membership.rs`). The writes that happen inside other
//! commits (the pipeline's, an erasure, the schema-7 conversion) are the `pub(crate)`
//! functions here, run on the caller's transaction.

use async_trait::async_trait;
use roaring::RoaringBitmap;
use sqlx::{AnyConnection, Row};
use tributary_core::{AccountId, AudienceVersion, LogEntry, MembershipChange, Micros};

use super::SqlStore;
use crate::dialect::Dialect;
use crate::membership::{self, ChunkEdit, LogRow, StoredLogRow};
use crate::{AudienceStore, Result};

/// Applies membership changes inside a commit and logs their net effect.
pub(crate) async fn apply_changes<'c>(
    conn: &mut AnyConnection,
    dialect: Dialect,
    aid: AccountId,
    changes: impl IntoIterator<Item = &'c MembershipChange> + Clone,
    at: Micros,
) -> Result<()> {
    let keys = membership::chunk_keys(changes.clone());
    if keys.is_empty() {
        return Ok(());
    }
    let read = format!(
        "SELECT bits FROM membership_chunks WHERE account_id = $1 AND segment = $2 AND chunk = $3{}",
        dialect.lock_rows()
    );
    let mut edit = ChunkEdit::default();
    for (segment, chunk) in keys {
        let bits: Option<Vec<u8>> = sqlx::query_scalar(sqlx::AssertSqlSafe(read.as_str()))
            .bind(aid)
            .bind(segment)
            .bind(chunk)
            .fetch_optional(&mut *conn)
            .await?;
        let bits = match bits {
            Some(b) => membership::decode(&b, &format!("members of {segment}"))?,
            None => RoaringBitmap::new(),
        };
        edit.load(segment, chunk, bits);
    }
    let rows = edit.apply(changes);
    for (segment, chunk, bits) in edit.to_write() {
        write_chunk(conn, aid, segment, chunk, bits).await?;
    }
    append_log(conn, aid, &rows, at).await
}

/// Appends log rows under the account's next sequence numbers (the counter row's lock orders
/// concurrent writers of one account on PostgreSQL).
async fn append_log(
    conn: &mut AnyConnection,
    aid: AccountId,
    rows: &[LogRow],
    at: Micros,
) -> Result<()> {
    let n = membership::entry_count(rows);
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
    .fetch_one(&mut *conn)
    .await?;
    let mut first = last - n + 1;
    for row in rows {
        insert_log_row(conn, aid, first, row, at).await?;
        first += row.bits.len() as i64;
    }
    Ok(())
}

/// Stores `row` under the sequence numbers from `first` on, one per profile.
pub(crate) async fn insert_log_row(
    conn: &mut AnyConnection,
    aid: AccountId,
    first: i64,
    row: &LogRow,
    at: Micros,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO membership_log (account_id, seq, first_seq, segment, entered, at, chunk, bits)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(aid)
    .bind(first + row.bits.len() as i64 - 1)
    .bind(first)
    .bind(row.segment.as_str())
    .bind(row.entered)
    .bind(at)
    .bind(row.chunk)
    .bind(membership::encode(&row.bits)?)
    .execute(conn)
    .await?;
    Ok(())
}

/// The exits of a profile that is erased, from every audience it is in, and the record that
/// it was erased.
pub(crate) async fn erase_memberships(
    conn: &mut AnyConnection,
    dialect: Dialect,
    aid: AccountId,
    profile_id: i64,
    at: Micros,
) -> Result<()> {
    let (chunk, _) = membership::split(profile_id);
    let segments: Vec<String> = sqlx::query_scalar(
        "SELECT segment FROM membership_chunks WHERE account_id = $1 AND chunk = $2
         ORDER BY segment",
    )
    .bind(aid)
    .bind(chunk)
    .fetch_all(&mut *conn)
    .await?;
    let exits: Vec<MembershipChange> = segments
        .into_iter()
        .map(|s| MembershipChange::exit(s, profile_id))
        .collect();
    apply_changes(conn, dialect, aid, &exits, at).await?;
    sqlx::query(
        "INSERT INTO erasures (account_id, profile_id, at) VALUES ($1, $2, $3)
         ON CONFLICT (account_id, profile_id) DO NOTHING",
    )
    .bind(aid)
    .bind(profile_id)
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes (or, when empty, deletes) one chunk of an audience's members.
pub(crate) async fn write_chunk(
    conn: &mut AnyConnection,
    aid: AccountId,
    segment: &str,
    chunk: i64,
    bits: &RoaringBitmap,
) -> Result<()> {
    if bits.is_empty() {
        sqlx::query(
            "DELETE FROM membership_chunks WHERE account_id = $1 AND segment = $2 AND chunk = $3",
        )
        .bind(aid)
        .bind(segment)
        .bind(chunk)
        .execute(conn)
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
        .bind(membership::encode(bits)?)
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// A chunk row (`chunk`, `bits`) decoded.
fn chunk_from_row(row: &sqlx::any::AnyRow, segment: &str) -> Result<(i64, RoaringBitmap)> {
    let bytes: Vec<u8> = row.try_get("bits")?;
    Ok((row.try_get("chunk")?, membership::decode(&bytes, segment)?))
}

#[async_trait]
impl AudienceStore for SqlStore {
    async fn audience_versions(&self, aid: AccountId) -> Result<Vec<AudienceVersion>> {
        let rows = sqlx::query(
            "SELECT segment, version FROM audience_versions WHERE account_id = $1 ORDER BY segment",
        )
        .bind(aid)
        .fetch_all(&self.state.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AudienceVersion {
                    segment: r.try_get(0)?,
                    version: r.try_get(1)?,
                })
            })
            .collect()
    }

    async fn set_audience_version(&self, aid: AccountId, v: &AudienceVersion) -> Result<()> {
        sqlx::query(
            "INSERT INTO audience_versions (account_id, segment, version) VALUES ($1, $2, $3)
             ON CONFLICT (account_id, segment) DO UPDATE SET version = excluded.version",
        )
        .bind(aid)
        .bind(v.segment.as_str())
        .bind(v.version)
        .execute(&self.state.write)
        .await?;
        Ok(())
    }

    async fn log_position(&self, aid: AccountId, consumer: &str) -> Result<i64> {
        let pos: Option<i64> = sqlx::query_scalar(
            "SELECT position FROM log_positions WHERE account_id = $1 AND consumer = $2",
        )
        .bind(aid)
        .bind(consumer)
        .fetch_optional(&self.state.read)
        .await?;
        Ok(pos.unwrap_or(0))
    }

    async fn set_log_position(&self, aid: AccountId, consumer: &str, position: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO log_positions (account_id, consumer, position) VALUES ($1, $2, $3)
             ON CONFLICT (account_id, consumer) DO UPDATE SET position = excluded.position",
        )
        .bind(aid)
        .bind(consumer)
        .bind(position)
        .execute(&self.state.write)
        .await?;
        Ok(())
    }

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
            .bind(membership::split(after).0)
            .bind(membership::split(upto).0)
            .fetch_all(&self.state.read)
            .await?;
            for r in &rows {
                let (chunk, bits) = chunk_from_row(r, segment)?;
                ids.extend(membership::ids_between(chunk, &bits, after, upto));
            }
            out.push(ids);
        }
        Ok(out)
    }

    async fn drop_audience(&self, aid: AccountId, segment: &str, at: Micros) -> Result<u64> {
        let mut tx = self.state.write.begin().await?;
        let rows = sqlx::query(
            "DELETE FROM membership_chunks WHERE account_id = $1 AND segment = $2
             RETURNING chunk, bits",
        )
        .bind(aid)
        .bind(segment)
        .fetch_all(&mut *tx)
        .await?;
        let mut log = Vec::with_capacity(rows.len());
        for r in &rows {
            let (chunk, bits) = chunk_from_row(r, segment)?;
            log.push(LogRow {
                segment: segment.to_string(),
                chunk,
                entered: false,
                bits,
            });
        }
        log.sort_by_key(|r| r.chunk);
        append_log(&mut tx, aid, &log, at).await?;
        for table in ["audience_versions", "audience_days"] {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE account_id = $1 AND segment = $2"
            )))
            .bind(aid)
            .bind(segment)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(membership::entry_count(&log) as u64)
    }

    async fn record_audience_sizes(
        &self,
        aid: AccountId,
        day: i64,
        sizes: &[(String, u64)],
    ) -> Result<()> {
        let mut tx = self.state.write.begin().await?;
        for (segment, size) in sizes {
            sqlx::query(
                "INSERT INTO audience_days (account_id, segment, day, size) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (account_id, segment, day) DO UPDATE SET size = excluded.size",
            )
            .bind(aid)
            .bind(segment.as_str())
            .bind(day)
            .bind(*size as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn audience_size_history(
        &self,
        aid: AccountId,
        segment: &str,
        since_day: i64,
    ) -> Result<Vec<(i64, u64)>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT day, size FROM audience_days
             WHERE account_id = $1 AND segment = $2 AND day >= $3 ORDER BY day",
        )
        .bind(aid)
        .bind(segment)
        .bind(since_day)
        .fetch_all(&self.state.read)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(d, n)| (d, n.max(0) as u64))
            .collect())
    }

    async fn audience_size(&self, aid: AccountId, segment: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar(
            "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM membership_chunks
             WHERE account_id = $1 AND segment = $2",
        )
        .bind(aid)
        .bind(segment)
        .fetch_one(&self.state.read)
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
        // Chunks a few at a time until `limit` members are found: a sparse audience may need
        // many, a dense one needs one.
        const CHUNKS_PER_READ: i64 = 4;
        let limit = limit as usize;
        let mut out = Vec::with_capacity(limit.min(65_536));
        let mut from = membership::split(after).0;
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
            .fetch_all(&self.state.read)
            .await?;
            let mut last = None;
            for r in &rows {
                let (chunk, bits) = chunk_from_row(r, segment)?;
                let room = limit - out.len();
                out.extend(membership::ids_between(chunk, &bits, after, i64::MAX).take(room));
                last = Some(chunk);
            }
            match last {
                Some(last) if rows.len() as i64 == CHUNKS_PER_READ => from = last + 1,
                _ => break,
            }
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
        // A row holds at least one entry, so `limit` rows hold enough. (`entered` is a
        // BOOLEAN on PostgreSQL and an INTEGER on SQLite: read as a number on both.)
        let rows = sqlx::query(
            "SELECT first_seq, seq, segment, CAST(entered AS INTEGER) AS entered, at, chunk, bits
             FROM membership_log
             WHERE account_id = $1 AND ($2 IS NULL OR segment = $2) AND seq > $3
             ORDER BY seq LIMIT $4",
        )
        .bind(aid)
        .bind(segment)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.state.read)
        .await?;
        let mut out = Vec::new();
        for r in rows {
            if out.len() >= limit as usize {
                break;
            }
            StoredLogRow {
                first_seq: r.try_get("first_seq")?,
                seq: r.try_get("seq")?,
                segment: r.try_get("segment")?,
                entered: r.try_get::<i64, _>("entered")? != 0,
                at: r.try_get("at")?,
                chunk: r.try_get("chunk")?,
                bits: r.try_get("bits")?,
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
                .fetch_optional(&self.state.read)
                .await?;
        Ok(last.unwrap_or(0))
    }
}
