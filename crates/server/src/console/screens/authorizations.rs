//! Data > Authorizations: the list, a form per type, delete. Secrets are write-only: the API
//! never returns them, and only the managed SFTP login is shown, once, right after creation.

use axum::extract::{OriginalUri, Path};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{act, flash, items, refused, text};
use crate::auth::ManageAuthorizations;
use crate::console::view::{Cell, Field, FieldKind, Flash, Form as FormView, Section, Table};
use crate::console::{Console, Form, Posted, query};

const TYPES: &[(&str, &str)] = &[
    ("braze", "Braze"),
    ("sftp", "SFTP"),
    ("sftp-pgp", "SFTP with PGP decryption"),
    ("sftp-managed", "Tributary's managed SFTP"),
];

/// Each type's config fields as (name, label, kind, help); secrets are password inputs.
fn config_fields(kind: &str) -> Vec<Field> {
    let instances: Vec<String> = tributary_core::braze::INSTANCES
        .iter()
        .map(|(name, _)| (*name).to_string())
        .collect();
    let sftp = || {
        vec![
            Field::new("host", "Host", FieldKind::Text).required(),
            Field::new("port", "Port", FieldKind::Number).help("22 when empty"),
            Field::new("username", "Username", FieldKind::Text).required(),
            Field::new("password", "Password", FieldKind::Password).help("or a private key below"),
            Field::new(
                "private_key",
                "Private key (OpenSSH format)",
                FieldKind::TextArea,
            )
            .help("a PuTTY key must be converted first: puttygen key.ppk -O private-openssh"),
            Field::new("host_key", "Server host key (optional)", FieldKind::Text)
                .help("pins the server's key; otherwise the key seen first is recorded"),
        ]
    };
    match kind {
        "braze" => vec![
            Field::new("apikey", "REST API key", FieldKind::Password)
                .required()
                .help("a Braze REST API key with users.track and users.delete permission"),
            Field::new("instance", "Instance", FieldKind::Text)
                .required()
                .suggestions(instances)
                .help("your dashboard's instance (US-01 ... EU-02), or a URL this install allows"),
        ],
        "sftp" => sftp(),
        "sftp-pgp" => {
            let mut fields = sftp();
            fields.push(
                Field::new("pgp_private_key", "PGP private key (ASCII-armoured)", FieldKind::TextArea)
                    .required(),
            );
            fields.push(Field::new("pgp_passphrase", "PGP passphrase", FieldKind::Password));
            fields
        }
        "sftp-managed" => vec![
            Field::new("public_key", "Public key (optional)", FieldKind::TextArea)
                .help("an OpenSSH public key to log in with; without one a password is generated and shown once"),
        ],
        _ => Vec::new(),
    }
}

fn kind_label(kind: &str) -> &str {
    TYPES
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(kind, |(_, l)| l)
}

/// `GET /authorizations`.
pub(crate) async fn list(console: Console, OriginalUri(uri): OriginalUri) -> Response {
    let data = match console.get("/v2/auth").await {
        Ok(d) => d,
        Err(e) => return refused(e),
    };
    let manage = console.may::<ManageAuthorizations>();
    let rows = items(&data)
        .iter()
        .map(|a| {
            let id = text(&a["id"]);
            let mut row = vec![
                Cell::text(text(&a["label"])),
                Cell::text(kind_label(&text(&a["type"])).to_string()),
                Cell::text(text(&a["description"])),
                Cell::text(text(&a["created"])),
            ];
            if manage {
                row.push(Cell::button(
                    format!("/authorizations/{id}/delete"),
                    "Delete",
                    Some("Delete this authorization? Jobs using it will fail."),
                ));
            }
            row
        })
        .collect();
    let mut columns = vec!["Label", "Type", "Description", "Created"];
    if manage {
        columns.push("");
    }
    let mut sections = vec![Section::Table(Table {
        columns: columns.into_iter().map(String::from).collect(),
        rows,
        empty: "No authorizations yet.".into(),
    })];
    if manage {
        sections.push(Section::Heading("Create new authorization".into()));
        sections.push(Section::Table(Table {
            columns: vec!["Type".into()],
            rows: TYPES
                .iter()
                .map(|(k, l)| vec![Cell::link(*l, format!("/authorizations/new?type={k}"))])
                .collect(),
            empty: String::new(),
        }));
    }
    console
        .page("Authorizations", sections)
        .flash(flash(&uri))
        .into_response()
}

fn new_page(console: &Console, kind: &str, posted: &Form, error: Option<String>) -> Response {
    let mut fields = vec![
        Field::new("label", "Label", FieldKind::Text)
            .required()
            .value(posted.text("label")),
        Field::new("description", "Description", FieldKind::Text).value(posted.text("description")),
    ];
    for f in config_fields(kind) {
        // Secrets are never sent back into a page, not even after a refused form.
        let keep = !matches!(f.kind, FieldKind::Password);
        let value = if keep {
            posted.text(&f.name)
        } else {
            String::new()
        };
        fields.push(f.value(value));
    }
    let form = FormView {
        id: "new-authorization".into(),
        action: format!("/authorizations/new?type={kind}"),
        method: "post",
        fields,
        submits: vec![("create".into(), "Create authorization".into())],
    };
    console
        .page(
            format!("New {} authorization", kind_label(kind)),
            vec![Section::Form(form)],
        )
        .flash(error.map(|text| Flash { error: true, text }))
        .into_response()
}

fn kind_of(uri: &axum::http::Uri) -> Option<String> {
    query(uri)
        .get("type")
        .filter(|k| TYPES.iter().any(|(t, _)| t == k))
        .cloned()
}

/// `GET /authorizations/new?type=`.
pub(crate) async fn new_form(console: Console, OriginalUri(uri): OriginalUri) -> Response {
    match kind_of(&uri) {
        Some(kind) => new_page(&console, &kind, &Form(Vec::new()), None),
        None => super::back(
            "/authorizations",
            Ok("choose a type of authorization".into()),
        ),
    }
}

/// `POST /authorizations/new?type=`: `POST /v2/auth/{type}`.
pub(crate) async fn create(
    OriginalUri(uri): OriginalUri,
    Posted(console, form): Posted,
) -> Response {
    let Some(kind) = kind_of(&uri) else {
        return super::back(
            "/authorizations",
            Ok("choose a type of authorization".into()),
        );
    };
    let names: Vec<String> = config_fields(&kind).into_iter().map(|f| f.name).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let config = super::json_fields(&form, &names, &["port"]);
    let body = json!({
        "label": form.text("label"),
        "description": form.text("description"),
        "config": Value::Object(config),
    });
    match console
        .api(Method::POST, &format!("/v2/auth/{kind}"), Some(body))
        .await
    {
        Err(e) => new_page(&console, &kind, &form, Some(e.message)),
        Ok((data, _)) => {
            let label = text(&data["label"]);
            // The managed SFTP login comes back beside the authorization, this once.
            if kind == "sftp-managed" {
                let login = &data;
                let mut facts = vec![
                    ("Host".to_string(), text(&login["host"])),
                    ("Port".to_string(), text(&login["port"])),
                    ("Username".to_string(), text(&login["username"])),
                ];
                if !login["password"].is_null() {
                    facts.push(("Password".to_string(), text(&login["password"])));
                }
                let sections = vec![
                    Section::Warning(
                        "Copy the password now: it is shown this once and never again.".into(),
                    ),
                    Section::Facts(facts),
                    Section::Text("Upload files into this login's folder; an Import CSV job on this authorization reads them.".into()),
                ];
                return console
                    .page(format!("Authorization {label} created"), sections)
                    .into_response();
            }
            super::back(
                "/authorizations",
                Ok(format!("authorization {label} created")),
            )
        }
    }
}

/// `POST /authorizations/{id}/delete`.
pub(crate) async fn delete(Path(id): Path<i64>, Posted(console, _): Posted) -> Response {
    let done = format!("authorization {id} deleted");
    act(
        &console,
        Method::DELETE,
        &format!("/v2/auth/{id}"),
        done,
        "/authorizations",
    )
    .await
}
