//! The templates: every file of `templates/web` and `templates/email`, embedded in the binary and
//! registered once in strict mode (a template naming a value its page does not supply fails to render,
//! loudly, instead of showing a blank).

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use handlebars::Handlebars;
use serde::Serialize;
use std::sync::OnceLock;

macro_rules! templates {
    ($($name:literal => $path:literal),* $(,)?) => {
        /// Every template, by name, as embedded.
        pub const TEMPLATES: &[(&str, &str)] = &[$(($name, include_str!(concat!("../../../templates/", $path)))),*];
    };
}

templates! {
    "layout" => "web/layout.hbs",
    "message" => "web/message.hbs",
    "login" => "web/login.hbs",
    "inbox" => "web/inbox.hbs",
    "changes" => "web/changes.hbs",
    "change" => "web/change.hbs",
    "progress" => "web/progress.hbs",
    "request" => "web/request.hbs",
    "calendar" => "web/calendar.hbs",
    "incidents" => "web/incidents.hbs",
    "incident" => "web/incident.hbs",
    "fleet" => "web/fleet.hbs",
    "fleet_item" => "web/fleet_item.hbs",
    "admin" => "web/admin.hbs",
    "email_approval" => "web/email_approval.hbs",
    "mail/approval.html" => "email/approval_requested.html.hbs",
    "mail/approval.txt" => "email/approval_requested.txt.hbs",
    "mail/notice.html" => "email/notice.html.hbs",
    "mail/notice.txt" => "email/notice.txt.hbs",
}

pub const APP_CSS: &str = include_str!("../../../templates/web/static/app.css");
pub const APP_JS: &str = include_str!("../../../templates/web/static/app.js");

/// The registered templates.
pub struct Pages {
    registry: Handlebars<'static>,
    /// Why registering failed, if it did (a build with a broken template; its tests say so first).
    broken: Option<String>,
}

/// The one registry, built on first use.
pub fn global() -> &'static Pages {
    static PAGES: OnceLock<Pages> = OnceLock::new();
    PAGES.get_or_init(Pages::load)
}

impl Pages {
    fn load() -> Pages {
        let mut registry = Handlebars::new();
        registry.set_strict_mode(true);
        // Plain-text emails are not HTML: their templates opt out of escaping with `{{{…}}}` where needed,
        // and everything else is escaped.
        let mut broken = None;
        for (name, text) in TEMPLATES {
            if let Err(e) = registry.register_template_string(name, *text) {
                broken = Some(format!("template {name}: {e}"));
                break;
            }
        }
        // The layout and the progress part are also partials: pages wrap themselves in the layout with
        // `{{#> layout}}`, and the change page includes its progress part, which is also served alone.
        for partial in ["layout", "progress"] {
            if broken.is_some() {
                break;
            }
            if let Some((_, text)) = TEMPLATES.iter().find(|(n, _)| *n == partial) {
                if let Err(e) = registry.register_partial(partial, *text) {
                    broken = Some(format!("partial {partial}: {e}"));
                }
            }
        }
        Pages { registry, broken }
    }

    /// Fails when a template did not register.
    pub fn check(&self) -> Result<(), String> {
        self.broken.clone().map_or(Ok(()), Err)
    }

    /// Renders `name` with `data` to text.
    pub fn text<T: Serialize>(&self, name: &str, data: &T) -> Result<String, String> {
        if let Some(b) = &self.broken {
            return Err(b.clone());
        }
        self.registry.render(name, data).map_err(|e| format!("template {name}: {e}"))
    }

    /// Renders page `name`; a template error is logged and answered with a plain 500.
    pub fn render<T: Serialize>(&self, name: &str, data: &T) -> Response {
        match self.text(name, data) {
            Ok(html) => Html(html).into_response(),
            Err(e) => {
                tracing::error!(error = %e, "a page did not render");
                (StatusCode::INTERNAL_SERVER_ERROR, "This page could not be shown; see the server log.").into_response()
            }
        }
    }
}

/// Renders page `name` with `data`.
pub fn page<T: Serialize>(name: &str, data: &T) -> Response {
    global().render(name, data)
}
