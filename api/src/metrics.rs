//! The server's own Prometheus metrics: one struct owns the registry; labels are low-cardinality
//! (method, route template, status), never raw paths or ids.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    Encoder, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use std::sync::Arc;
use std::time::Instant;

pub struct Metrics {
    registry: Registry,
    incidents_breached: IntGaugeVec,
    approval_wait: GaugeVec,
    change_outcomes: IntGaugeVec,
    change_windows: IntGaugeVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    incidents_open: IntGaugeVec,
    changes: IntGaugeVec,
    approvals_pending: IntGauge,
    metric_values: IntCounter,
    metric_skipped: IntCounter,
    metric_batches: IntCounter,
    forward_sent: IntCounter,
    forward_dropped: IntCounter,
    forward_refused: IntCounter,
    forward_queued: IntGauge,
    alerts: IntGaugeVec,
    unfolded_segments: IntGauge,
    alert_rounds: IntCounter,
    alert_evaluations: IntCounter,
    alerts_fired: IntCounter,
    alerts_suppressed: IntCounter,
}

/// The fleet's figures, read as the endpoint is scraped.
pub struct Fleet {
    pub counts: tollgate_workflows::stats::ProcessCounts,
    pub points: tollgate_workflows::metrics::store::Totals,
    /// Forwarding's, when it is configured.
    pub forward: Option<crate::forward::ForwardTotals>,
    /// The alert evaluator's.
    pub alerts: AlertTotals,
}

/// The alert evaluator's counts, read as the endpoint is scraped.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlertTotals {
    pub rounds: u64,
    pub evaluations: u64,
    pub fired: u64,
    pub suppressed: u64,
}

impl From<&tollgate_workflows::alert::EvaluatorTotals> for AlertTotals {
    fn from(t: &tollgate_workflows::alert::EvaluatorTotals) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        AlertTotals {
            rounds: t.rounds.load(Relaxed),
            evaluations: t.evaluations.load(Relaxed),
            fired: t.fired.load(Relaxed),
            suppressed: t.suppressed.load(Relaxed),
        }
    }
}

fn defined<T>(r: Result<T, prometheus::Error>) -> T {
    r.unwrap_or_else(|e| unreachable!("static metric definition: {e}"))
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new("tollgate_http_requests_total", "HTTP requests answered, by route template and status."),
            &["method", "route", "status"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let http_duration = HistogramVec::new(
            HistogramOpts::new("tollgate_http_request_duration_seconds", "Time to answer an HTTP request.")
                .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["method", "route"],
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        let build = IntGauge::with_opts(
            Opts::new("tollgate_build_info", "Always 1; the version label says which build runs.")
                .const_label("version", env!("CARGO_PKG_VERSION")),
        )
        .unwrap_or_else(|e| unreachable!("static metric definition: {e}"));
        build.set(1);
        let incidents_open = defined(IntGaugeVec::new(
            Opts::new("tollgate_incidents_open", "Incidents neither resolved nor closed, by priority."),
            &["priority"],
        ));
        let changes = defined(IntGaugeVec::new(Opts::new("tollgate_changes", "Changes by state."), &["state"]));
        let incidents_breached = defined(IntGaugeVec::new(
            Opts::new("tollgate_incidents_breached", "Open incidents that missed an SLA target, by priority."),
            &["priority"],
        ));
        let approval_wait = defined(GaugeVec::new(
            Opts::new(
                "tollgate_approval_wait_seconds",
                "How long the approval stages open now have waited for votes: the longest (max) and the average (avg).",
            ),
            &["stat"],
        ));
        let change_outcomes = defined(IntGaugeVec::new(
            Opts::new(
                "tollgate_change_outcomes",
                "Jobs that carried out changes, by outcome (succeeded, rolled_back, failed).",
            ),
            &["outcome"],
        ));
        let change_windows = defined(IntGaugeVec::new(
            Opts::new(
                "tollgate_change_window_open",
                "1 for each approved, scheduled or running change whose window is open now (at most 100).",
            ),
            &["reference"],
        ));
        let approvals_pending =
            defined(IntGauge::new("tollgate_approvals_pending", "Changes awaiting approval votes."));
        let metric_values = defined(IntCounter::new(
            "tollgate_metric_values_written_total",
            "Metric field values agents wrote and the store kept, since the server started.",
        ));
        let metric_skipped = defined(IntCounter::new(
            "tollgate_metric_string_fields_skipped_total",
            "String field values written and not kept (the store keeps numbers), since the server started.",
        ));
        let metric_batches = defined(IntCounter::new(
            "tollgate_metric_batches_total",
            "Grouped commits of metric points, since the server started.",
        ));
        let alerts = defined(IntGaugeVec::new(
            Opts::new("tollgate_alerts", "Alerts by state: pending, firing, resolving."),
            &["state"],
        ));
        let unfolded_segments = defined(IntGauge::new(
            "tollgate_metric_segments_unfolded",
            "Committed batches of metric points not yet folded into the rollups (how far the rollups lag).",
        ));
        let alert_rounds = defined(IntCounter::new(
            "tollgate_alert_rounds_total",
            "Alert evaluation rounds completed, since the server started.",
        ));
        let alert_evaluations = defined(IntCounter::new(
            "tollgate_alert_evaluations_total",
            "Series judged against alert rules, since the server started.",
        ));
        let alerts_fired = defined(IntCounter::new(
            "tollgate_alerts_fired_total",
            "Alerts that opened or updated an incident, since the server started.",
        ));
        let alerts_suppressed = defined(IntCounter::new(
            "tollgate_alerts_suppressed_total",
            "Firing alerts held back by an implementing change or a host-down alert, since the server started.",
        ));
        let forward_sent = defined(IntCounter::new(
            "tollgate_forward_batches_sent_total",
            "Metric batches forwarded to InfluxDB 2 or VictoriaMetrics, since the server started.",
        ));
        let forward_dropped = defined(IntCounter::new(
            "tollgate_forward_batches_dropped_total",
            "Metric batches dropped from the full forwarding buffer, since the server started.",
        ));
        let forward_refused = defined(IntCounter::new(
            "tollgate_forward_batches_refused_total",
            "Metric batches the forwarding target refused as malformed, since the server started.",
        ));
        let forward_queued =
            defined(IntGauge::new("tollgate_forward_batches_queued", "Metric batches waiting to be forwarded."));
        for collector in [
            Box::new(forward_sent.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(forward_dropped.clone()),
            Box::new(forward_refused.clone()),
            Box::new(forward_queued.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
            Box::new(build),
            Box::new(incidents_open.clone()),
            Box::new(incidents_breached.clone()),
            Box::new(approval_wait.clone()),
            Box::new(change_outcomes.clone()),
            Box::new(change_windows.clone()),
            Box::new(changes.clone()),
            Box::new(approvals_pending.clone()),
            Box::new(metric_values.clone()),
            Box::new(metric_skipped.clone()),
            Box::new(metric_batches.clone()),
            Box::new(alerts.clone()),
            Box::new(unfolded_segments.clone()),
            Box::new(alert_rounds.clone()),
            Box::new(alert_evaluations.clone()),
            Box::new(alerts_fired.clone()),
            Box::new(alerts_suppressed.clone()),
        ] {
            // Registration fails only on duplicate names, which these are not.
            let _ = registry.register(collector);
        }
        Metrics {
            registry,
            incidents_breached,
            approval_wait,
            change_outcomes,
            change_windows,
            http_requests,
            http_duration,
            incidents_open,
            changes,
            approvals_pending,
            metric_values,
            metric_skipped,
            metric_batches,
            forward_sent,
            forward_dropped,
            forward_refused,
            forward_queued,
            alerts,
            unfolded_segments,
            alert_rounds,
            alert_evaluations,
            alerts_fired,
            alerts_suppressed,
        }
    }

    /// Brings the fleet's gauges and the metric store's counters up to `fleet`.
    pub fn set_fleet(&self, fleet: &Fleet) {
        self.incidents_open.reset();
        for p in 1..=5 {
            let n = fleet.counts.open_incidents.iter().find(|(q, _)| *q == p).map_or(0, |(_, n)| *n);
            self.incidents_open.with_label_values(&[&format!("P{p}")]).set(n);
        }
        for p in 1..=5 {
            let n = fleet.counts.breached_incidents.iter().find(|(q, _)| *q == p).map_or(0, |(_, n)| *n);
            self.incidents_breached.with_label_values(&[&format!("P{p}")]).set(n);
        }
        let (longest, average) = fleet.counts.approval_wait_secs;
        self.approval_wait.with_label_values(&["max"]).set(longest);
        self.approval_wait.with_label_values(&["avg"]).set(average);
        for outcome in ["succeeded", "rolled_back", "failed"] {
            let n = fleet.counts.job_outcomes.iter().find(|(o, _)| o == outcome).map_or(0, |(_, n)| *n);
            self.change_outcomes.with_label_values(&[outcome]).set(n);
        }
        self.change_windows.reset();
        for reference in &fleet.counts.open_windows {
            self.change_windows.with_label_values(&[reference.as_str()]).set(1);
        }
        self.changes.reset();
        for (state, n) in &fleet.counts.changes {
            self.changes.with_label_values(&[state.as_str()]).set(*n);
        }
        self.approvals_pending.set(fleet.counts.awaiting_approval);
        self.unfolded_segments.set(fleet.counts.unfolded_segments);
        for state in ["pending", "firing", "resolving"] {
            let n = fleet.counts.alerts.iter().find(|(s, _)| s == state).map_or(0, |(_, n)| *n);
            self.alerts.with_label_values(&[state]).set(n);
        }
        for (counter, total) in [
            (&self.metric_values, fleet.points.values),
            (&self.metric_skipped, fleet.points.skipped),
            (&self.metric_batches, fleet.points.batches),
            (&self.alert_rounds, fleet.alerts.rounds),
            (&self.alert_evaluations, fleet.alerts.evaluations),
            (&self.alerts_fired, fleet.alerts.fired),
            (&self.alerts_suppressed, fleet.alerts.suppressed),
        ] {
            counter.inc_by(total.saturating_sub(counter.get()));
        }
        if let Some(f) = fleet.forward {
            for (counter, total) in
                [(&self.forward_sent, f.sent), (&self.forward_dropped, f.dropped), (&self.forward_refused, f.refused)]
            {
                counter.inc_by(total.saturating_sub(counter.get()));
            }
            self.forward_queued.set(i64::try_from(f.queued).unwrap_or(i64::MAX));
        }
    }

    pub fn observe_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.http_requests.with_label_values(&[method, route, &status.to_string()]).inc();
        self.http_duration.with_label_values(&[method, route]).observe(seconds);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// Middleware counting every request by its route template.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |m| m.as_str()).to_owned();
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(req).await;
    metrics.observe_request(&method, &route, response.status().as_u16(), started.elapsed().as_secs_f64());
    response
}
