//! Audiences: the list with sizes, the FilterQL editor (checked on submit, the error at its
//! line and column, a sample of members before saving), and an audience's page with its
//! definition, daily size and recent entries and exits.

use axum::extract::{OriginalUri, Path};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{act, back, flash, items, refused, text};
use crate::auth::{ManageAudiences, ReadProfiles};
use crate::console::view::{
    Cell, Chart, Field, FieldKind, Flash, Form as FormView, Section, Table,
};
use crate::console::{ApiRefusal, Console, Posted, percent_encode};

const EXAMPLE: &str = "FILTER AND (EXISTS email, country = \"NO\")\nFROM user\nALIAS norwegians";

/// `GET /audiences`.
pub(crate) async fn list(console: Console, OriginalUri(uri): OriginalUri) -> Response {
    let audiences = match console.get("/api/segment").await {
        Ok(a) => a,
        Err(e) => return refused(e),
    };
    let sizes = console.get("/api/segment/sizes").await.unwrap_or_default();
    let size_of = |slug: &str| {
        items(&sizes)
            .iter()
            .find(|s| s["slug_name"] == slug)
            .map(|s| format!("{} ({})", text(&s["size"]), text(&s["status"])))
            .unwrap_or_default()
    };
    let rows = items(&audiences)
        .iter()
        .map(|a| {
            let slug = text(&a["slug_name"]);
            vec![
                Cell::link(
                    slug.clone(),
                    format!("/audiences/{}", percent_encode(&slug)),
                ),
                Cell::text(text(&a["description"])),
                Cell::text(size_of(&slug)),
                Cell::text(text(&a["updated"])),
            ]
        })
        .collect();
    let mut sections = vec![Section::Table(Table {
        columns: ["Audience", "Description", "Size", "Updated"]
            .map(String::from)
            .to_vec(),
        rows,
        empty: "No audiences yet.".into(),
    })];
    if console.may::<ManageAudiences>() {
        sections.push(Section::single(Cell::link(
            "New audience",
            "/audiences/new",
        )));
    }
    console
        .page("Audiences", sections)
        .flash(flash(&uri))
        .into_response()
}

fn editor(ql: &str) -> FormView {
    FormView {
        id: "audience".into(),
        action: "/audiences/new".into(),
        method: "post",
        fields: vec![Field::new("segment_ql", "FilterQL", FieldKind::TextArea)
            .required()
            .value(ql)
            .help("one FILTER statement with its ALIAS (the audience's slug); Check shows the error or a sample of members")],
        submits: vec![
            ("check".into(), "Check".into()),
            ("save".into(), "Save audience".into()),
        ],
    }
}

/// A FilterQL refusal with the place it names.
fn located(e: &ApiRefusal) -> String {
    match (e.data["line"].as_u64(), e.data["column"].as_u64()) {
        (Some(line), Some(column)) => format!(
            "line {line}, column {column}: {}",
            e.data["message"].as_str().unwrap_or(&e.message)
        ),
        _ => e.message.clone(),
    }
}

/// `GET /audiences/new`.
pub(crate) async fn new_form(console: Console) -> Response {
    console
        .page("New audience", vec![Section::Form(editor(EXAMPLE))])
        .into_response()
}

/// `POST /audiences/new`: `intent=check` validates and previews, `save` stores.
pub(crate) async fn create(Posted(console, form): Posted) -> Response {
    let ql = form.one("segment_ql").unwrap_or_default().to_string();
    let body = json!({ "segment_ql": ql });
    let page = |flash: Flash, mut sections: Vec<Section>| {
        sections.push(Section::Form(editor(&ql)));
        console
            .page("New audience", sections)
            .flash(Some(flash))
            .into_response()
    };
    if form.one("intent") == Some("save") {
        return match console.api(Method::POST, "/api/segment", Some(body)).await {
            Ok((data, _)) => {
                let saved = match &data {
                    Value::Array(list) => list.first().cloned().unwrap_or_default(),
                    one => one.clone(),
                };
                let slug = text(&saved["slug_name"]);
                back(
                    &format!("/audiences/{}", percent_encode(&slug)),
                    Ok(format!("audience {slug} saved")),
                )
            }
            Err(e) => page(
                Flash {
                    error: true,
                    text: located(&e),
                },
                Vec::new(),
            ),
        };
    }
    let refused = |e: ApiRefusal| {
        let text = located(&e);
        page(Flash { error: true, text }, Vec::new())
    };
    // The member preview parses the FilterQL itself (and answers a syntax error at its line
    // and column); only a token that may not read profiles is sent to the validator alone.
    if !console.may::<ReadProfiles>() {
        return match console
            .api(Method::POST, "/api/segment/validate", Some(body))
            .await
        {
            Ok(_) => page(
                Flash {
                    error: false,
                    text: "FilterQL is valid.".into(),
                },
                Vec::new(),
            ),
            Err(e) => refused(e),
        };
    }
    let (members, envelope) = match console
        .api(Method::POST, "/api/segment/scan?limit=10", Some(body))
        .await
    {
        Ok(found) => found,
        Err(e) => return refused(e),
    };
    let more = envelope["_next"].as_str().is_some_and(|n| !n.is_empty());
    let n = items(&members).len();
    let note = format!(
        "FilterQL is valid. {} {n} member{} found{}.",
        if more { "At least" } else { "Exactly" },
        if n == 1 { "" } else { "s" },
        if more { " (a sample below)" } else { "" }
    );
    let sections = vec![
        Section::Heading("Sample of members".into()),
        member_table(&members),
    ];
    page(
        Flash {
            error: false,
            text: note,
        },
        sections,
    )
}

fn member_table(members: &Value) -> Section {
    Section::Table(Table {
        columns: ["Profile", "Email", "External id"]
            .map(String::from)
            .to_vec(),
        rows: items(members)
            .iter()
            .map(|p| {
                let id = text(&p["_id"]);
                vec![
                    Cell::link(id.clone(), format!("/profiles/{id}")),
                    Cell::text(text(&p["email"])),
                    Cell::text(text(&p["external_id"])),
                ]
            })
            .collect(),
        empty: "No profile matches.".into(),
    })
}

/// `GET /audiences/{slug}`.
pub(crate) async fn show(
    console: Console,
    Path(slug): Path<String>,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let path = percent_encode(&slug);
    let audience = match console.get(&format!("/api/segment/{path}")).await {
        Ok(a) => a,
        Err(e) => return refused(e),
    };
    let size = console
        .get(&format!("/api/segment/{path}/size"))
        .await
        .unwrap_or_default();
    let mut sections = vec![Section::Facts(vec![
        ("Size".into(), text(&size["size"])),
        ("Status".into(), text(&size["status"])),
        ("Description".into(), text(&audience["description"])),
        ("Updated".into(), text(&audience["updated"])),
    ])];
    sections.push(Section::Code {
        title: "Definition".into(),
        text: text(&audience["segment_ql"]),
    });
    let changes = console
        .get(&format!("/api/segment/{path}/changes?limit=1000"))
        .await
        .unwrap_or_default();
    let list = items(&changes["changes"]);
    // The store keeps each audience's size per day (sampled by the pipeline).
    let history = console
        .get(&format!("/api/segment/{path}/history?days=90"))
        .await
        .unwrap_or_default();
    let points: Vec<(String, f64)> = items(&history)
        .iter()
        .map(|d| (text(&d["day"]), d["size"].as_f64().unwrap_or(0.0)))
        .collect();
    if !points.is_empty() {
        sections.push(Section::Chart(Chart {
            title: "Size per day (last 90 days)".into(),
            points,
            unit: "profiles".into(),
        }));
    }
    sections.push(Section::Heading("Recent entries and exits".into()));
    sections.push(Section::Table(Table {
        columns: ["When", "Change", "Profile"].map(String::from).to_vec(),
        rows: list
            .iter()
            .rev()
            .take(50)
            .map(|c| {
                let id = text(&c["profile_id"]);
                vec![
                    Cell::text(text(&c["at"])),
                    Cell::text(text(&c["change"])),
                    Cell::link(id.clone(), format!("/profiles/{id}")),
                ]
            })
            .collect(),
        empty: "No entries or exits logged yet.".into(),
    }));
    if console.may::<ManageAudiences>() {
        sections.push(Section::single(Cell::button(
            format!("/audiences/{path}/delete"),
            "Delete audience",
            Some("Delete this audience? Export jobs using it stop sending it."),
        )));
    }
    console
        .page(format!("Audience {slug}"), sections)
        .flash(flash(&uri))
        .into_response()
}

/// `POST /audiences/{slug}/delete`.
pub(crate) async fn delete(Path(slug): Path<String>, Posted(console, _): Posted) -> Response {
    let path = format!("/api/segment/{}", percent_encode(&slug));
    let done = format!("audience {slug} deleted");
    act(&console, Method::DELETE, &path, done, "/audiences").await
}
