//! Webhook campaigns (docs/braze.md §4): a body template with Braze's Liquid personalization tags,
//! rendered per user and sent with `User-Agent: Braze Sender <hash>`, retried as Braze
//! retries (408, 429, 5xx and connection errors; not 3xx or other 4xx), with exponential
//! backoff, up to five retries, and a 90 s timeout by default.
//!
//! Deviation, on purpose: Braze only sends to ports 80 and 443; the simulator sends anywhere,
//! since tests listen on loopback ports.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::users::User;
use crate::{Sim, message};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    pub url: String,
    #[serde(default = "default_method")]
    pub method: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The body template (raw text with Liquid tags); GET sends none.
    #[serde(default)]
    pub body: String,
    /// External ids of the recipients.
    pub users: Vec<String>,
    #[serde(default = "default_campaign_id")]
    pub campaign_id: String,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// First retry delay; doubles each time (Braze spreads five retries over 30 minutes; tests
    /// use milliseconds).
    #[serde(default = "default_backoff_ms")]
    pub backoff_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Send as this dispatch again (a test device: Braze's retries of a delivery carry their
    /// dispatch's id, so a receiver that already stored it can recognise them). A new id when
    /// absent.
    #[serde(default)]
    pub dispatch_id: Option<String>,
}

fn default_method() -> String {
    "POST".into()
}
fn default_campaign_id() -> String {
    "sim-campaign".into()
}
fn default_retries() -> u32 {
    5
}
fn default_backoff_ms() -> u64 {
    20_000
}
fn default_timeout_ms() -> u64 {
    90_000
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct WebhookStats {
    pub attempts: u64,
    pub delivered: u64,
    /// Gave up: a status Braze does not retry, or retries exhausted.
    pub failed: u64,
    pub by_status: BTreeMap<String, u64>,
}

/// `POST /_sim/webhooks`: renders and sends the campaign in the background; answers 202 with
/// the dispatch id and how many users it will be sent to.
pub async fn send_campaign(
    State(sim): State<Arc<Sim>>,
    Json(campaign): Json<Campaign>,
) -> Response {
    let method = match reqwest::Method::from_bytes(campaign.method.to_uppercase().as_bytes()) {
        Ok(m) if ["GET", "POST", "PUT", "DELETE"].contains(&m.as_str()) => m,
        _ => {
            return message(
                StatusCode::BAD_REQUEST,
                "method must be GET, POST, PUT or DELETE",
            );
        }
    };
    if reqwest::Url::parse(&campaign.url).is_err() {
        return message(StatusCode::BAD_REQUEST, "url is not a valid URL");
    }
    let dispatch_id = campaign
        .dispatch_id
        .clone()
        .unwrap_or_else(|| format!("dispatch-{:016x}", rand::random::<u64>()));
    let rendered: Vec<String> = {
        let state = sim.state();
        campaign
            .users
            .iter()
            .filter_map(|id| state.users.by_external_id(id))
            .map(|u| render(&campaign.body, u, &campaign.campaign_id, &dispatch_id))
            .collect()
    };
    let count = rendered.len();
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_millis(campaign.timeout_ms))
        .build()
    {
        Ok(c) => c,
        Err(e) => return message(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let campaign = Arc::new(campaign);
    tokio::spawn(async move {
        for body in rendered {
            deliver(&sim, &client, &campaign, method.clone(), body).await;
        }
    });
    (
        StatusCode::ACCEPTED,
        Json(json!({"message": "success", "dispatch_id": dispatch_id, "users": count})),
    )
        .into_response()
}

async fn deliver(
    sim: &Sim,
    client: &reqwest::Client,
    campaign: &Campaign,
    method: reqwest::Method,
    body: String,
) {
    let mut delay = Duration::from_millis(campaign.backoff_ms.max(1));
    for attempt in 0..=campaign.max_retries {
        let mut request = client
            .request(method.clone(), &campaign.url)
            .header("User-Agent", "Braze Sender 5f0c2a3b9e");
        for (name, value) in &campaign.headers {
            request = request.header(name, value);
        }
        if method != reqwest::Method::GET {
            request = request.body(body.clone());
        }
        let outcome = request.send().await;
        let (label, retry, retry_after) = match &outcome {
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = r
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(Duration::from_secs);
                let retry = status == 408 || status == 429 || status >= 500;
                (status.to_string(), retry, retry_after)
            }
            // 599: a connection error, and timeouts (Braze retries both).
            Err(_) => ("599".to_string(), true, None),
        };
        let delivered = outcome.as_ref().is_ok_and(|r| r.status().is_success());
        {
            let mut state = sim.state();
            let stats = &mut state.stats.webhooks;
            stats.attempts += 1;
            *stats.by_status.entry(label).or_default() += 1;
            if delivered {
                stats.delivered += 1;
            } else if !retry || attempt == campaign.max_retries {
                stats.failed += 1;
            }
        }
        if delivered || !retry {
            return;
        }
        tokio::time::sleep(retry_after.unwrap_or(delay).min(Duration::from_secs(600))).await;
        delay = delay.saturating_mul(2);
    }
}

/// Renders Braze's personalization tags: `{{${field}}}`, `{{custom_attribute.${name}}}` (dot
/// paths and `[i]`), `{{campaign.${api_id}}}`, `{{campaign.${dispatch_id}}}`, each with an
/// optional `| default: 'text'`. Unknown tags and missing values render empty.
pub fn render(template: &str, user: &User, campaign_id: &str, dispatch_id: &str) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        // `{{${x}}}` ends at the first `}}` after the inner `}`: find the tag's end by
        // balancing braces.
        let Some(end) = tag_end(after) else {
            out.push_str(&rest[start..]);
            return out;
        };
        let tag = &after[..end];
        out.push_str(&evaluate(tag, user, campaign_id, dispatch_id));
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

fn tag_end(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => depth += 1,
            b'}' if depth > 0 => depth -= 1,
            b'}' if bytes.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn evaluate(tag: &str, user: &User, campaign_id: &str, dispatch_id: &str) -> String {
    let (expr, default) = match tag.split_once('|') {
        Some((e, filter)) => {
            let filter = filter.trim();
            let default = filter
                .strip_prefix("default:")
                .map(|d| d.trim().trim_matches(['\'', '"']).to_string());
            (e.trim(), default)
        }
        None => (tag.trim(), None),
    };
    let value = lookup(expr, user, campaign_id, dispatch_id).filter(|v| !v.is_empty());
    value.or(default).unwrap_or_default()
}

fn lookup(expr: &str, user: &User, campaign_id: &str, dispatch_id: &str) -> Option<String> {
    let name = |prefix: &str| {
        expr.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("${"))
            .and_then(|r| r.strip_suffix('}'))
    };
    if let Some(field) = name("campaign.") {
        return match field {
            "api_id" => Some(campaign_id.to_string()),
            "dispatch_id" => Some(dispatch_id.to_string()),
            _ => None,
        };
    }
    if let Some(rest) = expr.strip_prefix("custom_attribute.${") {
        let (attribute, path) = rest.split_once('}')?;
        let mut value = user.attributes.get(attribute)?;
        for step in path_steps(path)? {
            value = match step {
                Step::Key(k) => value.get(k)?,
                Step::Index(i) => value.get(i)?,
            };
        }
        return Some(text_of(value));
    }
    let field = name("")?;
    let attr = |k: &str| user.attributes.get(k).map(text_of);
    match field {
        "user_id" => user.external_id.clone(),
        "braze_id" => Some(user.braze_id.clone()),
        "email_address" => attr("email"),
        "phone_number" => attr("phone"),
        "date_of_birth" => attr("dob"),
        "city" => attr("home_city"),
        "random_bucket_number" => {
            let n = user
                .braze_id
                .bytes()
                .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
            Some((n % 10_000).to_string())
        }
        "first_name" | "last_name" | "country" | "language" | "time_zone" | "gender" => attr(field),
        _ => None,
    }
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

/// `[0].name.first` → index 0, key name, key first; `None` when malformed.
fn path_steps(path: &str) -> Option<Vec<Step<'_>>> {
    let mut steps = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let (index, r) = r.split_once(']')?;
            steps.push(Step::Index(index.trim().parse().ok()?));
            rest = r;
        } else if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            steps.push(Step::Key(&r[..end]));
            rest = &r[end..];
        } else {
            return None;
        }
    }
    Some(steps)
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    #[test]
    fn renders_the_contract_tags_with_defaults() {
        let mut attributes = Map::new();
        attributes.insert("first_name".into(), json!("Ann"));
        attributes.insert("email".into(), json!("ann@example.com"));
        attributes.insert("pets".into(), json!([{"name": "Rex"}]));
        let user = User {
            braze_id: "b1".into(),
            external_id: Some("u1".into()),
            user_aliases: vec![],
            attributes,
            custom_events: vec![],
            purchases: vec![],
            created_at: String::new(),
            updates: 0,
            touched: 0,
        };
        let body = render(
            r#"{"id":"{{${user_id}}}","name":"{{${first_name}}}","city":"{{${city} | default: 'Nowhere'}}","pet":"{{custom_attribute.${pets}[0].name}}","d":"{{campaign.${dispatch_id}}}","x":"{{${unknown}}}"}"#,
            &user,
            "c1",
            "d1",
        );
        assert_eq!(
            body,
            r#"{"id":"u1","name":"Ann","city":"Nowhere","pet":"Rex","d":"d1","x":""}"#
        );
    }
}
