//! Links from an incident to the changes that caused or fixed it.

use crate::clock::to_millis;
use crate::error::{StoreError, StoreResult, ValidationError};
use crate::store::{AuditContext, Db};

use super::record::*;

/// Links a change to an incident (doing it twice changes nothing).
pub async fn link_change(
    db: &Db,
    ctx: &AuditContext,
    id: &str,
    change_id: &str,
    kind: LinkKind,
) -> StoreResult<Incident> {
    let mut tx = db.write_rows(ctx).await?;
    fetch_row_locked(&mut tx, id).await?;
    let before = fetch(tx.conn(), id).await?;
    match crate::change::fetch_in(tx.conn(), change_id).await {
        Ok(_) => {}
        Err(StoreError::NotFound { .. }) => {
            return Err(ValidationError::new("change_id", format!("no change has id {change_id}")).into())
        }
        Err(e) => return Err(e),
    }
    if before.changes.iter().any(|l| l.change_id == change_id && l.kind == kind) {
        return Ok(before);
    }
    sqlx::query(
        "INSERT INTO incident_changes (incident_id, change_id, kind, created_at, created_by) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(id)
    .bind(change_id)
    .bind(kind.as_str())
    .bind(to_millis(tx.now()))
    .bind(&ctx.actor)
    .execute(tx.conn())
    .await?;
    let after = fetch(tx.conn(), id).await?;
    tx.audit("incident.link_change", "incident", id, Some(&before), Some(&after)).await?;
    tx.commit().await?;
    Ok(after)
}

/// Removes a link between a change and an incident.
pub async fn unlink_change(
    db: &Db,
    ctx: &AuditContext,
    id: &str,
    change_id: &str,
    kind: LinkKind,
) -> StoreResult<Incident> {
    let mut tx = db.write_rows(ctx).await?;
    fetch_row_locked(&mut tx, id).await?;
    let before = fetch(tx.conn(), id).await?;
    if !before.changes.iter().any(|l| l.change_id == change_id && l.kind == kind) {
        return Err(StoreError::not_found("link", format!("{id} {} {change_id}", kind.as_str())));
    }
    sqlx::query("DELETE FROM incident_changes WHERE incident_id = $1 AND change_id = $2 AND kind = $3")
        .bind(id)
        .bind(change_id)
        .bind(kind.as_str())
        .execute(tx.conn())
        .await?;
    let after = fetch(tx.conn(), id).await?;
    tx.audit("incident.unlink_change", "incident", id, Some(&before), Some(&after)).await?;
    tx.commit().await?;
    Ok(after)
}
