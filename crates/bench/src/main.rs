//! Benchmark harness. Each scenario runs next to its baseline in the same process and run, so
//! results are quoted as ratios that survive a noisy 2-core machine; every figure is the median
//! of several runs. `--write` replaces this scenario's section of BENCHMARKS.md.

mod audiences;
mod console;
mod export;
mod import;
mod ingest;
mod load;
mod pg_append;
mod pipeline;
mod query;
mod report;

use clap::{Parser, Subcommand};

/// The same allocator as the `tributary` binary, so the harness measures what ships.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "tributary-bench")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand)]
enum Scenario {
    /// HTTP ingestion of Braze-webhook-shaped events vs a raw SQLite insert and an empty handler.
    Ingest(ingest::Args),
    /// FilterQL evaluation and LQL mapping vs hand-written checks and a JSON parse.
    Query(query::Args),
    /// Raw events to committed profiles (with merges), and a full rebuild.
    Pipeline(pipeline::Args),
    /// Event → membership log latency with 20 audiences, and recomputing audiences.
    Audiences(audiences::Args),
    /// Event appends on PostgreSQL from one node and from two (the advisory lock's cost).
    PgAppend(pg_append::Args),
    /// A Braze export backfill of 1,000,000 members against braze-sim, vs the rate limit.
    Export(export::Args),
    /// A Braze CSV export, file to profiles: through /collect/bulk and an sftp-import job, vs
    /// parsing the file alone.
    Import(import::Args),
    /// The web console's main pages, signed in, vs the empty handler.
    Console(console::Args),
    /// One path of `import`, which runs each in a process of its own.
    #[command(hide = true)]
    ImportPath(import::PathArgs),
}

fn main() -> anyhow::Result<()> {
    // `TRIBUTARY_LOG=tributary_engine=debug` shows, for example, the pipeline's per-batch phases.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("TRIBUTARY_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init();
    }
    match Cli::parse().scenario {
        Scenario::Ingest(args) => ingest::run(args),
        Scenario::Query(args) => query::run(args),
        Scenario::Pipeline(args) => pipeline::run(args),
        Scenario::Audiences(args) => audiences::run(args),
        Scenario::Export(args) => export::run(args),
        Scenario::PgAppend(args) => pg_append::run(args),
        Scenario::Import(args) => import::run(args),
        Scenario::Console(args) => console::run(args),
        Scenario::ImportPath(args) => import::run_path(args),
    }
}
