//! Jobs: long-running work (the Braze export now, imports later) that survives restarts and
//! moves between nodes.
//!
//! - `authorization.rs`: each authorization kind's configuration, its secret fields, sealing.
//! - `workflow.rs`: the `Workflow` trait a kind of job implements, and the `JobContext` a run
//!   gets (opened credentials, stop signal, reporting, log).
//! - `runner.rs`: the per-process runner (leases, supervision, outcomes).
//!
//! Invariants:
//! - A job runs on at most one node at a time: its runner holds the lease `job:<id>` and stops
//!   the run when it loses it.
//! - The API changes a job's state with compare-and-set; a runner's report is written only
//!   while the job is active, so pause and kill always win.
//! - Secrets are in clear only inside a run's `Credentials`; nothing here logs them.

pub mod authorization;
mod runner;
mod workflow;

pub use runner::{Runner, RunnerConfig};
pub use workflow::{
    Credentials, JobContext, LOG_LINES_KEPT, Outcome, Registry, Stop, Workflow, WorkflowError,
    job_log,
};

/// Now, as stored.
pub fn now() -> tributary_core::Micros {
    tributary_core::to_micros(time::OffsetDateTime::now_utc())
}
