//! Overview, Streams and Profiles: what arrived, how far the pipeline is behind, and who a
//! person is.

use axum::extract::{OriginalUri, Path};
use axum::http::Method;
use axum::response::{IntoResponse, Response};

use super::{act, flash, items, or_hint, pretty, refused, text};
use crate::auth::{ManageProfiles, ReadDefinitions, ReadJobs, ReadRawEvents, ReadStreams};
use crate::console::view::{Cell, Field, FieldKind, Form as FormView, Section, Table};
use crate::console::{Console, Posted, percent_encode, query};

fn stream_table(streams: &serde_json::Value) -> Section {
    Section::Table(Table {
        columns: ["Stream", "Events", "Last received", "Not yet in profiles"]
            .map(String::from)
            .to_vec(),
        rows: items(streams)
            .iter()
            .map(|s| {
                let name = text(&s["name"]);
                vec![
                    Cell::link(name.clone(), format!("/streams/{}", percent_encode(&name))),
                    Cell::text(text(&s["count"])),
                    Cell::text(text(&s["last_received"])),
                    Cell::text(text(&s["pipeline_lag_events"])),
                ]
            })
            .collect(),
        empty: "No events received yet.".into(),
    })
}

/// `GET /`: streams, audiences with sizes, jobs with state.
pub(crate) async fn overview(console: Console, OriginalUri(uri): OriginalUri) -> Response {
    let mut sections = Vec::new();
    if console.may::<ReadStreams>()
        && let Ok(streams) = console.get("/v2/stream").await
    {
        sections.push(Section::Heading("Streams".into()));
        sections.push(stream_table(&streams));
        if let Some(rows) = super::charts::stream_rows(&console).await {
            let now = time::OffsetDateTime::now_utc();
            sections.extend(super::charts::events_per_minute(&rows, now, 4));
        }
    }
    if console.may::<ReadDefinitions>()
        && let Ok(sizes) = console.get("/api/segment/sizes").await
    {
        sections.push(Section::Heading("Audiences".into()));
        sections.push(Section::Table(Table {
            columns: ["Audience", "Size", "Status"].map(String::from).to_vec(),
            rows: items(&sizes)
                .iter()
                .map(|s| {
                    let slug = text(&s["slug_name"]);
                    vec![
                        Cell::link(
                            slug.clone(),
                            format!("/audiences/{}", percent_encode(&slug)),
                        ),
                        Cell::text(text(&s["size"])),
                        Cell::text(text(&s["status"])),
                    ]
                })
                .collect(),
            empty: "No audiences.".into(),
        }));
    }
    if console.may::<ReadJobs>()
        && let Ok(jobs) = console.get("/v2/job").await
    {
        sections.push(Section::Heading("Jobs".into()));
        sections.push(super::jobs::job_table(&jobs));
    }
    let sections = or_hint(
        sections,
        "This token may not read anything in this account.",
    );
    console
        .page("Overview", sections)
        .flash(flash(&uri))
        .into_response()
}

/// `GET /streams`.
pub(crate) async fn streams(console: Console) -> Response {
    match console.get("/v2/stream").await {
        Ok(streams) => console
            .page("Streams", vec![stream_table(&streams)])
            .into_response(),
        Err(e) => refused(e),
    }
}

/// `GET /streams/{name}`: counts, settings and (for raw-event readers) the latest events.
pub(crate) async fn stream(console: Console, Path(name): Path<String>) -> Response {
    let streams = match console.get("/v2/stream").await {
        Ok(s) => s,
        Err(e) => return refused(e),
    };
    let Some(found) = items(&streams).iter().find(|s| s["name"] == name.as_str()) else {
        return refused(crate::console::ApiRefusal {
            status: axum::http::StatusCode::NOT_FOUND,
            message: format!("no stream {name:?} in this account"),
            data: serde_json::Value::Null,
        });
    };
    let mut sections = vec![Section::Facts(vec![
        ("Events".into(), text(&found["count"])),
        ("Last received".into(), text(&found["last_received"])),
        (
            "Not yet in profiles".into(),
            text(&found["pipeline_lag_events"]),
        ),
        ("Settings".into(), found["settings"].to_string()),
    ])];
    if let Some(rows) = super::charts::stream_rows(&console).await {
        let now = time::OffsetDateTime::now_utc();
        sections.push(super::charts::stream_per_minute(&rows, &name, now));
    }
    if console.may::<ReadRawEvents>() {
        let events = console
            .get(&format!(
                "/v2/stream/{}/events?limit=20",
                percent_encode(&name)
            ))
            .await
            .unwrap_or_default();
        sections.push(Section::Code {
            title: "Latest events".into(),
            text: pretty(&events),
        });
    }
    console
        .page(format!("Stream {name}"), sections)
        .into_response()
}

fn search_form(field: &str, value: &str) -> Section {
    Section::Form(FormView {
        id: "search".into(),
        action: "/profiles".into(),
        method: "get",
        fields: vec![
            Field::new("field", "Identity field", FieldKind::Text)
                .value(field)
                .suggestions(
                    ["email", "external_id", "braze_id", "_id"]
                        .map(String::from)
                        .to_vec(),
                ),
            Field::new("value", "Value", FieldKind::Text).value(value),
        ],
        submits: vec![("search".into(), "Find profile".into())],
    })
}

/// `GET /profiles?field=&value=`: finds a profile by any identity.
pub(crate) async fn profiles(console: Console, OriginalUri(uri): OriginalUri) -> Response {
    let q = query(&uri);
    let (field, value) = (
        q.get("field").cloned().unwrap_or_else(|| "email".into()),
        q.get("value").cloned().unwrap_or_default(),
    );
    let mut sections = vec![search_form(&field, &value)];
    if !value.is_empty() {
        let path = format!(
            "/api/entity/user/{}/{}",
            percent_encode(&field),
            percent_encode(&value)
        );
        match console.get(&path).await {
            Ok(p) => {
                let id = text(&p["_id"]);
                return axum::response::Redirect::to(&format!("/profiles/{id}")).into_response();
            }
            Err(e) => sections.push(Section::Warning(e.message)),
        }
    }
    console
        .page("Profiles", sections)
        .flash(flash(&uri))
        .into_response()
}

/// `GET /profiles/{id}`: fields, identities, merges, audiences, recent events, and erase.
pub(crate) async fn profile(console: Console, Path(id): Path<i64>) -> Response {
    let p = match console.get(&format!("/api/entity/user/_id/{id}")).await {
        Ok(p) => p,
        Err(e) => return refused(e),
    };
    let mut fields = Vec::new();
    if let Some(map) = p.as_object() {
        for (k, v) in map {
            if !k.starts_with('_') && k != "segments" {
                fields.push((k.clone(), text(v)));
            }
        }
    }
    let meta = ["_created", "_first_seen", "_last_seen", "_event_count"]
        .iter()
        .map(|k| (k.trim_start_matches('_').replace('_', " "), text(&p[*k])))
        .collect();
    let audiences = p["segments"]
        .as_array()
        .map(|a| a.iter().map(text).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    let mut sections = vec![
        Section::Facts(meta),
        Section::Facts(vec![("Audiences".into(), audiences)]),
        Section::Heading("Fields".into()),
        Section::Facts(fields),
        Section::Code {
            title: "Identities".into(),
            text: pretty(&p["_identities"]),
        },
        Section::Code {
            title: "Merges".into(),
            text: pretty(&p["_merges"]),
        },
    ];
    if console.may::<ReadRawEvents>() {
        let events = console
            .get(&format!("/api/entity/user/_id/{id}/events?limit=20"))
            .await
            .unwrap_or_default();
        sections.push(Section::Code {
            title: format!(
                "Recent events (among each stream's latest {})",
                tributary_engine::RECENT_SCAN
            ),
            text: pretty(&events),
        });
    }
    if console.may::<ManageProfiles>() {
        sections.push(Section::single(Cell::button(
                format!("/profiles/{id}/erase"),
                "Erase this person",
                Some("Erase this person everywhere (profile, raw events, audiences)? This cannot be undone."),
            )));
    }
    console
        .page(format!("Profile {id}"), sections)
        .into_response()
}

/// `POST /profiles/{id}/erase`: `DELETE /api/entity/user/_id/{id}`.
pub(crate) async fn erase(Path(id): Path<i64>, Posted(console, _): Posted) -> Response {
    let path = format!("/api/entity/user/_id/{id}");
    act(
        &console,
        Method::DELETE,
        &path,
        format!("profile {id} erased"),
        "/profiles",
    )
    .await
}
