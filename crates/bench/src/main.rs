//! Benchmark harness. Each scenario runs next to its baseline in the same process and run, so
//! results are quoted as ratios that survive a noisy 2-core machine; every figure is the median
//! of several runs. `--write` replaces this scenario's section of BENCHMARKS.md.

mod ingest;
mod load;
mod pipeline;
mod query;
mod report;

use clap::{Parser, Subcommand};

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().scenario {
        Scenario::Ingest(args) => ingest::run(args),
        Scenario::Query(args) => query::run(args),
        Scenario::Pipeline(args) => pipeline::run(args),
    }
}
