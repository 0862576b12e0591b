//! `braze-sim`: runs the Braze REST simulator on a loopback port.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use braze_sim::{Faults, Sim, SimConfig};
use clap::Parser;

#[derive(Parser)]
#[command(version, about = "A local Braze REST simulator (docs/braze.md)")]
struct Args {
    /// Address to listen on; port 0 picks a free port (printed at start-up).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// A REST API key and its permissions: `KEY=users.track,users.export.ids`. Repeatable.
    /// Without any, the key `sim-key` has every permission.
    #[arg(long = "key", value_name = "KEY=PERMS")]
    keys: Vec<String>,
    /// /users/track requests allowed per `--rate-period-ms`.
    #[arg(long, default_value_t = 3_000)]
    rate_limit: u32,
    #[arg(long, default_value_t = 3_000)]
    rate_period_ms: u64,
    /// /users/export/ids requests per minute.
    #[arg(long, default_value_t = 250)]
    export_ids_per_minute: u32,
    /// /users/delete requests per minute (a limit Braze shares among its identity endpoints).
    #[arg(long, default_value_t = 20_000)]
    identity_per_minute: u32,
    /// Length cap of simple arrays (500; 25 in Braze's legacy default).
    #[arg(long, default_value_t = 500)]
    array_cap: usize,
    /// Added to every API response.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share (0..1) of API requests answered with a 5xx.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Share (0..1) of API requests applied and then answered with a 5xx.
    #[arg(long, default_value_t = 0.0)]
    applied_error_rate: f64,
    /// Send `Retry-After` with 429s.
    #[arg(long)]
    retry_after: bool,
}

fn parse_keys(specs: &[String]) -> anyhow::Result<HashMap<String, HashSet<String>>> {
    const ALL: &[&str] = &[
        "users.track",
        "users.delete",
        "users.export.ids",
        "users.export.segment",
    ];
    if specs.is_empty() {
        let perms = ALL.iter().map(|p| p.to_string()).collect();
        return Ok(HashMap::from([("sim-key".to_string(), perms)]));
    }
    specs
        .iter()
        .map(|spec| {
            let (key, perms) = spec
                .split_once('=')
                .with_context(|| format!("--key {spec:?}: expected KEY=PERM,PERM"))?;
            let perms = perms
                .split(',')
                .filter(|p| !p.is_empty())
                .map(str::to_string)
                .collect();
            Ok((key.to_string(), perms))
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    for (flag, share) in [
        ("--error-rate", args.error_rate),
        ("--applied-error-rate", args.applied_error_rate),
    ] {
        if !(0.0..=1.0).contains(&share) {
            anyhow::bail!("{flag} must be between 0 and 1");
        }
    }
    let config = SimConfig {
        keys: parse_keys(&args.keys)?,
        track_limit: args.rate_limit,
        track_period: Duration::from_millis(args.rate_period_ms.max(1)),
        export_ids_per_minute: args.export_ids_per_minute,
        identity_per_minute: args.identity_per_minute,
        array_cap: args.array_cap.max(1),
        faults: Faults {
            latency_ms: args.latency_ms,
            error_rate: args.error_rate,
            applied_error_rate: args.applied_error_rate,
            ..Faults::default()
        },
        retry_after: args.retry_after,
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr()?;
    println!("braze-sim listening on http://{addr}");
    let sim = Sim::new(config);
    braze_sim::serve(listener, sim, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
