//! The canonical printer: golden outputs, and `parse(print(ast)) == ast` as a property over
//! generated trees of both languages.

use proptest::prelude::*;
use tributary_query::ast::*;
use tributary_query::dates::{DateMath, Unit};
use tributary_query::{Value, parse_filter, parse_lql};

#[test]
fn golden_filterql() {
    let cases = [
        (
            "filter and(a=1,b!=\"x\",)",
            "FILTER AND ( a == 1, b != \"x\" )",
        ),
        ("FILTER 5 < score", "FILTER score > 5"),
        (
            "FILTER x not in ('a', \"b\")",
            "FILTER NOT (x IN (\"a\", \"b\"))",
        ),
        (
            "FILTER last_seen > 'now-30d'",
            "FILTER last_seen > \"now-30d\"",
        ),
        (
            "FILTER `my field` LIKE \"a*\" OR tags INTERSECTS other",
            "FILTER OR ( `my field` LIKE \"a*\", tags INTERSECTS other )",
        ),
        (
            "FILTER tolower(name) == \"yoda\" ALIAS Jedi",
            "FILTER tolower(name) == \"yoda\"\nALIAS jedi",
        ),
        (
            "FILTER * FROM user LIMIT 5 WITH backfill=true",
            "FILTER *\nFROM user\nLIMIT 5\nWITH backfill = true",
        ),
        (
            "FILTER NOT INCLUDE 'Big Spenders'",
            "FILTER NOT (INCLUDE `big spenders`)",
        ),
        ("FILTER x BETWEEN -1.5 AND 2", "FILTER x BETWEEN -1.5 AND 2"),
        ("FILTER (a + 2) * 3 > b", "FILTER ((a + 2) * 3) > b"),
        (
            "-- desc\nFILTER EXISTS email",
            "-- desc\nFILTER EXISTS email",
        ),
        ("FILTER `from` == \"a\\\"b\"", "FILTER `from` == \"a\\\"b\""),
    ];
    for (input, want) in cases {
        let st = parse_filter(input).unwrap();
        assert_eq!(st.to_string(), want, "{input}");
        assert_eq!(parse_filter(want).unwrap(), st);
    }
}

#[test]
fn golden_lql() {
    let input = "select braze_id as br_user_id shortdesc \"Braze ID\", email(email) as email, count(braze_id) as webhook_ct kind int mergeop count from braze_users into user by br_user_id or email where exists braze_id alias braze_users";
    let want = "SELECT\n    braze_id AS br_user_id SHORTDESC \"Braze ID\",\n    email(email) AS email,\n    count(braze_id) AS webhook_ct KIND int MERGEOP count\nFROM braze_users\nINTO user\nBY br_user_id OR email\nWHERE EXISTS braze_id\nALIAS braze_users";
    let st = parse_lql(input).unwrap().remove(0);
    assert_eq!(st.to_string(), want);
    assert_eq!(parse_lql(want).unwrap(), vec![st]);
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_][a-z0-9_]{0,6}",
        Just("my field".to_string()),
        Just("from".to_string()),
        Just("a.b".to_string()),
        Just("Ünïcode".to_string()),
    ]
}

fn path() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(name(), 1..3)
}

fn plain_string() -> impl Strategy<Value = String> {
    "[ -~éü\n\t\"\\\\]{0,12}".prop_filter("date math is a literal of its own", |s| {
        !tributary_query::dates::looks_like_date_math(s)
    })
}

fn literal() -> impl Strategy<Value = Literal> {
    let unit = prop_oneof![
        Just(Unit::Year),
        Just(Unit::Month),
        Just(Unit::Week),
        Just(Unit::Day),
        Just(Unit::Hour),
        Just(Unit::Minute),
        Just(Unit::Second)
    ];
    prop_oneof![
        plain_string().prop_map(Literal::string),
        any::<i64>().prop_map(Literal::int),
        (-1e12f64..1e12).prop_map(|f| Literal::Value(Value::Number(f))),
        any::<bool>().prop_map(|b| Literal::Value(Value::Bool(b))),
        Just(Literal::Value(Value::Null)),
        prop::collection::vec((-500i64..500, unit), 0..3)
            .prop_map(|offsets| Literal::DateMath(DateMath { offsets })),
    ]
}

fn operand() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        path().prop_map(Expr::Field),
        literal().prop_map(Expr::Literal)
    ];
    leaf.prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            (
                prop_oneof![
                    Just(ArithOp::Add),
                    Just(ArithOp::Sub),
                    Just(ArithOp::Mul),
                    Just(ArithOp::Div),
                    Just(ArithOp::Mod)
                ],
                inner.clone(),
                inner.clone()
            )
                .prop_map(|(op, a, b)| Expr::Arith(op, Box::new(a), Box::new(b))),
            inner
                .clone()
                .prop_map(|a| Expr::Call("tolower".into(), vec![a])),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| Expr::Call("join".into(), vec![a, b])),
            Just(Expr::Call("now".into(), vec![])),
        ]
    })
}

/// An operand that is not a bare literal (the left side of a normalised comparison).
fn subject() -> impl Strategy<Value = Expr> {
    operand().prop_filter("literal on the left is normalised away", |e| {
        !matches!(e, Expr::Literal(_))
    })
}

fn list() -> impl Strategy<Value = ListSource> {
    prop_oneof![
        prop::collection::vec(operand(), 0..4).prop_map(ListSource::Items),
        path().prop_map(ListSource::Field),
    ]
}

fn condition() -> impl Strategy<Value = Expr> {
    let cmp = prop_oneof![
        Just(CmpOp::Eq),
        Just(CmpOp::Ne),
        Just(CmpOp::Gt),
        Just(CmpOp::Ge),
        Just(CmpOp::Lt),
        Just(CmpOp::Le)
    ];
    let leaf = prop_oneof![
        (cmp, subject(), operand()).prop_map(|(op, a, b)| Expr::Compare(
            op,
            Box::new(a),
            Box::new(b)
        )),
        path().prop_map(Expr::Exists),
        (subject(), list()).prop_map(|(a, l)| Expr::In(Box::new(a), l)),
        (subject(), list()).prop_map(|(a, l)| Expr::Intersects(Box::new(a), l)),
        (subject(), operand()).prop_map(|(a, b)| Expr::Contains(Box::new(a), Box::new(b))),
        (subject(), operand()).prop_map(|(a, b)| Expr::Like(Box::new(a), Box::new(b))),
        (subject(), operand(), operand()).prop_map(|(a, b, c)| Expr::Between(
            Box::new(a),
            Box::new(b),
            Box::new(c)
        )),
        "[a-z][a-z0-9_ ]{0,8}".prop_map(Expr::Include),
        Just(Expr::MatchAll),
        (subject(), subject()).prop_map(|(a, b)| Expr::Call("hasprefix".into(), vec![a, b])),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 2..4).prop_map(|items| flat(items, true)),
            prop::collection::vec(inner.clone(), 2..4).prop_map(|items| flat(items, false)),
            inner.prop_map(|e| Expr::Not(Box::new(e))),
        ]
    })
}

fn flat(items: Vec<Expr>, and: bool) -> Expr {
    let mut out = Vec::new();
    for i in items {
        match i {
            Expr::And(inner) if and => out.extend(inner),
            Expr::Or(inner) if !and => out.extend(inner),
            other => out.push(other),
        }
    }
    if and { Expr::And(out) } else { Expr::Or(out) }
}

fn filter_statement() -> impl Strategy<Value = FilterStatement> {
    (
        condition(),
        prop::option::of("[a-z]{1,8}"),
        prop::option::of(0i64..1000),
        prop::collection::vec(("[a-z_]{1,8}", literal()), 0..3),
        prop::option::of("[a-z][a-z0-9_]{0,10}"),
        prop::option::of("[a-zA-Z ]{1,20}"),
    )
        .prop_map(
            |(filter, from, limit, with, alias, description)| FilterStatement {
                description: description
                    .map(|d| d.trim().to_string())
                    .filter(|d| !d.is_empty()),
                columns: Vec::new(),
                filter,
                from,
                limit,
                with,
                alias,
            },
        )
}

fn kind() -> impl Strategy<Value = Kind> {
    prop::sample::select(Kind::ALL.to_vec())
}

fn merge_op() -> impl Strategy<Value = MergeOp> {
    prop::sample::select(MergeOp::ALL.to_vec())
}

fn column() -> impl Strategy<Value = Column> {
    (
        operand(),
        prop::option::of(name()),
        prop::option::of(condition()),
        prop::option::of(plain_string()),
        prop::option::of(plain_string()),
        prop::option::of(kind()),
        prop::option::of(merge_op()),
    )
        .prop_map(
            |(expr, alias, guard, short_desc, long_desc, kind, merge_op)| Column {
                expr,
                alias,
                guard,
                short_desc,
                long_desc,
                kind,
                merge_op,
            },
        )
}

fn lql_statement() -> impl Strategy<Value = LqlStatement> {
    (
        prop::collection::vec(column(), 1..4),
        name(),
        prop::collection::vec(name(), 1..3),
        prop::option::of(condition()),
        name(),
    )
        .prop_map(|(columns, from, by, filter, alias)| LqlStatement {
            columns,
            from,
            into: "user".into(),
            by,
            filter,
            alias,
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn filterql_round_trips(st in filter_statement()) {
        let printed = st.to_string();
        let parsed = parse_filter(&printed).map_err(|e| TestCaseError::fail(format!("{e}\n{printed}")))?;
        prop_assert_eq!(parsed, st, "{}", printed);
    }

    #[test]
    fn lql_round_trips(st in lql_statement()) {
        let printed = st.to_string();
        let parsed = parse_lql(&printed).map_err(|e| TestCaseError::fail(format!("{e}\n{printed}")))?;
        prop_assert_eq!(parsed, vec![st], "{}", printed);
    }
}
