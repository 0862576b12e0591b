//! Embedded SQLite: one file in the data dir, WAL journal, `synchronous = FULL` so that a
//! committed transaction survives a crash of the process or the machine.
//!
//! Writes go through a pool of exactly one connection (SQLite has one writer at a time anyway,
//! and this avoids `SQLITE_BUSY` between our own connections); reads use a separate pool.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Acquire, Row};
use tributary_core::{
    Account, AccountId, AudienceVersion, Definition, DefinitionKind, IdentityKey, LogEntry,
    MembershipChange, MergeRecord, Micros, NewEvent, NewToken, PipelineCommit, StoredEvent,
    StoredProfile, StreamInfo, TokenHash, TokenRecord, token::roles_to_text,
};

use crate::{
    Backend, Bootstrap, PROFILE_COLUMNS, Result, Store, account_from_row, definition_from_row,
    event_from_row, merge_from_row, migrate, profile_from_row, stream_deltas, stream_from_row,
    token_from_row,
};

/// SQLite's default limit on bound parameters is 32766; six per event row.
const ROWS_PER_INSERT: usize = 500;

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Alive while the store is: the checkpointer stops when it can no longer upgrade this.
    _alive: std::sync::Arc<()>,
}

/// How often the background checkpointer copies the WAL back into the database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

impl SqliteStore {
    pub async fn open(path: &Path) -> Result<Self> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            .pragma("temp_store", "memory")
            // Reads through the mapping instead of a syscall per page: identity lookups and
            // profile loads are random reads over large tables.
            .pragma("mmap_size", "268435456")
            // 16 KiB pages (new databases only): the pipeline's writes are mostly appends to
            // B-trees (profiles, the membership log, memberships by audience), and bigger pages
            // mean fewer page splits and less B-tree overhead per row. Measured: +10-15% on the
            // pipeline and the audience recompute against 4 KiB; 64 KiB was no better.
            .page_size(16384);
        // The page cache is per connection: a large one for the writer, whose pipeline commits
        // revisit the same B-tree pages batch after batch; small ones for the readers, which
        // read mostly through the memory map. At most 256 + 4 × 32 MiB.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(
                options
                    .clone()
                    .pragma("cache_size", "-262144")
                    // Checkpoints run on their own connection (below), not inside a commit;
                    // the writer checkpoints only if the WAL grows past 128 MiB anyway (when
                    // readers kept the background checkpoints from completing).
                    .pragma("wal_autocheckpoint", "8192"),
            )
            .await?;
        {
            let mut conn = writer.acquire().await?;
            migrate::run::<sqlx::Sqlite>(&mut conn, migrate::SQLITE, &path.display().to_string())
                .await?;
            convert_v1_memberships(&mut conn).await?;
        }
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone().pragma("cache_size", "-2048"))
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.pragma("cache_size", "-32768").read_only(true))
            .await?;
        let alive = std::sync::Arc::new(());
        spawn_checkpointer(checkpointer, std::sync::Arc::downgrade(&alive));
        Ok(SqliteStore {
            writer,
            reader,
            _alive: alive,
        })
    }
}

/// Copies the WAL into the database file from a connection of its own, so a commit never waits
/// for a checkpoint's writes and fsync (with automatic checkpoints, the commit that crosses the
/// threshold runs it). A PASSIVE checkpoint never blocks readers or the writer.
fn spawn_checkpointer(pool: SqlitePool, alive: std::sync::Weak<()>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if alive.upgrade().is_none() {
                break;
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&pool)
                .await
            {
                tracing::warn!(error = %e, "WAL checkpoint failed; retrying");
            }
        }
        pool.close().await;
    });
}

async fn insert_token(conn: &mut sqlx::SqliteConnection, t: &NewToken) -> Result<TokenRecord> {
    let row = sqlx::query(concat!(
        "INSERT INTO tokens (account_id, name, description, roles, hash, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING ",
        token_columns!(),
        ""
    ))
    .bind(t.account_id)
    .bind(&t.name)
    .bind(&t.description)
    .bind(roles_to_text(&t.roles))
    .bind(t.hash.to_hex())
    .bind(t.created_at)
    .bind(t.expires_at)
    .fetch_one(conn)
    .await?;
    token_from_row(&row)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn unsafe_durability(&self) -> Result<Vec<String>> {
        // The writer runs `synchronous = FULL` (set when the pool opens): nothing to report.
        Ok(Vec::new())
    }

    async fn bootstrap(
        &self,
        account_name: &str,
        admin: &NewToken,
        now: Micros,
    ) -> Result<Bootstrap> {
        let mut conn = self.writer.acquire().await?;
        let mut tx = conn.begin().await?;
        let existing: i64 = sqlx::query("SELECT COUNT(*) FROM accounts")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if existing > 0 {
            return Ok(Bootstrap::AlreadyInitialised);
        }
        let aid: i64 =
            sqlx::query("INSERT INTO accounts (name, created_at) VALUES (?, ?) RETURNING aid")
                .bind(account_name)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?
                .try_get(0)?;
        insert_token(&mut tx, admin).await?;
        tx.commit().await?;
        Ok(Bootstrap::Created { aid })
    }

    async fn create_account(&self, name: &str, now: Micros) -> Result<Account> {
        let row = sqlx::query(
            "INSERT INTO accounts (name, created_at) VALUES (?, ?) RETURNING aid, name, created_at",
        )
        .bind(name)
        .bind(now)
        .fetch_one(&self.writer)
        .await?;
        account_from_row(&row)
    }

    async fn account(&self, aid: AccountId) -> Result<Option<Account>> {
        let row = sqlx::query("SELECT aid, name, created_at FROM accounts WHERE aid = ?")
            .bind(aid)
            .fetch_optional(&self.reader)
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn create_token(&self, token: &NewToken) -> Result<TokenRecord> {
        let mut conn = self.writer.acquire().await?;
        insert_token(&mut conn, token).await
    }

    async fn tokens(&self, aid: AccountId) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE account_id = ? ORDER BY id"
        ))
        .bind(aid)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn delete_token(&self, aid: AccountId, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM tokens WHERE account_id = ? AND id = ?")
            .bind(aid)
            .bind(id)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn token_by_hash(&self, hash: &TokenHash) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE hash = ?"
        ))
        .bind(hash.to_hex())
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn append_events(&self, events: &[NewEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut conn = self.writer.acquire().await?;
        let mut tx = conn.begin().await?;
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let mut sql = String::with_capacity(90 + chunk.len() * 16);
            sql.push_str(
                "INSERT INTO events (account_id, stream, received_at, event_time, payload) VALUES ",
            );
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 {
                    "(?,?,?,?,?)"
                } else {
                    ",(?,?,?,?,?)"
                });
            }
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for e in chunk {
                query = query
                    .bind(e.account_id)
                    .bind(e.stream.as_str())
                    .bind(e.received_at)
                    .bind(e.event_time)
                    .bind(e.payload.as_str());
            }
            query.execute(&mut *tx).await?;
        }
        for (aid, stream, count, last) in stream_deltas(events) {
            sqlx::query(
                "INSERT INTO streams (account_id, name, event_count, last_received) VALUES (?, ?, ?, ?)
                 ON CONFLICT (account_id, name) DO UPDATE SET
                   event_count = event_count + excluded.event_count,
                   last_received = MAX(last_received, excluded.last_received)",
            )
            .bind(aid)
            .bind(stream)
            .bind(count)
            .bind(last)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn streams(&self, aid: AccountId) -> Result<Vec<StreamInfo>> {
        let rows = sqlx::query(
            "SELECT name, event_count, last_received FROM streams WHERE account_id = ? ORDER BY name",
        )
        .bind(aid)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(stream_from_row).collect()
    }

    async fn recent_events(
        &self,
        aid: AccountId,
        stream: &str,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT id, stream, received_at, event_time, payload FROM events
             WHERE account_id = ? AND stream = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(aid)
        .bind(stream)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn put_definition(&self, def: &Definition) -> Result<Definition> {
        let row = sqlx::query(
            "INSERT INTO definitions (account_id, kind, name, text, created_at, updated_at)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (account_id, kind, name) DO UPDATE SET
               text = excluded.text, updated_at = excluded.updated_at
             RETURNING account_id, kind, name, text, created_at, updated_at",
        )
        .bind(def.account_id)
        .bind(def.kind.as_str())
        .bind(&def.name)
        .bind(&def.text)
        .bind(def.created_at)
        .bind(def.updated_at)
        .fetch_one(&self.writer)
        .await?;
        definition_from_row(&row)
    }

    async fn definitions(&self, aid: AccountId, kind: DefinitionKind) -> Result<Vec<Definition>> {
        let rows = sqlx::query(
            "SELECT account_id, kind, name, text, created_at, updated_at FROM definitions
             WHERE account_id = ? AND kind = ? ORDER BY name",
        )
        .bind(aid)
        .bind(kind.as_str())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(definition_from_row).collect()
    }

    async fn definition(
        &self,
        aid: AccountId,
        kind: DefinitionKind,
        name: &str,
    ) -> Result<Option<Definition>> {
        let row = sqlx::query(
            "SELECT account_id, kind, name, text, created_at, updated_at FROM definitions
             WHERE account_id = ? AND kind = ? AND name = ?",
        )
        .bind(aid)
        .bind(kind.as_str())
        .bind(name)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(definition_from_row).transpose()
    }

    async fn delete_definition(
        &self,
        aid: AccountId,
        kind: DefinitionKind,
        name: &str,
    ) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM definitions WHERE account_id = ? AND kind = ? AND name = ?")
                .bind(aid)
                .bind(kind.as_str())
                .bind(name)
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn account_ids(&self) -> Result<Vec<AccountId>> {
        let rows = sqlx::query("SELECT aid FROM accounts ORDER BY aid")
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(|r| Ok(r.try_get::<i64, _>(0)?)).collect()
    }

    async fn pipeline_cursor(&self, aid: AccountId) -> Result<i64> {
        let row = sqlx::query("SELECT position FROM pipeline_cursors WHERE account_id = ?")
            .bind(aid)
            .fetch_optional(&self.writer)
            .await?;
        Ok(match row {
            Some(r) => r.try_get(0)?,
            None => 0,
        })
    }

    async fn events_after(
        &self,
        aid: AccountId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT id, stream, received_at, event_time, payload FROM events
             WHERE account_id = ? AND id > ? ORDER BY id LIMIT ?",
        )
        .bind(aid)
        .bind(after)
        .bind(i64::from(limit))
        // The reader pool: the pipeline reads ahead while its previous batch commits.
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn lookup_identities(
        &self,
        aid: AccountId,
        keys: &[IdentityKey],
    ) -> Result<Vec<(IdentityKey, i64)>> {
        let mut out = Vec::new();
        for chunk in keys.chunks(KEYS_PER_QUERY) {
            let sql = format!(
                "SELECT field, value, profile_id FROM identities WHERE account_id = ? AND (field, value) IN (VALUES {})",
                placeholders(chunk.len(), 2)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(aid);
            for k in chunk {
                q = q.bind(k.field.as_str()).bind(k.value.as_str());
            }
            for r in q.fetch_all(&self.writer).await? {
                out.push((
                    IdentityKey::new(r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?),
                    r.try_get(2)?,
                ));
            }
        }
        Ok(out)
    }

    async fn load_profiles(&self, aid: AccountId, ids: &[i64]) -> Result<Vec<StoredProfile>> {
        profiles_by_id(&self.writer, aid, ids).await
    }

    async fn read_profiles(&self, aid: AccountId, ids: &[i64]) -> Result<Vec<StoredProfile>> {
        profiles_by_id(&self.reader, aid, ids).await
    }

    async fn commit_pipeline(&self, aid: AccountId, c: &PipelineCommit) -> Result<bool> {
        let mut conn = self.writer.acquire().await?;
        // Profiles are derived data: a batch lost to a power cut (never to a process crash) is
        // recomputed from the raw events, whose commits stay fully synchronous, and the cursor
        // is lost with it. So the pipeline's commits skip the fsync; the next event append's
        // fsync makes them durable too.
        sqlx::query("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await?;
        let result = commit_pipeline_on(&mut conn, aid, c).await;
        if let Err(e) = sqlx::query("PRAGMA synchronous = FULL")
            .execute(&mut *conn)
            .await
        {
            // Never hand a connection with relaxed durability back to the event writer.
            conn.close_on_drop();
            return Err(e.into());
        }
        result
    }

    async fn profile_identities(
        &self,
        aid: AccountId,
        profile_id: i64,
    ) -> Result<Vec<IdentityKey>> {
        let rows = sqlx::query("SELECT field, value FROM identities WHERE account_id = ? AND profile_id = ? ORDER BY field, value")
            .bind(aid).bind(profile_id).fetch_all(&self.reader).await?;
        rows.iter()
            .map(|r| {
                Ok(IdentityKey::new(
                    r.try_get::<String, _>(0)?,
                    r.try_get::<String, _>(1)?,
                ))
            })
            .collect()
    }

    async fn profile_merges(&self, aid: AccountId, profile_id: i64) -> Result<Vec<MergeRecord>> {
        let rows = sqlx::query("SELECT winner, loser, event_id, field, value, at FROM merges WHERE account_id = ? AND winner = ? ORDER BY id")
            .bind(aid).bind(profile_id).fetch_all(&self.reader).await?;
        rows.iter().map(merge_from_row).collect()
    }

    async fn reset_profiles(&self, aid: AccountId) -> Result<()> {
        let mut conn = self.writer.acquire().await?;
        let mut tx = conn.begin().await?;
        for sql in [
            "DELETE FROM profiles WHERE account_id = ?",
            "DELETE FROM identities WHERE account_id = ?",
            "DELETE FROM merges WHERE account_id = ?",
            "DELETE FROM pipeline_cursors WHERE account_id = ?",
            "DELETE FROM audience_versions WHERE account_id = ?",
        ] {
            sqlx::query(sql).bind(aid).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn erase_profile(
        &self,
        aid: AccountId,
        profile_id: i64,
        event_ids: &[i64],
        at: Micros,
    ) -> Result<()> {
        let mut conn = self.writer.acquire().await?;
        let mut tx = conn.begin().await?;
        erase_memberships(&mut tx, aid, profile_id, at).await?;
        sqlx::query("DELETE FROM profiles WHERE account_id = ? AND id = ?")
            .bind(aid)
            .bind(profile_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM identities WHERE account_id = ? AND profile_id = ?")
            .bind(aid)
            .bind(profile_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM merges WHERE account_id = ? AND (winner = ? OR loser = ?)")
            .bind(aid)
            .bind(profile_id)
            .bind(profile_id)
            .execute(&mut *tx)
            .await?;
        for chunk in event_ids.chunks(KEYS_PER_QUERY) {
            let sql = format!(
                "DELETE FROM events WHERE account_id = ? AND id IN ({})",
                vec!["?"; chunk.len()].join(",")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(aid);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *tx).await?;
        }
        sqlx::query(
            "UPDATE streams SET event_count = (SELECT COUNT(*) FROM events e WHERE e.account_id = streams.account_id AND e.stream = streams.name)
             WHERE account_id = ?",
        )
        .bind(aid)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn identity_blocklist(&self, aid: AccountId) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT value FROM identity_blocklist WHERE account_id = ? ORDER BY value")
                .bind(aid)
                .fetch_all(&self.reader)
                .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>(0)?))
            .collect()
    }

    async fn set_identity_blocklist(&self, aid: AccountId, values: &[String]) -> Result<()> {
        let mut conn = self.writer.acquire().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("DELETE FROM identity_blocklist WHERE account_id = ?")
            .bind(aid)
            .execute(&mut *tx)
            .await?;
        for v in values {
            sqlx::query("INSERT INTO identity_blocklist (account_id, value) VALUES (?, ?) ON CONFLICT DO NOTHING")
                .bind(aid).bind(v.as_str()).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn scan_profiles(
        &self,
        aid: AccountId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredProfile>> {
        // One row for the whole page: the driver's cost per row (a copy of every value and a
        // hand-over between threads) is most of a scan's, so the rows are packed in SQLite
        // (see `unpack_profiles`).
        let packed: Option<String> = sqlx::query_scalar(
            "SELECT group_concat(id || ' ' || created_at || ' ' || modified_at || ' '
                 || ifnull(next_check, 'n') || ' ' || length(CAST(state AS BLOB)) || ':' || state, '')
             FROM (SELECT id, created_at, modified_at, next_check, state FROM profiles
                   WHERE account_id = ? AND id > ? ORDER BY id LIMIT ?)",
        )
        .bind(aid)
        .bind(after)
        .bind(limit)
        .fetch_one(&self.reader)
        .await?;
        unpack_profiles(aid, packed.as_deref().unwrap_or(""))
    }

    async fn due_profiles(
        &self,
        aid: AccountId,
        now: Micros,
        limit: u32,
    ) -> Result<Vec<StoredProfile>> {
        let sql = format!(
            "SELECT {PROFILE_COLUMNS} FROM profiles
             WHERE account_id = ? AND next_check IS NOT NULL AND next_check <= ?
             ORDER BY next_check LIMIT ?"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(aid)
            .bind(now)
            .bind(limit)
            .fetch_all(&self.reader)
            .await?;
        rows.iter().map(profile_from_row).collect()
    }

    async fn audience_versions(&self, aid: AccountId) -> Result<Vec<AudienceVersion>> {
        let rows = sqlx::query(
            "SELECT segment, version FROM audience_versions WHERE account_id = ? ORDER BY segment",
        )
        .bind(aid)
        .fetch_all(&self.reader)
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
            "INSERT INTO audience_versions (account_id, segment, version) VALUES (?, ?, ?)
             ON CONFLICT (account_id, segment) DO UPDATE SET version = excluded.version",
        )
        .bind(aid)
        .bind(v.segment.as_str())
        .bind(v.version)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn log_position(&self, aid: AccountId, consumer: &str) -> Result<i64> {
        let pos: Option<i64> = sqlx::query_scalar(
            "SELECT position FROM log_positions WHERE account_id = ? AND consumer = ?",
        )
        .bind(aid)
        .bind(consumer)
        .fetch_optional(&self.reader)
        .await?;
        Ok(pos.unwrap_or(0))
    }

    async fn set_log_position(&self, aid: AccountId, consumer: &str, position: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO log_positions (account_id, consumer, position) VALUES (?, ?, ?)
             ON CONFLICT (account_id, consumer) DO UPDATE SET position = excluded.position",
        )
        .bind(aid)
        .bind(consumer)
        .bind(position)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn try_lease(
        &self,
        name: &str,
        holder: &str,
        now: Micros,
        until: Micros,
    ) -> Result<bool> {
        let row = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.holder = excluded.holder OR leases.expires_at < ?
             RETURNING holder",
        )
        .bind(name).bind(holder).bind(until).bind(now)
        .fetch_optional(&self.writer)
        .await?;
        Ok(row.is_some())
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = ? AND holder = ?")
            .bind(name)
            .bind(holder)
            .execute(&self.writer)
            .await?;
        Ok(())
    }
}

/// `(?,?),(?,?)...`: `rows` groups of `columns` placeholders.
fn placeholders(rows: usize, columns: usize) -> String {
    let group = format!("({})", vec!["?"; columns].join(","));
    vec![group; rows].join(",")
}

/// Identity keys or ids per `IN (...)` query (two parameters per key, under SQLite's limit).
const KEYS_PER_QUERY: usize = 2_000;

/// The body of `commit_pipeline`, on the writer connection.
async fn commit_pipeline_on(
    conn: &mut sqlx::SqliteConnection,
    aid: AccountId,
    c: &PipelineCommit,
) -> Result<bool> {
    let mut tx = conn.begin().await?;
    let moved = sqlx::query(
        "INSERT INTO pipeline_cursors (account_id, position) VALUES (?, ?)
             ON CONFLICT (account_id) DO UPDATE SET position = excluded.position
             WHERE pipeline_cursors.position = ?",
    )
    .bind(aid)
    .bind(c.new_cursor)
    .bind(c.expected_cursor)
    .execute(&mut *tx)
    .await?;
    // Another node (or an earlier run) already moved the cursor: apply nothing.
    if moved.rows_affected() == 0 {
        return Ok(false);
    }
    // `CASE` maps each loser to its winner; `IN` lets the index find the rows.
    for chunk in c.merged.chunks(ROWS_PER_INSERT) {
        let cases = vec!["WHEN ? THEN ?"; chunk.len()].join(" ");
        let losers = vec!["?"; chunk.len()].join(",");
        let sql = format!(
            "UPDATE merges SET winner = CASE winner {cases} END
                 WHERE account_id = ? AND winner IN ({losers})"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (loser, winner) in chunk {
            q = q.bind(*loser).bind(*winner);
        }
        q = q.bind(aid);
        for (loser, _) in chunk {
            q = q.bind(*loser);
        }
        q.execute(&mut *tx).await?;
        let sql = format!("DELETE FROM profiles WHERE account_id = ? AND id IN ({losers})");
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(aid);
        for (loser, _) in chunk {
            q = q.bind(*loser);
        }
        q.execute(&mut *tx).await?;
    }
    for chunk in c.profiles.chunks(ROWS_PER_INSERT) {
        let sql = format!(
                "INSERT INTO profiles (account_id, id, state, created_at, modified_at, next_check) VALUES {}
                 ON CONFLICT (id) DO UPDATE SET state = excluded.state, modified_at = excluded.modified_at,
                   next_check = excluded.next_check",
                placeholders(chunk.len(), 6)
            );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for p in chunk {
            q = q
                .bind(aid)
                .bind(p.id)
                .bind(p.state.as_str())
                .bind(p.created_at)
                .bind(p.modified_at)
                .bind(p.next_check);
        }
        q.execute(&mut *tx).await?;
    }
    if !c.next_checks.is_empty() {
        let rows = serde_json::to_string(&c.next_checks)
            .map_err(|e| crate::StoreError::Corrupt(e.to_string()))?;
        sqlx::query(
            "UPDATE profiles SET next_check = j.value->>1 FROM json_each(?) AS j
             WHERE profiles.account_id = ? AND profiles.id = j.value->>0",
        )
        .bind(rows)
        .bind(aid)
        .execute(&mut *tx)
        .await?;
    }
    if !c.identities.is_empty() {
        let rows: Vec<(&str, &str, i64)> = c
            .identities
            .iter()
            .map(|(k, id)| (k.field.as_str(), k.value.as_str(), *id))
            .collect();
        let rows =
            serde_json::to_string(&rows).map_err(|e| crate::StoreError::Corrupt(e.to_string()))?;
        // One parameter for the whole batch: binding three values per row through the
        // driver costs more than the insert itself at pipeline volumes.
        sqlx::query(
            "INSERT INTO identities (account_id, field, value, profile_id)
             SELECT ?, value->>0, value->>1, value->>2 FROM json_each(?) WHERE true
             ON CONFLICT (account_id, field, value) DO UPDATE SET profile_id = excluded.profile_id",
        )
        .bind(aid)
        .bind(rows)
        .execute(&mut *tx)
        .await?;
    }
    for chunk in c.merges.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO merges (account_id, winner, loser, event_id, field, value, at) VALUES {}",
            placeholders(chunk.len(), 7)
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for m in chunk {
            q = q
                .bind(aid)
                .bind(m.winner)
                .bind(m.loser)
                .bind(m.event_id)
                .bind(m.key.field.as_str())
                .bind(m.key.value.as_str())
                .bind(m.at);
        }
        q.execute(&mut *tx).await?;
    }
    apply_changes(&mut tx, aid, &c.changes, c.at).await?;
    tx.commit().await?;
    Ok(true)
}

type Tx<'c> = sqlx::Transaction<'c, sqlx::Sqlite>;

job_store_impl!(SqliteStore, writer, reader);
membership_store_impl!(
    SqliteStore,
    sqlx::SqliteConnection,
    writer,
    reader,
    "",
    "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
);

/// Profiles by id, read on `pool` (the writer for the pipeline, the readers for others).
async fn profiles_by_id(
    pool: &SqlitePool,
    aid: AccountId,
    ids: &[i64],
) -> Result<Vec<StoredProfile>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(KEYS_PER_QUERY) {
        let sql = format!(
            "SELECT {PROFILE_COLUMNS} FROM profiles WHERE account_id = ? AND id IN ({})",
            vec!["?"; chunk.len()].join(",")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(aid);
        for id in chunk {
            q = q.bind(*id);
        }
        for r in q.fetch_all(pool).await? {
            out.push(profile_from_row(&r)?);
        }
    }
    Ok(out)
}

/// Profiles packed by `scan_profiles`: for each, `id created modified next_check length:`
/// (`n` for no next check; `length` in bytes) and then the state itself. Returned in id order.
fn unpack_profiles(aid: AccountId, mut packed: &str) -> Result<Vec<StoredProfile>> {
    let corrupt = |what: &str| crate::StoreError::Corrupt(format!("profile scan: {what}"));
    let mut out = Vec::new();
    while !packed.is_empty() {
        let (header, rest) = packed
            .split_once(':')
            .ok_or_else(|| corrupt("a row without a header"))?;
        let mut fields = header.split(' ');
        let mut int = |name: &str| -> Result<Option<i64>> {
            match fields.next() {
                Some("n") => Ok(None),
                Some(text) => text
                    .parse()
                    .map(Some)
                    .map_err(|_| corrupt(&format!("{name} is {text:?}"))),
                None => Err(corrupt(&format!("no {name}"))),
            }
        };
        let id = int("id")?.ok_or_else(|| corrupt("no id"))?;
        let created_at = int("created_at")?.ok_or_else(|| corrupt("no created_at"))?;
        let modified_at = int("modified_at")?.ok_or_else(|| corrupt("no modified_at"))?;
        let next_check = int("next_check")?;
        let len = int("length")?.ok_or_else(|| corrupt("no length"))? as usize;
        let state = rest
            .get(..len)
            .ok_or_else(|| corrupt(&format!("profile {id}: state shorter than {len} bytes")))?;
        out.push(StoredProfile {
            account_id: aid,
            id,
            state: state.to_string(),
            created_at,
            modified_at,
            next_check,
        });
        packed = rest.get(len..).unwrap_or_default();
    }
    if !out.is_sorted_by_key(|p| p.id) {
        out.sort_by_key(|p| p.id);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::unpack_profiles;

    #[test]
    fn packed_profiles_unpack_whatever_their_state_holds() {
        let states = [r#"{"a":"x: 1 2"}"#, r#"{"é":"ü€"}"#, ""];
        let mut packed = String::new();
        for (i, s) in states.iter().enumerate() {
            let next = if i == 1 { "-5".to_string() } else { "n".into() };
            packed.push_str(&format!("{} 10 -20 {next} {}:{s}", i + 1, s.len()));
        }
        let ps = unpack_profiles(7, &packed).expect("unpacks");
        let got: Vec<(i64, i64, &str, Option<i64>)> = ps
            .iter()
            .map(|p| (p.account_id, p.id, p.state.as_str(), p.next_check))
            .collect();
        assert_eq!(
            got,
            vec![
                (7, 1, states[0], None),
                (7, 2, states[1], Some(-5)),
                (7, 3, states[2], None)
            ]
        );
        assert_eq!((ps[0].created_at, ps[0].modified_at), (10, -20));
    }

    #[test]
    fn damaged_packing_is_an_error() {
        for bad in [
            "1 2 3 n 99:{}",
            "1 2 3 n:{}",
            "x 2 3 n 2:{}",
            "1 2 3 n 2",
            "1 2 3 n 1:é",
        ] {
            assert!(unpack_profiles(1, bad).is_err(), "{bad:?}");
        }
    }
}
