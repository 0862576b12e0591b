//! Issue 3's scenario: evaluating a 10-condition FilterQL statement against a 50-field profile,
//! and mapping a Braze webhook with the built-in `braze_users` query as the pipeline does
//! (`Plans::map`: the stored text parsed straight into the evaluator's map, then every query
//! of the stream applied), each on one thread, next to baselines measured in the same run: the
//! same 10 checks hand-written in Rust over the same profile, and `serde_json` parsing the same
//! event into the same map.

use std::hint::black_box;

use anyhow::Context;
use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use time::macros::datetime;
use tributary_core::{Definition, DefinitionKind, StoredEvent};
use tributary_engine::builtin;
use tributary_profile::Plans;
use tributary_query::eval::Profile;
use tributary_query::{EvalContext, Value, matches, parse_filter};

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
    let plans = Plans::compile(&[Definition {
        account_id: 1,
        kind: DefinitionKind::Query,
        name: builtin::BRAZE_USERS_ALIAS.into(),
        text: builtin::BRAZE_USERS_LQL.into(),
        created_at: 0,
        updated_at: 0,
    }]);
    let plan = plans
        .all()
        .next()
        .context("the built-in braze_users query compiles")?;
    // A Braze webhook as the seed's integration sends it: the three identities the built-in
    // query links by, standard fields and custom attributes.
    let payload = json!({
        "external_id": "user-8812", "braze_id": "5f00000000000000000000ab",
        "email": "John.Smith@Email.com", "first_name": "John", "last_name": "Smith",
        "city": "AnyTown", "country": "United States", "gender": "male", "language": "English",
        "date_of_birth": "19820101", "phone_number": "5551231234", "time_zone": "GMT+7",
        "twitter_handle": "johnsmith", "plan": "gold", "loyalty_points": 1200,
        "favourite_store": "Main Street"
    })
    .to_string();
    let event = StoredEvent {
        id: 1,
        stream: "braze_users".into(),
        received_at: 0,
        event_time: tributary_core::to_micros(now),
        payload,
    };
    let parsed: Profile = serde_json::from_str(&event.payload)?;
    let mapped = plans.map(&event).context("the stream has a query")?;
    anyhow::ensure!(
        mapped.keys.len() == 3,
        "the mapping must produce the three identities: {:?}",
        mapped.keys
    );
    let columns = plan.fields.len();

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
            black_box(plan.apply(black_box(&parsed), now));
        }));
        parse_rate.push(per_second(args.iterations, |_| {
            black_box(serde_json::from_str::<Profile>(black_box(&event.payload)).ok());
        }));
        parse_map_rate.push(per_second(args.iterations, |_| {
            black_box(plans.map(black_box(&event)));
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
| the built-in `braze_users` query ({columns} columns, 3 identities) applied to a parsed Braze webhook | **{mr:.0} events/s** ({mns:.0} ns each) | `serde_json` parse of the same event into the same map: {pr:.0}/s | {mratio:.2} × JSON parse | ≥ 500,000/s per core |
| parse + mapping as the pipeline does it (`Plans::map` on the stored text) | **{pmr:.0} events/s** ({pmns:.0} ns each) | the parse alone: {pr:.0}/s | {pmratio:.2} × JSON parse | |

The filter is in `crates/bench/src/query.rs` (`FILTER`): equality, numeric coercion, LIKE, date math, IN, CONTAINS on an array, EXISTS, BETWEEN, `!=`, `>=`.
The webhook carries `external_id`, `braze_id` and `email` (the query links by all three), eleven standard fields and three custom attributes (kept by `unmapped()`).
",
        runs = args.runs,
        date = time::OffsetDateTime::now_utc().date(),
        machine = machine(),
        it = args.iterations,
        fns = 1e9 / fr,
        mns = 1e9 / mr,
        fratio = fr / nr,
        mratio = mr / pr,
        pmns = 1e9 / pmr,
        pmratio = pmr / pr,
    );
    println!("{report}");
    if let Some(path) = &args.write {
        write_section(path, "query", &report)?;
    }
    Ok(())
}
