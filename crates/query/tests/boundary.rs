//! The boundary function: when a date-relative filter can next change its result.

use std::collections::HashMap;

use time::Duration;
use time::macros::datetime;
use tributary_query::boundary::next_change;
use tributary_query::{EvalContext, Value, matches, parse_filter};

fn profile() -> HashMap<String, Value> {
    HashMap::from([
        (
            "last_seen".to_string(),
            Value::Time(datetime!(2024-03-01 0:00 UTC)),
        ),
        (
            "visits".to_string(),
            Value::Array(vec![
                Value::Time(datetime!(2024-02-20 0:00 UTC)),
                Value::Time(datetime!(2024-03-05 0:00 UTC)),
            ]),
        ),
        ("name".to_string(), Value::String("x".into())),
    ])
}

#[test]
fn boundaries_are_when_the_result_flips() {
    let now = datetime!(2024-03-10 0:00 UTC);
    let cases = [
        // last_seen > now-30d holds until now-30d reaches last_seen: 2024-03-31.
        (
            "FILTER last_seen > \"now-30d\"",
            Some(datetime!(2024-03-31 0:00 UTC)),
        ),
        (
            "FILTER last_seen <= \"now-30d\"",
            Some(datetime!(2024-03-31 0:00 UTC)),
        ),
        (
            "FILTER last_seen >= \"now-30d\"",
            Some(datetime!(2024-03-31 0:00 UTC) + Duration::microseconds(1)),
        ),
        (
            "FILTER last_seen > \"now-1M\"",
            Some(datetime!(2024-04-01 0:00 UTC)),
        ),
        // Already past: nothing will change any more.
        ("FILTER last_seen > \"now-2d\"", None),
        // Conservative: the earliest flip of any array element or tree node (02-20 + 20d),
        // even though 03-05 keeps the array matching until 03-25.
        (
            "FILTER visits > \"now-20d\"",
            Some(datetime!(2024-03-11 0:00 UTC)),
        ),
        (
            "FILTER visits > \"now-10d\"",
            Some(datetime!(2024-03-15 0:00 UTC)),
        ),
        (
            "FILTER AND (visits > \"now-20d\", last_seen > \"now-10d\")",
            Some(datetime!(2024-03-11 0:00 UTC)),
        ),
        (
            "FILTER last_seen BETWEEN \"now-30d\" AND \"now-5d\"",
            Some(datetime!(2024-03-31 0:00 UTC)),
        ),
        (
            "FILTER NOT (last_seen > \"now-15d\")",
            Some(datetime!(2024-03-16 0:00 UTC)),
        ),
        // No date math, equality, or a missing field: no boundary.
        ("FILTER last_seen > \"2024-01-01\"", None),
        ("FILTER last_seen == \"now-30d\"", None),
        ("FILTER missing > \"now-30d\"", None),
        ("FILTER name == \"x\"", None),
    ];
    for (text, want) in cases {
        let st = parse_filter(text).unwrap();
        assert_eq!(
            next_change(&st.filter, &profile(), &EvalContext::at(now)),
            want,
            "{text}"
        );
    }
}

#[test]
fn the_result_really_changes_at_the_boundary_and_not_before() {
    let st = parse_filter("FILTER last_seen > \"now-30d\"").unwrap();
    let now = datetime!(2024-03-10 0:00 UTC);
    let b = next_change(&st.filter, &profile(), &EvalContext::at(now)).unwrap();
    assert!(matches(&st.filter, &profile(), &EvalContext::at(now)));
    assert!(matches(
        &st.filter,
        &profile(),
        &EvalContext::at(b - Duration::seconds(1))
    ));
    assert!(!matches(&st.filter, &profile(), &EvalContext::at(b)));
}
