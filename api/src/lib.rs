//! The Tollgate server: REST API over the ITIL domain and the control plane; the composition root.
//!
//! What it is: the axum application (`/api/v1`, health, metrics), its configuration, authentication and
//! the `tollgate` binary's commands. What it is not: domain logic (in `tollgate-workflows`) or hypervisor
//! work (in `tollgate-control`). [`serve`] takes a bound listener and a shutdown future, so tests bind
//! port 0 and stop cleanly.
//!
//! Layout:
//! - [`config`] — defaults → TOML file → environment → flags.
//! - [`auth`] — bearer-token authentication and per-route permissions as extractors.
//! - [`background`] — loops that run beside the API (SLA breach checks).
//! - [`error`] — the one error shape, and extractors that use it for malformed input.
//! - [`forward`] — sending written metric batches on to InfluxDB 2 or VictoriaMetrics.
//! - [`routes`] — one module per resource, each with its `routes()`.
//! - [`openapi`] — the generated OpenAPI 3.1 document.
//! - [`metrics`] — the server's Prometheus registry and request tracking.
//! - [`state`] — the application state.
//! - [`telemetry`] — logging setup.
//! - [`web`] — the web dashboard: pages from `templates/web`, sessions, CSRF, signed approval links.
//! - [`mail`] — emailing notifications (lettre: an outbox folder, or SMTP).

pub mod auth;
pub mod background;
pub mod config;
pub mod error;
pub mod forward;
pub mod mail;
pub mod metrics;
pub mod openapi;
pub mod routes;
pub mod state;
pub mod telemetry;
pub mod web;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::state::{AppState, TokenPolicy};
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderName, Request};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tollgate_workflows::{Clock, Db};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa_axum::router::OpenApiRouter;

/// Connects the store the configuration names, creating the data folder for the embedded default.
pub async fn open_store(config: &Config, clock: Clock) -> anyhow::Result<Db> {
    use anyhow::Context as _;
    if config.database.url.is_empty() {
        std::fs::create_dir_all(&config.server.data_dir)
            .with_context(|| format!("cannot create the data folder {}", config.server.data_dir.display()))?;
    }
    let db = Db::connect(&config.database_url(), config.database.max_connections, clock)
        .await
        .context("cannot open the database")?;
    Ok(db)
}

/// The application state for `config` over an open store; starts the metric store's committer, so it must
/// run on a Tokio runtime.
pub fn state(config: &Config, db: Db) -> AppState {
    // `Config::load` validated the policy; a default-constructed config holds the default policy.
    let incidents = config.incident.policy().unwrap_or_default();
    AppState {
        incidents: Arc::new(incidents),
        points: tollgate_workflows::metrics::store::MetricStore::start(db.clone()),
        forwarder: forwarder(config),
        alerts: Default::default(),
        sim_fleet: tollgate_control::hypervisor::sim::SimFleet::new(),
        web: Arc::new(web::Web::new(config)),
        db,
        metrics: Arc::new(Metrics::new()),
        tokens: TokenPolicy {
            default_ttl_secs: config.auth.token_ttl_secs,
            max_ttl_secs: config.auth.max_token_ttl_secs,
        },
    }
}

fn forwarder(config: &Config) -> Option<forward::Forwarder> {
    let m = &config.metrics;
    if m.forward_url.is_empty() {
        return None;
    }
    let token = m.forward_token.as_ref().map(|t| t.expose().to_owned()).unwrap_or_default();
    match forward::Forwarder::start(&m.forward_url, &token, m.forward_buffer_bytes) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::error!(error = %e, "cannot start forwarding metrics; the server runs without it");
            None
        }
    }
}

fn api_routes() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (api, doc) = OpenApiRouter::with_openapi(openapi::base())
        .nest("/api/v1", routes::api_v1())
        .merge(routes::influx_v2())
        .split_for_parts();
    (api, openapi::finish(doc))
}

/// The OpenAPI document of the API, as `/api/v1/openapi.json` serves it.
pub fn api_doc() -> utoipa::openapi::OpenApi {
    api_routes().1
}

/// The full router, and the OpenAPI document it serves.
pub fn app(state: AppState, max_body_bytes: usize) -> (Router, utoipa::openapi::OpenApi) {
    let (api, doc) = api_routes();
    let doc_json = Arc::new(doc.to_pretty_json().unwrap_or_else(|_| "{}".to_owned()));
    let x_request_id = HeaderName::from_static("x-request-id");
    let router = api
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = doc_json.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], doc.as_str().to_owned()).into_response() }
            }),
        )
        .merge(routes::operational())
        .merge(web::routes(state.clone()))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.metrics.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(CatchPanicLayer::custom(|_| error::ApiError::internal(&"a request handler panicked").into_response()))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let route = req.extensions().get::<axum::extract::MatchedPath>().map_or("unmatched", |m| m.as_str());
            let id = req.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
            tracing::info_span!("request", method = %req.method(), route, request_id = id)
        }))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
        .with_state(state);
    (router, doc)
}

/// Serves `router` on `listener` until `shutdown` resolves, then gives in-flight requests `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, router).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let mut stopped = stop_rx;
    let mut server = tokio::spawn(async move { server.await });
    tokio::select! {
        result = &mut server => return Ok(result??),
        _ = stopped.wait_for(|s| *s) => {}
    }
    tracing::info!(grace_secs = grace.as_secs(), "shutting down; finishing in-flight requests");
    match tokio::time::timeout(grace, server).await {
        Ok(result) => Ok(result??),
        Err(_) => {
            tracing::warn!("grace period over; exiting with requests still open");
            Ok(())
        }
    }
}
