//! The `braze-export` job's configuration and the Braze authorization's settings.

use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;
use tributary_core::braze::UrlAllowList;
use tributary_jobs::{Credentials, WorkflowError};

/// Which membership changes are sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudienceEvents {
    #[default]
    Both,
    EntersOnly,
    ExitsOnly,
}

impl AudienceEvents {
    pub fn sends(self, entered: bool) -> bool {
        match self {
            AudienceEvents::Both => true,
            AudienceEvents::EntersOnly => entered,
            AudienceEvents::ExitsOnly => !entered,
        }
    }
}

/// How membership is written on the Braze user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttributeMode {
    /// The seed's shape: one array attribute, `{"add": [..], "remove": [..]}`.
    #[default]
    Array,
    /// One boolean attribute per audience, `<attribute_prefix><slug>`: the shape Segment and
    /// RudderStack users have their Braze segments built on.
    Boolean,
}

/// Which Braze identifier the profile field's value is sent as (Braze's identifier keys on
/// an attributes object; `docs/braze.md`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdentifierType {
    /// `"external_id": value`.
    #[default]
    ExternalId,
    /// `"braze_id": value`: Braze's own id (for example `braze_id` of a Braze webhook).
    BrazeId,
    /// `"email": value`.
    Email,
    /// `"user_alias": {"alias_name": value, "alias_label": alias_label}`.
    UserAlias,
}

fn default_attribute() -> String {
    "lytics_segments".into()
}
fn default_prefix() -> String {
    "lytics_".into()
}
fn default_in_flight() -> usize {
    64
}
fn default_retry_max() -> u64 {
    600
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportConfig {
    /// The profile field whose value identifies the user in Braze.
    pub identifier_field: String,
    /// What that value is to Braze.
    #[serde(default)]
    pub identifier_type: IdentifierType,
    /// The alias label, with `identifier_type: user_alias`.
    #[serde(default)]
    pub alias_label: Option<String>,
    /// Erasing a person (`DELETE /api/entity/...`) also deletes the Braze user this export
    /// sent them as (`POST /users/delete`), after sending their exits.
    #[serde(default)]
    pub delete_on_erase: bool,
    /// Audience slugs to export.
    pub segment_ids: Vec<String>,
    /// Send every current member first (the "Existing Users" box).
    #[serde(default)]
    pub withbackfill: bool,
    #[serde(default)]
    pub audience_events: AudienceEvents,
    #[serde(default = "default_attribute")]
    pub attribute: String,
    #[serde(default)]
    pub attribute_mode: AttributeMode,
    #[serde(default = "default_prefix")]
    pub attribute_prefix: String,
    /// Most requests in flight at once (the AIMD window's ceiling).
    #[serde(default = "default_in_flight")]
    pub max_in_flight: usize,
    /// How long a request is retried (5xx, timeouts) before the job fails.
    #[serde(default = "default_retry_max")]
    pub retry_max_seconds: u64,
}

/// Why an export config was refused; the message names the field (`config.<field> ...`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Not the config's shape (an unknown field, a wrong type).
    #[error("config: {0}")]
    Shape(serde_json::Error),
    /// A field's value is out of bounds or contradicts another.
    #[error("{0}")]
    Field(String),
}

impl From<ConfigError> for WorkflowError {
    fn from(e: ConfigError) -> Self {
        WorkflowError::Invalid(e.to_string())
    }
}

impl ExportConfig {
    /// Parses and checks a job's config; errors name the field.
    pub fn parse(config: &Value) -> Result<ExportConfig, ConfigError> {
        let mut parsed: ExportConfig =
            serde_json::from_value(config.clone()).map_err(ConfigError::Shape)?;
        let field = parsed.identifier_field.trim();
        if field.is_empty() || field.len() > MAX_NAME_LEN {
            return Err(ConfigError::Field(format!(
                "config.identifier_field must be 1-{MAX_NAME_LEN} characters"
            )));
        }
        if parsed.segment_ids.is_empty() {
            return Err(ConfigError::Field(
                "config.segment_ids must name at least one audience".into(),
            ));
        }
        // A slug named twice is one audience (it was counted once per mention before).
        let mut seen = std::collections::HashSet::new();
        parsed.segment_ids.retain(|slug| seen.insert(slug.clone()));
        if parsed.segment_ids.len() > MAX_AUDIENCES {
            return Err(ConfigError::Field(format!(
                "config.segment_ids names {} audiences; at most {MAX_AUDIENCES}",
                parsed.segment_ids.len()
            )));
        }
        if let Some(slug) = parsed
            .segment_ids
            .iter()
            .find(|s| s.is_empty() || s.len() > MAX_NAME_LEN)
        {
            return Err(ConfigError::Field(format!(
                "config.segment_ids: {:?} is not an audience slug (1-{MAX_NAME_LEN} characters)",
                slug.chars().take(40).collect::<String>()
            )));
        }
        let name_ok = |s: &str| !s.is_empty() && s.len() <= 255 && !s.starts_with('$');
        if parsed.attribute_mode == AttributeMode::Array && !name_ok(&parsed.attribute) {
            return Err(ConfigError::Field(
                "config.attribute must be 1-255 characters, not starting with $".into(),
            ));
        }
        if parsed.attribute_mode == AttributeMode::Boolean
            && !parsed
                .segment_ids
                .iter()
                .all(|s| name_ok(&format!("{}{s}", parsed.attribute_prefix)))
        {
            return Err(ConfigError::Field(
                "config.attribute_prefix makes an invalid Braze attribute name".into(),
            ));
        }
        match (parsed.identifier_type, parsed.alias_label.as_deref()) {
            (IdentifierType::UserAlias, None) => {
                return Err(ConfigError::Field(
                    "config.alias_label is required with identifier_type \"user_alias\"".into(),
                ));
            }
            (IdentifierType::UserAlias, Some(label))
                if label.trim().is_empty() || label.len() > 255 =>
            {
                return Err(ConfigError::Field(
                    "config.alias_label must be 1-255 characters".into(),
                ));
            }
            (IdentifierType::UserAlias, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(ConfigError::Field(
                    "config.alias_label is only used with identifier_type \"user_alias\"".into(),
                ));
            }
        }
        if !(1..=512).contains(&parsed.max_in_flight) {
            return Err(ConfigError::Field(
                "config.max_in_flight must be between 1 and 512".into(),
            ));
        }
        if parsed.retry_max_seconds == 0 {
            return Err(ConfigError::Field(
                "config.retry_max_seconds must be at least 1".into(),
            ));
        }
        Ok(parsed)
    }
}

/// Longest field name, slug or label the config takes (Braze's limit for attribute names).
pub const MAX_NAME_LEN: usize = 255;
/// Most audiences one export sends (Braze's default cap of values in an array attribute).
pub const MAX_AUDIENCES: usize = 500;

/// Why a Braze authorization cannot be used by a run.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the Braze authorization has no {0}")]
    Missing(&'static str),
    /// The instance is unknown or no longer allowed (`TRIBUTARY_BRAZE_ALLOW_URLS`).
    #[error("{0}")]
    Instance(String),
}

/// The Braze authorization's settings, opened.
pub struct BrazeAuth {
    pub endpoint: String,
    pub apikey: String,
    pub requests: u32,
    pub per: Duration,
    pub timeout: Duration,
}

impl BrazeAuth {
    /// Opens the settings; an instance that is no longer allowed (the operator removed it
    /// from `TRIBUTARY_BRAZE_ALLOW_URLS`) fails the job before the key leaves.
    pub fn from_credentials(
        credentials: &Credentials,
        allowed: &UrlAllowList,
    ) -> Result<BrazeAuth, AuthError> {
        let instance = credentials.config["instance"]
            .as_str()
            .ok_or(AuthError::Missing("instance"))?;
        let endpoint =
            tributary_core::braze::rest_endpoint(instance, allowed).map_err(AuthError::Instance)?;
        let apikey = credentials
            .secrets
            .get("apikey")
            .ok_or(AuthError::Missing("apikey"))?;
        let limit = &credentials.config["rate_limit"];
        let requests = limit["requests"]
            .as_u64()
            .unwrap_or(3_000)
            .clamp(1, 1_000_000) as u32;
        let per = Duration::from_secs_f64(limit["per_seconds"].as_f64().unwrap_or(3.0).max(0.001));
        let timeout = Duration::from_secs_f64(
            credentials.config["timeout_seconds"]
                .as_f64()
                .unwrap_or(30.0)
                .clamp(0.1, 3_600.0),
        );
        Ok(BrazeAuth {
            endpoint,
            apikey,
            requests,
            per,
            timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(config: Value) -> Result<ExportConfig, String> {
        ExportConfig::parse(&config).map_err(|e| e.to_string())
    }

    /// Lists are de-duplicated (seen: 10,000 repeats of one slug made the dry run estimate
    /// 10,000 data points for one user) and every stored text has a bound.
    #[test]
    fn lists_are_deduplicated_and_texts_bounded() {
        let repeated: Vec<&str> = std::iter::repeat_n("vip", 10_000).collect();
        let config =
            parse(json!({"identifier_field": "email", "segment_ids": repeated})).expect("valid");
        assert_eq!(config.segment_ids, vec!["vip"]);
        let config = parse(json!({"identifier_field": "email", "segment_ids": ["b", "a", "b"]}))
            .expect("valid");
        assert_eq!(config.segment_ids, vec!["b", "a"], "first mention order");

        let long = "x".repeat(1024 * 1024);
        let refused = parse(json!({"identifier_field": long, "segment_ids": ["vip"]}))
            .expect_err("1 MB field");
        assert_eq!(refused, "config.identifier_field must be 1-255 characters");
        let refused = parse(json!({"identifier_field": "email", "segment_ids": [long]}))
            .expect_err("1 MB slug");
        assert!(
            refused.starts_with("config.segment_ids: \"xxx"),
            "{refused}"
        );
        let many: Vec<String> = (0..501).map(|i| format!("a{i}")).collect();
        let refused =
            parse(json!({"identifier_field": "email", "segment_ids": many})).expect_err("too many");
        assert_eq!(
            refused,
            "config.segment_ids names 501 audiences; at most 500"
        );
    }
}
