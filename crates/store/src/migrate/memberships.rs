//! Schema 6 → 7: the members and log of schema 5 (a row per member and per entry, renamed
//! `*_v1` by migration 7) move into bitmap chunks (see `membership.rs`), then the old tables
//! are dropped. Runs at open, in one transaction: a crash midway leaves the old tables, and
//! the next open starts again.

use roaring::RoaringBitmap;
use sqlx::{AnyConnection, Connection, Row};

use crate::Result;
use crate::dialect::Dialect;
use crate::membership::{self, LogRow};
use crate::sql::audiences::{insert_log_row, write_chunk};

/// Rows read per query.
const PAGE: i64 = 50_000;

pub(crate) async fn convert(conn: &mut AnyConnection, dialect: Dialect) -> Result<()> {
    let present: i64 = sqlx::query_scalar(dialect.count_tables())
        .bind("memberships_v1")
        .fetch_one(&mut *conn)
        .await?;
    if present == 0 {
        return Ok(());
    }
    let mut tx = conn.begin().await?;
    let members = convert_members(&mut tx).await?;
    let entries = convert_log(&mut tx).await?;
    sqlx::query("DROP TABLE memberships_v1")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DROP TABLE membership_log_v1")
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    tracing::info!(
        members,
        entries,
        "memberships and their log moved to chunks"
    );
    Ok(())
}

async fn convert_members(conn: &mut AnyConnection) -> Result<u64> {
    let mut members = 0u64;
    let mut after = (i64::MIN, String::new(), i64::MIN);
    let mut open: Option<((i64, String, i64), RoaringBitmap)> = None;
    loop {
        let rows = sqlx::query(
            "SELECT account_id, segment, profile_id FROM memberships_v1
             WHERE (account_id, segment, profile_id) > ($1, $2, $3)
             ORDER BY account_id, segment, profile_id LIMIT $4",
        )
        .bind(after.0)
        .bind(after.1.as_str())
        .bind(after.2)
        .bind(PAGE)
        .fetch_all(&mut *conn)
        .await?;
        let done = (rows.len() as i64) < PAGE;
        for r in rows {
            let (aid, segment, id): (i64, String, i64) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            let (chunk, low) = membership::split(id);
            let key = (aid, segment.clone(), chunk);
            if open.as_ref().is_some_and(|(k, _)| *k != key)
                && let Some(((a, s, c), bits)) = open.take()
            {
                write_chunk(conn, a, &s, c, &bits).await?;
            }
            open.get_or_insert_with(|| (key, RoaringBitmap::new()))
                .1
                .insert(low);
            members += 1;
            after = (aid, segment, id);
        }
        if done {
            break;
        }
    }
    if let Some(((a, s, c), bits)) = open.take() {
        write_chunk(conn, a, &s, c, &bits).await?;
    }
    Ok(members)
}

async fn convert_log(conn: &mut AnyConnection) -> Result<u64> {
    let mut entries = 0u64;
    let mut after = (i64::MIN, i64::MIN);
    loop {
        let rows = sqlx::query(
            "SELECT account_id, seq, segment, profile_id, CAST(entered AS INTEGER), at
             FROM membership_log_v1
             WHERE (account_id, seq) > ($1, $2) ORDER BY account_id, seq LIMIT $3",
        )
        .bind(after.0)
        .bind(after.1)
        .bind(PAGE)
        .fetch_all(&mut *conn)
        .await?;
        let done = (rows.len() as i64) < PAGE;
        for r in rows {
            let (aid, seq, id): (i64, i64, i64) = (r.try_get(0)?, r.try_get(1)?, r.try_get(3)?);
            let (chunk, low) = membership::split(id);
            let row = LogRow {
                segment: r.try_get(2)?,
                chunk,
                entered: r.try_get::<i64, _>(4)? != 0,
                bits: std::iter::once(low).collect(),
            };
            insert_log_row(conn, aid, seq, &row, r.try_get(5)?).await?;
            entries += 1;
            after = (aid, seq);
        }
        if done {
            break;
        }
    }
    Ok(entries)
}
