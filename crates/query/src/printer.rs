//! The canonical printer: `Display` for statements and expressions. Output parses back to the
//! same tree (`parse(print(ast)) == ast`), and is what the API stores and shows.

use std::fmt::{self, Display, Formatter, Write};

use crate::ast::*;
use crate::parser::is_keyword;
use crate::value::Value;

fn simple_ident(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_' || c == '@' || c == '$')
        && chars.all(|c| c.is_alphanumeric() || c == '_' || c == '@' || c == '$')
}

/// A field path: plain where possible, back-quoted elements otherwise.
pub fn write_path(f: &mut impl Write, path: &[String]) -> fmt::Result {
    let plain = path.iter().all(|p| simple_ident(p)) && !(path.len() == 1 && is_keyword(&path[0]));
    if plain {
        return f.write_str(&path.join("."));
    }
    for (i, part) in path.iter().enumerate() {
        if i > 0 {
            f.write_char('.')?;
        }
        write!(f, "`{part}`")?;
    }
    Ok(())
}

/// A name (AS, BY, ALIAS, FROM): plain when it lexes back as one word, else back-quoted.
fn write_name(f: &mut impl Write, name: &str) -> fmt::Result {
    if simple_ident(name) && !is_keyword(name) {
        f.write_str(name)
    } else {
        write!(f, "`{name}`")
    }
}

pub fn write_string(f: &mut impl Write, s: &str) -> fmt::Result {
    f.write_char('"')?;
    for c in s.chars() {
        match c {
            '"' => f.write_str("\\\"")?,
            '\\' => f.write_str("\\\\")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            '\r' => f.write_str("\\r")?,
            c => f.write_char(c)?,
        }
    }
    f.write_char('"')
}

impl Display for Literal {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Literal::DateMath(d) => write!(f, "\"{d}\""),
            Literal::Value(Value::String(s)) => write_string(f, s),
            Literal::Value(Value::Int(i)) => write!(f, "{i}"),
            Literal::Value(Value::Number(x)) => write!(f, "{x:?}"),
            Literal::Value(Value::Bool(b)) => f.write_str(if *b { "true" } else { "false" }),
            Literal::Value(Value::Null) => f.write_str("NULL"),
            // Not produced by the parser; printed as a string so the output still parses.
            Literal::Value(other) => write_string(f, &other.to_text()),
        }
    }
}

fn write_list(f: &mut Formatter<'_>, keyword: &str, items: &[Expr]) -> fmt::Result {
    write!(f, "{keyword} ( ")?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    f.write_str(" )")
}

impl Display for ListSource {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            ListSource::Field(path) => write_path(f, path),
            ListSource::Items(items) => {
                f.write_char('(')?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_char(')')
            }
        }
    }
}

/// Operands of infix predicates are printed so that they parse back as one operand.
struct Operand<'a>(&'a Expr);

impl Display for Operand<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            e @ (Expr::Literal(_) | Expr::Field(_) | Expr::Call(..) | Expr::Arith(..)) => {
                write!(f, "{e}")
            }
            other => write!(f, "({other})"),
        }
    }
}

impl Display for Expr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Literal(l) => write!(f, "{l}"),
            Expr::Field(path) => write_path(f, path),
            Expr::Compare(op, l, r) => write!(f, "{} {} {}", Operand(l), op.as_str(), Operand(r)),
            Expr::Arith(op, l, r) => write!(f, "({} {} {})", Operand(l), op.as_str(), Operand(r)),
            Expr::And(items) => write_list(f, "AND", items),
            Expr::Or(items) => write_list(f, "OR", items),
            Expr::Not(inner) => write!(f, "NOT ({inner})"),
            Expr::Exists(path) => {
                f.write_str("EXISTS ")?;
                write_path(f, path)
            }
            Expr::In(l, list) => write!(f, "{} IN {list}", Operand(l)),
            Expr::Intersects(l, list) => write!(f, "{} INTERSECTS {list}", Operand(l)),
            Expr::Contains(l, r) => write!(f, "{} CONTAINS {}", Operand(l), Operand(r)),
            Expr::Like(l, r) => write!(f, "{} LIKE {}", Operand(l), Operand(r)),
            Expr::Between(x, lo, hi) => write!(
                f,
                "{} BETWEEN {} AND {}",
                Operand(x),
                Operand(lo),
                Operand(hi)
            ),
            Expr::Include(name) => {
                f.write_str("INCLUDE ")?;
                write_name(f, name)
            }
            Expr::MatchAll => f.write_char('*'),
            Expr::Call(name, args) if name == "ifcase" => {
                f.write_str("ifcase(")?;
                let mut pairs = args.chunks_exact(2);
                let mut first = true;
                for pair in pairs.by_ref() {
                    if !first {
                        f.write_str(", ")?;
                    }
                    first = false;
                    write!(f, "{} IF {}", Operand(&pair[1]), pair[0])?;
                }
                if let Some(default) = pairs.remainder().first() {
                    if !first {
                        f.write_str(", ")?;
                    }
                    write!(f, "{default}")?;
                }
                f.write_char(')')
            }
            Expr::Call(name, args) => {
                write!(f, "{name}(")?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_char(')')
            }
        }
    }
}

impl Display for Column {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)?;
        if let Some(a) = &self.alias {
            f.write_str(" AS ")?;
            write_name(f, a)?;
        }
        if let Some(g) = &self.guard {
            write!(f, " IF {g}")?;
        }
        if let Some(s) = &self.short_desc {
            f.write_str(" SHORTDESC ")?;
            write_string(f, s)?;
        }
        if let Some(s) = &self.long_desc {
            f.write_str(" LONGDESC ")?;
            write_string(f, s)?;
        }
        if let Some(k) = self.kind {
            write!(f, " KIND {}", k.as_str())?;
        }
        if let Some(m) = self.merge_op {
            write!(f, " MERGEOP {}", m.as_str())?;
        }
        Ok(())
    }
}

fn write_columns(f: &mut Formatter<'_>, columns: &[Column]) -> fmt::Result {
    for (i, c) in columns.iter().enumerate() {
        f.write_str(if i == 0 { "\n    " } else { ",\n    " })?;
        write!(f, "{c}")?;
    }
    Ok(())
}

impl Display for FilterStatement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.description {
            for line in d.lines() {
                writeln!(f, "-- {line}")?;
            }
        }
        if !self.columns.is_empty() {
            f.write_str("SELECT")?;
            write_columns(f, &self.columns)?;
            f.write_char('\n')?;
        }
        write!(f, "FILTER {}", self.filter)?;
        if let Some(from) = &self.from {
            f.write_str("\nFROM ")?;
            write_name(f, from)?;
        }
        if let Some(limit) = self.limit {
            write!(f, "\nLIMIT {limit}")?;
        }
        if !self.with.is_empty() {
            f.write_str("\nWITH ")?;
            for (i, (k, v)) in self.with.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_name(f, k)?;
                write!(f, " = {v}")?;
            }
        }
        if let Some(alias) = &self.alias {
            f.write_str("\nALIAS ")?;
            write_name(f, alias)?;
        }
        Ok(())
    }
}

impl Display for LqlStatement {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        f.write_str("SELECT")?;
        write_columns(f, &self.columns)?;
        f.write_str("\nFROM ")?;
        write_name(f, &self.from)?;
        f.write_str("\nINTO ")?;
        write_name(f, &self.into)?;
        f.write_str("\nBY ")?;
        for (i, b) in self.by.iter().enumerate() {
            if i > 0 {
                f.write_str(" OR ")?;
            }
            write_name(f, b)?;
        }
        if let Some(w) = &self.filter {
            write!(f, "\nWHERE {w}")?;
        }
        f.write_str("\nALIAS ")?;
        write_name(f, &self.alias)
    }
}
