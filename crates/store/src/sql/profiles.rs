//! [`ProfileStore`]: the profile pipeline's state (profiles, identities, merges, its cursor)
//! in the state database. The cursor commits with the state it produced, so a batch is
//! applied exactly once whatever crashes; the events it reads come from the log.

use async_trait::async_trait;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, Connection, Row};
use tributary_core::{AccountId, IdentityKey, MergeRecord, Micros, PipelineCommit, StoredProfile};

use super::audiences::{apply_changes, erase_memberships};
use super::packed::{
    self, Column, Column::Int, Column::Text, Unpacker, packed_sql, packed_whole_sql,
};
use super::{SqlStore, decode_all, page_query, per_id_chunk, statement_chunks};
use crate::dialect::Dialect;
use crate::rows::{PROFILE_COLUMNS, merge_from_row, profile_from_row};
use crate::{ProfileStore, Result, StoreError};

#[async_trait]
impl ProfileStore for SqlStore {
    async fn pipeline_cursor(&self, aid: AccountId) -> Result<i64> {
        cursor_on(&self.state.write, aid).await
    }

    async fn pipeline_lag(&self, aid: AccountId) -> Result<Vec<(String, i64)>> {
        // A reader: scrapes of `/metrics` must not queue behind the pipeline's commits.
        let cursor = cursor_on(&self.state.read, aid).await?;
        self.events_since(aid, cursor).await
    }

    async fn lookup_identities(
        &self,
        aid: AccountId,
        keys: &[IdentityKey],
    ) -> Result<Vec<(IdentityKey, i64)>> {
        let rows: Vec<(&str, &str)> = keys
            .iter()
            .map(|k| (k.field.as_str(), k.value.as_str()))
            .collect();
        let keys = json(serde_json::to_string(&rows))?;
        if self.dialect == Dialect::Sqlite {
            // (`CROSS JOIN`: SQLite then keeps the keys as the outer loop, as written, instead
            // of scanning the table and parsing the keys again for each of its rows.)
            let sql = packed_sql(
                "SELECT CAST(j.key AS INTEGER) AS ord, i.profile_id, i.field, i.value
                 FROM json_each($1) AS j CROSS JOIN identities i
                 WHERE i.account_id = $2 AND i.field = j.value->>0 AND i.value = j.value->>1
                   AND CAST(j.key AS INTEGER) > $3",
                &[Int("profile_id"), Text("field"), Text("value")],
            );
            let mut conn = self.state.read.acquire().await?;
            return packed::read_listed(&mut conn, "identities", &sql, (aid, &keys), |r| {
                let id = r.int("profile_id")?;
                Ok((IdentityKey::new(r.text("field")?, r.text("value")?), id))
            })
            .await;
        }
        // The keys as one JSON parameter, joined to the table: PostgreSQL plans the join as
        // an index probe per key, where an `IN (VALUES ...)` list of 2,000 keys was planned
        // as a hash join over a scan of the whole table (35 ms a batch at 200,000 identities).
        let sql = format!(
            "SELECT i.field, i.value, i.profile_id FROM {} JOIN identities i
             ON i.account_id = $2 AND i.field = j.value->>0 AND i.value = j.value->>1",
            self.dialect.json_rows(1)
        );
        let found = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(keys)
            .bind(aid)
            .fetch_all(&self.state.read)
            .await?;
        found
            .iter()
            .map(|r| {
                Ok((
                    IdentityKey::new(r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?),
                    r.try_get(2)?,
                ))
            })
            .collect()
    }

    async fn load_profiles(&self, aid: AccountId, ids: &[i64]) -> Result<Vec<StoredProfile>> {
        let mut conn = self.state.read.acquire().await?;
        profiles_by_id(&mut conn, self.dialect, aid, ids).await
    }

    async fn commit_pipeline(&self, aid: AccountId, c: &PipelineCommit) -> Result<bool> {
        let mut conn = self.state.write.acquire().await?;
        if self.dialect != Dialect::Sqlite {
            return commit_pipeline_on(&mut conn, self.dialect, aid, c).await;
        }
        // Profiles are derived data: a batch lost to a power cut (never to a process crash) is
        // recomputed from the raw events, whose own file stays fully synchronous, and the
        // cursor is lost with it. So the pipeline's commits skip the fsync; the next fully
        // synchronous commit of this file makes them durable too.
        let mut relaxed = Relaxed(Some(conn));
        let result = match relaxed.conn() {
            Some(conn) => {
                sqlx::query("PRAGMA synchronous = NORMAL")
                    .execute(&mut *conn)
                    .await?;
                commit_pipeline_on(conn, self.dialect, aid, c).await
            }
            None => Err(StoreError::Corrupt("the state writer went missing".into())),
        };
        relaxed.restore().await?;
        result
    }

    async fn profile_identities(
        &self,
        aid: AccountId,
        profile_id: i64,
    ) -> Result<Vec<IdentityKey>> {
        let rows = sqlx::query(
            "SELECT field, value FROM identities WHERE account_id = $1 AND profile_id = $2
             ORDER BY field, value",
        )
        .bind(aid)
        .bind(profile_id)
        .fetch_all(&self.state.read)
        .await?;
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
        let query = sqlx::query(
            "SELECT winner, loser, event_id, field, value, at FROM merges
             WHERE account_id = $1 AND winner = $2 ORDER BY id",
        )
        .bind(aid)
        .bind(profile_id);
        decode_all(query, &self.state.read, merge_from_row).await
    }

    async fn reset_profiles(&self, aid: AccountId) -> Result<()> {
        let mut tx = self.state.write.begin().await?;
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

    /// Two transactions: the raw events go first (in the log), then the profile (in the
    /// state). A crash between them leaves a profile whose events are gone: the erasure
    /// was not acknowledged, and running it again finishes it. The other order could leave
    /// raw events from which a rebuild would bring the person back.
    async fn erase_profile(
        &self,
        aid: AccountId,
        profile_id: i64,
        event_ids: &[i64],
        at: Micros,
    ) -> Result<()> {
        self.delete_events(aid, event_ids).await?;
        let mut tx = self.state.write.begin().await?;
        erase_memberships(&mut tx, self.dialect, aid, profile_id, at).await?;
        for sql in [
            "DELETE FROM profiles WHERE account_id = $1 AND id = $2",
            "DELETE FROM identities WHERE account_id = $1 AND profile_id = $2",
            "DELETE FROM merges WHERE account_id = $1 AND (winner = $2 OR loser = $2)",
        ] {
            sqlx::query(sql)
                .bind(aid)
                .bind(profile_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn identity_blocklist(&self, aid: AccountId) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT value FROM identity_blocklist WHERE account_id = $1 ORDER BY value",
        )
        .bind(aid)
        .fetch_all(&self.state.read)
        .await?)
    }

    async fn set_identity_blocklist(&self, aid: AccountId, values: &[String]) -> Result<()> {
        let mut tx = self.state.write.begin().await?;
        sqlx::query("DELETE FROM identity_blocklist WHERE account_id = $1")
            .bind(aid)
            .execute(&mut *tx)
            .await?;
        for chunk in statement_chunks(values) {
            let sql = format!(
                "INSERT INTO identity_blocklist (account_id, value) VALUES {}
                 ON CONFLICT DO NOTHING",
                self.dialect.params().rows(chunk.len(), 2)
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for v in chunk {
                q = q.bind(aid).bind(v.as_str());
            }
            q.execute(&mut *tx).await?;
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
        let rows = format!(
            "SELECT id AS ord, {PROFILE_COLUMNS} FROM profiles WHERE account_id = $1 AND id > $2
             ORDER BY id LIMIT $3"
        );
        if self.dialect == Dialect::Sqlite {
            let mut conn = self.state.read.acquire().await?;
            let sql = packed_whole_sql(&rows, &PROFILE_PACKING);
            let unpack = |r: &mut Unpacker<'_>| unpack_profile(aid, r);
            return packed::read_page(
                &mut conn,
                "profiles",
                &sql,
                (aid, after, limit),
                unpack,
                |p| p.id,
            )
            .await;
        }
        let query = page_query(rows, aid, after, limit);
        decode_all(query, &self.state.read, profile_from_row).await
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
        let query = page_query(sql, aid, now, limit);
        decode_all(query, &self.state.read, profile_from_row).await
    }

    async fn erased_profiles(&self, aid: AccountId, profile_ids: &[i64]) -> Result<Vec<i64>> {
        let select =
            "SELECT profile_id FROM erasures WHERE account_id = {p} AND profile_id IN ({ids})";
        let mut out = Vec::new();
        for q in per_id_chunk(self.dialect, select, aid, profile_ids) {
            for r in q.fetch_all(&self.state.read).await? {
                out.push(r.try_get(0)?);
            }
        }
        Ok(out)
    }
}

/// The pipeline's cursor for the account, read on `pool` (0 before its first commit).
async fn cursor_on(pool: &sqlx::AnyPool, aid: AccountId) -> Result<i64> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM pipeline_cursors WHERE account_id = $1")
            .bind(aid)
            .fetch_optional(pool)
            .await?;
    Ok(position.unwrap_or(0))
}

/// Profiles by id, read on `conn` (the writer for the pipeline, a reader for others).
async fn profiles_by_id(
    conn: &mut AnyConnection,
    dialect: Dialect,
    aid: AccountId,
    ids: &[i64],
) -> Result<Vec<StoredProfile>> {
    if dialect == Dialect::Sqlite {
        let ids = json(serde_json::to_string(ids))?;
        let sql = packed_sql(
            "SELECT CAST(j.key AS INTEGER) AS ord,
                    p.id, p.created_at, p.modified_at, p.next_check, p.state
             FROM json_each($1) AS j CROSS JOIN profiles p
             WHERE p.account_id = $2 AND p.id = j.value AND CAST(j.key AS INTEGER) > $3",
            &PROFILE_PACKING,
        );
        return packed::read_listed(conn, "profiles", &sql, (aid, &ids), |r| {
            unpack_profile(aid, r)
        })
        .await;
    }
    let select = format!(
        "SELECT {PROFILE_COLUMNS} FROM profiles WHERE account_id = {{p}} AND id IN ({{ids}})"
    );
    let mut out = Vec::new();
    for q in per_id_chunk(dialect, &select, aid, ids) {
        for r in q.fetch_all(&mut *conn).await? {
            out.push(profile_from_row(&r)?);
        }
    }
    Ok(out)
}

/// The columns of a profile's packing on SQLite (read by [`unpack_profile`]).
const PROFILE_PACKING: [Column; 5] = [
    Int("id"),
    Int("created_at"),
    Int("modified_at"),
    Int("next_check"),
    Text("state"),
];

fn unpack_profile(aid: AccountId, r: &mut Unpacker<'_>) -> Result<StoredProfile> {
    Ok(StoredProfile {
        account_id: aid,
        id: r.int("id")?,
        created_at: r.int("created_at")?,
        modified_at: r.int("modified_at")?,
        next_check: r.nullable("next_check")?,
        state: r.text("state")?.to_string(),
    })
}

/// The state writer while a pipeline commit runs with `synchronous = NORMAL`. Unless
/// [`Relaxed::restore`] set `FULL` again, it is closed instead of going back to the pool
/// (a commit whose caller is dropped midway, as the pipeline worker is at shutdown, stops at
/// any await): a connection with relaxed durability never serves an acknowledged write.
struct Relaxed(Option<PoolConnection<Any>>);

impl Relaxed {
    fn conn(&mut self) -> Option<&mut AnyConnection> {
        self.0.as_deref_mut()
    }

    async fn restore(mut self) -> Result<()> {
        if let Some(conn) = self.conn() {
            sqlx::query("PRAGMA synchronous = FULL")
                .execute(&mut *conn)
                .await?;
        }
        // Restored: back to the pool.
        self.0.take();
        Ok(())
    }
}

impl Drop for Relaxed {
    fn drop(&mut self) {
        if let Some(conn) = self.0.take() {
            // The pool opens a replacement.
            drop(conn.detach());
        }
    }
}

/// The body of `commit_pipeline`, on the state writer.
async fn commit_pipeline_on(
    conn: &mut AnyConnection,
    dialect: Dialect,
    aid: AccountId,
    c: &PipelineCommit,
) -> Result<bool> {
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
    apply_merged(&mut tx, dialect, aid, &c.merged).await?;
    upsert_profiles(&mut tx, dialect, aid, &c.profiles).await?;
    if !c.next_checks.is_empty() {
        let rows = json(serde_json::to_string(&c.next_checks))?;
        let sql = format!(
            "UPDATE profiles SET next_check = CAST(j.value->>1 AS BIGINT) FROM {}
             WHERE profiles.account_id = $2 AND profiles.id = CAST(j.value->>0 AS BIGINT)",
            dialect.json_rows(1)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
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
        // (`WHERE true`: SQLite would read `ON` as a join's without it.)
        let sql = format!(
            "INSERT INTO identities (account_id, field, value, profile_id)
             SELECT $1, j.value->>0, j.value->>1, CAST(j.value->>2 AS BIGINT) FROM {} WHERE true
             ON CONFLICT (account_id, field, value) DO UPDATE SET profile_id = excluded.profile_id",
            dialect.json_rows(2)
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(aid)
            .bind(json(serde_json::to_string(&rows))?)
            .execute(&mut *tx)
            .await?;
    }
    for chunk in statement_chunks(&c.merges) {
        let sql = format!(
            "INSERT INTO merges (account_id, winner, loser, event_id, field, value, at) VALUES {}",
            dialect.params().rows(chunk.len(), 7)
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
    apply_changes(&mut tx, dialect, aid, &c.changes, c.at).await?;
    tx.commit().await?;
    Ok(true)
}

/// Points the merges won by each loser at its winner, and deletes the losers.
async fn apply_merged(
    conn: &mut AnyConnection,
    dialect: Dialect,
    aid: AccountId,
    merged: &[(i64, i64)],
) -> Result<()> {
    for chunk in statement_chunks(merged) {
        // `CASE` maps each loser to its winner; `IN` lets the index find the rows.
        let mut params = dialect.params();
        let cases: Vec<String> = chunk
            .iter()
            .map(|_| format!("WHEN {} THEN {}", params.one(), params.one()))
            .collect();
        let sql = format!(
            "UPDATE merges SET winner = CASE winner {} END
             WHERE account_id = {} AND winner IN ({})",
            cases.join(" "),
            params.one(),
            params.list(chunk.len())
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
        for (loser, winner) in chunk {
            q = q.bind(*loser).bind(*winner);
        }
        q = q.bind(aid);
        for (loser, _) in chunk {
            q = q.bind(*loser);
        }
        q.execute(&mut *conn).await?;
        let losers: Vec<i64> = chunk.iter().map(|(loser, _)| *loser).collect();
        let delete = "DELETE FROM profiles WHERE account_id = {p} AND id IN ({ids})";
        for q in per_id_chunk(dialect, delete, aid, &losers) {
            q.execute(&mut *conn).await?;
        }
    }
    Ok(())
}

async fn upsert_profiles(
    conn: &mut AnyConnection,
    dialect: Dialect,
    aid: AccountId,
    profiles: &[StoredProfile],
) -> Result<()> {
    for chunk in statement_chunks(profiles) {
        let sql = format!(
            "INSERT INTO profiles (account_id, id, state, created_at, modified_at, next_check)
             VALUES {} ON CONFLICT ({}) DO UPDATE SET state = excluded.state,
               modified_at = excluded.modified_at, next_check = excluded.next_check",
            dialect.params().rows(chunk.len(), 6),
            dialect.profile_key()
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
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// A batch serialized for [`Dialect::json_rows`].
fn json(rows: serde_json::Result<String>) -> Result<String> {
    rows.map_err(|e| StoreError::Corrupt(e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tributary_core::{NewToken, Role, TokenSecret};

    use super::*;
    use crate::AccountStore;

    /// A pipeline commit stopped midway (its caller dropped it) leaves no writer with
    /// `synchronous = NORMAL` behind for the next acknowledged write.
    #[tokio::test]
    async fn a_commit_stopped_midway_leaves_the_writer_fully_synchronous() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqlStore::sqlite(&dir.path().join("t.db")).await.unwrap();
        let admin = NewToken {
            account_id: None,
            name: "a".into(),
            description: String::new(),
            roles: vec![Role::Admin],
            hash: TokenSecret::generate().hash(),
            created_at: 0,
            expires_at: None,
        };
        store.bootstrap("Default", &admin, 0).await.unwrap();
        let state = format!("{{\"x\":\"{}\"}}", "y".repeat(1_000));
        let commit = PipelineCommit {
            expected_cursor: 0,
            new_cursor: 1,
            profiles: (1..=20_000)
                .map(|id| StoredProfile {
                    account_id: 1,
                    id,
                    state: state.clone(),
                    created_at: 0,
                    modified_at: 0,
                    next_check: None,
                })
                .collect(),
            ..PipelineCommit::default()
        };
        let mut stopped = 0;
        for wait in [2, 5, 10, 20, 40] {
            let run = store.commit_pipeline(1, &commit);
            if tokio::time::timeout(Duration::from_millis(wait), run)
                .await
                .is_err()
            {
                stopped += 1;
            }
            let synchronous: i64 = sqlx::query_scalar("PRAGMA synchronous")
                .fetch_one(&store.state.write)
                .await
                .unwrap();
            assert_eq!(
                synchronous, 2,
                "FULL after a commit stopped after {wait} ms"
            );
        }
        assert!(stopped > 0, "no commit was stopped midway");
    }
}
