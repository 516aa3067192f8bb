//! Liveness, readiness and the Prometheus endpoint; public, for probes and scrapers.

use crate::metrics::{Fleet, Metrics};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use tollgate_workflows::metrics::store::MetricStore;
use tollgate_workflows::Db;

pub fn routes() -> Router<AppState> {
    Router::new().route("/healthz", get(healthz)).route("/readyz", get(readyz)).route("/metrics", get(metrics))
}

/// The process is up.
async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// The process can serve: its database answers.
async fn readyz(State(db): State<Db>) -> impl IntoResponse {
    if db.ping().await {
        (StatusCode::OK, axum::Json(serde_json::json!({ "status": "ready", "database": "ok" })))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "status": "not ready", "database": "unreachable" })),
        )
    }
}

/// The server's own figures and the fleet's (processes, metric points); if the database cannot be read the
/// fleet's gauges keep their last values and the server's own figures are still served.
async fn metrics(
    State(metrics): State<Arc<Metrics>>,
    State(db): State<Db>,
    State(points): State<MetricStore>,
    State(forwarder): State<Option<crate::forward::Forwarder>>,
    State(alerts): State<Arc<tollgate_workflows::alert::EvaluatorTotals>>,
) -> impl IntoResponse {
    match tollgate_workflows::stats::process_counts(&db).await {
        Ok(counts) => {
            let forward = forwarder.map(|f| f.totals());
            metrics.set_fleet(&Fleet { counts, points: points.totals(), forward, alerts: (&*alerts).into() })
        }
        Err(e) => tracing::warn!(error = %e, "the fleet's figures could not be read for /metrics"),
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], metrics.render())
}
