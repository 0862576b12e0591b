//! Embedded schema migrations, applied at start-up. A small runner of our own rather than
//! `sqlx::migrate!`, which would pull sqlx's macro crates (and a second build of both drivers).
//! Migrations are append-only: never edit one that has shipped; add the next number.
//!
//! Two upgrades need code, not just SQL, and run at open after the scripts:
//! `memberships` (schema 6 → 7: a row per member becomes bitmaps) and `event_log` (schema
//! 8 → 9 on SQLite: the raw events move to their own file).

pub(crate) mod event_log;
pub(crate) mod memberships;

use sqlx::{Executor, Row};

use crate::{Result, StoreError};

pub(crate) struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// The scripts of one dialect's folder, `$dialect/$file` for each (version, name, file).
macro_rules! migrations {
    ($dialect:literal: $($version:literal $name:literal $file:literal),* $(,)?) => {
        &[$(Migration {
            version: $version,
            name: $name,
            sql: include_str!(concat!("../../migrations/", $dialect, "/", $file)),
        }),*]
    };
}

/// Both databases' lists, from one table: they have the same versions and names, and only the
/// SQL dialect of the scripts differs.
macro_rules! both_dialects {
    ($($version:literal $name:literal $file:literal),* $(,)?) => {
        pub(crate) const SQLITE: &[Migration] = migrations!("sqlite": $($version $name $file),*);
        pub(crate) const POSTGRES: &[Migration] =
            migrations!("postgres": $($version $name $file),*);
    };
}

both_dialects!(
    1 "foundation" "0001_foundation.sql",
    2 "definitions" "0002_definitions.sql",
    3 "profiles" "0003_profiles.sql",
    4 "compact_profiles" "0004_compact_profiles.sql",
    5 "audiences" "0005_audiences.sql",
    6 "jobs" "0006_jobs.sql",
    7 "membership_chunks" "0007_membership_chunks.sql",
    8 "export_identifiers" "0008_export_identifiers.sql",
    9 "event_log" "0009_event_log.sql",
    10 "import_files" "0010_import_files.sql",
    11 "stream_settings" "0011_stream_settings.sql",
    12 "import_row_hashes" "0012_import_row_hashes.sql",
    13 "console_sessions" "0013_console_sessions.sql",
    14 "history" "0014_history.sql",
);

/// The event log's own file on SQLite (`events.db`); on PostgreSQL the log's tables are in
/// the one database, made by the list above.
pub(crate) const SQLITE_EVENT_LOG: &[Migration] = migrations!("sqlite-events":
    1 "event_log" "0001_event_log.sql",
    2 "import_files" "0002_import_files.sql",
    3 "stream_settings" "0003_stream_settings.sql",
    4 "import_row_hashes" "0004_import_row_hashes.sql",
    5 "stream_minutes" "0005_stream_minutes.sql",
);

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)";

/// Applies pending migrations on one connection. The caller holds whatever lock keeps other
/// processes out (SQLite: the single writer; PostgreSQL: an advisory lock).
pub(crate) async fn run(
    conn: &mut sqlx::AnyConnection,
    migrations: &[Migration],
    where_: &str,
) -> Result<()> {
    conn.execute(sqlx::raw_sql(CREATE_TABLE)).await?;
    let row = conn
        .fetch_one(sqlx::raw_sql(
            "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_migrations",
        ))
        .await?;
    let current: i64 = row.try_get(0)?;
    let newest = migrations.last().map_or(0, |m| m.version);
    if current > newest {
        return Err(StoreError::TooNew(where_.to_string(), current));
    }
    let now = tributary_core::to_micros(time::OffsetDateTime::now_utc());
    for m in migrations.iter().filter(|m| m.version > current) {
        let insert = format!(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES ({}, '{}', {now})",
            m.version, m.name
        );
        let script = format!("BEGIN;\n{}\n;{insert};\nCOMMIT;", m.sql);
        if let Err(source) = conn
            .execute(sqlx::raw_sql(sqlx::AssertSqlSafe(script)))
            .await
        {
            // A failed statement leaves the transaction open on some backends.
            let _ = conn.execute(sqlx::raw_sql("ROLLBACK")).await;
            return Err(StoreError::Migration {
                version: m.version,
                name: m.name,
                source,
            });
        }
        tracing::info!(
            version = m.version,
            name = m.name,
            "applied schema migration"
        );
    }
    Ok(())
}
