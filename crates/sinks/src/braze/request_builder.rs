//! Membership changes → `/users/track` request bodies; erased people → `/users/delete`
//! bodies.
//!
//! A batch holds at most 75 users (Braze's limit of attributes objects per request). A user's
//! changes inside a batch are coalesced per audience: what is sent is the difference between
//! before the first change and after the last, so an entry followed by an exit sends nothing.
//! A user is named by the key its `identifier_type` says (`docs/braze.md`).

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use crate::braze::config::{AttributeMode, IdentifierType};

/// At most 75 attributes objects per request.
pub const MAX_USERS: usize = 75;
/// At most 50 users per `/users/delete` request.
pub const MAX_DELETES: usize = 50;

/// How a user is named to Braze.
#[derive(Debug, Clone)]
pub struct IdentifierKey {
    pub kind: IdentifierType,
    /// The label, for `user_alias`.
    pub alias_label: String,
}

impl IdentifierKey {
    /// The identifier as the key of an attributes object.
    fn insert(&self, object: &mut Map<String, Value>, value: &str) {
        let (key, value) = match self.kind {
            IdentifierType::ExternalId => ("external_id", Value::from(value)),
            IdentifierType::BrazeId => ("braze_id", Value::from(value)),
            IdentifierType::Email => ("email", Value::from(value)),
            IdentifierType::UserAlias => (
                "user_alias",
                json!({"alias_name": value, "alias_label": self.alias_label}),
            ),
        };
        object.insert(key.into(), value);
    }

    /// A `/users/delete` body for these users (at most [`MAX_DELETES`]): one identifier
    /// list per request, as the endpoint requires (docs/braze.md, "Deleting users").
    pub fn delete_body(&self, values: &[String]) -> Vec<u8> {
        let body = match self.kind {
            IdentifierType::Email => json!({ "email_addresses": values }),
            IdentifierType::ExternalId => json!({ "external_ids": values }),
            IdentifierType::BrazeId => json!({ "braze_ids": values }),
            IdentifierType::UserAlias => json!({
                "user_aliases": values
                    .iter()
                    .map(|v| json!({"alias_name": v, "alias_label": self.alias_label}))
                    .collect::<Vec<_>>()
            }),
        };
        body.to_string().into_bytes()
    }
}

/// How membership is written: the attribute (array mode) or the prefix (boolean mode).
#[derive(Debug, Clone)]
pub struct Shape {
    pub mode: AttributeMode,
    pub attribute: String,
    pub prefix: String,
    pub identifier: IdentifierKey,
}

struct UserChanges {
    identifier: String,
    /// Per audience: (first change entered?, last change entered?), in first-seen order.
    audiences: Vec<(String, bool, bool)>,
}

impl UserChanges {
    /// The net effect: audiences entered, audiences left.
    fn net(&self) -> (Vec<&str>, Vec<&str>) {
        let mut add = Vec::new();
        let mut remove = Vec::new();
        for (slug, first, last) in &self.audiences {
            // enter … exit (or exit … enter) returns to where it started: nothing to send.
            if first == last {
                if *last {
                    add.push(slug.as_str());
                } else {
                    remove.push(slug.as_str());
                }
            }
        }
        (add, remove)
    }
}

#[derive(Default)]
pub struct BatchBuilder {
    users: Vec<UserChanges>,
    index: HashMap<String, usize>,
}

/// A request ready to send.
#[derive(Debug, Clone)]
pub struct Request {
    pub body: Vec<u8>,
    /// The identifier of each attributes object, in body order (to map `errors[].index`).
    pub users: Vec<String>,
    /// Data points Braze will count for it (docs/braze.md §3: one per array value added or
    /// removed; one per attribute set).
    pub data_points: u64,
}

impl BatchBuilder {
    pub fn contains(&self, identifier: &str) -> bool {
        self.index.contains_key(identifier)
    }

    /// Full: a change for a user not yet in the batch must go to the next one.
    pub fn is_full(&self) -> bool {
        self.users.len() >= MAX_USERS
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Adds one change. The caller checks `is_full()` first for a user not yet in it.
    pub fn push(&mut self, identifier: &str, segment: &str, entered: bool) {
        let slot = match self.index.get(identifier) {
            Some(&i) => i,
            None => {
                self.users.push(UserChanges {
                    identifier: identifier.to_string(),
                    audiences: Vec::new(),
                });
                self.index
                    .insert(identifier.to_string(), self.users.len() - 1);
                self.users.len() - 1
            }
        };
        let audiences = &mut self.users[slot].audiences;
        match audiences.iter_mut().find(|(s, _, _)| s == segment) {
            Some(entry) => entry.2 = entered,
            None => audiences.push((segment.to_string(), entered, entered)),
        }
    }

    /// The request body, or `None` when every change cancelled out.
    pub fn finish(self, shape: &Shape) -> Option<Request> {
        let mut objects = Vec::with_capacity(self.users.len());
        let mut users = Vec::with_capacity(self.users.len());
        let mut data_points = 0u64;
        for user in &self.users {
            let (add, remove) = user.net();
            if add.is_empty() && remove.is_empty() {
                continue;
            }
            let mut object = Map::new();
            shape.identifier.insert(&mut object, &user.identifier);
            match shape.mode {
                AttributeMode::Array => {
                    let mut ops = Map::new();
                    if !add.is_empty() {
                        ops.insert("add".into(), json!(add));
                    }
                    if !remove.is_empty() {
                        ops.insert("remove".into(), json!(remove));
                    }
                    object.insert(shape.attribute.clone(), Value::Object(ops));
                }
                AttributeMode::Boolean => {
                    for slug in &add {
                        object.insert(format!("{}{slug}", shape.prefix), Value::Bool(true));
                    }
                    for slug in &remove {
                        object.insert(format!("{}{slug}", shape.prefix), Value::Bool(false));
                    }
                }
            }
            data_points += (add.len() + remove.len()) as u64;
            objects.push(Value::Object(object));
            users.push(user.identifier.clone());
        }
        if objects.is_empty() {
            return None;
        }
        let body = serde_json::to_vec(&json!({ "attributes": objects })).ok()?;
        Some(Request {
            body,
            users,
            data_points,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn external_id() -> IdentifierKey {
        IdentifierKey {
            kind: IdentifierType::ExternalId,
            alias_label: String::new(),
        }
    }

    fn array() -> Shape {
        Shape {
            mode: AttributeMode::Array,
            attribute: "lytics_segments".into(),
            prefix: String::new(),
            identifier: external_id(),
        }
    }

    fn body(request: &Request) -> Value {
        serde_json::from_slice(&request.body).expect("json")
    }

    #[test]
    fn changes_are_coalesced_per_user_and_audience() {
        let mut b = BatchBuilder::default();
        b.push("u1", "vip", true);
        b.push("u1", "vip", false); // enter then exit: nothing
        b.push("u1", "new", true);
        b.push("u2", "vip", false);
        b.push("u2", "vip", true); // exit then enter: nothing
        b.push("u3", "old", false);
        b.push("u3", "old", true);
        b.push("u3", "old", false); // exit, enter, exit: exit
        let request = b.finish(&array()).expect("something to send");
        assert_eq!(
            body(&request),
            json!({"attributes": [
                {"external_id": "u1", "lytics_segments": {"add": ["new"]}},
                {"external_id": "u3", "lytics_segments": {"remove": ["old"]}},
            ]})
        );
        assert_eq!(request.users, ["u1", "u3"]);
        assert_eq!(request.data_points, 2);
    }

    #[test]
    fn everything_cancelled_sends_nothing() {
        let mut b = BatchBuilder::default();
        b.push("u1", "vip", true);
        b.push("u1", "vip", false);
        assert!(b.finish(&array()).is_none());
    }

    #[test]
    fn boolean_mode_sets_one_attribute_per_audience() {
        let mut b = BatchBuilder::default();
        b.push("u1", "vip", true);
        b.push("u1", "churned", false);
        let shape = Shape {
            mode: AttributeMode::Boolean,
            attribute: String::new(),
            prefix: "seg_".into(),
            identifier: external_id(),
        };
        let request = b.finish(&shape).expect("request");
        assert_eq!(
            body(&request),
            json!({"attributes": [{"external_id": "u1", "seg_vip": true, "seg_churned": false}]})
        );
        assert_eq!(request.data_points, 2);
    }

    #[test]
    fn each_identifier_type_names_the_user_with_its_key() {
        let cases = [
            (IdentifierType::ExternalId, json!({"external_id": "v1"})),
            (IdentifierType::BrazeId, json!({"braze_id": "v1"})),
            (IdentifierType::Email, json!({"email": "v1"})),
            (
                IdentifierType::UserAlias,
                json!({"user_alias": {"alias_name": "v1", "alias_label": "crm"}}),
            ),
        ];
        for (kind, expected_key) in cases {
            let mut b = BatchBuilder::default();
            b.push("v1", "vip", true);
            let identifier = IdentifierKey {
                kind,
                alias_label: "crm".into(),
            };
            let shape = Shape {
                identifier: identifier.clone(),
                ..array()
            };
            let object = body(&b.finish(&shape).expect("request"))["attributes"][0].clone();
            let mut expected = expected_key.clone();
            expected["lytics_segments"] = json!({"add": ["vip"]});
            assert_eq!(object, expected, "{kind:?}");
            let delete: Value =
                serde_json::from_slice(&identifier.delete_body(&["v1".to_string()])).expect("json");
            let listed = match kind {
                IdentifierType::ExternalId => json!({"external_ids": ["v1"]}),
                IdentifierType::BrazeId => json!({"braze_ids": ["v1"]}),
                IdentifierType::UserAlias => {
                    json!({"user_aliases": [{"alias_name": "v1", "alias_label": "crm"}]})
                }
                IdentifierType::Email => json!({"email_addresses": ["v1"]}),
            };
            assert_eq!(delete, listed, "{kind:?}");
        }
    }

    #[test]
    fn a_batch_holds_75_users() {
        let mut b = BatchBuilder::default();
        for i in 0..MAX_USERS {
            assert!(!b.is_full());
            b.push(&format!("u{i}"), "vip", true);
        }
        assert!(b.is_full());
        assert!(b.contains("u0"));
        let request = b.finish(&array()).expect("request");
        assert_eq!(
            body(&request)["attributes"].as_array().map(Vec::len),
            Some(75)
        );
    }
}
