//! The workspace's users and how an object's identifier finds one (docs/braze.md §1.3).

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub braze_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_aliases: Vec<Alias>,
    /// Standard fields and custom attributes together, as set.
    pub attributes: Map<String, Value>,
    pub custom_events: Vec<EventSummary>,
    pub purchases: Vec<EventSummary>,
    pub created_at: String,
    /// How many attributes objects updated this user, in arrival order: tests read it to check
    /// that a client sent a user's changes in order.
    pub updates: u64,
    #[serde(skip)]
    pub touched: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
pub struct Alias {
    pub alias_name: String,
    pub alias_label: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct EventSummary {
    pub name: String,
    pub first: String,
    pub last: String,
    pub count: u64,
}

/// The identifier an object carries (docs/braze.md §1.3: one of five).
#[derive(Debug, Clone)]
pub enum Identifier {
    ExternalId(String),
    Alias(Alias),
    BrazeId(String),
    Email(String),
    Phone(String),
}

impl Identifier {
    /// The identifier of an attributes, event or purchase object (docs/braze.md §1.3: email
    /// before phone when both are sent).
    pub fn of(object: &Map<String, Value>) -> Result<Identifier, String> {
        const MISSING: &str =
            "'external_id', 'braze_id', 'user_alias', 'email' or 'phone' is required";
        if let Some(v) = object.get("external_id") {
            return match v.as_str() {
                Some(s) if !s.is_empty() => Ok(Identifier::ExternalId(s.to_string())),
                _ => Err("'external_id' is not valid".into()),
            };
        }
        if let Some(v) = object.get("user_alias") {
            return serde_json::from_value::<Alias>(v.clone())
                .map(Identifier::Alias)
                .map_err(|_| "'user_alias' is not valid".to_string());
        }
        if let Some(v) = object.get("braze_id") {
            return match v.as_str() {
                Some(s) if !s.is_empty() => Ok(Identifier::BrazeId(s.to_string())),
                _ => Err("'braze_id' is not valid".into()),
            };
        }
        if let Some(v) = object.get("email") {
            return match v.as_str() {
                Some(s) if s.contains('@') => Ok(Identifier::Email(s.to_lowercase())),
                _ => Err("The value provided for the 'email' field is not a valid email.".into()),
            };
        }
        if let Some(v) = object.get("phone") {
            return match v.as_str() {
                Some(s)
                    if s.trim_start_matches('+')
                        .chars()
                        .all(|c| c.is_ascii_digit()) =>
                {
                    Ok(Identifier::Phone(s.to_string()))
                }
                _ => Err("'phone' is not valid".into()),
            };
        }
        Err(MISSING.into())
    }
}

#[derive(Debug, Default)]
pub struct Users {
    /// Boxed: growing the map moves pointers, not users (a million users would otherwise
    /// stall every request behind a rehash of hundreds of megabytes).
    by_braze_id: HashMap<String, Box<User>>,
    external: HashMap<String, String>,
    aliases: HashMap<Alias, String>,
    clock: u64,
    next_id: u64,
}

impl Users {
    pub fn len(&self) -> usize {
        self.by_braze_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_braze_id.is_empty()
    }

    pub fn all(&self) -> impl Iterator<Item = &User> {
        self.by_braze_id.values().map(|u| &**u)
    }

    pub fn by_external_id(&self, id: &str) -> Option<&User> {
        self.external
            .get(id)
            .and_then(|b| self.by_braze_id.get(b))
            .map(|u| &**u)
    }

    pub fn by_braze_id(&self, id: &str) -> Option<&User> {
        self.by_braze_id.get(id).map(|u| &**u)
    }

    pub fn by_alias(&self, alias: &Alias) -> Option<&User> {
        self.aliases
            .get(alias)
            .and_then(|b| self.by_braze_id.get(b))
            .map(|u| &**u)
    }

    /// The user an object addresses, created when docs/braze.md §1.3 says so; `None` when the
    /// object only updates existing users and there is none.
    pub fn resolve(&mut self, id: &Identifier, create: Creation) -> Option<&mut User> {
        let found = match id {
            Identifier::ExternalId(x) => self.external.get(x).cloned(),
            Identifier::Alias(a) => self.aliases.get(a).cloned(),
            Identifier::BrazeId(b) => self.by_braze_id.contains_key(b).then(|| b.clone()),
            Identifier::Email(e) => self.most_recent_with("email", e),
            Identifier::Phone(p) => self.most_recent_with("phone", p),
        };
        let braze_id = match found {
            Some(b) => b,
            None if create.allowed(id) => self.create(id),
            None => return None,
        };
        self.clock += 1;
        let clock = self.clock;
        let user = self.by_braze_id.get_mut(&braze_id)?;
        user.touched = clock;
        Some(user)
    }

    /// Several profiles may share an email or phone: the most recently updated one with an
    /// external_id wins, else the most recently updated one.
    fn most_recent_with(&self, field: &str, value: &str) -> Option<String> {
        let matching = self
            .by_braze_id
            .values()
            .filter(|u| u.attributes.get(field).and_then(Value::as_str) == Some(value));
        matching
            .max_by_key(|u| (u.external_id.is_some(), u.touched))
            .map(|u| u.braze_id.clone())
    }

    fn create(&mut self, id: &Identifier) -> String {
        self.next_id += 1;
        // Braze ids look like MongoDB object ids: 24 hex digits.
        let braze_id = format!("{:08x}{:016x}", 0x5f00_0000u32, self.next_id);
        let mut user = User {
            braze_id: braze_id.clone(),
            external_id: None,
            user_aliases: Vec::new(),
            attributes: Map::new(),
            custom_events: Vec::new(),
            purchases: Vec::new(),
            created_at: jiff::Timestamp::now().to_string(),
            updates: 0,
            touched: 0,
        };
        match id {
            Identifier::ExternalId(x) => {
                user.external_id = Some(x.clone());
                self.external.insert(x.clone(), braze_id.clone());
            }
            Identifier::Alias(a) => {
                user.user_aliases.push(a.clone());
                self.aliases.insert(a.clone(), braze_id.clone());
            }
            Identifier::Email(e) => {
                user.attributes
                    .insert("email".into(), Value::String(e.clone()));
            }
            Identifier::Phone(p) => {
                user.attributes
                    .insert("phone".into(), Value::String(p.clone()));
            }
            Identifier::BrazeId(_) => {}
        }
        self.by_braze_id.insert(braze_id.clone(), Box::new(user));
        braze_id
    }

    /// Deletes the users an identifier names (every user holding an email address or phone
    /// number); how many went.
    pub fn remove(&mut self, id: &Identifier) -> usize {
        let braze_ids: Vec<String> = match id {
            Identifier::ExternalId(x) => self.external.get(x).cloned().into_iter().collect(),
            Identifier::Alias(a) => self.aliases.get(a).cloned().into_iter().collect(),
            Identifier::BrazeId(b) => vec![b.clone()],
            Identifier::Email(v) | Identifier::Phone(v) => {
                let field = if matches!(id, Identifier::Email(_)) {
                    "email"
                } else {
                    "phone"
                };
                self.by_braze_id
                    .values()
                    .filter(|u| u.attributes.get(field).and_then(Value::as_str) == Some(v))
                    .map(|u| u.braze_id.clone())
                    .collect()
            }
        };
        let mut removed = 0;
        for braze_id in braze_ids {
            let Some(user) = self.by_braze_id.remove(&braze_id) else {
                continue;
            };
            if let Some(x) = &user.external_id {
                self.external.remove(x);
            }
            for alias in &user.user_aliases {
                self.aliases.remove(alias);
            }
            removed += 1;
        }
        removed
    }

    pub fn clear(&mut self) {
        *self = Users::default();
    }
}

/// Whether an object may create a user: `_update_existing_only` defaults to false for
/// external ids, email and phone, and to true for aliases (attributes) or always (events and
/// purchases with an alias). A braze_id never creates one.
#[derive(Debug, Clone, Copy)]
pub struct Creation {
    pub update_existing_only: Option<bool>,
    pub alias_may_create: bool,
}

impl Creation {
    fn allowed(&self, id: &Identifier) -> bool {
        match id {
            Identifier::BrazeId(_) => false,
            Identifier::Alias(_) => {
                self.alias_may_create && self.update_existing_only == Some(false)
            }
            _ => self.update_existing_only != Some(true),
        }
    }
}
