//! The web dashboard: pages rendered on the server from `templates/web` (handlebars, strict mode), for the
//! people who run the processes: the approval inbox, changes and their live execution, request forms, the
//! change calendar, the incident board, the fleet with its charts, and administration.
//!
//! Sign-in is a cookie holding a bearer token of the same kind the API issues (HttpOnly, SameSite=Lax,
//! Secure over https), so revoking it signs the browser out. Every form posts a CSRF token derived from the
//! browser's CSRF cookie and its session with the server's secret; [`csrf_guard`] refuses any POST without a
//! valid one before a handler runs, so no form can forget it.
//!
//! Layout: [`render`] (the templates), [`session`] (cookies, sign-in, CSRF), [`links`] (signed approval
//! links in emails), and one module per area: [`inbox`], [`changes`], [`requests`], [`calendar`],
//! [`incidents`], [`fleet`], [`admin`].

pub mod admin;
pub mod calendar;
pub mod changes;
pub mod chart;
pub mod fleet;
pub mod inbox;
pub mod incidents;
pub mod links;
pub mod render;
pub mod requests;
pub mod session;

use crate::error::ApiError;
use crate::state::AppState;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use time::OffsetDateTime;
use tollgate_workflows::StoreError;

pub use session::{Signer, WebUser};

/// What the pages share: the templates, the signer, and how sessions and links are made.
pub struct Web {
    pub signer: Signer,
    /// How long a sign-in lasts.
    pub session_ttl: time::Duration,
    /// Cookies carry the Secure flag (the public URL is https).
    pub secure_cookies: bool,
    /// The public base URL, for links in emails.
    pub base_url: String,
    /// How long an approval link works.
    pub link_ttl: time::Duration,
}

impl Web {
    pub fn new(config: &crate::config::Config) -> Web {
        let base_url = config.web.base_url(config.server.listen);
        Web {
            signer: Signer::default(),
            session_ttl: time::Duration::seconds(i64::try_from(config.web.session_ttl_secs).unwrap_or(i64::MAX)),
            secure_cookies: base_url.starts_with("https://"),
            base_url,
            link_ttl: time::Duration::hours(i64::try_from(config.email.link_ttl_hours).unwrap_or(72)),
        }
    }
}

/// The dashboard's routes.
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/", get(|| async { Redirect::to("/inbox") }))
        .route("/login", get(session::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/inbox", get(inbox::page))
        .route("/changes", get(changes::list))
        .route("/changes/{id}", get(changes::page))
        .route("/changes/{id}/progress", get(changes::progress))
        .route("/changes/{id}/events", post(changes::event))
        .route("/changes/{id}/vote", post(changes::vote))
        .route("/requests/{form}", get(requests::form).post(requests::submit))
        .route("/calendar", get(calendar::page))
        .route("/incidents", get(incidents::board))
        .route("/incidents/{id}", get(incidents::page))
        .route("/incidents/{id}/events", post(incidents::event))
        .route("/fleet", get(fleet::tree))
        .route("/fleet/{id}", get(fleet::item))
        .route("/admin", get(admin::page))
        .route("/admin/users", post(admin::create_user))
        .route("/admin/freeze-windows", post(admin::create_freeze))
        .route("/admin/alert-rules", post(admin::create_alert_rule))
        .route("/email/approval", get(links::confirm_page).post(links::decide))
        .route("/static/app.css", get(|| async { asset("text/css", render::APP_CSS) }))
        .route("/static/app.js", get(|| async { asset("text/javascript", render::APP_JS) }))
        .layer(axum::middleware::from_fn_with_state(state.clone(), session::csrf_guard))
        .layer(axum::middleware::from_fn(session::security_headers))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    ([(axum::http::header::CONTENT_TYPE, content_type), (axum::http::header::CACHE_CONTROL, "max-age=3600")], body)
        .into_response()
}

/// A page that could not be shown: rendered as a page saying why, with the status the API would answer.
#[derive(Debug)]
pub struct WebError {
    status: StatusCode,
    message: String,
}

pub type WebResult<T> = Result<T, WebError>;

impl WebError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> WebError {
        WebError { status, message: message.into() }
    }
    pub fn forbidden(message: impl Into<String>) -> WebError {
        WebError::new(StatusCode::FORBIDDEN, message)
    }
    pub fn bad_request(message: impl Into<String>) -> WebError {
        WebError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn message(&self) -> &str {
        &self.message
    }
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<ApiError> for WebError {
    fn from(e: ApiError) -> WebError {
        WebError { status: e.status(), message: e.message().to_owned() }
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> WebError {
        ApiError::from(e).into()
    }
}

impl From<tollgate_workflows::ValidationError> for WebError {
    fn from(e: tollgate_workflows::ValidationError) -> WebError {
        ApiError::from(e).into()
    }
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        let title = match self.status {
            StatusCode::NOT_FOUND => "Not found",
            StatusCode::FORBIDDEN => "Not allowed",
            StatusCode::CONFLICT => "Not possible now",
            s if s.is_client_error() => "Cannot do that",
            _ => "Something went wrong",
        };
        let page = render::global().render(
            "message",
            &json!({"title": title, "message": self.message, "user": null, "csrf": "", "back": true}),
        );
        let mut response = page.into_response();
        *response.status_mut() = self.status;
        response
    }
}

/// A process event fired from a page's button: its name, and the comment or review the form asked for.
#[derive(serde::Deserialize)]
pub struct EventForm {
    event: String,
    comment: Option<String>,
    review: Option<String>,
}

impl EventForm {
    /// The event's name and its non-blank comment and review; a name no process could have is refused.
    pub fn checked(self) -> WebResult<(String, Option<String>, Option<String>)> {
        if self.event.is_empty() || self.event.len() > 64 {
            return Err(WebError::bad_request("no such event"));
        }
        let given = |t: Option<String>| t.filter(|t| !t.trim().is_empty());
        Ok((self.event, given(self.comment), given(self.review)))
    }
}

/// A date and time as a `datetime-local` field sends it, read as UTC.
pub fn moment(field: &str, text: &str) -> Result<OffsetDateTime, tollgate_workflows::ValidationError> {
    time::PrimitiveDateTime::parse(text.trim(), LOCAL_TIME).map(time::PrimitiveDateTime::assume_utc).map_err(|_| {
        tollgate_workflows::ValidationError::new(field, "must be a date and time, e.g. 2026-11-27T18:00 (UTC)")
    })
}

/// How `datetime-local` fields spell a time.
pub const LOCAL_TIME: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]");

/// A time as the pages show it: `2026-11-27 18:40 UTC`.
pub fn when(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!("{:04}-{:02}-{:02} {:02}:{:02} UTC", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute())
}

/// A span as the pages show it: `2 h 05 min`, `3 d 4 h`, `45 s`.
pub fn span(d: time::Duration) -> String {
    let s = d.whole_seconds().abs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86_400 => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// The context every page gets: who is signed in, their CSRF token, which menu entries to show.
pub fn base(user: &WebUser, title: &str) -> Value {
    json!({
        "title": title,
        "csrf": user.csrf,
        "user": {
            "username": user.principal.username,
            "roles": user.principal.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "admin": user.principal.roles.contains(tollgate_workflows::accounts::Role::Admin),
        },
        "back": false,
    })
}

/// Adds `extra`'s fields to `page`.
pub fn with(mut page: Value, extra: Value) -> Value {
    if let (Some(p), Value::Object(e)) = (page.as_object_mut(), extra) {
        p.extend(e);
    }
    page
}
