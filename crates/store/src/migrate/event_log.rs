//! Schema 8 → 9 on SQLite: the raw events and stream counters move from `tributary.db` to the
//! event log's own file (`events.db`), so that event appends have a writer of their own.
//!
//! Crash-safe in two steps. First, in one transaction of the event log, the rows are copied
//! (ids and the AUTOINCREMENT counter included, so no id is ever given twice) and a row in
//! `moved_from_state` records it; then, in one transaction of the state database, the old
//! tables are dropped. A crash before the first commit leaves everything as it was; a crash
//! between the two leaves old tables that the next open drops without copying again.

use std::path::Path;

use sqlx::{AnyConnection, Connection};

use crate::Result;
use crate::dialect::Dialect;

pub(crate) async fn move_out_of_state(
    state: &mut AnyConnection,
    state_path: &Path,
    log: &mut AnyConnection,
) -> Result<()> {
    let present: i64 = sqlx::query_scalar(Dialect::Sqlite.count_tables())
        .bind("events")
        .fetch_one(&mut *state)
        .await?;
    if present == 0 {
        return Ok(());
    }
    let moved: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM moved_from_state")
        .fetch_one(&mut *log)
        .await?;
    if moved == 0 {
        sqlx::query("ATTACH DATABASE $1 AS old_state")
            .bind(state_path.to_string_lossy().into_owned())
            .execute(&mut *log)
            .await?;
        let copied = copy(log).await;
        sqlx::query("DETACH DATABASE old_state")
            .execute(&mut *log)
            .await?;
        let events = copied?;
        tracing::info!(
            events,
            "the raw event log moved to its own file, beside the database"
        );
    }
    let mut tx = state.begin().await?;
    sqlx::query("DROP TABLE events").execute(&mut *tx).await?;
    sqlx::query("DROP TABLE streams").execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Copies events, counters and the id counter from `old_state`; returns the events copied.
async fn copy(log: &mut AnyConnection) -> Result<u64> {
    let mut tx = log.begin().await?;
    let events = sqlx::query(
        "INSERT INTO events (id, account_id, stream, received_at, event_time, payload)
         SELECT id, account_id, stream, received_at, event_time, payload
         FROM old_state.events ORDER BY id",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    sqlx::query(
        "INSERT INTO streams (account_id, name, event_count, last_received)
         SELECT account_id, name, event_count, last_received FROM old_state.streams",
    )
    .execute(&mut *tx)
    .await?;
    // Ids past the last one stored may have been given to events since erased: go on from
    // the old counter, not from the largest id copied.
    sqlx::query("DELETE FROM sqlite_sequence WHERE name = 'events'")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO sqlite_sequence (name, seq)
         SELECT name, seq FROM old_state.sqlite_sequence WHERE name = 'events'",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO moved_from_state (moved_at) VALUES ($1)")
        .bind(tributary_core::to_micros(time::OffsetDateTime::now_utc()))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(events)
}
