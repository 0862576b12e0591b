//! Reading and mapping the events ahead of the resolver ([`ReadAhead`]).

use std::sync::Arc;

use tributary_core::{AccountId, StoredEvent};
use tributary_profile::{Mapped, Plans};
use tributary_store::Store;

use crate::scheduling::{Foreground, cpu_work};
use crate::{EngineError, in_parallel};

/// A batch of events after `after` (never empty), mapped with `plans`.
pub(crate) struct Fetched {
    pub after: i64,
    plans: Arc<Plans>,
    /// Kept to map again if the plans change before the batch is resolved.
    pub events: Vec<StoredEvent>,
    pub mapped: Vec<Mapped>,
}

/// Reads an account's events after a cursor, batch after batch, and maps them, ahead of the
/// resolver: a task of its own, at most two batches ahead, stopped when this is dropped. It
/// only reads (events are never changed while the pipeline holds its lock: erasure and
/// rebuild take it too).
pub(crate) struct ReadAhead {
    batches: tokio::sync::mpsc::Receiver<Result<Option<Fetched>, EngineError>>,
    plans: tokio::sync::watch::Sender<Arc<Plans>>,
    foreground: Arc<Foreground>,
    task: tokio::task::JoinHandle<()>,
}

impl ReadAhead {
    pub(crate) fn start(
        store: Arc<dyn Store>,
        foreground: Arc<Foreground>,
        aid: AccountId,
        mut after: i64,
        batch_size: u32,
        plans: Arc<Plans>,
    ) -> ReadAhead {
        let (tx, batches) = tokio::sync::mpsc::channel(1);
        let (plans, plans_rx) = tokio::sync::watch::channel(plans);
        let mapping = foreground.clone();
        let task = tokio::spawn(async move {
            loop {
                let read = async {
                    let events = store.events_after(aid, after, batch_size).await?;
                    if events.is_empty() {
                        return Ok(None);
                    }
                    let plans = plans_rx.borrow().clone();
                    let (events, mapped) = map_events(&mapping, events, plans.clone()).await?;
                    Ok(Some(Fetched {
                        after,
                        plans,
                        events,
                        mapped,
                    }))
                };
                let batch: Result<Option<Fetched>, EngineError> = read.await;
                let next = match &batch {
                    Ok(Some(f)) => f.events.last().map(|e| e.id),
                    _ => None,
                };
                if tx.send(batch).await.is_err() {
                    return;
                }
                match next {
                    Some(last) => after = last,
                    None => return,
                }
            }
        });
        ReadAhead {
            batches,
            plans,
            foreground,
            task,
        }
    }

    /// The next batch, mapped with `plans` (again, if it was read before they changed);
    /// `None` once there are no more events. Batches read from now on are mapped with `plans`.
    pub(crate) async fn next(
        &mut self,
        plans: &Arc<Plans>,
    ) -> Result<Option<Fetched>, EngineError> {
        self.plans.send_if_modified(|current| {
            let changed = !Arc::ptr_eq(current, plans);
            if changed {
                *current = plans.clone();
            }
            changed
        });
        let Some(mut batch) = self.batches.recv().await.transpose()?.flatten() else {
            return Ok(None);
        };
        if !Arc::ptr_eq(&batch.plans, plans) {
            let events = std::mem::take(&mut batch.events);
            (batch.events, batch.mapped) =
                map_events(&self.foreground, events, plans.clone()).await?;
            batch.plans = plans.clone();
        }
        Ok(Some(batch))
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Maps events (CPU work, over all cores).
async fn map_events(
    foreground: &Foreground,
    events: Vec<StoredEvent>,
    plans: Arc<Plans>,
) -> Result<(Vec<StoredEvent>, Vec<Mapped>), EngineError> {
    cpu_work(foreground, move || {
        let mapped = in_parallel(&events, |e| plans.map(e));
        (events, mapped)
    })
    .await
}

#[cfg(test)]
mod tests {
    use tributary_core::{Definition, DefinitionKind, IdentityKey, NewEvent, NewToken, Role};

    use super::*;

    fn plans(by: &str) -> Arc<Plans> {
        let text = format!("SELECT {by} FROM web INTO user BY {by} ALIAS web");
        Arc::new(Plans::compile(&[Definition {
            account_id: 1,
            kind: DefinitionKind::Query,
            name: "web".into(),
            text,
            created_at: 0,
            updated_at: 0,
        }]))
    }

    /// Batches come in order from the cursor; one read before the queries changed is mapped
    /// again with the new ones; the end of the log ends the reading.
    #[tokio::test]
    async fn batches_follow_the_cursor_and_the_current_plans() {
        let (store, _dir) = tributary_store::testing::sqlite_store().await;
        let admin = NewToken {
            account_id: None,
            name: "a".into(),
            description: String::new(),
            roles: vec![Role::Admin],
            hash: tributary_core::TokenSecret::generate().hash(),
            created_at: 0,
            expires_at: None,
        };
        store.bootstrap("Default", &admin, 0).await.unwrap();
        let events: Vec<NewEvent> = (0..5)
            .map(|i| NewEvent {
                account_id: 1,
                stream: "web".into(),
                received_at: i,
                event_time: i,
                payload: format!(r#"{{"uid":"u{i}","email":"e{i}@x.io"}}"#),
                dedup_key: None,
            })
            .collect();
        store.append_events(&events).await.unwrap();
        let first = store.events_after(1, 0, 1).await.unwrap()[0].id;

        let (by_uid, by_email) = (plans("uid"), plans("email"));
        let mut reader = ReadAhead::start(
            store.clone(),
            Foreground::new(),
            1,
            first,
            2,
            by_uid.clone(),
        );
        let batch = reader.next(&by_uid).await.unwrap().unwrap();
        assert_eq!((batch.after, batch.events.len()), (first, 2));
        assert_eq!(batch.mapped[0].keys, vec![IdentityKey::new("uid", "u1")]);
        // The queries change once the next batch was read ahead with the old ones: it is
        // mapped again.
        for _ in 0..1000 {
            if !reader.batches.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(
            !reader.batches.is_empty(),
            "the next batch was never read ahead"
        );
        let batch = reader.next(&by_email).await.unwrap().unwrap();
        assert_eq!((batch.after, batch.events.len()), (first + 2, 2));
        assert_eq!(
            batch.mapped[0].keys,
            vec![IdentityKey::new("email", "e3@x.io")]
        );
        assert!(reader.next(&by_email).await.unwrap().is_none());
    }
}
