//! Dates: date math (`"now-30d"`), and the date parsers of `tributary_core::timestamp`
//! re-exported (one parser for collection and the query languages).

use time::{Date, Duration, Month, OffsetDateTime};

pub use tributary_core::timestamp::{parse_date, parse_iso8601};

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

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

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
