//! Upgrading a SQLite data dir of schema 8 (raw events inside `tributary.db`) to the layout
//! where the event log has its own file (`events.db`). The fixture was written by Tributary at
//! schema 8 through its HTTP API: five events in two streams (`braze_users`, `web`), a
//! sixth one erased (so the id counter is past the largest id stored), three profiles, the
//! audience `oslo` with profiles 1 and 3, the pipeline's cursor at 6.

use std::io::Read;
use std::path::Path;

use sqlx::ConnectOptions;
use tributary_core::NewEvent;
use tributary_store::{AudienceStore, EventLog, ProfileStore, SqlStore};

fn unpack_fixture(into: &Path) {
    let gz = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/schema8-tributary.db.gz"
    ))
    .unwrap();
    let mut db = Vec::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_end(&mut db)
        .unwrap();
    std::fs::write(into, db).unwrap();
}

async fn tables(path: &Path) -> Vec<String> {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .connect()
        .await
        .unwrap();
    sqlx::query_scalar("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

async fn check_moved(store: &SqlStore) {
    let streams: Vec<(String, i64)> = store
        .streams(1)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.count))
        .collect();
    assert_eq!(streams, vec![("braze_users".into(), 3), ("web".into(), 2)]);
    let ids: Vec<i64> = store
        .events_after(1, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(ids, vec![1, 2, 3, 4, 5]);
    let newest = &store.recent_events(1, "braze_users", 1).await.unwrap()[0];
    assert_eq!(newest.payload_json()["first_name"], "Cy");
    assert_eq!(store.pipeline_cursor(1).await.unwrap(), 6);
    assert!(store.pipeline_lag(1).await.unwrap().is_empty());
    assert_eq!(store.scan_profiles(1, 0, 100).await.unwrap().len(), 3);
    assert_eq!(
        store.audience_members(1, "oslo", 0, 10).await.unwrap(),
        vec![1, 3]
    );
}

#[tokio::test]
async fn a_schema_8_data_dir_moves_its_events_to_their_own_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tributary.db");
    unpack_fixture(&path);
    let store = SqlStore::sqlite(&path).await.unwrap();
    check_moved(&store).await;
    assert!(!tables(&path).await.contains(&"events".to_string()));
    assert!(
        tables(&dir.path().join("events.db"))
            .await
            .contains(&"events".to_string())
    );

    // The id counter went on from where it was (6 was given to an event since erased), so
    // the pipeline's cursor never skips a new event.
    let new = NewEvent {
        account_id: 1,
        stream: "web".into(),
        received_at: 1,
        event_time: 1,
        payload: "{}".into(),
        dedup_key: None,
    };
    store.append_events(&[new]).await.unwrap();
    assert_eq!(store.events_after(1, 6, 10).await.unwrap()[0].id, 7);
    assert_eq!(
        store.pipeline_lag(1).await.unwrap(),
        vec![("web".to_string(), 1)]
    );
    drop(store);

    // Opening again changes nothing.
    let store = SqlStore::sqlite(&path).await.unwrap();
    assert_eq!(store.events_after(1, 0, 100).await.unwrap().len(), 6);
}

/// A crash after the copy committed and before the old tables were dropped: the next open
/// drops them without copying again.
#[tokio::test]
async fn an_upgrade_interrupted_after_the_copy_does_not_copy_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tributary.db");
    unpack_fixture(&path);
    let copy = dir.path().join("before.db");
    std::fs::copy(&path, &copy).unwrap();
    drop(SqlStore::sqlite(&path).await.unwrap());
    // Put schema 8's event tables back, as if the drop had not happened.
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .connect()
        .await
        .unwrap();
    sqlx::query("ATTACH DATABASE $1 AS before")
        .bind(copy.to_string_lossy().into_owned())
        .execute(&mut conn)
        .await
        .unwrap();
    sqlx::raw_sql(
        "CREATE TABLE events AS SELECT * FROM before.events;
         CREATE TABLE streams AS SELECT * FROM before.streams;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    drop(conn);
    let store = SqlStore::sqlite(&path).await.unwrap();
    check_moved(&store).await;
    assert!(!tables(&path).await.contains(&"events".to_string()));
}
