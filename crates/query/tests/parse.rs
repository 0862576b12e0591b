//! Parsing: the grammar of both languages, normalisation, and errors with line and column.

use tributary_query::ast::{CmpOp, Expr, Kind, ListSource, Literal, MergeOp};
use tributary_query::{Value, parse_expr, parse_filter, parse_filterql, parse_lql};

fn field(name: &str) -> Box<Expr> {
    Box::new(Expr::Field(name.split('.').map(str::to_string).collect()))
}

#[test]
fn filterql_statement_clauses() {
    let st = parse_filter(
        "-- Customers who paid\n/* recently */\nfilter AND (paying_user = \"t\", visits > 3,)\nfrom user limit 100 with backfill = true, track_deltas = false ALIAS Demo_Segment",
    )
    .unwrap();
    assert_eq!(
        st.description.as_deref(),
        Some("Customers who paid\nrecently")
    );
    assert_eq!(st.from.as_deref(), Some("user"));
    assert_eq!(st.limit, Some(100));
    assert_eq!(
        st.with,
        vec![
            ("backfill".to_string(), Literal::Value(Value::Bool(true))),
            (
                "track_deltas".to_string(),
                Literal::Value(Value::Bool(false))
            ),
        ]
    );
    assert_eq!(st.alias.as_deref(), Some("demo_segment"));
    assert!(matches!(st.filter, Expr::And(ref items) if items.len() == 2));

    // Keywords are property names in WITH, as Lytics writes them.
    let kinds = parse_filter(
        "FILTER EXISTS email FROM user WITH kind = \"aspect\", limit = 5, from = \"x\" ALIAS k",
    )
    .unwrap();
    assert_eq!(
        kinds
            .with
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>(),
        ["kind", "limit", "from"]
    );
    assert_eq!(kinds.alias.as_deref(), Some("k"));

    let where_form = parse_filter("WHERE city == \"Paris\"").unwrap();
    assert_eq!(
        where_form.filter,
        Expr::Compare(
            CmpOp::Eq,
            field("city"),
            Box::new(Expr::Literal(Literal::string("Paris")))
        )
    );
    let select =
        parse_filter("SELECT name, email FROM user FILTER EXISTS email ALIAS with_email").unwrap();
    assert_eq!(select.columns.len(), 2);
    assert_eq!(select.from.as_deref(), Some("user"));
    assert_eq!(
        parse_filterql("FILTER a == 1 ALIAS x; FILTER b == 2 ALIAS y;")
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn normalisation() {
    let same = |a: &str, b: &str| {
        assert_eq!(
            parse_filter(a).unwrap().filter,
            parse_filter(b).unwrap().filter,
            "{a} vs {b}"
        );
    };
    same("FILTER OR (x == \"y\")", "FILTER x == \"y\"");
    same("FILTER NOT AND (a == 1)", "FILTER NOT (a == 1)");
    same(
        "FILTER AND (a == 1, AND (b == 2, c == 3))",
        "FILTER AND (a == 1, b == 2, c == 3)",
    );
    same(
        "FILTER a == 1 AND b == 2 AND c == 3",
        "FILTER AND (a == 1, b == 2, c == 3)",
    );
    same("FILTER 5 < x", "FILTER x > 5");
    same("FILTER x NOT IN (1)", "FILTER NOT (x IN (1))");
    same("FILTER x <> 1", "FILTER x != 1");
    same("filter X == 1", "FILTER X == 1");
    same(
        "FILTER AND (a == 1\n b == 2\n)",
        "FILTER AND (a == 1, b == 2)",
    );
    same("FILTER exists(a)", "FILTER EXISTS a");
    same("FILTER x = -3", "FILTER x == -3");
    same(
        "# hash comment\nFILTER a == 1 // trailing\n",
        "FILTER a == 1",
    );
}

#[test]
fn identifiers_and_literals() {
    assert_eq!(
        parse_expr("`my field` == 1").unwrap(),
        Expr::Compare(
            CmpOp::Eq,
            Box::new(Expr::Field(vec!["my field".into()])),
            Box::new(Expr::Literal(Literal::int(1)))
        )
    );
    assert_eq!(
        parse_expr("`last.event`.`has.period` == 'x'").unwrap(),
        Expr::Compare(
            CmpOp::Eq,
            Box::new(Expr::Field(vec!["last.event".into(), "has.period".into()])),
            Box::new(Expr::Literal(Literal::string("x")))
        )
    );
    assert_eq!(parse_expr("user.city").unwrap(), *field("user.city"));
    assert_eq!(parse_expr("_uid").unwrap(), *field("_uid"));
    assert_eq!(
        parse_expr("`from` == 1").unwrap(),
        Expr::Compare(
            CmpOp::Eq,
            Box::new(Expr::Field(vec!["from".into()])),
            Box::new(Expr::Literal(Literal::int(1)))
        )
    );
    assert_eq!(
        parse_expr("1.5e3").unwrap(),
        Expr::Literal(Literal::Value(Value::Number(1500.0)))
    );
    assert_eq!(
        parse_expr("\"a\\\"b\"").unwrap(),
        Expr::Literal(Literal::string("a\"b"))
    );
    assert_eq!(
        parse_expr("x IN tags").unwrap(),
        Expr::In(field("x"), ListSource::Field(vec!["tags".into()]))
    );
    assert!(matches!(
        parse_expr("\"now-30d\"").unwrap(),
        Expr::Literal(Literal::DateMath(_))
    ));
    assert_eq!(
        parse_expr("\"nowhere\"").unwrap(),
        Expr::Literal(Literal::string("nowhere"))
    );
    assert_eq!(
        parse_expr("INCLUDE `Big Spenders`").unwrap(),
        Expr::Include("big spenders".into())
    );
    assert_eq!(
        parse_expr("x BETWEEN 1 AND 5").unwrap(),
        Expr::Between(
            field("x"),
            Box::new(Expr::Literal(Literal::int(1))),
            Box::new(Expr::Literal(Literal::int(5)))
        )
    );
}

#[test]
fn lql_statements() {
    let text = r#"
        -- the official example, abridged
        SELECT name, age KIND INT, last_visit_ts KIND DATE, count(_ref) AS ref_ct,
          valuect(`my field`) AS myfield_mapct,
          amt AS first_order_amount IF event == "cart checkout" SHORTDESC "First order" KIND INT MERGEOP OLDEST,
          match("user.") AS user_attributes KIND map[string]string, set(event) AS all_events,
          email(EmailAddress) AS email, _uid, fbuid
        FROM default INTO USER BY _uid OR email OR fbuid WHERE _bot = "f" OR NOT EXISTS _bot ALIAS web_user;
        SELECT braze_id AS br_user_id SHORTDESC "Braze User ID", city FROM braze_users INTO user BY br_user_id ALIAS braze_users
    "#;
    let all = parse_lql(text).unwrap();
    assert_eq!(all.len(), 2);
    let web = &all[0];
    assert_eq!(web.from, "default");
    assert_eq!(web.by, vec!["_uid", "email", "fbuid"]);
    assert_eq!(web.alias, "web_user");
    assert!(web.filter.is_some());
    assert_eq!(web.columns.len(), 11);
    let amt = &web.columns[5];
    assert_eq!(amt.alias.as_deref(), Some("first_order_amount"));
    assert!(amt.guard.is_some());
    assert_eq!(amt.short_desc.as_deref(), Some("First order"));
    assert_eq!(amt.kind, Some(Kind::Int));
    assert_eq!(amt.merge_op, Some(MergeOp::Oldest));
    assert_eq!(web.columns[6].kind, Some(Kind::MapString));
    assert_eq!(web.columns[1].kind, Some(Kind::Int));
    assert_eq!(
        all[1].columns[0].short_desc.as_deref(),
        Some("Braze User ID")
    );
    for kind in [
        "[]string",
        "ts[]string",
        "[]time",
        "map[string]int",
        "map[string]time",
        "number",
        "bool",
    ] {
        let st = parse_lql(&format!(
            "SELECT x KIND {kind} FROM s INTO user BY x ALIAS a"
        ))
        .unwrap();
        assert_eq!(st[0].columns[0].kind.map(Kind::as_str), Some(kind));
    }
}

#[test]
fn errors_say_what_and_where() {
    let cases: &[(&str, u32, u32, &str)] = &[
        ("FILTER AND (a == 1", 1, 19, "expected an expression"),
        (
            "FILTER a == ",
            1,
            13,
            "expected an expression, found the end",
        ),
        ("FILTER\n  nope(a) == 1", 2, 3, "unknown function nope()"),
        ("FILTER last > \"now-3x\"", 1, 15, "malformed date math"),
        ("FILTER x == \"now-\"", 1, 13, "malformed date math"),
        ("FILTER x == \"now+now\"", 1, 13, "malformed date math"),
        (
            "FILTER a == 1 LIMIT x",
            1,
            21,
            "expected an integer after LIMIT",
        ),
        ("FILTER a == \"unterminated", 1, 13, "unterminated string"),
        ("FILTER a == 1 garbage", 1, 15, "expected"),
        ("a == 1", 1, 1, "expected FILTER or WHERE"),
        ("FILTER a NOT == 1", 1, 10, "found keyword NOT"),
        ("FILTER a == 1 /* open", 1, 15, "unterminated /* comment"),
        ("FILTER x BETWEEN 1 5", 1, 20, "expected AND"),
        (
            "FILTER tolower()",
            1,
            8,
            "tolower() takes 1 argument(s), found 0",
        ),
        ("FILTER count(x) > 1", 1, 8, "only allowed as an LQL column"),
        ("", 1, 1, "found nothing"),
        ("FILTER a == 1 ALIAS", 1, 20, "expected a name after ALIAS"),
        ("FILTER x == 99999999999999999999", 1, 13, "too large"),
    ];
    for (text, line, column, message) in cases {
        let e = parse_filterql(text).unwrap_err();
        assert_eq!((e.line, e.column), (*line, *column), "{text}: {e}");
        assert!(e.message.contains(message), "{text}: {e}");
    }
    let lql: &[(&str, &str)] = &[
        ("SELECT a FROM s INTO user ALIAS x", "expected BY"),
        ("SELECT a FROM s INTO user BY a", "expected ALIAS"),
        (
            "SELECT a KIND list FROM s INTO user BY a ALIAS x",
            "unknown KIND",
        ),
        (
            "SELECT a MERGEOP newest FROM s INTO user BY a ALIAS x",
            "unknown MERGEOP",
        ),
        (
            "SELECT FROM s INTO user BY a ALIAS x",
            "expected an expression",
        ),
    ];
    for (text, message) in lql {
        let e = parse_lql(text).unwrap_err();
        assert!(e.message.contains(message), "{text}: {e}");
    }
    assert_eq!(
        parse_lql("SELECT a\nFROM s\nINTO user\nBY\nALIAS x")
            .unwrap_err()
            .to_string(),
        "line 5, column 1: expected an identity field after BY, found keyword ALIAS"
    );
}

#[test]
fn deep_nesting_is_an_error_not_a_crash() {
    let deep = format!("FILTER {}a == 1{}", "(".repeat(5_000), ")".repeat(5_000));
    assert!(
        parse_filter(&deep)
            .unwrap_err()
            .message
            .contains("nested too deeply")
    );
    let nots = format!("FILTER {}a == 1", "NOT ".repeat(5_000));
    assert!(parse_filter(&nots).is_err());
}
