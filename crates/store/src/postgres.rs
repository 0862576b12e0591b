//! PostgreSQL, for scale-out: several `serve` processes share one database.
//!
//! Cross-node invariants are kept with transaction-scoped advisory locks:
//! - `LOCK_BOOTSTRAP` makes first start-up create account 1 exactly once.
//! - `LOCK_EVENTS` serialises event appends, so ids are allocated and become visible in the
//!   same order on every node: a consumer tailing a stream by id never sees id 11 committed
//!   while id 10 is still in flight and would be skipped. Each append is a whole group commit,
//!   so the lock is taken once per batch, not per event.
//! - `LOCK_MIGRATE` (session-scoped) keeps two starting nodes from migrating at once.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Acquire, Row};
use tributary_core::{
    Account, AccountId, AudienceVersion, Definition, DefinitionKind, IdentityKey, LogEntry,
    MembershipChange, MergeRecord, Micros, NewEvent, NewToken, PipelineCommit, StoredEvent,
    StoredProfile, StreamInfo, TokenHash, TokenRecord, token::roles_to_text,
};

use crate::{
    Backend, Bootstrap, PROFILE_COLUMNS, Result, Store, account_from_row, definition_from_row,
    event_from_row, merge_from_row, migrate, profile_from_row, redact_url, stream_deltas,
    stream_from_row, token_from_row,
};

const LOCK_MIGRATE: i64 = 0x7472_6962_0001;
const LOCK_BOOTSTRAP: i64 = 0x7472_6962_0002;
const LOCK_EVENTS: i64 = 0x7472_6962_0003;

pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str) -> Result<Self> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        {
            let mut conn = pool.acquire().await?;
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(LOCK_MIGRATE)
                .execute(&mut *conn)
                .await?;
            let migrated = async {
                migrate::run::<sqlx::Postgres>(&mut conn, migrate::POSTGRES, &redact_url(url))
                    .await?;
                convert_v1_memberships(&mut conn).await
            }
            .await;
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(LOCK_MIGRATE)
                .execute(&mut *conn)
                .await?;
            migrated?;
        }
        Ok(PgStore { pool })
    }
}

async fn insert_token(conn: &mut sqlx::PgConnection, t: &NewToken) -> Result<TokenRecord> {
    let row = sqlx::query(concat!(
        "INSERT INTO tokens (account_id, name, description, roles, hash, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING ",
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
impl Store for PgStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn unsafe_durability(&self) -> Result<Vec<String>> {
        let off: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, setting FROM pg_settings
             WHERE name IN ('fsync', 'synchronous_commit') AND setting = 'off' ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(off
            .into_iter()
            .map(|(name, value)| format!("{name} = {value}"))
            .collect())
    }

    async fn bootstrap(
        &self,
        account_name: &str,
        admin: &NewToken,
        now: Micros,
    ) -> Result<Bootstrap> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LOCK_BOOTSTRAP)
            .execute(&mut *tx)
            .await?;
        let existing: i64 = sqlx::query("SELECT COUNT(*) FROM accounts")
            .fetch_one(&mut *tx)
            .await?
            .try_get(0)?;
        if existing > 0 {
            return Ok(Bootstrap::AlreadyInitialised);
        }
        let aid: i64 =
            sqlx::query("INSERT INTO accounts (name, created_at) VALUES ($1, $2) RETURNING aid")
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
            "INSERT INTO accounts (name, created_at) VALUES ($1, $2) RETURNING aid, name, created_at",
        )
        .bind(name)
        .bind(now)
        .fetch_one(&self.pool)
        .await?;
        account_from_row(&row)
    }

    async fn account(&self, aid: AccountId) -> Result<Option<Account>> {
        let row = sqlx::query("SELECT aid, name, created_at FROM accounts WHERE aid = $1")
            .bind(aid)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn create_token(&self, token: &NewToken) -> Result<TokenRecord> {
        let mut conn = self.pool.acquire().await?;
        insert_token(&mut conn, token).await
    }

    async fn tokens(&self, aid: AccountId) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE account_id = $1 ORDER BY id"
        ))
        .bind(aid)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn delete_token(&self, aid: AccountId, id: i64) -> Result<bool> {
        let done = sqlx::query("DELETE FROM tokens WHERE account_id = $1 AND id = $2")
            .bind(aid)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn token_by_hash(&self, hash: &TokenHash) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE hash = $1"
        ))
        .bind(hash.to_hex())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn append_events(&self, events: &[NewEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut accounts = Vec::with_capacity(events.len());
        let mut streams = Vec::with_capacity(events.len());
        let mut received = Vec::with_capacity(events.len());
        let mut event_times = Vec::with_capacity(events.len());
        let mut payloads = Vec::with_capacity(events.len());
        for e in events {
            accounts.push(e.account_id);
            streams.push(e.stream.as_str());
            received.push(e.received_at);
            event_times.push(e.event_time);
            payloads.push(e.payload.as_str());
        }
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(LOCK_EVENTS)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO events (account_id, stream, received_at, event_time, payload)
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[])",
        )
        .bind(&accounts)
        .bind(&streams)
        .bind(&received)
        .bind(&event_times)
        .bind(&payloads)
        .execute(&mut *tx)
        .await?;
        for (aid, stream, count, last) in stream_deltas(events) {
            sqlx::query(
                "INSERT INTO streams (account_id, name, event_count, last_received)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (account_id, name) DO UPDATE SET
                   event_count = streams.event_count + excluded.event_count,
                   last_received = GREATEST(streams.last_received, excluded.last_received)",
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
            "SELECT name, event_count, last_received FROM streams WHERE account_id = $1 ORDER BY name",
        )
        .bind(aid)
        .fetch_all(&self.pool)
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
             WHERE account_id = $1 AND stream = $2 ORDER BY id DESC LIMIT $3",
        )
        .bind(aid)
        .bind(stream)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn put_definition(&self, def: &Definition) -> Result<Definition> {
        let row = sqlx::query(
            "INSERT INTO definitions (account_id, kind, name, text, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
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
        .fetch_one(&self.pool)
        .await?;
        definition_from_row(&row)
    }

    async fn definitions(&self, aid: AccountId, kind: DefinitionKind) -> Result<Vec<Definition>> {
        let rows = sqlx::query(
            "SELECT account_id, kind, name, text, created_at, updated_at FROM definitions
             WHERE account_id = $1 AND kind = $2 ORDER BY name",
        )
        .bind(aid)
        .bind(kind.as_str())
        .fetch_all(&self.pool)
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
             WHERE account_id = $1 AND kind = $2 AND name = $3",
        )
        .bind(aid)
        .bind(kind.as_str())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(definition_from_row).transpose()
    }

    async fn delete_definition(
        &self,
        aid: AccountId,
        kind: DefinitionKind,
        name: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM definitions WHERE account_id = $1 AND kind = $2 AND name = $3",
        )
        .bind(aid)
        .bind(kind.as_str())
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn account_ids(&self) -> Result<Vec<AccountId>> {
        let rows = sqlx::query("SELECT aid FROM accounts ORDER BY aid")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get::<i64, _>(0)?)).collect()
    }

    async fn pipeline_cursor(&self, aid: AccountId) -> Result<i64> {
        let row = sqlx::query("SELECT position FROM pipeline_cursors WHERE account_id = $1")
            .bind(aid)
            .fetch_optional(&self.pool)
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
             WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(aid)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn lookup_identities(
        &self,
        aid: AccountId,
        keys: &[IdentityKey],
    ) -> Result<Vec<(IdentityKey, i64)>> {
        let fields: Vec<&str> = keys.iter().map(|k| k.field.as_str()).collect();
        let values: Vec<&str> = keys.iter().map(|k| k.value.as_str()).collect();
        let rows = sqlx::query(
            "SELECT i.field, i.value, i.profile_id FROM identities i
             JOIN UNNEST($2::text[], $3::text[]) AS k(field, value) ON i.field = k.field AND i.value = k.value
             WHERE i.account_id = $1",
        )
        .bind(aid)
        .bind(&fields)
        .bind(&values)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    IdentityKey::new(r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?),
                    r.try_get(2)?,
                ))
            })
            .collect()
    }

    async fn load_profiles(&self, aid: AccountId, ids: &[i64]) -> Result<Vec<StoredProfile>> {
        let sql = format!(
            "SELECT {PROFILE_COLUMNS} FROM profiles WHERE account_id = $1 AND id = ANY($2)"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(aid)
            .bind(ids)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(profile_from_row).collect()
    }

    async fn read_profiles(&self, aid: AccountId, ids: &[i64]) -> Result<Vec<StoredProfile>> {
        self.load_profiles(aid, ids).await
    }

    async fn commit_pipeline(&self, aid: AccountId, c: &PipelineCommit) -> Result<bool> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let moved = sqlx::query(
            "INSERT INTO pipeline_cursors (account_id, position) VALUES ($1, $2)
             ON CONFLICT (account_id) DO UPDATE SET position = excluded.position
             WHERE pipeline_cursors.position = $3",
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
        if !c.merged.is_empty() {
            let losers: Vec<i64> = c.merged.iter().map(|m| m.0).collect();
            let winners: Vec<i64> = c.merged.iter().map(|m| m.1).collect();
            sqlx::query(
                "UPDATE merges g SET winner = m.winner FROM UNNEST($2::bigint[], $3::bigint[]) AS m(loser, winner)
                 WHERE g.account_id = $1 AND g.winner = m.loser",
            )
            .bind(aid).bind(&losers).bind(&winners).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM profiles WHERE account_id = $1 AND id = ANY($2)")
                .bind(aid)
                .bind(&losers)
                .execute(&mut *tx)
                .await?;
        }
        if !c.profiles.is_empty() {
            let ids: Vec<i64> = c.profiles.iter().map(|p| p.id).collect();
            let states: Vec<&str> = c.profiles.iter().map(|p| p.state.as_str()).collect();
            let created: Vec<i64> = c.profiles.iter().map(|p| p.created_at).collect();
            let modified: Vec<i64> = c.profiles.iter().map(|p| p.modified_at).collect();
            let checks: Vec<Option<i64>> = c.profiles.iter().map(|p| p.next_check).collect();
            sqlx::query(
                "INSERT INTO profiles (account_id, id, state, created_at, modified_at, next_check)
                 SELECT $1, * FROM UNNEST($2::bigint[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[])
                 ON CONFLICT (account_id, id) DO UPDATE SET state = excluded.state,
                   modified_at = excluded.modified_at, next_check = excluded.next_check",
            )
            .bind(aid).bind(&ids).bind(&states).bind(&created).bind(&modified).bind(&checks)
            .execute(&mut *tx).await?;
        }
        if !c.identities.is_empty() {
            let fields: Vec<&str> = c.identities.iter().map(|(k, _)| k.field.as_str()).collect();
            let values: Vec<&str> = c.identities.iter().map(|(k, _)| k.value.as_str()).collect();
            let ids: Vec<i64> = c.identities.iter().map(|(_, id)| *id).collect();
            sqlx::query(
                "INSERT INTO identities (account_id, field, value, profile_id)
                 SELECT $1, * FROM UNNEST($2::text[], $3::text[], $4::bigint[])
                 ON CONFLICT (account_id, field, value) DO UPDATE SET profile_id = excluded.profile_id",
            )
            .bind(aid).bind(&fields).bind(&values).bind(&ids).execute(&mut *tx).await?;
        }
        if !c.merges.is_empty() {
            let col = |f: fn(&MergeRecord) -> i64| c.merges.iter().map(f).collect::<Vec<i64>>();
            let fields: Vec<&str> = c.merges.iter().map(|m| m.key.field.as_str()).collect();
            let values: Vec<&str> = c.merges.iter().map(|m| m.key.value.as_str()).collect();
            sqlx::query(
                "INSERT INTO merges (account_id, winner, loser, event_id, field, value, at)
                 SELECT $1, * FROM UNNEST($2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[], $7::bigint[])",
            )
            .bind(aid)
            .bind(col(|m| m.winner))
            .bind(col(|m| m.loser))
            .bind(col(|m| m.event_id))
            .bind(&fields)
            .bind(&values)
            .bind(col(|m| m.at))
            .execute(&mut *tx)
            .await?;
        }
        if !c.next_checks.is_empty() {
            let (ids, checks): (Vec<i64>, Vec<Option<i64>>) = c.next_checks.iter().copied().unzip();
            sqlx::query(
                "UPDATE profiles p SET next_check = x.next_check
                 FROM UNNEST($2::bigint[], $3::bigint[]) AS x(id, next_check)
                 WHERE p.account_id = $1 AND p.id = x.id",
            )
            .bind(aid)
            .bind(&ids)
            .bind(&checks)
            .execute(&mut *tx)
            .await?;
        }
        apply_changes(&mut tx, aid, &c.changes, c.at).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn profile_identities(
        &self,
        aid: AccountId,
        profile_id: i64,
    ) -> Result<Vec<IdentityKey>> {
        let rows = sqlx::query("SELECT field, value FROM identities WHERE account_id = $1 AND profile_id = $2 ORDER BY field, value")
            .bind(aid).bind(profile_id).fetch_all(&self.pool).await?;
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
        let rows = sqlx::query("SELECT winner, loser, event_id, field, value, at FROM merges WHERE account_id = $1 AND winner = $2 ORDER BY id")
            .bind(aid).bind(profile_id).fetch_all(&self.pool).await?;
        rows.iter().map(merge_from_row).collect()
    }

    async fn reset_profiles(&self, aid: AccountId) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        for sql in [
            "DELETE FROM profiles WHERE account_id = $1",
            "DELETE FROM identities WHERE account_id = $1",
            "DELETE FROM merges WHERE account_id = $1",
            "DELETE FROM pipeline_cursors WHERE account_id = $1",
            "DELETE FROM audience_versions WHERE account_id = $1",
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
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        erase_memberships(&mut tx, aid, profile_id, at).await?;
        sqlx::query("DELETE FROM profiles WHERE account_id = $1 AND id = $2")
            .bind(aid)
            .bind(profile_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM identities WHERE account_id = $1 AND profile_id = $2")
            .bind(aid)
            .bind(profile_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM merges WHERE account_id = $1 AND (winner = $2 OR loser = $2)")
            .bind(aid)
            .bind(profile_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM events WHERE account_id = $1 AND id = ANY($2)")
            .bind(aid)
            .bind(event_ids)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE streams SET event_count = (SELECT COUNT(*) FROM events e WHERE e.account_id = streams.account_id AND e.stream = streams.name)
             WHERE account_id = $1",
        )
        .bind(aid)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn identity_blocklist(&self, aid: AccountId) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT value FROM identity_blocklist WHERE account_id = $1 ORDER BY value",
        )
        .bind(aid)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>(0)?))
            .collect()
    }

    async fn set_identity_blocklist(&self, aid: AccountId, values: &[String]) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("DELETE FROM identity_blocklist WHERE account_id = $1")
            .bind(aid)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO identity_blocklist (account_id, value) SELECT DISTINCT $1, v FROM UNNEST($2::text[]) AS v")
            .bind(aid).bind(values).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn scan_profiles(
        &self,
        aid: AccountId,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredProfile>> {
        let sql = format!(
            "SELECT {PROFILE_COLUMNS} FROM profiles WHERE account_id = $1 AND id > $2 ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(aid)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(profile_from_row).collect()
    }

    async fn due_profiles(
        &self,
        aid: AccountId,
        now: Micros,
        limit: u32,
    ) -> Result<Vec<StoredProfile>> {
        let sql = format!(
            "SELECT {PROFILE_COLUMNS} FROM profiles
             WHERE account_id = $1 AND next_check IS NOT NULL AND next_check <= $2
             ORDER BY next_check LIMIT $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(aid)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(profile_from_row).collect()
    }

    async fn audience_versions(&self, aid: AccountId) -> Result<Vec<AudienceVersion>> {
        let rows = sqlx::query(
            "SELECT segment, version FROM audience_versions WHERE account_id = $1 ORDER BY segment",
        )
        .bind(aid)
        .fetch_all(&self.pool)
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
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn log_position(&self, aid: AccountId, consumer: &str) -> Result<i64> {
        let pos: Option<i64> = sqlx::query_scalar(
            "SELECT position FROM log_positions WHERE account_id = $1 AND consumer = $2",
        )
        .bind(aid)
        .bind(consumer)
        .fetch_optional(&self.pool)
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
        .execute(&self.pool)
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
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
             WHERE leases.holder = excluded.holder OR leases.expires_at < $4
             RETURNING holder",
        )
        .bind(name).bind(holder).bind(until).bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.is_some())
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

type Tx<'c> = sqlx::Transaction<'c, sqlx::Postgres>;
job_store_impl!(PgStore, pool, pool);
membership_store_impl!(
    PgStore,
    sqlx::PgConnection,
    pool,
    pool,
    " FOR UPDATE",
    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1"
);
