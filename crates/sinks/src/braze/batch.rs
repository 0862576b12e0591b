//! The coalescing batcher: chunks of changes → closed batches of at most 75 users (a user's
//! changes coalesced per audience) and `/users/delete` requests for erased people, queued in
//! order, each with its place in the ledger.

use std::collections::VecDeque;

use tokio::time::Instant;

use crate::braze::acks::{Ledger, Progress};
use crate::braze::counters::Counters;
use crate::braze::request_builder::{BatchBuilder, MAX_DELETES, Request, Shape};
use crate::braze::service::{Call, Endpoint};
use crate::braze::source::{Position, Read};

/// A closed batch waiting to be sent (`call: None`: its changes cancelled out).
pub struct Pending {
    pub id: u64,
    pub call: Option<Call>,
}

/// The open batch, the closed ones waiting to be sent, and the ledger of all of them.
pub struct Batches {
    open: BatchBuilder,
    pub ready: VecDeque<Pending>,
    pub ledger: Ledger,
    next_id: u64,
    /// Where reading has got (everything before it is in a batch or skipped).
    pub read: Position,
    /// When the source last had nothing more to read.
    pub caught_up_at: Option<Instant>,
    shape: Shape,
}

impl Batches {
    pub fn new(read: Position, shape: Shape) -> Batches {
        Batches {
            open: BatchBuilder::default(),
            ready: VecDeque::new(),
            ledger: Ledger::default(),
            next_id: 0,
            read,
            caught_up_at: None,
            shape,
        }
    }

    /// Puts a chunk's changes into batches; a caught-up chunk closes the open batch.
    pub fn take(&mut self, mut read: Read, progress: &mut Progress, counters: &Counters) {
        if matches!(read.before, Position::Backfill { .. }) {
            progress.backfill_changes += read.chunk.changes.len() as u64;
        }
        if let Position::Log { seq } = read.after {
            progress.forget_after(seq, read.chunk.gone.iter().copied());
        }
        let caught_up = read.chunk.caught_up;
        let deletes = std::mem::take(&mut read.chunk.deletes);
        self.absorb(read.chunk, read.before, read.after, counters);
        self.read = read.after;
        if !deletes.is_empty() {
            // The exits go before the deletion: the open batch closes first.
            self.close(read.after, counters);
            self.delete(&deletes, read.after);
        }
        if caught_up {
            self.caught_up_at = Some(Instant::now());
            self.close(read.after, counters);
        } else {
            self.caught_up_at = None;
        }
    }

    /// Adds a chunk's changes to the open batch, closing it (at the position before this
    /// chunk: its earlier changes are all in it or before it) whenever it fills up.
    fn absorb(
        &mut self,
        chunk: crate::braze::source::Chunk,
        before: Position,
        after: Position,
        counters: &Counters,
    ) {
        Counters::add(&counters.changes_read, chunk.read);
        Counters::add(&counters.skipped_no_identifier, chunk.skipped_no_identifier);
        Counters::add(&counters.skipped_gone, chunk.skipped_gone);
        Counters::add(&counters.skipped_still_member, chunk.skipped_still_member);
        for change in chunk.changes {
            if self.open.is_full() && !self.open.contains(&change.identifier) {
                self.close(before, counters);
            }
            self.open
                .push(&change.identifier, &change.segment, change.entered);
        }
        if self.open.is_empty() {
            // Nothing pending before `after`: the position may move there once the earlier
            // batches are done.
            self.next_id += 1;
            self.ledger.open(self.next_id, after, true);
        }
    }

    /// Closes the open batch (if it has anything) as of `through`.
    pub fn close(&mut self, through: Position, counters: &Counters) {
        if self.open.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.open);
        self.next_id += 1;
        let request = batch.finish(&self.shape);
        if request.is_none() {
            Counters::add(&counters.coalesced_away, 1);
        }
        self.ledger.open(self.next_id, through, request.is_none());
        self.ready.push_back(Pending {
            id: self.next_id,
            call: request.map(|request| Call {
                endpoint: Endpoint::Track,
                request,
            }),
        });
    }

    /// Queues `/users/delete` requests for these identifiers, as of `through`.
    fn delete(&mut self, identifiers: &[String], through: Position) {
        for part in identifiers.chunks(MAX_DELETES) {
            let body = self.shape.identifier.delete_body(part);
            self.next_id += 1;
            self.ledger.open(self.next_id, through, false);
            self.ready.push_back(Pending {
                id: self.next_id,
                call: Some(Call {
                    endpoint: Endpoint::Delete,
                    request: Request {
                        body,
                        users: part.to_vec(),
                        data_points: 0,
                    },
                }),
            });
        }
    }
}
