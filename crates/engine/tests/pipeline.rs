//! The pipeline against real stores: mapping, identity resolution, merges, MERGEOP by event
//! time, blocklist and cap, exactly-once batches, rebuild and erasure. Runs on SQLite and
//! PostgreSQL.

use std::sync::Arc;

use proptest::prelude::*;
use serde_json::{Value as Json, json};
use tributary_core::{
    Definition, DefinitionKind, IdentityKey, NewEvent, NewToken, Role, TokenSecret,
};
use tributary_engine::{Engine, EngineConfig, builtin};
use tributary_profile::ProfileState;
use tributary_query::Value;
use tributary_store::Store;

const QUERY: &str = "SELECT _uid, email(email) AS email, name, score KIND int MERGEOP max,
    visits KIND int MERGEOP sum, signup AS signup KIND date MERGEOP oldest, plan, set(tag) AS tags,
    count() AS events KIND int MERGEOP count, valuect(page) AS pages
    FROM web INTO user BY _uid OR email ALIAS web";

async fn setup(store: &Arc<dyn Store>, cap: usize, batch: u32) -> Arc<Engine> {
    let secret = TokenSecret::generate();
    let admin = NewToken {
        account_id: None,
        name: "a".into(),
        description: String::new(),
        roles: vec![Role::Admin],
        hash: secret.hash(),
        created_at: 0,
        expires_at: None,
    };
    store.bootstrap("Default", &admin, 0).await.unwrap();
    builtin::seed_account(store.as_ref(), 1).await.unwrap();
    let text = tributary_query::parse_lql(QUERY)
        .unwrap()
        .remove(0)
        .to_string();
    store
        .put_definition(&Definition {
            account_id: 1,
            kind: DefinitionKind::Query,
            name: "web".into(),
            text,
            created_at: 0,
            updated_at: 0,
        })
        .await
        .unwrap();
    Engine::new(
        store.clone(),
        EngineConfig {
            batch_size: batch,
            identity_cap: cap,
            ..EngineConfig::default()
        },
    )
}

fn ev(stream: &str, t: i64, payload: Json) -> NewEvent {
    NewEvent {
        account_id: 1,
        stream: stream.into(),
        received_at: t,
        event_time: t * 1_000_000,
        payload: payload.to_string(),
        dedup_key: None,
    }
}

async fn profile_of(engine: &Engine, field: &str, value: &str) -> Option<(i64, ProfileState)> {
    let p = engine
        .find_profile(1, &IdentityKey::new(field, value))
        .await
        .unwrap()?;
    Some((p.id, ProfileState::from_json(&p.state).unwrap()))
}

fn field(state: &ProfileState, name: &str) -> Value {
    state
        .fields
        .get(name)
        .map(|f| f.value(None))
        .unwrap_or(Value::Null)
}

async fn identities_link_and_merge(store: Arc<dyn Store>) {
    let engine = setup(&store, 10, 3).await;
    store
        .append_events(&[
            ev("web", 10, json!({"_uid": "c1", "name": "Anon", "score": 5, "visits": 1, "tag": "a", "page": "/"})),
            ev("web", 20, json!({"_uid": "c2", "email": "Ann@X.io", "name": "Ann", "score": 3, "visits": 2, "tag": "b", "page": "/"})),
            ev("web", 30, json!({"_uid": "c3", "plan": "gold", "visits": 4})),
            // Links c1 and c2 (through email) into one profile.
            ev("web", 40, json!({"_uid": "c1", "email": "ann@x.io", "signup": "2024-01-02", "page": "/buy"})),
            ev("web", 5, json!({"_uid": "c2", "name": "Early", "signup": "2023-05-06"})),
            ev("other_stream", 50, json!({"_uid": "c1", "name": "ignored"})),
        ])
        .await
        .unwrap();
    let stats = engine.catch_up(1).await.unwrap();
    assert_eq!(stats.events, 6);
    assert_eq!(stats.merges, 1);
    let (id1, ann) = profile_of(&engine, "_uid", "c1").await.unwrap();
    let (id2, _) = profile_of(&engine, "_uid", "c2").await.unwrap();
    let (id3, _) = profile_of(&engine, "email", "ann@x.io").await.unwrap();
    assert_eq!(
        (id1, id2),
        (id3, id3),
        "every identity reaches the merged profile"
    );
    assert_ne!(profile_of(&engine, "_uid", "c3").await.unwrap().0, id1);
    assert_eq!(
        field(&ann, "name"),
        Value::String("Ann".into()),
        "latest by event time, not arrival"
    );
    assert_eq!(field(&ann, "score"), Value::Int(5));
    assert_eq!(field(&ann, "visits"), Value::Int(3));
    assert_eq!(field(&ann, "events"), Value::Int(4));
    assert_eq!(
        field(&ann, "signup"),
        Value::Time(time::macros::datetime!(2023-05-06 0:00 UTC)),
        "oldest"
    );
    assert_eq!(
        field(&ann, "tags"),
        Value::Array(vec![Value::String("a".into()), Value::String("b".into())])
    );
    let pages = ann.fields["pages"].value(Some(tributary_profile::FieldSpec {
        kind: tributary_query::ast::Kind::MapInt,
        op: tributary_query::ast::MergeOp::Sum,
    }));
    assert_eq!(
        pages,
        Value::Map(
            [
                ("/".to_string(), Value::Int(2)),
                ("/buy".to_string(), Value::Int(1))
            ]
            .into()
        )
    );
    assert_eq!(ann.identities["_uid"].len(), 2);
    let merges = store.profile_merges(1, id1).await.unwrap();
    assert_eq!(merges.len(), 1);
    assert_eq!(merges[0].key.field, "email");
    assert!(profile_of(&engine, "_uid", "nobody").await.is_none());
    // Nothing new: the next pass does nothing, and the cursor is at the last event.
    assert_eq!(engine.catch_up(1).await.unwrap().events, 0);
}

async fn blocklist_and_cap_prevent_over_merging(store: Arc<dyn Store>) {
    let engine = setup(&store, 2, 100).await;
    store
        .append_events(&[
            ev("web", 1, json!({"_uid": "a", "email": "test@test.com"})),
            ev("web", 2, json!({"_uid": "b", "email": "TEST@test.com"})),
            ev("web", 3, json!({"_uid": "c", "email": "null"})),
            ev("web", 4, json!({"_uid": "", "email": "real@x.io"})),
            // Cap of 2 _uid values per profile: the third is refused.
            ev("web", 5, json!({"_uid": "d1", "email": "many@x.io"})),
            ev("web", 6, json!({"_uid": "d2", "email": "many@x.io"})),
            ev("web", 7, json!({"_uid": "d3", "email": "many@x.io"})),
        ])
        .await
        .unwrap();
    let stats = engine.catch_up(1).await.unwrap();
    let a = profile_of(&engine, "_uid", "a").await.unwrap().0;
    let b = profile_of(&engine, "_uid", "b").await.unwrap().0;
    let c = profile_of(&engine, "_uid", "c").await.unwrap().0;
    assert!(a != b && b != c, "junk emails link nothing");
    assert!(
        profile_of(&engine, "email", "test@test.com")
            .await
            .is_none()
    );
    assert!(profile_of(&engine, "_uid", "").await.is_none());
    assert!(profile_of(&engine, "email", "real@x.io").await.is_some());
    let (_, many) = profile_of(&engine, "email", "many@x.io").await.unwrap();
    assert_eq!(many.identities["_uid"].len(), 2);
    assert!(profile_of(&engine, "_uid", "d3").await.is_none());
    assert_eq!(stats.refused_links, 1);
}

async fn rebuild_after_a_mapping_change_and_erasure(store: Arc<dyn Store>) {
    let engine = setup(&store, 10, 2).await;
    store
        .append_events(&[
            ev(
                "web",
                1,
                json!({"_uid": "u1", "email": "x@y.io", "name": "X"}),
            ),
            ev("web", 2, json!({"_uid": "u2", "name": "Other"})),
            ev("web", 3, json!({"_uid": "u1", "plan": "pro"})),
        ])
        .await
        .unwrap();
    engine.catch_up(1).await.unwrap();
    // A mapping change: `plan` becomes `tier`. Rebuild replays the raw events.
    let changed = QUERY.replace("plan,", "plan AS tier,");
    let text = tributary_query::parse_lql(&changed)
        .unwrap()
        .remove(0)
        .to_string();
    store
        .put_definition(&Definition {
            account_id: 1,
            kind: DefinitionKind::Query,
            name: "web".into(),
            text,
            created_at: 0,
            updated_at: 1,
        })
        .await
        .unwrap();
    engine.rebuild(1).await.unwrap();
    engine.catch_up(1).await.unwrap();
    let (_, u1) = profile_of(&engine, "_uid", "u1").await.unwrap();
    assert_eq!(field(&u1, "tier"), Value::String("pro".into()));
    assert!(!u1.fields.contains_key("plan"));

    // Erasure: the profile, its identities and its raw events go; others stay.
    let p = engine
        .find_profile(1, &IdentityKey::new("email", "x@y.io"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(engine.erase(1, &p).await.unwrap(), 2);
    assert!(profile_of(&engine, "_uid", "u1").await.is_none());
    assert!(profile_of(&engine, "email", "x@y.io").await.is_none());
    assert!(profile_of(&engine, "_uid", "u2").await.is_some());
    assert_eq!(store.streams(1).await.unwrap()[0].count, 1);
    // A later event with the same identity starts a new profile.
    store
        .append_events(&[ev("web", 9, json!({"_uid": "u1", "name": "Again"}))])
        .await
        .unwrap();
    engine.catch_up(1).await.unwrap();
    let (_, again) = profile_of(&engine, "_uid", "u1").await.unwrap();
    assert_eq!(field(&again, "name"), Value::String("Again".into()));
    assert!(!again.fields.contains_key("email"));
}

async fn builtin_braze_mapping(store: Arc<dyn Store>) {
    let engine = setup(&store, 10, 100).await;
    store
        .append_events(&[
            ev("braze_users", 1, json!({
                "city": "AnyTown", "country": "United States", "first_name": "John", "gender": "male",
                "language": "English", "last_name": "Smith", "date_of_birth": "19820101",
                "phone_number": "5551231234", "time_zone": "GMT+7", "twitter_handle": "johnsmith",
                "email": "john.smith@email.com", "braze_id": "xxxxxx"
            })),
            // A Braze CSV export row: other column names, and a custom attribute.
            ev("braze_users", 2, json!({"appboy_id": "xxxxxx", "user_id": "ext-1", "dob": "1982-01-01", "timezone": "Asia/Bangkok", "loyalty_tier": "gold"})),
        ])
        .await
        .unwrap();
    engine.catch_up(1).await.unwrap();
    let (_, john) = profile_of(&engine, "external_id", "ext-1").await.unwrap();
    assert_eq!(
        field(&john, "email"),
        Value::String("john.smith@email.com".into())
    );
    assert_eq!(field(&john, "braze_id"), Value::String("xxxxxx".into()));
    assert_eq!(
        field(&john, "date_of_birth"),
        Value::Time(time::macros::datetime!(1982-01-01 0:00 UTC))
    );
    assert_eq!(
        field(&john, "time_zone"),
        Value::String("Asia/Bangkok".into())
    );
    assert_eq!(field(&john, "braze_event_count"), Value::Int(2));
    let custom = field(&john, "custom");
    assert!(
        matches!(custom, Value::Map(ref m) if m.get("loyalty_tier") == Some(&Value::String("gold".into())) && !m.contains_key("email")),
        "{custom:?}"
    );
}

async fn two_engines_share_the_work_without_double_applying(store: Arc<dyn Store>) {
    let a = setup(&store, 10, 7).await;
    let b = Engine::new(
        store.clone(),
        EngineConfig {
            batch_size: 7,
            ..EngineConfig::default()
        },
    );
    let events: Vec<_> = (0..200)
        .map(|i| {
            ev(
                "web",
                i,
                json!({"_uid": format!("u{}", i % 20), "visits": 1}),
            )
        })
        .collect();
    store.append_events(&events).await.unwrap();
    let (ra, rb) = tokio::join!(a.catch_up(1), b.catch_up(1));
    let (sa, sb) = (ra.unwrap(), rb.unwrap());
    // Whoever did not get the lease may finish the rest after the holder releases it.
    a.catch_up(1).await.unwrap();
    let total: i64 = {
        let mut sum = 0;
        for i in 0..20 {
            let (_, p) = profile_of(&a, "_uid", &format!("u{i}")).await.unwrap();
            let Value::Int(v) = field(&p, "visits") else {
                panic!()
            };
            sum += v;
        }
        sum
    };
    assert_eq!(
        total, 200,
        "every event applied exactly once ({} + {} processed)",
        sa.events, sb.events
    );
}

/// The size-over-time chart's data: after a pass, each audience's size is today's record;
/// a recompute records the new size at once, without waiting for the next sample.
async fn audience_sizes_are_recorded_for_the_day(store: Arc<dyn Store>) {
    let engine = setup(&store, 10, 100).await;
    let audience = |text: &str| Definition {
        account_id: 1,
        kind: DefinitionKind::Segment,
        name: "frequent".into(),
        text: tributary_query::parse_filterql(text)
            .unwrap()
            .remove(0)
            .to_string(),
        created_at: 0,
        updated_at: 1,
    };
    store
        .put_definition(&audience("FILTER visits > 1 FROM user ALIAS frequent"))
        .await
        .unwrap();
    let events: Vec<_> = (0..30)
        .map(|i| {
            ev(
                "web",
                i,
                json!({"_uid": format!("u{}", i % 10), "visits": 1}),
            )
        })
        .collect();
    store.append_events(&events).await.unwrap();
    engine.catch_up_all().await.unwrap();
    let today = time::OffsetDateTime::now_utc()
        .unix_timestamp()
        .div_euclid(86_400);
    assert_eq!(
        store.audience_size_history(1, "frequent", 0).await.unwrap(),
        vec![(today, 10)]
    );
    store
        .put_definition(&Definition {
            updated_at: 2,
            ..audience("FILTER visits > 5 FROM user ALIAS frequent")
        })
        .await
        .unwrap();
    engine.catch_up_all().await.unwrap();
    assert_eq!(
        store.audience_size_history(1, "frequent", 0).await.unwrap(),
        vec![(today, 0)]
    );
}

/// A stop ends the worker in the middle of a long backlog, not after it, and nothing moves
/// after it; what it had not committed is applied once by the next catch-up.
async fn a_stop_ends_a_long_catch_up_midway(store: Arc<dyn Store>) {
    // Batches of one event: the backlog takes thousands of commits.
    let engine = setup(&store, 10, 1).await;
    let n: i64 = 3_000;
    let events: Vec<NewEvent> = (0..n)
        .map(|i| ev("web", i, json!({"_uid": format!("u{i}")})))
        .collect();
    store.append_events(&events).await.unwrap();
    let last = store
        .events_after(1, 0, n as u32)
        .await
        .unwrap()
        .last()
        .unwrap()
        .id;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = engine.spawn_worker(async move {
        let _ = stopped.await;
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while store.pipeline_cursor(1).await.unwrap() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(30), worker)
        .await
        .expect("the worker stops without finishing the backlog")
        .unwrap();
    let stopped_at = store.pipeline_cursor(1).await.unwrap();
    assert!(
        stopped_at < last,
        "the worker stopped at the end of the backlog ({stopped_at}), not when told"
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(store.pipeline_cursor(1).await.unwrap(), stopped_at);

    let left = store
        .events_after(1, stopped_at, n as u32)
        .await
        .unwrap()
        .len();
    let stats = engine.catch_up(1).await.unwrap();
    assert_eq!(stats.events, left as u64, "the rest, once");
    assert_eq!(store.pipeline_cursor(1).await.unwrap(), last);
    for u in ["u0", "u1499", "u2999"] {
        let (_, state) = profile_of(&engine, "_uid", u).await.unwrap();
        assert_eq!(state.events, 1, "{u} applied once");
    }
}

tributary_store::backend_tests!(
    a_stop_ends_a_long_catch_up_midway,
    identities_link_and_merge,
    blocklist_and_cap_prevent_over_merging,
    rebuild_after_a_mapping_change_and_erasure,
    builtin_braze_mapping,
    two_engines_share_the_work_without_double_applying,
    audience_sizes_are_recorded_for_the_day,
);

/// Profiles as comparable data: for each profile, its identities and field values.
async fn snapshot(store: &Arc<dyn Store>, engine: &Engine, uids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for u in uids {
        if let Some(p) = engine
            .find_profile(1, &IdentityKey::new("_uid", u))
            .await
            .unwrap()
        {
            let s = ProfileState::from_json(&p.state).unwrap();
            let fields: Vec<String> = s
                .fields
                .iter()
                .map(|(k, f)| format!("{k}={}", f.value(None)))
                .collect();
            out.push(format!(
                "{:?} {:?} first={} last={} n={}",
                s.identities, fields, s.first_seen, s.last_seen, s.events
            ));
        }
    }
    let _ = store;
    out
}

fn event_strategy() -> impl Strategy<Value = Vec<(i64, Json)>> {
    let one = (
        1i64..50,
        0usize..6,
        prop::option::of(0usize..4),
        0i64..100,
        prop::option::of("[a-c]"),
        prop::option::of("[x-z]"),
    )
        .prop_map(|(t, uid, email, n, name, tag)| {
            let mut o = serde_json::Map::new();
            o.insert("_uid".into(), json!(format!("u{uid}")));
            if let Some(e) = email {
                o.insert("email".into(), json!(format!("p{e}@x.io")));
            }
            o.insert("score".into(), json!(n));
            o.insert("visits".into(), json!(1));
            if let Some(name) = name {
                o.insert("name".into(), json!(name));
            }
            if let Some(tag) = tag {
                o.insert("tag".into(), json!(tag));
            }
            (t, Json::Object(o))
        });
    prop::collection::vec(one, 1..25)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, .. ProptestConfig::default() })]

    /// Any arrival order (and any batch size) of the same events gives the same profiles.
    #[test]
    fn any_arrival_order_gives_the_same_profiles(
        events in event_strategy(),
        seed in any::<u64>(),
        batch in 1u32..6,
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let uids: Vec<String> = (0..6).map(|i| format!("u{i}")).collect();
            let run = |order: Vec<(i64, Json)>, batch: u32| async move {
                let (store, dir) = tributary_store::testing::sqlite_store().await;
                let engine = setup(&store, 10, batch).await;
                let evs: Vec<_> = order.into_iter().map(|(t, p)| ev("web", t, p)).collect();
                store.append_events(&evs).await.unwrap();
                engine.catch_up(1).await.unwrap();
                (store, engine, dir)
            };
            let (s1, e1, _d1) = run(events.clone(), 100).await;
            let mut shuffled = events.clone();
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let (s2, e2, _d2) = run(shuffled, batch).await;
            let a = snapshot(&s1, &e1, &uids).await;
            let b = snapshot(&s2, &e2, &uids).await;
            // At least one event arrived, so at least one profile must be compared.
            assert!(!a.is_empty(), "no profile found to compare");
            assert_eq!(a, b);
        });
    }
}
