//! [`AccountStore`]: accounts, tokens, definitions and leases, all in the state database.

use async_trait::async_trait;
use sqlx::AnyConnection;
use tributary_core::token::roles_to_text;
use tributary_core::{
    Account, AccountId, Definition, DefinitionKind, Micros, NewToken, TokenHash, TokenRecord,
};

use super::{SqlStore, decode_all};
use crate::dialect::{Dialect, Lock};
use crate::rows::{
    DEFINITION_COLUMNS, TOKEN_COLUMNS, account_from_row, definition_from_row, token_from_row,
};
use crate::{AccountStore, Backend, Bootstrap, Result};

async fn insert_token(conn: &mut AnyConnection, t: &NewToken) -> Result<TokenRecord> {
    let sql = format!(
        "INSERT INTO tokens (account_id, name, description, roles, hash, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {TOKEN_COLUMNS}"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
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
impl AccountStore for SqlStore {
    fn backend(&self) -> Backend {
        self.dialect.backend()
    }

    async fn unsafe_durability(&self) -> Result<Vec<String>> {
        // SQLite's writers run `synchronous = FULL` (set when the pools open).
        if self.dialect == Dialect::Sqlite {
            return Ok(Vec::new());
        }
        let off: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, setting FROM pg_settings
             WHERE name IN ('fsync', 'synchronous_commit') AND setting = 'off' ORDER BY name",
        )
        .fetch_all(&self.state.read)
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
        let mut tx = self.state.write.begin().await?;
        self.dialect.lock(&mut tx, Lock::Bootstrap).await?;
        let existing: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM accounts")
            .fetch_one(&mut *tx)
            .await?;
        if existing > 0 {
            return Ok(Bootstrap::AlreadyInitialised);
        }
        let aid: i64 = sqlx::query_scalar(
            "INSERT INTO accounts (name, created_at) VALUES ($1, $2) RETURNING aid",
        )
        .bind(account_name)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
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
        .fetch_one(&self.state.write)
        .await?;
        account_from_row(&row)
    }

    async fn account(&self, aid: AccountId) -> Result<Option<Account>> {
        let row = sqlx::query("SELECT aid, name, created_at FROM accounts WHERE aid = $1")
            .bind(aid)
            .fetch_optional(&self.state.read)
            .await?;
        row.as_ref().map(account_from_row).transpose()
    }

    async fn create_token(&self, token: &NewToken) -> Result<TokenRecord> {
        let mut conn = self.state.write.acquire().await?;
        insert_token(&mut conn, token).await
    }

    async fn tokens(&self, aid: AccountId) -> Result<Vec<TokenRecord>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE account_id = $1 ORDER BY id");
        let query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(aid);
        decode_all(query, &self.state.read, token_from_row).await
    }

    async fn delete_token(&self, aid: AccountId, id: i64) -> Result<bool> {
        let mut tx = self.state.write.begin().await?;
        let done = sqlx::query("DELETE FROM tokens WHERE account_id = $1 AND id = $2")
            .bind(aid)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() > 0 {
            sqlx::query("DELETE FROM console_sessions WHERE token_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    async fn token_by_hash(&self, hash: &TokenHash) -> Result<Option<TokenRecord>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash.to_hex())
            .fetch_optional(&self.state.read)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn create_session(
        &self,
        hash: &TokenHash,
        token_id: i64,
        now: Micros,
        expires_at: Micros,
    ) -> Result<()> {
        let mut tx = self.state.write.begin().await?;
        sqlx::query("DELETE FROM console_sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO console_sessions (hash, token_id, created_at, expires_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(hash.to_hex())
        .bind(token_id)
        .bind(now)
        .bind(expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn session_token(&self, hash: &TokenHash, now: Micros) -> Result<Option<TokenRecord>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = (SELECT token_id FROM console_sessions
             WHERE hash = $1 AND expires_at > $2)"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash.to_hex())
            .bind(now)
            .fetch_optional(&self.state.read)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn delete_session(&self, hash: &TokenHash) -> Result<()> {
        sqlx::query("DELETE FROM console_sessions WHERE hash = $1")
            .bind(hash.to_hex())
            .execute(&self.state.write)
            .await?;
        Ok(())
    }

    async fn account_ids(&self) -> Result<Vec<AccountId>> {
        Ok(sqlx::query_scalar("SELECT aid FROM accounts ORDER BY aid")
            .fetch_all(&self.state.read)
            .await?)
    }

    async fn put_definition(&self, def: &Definition) -> Result<Definition> {
        let sql = format!(
            "INSERT INTO definitions (account_id, kind, name, text, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (account_id, kind, name) DO UPDATE SET
               text = excluded.text, updated_at = excluded.updated_at
             RETURNING {DEFINITION_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(def.account_id)
            .bind(def.kind.as_str())
            .bind(&def.name)
            .bind(&def.text)
            .bind(def.created_at)
            .bind(def.updated_at)
            .fetch_one(&self.state.write)
            .await?;
        definition_from_row(&row)
    }

    async fn definitions(&self, aid: AccountId, kind: DefinitionKind) -> Result<Vec<Definition>> {
        let sql = format!(
            "SELECT {DEFINITION_COLUMNS} FROM definitions
             WHERE account_id = $1 AND kind = $2 ORDER BY name"
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(aid)
            .bind(kind.as_str());
        decode_all(query, &self.state.read, definition_from_row).await
    }

    async fn definition(
        &self,
        aid: AccountId,
        kind: DefinitionKind,
        name: &str,
    ) -> Result<Option<Definition>> {
        let sql = format!(
            "SELECT {DEFINITION_COLUMNS} FROM definitions
             WHERE account_id = $1 AND kind = $2 AND name = $3"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(aid)
            .bind(kind.as_str())
            .bind(name)
            .fetch_optional(&self.state.read)
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
        .execute(&self.state.write)
        .await?;
        Ok(done.rows_affected() > 0)
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
        .bind(name)
        .bind(holder)
        .bind(until)
        .bind(now)
        .fetch_optional(&self.state.write)
        .await?;
        Ok(row.is_some())
    }

    async fn release_lease(&self, name: &str, holder: &str) -> Result<()> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(&self.state.write)
            .await?;
        Ok(())
    }
}
