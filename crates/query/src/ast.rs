//! The syntax tree of both languages. Parsing normalises (nested AND/OR flattened, one-element
//! AND/OR collapsed, unary minus folded into numbers, `x NOT IN ..` as `NOT (x IN ..)`), so
//! `parse(print(ast)) == ast` holds for every tree the parser produces.

use crate::dates::DateMath;
use crate::value::Value;

/// A literal: a string, number, boolean or NULL as a [`Value`] (so evaluation borrows it
/// instead of building it), or date math.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Value(Value),
    /// A string literal that is date math (`"now-30d"`); validated at parse time.
    DateMath(DateMath),
}

impl Literal {
    pub fn string(s: impl Into<String>) -> Literal {
        Literal::Value(Value::String(s.into()))
    }
    pub fn int(i: i64) -> Literal {
        Literal::Value(Value::Int(i))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CmpOp {
    pub fn as_str(self) -> &'static str {
        match self {
            CmpOp::Eq => "==",
            CmpOp::Ne => "!=",
            CmpOp::Gt => ">",
            CmpOp::Ge => ">=",
            CmpOp::Lt => "<",
            CmpOp::Le => "<=",
        }
    }

    /// The same comparison with its operands swapped (`5 < x` is `x > 5`).
    pub fn flipped(self) -> CmpOp {
        match self {
            CmpOp::Gt => CmpOp::Lt,
            CmpOp::Ge => CmpOp::Le,
            CmpOp::Lt => CmpOp::Gt,
            CmpOp::Le => CmpOp::Ge,
            other => other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

impl ArithOp {
    pub fn as_str(self) -> &'static str {
        match self {
            ArithOp::Add => "+",
            ArithOp::Sub => "-",
            ArithOp::Mul => "*",
            ArithOp::Div => "/",
            ArithOp::Mod => "%",
        }
    }
}

/// The right-hand side of IN / INTERSECTS.
#[derive(Debug, Clone, PartialEq)]
pub enum ListSource {
    Items(Vec<Expr>),
    Field(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Literal),
    /// A field path: `city`, `user.city`, `` `my field` ``.
    Field(Vec<String>),
    Compare(CmpOp, Box<Expr>, Box<Expr>),
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Exists(Vec<String>),
    In(Box<Expr>, ListSource),
    Intersects(Box<Expr>, ListSource),
    Contains(Box<Expr>, Box<Expr>),
    Like(Box<Expr>, Box<Expr>),
    Between(Box<Expr>, Box<Expr>, Box<Expr>),
    /// INCLUDE of another audience, by its lower-cased slug.
    Include(String),
    /// `*` / `match_all`.
    MatchAll,
    /// A function call; the name is lower-cased and known to the catalogue.
    Call(String, Vec<Expr>),
}

impl Expr {
    /// Calls `f` on this expression and every expression inside it, parents first.
    pub fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::And(items) | Expr::Or(items) | Expr::Call(_, items) => {
                items.iter().for_each(|i| i.walk(f))
            }
            Expr::Not(e) => e.walk(f),
            Expr::Compare(_, a, b)
            | Expr::Arith(_, a, b)
            | Expr::Contains(a, b)
            | Expr::Like(a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Expr::Between(a, b, c) => {
                a.walk(f);
                b.walk(f);
                c.walk(f);
            }
            Expr::In(a, list) | Expr::Intersects(a, list) => {
                a.walk(f);
                if let ListSource::Items(items) = list {
                    items.iter().for_each(|i| i.walk(f));
                }
            }
            Expr::Literal(_) | Expr::Field(_) | Expr::Exists(_) | Expr::MatchAll => {}
            Expr::Include(_) => {}
        }
    }

    /// The audiences this expression INCLUDEs, in order of appearance, without repeats.
    pub fn includes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Include(name) = e
                && !out.contains(name)
            {
                out.push(name.clone());
            }
        });
        out
    }

    /// The top-level fields this expression reads (without following INCLUDE), or `None`
    /// when it may read any field (`match("prefix.")`).
    pub fn fields(&self) -> Option<std::collections::BTreeSet<String>> {
        let mut out = std::collections::BTreeSet::new();
        let mut any = false;
        self.walk(&mut |e| match e {
            Expr::Field(path) | Expr::Exists(path) => {
                out.extend(path.first().cloned());
            }
            Expr::In(_, ListSource::Field(path)) | Expr::Intersects(_, ListSource::Field(path)) => {
                out.extend(path.first().cloned());
            }
            Expr::Call(name, _) if name == "match" => any = true,
            _ => {}
        });
        (!any).then_some(out)
    }

    /// Whether the result can change with the passing of time alone (date math such as
    /// `"now-30d"`, or `now()`), without following INCLUDE.
    pub fn is_time_relative(&self) -> bool {
        let mut relative = false;
        self.walk(&mut |e| {
            if matches!(e, Expr::Literal(Literal::DateMath(_)))
                || matches!(e, Expr::Call(name, _) if name == "now")
            {
                relative = true;
            }
        });
        relative
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct FilterStatement {
    /// Leading comments.
    pub description: Option<String>,
    /// Projected columns of the `SELECT ... FILTER` form (empty for `FILTER ...`).
    pub columns: Vec<Column>,
    pub filter: Expr,
    pub from: Option<String>,
    pub limit: Option<i64>,
    pub with: Vec<(String, Literal)>,
    /// Lower-cased.
    pub alias: Option<String>,
}

/// A field type (KIND).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Kind {
    #[serde(rename = "int")]
    Int,
    #[serde(rename = "number")]
    Number,
    #[serde(rename = "bool")]
    Bool,
    #[serde(rename = "date")]
    Date,
    #[serde(rename = "string")]
    String,
    #[serde(rename = "[]time")]
    TimeList,
    #[serde(rename = "[]string")]
    StringList,
    #[serde(rename = "ts[]string")]
    TimeOrderedStrings,
    #[serde(rename = "map[string]int")]
    MapInt,
    #[serde(rename = "map[string]number")]
    MapNumber,
    #[serde(rename = "map[string]string")]
    MapString,
    #[serde(rename = "map[string]time")]
    MapTime,
    #[serde(rename = "map[string]bool")]
    MapBool,
    #[serde(rename = "map[string]value")]
    MapValue,
}

impl Kind {
    pub const ALL: [Kind; 14] = [
        Kind::Int,
        Kind::Number,
        Kind::Bool,
        Kind::Date,
        Kind::String,
        Kind::TimeList,
        Kind::StringList,
        Kind::TimeOrderedStrings,
        Kind::MapInt,
        Kind::MapNumber,
        Kind::MapString,
        Kind::MapTime,
        Kind::MapBool,
        Kind::MapValue,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Int => "int",
            Kind::Number => "number",
            Kind::Bool => "bool",
            Kind::Date => "date",
            Kind::String => "string",
            Kind::TimeList => "[]time",
            Kind::StringList => "[]string",
            Kind::TimeOrderedStrings => "ts[]string",
            Kind::MapInt => "map[string]int",
            Kind::MapNumber => "map[string]number",
            Kind::MapString => "map[string]string",
            Kind::MapTime => "map[string]time",
            Kind::MapBool => "map[string]bool",
            Kind::MapValue => "map[string]value",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        let t = text.to_ascii_lowercase();
        let t = match t.as_str() {
            "float" | "float64" => "number",
            "int64" | "integer" => "int",
            "time" | "datetime" | "timestamp" => "date",
            "boolean" => "bool",
            other => other,
        };
        Kind::ALL.into_iter().find(|k| k.as_str() == t)
    }

    pub fn is_map(self) -> bool {
        matches!(
            self,
            Kind::MapInt
                | Kind::MapNumber
                | Kind::MapString
                | Kind::MapTime
                | Kind::MapBool
                | Kind::MapValue
        )
    }
}

/// How a new value combines with the stored one (MERGEOP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MergeOp {
    Latest,
    Oldest,
    Min,
    Max,
    Sum,
    Count,
    /// Set union (the default of `set()`).
    Union,
    LatestMap,
    OldestMap,
    Merge,
    MapMin,
    MapMax,
    Capped,
}

impl MergeOp {
    pub const ALL: [MergeOp; 13] = [
        MergeOp::Latest,
        MergeOp::Oldest,
        MergeOp::Min,
        MergeOp::Max,
        MergeOp::Sum,
        MergeOp::Count,
        MergeOp::Union,
        MergeOp::LatestMap,
        MergeOp::OldestMap,
        MergeOp::Merge,
        MergeOp::MapMin,
        MergeOp::MapMax,
        MergeOp::Capped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MergeOp::Latest => "latest",
            MergeOp::Oldest => "oldest",
            MergeOp::Min => "min",
            MergeOp::Max => "max",
            MergeOp::Sum => "sum",
            MergeOp::Count => "count",
            MergeOp::Union => "union",
            MergeOp::LatestMap => "latestmap",
            MergeOp::OldestMap => "oldestmap",
            MergeOp::Merge => "merge",
            MergeOp::MapMin => "mapmin",
            MergeOp::MapMax => "mapmax",
            MergeOp::Capped => "capped",
        }
    }

    pub fn parse(text: &str) -> Option<MergeOp> {
        let t = text.to_ascii_lowercase();
        MergeOp::ALL.into_iter().find(|m| m.as_str() == t)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    pub expr: Expr,
    pub alias: Option<String>,
    pub guard: Option<Expr>,
    pub short_desc: Option<String>,
    pub long_desc: Option<String>,
    pub kind: Option<Kind>,
    pub merge_op: Option<MergeOp>,
}

impl Column {
    /// The output field name: AS, or the source field's name, or the function's name.
    pub fn name(&self) -> String {
        if let Some(a) = &self.alias {
            return a.clone();
        }
        match &self.expr {
            Expr::Field(path) => path.join("."),
            Expr::Call(name, args) => match args.first() {
                Some(Expr::Field(path)) => path.join("."),
                _ => name.clone(),
            },
            _ => "value".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct LqlStatement {
    pub columns: Vec<Column>,
    pub from: String,
    pub into: String,
    pub by: Vec<String>,
    pub filter: Option<Expr>,
    pub alias: String,
}
