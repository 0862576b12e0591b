//! Importing one file: two passes of the CSV decoder over the file as its folder gives it
//! (through gzip or ZIP when compressed), the second appending batches with the file's record.

use std::collections::HashSet;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::runtime::Handle;
use tributary_core::{ImportFile, NewEvent, to_micros};
use tributary_sources::{DecodeOptions, decode_csv_stream};
use tributary_store::{RowHashes, Store};

use crate::config::ImportConfig;
use crate::folder::Folder;
use crate::unpack::{Counted, Failing};

/// Events per batch: one transaction each, and what the import holds in memory.
pub const BATCH: usize = 5_000;

/// A file of the folder, as listed.
#[derive(Debug, Clone)]
pub struct RemoteFile {
    pub name: String,
    pub path: String,
    pub size: u64,
    pub modified: i64,
}

/// What a run of one file did.
#[derive(Debug, Default)]
pub struct FileOutcome {
    pub stored: u64,
    /// Rows skipped by `diff`: the previous file had them.
    pub unchanged: u64,
    pub rejected: u64,
    /// The first rejections, with their lines, for the job's log.
    pub rejections: Vec<String>,
    pub finished: bool,
}

/// What the import reports while it reads (shared with the progress reporter).
#[derive(Default)]
pub struct Counters {
    pub bytes_read: Arc<AtomicU64>,
    pub rows: AtomicU64,
}

/// Everything the blocking decode needs.
pub struct FileImport {
    pub folder: Arc<Folder>,
    pub store: Arc<dyn Store>,
    pub config: ImportConfig,
    pub account_id: i64,
    pub job_id: i64,
    pub file: RemoteFile,
    /// Events of this file already stored by an earlier run: skipped.
    pub already: i64,
    pub counters: Arc<Counters>,
    /// The key for PGP-encrypted files (`sftp-pgp` authorizations).
    pub pgp: Option<Arc<crate::pgp::PgpKey>>,
    /// False once the job must stop: no batch is written after that.
    pub keep_going: Arc<dyn Fn() -> bool + Send + Sync>,
    /// With `diff`: the previous file's rows are skipped.
    pub diff: Option<crate::diff::Diff>,
}

impl FileImport {
    /// Runs on a blocking thread (the CSV decoder reads synchronously); SFTP and the store
    /// are driven through `runtime`.
    pub fn run(self, runtime: Handle) -> Result<FileOutcome, String> {
        let open = || -> Box<dyn Read> {
            self.counters.bytes_read.store(0, Ordering::Relaxed);
            let reader = self.folder.open(&self.file, &runtime);
            let counted = Box::new(Counted {
                inner: reader,
                read: self.counters.bytes_read.clone(),
            });
            match crate::unpack::by_name(&self.file.name, counted, self.pgp.as_deref()) {
                Ok(plain) => plain,
                Err(e) => Box::new(Failing(format!("{}: {e}", self.file.name))),
            }
        };
        let options = DecodeOptions {
            timestamp_field: None,
            drop_errors: self.config.drop_errors,
        };
        let now = to_micros(time::OffsetDateTime::now_utc());
        let mut seen: i64 = 0;
        let mut stored: u64 = 0;
        let mut unchanged: u64 = 0;
        let mut failure: Option<String> = None;
        let mut record = ImportFile {
            job_id: self.job_id,
            name: self.file.name.clone(),
            size: self.file.size as i64,
            modified: self.file.modified,
            rows_done: self.already,
            rejected: 0,
            done: false,
            updated_at: now,
        };
        let summary = decode_csv_stream(&open, &options, &self.config.csv(), BATCH, &mut |batch| {
            if !(self.keep_going)() {
                return false;
            }
            let rows: Vec<_> = batch
                .into_iter()
                .filter(|_| {
                    seen += 1;
                    seen > self.already
                })
                .collect();
            self.counters.rows.store(seen as u64, Ordering::Relaxed);
            if rows.is_empty() {
                // Settled by an earlier run.
                return true;
            }
            let hashes: Vec<i64> = match self.diff {
                Some(_) => rows.iter().map(|r| crate::diff::row(&r.payload)).collect(),
                None => Vec::new(),
            };
            let previous: HashSet<i64> = match self.diff.and_then(|d| d.baseline) {
                Some(baseline) => match runtime.block_on(self.store.import_rows_seen(
                    self.job_id,
                    baseline,
                    &hashes,
                )) {
                    Ok(seen) => seen.into_iter().collect(),
                    Err(e) => {
                        failure = Some(format!("reading the previous file's rows failed: {e}"));
                        return false;
                    }
                },
                None => HashSet::new(),
            };
            let total = rows.len();
            let events: Vec<NewEvent> = rows
                .into_iter()
                .enumerate()
                .filter(|(i, _)| hashes.get(*i).is_none_or(|h| !previous.contains(h)))
                .map(|(_, r)| NewEvent {
                    account_id: self.account_id,
                    stream: self.config.stream.clone(),
                    received_at: now,
                    event_time: r.event_time.map_or(now, to_micros),
                    payload: r.payload,
                    dedup_key: None,
                })
                .collect();
            unchanged += (total - events.len()) as u64;
            stored += events.len() as u64;
            record.rows_done = seen;
            record.updated_at = to_micros(time::OffsetDateTime::now_utc());
            let row_hashes = self.diff.map(|d| RowHashes {
                generation: d.generation,
                hashes: &hashes,
            });
            match runtime.block_on(self.store.append_import_batch(&events, &record, row_hashes)) {
                Ok(()) => true,
                Err(e) => {
                    failure = Some(format!("storing a batch failed: {e}"));
                    false
                }
            }
        });
        if let Some(f) = failure {
            return Err(f);
        }
        let summary = summary.map_err(|e| format!("{}: {e}", self.file.name))?;
        // A stop is final: asked before or during the file, nothing more is written.
        if !(self.keep_going)() {
            return Ok(FileOutcome::default());
        }
        // The file's last word: done, with its count of rejected rows.
        record.rows_done = record.rows_done.max(seen);
        record.rejected = summary.rejected_count as i64;
        record.done = true;
        record.updated_at = to_micros(time::OffsetDateTime::now_utc());
        runtime
            .block_on(self.store.append_import_batch(
                &[],
                &record,
                self.diff.map(|d| RowHashes {
                    generation: d.generation,
                    hashes: &[],
                }),
            ))
            .map_err(|e| format!("recording the file as imported failed: {e}"))?;
        Ok(FileOutcome {
            stored,
            unchanged,
            rejected: summary.rejected_count as u64,
            rejections: summary
                .rejected
                .iter()
                .take(20)
                .map(|r| format!("line {}: {}", r.line, r.message))
                .collect(),
            finished: true,
        })
    }
}
