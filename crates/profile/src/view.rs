//! A profile as FilterQL sees it: its fields' values and the meta fields every profile has.

use std::borrow::Cow;

use tributary_core::{Micros, from_micros};
use tributary_query::Value;
use tributary_query::eval::Fields;

use crate::plans::Plans;
use crate::state::{FieldState, ProfileState};

/// Fields every profile has, derived from its events rather than from a mapping. An event
/// touches `_last_seen`, `_event_count` (and possibly `_first_seen`) on every profile.
pub const META_FIELDS: &[&str] = &[
    "_id",
    "_created",
    "_first_seen",
    "_last_seen",
    "_event_count",
];
pub const EVENT_META_FIELDS: &[&str] = &["_first_seen", "_last_seen", "_event_count"];

/// A profile as FilterQL sees it: its fields' values plus the meta fields.
pub struct ProfileView<'a> {
    pub id: i64,
    pub created_at: Micros,
    pub state: &'a ProfileState,
    pub plans: &'a Plans,
}

fn descend<'v>(value: Cow<'v, Value>, rest: &[String]) -> Option<Cow<'v, Value>> {
    let Some((first, more)) = rest.split_first() else {
        return Some(value);
    };
    match value {
        Cow::Borrowed(Value::Map(m)) => descend(Cow::Borrowed(m.get(first)?), more),
        Cow::Owned(Value::Map(mut m)) => descend(Cow::Owned(m.remove(first)?), more),
        _ => None,
    }
}

impl ProfileView<'_> {
    fn meta(&self, name: &str) -> Option<Value> {
        Some(match name {
            "_id" => Value::Int(self.id),
            "_created" => Value::Time(from_micros(self.created_at)),
            "_first_seen" => Value::Time(from_micros(self.state.first_seen)),
            "_last_seen" => Value::Time(from_micros(self.state.last_seen)),
            "_event_count" => Value::Int(self.state.events),
            _ => return None,
        })
    }

    fn field(&self, name: &str) -> Option<Cow<'_, Value>> {
        match self.state.fields.get(name)? {
            FieldState::Scalar { value, .. } => Some(Cow::Borrowed(value)),
            keyed => Some(Cow::Owned(keyed.value(Some(self.plans.spec(name))))),
        }
    }
}

impl Fields for ProfileView<'_> {
    fn get(&self, path: &[String]) -> Option<Cow<'_, Value>> {
        let (first, rest) = path.split_first()?;
        if let Some(v) = self.meta(first) {
            return descend(Cow::Owned(v), rest);
        }
        match self.field(first) {
            Some(v) => descend(v, rest).filter(|v| !v.is_null()),
            // A flat field whose name has dots: `user.city` stored as one key.
            None if !rest.is_empty() => self.field(&path.join(".")),
            None => None,
        }
    }

    fn for_each(&self, f: &mut dyn FnMut(&str, &Value)) {
        for name in self.state.fields.keys() {
            if let Some(v) = self.field(name) {
                f(name, &v);
            }
        }
        for name in META_FIELDS {
            if let Some(v) = self.meta(name) {
                f(name, &v);
            }
        }
    }
}
