//! What every account starts with: the built-in LQL for the `braze_users` stream and the
//! default identity blocklist. Both are ordinary account data afterwards: `GET /api/query`
//! shows the query, and the account may replace or delete it.

use tributary_core::{AccountId, Definition, DefinitionKind};
use tributary_store::Store;

pub const BRAZE_USERS_ALIAS: &str = "braze_users";

/// The seed's webhook fields and the Braze CSV export's columns, mapped by header name.
/// Identity fields: braze_id, external_id, email. Columns no other line reads are kept in the
/// `custom` map by `unmapped()` (reachable in FilterQL as `custom.<column>`).
pub const BRAZE_USERS_LQL: &str = r#"
SELECT
    oneof(braze_id, appboy_id) AS braze_id SHORTDESC "Braze ID",
    oneof(external_id, user_id) AS external_id SHORTDESC "Braze external user ID",
    email(email) AS email SHORTDESC "Email",
    first_name SHORTDESC "First name",
    last_name SHORTDESC "Last name",
    city SHORTDESC "City",
    country SHORTDESC "Country",
    gender SHORTDESC "Gender",
    language SHORTDESC "Language",
    todate(oneof(date_of_birth, dob)) AS date_of_birth SHORTDESC "Date of birth" KIND date,
    oneof(phone_number, phone) AS phone_number SHORTDESC "Phone number",
    oneof(time_zone, timezone) AS time_zone SHORTDESC "Time zone",
    twitter_handle SHORTDESC "Twitter handle",
    count() AS braze_event_count SHORTDESC "Events from Braze" KIND int MERGEOP count,
    now() AS braze_first_seen SHORTDESC "First seen from Braze" KIND date MERGEOP oldest,
    now() AS braze_last_seen SHORTDESC "Last seen from Braze" KIND date MERGEOP latest,
    unmapped()
        AS custom SHORTDESC "Other Braze attributes" KIND map[string]value MERGEOP merge
FROM braze_users INTO user BY braze_id OR external_id OR email
ALIAS braze_users
"#;

/// Audiences every account has: `(slug, FilterQL)`. `_first_seen` is a meta field every
/// profile has (see `audiences::META_FIELDS`).
pub const BUILTIN_AUDIENCES: &[(&str, &str)] = &[
    (
        "lytics_all",
        "-- Every profile\nFILTER * FROM user ALIAS lytics_all",
    ),
    (
        "lytics_known",
        "-- Profiles with an email or an external id\nFILTER OR (EXISTS email, EXISTS external_id) FROM user ALIAS lytics_known",
    ),
    (
        "lytics_anonymous",
        "-- Profiles with neither an email nor an external id\nFILTER AND (NOT EXISTS email, NOT EXISTS external_id) FROM user ALIAS lytics_anonymous",
    ),
    (
        "lytics_new",
        "-- Profiles first seen within the last 7 days\nFILTER _first_seen > \"now-7d\" FROM user ALIAS lytics_new",
    ),
];

/// Values that never link profiles. Compared case-insensitively after trimming.
pub const DEFAULT_BLOCKLIST: &[&str] = &[
    "",
    "null",
    "nil",
    "none",
    "undefined",
    "unknown",
    "0",
    "-1",
    "n/a",
    "na",
    "test",
    "test@test.com",
    "test@example.com",
    "noemail@noemail.com",
    "no@email.com",
    "example@example.com",
    "[]",
    "{}",
];

/// Gives a new account its built-in query, audiences and blocklist.
pub async fn seed_account(
    store: &dyn Store,
    aid: AccountId,
) -> Result<(), tributary_store::StoreError> {
    let now = tributary_core::to_micros(time::OffsetDateTime::now_utc());
    let statement = tributary_query::parse_lql(BRAZE_USERS_LQL)
        .ok()
        .and_then(|mut s| s.pop())
        .map(|s| s.to_string())
        .unwrap_or_else(|| BRAZE_USERS_LQL.trim().to_string());
    if store
        .definition(aid, DefinitionKind::Query, BRAZE_USERS_ALIAS)
        .await?
        .is_none()
    {
        store
            .put_definition(&Definition {
                account_id: aid,
                kind: DefinitionKind::Query,
                name: BRAZE_USERS_ALIAS.into(),
                text: statement,
                created_at: now,
                updated_at: now,
            })
            .await?;
    }
    for (slug, text) in BUILTIN_AUDIENCES {
        if store
            .definition(aid, DefinitionKind::Segment, slug)
            .await?
            .is_some()
        {
            continue;
        }
        let text = tributary_query::parse_filter(text)
            .map(|s| s.to_string())
            .unwrap_or_else(|_| text.to_string());
        store
            .put_definition(&Definition {
                account_id: aid,
                kind: DefinitionKind::Segment,
                name: slug.to_string(),
                text,
                created_at: now,
                updated_at: now,
            })
            .await?;
    }
    if store.identity_blocklist(aid).await?.is_empty() {
        let values: Vec<String> = DEFAULT_BLOCKLIST.iter().map(|s| s.to_string()).collect();
        store.set_identity_blocklist(aid, &values).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_query_parses_and_compiles() {
        let st = tributary_query::parse_lql(BRAZE_USERS_LQL)
            .unwrap()
            .remove(0);
        let plan = tributary_query::lql::compile(&st).unwrap();
        assert_eq!(
            plan.identity_fields,
            vec!["braze_id", "external_id", "email"]
        );
        assert_eq!(plan.stream, "braze_users");
    }

    #[test]
    fn builtin_audiences_parse_under_their_slugs() {
        for (slug, text) in BUILTIN_AUDIENCES {
            let st = tributary_query::parse_filter(text).unwrap();
            assert_eq!(st.alias.as_deref(), Some(*slug));
        }
    }
}
