//! SQLite only: commits never run WAL checkpoints themselves (below a large safety threshold);
//! a background connection copies the WAL into the database file, and stops with the store.

use std::time::{Duration, Instant};

use tributary_core::NewEvent;
use tributary_store::{EventLog, SqlStore};

fn events(n: usize) -> Vec<NewEvent> {
    (0..n)
        .map(|i| NewEvent {
            account_id: 1,
            stream: "s".into(),
            received_at: i as i64,
            event_time: i as i64,
            payload: format!(r#"{{"n":{i},"pad":"{}"}}"#, "x".repeat(200)),
            dedup_key: None,
        })
        .collect()
}

#[tokio::test]
async fn the_wal_is_checkpointed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tributary.db");
    let store = SqlStore::sqlite(&path).await.unwrap();
    // Events are appended to the event log, the file beside the database.
    let log = dir.path().join("events.db");
    let size = || std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let before = size();
    // About 2.5 MB: far below the writer's own checkpoint threshold (128 MiB of WAL).
    store.append_events(&events(10_000)).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while size() < before + 2_000_000 {
        assert!(
            Instant::now() < deadline,
            "the database file never received the WAL's pages ({} -> {} bytes)",
            before,
            size()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(store);
    // Reopening sees everything (the checkpointer of the dropped store is gone).
    let again = SqlStore::sqlite(&path).await.unwrap();
    assert_eq!(again.recent_events(1, "s", 5).await.unwrap().len(), 5);
}
