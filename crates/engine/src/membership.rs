//! Keeping stored membership in step with the audiences' definitions and with time:
//! recomputing an audience that was created or changed, dropping one that was deleted, and
//! re-evaluating date-relative audiences for profiles whose `next_check` came.
//!
//! Both run on the node holding the account's pipeline lease, between pipeline batches and
//! under the same lock, one page of profiles at a time, so a page's read-evaluate-commit never
//! interleaves with a batch that changes the same profiles.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use tributary_core::{
    AccountId, AudienceVersion, DefinitionKind, MembershipChange, Micros, PipelineCommit,
    StoredProfile, from_micros,
};

use tributary_profile::{Plans, ProfileView};

use crate::audiences::{Audiences, Scope};
use crate::resolve::Entry;
use crate::scheduling::{Foreground, cpu_work};
use crate::{Engine, EngineError, in_parallel, now_micros};

/// Profiles per recompute page: one store round trip and one commit each.
const PAGE: u32 = 5_000;
/// How long a turn of a recompute reads pages before the pipeline may run again (the pages
/// read by then are still evaluated and committed within the turn).
const RUN_READING: std::time::Duration = std::time::Duration::from_millis(750);
/// Due profiles handled per pass.
pub(crate) const DUE_BATCH: u32 = 2_000;

/// One profile evaluated again.
struct Outcome {
    id: i64,
    /// The row, when it must be rewritten.
    row: Option<StoredProfile>,
    /// The new next check, when only that is written.
    next_check: Option<Option<Micros>>,
    /// Entries and exits against the profile's own record of its audiences.
    changes: Vec<MembershipChange>,
    segments: BTreeSet<String>,
}

impl Engine {
    /// Recomputes audiences whose definition changed since their membership was computed, and
    /// drops the membership of deleted ones. Returns whether anything was done.
    pub async fn sync_audiences(&self, aid: AccountId) -> Result<bool, EngineError> {
        let defs = self.store.definitions(aid, DefinitionKind::Segment).await?;
        let versions = self.store.audience_versions(aid).await?;
        let audiences = Audiences::compile(&defs).with_stored_versions(&versions);
        let stored: HashMap<String, Micros> = versions
            .into_iter()
            .map(|v| (v.segment, v.version))
            .collect();
        let deleted: Vec<&String> = stored
            .keys()
            .filter(|slug| !defs.iter().any(|d| &d.name == *slug))
            .collect();
        let changed: HashSet<String> = audiences
            .list()
            .iter()
            .filter(|a| stored.get(&a.slug) != Some(&a.version))
            .map(|a| a.slug.clone())
            .collect();
        if deleted.is_empty() && changed.is_empty() {
            return Ok(false);
        }
        for slug in deleted {
            let _guard = self.pipeline.lock().await;
            if !self.lease(aid).await? {
                return Ok(false);
            }
            let left = self.store.drop_audience(aid, slug, now_micros()).await?;
            tracing::info!(aid, slug = %slug, members = left, "audience deleted: members left");
        }
        if changed.is_empty() {
            return Ok(true);
        }
        let slugs = Arc::new(audiences.with_dependents(&changed));
        let audiences = Arc::new(audiences);
        let started = std::time::Instant::now();
        let plans = Arc::new(self.plans(aid).await?);
        let recompute = Recompute {
            aid,
            slugs,
            audiences: audiences.clone(),
            plans,
        };
        let (mut entries, mut exits) = (0usize, 0usize);
        let mut next: Option<i64> = Some(0);
        // Runs of pages under the pipeline's lock; between runs the pipeline gets its turn.
        // Within a run, reading a page, evaluating the one before and committing the one
        // before that go on at once (a stage waits when the next one is a page behind).
        while let Some(after) = next {
            let _guard = self.pipeline.lock().await;
            if !self.lease(aid).await? {
                return Ok(false);
            }
            let (read_tx, mut read_rx) = tokio::sync::mpsc::channel(1);
            let (eval_tx, mut eval_rx) = tokio::sync::mpsc::channel(1);
            let run_started = std::time::Instant::now();
            let reader = async {
                let mut after = after;
                while run_started.elapsed() < RUN_READING {
                    let read = self.read_page(&recompute, after).await?;
                    let upto = read.upto;
                    if read_tx.send(read).await.is_err() {
                        break;
                    }
                    match upto {
                        Some(u) => after = u,
                        None => break,
                    }
                }
                drop(read_tx);
                Ok::<_, EngineError>(())
            };
            let evaluator = async {
                while let Some(read) = read_rx.recv().await {
                    let upto = read.upto;
                    let page = recompute.evaluate(&self.foreground, read).await?;
                    if eval_tx.send((page, upto)).await.is_err() {
                        break;
                    }
                }
                drop(eval_tx);
                Ok::<_, EngineError>(())
            };
            let committer = async {
                while let Some((page, upto)) = eval_rx.recv().await {
                    entries += page.changes.iter().filter(|c| c.entered).count();
                    exits += page.changes.iter().filter(|c| !c.entered).count();
                    if !self.commit_membership(aid, page).await? {
                        return Ok(false);
                    }
                    next = upto;
                }
                Ok::<_, EngineError>(true)
            };
            let ((), (), committed) = tokio::try_join!(reader, evaluator, committer)?;
            if !committed {
                return Ok(false);
            }
        }
        for a in audiences
            .list()
            .iter()
            .filter(|a| changed.contains(&a.slug))
        {
            self.store
                .set_audience_version(
                    aid,
                    &AudienceVersion {
                        segment: a.slug.clone(),
                        version: a.version,
                    },
                )
                .await?;
        }
        metrics::histogram!("tributary_audience_recompute_seconds")
            .record(started.elapsed().as_secs_f64());
        tracing::info!(
            aid,
            audiences = ?recompute.slugs,
            entries,
            exits,
            ms = started.elapsed().as_millis() as u64,
            "audiences recomputed"
        );
        Ok(true)
    }

    /// Re-evaluates date-relative audiences for profiles whose next check has come.
    /// Returns how many profiles were checked.
    pub async fn check_due(&self, aid: AccountId) -> Result<usize, EngineError> {
        let _guard = self.pipeline.lock().await;
        if !self.lease(aid).await? {
            return Ok(0);
        }
        let now = now_micros();
        let due = self.store.due_profiles(aid, now, DUE_BATCH).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let audiences = self
            .audiences(aid)
            .await?
            .with_stored_versions(&self.store.audience_versions(aid).await?);
        let plans = self.plans(aid).await?;
        let at = from_micros(now);
        let outcomes = in_parallel(&due, |p| {
            Some(reevaluate(
                p,
                &audiences,
                &plans,
                &Scope::TimeRelative,
                Record::Update,
                at,
                now,
            ))
        });
        let mut page = Page::new(now);
        for o in outcomes {
            let o = o.map_err(EngineError::Corrupt)?;
            page.profiles.extend(o.row);
            page.changes.extend(o.changes);
            page.next_checks.extend(o.next_check.map(|at| (o.id, at)));
        }
        self.commit_membership(aid, page).await?;
        Ok(due.len())
    }

    /// Commits profile rows and membership changes without moving the pipeline's cursor (the
    /// compare-and-set still guards against another node having taken over).
    async fn commit_membership(&self, aid: AccountId, page: Page) -> Result<bool, EngineError> {
        if page.profiles.is_empty() && page.changes.is_empty() && page.next_checks.is_empty() {
            return Ok(true);
        }
        let cursor = self.store.pipeline_cursor(aid).await?;
        let mut profiles = page.profiles;
        for p in &mut profiles {
            p.account_id = aid;
        }
        Ok(self
            .store
            .commit_pipeline(
                aid,
                &PipelineCommit {
                    expected_cursor: cursor,
                    new_cursor: cursor,
                    profiles,
                    changes: page.changes,
                    next_checks: page.next_checks,
                    at: page.at,
                    ..PipelineCommit::default()
                },
            )
            .await?)
    }
}

/// What one page of re-evaluated profiles commits.
struct Page {
    profiles: Vec<StoredProfile>,
    next_checks: Vec<(i64, Option<Micros>)>,
    changes: Vec<MembershipChange>,
    at: Micros,
}

impl Page {
    fn new(at: Micros) -> Page {
        Page {
            profiles: Vec::new(),
            next_checks: Vec::new(),
            changes: Vec::new(),
            at,
        }
    }
}

/// A page of profiles read for a recompute, with the members the table has among them.
struct ReadPage {
    profiles: Vec<StoredProfile>,
    /// Per audience recomputed, its members in the page.
    members: Vec<Vec<i64>>,
    /// Where the next page starts (`None` after the last).
    upto: Option<i64>,
}

/// What a recompute works with, shared by its pages.
struct Recompute {
    aid: AccountId,
    /// The audiences recomputed, sorted.
    slugs: Arc<Vec<String>>,
    audiences: Arc<Audiences>,
    plans: Arc<Plans>,
}

impl Engine {
    /// Reads the page of profiles after `after`, and the members among them.
    async fn read_page(&self, r: &Recompute, after: i64) -> Result<ReadPage, EngineError> {
        let profiles = self.store.scan_profiles(r.aid, after, PAGE).await?;
        // The last page also covers ids past every profile: members left behind there (by a
        // rebuild) are removed.
        let upto = if profiles.len() < PAGE as usize {
            None
        } else {
            profiles.last().map(|p| p.id)
        };
        let members = self
            .store
            .members_between(r.aid, &r.slugs, after, upto)
            .await?;
        Ok(ReadPage {
            profiles,
            members,
            upto,
        })
    }
}

impl Recompute {
    /// Evaluates a page as the pipeline's CPU work ([`cpu_work`]): what it commits.
    async fn evaluate(&self, foreground: &Foreground, read: ReadPage) -> Result<Page, EngineError> {
        let (slugs, audiences, plans) = (
            self.slugs.clone(),
            self.audiences.clone(),
            self.plans.clone(),
        );
        cpu_work(foreground, move || {
            evaluate_page(
                &read.profiles,
                read.members,
                &slugs,
                &audiences,
                &plans,
                now_micros(),
            )
        })
        .await?
    }
}

/// Whether re-evaluating a profile updates its own record of its audiences.
#[derive(Clone, Copy, PartialEq)]
enum Record {
    /// It does (a due check): the row is rewritten when the audiences or the next check
    /// changed.
    Update,
    /// It does not (a recompute): only the row's next check is updated, when it moved; the
    /// record stays as it was, older than the recomputed audiences' definitions, so the
    /// pipeline checks those audiences against the table when the profile next changes.
    Keep,
}

/// A profile's audiences in `scope` evaluated again; the row is returned only if it changed.
fn reevaluate(
    p: &StoredProfile,
    audiences: &Audiences,
    plans: &Plans,
    scope: &Scope<'_>,
    record: Record,
    at: time::OffsetDateTime,
    now: Micros,
) -> Result<Outcome, String> {
    let mut e = Entry::parse(p)?;
    let view = ProfileView {
        id: p.id,
        created_at: p.created_at,
        state: &e.state,
        plans,
    };
    let (segments, next_check) = audiences.evaluate(&view, scope, at);
    let mut changes = Vec::new();
    if record == Record::Update {
        audiences.changes(p.id, &e.state, &segments, &mut changes);
    }
    let moved = next_check != p.next_check;
    let (row, next_check) = match record {
        Record::Update if moved || segments != e.state.segments => {
            e.state.segments = segments.clone();
            e.state.segments_version = audiences.newest_version();
            let row = StoredProfile {
                state: e.state.to_json(),
                modified_at: now,
                next_check,
                ..p.clone()
            };
            (Some(row), None)
        }
        Record::Update => (None, None),
        Record::Keep => (None, moved.then_some(next_check)),
    };
    Ok(Outcome {
        id: p.id,
        row,
        next_check,
        changes,
        segments,
    })
}

/// One recompute page: per audience of `slugs` (sorted), the profiles that should be
/// members against those the table has (`members`, aligned with `slugs`, ascending), merged
/// like two sorted lists. The table, not the profiles' own record of their audiences, is what
/// the log describes.
fn evaluate_page(
    page: &[StoredProfile],
    members: Vec<Vec<i64>>,
    slugs: &[String],
    audiences: &Audiences,
    plans: &Plans,
    now: Micros,
) -> Result<Page, EngineError> {
    let at = from_micros(now);
    let outcomes = in_parallel(page, |p| {
        Some(reevaluate(
            p,
            audiences,
            plans,
            &Scope::Only(slugs),
            Record::Keep,
            at,
            now,
        ))
    });
    let mut result = Page::new(now);
    let mut desired: Vec<Vec<i64>> = vec![Vec::new(); slugs.len()];
    for o in outcomes {
        let o = o.map_err(EngineError::Corrupt)?;
        result.profiles.extend(o.row);
        result.next_checks.extend(o.next_check.map(|at| (o.id, at)));
        for s in &o.segments {
            if let Ok(i) = slugs.binary_search(s) {
                desired[i].push(o.id);
            }
        }
    }
    for ((slug, mut want), have) in slugs.iter().zip(desired).zip(members) {
        want.sort_unstable();
        let (mut w, mut h) = (want.iter().peekable(), have.iter().peekable());
        loop {
            match (w.peek(), h.peek()) {
                (Some(a), Some(b)) if a == b => {
                    w.next();
                    h.next();
                }
                (Some(a), Some(b)) if a < b => {
                    result
                        .changes
                        .push(MembershipChange::enter(slug.as_str(), **a));
                    w.next();
                }
                (Some(a), None) => {
                    result
                        .changes
                        .push(MembershipChange::enter(slug.as_str(), **a));
                    w.next();
                }
                (_, Some(b)) => {
                    result
                        .changes
                        .push(MembershipChange::exit(slug.as_str(), **b));
                    h.next();
                }
                (None, None) => break,
            }
        }
    }
    Ok(result)
}

/// How often an account's audience sizes are sampled into the day's record (`audience_days`),
/// besides right after a recompute.
pub(crate) const SIZE_SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(300);

const DAY: Micros = 86_400_000_000;

impl Engine {
    /// Records each computed audience's size as today's (UTC), for the size-over-time chart:
    /// when `now_due` (a recompute just changed sizes) or once [`SIZE_SAMPLE_EVERY`] has passed
    /// since this node last did for the account. Only the node holding the account's lease
    /// samples, so several nodes do not repeat the work.
    pub async fn sample_sizes(&self, aid: AccountId, now_due: bool) -> Result<(), EngineError> {
        {
            let sampled = self
                .sizes_sampled
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !now_due
                && sampled
                    .get(&aid)
                    .is_some_and(|t| t.elapsed() < SIZE_SAMPLE_EVERY)
            {
                return Ok(());
            }
        }
        if !self.lease(aid).await? {
            return Ok(());
        }
        let mut sizes = Vec::new();
        for version in self.store.audience_versions(aid).await? {
            let size = self.store.audience_size(aid, &version.segment).await?;
            sizes.push((version.segment, size));
        }
        let day = now_micros().div_euclid(DAY);
        self.store.record_audience_sizes(aid, day, &sizes).await?;
        self.sizes_sampled
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(aid, std::time::Instant::now());
        Ok(())
    }
}
