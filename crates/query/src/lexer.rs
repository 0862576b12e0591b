//! The lexer shared by LQL and FilterQL. Keywords are not tokens of their own: the parser
//! recognises them case-insensitively among identifiers, so a field may still be called `from`
//! when back-quoted.

use crate::ParseError;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A plain identifier (may contain dots: `user.city`), or a keyword.
    Ident(String),
    /// A back-quoted identifier path; each element was quoted or plain.
    QuotedIdent(Vec<String>),
    Str(String),
    Int(i64),
    /// Integer text too large for i64 (only valid after a minus sign: i64::MIN).
    BigInt(u64),
    Float(f64),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Semicolon,
    Op(&'static str),
    Eof,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub line: u32,
    pub col: u32,
}

pub struct Lexed {
    pub tokens: Vec<Token>,
    /// Comment text before the first token (a FilterQL statement's description).
    pub leading_comments: Vec<String>,
}

pub fn lex(src: &str) -> Result<Lexed, ParseError> {
    let mut lx = Lexer {
        chars: src.char_indices().peekable(),
        src,
        line: 1,
        col: 1,
    };
    let mut tokens = Vec::new();
    let mut leading_comments = Vec::new();
    loop {
        let comments = lx.skip_trivia()?;
        if tokens.is_empty() {
            leading_comments.extend(comments);
        }
        let (line, col) = (lx.line, lx.col);
        let Some(c) = lx.peek() else {
            tokens.push(Token {
                tok: Tok::Eof,
                line,
                col,
            });
            break;
        };
        let tok = match c {
            '(' => lx.single(Tok::LParen),
            ')' => lx.single(Tok::RParen),
            '[' => lx.single(Tok::LBracket),
            ']' => lx.single(Tok::RBracket),
            ',' => lx.single(Tok::Comma),
            ';' => lx.single(Tok::Semicolon),
            '"' | '\'' => Tok::Str(lx.string(c)?),
            '`' => Tok::QuotedIdent(lx.quoted_path()?),
            '0'..='9' => lx.number()?,
            '.' if lx.peek_second().is_some_and(|d| d.is_ascii_digit()) => lx.number()?,
            c if c.is_alphabetic() || c == '_' || c == '@' || c == '$' => lx.ident_or_path()?,
            _ => lx.operator()?,
        };
        tokens.push(Token { tok, line, col });
    }
    Ok(Lexed {
        tokens,
        leading_comments,
    })
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::CharIndices<'a>>,
    src: &'a str,
    line: u32,
    col: u32,
}

impl Lexer<'_> {
    fn peek(&mut self) -> Option<char> {
        self.chars.peek().map(|&(_, c)| c)
    }

    fn peek_second(&self) -> Option<char> {
        let mut it = self.chars.clone();
        it.next();
        it.next().map(|(_, c)| c)
    }

    fn bump(&mut self) -> Option<char> {
        let (_, c) = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn err(&self, message: impl Into<String>) -> ParseError {
        ParseError::new(self.line, self.col, message)
    }

    fn single(&mut self, tok: Tok) -> Tok {
        self.bump();
        tok
    }

    /// Skips whitespace and comments (`--`, `//`, `#`, `/* */`), returning the comments' text.
    fn skip_trivia(&mut self) -> Result<Vec<String>, ParseError> {
        let mut comments = Vec::new();
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() => {
                    self.bump();
                }
                Some('-') if self.peek_second() == Some('-') => comments.push(self.line_comment(2)),
                Some('/') if self.peek_second() == Some('/') => comments.push(self.line_comment(2)),
                Some('#') => comments.push(self.line_comment(1)),
                Some('/') if self.peek_second() == Some('*') => {
                    let (line, col) = (self.line, self.col);
                    self.bump();
                    self.bump();
                    let mut text = String::new();
                    loop {
                        match self.bump() {
                            None => {
                                return Err(ParseError::new(line, col, "unterminated /* comment"));
                            }
                            Some('*') if self.peek() == Some('/') => {
                                self.bump();
                                break;
                            }
                            Some(c) => text.push(c),
                        }
                    }
                    comments.push(text.trim().to_string());
                }
                _ => return Ok(comments),
            }
        }
    }

    fn line_comment(&mut self, marker: usize) -> String {
        for _ in 0..marker {
            self.bump();
        }
        let mut text = String::new();
        while let Some(c) = self.peek() {
            if c == '\n' {
                break;
            }
            text.push(c);
            self.bump();
        }
        text.trim().to_string()
    }

    fn string(&mut self, quote: char) -> Result<String, ParseError> {
        let (line, col) = (self.line, self.col);
        self.bump();
        let mut out = String::new();
        loop {
            match self.bump() {
                None => return Err(ParseError::new(line, col, "unterminated string")),
                Some('\\') => match self.bump() {
                    Some('n') => out.push('\n'),
                    Some('t') => out.push('\t'),
                    Some('r') => out.push('\r'),
                    Some(c) => out.push(c),
                    None => return Err(ParseError::new(line, col, "unterminated string")),
                },
                Some(c) if c == quote => return Ok(out),
                Some(c) => out.push(c),
            }
        }
    }

    /// `` `a b`.`c` `` or `` `a.b` `` (one quoted element may hold dots) and plain elements.
    fn quoted_path(&mut self) -> Result<Vec<String>, ParseError> {
        let mut parts = Vec::new();
        loop {
            if self.peek() == Some('`') {
                let (line, col) = (self.line, self.col);
                self.bump();
                let mut part = String::new();
                loop {
                    match self.bump() {
                        None => {
                            return Err(ParseError::new(
                                line,
                                col,
                                "unterminated back-quoted identifier",
                            ));
                        }
                        Some('`') => break,
                        Some(c) => part.push(c),
                    }
                }
                if part.is_empty() {
                    return Err(ParseError::new(line, col, "empty back-quoted identifier"));
                }
                parts.push(part);
            } else {
                parts.push(self.plain_word());
            }
            if self.peek() == Some('.')
                && self
                    .peek_second()
                    .is_some_and(|c| c == '`' || c.is_alphanumeric() || c == '_')
            {
                self.bump();
            } else {
                return Ok(parts);
            }
        }
    }

    fn plain_word(&mut self) -> String {
        let mut word = String::new();
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' || c == '@' || c == '$' {
                word.push(c);
                self.bump();
            } else {
                break;
            }
        }
        word
    }

    fn ident_or_path(&mut self) -> Result<Tok, ParseError> {
        let mut parts = vec![self.plain_word()];
        let mut quoted = false;
        while self.peek() == Some('.') {
            match self.peek_second() {
                Some('`') => {
                    self.bump();
                    quoted = true;
                    parts.extend(self.quoted_path()?);
                    break;
                }
                Some(c) if c.is_alphanumeric() || c == '_' => {
                    self.bump();
                    parts.push(self.plain_word());
                }
                _ => break,
            }
        }
        Ok(if quoted {
            Tok::QuotedIdent(parts)
        } else {
            Tok::Ident(parts.join("."))
        })
    }

    fn number(&mut self) -> Result<Tok, ParseError> {
        let (line, col) = (self.line, self.col);
        let at = |message: String| ParseError::new(line, col, message);
        let start = self.chars.peek().map_or(self.src.len(), |&(i, _)| i);
        let mut end = start;
        let mut is_float = false;
        while let Some(&(i, c)) = self.chars.peek() {
            let exponent_sign =
                (c == '-' || c == '+') && self.src[start..i].ends_with(['e', 'E']) && is_float;
            if c.is_ascii_digit() || exponent_sign {
                self.bump();
            } else if (c == '.'
                && !is_float
                && self.peek_second().is_some_and(|d| d.is_ascii_digit()))
                || ((c == 'e' || c == 'E')
                    && self
                        .peek_second()
                        .is_some_and(|d| d.is_ascii_digit() || d == '-' || d == '+'))
            {
                is_float = true;
                self.bump();
            } else {
                break;
            }
            end = i + c.len_utf8();
        }
        let text = &self.src[start..end];
        if self.peek().is_some_and(|c| c.is_alphabetic() || c == '_') {
            return Err(at(format!("unexpected character after number {text}")));
        }
        if is_float {
            text.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .map(Tok::Float)
                .ok_or_else(|| at(format!("malformed number {text}")))
        } else {
            match text.parse::<i64>() {
                Ok(i) => Ok(Tok::Int(i)),
                Err(_) => text
                    .parse::<u64>()
                    .map(Tok::BigInt)
                    .map_err(|_| at(format!("number {text} is too large"))),
            }
        }
    }

    fn operator(&mut self) -> Result<Tok, ParseError> {
        const OPS: [&str; 15] = [
            "==", "!=", "<>", ">=", "<=", "=", ">", "<", "+", "-", "*", "/", "%", "!", "||",
        ];
        let rest = &self.src[self.chars.peek().map_or(self.src.len(), |&(i, _)| i)..];
        for op in OPS {
            if rest.starts_with(op) {
                for _ in 0..op.chars().count() {
                    self.bump();
                }
                return Ok(Tok::Op(match op {
                    "<>" => "!=",
                    "||" => "||",
                    other => other,
                }));
            }
        }
        let c = rest.chars().next().unwrap_or(' ');
        Err(self.err(format!("unexpected character {c:?}")))
    }
}
