//! End to end, the seed's inbound case: `braze-sim` runs webhook campaigns whose bodies carry
//! Braze's Liquid tags against `tributary serve`'s `/c/{aid}/braze_users`, and profiles and
//! audiences move. A replayed dispatch (Braze retrying deliveries it already made) is stored
//! once, as the stream's `dedup_fields` say.

mod support;

use serde_json::{Value, json};
use support::{ADMIN, BrazeSim, Serve, api, client, create_token, stream_count, wait_for};

const SIM_KEY: &str = "sim-rest-key-webhooks";

/// The kind of body a Braze user writes in a webhook campaign's composer.
const TEMPLATE: &str = r#"{"external_id": "{{${user_id}}}", "braze_id": "{{${braze_id}}}",
 "email": "{{${email_address}}}", "first_name": "{{${first_name}}}",
 "country": "{{${country} | default: 'US'}}", "dispatch_id": "{{campaign.${dispatch_id}}}",
 "campaign_id": "{{campaign.${api_id}}}"}"#;

/// Starts a campaign to `users`; returns its dispatch id once every delivery is settled.
async fn campaign(sim: &BrazeSim, url: &str, users: &[&str], dispatch: Option<&str>) -> String {
    let before = sim.get("/_sim/stats").await["webhooks"].clone();
    let mut body = json!({"url": url, "users": users, "body": TEMPLATE,
                          "campaign_id": "welcome-series", "backoff_ms": 50});
    if let Some(d) = dispatch {
        body["dispatch_id"] = json!(d);
    }
    let r = client()
        .post(format!("{}/_sim/webhooks", sim.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let sent: Value = r.json().await.unwrap_or_default();
    assert_eq!(status, 202, "{sent}");
    assert_eq!(sent["users"], users.len());
    let settled =
        |s: &Value| s["delivered"].as_u64().unwrap_or(0) + s["failed"].as_u64().unwrap_or(0);
    let target = settled(&before) + users.len() as u64;
    wait_for("the campaign's deliveries", async || {
        settled(&sim.get("/_sim/stats").await["webhooks"]) >= target
    })
    .await;
    let stats = sim.get("/_sim/stats").await["webhooks"].clone();
    assert_eq!(
        stats["failed"], before["failed"],
        "no delivery failed: {stats}"
    );
    sent["dispatch_id"].as_str().unwrap().to_string()
}

async fn audience_size(serve: &Serve, slug: &str) -> i64 {
    let (_, b) = api(
        serve,
        "GET",
        &format!("/api/segment/{slug}/size"),
        Value::Null,
    )
    .await;
    b["data"]["size"].as_i64().unwrap_or(-1)
}

async fn profile(serve: &Serve, external_id: &str) -> Value {
    let (_, b) = api(
        serve,
        "GET",
        &format!("/api/entity/user/external_id/{external_id}"),
        Value::Null,
    )
    .await;
    b["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_campaign_with_liquid_tags_moves_profiles_and_audiences() {
    let dir = tempfile::tempdir().unwrap();
    let sim = BrazeSim::start(&["--key", &format!("{SIM_KEY}=users.track")]);
    let serve = Serve::start(dir.path(), None, "serve");
    let key = create_token(&serve.base, 1, &["data_manager"]).await;
    let hook = serve.url(&format!("/c/1/braze_users?key={key}"));

    let r = client()
        .post(serve.url("/api/segment"))
        .bearer_auth(ADMIN)
        .body(r#"FILTER country = "NO" FROM user ALIAS norway"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .put(serve.url("/v2/stream/braze_users"))
        .bearer_auth(ADMIN)
        .json(&json!({"dedup_fields": ["dispatch_id", "braze_id"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    sim.track(
        SIM_KEY,
        json!([
            {"external_id": "ann", "email": "ann@example.com", "first_name": "Ann", "country": "NO"},
            {"external_id": "bo", "email": "bo@example.com", "first_name": "Bo", "country": "NO"},
            {"external_id": "cy", "email": "cy@example.com", "first_name": "Cy"},
        ]),
    )
    .await;

    // First campaign: three profiles built from the rendered bodies; two in Norway.
    let first = campaign(&sim, &hook, &["ann", "bo", "cy"], None).await;
    assert_eq!(stream_count(&serve, "braze_users").await, 3);
    wait_for("the profiles and the audience", async || {
        audience_size(&serve, "norway").await == 2
    })
    .await;
    let ann = profile(&serve, "ann").await;
    assert_eq!(ann["first_name"], "Ann", "{ann}");
    assert_eq!(ann["email"], "ann@example.com", "{ann}");
    let cy = profile(&serve, "cy").await;
    assert_eq!(cy["country"], "US", "the Liquid default: {cy}");

    // Braze delivers the same dispatch again (its retries): nothing new is stored.
    campaign(&sim, &hook, &["ann", "bo", "cy"], Some(&first)).await;
    assert_eq!(stream_count(&serve, "braze_users").await, 3);

    // Ann moves to Sweden in Braze; the next campaign carries it and she leaves the audience.
    sim.track(SIM_KEY, json!([{"external_id": "ann", "country": "SE"}]))
        .await;
    campaign(&sim, &hook, &["ann"], None).await;
    assert_eq!(stream_count(&serve, "braze_users").await, 4);
    wait_for("ann to leave norway", async || {
        audience_size(&serve, "norway").await == 1
    })
    .await;
    assert_eq!(profile(&serve, "ann").await["country"], "SE");
    let requests = sim.get("/_sim/stats").await["webhooks"].clone();
    assert_eq!(requests["by_status"]["200"], 7, "{requests}");
}
