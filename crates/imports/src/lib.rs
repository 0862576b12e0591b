//! Imports: files on SFTP servers read into a stream by the `sftp-import` workflow.
//!
//! Data flow, per file: the SFTP client (`sftp.rs`) lists the folder; files the job has not
//! finished (by name, size and modification time: `ImportFile` in the event log) are read,
//! decrypted when PGP-encrypted (`pgp.rs`), through gzip or ZIP (`archive.rs`) when compressed, by the CSV decoder of `tributary-sources`, in two passes
//! (the first checks every row, so a file with a bad row and no `droperrors` stores nothing);
//! the second appends batches to the stream, each batch in one transaction with the file's
//! record of how far the import got (`EventLog::append_import_batch`), so a retry resumes
//! after the last committed batch and stores no row twice. Memory is bounded by one batch.
//!
//! Architecture invariant: nothing is written once the runner asks the job to stop (a pause,
//! a kill, a lost lease): every batch checks before it commits.

mod archive;
mod config;
mod diff;
mod file;
mod folder;
pub mod managed;
mod pgp;
mod sftp;
#[cfg(feature = "testing")]
pub mod testing;
pub mod unpack;
mod workflow;

pub use config::ImportConfig;
pub use pgp::PgpKey;
pub use workflow::SftpImport;
