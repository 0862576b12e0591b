//! Recursive-descent parser for both languages. Expression precedence, loosest first:
//! OR, AND, NOT, predicates (comparisons, IN, LIKE, BETWEEN, ...), + -, * / %, unary, primary.
//! FilterQL's prefix lists `AND ( a, b )` / `OR ( ... )` (items separated by commas or line
//! breaks, trailing comma allowed) parse to the same `And`/`Or` nodes as infix `a AND b`.

use crate::ParseError;
use crate::ast::*;
use crate::dates::{DateMath, looks_like_date_math};
use crate::functions;
use crate::lexer::{Tok, Token, lex};
use crate::value::Value;

/// Words that end an expression; a field with one of these names must be back-quoted.
pub(crate) const KEYWORDS: &[&str] = &[
    "and",
    "or",
    "not",
    "in",
    "intersects",
    "contains",
    "like",
    "between",
    "exists",
    "include",
    "from",
    "limit",
    "with",
    "alias",
    "as",
    "if",
    "shortdesc",
    "longdesc",
    "kind",
    "mergeop",
    "into",
    "by",
    "where",
    "filter",
    "select",
    "true",
    "false",
    "null",
];

pub(crate) fn is_keyword(word: &str) -> bool {
    KEYWORDS.iter().any(|k| k.eq_ignore_ascii_case(word))
}

/// Parses FilterQL text: one or more statements separated by `;`.
pub fn parse_filterql(src: &str) -> Result<Vec<FilterStatement>, ParseError> {
    let lexed = lex(src)?;
    let mut p = Parser::new(lexed.tokens);
    let mut statements = Vec::new();
    let mut description =
        (!lexed.leading_comments.is_empty()).then(|| lexed.leading_comments.join("\n"));
    loop {
        while p.eat(&Tok::Semicolon) {}
        if p.at_eof() {
            break;
        }
        let mut st = p.filter_statement()?;
        st.description = description.take();
        statements.push(st);
        if !p.at_eof() && !p.eat(&Tok::Semicolon) {
            return Err(p.expected("the end of the statement or ';'"));
        }
    }
    if statements.is_empty() {
        return Err(ParseError::new(
            1,
            1,
            "expected a FilterQL statement (FILTER ...), found nothing",
        ));
    }
    Ok(statements)
}

/// Parses exactly one FilterQL statement.
pub fn parse_filter(src: &str) -> Result<FilterStatement, ParseError> {
    let mut all = parse_filterql(src)?;
    if all.len() > 1 {
        return Err(ParseError::new(
            1,
            1,
            format!("expected one FilterQL statement, found {}", all.len()),
        ));
    }
    Ok(all.remove(0))
}

/// Parses LQL text: one or more `SELECT ... ALIAS name` statements.
pub fn parse_lql(src: &str) -> Result<Vec<LqlStatement>, ParseError> {
    let lexed = lex(src)?;
    let mut p = Parser::new(lexed.tokens);
    let mut statements = Vec::new();
    loop {
        while p.eat(&Tok::Semicolon) {}
        if p.at_eof() {
            break;
        }
        statements.push(p.lql_statement()?);
    }
    if statements.is_empty() {
        return Err(ParseError::new(
            1,
            1,
            "expected an LQL statement (SELECT ...), found nothing",
        ));
    }
    Ok(statements)
}

/// Parses a single expression (for tests and tools).
pub fn parse_expr(src: &str) -> Result<Expr, ParseError> {
    let lexed = lex(src)?;
    let mut p = Parser::new(lexed.tokens);
    let e = p.expr()?;
    if !p.at_eof() {
        return Err(p.expected("the end of the expression"));
    }
    Ok(e)
}

/// Deepest nesting of expressions. Each level is a chain of recursive calls; at 200 levels a
/// debug build came within a few hundred KB of a 2 MB thread stack (a worker thread's), so a
/// hostile statement could have crashed the server. 64 leaves ample room, and real statements
/// nest a handful of levels.
const MAX_DEPTH: u32 = 64;

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    /// Aggregate functions (count, set, ...) are allowed at the top of an LQL column.
    aggregates_allowed: bool,
    depth: u32,
}

impl Parser {
    fn new(tokens: Vec<Token>) -> Self {
        Parser {
            tokens,
            pos: 0,
            aggregates_allowed: false,
            depth: 0,
        }
    }

    fn peek(&self) -> &Token {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, n: usize) -> &Tok {
        &self.tokens[(self.pos + n).min(self.tokens.len() - 1)].tok
    }

    fn advance(&mut self) -> Token {
        let t = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        t
    }

    fn at_eof(&self) -> bool {
        self.peek().tok == Tok::Eof
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if &self.peek().tok == tok {
            self.advance();
            true
        } else {
            false
        }
    }

    fn is_kw_at(&self, n: usize, kw: &str) -> bool {
        matches!(self.peek_at(n), Tok::Ident(w) if w.eq_ignore_ascii_case(kw))
    }

    fn is_kw(&self, kw: &str) -> bool {
        self.is_kw_at(0, kw)
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.is_kw(kw) {
            self.advance();
            true
        } else {
            false
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), ParseError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.expected(&kw.to_ascii_uppercase()))
        }
    }

    fn expect(&mut self, tok: &Tok, what: &str) -> Result<(), ParseError> {
        if self.eat(tok) {
            Ok(())
        } else {
            Err(self.expected(what))
        }
    }

    /// The pattern after LIKE; a literal one may have at most `MAX_LIKE_PATTERN` characters.
    /// Its own function, so the recursive comparison parser's frame stays small (deep nesting
    /// must end in an error, not a stack overflow).
    #[inline(never)]
    fn like_pattern(&mut self) -> Result<Expr, ParseError> {
        let (line, col) = {
            let t = self.peek();
            (t.line, t.col)
        };
        let pattern = self.additive()?;
        if let Expr::Literal(Literal::Value(Value::String(text))) = &pattern
            && text.chars().count() > crate::eval::MAX_LIKE_PATTERN
        {
            return Err(ParseError::new(
                line,
                col,
                format!(
                    "a LIKE pattern may have at most {} characters",
                    crate::eval::MAX_LIKE_PATTERN
                ),
            ));
        }
        Ok(pattern)
    }

    fn error_here(&self, message: impl Into<String>) -> ParseError {
        let t = self.peek();
        ParseError::new(t.line, t.col, message)
    }

    fn expected(&self, what: &str) -> ParseError {
        self.error_here(format!(
            "expected {what}, found {}",
            describe(&self.peek().tok)
        ))
    }

    fn enter(&mut self) -> Result<(), ParseError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error_here("expression is nested too deeply"));
        }
        Ok(())
    }

    // ---- statements ----

    fn filter_statement(&mut self) -> Result<FilterStatement, ParseError> {
        let mut columns = Vec::new();
        if self.eat_kw("select") {
            columns = self.columns()?;
            if self.eat_kw("from") {
                // `SELECT cols FROM user FILTER ...`: the FROM may come before the filter.
                let from = self.name("a table name after FROM")?;
                return self.filter_rest(columns, Some(from));
            }
        }
        self.filter_rest(columns, None)
    }

    fn filter_rest(
        &mut self,
        columns: Vec<Column>,
        mut from: Option<String>,
    ) -> Result<FilterStatement, ParseError> {
        if !(self.eat_kw("filter") || self.eat_kw("where")) {
            return Err(self.expected("FILTER or WHERE"));
        }
        let filter = self.phrase()?;
        let (mut limit, mut with, mut alias) = (None, Vec::new(), None);
        loop {
            if from.is_none() && self.eat_kw("from") {
                from = Some(self.name("a table name after FROM")?);
            } else if limit.is_none() && self.eat_kw("limit") {
                limit = Some(match self.advance().tok {
                    Tok::Int(n) => n,
                    _ => {
                        self.pos -= 1;
                        return Err(self.expected("an integer after LIMIT"));
                    }
                });
            } else if with.is_empty() && self.eat_kw("with") {
                loop {
                    let key = self.with_key()?;
                    if !(self.eat(&Tok::Op("=")) || self.eat(&Tok::Op("=="))) {
                        return Err(self.expected("'=' in WITH"));
                    }
                    let value = match self.unary()? {
                        Expr::Literal(l) => l,
                        _ => return Err(self.error_here("WITH values must be literals")),
                    };
                    with.push((key, value));
                    if !self.eat(&Tok::Comma) {
                        break;
                    }
                }
            } else if alias.is_none() && self.eat_kw("alias") {
                alias = Some(self.alias_name()?.to_lowercase());
            } else {
                break;
            }
        }
        Ok(FilterStatement {
            description: None,
            columns,
            filter,
            from,
            limit,
            with,
            alias,
        })
    }

    fn lql_statement(&mut self) -> Result<LqlStatement, ParseError> {
        self.expect_kw("select")?;
        let columns = self.columns()?;
        self.expect_kw("from")?;
        let from = self.name("a stream name after FROM")?;
        self.expect_kw("into")?;
        let into = self.name("a table name after INTO (usually user)")?;
        self.expect_kw("by")?;
        let mut by = vec![self.name("an identity field after BY")?];
        while self.eat_kw("or") {
            by.push(self.name("an identity field after OR")?);
        }
        let filter = if self.eat_kw("where") {
            Some(self.expr()?)
        } else {
            None
        };
        self.expect_kw("alias")?;
        let alias = self.alias_name()?;
        Ok(LqlStatement {
            columns,
            from,
            into,
            by,
            filter,
            alias,
        })
    }

    fn columns(&mut self) -> Result<Vec<Column>, ParseError> {
        let mut columns = vec![self.column()?];
        while self.eat(&Tok::Comma) {
            columns.push(self.column()?);
        }
        Ok(columns)
    }

    fn column(&mut self) -> Result<Column, ParseError> {
        self.aggregates_allowed = true;
        let expr = self.expr();
        self.aggregates_allowed = false;
        let mut c = Column {
            expr: expr?,
            alias: None,
            guard: None,
            short_desc: None,
            long_desc: None,
            kind: None,
            merge_op: None,
        };
        loop {
            if c.alias.is_none() && self.eat_kw("as") {
                c.alias = Some(self.name("a field name after AS")?);
            } else if c.guard.is_none() && self.eat_kw("if") {
                let condition = self.expr()?;
                if self.eat_kw("else") {
                    // `V IF cond ELSE W` is a value, not a guard.
                    let otherwise = self.expr()?;
                    let value = std::mem::replace(&mut c.expr, Expr::MatchAll);
                    c.expr = Expr::Call("ifelse".into(), vec![condition, value, otherwise]);
                } else {
                    c.guard = Some(condition);
                }
            } else if c.short_desc.is_none() && self.eat_kw("shortdesc") {
                c.short_desc = Some(self.string("a string after SHORTDESC")?);
            } else if c.long_desc.is_none() && self.eat_kw("longdesc") {
                c.long_desc = Some(self.string("a string after LONGDESC")?);
            } else if c.kind.is_none() && self.eat_kw("kind") {
                c.kind = Some(self.kind()?);
            } else if c.merge_op.is_none() && self.eat_kw("mergeop") {
                let t = self.peek().clone();
                let word = self.name("a merge operation after MERGEOP")?;
                c.merge_op = Some(MergeOp::parse(&word).ok_or_else(|| {
                    ParseError::new(
                        t.line,
                        t.col,
                        format!(
                            "unknown MERGEOP {word:?}; use one of {}",
                            MergeOp::ALL.map(MergeOp::as_str).join(", ")
                        ),
                    )
                })?);
            } else {
                return Ok(c);
            }
        }
    }

    fn kind(&mut self) -> Result<Kind, ParseError> {
        let start = self.peek().clone();
        let mut text = String::new();
        loop {
            match &self.peek().tok {
                Tok::LBracket => text.push('['),
                Tok::RBracket => text.push(']'),
                Tok::Ident(w) if text.is_empty() || text.ends_with(['[', ']']) => text.push_str(w),
                _ => break,
            }
            self.advance();
        }
        Kind::parse(&text).ok_or_else(|| {
            ParseError::new(
                start.line,
                start.col,
                format!(
                    "unknown KIND {text:?}; use one of {}",
                    Kind::ALL.map(Kind::as_str).join(", ")
                ),
            )
        })
    }

    fn string(&mut self, what: &str) -> Result<String, ParseError> {
        match &self.peek().tok {
            Tok::Str(s) => {
                let s = s.clone();
                self.advance();
                Ok(s)
            }
            _ => Err(self.expected(what)),
        }
    }

    /// An identifier (plain or back-quoted) used as a name, not a field path.
    fn name(&mut self, what: &str) -> Result<String, ParseError> {
        match &self.peek().tok {
            Tok::Ident(w) if !is_keyword(w) => {
                let w = w.clone();
                self.advance();
                Ok(w)
            }
            Tok::QuotedIdent(parts) => {
                let w = parts.join(".");
                self.advance();
                Ok(w)
            }
            _ => Err(self.expected(what)),
        }
    }

    /// A property name in WITH: any word, keywords included (Lytics writes `WITH kind =
    /// "aspect"`), since only `=` may follow it there.
    fn with_key(&mut self) -> Result<String, ParseError> {
        if let Tok::Ident(w) = &self.peek().tok {
            let w = w.clone();
            self.advance();
            return Ok(w);
        }
        self.name("a name in WITH")
    }

    fn alias_name(&mut self) -> Result<String, ParseError> {
        if let Tok::Str(s) = &self.peek().tok {
            let s = s.clone();
            self.advance();
            return Ok(s);
        }
        self.name("a name after ALIAS")
    }

    // ---- expressions ----

    /// A FilterQL phrase: `*`, `match_all`, or an expression.
    fn phrase(&mut self) -> Result<Expr, ParseError> {
        if self.peek().tok == Tok::Op("*")
            && !matches!(self.peek_at(1), Tok::Int(_) | Tok::Float(_))
        {
            self.advance();
            return Ok(Expr::MatchAll);
        }
        self.expr()
    }

    pub(crate) fn expr(&mut self) -> Result<Expr, ParseError> {
        self.enter()?;
        let mut items = vec![self.and()?];
        while self.eat_kw("or") {
            items.push(self.and()?);
        }
        self.depth -= 1;
        Ok(flatten(items, false))
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut items = vec![self.not()?];
        while self.eat_kw("and") {
            items.push(self.not()?);
        }
        Ok(flatten(items, true))
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        if self.eat_kw("not") || self.eat(&Tok::Op("!")) {
            self.enter()?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, ParseError> {
        let lhs = self.additive()?;
        let negated = self.is_kw("not")
            && ["in", "intersects", "contains", "like", "between"]
                .iter()
                .any(|k| self.is_kw_at(1, k));
        if negated {
            self.advance();
        }
        let cmp = match &self.peek().tok {
            Tok::Op("==" | "=") => Some(CmpOp::Eq),
            Tok::Op("!=") => Some(CmpOp::Ne),
            Tok::Op(">") => Some(CmpOp::Gt),
            Tok::Op(">=") => Some(CmpOp::Ge),
            Tok::Op("<") => Some(CmpOp::Lt),
            Tok::Op("<=") => Some(CmpOp::Le),
            _ => None,
        };
        let e = if let Some(op) = cmp {
            self.advance();
            let rhs = self.additive()?;
            // The literal goes on the right: `5 < x` is `x > 5`.
            if matches!(lhs, Expr::Literal(_)) && !matches!(rhs, Expr::Literal(_)) {
                Expr::Compare(op.flipped(), Box::new(rhs), Box::new(lhs))
            } else {
                Expr::Compare(op, Box::new(lhs), Box::new(rhs))
            }
        } else if self.eat_kw("in") {
            Expr::In(Box::new(lhs), self.list_source("IN")?)
        } else if self.eat_kw("intersects") {
            Expr::Intersects(Box::new(lhs), self.list_source("INTERSECTS")?)
        } else if self.eat_kw("contains") {
            Expr::Contains(Box::new(lhs), Box::new(self.additive()?))
        } else if self.eat_kw("like") {
            Expr::Like(Box::new(lhs), Box::new(self.like_pattern()?))
        } else if self.eat_kw("between") {
            let lo = self.additive()?;
            self.expect_kw("and")?;
            let hi = self.additive()?;
            Expr::Between(Box::new(lhs), Box::new(lo), Box::new(hi))
        } else {
            if negated {
                return Err(self.expected("IN, INTERSECTS, CONTAINS, LIKE or BETWEEN after NOT"));
            }
            return Ok(lhs);
        };
        Ok(if negated { Expr::Not(Box::new(e)) } else { e })
    }

    fn list_source(&mut self, op: &str) -> Result<ListSource, ParseError> {
        if self.eat(&Tok::LParen) {
            let mut items = Vec::new();
            if !self.eat(&Tok::RParen) {
                loop {
                    items.push(self.additive()?);
                    if self.eat(&Tok::RParen) {
                        break;
                    }
                    self.expect(&Tok::Comma, "',' or ')' in the list")?;
                    if self.eat(&Tok::RParen) {
                        break;
                    }
                }
            }
            return Ok(ListSource::Items(items));
        }
        match self.field_path() {
            Some(path) => Ok(ListSource::Field(path)),
            None => Err(self.expected(&format!("a list in parentheses or a field after {op}"))),
        }
    }

    fn field_path(&mut self) -> Option<Vec<String>> {
        let path = match &self.peek().tok {
            Tok::Ident(w) if !is_keyword(w) => w.split('.').map(str::to_string).collect(),
            Tok::QuotedIdent(parts) => parts.clone(),
            _ => return None,
        };
        self.advance();
        Some(path)
    }

    fn additive(&mut self) -> Result<Expr, ParseError> {
        let mut lhs = self.multiplicative()?;
        loop {
            let op = match self.peek().tok {
                Tok::Op("+") => ArithOp::Add,
                Tok::Op("-") => ArithOp::Sub,
                _ => return Ok(lhs),
            };
            self.advance();
            let rhs = self.multiplicative()?;
            lhs = Expr::Arith(op, Box::new(lhs), Box::new(rhs));
        }
    }

    fn multiplicative(&mut self) -> Result<Expr, ParseError> {
        let mut lhs = self.unary()?;
        loop {
            let op = match self.peek().tok {
                Tok::Op("*") => ArithOp::Mul,
                Tok::Op("/") => ArithOp::Div,
                Tok::Op("%") => ArithOp::Mod,
                _ => return Ok(lhs),
            };
            self.advance();
            let rhs = self.unary()?;
            lhs = Expr::Arith(op, Box::new(lhs), Box::new(rhs));
        }
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        if self.peek().tok == Tok::Op("-") {
            self.advance();
            match self.peek().tok.clone() {
                Tok::Int(i) => {
                    self.advance();
                    return Ok(Expr::Literal(Literal::int(-i)));
                }
                Tok::BigInt(u) if u == i64::MIN.unsigned_abs() => {
                    self.advance();
                    return Ok(Expr::Literal(Literal::int(i64::MIN)));
                }
                Tok::Float(f) => {
                    self.advance();
                    return Ok(Expr::Literal(Literal::Value(Value::Number(-f))));
                }
                _ => {
                    self.enter()?;
                    let inner = self.unary()?;
                    self.depth -= 1;
                    return Ok(Expr::Arith(
                        ArithOp::Sub,
                        Box::new(Expr::Literal(Literal::int(0))),
                        Box::new(inner),
                    ));
                }
            }
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let token = self.peek().clone();
        match token.tok {
            Tok::Str(s) => {
                self.advance();
                if looks_like_date_math(&s) {
                    return DateMath::parse(&s)
                        .map(|d| Expr::Literal(Literal::DateMath(d)))
                        .map_err(|m| ParseError::new(token.line, token.col, m));
                }
                Ok(Expr::Literal(Literal::string(s)))
            }
            Tok::Int(i) => {
                self.advance();
                Ok(Expr::Literal(Literal::int(i)))
            }
            Tok::Float(f) => {
                self.advance();
                Ok(Expr::Literal(Literal::Value(Value::Number(f))))
            }
            Tok::BigInt(_) => Err(self.error_here("integer is too large")),
            Tok::LParen => {
                self.advance();
                let e = self.expr()?;
                self.expect(&Tok::RParen, "')'")?;
                Ok(e)
            }
            Tok::Op("*") => {
                self.advance();
                Ok(Expr::MatchAll)
            }
            Tok::QuotedIdent(parts) => {
                self.advance();
                Ok(Expr::Field(parts))
            }
            Tok::Ident(ref word) => self.word(word.clone(), &token),
            _ => Err(self.expected("an expression")),
        }
    }

    fn word(&mut self, word: String, token: &Token) -> Result<Expr, ParseError> {
        let lower = word.to_ascii_lowercase();
        let call = self.peek_at(1) == &Tok::LParen;
        match lower.as_str() {
            "true" => {
                self.advance();
                Ok(Expr::Literal(Literal::Value(Value::Bool(true))))
            }
            "false" => {
                self.advance();
                Ok(Expr::Literal(Literal::Value(Value::Bool(false))))
            }
            "null" => {
                self.advance();
                Ok(Expr::Literal(Literal::Value(Value::Null)))
            }
            "match_all" => {
                self.advance();
                Ok(Expr::MatchAll)
            }
            "exists" if !call => {
                self.advance();
                self.field_path()
                    .map(Expr::Exists)
                    .ok_or_else(|| self.expected("a field after EXISTS"))
            }
            "include" => {
                self.advance();
                let name = match &self.peek().tok {
                    Tok::Str(s) => s.clone(),
                    Tok::Ident(w) if !is_keyword(w) => w.clone(),
                    Tok::QuotedIdent(p) => p.join("."),
                    _ => return Err(self.expected("an audience name after INCLUDE")),
                };
                self.advance();
                Ok(Expr::Include(name.to_lowercase()))
            }
            "and" | "or" if call => {
                self.advance();
                self.advance();
                self.enter()?;
                let mut items = Vec::new();
                loop {
                    if self.eat(&Tok::RParen) {
                        break;
                    }
                    items.push(self.phrase()?);
                    self.eat(&Tok::Comma);
                }
                self.depth -= 1;
                if items.is_empty() {
                    return Err(ParseError::new(
                        token.line,
                        token.col,
                        format!("{} ( ) needs at least one condition", lower.to_uppercase()),
                    ));
                }
                Ok(flatten(items, lower == "and"))
            }
            _ if call && functions::signature(&lower).is_some() => self.call(lower, token),
            _ if is_keyword(&lower) => Err(self.expected("an expression")),
            _ if call => self.call(lower, token),
            _ => {
                self.advance();
                Ok(Expr::Field(word.split('.').map(str::to_string).collect()))
            }
        }
    }

    fn call(&mut self, name: String, token: &Token) -> Result<Expr, ParseError> {
        let Some(sig) = functions::signature(&name) else {
            return Err(ParseError::new(
                token.line,
                token.col,
                format!("unknown function {name}()"),
            ));
        };
        if sig.aggregate && !self.aggregates_allowed {
            return Err(ParseError::new(
                token.line,
                token.col,
                format!("{name}() aggregates over events and is only allowed as an LQL column"),
            ));
        }
        let aggregates = std::mem::replace(&mut self.aggregates_allowed, false);
        self.advance();
        self.advance();
        self.enter()?;
        let mut args = Vec::new();
        if !self.eat(&Tok::RParen) {
            loop {
                let arg = self.expr()?;
                // ifcase(V1 IF c1, V2 IF c2, default) is stored as ifcase(c1, V1, c2, V2, default).
                if name == "ifcase" && self.eat_kw("if") {
                    args.push(self.expr()?);
                }
                args.push(arg);
                if self.eat(&Tok::RParen) {
                    break;
                }
                self.expect(&Tok::Comma, "',' or ')' in the arguments")?;
            }
        }
        self.depth -= 1;
        self.aggregates_allowed = aggregates;
        if args.len() < sig.min_args || sig.max_args.is_some_and(|m| args.len() > m) {
            let wanted = match sig.max_args {
                Some(m) if m == sig.min_args => format!("{m}"),
                Some(m) => format!("{} to {m}", sig.min_args),
                None => format!("at least {}", sig.min_args),
            };
            return Err(ParseError::new(
                token.line,
                token.col,
                format!("{name}() takes {wanted} argument(s), found {}", args.len()),
            ));
        }
        // `exists(x)` is `EXISTS x`.
        if name == "exists"
            && let [Expr::Field(path)] = args.as_slice()
        {
            return Ok(Expr::Exists(path.clone()));
        }
        Ok(Expr::Call(name, args))
    }
}

/// One item stays itself; nested lists of the same kind merge into one.
fn flatten(items: Vec<Expr>, and: bool) -> Expr {
    if items.len() == 1 {
        return items.into_iter().next().unwrap_or(Expr::MatchAll);
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Expr::And(inner) if and => out.extend(inner),
            Expr::Or(inner) if !and => out.extend(inner),
            other => out.push(other),
        }
    }
    if and { Expr::And(out) } else { Expr::Or(out) }
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Ident(w) if is_keyword(w) => format!("keyword {}", w.to_ascii_uppercase()),
        Tok::Ident(w) => format!("{w:?}"),
        Tok::QuotedIdent(p) => format!("`{}`", p.join("`.`")),
        Tok::Str(s) => format!("string {s:?}"),
        Tok::Int(i) => format!("number {i}"),
        Tok::BigInt(i) => format!("number {i}"),
        Tok::Float(f) => format!("number {f}"),
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::LBracket => "'['".into(),
        Tok::RBracket => "']'".into(),
        Tok::Comma => "','".into(),
        Tok::Semicolon => "';'".into(),
        Tok::Op(op) => format!("'{op}'"),
        Tok::Eof => "the end of the text".into(),
    }
}
