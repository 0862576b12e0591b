//! The in-process test harness shared by the HTTP test files: a router over a fresh store,
//! the install admin token, and `http_suite!` to run every test on SQLite and PostgreSQL.

#![allow(dead_code)]

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tributary_core::{NewToken, Role, TokenSecret};
use tributary_server::{AppState, ServerConfig, auth::TokenCache, router};
use tributary_store::{EventWriter, Store};

pub const ADMIN: &str = "install-admin-token-for-tests";
pub const BODY_LIMIT: usize = 4_096;

pub struct App {
    pub router: axum::Router,
    pub store: Arc<dyn Store>,
    pub engine: Arc<tributary_engine::Engine>,
}

impl App {
    pub async fn new(store: Arc<dyn Store>) -> App {
        App::with_config(store, App::config()).await
    }

    /// The tests' server configuration: small body limits, a managed SFTP address.
    pub fn config() -> ServerConfig {
        ServerConfig {
            max_body_bytes: BODY_LIMIT,
            max_bulk_bytes: BODY_LIMIT * 4,
            managed_sftp: Some(tributary_server::PublicAddress {
                host: "127.0.0.1".into(),
                port: 2222,
            }),
            ..ServerConfig::default()
        }
    }

    pub async fn with_config(store: Arc<dyn Store>, config: ServerConfig) -> App {
        let admin = NewToken {
            account_id: None,
            name: "install admin".into(),
            description: String::new(),
            roles: vec![Role::Admin],
            hash: TokenSecret::from_operator(ADMIN.into()).unwrap().hash(),
            created_at: 0,
            expires_at: None,
        };
        store.bootstrap("Default", &admin, 0).await.unwrap();
        tributary_engine::builtin::seed_account(store.as_ref(), 1)
            .await
            .unwrap();
        let jobs_config = tributary_jobs::RunnerConfig {
            poll: std::time::Duration::from_millis(50),
            // The simulators the tests start listen on loopback.
            allowed_urls: tributary_core::braze::UrlAllowList::parse("http://127.0.0.1").unwrap(),
            ..tributary_jobs::RunnerConfig::default()
        };
        let (writer, _task) = EventWriter::spawn(store.clone(), config.writer);
        let engine =
            tributary_engine::Engine::new(store.clone(), tributary_engine::EngineConfig::default());
        let jobs = tributary_jobs::Runner::new(
            store.clone(),
            Arc::new(tributary_core::crypto::MasterKey::generate()),
            tributary_sinks::braze::workflows(),
            jobs_config,
        );
        tokio::spawn(jobs.clone().run(std::future::pending()));
        let state = Arc::new(AppState {
            engine,
            store: store.clone(),
            writer,
            tokens: TokenCache::default(),
            stream_settings: Default::default(),
            config,
            jobs,
        });
        App {
            engine: state.engine.clone(),
            router: router(state),
            store,
        }
    }

    pub async fn send(&self, request: Request<Body>) -> (StatusCode, Value) {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body: Value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        if body.is_object() {
            assert_eq!(body["status"], status.as_u16(), "envelope status: {body}");
        }
        (status, body)
    }

    pub async fn post(
        &self,
        uri: &str,
        token: Option<&str>,
        body: impl Into<Body>,
    ) -> (StatusCode, Value) {
        let content_type = if uri.starts_with("/collect/bulk") {
            "text/csv"
        } else {
            "application/json"
        };
        let mut r = Request::post(uri).header("content-type", content_type);
        if let Some(t) = token {
            r = r.header("authorization", format!("Bearer {t}"));
        }
        self.send(r.body(body.into()).unwrap()).await
    }

    pub async fn get(&self, uri: &str, token: &str) -> (StatusCode, Value) {
        self.send(
            Request::get(uri)
                .header("authorization", token)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    pub async fn token(&self, account: i64, roles: &[&str], expires: &str) -> String {
        let (status, body) = self
            .post(
                &format!("/v2/token?account_id={account}"),
                Some(ADMIN),
                json!({"name": "t", "roles": roles, "expires": expires}).to_string(),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["data"]["token"].as_str().unwrap().to_string()
    }

    pub async fn stream_count(&self, aid: i64, stream: &str) -> i64 {
        self.store
            .streams(aid)
            .await
            .unwrap()
            .iter()
            .find(|s| s.name == stream)
            .map_or(0, |s| s.count)
    }
}

impl App {
    pub async fn post_text(&self, uri: &str, token: &str, body: &str) -> (StatusCode, Value) {
        let r = Request::post(uri)
            .header("content-type", "text/plain")
            .header("authorization", token)
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(r).await
    }

    pub async fn put(&self, uri: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let r = Request::put(uri)
            .header("content-type", "application/json")
            .header("authorization", token)
            .body(Body::from(body.to_string()))
            .unwrap();
        self.send(r).await
    }

    pub async fn delete(&self, uri: &str, token: &str) -> (StatusCode, Value) {
        self.send(
            Request::delete(uri)
                .header("authorization", token)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }
}

/// Runs each `async fn(App)` test on SQLite and PostgreSQL.
#[macro_export]
macro_rules! http_suite {
    ($($name:ident),* $(,)?) => {
        tributary_store::backend_tests!(wrap = $crate::support::App::new; $($name),*);
    };
}
