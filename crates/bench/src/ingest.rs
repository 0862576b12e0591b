//! HTTP ingestion of Braze-webhook-shaped events, 1,000-event arrays and then single-event
//! requests at 64 connections, into an unmapped stream and into `braze_users` with its
//! built-in mapping busy (the seed's case), against two baselines measured in the same run:
//! a raw SQLite batch insert of the same rows into the event log's schema (same indexes, same
//! durability: WAL, synchronous=FULL), and an axum handler that reads the body and does
//! nothing. After each load, how far the pipeline was behind and how long it took to catch up.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tributary_core::{NewToken, Role, TokenSecret, to_micros};
use tributary_engine::builtin;
use tributary_store::{SqlStore, Store};

use crate::load::{self, LoadResult};
use crate::report::{machine, median, write_section};

#[derive(clap::Args)]
pub struct Args {
    /// Seconds per load phase.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Runs of every phase; the report quotes medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Connections for single-event requests.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Connections for 1,000-event arrays.
    #[arg(long, default_value_t = 4)]
    batch_connections: usize,
    /// Rows for the raw-insert baseline.
    #[arg(long, default_value_t = 200_000)]
    raw_rows: usize,
    /// Replace the `ingest` section of this file (BENCHMARKS.md).
    #[arg(long)]
    write: Option<PathBuf>,
}

const BATCH: usize = 1_000;
/// Rows per statement in the raw-insert baseline (1,000 rows, one transaction, per batch).
const RAW_ROWS_PER_STATEMENT: usize = 500;
/// Upper bound on requests per connection per phase, so every loop ends even on a fast machine.
const MAX_REQUESTS_PER_CONNECTION: u64 = 200_000;

fn webhook_event(i: usize) -> Value {
    json!({
        "city": "AnyTown", "country": "United States", "first_name": "John", "gender": "male",
        "language": "English", "last_name": "Smith", "date_of_birth": "19820101",
        "phone_number": "5551231234", "time_zone": "GMT+7", "twitter_handle": "johnsmith",
        "email": format!("user{i}@example.com"), "braze_id": format!("b{i:09}"),
    })
}

/// One Tributary's two phases: 1,000-event arrays first, then single-event webhooks, so the
/// webhooks meet whatever the arrays left the pipeline to do (as during a burst or an import).
struct Phases {
    batch: LoadResult,
    single: LoadResult,
    /// Events received but not yet applied to profiles when the load ended.
    lag_at_end: i64,
    /// How long the pipeline then took to apply them.
    catch_up: Duration,
}

struct Run {
    raw_insert_eps: f64,
    empty: LoadResult,
    /// An account without a mapping: the pipeline has nothing to do.
    unmapped: Phases,
    /// `braze_users` with the built-in mapping and audiences: the seed's case.
    mapped: Phases,
}

/// Runs both phases against a fresh Tributary and checks every acknowledged event is stored.
fn phases(
    server_rt: &tokio::runtime::Runtime,
    client_rt: &tokio::runtime::Runtime,
    args: &Args,
    mapped: bool,
    bodies: (&str, &str),
) -> anyhow::Result<Phases> {
    let duration = Duration::from_secs(args.seconds);
    let server = server_rt.block_on(async {
        let server = start_tributary().await?;
        if mapped {
            builtin::seed_account(server.store.as_ref(), 1).await?;
        }
        anyhow::Ok(server)
    })?;
    let what = if mapped {
        "braze_users, mapped"
    } else {
        "unmapped"
    };
    let batch = client_rt.block_on(load::run(
        server.url.clone(),
        Some(server.token.clone()),
        bodies.1.to_string(),
        args.batch_connections,
        duration,
        MAX_REQUESTS_PER_CONNECTION,
    ));
    eprintln!(
        "  {what}: 1,000-event arrays: {:.0} events/s, {} failures",
        batch.per_second() * BATCH as f64,
        batch.failures
    );
    let single = client_rt.block_on(load::run(
        server.url.clone(),
        Some(server.token.clone()),
        bodies.0.to_string(),
        args.connections,
        duration,
        MAX_REQUESTS_PER_CONNECTION,
    ));
    eprintln!(
        "  {what}: single events: {:.0} req/s, p99 {:.1} ms, {} failures",
        single.per_second(),
        single.percentile_ms(0.99),
        single.failures
    );
    // Without a mapping the pipeline leaves the events for when a query exists: there is
    // nothing to catch up.
    let (lag_at_end, catch_up) = if mapped {
        server_rt.block_on(server.catch_up())?
    } else {
        (0, Duration::ZERO)
    };
    eprintln!(
        "  {what}: {lag_at_end} events behind at the end, applied in {:.1} s",
        catch_up.as_secs_f64()
    );
    let stored = server_rt.block_on(server.stored_events())?;
    let expected = single.requests + batch.requests * BATCH as u64;
    anyhow::ensure!(
        stored >= expected as i64,
        "only {stored} of {expected} acknowledged events are stored"
    );
    server_rt.block_on(server.stop());
    Ok(Phases {
        batch,
        single,
        lag_at_end,
        catch_up,
    })
}

pub fn run(args: Args) -> anyhow::Result<()> {
    // Server and load generator get a runtime each, so neither starves the other's scheduler;
    // they still share the machine's cores, as they would for any in-process baseline.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let duration = Duration::from_secs(args.seconds);
    let single_body = webhook_event(0).to_string();
    let batch_body = Value::Array((0..BATCH).map(webhook_event).collect()).to_string();
    let bodies = (single_body.as_str(), batch_body.as_str());

    let mut runs = Vec::new();
    for i in 0..args.runs {
        eprintln!("run {}/{}", i + 1, args.runs);
        let payloads: Vec<String> = (0..BATCH).map(|i| webhook_event(i).to_string()).collect();
        let raw_insert_eps =
            server_rt.block_on(raw_sqlite_insert(&payloads, args.raw_rows, BATCH))?;
        eprintln!("  raw SQLite insert: {raw_insert_eps:.0} rows/s");

        let (empty_url, stop_empty) = server_rt.block_on(start_empty_handler())?;
        let empty = client_rt.block_on(load::run(
            empty_url,
            None,
            single_body.clone(),
            args.connections,
            duration,
            MAX_REQUESTS_PER_CONNECTION,
        ));
        let _ = stop_empty.send(());
        eprintln!("  empty handler: {:.0} req/s", empty.per_second());

        let unmapped = phases(&server_rt, &client_rt, &args, false, bodies)?;
        let mapped = phases(&server_rt, &client_rt, &args, true, bodies)?;
        runs.push(Run {
            raw_insert_eps,
            empty,
            unmapped,
            mapped,
        });
    }

    let report = render(&args, &runs);
    println!("{report}");
    if let Some(path) = &args.write {
        write_section(path, "ingest", &report)?;
    }
    Ok(())
}

fn render(args: &Args, runs: &[Run]) -> String {
    let m = |f: &dyn Fn(&Run) -> f64| median(runs.iter().map(f).collect());
    let raw = m(&|r| r.raw_insert_eps);
    let empty_rps = m(&|r| r.empty.per_second());
    let empty_p99 = m(&|r| r.empty.percentile_ms(0.99));
    let figures = |phases: &dyn Fn(&Run) -> &Phases| Figures {
        batch_eps: m(&|r| phases(r).batch.per_second() * BATCH as f64),
        batch_p99: m(&|r| phases(r).batch.percentile_ms(0.99)),
        single_rps: m(&|r| phases(r).single.per_second()),
        single_p50: m(&|r| phases(r).single.percentile_ms(0.5)),
        single_p99: m(&|r| phases(r).single.percentile_ms(0.99)),
        lag: m(&|r| phases(r).lag_at_end as f64),
        catch_up: m(&|r| phases(r).catch_up.as_secs_f64()),
    };
    let un = figures(&|r| &r.unmapped);
    let ma = figures(&|r| &r.mapped);
    let failures: u64 = runs
        .iter()
        .map(|r| {
            [&r.unmapped, &r.mapped]
                .iter()
                .map(|p| p.single.failures + p.batch.failures)
                .sum::<u64>()
        })
        .sum();
    let date = time::OffsetDateTime::now_utc().date();
    let (bc, c) = (args.batch_connections, args.connections);
    format!(
        "## Ingestion

Command: `cargo run --release -p tributary-bench -- ingest --seconds {secs} --runs {runs} --write BENCHMARKS.md`
({date}; {machine}; medians of {runs} runs of {secs} s per phase; SQLite, durable acknowledgements; load generator in the same process).

| what | result | baseline | ratio | target |
|---|---|---|---|---|
| unmapped: 1,000-event arrays, {bc} connections | **{ub:.0} events/s** (p99 {ubp:.1} ms/request) | raw SQLite batch insert of the same rows: {raw:.0} rows/s | {ubr:.2} × raw insert | ≥ 0.5 × raw |
| unmapped: then single-event requests, {c} connections | **{us:.0} requests/s**, p50 {us50:.1} ms, p99 {us99:.1} ms | empty axum handler: {empty_rps:.0} requests/s, p99 {empty_p99:.1} ms | {usr:.2} × empty handler | ≥ 10,000/s, p99 < 50 ms |
| braze_users, mapped: 1,000-event arrays, {bc} connections | **{mb:.0} events/s** (p99 {mbp:.1} ms/request) | unmapped arrays: {ub:.0} events/s | {mbr:.2} × unmapped | ≥ 0.6 × unmapped |
| braze_users, mapped: then single-event requests, {c} connections | **{ms:.0} requests/s**, p50 {ms50:.1} ms, p99 {ms99:.1} ms | unmapped singles: {us:.0} requests/s, p99 {us99:.1} ms | {msr:.2} × the rate, {mpr:.2} × the p99 | ≥ 0.6 × the rate, ≤ 2 × the p99 |
| braze_users, mapped: the pipeline after the load | **{mlag:.0} events behind, applied in {mcu:.1} s** | | | back to 0 within a few seconds |

Each Tributary takes the 1,000-event arrays first and the single-event webhooks right after, so the webhooks meet the backlog the arrays left, as they would during a burst or an import.
\"Unmapped\": an account without an LQL query, so the profile pipeline has nothing to do (it leaves the events for when a query exists). \"braze_users, mapped\": the seed's case, the built-in `braze_users` query and audiences, so the pipeline turns every event into profiles while the events arrive. Appends go to the event log's own file and writer (`events.db`), so they do not queue behind the pipeline's commits, and the pipeline runs on a runtime of its own with its CPU work at a lower priority while events arrive, so requests get the CPU first: under load the pipeline uses what they leave and falls behind (the lag above, `tributary_pipeline_lag_events`), and catches up after at full speed. The arrays arrive about twice as fast as profiles are built, so a 5-second burst of them leaves a backlog of a few seconds. Webhooks at their usual rate never build one.
Failed requests during the measured phases: {failures}. Every acknowledged event was checked to be in the store after each run.
The raw insert writes the same rows with prepared 500-row `INSERT` statements, 1,000 rows per transaction, into the event log's table with its indexes, page size, WAL and `synchronous=FULL`: the storage ceiling without HTTP, JSON parsing or auth.
",
        secs = args.seconds,
        runs = runs.len(),
        machine = machine(),
        ub = un.batch_eps,
        ubp = un.batch_p99,
        ubr = un.batch_eps / raw,
        us = un.single_rps,
        us50 = un.single_p50,
        us99 = un.single_p99,
        usr = un.single_rps / empty_rps,
        mb = ma.batch_eps,
        mbp = ma.batch_p99,
        mbr = ma.batch_eps / un.batch_eps,
        ms = ma.single_rps,
        ms50 = ma.single_p50,
        ms99 = ma.single_p99,
        msr = ma.single_rps / un.single_rps,
        mpr = ma.single_p99 / un.single_p99,
        mlag = ma.lag,
        mcu = ma.catch_up,
    )
}

/// One account's medians.
struct Figures {
    batch_eps: f64,
    batch_p99: f64,
    single_rps: f64,
    single_p50: f64,
    single_p99: f64,
    lag: f64,
    catch_up: f64,
}

/// Rows per second of a raw durable insert into a table with the event log's indexes: `rows`
/// rows cycling through `payloads`, `per_commit` rows per transaction, in multi-row
/// statements. What any path that stores events durably on SQLite cannot beat.
pub(crate) async fn raw_sqlite_insert(
    payloads: &[String],
    rows: usize,
    per_commit: usize,
) -> anyhow::Result<f64> {
    let dir = tempfile::tempdir()?;
    let options = SqliteConnectOptions::from_str("sqlite:")?
        .filename(dir.path().join("raw.db"))
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        // The store's page size, so the baseline is the same storage layout.
        .page_size(16384);
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options)
        .await?;
    sqlx::raw_sql(
        "CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, account_id INTEGER NOT NULL,
           stream TEXT NOT NULL, received_at INTEGER NOT NULL, event_time INTEGER NOT NULL,
           payload TEXT NOT NULL);
         CREATE INDEX events_by_stream ON events (account_id, stream, id);
         CREATE INDEX events_by_account ON events (account_id, id);",
    )
    .execute(&pool)
    .await?;
    anyhow::ensure!(!payloads.is_empty(), "no rows to insert");
    let now = to_micros(time::OffsetDateTime::now_utc());
    // Multi-row statements: through sqlx every statement is a round trip to SQLite's worker
    // thread, so one-row statements would make a weak baseline (about 11,000 rows/s here).
    let statement_of = |n: usize| {
        format!(
            "INSERT INTO events (account_id, stream, received_at, event_time, payload) VALUES {}",
            vec!["(?, ?, ?, ?, ?)"; n].join(", ")
        )
    };
    let statement = statement_of(RAW_ROWS_PER_STATEMENT);
    let started = Instant::now();
    let mut done = 0;
    let mut next = payloads.iter().cycle();
    while done < rows {
        let mut tx = pool.begin().await?;
        let batch: Vec<&String> = next.by_ref().take(per_commit.min(rows - done)).collect();
        for chunk in batch.chunks(RAW_ROWS_PER_STATEMENT) {
            // A last, shorter chunk gets a statement of its own length.
            let text = match chunk.len() {
                RAW_ROWS_PER_STATEMENT => statement.clone(),
                n => statement_of(n),
            };
            let mut query = sqlx::query(sqlx::AssertSqlSafe(text));
            for payload in chunk {
                query = query
                    .bind(1i64)
                    .bind("braze_users")
                    .bind(now)
                    .bind(now)
                    .bind(payload.as_str());
            }
            query.execute(&mut *tx).await?;
            done += chunk.len();
        }
        tx.commit().await?;
    }
    Ok(rows as f64 / started.elapsed().as_secs_f64())
}

async fn start_empty_handler() -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>)> {
    let app = axum::Router::new().route(
        "/c/{aid}/{stream}",
        post(|_body: axum::body::Bytes| async { StatusCode::OK }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/c/1/braze_users", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await;
    });
    Ok((url, stop))
}

pub(crate) struct Tributary {
    pub url: String,
    /// A Data Manager token of account 1 (what Braze's webhooks carry).
    pub token: String,
    /// The install's admin token.
    pub admin: String,
    pub store: Arc<dyn Store>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

pub(crate) async fn start_tributary() -> anyhow::Result<Tributary> {
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqlStore::sqlite(&dir.path().join("tributary.db")).await?);
    let now = to_micros(time::OffsetDateTime::now_utc());
    let admin = TokenSecret::generate();
    let new_token = |hash, account_id, roles| NewToken {
        account_id,
        name: "bench".into(),
        description: String::new(),
        roles,
        hash,
        created_at: now,
        expires_at: None,
    };
    store
        .bootstrap(
            "Default",
            &new_token(admin.hash(), None, vec![Role::Admin]),
            now,
        )
        .await?;
    let webhook = TokenSecret::generate();
    store
        .create_token(&new_token(webhook.hash(), Some(1), vec![Role::DataManager]))
        .await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/c/1/braze_users", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(tributary_cli::compose::run(
        listener,
        store.clone(),
        tributary_cli::compose::Settings::default(),
        std::sync::Arc::new(tributary_core::crypto::MasterKey::generate()),
        async move {
            let _ = stopped.await;
        },
    ));
    Ok(Tributary {
        url,
        token: webhook.expose().to_string(),
        admin: admin.expose().to_string(),
        store,
        stop,
        task,
        _dir: dir,
    })
}

/// The longest the pipeline may take to catch up before the run counts as failed.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(300);

impl Tributary {
    pub(crate) async fn lag(&self) -> anyhow::Result<i64> {
        Ok(self
            .store
            .pipeline_lag(1)
            .await?
            .iter()
            .map(|(_, n)| n)
            .sum())
    }

    /// The pipeline's lag now, and how long it takes to fall to 0.
    pub(crate) async fn catch_up(&self) -> anyhow::Result<(i64, Duration)> {
        let at_end = self.lag().await?;
        let started = Instant::now();
        while self.lag().await? > 0 {
            anyhow::ensure!(
                started.elapsed() < CATCH_UP_LIMIT,
                "the pipeline did not catch up within {CATCH_UP_LIMIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok((at_end, started.elapsed()))
    }

    pub(crate) async fn stored_events(&self) -> anyhow::Result<i64> {
        Ok(self.store.streams(1).await?.iter().map(|s| s.count).sum())
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
