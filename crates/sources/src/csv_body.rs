//! CSV bodies (`/collect/bulk`): a header row (or the `headers` parameter) names the columns;
//! each row becomes one JSON object of strings. Empty cells are left out, so a blank cell in a
//! Braze export never overwrites a known value with "".

use std::io::Read;

use crate::{DecodeError, DecodeOptions, Decoded, Record, Rejection, utf8};

#[derive(Debug, Clone)]
pub struct CsvOptions {
    pub delimiter: u8,
    /// Column names when the body has no header row.
    pub headers: Option<Vec<String>>,
    /// Most columns a file may have (a Braze export has a few dozen).
    pub max_columns: usize,
    /// Only these columns become fields (empty: every column).
    pub keep_columns: Vec<String>,
    /// Columns that may hold the event time, in order of preference: a row's event time comes
    /// from the first of them that has a value (used when no `timestamp_field` is given).
    /// Candidates the file does not have are skipped.
    pub timestamp_candidates: Vec<String>,
}

/// The default of [`CsvOptions::max_columns`].
pub const DEFAULT_MAX_COLUMNS: usize = 2_000;

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: b',',
            headers: None,
            max_columns: DEFAULT_MAX_COLUMNS,
            keep_columns: Vec::new(),
            timestamp_candidates: Vec::new(),
        }
    }
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

/// Finds where a quoted field opens and never closes, fed the body's bytes in order: its
/// line (1-based) and the byte offset of the start of that line. The CSV reader would
/// otherwise read the rest of the file into that one field and say nothing.
struct QuoteScan {
    delimiter: u8,
    state: QuoteState,
    line: u64,
    offset: usize,
    line_start: usize,
    opened: (u64, usize),
}

#[derive(Clone, Copy)]
enum QuoteState {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

impl QuoteScan {
    fn new(delimiter: u8) -> QuoteScan {
        QuoteScan {
            delimiter,
            state: QuoteState::FieldStart,
            line: 1,
            offset: 0,
            line_start: 0,
            opened: (1, 0),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        use QuoteState::*;
        for &b in bytes {
            self.state = match self.state {
                FieldStart | Unquoted if b == b'\n' => FieldStart,
                FieldStart if b == b'"' => {
                    self.opened = (self.line, self.line_start);
                    Quoted
                }
                FieldStart | Unquoted if b == self.delimiter => FieldStart,
                FieldStart | Unquoted => Unquoted,
                Quoted if b == b'"' => QuoteInQuoted,
                Quoted => Quoted,
                // `""` inside quotes is one quote; after the closing quote, lenient as the reader.
                QuoteInQuoted if b == b'"' => Quoted,
                QuoteInQuoted if b == self.delimiter || b == b'\n' => FieldStart,
                QuoteInQuoted => Unquoted,
            };
            self.offset += 1;
            if b == b'\n' {
                self.line += 1;
                self.line_start = self.offset;
            }
        }
    }

    /// After the last byte: the unclosed quote's line and line start, if any.
    fn unclosed(&self) -> Option<(u64, usize)> {
        matches!(self.state, QuoteState::Quoted).then_some(self.opened)
    }
}

/// A reader that shows every byte it passes to a [`QuoteScan`].
struct Scanned<'a, R> {
    inner: R,
    scan: &'a mut QuoteScan,
}

impl<R: Read> Read for Scanned<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.scan.feed(&buf[..n]);
        Ok(n)
    }
}

/// Most rejections a decode keeps (the count is exact; the list is for people).
pub const REJECTIONS_KEPT: usize = 1_000;

/// What a streamed decode did.
#[derive(Debug, Default)]
pub struct StreamSummary {
    pub accepted: usize,
    /// The first [`REJECTIONS_KEPT`] rejections.
    pub rejected: Vec<Rejection>,
    pub rejected_count: usize,
}

impl StreamSummary {
    fn reject(&mut self, rejection: Rejection) {
        self.rejected_count += 1;
        if self.rejected.len() < REJECTIONS_KEPT {
            self.rejected.push(rejection);
        }
    }
}

/// Decodes a CSV body read from `open()` in two passes, with memory bounded by `batch` records
/// whatever the body's size: the first checks everything (so a refused body stores nothing),
/// the second hands the records to `on_batch`, `batch` at a time. `open` is called once per
/// pass and must give the same bytes each time.
pub fn decode_csv_stream<'b>(
    open: &dyn Fn() -> Box<dyn Read + 'b>,
    opts: &DecodeOptions,
    csv: &CsvOptions,
    batch: usize,
    on_batch: &mut dyn FnMut(Vec<Record>) -> bool,
) -> Result<StreamSummary, DecodeError> {
    // Pass 1: every row checked, the quotes scanned to the end; nothing kept.
    let mut scan = QuoteScan::new(csv.delimiter);
    let checked = {
        let mut scanned = Scanned {
            inner: open(),
            scan: &mut scan,
        };
        let checked = decode_rows(&mut scanned, opts, csv, 0, &mut |_| true);
        // A decode that stopped early has not shown the scanner everything.
        std::io::copy(&mut scanned, &mut std::io::sink()).map_err(read_error)?;
        checked
    };
    // An unterminated quote: a 400 naming its line, or (with `droperrors`) the rows before it
    // and a rejection that says what was not read.
    let unterminated = match scan.unclosed() {
        None => None,
        Some((1, _)) if csv.headers.is_none() => {
            return Err(DecodeError::at(
                1,
                None,
                "the header row opens a quoted field that is never closed",
            ));
        }
        Some((line, _)) if !opts.drop_errors => {
            return Err(DecodeError::at(
                line,
                None,
                format!("a quoted field opens on line {line} and is never closed"),
            ));
        }
        Some((line, start)) => {
            let rest = scan.line.saturating_sub(line + 1);
            Some((
                start,
                Rejection {
                    line,
                    message: format!(
                        "a quoted field opens on line {line} and is never closed; that line and \
                         the {rest} after it were not read"
                    ),
                },
            ))
        }
    };
    if unterminated.is_none() {
        checked?;
    }
    // Pass 2: the records, in batches (up to the unterminated quote, if any).
    let mut body: Box<dyn Read + 'b> = match &unterminated {
        Some((start, _)) => Box::new(open().take(*start as u64)),
        None => open(),
    };
    let mut summary = decode_rows(&mut body, opts, csv, batch.max(1), on_batch)?;
    if let Some((_, rejection)) = unterminated {
        summary.reject(rejection);
    }
    Ok(summary)
}

/// Decodes a whole CSV body held in memory (see [`decode_csv_stream`] for large ones).
pub fn decode_csv(
    body: &[u8],
    opts: &DecodeOptions,
    csv: &CsvOptions,
) -> Result<Decoded, DecodeError> {
    let mut records = Vec::new();
    let summary = decode_csv_stream(
        &|| Box::new(body),
        opts,
        csv,
        usize::MAX,
        &mut |mut batch| {
            records.append(&mut batch);
            true
        },
    )?;
    Ok(Decoded {
        records,
        rejected: summary.rejected,
    })
}

/// Decodes rows from `body`, handing records to `on_batch` `batch` at a time (it returns false
/// to stop: the caller could not take them); with `batch` 0 the rows are only checked.
fn decode_rows(
    body: &mut dyn Read,
    opts: &DecodeOptions,
    csv: &CsvOptions,
    batch: usize,
    on_batch: &mut dyn FnMut(Vec<Record>) -> bool,
) -> Result<StreamSummary, DecodeError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(csv.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut records = reader.byte_records();
    let headers: Vec<String> = match &csv.headers {
        Some(h) => h.iter().map(|s| s.trim().to_string()).collect(),
        None => match records.next() {
            None => return Ok(StreamSummary::default()),
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
    let ts_columns: Vec<usize> = match &opts.timestamp_field {
        Some(f) => vec![headers.iter().position(|h| h == f).ok_or_else(|| {
            DecodeError::at(
                1,
                None,
                format!("timestamp field {f:?} is not a column of this file"),
            )
        })?],
        None => csv
            .timestamp_candidates
            .iter()
            .filter_map(|c| headers.iter().position(|h| h == c))
            .collect(),
    };
    let columns = Columns {
        headers: &headers,
        keys: &keys,
        keep: headers
            .iter()
            .map(|h| csv.keep_columns.is_empty() || csv.keep_columns.contains(h))
            .collect(),
        timestamps: &ts_columns,
    };

    let mut out = StreamSummary::default();
    let mut pending = Vec::new();
    for row in records {
        let row = row.map_err(csv_error)?;
        let line = row.position().map_or(0, |p| p.line());
        match row_to_record(&row, &columns) {
            Ok(record) => {
                out.accepted += 1;
                if batch == 0 {
                    continue;
                }
                pending.push(record);
                if pending.len() >= batch && !on_batch(std::mem::take(&mut pending)) {
                    return Ok(out);
                }
            }
            Err(message) if opts.drop_errors => out.reject(Rejection { line, message }),
            Err(message) => return Err(DecodeError::at(line, None, message)),
        }
    }
    if !pending.is_empty() {
        on_batch(pending);
    }
    Ok(out)
}

fn read_error(e: std::io::Error) -> DecodeError {
    DecodeError::at(0, None, format!("reading the body failed: {e}"))
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

/// How a file's columns become a record's fields.
struct Columns<'a> {
    headers: &'a [String],
    /// Each header as a JSON string.
    keys: &'a [String],
    /// Whether each column becomes a field.
    keep: Vec<bool>,
    /// The columns that may hold the event time, in order of preference.
    timestamps: &'a [usize],
}

fn row_to_record(row: &csv::ByteRecord, columns: &Columns<'_>) -> Result<Record, String> {
    let (headers, keys) = (columns.headers, columns.keys);
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
        if cell.is_empty() || !columns.keep[i] {
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
    let first_time = columns.timestamps.iter().find_map(|&c| {
        row.get(c)
            .and_then(|v| std::str::from_utf8(v).ok())
            .filter(|v| !v.is_empty())
            .map(|v| (c, v))
    });
    let event_time = match first_time {
        None => None,
        Some((c, v)) => Some(tributary_core::timestamp::parse_date(v).ok_or_else(|| {
            format!(
                "timestamp column {:?} has a value that is not a date or time: {v:?}",
                headers[c]
            )
        })?),
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

    /// A streamed decode holds one batch at a time, hands every record over once, and stores
    /// nothing when a later row is bad (the first pass checks everything).
    #[test]
    fn a_stream_is_decoded_in_batches_after_a_full_check() {
        let body: String = std::iter::once("a\n".to_string())
            .chain((0..25).map(|i| format!("{i}\n")))
            .collect();
        let mut sizes = Vec::new();
        let summary = decode_csv_stream(
            &|| Box::new(body.as_bytes()),
            &DecodeOptions::default(),
            &CsvOptions::default(),
            10,
            &mut |batch| {
                sizes.push(batch.len());
                true
            },
        )
        .unwrap();
        assert_eq!(sizes, vec![10, 10, 5]);
        assert_eq!(summary.accepted, 25);

        let bad = format!("{body}1,2\n");
        let mut handed = 0;
        let e = decode_csv_stream(
            &|| Box::new(bad.as_bytes()),
            &DecodeOptions::default(),
            &CsvOptions::default(),
            10,
            &mut |batch| {
                handed += batch.len();
                true
            },
        )
        .unwrap_err();
        assert_eq!(e.line, 27);
        assert_eq!(
            handed, 0,
            "nothing handed over before the whole body was checked"
        );
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
    fn kept_columns_and_timestamp_candidates_in_order() {
        let csv = CsvOptions {
            keep_columns: vec!["id".into(), "seen".into()],
            timestamp_candidates: vec!["missing".into(), "updated".into(), "seen".into()],
            ..CsvOptions::default()
        };
        let body = "id,name,updated,seen\n1,Ann,,2024-05-01\n2,Bo,2024-06-01,2024-05-02\n";
        let d = decode_csv(body.as_bytes(), &DecodeOptions::default(), &csv).unwrap();
        assert_eq!(d.records[0].payload, r#"{"id":"1","seen":"2024-05-01"}"#);
        let day = |r: &Record| r.event_time.map(|t| t.date().to_string());
        // The first candidate with a value wins; a candidate the file lacks is skipped.
        assert_eq!(day(&d.records[0]).as_deref(), Some("2024-05-01"));
        assert_eq!(day(&d.records[1]).as_deref(), Some("2024-06-01"));
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
