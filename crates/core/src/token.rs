//! Access tokens: roles, expiry, and the secret/hash split. The secret is shown once; only its
//! SHA-256 is stored. Tokens are 256 random bits, so a fast hash is enough (no password
//! stretching), and lookups by hash stay a single index probe per request.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{AccountId, Micros};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    DataManager,
    AudienceManager,
    Observer,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Admin,
        Role::DataManager,
        Role::AudienceManager,
        Role::Observer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::DataManager => "data_manager",
            Role::AudienceManager => "audience_manager",
            Role::Observer => "observer",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown role {s:?}; roles are admin, data_manager, audience_manager, observer"
                )
            })
    }
}

/// How long a token lives, as offered when it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    Days(u32),
    Never,
}

impl Expiry {
    pub fn expires_at(self, now: Micros) -> Option<Micros> {
        match self {
            Expiry::Days(d) => Some(now + i64::from(d) * 86_400 * 1_000_000),
            Expiry::Never => None,
        }
    }
}

impl FromStr for Expiry {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "7d" => Ok(Expiry::Days(7)),
            "30d" => Ok(Expiry::Days(30)),
            "90d" => Ok(Expiry::Days(90)),
            "none" | "never" => Ok(Expiry::Never),
            other => Err(format!(
                "unknown expiry {other:?}; use \"7d\", \"30d\", \"90d\" or \"none\""
            )),
        }
    }
}

/// A token's secret value. Deliberately has no `Debug`/`Display` that shows the value, so it
/// cannot end up in a log line by accident.
pub struct TokenSecret(String);

const TOKEN_PREFIX: &str = "trb_";

impl TokenSecret {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        TokenSecret(format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// A secret chosen by the operator (`TRIBUTARY_ADMIN_TOKEN`).
    pub fn from_operator(value: String) -> Result<Self, String> {
        if value.len() < 16 {
            return Err("the admin token must be at least 16 characters long".into());
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("the admin token must not contain spaces or control characters".into());
        }
        Ok(TokenSecret(value))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

/// SHA-256 of a token's secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of(secret: &str) -> Self {
        TokenHash(Sha256::digest(secret.as_bytes()).into())
    }

    pub fn to_hex(&self) -> String {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(HEX[usize::from(b >> 4)] as char);
            s.push(HEX[usize::from(b & 15)] as char);
        }
        s
    }

    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(chunk).ok()?;
            out[i] = u8::from_str_radix(s, 16).ok()?;
        }
        Some(TokenHash(out))
    }

    /// Constant-time comparison, so that timing does not reveal how much of a hash matched.
    pub fn matches(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// A token to be stored.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// `None` only for the install-wide bootstrap admin token.
    pub account_id: Option<AccountId>,
    pub name: String,
    pub description: String,
    pub roles: Vec<Role>,
    pub hash: TokenHash,
    pub created_at: Micros,
    pub expires_at: Option<Micros>,
}

/// A stored token, without its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub id: i64,
    pub account_id: Option<AccountId>,
    pub name: String,
    pub description: String,
    pub roles: Vec<Role>,
    pub hash: TokenHash,
    pub created_at: Micros,
    pub expires_at: Option<Micros>,
}

impl TokenRecord {
    pub fn is_install_admin(&self) -> bool {
        self.account_id.is_none()
    }

    pub fn is_expired(&self, now: Micros) -> bool {
        self.expires_at.is_some_and(|at| now >= at)
    }

    /// Admin may do everything in its account; other roles only what names them.
    pub fn has_any_role(&self, needed: &[Role]) -> bool {
        self.roles
            .iter()
            .any(|r| *r == Role::Admin || needed.contains(r))
    }
}

/// Roles as stored: a comma-separated list.
pub fn roles_to_text(roles: &[Role]) -> String {
    roles
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

pub fn roles_from_text(text: &str) -> Result<Vec<Role>, String> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(Role::from_str)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_hash_round_trips_through_hex() {
        let a = TokenSecret::generate();
        let b = TokenSecret::generate();
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with("trb_"));
        let h = a.hash();
        assert_eq!(TokenHash::from_hex(&h.to_hex()), Some(h));
        assert!(h.matches(&TokenHash::of(a.expose())));
        assert!(!h.matches(&b.hash()));
        assert_eq!(format!("{a:?}"), "TokenSecret(<redacted>)");
        assert_eq!(TokenHash::from_hex("zz"), None);
    }

    #[test]
    fn roles_and_expiry_parse() {
        assert_eq!("data_manager".parse::<Role>(), Ok(Role::DataManager));
        assert!("root".parse::<Role>().unwrap_err().contains("unknown role"));
        assert_eq!(
            roles_from_text("admin,observer"),
            Ok(vec![Role::Admin, Role::Observer])
        );
        assert_eq!("30d".parse::<Expiry>(), Ok(Expiry::Days(30)));
        assert_eq!("none".parse::<Expiry>(), Ok(Expiry::Never));
        assert!("1y".parse::<Expiry>().is_err());
        assert_eq!(Expiry::Days(7).expires_at(0), Some(7 * 86_400_000_000));
    }

    #[test]
    fn admin_implies_every_role_and_expiry_is_checked() {
        let mut t = TokenRecord {
            id: 1,
            account_id: Some(1),
            name: "t".into(),
            description: String::new(),
            roles: vec![Role::Observer],
            hash: TokenHash::of("x"),
            created_at: 0,
            expires_at: Some(10),
        };
        assert!(!t.has_any_role(&[Role::DataManager]));
        assert!(t.has_any_role(&[Role::Observer]));
        t.roles = vec![Role::Admin];
        assert!(t.has_any_role(&[Role::DataManager]));
        assert!(!t.is_expired(9));
        assert!(t.is_expired(10));
    }
}
