//! Issue 5's scenario. (1) Latency from the 200 on an event to its membership change being in
//! the log, with 20 audiences, at a fixed event rate against a real `serve` on SQLite; the
//! baseline is the HTTP round trip itself. (2) Recomputing 10 new audiences over 1,000,000
//! profiles on SQLite; the baseline is reading every profile row once, in the same run.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tributary_core::{
    Definition, DefinitionKind, IdentityKey, PipelineCommit, StoredProfile, to_micros,
};
use tributary_engine::{Engine, EngineConfig, builtin};
use tributary_profile::{FieldState, ProfileState};
use tributary_query::Value;
use tributary_store::{SqlStore, Store};

use crate::ingest::start_tributary;
use crate::report::{machine, median, process_cpu, write_section};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds of load for the latency phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Events per second in the latency phase.
    #[arg(long, default_value_t = 5_000)]
    rate: usize,
    /// Profiles for the recompute phase.
    #[arg(long, default_value_t = 1_000_000)]
    profiles: usize,
    /// Recompute runs (each on a fresh database); the median is reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    #[arg(long)]
    write: Option<PathBuf>,
}

/// Requests per second in the latency phase (events are spread over them).
const TICKS_PER_SECOND: usize = 100;

/// 16 audiences besides the 4 built-in ones, over the built-in braze_users fields.
const LATENCY_AUDIENCES: &[&str] = &[
    "FILTER city == \"Paris\" ALIAS a_paris",
    "FILTER city == \"Berlin\" ALIAS a_berlin",
    "FILTER country IN (\"France\", \"Germany\") ALIAS a_eu",
    "FILTER gender == \"female\" ALIAS a_female",
    "FILTER language == \"English\" ALIAS a_english",
    "FILTER EXISTS phone_number ALIAS a_phone",
    "FILTER braze_event_count > 1 ALIAS a_repeat",
    "FILTER email LIKE \"*@example.com\" ALIAS a_example",
    "FILTER braze_last_seen > \"now-1d\" ALIAS a_active",
    "FILTER AND (INCLUDE a_paris, INCLUDE a_female) ALIAS a_paris_female",
    "FILTER OR (INCLUDE a_berlin, INCLUDE a_paris) ALIAS a_cities",
    "FILTER NOT EXISTS email ALIAS a_no_email",
    "FILTER first_name == \"John\" ALIAS a_john",
    "FILTER time_zone == \"GMT+7\" ALIAS a_gmt7",
    "FILTER custom.plan == \"gold\" ALIAS a_gold",
    "FILTER date_of_birth < \"1990-01-01\" ALIAS a_older",
];

/// Ten audiences of mixed selectivity over the synthetic profiles of the recompute phase.
const RECOMPUTE_AUDIENCES: &[&str] = &[
    "FILTER country == \"FR\" ALIAS r_fr",
    "FILTER age > 60 ALIAS r_senior",
    "FILTER AND (plan == \"gold\", age < 30) ALIAS r_young_gold",
    "FILTER spend BETWEEN 100 AND 200 ALIAS r_mid_spend",
    "FILTER last_purchase > \"now-30d\" ALIAS r_recent_buyers",
    "FILTER EXISTS phone ALIAS r_phone",
    "FILTER city IN (\"Paris\", \"Lyon\", \"Nice\") ALIAS r_french_cities",
    "FILTER email LIKE \"*@gmail.test\" ALIAS r_gmail",
    "FILTER AND (country == \"DE\", spend > 500) ALIAS r_de_big",
    "FILTER NOT plan == \"free\" ALIAS r_paying",
];

fn definition(text: &str, now: i64) -> anyhow::Result<Definition> {
    let st = tributary_query::parse_filter(text).map_err(|e| anyhow::anyhow!("{text}: {e}"))?;
    Ok(Definition {
        account_id: 1,
        kind: DefinitionKind::Segment,
        name: st.alias.clone().unwrap_or_default(),
        text: st.to_string(),
        created_at: now,
        updated_at: now,
    })
}

fn now_micros() -> i64 {
    to_micros(time::OffsetDateTime::now_utc())
}

struct Latency {
    events: usize,
    achieved_rate: f64,
    http_p50: f64,
    http_p99: f64,
    p50: f64,
    p99: f64,
    max: f64,
    missing: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn latency(args: &Args) -> anyhow::Result<Latency> {
    let server = start_tributary().await?;
    let store = server.store.clone();
    builtin::seed_account(store.as_ref(), 1).await?;
    let now = now_micros();
    for text in LATENCY_AUDIENCES {
        store.put_definition(&definition(text, now)?).await?;
    }
    // Let the worker compute the (empty) audiences before the clock starts.
    let audiences = builtin::BUILTIN_AUDIENCES.len() + LATENCY_AUDIENCES.len();
    for _ in 0..200 {
        if store.audience_versions(1).await?.len() == audiences {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::ensure!(
        store.audience_versions(1).await?.len() == audiences,
        "audiences never computed"
    );

    // Watches the log: when each profile's entry into lytics_all appears.
    let seen: Arc<std::sync::Mutex<HashMap<i64, Instant>>> = Arc::default();
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let watcher = {
        let (store, seen) = (store.clone(), seen.clone());
        tokio::spawn(async move {
            let mut after = 0;
            while !*stop_rx.borrow_and_update() {
                if let Ok(entries) = store
                    .membership_log(1, Some("lytics_all"), after, 10_000)
                    .await
                {
                    let at = Instant::now();
                    if let Ok(mut seen) = seen.lock() {
                        for e in &entries {
                            seen.insert(e.profile_id, at);
                        }
                    }
                    after = entries.last().map_or(after, |e| e.seq);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };

    let client = reqwest::Client::new();
    let per_tick = (args.rate / TICKS_PER_SECOND).max(1);
    let ticks = args.seconds as usize * TICKS_PER_SECOND;
    let mut interval = tokio::time::interval(Duration::from_secs(1) / TICKS_PER_SECOND as u32);
    let mut requests = Vec::with_capacity(ticks);
    let started = Instant::now();
    for tick in 0..ticks {
        interval.tick().await;
        let body = serde_json::Value::Array(
            (0..per_tick)
                .map(|k| {
                    let i = tick * per_tick + k;
                    serde_json::json!({
                        "braze_id": format!("L{i}"), "email": format!("l{i}@example.com"),
                        "city": if i.is_multiple_of(3) { "Paris" } else { "Berlin" },
                        "country": "France", "gender": "female", "first_name": "Ann",
                    })
                })
                .collect(),
        )
        .to_string();
        let request = client
            .post(&server.url)
            .header("authorization", &server.token)
            .header("content-type", "application/json")
            .body(body);
        requests.push(tokio::spawn(async move {
            let sent = Instant::now();
            let ok = matches!(request.send().await, Ok(r) if r.status().is_success());
            (ok, sent, Instant::now())
        }));
    }
    let mut done = Vec::with_capacity(ticks);
    for r in requests {
        done.push(r.await?);
    }
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop_tx.send(true);
    watcher.await?;

    let seen = seen
        .lock()
        .map_err(|_| anyhow::anyhow!("watcher panicked"))?
        .clone();
    let mut latencies = Vec::new();
    let mut http = Vec::new();
    let mut missing = 0;
    for (tick, (ok, sent, answered)) in done.iter().enumerate() {
        anyhow::ensure!(*ok, "request {tick} failed");
        http.push((*answered - *sent).as_secs_f64() * 1e3);
        let keys: Vec<IdentityKey> = (0..per_tick)
            .map(|k| IdentityKey::new("braze_id", format!("L{}", tick * per_tick + k)))
            .collect();
        for (_, id) in store.lookup_identities(1, &keys).await? {
            match seen.get(&id) {
                Some(at) => {
                    latencies.push(at.saturating_duration_since(*answered).as_secs_f64() * 1e3)
                }
                None => missing += 1,
            }
        }
    }
    latencies.sort_by(f64::total_cmp);
    http.sort_by(f64::total_cmp);
    server.stop().await;
    Ok(Latency {
        events: ticks * per_tick,
        achieved_rate: (ticks * per_tick) as f64 / elapsed.as_secs_f64(),
        http_p50: percentile(&http, 0.5),
        http_p99: percentile(&http, 0.99),
        p50: percentile(&latencies, 0.5),
        p99: percentile(&latencies, 0.99),
        max: latencies.last().copied().unwrap_or(f64::NAN),
        missing,
    })
}

struct Recompute {
    profiles: usize,
    /// Baseline: reading every profile row once with a plain query.
    scan_secs: f64,
    recompute_secs: f64,
    /// CPU seconds (user + system) of the process during the recompute.
    cpu_secs: f64,
    entries: u64,
}

/// The same number of membership rows and log rows written by raw SQLite (one connection,
/// one transaction, tables shaped like schema 6's, rows generated inside SQLite), in a fresh
/// database with the same settings: what a row per member would cost before any work.
async fn raw_membership_writes(rows: u64) -> anyhow::Result<f64> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    use std::str::FromStr;
    let dir = tempfile::tempdir()?;
    let options = SqliteConnectOptions::from_str("sqlite:")?
        .filename(dir.path().join("raw.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .page_size(16384)
        .pragma("cache_size", "-262144");
    let mut conn = sqlx::ConnectOptions::connect(&options).await?;
    sqlx::raw_sql(
        "CREATE TABLE memberships (account_id INTEGER NOT NULL, segment TEXT NOT NULL,
            profile_id INTEGER NOT NULL, since INTEGER NOT NULL,
            PRIMARY KEY (account_id, segment, profile_id)) WITHOUT ROWID;
         CREATE TABLE membership_log (account_id INTEGER NOT NULL, seq INTEGER NOT NULL,
            segment TEXT NOT NULL, profile_id INTEGER NOT NULL, entered INTEGER NOT NULL,
            at INTEGER NOT NULL, PRIMARY KEY (account_id, seq)) WITHOUT ROWID;",
    )
    .execute(&mut conn)
    .await?;
    let started = Instant::now();
    let sql = format!(
        "BEGIN;
         WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < {last})
         INSERT INTO memberships SELECT 1, 'r_' || (x % 10), x / 10 + 1, 5 FROM c;
         WITH RECURSIVE c(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM c WHERE x < {last})
         INSERT INTO membership_log SELECT 1, x + 1, 'r_' || (x % 10), x / 10 + 1, 1, 5 FROM c;
         COMMIT;",
        last = rows.saturating_sub(1)
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await?;
    Ok(started.elapsed().as_secs_f64())
}

/// Profile `i` of the recompute phase: a mix of countries, ages, plans and spends.
fn synthetic_profile(i: usize, now: i64) -> StoredProfile {
    let at = now;
    let scalar = |v: Value| FieldState::Scalar { value: v, at };
    let mut state = ProfileState {
        first_seen: now - 1_000_000,
        last_seen: now,
        events: 1 + (i % 7) as i64,
        ..ProfileState::default()
    };
    let countries = ["FR", "DE", "US", "GB", "ES"];
    let cities = [
        "Paris", "Berlin", "Austin", "Leeds", "Lyon", "Nice", "Madrid",
    ];
    let plans = ["free", "silver", "gold"];
    let f = &mut state.fields;
    f.insert(
        "country".into(),
        scalar(Value::String(countries[i % 5].into())),
    );
    f.insert("city".into(), scalar(Value::String(cities[i % 7].into())));
    f.insert("age".into(), scalar(Value::Int(18 + (i * 7 % 60) as i64)));
    f.insert("plan".into(), scalar(Value::String(plans[i % 3].into())));
    f.insert("spend".into(), scalar(Value::Int((i * 13 % 1000) as i64)));
    let domain = if i.is_multiple_of(4) {
        "gmail.test"
    } else {
        "corp.test"
    };
    f.insert(
        "email".into(),
        scalar(Value::String(format!("u{i}@{domain}"))),
    );
    if i.is_multiple_of(2) {
        f.insert("phone".into(), scalar(Value::String(format!("555{i:07}"))));
    }
    let days_ago = (i % 90) as i64;
    f.insert(
        "last_purchase".into(),
        scalar(Value::Time(tributary_core::from_micros(
            now - days_ago * 86_400_000_000,
        ))),
    );
    StoredProfile {
        account_id: 1,
        id: i as i64 + 1,
        state: state.to_json(),
        created_at: now,
        modified_at: now,
        next_check: None,
    }
}

async fn recompute(args: &Args) -> anyhow::Result<Recompute> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqlStore::sqlite(&dir.path().join("t.db")).await?);
    let now = now_micros();
    for start in (0..args.profiles).step_by(10_000) {
        let commit = PipelineCommit {
            profiles: (start..(start + 10_000).min(args.profiles))
                .map(|i| synthetic_profile(i, now))
                .collect(),
            ..PipelineCommit::default()
        };
        store.commit_pipeline(1, &commit).await?;
    }
    let scan_secs = raw_profile_read(&dir.path().join("t.db"), args.profiles).await?;

    let engine = Engine::new(store.clone(), EngineConfig::default());
    // The account's built-in audiences exist before the new ones, as on a real server.
    builtin::seed_account(store.as_ref(), 1).await?;
    engine.sync_audiences(1).await?;
    for text in RECOMPUTE_AUDIENCES {
        store.put_definition(&definition(text, now)?).await?;
    }
    let cpu_before = process_cpu(std::process::id());
    let started = Instant::now();
    engine.sync_audiences(1).await?;
    let recompute_secs = started.elapsed().as_secs_f64();
    let cpu_secs = process_cpu(std::process::id()) - cpu_before;
    let mut entries = 0;
    for text in RECOMPUTE_AUDIENCES {
        let slug = definition(text, now)?.name;
        entries += store.audience_size(1, &slug).await?;
    }
    Ok(Recompute {
        profiles: args.profiles,
        scan_secs,
        recompute_secs,
        cpu_secs,
        entries,
    })
}

/// Baseline: every profile row read once, in pages of 5,000 in id order, with a plain query
/// on its own connection to the same database (the rows decoded, nothing else done).
async fn raw_profile_read(path: &std::path::Path, expected: usize) -> anyhow::Result<f64> {
    use sqlx::Row;
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(path)
        .read_only(true);
    let mut conn = sqlx::ConnectOptions::connect(&options).await?;
    let started = Instant::now();
    let (mut after, mut read) = (0i64, 0usize);
    loop {
        let rows = sqlx::query(
            "SELECT id, state, created_at, modified_at, next_check FROM profiles
             WHERE account_id = 1 AND id > ? ORDER BY id LIMIT 5000",
        )
        .bind(after)
        .fetch_all(&mut conn)
        .await?;
        let Some(last) = rows.last() else { break };
        after = last.try_get(0)?;
        for r in &rows {
            let state: &str = r.try_get(1)?;
            read += usize::from(!state.is_empty());
        }
    }
    anyhow::ensure!(read == expected, "read {read} profiles");
    Ok(started.elapsed().as_secs_f64())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let l = rt.block_on(latency(&args))?;
    println!(
        "latency: {} events at {:.0}/s: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, missing {}",
        l.events, l.achieved_rate, l.p50, l.p99, l.max, l.missing
    );
    let mut runs = Vec::new();
    for _ in 0..args.runs.max(1) {
        let r = rt.block_on(recompute(&args))?;
        println!(
            "recompute: {} profiles x {} audiences in {:.2} s, {:.2} CPU s ({} entries); reading them: {:.2} s",
            r.profiles,
            RECOMPUTE_AUDIENCES.len(),
            r.recompute_secs,
            r.cpu_secs,
            r.entries,
            r.scan_secs,
        );
        runs.push(r);
    }
    let all: Vec<String> = runs
        .iter()
        .map(|r| format!("{:.2}", r.recompute_secs))
        .collect();
    let med = |f: fn(&Recompute) -> f64| median(runs.iter().map(f).collect());
    let (rs, cpu, ss) = (
        med(|r| r.recompute_secs),
        med(|r| r.cpu_secs),
        med(|r| r.scan_secs),
    );
    let entries = runs.first().map_or(0, |r| r.entries);
    let raw_write_secs = rt.block_on(raw_membership_writes(entries))?;
    let body = format!(
        "## Real-time audiences (issue 5)

Command: `cargo run --release -p tributary-bench -- audiences --write BENCHMARKS.md`
({date}; {machine}; SQLite; latency: one run; recompute: median of {nruns} runs on fresh databases ({all} s)).

| what | result | baseline (same run) | ratio | target |
|---|---|---|---|---|
| 200 on an event → its membership change in the log, {events} events at {rate:.0}/s (requests of {per} events), 20 audiences | p50 **{p50:.1} ms**, p99 **{p99:.1} ms**, max {max:.1} ms; {missing} never seen | the HTTP round trip: p50 {hp50:.1} ms, p99 {hp99:.1} ms | p99 {ratio:.1} × round trip | p99 < 100 ms |
| recompute {profiles} profiles × {n} new audiences ({entries} entries in the log) | **{rs:.2} s** ({cpu:.1} CPU s) | reading every profile row once with a plain query: {ss:.2} s | {rr:.1} × read | < 5 s |

For scale: writing those {entries} entries as a row per member and a row per log entry (schema 6),
with raw SQLite in one transaction and nothing else, takes {ws:.2} s on this machine; members and
log are stored as bitmaps of 65,536-id chunks instead (see ARCHITECTURE.md).

The log is watched by a task in the same process that polls it every millisecond; the latency
includes the worker noticing the commit, the pipeline batch, audience evaluation and the commit
of the membership log.
",
        date = time::OffsetDateTime::now_utc().date(),
        machine = machine(),
        events = l.events,
        rate = l.achieved_rate,
        per = (args.rate / TICKS_PER_SECOND).max(1),
        p50 = l.p50,
        p99 = l.p99,
        max = l.max,
        missing = l.missing,
        hp50 = l.http_p50,
        hp99 = l.http_p99,
        ratio = l.p99 / l.http_p99,
        nruns = runs.len(),
        all = all.join(", "),
        profiles = args.profiles,
        n = RECOMPUTE_AUDIENCES.len(),
        rs = rs,
        cpu = cpu,
        ss = ss,
        rr = rs / ss,
        ws = raw_write_secs,
    );
    println!("{body}");
    if let Some(path) = &args.write {
        write_section(path, "audiences", &body)?;
    }
    Ok(())
}
