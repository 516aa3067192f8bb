//! `spawn_app()`: a fresh store and router per test, driven in-process with `oneshot`, plus helpers a
//! test reads as sentences.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tollgate_workflows::accounts::{bootstrap_admin, Password};
use tollgate_workflows::testing::{fresh_database, TestDatabase};
use tollgate_workflows::{Clock, Db};
use tower::ServiceExt;

pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";
pub const USER_PASSWORD: &str = "user-password-for-tests";

pub struct TestApp {
    pub router: Router,
    /// The application state the router runs on (for the mailer, which runs beside the router).
    pub state: tollgate_api::state::AppState,
    pub db: Db,
    pub admin_token: String,
    /// The database the app runs on; declared last so the pool closes before a PostgreSQL database is dropped.
    pub database: TestDatabase,
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl TestResponse {
    /// The `error.code` of an error body, asserting the body has the one error shape.
    pub fn error_code(&self) -> String {
        let e = &self.body["error"];
        assert!(
            e["code"].is_string() && e["message"].is_string() && e["details"].is_object(),
            "not the error shape: {}",
            self.body
        );
        e["code"].as_str().unwrap().to_owned()
    }

    /// Asserts an error response: its status, the one error shape, and its code.
    pub fn assert_error(&self, status: StatusCode, code: &str) -> &Self {
        assert_eq!(self.status, status, "expected {status} {code}, got: {}", self.body);
        assert_eq!(self.error_code(), code, "{}", self.body);
        self
    }

    /// The input field a validation error names (`details.field`).
    pub fn field(&self) -> Option<&str> {
        self.body["error"]["details"]["field"].as_str()
    }

    /// The request id the server stamped on this response.
    pub fn request_id(&self) -> String {
        let id = self.headers.get("x-request-id").expect("every response carries x-request-id");
        id.to_str().unwrap().to_owned()
    }

    /// The body of a text response (metrics), or the JSON body rendered as text.
    pub fn text(&self) -> String {
        match &self.body {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// Percent-encodes `s` for a path segment or a query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with_clock(Clock::system()).await
}

/// [`spawn_app`] on `clock`: with a manual clock a test moves time for the store, its timers and tokens
/// (which expire by it too).
pub async fn spawn_app_with_clock(clock: Clock) -> TestApp {
    let database = fresh_database().await;
    let db = Db::connect(database.url(), 4, clock).await.unwrap();
    bootstrap_admin(&db, Some(Password::parse("p", ADMIN_PASSWORD).unwrap())).await.unwrap();
    tollgate_workflows::process::seed_defaults(&db).await.unwrap();
    tollgate_workflows::approval::seed_defaults(&db).await.unwrap();
    let config = tollgate_api::config::Config::default();
    let state = tollgate_api::state(&config, db.clone());
    let (router, _) = tollgate_api::app(state.clone(), config.server.max_body_bytes);
    let mut app = TestApp { router, state, db, admin_token: String::new(), database };
    app.admin_token = app.sign_in("admin", ADMIN_PASSWORD).await;
    app
}

impl TestApp {
    pub async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> TestResponse {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Body::from(v.to_string())
            }
            None => Body::empty(),
        };
        self.send_raw(req.body(body).unwrap()).await
    }

    pub async fn send_raw(&self, req: Request<Body>) -> TestResponse {
        let resp = self.router.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        TestResponse { status, headers, body }
    }

    /// Sends `body` as raw bytes with an optional Content-Type, for input no `Value` can express.
    pub async fn send_bytes(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> TestResponse {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        self.send_raw(req.body(body.into()).unwrap()).await
    }

    pub async fn get(&self, path: &str, token: &str) -> TestResponse {
        self.send(Method::GET, path, Some(token), None).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> TestResponse {
        self.send(Method::POST, path, Some(token), Some(body)).await
    }

    pub async fn put(&self, path: &str, token: &str, body: Value) -> TestResponse {
        self.send(Method::PUT, path, Some(token), Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: &str) -> TestResponse {
        self.send(Method::DELETE, path, Some(token), None).await
    }

    pub async fn sign_in(&self, username: &str, password: &str) -> String {
        let r = self
            .send(Method::POST, "/api/v1/auth/tokens", None, Some(json!({"username": username, "password": password})))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "sign-in as {username}: {}", r.body);
        r.body["token"].as_str().unwrap().to_owned()
    }

    /// Creates a user holding exactly `roles` and returns a token for them.
    pub async fn user_with_roles(&self, username: &str, roles: &[&str]) -> String {
        let r = self
            .post(
                "/api/v1/users",
                &self.admin_token,
                json!({"username": username, "password": USER_PASSWORD, "roles": roles}),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "create {username}: {}", r.body);
        self.sign_in(username, USER_PASSWORD).await
    }

    /// Registers a CI as admin and returns its id.
    pub async fn ci(&self, body: Value) -> String {
        let r = self.post("/api/v1/cis", &self.admin_token, body.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "create CI {body}: {}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// The id of the user `token` belongs to.
    pub async fn user_id(&self, token: &str) -> String {
        let r = self.get("/api/v1/users/me", token).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        r.body["user"]["id"].as_str().unwrap().to_owned()
    }

    /// Audit records matching `query` (e.g. `request_id=…`), newest first, read as admin.
    pub async fn audit(&self, query: &str) -> Vec<Value> {
        let r = self.get(&format!("/api/v1/audit?{query}"), &self.admin_token).await;
        assert_eq!(r.status, StatusCode::OK, "audit?{query}: {}", r.body);
        r.body["items"].as_array().unwrap().clone()
    }

    /// The OpenAPI document the server serves.
    pub async fn openapi(&self) -> Value {
        let r = self.send(Method::GET, "/api/v1/openapi.json", None, None).await;
        assert_eq!(r.status, StatusCode::OK);
        r.body
    }
}

/// Changes and approvals.
impl TestApp {
    /// Puts the user `token` belongs to into the group called `group`, as admin.
    pub async fn join_group(&self, group: &str, token: &str) {
        let r = self.get(&format!("/api/v1/groups?q={}", encode(group)), &self.admin_token).await;
        let items = r.body["items"].as_array().unwrap();
        let g = items.iter().find(|g| g["name"] == group).unwrap_or_else(|| panic!("no group {group}: {}", r.body));
        let user_id = self.user_id(token).await;
        let path = format!("/api/v1/groups/{}/members/{user_id}", g["id"].as_str().unwrap());
        let r = self.put(&path, &self.admin_token, Value::Null).await;
        assert_eq!(r.status, StatusCode::OK, "join {group}: {}", r.body);
    }

    pub async fn create_change(&self, token: &str, body: Value) -> TestResponse {
        self.post("/api/v1/changes", token, body).await
    }

    pub async fn change_event(&self, id: &str, token: &str, event: &str) -> TestResponse {
        self.post(&format!("/api/v1/changes/{id}/events"), token, json!({ "event": event })).await
    }

    pub async fn vote(&self, id: &str, token: &str, decision: &str, comment: Option<&str>) -> TestResponse {
        self.post(&format!("/api/v1/changes/{id}/approvals"), token, json!({"decision": decision, "comment": comment}))
            .await
    }
}
