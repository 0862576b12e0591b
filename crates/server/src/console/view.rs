//! What a console page is made of. Every screen builds a [`Page`] of [`Section`]s (facts,
//! tables, forms, charts, code) and one template renders them all, so the screens look and
//! behave alike: every POST form carries the CSRF token, every table says when it is empty.

use askama::Template;

/// Which parts of the console the signed-in token may use (nothing else is offered).
#[derive(Clone, Copy, Default)]
pub struct Nav {
    pub streams: bool,
    pub profiles: bool,
    pub audiences: bool,
    pub authorizations: bool,
    pub jobs: bool,
    pub tokens: bool,
}

#[derive(Template)]
#[template(path = "console/page.html")]
pub struct Page {
    pub title: String,
    pub nav: Nav,
    /// Who is signed in (the token's name and roles).
    pub who: String,
    pub csrf: String,
    /// A message above the page: the outcome of the last action.
    pub flash: Option<Flash>,
    pub sections: Vec<Section>,
    /// Reload the `#live` part of the page every few seconds (a running job).
    pub live: bool,
}

pub struct Flash {
    pub error: bool,
    pub text: String,
}

pub enum Section {
    Heading(String),
    Text(String),
    /// A warning the user should read before acting.
    Warning(String),
    /// Label/value pairs.
    Facts(Vec<(String, String)>),
    Table(Table),
    Form(Form),
    /// Preformatted text (JSON, logs, FilterQL).
    Code {
        title: String,
        text: String,
    },
    Chart(Chart),
    /// The sections in here are the part a live page refreshes.
    Live(Vec<Section>),
}

impl Section {
    /// A lone link or button (New audience, Delete, Erase).
    pub fn single(cell: Cell) -> Section {
        Section::Table(Table {
            columns: vec![String::new()],
            rows: vec![vec![cell]],
            empty: String::new(),
        })
    }
}

pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
    pub empty: String,
}

#[derive(Default)]
pub struct Cell {
    pub text: String,
    pub href: Option<String>,
    /// A one-button form (delete, pause...) posted to `action`.
    pub button: Option<Button>,
}

pub struct Button {
    pub action: String,
    pub label: String,
    /// Asked in the browser before posting; without JavaScript the post goes through.
    pub confirm: Option<String>,
}

impl Cell {
    pub fn text(text: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            ..Cell::default()
        }
    }
    pub fn link(text: impl Into<String>, href: impl Into<String>) -> Cell {
        Cell {
            text: text.into(),
            href: Some(href.into()),
            button: None,
        }
    }
    pub fn button(action: impl Into<String>, label: &str, confirm: Option<&str>) -> Cell {
        Cell {
            text: String::new(),
            href: None,
            button: Some(Button {
                action: action.into(),
                label: label.into(),
                confirm: confirm.map(str::to_string),
            }),
        }
    }
}

pub struct Form {
    pub id: String,
    pub action: String,
    /// `post` (carries the CSRF token) or `get` (a search).
    pub method: &'static str,
    pub fields: Vec<Field>,
    /// Submit buttons: (name of the `intent` value, label). The first is the default.
    pub submits: Vec<(String, String)>,
}

pub struct Field {
    pub name: String,
    pub label: String,
    pub kind: FieldKind,
    pub value: String,
    /// For selects and checkbox groups: (value, label, chosen).
    pub options: Vec<(String, String, bool)>,
    pub help: String,
    pub required: bool,
    /// A `<datalist>` of suggestions for a text field.
    pub suggestions: Vec<String>,
}

#[derive(PartialEq, Eq)]
pub enum FieldKind {
    Text,
    Password,
    Number,
    TextArea,
    Select,
    /// Several values under one name (checkboxes).
    Choices,
    Checkbox,
}

impl Field {
    pub fn new(name: &str, label: &str, kind: FieldKind) -> Field {
        Field {
            name: name.into(),
            label: label.into(),
            kind,
            value: String::new(),
            options: Vec::new(),
            help: String::new(),
            required: false,
            suggestions: Vec::new(),
        }
    }
    pub fn value(mut self, value: impl Into<String>) -> Field {
        self.value = value.into();
        self
    }
    pub fn help(mut self, help: impl Into<String>) -> Field {
        self.help = help.into();
        self
    }
    pub fn required(mut self) -> Field {
        self.required = true;
        self
    }
    pub fn options(mut self, options: Vec<(String, String, bool)>) -> Field {
        self.options = options;
        self
    }
    pub fn suggestions(mut self, suggestions: Vec<String>) -> Field {
        self.suggestions = suggestions;
        self
    }
    /// A checkbox is ticked when its value is `true`.
    pub fn checked(&self) -> bool {
        self.value == "true"
    }
}

/// A bar chart drawn as inline SVG on the server: one bar per point, labels under the first
/// and the last.
pub struct Chart {
    pub title: String,
    pub points: Vec<(String, f64)>,
    pub unit: String,
}

/// A bar of a chart, in the SVG's coordinates.
pub struct Bar {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    pub label: String,
}

pub const CHART_WIDTH: f64 = 600.0;
pub const CHART_HEIGHT: f64 = 120.0;

impl Chart {
    pub fn bars(&self) -> Vec<Bar> {
        let max = self.points.iter().map(|p| p.1).fold(0.0, f64::max);
        let n = self.points.len().max(1) as f64;
        let slot = CHART_WIDTH / n;
        self.points
            .iter()
            .enumerate()
            .map(|(i, (label, value))| {
                let height = if max > 0.0 {
                    value / max * CHART_HEIGHT
                } else {
                    0.0
                };
                Bar {
                    x: i as f64 * slot,
                    y: CHART_HEIGHT - height,
                    width: (slot - 1.0).max(1.0),
                    height,
                    label: format!("{label}: {value} {}", self.unit),
                }
            })
            .collect()
    }
    pub fn max(&self) -> f64 {
        self.points.iter().map(|p| p.1).fold(0.0, f64::max)
    }
    pub fn first_label(&self) -> &str {
        self.points.first().map_or("", |p| p.0.as_str())
    }
    pub fn last_label(&self) -> &str {
        self.points.last().map_or("", |p| p.0.as_str())
    }
}

#[derive(Template)]
#[template(path = "console/login.html")]
pub struct Login {
    pub csrf: String,
    pub next: String,
    pub error: Option<String>,
}
