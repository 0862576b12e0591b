//! [`SqlStore`]: the one implementation of [`Store`](crate::Store), over SQLite or PostgreSQL.
//! Each file implements one of the store's traits; `dialect.rs` holds what differs.
//!
//! Two databases, whichever the backend: `state` (accounts, tokens, definitions, profiles,
//! audiences, jobs) and `log` (raw events and stream counters). On SQLite they are two files
//! with a writer each, so an event append never queues behind a pipeline commit; on
//! PostgreSQL they are the same database and pool. Reads that the API serves go to the
//! readers; the pipeline reads what it is about to rewrite through the writer.

mod accounts;
pub(crate) mod audiences;
pub(crate) mod events;
pub(crate) mod jobs;
mod packed;
mod profiles;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dialect::{self, CacheSizes, Dialect, Lock, Pools};
use crate::{Result, migrate};
use tributary_core::AccountId;

pub struct SqlStore {
    dialect: Dialect,
    state: Pools,
    log: Pools,
    /// Alive while the store is: the background tasks (SQLite checkpointers, the PostgreSQL
    /// statistics keeper) stop when they can no longer upgrade it.
    _alive: Arc<()>,
    /// When the deduplication keys were last pruned (micros; see `sql::events`).
    keys_pruned_at: std::sync::atomic::AtomicI64,
    /// When the per-minute event counts were last pruned (micros; see `sql::events`).
    minutes_pruned_at: std::sync::atomic::AtomicI64,
}

/// The sizes a multi-row `VALUES` statement or an `IN (..)` list comes in (well under SQLite's
/// 32,766 and PostgreSQL's 65,535 bound parameters). A few fixed sizes rather than whatever a
/// batch holds: each size is one statement text, prepared once per connection and then taken
/// from the statement cache; a text per length would be parsed and planned every time.
const STATEMENT_ROWS: [usize; 6] = [2_000, 500, 100, 20, 5, 1];

/// `items` cut into pieces of the sizes of [`STATEMENT_ROWS`], largest first.
fn statement_chunks<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let size = STATEMENT_ROWS
            .into_iter()
            .find(|size| *size <= items.len())?;
        let (piece, rest) = items.split_at(size);
        items = rest;
        Some(piece)
    })
}

impl SqlStore {
    /// Opens (creating if missing) the SQLite database at `path` and its event log beside it
    /// (see [`event_log_path`]), migrating both, and a data dir of the layout before the
    /// event log had its own file.
    pub async fn sqlite(path: &Path) -> Result<Self> {
        let alive = Arc::new(());
        // At most 256 + 4 × 32 + 16 + 4 × 8 MiB of page cache in all.
        let cache = CacheSizes {
            writer_mib: 256,
            reader_mib: 32,
            mmap_mib: 256,
        };
        let state = dialect::sqlite_pools(path, cache, 4, Arc::downgrade(&alive)).await?;
        {
            let mut conn = state.write.acquire().await?;
            migrate::run(&mut conn, migrate::SQLITE, &path.display().to_string()).await?;
            migrate::memberships::convert(&mut conn, Dialect::Sqlite).await?;
        }
        let log_path = event_log_path(path);
        let cache = CacheSizes {
            writer_mib: 16,
            reader_mib: 8,
            mmap_mib: 0,
        };
        let log = dialect::sqlite_pools(&log_path, cache, 4, Arc::downgrade(&alive)).await?;
        {
            let mut conn = log.write.acquire().await?;
            migrate::run(
                &mut conn,
                migrate::SQLITE_EVENT_LOG,
                &log_path.display().to_string(),
            )
            .await?;
            let mut state_conn = state.write.acquire().await?;
            migrate::event_log::move_out_of_state(&mut state_conn, path, &mut conn).await?;
        }
        Ok(SqlStore {
            dialect: Dialect::Sqlite,
            state,
            log,
            _alive: alive,
            keys_pruned_at: Default::default(),
            minutes_pruned_at: Default::default(),
        })
    }

    /// Connects to PostgreSQL at `url` and migrates it (one node at a time).
    pub async fn postgres(url: &str) -> Result<Self> {
        let alive = Arc::new(());
        let pools = dialect::postgres_pool(url, Arc::downgrade(&alive)).await?;
        {
            let mut conn = pools.write.acquire().await?;
            // Session-scoped: held across the migrations' own transactions.
            sqlx::query("SELECT pg_advisory_lock($1)")
                .bind(Lock::Migrate.key())
                .execute(&mut *conn)
                .await?;
            let migrated = async {
                migrate::run(&mut conn, migrate::POSTGRES, &crate::redact_url(url)).await?;
                migrate::memberships::convert(&mut conn, Dialect::Postgres).await
            }
            .await;
            sqlx::query("SELECT pg_advisory_unlock($1)")
                .bind(Lock::Migrate.key())
                .execute(&mut *conn)
                .await?;
            migrated?;
        }
        Ok(SqlStore {
            dialect: Dialect::Postgres,
            state: pools.clone(),
            log: pools,
            _alive: alive,
            keys_pruned_at: Default::default(),
            minutes_pruned_at: Default::default(),
        })
    }
}

/// The event log of the SQLite database at `path`: `events.db` beside `tributary.db`, and
/// `NAME-events.db` beside any other `NAME.db`.
pub fn event_log_path(path: &Path) -> PathBuf {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("tributary");
    let name = if stem == "tributary" {
        "events.db".to_string()
    } else {
        format!("{stem}-events.db")
    };
    path.with_file_name(name)
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>;

/// A page of an account's records: `sql` binds the account at `$1`, where the page starts (a
/// position, a time, a stream) at `$2` and the page's size at `$3`.
fn page_query<'q, S>(sql: String, aid: AccountId, start: S, limit: u32) -> AnyQuery<'q>
where
    S: 'q + sqlx::Encode<'q, sqlx::Any> + sqlx::Type<sqlx::Any>,
{
    sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(aid)
        .bind(start)
        .bind(i64::from(limit))
}

/// Every record of an account in `table` (`columns` decoded by `decode`), by id.
async fn account_records<T>(
    pool: &sqlx::AnyPool,
    table: &str,
    columns: &str,
    aid: AccountId,
    decode: fn(&sqlx::any::AnyRow) -> Result<T>,
) -> Result<Vec<T>> {
    let sql = format!("SELECT {columns} FROM {table} WHERE account_id = $1 ORDER BY id");
    decode_all(
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(aid),
        pool,
        decode,
    )
    .await
}

/// One record of an account in `table`, by id.
async fn account_record<T>(
    pool: &sqlx::AnyPool,
    table: &str,
    columns: &str,
    (aid, id): (AccountId, i64),
    decode: fn(&sqlx::any::AnyRow) -> Result<T>,
) -> Result<Option<T>> {
    let sql = format!("SELECT {columns} FROM {table} WHERE account_id = $1 AND id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(aid)
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(decode).transpose()
}

/// Runs `query` on `pool` and decodes every row with `decode`.
async fn decode_all<T>(
    query: AnyQuery<'_>,
    pool: &sqlx::AnyPool,
    decode: fn(&sqlx::any::AnyRow) -> Result<T>,
) -> Result<Vec<T>> {
    query.fetch_all(pool).await?.iter().map(decode).collect()
}

/// A query run once per chunk of `ids`: `sql` holds `{p}` where the placeholder of `first`
/// goes and, after it, `{ids}` where the chunk's list goes.
fn per_id_chunk<'a>(
    dialect: Dialect,
    sql: &'a str,
    first: i64,
    ids: &'a [i64],
) -> impl Iterator<Item = sqlx::query::Query<'a, sqlx::Any, sqlx::any::AnyArguments>> + 'a {
    statement_chunks(ids).map(move |chunk| {
        let mut params = dialect.params();
        let text = sql
            .replace("{p}", &params.one())
            .replace("{ids}", &params.list(chunk.len()));
        chunk.iter().fold(
            sqlx::query(sqlx::AssertSqlSafe(text)).bind(first),
            |q, id| q.bind(*id),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_come_in_a_few_sizes() {
        let items: Vec<usize> = (0..1_234).collect();
        let sizes: Vec<usize> = statement_chunks(&items).map(<[usize]>::len).collect();
        assert_eq!(sizes, vec![500, 500, 100, 100, 20, 5, 5, 1, 1, 1, 1]);
        let many: Vec<usize> = (0..2_600).collect();
        let sizes: Vec<usize> = statement_chunks(&many).map(<[usize]>::len).collect();
        assert_eq!(sizes, vec![2_000, 500, 100]);
        assert_eq!(statement_chunks(&items).flatten().count(), items.len());
        assert_eq!(statement_chunks::<u8>(&[]).count(), 0);
    }

    #[test]
    fn the_event_log_sits_beside_its_database() {
        assert_eq!(
            event_log_path(Path::new("/d/tributary.db")),
            Path::new("/d/events.db")
        );
        assert_eq!(
            event_log_path(Path::new("/d/other.db")),
            Path::new("/d/other-events.db")
        );
    }
}
