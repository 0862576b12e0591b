//! The API's OpenAPI 3.1 description, made from the handlers themselves: every API route is
//! registered through `utoipa_axum::routes!` from its handler's `#[utoipa::path]`, so a route
//! cannot be served without being described (`api_routes` has no other way to add one), and
//! `GET /openapi.json` and the viewer at `/docs` serve what the router was built from.

use std::sync::LazyLock;

use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// Every answer's shape. Successful answers carry `message: "success"` and their `data`;
/// refusals carry the status, a message that says what was wrong and where, and details in
/// `data` (a FilterQL error's `line` and `column`, say). Pages put `_next` and `total` beside.
#[derive(ToSchema)]
#[allow(dead_code)] // A description of what `api::ok` and `ApiError` write, never built.
pub struct Envelope {
    /// The HTTP status, repeated.
    status: u16,
    /// `success`, or what was wrong and where.
    message: String,
    /// The answer, or a refusal's machine-readable details.
    data: serde_json::Value,
}

/// The answers every enveloped operation may give besides its own.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum Enveloped {
    /// Done; the answer is `data`.
    #[response(status = 200)]
    Success(Envelope),
    /// The request was refused: `message` says what and where (400 malformed, 401 no valid
    /// token, 403 the token's roles do not allow it, 404 no such thing, 409 a conflict,
    /// 413 too large, 429/503 with `Retry-After`).
    #[response(status = "4XX")]
    Refused(Envelope),
    /// A failure of the server's; the details are in its log.
    #[response(status = "5XX")]
    Failed(Envelope),
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tributary",
        description = "Tributary's HTTP API: collection, profiles, audiences (FilterQL), \
            queries (LQL), authorizations, jobs and access tokens. Every answer but `/healthz` \
            and `/metrics` is a JSON envelope `{status, message, data}`. Authenticate with an \
            access token in the `Authorization` header (raw or `Bearer`), or as `?key=` or \
            `?access_token=`.",
        license(name = "Apache-2.0")
    ),
    components(schemas(Envelope)),
    modifiers(&Tokens),
    tags(
        (name = "collect", description = "Sending events"),
        (name = "streams", description = "Streams and their raw events"),
        (name = "profiles", description = "Unified profiles, their schema and identity"),
        (name = "audiences", description = "Audiences in FilterQL, their sizes and members"),
        (name = "queries", description = "LQL queries: how events become profile fields"),
        (name = "authorizations", description = "Credentials for Braze and SFTP"),
        (name = "jobs", description = "Exports to Braze and imports from SFTP"),
        (name = "admin", description = "Accounts and access tokens"),
        (name = "ops", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

/// The three ways a token is passed, as security schemes; every operation accepts any one.
struct Tokens;

impl Modify for Tokens {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "header",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "key",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("key"))),
        );
        components.add_security_scheme(
            "access_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::new("access_token"))),
        );
        openapi.security = Some(
            ["header", "key", "access_token"]
                .into_iter()
                .map(|name| {
                    utoipa::openapi::security::SecurityRequirement::new::<_, _, &str>(name, [])
                })
                .collect(),
        );
    }
}

/// The document, built once from the API's routes.
pub static DOCUMENT: LazyLock<utoipa::openapi::OpenApi> =
    LazyLock::new(|| crate::documented_api_routes().1);

/// `GET /openapi.json` and the vendored Swagger UI at `/docs`, which reads it.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::from(utoipa_swagger_ui::SwaggerUi::new("/docs").url("/openapi.json", DOCUMENT.clone()))
}
