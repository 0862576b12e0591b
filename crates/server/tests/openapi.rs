//! `GET /openapi.json` describes every route the API serves, and nothing it does not.
//!
//! Both directions are checked: each documented operation is answered by the router (a
//! request without a token meets the route's authentication, not the fallback's 404 or a
//! 405), and the router has no way to serve an undocumented route (its routes are only ever
//! added from documented handlers, which the source check below holds to).

mod support;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use serde_json::Value;
use support::App;

async fn document(app: &App) -> Value {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let response = app
        .router
        .clone()
        .oneshot(Request::get("/openapi.json").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).expect("the document is JSON")
}

#[tokio::test]
async fn every_documented_operation_is_served_and_asks_for_a_token() {
    let (store, _dir) = tributary_store::testing::sqlite_store().await;
    let app = App::new(store).await;
    let doc = document(&app).await;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        let concrete = path
            .split('/')
            .map(|part| if part.starts_with('{') { "1" } else { part })
            .collect::<Vec<_>>()
            .join("/");
        for (method, operation) in item.as_object().expect("path item") {
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            operations += 1;
            let request = Request::builder()
                .method(method.clone())
                .uri(&concrete)
                .body(Body::empty())
                .unwrap();
            let (status, body) = app.send(request).await;
            let public = operation["security"] == serde_json::json!([{}]);
            let expected = if public {
                StatusCode::OK
            } else {
                StatusCode::UNAUTHORIZED
            };
            assert_eq!(status, expected, "{method} {concrete} ({path}): {body}");
            assert!(
                operation["responses"]
                    .as_object()
                    .is_some_and(|r| !r.is_empty()),
                "{method} {path} documents no response"
            );
            assert!(
                operation["tags"].as_array().is_some_and(|t| !t.is_empty()),
                "{method} {path} has no tag"
            );
        }
    }
    // The API's whole surface: collection, streams, profiles, audiences, queries,
    // authorizations, jobs, tokens, accounts, Lytics' names and ops.
    assert!(operations >= 55, "only {operations} operations documented");
    // An undocumented path is the fallback's 404, so the probe above can tell them apart.
    let (status, body) = app
        .send(
            Request::get("/v2/nothing-here")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

#[tokio::test]
async fn request_bodies_and_parameters_come_from_the_handlers_types() {
    let (store, _dir) = tributary_store::testing::sqlite_store().await;
    let app = App::new(store).await;
    let doc = document(&app).await;
    let token = &doc["paths"]["/v2/token"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        ["$ref"];
    assert_eq!(token, "#/components/schemas/NewTokenBody");
    let schema = &doc["components"]["schemas"]["NewTokenBody"];
    assert_eq!(schema["properties"]["roles"]["type"], "array", "{schema}");
    let required: Vec<&str> = schema["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        required.contains(&"name") && required.contains(&"roles"),
        "{schema}"
    );
    let scan = doc["paths"]["/api/segment/{slug}/scan"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    let names: Vec<&str> = scan.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["slug", "limit", "start"]);
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    assert!(schemes.contains_key("header") && schemes.contains_key("key"));
}

#[tokio::test]
async fn the_viewer_is_served_from_the_binary() {
    let (store, _dir) = tributary_store::testing::sqlite_store().await;
    let app = App::new(store).await;
    let (status, page) = app
        .send(Request::get("/docs/").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.as_str().is_some_and(|p| p.contains("swagger")),
        "{page}"
    );
    let (status, config) = app
        .send(
            Request::get("/docs/swagger-initializer.js")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        config.as_str().is_some_and(|c| c.contains("/openapi.json")),
        "{config}"
    );
}

/// The router's API routes are made in one function, from documented handlers only: a
/// `.route(...)`, `.nest(...)` or `.merge(...)` there would serve a path the document lacks.
#[test]
fn api_routes_are_only_added_from_documented_handlers() {
    let source = include_str!("../src/lib.rs");
    let start = source
        .find("fn documented_api_routes")
        .expect("documented_api_routes in lib.rs");
    let body = &source[start..];
    let body = &body[..body.find("\n}\n").expect("end of the function")];
    for forbidden in [".route(", ".nest(", ".merge(", ".route_service("] {
        assert!(
            !body.contains(forbidden),
            "documented_api_routes adds a route without documenting it: {forbidden}"
        );
    }
    let api_routes = &source[source.find("fn api_routes").expect("api_routes")..];
    let api_routes = &api_routes[..api_routes.find("\n}\n").expect("end")];
    assert!(
        api_routes.contains("documented_api_routes()") && !api_routes.contains(".route("),
        "api_routes must serve exactly the documented routes"
    );
}
