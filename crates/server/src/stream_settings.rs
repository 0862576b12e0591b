//! Streams' settings as collection sees them: read from the store at most once a second per
//! account (a webhook costs no extra database read), dropped at once on this node when
//! changed through it (other nodes see a change within a second).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tributary_core::{AccountId, StreamSettings};

use crate::api::ApiError;

const TTL: Duration = Duration::from_secs(1);
const MAX_ACCOUNTS: usize = 10_000;

/// The streams of an account that have settings, by name.
type Settings = Arc<HashMap<String, StreamSettings>>;

#[derive(Default)]
pub struct StreamSettingsCache {
    entries: Mutex<HashMap<AccountId, (Settings, Instant)>>,
}

impl StreamSettingsCache {
    /// The stream's settings, `None` when it has none.
    pub async fn get(
        &self,
        store: &dyn tributary_store::Store,
        aid: AccountId,
        stream: &str,
    ) -> Result<Option<StreamSettings>, ApiError> {
        let cached = self.entries.lock().ok().and_then(|entries| {
            let (settings, at) = entries.get(&aid)?;
            (at.elapsed() < TTL).then(|| settings.clone())
        });
        let settings = match cached {
            Some(s) => s,
            None => {
                let loaded: Settings = Arc::new(
                    store
                        .streams(aid)
                        .await?
                        .into_iter()
                        .filter(|s| s.settings != StreamSettings::default())
                        .map(|s| (s.name, s.settings))
                        .collect(),
                );
                if let Ok(mut entries) = self.entries.lock() {
                    if entries.len() >= MAX_ACCOUNTS {
                        entries.clear();
                    }
                    entries.insert(aid, (loaded.clone(), Instant::now()));
                }
                loaded
            }
        };
        Ok(settings.get(stream).cloned())
    }

    /// Forgets the account's settings on this node (after a change).
    pub fn forget(&self, aid: AccountId) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&aid);
        }
    }
}
