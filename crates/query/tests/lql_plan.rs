//! LQL mapping plans: defaults, identity fields, guards, WHERE, KIND coercion, plan errors.

use serde_json::json;
use time::macros::datetime;
use tributary_query::ast::{Kind, MergeOp};
use tributary_query::lql::{MappingPlan, compile};
use tributary_query::{Value, parse_lql};

fn plan(text: &str) -> MappingPlan {
    compile(&parse_lql(text).unwrap()[0]).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn event(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn defaults_and_identities() {
    let p = plan(
        "SELECT braze_id, email(email) AS email, city, count(braze_id) AS webhook_ct, set(tags) AS all_tags,
           valuect(country) AS countries, todate(date_of_birth) AS date_of_birth, now() AS first_seen MERGEOP oldest,
           match(\"utm_\") AS utm, age KIND int MERGEOP max, total_spent KIND number MERGEOP sum
         FROM braze_users INTO user BY braze_id OR email ALIAS braze_users",
    );
    let f = |name: &str| p.fields.iter().find(|f| f.name == name).unwrap();
    assert_eq!(
        (
            f("braze_id").kind,
            f("braze_id").merge_op,
            f("braze_id").is_identity
        ),
        (Kind::String, MergeOp::Latest, true)
    );
    assert!(f("email").is_identity);
    assert!(!f("city").is_identity);
    assert_eq!(
        (f("webhook_ct").kind, f("webhook_ct").merge_op),
        (Kind::Int, MergeOp::Count)
    );
    assert_eq!(
        (f("all_tags").kind, f("all_tags").merge_op),
        (Kind::StringList, MergeOp::Union)
    );
    assert_eq!(
        (f("countries").kind, f("countries").merge_op),
        (Kind::MapInt, MergeOp::Sum)
    );
    assert_eq!(f("date_of_birth").kind, Kind::Date);
    assert_eq!(
        (f("first_seen").kind, f("first_seen").merge_op),
        (Kind::Date, MergeOp::Oldest)
    );
    assert_eq!(
        (f("utm").kind, f("utm").merge_op),
        (Kind::MapString, MergeOp::Merge)
    );
    assert_eq!(
        (f("age").kind, f("age").merge_op),
        (Kind::Int, MergeOp::Max)
    );
    assert_eq!(p.identity_fields, vec!["braze_id", "email"]);
    assert_eq!(p.stream, "braze_users");

    let at = datetime!(2024-05-01 10:00 UTC);
    let mapped = p
        .apply(
            &event(json!({
                "braze_id": "b1", "email": "John <John.Smith@Email.com>", "city": "AnyTown",
                "tags": ["a", "b"], "country": "US", "date_of_birth": "19820101",
                "utm_source": "news", "utm_medium": "mail", "age": "41", "total_spent": "12.5"
            })),
            at,
        )
        .unwrap();
    assert_eq!(
        mapped.identities,
        vec![
            ("braze_id".into(), "b1".into()),
            ("email".into(), "john.smith@email.com".into())
        ]
    );
    let get = |name: &str| {
        let i = p.fields.iter().position(|f| f.name == name).unwrap();
        mapped
            .updates
            .iter()
            .find(|(j, _)| *j == i)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(get("webhook_ct"), Some(Value::Int(1)));
    assert_eq!(
        get("date_of_birth"),
        Some(Value::Time(datetime!(1982-01-01 0:00 UTC)))
    );
    assert_eq!(get("first_seen"), Some(Value::Time(at)));
    assert_eq!(get("age"), Some(Value::Int(41)));
    assert_eq!(get("total_spent"), Some(Value::Number(12.5)));
    assert_eq!(
        get("all_tags"),
        Some(Value::Array(vec![
            Value::String("a".into()),
            Value::String("b".into())
        ]))
    );
    assert_eq!(
        get("countries"),
        Some(Value::Map([("US".to_string(), Value::Int(1))].into()))
    );
    let utm = get("utm").unwrap();
    assert!(
        matches!(utm, Value::Map(ref m) if m.len() == 2 && m["source"] == Value::String("news".into()))
    );

    // Missing and empty values produce no update, and no identity.
    let sparse = p
        .apply(&event(json!({"braze_id": "", "city": "X"})), at)
        .unwrap();
    assert!(sparse.identities.is_empty());
    assert!(
        sparse
            .updates
            .iter()
            .all(|(i, _)| p.fields[*i].name != "braze_id")
    );
}

#[test]
fn guards_and_where() {
    let p = plan(
        "SELECT _uid, amt AS first_order_amount IF event == \"cart checkout\" KIND int MERGEOP oldest
         FROM default INTO user BY _uid WHERE _bot = \"f\" OR NOT EXISTS _bot ALIAS web_user",
    );
    let at = datetime!(2024-05-01 10:00 UTC);
    let checkout = p
        .apply(
            &event(json!({"_uid": "u1", "event": "cart checkout", "amt": "30"})),
            at,
        )
        .unwrap();
    assert_eq!(checkout.updates.len(), 2);
    let view = p
        .apply(
            &event(json!({"_uid": "u1", "event": "view", "amt": "30"})),
            at,
        )
        .unwrap();
    assert_eq!(view.updates.len(), 1);
    assert!(
        p.apply(&event(json!({"_uid": "u1", "_bot": "t"})), at)
            .is_none()
    );
    assert!(
        p.apply(&event(json!({"_uid": "u1", "_bot": "f"})), at)
            .is_some()
    );
}

#[test]
fn plan_errors() {
    let cases = [
        (
            "SELECT a FROM s INTO account BY a ALIAS x",
            "only the user table",
        ),
        (
            "SELECT a FROM s INTO user BY b ALIAS x",
            "BY b: no column produces",
        ),
        (
            "SELECT a, b AS a FROM s INTO user BY a ALIAS x",
            "defined twice",
        ),
        (
            "SELECT a MERGEOP sum FROM s INTO user BY a ALIAS x",
            "MERGEOP sum does not apply to KIND string",
        ),
        (
            "SELECT a KIND []string MERGEOP max FROM s INTO user BY a ALIAS x",
            "MERGEOP max does not apply",
        ),
    ];
    for (text, message) in cases {
        let e = compile(&parse_lql(text).unwrap()[0]).unwrap_err();
        assert!(e.0.contains(message), "{text}: {e}");
    }
}

#[test]
fn if_else_columns_are_values_not_guards() {
    let text = "SELECT _uid, \"buyer\" IF event == \"purchase\" ELSE \"browser\" AS visitor_type, ifcase(\"big\" IF amt > 100, \"small\" IF amt > 0, \"none\") AS size FROM default INTO user BY _uid ALIAS kinds";
    let st = parse_lql(text).unwrap().remove(0);
    assert!(st.columns[1].guard.is_none());
    let printed = st.to_string();
    assert!(
        printed.contains("ifcase(\"big\" IF amt > 100, \"small\" IF amt > 0, \"none\") AS size"),
        "{printed}"
    );
    assert_eq!(parse_lql(&printed).unwrap(), vec![st.clone()]);
    let p = compile(&st).unwrap();
    let at = datetime!(2024-05-01 10:00 UTC);
    let m = p
        .apply(&event(json!({"_uid": "u", "event": "view", "amt": 5})), at)
        .unwrap();
    let values: Vec<_> = m.updates.iter().map(|(_, v)| v.clone()).collect();
    assert_eq!(
        values,
        vec![
            Value::String("u".into()),
            Value::String("browser".into()),
            Value::String("small".into())
        ]
    );
}

#[test]
fn unmapped_keeps_the_columns_no_other_column_reads() {
    let p = plan(
        "SELECT oneof(id, user_id) AS id, email IF exists(consent) AS email, unmapped() AS custom KIND map[string]value MERGEOP merge
         FROM csv INTO user BY id WHERE region != \"test\" ALIAS csv",
    );
    let at = datetime!(2024-05-01 10:00 UTC);
    let m = p
        .apply(&event(json!({"user_id": "u1", "email": "a@x.io", "consent": "y", "region": "eu", "tier": "gold", "score": 7})), at)
        .unwrap();
    let custom = m
        .updates
        .iter()
        .find(|(i, _)| p.fields[*i].name == "custom")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(
        custom,
        Value::Map(
            [
                ("score".to_string(), Value::Int(7)),
                ("tier".to_string(), Value::String("gold".into()))
            ]
            .into()
        )
    );
    // Outside a mapping there is nothing to compare against: no value.
    let e = tributary_query::parse_expr("unmapped()").unwrap();
    let fields = std::collections::HashMap::from([("a".to_string(), Value::Int(1))]);
    assert_eq!(
        tributary_query::eval::evaluate_value(&e, &fields, &tributary_query::EvalContext::at(at)),
        None
    );
}
