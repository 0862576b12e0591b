//! Issue 4's scenario: raw `braze_users` events → committed profiles with the built-in mapping,
//! where one event in five links two existing profiles (a merge), on SQLite and PostgreSQL;
//! then a full rebuild. Baseline in the same run: inserting the same raw events.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;
use tributary_core::{NewEvent, NewToken, Role, TokenSecret};
use tributary_engine::{Engine, EngineConfig, builtin};
use tributary_store::{SqlStore, Store};

use crate::report::{machine, median, write_section};

#[derive(clap::Args)]
pub struct Args {
    /// Events on SQLite (the rebuild target is for 1,000,000).
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Events on PostgreSQL (0 skips it).
    #[arg(long, default_value_t = 200_000)]
    pg_events: usize,
    #[arg(long, default_value_t = tributary_engine::EngineConfig::default().batch_size)]
    batch: u32,
    /// SQLite runs, each on a fresh database (the medians are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long)]
    write: Option<PathBuf>,
}

/// Event `i`: four in five introduce a new person; every fifth links the two previous people
/// (by braze_id and email), merging their profiles.
fn event(i: usize, t0: i64) -> NewEvent {
    let payload = if i % 5 == 4 {
        json!({"braze_id": format!("b{}", i - 1), "email": format!("user{}@example.com", i - 2), "city": "Linktown"})
    } else {
        json!({
            "braze_id": format!("b{i}"), "email": format!("user{i}@example.com"), "first_name": "John",
            "last_name": "Smith", "city": "AnyTown", "country": "United States", "gender": "male",
            "language": "English", "date_of_birth": "19820101", "phone_number": "5551231234",
            "time_zone": "GMT+7", "twitter_handle": "johnsmith"
        })
    };
    NewEvent {
        account_id: 1,
        stream: "braze_users".into(),
        received_at: t0 + i as i64,
        event_time: t0 + i as i64,
        payload: payload.to_string(),
        dedup_key: None,
    }
}

struct Measured {
    insert_eps: f64,
    pipeline_eps: f64,
    rebuild_secs: f64,
    profiles: u64,
    merges: u64,
}

async fn measure(store: Arc<dyn Store>, n: usize, batch: u32) -> anyhow::Result<Measured> {
    let admin = TokenSecret::generate();
    store
        .bootstrap(
            "Default",
            &NewToken {
                account_id: None,
                name: "bench".into(),
                description: String::new(),
                roles: vec![Role::Admin],
                hash: admin.hash(),
                created_at: 0,
                expires_at: None,
            },
            0,
        )
        .await?;
    builtin::seed_account(store.as_ref(), 1).await?;
    let t0 = tributary_core::to_micros(time::OffsetDateTime::now_utc());
    let started = Instant::now();
    for chunk_start in (0..n).step_by(10_000) {
        let events: Vec<NewEvent> = (chunk_start..(chunk_start + 10_000).min(n))
            .map(|i| event(i, t0))
            .collect();
        store.append_events(&events).await?;
    }
    let insert_eps = n as f64 / started.elapsed().as_secs_f64();
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            batch_size: batch,
            ..EngineConfig::default()
        },
    );
    // As the server's worker does when an account is created: compute the (empty) built-in
    // audiences, so the pipeline runs in its steady state.
    engine.sync_audiences(1).await?;
    let started = Instant::now();
    let stats = engine.catch_up(1).await?;
    let pipeline_eps = stats.events as f64 / started.elapsed().as_secs_f64();
    anyhow::ensure!(
        stats.events as usize == n,
        "processed {} of {n} events",
        stats.events
    );
    let started = Instant::now();
    engine.rebuild(1).await?;
    let rebuilt = engine.catch_up(1).await?;
    let rebuild_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        rebuilt.merges == stats.merges,
        "the rebuild merged differently"
    );
    Ok(Measured {
        insert_eps,
        pipeline_eps,
        rebuild_secs,
        profiles: stats.profiles_created - stats.merges,
        merges: stats.merges,
    })
}

/// Forgets the process's peak RSS, so the next [`peak_rss_mib`] is the peak from now on.
pub(crate) fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// The process's peak resident memory (VmHWM), in MiB.
pub(crate) fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut runs = Vec::new();
    // The peak of the first run: later runs in the same process start from what the
    // allocator kept of the earlier ones (it returns memory lazily), which says nothing about
    // one store at this size.
    let mut rss = None;
    for _ in 0..args.runs.max(1) {
        let dir = tempfile::tempdir()?;
        let m = rt.block_on(async {
            let store: Arc<dyn Store> =
                Arc::new(SqlStore::sqlite(&dir.path().join("bench.db")).await?);
            measure(store, args.events, args.batch).await
        })?;
        eprintln!(
            "sqlite: {:.0} events/s (raw insert {:.0}), rebuild {:.1} s",
            m.pipeline_eps, m.insert_eps, m.rebuild_secs
        );
        runs.push(m);
        rss.get_or_insert_with(peak_rss_mib);
    }
    let all_eps: Vec<String> = runs
        .iter()
        .map(|m| format!("{:.0}", m.pipeline_eps))
        .collect();
    let sqlite = Measured {
        pipeline_eps: median(runs.iter().map(|m| m.pipeline_eps).collect()),
        insert_eps: median(runs.iter().map(|m| m.insert_eps).collect()),
        rebuild_secs: median(runs.iter().map(|m| m.rebuild_secs).collect()),
        ..runs.swap_remove(0)
    };
    let rss = rss.unwrap_or(f64::NAN);
    let pg = if args.pg_events > 0 {
        let m = rt.block_on(async {
            // PostgreSQL's durable defaults (`fsync` and `synchronous_commit` on), as a production server runs.
            let cluster = tributary_store::testing::pg_durable_cluster()
                .ok_or_else(|| anyhow::anyhow!("PostgreSQL is not available"))?;
            let store: Arc<dyn Store> = Arc::new(
                tributary_store::SqlStore::postgres(&cluster.fresh_database().await).await?,
            );
            measure(store, args.pg_events, args.batch).await
        })?;
        eprintln!("postgres: {:.0} events/s", m.pipeline_eps);
        Some(m)
    } else {
        None
    };
    let pg_row = pg.as_ref().map_or(String::new(), |m| format!(
        "| PostgreSQL: {} events, raw stream → committed profiles | **{:.0} events/s** ({} profiles, {} merges) | inserting the same raw events: {:.0} events/s | {:.2} × insert | — |\n| PostgreSQL: rebuild of {} events | {:.1} s | | | |\n",
        args.pg_events, m.pipeline_eps, m.profiles, m.merges, m.insert_eps, m.pipeline_eps / m.insert_eps, args.pg_events, m.rebuild_secs
    ));
    let report = format!(
        "## Profiles pipeline (issue 4)

Command: `cargo run --release -p tributary-bench -- pipeline --events {n} --pg-events {pgn} --write BENCHMARKS.md`
({date}; {machine}; built-in `braze_users` mapping and the 4 built-in audiences; one event in five merges two profiles; batches of {batch}; SQLite: median of {runs} runs on fresh databases ({all_eps} events/s); PostgreSQL: one run, on a cluster with `fsync` and `synchronous_commit` on).

| what | result | baseline (same run) | ratio | target |
|---|---|---|---|---|
| SQLite: {n} events, raw stream → committed profiles | **{s_eps:.0} events/s** ({s_prof} profiles, {s_merges} merges) | inserting the same raw events: {s_ins:.0} events/s | {s_ratio:.2} × insert | ≥ 50,000 events/s |
| SQLite: rebuild of {n} events (reset + replay) | **{s_rebuild:.1} s** | | | < 30 s for 1,000,000 |
{pg_row}| peak memory of the process during the first SQLite run ({s_prof} profiles in the store) | {rss:.0} MiB | | | < 1 GiB at 1,000,000 profiles |

Memory does not grow with the number of profiles: a batch loads only the profiles its events touch.
",
        n = args.events,
        pgn = args.pg_events,
        date = time::OffsetDateTime::now_utc().date(),
        machine = machine(),
        batch = args.batch,
        runs = args.runs.max(1),
        all_eps = all_eps.join(", "),
        s_eps = sqlite.pipeline_eps,
        s_prof = sqlite.profiles,
        s_merges = sqlite.merges,
        s_ins = sqlite.insert_eps,
        s_ratio = sqlite.pipeline_eps / sqlite.insert_eps,
        s_rebuild = sqlite.rebuild_secs,
    );
    println!("{report}");
    if let Some(path) = &args.write {
        write_section(path, "pipeline", &report)?;
    }
    Ok(())
}
