//! LQL mapping plans. An LQL statement compiles into one [`FieldMapping`] per column: where the
//! value comes from, its guard, KIND and MERGEOP (with the defaults below) and whether it is an
//! identity (BY) field. [`MappingPlan::apply`] turns one event into identity keys and field
//! updates; combining updates into a profile (by MERGEOP, judged by event time) is the engine's.
//!
//! Defaults when a column names none: `count()` counts, `sum()` sums, `min()`/`max()` keep the
//! extreme, `set()` unions, `valuect()` sums per key, `map()`/`match()` merge per key, and every
//! other column keeps the latest value.

use serde::Serialize;
use time::OffsetDateTime;

use crate::ast::{Expr, Kind, LqlStatement, MergeOp};
use crate::eval::{EvalContext, Fields, evaluate_value, matches};
use crate::value::Value;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldMapping {
    pub name: String,
    #[serde(serialize_with = "as_text")]
    pub expr: Expr,
    #[serde(serialize_with = "opt_as_text")]
    pub guard: Option<Expr>,
    pub kind: Kind,
    pub merge_op: MergeOp,
    pub is_identity: bool,
    pub short_desc: Option<String>,
    pub long_desc: Option<String>,
}

fn as_text<S: serde::Serializer>(e: &Expr, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&e.to_string())
}

fn opt_as_text<S: serde::Serializer>(e: &Option<Expr>, s: S) -> Result<S::Ok, S::Error> {
    match e {
        Some(e) => s.serialize_str(&e.to_string()),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MappingPlan {
    /// Top-level event fields the columns, guards and WHERE read (what `unmapped()` leaves out).
    #[serde(skip)]
    pub source_fields: std::collections::HashSet<String>,
    pub alias: String,
    pub stream: String,
    pub table: String,
    /// BY fields, in their order of preference.
    pub identity_fields: Vec<String>,
    #[serde(serialize_with = "opt_as_text")]
    pub filter: Option<Expr>,
    pub fields: Vec<FieldMapping>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PlanError(pub String);

/// What one event contributes: identity keys and field values (already of their KIND).
#[derive(Debug, Clone, PartialEq)]
pub struct MappedEvent {
    pub identities: Vec<(String, String)>,
    /// `(index into plan.fields, value)`.
    pub updates: Vec<(usize, Value)>,
}

fn aggregate_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Call(name, _) if crate::functions::signature(name).is_some_and(|s| s.aggregate) => {
            Some(name.as_str())
        }
        _ => None,
    }
}

fn default_merge(e: &Expr) -> MergeOp {
    match aggregate_name(e) {
        Some("count") => MergeOp::Count,
        Some("sum" | "valuect") => MergeOp::Sum,
        Some("min") => MergeOp::Min,
        Some("max") => MergeOp::Max,
        Some("set" | "timebucket") => MergeOp::Union,
        Some("map") => MergeOp::Merge,
        _ if matches!(e, Expr::Call(n, _) if n == "match") => MergeOp::Merge,
        _ => MergeOp::Latest,
    }
}

fn inferred_kind(e: &Expr) -> Kind {
    match e {
        Expr::Call(name, _) => match name.as_str() {
            "count" | "toint" | "len" | "yy" | "mm" | "monthofyear" | "dayofweek" | "hourofday"
            | "hourofweek" | "totimestamp" | "epochms" | "hash.sip" | "hash" | "daysago"
            | "seconds" => Kind::Int,
            "sum" | "avg" | "tonumber" | "sqrt" | "pow" => Kind::Number,
            "tobool" | "exists" | "contains" | "hasprefix" | "hassuffix" | "eq" | "ne" | "gt"
            | "ge" | "lt" | "le" | "not" | "all" | "any" | "or" | "and" => Kind::Bool,
            "todate" | "todatein" | "now" => Kind::Date,
            "set" | "split" | "string.split" | "mapkeys" | "domains" | "hosts" => Kind::StringList,
            "timebucket" => Kind::TimeList,
            "valuect" => Kind::MapInt,
            "maptime" => Kind::MapTime,
            "map" | "useragent.map" => Kind::MapValue,
            "match" | "mapinvert" => Kind::MapString,
            _ => Kind::String,
        },
        Expr::Arith(..) => Kind::Number,
        Expr::Compare(..)
        | Expr::And(_)
        | Expr::Or(_)
        | Expr::Not(_)
        | Expr::In(..)
        | Expr::Exists(_) => Kind::Bool,
        _ => Kind::String,
    }
}

fn check_merge(name: &str, kind: Kind, op: MergeOp) -> Result<(), PlanError> {
    let list = matches!(
        kind,
        Kind::StringList | Kind::TimeList | Kind::TimeOrderedStrings
    );
    let ok = match op {
        MergeOp::Latest | MergeOp::Oldest => true,
        MergeOp::Min | MergeOp::Max => {
            matches!(kind, Kind::Int | Kind::Number | Kind::Date | Kind::String)
        }
        MergeOp::Sum => {
            matches!(kind, Kind::Int | Kind::Number)
                || matches!(kind, Kind::MapInt | Kind::MapNumber)
        }
        MergeOp::Count => matches!(kind, Kind::Int | Kind::Number),
        MergeOp::Union | MergeOp::Capped => list,
        MergeOp::LatestMap
        | MergeOp::OldestMap
        | MergeOp::Merge
        | MergeOp::MapMin
        | MergeOp::MapMax => kind.is_map(),
    };
    if ok {
        Ok(())
    } else {
        Err(PlanError(format!(
            "column {name}: MERGEOP {} does not apply to KIND {}",
            op.as_str(),
            kind.as_str()
        )))
    }
}

pub fn compile(st: &LqlStatement) -> Result<MappingPlan, PlanError> {
    if !st.into.eq_ignore_ascii_case("user") {
        return Err(PlanError(format!(
            "INTO {}: only the user table exists",
            st.into
        )));
    }
    let mut fields: Vec<FieldMapping> = Vec::with_capacity(st.columns.len());
    for c in &st.columns {
        let name = c.name();
        if fields.iter().any(|f| f.name == name) {
            return Err(PlanError(format!(
                "column {name} is defined twice; give one of them another name with AS"
            )));
        }
        let kind = c.kind.unwrap_or_else(|| inferred_kind(&c.expr));
        let merge_op = c.merge_op.unwrap_or_else(|| default_merge(&c.expr));
        check_merge(&name, kind, merge_op)?;
        fields.push(FieldMapping {
            is_identity: st.by.contains(&name),
            name,
            expr: c.expr.clone(),
            guard: c.guard.clone(),
            kind,
            merge_op,
            short_desc: c.short_desc.clone(),
            long_desc: c.long_desc.clone(),
        });
    }
    for by in &st.by {
        if !fields.iter().any(|f| &f.name == by) {
            return Err(PlanError(format!(
                "BY {by}: no column produces a field named {by}"
            )));
        }
    }
    let mut source_fields = std::collections::HashSet::new();
    for c in &st.columns {
        collect_fields(&c.expr, &mut source_fields);
        if let Some(g) = &c.guard {
            collect_fields(g, &mut source_fields);
        }
    }
    if let Some(w) = &st.filter {
        collect_fields(w, &mut source_fields);
    }
    Ok(MappingPlan {
        source_fields,
        alias: st.alias.clone(),
        stream: st.from.clone(),
        table: "user".into(),
        identity_fields: st.by.clone(),
        filter: st.filter.clone(),
        fields,
    })
}

impl MappingPlan {
    /// Maps one event; `None` when WHERE drops it. `now()` and date math use the event time.
    pub fn apply(&self, event: &dyn Fields, event_time: OffsetDateTime) -> Option<MappedEvent> {
        let ctx = EvalContext {
            mapped_fields: Some(&self.source_fields),
            ..EvalContext::at(event_time)
        };
        if let Some(f) = &self.filter
            && !matches(f, event, &ctx)
        {
            return None;
        }
        let mut out = MappedEvent {
            identities: Vec::new(),
            updates: Vec::with_capacity(self.fields.len()),
        };
        for (i, field) in self.fields.iter().enumerate() {
            if let Some(g) = &field.guard
                && !matches(g, event, &ctx)
            {
                continue;
            }
            let Some(raw) = evaluate_value(&field.expr, event, &ctx) else {
                continue;
            };
            let Some(value) = coerce(raw, field.kind) else {
                continue;
            };
            if field.is_identity {
                let key = value.to_text();
                if !key.is_empty() {
                    out.identities.push((field.name.clone(), key));
                }
            }
            out.updates.push((i, value));
        }
        Some(out)
    }
}

/// Converts a value to a KIND; `None` when it cannot be one.
pub fn coerce(v: Value, kind: Kind) -> Option<Value> {
    match kind {
        Kind::Int => v.as_i64().map(Value::Int),
        Kind::Number => v.as_f64().map(Value::Number),
        Kind::Bool => v.as_bool().map(Value::Bool),
        Kind::Date => v.as_time().map(Value::Time),
        Kind::String => match v {
            Value::String(s) if s.is_empty() => None,
            Value::String(s) => Some(Value::String(s)),
            Value::Array(_) | Value::Map(_) | Value::Null => None,
            other => Some(Value::String(other.to_text())),
        },
        Kind::StringList | Kind::TimeOrderedStrings => Some(Value::Array(match v {
            Value::Array(items) => items
                .into_iter()
                .filter(|i| !i.is_null())
                .map(|i| Value::String(i.to_text()))
                .collect(),
            Value::Null => return None,
            other => vec![Value::String(other.to_text())],
        })),
        Kind::TimeList => Some(Value::Array(match v {
            Value::Array(items) => items
                .iter()
                .filter_map(Value::as_time)
                .map(Value::Time)
                .collect(),
            other => vec![Value::Time(other.as_time()?)],
        })),
        Kind::MapInt
        | Kind::MapNumber
        | Kind::MapString
        | Kind::MapTime
        | Kind::MapBool
        | Kind::MapValue => {
            let Value::Map(m) = v else { return None };
            let element = match kind {
                Kind::MapInt => Some(Kind::Int),
                Kind::MapNumber => Some(Kind::Number),
                Kind::MapString => Some(Kind::String),
                Kind::MapTime => Some(Kind::Date),
                Kind::MapBool => Some(Kind::Bool),
                _ => None,
            };
            Some(Value::Map(
                m.into_iter()
                    .filter_map(|(k, v)| match element {
                        Some(kind) => coerce(v, kind).map(|v| (k, v)),
                        None => Some((k, v)),
                    })
                    .collect(),
            ))
        }
    }
}

/// The top-level event fields an expression reads.
fn collect_fields(e: &Expr, out: &mut std::collections::HashSet<String>) {
    use crate::ast::ListSource;
    let mut add = |path: &[String]| {
        if let Some(first) = path.first() {
            out.insert(first.clone());
            out.insert(path.join("."));
        }
    };
    match e {
        Expr::Field(p) | Expr::Exists(p) => add(p),
        Expr::In(a, ListSource::Field(p)) | Expr::Intersects(a, ListSource::Field(p)) => {
            add(p);
            collect_fields(a, out);
        }
        Expr::In(a, ListSource::Items(items)) | Expr::Intersects(a, ListSource::Items(items)) => {
            collect_fields(a, out);
            items.iter().for_each(|i| collect_fields(i, out));
        }
        Expr::And(items) | Expr::Or(items) | Expr::Call(_, items) => {
            items.iter().for_each(|i| collect_fields(i, out))
        }
        Expr::Not(x) => collect_fields(x, out),
        Expr::Compare(_, a, b) | Expr::Arith(_, a, b) | Expr::Contains(a, b) | Expr::Like(a, b) => {
            collect_fields(a, out);
            collect_fields(b, out);
        }
        Expr::Between(a, b, c) => {
            collect_fields(a, out);
            collect_fields(b, out);
            collect_fields(c, out);
        }
        Expr::Literal(_) | Expr::Include(_) | Expr::MatchAll => {}
    }
}
