//! Issue 17's "pages answer in well under a second": the web console's main pages, signed in,
//! on an account with profiles, audiences and a day of activity, against the empty handler
//! (`/healthz`) of the same server in the same run.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::json;
use tributary_core::NewEvent;

use crate::ingest::{Tributary, start_tributary};
use crate::report::{machine, median, write_section};

#[derive(clap::Args)]
pub struct Args {
    /// Profiles in the account (half of them in the `norway` audience).
    #[arg(long, default_value_t = 100_000)]
    profiles: usize,
    /// Requests per page (the median and the 95th percentile are reported).
    #[arg(long, default_value_t = 40)]
    requests: usize,
    #[arg(long)]
    write: Option<PathBuf>,
}

/// The pages measured, each as a user opens it.
const PAGES: &[(&str, &str)] = &[
    ("overview", "/"),
    ("a stream", "/streams/braze_users"),
    // One match: the answer is a redirect to the profile's page, measured next.
    (
        "profile search",
        "/profiles?field=email&value=user777%40example.com",
    ),
    ("audiences", "/audiences"),
    ("an audience", "/audiences/norway"),
    ("new export job", "/jobs/new?workflow=braze-export"),
];

/// The value of cookie `name` among a response's `Set-Cookie` headers.
fn cookie(response: &reqwest::Response, name: &str) -> anyhow::Result<String> {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .map(str::to_string)
        .ok_or_else(|| anyhow::anyhow!("no {name} cookie"))
}

/// `application/x-www-form-urlencoded` text of one value.
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Signs in as a user would (the sign-in form's CSRF cookie, then the token); returns the
/// session cookie to send.
async fn sign_in(http: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<String> {
    let form = http.get(format!("{base}/login")).send().await?;
    let login = cookie(&form, "tributary_login")?;
    let html = form.text().await?;
    let at = html
        .find("name=\"csrf\" value=\"")
        .ok_or_else(|| anyhow::anyhow!("no CSRF field on /login"))?
        + 19;
    let csrf = html[at..].split('"').next().unwrap_or_default().to_string();
    let answer = http
        .post(format!("{base}/login"))
        .header("cookie", format!("tributary_login={login}"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "csrf={}&token={}&next=%2F",
            form_encode(&csrf),
            form_encode(token)
        ))
        .send()
        .await?;
    anyhow::ensure!(
        answer.status() == 303,
        "sign-in: {}: {}",
        answer.status(),
        answer.text().await.unwrap_or_default()
    );
    Ok(format!(
        "tributary_session={}",
        cookie(&answer, "tributary_session")?
    ))
}

/// Profiles, two audiences and their sizes computed, as the console will show them.
async fn fill(t: &Tributary, base: &str, profiles: usize) -> anyhow::Result<()> {
    let now = tributary_core::to_micros(time::OffsetDateTime::now_utc());
    let events: Vec<NewEvent> = (0..profiles)
        .map(|i| NewEvent {
            account_id: 1,
            stream: "braze_users".into(),
            received_at: now,
            event_time: now,
            payload:
                json!({"external_id": format!("u{i}"), "email": format!("user{i}@example.com"),
                             "country": if i % 2 == 0 { "NO" } else { "US" }})
                .to_string(),
            dedup_key: None,
        })
        .collect();
    for chunk in events.chunks(10_000) {
        t.store.append_events(chunk).await?;
    }
    for statement in [
        "FILTER country = \"NO\" FROM user ALIAS norway",
        "FILTER AND (EXISTS email, country = \"US\") FROM user ALIAS us_known",
    ] {
        let r = reqwest::Client::new()
            .post(format!("{base}/api/segment"))
            .bearer_auth(&t.admin)
            .body(statement)
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "audience: {}", r.text().await?);
    }
    t.catch_up().await?;
    // The recompute of the two audiences follows the pipeline.
    let started = Instant::now();
    while t.store.audience_size(1, "norway").await? < (profiles / 2) as u64 {
        anyhow::ensure!(
            started.elapsed().as_secs() < 300,
            "the audience was not computed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Milliseconds of `n` sequential GETs of `path`.
async fn timings(
    http: &reqwest::Client,
    url: &str,
    session: &str,
    n: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let r = http.get(url).header("cookie", session).send().await?;
        let status = r.status();
        let body = r.bytes().await?;
        anyhow::ensure!(status == 200 || status == 303, "{url}: {status}");
        anyhow::ensure!(status == 303 || !body.is_empty(), "{url}: empty");
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(ms)
}

fn p95(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[(values.len() * 95 / 100).min(values.len() - 1)]
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let rows = runtime.block_on(async {
        let t = start_tributary().await?;
        // The built-in `braze_users` mapping and audiences, as a new account has.
        tributary_engine::builtin::seed_account(t.store.as_ref(), 1).await?;
        let base = t.url.trim_end_matches("/c/1/braze_users").to_string();
        fill(&t, &base, args.profiles).await?;
        // Redirects are the console's answers here (a sign-in is a 303), not to be followed.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let session = sign_in(&http, &base, &t.admin).await?;
        let healthz = timings(&http, &format!("{base}/healthz"), "", args.requests).await?;
        let baseline = median(healthz.clone());
        let mut rows = vec![(
            "empty handler (`/healthz`), the baseline".to_string(),
            baseline,
            p95(healthz),
            1.0,
        )];
        let found = http
            .get(format!("{base}{}", PAGES[2].1))
            .header("cookie", &session)
            .send()
            .await?;
        let profile = found
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| anyhow::anyhow!("the search found no profile"))?
            .to_string();
        let mut pages: Vec<(&str, &str)> = PAGES.to_vec();
        pages.insert(3, ("a profile", profile.as_str()));
        for (name, path) in pages {
            let ms = timings(&http, &format!("{base}{path}"), &session, args.requests).await?;
            let m = median(ms.clone());
            eprintln!("  {name}: median {m:.1} ms");
            rows.push((format!("{name} (`{path}`)"), m, p95(ms), m / baseline));
        }
        t.stop().await;
        anyhow::Ok(rows)
    })?;
    let mut body = format!(
        "## The web console's pages (issue 17)\n\n\
         Command: `cargo run --release -p tributary-bench -- console --profiles {} --requests {}{}`\n\
         ({}; {}; SQLite; an account with {} profiles and two audiences of half of them; each page \
         requested {} times in a row by a signed-in session, the server in the same process; \
         target: well under a second).\n\n\
         | page | median | 95th percentile | × the empty handler |\n|---|---|---|---|\n",
        args.profiles,
        args.requests,
        args.write
            .as_ref()
            .map_or(String::new(), |p| format!(" --write {}", p.display())),
        time::OffsetDateTime::now_utc().date(),
        machine(),
        args.profiles,
        args.requests,
    );
    for (name, m, p, ratio) in &rows {
        body.push_str(&format!(
            "| {name} | {m:.1} ms | {p:.1} ms | {ratio:.0} × |\n"
        ));
    }
    print!("{body}");
    if let Some(path) = &args.write {
        write_section(path, "console", &body)?;
    }
    Ok(())
}
