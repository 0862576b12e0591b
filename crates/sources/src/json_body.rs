//! JSON bodies: one object, an array of objects, or newline-delimited JSON (NDJSON).

use serde_json::value::RawValue;

use crate::{
    DecodeError, DecodeOptions, Decoded, Record, Rejection, event_time_of, line_col, utf8,
};

pub fn decode_json(body: &[u8], opts: &DecodeOptions) -> Result<Decoded, DecodeError> {
    let text = utf8(body)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let start = text.trim_start();
    if start.is_empty() {
        return Err(DecodeError::at(
            1,
            None,
            "body is empty; send a JSON object, an array of objects, or newline-delimited JSON",
        ));
    }
    let mut out = Decoded::default();
    if start.starts_with('[') {
        let items: Vec<&RawValue> = serde_json::from_str(text).map_err(syntax_error)?;
        for (i, raw) in items.into_iter().enumerate() {
            accept(
                text,
                raw,
                &format!("array element {}", i + 1),
                opts,
                &mut out,
            )?;
        }
        return Ok(out);
    }
    let values: Result<Vec<&RawValue>, _> = serde_json::Deserializer::from_str(text)
        .into_iter()
        .collect();
    match values {
        Ok(values) => {
            for (i, raw) in values.into_iter().enumerate() {
                accept(text, raw, &format!("record {}", i + 1), opts, &mut out)?;
            }
            Ok(out)
        }
        Err(e) if opts.drop_errors => decode_ndjson_lines(text, opts, e),
        Err(e) => Err(syntax_error(e)),
    }
}

/// With `droperrors`, a malformed NDJSON line is skipped and the other lines still import.
/// The whole-body parse failed, so fall back to one value per line.
fn decode_ndjson_lines(
    text: &str,
    opts: &DecodeOptions,
    first_error: serde_json::Error,
) -> Result<Decoded, DecodeError> {
    let mut out = Decoded::default();
    let mut lines_seen = 0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        lines_seen += 1;
        match serde_json::from_str::<&RawValue>(line) {
            Ok(raw) => accept(text, raw, &format!("line {}", i + 1), opts, &mut out)?,
            Err(e) => out.rejected.push(Rejection {
                line: i as u64 + 1,
                message: strip_position(&e),
            }),
        }
    }
    if lines_seen <= 1 {
        // A single (possibly pretty-printed) document that is broken: nothing to salvage.
        return Err(syntax_error(first_error));
    }
    Ok(out)
}

fn accept(
    text: &str,
    raw: &RawValue,
    what: &str,
    opts: &DecodeOptions,
    out: &mut Decoded,
) -> Result<(), DecodeError> {
    let json = raw.get();
    let position = || {
        let offset = (json.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
        line_col(text, offset)
    };
    let unreadable = || crate::json_check::unreadable(json);
    let problem = if !json.starts_with('{') {
        Some(format!("{what} is {}, not a JSON object", kind_of(json)))
    } else if let Some((line, column, message)) = unreadable() {
        // The position inside the record, moved to the body's.
        let (record_line, record_column) = position();
        let (line, column) = if line <= 1 {
            (record_line, record_column + column as u64 - 1)
        } else {
            (record_line + line as u64 - 1, column as u64)
        };
        let message = format!("{what} {message}");
        if !opts.drop_errors {
            return Err(DecodeError::at(line, Some(column), message));
        }
        out.rejected.push(Rejection { line, message });
        return Ok(());
    } else if let Some(field) = &opts.timestamp_field {
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(json).map_err(syntax_error)?;
        match event_time_of(&object, field) {
            Ok(event_time) => {
                out.records.push(Record {
                    payload: json.to_string(),
                    event_time,
                });
                return Ok(());
            }
            Err(message) => Some(format!("{what}: {message}")),
        }
    } else {
        None
    };
    match problem {
        None => out.records.push(Record {
            payload: json.to_string(),
            event_time: None,
        }),
        Some(message) => {
            let (line, column) = position();
            if !opts.drop_errors {
                return Err(DecodeError::at(line, Some(column), message));
            }
            out.rejected.push(Rejection { line, message });
        }
    }
    Ok(())
}

fn kind_of(json: &str) -> &'static str {
    match json.as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn syntax_error(e: serde_json::Error) -> DecodeError {
    DecodeError::at(
        e.line() as u64,
        Some(e.column() as u64),
        format!("malformed JSON: {}", strip_position(&e)),
    )
}

/// serde_json appends " at line L column C"; the position is reported separately.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> DecodeOptions {
        DecodeOptions::default()
    }

    #[test]
    fn one_object_array_and_ndjson() {
        let one = decode_json(br#" {"a": 1} "#, &opts()).unwrap();
        assert_eq!(one.records.len(), 1);
        assert_eq!(one.records[0].payload, r#"{"a": 1}"#);

        let arr = decode_json(br#"[{"a":1},{"b":2}]"#, &opts()).unwrap();
        assert_eq!(arr.records.len(), 2);
        assert_eq!(arr.records[1].payload, r#"{"b":2}"#);

        let nd = decode_json(b"{\"a\":1}\n{\"a\":2}\n\n{\"a\":3}\n", &opts()).unwrap();
        assert_eq!(nd.records.len(), 3);
        assert!(decode_json(b"[]", &opts()).unwrap().records.is_empty());
    }

    #[test]
    fn errors_carry_line_and_column() {
        let e = decode_json(b"{\"a\":1}\n{\"a\":}\n", &opts()).unwrap_err();
        assert_eq!((e.line, e.column), (2, Some(6)));
        assert!(e.message.starts_with("malformed JSON"), "{e}");

        let e = decode_json(b"[{\"a\":1},\n 42]", &opts()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "array element 2 is a number, not a JSON object at line 2, column 2"
        );

        let e = decode_json(b"   ", &opts()).unwrap_err();
        assert!(e.message.contains("empty"));
        let e = decode_json(b"{\"a\":\"\xff\"}", &opts()).unwrap_err();
        assert!(e.message.contains("UTF-8"));
        assert!(decode_json(b"{\"a\":1", &opts()).is_err());
    }

    #[test]
    fn drop_errors_skips_bad_lines() {
        let o = DecodeOptions {
            drop_errors: true,
            ..opts()
        };
        let d = decode_json(b"{\"a\":1}\n{broken\n[1]\n{\"a\":2}\n", &o).unwrap();
        assert_eq!(d.records.len(), 2);
        assert_eq!(
            d.rejected.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![2, 3]
        );
        // A single broken document is still an error.
        assert!(decode_json(b"{\"a\":", &o).is_err());
    }

    #[test]
    fn timestamp_field() {
        let o = DecodeOptions {
            timestamp_field: Some("ts".into()),
            ..opts()
        };
        let d = decode_json(br#"[{"ts":"2024-01-02T03:04:05Z"},{"x":1}]"#, &o).unwrap();
        assert_eq!(
            d.records[0].event_time.map(|t| t.unix_timestamp()),
            Some(1_704_164_645)
        );
        assert_eq!(d.records[1].event_time, None);
        let e = decode_json(br#"{"ts":"soon"}"#, &o).unwrap_err();
        assert!(e.message.contains("\"ts\""), "{e}");
    }
}
