//! Event timestamps as they arrive in collected data (`timestamp_field`): RFC 3339 and ISO 8601
//! text, a few common SQL and US forms, and Unix epochs in seconds or milliseconds.

use time::format_description::well_known::{Iso8601, Rfc2822, Rfc3339};
use time::macros::format_description;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

/// Epoch values above this are taken as milliseconds (1e11 seconds is the year 5138).
const MILLIS_THRESHOLD: f64 = 1e11;

pub fn parse_json_timestamp(value: &serde_json::Value) -> Option<OffsetDateTime> {
    match value {
        serde_json::Value::Number(n) => n.as_f64().and_then(from_epoch),
        serde_json::Value::String(s) => parse_timestamp(s),
        _ => None,
    }
}

pub fn parse_timestamp(text: &str) -> Option<OffsetDateTime> {
    let s = text.trim();
    if s.is_empty() {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') && s.len() >= 9 {
        return s.parse::<f64>().ok().and_then(from_epoch);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Iso8601::DEFAULT) {
        return Some(t);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc2822) {
        return Some(t);
    }
    let naive_formats = [
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]"),
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        format_description!("[year]/[month]/[day] [hour]:[minute]:[second]"),
        format_description!("[month]/[day]/[year] [hour]:[minute]:[second]"),
    ];
    for f in naive_formats {
        if let Ok(t) = PrimitiveDateTime::parse(s, &f) {
            return Some(t.assume_utc());
        }
    }
    let date_formats = [
        format_description!("[year]-[month]-[day]"),
        format_description!("[year][month][day]"),
        format_description!("[year]/[month]/[day]"),
        format_description!("[month]/[day]/[year]"),
    ];
    for f in date_formats {
        if let Ok(d) = Date::parse(s, &f) {
            return Some(d.midnight().assume_utc());
        }
    }
    None
}

fn from_epoch(v: f64) -> Option<OffsetDateTime> {
    if !v.is_finite() || v < 0.0 {
        return None;
    }
    let nanos = if v >= MILLIS_THRESHOLD {
        v * 1e6
    } else {
        v * 1e9
    };
    OffsetDateTime::from_unix_timestamp_nanos(nanos as i128).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn accepted_forms() {
        let cases = [
            ("2024-03-01T12:30:00Z", datetime!(2024-03-01 12:30 UTC)),
            ("2024-03-01T12:30:00+02:00", datetime!(2024-03-01 10:30 UTC)),
            ("2024-03-01 12:30:00", datetime!(2024-03-01 12:30 UTC)),
            ("2024-03-01", datetime!(2024-03-01 0:00 UTC)),
            ("19820101", datetime!(1982-01-01 0:00 UTC)),
            ("03/01/2024", datetime!(2024-03-01 0:00 UTC)),
            ("1709296200", datetime!(2024-03-01 12:30 UTC)),
            ("1709296200000", datetime!(2024-03-01 12:30 UTC)),
            (
                "Fri, 01 Mar 2024 12:30:00 +0000",
                datetime!(2024-03-01 12:30 UTC),
            ),
        ];
        for (text, want) in cases {
            assert_eq!(parse_timestamp(text), Some(want), "{text}");
        }
        assert_eq!(
            parse_json_timestamp(&serde_json::json!(1709296200)),
            Some(datetime!(2024-03-01 12:30 UTC))
        );
    }

    #[test]
    fn rejected_forms() {
        for text in ["", "yesterday", "2024-13-01", "12", "-5", "2024-02-30"] {
            assert_eq!(parse_timestamp(text), None, "{text}");
        }
        assert_eq!(parse_json_timestamp(&serde_json::json!(true)), None);
    }
}
