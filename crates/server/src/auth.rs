//! Who is calling, and may they? Every handler takes an `Authorized<P>` whose policy `P`
//! names the roles the endpoint needs, so the requirement is part of the handler's signature
//! and a handler without one does not compile against account data.
//!
//! Tokens are looked up by SHA-256 (`TokenHash`), compared in constant time, and cached for a
//! short time so a busy webhook does not cost a database read per request. A deleted token
//! stops working on every node within `TOKEN_CACHE_TTL`.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use tributary_core::{AccountId, Role, TokenHash, TokenRecord};

use crate::AppState;
use crate::api::{ApiError, query_map};

pub const TOKEN_CACHE_TTL: Duration = Duration::from_secs(2);

/// What an endpoint requires. Admin satisfies every policy except `InstallAdmin`.
pub trait Policy: Send + Sync + 'static {
    /// Roles (besides admin) that may call.
    const ROLES: &'static [Role];
    /// Only the install-wide bootstrap token may call (creating accounts).
    const INSTALL_ADMIN_ONLY: bool = false;
    /// For error messages: what the endpoint does.
    const ACTION: &'static str;
}

macro_rules! policy {
    ($(#[$doc:meta])* $name:ident, [$($role:ident),*], $action:literal $(, install_admin_only = $only:literal)?) => {
        $(#[$doc])*
        pub struct $name;
        impl Policy for $name {
            const ROLES: &'static [Role] = &[$(Role::$role),*];
            const ACTION: &'static str = $action;
            $(const INSTALL_ADMIN_ONLY: bool = $only;)?
        }
    };
}

policy!(/// Sending events to a stream.
    Collect, [DataManager], "collect data");
policy!(/// Listing streams and their counts (no personal data).
    ReadStreams, [DataManager, AudienceManager, Observer], "list streams");
policy!(/// Changing a stream's settings (deduplication).
    ManageStreams, [DataManager], "change stream settings");
policy!(/// Reading raw events, which hold personal data unmasked.
    ReadRawEvents, [DataManager], "read raw events");
policy!(/// Creating, changing and deleting audiences (FilterQL).
    ManageAudiences, [AudienceManager], "change audiences");
policy!(/// Creating, changing and deleting LQL queries (the schema).
    ManageQueries, [DataManager], "change LQL queries");
policy!(/// Reading audiences and queries, validating and test-evaluating them (no personal data).
    ReadDefinitions, [DataManager, AudienceManager, Observer], "read audiences and queries");
policy!(/// Reading profiles (observers see personal fields masked).
    ReadProfiles, [DataManager, AudienceManager, Observer], "read profiles");
policy!(/// Erasing a person, rebuilding profiles, changing the identity blocklist.
    ManageProfiles, [DataManager], "erase people or rebuild profiles");
policy!(/// Creating, listing and deleting access tokens.
    ManageTokens, [], "manage access tokens");
policy!(/// Creating, changing and deleting authorizations (credentials for Braze and SFTP).
    ManageAuthorizations, [DataManager], "manage authorizations");
policy!(/// Listing authorizations (secrets are always redacted).
    ReadAuthorizations, [DataManager, AudienceManager, Observer], "read authorizations");
policy!(/// Creating jobs (exports, imports) and pausing, resuming or killing them.
    ManageJobs, [DataManager, AudienceManager], "manage jobs");
policy!(/// Reading jobs, their progress, metrics and logs.
    ReadJobs, [DataManager, AudienceManager, Observer], "read jobs");
policy!(/// Creating accounts.
    ManageAccounts, [], "create accounts", install_admin_only = true);

/// An authenticated caller acting in one account.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token: Arc<TokenRecord>,
    pub account_id: AccountId,
}

impl Caller {
    /// The account named in a URL path (`/c/{aid}/...`): the install admin may act in any
    /// existing account; other tokens only in their own.
    pub async fn act_in(&self, state: &AppState, aid: AccountId) -> Result<Caller, ApiError> {
        resolve_account(state, &self.token, Some(aid))
            .await
            .map(|account_id| Caller {
                token: self.token.clone(),
                account_id,
            })
    }
}

/// A caller the web console already authenticated by its session cookie, attached to the
/// console's in-process calls of the API. Only the console sets it (a request extension
/// cannot come from the network), so the API's own policy checks still decide.
#[derive(Clone)]
pub(crate) struct SessionCaller(pub Arc<TokenRecord>);

/// Whether a token's roles satisfy policy `P` (the console offers only what this allows).
pub(crate) fn permits<P: Policy>(token: &TokenRecord) -> bool {
    (!P::INSTALL_ADMIN_ONLY || token.is_install_admin()) && token.has_any_role(P::ROLES)
}

pub struct Authorized<P: Policy> {
    pub caller: Caller,
    _policy: PhantomData<P>,
}

impl<P: Policy> FromRequestParts<Arc<AppState>> for Authorized<P> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let params = query_map(&parts.uri)?;
        let token = match parts.extensions.get::<SessionCaller>() {
            Some(SessionCaller(token)) => token.clone(),
            None => {
                let secret = presented_token(parts, &params)?;
                state.tokens.lookup(state, &secret).await?
            }
        };
        let now = tributary_core::to_micros(time::OffsetDateTime::now_utc());
        if token.is_expired(now) {
            return Err(ApiError::unauthorized("the access token has expired"));
        }
        if P::INSTALL_ADMIN_ONLY && !token.is_install_admin() {
            return Err(ApiError::forbidden(format!(
                "only the install-wide admin token may {}",
                P::ACTION
            )));
        }
        if !token.has_any_role(P::ROLES) {
            let needed: Vec<&str> = std::iter::once("admin")
                .chain(P::ROLES.iter().map(|r| r.as_str()))
                .collect();
            return Err(ApiError::forbidden(format!(
                "this token may not {}: it needs one of the roles {}",
                P::ACTION,
                needed.join(", ")
            )));
        }
        let requested = match params.get("account_id") {
            None => None,
            Some(text) => Some(text.parse::<AccountId>().map_err(|_| {
                ApiError::bad_request(format!("account_id {text:?} is not an account number"))
            })?),
        };
        let account_id = resolve_account(state, &token, requested).await?;
        Ok(Authorized {
            caller: Caller { token, account_id },
            _policy: PhantomData,
        })
    }
}

async fn resolve_account(
    state: &AppState,
    token: &TokenRecord,
    requested: Option<AccountId>,
) -> Result<AccountId, ApiError> {
    match (token.account_id, requested) {
        (Some(own), None) => Ok(own),
        (Some(own), Some(asked)) if own == asked => Ok(own),
        (Some(_), Some(asked)) => Err(ApiError::forbidden(format!(
            "this token does not belong to account {asked}"
        ))),
        (None, asked) => {
            let aid = asked.unwrap_or(1);
            match state.store.account(aid).await? {
                Some(_) => Ok(aid),
                None => Err(ApiError::not_found(format!("account {aid} does not exist"))),
            }
        }
    }
}

/// The token from `?key=`, `?access_token=`, or `Authorization` (raw or `Bearer`).
fn presented_token(parts: &Parts, params: &HashMap<String, String>) -> Result<String, ApiError> {
    if let Some(v) = params.get("key").or_else(|| params.get("access_token")) {
        return Ok(v.clone());
    }
    let Some(header) = parts.headers.get(AUTHORIZATION) else {
        return Err(ApiError::unauthorized(
            "no access token: pass it as ?key=, ?access_token= or the Authorization header",
        ));
    };
    let text = header
        .to_str()
        .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?
        .trim();
    let token = match text.split_once(' ') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("bearer") => rest.trim(),
        _ => text,
    };
    if token.is_empty() {
        return Err(ApiError::unauthorized("the Authorization header is empty"));
    }
    Ok(token.to_string())
}

/// Recently seen tokens by hash.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<TokenHash, (Arc<TokenRecord>, Instant)>>,
}

const TOKEN_CACHE_MAX: usize = 10_000;

impl TokenCache {
    pub(crate) async fn lookup(
        &self,
        state: &AppState,
        secret: &str,
    ) -> Result<Arc<TokenRecord>, ApiError> {
        let hash = TokenHash::of(secret);
        if let Some(found) = self.cached(&hash) {
            return Ok(found);
        }
        let record = state
            .store
            .token_by_hash(&hash)
            .await?
            .filter(|r| r.hash.matches(&hash))
            .ok_or_else(|| ApiError::unauthorized("the access token is not valid"))?;
        let record = Arc::new(record);
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= TOKEN_CACHE_MAX {
                entries.clear();
            }
            entries.insert(hash, (record.clone(), Instant::now()));
        }
        Ok(record)
    }

    fn cached(&self, hash: &TokenHash) -> Option<Arc<TokenRecord>> {
        let entries = self.entries.lock().ok()?;
        let (record, at) = entries.get(hash)?;
        (at.elapsed() < TOKEN_CACHE_TTL && record.hash.matches(hash)).then(|| record.clone())
    }

    /// Drops a deleted token at once on this node.
    pub fn forget(&self, id: i64) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, (r, _)| r.id != id);
        }
    }
}
