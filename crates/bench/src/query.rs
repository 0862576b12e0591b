//! Issue 3's scenario: evaluating a 10-condition FilterQL statement against a 50-field profile,
//! and applying a compiled LQL mapping to one event, each on one thread, next to baselines
//! measured in the same run: the same 10 checks hand-written in Rust over the same profile,
//! and `serde_json` parsing the same event.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use time::macros::datetime;
use tributary_query::eval::Profile;
use tributary_query::lql::compile;
use tributary_query::{EvalContext, Value, matches, parse_filter, parse_lql};

use crate::report::{machine, median, write_section};

#[derive(clap::Args)]
pub struct Args {
    /// Iterations per measurement.
    #[arg(long, default_value_t = 1_000_000)]
    iterations: u32,
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Replace the `query` section of this file (BENCHMARKS.md).
    #[arg(long)]
    write: Option<PathBuf>,
}

const FILTER: &str = r#"FILTER AND (
    country == "United States",
    age > 21,
    email LIKE "*@example.com",
    last_seen > "now-30d",
    plan IN ("gold", "platinum"),
    tags CONTAINS "vip",
    EXISTS phone_number,
    total_spent BETWEEN 100 AND 10000,
    gender != "unknown",
    visits >= 3
) ALIAS bench"#;

const LQL: &str = r#"SELECT
    braze_id, email(email) AS email, first_name, last_name, city, country, gender, language,
    todate(date_of_birth) AS date_of_birth KIND date, phone_number, time_zone, twitter_handle,
    count(braze_id) AS webhook_ct, now() AS first_seen MERGEOP oldest, now() AS last_seen
FROM braze_users INTO user BY braze_id OR email ALIAS braze_users"#;

fn profile() -> Profile {
    let mut p = Profile::default();
    p.insert("country".into(), Value::String("United States".into()));
    p.insert("age".into(), Value::Int(42));
    p.insert(
        "email".into(),
        Value::String("john.smith@example.com".into()),
    );
    p.insert(
        "last_seen".into(),
        Value::Time(datetime!(2026-06-10 08:00 UTC)),
    );
    p.insert("plan".into(), Value::String("gold".into()));
    p.insert(
        "tags".into(),
        Value::Array(
            ["new", "vip", "mobile"]
                .map(|t| Value::String(t.into()))
                .to_vec(),
        ),
    );
    p.insert("phone_number".into(), Value::String("5551231234".into()));
    p.insert("total_spent".into(), Value::Number(1234.5));
    p.insert("gender".into(), Value::String("male".into()));
    p.insert("visits".into(), Value::Int(17));
    for i in p.len()..50 {
        p.insert(
            format!("custom_field_{i}"),
            Value::String(format!("value {i}")),
        );
    }
    p
}

/// The same ten checks, hand-written: the ceiling for evaluating this filter.
fn native(p: &Profile, now: time::OffsetDateTime) -> bool {
    let s = |k: &str| match p.get(k) {
        Some(Value::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let f = |k: &str| p.get(k).and_then(Value::as_f64);
    s("country") == Some("United States")
        && f("age").is_some_and(|a| a > 21.0)
        && s("email").is_some_and(|e| e.ends_with("@example.com"))
        && matches!(p.get("last_seen"), Some(Value::Time(t)) if *t > now - time::Duration::days(30))
        && s("plan").is_some_and(|x| x == "gold" || x == "platinum")
        && matches!(p.get("tags"), Some(Value::Array(a)) if a.iter().any(|t| matches!(t, Value::String(s) if s.contains("vip"))))
        && p.get("phone_number").is_some_and(|v| !v.is_null())
        && f("total_spent").is_some_and(|t| t > 100.0 && t < 10_000.0)
        && s("gender") != Some("unknown")
        && f("visits").is_some_and(|v| v >= 3.0)
}

fn per_second(iterations: u32, f: impl Fn(u32)) -> f64 {
    let started = Instant::now();
    for i in 0..iterations {
        f(i);
    }
    f64::from(iterations) / started.elapsed().as_secs_f64()
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let now = datetime!(2026-06-15 12:00 UTC);
    let filter = parse_filter(FILTER)?.filter;
    let p = profile();
    let ctx = EvalContext::at(now);
    anyhow::ensure!(
        matches(&filter, &p, &ctx) && native(&p, now),
        "the benchmark profile must match"
    );
    let plan = compile(&parse_lql(LQL)?.remove(0))?;
    let event_text = json!({
        "city": "AnyTown", "country": "United States", "first_name": "John", "gender": "male",
        "language": "English", "last_name": "Smith", "date_of_birth": "19820101",
        "phone_number": "5551231234", "time_zone": "GMT+7", "twitter_handle": "johnsmith",
        "email": "John.Smith@Email.com", "braze_id": "xxxxxx"
    })
    .to_string();
    let event: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&event_text)?;
    anyhow::ensure!(
        plan.apply(&event, now)
            .is_some_and(|m| m.identities.len() == 2),
        "the mapping must produce both identities"
    );

    let (mut filter_rate, mut native_rate, mut map_rate, mut parse_rate, mut parse_map_rate) =
        (vec![], vec![], vec![], vec![], vec![]);
    for r in 0..args.runs {
        eprintln!("run {}/{}", r + 1, args.runs);
        filter_rate.push(per_second(args.iterations, |_| {
            black_box(matches(black_box(&filter), black_box(&p), &ctx));
        }));
        native_rate.push(per_second(args.iterations, |_| {
            black_box(native(black_box(&p), now));
        }));
        map_rate.push(per_second(args.iterations, |_| {
            black_box(plan.apply(black_box(&event), now));
        }));
        parse_rate.push(per_second(args.iterations, |_| {
            black_box(
                serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(black_box(
                    &event_text,
                ))
                .ok(),
            );
        }));
        parse_map_rate.push(per_second(args.iterations, |_| {
            if let Ok(e) = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(
                black_box(&event_text),
            ) {
                black_box(plan.apply(&e, now));
            }
        }));
    }
    let (fr, nr, mr, pr, pmr) = (
        median(filter_rate),
        median(native_rate),
        median(map_rate),
        median(parse_rate),
        median(parse_map_rate),
    );
    let report = format!(
        "## Query languages (issue 3)

Command: `cargo run --release -p tributary-bench -- query --runs {runs} --write BENCHMARKS.md`
({date}; {machine}; one thread; medians of {runs} runs of {it} iterations).

| what | result | baseline (same run) | ratio | target |
|---|---|---|---|---|
| 10-condition FilterQL statement vs a 50-field profile (all conditions true, so all ten run) | **{fr:.0} evaluations/s** ({fns:.0} ns each) | the same ten checks hand-written in Rust: {nr:.0}/s | {fratio:.2} × native | ≥ 2,000,000/s per core |
| LQL mapping of the braze_users webhook (15 columns, 2 identities) applied to a parsed event | **{mr:.0} events/s** ({mns:.0} ns each) | `serde_json` parse of the same event: {pr:.0}/s | {mratio:.2} × JSON parse | ≥ 500,000/s per core |
| parse + mapping together (what the pipeline does per raw event) | {pmr:.0} events/s | | | |

The filter is in `crates/bench/src/query.rs` (`FILTER`): equality, numeric coercion, LIKE, date math, IN, CONTAINS on an array, EXISTS, BETWEEN, `!=`, `>=`.
",
        runs = args.runs,
        date = time::OffsetDateTime::now_utc().date(),
        machine = machine(),
        it = args.iterations,
        fns = 1e9 / fr,
        mns = 1e9 / mr,
        fratio = fr / nr,
        mratio = mr / pr,
    );
    println!("{report}");
    if let Some(path) = &args.write {
        write_section(path, "query", &report)?;
    }
    Ok(())
}
