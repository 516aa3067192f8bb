//! Counts of the processes' records for the Prometheus endpoint and dashboards.

use crate::error::StoreResult;
use crate::store::Db;

/// How the fleet's processes stand now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessCounts {
    /// Incidents neither resolved nor closed, by priority (1–5).
    pub open_incidents: Vec<(i64, i64)>,
    /// Changes by state.
    pub changes: Vec<(String, i64)>,
    /// Changes waiting for votes.
    pub awaiting_approval: i64,
    /// Alerts by state (pending, firing, resolving).
    pub alerts: Vec<(String, i64)>,
    /// Metric segments written and not yet folded into the rollups: how far the rollups lag.
    pub unfolded_segments: i64,
    /// Incidents neither resolved nor closed that missed a response or resolution target, by priority.
    pub breached_incidents: Vec<(i64, i64)>,
    /// How long the approval stages open now have waited for their votes, in seconds: the longest and the
    /// average (0 when none waits).
    pub approval_wait_secs: (f64, f64),
    /// Jobs that carried out changes, by how they ended: `succeeded`, `rolled_back`, `failed`.
    pub job_outcomes: Vec<(String, i64)>,
    /// References of the approved, scheduled or running changes whose window is open now (at most
    /// [`MAX_OPEN_WINDOWS`], earliest first): the change windows dashboards mark.
    pub open_windows: Vec<String>,
}

/// The most change windows reported at once.
pub const MAX_OPEN_WINDOWS: i64 = 100;

pub async fn process_counts(db: &Db) -> StoreResult<ProcessCounts> {
    let open_incidents: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT priority, COUNT(*) FROM incidents WHERE state NOT IN ('resolved', 'closed') \
         GROUP BY priority ORDER BY priority",
    )
    .fetch_all(db.pool())
    .await?;
    let changes: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM changes GROUP BY state ORDER BY state")
            .fetch_all(db.pool())
            .await?;
    let awaiting_approval = changes.iter().find(|(s, _)| s == "awaiting_approval").map_or(0, |(_, n)| *n);
    let alerts: Vec<(String, i64)> =
        sqlx::query_as("SELECT state, COUNT(*) FROM alert_states GROUP BY state ORDER BY state")
            .fetch_all(db.pool())
            .await?;
    let (unfolded_segments,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM metric_segments WHERE rolled_up = 0").fetch_one(db.pool()).await?;
    let breached_incidents: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT priority, COUNT(*) FROM incidents WHERE state NOT IN ('resolved', 'closed') \
         AND (response_breached <> 0 OR resolution_breached <> 0) GROUP BY priority ORDER BY priority",
    )
    .fetch_all(db.pool())
    .await?;
    let now = crate::clock::to_millis(db.clock().now());
    let opened: Vec<(i64,)> = sqlx::query_as(
        "SELECT r.stage_opened_at FROM approval_rounds r JOIN changes c ON c.id = r.change_id \
         AND c.revision = r.revision WHERE c.state = 'awaiting_approval'",
    )
    .fetch_all(db.pool())
    .await?;
    let waits: Vec<f64> = opened.iter().map(|(at,)| (now - at).max(0) as f64 / 1000.0).collect();
    let approval_wait_secs = match waits.len() {
        0 => (0.0, 0.0),
        n => (waits.iter().copied().fold(0.0, f64::max), waits.iter().sum::<f64>() / n as f64),
    };
    let job_outcomes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT state, COUNT(*) FROM jobs WHERE state IN ('succeeded', 'rolled_back', 'failed') \
         GROUP BY state ORDER BY state",
    )
    .fetch_all(db.pool())
    .await?;
    let windows: Vec<(i64,)> = sqlx::query_as(
        "SELECT number FROM changes WHERE state IN ('approved', 'scheduled', 'implementing', 'verifying') \
         AND window_start <= $1 AND window_end > $1 ORDER BY window_start, number LIMIT $2",
    )
    .bind(now)
    .bind(MAX_OPEN_WINDOWS)
    .fetch_all(db.pool())
    .await?;
    let open_windows = windows.into_iter().map(|(n,)| crate::change::reference(n)).collect();
    Ok(ProcessCounts {
        open_incidents,
        changes,
        awaiting_approval,
        alerts,
        unfolded_segments,
        breached_incidents,
        approval_wait_secs,
        job_outcomes,
        open_windows,
    })
}
