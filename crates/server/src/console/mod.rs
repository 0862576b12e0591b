//! The web console: server-rendered pages at `/`, `/streams`, `/profiles`, `/audiences`,
//! `/authorizations`, `/jobs` and `/tokens`, for the people who set the Braze integration up.
//!
//! Architecture invariants:
//! - The console is a client of the API, in process: every read and every change goes through
//!   the same handler a JSON client reaches ([`Console::api`]), with the session's token as
//!   the caller. Validation, role checks and audit logging live in the API only, and a form's
//!   fields are named like the API's JSON fields.
//! - A session is a random secret in an HttpOnly, SameSite=Strict cookie; the store keeps only
//!   its hash, and deleting the token ends its sessions. Every POST carries a CSRF token derived
//!   from the session secret; without it the answer is 403 and nothing changes.
//! - What the token's roles cannot do is not offered ([`view::Nav`], hidden buttons); the API
//!   refuses it anyway if posted.
//! - Assets are compiled into the binary; nothing is fetched from elsewhere.

mod screens;
mod session;
pub(crate) mod view;

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::body::Body;
use axum::extract::{FromRequest, FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tower::ServiceExt;
use tributary_core::TokenRecord;

use crate::AppState;
use crate::auth::{self, SessionCaller, permits};
pub(crate) use session::Session;
use view::{Flash, Nav, Page, Section};

/// The console's routes; the API's are in [`crate::api_routes`].
pub(crate) fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/assets/{file}", get(asset))
        .merge(screens::routes())
}

/// The API router without state, built once; each in-process call gives it the state.
static API: LazyLock<Router<Arc<AppState>>> = LazyLock::new(crate::api_routes);

/// Largest API answer the console reads (a page of raw events or a job log).
const MAX_API_ANSWER: usize = 16 * 1024 * 1024;

/// An API answer that was not a success: its status and message, as the API wrote them.
#[derive(Debug)]
pub(crate) struct ApiRefusal {
    pub status: StatusCode,
    pub message: String,
    /// The envelope's details (a FilterQL error's `line` and `column`).
    pub data: Value,
}

/// A signed-in console user: the session's token and the CSRF token of its forms.
pub(crate) struct Console {
    pub state: Arc<AppState>,
    pub token: Arc<TokenRecord>,
    pub csrf: String,
}

impl FromRequestParts<Arc<AppState>> for Console {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Response> {
        let next = parts
            .uri
            .path_and_query()
            .map_or("/".to_string(), |p| p.as_str().to_string());
        let sign_in = || {
            let to = format!("/login?next={}", percent_encode(&next));
            Redirect::to(&to).into_response()
        };
        match Session::of(parts, state).await {
            Ok(Some(session)) => Ok(Console {
                state: state.clone(),
                token: session.token,
                csrf: session.csrf,
            }),
            Ok(None) => Err(sign_in()),
            Err(e) => Err(error_page(StatusCode::INTERNAL_SERVER_ERROR, &e.message)),
        }
    }
}

impl Console {
    /// Calls the API as this session's token: `GET` (and `DELETE`) without a body, others
    /// with `body` as JSON. Returns the envelope's `data` (and the whole envelope).
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(Value, Value), ApiRefusal> {
        let bytes = match &body {
            Some(b) => serde_json::to_vec(b).unwrap_or_default(),
            None => Vec::new(),
        };
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(bytes))
            .map_err(|e| ApiRefusal {
                status: StatusCode::BAD_REQUEST,
                message: format!("{path:?} is not a valid request: {e}"),
                data: Value::Null,
            })?;
        request
            .extensions_mut()
            .insert(SessionCaller(self.token.clone()));
        let response = match API
            .clone()
            .with_state(self.state.clone())
            .oneshot(request)
            .await
        {
            Ok(r) => r,
            Err(never) => match never {},
        };
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), MAX_API_ANSWER)
            .await
            .map_err(|e| ApiRefusal {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("reading the answer of {path}: {e}"),
                data: Value::Null,
            })?;
        let envelope: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        if status.is_success() {
            Ok((envelope["data"].clone(), envelope))
        } else {
            Err(ApiRefusal {
                status,
                message: envelope["message"]
                    .as_str()
                    .unwrap_or(status.canonical_reason().unwrap_or("error"))
                    .to_string(),
                data: envelope["data"].clone(),
            })
        }
    }

    /// `GET` through the API; the data only.
    pub async fn get(&self, path: &str) -> Result<Value, ApiRefusal> {
        Ok(self.api(Method::GET, path, None).await?.0)
    }

    pub fn nav(&self) -> Nav {
        let t = &self.token;
        Nav {
            streams: permits::<auth::ReadStreams>(t),
            profiles: permits::<auth::ReadProfiles>(t),
            audiences: permits::<auth::ReadDefinitions>(t),
            authorizations: permits::<auth::ReadAuthorizations>(t),
            jobs: permits::<auth::ReadJobs>(t),
            tokens: permits::<auth::ManageTokens>(t),
        }
    }

    pub fn may<P: auth::Policy>(&self) -> bool {
        permits::<P>(&self.token)
    }

    /// A page with this session's navigation and CSRF token.
    pub fn page(&self, title: impl Into<String>, sections: Vec<Section>) -> Page {
        let roles: Vec<&str> = self.token.roles.iter().map(|r| r.as_str()).collect();
        Page {
            title: title.into(),
            nav: self.nav(),
            who: format!("{} ({})", self.token.name, roles.join(", ")),
            csrf: self.csrf.clone(),
            flash: None,
            sections,
            live: false,
        }
    }
}

/// A form posted by a signed-in user, with its CSRF token checked: a handler that takes
/// `Posted` cannot run on a forged post (the answer is 403 and nothing is done).
pub(crate) struct Posted(pub Console, pub Form);

impl axum::extract::FromRequest<Arc<AppState>> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request<Body>, state: &Arc<AppState>) -> Result<Self, Response> {
        let (mut parts, body) = request.into_parts();
        let console = Console::from_request_parts(&mut parts, state).await?;
        let form = Form::from_request(Request::from_parts(parts, body), state).await?;
        session::check_csrf(&console.csrf, form.one("csrf")).map_err(|refused| *refused)?;
        Ok(Posted(console, form))
    }
}

impl Page {
    pub fn flash(mut self, flash: Option<Flash>) -> Page {
        self.flash = flash;
        self
    }
    pub fn live(mut self) -> Page {
        self.live = true;
        self
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        render(&self)
    }
}

pub(crate) fn render(template: &impl askama::Template) -> Response {
    match template.render() {
        Ok(html) => {
            let mut response = Html(html).into_response();
            // Pages hold personal data and one-time secrets: never cached, never framed.
            let headers = response.headers_mut();
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
            headers.insert(
                "content-security-policy",
                HeaderValue::from_static(
                    "default-src 'self'; style-src 'self'; script-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
                ),
            );
            response
        }
        Err(e) => {
            tracing::error!(error = %e, "rendering a console page");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be rendered",
            )
                .into_response()
        }
    }
}

/// A bare error page for when there is no session to render a full page with.
pub(crate) fn error_page(status: StatusCode, message: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status}</title>\
         <link rel=\"stylesheet\" href=\"/assets/console.css\"></head><body><main><h1>{status}</h1>\
         <p class=\"flash error\">{}</p><p><a href=\"/\">Back to the console</a></p></main></body></html>",
        escape(message)
    );
    (status, Html(html)).into_response()
}

/// HTML-escapes text for the few strings written outside templates.
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Encodes a path segment or query value.
pub(crate) fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A posted form, kept as pairs so that a name may repeat (checkbox groups).
pub(crate) struct Form(pub Vec<(String, String)>);

impl Form {
    pub fn one(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    pub fn text(&self, name: &str) -> String {
        self.one(name).unwrap_or_default().trim().to_string()
    }
    pub fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
    pub fn flag(&self, name: &str) -> bool {
        matches!(self.one(name), Some("true" | "on" | "1"))
    }
}

impl<S: Send + Sync> FromRequest<S> for Form {
    type Rejection = Response;

    async fn from_request(request: Request<Body>, state: &S) -> Result<Self, Response> {
        let axum::Form(pairs) = axum::Form::<Vec<(String, String)>>::from_request(request, state)
            .await
            .map_err(|e| error_page(StatusCode::BAD_REQUEST, &e.body_text()))?;
        Ok(Form(pairs))
    }
}

/// The console's CSS and JavaScript, compiled in.
async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind): (&'static str, &str) = match file.as_str() {
        "console.css" => (include_str!("../../assets/console.css"), "text/css"),
        "console.js" => (include_str!("../../assets/console.js"), "text/javascript"),
        _ => return error_page(StatusCode::NOT_FOUND, "no such asset"),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        body,
    )
        .into_response()
}

/// Query parameters of a console page (bad ones read as absent: a page still renders).
pub(crate) fn query(uri: &axum::http::Uri) -> HashMap<String, String> {
    crate::api::query_map(uri).unwrap_or_default()
}
