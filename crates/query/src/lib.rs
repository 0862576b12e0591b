//! LQL and FilterQL, the two languages Tributary shares with Lytics: LQL maps streams into
//! user fields, FilterQL defines audiences. A library with no I/O.
//!
//! - `lexer`, `parser`: text to [`ast`], with errors that say what was expected and where.
//! - `printer`: the canonical text of a tree (`parse(print(ast)) == ast`).
//! - `eval`: FilterQL semantics over any [`eval::Fields`]; `boundary`: when a date-relative
//!   filter can next change its result.
//! - `functions`: the function catalogue; `dates`: date parsing and date math.
//! - `lql`: compiles an LQL statement into a mapping plan and applies it to events.

pub mod ast;
pub mod boundary;
pub mod dates;
pub mod eval;
pub mod functions;
mod lexer;
pub mod lql;
mod parser;
mod printer;
pub mod value;

pub use ast::{Expr, FilterStatement, LqlStatement};
pub use eval::{EvalContext, Fields, Includer, evaluate_bool, matches};
pub use parser::{parse_expr, parse_filter, parse_filterql, parse_lql};
pub use value::Value;

/// A syntax error: what was expected, and the line and column (1-based) where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("line {line}, column {column}: {message}")]
pub struct ParseError {
    pub line: u32,
    pub column: u32,
    pub message: String,
}

impl ParseError {
    pub fn new(line: u32, column: u32, message: impl Into<String>) -> Self {
        ParseError {
            line,
            column,
            message: message.into(),
        }
    }
}

/// Fuzz entry point for FilterQL (used by `fuzz/` and the bounded fuzz test): parsing any
/// input must not panic, and whatever parses must print to text that parses to the same tree.
pub fn fuzz_filterql(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(statements) = parse_filterql(text)
    {
        for st in statements {
            let printed = st.to_string();
            let again = parse_filter(&printed)
                .unwrap_or_else(|e| panic!("printed statement does not parse: {e}\n{printed}"));
            assert_eq!(again, st, "round trip changed the statement:\n{printed}");
        }
    }
}

/// Fuzz entry point for LQL; see [`fuzz_filterql`].
pub fn fuzz_lql(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(statements) = parse_lql(text)
    {
        for st in statements {
            let printed = st.to_string();
            let again = parse_lql(&printed)
                .unwrap_or_else(|e| panic!("printed statement does not parse: {e}\n{printed}"));
            assert_eq!(
                again,
                vec![st],
                "round trip changed the statement:\n{printed}"
            );
            let _ = lql::compile(&again[0]);
        }
    }
}
