//! A profile's merged state, and how values combine by MERGEOP.
//!
//! Every combination is commutative and associative, with ties broken by the value's text, so
//! the same events give the same profile in any arrival order, and merging two profiles gives
//! the same result as having seen all their events in one.

use std::collections::{BTreeMap, BTreeSet};

use tributary_core::Micros;
use tributary_query::Value;
use tributary_query::ast::{CmpOp, Kind, MergeOp};
use tributary_query::eval::compare_values;
use tributary_query::lql::FieldMapping;
use tributary_query::value::TIME_TAG;

/// Elements a `capped` set keeps (the most recent).
pub const CAPPED_SET_SIZE: usize = 100;

/// How a field combines: from the mapping that writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub kind: Kind,
    pub op: MergeOp,
}

impl From<&FieldMapping> for FieldSpec {
    fn from(f: &FieldMapping) -> Self {
        FieldSpec {
            kind: f.kind,
            op: f.merge_op,
        }
    }
}

impl FieldSpec {
    fn keyed(self) -> bool {
        let list = matches!(
            self.kind,
            Kind::StringList | Kind::TimeList | Kind::TimeOrderedStrings
        );
        (list && matches!(self.op, MergeOp::Union | MergeOp::Capped))
            || (self.kind.is_map()
                && matches!(
                    self.op,
                    MergeOp::LatestMap
                        | MergeOp::OldestMap
                        | MergeOp::Merge
                        | MergeOp::MapMin
                        | MergeOp::MapMax
                        | MergeOp::Sum
                ))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum FieldState {
    /// One value and the event time it is from.
    Scalar { value: Value, at: Micros },
    /// Set elements or map entries, each with its value and event time.
    Keyed(BTreeMap<String, (Value, Micros)>),
}

fn text(v: &Value) -> String {
    v.to_text()
}

/// Whether `(t2, v2)` is later than `(t1, v1)`: by event time, ties by the value's text, so
/// the order is total and the same whatever the arrival order.
fn later(t1: Micros, v1: &Value, t2: Micros, v2: &Value) -> bool {
    match t2.cmp(&t1) {
        std::cmp::Ordering::Equal => {
            tributary_query::eval::text_of(v2) > tributary_query::eval::text_of(v1)
        }
        other => other == std::cmp::Ordering::Greater,
    }
}

fn newer(a: &(Value, Micros), b: &(Value, Micros)) -> bool {
    later(a.1, &a.0, b.1, &b.0)
}

fn less(a: &Value, b: &Value) -> bool {
    match compare_values(a, b, CmpOp::Lt) {
        Some(r) => r,
        None => text(a) < text(b),
    }
}

fn add(a: &Value, b: &Value) -> Value {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => Value::Int(x.saturating_add(*y)),
        _ => Value::Number(a.as_f64().unwrap_or(0.0) + b.as_f64().unwrap_or(0.0)),
    }
}

impl FieldState {
    /// What one event contributes.
    pub fn from_event(spec: FieldSpec, value: Value, at: Micros) -> FieldState {
        if !spec.keyed() {
            return FieldState::Scalar { value, at };
        }
        let entries = match value {
            Value::Array(items) => items.into_iter().map(|v| (text(&v), (v, at))).collect(),
            Value::Map(m) => m.into_iter().map(|(k, v)| (k, (v, at))).collect(),
            other => BTreeMap::from([(text(&other), (other, at))]),
        };
        FieldState::Keyed(entries)
    }

    pub fn combine(&mut self, other: FieldState, spec: FieldSpec) {
        match (self, other) {
            (FieldState::Scalar { value, at }, FieldState::Scalar { value: v2, at: t2 }) => {
                let keep_other = match spec.op {
                    MergeOp::Oldest => later(t2, &v2, *at, value),
                    MergeOp::Min => less(&v2, value) || (!less(value, &v2) && t2 < *at),
                    MergeOp::Max => less(value, &v2) || (!less(&v2, value) && t2 < *at),
                    MergeOp::Sum | MergeOp::Count => {
                        *value = add(value, &v2);
                        *at = (*at).max(t2);
                        return;
                    }
                    _ => later(*at, value, t2, &v2),
                };
                if keep_other {
                    *value = v2;
                    *at = t2;
                }
            }
            (FieldState::Keyed(mine), FieldState::Keyed(theirs)) => {
                for (k, entry) in theirs {
                    match mine.get_mut(&k) {
                        None => {
                            mine.insert(k, entry);
                        }
                        Some(current) => match spec.op {
                            MergeOp::OldestMap => {
                                if newer(&entry, current) {
                                    continue;
                                }
                                *current = entry;
                            }
                            MergeOp::MapMin if !less(&entry.0, &current.0) => {}
                            MergeOp::MapMax if !less(&current.0, &entry.0) => {}
                            MergeOp::MapMin | MergeOp::MapMax => *current = entry,
                            MergeOp::Sum => {
                                *current = (add(&current.0, &entry.0), current.1.max(entry.1))
                            }
                            _ => {
                                if newer(current, &entry) {
                                    *current = entry;
                                }
                            }
                        },
                    }
                }
                if spec.op == MergeOp::Capped && mine.len() > CAPPED_SET_SIZE {
                    let mut by_age: Vec<(Micros, String)> =
                        mine.iter().map(|(k, (_, t))| (*t, k.clone())).collect();
                    by_age.sort();
                    for (_, k) in by_age.into_iter().take(mine.len() - CAPPED_SET_SIZE) {
                        mine.remove(&k);
                    }
                }
            }
            // The field changed shape (its query changed): the newer shape wins.
            (me, other) => *me = other,
        }
    }

    /// The value a user sees.
    pub fn value(&self, spec: Option<FieldSpec>) -> Value {
        match self {
            FieldState::Scalar { value, .. } => value.clone(),
            FieldState::Keyed(entries) => {
                let kind = spec.map(|s| s.kind);
                // Without a spec (the query is gone), a set is recognised by its keys being
                // the elements' own text.
                let is_map = match kind {
                    Some(k) => k.is_map(),
                    None => entries.iter().any(|(k, (v, _))| *k != text(v)),
                };
                if is_map {
                    Value::Map(
                        entries
                            .iter()
                            .map(|(k, (v, _))| (k.clone(), v.clone()))
                            .collect(),
                    )
                } else if kind == Some(Kind::TimeOrderedStrings) {
                    let mut items: Vec<&(Value, Micros)> = entries.values().collect();
                    items.sort_by_key(|a| (a.1, text(&a.0)));
                    Value::Array(items.into_iter().map(|(v, _)| v.clone()).collect())
                } else {
                    Value::Array(entries.values().map(|(v, _)| v.clone()).collect())
                }
            }
        }
    }
}

/// A stored profile state that cannot be read (damaged, or written by a newer Tributary).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("profile state is not valid: {0}")]
    Invalid(#[from] serde_json::Error),
}

/// A merged profile.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProfileState {
    pub fields: BTreeMap<String, FieldState>,
    /// Identity field → values linked to this profile.
    pub identities: BTreeMap<String, BTreeSet<String>>,
    pub first_seen: Micros,
    pub last_seen: Micros,
    pub events: i64,
    /// The audiences the profile was in when last evaluated (slugs).
    pub segments: BTreeSet<String>,
    /// The newest audience definition (its `updated_at`) that `segments` took into account.
    /// An audience defined or changed later was computed without updating this record.
    pub segments_version: Micros,
}

impl ProfileState {
    pub fn absorb(&mut self, other: ProfileState, spec_of: &dyn Fn(&str) -> FieldSpec) {
        for (name, state) in other.fields {
            match self.fields.get_mut(&name) {
                Some(mine) => mine.combine(state, spec_of(&name)),
                None => {
                    self.fields.insert(name, state);
                }
            }
        }
        for (field, values) in other.identities {
            self.identities.entry(field).or_default().extend(values);
        }
        self.first_seen = if self.events == 0 {
            other.first_seen
        } else {
            self.first_seen.min(other.first_seen)
        };
        self.last_seen = self.last_seen.max(other.last_seen);
        self.events += other.events;
    }

    /// The stored form, written directly (no intermediate JSON tree: this runs for every
    /// profile a batch touches).
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(256 + self.fields.len() * 48);
        out.push_str("{\"f\":{");
        for (i, (name, f)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(&mut out, name);
            match f {
                FieldState::Scalar { value, at } => {
                    out.push_str(":{\"v\":");
                    write_tagged(&mut out, value);
                    out.push_str(",\"t\":");
                    push_int(&mut out, *at);
                    out.push('}');
                }
                FieldState::Keyed(entries) => {
                    out.push_str(":{\"k\":{");
                    for (j, (k, (v, t))) in entries.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        write_str(&mut out, k);
                        out.push_str(":[");
                        write_tagged(&mut out, v);
                        out.push(',');
                        push_int(&mut out, *t);
                        out.push(']');
                    }
                    out.push_str("}}");
                }
            }
        }
        out.push_str("},\"i\":{");
        for (i, (field, values)) in self.identities.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(&mut out, field);
            out.push_str(":[");
            for (j, v) in values.iter().enumerate() {
                if j > 0 {
                    out.push(',');
                }
                write_str(&mut out, v);
            }
            out.push(']');
        }
        out.push_str("},\"s\":[");
        for (i, slug) in self.segments.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_str(&mut out, slug);
        }
        out.push_str(&format!(
            "],\"sv\":{},\"fs\":{},\"ls\":{},\"n\":{}}}",
            self.segments_version, self.first_seen, self.last_seen, self.events
        ));
        out
    }

    /// Parses the stored form in one pass (no intermediate JSON tree: profiles are loaded by
    /// every batch and every audience recompute).
    pub fn from_json(text: &str) -> Result<ProfileState, StateError> {
        let wire: wire::State = serde_json::from_str(text)?;
        let fields = wire
            .f
            .into_iter()
            .map(|(name, f)| {
                let state = match f.k {
                    Some(entries) => FieldState::Keyed(
                        entries
                            .into_iter()
                            .map(|(k, (v, t))| (k, (v.0, t)))
                            .collect(),
                    ),
                    None => FieldState::Scalar {
                        value: f.v.map_or(Value::Null, |v| v.0),
                        at: f.t,
                    },
                };
                (name, state)
            })
            .collect();
        Ok(ProfileState {
            fields,
            identities: wire.i,
            first_seen: wire.fs,
            last_seen: wire.ls,
            events: wire.n,
            segments: wire.s,
            segments_version: wire.sv,
        })
    }
}

/// The stored form, as serde reads it.
mod wire {
    use std::collections::{BTreeMap, BTreeSet};

    use serde::Deserialize;
    pub use tributary_query::value::TimeTagged as Tagged;

    #[derive(Deserialize)]
    pub struct State {
        #[serde(default)]
        pub f: BTreeMap<String, Field>,
        #[serde(default)]
        pub i: BTreeMap<String, BTreeSet<String>>,
        #[serde(default)]
        pub s: BTreeSet<String>,
        #[serde(default)]
        pub sv: i64,
        #[serde(default)]
        pub fs: i64,
        #[serde(default)]
        pub ls: i64,
        #[serde(default)]
        pub n: i64,
    }

    #[derive(Deserialize)]
    pub struct Field {
        #[serde(default)]
        pub v: Option<Tagged>,
        #[serde(default)]
        pub t: i64,
        #[serde(default)]
        pub k: Option<BTreeMap<String, (Tagged, i64)>>,
    }
}

fn push_int(out: &mut String, i: i64) {
    use std::fmt::Write;
    let _ = write!(out, "{i}");
}

fn write_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

/// JSON that keeps times as times (`{"$t": micros}`).
fn write_tagged(out: &mut String, v: &Value) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => push_int(out, *i),
        Value::Number(n) if n.is_finite() => out.push_str(&format!("{n:?}")),
        Value::Number(_) => out.push_str("null"),
        Value::String(s) => write_str(out, s),
        Value::Time(t) => out.push_str(&format!(
            "{{\"{TIME_TAG}\":{}}}",
            tributary_core::to_micros(*t)
        )),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_tagged(out, item);
            }
            out.push(']');
        }
        Value::Map(m) => {
            out.push('{');
            for (i, (k, item)) in m.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, k);
                out.push(':');
                write_tagged(out, item);
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use tributary_query::Value;

    use super::{FieldState, ProfileState};

    #[test]
    fn stored_form_round_trips() {
        let when = tributary_core::from_micros(1_700_000_000_123_456);
        let mut state = ProfileState {
            first_seen: 5,
            last_seen: 9,
            events: 3,
            segments: BTreeSet::from(["vip".to_string(), "new \"one\"".to_string()]),
            segments_version: 77,
            ..ProfileState::default()
        };
        state.fields.insert(
            "seen".into(),
            FieldState::Scalar {
                value: Value::Time(when),
                at: 4,
            },
        );
        state.fields.insert(
            "nested".into(),
            FieldState::Scalar {
                value: Value::Map(BTreeMap::from([
                    ("t".to_string(), Value::Time(when)),
                    (
                        "list".to_string(),
                        Value::Array(vec![Value::Null, Value::Number(1.5)]),
                    ),
                    ("$t".to_string(), Value::String("not a time".into())),
                ])),
                at: 6,
            },
        );
        state.fields.insert(
            "gone".into(),
            FieldState::Scalar {
                value: Value::Null,
                at: 1,
            },
        );
        state.fields.insert(
            "tags".into(),
            FieldState::Keyed(BTreeMap::from([
                ("a\\nb".to_string(), (Value::String("a\nb".into()), 2)),
                ("big".to_string(), (Value::Int(i64::MAX), 3)),
            ])),
        );
        state
            .identities
            .insert("email".into(), BTreeSet::from(["x@y.io".to_string()]));
        let parsed = ProfileState::from_json(&state.to_json()).unwrap();
        assert_eq!(parsed, state);
        assert!(ProfileState::from_json("{\"f\": 3}").is_err());
        assert_eq!(
            ProfileState::from_json("{}").unwrap(),
            ProfileState::default()
        );
    }
}
