//! Logic, math, casts, maps and arrays.

use std::collections::BTreeMap;

use super::{FnCtx, text};
use crate::ast::CmpOp;
use crate::eval::{compare_values, glob_match, loose_eq};
use crate::value::Value;

type Args<'a> = &'a [Value];

pub fn first_arg(a: Args, _: &FnCtx) -> Option<Value> {
    a.first().filter(|v| !v.is_null()).cloned()
}

pub fn first_or_one(a: Args, _: &FnCtx) -> Option<Value> {
    match a.first() {
        None => Some(Value::Int(1)),
        Some(Value::Null) => None,
        Some(_) => Some(Value::Int(1)),
    }
}

pub fn first_numeric(a: Args, _: &FnCtx) -> Option<Value> {
    numeric(a.first()?)
}

fn numeric(v: &Value) -> Option<Value> {
    match v {
        Value::Int(i) => Some(Value::Int(*i)),
        Value::Number(n) => Some(Value::Number(*n)),
        other => other.as_f64().map(|f| {
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                Value::Int(f as i64)
            } else {
                Value::Number(f)
            }
        }),
    }
}

/// The values of one event for a `set()`: arrays are spread, nulls dropped.
pub fn set(a: Args, _: &FnCtx) -> Option<Value> {
    let mut out: Vec<Value> = Vec::new();
    for v in a {
        match v {
            Value::Null => {}
            Value::Array(items) => out.extend(
                items
                    .iter()
                    .filter(|i| !i.is_null())
                    .map(|i| Value::String(i.to_text())),
            ),
            other => out.push(Value::String(other.to_text())),
        }
    }
    out.dedup();
    (!out.is_empty()).then_some(Value::Array(out))
}

pub fn valuect(a: Args, _: &FnCtx) -> Option<Value> {
    let mut m = BTreeMap::new();
    match a.first()? {
        Value::Null => return None,
        Value::Array(items) => {
            for i in items {
                *counter(&mut m, i.to_text()) += 1;
            }
        }
        other => *counter(&mut m, other.to_text()) += 1,
    }
    Some(Value::Map(
        m.into_iter().map(|(k, v)| (k, Value::Int(v))).collect(),
    ))
}

fn counter(m: &mut BTreeMap<String, i64>, k: String) -> &mut i64 {
    m.entry(k).or_insert(0)
}

pub fn map(a: Args, _: &FnCtx) -> Option<Value> {
    let key = text(a.first()?)?;
    let value = a.get(1)?.clone();
    if value.is_null() {
        return None;
    }
    Some(Value::Map(BTreeMap::from([(key, value)])))
}

pub fn exists(a: Args, _: &FnCtx) -> Option<Value> {
    Some(Value::Bool(!a.first()?.is_null()))
}

pub fn all(a: Args, _: &FnCtx) -> Option<Value> {
    Some(Value::Bool(a.iter().all(|v| {
        !v.is_null() && !matches!(v, Value::String(s) if s.is_empty())
    })))
}

pub fn any(a: Args, _: &FnCtx) -> Option<Value> {
    let (first, rest) = a.split_first()?;
    Some(Value::Bool(rest.iter().any(|v| loose_eq(first, v))))
}

fn cmp(a: Args, op: CmpOp) -> Option<Value> {
    compare_values(a.first()?, a.get(1)?, op).map(Value::Bool)
}

pub fn eq(a: Args, _: &FnCtx) -> Option<Value> {
    cmp(a, CmpOp::Eq)
}
pub fn ne(a: Args, _: &FnCtx) -> Option<Value> {
    cmp(a, CmpOp::Ne)
}
pub fn gt(a: Args, _: &FnCtx) -> Option<Value> {
    cmp(a, CmpOp::Gt)
}
pub fn ge(a: Args, _: &FnCtx) -> Option<Value> {
    cmp(a, CmpOp::Ge)
}
pub fn lt(a: Args, _: &FnCtx) -> Option<Value> {
    cmp(a, CmpOp::Lt)
}
pub fn le(a: Args, _: &FnCtx) -> Option<Value> {
    cmp(a, CmpOp::Le)
}

pub fn not(a: Args, _: &FnCtx) -> Option<Value> {
    Some(Value::Bool(!a.first()?.as_bool()?))
}

pub fn or(a: Args, _: &FnCtx) -> Option<Value> {
    Some(Value::Bool(a.iter().any(|v| v.as_bool() == Some(true))))
}

pub fn and(a: Args, _: &FnCtx) -> Option<Value> {
    let bools: Option<Vec<bool>> = a.iter().map(Value::as_bool).collect();
    Some(Value::Bool(bools?.into_iter().all(|b| b)))
}

pub fn oneof(a: Args, _: &FnCtx) -> Option<Value> {
    a.iter()
        .find(|v| !v.is_null() && !matches!(v, Value::String(s) if s.is_empty()))
        .cloned()
}

pub fn sqrt(a: Args, _: &FnCtx) -> Option<Value> {
    let f = a.first()?.as_f64()?;
    (f >= 0.0).then(|| Value::Number(f.sqrt()))
}

pub fn pow(a: Args, _: &FnCtx) -> Option<Value> {
    let r = a.first()?.as_f64()?.powf(a.get(1)?.as_f64()?);
    r.is_finite().then_some(Value::Number(r))
}

pub fn toint(a: Args, _: &FnCtx) -> Option<Value> {
    match a.first()? {
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .filter_map(|i| i.as_i64().map(Value::Int))
                .collect(),
        )),
        Value::String(s) => {
            let cleaned: String = s.trim().trim_start_matches('$').replace(',', "");
            Value::String(cleaned).as_i64().map(Value::Int)
        }
        other => other.as_i64().map(Value::Int),
    }
}

pub fn tonumber(a: Args, _: &FnCtx) -> Option<Value> {
    a.first()?.as_f64().map(Value::Number)
}

pub fn tobool(a: Args, _: &FnCtx) -> Option<Value> {
    a.first()?.as_bool().map(Value::Bool)
}

pub fn unsign(a: Args, _: &FnCtx) -> Option<Value> {
    match a.first()? {
        Value::Int(i) => Some(Value::Int(i.checked_abs()?)),
        other => other.as_f64().map(|f| Value::Number(f.abs())),
    }
}

pub fn cast(a: Args, ctx: &FnCtx) -> Option<Value> {
    let kind = text(a.get(1)?)?.to_ascii_lowercase();
    let arg = &a[..1];
    match kind.as_str() {
        "int" | "int64" | "integer" => toint(arg, ctx),
        "number" | "float" | "float64" => tonumber(arg, ctx),
        "bool" | "boolean" => tobool(arg, ctx),
        "string" => text(&a[0]).map(Value::String),
        "date" | "time" => super::dates::todate(arg, ctx),
        _ => None,
    }
}

/// `match("user.")`: every field whose name starts with a prefix, prefix removed.
pub fn match_prefix(a: Args, ctx: &FnCtx) -> Option<Value> {
    let fields = ctx.fields?;
    let mut out = BTreeMap::new();
    for prefix in a.iter().filter_map(text) {
        fields.for_each(&mut |name, value| {
            if let Some(rest) = name.strip_prefix(prefix.as_str())
                && !rest.is_empty()
                && !value.is_null()
            {
                out.insert(rest.to_string(), value.clone());
            }
        });
    }
    (!out.is_empty()).then_some(Value::Map(out))
}

/// `unmapped()` (a Tributary extension): the event's fields that no column of the LQL query
/// reads, as a map, so unknown columns of a file are kept instead of dropped.
pub fn unmapped(_: Args, ctx: &FnCtx) -> Option<Value> {
    let (fields, known) = (ctx.fields?, ctx.mapped_fields?);
    let mut out = BTreeMap::new();
    fields.for_each(&mut |name, value| {
        if !known.contains(name) && !value.is_null() {
            out.insert(name.to_string(), value.clone());
        }
    });
    (!out.is_empty()).then_some(Value::Map(out))
}

pub fn mapkeys(a: Args, _: &FnCtx) -> Option<Value> {
    match a.first()? {
        Value::Map(m) => Some(Value::Array(m.keys().cloned().map(Value::String).collect())),
        _ => None,
    }
}

pub fn mapvalues(a: Args, _: &FnCtx) -> Option<Value> {
    match a.first()? {
        Value::Map(m) => Some(Value::Array(m.values().cloned().collect())),
        _ => None,
    }
}

pub fn mapinvert(a: Args, _: &FnCtx) -> Option<Value> {
    match a.first()? {
        Value::Map(m) => Some(Value::Map(
            m.iter()
                .map(|(k, v)| (v.to_text(), Value::String(k.clone())))
                .collect(),
        )),
        _ => None,
    }
}

fn filter_items(a: Args, keep_matching: bool) -> Option<Value> {
    // Plain names (the common case) are looked up exactly; only real patterns are globbed.
    let (exact, globs): (Vec<String>, Vec<String>) = a[1..]
        .iter()
        .filter_map(text)
        .partition(|p| !p.contains(['*', '?']));
    let exact: std::collections::HashSet<String> = exact.into_iter().collect();
    let matches = |s: &str| exact.contains(s) || globs.iter().any(|p| glob_match(p, s));
    match a.first()? {
        Value::Array(items) => Some(Value::Array(
            items
                .iter()
                .filter(|i| matches(&i.to_text()) == keep_matching)
                .cloned()
                .collect(),
        )),
        Value::Map(m) => Some(Value::Map(
            m.iter()
                .filter(|(k, _)| matches(k) == keep_matching)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        )),
        Value::Null => None,
        other => {
            let s = other.to_text();
            (matches(&s) == keep_matching).then_some(Value::String(s))
        }
    }
}

/// `filter(list, "ora*")`: drops the items that match.
pub fn filter_out(a: Args, _: &FnCtx) -> Option<Value> {
    filter_items(a, false)
}

/// `filtermatch(list, "ora*")`: keeps only the items that match.
pub fn filter_match(a: Args, _: &FnCtx) -> Option<Value> {
    filter_items(a, true)
}

fn index_of(len: usize, i: i64) -> Option<usize> {
    let idx = if i < 0 { len as i64 + i } else { i };
    (0..len as i64).contains(&idx).then_some(idx as usize)
}

pub fn array_index(a: Args, _: &FnCtx) -> Option<Value> {
    let Value::Array(items) = a.first()? else {
        return None;
    };
    items
        .get(index_of(items.len(), a.get(1)?.as_i64()?)?)
        .cloned()
}

pub fn array_slice(a: Args, _: &FnCtx) -> Option<Value> {
    let Value::Array(items) = a.first()? else {
        return None;
    };
    let len = items.len() as i64;
    let clamp = |i: i64| (if i < 0 { len + i } else { i }).clamp(0, len) as usize;
    let start = clamp(a.get(1)?.as_i64()?);
    let end = match a.get(2) {
        Some(v) => clamp(v.as_i64()?),
        None => items.len(),
    };
    Some(Value::Array(if start < end {
        items[start..end].to_vec()
    } else {
        Vec::new()
    }))
}

/// `V IF cond ELSE W`, as the parser writes it: `ifelse(cond, V, W)`.
pub fn ifelse(a: Args, _: &FnCtx) -> Option<Value> {
    let chosen = if a.first()?.as_bool() == Some(true) {
        a.get(1)?
    } else {
        a.get(2)?
    };
    (!chosen.is_null()).then(|| chosen.clone())
}

/// `ifcase(V1 IF c1, V2 IF c2, ..., default)`, as the parser writes it:
/// `ifcase(c1, V1, c2, V2, ..., default)`.
pub fn ifcase(a: Args, _: &FnCtx) -> Option<Value> {
    let mut pairs = a.chunks_exact(2);
    for pair in pairs.by_ref() {
        if pair[0].as_bool() == Some(true) {
            return (!pair[1].is_null()).then(|| pair[1].clone());
        }
    }
    pairs.remainder().first().filter(|v| !v.is_null()).cloned()
}
