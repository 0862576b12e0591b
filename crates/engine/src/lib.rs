//! The pipeline: raw events → LQL mapping → identity resolution → merged profiles.
//!
//! One [`Engine`] per process. Its worker takes, per account, the lease `pipeline:<aid>` (so
//! one node at a time works on an account's identity graph, and another takes over when a node
//! dies), reads the account's events after its cursor in batches, resolves them in memory
//! ([`resolve::Resolver`]) and commits each batch's profile changes together with the new
//! cursor. The commit is a compare-and-set on the cursor, so a batch is applied exactly once
//! even if two nodes race.
//!
//! Invariants:
//! - A batch costs a fixed number of store round trips (cursor, events, queries, blocklist,
//!   identity lookup, profile load, commit), whatever its size.
//! - Profiles are a pure function of the raw events and the mappings: any arrival order of the
//!   same events gives the same fields (`tests/order_independence.rs`).

pub mod audiences;
pub mod builtin;
pub mod membership;
mod pending;
mod read_ahead;
pub mod resolve;
mod scheduling;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Notify};
use tributary_core::{
    AccountId, DefinitionKind, IdentityKey, Micros, PipelineCommit, StoredProfile, to_micros,
};
use tributary_profile::{Plans, ProfileState};
use tributary_store::{Store, StoreError};

pub use audiences::{Audiences, Scope};
use pending::Pending;
use read_ahead::{Fetched, ReadAhead};
pub use resolve::Stats;
use scheduling::{Foreground, cpu_work, worker_runtime};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("corrupt profile state: {0}")]
    Corrupt(String),
    #[error("another node holds the pipeline for account {0}; retry shortly")]
    Busy(AccountId),
}

#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub batch_size: u32,
    /// Distinct values of one identity field a profile may hold.
    pub identity_cap: usize,
    pub lease_ttl: Duration,
    /// How often the worker looks for new events when nothing woke it.
    pub poll_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            batch_size: 5_000,
            identity_cap: 10,
            lease_ttl: Duration::from_secs(15),
            poll_interval: Duration::from_millis(250),
        }
    }
}

pub struct Engine {
    store: Arc<dyn Store>,
    config: EngineConfig,
    /// This process's name in leases.
    node: String,
    /// Wakes the worker (after a commit of new events).
    wake: Notify,
    /// When ingestion last woke it.
    foreground: Arc<Foreground>,
    /// Serialises pipeline work and erasures inside this process.
    pipeline: Mutex<()>,
    /// When this node last sampled each account's audience sizes (`sample_sizes`).
    sizes_sampled: std::sync::Mutex<std::collections::HashMap<AccountId, std::time::Instant>>,
}

async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let started = std::time::Instant::now();
    let out = f.await;
    (out, started.elapsed())
}

/// What a batch needs besides its events: the account's compiled LQL and audiences and its
/// identity blocklist. A catch-up reads it again once it is a second old, so definition
/// changes take effect within a second without a batch paying for reading and compiling them.
struct Setup {
    plans: Arc<Plans>,
    audiences: Audiences,
    blocklist: HashSet<String>,
    read_at: std::time::Instant,
}

const SETUP_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(1);

/// A batch resolved and ready to commit.
struct Resolved {
    stats: Stats,
    commit: PipelineCommit,
}

fn now_micros() -> Micros {
    to_micros(time::OffsetDateTime::now_utc())
}

/// How many of each stream's latest events [`Engine::recent_events_of`] looks through.
pub const RECENT_SCAN: u32 = 5_000;

fn lease_name(aid: AccountId) -> String {
    format!("pipeline:{aid}")
}

impl Engine {
    pub fn new(store: Arc<dyn Store>, config: EngineConfig) -> Arc<Engine> {
        let node = format!("node-{:016x}", rand::random::<u64>());
        Arc::new(Engine {
            store,
            config,
            node,
            wake: Notify::new(),
            foreground: Foreground::new(),
            pipeline: Mutex::new(()),
            sizes_sampled: Default::default(),
        })
    }

    /// Tells the worker there may be new events.
    pub fn wake(&self) {
        self.foreground.touch();
        self.wake.notify_one();
    }

    async fn lease(&self, aid: AccountId) -> Result<bool, StoreError> {
        let now = now_micros();
        let until = now + self.config.lease_ttl.as_micros() as Micros;
        self.store
            .try_lease(&lease_name(aid), &self.node, now, until)
            .await
    }

    /// Starts the worker on the pipeline's own runtime ([`worker_runtime`]), to run until
    /// `shutdown` resolves.
    pub fn spawn_worker(
        self: &Arc<Self>,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let worker = self.clone().run(shutdown);
        match worker_runtime() {
            Ok(runtime) => runtime.spawn(worker),
            Err(e) => {
                tracing::warn!(error = %e, "no runtime of its own for the pipeline; sharing the server's");
                tokio::spawn(worker)
            }
        }
    }

    /// Runs the worker until `shutdown` resolves.
    pub async fn run(self: Arc<Self>, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        // The name this node holds pipeline leases under (the `leases` table shows it).
        tracing::info!(node = %self.node, "pipeline worker started");
        loop {
            // Shutdown stops a pass midway, between two awaits: a long backlog does not hold
            // up a stop, and what a batch did not commit is done again by the next holder
            // of the lease (each commit is atomic and a compare-and-set on the cursor).
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                passed = self.catch_up_all() => {
                    if let Err(e) = passed {
                        tracing::error!(error = %e, "pipeline pass failed; retrying");
                    }
                }
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
        if let Ok(accounts) = self.store.account_ids().await {
            for aid in accounts {
                let _ = self.store.release_lease(&lease_name(aid), &self.node).await;
            }
        }
    }

    /// Processes every account this node can lease until each is caught up, then brings
    /// audience membership in step with changed definitions and with time, and samples the
    /// audiences' sizes for their day's record.
    pub async fn catch_up_all(&self) -> Result<Stats, EngineError> {
        let mut total = Stats::default();
        for aid in self.store.account_ids().await? {
            let s = self.catch_up(aid).await?;
            total.events += s.events;
            total.merges += s.merges;
            total.profiles_created += s.profiles_created;
            let recomputed = self.sync_audiences(aid).await?;
            while self.check_due(aid).await? >= membership::DUE_BATCH as usize {}
            self.sample_sizes(aid, recomputed).await?;
        }
        Ok(total)
    }

    /// Processes one account's backlog, if this node holds (or can take) its lease.
    ///
    /// Three stages overlap: a task reads and maps the events ahead ([`ReadAhead`]); while
    /// batch N commits (on the writer), batch N+1 is resolved (readers, blocking pool) against
    /// the store as N will leave it ([`Pending`]), and committed only once N has. So the
    /// commit, the heaviest stage and the one that cannot be split, runs back to back.
    pub async fn catch_up(&self, aid: AccountId) -> Result<Stats, EngineError> {
        let _guard = self.pipeline.lock().await;
        let mut total = Stats::default();
        // The lease is renewed once a third of its time has passed, not before every batch:
        // on SQLite a renewal is a synchronous commit of its own. (Holding it a little longer
        // between renewals is safe: each batch's commit is a compare-and-set on the cursor.)
        let mut renewed: Option<std::time::Instant> = None;
        let mut setup: Option<Arc<Setup>> = None;
        let mut reader: Option<ReadAhead> = None;
        let mut ahead: Option<Resolved> = None;
        loop {
            if renewed.is_none_or(|t| t.elapsed() >= self.config.lease_ttl / 3) {
                if !self.lease(aid).await? {
                    return Ok(total);
                }
                renewed = Some(std::time::Instant::now());
            }
            let current = match setup.take() {
                Some(s) if s.read_at.elapsed() < SETUP_MAX_AGE => s,
                _ => Arc::new(self.setup(aid).await?),
            };
            let setup = setup.insert(current);
            if setup.plans.is_empty() {
                // Nothing maps any stream: leave the events for when a query exists.
                return Ok(total);
            }
            let reader = match &mut reader {
                Some(r) => r,
                None => {
                    let cursor = self.store.pipeline_cursor(aid).await?;
                    reader.insert(ReadAhead::start(
                        self.store.clone(),
                        self.foreground.clone(),
                        aid,
                        cursor,
                        self.config.batch_size,
                        setup.plans.clone(),
                    ))
                }
            };
            let batch = match ahead.take() {
                Some(batch) => batch,
                None => match self.resolve(aid, setup, reader, None).await? {
                    Some(batch) => batch,
                    None => return Ok(total),
                },
            };
            let t = std::time::Instant::now();
            let ((committed, commit_ms), (next, ahead_ms)) = tokio::join!(
                timed(self.store.commit_pipeline(aid, &batch.commit)),
                timed(self.resolve(aid, setup, reader, Some(&batch.commit)))
            );
            tracing::debug!(
                aid,
                events = batch.stats.events,
                commit_ms = commit_ms.as_secs_f64() * 1e3,
                next_ms = ahead_ms.as_secs_f64() * 1e3,
                batch_ms = t.elapsed().as_secs_f64() * 1e3,
                "pipeline batch"
            );
            if !committed? {
                tracing::info!(aid, "pipeline batch skipped: another node moved the cursor");
                return Ok(total);
            }
            let (stats, commit) = (batch.stats, &batch.commit);
            metrics::counter!("tributary_pipeline_events_total").increment(stats.events);
            metrics::counter!("tributary_profile_merges_total").increment(stats.merges);
            metrics::counter!("tributary_identity_links_refused_total")
                .increment(stats.refused_links);
            // Proposed changes: the store does not log those the membership table already shows.
            metrics::counter!("tributary_membership_changes_total")
                .increment(commit.changes.len() as u64);
            total.events += stats.events;
            total.merges += stats.merges;
            total.profiles_created += stats.profiles_created;
            total.refused_links += stats.refused_links;
            match next? {
                Some(next) => ahead = Some(next),
                None => return Ok(total),
            }
        }
    }

    async fn setup(&self, aid: AccountId) -> Result<Setup, StoreError> {
        Ok(Setup {
            plans: Arc::new(self.plans(aid).await?),
            audiences: self
                .audiences(aid)
                .await?
                .with_stored_versions(&self.store.audience_versions(aid).await?),
            blocklist: self.blocklist(aid).await?,
            read_at: std::time::Instant::now(),
        })
    }

    async fn plans(&self, aid: AccountId) -> Result<Plans, StoreError> {
        Ok(Plans::compile(
            &self.store.definitions(aid, DefinitionKind::Query).await?,
        ))
    }

    async fn audiences(&self, aid: AccountId) -> Result<Audiences, StoreError> {
        Ok(Audiences::compile(
            &self.store.definitions(aid, DefinitionKind::Segment).await?,
        ))
    }

    async fn blocklist(&self, aid: AccountId) -> Result<HashSet<String>, StoreError> {
        Ok(self
            .store
            .identity_blocklist(aid)
            .await?
            .into_iter()
            .map(|v| v.trim().to_lowercase())
            .collect())
    }

    /// The reader's next batch, resolved and ready to commit; `None` when there are no more
    /// events. `pending` is the batch committing meanwhile, which this one must see.
    async fn resolve(
        &self,
        aid: AccountId,
        setup: &Arc<Setup>,
        reader: &mut ReadAhead,
        pending: Option<&PipelineCommit>,
    ) -> Result<Option<Resolved>, EngineError> {
        let Some(Fetched {
            after: cursor,
            events,
            mapped,
            ..
        }) = reader.next(&setup.plans).await?
        else {
            return Ok(None);
        };
        let Some(last) = events.last().map(|e| e.id) else {
            return Ok(None);
        };
        if let Some(p) = pending
            && p.new_cursor != cursor
        {
            return Err(EngineError::Corrupt(format!(
                "read ahead from event {cursor}, but the batch committing ends at {}",
                p.new_cursor
            )));
        }
        let mut keys: Vec<IdentityKey> =
            mapped.iter().flat_map(|m| m.keys.iter().cloned()).collect();
        keys.sort();
        keys.dedup();
        let pending = pending.map(Pending::new);
        let mut index = self.store.lookup_identities(aid, &keys).await?;
        if let Some(p) = &pending {
            p.update_index(&keys, &mut index);
        }
        let mut ids: Vec<i64> = index.iter().map(|(_, id)| *id).collect();
        ids.sort_unstable();
        ids.dedup();
        let loaded = match &pending {
            Some(p) => {
                let (theirs, to_read) = p.profiles(&ids);
                let mut loaded = self.store.load_profiles(aid, &to_read).await?;
                loaded.extend(theirs);
                loaded
            }
            None => self.store.load_profiles(aid, &ids).await?,
        };
        let setup = setup.clone();
        let cap = self.config.identity_cap;
        let (stats, mut commit) = cpu_work(&self.foreground, move || {
            let now = now_micros();
            let mut resolver = resolve::Resolver::new(
                &setup.plans,
                &setup.audiences,
                &setup.blocklist,
                cap,
                index,
                loaded,
            )?;
            for m in mapped {
                resolver.apply(m, now);
            }
            let stats = resolver.stats;
            Ok::<_, String>((stats, resolver.finish(cursor, last, now)))
        })
        .await?
        .map_err(EngineError::Corrupt)?;
        for p in &mut commit.profiles {
            p.account_id = aid;
        }
        Ok(Some(Resolved {
            stats: Stats {
                events: events.len() as u64,
                ..stats
            },
            commit,
        }))
    }

    /// Rebuilds every profile of the account from its raw events (after a mapping change).
    /// Serving continues; profiles fill back in as the worker catches up.
    pub async fn rebuild(&self, aid: AccountId) -> Result<(), EngineError> {
        let _guard = self.pipeline.lock().await;
        self.take_lease(aid).await?;
        self.store.reset_profiles(aid).await?;
        tracing::info!(aid, "profiles reset for rebuild");
        drop(_guard);
        self.wake();
        Ok(())
    }

    /// Waits (briefly) for this node to hold the account's lease.
    async fn take_lease(&self, aid: AccountId) -> Result<(), EngineError> {
        for _ in 0..40 {
            if self.lease(aid).await? {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(EngineError::Busy(aid))
    }

    /// The profile an identity value belongs to.
    pub async fn find_profile(
        &self,
        aid: AccountId,
        key: &IdentityKey,
    ) -> Result<Option<StoredProfile>, StoreError> {
        let id = if key.field == "_id" {
            key.value.parse::<i64>().ok()
        } else {
            let mut found = self
                .store
                .lookup_identities(aid, std::slice::from_ref(key))
                .await?;
            if found.is_empty() && key.value.chars().any(char::is_uppercase) {
                found = self
                    .store
                    .lookup_identities(
                        aid,
                        &[IdentityKey::new(&key.field, key.value.to_lowercase())],
                    )
                    .await?;
            }
            found.first().map(|(_, id)| *id)
        };
        match id {
            Some(id) => Ok(self.store.load_profiles(aid, &[id]).await?.pop()),
            None => Ok(None),
        }
    }

    /// Erases a person: the profile, its identities and every raw event that carries one of
    /// them. A later event with the same identity starts a new profile.
    pub async fn erase(&self, aid: AccountId, profile: &StoredProfile) -> Result<u64, EngineError> {
        let _guard = self.pipeline.lock().await;
        self.take_lease(aid).await?;
        let person = self.person_keys(aid, profile).await?;
        let plans = self.plans(aid).await?;
        let mut doomed = Vec::new();
        let mut after = 0;
        loop {
            let events = self.store.events_after(aid, after, 10_000).await?;
            let Some(last) = events.last().map(|e| e.id) else {
                break;
            };
            for e in &events {
                if plans
                    .map(e)
                    .is_some_and(|m| m.keys.iter().any(|k| person.contains(k)))
                {
                    doomed.push(e.id);
                }
            }
            after = last;
        }
        self.store
            .erase_profile(aid, profile.id, &doomed, now_micros())
            .await?;
        tracing::info!(
            aid,
            profile = profile.id,
            events = doomed.len(),
            "person erased"
        );
        Ok(doomed.len() as u64)
    }

    /// Every identity value of a person: the stored identities and those in its state.
    async fn person_keys(
        &self,
        aid: AccountId,
        profile: &StoredProfile,
    ) -> Result<HashSet<IdentityKey>, EngineError> {
        let state = ProfileState::from_json(&profile.state)
            .map_err(|e| EngineError::Corrupt(format!("profile {}: {e}", profile.id)))?;
        let mut person: HashSet<IdentityKey> = self
            .store
            .profile_identities(aid, profile.id)
            .await?
            .into_iter()
            .collect();
        for (field, values) in &state.identities {
            person.extend(values.iter().map(|v| IdentityKey::new(field, v)));
        }
        Ok(person)
    }

    /// A person's recent raw events, newest first, at most `limit`: those among the latest
    /// [`RECENT_SCAN`] events of each stream that carry one of its identities. Bounded, so a
    /// profile page costs the same however large the log; older events are not looked for
    /// (an erasure looks through all of them).
    pub async fn recent_events_of(
        &self,
        aid: AccountId,
        profile: &StoredProfile,
        limit: usize,
    ) -> Result<Vec<tributary_core::StoredEvent>, EngineError> {
        let person = self.person_keys(aid, profile).await?;
        let plans = self.plans(aid).await?;
        let mut found = Vec::new();
        for stream in self.store.streams(aid).await? {
            for e in self
                .store
                .recent_events(aid, &stream.name, RECENT_SCAN)
                .await?
            {
                if plans
                    .map(&e)
                    .is_some_and(|m| m.keys.iter().any(|k| person.contains(k)))
                {
                    found.push(e);
                }
            }
        }
        found.sort_by_key(|e| std::cmp::Reverse(e.id));
        found.truncate(limit);
        Ok(found)
    }

    /// The field specs of the account's current mappings.
    pub async fn account_plans(&self, aid: AccountId) -> Result<Plans, StoreError> {
        self.plans(aid).await
    }
}

/// Pure CPU work per item (mapping events, evaluating audiences): split over the machine's
/// cores, keeping the order.
fn in_parallel<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> Option<R> + Sync) -> Vec<R> {
    let mut refs: Vec<&T> = items.iter().collect();
    in_parallel_mut(&mut refs, |t| f(t))
}

/// [`in_parallel`] for work that updates each item in place.
fn in_parallel_mut<T: Send, R: Send>(
    items: &mut [T],
    f: impl Fn(&mut T) -> Option<R> + Sync,
) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if threads < 2 || items.len() < 512 {
        return items.iter_mut().filter_map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|scope| {
        let handles: Vec<_> = items
            .chunks_mut(chunk)
            .map(|part| scope.spawn(move || part.iter_mut().filter_map(f).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| match h.join() {
                Ok(part) => part,
                // Never skip work silently: a panic here is a bug and must surface.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}
