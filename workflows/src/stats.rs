//! Counts of the processes' records for the Prometheus endpoint and dashboards.

use crate::error::StoreResult;
use crate::store::Db;

/// How the fleet's processes stand now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
}

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
    Ok(ProcessCounts { open_incidents, changes, awaiting_approval, alerts, unfolded_segments })
}
