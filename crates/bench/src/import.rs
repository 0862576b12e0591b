//! A Braze "CSV Export User Data" file, from file to committed profiles in `braze_users`:
//! (a) posted to `/collect/bulk`, (b) read by an `sftp-import` job from a local OpenSSH sshd, (c)
//! the same job into a stream no query maps (the import alone, no profiles to build).
//! Baseline: parsing the same file with the `csv` crate alone, in the same run. Each path runs
//! in a process of its own (this binary again, `import-path`), so its peak memory is its own
//! and not what an earlier path left allocated.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::ingest::{Tributary, start_tributary};
use crate::pipeline::{peak_rss_mib, reset_peak_rss};
use crate::report::{machine, median, write_section};

#[derive(clap::Args)]
pub struct Args {
    /// Rows in the file (about 240 bytes each).
    #[arg(long, default_value_t = 500_000)]
    rows: usize,
    #[arg(long, default_value_t = 1)]
    runs: usize,
    #[arg(long)]
    write: Option<PathBuf>,
}

/// One path of the scenario, run by [`run`] in a child process.
#[derive(clap::Args)]
pub struct PathArgs {
    /// `bulk` or `sftp`.
    #[arg(long)]
    path: String,
    #[arg(long)]
    stream: String,
    /// The folder holding `users.csv`.
    #[arg(long)]
    folder: PathBuf,
    #[arg(long)]
    rows: usize,
    /// Where the sshd of the `sftp` path keeps its files.
    #[arg(long)]
    sshd_dir: PathBuf,
}

/// Runs one path and prints its result as one JSON line.
pub fn run_path(args: PathArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rows = args.rows as i64;
    let result = match args.path.as_str() {
        "bulk" => Some(runtime.block_on(through_bulk(&args.folder.join("users.csv"), rows))?),
        _ => runtime.block_on(through_sftp(
            &args.folder,
            rows,
            &args.sshd_dir,
            &args.stream,
        ))?,
    };
    let line = result.map_or(Value::Null, |r| {
        json!({"stored_secs": r.stored_secs, "profiles_secs": r.profiles_secs, "peak_mib": r.peak_mib})
    });
    println!("{line}");
    Ok(())
}

/// Runs a path in a fresh process of this binary; `None` when it could not run here (no sshd).
fn in_child(
    path: &str,
    stream: &str,
    folder: &Path,
    rows: usize,
    sshd_dir: &Path,
) -> anyhow::Result<Option<PathResult>> {
    let out = std::process::Command::new(std::env::current_exe()?)
        .arg("import-path")
        .args([
            "--path",
            path,
            "--stream",
            stream,
            "--rows",
            &rows.to_string(),
        ])
        .arg("--folder")
        .arg(folder)
        .arg("--sshd-dir")
        .arg(sshd_dir)
        .stderr(std::process::Stdio::inherit())
        .output()?;
    anyhow::ensure!(out.status.success(), "the {path} path failed");
    let line: Value = serde_json::from_slice(&out.stdout)?;
    if line.is_null() {
        return Ok(None);
    }
    let number = |name: &str| {
        line[name]
            .as_f64()
            .ok_or_else(|| anyhow::anyhow!("no {name} in {line}"))
    };
    Ok(Some(PathResult {
        stored_secs: number("stored_secs")?,
        profiles_secs: line["profiles_secs"].as_f64(),
        peak_mib: number("peak_mib")?,
    }))
}

/// Braze's export columns (the ones the built-in `braze_users` query maps, and a few more).
const HEADER: &str = "external_id,braze_id,email,phone,first_name,last_name,gender,country,\
home_city,language,time_zone,date_of_birth,first_session,last_session,email_subscribe,random_bucket";

fn write_export(path: &Path, rows: usize) -> anyhow::Result<u64> {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path)?);
    writeln!(w, "{HEADER}")?;
    for i in 0..rows {
        writeln!(
            w,
            "user-{i:08},5f{i:022x},user{i}@example.com,+1555{:07},First{i},Last{},{},{},City {},en,\
America/New_York,1990-0{}-1{},2024-01-0{}T10:00:00.000Z,2024-06-1{}T12:30:00.000Z,subscribed,{}",
            i % 10_000_000,
            i % 977,
            ["M", "F", "O"][i % 3],
            ["US", "FR", "DE", "NO"][i % 4],
            i % 311,
            1 + i % 9,
            i % 9,
            1 + i % 9,
            i % 9,
            i % 10_000,
        )?;
    }
    w.flush()?;
    Ok(std::fs::metadata(path)?.len())
}

fn parse_only(path: &Path) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut reader = csv::Reader::from_path(path)?;
    let mut record = csv::ByteRecord::new();
    let mut n = 0usize;
    while reader.read_byte_record(&mut record)? {
        n += record.len();
    }
    anyhow::ensure!(n > 0, "parsed nothing");
    Ok(started.elapsed())
}

/// The file's first rows as the events an import stores them: a JSON object per row, by header.
fn rows_as_payloads(path: &Path, limit: usize) -> anyhow::Result<Vec<String>> {
    let mut reader = csv::Reader::from_path(path)?;
    let headers = reader.headers()?.clone();
    let mut payloads = Vec::new();
    for record in reader.records().take(limit) {
        let record = record?;
        let object: serde_json::Map<String, Value> = headers
            .iter()
            .zip(record.iter())
            .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
            .collect();
        payloads.push(Value::Object(object).to_string());
    }
    Ok(payloads)
}

/// Seconds to events stored, seconds to profiles committed (none for an unmapped stream),
/// peak MiB.
struct PathResult {
    stored_secs: f64,
    profiles_secs: Option<f64>,
    peak_mib: f64,
}

async fn until_caught_up(t: &Tributary, rows: i64, started: Instant) -> anyhow::Result<f64> {
    while t.stored_events().await? < rows || t.lag().await? > 0 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(600),
            "no catch-up in 10 min: {} of {rows} events stored, {} behind",
            t.stored_events().await?,
            t.lag().await?
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(started.elapsed().as_secs_f64())
}

fn base(t: &Tributary) -> String {
    t.url.trim_end_matches("/c/1/braze_users").to_string()
}

/// A Tributary with the built-in `braze_users` query and audiences, as a new account has.
async fn tributary() -> anyhow::Result<Tributary> {
    let t = start_tributary().await?;
    tributary_engine::builtin::seed_account(t.store.as_ref(), 1).await?;
    Ok(t)
}

async fn through_bulk(file: &Path, rows: i64) -> anyhow::Result<PathResult> {
    let t = tributary().await?;
    reset_peak_rss();
    let started = Instant::now();
    let body = tokio::fs::read(file).await?;
    let r = reqwest::Client::new()
        .post(format!("{}/collect/bulk/braze_users", base(&t)))
        .bearer_auth(&t.token)
        .header("content-type", "text/csv")
        .body(body)
        .send()
        .await?;
    let status = r.status();
    let answer: Value = r.json().await.unwrap_or_default();
    anyhow::ensure!(
        status.is_success() && answer["data"]["rejected_count"] == 0,
        "bulk upload: {status}: {answer}"
    );
    let stored_secs = started.elapsed().as_secs_f64();
    let profiles_secs = Some(until_caught_up(&t, rows, started).await?);
    let peak_mib = peak_rss_mib();
    t.stop().await;
    Ok(PathResult {
        stored_secs,
        profiles_secs,
        peak_mib,
    })
}

/// The stream no query maps: what the import alone costs, with no profiles to build.
const UNMAPPED: &str = "raw_users";

async fn through_sftp(
    folder: &Path,
    rows: i64,
    sshd_dir: &Path,
    stream: &str,
) -> anyhow::Result<Option<PathResult>> {
    let Some(sshd) =
        tributary_imports::testing::Sshd::start(sshd_dir).map_err(anyhow::Error::msg)?
    else {
        return Ok(None);
    };
    let t = tributary().await?;
    let http = reqwest::Client::new();
    let post = |path: String, body: Value| {
        http.post(format!("{}{path}", base(&t)))
            .bearer_auth(&t.token)
            .json(&body)
            .send()
    };
    let auth: Value = post(
        "/v2/auth/sftp".into(),
        json!({"label": "bench", "config": {"host": "127.0.0.1", "port": sshd.port,
               "username": "root", "private_key": sshd.client_key()}}),
    )
    .await?
    .json()
    .await?;
    reset_peak_rss();
    let started = Instant::now();
    let job: Value = post(
        "/v2/job/sftp-import".into(),
        json!({"name": "bench", "auth_ids": [auth["data"]["id"]],
               "config": {"stream": stream, "folder": folder, "filename": "users.csv"}}),
    )
    .await?
    .json()
    .await?;
    let id = job["data"]["id"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("no job: {job}"))?;
    let stored_secs = loop {
        let j = t
            .store
            .job(1, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("job gone"))?;
        match j.state {
            tributary_core::JobState::Completed => break started.elapsed().as_secs_f64(),
            tributary_core::JobState::Failed => {
                anyhow::bail!("the import failed: {:?}", j.last_error)
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let profiles_secs = match stream {
        UNMAPPED => None,
        _ => Some(until_caught_up(&t, rows, started).await?),
    };
    let peak_mib = peak_rss_mib();
    t.stop().await;
    Ok(Some(PathResult {
        stored_secs,
        profiles_secs,
        peak_mib,
    }))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let folder = dir.path().join("drop");
    std::fs::create_dir_all(&folder)?;
    let file = folder.join("users.csv");
    let bytes = write_export(&file, args.rows)?;
    // The second baseline: a raw durable insert of rows like the file's (its first 50,000,
    // cycled), in the import's batches of 5,000, into a table with the event log's indexes.
    let payloads = rows_as_payloads(&file, 50_000)?;
    let mut raw = Vec::new();
    let (mut parse, mut bulk, mut sftp, mut unmapped) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let show = |r: &PathResult| {
        let profiles = r.profiles_secs.map_or("-".into(), |s| format!("{s:.2} s"));
        format!(
            "stored {:.2} s, profiles {profiles}, peak {:.0} MiB",
            r.stored_secs, r.peak_mib
        )
    };
    for run in 0..args.runs {
        eprintln!("run {}/{}", run + 1, args.runs);
        let p = parse_only(&file)?.as_secs_f64();
        eprintln!("  parse only: {p:.2} s");
        parse.push(p);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?;
        let rate = runtime.block_on(crate::ingest::raw_sqlite_insert(
            &payloads, args.rows, 5_000,
        ))?;
        let secs = args.rows as f64 / rate;
        eprintln!("  raw durable insert: {secs:.2} s");
        raw.push(secs);
        // One request takes at most the server's bulk limit; a larger file goes the SFTP way
        // (or through `tributary import csv`, in chunks).
        if bytes <= tributary_server::ServerConfig::default().max_bulk_bytes as u64 {
            let sshd_dir = dir.path().join(format!("unused-{run}"));
            if let Some(b) = in_child("bulk", "braze_users", &folder, args.rows, &sshd_dir)? {
                eprintln!("  bulk: {}", show(&b));
                bulk.push(b);
            }
        }
        for (stream, results) in [("braze_users", &mut sftp), (UNMAPPED, &mut unmapped)] {
            let sshd_dir = dir.path().join(format!("sshd-{stream}-{run}"));
            if let Some(s) = in_child("sftp", stream, &folder, args.rows, &sshd_dir)? {
                eprintln!("  sftp into {stream}: {}", show(&s));
                results.push(s);
            }
        }
    }
    let parse = median(parse);
    let raw = median(raw);
    let med = |v: &[PathResult], f: fn(&PathResult) -> f64| median(v.iter().map(f).collect());
    let mut body = format!(
        "## Imports: a Braze CSV export, file to profiles (issue 16)\n\n\
         Command: `cargo run --release -p tributary-bench -- import --rows {} --runs {} --write BENCHMARKS.md`\n\
         ({}; {}; SQLite; {} rows, {:.0} MB; medians of {} runs; memory: the peak RSS of the process that ran the \
         path, server and bench, each path in a fresh process).\n\n\
         | what | to events stored | to profiles committed | baseline | ratio (stored) | peak memory | target |\n\
         |---|---|---|---|---|---|---|\n",
        args.rows,
        args.runs,
        time::OffsetDateTime::now_utc().date(),
        machine(),
        args.rows,
        bytes as f64 / 1e6,
        args.runs
    );
    let mut row = |name: &str, v: &[PathResult]| {
        if v.is_empty() {
            return;
        }
        let stored = med(v, |r| r.stored_secs);
        let profiles = match v.iter().filter_map(|r| r.profiles_secs).collect::<Vec<_>>() {
            secs if secs.is_empty() => "none to build".to_string(),
            secs => format!("**{:.1} s**", median(secs)),
        };
        body.push_str(&format!(
            "| {name} | **{stored:.1} s** | {profiles} | parsing the file with the `csv` crate alone: {parse:.2} s | {:.1} × parse | {:.0} MiB | ≤ 3 × parse; profiles < 20 s; < 300 MB |\n",
            stored / parse,
            med(v, |r| r.peak_mib),
        ));
    };
    row("`/collect/bulk` (one request)", &bulk);
    row("`sftp-import` job from a local sshd", &sftp);
    row(
        "the same job into an unmapped stream (the import alone)",
        &unmapped,
    );
    body.push_str(&format!(
        "\nA second baseline, the floor of any path that stores the rows durably on SQLite: \
         inserting rows like the file's (JSON, its first 50,000 cycled) in batches of 5,000 into \
         a table with the event log's indexes takes **{raw:.1} s**, {:.1} × the parse; the \
         import alone stores at {:.1} × that insert.\n",
        raw / parse,
        med(&unmapped, |r| r.stored_secs) / raw,
    ));
    println!("{body}");
    if let Some(path) = args.write {
        write_section(&path, "import", &body)?;
    }
    Ok(())
}
