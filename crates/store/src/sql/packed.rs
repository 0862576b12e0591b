//! SQLite's bulk reads, packed: one row for many. The driver's cost per row (a copy of every
//! value and a hand-over between its worker thread and the caller, about 10 µs a row on a
//! busy 2-core machine) is most of a bulk read's on SQLite, so SQLite concatenates the rows
//! into one text and [`Unpacker`] splits it again. (PostgreSQL streams rows cheaply: it
//! reads them plainly.)
//!
//! A row's packing: each integer column as its digits (`n` for NULL) and a space; each text
//! column as its length in bytes, a colon and the text itself. Nothing needs escaping. The
//! order of the packed rows is not promised (an aggregate takes its subquery's rows in any
//! order, and an `ORDER BY` inside `group_concat` took the recompute from 4.8 s to 5.7 s), so
//! [`read_page`], whose callers need pages in order, puts them in order.
//!
//! A budgeted packing ([`packed_sql`], the pipeline's reads) holds at most about [`BUDGET`]
//! bytes (always at least one row): a read goes on after the last row it got until nothing
//! was left out, so SQLite never builds a text near its limit (1 GB) whatever the rows hold.
//! [`packed_whole_sql`] packs a small page whole, without the budget's cost.

use sqlx::{AnyConnection, Row};

use tributary_core::AccountId;

use super::{AnyQuery, page_query};
use crate::{Result, StoreError};

/// About how many bytes one packing holds (counted in characters).
const BUDGET: i64 = 32 << 20;

/// A column of a packed read.
pub(super) enum Column {
    Int(&'static str),
    Text(&'static str),
}

/// The packed read of `rows`: a query that selects a unique, ascending `ord` (where a read
/// goes on from) and the named `columns`, and keeps only the rows whose `ord` is past the
/// value its caller binds for that. The result is one row: the packing of the rows in `ord`
/// order up to the budget, the `ord` of the last one packed, and how many were left out.
pub(super) fn packed_sql(rows: &str, columns: &[Column]) -> String {
    packed_within(rows, columns, Some(BUDGET))
}

/// [`packed_sql`] without the budget, for pages small enough to pack whole (the budget's
/// running total doubles SQLite's work: a recompute's profile scan took 5.8 s with it against
/// 4.8 s without, BENCHMARKS.md).
pub(super) fn packed_whole_sql(rows: &str, columns: &[Column]) -> String {
    packed_within(rows, columns, None)
}

fn packed_within(rows: &str, columns: &[Column], budget: Option<i64>) -> String {
    let packed: Vec<String> = columns
        .iter()
        .map(|c| match c {
            Column::Int(name) => format!("ifnull({name}, 'n') || ' '"),
            Column::Text(name) => format!("length(CAST({name} AS BLOB)) || ':' || {name}"),
        })
        .collect();
    let packed = packed.join(" || ");
    let Some(budget) = budget else {
        return format!(
            "SELECT group_concat(packed, ''), max(ord), 0
             FROM (SELECT {packed} AS packed, ord FROM ({rows}))"
        );
    };
    format!(
        "SELECT group_concat(packed, '') FILTER (WHERE before < {budget}),
                max(ord) FILTER (WHERE before < {budget}),
                count(*) FILTER (WHERE before >= {budget})
         FROM (SELECT packed, ord,
                      sum(length(packed)) OVER (ORDER BY ord ROWS UNBOUNDED PRECEDING)
                          - length(packed) AS before
               FROM (SELECT {packed} AS packed, ord FROM ({rows})))"
    )
}

/// Runs a packed read to its end on `conn`: `query(after, read)` is the query of
/// [`packed_sql`] or [`packed_whole_sql`] for the rows past `ord` `after`, given `read` rows
/// so far; it runs first with `first`. `row` unpacks one row.
async fn read_all<'q, T>(
    conn: &mut AnyConnection,
    what: &'static str,
    first: i64,
    mut query: impl FnMut(i64, usize) -> AnyQuery<'q>,
    mut row: impl FnMut(&mut Unpacker<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    let mut after = first;
    loop {
        let result = query(after, out.len()).fetch_one(&mut *conn).await?;
        let packed: Option<String> = result.try_get(0)?;
        let last: Option<i64> = result.try_get(1)?;
        let left_out: i64 = result.try_get(2)?;
        let mut rows = Unpacker {
            rest: packed.as_deref().unwrap_or(""),
            what,
        };
        while !rows.rest.is_empty() {
            out.push(row(&mut rows)?);
        }
        if left_out == 0 {
            return Ok(out);
        }
        // Each read packs at least one row past `after`, so this ends.
        match last {
            Some(last) if last > after => after = last,
            _ => {
                return Err(StoreError::Corrupt(format!(
                    "packed {what}: a read left rows out but got none past {after}"
                )));
            }
        }
    }
}

/// A page of an account's rows on `conn`, packed by `sql` (from [`packed_sql`] or
/// [`packed_whole_sql`] over a [`page_query`] whose `ord` is the position a page starts after),
/// in the order of `ord`, which `ord_of` gives for an unpacked row.
pub(super) async fn read_page<T>(
    conn: &mut AnyConnection,
    what: &'static str,
    sql: &str,
    (aid, after, limit): (AccountId, i64, u32),
    row: impl FnMut(&mut Unpacker<'_>) -> Result<T>,
    ord_of: impl Fn(&T) -> i64,
) -> Result<Vec<T>> {
    let query = |after, read: usize| {
        let left = limit.saturating_sub(u32::try_from(read).unwrap_or(u32::MAX));
        page_query(sql.to_owned(), aid, after, left)
    };
    let mut page = read_all(conn, what, after, query, row).await?;
    if !page.is_sorted_by_key(&ord_of) {
        page.sort_by_key(ord_of);
    }
    Ok(page)
}

/// The rows an account has for the elements of `list` (a JSON array, bound at `$1`), packed by
/// `sql`, whose `ord` is the element's index (`CAST(j.key AS INTEGER)`), kept past `$3`; the
/// account is bound at `$2`.
pub(super) async fn read_listed<T>(
    conn: &mut AnyConnection,
    what: &'static str,
    sql: &str,
    (aid, list): (AccountId, &str),
    row: impl FnMut(&mut Unpacker<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let query = |after, _| {
        sqlx::query(sqlx::AssertSqlSafe(sql.to_owned()))
            .bind(list.to_owned())
            .bind(aid)
            .bind(after)
    };
    read_all(conn, what, -1, query, row).await
}

/// Reads the columns of packed rows, in order.
pub(super) struct Unpacker<'a> {
    rest: &'a str,
    what: &'static str,
}

impl<'a> Unpacker<'a> {
    fn corrupt(&self, what: String) -> StoreError {
        StoreError::Corrupt(format!("packed {}: {what}", self.what))
    }

    /// An integer column that may be NULL.
    pub(super) fn nullable(&mut self, name: &str) -> Result<Option<i64>> {
        let (text, rest) = self
            .rest
            .split_once(' ')
            .ok_or_else(|| self.corrupt(format!("no {name}")))?;
        self.rest = rest;
        if text == "n" {
            return Ok(None);
        }
        text.parse()
            .map(Some)
            .map_err(|_| self.corrupt(format!("{name} is {text:?}")))
    }

    pub(super) fn int(&mut self, name: &str) -> Result<i64> {
        self.nullable(name)?
            .ok_or_else(|| self.corrupt(format!("{name} is NULL")))
    }

    pub(super) fn text(&mut self, name: &str) -> Result<&'a str> {
        let (len, rest) = self
            .rest
            .split_once(':')
            .ok_or_else(|| self.corrupt(format!("no length of {name}")))?;
        let len: usize = len
            .parse()
            .map_err(|_| self.corrupt(format!("{name} has length {len:?}")))?;
        let text = rest
            .get(..len)
            .ok_or_else(|| self.corrupt(format!("{name} shorter than {len} bytes")))?;
        self.rest = &rest[len..];
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpack(packed: &str) -> Result<Vec<(i64, Option<i64>, String)>> {
        let mut rows = Unpacker {
            rest: packed,
            what: "test rows",
        };
        let mut out = Vec::new();
        while !rows.rest.is_empty() {
            out.push((
                rows.int("id")?,
                rows.nullable("next")?,
                rows.text("state")?.to_string(),
            ));
        }
        Ok(out)
    }

    #[test]
    fn packed_rows_unpack_whatever_their_texts_hold() {
        let texts = [r#"{"a":"x: 1 2"}"#, r#"{"é":"ü€"}"#, ""];
        let mut packed = String::new();
        for (i, s) in texts.iter().enumerate() {
            let next = if i == 1 { "-5".to_string() } else { "n".into() };
            packed.push_str(&format!("{} {next} {}:{s}", i + 1, s.len()));
        }
        assert_eq!(
            unpack(&packed).expect("unpacks"),
            vec![
                (1, None, texts[0].to_string()),
                (2, Some(-5), texts[1].to_string()),
                (3, None, texts[2].to_string())
            ]
        );
    }

    /// A read past the budget goes on after the last row it got, until it has every row, in
    /// order, whatever their texts hold (lengths in bytes, the budget in characters).
    #[tokio::test]
    async fn a_read_past_the_budget_goes_on_where_it_stopped() {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, next INTEGER, state TEXT NOT NULL);
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
             INSERT INTO t SELECT i, CASE WHEN i % 3 = 0 THEN NULL ELSE -i END,
                                  replace(hex(zeroblob(40 + i % 7)), '00', 'é:1 ')
             FROM n",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        let sql = packed_within(
            "SELECT id AS ord, id, next, state FROM t WHERE id > $1",
            &[
                Column::Int("id"),
                Column::Int("next"),
                Column::Text("state"),
            ],
            Some(1_000),
        );
        let mut queries = 0;
        let rows = read_all(
            &mut conn,
            "test rows",
            0,
            |after, _| {
                queries += 1;
                sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(after)
            },
            |r| {
                Ok((
                    r.int("id")?,
                    r.nullable("next")?,
                    r.text("state")?.to_string(),
                ))
            },
        )
        .await
        .unwrap();
        let expected: Vec<(i64, Option<i64>, String)> = (1..=100)
            .map(|i| {
                let next = (i % 3 != 0).then_some(-i);
                (i, next, "é:1 ".repeat(40 + i as usize % 7))
            })
            .collect();
        assert_eq!(rows, expected);
        assert!(queries > 10, "{queries} packings of about 1,000 characters");
    }

    /// A page comes in `ord` order even when its rows' query gives them in another.
    #[tokio::test]
    async fn a_page_comes_in_ord_order() {
        use sqlx::Connection;
        sqlx::any::install_default_drivers();
        let mut conn = AnyConnection::connect("sqlite::memory:").await.unwrap();
        let rows = "SELECT value AS ord, value AS id FROM json_each('[1,2,3,4,5]')
                    WHERE $1 = $1 AND value > $2 ORDER BY value DESC LIMIT $3";
        for sql in [
            packed_whole_sql(rows, &[Column::Int("id")]),
            packed_sql(rows, &[Column::Int("id")]),
        ] {
            let ids = read_page(
                &mut conn,
                "test rows",
                &sql,
                (1, 0, 10),
                |r| r.int("id"),
                |id| *id,
            )
            .await
            .unwrap();
            assert_eq!(ids, vec![1, 2, 3, 4, 5], "{sql}");
        }
    }

    #[test]
    fn damaged_packing_is_an_error() {
        for bad in [
            "1 n 99:{}",
            "1 n:{}",
            "x n 2:{}",
            "1 n 2",
            "1 n 1:é",
            "n n 0:",
        ] {
            assert!(unpack(bad).is_err(), "{bad:?}");
        }
    }
}
