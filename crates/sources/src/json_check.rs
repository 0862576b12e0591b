//! What the pipeline can read: an event is accepted only if it parses the way the pipeline will
//! parse it. Without this check, `{"n": 1e999999}`, a 10,000-digit integer, a lone surrogate
//! `"\ud800"` or an object nested 100,000 deep were acknowledged and then never reached a
//! profile. The rules: numbers must fit a 64-bit float (send bigger ones as strings), strings
//! must be valid Unicode, and nesting is at most 128 levels (serde_json's limit).
//!
//! The check walks the document without building it (no allocation for the common case).

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A value that parsed completely; nothing is kept.
struct Readable;

impl<'de> Deserialize<'de> for Readable {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ReadableVisitor)
    }
}

struct ReadableVisitor;

impl<'de> Visitor<'de> for ReadableVisitor {
    type Value = Readable;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_str<E>(self, _: &str) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_unit<E>(self) -> Result<Readable, E> {
        Ok(Readable)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Readable, A::Error> {
        while seq.next_element::<Readable>()?.is_some() {}
        Ok(Readable)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Readable, A::Error> {
        while map.next_entry::<Readable, Readable>()?.is_some() {}
        Ok(Readable)
    }
}

/// `None` when the pipeline can read `json`; otherwise what is wrong, and the 1-based line and
/// column in `json` where it was found.
pub fn unreadable(json: &str) -> Option<(usize, usize, String)> {
    let e = serde_json::from_str::<Readable>(json).err()?;
    let text = e.to_string();
    let message = if text.starts_with("number out of range") {
        "has a number too large to store (beyond a 64-bit float); send it as a string".to_string()
    } else if text.starts_with("recursion limit exceeded") {
        "is nested more than 128 levels deep".to_string()
    } else if text.contains("escape") || text.contains("surrogate") || text.contains("Unicode") {
        "has a string with an invalid escape (a lone surrogate such as \\ud800?)".to_string()
    } else {
        format!(
            "is not readable JSON: {}",
            text.rsplit_once(" at line ")
                .map_or(text.as_str(), |(m, _)| m)
        )
    };
    Some((e.line(), e.column(), message))
}

#[cfg(test)]
mod tests {
    use super::unreadable;

    #[test]
    fn what_the_pipeline_cannot_read_is_named() {
        let deep = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
        let big = format!("{{\"n\": {}}}", "9".repeat(10_000));
        let cases = [
            (r#"{"n": 1e999999}"#.to_string(), "too large"),
            (big, "too large"),
            (r#"{"s": "\ud800"}"#.to_string(), "invalid escape"),
            (deep, "128 levels"),
        ];
        for (json, says) in cases {
            let (line, _, message) = unreadable(&json).expect("refused");
            assert_eq!(line, 1);
            assert!(message.contains(says), "{message}");
        }
        for fine in [
            r#"{"n": 1e300, "i": -9223372036854775808, "u": 18446744073709551615}"#,
            r#"{"s": "\ud83d\ude00 é", "a": [1, {"b": null}], "t": true}"#,
        ] {
            assert_eq!(unreadable(fine), None, "{fine}");
        }
    }
}
