use crate::{AccountId, Micros};

/// What a stored definition is: an audience (FilterQL) or an LQL query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DefinitionKind {
    Segment,
    Query,
}

impl DefinitionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DefinitionKind::Segment => "segment",
            DefinitionKind::Query => "query",
        }
    }
}

/// A named piece of text an account defines: an audience's FilterQL (named by its slug) or an
/// LQL query (named by its ALIAS). Stored in canonical (printed) form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub account_id: AccountId,
    pub kind: DefinitionKind,
    pub name: String,
    pub text: String,
    pub created_at: Micros,
    pub updated_at: Micros,
}
