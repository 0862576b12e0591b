//! What serializes event appends on PostgreSQL costs with several nodes. Every node's
//! group-commit writer takes the same transaction advisory lock to append (so event ids become
//! visible in commit order: see `store/src/dialect.rs`), so two nodes take turns. Measured: one
//! node's store and writer against two on the same database (the second node as a second
//! store with its own pool and writer, in the same process), with the same number of callers in
//! all, on a cluster with PostgreSQL's durable defaults (`fsync` and `synchronous_commit` on).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tributary_core::NewEvent;
use tributary_store::{EventWriter, SqlStore, Store, WriterConfig};

use crate::report::{machine, median, write_section};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Runs of every measurement; the report quotes medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Callers in all, each appending one event at a time (as webhooks do).
    #[arg(long, default_value_t = 64)]
    callers: usize,
    /// Replace the `pg-append` section of this file (BENCHMARKS.md).
    #[arg(long)]
    write: Option<PathBuf>,
}

fn event(n: u64) -> NewEvent {
    NewEvent {
        account_id: 1,
        stream: "braze_users".into(),
        received_at: n as i64,
        event_time: n as i64,
        payload: format!(r#"{{"email":"user{n}@example.com","braze_id":"b{n:09}"}}"#),
        dedup_key: None,
    }
}

/// Events per second appended by `callers` callers spread over `nodes` stores.
async fn appends(
    url: &str,
    nodes: usize,
    callers: usize,
    duration: Duration,
) -> anyhow::Result<f64> {
    let mut writers = Vec::new();
    for _ in 0..nodes {
        let store: Arc<dyn Store> = Arc::new(SqlStore::postgres(url).await?);
        writers.push(Arc::new(
            EventWriter::spawn(store, WriterConfig::default()).0,
        ));
    }
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..callers {
        let writer = writers[i % nodes].clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while started.elapsed() < duration {
                writer.write(vec![event(n)]).await?;
                n += 1;
                done.fetch_add(1, Ordering::Relaxed);
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let duration = Duration::from_secs(args.seconds);
    let (mut one, mut two) = (Vec::new(), Vec::new());
    rt.block_on(async {
        let cluster = tributary_store::testing::pg_durable_cluster()
            .ok_or_else(|| anyhow::anyhow!("PostgreSQL is not available"))?;
        for i in 0..args.runs {
            let url = cluster.fresh_database().await;
            let single = appends(&url, 1, args.callers, duration).await?;
            let pair = appends(&url, 2, args.callers, duration).await?;
            eprintln!(
                "run {}/{}: one node {single:.0} events/s, two nodes {pair:.0} events/s",
                i + 1,
                args.runs
            );
            one.push(single);
            two.push(pair);
        }
        anyhow::Ok(())
    })?;
    let (one, two) = (median(one), median(two));
    let report = format!(
        "## PostgreSQL: two nodes appending

Command: `cargo run --release -p tributary-bench -- pg-append --seconds {secs} --runs {runs} --write BENCHMARKS.md`
({date}; {machine}; medians of {runs} runs of {secs} s; a local cluster with `fsync` and `synchronous_commit` on; {c} callers in all, each appending one event at a time through its node's group-commit writer).

| what | result | baseline (same run) | ratio |
|---|---|---|---|
| two nodes on one database, {half} callers each | **{two:.0} events/s** | one node, {c} callers: {one:.0} events/s | {ratio:.2} × one node |

Appends from all nodes take one transaction advisory lock in turn (ids must become visible in commit order), so a second node adds no append capacity: the cluster's ingestion is bounded by one database's append rate, and the turn-taking costs some of it (two writers contend for the lock, each grouping half the callers into smaller commits): the ratio above. Both nodes share this machine's 2 cores with the database, so the figure says what the lock costs, not what two machines would do.
",
        secs = args.seconds,
        runs = args.runs,
        date = time::OffsetDateTime::now_utc().date(),
        machine = machine(),
        c = args.callers,
        half = args.callers / 2,
        ratio = two / one,
    );
    println!("{report}");
    if let Some(path) = &args.write {
        write_section(path, "pg-append", &report)?;
    }
    Ok(())
}
