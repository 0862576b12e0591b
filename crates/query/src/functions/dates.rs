//! Date functions. "Now" is the context's instant: the event's time in LQL, so that rebuilding
//! from raw events gives the same profile, and the evaluation time in FilterQL.

use std::collections::BTreeMap;

use time::{OffsetDateTime, UtcOffset, Weekday};

use super::{FnCtx, text};
use crate::dates::{DateMath, looks_like_date_math};
use crate::value::Value;

type Args<'a> = &'a [Value];

/// The date argument at `i`, or "now" when there are no arguments.
fn date_or_now(a: Args, ctx: &FnCtx) -> Option<OffsetDateTime> {
    match a.first() {
        None => Some(ctx.now),
        Some(v) => to_time(v, ctx),
    }
}

fn to_time(v: &Value, ctx: &FnCtx) -> Option<OffsetDateTime> {
    match v {
        Value::String(s) if looks_like_date_math(s) => {
            DateMath::parse(s).ok().map(|d| d.at(ctx.now))
        }
        other => other.as_time(),
    }
}

pub fn now(_: Args, ctx: &FnCtx) -> Option<Value> {
    Some(Value::Time(ctx.now))
}

pub fn epochms(_: Args, ctx: &FnCtx) -> Option<Value> {
    Some(Value::Int(
        (ctx.now.unix_timestamp_nanos() / 1_000_000) as i64,
    ))
}

/// `todate(value)` or `todate(layout, value)` with a Go reference layout ("02/01/2006").
pub fn todate(a: Args, ctx: &FnCtx) -> Option<Value> {
    match a {
        [v] => to_time(v, ctx).map(Value::Time),
        [layout, v] => {
            let layout = text(layout)?;
            let s = text(v)?;
            parse_with_go_layout(&layout, &s).map(Value::Time)
        }
        _ => None,
    }
}

/// `todatein(value, zone)`: a local date-time in a time zone (`America/Los_Angeles`, `UTC`,
/// `+05:30`), stored in UTC.
pub fn todatein(a: Args, ctx: &FnCtx) -> Option<Value> {
    let zone = text(a.get(1)?)?;
    let local = to_time(a.first()?, ctx)?;
    if let Some(offset) = parse_offset(&zone) {
        return Some(Value::Time(
            local.replace_offset(offset).to_offset(UtcOffset::UTC),
        ));
    }
    let tz = jiff::tz::TimeZone::get(zone.trim()).ok()?;
    let civil = jiff::civil::DateTime::new(
        i16::try_from(local.year()).ok()?,
        i8::try_from(u8::from(local.month())).ok()?,
        i8::try_from(local.day()).ok()?,
        i8::try_from(local.hour()).ok()?,
        i8::try_from(local.minute()).ok()?,
        i8::try_from(local.second()).ok()?,
        i32::try_from(local.nanosecond()).ok()?,
    )
    .ok()?;
    let instant = tz.to_ambiguous_timestamp(civil).compatible().ok()?;
    OffsetDateTime::from_unix_timestamp_nanos(instant.as_nanosecond())
        .ok()
        .map(Value::Time)
}

fn parse_offset(zone: &str) -> Option<UtcOffset> {
    let z = zone.trim();
    if z.eq_ignore_ascii_case("utc") || z.eq_ignore_ascii_case("gmt") || z == "Z" {
        return Some(UtcOffset::UTC);
    }
    let z = z.trim_start_matches("UTC").trim_start_matches("GMT");
    let (sign, rest) = match z.as_bytes().first()? {
        b'+' => (1, &z[1..]),
        b'-' => (-1, &z[1..]),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h.parse::<i8>().ok()?, m.parse::<i8>().ok()?),
        None if rest.len() == 4 => (rest.get(..2)?.parse().ok()?, rest.get(2..)?.parse().ok()?),
        None => (rest.parse().ok()?, 0),
    };
    UtcOffset::from_hms(sign * h, sign * m, 0).ok()
}

pub fn totimestamp(a: Args, ctx: &FnCtx) -> Option<Value> {
    Some(Value::Int(to_time(a.first()?, ctx)?.unix_timestamp()))
}

pub fn yy(a: Args, ctx: &FnCtx) -> Option<Value> {
    Some(Value::Int(i64::from(date_or_now(a, ctx)?.year() % 100)))
}

pub fn yymm(a: Args, ctx: &FnCtx) -> Option<Value> {
    let t = date_or_now(a, ctx)?;
    Some(Value::String(format!(
        "{:02}{:02}",
        t.year() % 100,
        u8::from(t.month())
    )))
}

/// Month 1–12 (January is 1).
pub fn monthofyear(a: Args, ctx: &FnCtx) -> Option<Value> {
    Some(Value::Int(i64::from(u8::from(
        date_or_now(a, ctx)?.month(),
    ))))
}

/// 0 (Sunday) to 6 (Saturday).
pub fn dayofweek(a: Args, ctx: &FnCtx) -> Option<Value> {
    Some(Value::Int(i64::from(
        date_or_now(a, ctx)?.weekday().number_days_from_sunday(),
    )))
}

pub fn hourofday(a: Args, ctx: &FnCtx) -> Option<Value> {
    Some(Value::Int(i64::from(
        date_or_now(a, ctx)?.to_offset(UtcOffset::UTC).hour(),
    )))
}

/// 0–167: hours since Sunday 00:00 UTC.
pub fn hourofweek(a: Args, ctx: &FnCtx) -> Option<Value> {
    let t = date_or_now(a, ctx)?.to_offset(UtcOffset::UTC);
    Some(Value::Int(
        i64::from(t.weekday().number_days_from_sunday()) * 24 + i64::from(t.hour()),
    ))
}

/// `seconds("10:30")` = 630 (mm:ss), `seconds("1:00:00")` = 3600, `seconds("42")` = 42.
pub fn seconds(a: Args, _: &FnCtx) -> Option<Value> {
    let s = text(a.first()?)?;
    let parts: Option<Vec<f64>> = s
        .trim()
        .split(':')
        .map(|p| p.trim().parse::<f64>().ok())
        .collect();
    let total = parts?.iter().fold(0.0, |acc, p| acc * 60.0 + p);
    Some(if total.fract() == 0.0 {
        Value::Int(total as i64)
    } else {
        Value::Number(total)
    })
}

pub fn strftime(a: Args, ctx: &FnCtx) -> Option<Value> {
    let t = to_time(a.first()?, ctx)?;
    Some(Value::String(format_strftime(t, &text(a.get(1)?)?)))
}

fn format_strftime(t: OffsetDateTime, pattern: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let weekday = |w: Weekday| w.to_string();
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let month = MONTHS[usize::from(u8::from(t.month())) - 1];
        match chars.next() {
            Some('Y') => out.push_str(&t.year().to_string()),
            Some('y') => out.push_str(&format!("{:02}", t.year() % 100)),
            Some('m') => out.push_str(&format!("{:02}", u8::from(t.month()))),
            Some('d') => out.push_str(&format!("{:02}", t.day())),
            Some('e') => out.push_str(&t.day().to_string()),
            Some('H') => out.push_str(&format!("{:02}", t.hour())),
            Some('I') => out.push_str(&format!("{:02}", (t.hour() + 11) % 12 + 1)),
            Some('M') => out.push_str(&format!("{:02}", t.minute())),
            Some('S') => out.push_str(&format!("{:02}", t.second())),
            Some('p') => out.push_str(if t.hour() < 12 { "AM" } else { "PM" }),
            Some('B') => out.push_str(month),
            Some('b') | Some('h') => out.push_str(&month[..3]),
            Some('A') => out.push_str(&weekday(t.weekday())),
            Some('a') => out.push_str(&weekday(t.weekday())[..3]),
            Some('j') => out.push_str(&format!("{:03}", t.ordinal())),
            Some('u') => out.push_str(&t.weekday().number_from_monday().to_string()),
            Some('w') => out.push_str(&t.weekday().number_days_from_sunday().to_string()),
            Some('Z') => out.push_str("UTC"),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// `unixtrunc(date[, "seconds"|"milliseconds"])`: the epoch as text.
pub fn unixtrunc(a: Args, ctx: &FnCtx) -> Option<Value> {
    let t = to_time(a.first()?, ctx)?;
    let millis = a
        .get(1)
        .and_then(text)
        .is_some_and(|u| u.starts_with("milli") || u == "ms");
    Some(Value::String(if millis {
        (t.unix_timestamp_nanos() / 1_000_000).to_string()
    } else {
        t.unix_timestamp().to_string()
    }))
}

/// `maptime(key[, date])`: `{key: date}` (the date defaults to now).
pub fn maptime(a: Args, ctx: &FnCtx) -> Option<Value> {
    let key = text(a.first()?)?;
    let t = match a.get(1) {
        Some(v) => to_time(v, ctx)?,
        None => ctx.now,
    };
    Some(Value::Map(BTreeMap::from([(key, Value::Time(t))])))
}

/// Whole days from a date to now.
pub fn daysago(a: Args, ctx: &FnCtx) -> Option<Value> {
    let t = to_time(a.first()?, ctx)?;
    Some(Value::Int((ctx.now - t).whole_days()))
}

/// Parses with a Go reference layout (`2006-01-02 15:04:05`), the form LQL's `todate` takes.
pub fn parse_with_go_layout(layout: &str, value: &str) -> Option<OffsetDateTime> {
    const TOKENS: &[(&str, &str)] = &[
        ("January", "[month repr:long]"),
        ("Jan", "[month repr:short]"),
        ("Monday", "[weekday repr:long]"),
        ("Mon", "[weekday repr:short]"),
        ("2006", "[year]"),
        ("-07:00", "[offset_hour sign:mandatory]:[offset_minute]"),
        ("-0700", "[offset_hour sign:mandatory][offset_minute]"),
        ("Z07:00", "Z"),
        ("01", "[month]"),
        ("02", "[day]"),
        ("15", "[hour]"),
        ("03", "[hour repr:12]"),
        ("04", "[minute]"),
        ("05", "[second]"),
        ("PM", "[period]"),
        (".000", ".[subsecond]"),
        ("1", "[month padding:none]"),
        ("2", "[day padding:none]"),
        ("3", "[hour repr:12 padding:none]"),
    ];
    let mut description = String::new();
    let mut rest = layout;
    let (mut has_time, mut has_offset) = (false, false);
    'outer: while !rest.is_empty() {
        for (go, ours) in TOKENS {
            if let Some(after) = rest.strip_prefix(go) {
                description.push_str(ours);
                has_time |= ours.contains("hour");
                has_offset |= ours.contains("offset");
                rest = after;
                continue 'outer;
            }
        }
        let c = rest.chars().next()?;
        if c == '[' {
            description.push_str("[[");
        } else {
            description.push(c);
        }
        rest = &rest[c.len_utf8()..];
    }
    let format = time::format_description::parse_owned::<2>(&description).ok()?;
    let v = value.trim();
    if has_offset {
        OffsetDateTime::parse(v, &format).ok()
    } else if has_time {
        time::PrimitiveDateTime::parse(v, &format)
            .ok()
            .map(time::PrimitiveDateTime::assume_utc)
    } else {
        time::Date::parse(v, &format)
            .ok()
            .map(|d| d.midnight().assume_utc())
    }
}
