//! The `tributary` binary.

mod import;
mod master_key;
mod private_files;
mod progress;
mod rebuild;
mod serve;

use clap::{Parser, Subcommand};

/// mimalloc: the pipeline and the collection path allocate many small, short-lived values
/// across threads, where it is markedly faster than the system allocator (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "tributary",
    version,
    about = "A self-hosted customer data platform with a two-way Braze integration"
)]
struct Cli {
    /// Log format: `text` for people, `json` for log pipelines.
    #[arg(
        long,
        env = "TRIBUTARY_LOG_FORMAT",
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: collection API, administration API, health and metrics.
    Serve(serve::ServeArgs),
    /// Rebuild an account's profiles from its raw events (after changing its LQL).
    Rebuild(rebuild::RebuildArgs),
    /// Load a file into a running server's stream.
    Import(import::ImportArgs),
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TRIBUTARY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only on a terminal: logs going to files, journald or a collector stay
        // plain text that grep and log pipelines can read.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    private_files::restrict_new_files();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve::run(args)),
        Command::Rebuild(args) => runtime.block_on(rebuild::run(args)),
        Command::Import(args) => runtime.block_on(import::run(args)),
    }
}
