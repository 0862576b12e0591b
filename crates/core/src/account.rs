use serde::Serialize;

/// The account number (`aid`) that appears in URLs. Account 1 is created on first start.
pub type AccountId = i64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Account {
    pub aid: AccountId,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created: time::OffsetDateTime,
}
