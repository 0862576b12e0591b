//! Values of profiles, events and expressions.

use std::collections::BTreeMap;
use std::fmt;

use time::OffsetDateTime;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Number(f64),
    String(String),
    Time(OffsetDateTime),
    Array(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Time(_) => "date",
            Value::Array(_) => "array",
            Value::Map(_) => "map",
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// As a float, coercing numeric strings (`zip == "5"`, `amount > "50"`).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Number(n) => Some(*n),
            Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
            Value::Bool(b) => Some(if *b { 1.0 } else { 0.0 }),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Number(n) if n.is_finite() => Some(n.trunc() as i64),
            Value::String(s) => {
                let t = s.trim();
                t.parse::<i64>().ok().or_else(|| {
                    t.parse::<f64>()
                        .ok()
                        .filter(|f| f.is_finite())
                        .map(|f| f.trunc() as i64)
                })
            }
            Value::Bool(b) => Some(i64::from(*b)),
            Value::Time(t) => Some((t.unix_timestamp_nanos() / 1_000_000) as i64),
            _ => None,
        }
    }

    /// As a boolean: `true`/`t`/`1`/`yes` and their opposites, as Lytics data often has them.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Int(i) => Some(*i != 0),
            Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "t" | "1" | "yes" | "y" => Some(true),
                "false" | "f" | "0" | "no" | "n" => Some(false),
                _ => None,
            },
            _ => None,
        }
    }

    /// As a time: times, date strings in any accepted format, and epoch numbers.
    pub fn as_time(&self) -> Option<OffsetDateTime> {
        match self {
            Value::Time(t) => Some(*t),
            Value::String(s) => crate::dates::parse_date(s),
            Value::Int(_) | Value::Number(_) => {
                tributary_core::timestamp::parse_date(&self.to_text())
            }
            _ => None,
        }
    }

    /// Text form for string functions: strings as they are, scalars printed, times RFC 3339.
    pub fn to_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::String(s) => s.clone(),
            Value::Time(t) => tributary_core::format_rfc3339(*t),
            other => other.to_string(),
        }
    }

    pub fn from_json(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Value::String(s.clone()),
            serde_json::Value::Array(a) => Value::Array(a.iter().map(Value::from_json).collect()),
            serde_json::Value::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// Like `from_json`, but strings in ISO 8601 date or date-time form become dates, as a
    /// date field of a profile is (the `entity` of `/api/segment/evaluate`).
    pub fn from_json_with_dates(v: &serde_json::Value) -> Value {
        match v {
            serde_json::Value::String(s) => match crate::dates::parse_iso8601(s) {
                Some(t) => Value::Time(t),
                None => Value::String(s.clone()),
            },
            serde_json::Value::Array(a) => {
                Value::Array(a.iter().map(Value::from_json_with_dates).collect())
            }
            serde_json::Value::Object(o) => Value::Map(
                o.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json_with_dates(v)))
                    .collect(),
            ),
            other => Value::from_json(other),
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            Value::Int(i) => serde_json::Value::from(*i),
            Value::Number(n) => serde_json::Number::from_f64(*n)
                .map_or(serde_json::Value::Null, serde_json::Value::Number),
            Value::String(s) => serde_json::Value::String(s.clone()),
            Value::Time(t) => serde_json::Value::String(tributary_core::format_rfc3339(*t)),
            Value::Array(a) => serde_json::Value::Array(a.iter().map(Value::to_json).collect()),
            Value::Map(m) => {
                serde_json::Value::Object(m.iter().map(|(k, v)| (k.clone(), v.to_json())).collect())
            }
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Number(n) => write!(f, "{n}"),
            Value::String(s) => f.write_str(s),
            Value::Time(t) => f.write_str(&tributary_core::format_rfc3339(*t)),
            Value::Array(_) | Value::Map(_) => f.write_str(&self.to_json().to_string()),
        }
    }
}

/// How a stored profile writes a time inside JSON: `{"$t": micros}`.
pub const TIME_TAG: &str = "$t";

/// JSON text straight into a [`Value`] (as [`Value::from_json`] would give, without building a
/// `serde_json::Value` first): events are parsed this way on the pipeline's hot path.
impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Value, D::Error> {
        Parsed::<false>::deserialize(d).map(|p| p.0)
    }
}

/// A [`Value`] in a profile's stored form, where `{"$t": micros}` is a time (see [`TIME_TAG`]).
pub struct TimeTagged(pub Value);

impl<'de> serde::Deserialize<'de> for TimeTagged {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TimeTagged, D::Error> {
        Parsed::<true>::deserialize(d).map(|p| TimeTagged(p.0))
    }
}

/// One visitor for both forms: `TAGGED` decides whether a `{"$t": micros}` map is a time, at
/// every depth.
struct Parsed<const TAGGED: bool>(Value);

impl<'de, const TAGGED: bool> serde::Deserialize<'de> for Parsed<TAGGED> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor::<TAGGED>).map(Parsed)
    }
}

struct ValueVisitor<const TAGGED: bool>;

impl<'de, const TAGGED: bool> serde::de::Visitor<'de> for ValueVisitor<TAGGED> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::Int(i))
    }
    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(i64::try_from(u).map_or(Value::Number(u as f64), Value::Int))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Value::Number(n))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Parsed::<TAGGED>(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((k, Parsed::<TAGGED>(v))) = map.next_entry::<String, Parsed<TAGGED>>()? {
            out.insert(k, v);
        }
        if TAGGED
            && out.len() == 1
            && let Some(Value::Int(micros)) = out.get(TIME_TAG)
        {
            return Ok(Value::Time(tributary_core::from_micros(*micros)));
        }
        Ok(Value::Map(out))
    }
}

#[cfg(test)]
mod deserialize_tests {
    use super::Value;

    #[test]
    fn parses_like_from_json() {
        let text =
            r#"{"a": 1, "b": [true, null, 2.5, "x"], "c": {"d": -3}, "e": 18446744073709551615}"#;
        let direct: Value = serde_json::from_str(text).unwrap();
        let via_tree = Value::from_json(&serde_json::from_str(text).unwrap());
        assert_eq!(direct, via_tree);
    }

    #[test]
    fn only_the_stored_form_reads_time_tags() {
        let text = r#"{"t": {"$t": 1000000}, "not": {"$t": "x"}, "two": {"$t": 1, "b": 2}}"#;
        let plain: Value = serde_json::from_str(text).unwrap();
        assert!(matches!(&plain, Value::Map(m) if matches!(m["t"], Value::Map(_))));
        let super::TimeTagged(tagged) = serde_json::from_str(text).unwrap();
        let Value::Map(m) = tagged else {
            panic!("a map")
        };
        assert_eq!(m["t"], Value::Time(tributary_core::from_micros(1_000_000)));
        assert!(matches!(m["not"], Value::Map(_)));
        assert!(matches!(m["two"], Value::Map(_)));
    }
}
