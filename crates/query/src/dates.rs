//! Dates: a lenient parser for the many forms dates arrive in (the role dateparse plays in
//! Lytics), a strict ISO 8601 parser for JSON entities, and date math (`"now-30d"`).

use time::format_description::BorrowedFormatItem;
use time::format_description::well_known::{Iso8601, Rfc2822, Rfc3339};
use time::macros::format_description as fd;
use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time};

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

/// A date-math unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Year,
    Month,
    Week,
    Day,
    Hour,
    Minute,
    Second,
}

impl Unit {
    fn from_char(c: char) -> Option<Unit> {
        Some(match c {
            'y' | 'Y' => Unit::Year,
            'M' => Unit::Month,
            'w' | 'W' => Unit::Week,
            'd' | 'D' => Unit::Day,
            'h' | 'H' => Unit::Hour,
            'm' => Unit::Minute,
            's' | 'S' => Unit::Second,
            _ => return None,
        })
    }

    pub fn as_char(self) -> char {
        match self {
            Unit::Year => 'y',
            Unit::Month => 'M',
            Unit::Week => 'w',
            Unit::Day => 'd',
            Unit::Hour => 'h',
            Unit::Minute => 'm',
            Unit::Second => 's',
        }
    }
}

/// `now`, optionally followed by signed offsets: `now-30d`, `now+3h`, `now-1M+2d`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DateMath {
    pub offsets: Vec<(i64, Unit)>,
}

/// Whether a string literal is meant as date math (and so must parse as it).
pub fn looks_like_date_math(s: &str) -> bool {
    let t = s.trim();
    match (t.get(..3), t.get(3..)) {
        (Some(head), Some(rest)) => {
            head.eq_ignore_ascii_case("now")
                && rest
                    .trim_start()
                    .chars()
                    .next()
                    .is_none_or(|c| c == '+' || c == '-')
        }
        _ => false,
    }
}

impl DateMath {
    pub fn parse(text: &str) -> Result<DateMath, String> {
        let t = text.trim();
        if !looks_like_date_math(t) {
            return Err(format!(
                "{text:?} is not date math; it must start with \"now\""
            ));
        }
        let mut rest = t[3..].trim_start();
        let mut offsets = Vec::new();
        while !rest.is_empty() {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => {
                    return Err(format!(
                        "malformed date math {text:?}: expected + or - at {rest:?}"
                    ));
                }
            };
            rest = &rest[1..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(format!(
                    "malformed date math {text:?}: expected a number after the sign"
                ));
            }
            let amount: i64 = rest[..digits]
                .parse()
                .map_err(|_| format!("malformed date math {text:?}: the number is too large"))?;
            if amount > 100_000 {
                return Err(format!(
                    "malformed date math {text:?}: the number is too large"
                ));
            }
            rest = &rest[digits..];
            let Some(c) = rest.chars().next() else {
                return Err(format!(
                    "malformed date math {text:?}: a unit (y, M, w, d, h, m, s) must follow {amount}"
                ));
            };
            let unit = Unit::from_char(c).ok_or_else(|| {
                format!(
                    "malformed date math {text:?}: unknown unit {c:?}; use y, M, w, d, h, m or s"
                )
            })?;
            rest = rest[c.len_utf8()..].trim_start();
            offsets.push((sign * amount, unit));
        }
        Ok(DateMath { offsets })
    }

    /// The instant this expression names when evaluated at `now`.
    pub fn at(&self, now: OffsetDateTime) -> OffsetDateTime {
        self.offsets
            .iter()
            .fold(now, |t, &(n, unit)| shift(t, n, unit))
    }

    /// The evaluation time at which `at(now) == target`: when a comparison against this date
    /// math can change its result (the inverse of `at`).
    pub fn when_equal_to(&self, target: OffsetDateTime) -> OffsetDateTime {
        self.offsets
            .iter()
            .rev()
            .fold(target, |t, &(n, unit)| shift(t, -n, unit))
    }
}

impl std::fmt::Display for DateMath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("now")?;
        for (n, unit) in &self.offsets {
            write!(
                f,
                "{}{}{}",
                if *n < 0 { '-' } else { '+' },
                n.abs(),
                unit.as_char()
            )?;
        }
        Ok(())
    }
}

fn shift(t: OffsetDateTime, n: i64, unit: Unit) -> OffsetDateTime {
    let fixed = |d: Duration| t.checked_add(d).unwrap_or(t);
    match unit {
        Unit::Second => fixed(Duration::seconds(n)),
        Unit::Minute => fixed(Duration::minutes(n)),
        Unit::Hour => fixed(Duration::hours(n)),
        Unit::Day => fixed(Duration::days(n)),
        Unit::Week => fixed(Duration::weeks(n)),
        Unit::Month => add_months(t, n),
        Unit::Year => add_months(t, n.saturating_mul(12)),
    }
}

/// Calendar months; the day is clamped to the target month's length (Jan 31 + 1M = Feb 28/29).
fn add_months(t: OffsetDateTime, n: i64) -> OffsetDateTime {
    let total = i64::from(t.year()) * 12 + i64::from(u8::from(t.month())) - 1 + n;
    let Ok(year) = i32::try_from(total.div_euclid(12)) else {
        return t;
    };
    let Ok(month) = Month::try_from((total.rem_euclid(12) + 1) as u8) else {
        return t;
    };
    let day = t.day().min(time::util::days_in_month(month, year));
    match Date::from_calendar_date(year, month, day) {
        Ok(d) => t.replace_date(d),
        Err(_) => t,
    }
}

/// Midnight UTC of a date, for functions that work on days.
pub fn start_of_day(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_time(Time::MIDNIGHT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

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

    #[test]
    fn date_math() {
        let now = datetime!(2024-03-31 12:00 UTC);
        let cases = [
            ("now", now),
            ("now-30d", datetime!(2024-03-01 12:00 UTC)),
            ("now+3h", datetime!(2024-03-31 15:00 UTC)),
            ("now-1M", datetime!(2024-02-29 12:00 UTC)),
            ("now-1y", datetime!(2023-03-31 12:00 UTC)),
            ("now-2w", datetime!(2024-03-17 12:00 UTC)),
            ("now-90m", datetime!(2024-03-31 10:30 UTC)),
            ("now-10s", datetime!(2024-03-31 11:59:50 UTC)),
            ("NOW-1d+2h", datetime!(2024-03-30 14:00 UTC)),
        ];
        for (text, want) in cases {
            let dm = DateMath::parse(text).unwrap();
            assert_eq!(dm.at(now), want, "{text}");
            assert_eq!(DateMath::parse(&dm.to_string()).unwrap(), dm);
        }
        for bad in ["now-3x", "now-", "now+", "now+now", "now-d", "now*3d"] {
            assert!(DateMath::parse(bad).is_err(), "{bad}");
        }
        assert!(!looks_like_date_math("nowhere"));
        assert!(looks_like_date_math("now-3x"));
        let dm = DateMath::parse("now-30d").unwrap();
        let t = datetime!(2024-03-01 00:00 UTC);
        assert_eq!(dm.at(dm.when_equal_to(t)), t);
    }
}
