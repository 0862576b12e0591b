//! [`EventLog`]: raw events and per-stream counters, in the log database (its own file and
//! writer on SQLite).

use async_trait::async_trait;
use std::collections::HashSet;
use std::sync::atomic::Ordering;

use tributary_core::{
    AccountId, DEDUP_RETENTION_SECS, ImportFile, Micros, NewEvent, StoredEvent, StreamInfo,
    StreamSettings,
};

use super::packed::{self, Column::Int, Column::Text, Unpacker, packed_sql};
use super::{SqlStore, decode_all, page_query, per_id_chunk, statement_chunks};
use crate::dialect::{Dialect, Lock};
use crate::rows::{EVENT_COLUMNS, event_from_row, import_file_from_row, stream_from_row};
use crate::{EventLog, Result, RowHashes};

#[async_trait]
impl EventLog for SqlStore {
    async fn append_events(&self, events: &[NewEvent]) -> Result<Vec<usize>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.log.write.begin().await?;
        let duplicates = self.append_in(&mut tx, events).await?;
        tx.commit().await?;
        Ok(duplicates)
    }

    async fn set_stream_settings(
        &self,
        aid: AccountId,
        stream: &str,
        settings: &StreamSettings,
    ) -> Result<()> {
        let text = serde_json::to_string(settings)
            .map_err(|e| crate::StoreError::Corrupt(format!("stream settings: {e}")))?;
        sqlx::query(
            "INSERT INTO streams (account_id, name, event_count, last_received, settings)
             VALUES ($1, $2, 0, 0, $3)
             ON CONFLICT (account_id, name) DO UPDATE SET settings = excluded.settings",
        )
        .bind(aid)
        .bind(stream)
        .bind(text)
        .execute(&self.log.write)
        .await?;
        Ok(())
    }

    async fn append_import_batch(
        &self,
        events: &[NewEvent],
        file: &ImportFile,
        rows: Option<RowHashes<'_>>,
    ) -> Result<()> {
        let mut tx = self.log.write.begin().await?;
        self.append_in(&mut tx, events).await?;
        if let Some(rows) = rows {
            for chunk in statement_chunks(rows.hashes) {
                let sql = format!(
                    "INSERT INTO import_row_hashes (job_id, generation, row_hash) VALUES {}
                     ON CONFLICT (job_id, generation, row_hash) DO NOTHING",
                    self.dialect.params().rows(chunk.len(), 3)
                );
                let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
                for hash in chunk {
                    query = query.bind(file.job_id).bind(rows.generation).bind(*hash);
                }
                query.execute(&mut *tx).await?;
            }
            if file.done {
                sqlx::query("DELETE FROM import_row_hashes WHERE job_id = $1 AND generation <> $2")
                    .bind(file.job_id)
                    .bind(rows.generation)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query(
            "INSERT INTO import_files
               (job_id, name, size, modified, rows_done, rejected, done, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (job_id, name, size, modified) DO UPDATE SET
               rows_done = excluded.rows_done, rejected = excluded.rejected,
               done = excluded.done, updated_at = excluded.updated_at",
        )
        .bind(file.job_id)
        .bind(file.name.as_str())
        .bind(file.size)
        .bind(file.modified)
        .bind(file.rows_done)
        .bind(file.rejected)
        .bind(i64::from(file.done))
        .bind(file.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn import_files(&self, job_id: i64) -> Result<Vec<ImportFile>> {
        let query = sqlx::query(
            "SELECT job_id, name, size, modified, rows_done, rejected, done, updated_at
             FROM import_files WHERE job_id = $1 ORDER BY updated_at, name",
        )
        .bind(job_id);
        decode_all(query, &self.log.read, import_file_from_row).await
    }

    async fn import_rows_seen(
        &self,
        job_id: i64,
        generation: i64,
        hashes: &[i64],
    ) -> Result<Vec<i64>> {
        let mut seen = Vec::new();
        for chunk in statement_chunks(hashes) {
            let mut params = self.dialect.params();
            let sql = format!(
                "SELECT row_hash FROM import_row_hashes
                 WHERE job_id = {} AND generation = {} AND row_hash IN ({})",
                params.one(),
                params.one(),
                params.list(chunk.len())
            );
            let mut query = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .bind(job_id)
                .bind(generation);
            for hash in chunk {
                query = query.bind(*hash);
            }
            seen.extend(query.fetch_all(&self.log.read).await?);
        }
        Ok(seen)
    }

    async fn streams(&self, aid: AccountId) -> Result<Vec<StreamInfo>> {
        let query = sqlx::query(
            "SELECT name, event_count, last_received, settings FROM streams
             WHERE account_id = $1 ORDER BY name",
        )
        .bind(aid);
        decode_all(query, &self.log.read, stream_from_row).await
    }

    async fn events_per_minute(
        &self,
        aid: AccountId,
        since: Micros,
    ) -> Result<Vec<(Micros, String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT minute, stream, events FROM stream_minutes
             WHERE account_id = $1 AND minute >= $2 ORDER BY minute, stream",
        )
        .bind(aid)
        .bind(since - since.rem_euclid(MINUTE))
        .fetch_all(&self.log.read)
        .await?)
    }

    async fn recent_events(
        &self,
        aid: AccountId,
        stream: &str,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE account_id = $1 AND stream = $2
             ORDER BY id DESC LIMIT $3"
        );
        let query = page_query(sql, aid, stream, limit);
        decode_all(query, &self.log.read, event_from_row).await
    }

    async fn events_after(
        &self,
        aid: AccountId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let rows = format!(
            "SELECT id AS ord, {EVENT_COLUMNS} FROM events WHERE account_id = $1 AND id > $2
             ORDER BY id LIMIT $3"
        );
        // A reader: the pipeline reads ahead while its previous batch commits, and never
        // holds up an append.
        if self.dialect == Dialect::Sqlite {
            let columns = [
                Int("id"),
                Text("stream"),
                Int("received_at"),
                Int("event_time"),
                Text("payload"),
            ];
            let mut conn = self.log.read.acquire().await?;
            let sql = packed_sql(&rows, &columns);
            let unpack = |r: &mut Unpacker<'_>| {
                Ok(StoredEvent {
                    id: r.int("id")?,
                    stream: r.text("stream")?.to_string(),
                    received_at: r.int("received_at")?,
                    event_time: r.int("event_time")?,
                    payload: r.text("payload")?.to_string(),
                })
            };
            return packed::read_page(
                &mut conn,
                "events",
                &sql,
                (aid, after, limit),
                unpack,
                |e| e.id,
            )
            .await;
        }
        let query = page_query(rows, aid, after, limit);
        decode_all(query, &self.log.read, event_from_row).await
    }
}

impl SqlStore {
    /// Inserts events and counts them in their streams, inside the caller's transaction of
    /// the log (holding the append lock, so ids become visible in order on every node).
    /// Events whose deduplication key the stream already holds are left out: their indices
    /// are returned.
    async fn append_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        events: &[NewEvent],
    ) -> Result<Vec<usize>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.dialect.lock(tx, Lock::EventAppend).await?;
        let duplicates = self.claim_keys(tx, events).await?;
        let kept: Vec<NewEvent>;
        let events = if duplicates.is_empty() {
            events
        } else {
            kept = events
                .iter()
                .enumerate()
                .filter(|(i, _)| duplicates.binary_search(i).is_err())
                .map(|(_, e)| e.clone())
                .collect();
            &kept[..]
        };
        for chunk in statement_chunks(events) {
            let sql = format!(
                "INSERT INTO events (account_id, stream, received_at, event_time, payload) VALUES {}",
                self.dialect.params().rows(chunk.len(), 5)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for e in chunk {
                query = query
                    .bind(e.account_id)
                    .bind(e.stream.as_str())
                    .bind(e.received_at)
                    .bind(e.event_time)
                    .bind(e.payload.as_str());
            }
            query.execute(&mut **tx).await?;
        }
        let sql = format!(
            "INSERT INTO streams (account_id, name, event_count, last_received)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (account_id, name) DO UPDATE SET
               event_count = streams.event_count + excluded.event_count,
               last_received = {}(streams.last_received, excluded.last_received)",
            self.dialect.greatest()
        );
        for (aid, stream, count, last) in stream_deltas(events) {
            sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(aid)
                .bind(stream)
                .bind(count)
                .bind(last)
                .execute(&mut **tx)
                .await?;
        }
        for (aid, minute, stream, count) in minute_deltas(events) {
            sqlx::query(
                "INSERT INTO stream_minutes (account_id, minute, stream, events)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (account_id, minute, stream) DO UPDATE SET
                   events = stream_minutes.events + excluded.events",
            )
            .bind(aid)
            .bind(minute)
            .bind(stream)
            .bind(count)
            .execute(&mut **tx)
            .await?;
        }
        // Every event may have been a duplicate.
        if let Some(first) = events.first() {
            self.prune_minutes(tx, first.received_at).await?;
        }
        Ok(duplicates)
    }

    /// Forgets per-minute counts older than [`MINUTES_KEPT_SECS`], at most once an hour.
    async fn prune_minutes(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        now: Micros,
    ) -> Result<()> {
        let sql = "DELETE FROM stream_minutes WHERE minute < $1";
        let cutoff = now - MINUTES_KEPT_SECS * 1_000_000;
        prune(tx, &self.minutes_pruned_at, 60 * MINUTE, now, sql, cutoff).await
    }

    /// Records the keys of the keyed events; returns the indices (ascending) of those whose
    /// key was already recorded, by an earlier commit or earlier in this batch.
    async fn claim_keys(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        events: &[NewEvent],
    ) -> Result<Vec<usize>> {
        let keyed: Vec<(usize, &NewEvent, &str)> = events
            .iter()
            .enumerate()
            .filter_map(|(i, e)| Some((i, e, e.dedup_key.as_deref()?)))
            .collect();
        if keyed.is_empty() {
            return Ok(Vec::new());
        }
        self.prune_keys(tx, keyed[0].1.received_at).await?;
        // The keys this batch recorded first; a key recorded before is not returned.
        let mut claimed: HashSet<(AccountId, String, String)> = HashSet::new();
        for chunk in statement_chunks(&keyed) {
            let sql = format!(
                "INSERT INTO event_keys (account_id, stream, dedup_key, received_at) VALUES {}
                 ON CONFLICT (account_id, stream, dedup_key) DO NOTHING
                 RETURNING account_id, stream, dedup_key",
                self.dialect.params().rows(chunk.len(), 4)
            );
            let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for (_, e, key) in chunk {
                query = query
                    .bind(e.account_id)
                    .bind(e.stream.as_str())
                    .bind(*key)
                    .bind(e.received_at);
            }
            let rows: Vec<(AccountId, String, String)> = query.fetch_all(&mut **tx).await?;
            claimed.extend(rows);
        }
        Ok(keyed
            .into_iter()
            .filter(|(_, e, key)| {
                // The first event of the batch with a claimed key takes it; the others are
                // duplicates.
                !claimed.remove(&(e.account_id, e.stream.clone(), key.to_string()))
            })
            .map(|(i, _, _)| i)
            .collect())
    }

    /// Forgets keys older than the retention, at most once a minute.
    async fn prune_keys(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        now: Micros,
    ) -> Result<()> {
        let sql = "DELETE FROM event_keys WHERE received_at < $1";
        let cutoff = now - DEDUP_RETENTION_SECS * 1_000_000;
        prune(tx, &self.keys_pruned_at, MINUTE, now, sql, cutoff).await
    }

    /// How many of the account's events have ids after `after`, per stream.
    pub(super) async fn events_since(
        &self,
        aid: AccountId,
        after: i64,
    ) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT stream, COUNT(*) FROM events WHERE account_id = $1 AND id > $2
             GROUP BY stream ORDER BY stream",
        )
        .bind(aid)
        .bind(after)
        .fetch_all(&self.log.read)
        .await?)
    }

    /// Deletes the given events of an account and recounts its streams, in one transaction
    /// of the log.
    pub(super) async fn delete_events(&self, aid: AccountId, ids: &[i64]) -> Result<()> {
        let mut tx = self.log.write.begin().await?;
        let delete = "DELETE FROM events WHERE account_id = {p} AND id IN ({ids})";
        for q in per_id_chunk(self.dialect, delete, aid, ids) {
            q.execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE streams SET event_count = (SELECT COUNT(*) FROM events e
               WHERE e.account_id = streams.account_id AND e.stream = streams.name)
             WHERE account_id = $1",
        )
        .bind(aid)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

/// Runs `sql` (a `DELETE` of rows before `$1`) with `cutoff`, unless this process did so
/// less than `every` ago (`last` holds when, in micros).
async fn prune(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    last: &std::sync::atomic::AtomicI64,
    every: Micros,
    now: Micros,
    sql: &'static str,
    cutoff: Micros,
) -> Result<()> {
    if now - last.load(Ordering::Relaxed) < every {
        return Ok(());
    }
    last.store(now, Ordering::Relaxed);
    sqlx::query(sql).bind(cutoff).execute(&mut **tx).await?;
    Ok(())
}

/// One minute, in microseconds.
pub(crate) const MINUTE: Micros = 60_000_000;

/// How long the per-minute event counts are kept: a week and a day.
pub const MINUTES_KEPT_SECS: i64 = 8 * 24 * 3600;

/// Events per (account, minute of `received_at`, stream).
fn minute_deltas(events: &[NewEvent]) -> Vec<(AccountId, Micros, &str, i64)> {
    let mut deltas: Vec<(AccountId, Micros, &str, i64)> = Vec::new();
    for e in events {
        let minute = e.received_at - e.received_at.rem_euclid(MINUTE);
        match deltas
            .iter_mut()
            .find(|(aid, m, s, _)| *aid == e.account_id && *m == minute && *s == e.stream)
        {
            Some(d) => d.3 += 1,
            None => deltas.push((e.account_id, minute, &e.stream, 1)),
        }
    }
    deltas
}

/// Per-stream counter deltas of a batch, so the counters are one upsert per stream.
fn stream_deltas(events: &[NewEvent]) -> Vec<(AccountId, &str, i64, Micros)> {
    let mut deltas: Vec<(AccountId, &str, i64, Micros)> = Vec::new();
    for e in events {
        match deltas
            .iter_mut()
            .find(|(aid, s, _, _)| *aid == e.account_id && *s == e.stream)
        {
            Some(d) => {
                d.2 += 1;
                d.3 = d.3.max(e.received_at);
            }
            None => deltas.push((e.account_id, &e.stream, 1, e.received_at)),
        }
    }
    deltas
}
