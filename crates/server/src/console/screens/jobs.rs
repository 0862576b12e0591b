//! Data > Jobs: the list, Export Audience (Braze) and Import CSV (SFTP) forms, and a job's
//! page with its live state, progress, metrics, throughput chart and log.

use axum::extract::{OriginalUri, Path};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{act, back, flash, items, pretty, refused, text};
use crate::auth::{ManageJobs, ReadRawEvents};
use crate::console::view::{
    Cell, Chart, Field, FieldKind, Flash, Form as FormView, Section, Table,
};
use crate::console::{Console, Form, Posted, query};

const WORKFLOWS: &[(&str, &str, &[&str])] = &[
    ("braze-export", "Braze: Export Audience", &["braze"]),
    (
        "sftp-import",
        "Import CSV (SFTP)",
        &["sftp", "sftp-pgp", "sftp-managed"],
    ),
];

const DATA_POINT_WARNING: &str = "Existing Users sends every current member of the chosen \
audiences to Braze when the job starts: one data point per user and audience, billed by Braze. \
Leave it unchecked to send only the users who enter or leave from now on.";

fn progress_text(job: &Value) -> String {
    let p = &job["progress"];
    if p.is_null() || p.as_object().is_some_and(|o| o.is_empty()) {
        return String::new();
    }
    p.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k}: {}", text(v)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// Jobs with their state and progress (the jobs page and the overview).
pub(super) fn job_table(jobs: &Value) -> Section {
    let rows = items(jobs)
        .iter()
        .map(|j| {
            vec![
                Cell::link(text(&j["name"]), format!("/jobs/{}", text(&j["id"]))),
                Cell::text(text(&j["workflow"])),
                Cell::text(text(&j["state"])),
                Cell::text(progress_text(j)),
                Cell::text(text(&j["updated"])),
            ]
        })
        .collect();
    Section::Table(Table {
        columns: ["Job", "Workflow", "State", "Progress", "Updated"]
            .map(String::from)
            .to_vec(),
        rows,
        empty: "No jobs yet.".into(),
    })
}

/// `GET /jobs`.
pub(crate) async fn list(console: Console, OriginalUri(uri): OriginalUri) -> Response {
    let data = match console.get("/v2/job").await {
        Ok(d) => d,
        Err(e) => return refused(e),
    };
    let mut sections = vec![Section::Live(vec![job_table(&data)])];
    if console.may::<ManageJobs>() {
        sections.push(Section::Heading("Create new job".into()));
        sections.push(Section::Table(Table {
            columns: vec!["Workflow".into()],
            rows: WORKFLOWS
                .iter()
                .map(|(w, l, _)| vec![Cell::link(*l, format!("/jobs/new?workflow={w}"))])
                .collect(),
            empty: String::new(),
        }));
    }
    console
        .page("Jobs", sections)
        .flash(flash(&uri))
        .live()
        .into_response()
}

fn workflow_of(
    uri: &axum::http::Uri,
) -> Option<&'static (&'static str, &'static str, &'static [&'static str])> {
    let wanted = query(uri).get("workflow").cloned().unwrap_or_default();
    WORKFLOWS.iter().find(|(w, _, _)| *w == wanted)
}

/// The form of a workflow, filled with what was posted (after an estimate or a refusal).
async fn job_form(
    console: &Console,
    workflow: &str,
    kinds: &[&str],
    posted: &Form,
) -> Result<FormView, Response> {
    let auths = console.get("/v2/auth").await.map_err(refused)?;
    let chosen_auth = posted.text("auth_ids");
    let auth_options: Vec<_> = items(&auths)
        .iter()
        .filter(|a| kinds.contains(&text(&a["type"]).as_str()))
        .map(|a| {
            let id = text(&a["id"]);
            let on = id == chosen_auth;
            (
                id,
                format!("{} ({})", text(&a["label"]), text(&a["type"])),
                on,
            )
        })
        .collect();
    let mut fields = vec![
        Field::new("auth_ids", "Authorization", FieldKind::Select)
            .required()
            .options(auth_options)
            .help("create one under Authorizations first if the list is empty"),
        Field::new("name", "Label", FieldKind::Text)
            .required()
            .value(posted.text("name")),
        Field::new("description", "Description", FieldKind::Text).value(posted.text("description")),
    ];
    match workflow {
        "braze-export" => {
            let schema = console.get("/api/schema").await.map_err(refused)?;
            let chosen = posted
                .one("identifier_field")
                .unwrap_or("external_id")
                .to_string();
            let field_options = items(&schema["fields"])
                .iter()
                .map(|f| {
                    let name = text(&f["name"]);
                    let on = name == chosen;
                    (name.clone(), name, on)
                })
                .collect();
            let audiences = console.get("/api/segment").await.map_err(refused)?;
            let picked = posted.all("segment_ids");
            let audience_options = items(&audiences)
                .iter()
                .map(|a| {
                    let slug = text(&a["slug_name"]);
                    let on = picked.contains(&slug);
                    (slug.clone(), slug, on)
                })
                .collect();
            fields.push(
                Field::new(
                    "identifier_field",
                    "Braze External User ID Field",
                    FieldKind::Select,
                )
                .options(field_options)
                .help("the profile field whose value is the user's external_id in Braze"),
            );
            fields.push(
                Field::new("segment_ids", "Audiences", FieldKind::Choices)
                    .options(audience_options),
            );
            fields.push(
                Field::new("withbackfill", "Existing Users", FieldKind::Checkbox)
                    .value(posted.flag("withbackfill").to_string())
                    .help(DATA_POINT_WARNING),
            );
        }
        _ => {
            let delimiter = posted.one("delimiter").unwrap_or(",").to_string();
            let delimiters = [
                (",", "comma ,"),
                ("|", "pipe |"),
                (";", "semicolon ;"),
                ("t", "tab"),
            ]
            .iter()
            .map(|(v, l)| ((*v).to_string(), (*l).to_string(), *v == delimiter))
            .collect();
            for (name, label, help) in [
                (
                    "stream",
                    "Stream",
                    "the stream the rows go to (braze_users for a Braze export)",
                ),
                (
                    "folder",
                    "Folder",
                    "on the server; empty for the login's home (managed SFTP: its folder)",
                ),
                (
                    "filename",
                    "File name",
                    "one exact name, or leave empty and give a pattern below",
                ),
                (
                    "prefix",
                    "File name pattern",
                    "a regular expression over file names, e.g. ^users_.*\\.csv$",
                ),
                (
                    "fields",
                    "Columns to keep",
                    "comma-separated; empty keeps every column",
                ),
                (
                    "timestamps",
                    "Time columns",
                    "comma-separated, in order of preference; empty uses the import time",
                ),
                (
                    "file_frequency",
                    "Look for files every",
                    "e.g. 30s, 5m, 1h (default 1h)",
                ),
            ] {
                let mut f = Field::new(name, label, FieldKind::Text)
                    .value(posted.text(name))
                    .help(help);
                if name == "stream" {
                    f = f.required();
                }
                fields.push(f);
            }
            fields
                .push(Field::new("delimiter", "Delimiter", FieldKind::Select).options(delimiters));
            for (name, label, help) in [
                ("continuous_update", "Keep watching for new files", ""),
                (
                    "diff",
                    "Import only changed rows",
                    "rows the previous file of the same pattern did not have",
                ),
                (
                    "droperrors",
                    "Skip bad rows",
                    "log them with their line number instead of failing the file",
                ),
            ] {
                fields.push(
                    Field::new(name, label, FieldKind::Checkbox)
                        .value(posted.flag(name).to_string())
                        .help(help),
                );
            }
        }
    }
    // Enter estimates (a dry run) rather than creating: a job is made only on Complete.
    let mut submits = vec![("create".to_string(), "Complete".to_string())];
    if workflow == "braze-export" {
        submits.insert(0, ("estimate".into(), "Estimate".into()));
    }
    Ok(FormView {
        id: "new-job".into(),
        action: format!("/jobs/new?workflow={workflow}"),
        method: "post",
        fields,
        submits,
    })
}

/// `GET /jobs/new?workflow=`.
pub(crate) async fn new_form(console: Console, OriginalUri(uri): OriginalUri) -> Response {
    let Some((workflow, label, kinds)) = workflow_of(&uri) else {
        return back("/jobs", Ok("choose a workflow".into()));
    };
    match job_form(&console, workflow, kinds, &Form(Vec::new())).await {
        Ok(form) => console
            .page(format!("New job: {label}"), vec![Section::Form(form)])
            .into_response(),
        Err(r) => r,
    }
}

/// The job's JSON body from the form: the API's own field names.
fn job_body(workflow: &str, form: &Form) -> Value {
    let config = match workflow {
        "braze-export" => json!({
            "identifier_field": form.text("identifier_field"),
            "segment_ids": form.all("segment_ids"),
            "withbackfill": form.flag("withbackfill"),
        }),
        _ => {
            let mut c = super::json_fields(
                form,
                &[
                    "stream",
                    "folder",
                    "filename",
                    "prefix",
                    "delimiter",
                    "file_frequency",
                ],
                &[],
            );
            for list in ["fields", "timestamps"] {
                let values: Vec<String> = form
                    .text(list)
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect();
                c.insert(list.into(), json!(values));
            }
            for flag in ["continuous_update", "diff", "droperrors"] {
                c.insert(flag.into(), json!(form.flag(flag)));
            }
            Value::Object(c)
        }
    };
    let auth_ids: Vec<i64> = form.text("auth_ids").parse().into_iter().collect();
    json!({
        "name": form.text("name"),
        "description": form.text("description"),
        "auth_ids": auth_ids,
        "config": config,
    })
}

/// `POST /jobs/new?workflow=`: `intent=estimate` shows the dry run, `create` creates.
pub(crate) async fn create(
    OriginalUri(uri): OriginalUri,
    Posted(console, form): Posted,
) -> Response {
    let Some((workflow, label, kinds)) = workflow_of(&uri) else {
        return back("/jobs", Ok("choose a workflow".into()));
    };
    let estimate = form.one("intent") == Some("estimate");
    let mut body = job_body(workflow, &form);
    body["dryrun"] = json!(estimate);
    let outcome = console
        .api(Method::POST, &format!("/v2/job/{workflow}"), Some(body))
        .await;
    let (flash, mut sections) = match outcome {
        Ok((data, _)) if !estimate => {
            let id = text(&data["id"]);
            return back(
                &format!("/jobs/{id}"),
                Ok(format!("job {} created", text(&data["name"]))),
            );
        }
        Ok((data, _)) => {
            let e = &data["estimate"];
            let facts = vec![
                ("Users".to_string(), text(&e["users"])),
                ("Requests to Braze".to_string(), text(&e["requests"])),
                (
                    "Data points at the start".to_string(),
                    text(&e["data_points"]),
                ),
                (
                    "Data points if Existing Users were checked".to_string(),
                    text(&e["backfill_data_points"]),
                ),
                (
                    "Users without the identifier field".to_string(),
                    text(&e["skipped_no_identifier"]),
                ),
            ];
            (
                None,
                vec![Section::Heading("Estimate".into()), Section::Facts(facts)],
            )
        }
        Err(e) => (
            Some(Flash {
                error: true,
                text: e.message,
            }),
            Vec::new(),
        ),
    };
    match job_form(&console, workflow, kinds, &form).await {
        Ok(f) => {
            sections.push(Section::Form(f));
            console
                .page(format!("New job: {label}"), sections)
                .flash(flash)
                .into_response()
        }
        Err(r) => r,
    }
}

/// `GET /jobs/{id}`: refreshed in place every 2 s while open.
pub(crate) async fn show(
    console: Console,
    Path(id): Path<i64>,
    OriginalUri(uri): OriginalUri,
) -> Response {
    let job = match console.get(&format!("/v2/job/{id}")).await {
        Ok(j) => j,
        Err(e) => return refused(e),
    };
    let logs = console
        .get(&format!("/v2/job/{id}/logs?limit=200"))
        .await
        .unwrap_or_default();
    let state = text(&job["state"]);
    let mut live = vec![Section::Facts(vec![
        ("Workflow".into(), text(&job["workflow"])),
        ("State".into(), state.clone()),
        ("Progress".into(), progress_text(&job)),
        ("Last error".into(), text(&job["last_error"])),
        ("Updated".into(), text(&job["updated"])),
    ])];
    live.extend(throughput_charts(&console, &job).await);
    live.push(Section::Code {
        title: "Metrics".into(),
        text: pretty(&job["metrics"]),
    });
    let log_text = items(&logs)
        .iter()
        .map(|l| {
            format!(
                "{} {:5} {}",
                text(&l["at"]),
                text(&l["level"]),
                text(&l["message"])
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    live.push(Section::Code {
        title: "Log".into(),
        text: if log_text.is_empty() {
            "(empty)".into()
        } else {
            log_text
        },
    });
    if console.may::<ManageJobs>() {
        let actions: &[(&str, &str)] = match state.as_str() {
            "running" | "sleeping" => &[("pause", "Pause"), ("kill", "Kill")],
            "paused" | "failed" => &[("resume", "Resume"), ("kill", "Kill")],
            _ => &[],
        };
        if !actions.is_empty() {
            live.insert(
                0,
                Section::Table(Table {
                    columns: vec!["Actions".into()],
                    rows: actions
                        .iter()
                        .map(|(a, l)| {
                            let confirm =
                                (*a == "kill").then_some("Kill this job? It cannot be resumed.");
                            vec![Cell::button(format!("/jobs/{id}/{a}"), l, confirm)]
                        })
                        .collect(),
                    empty: String::new(),
                }),
            );
        }
    }
    // The actions follow the live state (a finished job offers none).
    let mut sections = vec![Section::Live(live)];
    sections.push(Section::Code {
        title: "Configuration".into(),
        text: pretty(&job["config"]),
    });
    // Raw-event readers may follow an import into its stream.
    if job["workflow"] == "sftp-import" && console.may::<ReadRawEvents>() {
        let stream = text(&job["config"]["stream"]);
        sections.push(Section::Table(Table {
            columns: vec!["Stream".into()],
            rows: vec![vec![Cell::link(
                stream.clone(),
                format!("/streams/{stream}"),
            )]],
            empty: String::new(),
        }));
    }
    console
        .page(format!("Job {}", text(&job["name"])), sections)
        .flash(flash(&uri))
        .live()
        .into_response()
}

/// `POST /jobs/{id}/{pause|resume|kill}`.
pub(crate) async fn control(
    Path((id, action)): Path<(i64, String)>,
    Posted(console, _): Posted,
) -> Response {
    let done = format!("{action} requested");
    act(
        &console,
        Method::POST,
        &format!("/v2/job/{id}/{action}"),
        done,
        &format!("/jobs/{id}"),
    )
    .await
}

/// The job's throughput and its errors per minute over the last hour, from the per-minute
/// metrics the store keeps (the window's rows, and the last one before it to count from).
async fn throughput_charts(console: &Console, job: &Value) -> Vec<Section> {
    let id = text(&job["id"]);
    let window = super::charts::WINDOW_MINUTES;
    let Ok(rows) = console
        .get(&format!("/v2/job/{id}/minutes?minutes={window}"))
        .await
    else {
        return Vec::new();
    };
    let now = time::OffsetDateTime::now_utc();
    let created = time::OffsetDateTime::parse(
        &text(&job["created"]),
        &time::format_description::well_known::Rfc3339,
    );
    // Without a row before the window, a job younger than the day of rows kept had no report
    // before: its first report counts from zero. (An older one's first row is its baseline.)
    let fresh = created.is_ok_and(|c| now - c < time::Duration::days(1));
    let (work, work_unit, errors): (&[&str], &str, &[&str]) = match text(&job["workflow"]).as_str()
    {
        "sftp-import" => (&["rows_stored"], "rows", &["rows_rejected"]),
        _ => (
            &["users_sent"],
            "users",
            &[
                "requests_rejected",
                "object_errors",
                "rate_limited",
                "retries",
            ],
        ),
    };
    vec![
        Section::Chart(Chart {
            title: format!("{} per minute", work[0].replace('_', " ")),
            points: super::charts::job_per_minute(&rows, work, fresh, now),
            unit: work_unit.into(),
        }),
        Section::Chart(Chart {
            title: format!(
                "Errors per minute ({})",
                errors.join(", ").replace('_', " ")
            ),
            points: super::charts::job_per_minute(&rows, errors, fresh, now),
            unit: "errors".into(),
        }),
    ]
}
