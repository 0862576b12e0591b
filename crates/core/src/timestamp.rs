//! Dates and times as they arrive in collected data and in profiles: one lenient parser for
//! about fifty forms (RFC 3339 and ISO 8601, RFC 2822, SQL and US forms, month names, compact
//! digits, Unix epochs in seconds to nanoseconds), the role dateparse plays in Lytics, and a
//! strict ISO 8601 parser for JSON entities. Used by collection (`timestamp_field`) and by the
//! query languages alike.

use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::{Iso8601, Rfc2822, Rfc3339};
use time::macros::format_description as fd;
use time::{Date, OffsetDateTime, PrimitiveDateTime};

type Format = &'static [BorrowedFormatItem<'static>];

/// Date-times that carry their own offset.
const WITH_OFFSET: &[Format] = &[
    fd!(
        "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    ),
    fd!(
        "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory]:[offset_minute]"
    ),
    fd!(
        "[year]-[month]-[day] [hour]:[minute]:[second].[subsecond] [offset_hour sign:mandatory][offset_minute]"
    ),
    fd!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond][offset_hour sign:mandatory][offset_minute]"
    ),
    fd!("[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory][offset_minute]"),
    fd!(
        "[weekday repr:short] [month repr:short] [day padding:none] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute] [year]"
    ),
    fd!(
        "[day] [month repr:short] [year] [hour]:[minute] [offset_hour sign:mandatory][offset_minute]"
    ),
    fd!(
        "[day] [month repr:short] [year] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    ),
];

/// Date-times without an offset: taken as UTC.
const NAIVE: &[Format] = &[
    fd!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"),
    fd!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    fd!("[year]-[month]-[day] [hour]:[minute]"),
    fd!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]"),
    fd!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    fd!("[year]-[month]-[day]T[hour]:[minute]"),
    fd!("[year]-[month]-[day] [hour]:[minute]:[second] UTC"),
    fd!("[year]-[month]-[day] [hour]:[minute]:[second] GMT"),
    fd!("[year]/[month]/[day] [hour]:[minute]:[second]"),
    fd!("[year]/[month]/[day] [hour]:[minute]"),
    fd!("[year].[month].[day] [hour]:[minute]:[second]"),
    fd!("[month padding:none]/[day padding:none]/[year] [hour padding:none]:[minute]:[second]"),
    fd!("[month padding:none]/[day padding:none]/[year] [hour padding:none]:[minute]"),
    fd!(
        "[month padding:none]/[day padding:none]/[year] [hour padding:none repr:12]:[minute] [period]"
    ),
    fd!(
        "[month padding:none]/[day padding:none]/[year] [hour padding:none repr:12]:[minute]:[second] [period]"
    ),
    fd!("[day].[month].[year] [hour]:[minute]:[second]"),
    fd!("[day].[month].[year] [hour]:[minute]"),
    fd!(
        "[weekday repr:short] [month repr:short] [day padding:none] [hour]:[minute]:[second] [year]"
    ),
    fd!(
        "[weekday repr:short] [month repr:short] [day padding:none] [hour]:[minute]:[second] UTC [year]"
    ),
    fd!("[month repr:short] [day padding:none], [year] [hour padding:none]:[minute]:[second]"),
    fd!(
        "[month repr:short] [day padding:none], [year] [hour padding:none repr:12]:[minute] [period]"
    ),
    fd!(
        "[month repr:short] [day padding:none], [year] at [hour padding:none repr:12]:[minute] [period]"
    ),
    fd!("[month repr:long] [day padding:none], [year] [hour padding:none]:[minute]:[second]"),
    fd!("[day padding:none] [month repr:short] [year] [hour]:[minute]:[second]"),
    fd!("[day padding:none] [month repr:long] [year] [hour]:[minute]:[second]"),
    fd!("[year][month][day][hour][minute][second]"),
];

/// Dates only: midnight UTC.
const DATES: &[Format] = &[
    fd!("[year]-[month]-[day]"),
    fd!("[year][month][day]"),
    fd!("[year]/[month padding:none]/[day padding:none]"),
    fd!("[year].[month].[day]"),
    fd!("[month padding:none]/[day padding:none]/[year]"),
    fd!("[month padding:none]-[day padding:none]-[year]"),
    fd!("[day].[month].[year]"),
    fd!("[month repr:short] [day padding:none], [year]"),
    fd!("[month repr:long] [day padding:none], [year]"),
    fd!("[month repr:short] [day padding:none] [year]"),
    fd!("[month repr:long] [day padding:none] [year]"),
    fd!("[day padding:none] [month repr:short] [year]"),
    fd!("[day padding:none] [month repr:long] [year]"),
    fd!("[day]-[month repr:short]-[year]"),
    fd!("[year]-[month repr:short]-[day]"),
    fd!("[weekday repr:short], [month repr:short] [day padding:none], [year]"),
    fd!("[weekday repr:long], [month repr:long] [day padding:none], [year]"),
];

/// Parses a date or date-time in any accepted form (about fifty, plus epoch numbers).
pub fn parse_date(text: &str) -> Option<OffsetDateTime> {
    let s = text.trim();
    if s.len() < 6 || s.len() > 64 {
        return None;
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return parse_digits(s);
    }
    // A fractional epoch: `1709296200.5`.
    if let Some((whole, fraction)) = s.split_once('.')
        && whole.len() >= 9
        && whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return s.parse::<f64>().ok().and_then(from_epoch);
    }
    if let Some(t) = parse_iso8601(s) {
        return Some(t);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc2822) {
        return Some(t);
    }
    let upper;
    let s = if s.contains(" am") || s.contains(" pm") {
        upper = s.replace(" am", " AM").replace(" pm", " PM");
        upper.as_str()
    } else {
        s
    };
    WITH_OFFSET
        .iter()
        .find_map(|f| OffsetDateTime::parse(s, f).ok())
        .or_else(|| {
            NAIVE.iter().find_map(|f| {
                PrimitiveDateTime::parse(s, f)
                    .ok()
                    .map(PrimitiveDateTime::assume_utc)
            })
        })
        .or_else(|| {
            DATES
                .iter()
                .find_map(|f| Date::parse(s, f).ok().map(|d| d.midnight().assume_utc()))
        })
}

/// Strict ISO 8601 / RFC 3339: what a JSON entity's date strings look like.
pub fn parse_iso8601(s: &str) -> Option<OffsetDateTime> {
    let s = s.trim();
    if s.len() < 10 || !s.as_bytes()[..4].iter().all(u8::is_ascii_digit) || s.as_bytes()[4] != b'-'
    {
        return None;
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &Iso8601::DEFAULT) {
        return Some(t);
    }
    [
        fd!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond]"),
        fd!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        fd!("[year]-[month]-[day]T[hour]:[minute]"),
        fd!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    ]
    .iter()
    .find_map(|f| {
        PrimitiveDateTime::parse(s, f)
            .ok()
            .map(PrimitiveDateTime::assume_utc)
    })
    .or_else(|| {
        Date::parse(s, fd!("[year]-[month]-[day]"))
            .ok()
            .map(|d| d.midnight().assume_utc())
    })
}

fn parse_digits(s: &str) -> Option<OffsetDateTime> {
    match s.len() {
        8 => Date::parse(s, fd!("[year][month][day]"))
            .ok()
            .map(|d| d.midnight().assume_utc()),
        14 => PrimitiveDateTime::parse(s, fd!("[year][month][day][hour][minute][second]"))
            .ok()
            .map(PrimitiveDateTime::assume_utc),
        9..=11 => from_unix_nanos(s.parse::<i128>().ok()? * 1_000_000_000),
        12..=13 => from_unix_nanos(s.parse::<i128>().ok()? * 1_000_000),
        16 => from_unix_nanos(s.parse::<i128>().ok()? * 1_000),
        19 => from_unix_nanos(s.parse::<i128>().ok()?),
        _ => None,
    }
}

fn from_unix_nanos(n: i128) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp_nanos(n).ok()
}

/// Epoch values above this are taken as milliseconds (1e11 seconds is the year 5138).
const MILLIS_THRESHOLD: f64 = 1e11;

fn from_epoch(v: f64) -> Option<OffsetDateTime> {
    if !v.is_finite() || v < 1e8 {
        return None;
    }
    let nanos = if v >= MILLIS_THRESHOLD {
        v * 1e6
    } else {
        v * 1e9
    };
    OffsetDateTime::from_unix_timestamp_nanos(nanos as i128).ok()
}

/// An event time from a JSON value: a date string, or an epoch number.
pub fn parse_json_timestamp(value: &serde_json::Value) -> Option<OffsetDateTime> {
    match value {
        serde_json::Value::Number(n) => n.as_f64().and_then(from_epoch),
        serde_json::Value::String(s) => parse_date(s),
        _ => None,
    }
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
            assert_eq!(parse_date(text), Some(want), "{text}");
        }
        assert_eq!(
            parse_json_timestamp(&serde_json::json!(1709296200)),
            Some(datetime!(2024-03-01 12:30 UTC))
        );
    }

    #[test]
    fn rejected_forms() {
        for text in ["", "yesterday", "2024-13-01", "12", "-5", "2024-02-30"] {
            assert_eq!(parse_date(text), None, "{text}");
        }
        assert_eq!(parse_json_timestamp(&serde_json::json!(true)), None);
    }

    #[test]
    fn many_forms_parse() {
        let want = datetime!(2024-03-05 14:30:00 UTC);
        for s in [
            "2024-03-05T14:30:00Z",
            "2024-03-05T14:30:00+00:00",
            "2024-03-05T16:30:00+02:00",
            "2024-03-05 14:30:00",
            "2024-03-05 14:30",
            "2024-03-05T14:30",
            "2024/03/05 14:30:00",
            "3/5/2024 14:30:00",
            "3/5/2024 2:30 PM",
            "3/5/2024 2:30 pm",
            "05.03.2024 14:30:00",
            "Tue Mar 5 14:30:00 2024",
            "Tue, 05 Mar 2024 14:30:00 +0000",
            "Mar 5, 2024 2:30 PM",
            "March 5, 2024 14:30:00",
            "5 Mar 2024 14:30:00",
            "20240305143000",
            "1709649000",
            "1709649000000",
            "2024-03-05 14:30:00 +0000",
        ] {
            assert_eq!(parse_date(s), Some(want), "{s}");
        }
        let day = datetime!(2024-03-05 0:00 UTC);
        for s in [
            "2024-03-05",
            "20240305",
            "2024/3/5",
            "2024.03.05",
            "3/5/2024",
            "03-05-2024",
            "05.03.2024",
            "Mar 5, 2024",
            "March 5, 2024",
            "Mar 5 2024",
            "5 Mar 2024",
            "5 March 2024",
            "05-Mar-2024",
            "2024-Mar-05",
            "Tue, Mar 5, 2024",
        ] {
            assert_eq!(parse_date(s), Some(day), "{s}");
        }
        for s in [
            "yoda",
            "12",
            "2024-13-01",
            "2024-02-30",
            "",
            "now-3d",
            "1234567",
        ] {
            assert_eq!(parse_date(s), None, "{s}");
        }
    }

    #[test]
    fn iso8601_is_strict() {
        assert!(parse_iso8601("2024-03-05").is_some());
        assert!(parse_iso8601("2024-03-05T10:00:00Z").is_some());
        assert!(parse_iso8601("03/05/2024").is_none());
        assert!(parse_iso8601("20240305").is_none());
        assert!(parse_iso8601("hello").is_none());
    }
}
