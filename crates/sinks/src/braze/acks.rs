//! Acknowledgement: which batches Braze has taken, how far the export may commit, and
//! writing that position and the job's report.
//!
//! Invariant: the position is committed only up to where every change before it was
//! accepted by Braze (batches in the order they were closed; the front's position commits
//! once it and everything before it are done). A restart resumes there: nothing is lost; at
//! most the changes since the last commit are sent again.

use std::collections::VecDeque;

use serde_json::{Value, json};
use tokio::time::Instant;
use tributary_core::JobState;
use tributary_jobs::JobContext;
use tributary_store::StoreError;

use crate::braze::service::Service;
use crate::braze::source::Position;

/// Batches in the order they were closed, with whether each is done.
#[derive(Default)]
pub struct Ledger {
    entries: VecDeque<(u64, Position, bool)>,
}

impl Ledger {
    pub fn open(&mut self, id: u64, through: Position, done: bool) {
        self.entries.push_back((id, through, done));
    }

    pub fn done(&mut self, id: u64) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.0 == id) {
            e.2 = true;
        }
    }

    /// The newest position before which everything is done.
    pub fn advance(&mut self) -> Option<Position> {
        let mut reached = None;
        while let Some(&(_, through, true)) = self.entries.front() {
            reached = Some(through);
            self.entries.pop_front();
        }
        reached
    }
}

/// How far the run has got: what it read, what Braze accepted, what is saved.
pub struct Progress {
    /// The log position the export started from.
    pub start: i64,
    /// Everything before this was accepted by Braze.
    pub committed: Position,
    /// The committed position last written to the store.
    saved: Position,
    pub last_saved: Instant,
    pub backfill_changes: u64,
    /// Profiles that are gone, whose exits were read at these log positions: the export
    /// forgets what it sent them once those positions are committed.
    forget: VecDeque<(i64, i64)>,
}

impl Progress {
    pub fn new(start: i64, position: Position) -> Progress {
        Progress {
            start,
            committed: position,
            saved: position,
            last_saved: Instant::now(),
            backfill_changes: 0,
            forget: VecDeque::new(),
        }
    }

    pub fn to_json(&self, read: Position) -> Value {
        match self.committed {
            Position::Backfill { after } => json!({
                "phase": "backfill",
                "start_position": self.start,
                "backfill_after": after,
                "backfill_changes_read": self.backfill_changes,
            }),
            Position::Log { seq } => json!({
                "phase": "following",
                "start_position": self.start,
                "log_position": seq,
                "batches.read": match read {
                    Position::Log { seq } => seq,
                    Position::Backfill { .. } => self.start,
                },
                "backfill_changes_read": self.backfill_changes,
            }),
        }
    }

    /// Profiles gone by log position `seq`, to forget once it is committed.
    pub fn forget_after(&mut self, seq: i64, profiles: impl IntoIterator<Item = i64>) {
        self.forget.extend(profiles.into_iter().map(|p| (seq, p)));
    }

    /// Writes the position (the log position first, where the follow phase resumes from),
    /// forgets the identifiers of gone profiles whose exits it covers, and writes the job's
    /// report. `Ok(false)`: the job is no longer active. A run that lost its lease writes
    /// nothing.
    pub async fn save(
        &mut self,
        ctx: &JobContext,
        service: &Service,
        consumer: &str,
        read: Position,
        state: JobState,
        error: Option<String>,
    ) -> Result<bool, StoreError> {
        if ctx.lease_lost() {
            return Ok(false);
        }
        self.write_position(ctx, consumer).await?;
        let active = ctx
            .report(state, self.to_json(read), service.metrics(), error)
            .await?;
        self.saved = self.committed;
        self.last_saved = Instant::now();
        Ok(active)
    }

    /// The last accounting of a run asked to stop: position, progress and metrics, whatever
    /// the job's state now (not after a lost lease).
    pub async fn save_stopped(
        &mut self,
        ctx: &JobContext,
        service: &Service,
        consumer: &str,
        read: Position,
    ) -> Result<(), StoreError> {
        if ctx.lease_lost() {
            return Ok(());
        }
        self.write_position(ctx, consumer).await?;
        ctx.report_stopped(self.to_json(read), service.metrics())
            .await?;
        self.saved = self.committed;
        Ok(())
    }

    async fn write_position(&mut self, ctx: &JobContext, consumer: &str) -> Result<(), StoreError> {
        let Position::Log { seq } = self.committed else {
            return Ok(());
        };
        if self.committed != self.saved {
            ctx.store
                .set_log_position(ctx.job.account_id, consumer, seq)
                .await?;
        }
        let mut done = Vec::new();
        while let Some(&(at, profile)) = self.forget.front()
            && at <= seq
        {
            done.push(profile);
            self.forget.pop_front();
        }
        if !done.is_empty() {
            ctx.store
                .forget_export_identifiers(ctx.job.id, &done)
                .await?;
        }
        Ok(())
    }

    pub fn unsaved(&self) -> bool {
        self.committed != self.saved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_position_moves_only_past_batches_done_in_order() {
        let mut ledger = Ledger::default();
        ledger.open(1, Position::Log { seq: 10 }, false);
        ledger.open(2, Position::Log { seq: 20 }, false);
        ledger.open(3, Position::Log { seq: 30 }, true);
        ledger.done(2);
        assert_eq!(ledger.advance(), None, "batch 1 is still in flight");
        ledger.done(1);
        assert_eq!(ledger.advance(), Some(Position::Log { seq: 30 }));
        assert_eq!(ledger.advance(), None);
    }
}
