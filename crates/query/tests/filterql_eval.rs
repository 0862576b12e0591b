//! FilterQL evaluation, table-driven from the reference (§2.3, §2.4).

use std::collections::HashMap;

use serde_json::json;
use time::macros::datetime;
use tributary_query::eval::NotOk;
use tributary_query::{EvalContext, FilterStatement, Value, evaluate_bool, parse_filter};

const NOW: time::OffsetDateTime = datetime!(2026-06-15 12:00 UTC);

fn profile() -> HashMap<String, Value> {
    let entity = json!({
        "name": "Yoda",
        "empty": "",
        "zip": 5,
        "zip_text": "5",
        "amount": 55,
        "amount_text": "55.5",
        "price": 9.99,
        "paying_user": true,
        "flag_text": "t",
        "hits": {"foo": 2, "bar": "1"},
        "tags": ["gold", "silver-plus", "vip"],
        "scores": [1, 5, 9],
        "empty_list": [],
        "url": "/blog/posts/1",
        "email": "Yoda@Dagobah.org",
        "last_seen": "2026-06-10T08:00:00Z",
        "created": "2025-01-01",
        "visits": ["2026-06-14T00:00:00Z", "2026-01-01T00:00:00Z"],
        "signup_text": "2026-06-01",
        "zero_time": "0001-01-01T00:00:00Z",
        "nothing": null,
    });
    match Value::from_json_with_dates(&entity) {
        Value::Map(m) => m.into_iter().collect(),
        _ => unreachable!(),
    }
}

fn eval_with(
    filter: &str,
    includes: Option<&HashMap<String, FilterStatement>>,
) -> Result<bool, NotOk> {
    let st = parse_filter(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
    let ctx = match includes {
        Some(i) => EvalContext::with_includes(NOW, i),
        None => EvalContext::at(NOW),
    };
    evaluate_bool(&st.filter, &profile(), &ctx)
}

fn eval(filter: &str) -> Result<bool, NotOk> {
    eval_with(filter, None)
}

#[test]
fn match_all_and_comparisons() {
    let cases: &[(&str, Result<bool, NotOk>)] = &[
        ("FILTER *", Ok(true)),
        ("FILTER match_all", Ok(true)),
        ("FILTER name == \"Yoda\"", Ok(true)),
        ("FILTER name = \"Yoda\"", Ok(true)),
        // Equality is case-sensitive; tolower() is the way around it.
        ("FILTER name == \"yoda\"", Ok(false)),
        ("FILTER tolower(name) == \"yoda\"", Ok(true)),
        ("FILTER name != \"yoda\"", Ok(true)),
        // Strings coerce to numbers against numbers, either way round.
        ("FILTER zip == \"5\"", Ok(true)),
        ("FILTER zip_text == 5", Ok(true)),
        ("FILTER amount > \"50\"", Ok(true)),
        ("FILTER amount_text > 55", Ok(true)),
        ("FILTER hits.foo > \"1.5\"", Ok(true)),
        ("FILTER hits.bar >= 1", Ok(true)),
        ("FILTER price < 10", Ok(true)),
        ("FILTER price <= 9.99", Ok(true)),
        // Literal on the left.
        ("FILTER 50 < amount", Ok(true)),
        ("FILTER \"Yoda\" == name", Ok(true)),
        // Booleans, and the "t"/"f" strings Lytics data carries.
        ("FILTER paying_user == true", Ok(true)),
        ("FILTER paying_user = \"t\"", Ok(true)),
        ("FILTER flag_text == true", Ok(true)),
        ("FILTER paying_user", Ok(true)),
        // Ordering a string against a boolean is an error, not a match.
        ("FILTER name > true", Err(NotOk)),
        // Parses, never matches.
        ("FILTER zip * 5 * 2", Err(NotOk)),
        ("FILTER not_a_field + \"yoda\"", Ok(false)),
        ("FILTER zip * 5 == 25", Ok(true)),
        ("FILTER amount - 5 == 50", Ok(true)),
    ];
    for (filter, want) in cases {
        assert_eq!(&eval(filter), want, "{filter}");
    }
}

#[test]
fn missing_fields() {
    let cases: &[(&str, Result<bool, NotOk>)] = &[
        ("FILTER missing == \"x\"", Ok(false)),
        ("FILTER missing != \"x\"", Ok(true)),
        ("FILTER missing > 5", Ok(false)),
        ("FILTER missing < 5", Ok(false)),
        ("FILTER missing LIKE \"a*\"", Ok(false)),
        ("FILTER missing IN (\"x\")", Ok(false)),
        ("FILTER missing INTERSECTS (\"x\")", Ok(false)),
        ("FILTER missing CONTAINS \"x\"", Ok(false)),
        ("FILTER missing BETWEEN 1 AND 5", Ok(false)),
        ("FILTER not_a_field NOT IN (\"x\")", Ok(true)),
        ("FILTER NOT (FakeDate > \"now-1d\")", Ok(true)),
        ("FILTER EXISTS missing", Ok(false)),
        ("FILTER EXISTS nothing", Ok(false)),
        ("FILTER nothing == NULL", Ok(false)),
        // EXISTS is true for the empty string and the zero time.
        ("FILTER EXISTS empty", Ok(true)),
        ("FILTER EXISTS zero_time", Ok(true)),
        ("FILTER exists(name)", Ok(true)),
        ("FILTER EXISTS hits.foo", Ok(true)),
        ("FILTER EXISTS hits.nope", Ok(false)),
    ];
    for (filter, want) in cases {
        assert_eq!(&eval(filter), want, "{filter}");
    }
}

#[test]
fn lists_maps_like_contains_between() {
    let cases: &[(&str, Result<bool, NotOk>)] = &[
        ("FILTER name IN (\"Luke\", \"Yoda\")", Ok(true)),
        ("FILTER zip IN (4, 5)", Ok(true)),
        ("FILTER zip IN (\"5\")", Ok(true)),
        ("FILTER name IN tags", Ok(false)),
        ("FILTER \"gold\" IN tags", Ok(true)),
        // An array on the left is INTERSECTS; a map on the left tests its keys.
        ("FILTER tags IN (\"vip\", \"none\")", Ok(true)),
        ("FILTER tags INTERSECTS (\"x\", \"gold\")", Ok(true)),
        ("FILTER tags INTERSECTS (\"x\")", Ok(false)),
        ("FILTER tags NOT INTERSECTS (\"x\")", Ok(true)),
        ("FILTER hits IN (\"foo\")", Ok(true)),
        ("FILTER hits IN (\"baz\")", Ok(false)),
        ("FILTER hits INTERSECTS (\"foo\")", Ok(true)),
        ("FILTER hits INTERSECTS (\"baz\", \"bar\")", Ok(true)),
        ("FILTER hits INTERSECTS (\"baz\")", Ok(false)),
        ("FILTER hits NOT INTERSECTS (\"foo\")", Ok(false)),
        ("FILTER name NOT IN (\"Luke\")", Ok(true)),
        // CONTAINS: substring; any array element; integer arrays by equality.
        ("FILTER name CONTAINS \"od\"", Ok(true)),
        ("FILTER name NOT CONTAINS \"od\"", Ok(false)),
        ("FILTER tags CONTAINS \"silver\"", Ok(true)),
        ("FILTER scores CONTAINS 5", Ok(true)),
        ("FILTER scores CONTAINS 4", Ok(false)),
        // LIKE is a glob; SQL's % works too; on arrays any element.
        ("FILTER url LIKE \"/blog/*\"", Ok(true)),
        ("FILTER url LIKE \"/blog/\"", Ok(false)),
        ("FILTER url LIKE \"/blog/%\"", Ok(true)),
        ("FILTER email LIKE \"*@Dagobah.org\"", Ok(true)),
        ("FILTER email LIKE \"*@dagobah.org\"", Ok(false)),
        ("FILTER tags LIKE \"sil*\"", Ok(true)),
        ("FILTER url NOT LIKE \"/shop/*\"", Ok(true)),
        // BETWEEN is exclusive at both ends.
        ("FILTER amount BETWEEN 50 AND 60", Ok(true)),
        ("FILTER amount BETWEEN 55 AND 60", Ok(false)),
        ("FILTER amount BETWEEN 50 AND 55", Ok(false)),
        ("FILTER price BETWEEN 9.98 AND 10.0", Ok(true)),
        ("FILTER amount NOT BETWEEN 50 AND 60", Ok(false)),
        (
            "FILTER last_seen BETWEEN \"2026-06-01\" AND \"2026-06-11\"",
            Ok(true),
        ),
        ("FILTER last_seen BETWEEN \"now-7d\" AND \"now\"", Ok(true)),
        ("FILTER last_seen BETWEEN \"now-2d\" AND \"now\"", Ok(false)),
        ("FILTER paying_user BETWEEN 1 AND 5", Err(NotOk)),
    ];
    for (filter, want) in cases {
        assert_eq!(&eval(filter), want, "{filter}");
    }
}

#[test]
fn dates_and_date_math() {
    let cases: &[(&str, Result<bool, NotOk>)] = &[
        ("FILTER last_seen > \"now-30d\"", Ok(true)),
        ("FILTER last_seen > \"now-2d\"", Ok(false)),
        ("FILTER last_seen < \"now-2d\"", Ok(true)),
        ("FILTER last_seen > \"2026-06-01\"", Ok(true)),
        ("FILTER last_seen > \"06/01/2026\"", Ok(true)),
        ("FILTER created < \"now-1y\"", Ok(true)),
        ("FILTER created < \"now-2y\"", Ok(false)),
        ("FILTER \"now-30d\" < last_seen", Ok(true)),
        // A date held as text compares as a date against date math or a date literal.
        ("FILTER signup_text > \"now-30d\"", Ok(true)),
        ("FILTER signup_text > \"2026-05-31\"", Ok(true)),
        ("FILTER signup_text < \"2026-05-31\"", Ok(false)),
        // Any element of an array of times; an empty array never.
        ("FILTER visits > \"now-2d\"", Ok(true)),
        ("FILTER visits > \"now-1h\"", Ok(false)),
        ("FILTER empty_list > \"now-2d\"", Ok(false)),
        ("FILTER last_seen > \"now+1M\"", Ok(false)),
        ("FILTER name > \"now-1d\"", Err(NotOk)),
    ];
    for (filter, want) in cases {
        assert_eq!(&eval(filter), want, "{filter}");
    }
}

#[test]
fn and_or_not_with_unevaluable_children() {
    let cases: &[(&str, Result<bool, NotOk>)] = &[
        ("FILTER AND (name == \"Yoda\", zip == 5)", Ok(true)),
        ("FILTER AND (name == \"Yoda\", zip == 6)", Ok(false)),
        // A child that cannot be evaluated fails the whole AND...
        ("FILTER AND (name == \"Yoda\", name > true)", Err(NotOk)),
        // ...unless a false child came first.
        ("FILTER AND (zip == 6, name > true)", Ok(false)),
        // OR skips it.
        ("FILTER OR (name > true, zip == 5)", Ok(true)),
        ("FILTER OR (name > true, zip == 6)", Ok(false)),
        ("FILTER NOT (name > true)", Err(NotOk)),
        ("FILTER NOT AND (zip == 5, name == \"Yoda\")", Ok(false)),
        ("FILTER NOT OR (zip == 6, name == \"Luke\")", Ok(true)),
        ("FILTER zip == 5 AND name == \"Yoda\"", Ok(true)),
        ("FILTER zip == 6 OR name == \"Yoda\"", Ok(true)),
        ("FILTER AND (\n  zip == 5\n  name == \"Yoda\"\n)", Ok(true)),
        (
            "FILTER OR (zip == 6, AND (name == \"Yoda\", EXISTS tags,),)",
            Ok(true),
        ),
        ("FILTER !(zip == 6)", Ok(true)),
    ];
    for (filter, want) in cases {
        assert_eq!(&eval(filter), want, "{filter}");
    }
}

#[test]
fn include_resolves_detects_cycles_and_negates_unknown() {
    let mut includes = HashMap::new();
    for text in [
        "FILTER name == \"Yoda\" ALIAS jedi",
        "FILTER AND (INCLUDE jedi, zip == 5) ALIAS jedi_zip5",
        "FILTER INCLUDE loop_b ALIAS loop_a",
        "FILTER INCLUDE loop_a ALIAS loop_b",
    ] {
        let st = parse_filter(text).unwrap();
        includes.insert(st.alias.clone().unwrap(), st);
    }
    let cases: &[(&str, Result<bool, NotOk>)] = &[
        ("FILTER INCLUDE jedi", Ok(true)),
        ("FILTER INCLUDE Jedi_Zip5", Ok(true)),
        ("FILTER INCLUDE 'jedi'", Ok(true)),
        ("FILTER NOT INCLUDE jedi", Ok(false)),
        ("FILTER INCLUDE loop_a", Err(NotOk)),
        ("FILTER INCLUDE nowhere", Err(NotOk)),
        // NOT INCLUDE of an audience that cannot be evaluated is true.
        ("FILTER NOT INCLUDE nowhere", Ok(true)),
        ("FILTER NOT INCLUDE loop_a", Ok(true)),
        ("FILTER OR (INCLUDE nowhere, INCLUDE jedi)", Ok(true)),
    ];
    for (filter, want) in cases {
        assert_eq!(&eval_with(filter, Some(&includes)), want, "{filter}");
    }
    assert_eq!(
        eval("FILTER INCLUDE jedi"),
        Err(NotOk),
        "no includer at all"
    );
}

#[test]
fn functions_in_filters() {
    let cases: &[(&str, Result<bool, NotOk>)] = &[
        ("FILTER emaildomain(email) == \"dagobah.org\"", Ok(true)),
        ("FILTER domain(email) == \"dagobah.org\"", Ok(true)),
        ("FILTER len(tags) == 3", Ok(true)),
        ("FILTER hasprefix(name, \"Yo\")", Ok(true)),
        ("FILTER contains(name, \"z\")", Ok(false)),
        ("FILTER daysago(last_seen) < 10", Ok(true)),
        ("FILTER eq(zip, 5)", Ok(true)),
        ("FILTER hasprefix(missing, \"x\")", Ok(false)),
    ];
    for (filter, want) in cases {
        assert_eq!(&eval(filter), want, "{filter}");
    }
}

/// LIKE looks at values up to 1 MiB and patterns up to 1,024 characters (issue 13): a longer
/// pattern is refused when parsed, a longer value does not match.
#[test]
fn like_has_bounded_inputs() {
    let ctx = EvalContext::at(NOW);
    let statement = parse_filter(r#"FILTER long LIKE "a*" ALIAS s"#).expect("parses");
    for (len, want) in [(1_000, true), (2 * 1024 * 1024, false)] {
        let entity: HashMap<String, Value> =
            [("long".to_string(), Value::String("a".repeat(len)))].into();
        assert_eq!(
            evaluate_bool(&statement.filter, &entity, &ctx),
            Ok(want),
            "{len}"
        );
    }
    let long_pattern = format!(r#"FILTER name LIKE "{}" ALIAS s"#, "a".repeat(1_025));
    let e = parse_filter(&long_pattern).expect_err("too long");
    assert!(e.message.contains("at most 1024 characters"), "{e:?}");
}
