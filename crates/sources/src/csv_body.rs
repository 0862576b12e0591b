//! CSV bodies (`/collect/bulk`): a header row (or the `headers` parameter) names the columns;
//! each row becomes one JSON object of strings. Empty cells are left out, so a blank cell in a
//! Braze export never overwrites a known value with "".

use crate::{DecodeError, DecodeOptions, Decoded, Record, Rejection, utf8};

#[derive(Debug, Clone)]
pub struct CsvOptions {
    pub delimiter: u8,
    /// Column names when the body has no header row.
    pub headers: Option<Vec<String>>,
    /// Most columns a file may have (a Braze export has a few dozen).
    pub max_columns: usize,
}

/// The default of [`CsvOptions::max_columns`].
pub const DEFAULT_MAX_COLUMNS: usize = 2_000;

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            headers: None,
            max_columns: DEFAULT_MAX_COLUMNS,
        }
    }
}

/// Where a quoted field opens and never closes: its line (1-based) and the byte offset of the
/// start of that line. The CSV reader would otherwise read the rest of the file into that one
/// field and say nothing.
fn unclosed_quote(body: &[u8], delimiter: u8) -> Option<(u64, usize)> {
    enum State {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut state = State::FieldStart;
    let mut line = 1u64;
    let mut line_start = 0usize;
    let mut opened = (1u64, 0usize);
    for (at, &b) in body.iter().enumerate() {
        state = match state {
            State::FieldStart | State::Unquoted if b == b'\n' => State::FieldStart,
            State::FieldStart if b == b'"' => {
                opened = (line, line_start);
                State::Quoted
            }
            State::FieldStart | State::Unquoted if b == delimiter => State::FieldStart,
            State::FieldStart | State::Unquoted => State::Unquoted,
            State::Quoted if b == b'"' => State::QuoteInQuoted,
            State::Quoted => State::Quoted,
            // `""` inside quotes is one quote; after the closing quote, lenient as the reader.
            State::QuoteInQuoted if b == b'"' => State::Quoted,
            State::QuoteInQuoted if b == delimiter || b == b'\n' => State::FieldStart,
            State::QuoteInQuoted => State::Unquoted,
        };
        if b == b'\n' {
            line += 1;
            line_start = at + 1;
        }
    }
    matches!(state, State::Quoted).then_some(opened)
}

impl CsvOptions {
    /// Parses the `delimiter` query parameter: one ASCII character, or `t`/`\t` for tab.
    pub fn parse_delimiter(text: &str) -> Result<u8, String> {
        match text {
            "t" | "\\t" | "\t" | "tab" => Ok(b'\t'),
            s if s.len() == 1 && s.is_ascii() && s != "\"" && s != "\n" => Ok(s.as_bytes()[0]),
            other => Err(format!(
                "delimiter {other:?} is not supported; use one ASCII character such as \",\", \"|\" or \"t\" for tab"
            )),
        }
    }
}

pub fn decode_csv(
    body: &[u8],
    opts: &DecodeOptions,
    csv: &CsvOptions,
) -> Result<Decoded, DecodeError> {
    // An unterminated quote: a 400 naming its line, or (with `droperrors`) the rows before it
    // and a rejection that says what was not read.
    let mut unterminated = None;
    let body = match unclosed_quote(body, csv.delimiter) {
        None => body,
        Some((line, _)) if line == 1 && csv.headers.is_none() => {
            return Err(DecodeError::at(
                1,
                None,
                "the header row opens a quoted field that is never closed",
            ));
        }
        Some((line, start)) if opts.drop_errors => {
            let lines = body[start..]
                .split(|b| *b == b'\n')
                .filter(|l| !l.is_empty())
                .count();
            let rest = lines.saturating_sub(1);
            unterminated = Some(Rejection {
                line,
                message: format!(
                    "a quoted field opens on line {line} and is never closed; that line and the \
                     {rest} after it were not read"
                ),
            });
            &body[..start]
        }
        Some((line, _)) => {
            return Err(DecodeError::at(
                line,
                None,
                format!("a quoted field opens on line {line} and is never closed"),
            ));
        }
    };
    let mut decoded = decode_rows(body, opts, csv)?;
    decoded.rejected.extend(unterminated);
    Ok(decoded)
}

fn decode_rows(
    body: &[u8],
    opts: &DecodeOptions,
    csv: &CsvOptions,
) -> Result<Decoded, DecodeError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(csv.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut records = reader.byte_records();
    let headers: Vec<String> = match &csv.headers {
        Some(h) => h.iter().map(|s| s.trim().to_string()).collect(),
        None => match records.next() {
            None => return Ok(Decoded::default()),
            Some(row) => {
                let row = row.map_err(csv_error)?;
                row.iter()
                    .enumerate()
                    .map(|(i, cell)| {
                        let text = utf8(cell).map_err(|_| {
                            DecodeError::at(1, Some(i as u64 + 1), "header is not valid UTF-8")
                        })?;
                        let text = if i == 0 {
                            text.trim_start_matches('\u{feff}')
                        } else {
                            text
                        };
                        Ok(text.trim().to_string())
                    })
                    .collect::<Result<_, DecodeError>>()?
            }
        },
    };
    check_headers(&headers, csv.max_columns)?;
    let keys: Vec<String> = headers
        .iter()
        .map(|h| serde_json::to_string(h).unwrap_or_default())
        .collect();
    let ts_column = opts
        .timestamp_field
        .as_ref()
        .map(|f| {
            headers.iter().position(|h| h == f).ok_or_else(|| {
                DecodeError::at(
                    1,
                    None,
                    format!("timestamp field {f:?} is not a column of this file"),
                )
            })
        })
        .transpose()?;

    let mut out = Decoded::default();
    for row in records {
        let row = row.map_err(csv_error)?;
        let line = row.position().map_or(0, |p| p.line());
        match row_to_record(&row, &headers, &keys, ts_column) {
            Ok(record) => out.records.push(record),
            Err(message) if opts.drop_errors => out.rejected.push(Rejection { line, message }),
            Err(message) => return Err(DecodeError::at(line, None, message)),
        }
    }
    Ok(out)
}

/// Names are non-empty and distinct (checked in one pass: a header of 80,000 columns took
/// seconds when each name was compared with every earlier one), and there are at most
/// `max_columns`.
fn check_headers(headers: &[String], max_columns: usize) -> Result<(), DecodeError> {
    if headers.len() > max_columns {
        return Err(DecodeError::at(
            1,
            None,
            format!(
                "the file has {} columns; at most {max_columns} are accepted",
                headers.len()
            ),
        ));
    }
    let mut seen = std::collections::HashSet::with_capacity(headers.len());
    for (i, h) in headers.iter().enumerate() {
        if h.is_empty() {
            return Err(DecodeError::at(
                1,
                Some(i as u64 + 1),
                format!("column {} has an empty name", i + 1),
            ));
        }
        if !seen.insert(h.as_str()) {
            return Err(DecodeError::at(
                1,
                Some(i as u64 + 1),
                format!("column name {h:?} appears twice"),
            ));
        }
    }
    Ok(())
}

fn row_to_record(
    row: &csv::ByteRecord,
    headers: &[String],
    keys: &[String],
    ts_column: Option<usize>,
) -> Result<Record, String> {
    if row.len() != headers.len() {
        return Err(format!(
            "expected {} fields (one per column), found {}",
            headers.len(),
            row.len()
        ));
    }
    let mut payload = String::with_capacity(
        row.as_slice().len() + keys.iter().map(String::len).sum::<usize>() + 16,
    );
    payload.push('{');
    for (i, cell) in row.iter().enumerate() {
        if cell.is_empty() {
            continue;
        }
        let value = std::str::from_utf8(cell)
            .map_err(|_| format!("column {:?} is not valid UTF-8", headers[i]))?;
        if payload.len() > 1 {
            payload.push(',');
        }
        payload.push_str(&keys[i]);
        payload.push(':');
        payload.push_str(&serde_json::to_string(value).map_err(|e| e.to_string())?);
    }
    payload.push('}');
    let event_time = match ts_column {
        Some(c) => match row
            .get(c)
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|v| !v.is_empty())
        {
            None => None,
            Some(v) => Some(tributary_core::timestamp::parse_date(v).ok_or_else(|| {
                format!(
                    "timestamp column {:?} has a value that is not a date or time: {v:?}",
                    headers[c]
                )
            })?),
        },
        None => None,
    };
    Ok(Record {
        payload,
        event_time,
    })
}

fn csv_error(e: csv::Error) -> DecodeError {
    let line = e.position().map_or(0, |p| p.line());
    DecodeError::at(line, None, format!("malformed CSV: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(body: &str, drop_errors: bool) -> Result<Decoded, DecodeError> {
        let opts = DecodeOptions {
            drop_errors,
            ..Default::default()
        };
        decode_csv(body.as_bytes(), &opts, &CsvOptions::default())
    }

    #[test]
    fn rows_become_objects_without_empty_cells() {
        let d = decode(
            "\u{feff}external_id,email,first_name\nu1,a@x.io,\"Ann, \"\"A\"\"\"\nu2,,Bob\n",
            false,
        )
        .unwrap();
        assert_eq!(
            d.records[0].payload,
            r#"{"external_id":"u1","email":"a@x.io","first_name":"Ann, \"A\""}"#
        );
        assert_eq!(
            d.records[1].payload,
            r#"{"external_id":"u2","first_name":"Bob"}"#
        );
    }

    /// An unclosed quote is reported at its line (seen: a 200 with one row and the rest of the
    /// file swallowed into a field; in the header, a 200 with nothing).
    #[test]
    fn an_unclosed_quote_is_reported_at_its_line() {
        let body = "email,name\na@x.io,\"Bob\nb@x.io,Carl\nc@x.io,Dan\n";
        let e = decode(body, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a quoted field opens on line 2 and is never closed at line 2"
        );
        let e = decode("email,\"name\nb@x.io,Carl\n", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the header row opens a quoted field that is never closed at line 1"
        );
        let d = decode("email,name\nz@x.io,Zed\na@x.io,\"Bob\nb@x.io,Carl\n", true).unwrap();
        assert_eq!(d.records.len(), 1, "the row before the quote");
        assert_eq!(d.rejected.len(), 1);
        assert_eq!(d.rejected[0].line, 3);
        assert!(
            d.rejected[0].message.contains("never closed")
                && d.rejected[0].message.contains("1 after it"),
            "{:?}",
            d.rejected
        );
        // Quotes that close, escaped quotes, and quotes inside unquoted text are fine.
        let d = decode("a,b\n\"x\n\"\"y\",z\"q\n1,\"2\"\n", false).unwrap();
        assert_eq!(d.records.len(), 2);
    }

    /// A header of 80,000 columns was checked in quadratic time on the request thread: now one
    /// pass, and more columns than the limit are refused.
    #[test]
    fn wide_headers_are_checked_in_one_pass_and_capped() {
        let wide: Vec<String> = (0..80_000).map(|i| format!("c{i}")).collect();
        let body = format!("{}\n", wide.join(","));
        let opts = DecodeOptions::default();
        let started = std::time::Instant::now();
        let e = decode_csv(body.as_bytes(), &opts, &CsvOptions::default()).unwrap_err();
        assert_eq!(
            e.to_string(),
            "the file has 80000 columns; at most 2000 are accepted at line 1"
        );
        let lifted = CsvOptions {
            max_columns: 100_000,
            ..CsvOptions::default()
        };
        let d = decode_csv(body.as_bytes(), &opts, &lifted).unwrap();
        assert!(d.records.is_empty());
        // Quadratic comparison of 80,000 names took seconds; one pass takes milliseconds.
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        let dup = format!("{},c5\n", wide[..10].join(","));
        let e = decode_csv(dup.as_bytes(), &opts, &CsvOptions::default()).unwrap_err();
        assert!(e.to_string().contains("\"c5\" appears twice"), "{e}");
    }

    #[test]
    fn wrong_field_count_names_the_line() {
        let e = decode("a,b\n1,2\n3\n", false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected 2 fields (one per column), found 1 at line 3"
        );
        let d = decode("a,b\n1,2\n3\n4,5\n", true).unwrap();
        assert_eq!(d.records.len(), 2);
        assert_eq!(
            d.rejected,
            vec![Rejection {
                line: 3,
                message: "expected 2 fields (one per column), found 1".into()
            }]
        );
    }

    #[test]
    fn headers_parameter_delimiter_and_header_checks() {
        let opts = DecodeOptions::default();
        let csv = CsvOptions {
            delimiter: b'\t',
            headers: Some(vec!["a".into(), "b".into()]),
            ..CsvOptions::default()
        };
        let d = decode_csv(b"1\t2\n", &opts, &csv).unwrap();
        assert_eq!(d.records[0].payload, r#"{"a":"1","b":"2"}"#);
        assert!(
            decode("a,a\n1,2\n", false)
                .unwrap_err()
                .message
                .contains("twice")
        );
        assert!(
            decode("a,\n1,2\n", false)
                .unwrap_err()
                .message
                .contains("empty name")
        );
        assert_eq!(CsvOptions::parse_delimiter("t"), Ok(b'\t'));
        assert_eq!(CsvOptions::parse_delimiter("|"), Ok(b'|'));
        assert!(CsvOptions::parse_delimiter("ab").is_err());
    }

    #[test]
    fn timestamp_column() {
        let opts = DecodeOptions {
            timestamp_field: Some("ts".into()),
            drop_errors: false,
        };
        let d = decode_csv(b"id,ts\n1,2024-01-02\n2,\n", &opts, &CsvOptions::default()).unwrap();
        assert!(d.records[0].event_time.is_some());
        assert!(d.records[1].event_time.is_none());
        let e = decode_csv(b"id,ts\n1,nope\n", &opts, &CsvOptions::default()).unwrap_err();
        assert_eq!(e.line, 2);
        let e = decode_csv(b"id\n1\n", &opts, &CsvOptions::default()).unwrap_err();
        assert!(e.message.contains("not a column"));
    }
}
