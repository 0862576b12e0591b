//! The `sftp-import` job's config, checked when the job is created.

use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use tributary_core::validate_stream_name;
use tributary_sources::CsvOptions;

/// Which files of the folder the job reads.
#[derive(Debug, Clone)]
pub enum FileMatch {
    /// Exactly this name.
    Name(String),
    /// Names this regular expression matches (anywhere in the name).
    Pattern(Regex),
    /// Every file.
    All,
}

impl FileMatch {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            FileMatch::Name(n) => n == name,
            FileMatch::Pattern(re) => re.is_match(name),
            FileMatch::All => true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ImportConfig {
    pub stream: String,
    pub folder: String,
    pub files: FileMatch,
    pub delimiter: u8,
    pub fields: Vec<String>,
    pub timestamps: Vec<String>,
    pub continuous_update: bool,
    pub file_frequency: Duration,
    pub drop_errors: bool,
    /// Import only the rows the previous file did not have.
    pub diff: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    stream: String,
    #[serde(default)]
    folder: String,
    filename: Option<String>,
    prefix: Option<String>,
    delimiter: Option<String>,
    #[serde(default)]
    fields: Vec<String>,
    #[serde(default)]
    timestamps: Vec<String>,
    #[serde(default)]
    continuous_update: bool,
    file_frequency: Option<String>,
    #[serde(default)]
    droperrors: bool,
    #[serde(default)]
    diff: bool,
}

/// Longest pattern accepted for `prefix`.
const MAX_PATTERN: usize = 1_000;
/// Shortest and longest `file_frequency`.
const MIN_FREQUENCY: Duration = Duration::from_secs(1);
const MAX_FREQUENCY: Duration = Duration::from_secs(7 * 24 * 3600);

/// `1s`, `5m`, `1h`, `1d`.
fn parse_frequency(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "config.file_frequency: {text:?} is not a duration such as \"30s\", \"5m\", \"1h\" or \"1d\""
        )
    };
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?);
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86_400),
        _ => return Err(bad()),
    };
    let d = Duration::from_secs(secs);
    if !(MIN_FREQUENCY..=MAX_FREQUENCY).contains(&d) {
        return Err(format!(
            "config.file_frequency: {text:?} must be from 1s to 7d"
        ));
    }
    Ok(d)
}

impl ImportConfig {
    /// Reads and checks a job's config; the error starts with the field it is about.
    pub fn parse(config: &Value) -> Result<ImportConfig, String> {
        let raw: Raw =
            serde_json::from_value(config.clone()).map_err(|e| format!("config: {e}"))?;
        validate_stream_name(&raw.stream).map_err(|e| format!("config.stream: {e}"))?;
        if raw.folder.split('/').any(|part| part == "..") {
            return Err("config.folder: may not contain \"..\"".into());
        }
        let files = match (raw.filename, raw.prefix) {
            (Some(_), Some(_)) => {
                return Err("config: give filename or prefix, not both".into());
            }
            (Some(name), None) if name.is_empty() || name.contains('/') => {
                return Err("config.filename: a file name, without a folder".into());
            }
            (Some(name), None) => FileMatch::Name(name),
            (None, Some(p)) if p.len() > MAX_PATTERN => {
                return Err(format!(
                    "config.prefix: longer than {MAX_PATTERN} characters"
                ));
            }
            (None, Some(p)) => FileMatch::Pattern(
                Regex::new(&p)
                    .map_err(|e| format!("config.prefix: not a regular expression: {e}"))?,
            ),
            (None, None) => FileMatch::All,
        };
        let delimiter = match raw.delimiter.as_deref() {
            None => b',',
            Some(d) => {
                CsvOptions::parse_delimiter(d).map_err(|e| format!("config.delimiter: {e}"))?
            }
        };
        let file_frequency = match raw.file_frequency.as_deref() {
            None => Duration::from_secs(3600),
            Some(f) => parse_frequency(f)?,
        };
        Ok(ImportConfig {
            stream: raw.stream,
            folder: raw.folder,
            files,
            delimiter,
            fields: raw.fields,
            timestamps: raw.timestamps,
            continuous_update: raw.continuous_update,
            file_frequency,
            drop_errors: raw.droperrors,
            diff: raw.diff,
        })
    }

    /// How the CSV decoder reads this job's files.
    pub fn csv(&self) -> CsvOptions {
        CsvOptions {
            delimiter: self.delimiter,
            keep_columns: self.fields.clone(),
            timestamp_candidates: self.timestamps.clone(),
            ..CsvOptions::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn configs_are_checked_field_by_field() {
        let ok = ImportConfig::parse(
            &json!({"stream": "braze_users", "prefix": "^users_.*\\.csv$",
            "delimiter": "t", "file_frequency": "5m", "continuous_update": true}),
        )
        .unwrap();
        assert!(ok.files.matches("users_2024.csv") && !ok.files.matches("other.csv"));
        assert_eq!(
            (ok.delimiter, ok.file_frequency),
            (b'\t', Duration::from_secs(300))
        );
        for (config, field) in [
            (json!({"folder": "x"}), "config: missing field `stream`"),
            (json!({"stream": "s", "prefix": "("}), "config.prefix"),
            (
                json!({"stream": "s", "filename": "a", "prefix": "b"}),
                "not both",
            ),
            (
                json!({"stream": "s", "file_frequency": "5 minutes"}),
                "config.file_frequency",
            ),
            (json!({"stream": "s", "file_frequency": "0s"}), "from 1s"),
            (
                json!({"stream": "s", "delimiter": "ab"}),
                "config.delimiter",
            ),
            (json!({"stream": "s", "folder": "../etc"}), "config.folder"),
            (json!({"stream": "s", "diff": "yes"}), "config"),
            (json!({"stream": "s", "nope": 1}), "unknown field"),
        ] {
            let e = ImportConfig::parse(&config).unwrap_err();
            assert!(e.contains(field), "{config}: {e}");
        }
    }
}
