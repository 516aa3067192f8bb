//! The SLA sweep: breaches marked, the first escalating the incident once.

use crate::clock::to_millis;
use crate::error::StoreResult;
use crate::notify::{self, NotificationKind};
use crate::store::{AuditContext, Db};

use super::record::*;

/// Marks every running incident whose SLA target has passed as breached; the first breach of an incident
/// escalates it (priority up one step), later ones only mark. Returns the incidents it touched.
pub async fn sla_sweep(db: &Db) -> StoreResult<Vec<Incident>> {
    let now = to_millis(db.clock().now());
    let due: Vec<(String,)> = sqlx::query_as(
        "SELECT id FROM incidents WHERE resolved_at IS NULL AND paused_since IS NULL AND \
         ((responded_at IS NULL AND response_breached = 0 AND response_due_at < $1) OR \
          (resolution_breached = 0 AND resolution_due_at < $1)) ORDER BY number",
    )
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    let ctx = AuditContext::system("sla-sweep");
    let mut touched = Vec::new();
    for (id,) in due {
        // One incident that cannot be swept must not stop the others.
        match sweep_one(db, &ctx, &id).await {
            Ok(Some(after)) => touched.push(after),
            Ok(None) => {}
            Err(e) => tracing::warn!(incident = %id, error = %e, "SLA sweep skipped an incident"),
        }
    }
    Ok(touched)
}

async fn sweep_one(db: &Db, ctx: &AuditContext, id: &str) -> StoreResult<Option<Incident>> {
    let mut tx = db.write_rows(ctx).await?;
    let row = fetch_row_locked(&mut tx, id).await?;
    let now = to_millis(tx.now());
    // Re-read inside the transaction: another replica may have swept it already.
    let running = row.resolved_at.is_none() && row.paused_since.is_none();
    let response = running && row.responded_at.is_none() && row.response_breached == 0 && row.response_due_at < now;
    let resolution = running && row.resolution_breached == 0 && row.resolution_due_at < now;
    if !response && !resolution {
        return Ok(None);
    }
    let before = fetch(tx.conn(), id).await?;
    let escalate = row.escalated == 0;
    let priority = if escalate { before.priority.raised() } else { before.priority };
    sqlx::query(
        "UPDATE incidents SET response_breached = $1, resolution_breached = $2, escalated = 1, priority = $3, \
         updated_at = $4, revision = revision + 1 WHERE id = $5",
    )
    .bind(i64::from(response || row.response_breached != 0))
    .bind(i64::from(resolution || row.resolution_breached != 0))
    .bind(i64::from(priority.0))
    .bind(now)
    .bind(id)
    .execute(tx.conn())
    .await?;
    let after = fetch(tx.conn(), id).await?;
    if let Some(assignee) = &after.assignee_id {
        let subject = format!("{} {} breached its SLA; now {}", after.reference, after.title, after.priority);
        let recipients = [assignee.clone()];
        notify::raise(&mut tx, &recipients, NotificationKind::IncidentBreached, "incident", id, &subject).await?;
    }
    let action = if escalate { "incident.escalate" } else { "incident.breach" };
    tx.audit(action, "incident", id, Some(&before), Some(&after)).await?;
    tx.commit().await?;
    Ok(Some(after))
}
