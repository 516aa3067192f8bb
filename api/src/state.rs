//! The one application state, with sub-states handlers take through `FromRef`.

use crate::metrics::Metrics;
use axum::extract::FromRef;
use std::sync::Arc;
use tollgate_workflows::incident::IncidentPolicy;
use tollgate_workflows::metrics::store::MetricStore;
use tollgate_workflows::Db;

/// Token lifetimes, from the `[auth]` section.
#[derive(Debug, Clone, Copy)]
pub struct TokenPolicy {
    pub default_ttl_secs: u64,
    pub max_ttl_secs: u64,
}

#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub metrics: Arc<Metrics>,
    pub tokens: TokenPolicy,
    pub incidents: Arc<IncidentPolicy>,
    /// Metric points agents write.
    pub points: MetricStore,
    /// Where written batches are also sent, when configured.
    pub forwarder: Option<crate::forward::Forwarder>,
    /// What the alert evaluator has done, for `/metrics`.
    pub alerts: Arc<tollgate_workflows::alert::EvaluatorTotals>,
    /// The simulated hosts' hypervisors (the demo fleet), served inside the server.
    pub sim_fleet: Arc<tollgate_control::hypervisor::sim::SimFleet>,
    /// The web dashboard's signer and settings.
    pub web: Arc<crate::web::Web>,
}

impl FromRef<AppState> for Arc<tollgate_workflows::alert::EvaluatorTotals> {
    fn from_ref(state: &AppState) -> Arc<tollgate_workflows::alert::EvaluatorTotals> {
        state.alerts.clone()
    }
}

impl FromRef<AppState> for Option<crate::forward::Forwarder> {
    fn from_ref(state: &AppState) -> Option<crate::forward::Forwarder> {
        state.forwarder.clone()
    }
}

impl FromRef<AppState> for MetricStore {
    fn from_ref(state: &AppState) -> MetricStore {
        state.points.clone()
    }
}

impl FromRef<AppState> for Arc<IncidentPolicy> {
    fn from_ref(state: &AppState) -> Arc<IncidentPolicy> {
        state.incidents.clone()
    }
}

impl FromRef<AppState> for Db {
    fn from_ref(state: &AppState) -> Db {
        state.db.clone()
    }
}

impl FromRef<AppState> for Arc<Metrics> {
    fn from_ref(state: &AppState) -> Arc<Metrics> {
        state.metrics.clone()
    }
}

impl FromRef<AppState> for TokenPolicy {
    fn from_ref(state: &AppState) -> TokenPolicy {
        state.tokens
    }
}
