//! PostgreSQL only: a table that outgrows its planner statistics is analyzed within seconds,
//! not at autovacuum's next visit (a minute or more), so keyed lookups stay index probes.

use std::time::{Duration, Instant};

use tributary_core::NewEvent;
use tributary_store::testing::pg_cluster;
use tributary_store::{EventLog, SqlStore};

#[tokio::test]
async fn a_table_that_doubled_is_analyzed_in_seconds() {
    // Without PostgreSQL this skips, unless TRIBUTARY_TEST_REQUIRE_PG=1 makes it fail.
    let Some(cluster) = pg_cluster() else { return };
    let url = cluster.fresh_database().await;
    let store = SqlStore::postgres(&url).await.unwrap();
    let events: Vec<NewEvent> = (0..5_000)
        .map(|i| NewEvent {
            account_id: 1,
            stream: "s".into(),
            received_at: i,
            event_time: i,
            payload: format!(r#"{{"n":{i}}}"#),
            dedup_key: None,
        })
        .collect();
    store.append_events(&events).await.unwrap();
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    // `last_analyze` is set by an explicit ANALYZE only (autovacuum sets `last_autoanalyze`).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (analyzed, rows): (bool, f32) = sqlx::query_as(
            "SELECT s.last_analyze IS NOT NULL, c.reltuples
             FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
             WHERE s.relname = 'events' AND s.schemaname = current_schema()",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if analyzed && rows >= 4_000.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "events were never analyzed (analyzed: {analyzed}, planner rows: {rows})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A table below the threshold (1,000 changed rows) is left to autovacuum.
    let (merges_analyzed,): (bool,) = sqlx::query_as(
        "SELECT last_analyze IS NOT NULL FROM pg_stat_user_tables
         WHERE relname = 'merges' AND schemaname = current_schema()",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert!(!merges_analyzed);
}
