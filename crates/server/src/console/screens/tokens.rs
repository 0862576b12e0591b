//! Account > Access Tokens: create (the secret shown once), list, delete.

use axum::extract::{OriginalUri, Path};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{act, flash, items, refused, text};
use crate::console::view::{Cell, Field, FieldKind, Flash, Form as FormView, Section, Table};
use crate::console::{Console, Form, Posted};

const ROLES: &[(&str, &str)] = &[
    (
        "data_manager",
        "Data Manager: collect data, authorizations, jobs, schema",
    ),
    (
        "audience_manager",
        "Audience Manager: audiences and export jobs",
    ),
    ("observer", "Observer: read only, personal fields masked"),
    ("admin", "Admin: everything in this account"),
];

fn create_form(posted: &Form) -> FormView {
    let picked = posted.all("roles");
    FormView {
        id: "new-token".into(),
        action: "/tokens".into(),
        method: "post",
        fields: vec![
            Field::new("name", "Name", FieldKind::Text)
                .required()
                .value(posted.text("name")),
            Field::new("description", "Description", FieldKind::Text)
                .value(posted.text("description")),
            Field::new("expires", "Expires after", FieldKind::Text)
                .value(posted.one("expires").unwrap_or("90d"))
                .help("e.g. 30d, 90d, 1y, or never"),
            Field::new("roles", "Roles", FieldKind::Choices).options(
                ROLES
                    .iter()
                    .map(|(r, l)| {
                        (
                            (*r).to_string(),
                            (*l).to_string(),
                            picked.iter().any(|p| p == r),
                        )
                    })
                    .collect(),
            ),
        ],
        submits: vec![("create".into(), "Create token".into())],
    }
}

async fn page(
    console: &Console,
    flash: Option<Flash>,
    mut top: Vec<Section>,
    posted: &Form,
) -> Response {
    let tokens = match console.get("/v2/token").await {
        Ok(t) => t,
        Err(e) => return refused(e),
    };
    let rows = items(&tokens)
        .iter()
        .map(|t| {
            let roles = t["roles"]
                .as_array()
                .map(|r| r.iter().map(text).collect::<Vec<_>>().join(", "))
                .unwrap_or_default();
            let expires = match text(&t["expires"]) {
                e if e.is_empty() => "never".to_string(),
                e if t["expired"] == true => format!("{e} (expired)"),
                e => e,
            };
            vec![
                Cell::text(text(&t["name"])),
                Cell::text(text(&t["description"])),
                Cell::text(roles),
                Cell::text(text(&t["created"])),
                Cell::text(expires),
                Cell::button(
                    format!("/tokens/{}/delete", text(&t["id"])),
                    "Delete",
                    Some("Delete this token? Everything using it stops working."),
                ),
            ]
        })
        .collect();
    top.push(Section::Table(Table {
        columns: ["Name", "Description", "Roles", "Created", "Expires", ""]
            .map(String::from)
            .to_vec(),
        rows,
        empty: "No tokens in this account.".into(),
    }));
    top.push(Section::Heading("Create a token".into()));
    top.push(Section::Form(create_form(posted)));
    console
        .page("Access tokens", top)
        .flash(flash)
        .into_response()
}

/// `GET /tokens`.
pub(crate) async fn list(console: Console, OriginalUri(uri): OriginalUri) -> Response {
    page(&console, flash(&uri), Vec::new(), &Form(Vec::new())).await
}

/// `POST /tokens`: `POST /v2/token`; the secret is shown on the answer page only.
pub(crate) async fn create(Posted(console, form): Posted) -> Response {
    let expires = form.text("expires");
    let mut body = json!({
        "name": form.text("name"),
        "description": form.text("description"),
        "roles": form.all("roles"),
    });
    if !expires.is_empty() {
        body["expires"] = json!(expires);
    }
    match console.api(Method::POST, "/v2/token", Some(body)).await {
        Ok((data, _)) => {
            let shown = vec![
                Section::Warning(
                    "Copy the token now: it is shown this once and never again.".into(),
                ),
                Section::Facts(vec![
                    ("Name".into(), text(&data["name"])),
                    ("Token".into(), text(&data["token"])),
                ]),
            ];
            page(&console, None, shown, &Form(Vec::new())).await
        }
        Err(e) => {
            page(
                &console,
                Some(Flash {
                    error: true,
                    text: e.message,
                }),
                Vec::new(),
                &form,
            )
            .await
        }
    }
}

/// `POST /tokens/{id}/delete`.
pub(crate) async fn delete(Path(id): Path<i64>, Posted(console, _): Posted) -> Response {
    let done = format!("token {id} deleted");
    act(
        &console,
        Method::DELETE,
        &format!("/v2/token/{id}"),
        done,
        "/tokens",
    )
    .await
}
