//! Stages that wait past their timeout: escalated once, rejected, or passed for low-risk work.

use super::policy::TimeoutAction;
use crate::change::{self, ChangeEvent, RiskLevel};
use crate::clock::to_millis;
use crate::error::StoreResult;
use crate::process::Actor;
use crate::store::{AuditContext, Db};

use super::rounds::*;
use super::votes::*;

/// Acts on every open stage that waited past its timeout: escalates it (once), rejects the change, or
/// passes it when the change is low-risk. Returns how many stages it acted on.
pub async fn sweep_timeouts(db: &Db) -> StoreResult<usize> {
    let waiting: Vec<(String,)> = sqlx::query_as(
        "SELECT c.id FROM changes c JOIN approval_rounds r ON r.change_id = c.id AND r.revision = c.revision \
         WHERE c.state = 'awaiting_approval' AND r.timed_out = 0 ORDER BY c.number",
    )
    .fetch_all(db.pool())
    .await?;
    let ctx = AuditContext::system("approval-timeouts");
    let mut acted = 0;
    for (id,) in waiting {
        // One change that cannot be handled must not stop the others.
        match time_out_one(db, &ctx, &id).await {
            Ok(true) => acted += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(change = %id, error = %e, "approval timeout check skipped a change"),
        }
    }
    Ok(acted)
}

async fn time_out_one(db: &Db, ctx: &AuditContext, id: &str) -> StoreResult<bool> {
    let mut tx = db.write_rows(ctx).await?;
    let change = change::fetch_locked(&mut tx, id).await?;
    // Whatever the timeout does moves the change, so that votes being counted at once see it.
    change::touch(&mut tx, &change);
    let Some(round) = round_of(tx.conn(), &change).await? else { return Ok(false) };
    let Some(stage) = round.policy.stages.get(round.stage) else { return Ok(false) };
    let (Some(timeout), Some(action)) = (stage.timeout_secs, stage.on_timeout.clone()) else { return Ok(false) };
    let deadline =
        round.stage_opened_at.saturating_add(i64::try_from(timeout).unwrap_or(i64::MAX).saturating_mul(1000));
    if round.timed_out || change.state != "awaiting_approval" || to_millis(tx.now()) < deadline {
        return Ok(false);
    }
    let mark = |groups: &str| {
        sqlx::query(
            "UPDATE approval_rounds SET timed_out = 1, escalated_groups = $1 WHERE change_id = $2 AND revision = $3",
        )
        .bind(groups.to_owned())
        .bind(change.id.clone())
        .bind(change.revision)
    };
    let record = serde_json::json!({ "stage": round.stage, "stage_name": stage.name, "action": action });
    match action {
        TimeoutAction::Escalate(group) => {
            mark(&group).execute(tx.conn()).await?;
            tx.audit("approval.escalate", "change", id, None::<&()>, Some(&record)).await?;
            request_votes(&mut tx, &change, std::slice::from_ref(&group)).await?;
        }
        TimeoutAction::Reject => {
            mark("").execute(tx.conn()).await?;
            tx.audit("approval.timeout", "change", id, None::<&()>, Some(&record)).await?;
            let comment = format!("stage {} ({}) timed out", round.stage + 1, stage.name);
            let event = ChangeEvent { event: "reject".into(), comment: Some(comment), review: None };
            change::fire_in(&mut tx, id, &Actor::System, event).await?;
        }
        TimeoutAction::ApproveIfLowRisk if change.risk.level == RiskLevel::Low => {
            tx.audit("approval.timeout", "change", id, None::<&()>, Some(&record)).await?;
            advance(&mut tx, &change, round).await?;
        }
        TimeoutAction::ApproveIfLowRisk => {
            mark("").execute(tx.conn()).await?;
            tx.audit("approval.timeout", "change", id, None::<&()>, Some(&record)).await?;
        }
    }
    tx.commit().await?;
    Ok(true)
}
