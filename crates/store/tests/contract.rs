//! The store contract: every test here runs against SQLite and against PostgreSQL.
//! Add a test by writing `async fn name(store: Arc<dyn Store>)` and listing it in
//! `contract_suite!` at the bottom.

use std::sync::Arc;

use tributary_core::{
    AudienceVersion, Definition, DefinitionKind, IdentityKey, LogEntry, MembershipChange,
    MergeRecord, NewEvent, NewToken, PipelineCommit, Role, StoredProfile, TokenHash, TokenSecret,
};
use tributary_store::{Bootstrap, EventWriter, Store, WriterConfig};

fn token(account_id: Option<i64>, name: &str, roles: Vec<Role>) -> (TokenSecret, NewToken) {
    let secret = TokenSecret::generate();
    let t = NewToken {
        account_id,
        name: name.into(),
        description: format!("{name} token"),
        roles,
        hash: secret.hash(),
        created_at: 1_000,
        expires_at: Some(2_000),
    };
    (secret, t)
}

fn event(aid: i64, stream: &str, n: i64) -> NewEvent {
    NewEvent {
        account_id: aid,
        stream: stream.into(),
        received_at: 1_000 + n,
        event_time: 500 + n,
        payload: format!(r#"{{"n":{n},"text":"caf\u00e9 \"quoted\""}}"#),
        dedup_key: None,
    }
}

async fn bootstrap_creates_account_one_once(store: Arc<dyn Store>) {
    let (secret, admin) = token(None, "install admin", vec![Role::Admin]);
    let first = store.bootstrap("Default", &admin, 10).await.unwrap();
    assert_eq!(first, Bootstrap::Created { aid: 1 });
    let (_, other) = token(None, "second", vec![Role::Admin]);
    let second = store.bootstrap("Default", &other, 11).await.unwrap();
    assert_eq!(second, Bootstrap::AlreadyInitialised);
    let found = store.token_by_hash(&secret.hash()).await.unwrap().unwrap();
    assert!(found.is_install_admin());
    assert_eq!(found.roles, vec![Role::Admin]);
    assert!(store.token_by_hash(&other.hash).await.unwrap().is_none());
    let account = store.account(1).await.unwrap().unwrap();
    assert_eq!(account.name, "Default");
}

async fn concurrent_bootstrap_creates_one_account(store: Arc<dyn Store>) {
    let mut tasks = Vec::new();
    for i in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let (_, admin) = token(None, &format!("admin {i}"), vec![Role::Admin]);
            store.bootstrap("Default", &admin, 10).await.unwrap()
        }));
    }
    let mut created = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), Bootstrap::Created { .. }) {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    assert!(store.account(2).await.unwrap().is_none());
}

async fn accounts_get_increasing_numbers(store: Arc<dyn Store>) {
    let (_, admin) = token(None, "admin", vec![Role::Admin]);
    store.bootstrap("Default", &admin, 10).await.unwrap();
    let a = store.create_account("Acme", 20).await.unwrap();
    let b = store.create_account("Globex", 30).await.unwrap();
    assert_eq!((a.aid, b.aid), (2, 3));
    assert_eq!(store.account(3).await.unwrap().unwrap().name, "Globex");
    assert!(store.account(99).await.unwrap().is_none());
}

async fn tokens_are_per_account(store: Arc<dyn Store>) {
    let (_, admin) = token(None, "admin", vec![Role::Admin]);
    store.bootstrap("Default", &admin, 10).await.unwrap();
    let other = store.create_account("Other", 10).await.unwrap();
    let (s1, t1) = token(Some(1), "one", vec![Role::DataManager, Role::Observer]);
    let (_, t2) = token(Some(other.aid), "two", vec![Role::Observer]);
    let r1 = store.create_token(&t1).await.unwrap();
    let r2 = store.create_token(&t2).await.unwrap();
    assert_eq!(r1.roles, vec![Role::DataManager, Role::Observer]);
    assert_eq!(r1.expires_at, Some(2_000));
    assert_eq!(r1.description, "one token");

    let ones = store.tokens(1).await.unwrap();
    assert_eq!(ones.iter().map(|t| t.id).collect::<Vec<_>>(), vec![r1.id]);
    assert_eq!(store.tokens(other.aid).await.unwrap().len(), 1);

    // Deleting through the wrong account does nothing.
    assert!(!store.delete_token(1, r2.id).await.unwrap());
    assert!(store.token_by_hash(&t2.hash).await.unwrap().is_some());
    assert!(store.delete_token(1, r1.id).await.unwrap());
    assert!(store.token_by_hash(&s1.hash()).await.unwrap().is_none());
    assert!(!store.delete_token(1, r1.id).await.unwrap());
    assert!(
        store
            .token_by_hash(&TokenHash::of("nope"))
            .await
            .unwrap()
            .is_none()
    );
}

async fn console_sessions_end_by_expiry_sign_out_or_with_their_token(store: Arc<dyn Store>) {
    let (_, admin) = token(None, "admin", vec![Role::Admin]);
    store.bootstrap("Default", &admin, 10).await.unwrap();
    let (_, t) = token(Some(1), "console", vec![Role::Observer]);
    let record = store.create_token(&t).await.unwrap();
    let (kept, signed_out, short) = (
        TokenHash::of("session one"),
        TokenHash::of("session two"),
        TokenHash::of("session three"),
    );
    store
        .create_session(&kept, record.id, 100, 1_000)
        .await
        .unwrap();
    store
        .create_session(&signed_out, record.id, 100, 1_000)
        .await
        .unwrap();
    store
        .create_session(&short, record.id, 100, 200)
        .await
        .unwrap();

    let found = store.session_token(&kept, 150).await.unwrap().unwrap();
    assert_eq!(found.id, record.id);
    assert_eq!(found.roles, vec![Role::Observer]);
    assert!(store.session_token(&short, 150).await.unwrap().is_some());
    assert!(
        store.session_token(&short, 200).await.unwrap().is_none(),
        "expired"
    );
    assert!(
        store
            .session_token(&TokenHash::of("nope"), 150)
            .await
            .unwrap()
            .is_none()
    );

    store.delete_session(&signed_out).await.unwrap();
    store.delete_session(&signed_out).await.unwrap();
    assert!(
        store
            .session_token(&signed_out, 150)
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.session_token(&kept, 150).await.unwrap().is_some());

    // Deleting the token ends its sessions: a new token that reused the id would not inherit them.
    assert!(store.delete_token(1, record.id).await.unwrap());
    assert!(store.session_token(&kept, 150).await.unwrap().is_none());
}

async fn duplicate_token_hash_is_refused(store: Arc<dyn Store>) {
    let (_, admin) = token(None, "admin", vec![Role::Admin]);
    store.bootstrap("Default", &admin, 10).await.unwrap();
    let (_, t) = token(Some(1), "one", vec![Role::Observer]);
    store.create_token(&t).await.unwrap();
    assert!(store.create_token(&t).await.is_err());
    assert_eq!(store.tokens(1).await.unwrap().len(), 1);
}

async fn events_round_trip_newest_first(store: Arc<dyn Store>) {
    let events: Vec<_> = (0..1_200).map(|n| event(1, "braze_users", n)).collect();
    store.append_events(&events).await.unwrap();
    store
        .append_events(&[event(1, "web", 7), event(2, "braze_users", 8)])
        .await
        .unwrap();

    let recent = store.recent_events(1, "braze_users", 3).await.unwrap();
    assert_eq!(recent.len(), 3);
    assert_eq!(recent[0].payload_json()["n"], 1_199);
    assert_eq!(recent[2].payload_json()["n"], 1_197);
    assert!(recent[0].id > recent[1].id);
    assert_eq!(recent[0].received_at, 2_199);
    assert_eq!(recent[0].event_time, 1_699);
    assert_eq!(recent[0].payload_json()["text"], "café \"quoted\"");

    let streams = store.streams(1).await.unwrap();
    let names: Vec<_> = streams.iter().map(|s| (s.name.as_str(), s.count)).collect();
    assert_eq!(names, vec![("braze_users", 1_200), ("web", 1)]);
    assert_eq!(streams[0].last_received_micros, 2_199);
    assert_eq!(store.streams(2).await.unwrap()[0].count, 1);
    assert!(store.streams(3).await.unwrap().is_empty());
    assert!(
        store
            .recent_events(1, "missing", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn group_commit_writer_stores_every_acknowledged_event(store: Arc<dyn Store>) {
    let (writer, task) = EventWriter::spawn(store.clone(), WriterConfig::default());
    let mut tasks = Vec::new();
    for i in 0..50 {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            let batch = (0..20)
                .map(|n| event(1, "braze_users", i * 100 + n))
                .collect();
            writer.write(batch).await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    drop(writer);
    task.await.unwrap();
    assert_eq!(store.streams(1).await.unwrap()[0].count, 1_000);
    let all = store.recent_events(1, "braze_users", 5_000).await.unwrap();
    let mut ns: Vec<i64> = all
        .iter()
        .map(|e| e.payload_json()["n"].as_i64().unwrap())
        .collect();
    ns.sort();
    ns.dedup();
    assert_eq!(ns.len(), 1_000);
}

fn definition(aid: i64, kind: DefinitionKind, name: &str, text: &str, at: i64) -> Definition {
    Definition {
        account_id: aid,
        kind,
        name: name.into(),
        text: text.into(),
        created_at: at,
        updated_at: at,
    }
}

async fn definitions_upsert_by_name_per_account_and_kind(store: Arc<dyn Store>) {
    use DefinitionKind::{Query, Segment};
    let first = store
        .put_definition(&definition(
            1,
            Segment,
            "vip",
            "FILTER a == 1\nALIAS vip",
            10,
        ))
        .await
        .unwrap();
    assert_eq!((first.created_at, first.updated_at), (10, 10));
    let replaced = store
        .put_definition(&definition(
            1,
            Segment,
            "vip",
            "FILTER a == 2\nALIAS vip",
            20,
        ))
        .await
        .unwrap();
    assert_eq!((replaced.created_at, replaced.updated_at), (10, 20));
    assert_eq!(replaced.text, "FILTER a == 2\nALIAS vip");
    store
        .put_definition(&definition(1, Segment, "all", "FILTER *", 30))
        .await
        .unwrap();
    store
        .put_definition(&definition(1, Query, "vip", "SELECT ...", 30))
        .await
        .unwrap();
    store
        .put_definition(&definition(2, Segment, "vip", "FILTER b == 1", 30))
        .await
        .unwrap();

    let names: Vec<String> = store
        .definitions(1, Segment)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, vec!["all", "vip"]);
    assert_eq!(store.definitions(1, Query).await.unwrap().len(), 1);
    assert_eq!(
        store
            .definition(2, Segment, "vip")
            .await
            .unwrap()
            .unwrap()
            .text,
        "FILTER b == 1"
    );
    assert!(store.definition(3, Segment, "vip").await.unwrap().is_none());

    assert!(store.delete_definition(1, Segment, "vip").await.unwrap());
    assert!(!store.delete_definition(1, Segment, "vip").await.unwrap());
    assert!(store.definition(1, Segment, "vip").await.unwrap().is_none());
    assert!(
        store.definition(1, Query, "vip").await.unwrap().is_some(),
        "other kind untouched"
    );
    assert!(
        store.definition(2, Segment, "vip").await.unwrap().is_some(),
        "other account untouched"
    );
}

fn stored_profile(id: i64, state: &str) -> StoredProfile {
    StoredProfile {
        account_id: 1,
        id,
        state: state.into(),
        created_at: id * 10,
        modified_at: id * 10,
        next_check: None,
    }
}

async fn pipeline_commits_are_atomic_and_exactly_once(store: Arc<dyn Store>) {
    let (_, admin) = token(None, "admin", vec![Role::Admin]);
    store.bootstrap("Default", &admin, 10).await.unwrap();
    store
        .append_events(&(0..5).map(|n| event(1, "s", n)).collect::<Vec<_>>())
        .await
        .unwrap();
    store.append_events(&[event(2, "s", 9)]).await.unwrap();
    assert_eq!(store.account_ids().await.unwrap(), vec![1]);
    assert_eq!(store.pipeline_cursor(1).await.unwrap(), 0);
    let events = store.events_after(1, 0, 3).await.unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| e.payload_json()["n"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    let (first, last) = (events[0].id, events[2].id);

    let email = IdentityKey::new("email", "a@x.io");
    let uid = IdentityKey::new("_uid", "u1");
    let commit = PipelineCommit {
        expected_cursor: 0,
        new_cursor: last,
        profiles: vec![
            stored_profile(first, "{\"a\":1}"),
            stored_profile(first + 1, "{\"b\":1}"),
        ],
        identities: vec![(email.clone(), first), (uid.clone(), first + 1)],
        merged: vec![],
        merges: vec![],
        ..PipelineCommit::default()
    };
    assert!(store.commit_pipeline(1, &commit).await.unwrap());
    // The same batch again (a second node, or a retry) applies nothing.
    assert!(!store.commit_pipeline(1, &commit).await.unwrap());
    assert_eq!(store.pipeline_cursor(1).await.unwrap(), last);
    assert_eq!(store.events_after(1, last, 10).await.unwrap().len(), 2);

    let mut found = store
        .lookup_identities(
            1,
            &[
                email.clone(),
                uid.clone(),
                IdentityKey::new("email", "nobody"),
            ],
        )
        .await
        .unwrap();
    found.sort();
    assert_eq!(
        found,
        vec![(uid.clone(), first + 1), (email.clone(), first)]
    );
    assert!(
        store
            .lookup_identities(2, std::slice::from_ref(&email))
            .await
            .unwrap()
            .is_empty(),
        "identities are per account"
    );

    // A merge: the second profile folds into the first, its identities move, the merge is kept.
    let merge = PipelineCommit {
        expected_cursor: last,
        new_cursor: last + 1,
        profiles: vec![stored_profile(first, "{\"a\":1,\"b\":1}")],
        identities: vec![(uid.clone(), first)],
        merged: vec![(first + 1, first)],
        merges: vec![MergeRecord {
            winner: first,
            loser: first + 1,
            event_id: last + 1,
            key: uid.clone(),
            at: 99,
        }],
        ..PipelineCommit::default()
    };
    assert!(store.commit_pipeline(1, &merge).await.unwrap());
    assert_eq!(
        store.profile_identities(1, first).await.unwrap(),
        vec![uid.clone(), email.clone()]
    );
    assert!(
        store
            .load_profiles(1, &[first + 1])
            .await
            .unwrap()
            .is_empty()
    );
    let loaded = store.load_profiles(1, &[first, first + 1]).await.unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].state, "{\"a\":1,\"b\":1}");
    assert_eq!(loaded[0].created_at, first * 10);
    assert_eq!(store.profile_merges(1, first).await.unwrap().len(), 1);

    // Erasure removes the person and the given raw events, and recounts the streams.
    store
        .erase_profile(1, first, &[first, first + 1], 100)
        .await
        .unwrap();
    assert!(
        store
            .lookup_identities(1, &[email.clone(), uid])
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.load_profiles(1, &[first]).await.unwrap().is_empty());
    assert!(store.profile_merges(1, first).await.unwrap().is_empty());
    assert_eq!(store.streams(1).await.unwrap()[0].count, 3);

    store.reset_profiles(1).await.unwrap();
    assert_eq!(store.pipeline_cursor(1).await.unwrap(), 0);
}

async fn leases_have_one_holder_until_they_expire(store: Arc<dyn Store>) {
    assert!(
        store
            .try_lease("pipeline:1", "node-a", 100, 200)
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_lease("pipeline:1", "node-b", 150, 250)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_lease("pipeline:1", "node-a", 150, 300)
            .await
            .unwrap(),
        "the holder renews"
    );
    assert!(
        !store
            .try_lease("pipeline:1", "node-b", 299, 400)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_lease("pipeline:1", "node-b", 301, 400)
            .await
            .unwrap(),
        "taken over after expiry"
    );
    assert!(
        !store
            .try_lease("pipeline:1", "node-a", 350, 450)
            .await
            .unwrap()
    );
    store.release_lease("pipeline:1", "node-b").await.unwrap();
    assert!(
        store
            .try_lease("pipeline:1", "node-a", 350, 450)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_lease("pipeline:2", "node-b", 350, 450)
            .await
            .unwrap(),
        "names are independent"
    );
}

async fn identity_blocklist_is_per_account(store: Arc<dyn Store>) {
    let values = vec![
        "".to_string(),
        "null".into(),
        "test@test.com".into(),
        "null".into(),
    ];
    store.set_identity_blocklist(1, &values).await.unwrap();
    assert_eq!(
        store.identity_blocklist(1).await.unwrap(),
        vec!["", "null", "test@test.com"]
    );
    assert!(store.identity_blocklist(2).await.unwrap().is_empty());
    store
        .set_identity_blocklist(1, &["0".to_string()])
        .await
        .unwrap();
    assert_eq!(store.identity_blocklist(1).await.unwrap(), vec!["0"]);
}

/// A commit that only changes membership (the cursor stays where it is).
fn membership_commit(cursor: i64, changes: Vec<MembershipChange>, at: i64) -> PipelineCommit {
    PipelineCommit {
        expected_cursor: cursor,
        new_cursor: cursor,
        changes,
        at,
        ..PipelineCommit::default()
    }
}

fn log_lines(entries: &[LogEntry]) -> Vec<(i64, &str, i64, bool)> {
    entries
        .iter()
        .map(|e| (e.seq, e.segment.as_str(), e.profile_id, e.entered))
        .collect()
}

async fn membership_changes_are_logged_once_in_order(store: Arc<dyn Store>) {
    let (_, admin) = token(None, "admin", vec![Role::Admin]);
    store.bootstrap("Default", &admin, 10).await.unwrap();
    let enter = MembershipChange::enter;
    let exit = MembershipChange::exit;
    let first = membership_commit(
        0,
        vec![enter("vip", 7), enter("vip", 3), enter("all", 7)],
        100,
    );
    assert!(store.commit_pipeline(1, &first).await.unwrap());
    assert_eq!(store.audience_size(1, "vip").await.unwrap(), 2);
    assert_eq!(
        store.audience_members(1, "vip", 0, 10).await.unwrap(),
        vec![3, 7]
    );
    assert_eq!(
        store.audience_members(1, "vip", 3, 10).await.unwrap(),
        vec![7]
    );
    // Changes that are already true (enter of a member, exit of a non-member) are not logged.
    let second = membership_commit(
        0,
        vec![enter("vip", 7), exit("vip", 3), exit("vip", 99)],
        200,
    );
    assert!(store.commit_pipeline(1, &second).await.unwrap());
    let log = store.membership_log(1, None, 0, 100).await.unwrap();
    // Within a commit: by audience, exits before entries, then by profile id.
    assert_eq!(
        log_lines(&log),
        vec![
            (1, "all", 7, true),
            (2, "vip", 3, true),
            (3, "vip", 7, true),
            (4, "vip", 3, false),
        ]
    );
    assert_eq!(log[3].at, 200);
    assert_eq!(
        log_lines(&store.membership_log(1, Some("vip"), 2, 100).await.unwrap()),
        vec![(3, "vip", 7, true), (4, "vip", 3, false)],
        "a position inside a commit's row"
    );
    assert_eq!(
        store.membership_log(1, None, 1, 2).await.unwrap().len(),
        2,
        "limit"
    );
    // At this point vip = {7}, all = {7}.
    assert_eq!(
        store
            .members_between(1, &["vip".into(), "all".into(), "none".into()], 0, Some(7))
            .await
            .unwrap(),
        vec![vec![7], vec![7], vec![]]
    );
    assert_eq!(
        store
            .members_between(1, &["vip".into()], 7, None)
            .await
            .unwrap(),
        vec![Vec::<i64>::new()]
    );

    let exact = membership_commit(0, vec![enter("vip", 11), exit("vip", 7)], 250);
    assert!(store.commit_pipeline(1, &exact).await.unwrap());
    assert_eq!(
        store.audience_members(1, "vip", 0, 10).await.unwrap(),
        vec![11]
    );
    // Only what changes the table is logged (an exit of a non-member is not), and a change
    // undone within the commit is not either.
    let undo = membership_commit(
        0,
        vec![
            exit("vip", 11),
            enter("vip", 7),
            enter("vip", 12),
            exit("vip", 99),
            exit("vip", 12),
        ],
        260,
    );
    assert!(store.commit_pipeline(1, &undo).await.unwrap());
    let log = store.membership_log(1, None, 4, 100).await.unwrap();
    assert_eq!(
        log_lines(&log),
        vec![
            (5, "vip", 7, false),
            (6, "vip", 11, true),
            (7, "vip", 11, false),
            (8, "vip", 7, true),
        ]
    );

    // Dropping an audience logs every member's exit.
    store
        .set_audience_version(
            1,
            &AudienceVersion {
                segment: "all".into(),
                version: 5,
            },
        )
        .await
        .unwrap();
    assert_eq!(store.audience_versions(1).await.unwrap().len(), 1);
    assert_eq!(store.drop_audience(1, "all", 300).await.unwrap(), 1);
    assert!(store.audience_versions(1).await.unwrap().is_empty());
    let log = store.membership_log(1, None, 8, 100).await.unwrap();
    assert_eq!(log_lines(&log), vec![(9, "all", 7, false)]);

    // Erasing a person logs their exits.
    store.erase_profile(1, 7, &[], 400).await.unwrap();
    let log = store.membership_log(1, None, 9, 100).await.unwrap();
    assert_eq!(log_lines(&log), vec![(10, "vip", 7, false)]);
    assert_eq!(store.audience_size(1, "vip").await.unwrap(), 0);

    // Consumers' positions, per account and consumer.
    assert_eq!(store.log_position(1, "job-1").await.unwrap(), 0);
    store.set_log_position(1, "job-1", 4).await.unwrap();
    store.set_log_position(1, "job-1", 6).await.unwrap();
    assert_eq!(store.log_position(1, "job-1").await.unwrap(), 6);
    assert_eq!(store.log_position(1, "job-2").await.unwrap(), 0);
    assert!(
        store
            .membership_log(2, None, 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Members far apart (the store keeps them in chunks of 65,536 ids) and commits of many
/// entries: sizes, pages and log positions work across chunks and inside a commit.
async fn membership_spans_chunks(store: Arc<dyn Store>) {
    let (_, admin) = token(None, "admin", vec![Role::Admin]);
    store.bootstrap("Default", &admin, 10).await.unwrap();
    let ids: Vec<i64> = (0..3_000)
        .map(|i| 1 + i * 97)
        .chain([5_000_000_000])
        .collect();
    let enters = ids
        .iter()
        .map(|id| MembershipChange::enter("wide", *id))
        .collect();
    assert!(
        store
            .commit_pipeline(1, &membership_commit(0, enters, 10))
            .await
            .unwrap()
    );
    assert_eq!(store.audience_size(1, "wide").await.unwrap(), 3_001);
    assert_eq!(store.membership_head(1).await.unwrap(), 3_001);
    // Pages of members, in id order, across chunks.
    let (mut after, mut seen) = (0, Vec::new());
    loop {
        let page = store.audience_members(1, "wide", after, 700).await.unwrap();
        let Some(last) = page.last() else { break };
        after = *last;
        seen.extend(page);
    }
    assert_eq!(seen, ids);
    // The log, read in pieces that end inside its rows, gives every entry once, in order.
    let (mut pos, mut logged) = (0, Vec::new());
    loop {
        let part = store
            .membership_log(1, Some("wide"), pos, 333)
            .await
            .unwrap();
        let Some(last) = part.last() else { break };
        assert!(part.len() <= 333);
        pos = last.seq;
        logged.extend(part);
    }
    let seqs: Vec<i64> = logged.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=3_001).collect::<Vec<_>>());
    let logged_ids: Vec<i64> = logged.iter().map(|e| e.profile_id).collect();
    assert_eq!(logged_ids, ids, "ascending profile ids within the commit");
    // Members of a range, as a recompute page reads them.
    let between = store
        .members_between(1, &["wide".into()], 97 * 1_000, Some(97 * 2_000))
        .await
        .unwrap();
    let expected: Vec<i64> = ids
        .iter()
        .copied()
        .filter(|id| *id > 97_000 && *id <= 194_000)
        .collect();
    assert_eq!(between, vec![expected]);
    // Everyone leaves: the chunks go, and the exits are logged.
    let exits = ids
        .iter()
        .map(|id| MembershipChange::exit("wide", *id))
        .collect();
    assert!(
        store
            .commit_pipeline(1, &membership_commit(0, exits, 20))
            .await
            .unwrap()
    );
    assert_eq!(store.audience_size(1, "wide").await.unwrap(), 0);
    assert!(
        store
            .audience_members(1, "wide", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.membership_head(1).await.unwrap(), 6_002);
}

async fn profiles_scan_in_id_order_and_come_due(store: Arc<dyn Store>) {
    let (_, admin) = token(None, "admin", vec![Role::Admin]);
    store.bootstrap("Default", &admin, 10).await.unwrap();
    let mut due = stored_profile(30, "{}");
    due.next_check = Some(50);
    let mut later = stored_profile(20, r#"{"f":{"k":{"v":"a: 1 ü€","t":3}}}"#);
    later.next_check = Some(500);
    let commit = PipelineCommit {
        profiles: vec![due, later, stored_profile(10, "{}")],
        ..PipelineCommit::default()
    };
    assert!(store.commit_pipeline(1, &commit).await.unwrap());
    let ids = |ps: Vec<StoredProfile>| ps.iter().map(|p| p.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.scan_profiles(1, 0, 10).await.unwrap()),
        vec![10, 20, 30]
    );
    assert_eq!(ids(store.scan_profiles(1, 10, 1).await.unwrap()), vec![20]);
    let scanned = store.scan_profiles(1, 10, 1).await.unwrap();
    assert_eq!(scanned[0].state, r#"{"f":{"k":{"v":"a: 1 ü€","t":3}}}"#);
    assert_eq!(scanned[0].next_check, Some(500));
    assert_eq!(ids(store.due_profiles(1, 60, 10).await.unwrap()), vec![30]);
    assert_eq!(
        ids(store.due_profiles(1, 600, 10).await.unwrap()),
        vec![30, 20]
    );
    assert_eq!(
        store.load_profiles(1, &[30]).await.unwrap()[0].next_check,
        Some(50)
    );
    assert!(store.scan_profiles(2, 0, 10).await.unwrap().is_empty());
    // Moving only next checks leaves the rows' state alone.
    let moved = PipelineCommit {
        next_checks: vec![(30, None), (10, Some(40))],
        ..PipelineCommit::default()
    };
    assert!(store.commit_pipeline(1, &moved).await.unwrap());
    assert_eq!(
        ids(store.due_profiles(1, 600, 10).await.unwrap()),
        vec![10, 20]
    );
    let row = &store.load_profiles(1, &[10]).await.unwrap()[0];
    assert_eq!((row.next_check, row.state.as_str()), (Some(40), "{}"));
}

fn authorization(aid: i64, label: &str) -> tributary_core::Authorization {
    tributary_core::Authorization {
        id: 0,
        account_id: aid,
        kind: tributary_core::AuthKind::Braze,
        label: label.into(),
        description: "d".into(),
        config: serde_json::json!({"instance": "US-03"}),
        sealed_secret: vec![0, 1, 2, 255],
        created_at: 10,
        updated_at: 10,
    }
}

/// A sealed secret that names its row: the store hands the new row's id to the sealer.
fn sealed(id: i64) -> Vec<u8> {
    vec![0, 1, 2, 255, id as u8]
}

fn new_job(aid: i64, auth_ids: Vec<i64>) -> tributary_core::NewJob {
    tributary_core::NewJob {
        account_id: aid,
        workflow: "braze-export".into(),
        name: "export".into(),
        description: String::new(),
        auth_ids,
        config: serde_json::json!({"segment_ids": ["vip"]}),
        created_at: 20,
    }
}

async fn authorizations_are_per_account_and_keep_sealed_bytes(store: Arc<dyn Store>) {
    let a = store
        .create_authorization(&authorization(1, "one"), &sealed)
        .await
        .unwrap();
    let b = store
        .create_authorization(&authorization(2, "two"), &sealed)
        .await
        .unwrap();
    assert_ne!(a.id, b.id);
    let listed = store.authorizations(1).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].sealed_secret, sealed(a.id));
    assert_eq!(a.sealed_secret, sealed(a.id), "sealed for its own id");
    assert_eq!(listed[0].config["instance"], "US-03");
    assert!(
        store.authorization(2, a.id).await.unwrap().is_none(),
        "no cross-account reads"
    );
    let mut changed = a.clone();
    changed.label = "renamed".into();
    changed.sealed_secret = vec![9];
    changed.updated_at = 11;
    assert!(store.update_authorization(&changed).await.unwrap());
    let got = store.authorization(1, a.id).await.unwrap().unwrap();
    assert_eq!(
        (got.label.as_str(), got.sealed_secret),
        ("renamed", vec![9])
    );
    let mut foreign = changed.clone();
    foreign.account_id = 2;
    assert!(!store.update_authorization(&foreign).await.unwrap());
}

async fn jobs_move_through_states_and_lose_their_authorization(store: Arc<dyn Store>) {
    use tributary_core::{JobReport, JobState};
    let auth = store
        .create_authorization(&authorization(1, "braze"), &sealed)
        .await
        .unwrap();
    let job = store.create_job(&new_job(1, vec![auth.id])).await.unwrap();
    let other = store.create_job(&new_job(1, vec![])).await.unwrap();
    assert_eq!(job.state, JobState::Running);
    assert_eq!(job.auth_ids, vec![auth.id]);
    assert_eq!(store.active_jobs().await.unwrap().len(), 2);
    assert!(store.job(2, job.id).await.unwrap().is_none());

    // A report is written while the job is active...
    let report = JobReport {
        state: JobState::Sleeping,
        progress: serde_json::json!({"sent": 5}),
        metrics: serde_json::json!({"requests": 1}),
        last_error: None,
        at: 30,
    };
    assert!(store.report_job(job.id, &report).await.unwrap());
    // ...a pause from the API wins over the runner's next report.
    assert!(
        store
            .set_job_state(1, job.id, &JobState::ACTIVE, JobState::Paused, None, 31)
            .await
            .unwrap()
    );
    assert!(!store.report_job(job.id, &report).await.unwrap());
    let paused = store.job(1, job.id).await.unwrap().unwrap();
    assert_eq!(paused.state, JobState::Paused);
    assert_eq!(paused.progress["sent"], 5);
    assert!(
        !store
            .set_job_state(1, job.id, &JobState::ACTIVE, JobState::Killed, None, 32)
            .await
            .unwrap(),
        "compare-and-set: the job is not active"
    );

    // Deleting the authorization fails the (paused) job that uses it, not the other one.
    assert!(store.delete_authorization(1, auth.id, 40).await.unwrap());
    assert!(!store.delete_authorization(1, auth.id, 40).await.unwrap());
    let failed = store.job(1, job.id).await.unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(
        failed.last_error.as_deref(),
        Some(format!("authorization {} was deleted", auth.id).as_str())
    );
    assert_eq!(
        store.job(1, other.id).await.unwrap().unwrap().state,
        JobState::Running
    );
    assert_eq!(store.jobs(1).await.unwrap().len(), 2);
}

async fn job_logs_are_bounded_and_ordered(store: Arc<dyn Store>) {
    use tributary_core::LogLevel;
    let job = store.create_job(&new_job(1, vec![])).await.unwrap();
    for i in 0..25 {
        let level = if i % 10 == 9 {
            LogLevel::Warn
        } else {
            LogLevel::Info
        };
        store
            .append_job_log(job.id, level, &format!("line {i}"), 100 + i, 10)
            .await
            .unwrap();
    }
    let lines = store.job_logs(job.id, 100).await.unwrap();
    assert_eq!(lines.len(), 10);
    assert_eq!(lines[0].message, "line 15");
    assert_eq!(lines[9].message, "line 24");
    assert_eq!(lines[4].level, LogLevel::Warn);
    let newest = store.job_logs(job.id, 3).await.unwrap();
    let texts: Vec<_> = newest.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(texts, ["line 22", "line 23", "line 24"]);
    assert_eq!(store.membership_head(1).await.unwrap(), 0);
}

async fn an_export_remembers_what_it_sent_each_profile_as(store: Arc<dyn Store>) {
    let job = store.create_job(&new_job(1, vec![])).await.unwrap();
    let other = store.create_job(&new_job(1, vec![])).await.unwrap();
    // More rows than one INSERT takes, and a profile twice in one call: the last one counts.
    let mut sent: Vec<(i64, String)> = (0..1_500).map(|p| (p, format!("x{p}"))).collect();
    sent.push((1, "renamed".into()));
    store
        .remember_export_identifiers(job.id, &sent)
        .await
        .unwrap();
    store
        .remember_export_identifiers(other.id, &[(1, "other".into())])
        .await
        .unwrap();
    let mut got = store
        .export_identifiers(job.id, &[1, 2, 1_499, 5_000])
        .await
        .unwrap();
    got.sort();
    assert_eq!(
        got,
        vec![
            (1, "renamed".to_string()),
            (2, "x2".to_string()),
            (1_499, "x1499".to_string())
        ]
    );
    let all: Vec<i64> = (0..1_500).collect();
    assert_eq!(
        store.export_identifiers(job.id, &all).await.unwrap().len(),
        1_500
    );
    // A later send under a new identifier replaces the old one.
    store
        .remember_export_identifiers(job.id, &[(2, "y2".into())])
        .await
        .unwrap();
    store
        .forget_export_identifiers(job.id, &[1, 1_499])
        .await
        .unwrap();
    let mut got = store
        .export_identifiers(job.id, &[1, 2, 1_499])
        .await
        .unwrap();
    got.sort();
    assert_eq!(got, vec![(2, "y2".to_string())]);
    assert_eq!(
        store.export_identifiers(other.id, &[1]).await.unwrap(),
        vec![(1, "other".to_string())],
        "per job"
    );
}

async fn erasures_are_remembered_per_account(store: Arc<dyn Store>) {
    store.erase_profile(1, 7, &[], 50).await.unwrap();
    assert_eq!(store.erased_profiles(1, &[7, 8]).await.unwrap(), vec![7]);
    assert!(store.erased_profiles(2, &[7]).await.unwrap().is_empty());
    assert!(store.erased_profiles(1, &[]).await.unwrap().is_empty());
}

async fn a_stopped_runs_accounting_is_kept_in_any_state(store: Arc<dyn Store>) {
    use tributary_core::JobState;
    let job = store.create_job(&new_job(1, vec![])).await.unwrap();
    assert!(
        store
            .set_job_state(1, job.id, &JobState::ACTIVE, JobState::Killed, None, 30)
            .await
            .unwrap()
    );
    store
        .save_stopped_run(
            job.id,
            &serde_json::json!({"log_position": 9}),
            &serde_json::json!({"requests": 4}),
            40,
        )
        .await
        .unwrap();
    let killed = store.job(1, job.id).await.unwrap().unwrap();
    assert_eq!(killed.state, JobState::Killed, "the state is left as it is");
    assert_eq!(killed.progress["log_position"], 9);
    assert_eq!(killed.metrics["requests"], 4);
}

/// SQLite commits with `synchronous = FULL`; the test PostgreSQL cluster runs `fsync = off`
/// on purpose, which the store must report.
async fn unsafe_durability_is_reported(store: Arc<dyn Store>) {
    let reported = store.unsafe_durability().await.unwrap();
    match store.backend() {
        tributary_store::Backend::Sqlite => assert!(reported.is_empty(), "{reported:?}"),
        tributary_store::Backend::Postgres => {
            assert_eq!(reported, vec!["fsync = off".to_string()])
        }
    }
}

/// The lag is what was received and not yet applied, per account, and it falls as the
/// pipeline's cursor moves.
async fn pipeline_lag_counts_what_is_not_applied(store: Arc<dyn Store>) {
    let lag = |n: i64| vec![("s".to_string(), n)];
    assert!(store.pipeline_lag(1).await.unwrap().is_empty());
    let mut batch: Vec<NewEvent> = (0..3).map(|n| event(1, "s", n)).collect();
    batch.push(event(1, "t", 3));
    store.append_events(&batch).await.unwrap();
    store.append_events(&[event(2, "s", 9)]).await.unwrap();
    assert_eq!(
        store.pipeline_lag(1).await.unwrap(),
        vec![("s".to_string(), 3), ("t".to_string(), 1)]
    );
    assert_eq!(store.pipeline_lag(2).await.unwrap(), lag(1));
    let events = store.events_after(1, 0, 10).await.unwrap();
    let commit = PipelineCommit {
        expected_cursor: 0,
        new_cursor: events[2].id,
        ..Default::default()
    };
    assert!(store.commit_pipeline(1, &commit).await.unwrap());
    assert_eq!(
        store.pipeline_lag(1).await.unwrap(),
        vec![("t".to_string(), 1)]
    );
    assert_eq!(store.pipeline_lag(2).await.unwrap(), lag(1), "per account");
}

async fn import_batches_commit_with_their_file_record(store: Arc<dyn Store>) {
    let file = |rows_done, done| tributary_core::ImportFile {
        job_id: 7,
        name: "users.csv".into(),
        size: 1_234,
        modified: 1_700_000_000,
        rows_done,
        rejected: 1,
        done,
        updated_at: 5_000 + rows_done,
    };
    let batch: Vec<NewEvent> = (0..3).map(|n| event(1, "braze_users", n)).collect();
    store
        .append_import_batch(&batch, &file(3, false), None)
        .await
        .unwrap();
    assert_eq!(store.import_files(7).await.unwrap(), vec![file(3, false)]);
    // The last batch marks the file done; its record is updated, not repeated.
    store
        .append_import_batch(&batch[..1], &file(4, true), None)
        .await
        .unwrap();
    assert_eq!(store.import_files(7).await.unwrap(), vec![file(4, true)]);
    let streams = store.streams(1).await.unwrap();
    assert_eq!(streams[0].count, 4, "the events are stored and counted");
    // The same name with another size is another file; other jobs have their own records.
    let replaced = tributary_core::ImportFile {
        size: 99,
        ..file(0, false)
    };
    store
        .append_import_batch(&[], &replaced, None)
        .await
        .unwrap();
    assert_eq!(store.import_files(7).await.unwrap().len(), 2);
    assert!(store.import_files(8).await.unwrap().is_empty());

    // Row fingerprints (`diff`): recorded with their batch under the file's generation; when
    // a file is done, the job keeps only its generation.
    let rows = |generation, hashes: &'static [i64]| {
        Some(tributary_store::RowHashes { generation, hashes })
    };
    store
        .append_import_batch(&[], &file(2, false), rows(100, &[1, 2, -3]))
        .await
        .unwrap();
    store
        .append_import_batch(&[], &file(3, true), rows(100, &[2, 4]))
        .await
        .unwrap();
    let mut seen = store
        .import_rows_seen(7, 100, &[1, 4, 5, -3])
        .await
        .unwrap();
    seen.sort_unstable();
    assert_eq!(seen, vec![-3, 1, 4]);
    store
        .append_import_batch(&[], &replaced, rows(200, &[5]))
        .await
        .unwrap();
    assert_eq!(store.import_rows_seen(7, 200, &[5]).await.unwrap(), vec![5]);
    assert_eq!(
        store.import_rows_seen(7, 100, &[1]).await.unwrap(),
        vec![1],
        "kept until 200 is done"
    );
    assert!(
        store
            .import_rows_seen(8, 100, &[1])
            .await
            .unwrap()
            .is_empty()
    );
    let done = tributary_core::ImportFile {
        done: true,
        ..replaced.clone()
    };
    store
        .append_import_batch(&[], &done, rows(200, &[]))
        .await
        .unwrap();
    assert!(
        store
            .import_rows_seen(7, 100, &[1, 2, 4])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.import_rows_seen(7, 200, &[5]).await.unwrap(), vec![5]);
}

/// The console's events-per-minute chart: counted per account, minute and stream in the
/// append's transaction; events dropped as duplicates are not counted.
async fn events_are_counted_per_minute_and_stream(store: Arc<dyn Store>) {
    let minute = 60_000_000;
    let t = 1_000 * minute;
    let at = |aid: i64, stream: &str, when: i64| NewEvent {
        received_at: when,
        ..event(aid, stream, 0)
    };
    store
        .append_events(&[
            at(1, "web", t + 1),
            at(1, "web", t + minute - 1),
            at(1, "braze_users", t + 5),
            at(1, "web", t + minute),
            at(2, "web", t + 2),
        ])
        .await
        .unwrap();
    let keyed = NewEvent {
        dedup_key: Some("k".into()),
        ..at(1, "web", t + minute + 3)
    };
    store
        .append_events(&[keyed.clone(), keyed.clone()])
        .await
        .unwrap();
    store.append_events(&[keyed]).await.unwrap();
    assert_eq!(
        store.events_per_minute(1, t + 30).await.unwrap(),
        vec![
            (t, "braze_users".to_string(), 1),
            (t, "web".to_string(), 2),
            (t + minute, "web".to_string(), 2),
        ]
    );
    assert_eq!(
        store.events_per_minute(1, t + minute).await.unwrap(),
        vec![(t + minute, "web".to_string(), 2)]
    );
    assert_eq!(
        store.events_per_minute(2, 0).await.unwrap(),
        vec![(t, "web".to_string(), 1)]
    );
    assert!(store.events_per_minute(3, 0).await.unwrap().is_empty());
}

/// A job's throughput chart: the metrics of its last report in each minute, written only
/// with a report that is (a stopped job's runner records nothing more).
async fn job_reports_keep_each_minutes_metrics(store: Arc<dyn Store>) {
    use tributary_core::{JobReport, JobState};
    let minute = 60_000_000;
    let t = 500 * minute;
    let job = store.create_job(&new_job(1, vec![])).await.unwrap();
    let other = store.create_job(&new_job(1, vec![])).await.unwrap();
    let report = |at: i64, sent: u64| JobReport {
        state: JobState::Running,
        progress: serde_json::json!({}),
        metrics: serde_json::json!({"users_sent": sent, "errors": 0}),
        last_error: None,
        at,
    };
    for (at, sent) in [(t + 1, 1), (t + 30_000_000, 5), (t + minute, 9)] {
        assert!(store.report_job(job.id, &report(at, sent)).await.unwrap());
    }
    assert!(store.report_job(other.id, &report(t, 100)).await.unwrap());
    let minutes = store.job_minutes(job.id, t + 10).await.unwrap();
    let sent: Vec<(i64, u64)> = minutes
        .iter()
        .map(|(m, metrics)| (*m, metrics["users_sent"].as_u64().unwrap()))
        .collect();
    assert_eq!(sent, vec![(t, 5), (t + minute, 9)]);
    // A window begins with the last minute before it: where its first increase starts from.
    let from_later: Vec<i64> = store
        .job_minutes(job.id, t + minute + 1)
        .await
        .unwrap()
        .iter()
        .map(|(m, _)| *m)
        .collect();
    assert_eq!(from_later, vec![t, t + minute]);
    let from_after: Vec<i64> = store
        .job_minutes(job.id, t + 5 * minute)
        .await
        .unwrap()
        .iter()
        .map(|(m, _)| *m)
        .collect();
    assert_eq!(
        from_after,
        vec![t + minute],
        "the last minute before the window"
    );
    assert!(
        store
            .set_job_state(1, job.id, &JobState::ACTIVE, JobState::Killed, None, t)
            .await
            .unwrap()
    );
    assert!(
        !store
            .report_job(job.id, &report(t + 2 * minute, 50))
            .await
            .unwrap()
    );
    assert_eq!(store.job_minutes(job.id, 0).await.unwrap().len(), 2);
    // A day of minutes is kept: a report a day later forgets the oldest.
    assert!(
        store
            .report_job(other.id, &report(t + 25 * 60 * minute, 200))
            .await
            .unwrap()
    );
    let kept = store.job_minutes(other.id, 0).await.unwrap();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert_eq!(kept[0].1["users_sent"], 200);
}

/// An audience's size-over-time chart: one size per day (the day's last sample), per
/// account, forgotten with the audience.
async fn audience_sizes_are_kept_per_day(store: Arc<dyn Store>) {
    let (_, admin) = token(None, "admin", vec![Role::Admin]);
    store.bootstrap("Default", &admin, 10).await.unwrap();
    let sizes = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
        v.iter().map(|(s, n)| (s.to_string(), *n)).collect()
    };
    store
        .record_audience_sizes(1, 20_000, &sizes(&[("vip", 3), ("all", 10)]))
        .await
        .unwrap();
    store
        .record_audience_sizes(1, 20_000, &sizes(&[("vip", 4)]))
        .await
        .unwrap();
    store
        .record_audience_sizes(1, 20_001, &sizes(&[("vip", 6)]))
        .await
        .unwrap();
    store
        .record_audience_sizes(2, 20_001, &sizes(&[("vip", 99)]))
        .await
        .unwrap();
    assert_eq!(
        store.audience_size_history(1, "vip", 0).await.unwrap(),
        vec![(20_000, 4), (20_001, 6)]
    );
    assert_eq!(
        store.audience_size_history(1, "vip", 20_001).await.unwrap(),
        vec![(20_001, 6)]
    );
    assert_eq!(
        store.audience_size_history(1, "all", 0).await.unwrap(),
        vec![(20_000, 10)]
    );
    store.drop_audience(1, "vip", 100).await.unwrap();
    assert!(
        store
            .audience_size_history(1, "vip", 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.audience_size_history(2, "vip", 0).await.unwrap(),
        vec![(20_001, 99)]
    );
}

async fn keyed_events_are_stored_once_per_stream_until_their_keys_expire(store: Arc<dyn Store>) {
    let keyed = |stream: &str, key: &str, at: i64| NewEvent {
        dedup_key: Some(key.to_string()),
        received_at: at,
        ..event(1, stream, at)
    };
    let hour = 3_600_000_000;
    let t = 10 * hour;
    // In one call: the first of two equal keys is kept; other streams and unkeyed events are
    // not affected.
    let dropped = store
        .append_events(&[
            keyed("s", "k1", t),
            keyed("s", "k1", t),
            keyed("other", "k1", t),
            event(1, "s", 1),
            keyed("s", "k2", t),
        ])
        .await
        .unwrap();
    assert_eq!(dropped, vec![1]);
    // Later calls: known keys are dropped, new ones kept.
    let dropped = store
        .append_events(&[
            keyed("s", "k2", t + 1),
            keyed("s", "k3", t + 1),
            keyed("s", "k1", t + 2),
        ])
        .await
        .unwrap();
    assert_eq!(dropped, vec![0, 2]);
    let count = |streams: Vec<tributary_core::StreamInfo>, name: &str| {
        streams
            .iter()
            .find(|s| s.name == name)
            .map_or(0, |s| s.count)
    };
    assert_eq!(count(store.streams(1).await.unwrap(), "s"), 4);
    assert_eq!(count(store.streams(1).await.unwrap(), "other"), 1);
    // A day later the keys are forgotten: the same key is a new delivery.
    let dropped = store
        .append_events(&[keyed("s", "k1", t + 25 * hour)])
        .await
        .unwrap();
    assert!(dropped.is_empty());
    assert_eq!(count(store.streams(1).await.unwrap(), "s"), 5);

    // Settings: stored with the stream (made if needed), listed, replaced.
    let settings = tributary_core::StreamSettings {
        dedup_fields: vec!["dispatch_id".into(), "braze_id".into()],
    };
    store
        .set_stream_settings(1, "fresh", &settings)
        .await
        .unwrap();
    store.set_stream_settings(1, "s", &settings).await.unwrap();
    let streams = store.streams(1).await.unwrap();
    let fresh = streams.iter().find(|s| s.name == "fresh").unwrap();
    assert_eq!((fresh.count, &fresh.settings), (0, &settings));
    assert_eq!(streams.iter().find(|s| s.name == "s").unwrap().count, 5);
    store
        .set_stream_settings(1, "s", &Default::default())
        .await
        .unwrap();
    let streams = store.streams(1).await.unwrap();
    assert!(
        streams
            .iter()
            .find(|s| s.name == "s")
            .unwrap()
            .settings
            .dedup_fields
            .is_empty()
    );
    assert!(store.streams(2).await.unwrap().is_empty());
}

tributary_store::backend_tests!(
    keyed_events_are_stored_once_per_stream_until_their_keys_expire,
    import_batches_commit_with_their_file_record,
    pipeline_lag_counts_what_is_not_applied,
    unsafe_durability_is_reported,
    an_export_remembers_what_it_sent_each_profile_as,
    erasures_are_remembered_per_account,
    a_stopped_runs_accounting_is_kept_in_any_state,
    authorizations_are_per_account_and_keep_sealed_bytes,
    jobs_move_through_states_and_lose_their_authorization,
    job_logs_are_bounded_and_ordered,
    membership_changes_are_logged_once_in_order,
    membership_spans_chunks,
    profiles_scan_in_id_order_and_come_due,
    bootstrap_creates_account_one_once,
    concurrent_bootstrap_creates_one_account,
    accounts_get_increasing_numbers,
    tokens_are_per_account,
    duplicate_token_hash_is_refused,
    console_sessions_end_by_expiry_sign_out_or_with_their_token,
    events_are_counted_per_minute_and_stream,
    job_reports_keep_each_minutes_metrics,
    audience_sizes_are_kept_per_day,
    events_round_trip_newest_first,
    group_commit_writer_stores_every_acknowledged_event,
    definitions_upsert_by_name_per_account_and_kind,
    pipeline_commits_are_atomic_and_exactly_once,
    leases_have_one_holder_until_they_expire,
    identity_blocklist_is_per_account,
);
