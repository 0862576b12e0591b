//! The web console in a real browser (headless Chromium over WebDriver) against `tributary
//! serve` and `braze-sim` processes: the seed's Braze setup done in the console alone, a
//! FilterQL error shown at its line, a job page that moves on its own, an observer who is not
//! offered what it cannot do (and refused when it posts anyway), and CSRF refused.

#[path = "support/browser.rs"]
mod browser;
mod support;

use std::time::Duration;

use browser::Browser;
use serde_json::json;
use support::{ADMIN, BrazeSim, Serve, api, create_token, wait_for};

const SIM_KEY: &str = "console-sim-key-42";

async fn send_users(serve: &Serve, users: &[(&str, &str)]) {
    let events: Vec<_> = users
        .iter()
        .map(|(id, country)| {
            json!({"external_id": id, "email": format!("{id}@example.com"), "country": country})
        })
        .collect();
    let (s, b) = api(serve, "POST", "/collect/json/braze_users", json!(events)).await;
    assert_eq!(s, 200, "{b}");
}

async fn sign_in(browser: &Browser, serve: &Serve, token: &str) {
    browser.goto(&serve.url("/")).await;
    // Not signed in: the console sends the browser to the sign-in page.
    browser.wait_for_text("Sign in with an access token").await;
    browser.fill("#token", token).await;
    browser.click("#login button").await;
    browser.wait_for_text("Overview").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_braze_setup_in_the_console_alone() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let sim = BrazeSim::start(&["--key", &format!("{SIM_KEY}=users.track")]);
    let serve = Serve::start(dir.path(), None, "serve");
    send_users(&serve, &[("ola", "NO"), ("kari", "NO"), ("john", "US")]).await;

    sign_in(&browser, &serve, ADMIN).await;
    // The overview's chart of events per minute, from the store's per-minute counts.
    browser
        .wait_for_text("braze_users: events per minute (max 3 events)")
        .await;
    browser.screenshot("overview").await;

    // An audience: a FilterQL mistake is shown at its line, then a valid one is checked
    // (a sample of members) and saved.
    browser.goto(&serve.url("/audiences/new")).await;
    browser
        .fill(
            "#audience-segment_ql",
            "FILTER AND (EXISTS email,\n  country = )\nFROM user ALIAS norway",
        )
        .await;
    browser.click("button[value=check]").await;
    let shown = browser.wait_for_text("line 2").await;
    assert!(shown.contains("column"), "{shown}");
    browser
        .fill(
            "#audience-segment_ql",
            "FILTER country = \"NO\" FROM user ALIAS norway",
        )
        .await;
    browser.click("button[value=check]").await;
    browser.wait_for_text("Exactly 2 members").await;
    browser.screenshot("audience-editor").await;
    browser.click("button[value=save]").await;
    browser.wait_for_text("Audience norway").await;
    // Its size per day, once the pipeline has computed and sampled it.
    wait_for("the audience's size of the day", async || {
        browser.goto(&serve.url("/audiences/norway")).await;
        browser
            .text()
            .await
            .contains("Size per day (last 90 days) (max 2 profiles)")
    })
    .await;

    // Data > Authorizations > Braze, against braze-sim.
    browser
        .goto(&serve.url("/authorizations/new?type=braze"))
        .await;
    browser.fill("#new-authorization-label", "Braze sim").await;
    browser.fill("#new-authorization-apikey", SIM_KEY).await;
    browser.fill("#new-authorization-instance", &sim.base).await;
    browser.screenshot("authorization-new").await;
    browser.click("button[value=create]").await;
    let list = browser
        .wait_for_text("authorization Braze sim created")
        .await;
    assert!(!list.contains(SIM_KEY), "a secret was shown again");

    // Data > Jobs > Export Audience with Existing Users: the estimate first, then Complete.
    browser
        .goto(&serve.url("/jobs/new?workflow=braze-export"))
        .await;
    browser.fill("#new-job-name", "Norway to Braze").await;
    browser.click("input[name=segment_ids][value=norway]").await;
    browser.click("input[name=withbackfill]").await;
    let form = browser.text().await;
    assert!(
        form.contains("one data point per user and audience"),
        "{form}"
    );
    browser.click("button[value=estimate]").await;
    let estimate = browser.wait_for_text("Requests to Braze").await;
    assert!(estimate.contains("Users\n2"), "{estimate}");
    browser.screenshot("job-estimate").await;
    browser.click("button[value=create]").await;
    browser.wait_for_text("job Norway to Braze created").await;
    wait_for("the backfill in braze-sim", async || {
        sim.get("/_sim/stats").await["users"].as_u64() == Some(2)
    })
    .await;

    // The job page moves on its own: a new Norwegian enters the audience and the page,
    // never reloaded, shows the third user sent.
    let url = browser.client.current_url().await.unwrap();
    browser.wait_for_text("\"users_sent\": 2").await;
    send_users(&serve, &[("nora", "NO")]).await;
    browser.wait_for_text("\"users_sent\": 3").await;
    assert_eq!(browser.client.current_url().await.unwrap(), url);
    let page = browser.wait_for_text("users sent per minute").await;
    assert!(page.contains("Errors per minute"), "{page}");
    browser.screenshot("job").await;
    let nora = sim.get("/_sim/users/nora").await;
    assert!(nora.get("user").is_some(), "{nora}");

    // Account > Access Tokens: a webhook token, shown once.
    browser.goto(&serve.url("/tokens")).await;
    browser.fill("#new-token-name", "braze webhooks").await;
    browser.click("input[name=roles][value=data_manager]").await;
    browser.click("#new-token button[value=create]").await;
    let shown = browser.wait_for_text("shown this once").await;
    browser.screenshot("tokens").await;
    let token = shown
        .lines()
        .skip_while(|l| *l != "Token")
        .nth(1)
        .expect("the new token")
        .trim()
        .to_string();
    let r = support::client()
        .post(serve.url("/c/1/braze_users"))
        .query(&[("key", token.as_str())])
        .json(&json!({"external_id": "via-webhook"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the token made in the console works");
    browser.goto(&serve.url("/tokens")).await;
    assert!(
        !browser.text().await.contains(&token),
        "the token was shown again"
    );

    // A profile found by any identity: its fields, audiences and its recent raw events.
    browser
        .goto(&serve.url("/profiles?field=external_id&value=ola"))
        .await;
    let profile = browser.wait_for_text("Recent events").await;
    assert!(
        profile.contains("norway") && profile.contains("\"email\": \"ola@example.com\""),
        "{profile}"
    );
    browser.screenshot("profile").await;

    for page in ["/streams", "/audiences", "/jobs", "/authorizations"] {
        browser.goto(&serve.url(page)).await;
        browser.screenshot(page.trim_start_matches('/')).await;
    }
    support::assert_no_secrets(&serve.log_text(), &[ADMIN, SIM_KEY, &token]);
    browser.close().await;
}

/// Import CSV in the console: a managed SFTP login made in the console (its password shown
/// once), a file in its folder, and an Import CSV job whose page shows the rows arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_csv_job_made_in_the_console() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (serve, root) = Serve::with_managed_sftp(dir.path(), &[]);
    sign_in(&browser, &serve, ADMIN).await;

    browser
        .goto(&serve.url("/authorizations/new?type=sftp-managed"))
        .await;
    browser.fill("#new-authorization-label", "uploads").await;
    browser.click("button[value=create]").await;
    let shown = browser.wait_for_text("shown this once").await;
    let fact = |name: &str| {
        shown
            .lines()
            .skip_while(|l| *l != name)
            .nth(1)
            .unwrap_or_else(|| panic!("{name} on {shown}"))
            .trim()
            .to_string()
    };
    let (username, password) = (fact("Username"), fact("Password"));
    browser.screenshot("authorization-managed").await;
    // What an upload over SFTP would leave in the login's folder.
    let folder = root.join(&username);
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(
        folder.join("users.csv"),
        "external_id,email\nc1,c1@example.com\nc2,c2@example.com\nc3,c3@example.com\n",
    )
    .unwrap();

    browser
        .goto(&serve.url("/jobs/new?workflow=sftp-import"))
        .await;
    browser.fill("#new-job-name", "Console import").await;
    browser.fill("#new-job-stream", "console_users").await;
    browser.fill("#new-job-filename", "users.csv").await;
    browser.screenshot("import-new").await;
    browser.click("button[value=create]").await;
    browser.wait_for_text("job Console import created").await;
    browser.wait_for_text("\"rows_stored\": 3").await;
    let page = browser
        .wait_for_text("rows stored per minute (max 3 rows)")
        .await;
    assert!(page.contains("Errors per minute (rows rejected)"), "{page}");
    browser.screenshot("import-job").await;
    browser.goto(&serve.url("/streams/console_users")).await;
    let stream = browser
        .wait_for_text("console_users: events per minute (max 3 events)")
        .await;
    assert!(stream.contains("c2@example.com"), "{stream}");
    support::assert_no_secrets(&serve.log_text(), &[ADMIN, &password]);
    browser.close().await;
}

/// A console session over plain HTTP (no browser): the cookie, and a page's CSRF token.
struct Session {
    http: reqwest::Client,
    base: String,
}

impl Session {
    async fn sign_in(serve: &Serve, token: &str) -> Session {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let s = Session {
            http,
            base: serve.base.clone(),
        };
        let csrf = s.csrf("/login").await;
        let r = s
            .http
            .post(format!("{}/login", s.base))
            .form(&[("csrf", csrf.as_str()), ("token", token), ("next", "/")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "signed in");
        s
    }

    async fn page(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn csrf(&self, path: &str) -> String {
        let (_, html) = self.page(path).await;
        let at = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
        html[at..].split('"').next().unwrap().to_string()
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .form(form)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csrf_and_roles_are_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path(), None, "serve");
    let tokens_before = api(&serve, "GET", "/v2/token", json!(null)).await.1["data"]
        .as_array()
        .unwrap()
        .len();

    // A post without the CSRF token (or with another session's) is refused; nothing changes.
    let admin = Session::sign_in(&serve, ADMIN).await;
    let other = Session::sign_in(&serve, ADMIN).await;
    let theirs = other.csrf("/tokens").await;
    for csrf in [None, Some("wrong"), Some(theirs.as_str())] {
        let mut form = vec![("name", "sneaky"), ("roles", "admin")];
        if let Some(c) = csrf {
            form.push(("csrf", c));
        }
        let (status, body) = admin.post("/tokens", &form).await;
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("nothing was changed"), "{body}");
    }
    let (status, _) = admin.post("/login", &[("token", ADMIN)]).await;
    assert_eq!(status, 403, "sign-in without its CSRF token");
    let tokens_after = api(&serve, "GET", "/v2/token", json!(null)).await.1["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(tokens_before, tokens_after);

    // An observer is not offered changes, and is refused when it posts one anyway.
    let observer = create_token(&serve.base, 1, &["observer"]).await;
    let watcher = Session::sign_in(&serve, &observer).await;
    let (_, overview) = watcher.page("/").await;
    assert!(!overview.contains("href=\"/tokens\""), "{overview}");
    let (_, auths) = watcher.page("/authorizations").await;
    assert!(!auths.contains("Create new authorization"), "{auths}");
    let (_, jobs) = watcher.page("/jobs").await;
    assert!(!jobs.contains("Create new job"), "{jobs}");
    let csrf = watcher.csrf("/").await;
    let (status, body) = watcher
        .post(
            "/authorizations/new?type=braze",
            &[
                ("csrf", &csrf),
                ("label", "nope"),
                ("apikey", "k"),
                ("instance", "US-01"),
            ],
        )
        .await;
    assert_eq!(status, 200, "the form again, with the API's refusal");
    assert!(body.contains("may not manage authorizations"), "{body}");
    let stored = api(&serve, "GET", "/v2/auth", json!(null)).await.1["data"].clone();
    assert_eq!(stored, json!([]), "nothing was created");

    // Signing out ends the session; deleting a token ends its sessions.
    let csrf = admin.csrf("/").await;
    let (status, _) = admin.post("/logout", &[("csrf", &csrf)]).await;
    assert_eq!(status, 303);
    assert_eq!(admin.page("/").await.0, 303, "signed out");
    let id = api(&serve, "GET", "/v2/token", json!(null)).await.1["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["roles"] == json!(["observer"]))
        .unwrap()["id"]
        .as_i64()
        .unwrap();
    let r = support::client()
        .delete(serve.url(&format!("/v2/token/{id}")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        watcher.page("/").await.0,
        303,
        "the deleted token's session ended"
    );
}
