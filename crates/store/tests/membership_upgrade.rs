//! Upgrading a database from schema 6 (a row per member and per log entry) to the chunked
//! membership of schema 7: the members and the log survive, positions included, on both
//! backends. The test takes a fresh database back to schema 6's tables, fills them, and
//! opens the store again.

use tributary_core::MembershipChange;
use tributary_store::testing::pg_cluster;
use tributary_store::{SqlStore, Store};

/// Schema 6's membership tables (and none of the later ones), as migration 5 made them (`boolean` is the type of the
/// log's `entered`: `BOOLEAN` on PostgreSQL, `INTEGER` on SQLite), with some rows.
fn schema_6(boolean: &str) -> String {
    format!(
        "DROP TABLE membership_chunks;
         DROP TABLE membership_log;
         DROP TABLE export_identifiers;
         DROP TABLE erasures;
         DROP TABLE IF EXISTS import_files;
         DROP TABLE console_sessions;
         DROP TABLE job_minutes;
         DROP TABLE audience_days;
         {later}
         DELETE FROM schema_migrations WHERE version >= 7;
         CREATE TABLE memberships (account_id BIGINT NOT NULL, segment TEXT NOT NULL,
             profile_id BIGINT NOT NULL, since BIGINT NOT NULL,
             PRIMARY KEY (account_id, segment, profile_id));
         CREATE TABLE membership_log (account_id BIGINT NOT NULL, seq BIGINT NOT NULL,
             segment TEXT NOT NULL, profile_id BIGINT NOT NULL, entered {boolean} NOT NULL,
             at BIGINT NOT NULL, PRIMARY KEY (account_id, seq));
         {index}
         INSERT INTO memberships VALUES (1, 'vip', 3, 0), (1, 'vip', 70000, 0), (1, 'all', 3, 0),
             (2, 'vip', 9, 0);
         INSERT INTO membership_log VALUES (1, 1, 'vip', 3, {t}, 100), (1, 2, 'all', 3, {t}, 100),
             (1, 3, 'vip', 8, {t}, 100), (1, 4, 'vip', 8, {f}, 200), (1, 5, 'vip', 70000, {t}, 300),
             (2, 1, 'vip', 9, {t}, 100);
         INSERT INTO membership_seq VALUES (1, 5), (2, 1);",
        // Only PostgreSQL's migration 5 indexed the log by audience.
        index = if boolean == "BOOLEAN" {
            "CREATE INDEX membership_log_by_segment ON membership_log (account_id, segment, seq);"
        } else {
            ""
        },
        // Migration 11 on PostgreSQL (on SQLite it changed the event log's own file).
        later = if boolean == "BOOLEAN" {
            "DROP TABLE event_keys; ALTER TABLE streams DROP COLUMN settings;\n             DROP TABLE import_row_hashes;\n             DROP TABLE stream_minutes;"
        } else {
            ""
        },
        t = if boolean == "BOOLEAN" { "true" } else { "1" },
        f = if boolean == "BOOLEAN" { "false" } else { "0" },
    )
}

async fn check_upgraded(store: &dyn Store) {
    assert_eq!(
        store.audience_members(1, "vip", 0, 10).await.unwrap(),
        vec![3, 70000]
    );
    assert_eq!(store.audience_size(1, "all").await.unwrap(), 1);
    assert_eq!(
        store.audience_members(2, "vip", 0, 10).await.unwrap(),
        vec![9]
    );
    let log: Vec<(i64, String, i64, bool, i64)> = store
        .membership_log(1, None, 1, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.segment, e.profile_id, e.entered, e.at))
        .collect();
    assert_eq!(
        log,
        vec![
            (2, "all".into(), 3, true, 100),
            (3, "vip".into(), 8, true, 100),
            (4, "vip".into(), 8, false, 200),
            (5, "vip".into(), 70000, true, 300),
        ]
    );
    // New changes continue the old sequence.
    let commit = tributary_core::PipelineCommit {
        changes: vec![MembershipChange::exit("vip", 3)],
        at: 400,
        ..Default::default()
    };
    assert!(store.commit_pipeline(1, &commit).await.unwrap());
    let next = store.membership_log(1, Some("vip"), 5, 10).await.unwrap();
    assert_eq!(
        (next[0].seq, next[0].profile_id, next[0].entered),
        (6, 3, false)
    );
}

#[tokio::test]
async fn sqlite_memberships_survive_the_upgrade() {
    use sqlx::ConnectOptions;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tributary.db");
    drop(SqlStore::sqlite(&path).await.unwrap());
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(schema_6("INTEGER")))
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let store = SqlStore::sqlite(&path).await.unwrap();
    check_upgraded(&store).await;
}

#[tokio::test]
async fn postgres_memberships_survive_the_upgrade() {
    // Without PostgreSQL this skips, unless TRIBUTARY_TEST_REQUIRE_PG=1 makes it fail.
    let Some(cluster) = pg_cluster() else { return };
    let url = cluster.fresh_database().await;
    drop(SqlStore::postgres(&url).await.unwrap());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(schema_6("BOOLEAN")))
        .execute(&mut conn)
        .await
        .unwrap();
    drop(conn);
    let store = SqlStore::postgres(&url).await.unwrap();
    check_upgraded(&store).await;
}
