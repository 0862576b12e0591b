//! The fuzz targets' entry points, run in `cargo test` over a bounded number of generated
//! inputs: token soups from both languages' vocabularies (which reach deep into the parsers),
//! and arbitrary text. Nothing may panic, and whatever parses must round-trip through the
//! printer. For longer runs use cargo-fuzz (see `crates/query/fuzz/Cargo.toml`).

use proptest::prelude::*;
use tributary_query::{fuzz_filterql, fuzz_lql};

const VOCABULARY: &[&str] = &[
    "FILTER",
    "WHERE",
    "SELECT",
    "FROM",
    "INTO",
    "user",
    "BY",
    "OR",
    "AND",
    "NOT",
    "IN",
    "INTERSECTS",
    "CONTAINS",
    "LIKE",
    "BETWEEN",
    "EXISTS",
    "INCLUDE",
    "ALIAS",
    "AS",
    "IF",
    "KIND",
    "MERGEOP",
    "SHORTDESC",
    "LONGDESC",
    "LIMIT",
    "WITH",
    "*",
    "match_all",
    "(",
    ")",
    ",",
    ";",
    "==",
    "=",
    "!=",
    ">",
    ">=",
    "<",
    "<=",
    "+",
    "-",
    "/",
    "%",
    "!",
    "a",
    "b.c",
    "`x y`",
    "`a`.`b`",
    "\"s\"",
    "'q'",
    "\"now-3d\"",
    "\"now-\"",
    "\"now+2M\"",
    "1",
    "-7",
    "2.5",
    "1e3",
    "true",
    "false",
    "NULL",
    "tolower",
    "count",
    "set",
    "email",
    "todate",
    "[",
    "]",
    "int",
    "map",
    "string",
    "oldest",
    "latest",
    "--c\n",
    "/*x*/",
    "#h\n",
    "\n",
    "\"unterminated",
    "`open",
    "99999999999999999999",
];

/// The words of a condition, for soups that often parse.
const CONDITION_WORDS: &[&str] = &[
    "a",
    "x",
    "b.c",
    "`x y`",
    "\"s\"",
    "\"z\"",
    "1",
    "2.5",
    "-7",
    "\"now-3d\"",
    "true",
    "NULL",
    "=",
    "!=",
    ">",
    "<=",
    "AND",
    "OR",
    "NOT",
    "IN",
    "INTERSECTS",
    "CONTAINS",
    "LIKE",
    "\"*z?\"",
    "BETWEEN",
    "EXISTS",
    "(",
    ")",
    ",",
    "tolower",
    "todate",
    "*",
];

/// `FILTER <words> FROM user ALIAS s`.
fn condition_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(CONDITION_WORDS), 1..10)
        .prop_map(|t| format!("FILTER {} FROM user ALIAS s", t.join(" ")))
}

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(VOCABULARY), 0..40).prop_map(|t| t.join(" "))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3_000, failure_persistence: None, .. ProptestConfig::default() })]

    #[test]
    fn filterql_parser_never_panics(text in token_soup()) {
        fuzz_filterql(text.as_bytes());
    }

    #[test]
    fn lql_parser_never_panics(text in token_soup()) {
        fuzz_lql(text.as_bytes());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        fuzz_filterql(&bytes);
        fuzz_lql(&bytes);
    }

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,80}") {
        fuzz_filterql(text.as_bytes());
        fuzz_lql(text.as_bytes());
    }
}

/// Every statement that comes out of a soup of condition words that parses is also evaluated
/// against an empty and a populated profile: evaluation must not panic either.
#[test]
fn evaluating_parsed_soups_never_panics() {
    use std::collections::HashMap;
    use tributary_query::{EvalContext, Value, evaluate_bool, parse_filterql};
    let mut profile = HashMap::new();
    profile.insert("a".to_string(), Value::Int(1));
    profile.insert("x y".to_string(), Value::String("z".into()));
    let ctx = EvalContext::at(time::OffsetDateTime::UNIX_EPOCH);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 2_000,
        ..ProptestConfig::default()
    });
    let evaluated = std::cell::Cell::new(0u32);
    runner
        .run(&condition_soup(), |text| {
            if let Ok(statements) = parse_filterql(&text) {
                for st in statements {
                    let _ = evaluate_bool(&st.filter, &profile, &ctx);
                    let _ = evaluate_bool(&st.filter, &HashMap::new(), &ctx);
                    evaluated.set(evaluated.get() + 1);
                }
            }
            Ok(())
        })
        .unwrap();
    // The test means something only if a fair share of the soups parsed.
    assert!(
        evaluated.get() >= 100,
        "only {} of 2,000 soups parsed",
        evaluated.get()
    );
}
