//! `GET /api/schema/{table}/fieldinfo?fields=a,b&limit=N`: Lytics' field info, what values a
//! profile field holds across the account: how many profiles have it, and its most frequent
//! terms with their counts. Computed on request by reading every profile once.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value as Json, json};
use tributary_profile::ProfileState;

use super::profiles::{masks, only_user_table};
use crate::AppState;
use crate::api::{ApiError, ApiResult, ok};
use crate::auth::{Authorized, ReadProfiles};

const MAX_FIELDS: usize = 50;
const DEFAULT_TERMS: usize = 20;
const MAX_TERMS: usize = 1_000;
/// Distinct terms counted per field; past it new terms are no longer counted (the answer says
/// `more_terms`, and the cardinality is a lower bound).
const MAX_DISTINCT: usize = 100_000;
const PAGE: u32 = 1_000;

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Params {
    fields: Option<String>,
    limit: Option<usize>,
}

#[derive(Default)]
struct Tally {
    present: u64,
    absent: u64,
    terms: HashMap<String, u64>,
    overflowed: bool,
}

impl Tally {
    fn count(&mut self, value: Option<Json>) {
        let Some(value) = value.filter(|v| !v.is_null()) else {
            self.absent += 1;
            return;
        };
        self.present += 1;
        let mut add = |term: String| {
            if let Some(n) = self.terms.get_mut(&term) {
                *n += 1;
            } else if self.terms.len() < MAX_DISTINCT {
                self.terms.insert(term, 1);
            } else {
                self.overflowed = true;
            }
        };
        match value {
            Json::Array(items) => items.into_iter().for_each(|v| add(term_of(v))),
            Json::Object(map) => map.into_iter().for_each(|(k, _)| add(k)),
            other => add(term_of(other)),
        }
    }

    fn answer(self, field: &str, limit: usize) -> Json {
        let distinct = self.terms.len();
        let mut terms: Vec<(String, u64)> = self.terms.into_iter().collect();
        terms.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        terms.truncate(limit);
        json!({
            "field": field,
            "terms_counts": terms.into_iter().map(|(t, n)| (t, json!(n))).collect::<serde_json::Map<_, _>>(),
            "more_terms": distinct > limit || self.overflowed,
            "ents_present": self.present,
            "ents_absent": self.absent,
            "approx_cardinality": distinct,
        })
    }
}

fn term_of(value: Json) -> String {
    match value {
        Json::String(s) => s,
        other => other.to_string(),
    }
}

#[utoipa::path(get, path = "/api/schema/{table}/fieldinfo", tag = "profiles", params(("table" = String, Path, description = "user"), Params), responses(crate::openapi::Enveloped))]
pub async fn field_info(
    State(state): State<Arc<AppState>>,
    auth: Authorized<ReadProfiles>,
    Path(table): Path<String>,
    Query(params): Query<Params>,
) -> ApiResult {
    only_user_table(&table)?;
    if masks(&auth.caller) {
        return Err(ApiError::forbidden(
            "field info shows the values of profile fields; this token's role sees them masked",
        ));
    }
    let fields: Vec<String> = params
        .fields
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(str::to_string)
        .collect();
    if fields.is_empty() || fields.len() > MAX_FIELDS {
        return Err(ApiError::bad_request(format!(
            "fields: name 1 to {MAX_FIELDS} fields, comma-separated (?fields=email,country)"
        )));
    }
    let limit = params.limit.unwrap_or(DEFAULT_TERMS);
    if !(1..=MAX_TERMS).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit={limit} must be from 1 to {MAX_TERMS}"
        )));
    }
    let aid = auth.caller.account_id;
    let plans = state.engine.account_plans(aid).await?;
    let mut tallies: Vec<Tally> = fields.iter().map(|_| Tally::default()).collect();
    let mut after = 0;
    loop {
        let page = state.store.scan_profiles(aid, after, PAGE).await?;
        for p in &page {
            after = p.id;
            let parsed = ProfileState::from_json(&p.state)
                .map_err(|e| ApiError::internal("reading a profile", &e))?;
            for (name, tally) in fields.iter().zip(&mut tallies) {
                let value = parsed
                    .fields
                    .get(name)
                    .map(|f| f.value(Some(plans.spec(name))).to_json());
                tally.count(value);
            }
        }
        if page.len() < PAGE as usize {
            break;
        }
    }
    let answers: Vec<Json> = fields
        .iter()
        .zip(tallies)
        .map(|(name, tally)| tally.answer(name, limit))
        .collect();
    Ok(ok(
        StatusCode::OK,
        json!({ "table": "user", "fields": answers }),
    ))
}
