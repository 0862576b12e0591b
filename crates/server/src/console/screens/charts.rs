//! The console's time charts, from what the store keeps per minute (events per stream, a job's
//! metrics): a point per minute of the last hour, minutes without data at zero.

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{items, text};
use crate::console::Console;
use crate::console::view::{Chart, Section};

/// The minutes a chart spans, ending with the current one.
pub(super) const WINDOW_MINUTES: i64 = 60;

fn parse(at: &Value) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(&text(at), &Rfc3339).ok()
}

/// Minutes since the epoch.
fn minute_of(t: OffsetDateTime) -> i64 {
    t.unix_timestamp().div_euclid(60)
}

/// One point per minute of the window ending at `now`, labelled `HH:MM` (UTC), with the
/// values of `values` added into their minutes.
fn minute_points(values: &[(i64, f64)], now: OffsetDateTime) -> Vec<(String, f64)> {
    let last = minute_of(now);
    (last - WINDOW_MINUTES + 1..=last)
        .map(|minute| {
            let total = values
                .iter()
                .filter(|(m, _)| *m == minute)
                .fold(0.0, |sum, (_, v)| sum + v);
            let label = OffsetDateTime::from_unix_timestamp(minute * 60)
                .map(|t| format!("{:02}:{:02}", t.hour(), t.minute()))
                .unwrap_or_default();
            (label, total)
        })
        .collect()
}

/// `GET /v2/stream/_minutes` over the charts' window (none when the token may not read it).
pub(super) async fn stream_rows(console: &Console) -> Option<Value> {
    let path = format!("/v2/stream/_minutes?minutes={WINDOW_MINUTES}");
    console.get(&path).await.ok()
}

/// The rows of `GET /v2/stream/_minutes` as (minute, events) points per stream.
fn by_stream(rows: &Value) -> Vec<(String, Vec<(i64, f64)>)> {
    let mut streams: Vec<(String, Vec<(i64, f64)>)> = Vec::new();
    for row in items(rows) {
        let (Some(at), Some(events)) = (parse(&row["minute"]), row["events"].as_f64()) else {
            continue;
        };
        let stream = text(&row["stream"]);
        let point = (minute_of(at), events);
        match streams.iter_mut().find(|(s, _)| *s == stream) {
            Some((_, points)) => points.push(point),
            None => streams.push((stream, vec![point])),
        }
    }
    streams
}

/// One chart per stream (busiest first, at most `limit`) from `GET /v2/stream/_minutes`.
pub(super) fn events_per_minute(rows: &Value, now: OffsetDateTime, limit: usize) -> Vec<Section> {
    let mut streams = by_stream(rows);
    let total = |points: &[(i64, f64)]| points.iter().map(|p| p.1).sum::<f64>();
    streams.sort_by(|a, b| total(&b.1).total_cmp(&total(&a.1)));
    streams
        .into_iter()
        .take(limit)
        .map(|(stream, points)| stream_chart(&stream, &points, now))
        .collect()
}

/// The chart of one stream, flat when it had no events in the window.
pub(super) fn stream_per_minute(rows: &Value, stream: &str, now: OffsetDateTime) -> Section {
    let points = by_stream(rows)
        .into_iter()
        .find(|(s, _)| s == stream)
        .map(|(_, points)| points)
        .unwrap_or_default();
    stream_chart(stream, &points, now)
}

fn stream_chart(stream: &str, points: &[(i64, f64)], now: OffsetDateTime) -> Section {
    Section::Chart(Chart {
        title: format!("{stream}: events per minute"),
        points: minute_points(points, now),
        unit: "events".into(),
    })
}

/// Per-minute increases of the cumulative metrics `names` (summed) from
/// `GET /v2/job/{id}/minutes`. A minute's increase is measured from the last row before it;
/// the first row counts from zero only when the job began in the rows' span (`fresh`).
pub(super) fn job_per_minute(
    rows: &Value,
    names: &[&str],
    fresh: bool,
    now: OffsetDateTime,
) -> Vec<(String, f64)> {
    let mut previous: Option<f64> = fresh.then_some(0.0);
    let mut increases = Vec::new();
    for row in items(rows) {
        let Some(at) = parse(&row["minute"]) else {
            continue;
        };
        let value: f64 = names
            .iter()
            .filter_map(|n| row["metrics"][*n].as_f64())
            .sum();
        if let Some(before) = previous {
            increases.push((minute_of(at), (value - before).max(0.0)));
        }
        previous = Some(value);
    }
    minute_points(&increases, now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(minute: i64) -> String {
        OffsetDateTime::from_unix_timestamp(minute * 60)
            .unwrap()
            .format(&Rfc3339)
            .unwrap()
    }

    #[test]
    fn minutes_without_events_are_zero_and_streams_are_busiest_first() {
        let now = OffsetDateTime::from_unix_timestamp(1_000 * 60 + 30).unwrap();
        let rows = json!([
            {"minute": at(990), "stream": "web", "events": 2},
            {"minute": at(990), "stream": "braze_users", "events": 5},
            {"minute": at(1_000), "stream": "braze_users", "events": 1},
            {"minute": at(900), "stream": "old", "events": 100},
        ]);
        let charts = events_per_minute(&rows, now, 5);
        let titles: Vec<&str> = charts
            .iter()
            .map(|c| match c {
                Section::Chart(c) => c.title.as_str(),
                _ => "",
            })
            .collect();
        // "old" is outside the window: its minute is not a point, but it still sorts.
        assert_eq!(titles[1], "braze_users: events per minute");
        let Section::Chart(braze) = &charts[1] else {
            panic!()
        };
        assert_eq!(braze.points.len(), 60);
        assert_eq!(braze.points[49].1, 5.0);
        assert_eq!(braze.points[59], ("16:40".to_string(), 1.0));
        assert_eq!(braze.points.iter().map(|p| p.1).sum::<f64>(), 6.0);
    }

    #[test]
    fn job_rows_become_increases_per_minute() {
        let now = OffsetDateTime::from_unix_timestamp(100 * 60).unwrap();
        let rows = json!([
            {"minute": at(97), "metrics": {"users_sent": 10, "retries": 1}},
            {"minute": at(99), "metrics": {"users_sent": 25, "retries": 1}},
            {"minute": at(100), "metrics": {"users_sent": 30, "retries": 4}},
        ]);
        let sent = job_per_minute(&rows, &["users_sent"], true, now);
        assert_eq!(
            sent[56..].iter().map(|p| p.1).collect::<Vec<_>>(),
            [10.0, 0.0, 15.0, 5.0]
        );
        let not_fresh = job_per_minute(&rows, &["users_sent", "retries"], false, now);
        assert_eq!(
            not_fresh[56..].iter().map(|p| p.1).collect::<Vec<_>>(),
            [0.0, 0.0, 15.0, 8.0]
        );
    }
}
