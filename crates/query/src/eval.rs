//! The evaluator, with qlbridge's FilterQL semantics (reference §2.3):
//! - a statement matches only when its filter is `true` and evaluable;
//! - a missing field makes `!=` true and every other predicate false (but evaluable);
//! - AND fails as a whole when a child is not evaluable; OR skips such children;
//! - NOT of a non-evaluable child is not evaluable, except `NOT INCLUDE x` (true);
//! - strings compare case-sensitively, coerce to numbers against numbers, and to dates against
//!   dates (a date literal, date math, or a date field);
//! - BETWEEN is exclusive at both ends.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use time::OffsetDateTime;

use crate::ast::{ArithOp, CmpOp, Expr, FilterStatement, ListSource, Literal};
use crate::functions::{self, FnCtx};
use crate::value::Value;

/// A record the evaluator reads: a profile, an event, a JSON entity.
pub trait Fields {
    /// The value at a path (`["user", "city"]`); `None` when absent.
    fn get(&self, path: &[String]) -> Option<Cow<'_, Value>>;
    /// Every top-level field (for `match("prefix.")`).
    fn for_each(&self, f: &mut dyn FnMut(&str, &Value));
}

fn lookup_in<'a>(map: &'a BTreeMap<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    match map.get(first) {
        Some(v) if rest.is_empty() => Some(v),
        Some(Value::Map(inner)) => lookup_in(inner, rest),
        // A flat field whose name has dots: `user.city` stored as one key.
        _ if !rest.is_empty() => map.get(&path.join(".")),
        _ => None,
    }
}

impl Fields for BTreeMap<String, Value> {
    fn get(&self, path: &[String]) -> Option<Cow<'_, Value>> {
        lookup_in(self, path).map(Cow::Borrowed)
    }
    fn for_each(&self, f: &mut dyn FnMut(&str, &Value)) {
        for (k, v) in self {
            f(k, v);
        }
    }
}

/// Any hasher: profiles use `rustc_hash::FxHashMap` (see [`Profile`]).
impl<S: std::hash::BuildHasher> Fields for HashMap<String, Value, S> {
    fn get(&self, path: &[String]) -> Option<Cow<'_, Value>> {
        let (first, rest) = path.split_first()?;
        match self.get(first.as_str()) {
            Some(v) if rest.is_empty() => Some(Cow::Borrowed(v)),
            Some(Value::Map(inner)) => lookup_in(inner, rest).map(Cow::Borrowed),
            _ if !rest.is_empty() => self.get(path.join(".").as_str()).map(Cow::Borrowed),
            _ => None,
        }
    }
    fn for_each(&self, f: &mut dyn FnMut(&str, &Value)) {
        for (k, v) in self {
            f(k, v);
        }
    }
}

impl Fields for serde_json::Map<String, serde_json::Value> {
    fn get(&self, path: &[String]) -> Option<Cow<'_, Value>> {
        let (first, rest) = path.split_first()?;
        let mut v = serde_json::Map::get(self, first);
        for p in rest {
            v = v.and_then(|x| x.get(p));
        }
        if v.is_none() && !rest.is_empty() {
            v = serde_json::Map::get(self, &path.join("."));
        }
        v.map(|x| Cow::Owned(Value::from_json(x)))
    }
    fn for_each(&self, f: &mut dyn FnMut(&str, &Value)) {
        for (k, v) in self {
            f(k, &Value::from_json(v));
        }
    }
}

/// A profile's fields: a hash map with a fast, non-cryptographic hasher (field names are not
/// attacker-chosen keys of a long-lived table, and lookups dominate filter evaluation).
pub type Profile = rustc_hash::FxHashMap<String, Value>;

/// Resolves `INCLUDE name` to another audience's statement.
pub trait Includer {
    fn include(&self, name: &str) -> Option<&FilterStatement>;
}

impl Includer for HashMap<String, FilterStatement> {
    fn include(&self, name: &str) -> Option<&FilterStatement> {
        self.get(name)
    }
}

pub struct EvalContext<'a> {
    pub now: OffsetDateTime,
    pub includes: Option<&'a dyn Includer>,
    /// In an LQL mapping: the source fields its columns read (for `unmapped()`).
    pub mapped_fields: Option<&'a std::collections::HashSet<String>>,
}

impl<'a> EvalContext<'a> {
    pub fn at(now: OffsetDateTime) -> Self {
        EvalContext {
            now,
            includes: None,
            mapped_fields: None,
        }
    }

    pub fn with_includes(now: OffsetDateTime, includes: &'a dyn Includer) -> Self {
        EvalContext {
            includes: Some(includes),
            ..EvalContext::at(now)
        }
    }
}

/// Not evaluable: a type error, an unknown include, a cycle, a function without a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotOk;

enum Val<'a> {
    Missing,
    Some(Cow<'a, Value>),
}

/// The most INCLUDE hops an evaluation follows (`a` including `b` including `c` is two); a
/// deeper chain does not evaluate, so audiences are refused at save beyond it.
pub const MAX_INCLUDE_DEPTH: usize = 32;

struct Eval<'a, 'c> {
    fields: &'a dyn Fields,
    ctx: &'c EvalContext<'c>,
    include_stack: Vec<String>,
}

/// Whether `filter` matches `fields`: true only when it evaluates to true.
pub fn matches(filter: &Expr, fields: &dyn Fields, ctx: &EvalContext<'_>) -> bool {
    evaluate_bool(filter, fields, ctx) == Ok(true)
}

/// The filter's boolean result, or `NotOk`.
pub fn evaluate_bool(
    filter: &Expr,
    fields: &dyn Fields,
    ctx: &EvalContext<'_>,
) -> Result<bool, NotOk> {
    Eval {
        fields,
        ctx,
        include_stack: Vec::new(),
    }
    .boolean(filter)
}

/// The value of an expression (LQL columns), `None` when missing or not evaluable.
pub fn evaluate_value(expr: &Expr, fields: &dyn Fields, ctx: &EvalContext<'_>) -> Option<Value> {
    match (Eval {
        fields,
        ctx,
        include_stack: Vec::new(),
    })
    .value(expr)
    {
        Ok(Val::Some(v)) => Some(v.into_owned()),
        _ => None,
    }
}

impl<'a> Eval<'a, '_> {
    fn boolean(&mut self, e: &Expr) -> Result<bool, NotOk> {
        match e {
            Expr::MatchAll => Ok(true),
            Expr::And(items) => {
                for item in items {
                    if !self.boolean(item)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Expr::Or(items) => {
                for item in items {
                    if self.boolean(item) == Ok(true) {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Expr::Not(inner) => match (self.boolean(inner), inner.as_ref()) {
                (Err(NotOk), Expr::Include(_)) => Ok(true),
                (r, _) => r.map(|b| !b),
            },
            // The common shape, `field OP literal`, compares against the literal in place.
            Expr::Compare(op, l, r) if matches!(r.as_ref(), Expr::Literal(Literal::Value(v)) if !v.is_null()) =>
            {
                let Expr::Literal(Literal::Value(b)) = r.as_ref() else {
                    return Err(NotOk);
                };
                match self.value(l)? {
                    Val::Missing => Ok(*op == CmpOp::Ne),
                    Val::Some(a) => compare_values(&a, b, *op).ok_or(NotOk),
                }
            }
            Expr::Compare(op, l, r) => {
                let (l, r) = (self.value(l)?, self.value(r)?);
                match (&l, &r) {
                    (Val::Missing, _) | (_, Val::Missing) => Ok(*op == CmpOp::Ne),
                    (Val::Some(a), Val::Some(b)) => compare_values(a, b, *op).ok_or(NotOk),
                }
            }
            Expr::Exists(path) => Ok(self.field(path).is_some()),
            Expr::In(l, list) | Expr::Intersects(l, list) => {
                let Val::Some(lv) = self.value(l)? else {
                    return Ok(false);
                };
                self.any_in_list(list, |item| match lv.as_ref() {
                    // A map on the left of IN or INTERSECTS tests its keys (Lytics: `hits
                    // INTERSECTS ("foo")` holds for `hits = {"foo": 5}`).
                    Value::Map(m) => m.contains_key(text_of(item).as_ref()),
                    // An array on the left of IN is INTERSECTS.
                    Value::Array(values) => values.iter().any(|v| loose_eq(v, item)),
                    scalar => loose_eq(scalar, item),
                })
            }
            Expr::Contains(l, r) => {
                let (Val::Some(lv), Val::Some(rv)) = (self.value(l)?, self.value(r)?) else {
                    return Ok(false);
                };
                Ok(contains(&lv, &rv))
            }
            Expr::Like(l, p) => {
                let (Val::Some(lv), Val::Some(pv)) = (self.value(l)?, self.value(p)?) else {
                    return Ok(false);
                };
                let pattern = text_of(&pv);
                if pattern.chars().count() > MAX_LIKE_PATTERN {
                    return Err(NotOk);
                }
                // SQL's % means the same as *.
                let pattern = if pattern.contains('%') {
                    Cow::Owned(pattern.replace('%', "*"))
                } else {
                    pattern
                };
                let like = |text: &str| text.len() <= MAX_LIKE_VALUE && glob_match(&pattern, text);
                Ok(match lv.as_ref() {
                    Value::Array(items) => items.iter().any(|i| like(&text_of(i))),
                    Value::Map(_) | Value::Null => false,
                    v => like(&text_of(v)),
                })
            }
            Expr::Between(x, lo, hi) => {
                let Val::Some(xv) = self.value(x)? else {
                    return Ok(false);
                };
                let (Val::Some(lo), Val::Some(hi)) = (self.value(lo)?, self.value(hi)?) else {
                    return Err(NotOk);
                };
                between(&xv, &lo, &hi).ok_or(NotOk)
            }
            Expr::Include(name) => self.include(name),
            // A value used as a condition must be a boolean (or a boolean's text): numbers and
            // arithmetic never match.
            other => match self.value(other)? {
                Val::Missing => Ok(false),
                Val::Some(v) => match v.as_ref() {
                    Value::Bool(b) => Ok(*b),
                    Value::String(_) => v.as_bool().ok_or(NotOk),
                    _ => Err(NotOk),
                },
            },
        }
    }

    fn include(&mut self, name: &str) -> Result<bool, NotOk> {
        let includes = self.ctx.includes.ok_or(NotOk)?;
        if self.include_stack.iter().any(|n| n == name)
            || self.include_stack.len() >= MAX_INCLUDE_DEPTH
        {
            return Err(NotOk);
        }
        let statement = includes.include(name).ok_or(NotOk)?;
        self.include_stack.push(name.to_string());
        let r = self.boolean(&statement.filter);
        self.include_stack.pop();
        r
    }

    fn field(&self, path: &[String]) -> Option<Cow<'a, Value>> {
        self.fields.get(path).filter(|v| !v.is_null())
    }

    /// Whether any item of an IN / INTERSECTS list satisfies `pred`, without copying the list.
    fn any_in_list(
        &mut self,
        list: &ListSource,
        pred: impl Fn(&Value) -> bool,
    ) -> Result<bool, NotOk> {
        match list {
            ListSource::Items(items) => {
                for i in items {
                    if let Val::Some(v) = self.value(i)?
                        && pred(&v)
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            ListSource::Field(path) => Ok(match self.field(path) {
                Some(v) => match v.as_ref() {
                    Value::Array(items) => items.iter().any(&pred),
                    other => pred(other),
                },
                None => false,
            }),
        }
    }

    fn value<'e>(&mut self, e: &'e Expr) -> Result<Val<'e>, NotOk>
    where
        'a: 'e,
    {
        Ok(match e {
            Expr::Literal(Literal::Value(Value::Null)) => Val::Missing,
            Expr::Literal(Literal::Value(v)) => Val::Some(Cow::Borrowed(v)),
            Expr::Literal(Literal::DateMath(d)) => {
                Val::Some(Cow::Owned(Value::Time(d.at(self.ctx.now))))
            }
            Expr::Field(path) => match self.field(path) {
                Some(v) => Val::Some(v),
                None => Val::Missing,
            },
            Expr::Arith(op, l, r) => {
                let (Val::Some(a), Val::Some(b)) = (self.value(l)?, self.value(r)?) else {
                    return Ok(Val::Missing);
                };
                Val::Some(Cow::Owned(arith(*op, &a, &b).ok_or(NotOk)?))
            }
            Expr::Call(name, args) => {
                let mut values = Vec::with_capacity(args.len());
                for a in args {
                    values.push(match self.value(a)? {
                        Val::Missing => Value::Null,
                        Val::Some(v) => v.into_owned(),
                    });
                }
                let ctx = FnCtx {
                    now: self.ctx.now,
                    fields: Some(self.fields),
                    mapped_fields: self.ctx.mapped_fields,
                };
                match functions::call(name, &values, &ctx) {
                    Some(Value::Null) | None => Val::Missing,
                    Some(v) => Val::Some(Cow::Owned(v)),
                }
            }
            predicate => Val::Some(Cow::Owned(Value::Bool(self.boolean(predicate)?))),
        })
    }
}

fn arith(op: ArithOp, a: &Value, b: &Value) -> Option<Value> {
    if let (Value::Int(x), Value::Int(y)) = (a, b) {
        return match op {
            ArithOp::Add => x.checked_add(*y),
            ArithOp::Sub => x.checked_sub(*y),
            ArithOp::Mul => x.checked_mul(*y),
            ArithOp::Div => x.checked_div(*y),
            ArithOp::Mod => x.checked_rem(*y),
        }
        .map(Value::Int);
    }
    if !matches!(a, Value::Int(_) | Value::Number(_))
        && !matches!(b, Value::Int(_) | Value::Number(_))
    {
        return None;
    }
    let (x, y) = (a.as_f64()?, b.as_f64()?);
    let r = match op {
        ArithOp::Add => x + y,
        ArithOp::Sub => x - y,
        ArithOp::Mul => x * y,
        ArithOp::Div => x / y,
        ArithOp::Mod => x % y,
    };
    r.is_finite().then_some(Value::Number(r))
}

/// Equality with the comparison coercions (numbers, booleans, dates), for IN and friends.
pub fn loose_eq(a: &Value, b: &Value) -> bool {
    compare_values(a, b, CmpOp::Eq) == Some(true)
}

fn ordering_holds(ord: std::cmp::Ordering, op: CmpOp) -> bool {
    use std::cmp::Ordering::*;
    match op {
        CmpOp::Eq => ord == Equal,
        CmpOp::Ne => ord != Equal,
        CmpOp::Gt => ord == Greater,
        CmpOp::Ge => ord != Less,
        CmpOp::Lt => ord == Less,
        CmpOp::Le => ord != Greater,
    }
}

/// Compares two present values; `None` when they cannot be compared with `op`.
pub fn compare_values(a: &Value, b: &Value, op: CmpOp) -> Option<bool> {
    let is_eq = matches!(op, CmpOp::Eq | CmpOp::Ne);
    match (a, b) {
        (Value::Array(items), _) => {
            Some(items.iter().any(|i| compare_values(i, b, op) == Some(true)))
        }
        (Value::Time(x), other) | (other, Value::Time(x)) => {
            let y = other.as_time()?;
            let ord = if std::ptr::eq(a, other) {
                y.cmp(x)
            } else {
                x.cmp(&y)
            };
            Some(ordering_holds(ord, op))
        }
        (Value::Bool(x), other) | (other, Value::Bool(x)) => {
            let y = other.as_bool();
            match (is_eq, y) {
                (true, Some(y)) => Some((*x == y) == (op == CmpOp::Eq)),
                (true, None) => Some(op == CmpOp::Ne),
                (false, _) => None,
            }
        }
        (Value::Int(x), Value::Int(y)) => Some(ordering_holds(x.cmp(y), op)),
        (Value::Int(_) | Value::Number(_), _) | (_, Value::Int(_) | Value::Number(_)) => {
            match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => x.partial_cmp(&y).map(|o| ordering_holds(o, op)),
                _ if is_eq => Some(op == CmpOp::Ne),
                _ => None,
            }
        }
        (Value::String(x), Value::String(y)) => {
            if is_eq {
                return Some((x == y) == (op == CmpOp::Eq));
            }
            if let (Ok(p), Ok(q)) = (x.trim().parse::<f64>(), y.trim().parse::<f64>()) {
                return p.partial_cmp(&q).map(|o| ordering_holds(o, op));
            }
            if let (Some(p), Some(q)) = (crate::dates::parse_date(x), crate::dates::parse_date(y)) {
                return Some(ordering_holds(p.cmp(&q), op));
            }
            Some(ordering_holds(x.cmp(y), op))
        }
        (Value::Map(x), Value::Map(y)) if is_eq => Some((x == y) == (op == CmpOp::Eq)),
        _ if is_eq => Some(op == CmpOp::Ne),
        _ => None,
    }
}

fn contains(haystack: &Value, needle: &Value) -> bool {
    let text = text_of(needle);
    match haystack {
        Value::String(s) => s.contains(text.as_ref()),
        Value::Array(items) => items.iter().any(|i| match i {
            Value::String(s) => s.contains(text.as_ref()),
            other => loose_eq(other, needle),
        }),
        Value::Map(m) => m.contains_key(text.as_ref()),
        Value::Null => false,
        other => other.to_text().contains(text.as_ref()),
    }
}

/// A value's text, borrowed when it already is a string.
pub fn text_of(v: &Value) -> Cow<'_, str> {
    match v {
        Value::String(s) => Cow::Borrowed(s),
        other => Cow::Owned(other.to_text()),
    }
}

fn between(x: &Value, lo: &Value, hi: &Value) -> Option<bool> {
    match x {
        Value::Time(t) => {
            let (l, h) = (lo.as_time()?, hi.as_time()?);
            let s = t.unix_timestamp();
            Some(s > l.unix_timestamp() && s < h.unix_timestamp())
        }
        Value::Array(items) => Some(items.iter().any(|i| between(i, lo, hi) == Some(true))),
        Value::Int(_) | Value::Number(_) | Value::String(_) => {
            if let Some(v) = x.as_f64() {
                let (l, h) = (lo.as_f64()?, hi.as_f64()?);
                return Some(v > l && v < h);
            }
            // A date held as text, compared with date bounds.
            let t = x.as_time()?;
            between(&Value::Time(t), lo, hi)
        }
        _ => None,
    }
}

/// The longest LIKE pattern: longer ones are refused when parsed, and one taken from a field
/// at evaluation does not evaluate.
pub const MAX_LIKE_PATTERN: usize = 1_024;

/// The longest text LIKE looks at (1 MiB): a longer value does not match.
pub const MAX_LIKE_VALUE: usize = 1024 * 1024;

/// Glob matching with `*` (any run of characters) and `?` (one character).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    // The common shapes need no matcher: `exact`, `*suffix`, `prefix*`, `*middle*`.
    let inner = pattern.trim_matches('*');
    if inner.is_empty() {
        return !pattern.is_empty() || text.is_empty();
    }
    if !inner.contains(['*', '?']) {
        return match (pattern.starts_with('*'), pattern.ends_with('*')) {
            (false, false) => text == inner,
            (true, false) => text.ends_with(inner),
            (false, true) => text.starts_with(inner),
            (true, true) => text.contains(inner),
        };
    }
    GlobNfa::new(pattern).matches(text)
}

/// A glob as a bit-parallel NFA: state `j` is "the first `j` literal units matched"; a `*`
/// after `j` units lets state `j` consume any character. Each character of the text costs one
/// pass over `units / 64` words, so matching is linear in the text whatever the pattern
/// (backtracking took 7 s on `*aaaa…?b` against a long run of `a`).
struct GlobNfa {
    /// Bit `j` set: a `*` stands after the first `j` units.
    star_at: Vec<u64>,
    /// Bit `j` set: unit `j` is `?` (matches any character).
    any: Vec<u64>,
    /// Per literal character, the units that are that character.
    literal: std::collections::HashMap<char, Vec<u64>>,
    /// Number of units (non-`*` characters).
    units: usize,
}

fn set_bit(words: &mut [u64], bit: usize) {
    words[bit / 64] |= 1 << (bit % 64);
}

impl GlobNfa {
    fn new(pattern: &str) -> GlobNfa {
        let units = pattern.chars().filter(|c| *c != '*').count();
        let words = (units + 1).div_ceil(64);
        let mut nfa = GlobNfa {
            star_at: vec![0; words],
            any: vec![0; words],
            literal: std::collections::HashMap::new(),
            units,
        };
        let mut j = 0;
        for c in pattern.chars() {
            match c {
                '*' => set_bit(&mut nfa.star_at, j),
                '?' => {
                    set_bit(&mut nfa.any, j);
                    j += 1;
                }
                literal => {
                    let mask = nfa.literal.entry(literal).or_insert_with(|| vec![0; words]);
                    set_bit(mask, j);
                    j += 1;
                }
            }
        }
        nfa
    }

    fn matches(&self, text: &str) -> bool {
        let words = self.any.len();
        let mut state = vec![0u64; words];
        state[0] = 1;
        let mut next = vec![0u64; words];
        for c in text.chars() {
            let literal = self.literal.get(&c);
            let mut carry = 0u64;
            let mut alive = false;
            for w in 0..words {
                let step = self.any[w] | literal.map_or(0, |m| m[w]);
                let advanced = state[w] & step;
                next[w] = (advanced << 1) | carry | (state[w] & self.star_at[w]);
                carry = advanced >> 63;
                alive |= next[w] != 0;
            }
            std::mem::swap(&mut state, &mut next);
            if !alive {
                return false;
            }
        }
        state[self.units / 64] & (1 << (self.units % 64)) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    /// The definition, by recursion: exponential, for short inputs only.
    fn reference(p: &[char], t: &[char]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some(('*', rest)) => (0..=t.len()).any(|i| reference(rest, &t[i..])),
            Some((c, rest)) => t
                .split_first()
                .is_some_and(|(x, tail)| (*c == '?' || c == x) && reference(rest, tail)),
        }
    }

    #[test]
    fn the_matcher_agrees_with_the_definition() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let alphabet = ['a', 'b', 'é'];
        let mut matched = 0;
        for _ in 0..20_000 {
            let p: String = (0..next(7))
                .map(|_| match next(5) {
                    0 => '*',
                    1 => '?',
                    _ => alphabet[next(3) as usize],
                })
                .collect();
            let t: String = (0..next(9)).map(|_| alphabet[next(3) as usize]).collect();
            let want = reference(
                &p.chars().collect::<Vec<_>>(),
                &t.chars().collect::<Vec<_>>(),
            );
            assert_eq!(glob_match(&p, &t), want, "{p:?} {t:?}");
            matched += usize::from(want);
        }
        assert!(matched > 1_000, "the cases cover matches too: {matched}");
    }

    /// Backtracking took 7 s on this shape; the automaton is linear in the text.
    #[test]
    fn a_hostile_pattern_is_matched_in_linear_time() {
        let pattern = format!("*{}?b", "a".repeat(1_000));
        let text = "a".repeat(200_000);
        let started = std::time::Instant::now();
        assert!(!glob_match(&pattern, &text));
        assert!(glob_match(&pattern, &format!("{text}xb")));
        assert!(
            started.elapsed() < std::time::Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn globs() {
        let cases = [
            ("", "", true),
            ("", "a", false),
            ("*", "", true),
            ("*", "abc", true),
            ("abc", "abc", true),
            ("abc", "abcd", false),
            ("*bc", "abc", true),
            ("ab*", "abc", true),
            ("*b*", "abc", true),
            ("*x*", "abc", false),
            ("a*c", "abbbc", true),
            ("a*c", "abbb", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*@x.io", "me@x.io", true),
            ("é*", "été", true),
            ("?t?", "été", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXcYb", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob_match(p, t), want, "{p:?} {t:?}");
        }
    }
}
