//! What really differs between SQLite and PostgreSQL: how a pool is set up, a few spellings,
//! and what serializes writers across processes. Everything else in `sql/` is one SQL text
//! for both (numbered `$n` placeholders, `ON CONFLICT`, `RETURNING` and row values work on
//! both), run through sqlx's `Any` driver.
//!
//! Cross-process invariants on PostgreSQL are kept with advisory locks ([`Lock`]):
//! - `Bootstrap` makes first start-up create account 1 exactly once.
//! - `EventAppend` serializes event appends, so ids are allocated and become visible in the
//!   same order on every node: a consumer tailing a stream by id never sees id 11 committed
//!   while id 10 is still in flight and would be skipped. Each append is a whole group commit
//!   (one per node at a time, see `writer.rs`), so the lock is taken once per batch, not per
//!   event; with several nodes their batches take turns (ARCHITECTURE.md has the cost).
//! - `Migrate` (session-scoped) keeps two starting nodes from migrating at once.
//!
//! On SQLite each database file has one writer connection, which serializes its writers.

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, ConnectOptions, Executor};

use crate::{Backend, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// What a PostgreSQL advisory lock guards (the numbers are arbitrary but fixed: every node
/// must use the same ones).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lock {
    Migrate,
    Bootstrap,
    EventAppend,
}

impl Lock {
    pub fn key(self) -> i64 {
        match self {
            Lock::Migrate => 0x7472_6962_0001,
            Lock::Bootstrap => 0x7472_6962_0002,
            Lock::EventAppend => 0x7472_6962_0003,
        }
    }
}

impl Dialect {
    pub fn backend(self) -> Backend {
        match self {
            Dialect::Sqlite => Backend::Sqlite,
            Dialect::Postgres => Backend::Postgres,
        }
    }

    /// Appended to a read of rows a transaction will rewrite, to lock them against other
    /// nodes' commits (SQLite's one writer serializes commits anyway).
    pub fn lock_rows(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// The larger of two values.
    pub fn greatest(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MAX",
            Dialect::Postgres => "GREATEST",
        }
    }

    /// A table of the elements of the JSON array bound at `$n`, each as `j.value` (read its
    /// parts with `j.value->>0`, ...). One parameter for a whole batch: binding values one by
    /// one costs more than the statement itself at pipeline volumes.
    pub fn json_rows(self, n: usize) -> String {
        match self {
            Dialect::Sqlite => format!("json_each(${n}) AS j"),
            Dialect::Postgres => format!("jsonb_array_elements(${n}::jsonb) AS j(value)"),
        }
    }

    /// The unique key an upsert of `profiles` conflicts on (on SQLite the id alone is the
    /// rowid: one B-tree instead of two; ids are event ids, unique across accounts).
    pub fn profile_key(self) -> &'static str {
        match self {
            Dialect::Sqlite => "id",
            Dialect::Postgres => "account_id, id",
        }
    }

    /// Counts the tables named `$1`.
    pub fn count_tables(self) -> &'static str {
        match self {
            Dialect::Sqlite => {
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = $1"
            }
            Dialect::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_name = $1"
            }
        }
    }

    /// Placeholders for a statement whose parameters are numbered here, in order.
    pub fn params(self) -> Params {
        Params {
            dialect: self,
            count: 0,
        }
    }

    /// Takes `lock` until the end of the transaction `conn` is in (PostgreSQL; nothing to do
    /// on SQLite).
    pub async fn lock(self, conn: &mut AnyConnection, lock: Lock) -> Result<()> {
        if self == Dialect::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(lock.key())
                .execute(conn)
                .await?;
        }
        Ok(())
    }
}

/// The placeholders of one statement, handed out in the order the values are bound: `?` on
/// SQLite, `$1`, `$2`, .. on PostgreSQL. Statements with a few parameters are written with
/// `$n` for both databases; the long ones (multi-row `VALUES`, `IN` lists) are built with
/// this, because SQLite binds numbered parameters in time quadratic in their count (it looks
/// each name up in a list): 3× slower for a 500-row insert of events, measured.
pub(crate) struct Params {
    dialect: Dialect,
    count: usize,
}

impl Params {
    pub fn one(&mut self) -> String {
        self.count += 1;
        match self.dialect {
            Dialect::Sqlite => "?".to_string(),
            Dialect::Postgres => format!("${}", self.count),
        }
    }

    /// `count` placeholders separated by commas, for `IN (..)` or a row.
    pub fn list(&mut self, count: usize) -> String {
        (0..count)
            .map(|_| self.one())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `rows` parenthesized groups of `columns`, for a multi-row `VALUES`.
    pub fn rows(&mut self, rows: usize, columns: usize) -> String {
        (0..rows)
            .map(|_| format!("({})", self.list(columns)))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// A database's writer and readers. On PostgreSQL both are the same pool.
#[derive(Clone)]
pub(crate) struct Pools {
    pub write: AnyPool,
    pub read: AnyPool,
}

/// How often the background checkpointer copies a SQLite WAL back into its database file.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);

/// Settings of every connection to a SQLite file; the writer's and the readers' own follow in
/// [`sqlite_pools`]. There, `synchronous = FULL`: a committed transaction survives a crash of
/// the process or the machine. `mmap_size` ([`CacheSizes::mmap_mib`]): random reads through the
/// mapping instead of a syscall per page. `page_size` applies to new files only (it must come
/// before WAL is switched on): the pipeline's writes are mostly appends to B-trees, and 16 KiB
/// pages measured +10-15% on the pipeline and the audience recompute against 4 KiB (64 KiB was
/// no better).
const SQLITE_SETTINGS: &str = "PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;
    PRAGMA temp_store = MEMORY;";

/// The page caches of a SQLite file's connections (per connection, in MiB).
pub(crate) struct CacheSizes {
    /// The pipeline's commits revisit the same B-tree pages batch after batch; appends do not.
    pub writer_mib: u32,
    /// Readers read mostly through the memory map; the event log's read each event once.
    pub reader_mib: u32,
    /// The memory map, for random reads (identity lookups, profile loads); the event log is
    /// read in order and needs none (its mapped pages would only swell the process's RSS).
    pub mmap_mib: u32,
}

/// Opens a SQLite file (created if missing) with one writer connection and `readers` reader
/// connections, and starts its checkpointer, which stops once `alive` can no longer be
/// upgraded.
pub(crate) async fn sqlite_pools(
    path: &Path,
    cache: CacheSizes,
    readers: u32,
    alive: Weak<()>,
) -> Result<Pools> {
    sqlx::any::install_default_drivers();
    let url = |read_only: bool| -> Result<AnyConnectOptions> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(!read_only)
            .read_only(read_only);
        Ok(AnyConnectOptions::from_str(
            options.to_url_lossy().as_str(),
        )?)
    };
    let mmap = format!("PRAGMA mmap_size = {};", u64::from(cache.mmap_mib) << 20);
    // Checkpoints run on a connection of their own, not inside a commit; the writer
    // checkpoints only if the WAL grows past 128 MiB anyway (when readers kept the
    // background checkpoints from completing).
    let write = sqlite_pool(
        url(false)?,
        1,
        format!(
            "PRAGMA page_size = 16384; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
             PRAGMA wal_autocheckpoint = 8192; PRAGMA cache_size = -{}; {mmap}",
            cache.writer_mib * 1024
        ),
    )
    .await?;
    let checkpointer = sqlite_pool(url(false)?, 1, "PRAGMA cache_size = -2048;".into()).await?;
    let read = sqlite_pool(
        url(true)?,
        readers,
        format!("PRAGMA cache_size = -{}; {mmap}", cache.reader_mib * 1024),
    )
    .await?;
    spawn_checkpointer(checkpointer, alive);
    Ok(Pools { write, read })
}

async fn sqlite_pool(options: AnyConnectOptions, size: u32, settings: String) -> Result<AnyPool> {
    let settings = Arc::new(format!("{SQLITE_SETTINGS} {settings}"));
    Ok(AnyPoolOptions::new()
        .max_connections(size)
        .min_connections(1)
        .after_connect(move |conn, _| {
            let settings = settings.clone();
            Box::pin(async move {
                conn.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(
                    settings.as_str().to_owned(),
                )))
                .await?;
                Ok(())
            })
        })
        .connect_with(options)
        .await?)
}

/// Copies the WAL into the database file from a connection of its own, so a commit never waits
/// for a checkpoint's writes and fsync (with automatic checkpoints, the commit that crosses the
/// threshold runs it). A PASSIVE checkpoint never blocks readers or the writer.
fn spawn_checkpointer(pool: AnyPool, alive: Weak<()>) {
    spawn_periodic(CHECKPOINT_INTERVAL, alive, "WAL checkpoint", move || {
        let pool = pool.clone();
        async move {
            pool.execute("PRAGMA wal_checkpoint(PASSIVE)").await?;
            Ok(())
        }
    });
}

/// Runs `task` every `every` (a run that fails is logged and tried again at the next tick)
/// until `alive` can no longer be upgraded: the store's background maintenance.
fn spawn_periodic<F, Fut>(every: Duration, alive: Weak<()>, what: &'static str, task: F)
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<()>> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if alive.upgrade().is_none() {
                break;
            }
            if let Err(e) = task().await {
                tracing::warn!(error = %e, "{what} failed; retrying");
            }
        }
    });
}

/// One pool for everything on PostgreSQL: its server serializes what must be. Starts the
/// statistics keeper, which stops once `alive` can no longer be upgraded.
pub(crate) async fn postgres_pool(url: &str, alive: Weak<()>) -> Result<Pools> {
    sqlx::any::install_default_drivers();
    let pool = AnyPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(10))
        // Every execution planned for its own parameters: statements are prepared once per
        // connection (see `sql::statement_chunks`), and a generic plan made while the tables
        // were small scanned them once they were not (the pipeline 8x slower at 200,000
        // events, measured).
        .after_connect(|conn, _| {
            Box::pin(async move {
                conn.execute("SET plan_cache_mode = force_custom_plan")
                    .await?;
                Ok(())
            })
        })
        .connect_with(AnyConnectOptions::from_str(url)?)
        .await?;
    spawn_statistics_keeper(pool.clone(), alive);
    Ok(Pools {
        write: pool.clone(),
        read: pool,
    })
}

/// How often the statistics keeper looks for tables that outgrew their planner statistics.
const STATISTICS_INTERVAL: Duration = Duration::from_secs(1);

/// Our tables whose rows changed since their last `ANALYZE` by more than the table held then
/// (and by at least 1,000): they at least doubled, or were rewritten.
const OUTGROWN_STATISTICS: &str = "SELECT quote_ident(s.relname)::text
     FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
     WHERE s.schemaname = current_schema()
       AND s.n_mod_since_analyze > GREATEST(1000, c.reltuples)";

/// Keeps PostgreSQL's planner statistics up with tables that grow fast. Autovacuum analyzes a
/// table at most once a minute; a table that grew from a few thousand rows to 200,000 within
/// that minute (a first import, a burst of webhooks and the pipeline behind it) is planned as
/// the small table it was, and every keyed lookup of the pipeline (`account_id = $1 AND id IN
/// (...)`) became a scan of the account's rows: measured, the pipeline at 200,000 events ran
/// at 17,000 events/s instead of 36,000, slowing as the tables grew. Analyzing a table
/// whenever it doubled costs a logarithmic number of `ANALYZE`s (each samples 3,000
/// rows, see below). Several nodes may each run one; an extra `ANALYZE` is harmless.
fn spawn_statistics_keeper(pool: AnyPool, alive: Weak<()>) {
    spawn_periodic(
        STATISTICS_INTERVAL,
        alive,
        "refreshing planner statistics",
        move || {
            let pool = pool.clone();
            async move { analyze_outgrown_tables(&pool).await }
        },
    );
}

async fn analyze_outgrown_tables(pool: &AnyPool) -> Result<()> {
    let tables: Vec<String> = sqlx::query_scalar(OUTGROWN_STATISTICS)
        .fetch_all(pool)
        .await?;
    for table in tables {
        // The name comes from the catalog, quoted by `quote_ident`. A sample of 3,000 rows
        // (statistics target 10, a tenth of the default) is enough to plan keyed lookups by
        // the table's size, at a tenth of the cost; autovacuum's own analyze, with the
        // default target, follows at its pace.
        pool.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "BEGIN; SET LOCAL default_statistics_target = 10; ANALYZE {table}; COMMIT;"
        ))))
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_binding_order() {
        let mut pg = Dialect::Postgres.params();
        assert_eq!(
            (pg.one(), pg.rows(2, 2)),
            ("$1".into(), "($2, $3), ($4, $5)".into())
        );
        let mut lite = Dialect::Sqlite.params();
        assert_eq!((lite.one(), lite.list(2)), ("?".into(), "?, ?".into()));
    }
}
