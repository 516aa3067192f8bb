//! Reports (with dedup) and edits: what sets an incident's priority and SLA targets.

use super::{IncidentPolicy, Level, Priority};
use crate::clock::{from_millis, to_millis};
use crate::cmdb::fetch_ci;
use crate::error::{StoreError, StoreResult, ValidationError};
use crate::process::{self};
use crate::store::{AuditContext, Db};
use crate::text::{Description, Name};
use sqlx::AnyConnection;
use time::OffsetDateTime;

use super::record::*;

/// A report of an incident, checked.
#[derive(Debug, Clone)]
pub struct IncidentReport {
    pub title: Name,
    pub description: Description,
    pub impact: Level,
    pub urgency: Level,
    pub major: bool,
    pub ci_ids: Vec<String>,
    /// Reports with the same key while an incident with it is open update that incident.
    pub dedup_key: Option<Name>,
}

/// What a report did.
#[derive(Debug, Clone)]
pub enum Reported {
    Opened(Incident),
    /// An open incident had the report's dedup key: it absorbed the report.
    Updated(Incident),
}

pub(super) async fn check_cis(conn: &mut AnyConnection, ids: &[String]) -> StoreResult<()> {
    for id in ids {
        if fetch_ci(conn, id).await?.is_none() {
            return Err(ValidationError::new("ci_ids", format!("no CI has id {id}")).into());
        }
    }
    Ok(())
}

pub(super) async fn link_cis(conn: &mut AnyConnection, id: &str, ci_ids: &[String]) -> StoreResult<()> {
    let present = self::ci_ids(&mut *conn, id).await?;
    for ci in ci_ids {
        if !present.contains(ci) {
            sqlx::query("INSERT INTO incident_cis (incident_id, ci_id) VALUES ($1, $2)")
                .bind(id)
                .bind(ci)
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

pub(super) fn due(start: OffsetDateTime, target: time::Duration, paused_ms: i64) -> i64 {
    to_millis(start + target) + paused_ms
}

/// Response and resolution due instants for an incident opened at `created_ms` with this impact and
/// urgency, moved forward by the time it spent pending. Escalation raises the priority, not the targets.
pub(super) fn due_times(
    policy: &IncidentPolicy,
    created_ms: i64,
    impact: Level,
    urgency: Level,
    paused_ms: i64,
) -> (i64, i64) {
    let created = from_millis(created_ms);
    let p = policy.priority(impact, urgency);
    (due(created, policy.response_target(p), paused_ms), due(created, policy.resolution_target(p), paused_ms))
}

/// Opens an incident, or folds the report into the open incident with the same dedup key.
pub async fn report(db: &Db, ctx: &AuditContext, policy: &IncidentPolicy, r: IncidentReport) -> StoreResult<Reported> {
    report_with(db, ctx, policy, r, true).await
}

/// Opens an incident unless one with the report's dedup key is open; that one is returned untouched (as
/// `Updated`). For a reporter that may repeat itself, such as two servers evaluating one alert.
pub async fn report_once(
    db: &Db,
    ctx: &AuditContext,
    policy: &IncidentPolicy,
    r: IncidentReport,
) -> StoreResult<Reported> {
    report_with(db, ctx, policy, r, false).await
}

async fn report_with(
    db: &Db,
    ctx: &AuditContext,
    policy: &IncidentPolicy,
    r: IncidentReport,
    fold: bool,
) -> StoreResult<Reported> {
    let mut ci_list = r.ci_ids.clone();
    ci_list.sort();
    ci_list.dedup();
    // Reports with the same dedup key take turns, then lock the incident they fold into.
    let id = uuid::Uuid::new_v4().to_string();
    let mut tx = match &r.dedup_key {
        Some(key) => db.write_locking(ctx, &format!("incident-dedup:{}", key.as_str())).await?,
        None => db.write_rows(ctx).await?,
    };
    check_cis(tx.conn(), &ci_list).await?;
    let now = tx.now();
    if let Some(key) = &r.dedup_key {
        let open: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM incidents WHERE dedup_key = $1 AND resolved_at IS NULL ORDER BY number DESC LIMIT 1",
        )
        .bind(key.as_str())
        .fetch_optional(tx.conn())
        .await?;
        let open = match open {
            Some((id,)) => {
                // Resolved between the look-up and the lock: the report opens a new incident.
                fetch_row_locked(&mut tx, &id).await?.resolved_at.is_none().then_some(id)
            }
            None => None,
        };
        if let Some(id) = open {
            let before = fetch(tx.conn(), &id).await?;
            if !fold {
                return Ok(Reported::Updated(before));
            }
            // A repeated report may say it is worse than first thought; never better.
            let impact = before.impact.min(r.impact);
            let urgency = before.urgency.min(r.urgency);
            let priority = effective_priority(policy, impact, urgency, before.escalated);
            let row = fetch_row(tx.conn(), &id).await?;
            let (response_due, resolution_due) = due_times(policy, row.created_at, impact, urgency, row.paused_ms);
            sqlx::query(
                "UPDATE incidents SET report_count = report_count + 1, last_reported_at = $1, updated_at = $1, \
                 impact = $2, urgency = $3, priority = $4, major = $5, response_due_at = $6, resolution_due_at = $7, \
                 revision = revision + 1 WHERE id = $8",
            )
            .bind(to_millis(now))
            .bind(impact.as_str())
            .bind(urgency.as_str())
            .bind(i64::from(priority.0))
            .bind(i64::from(before.major || r.major))
            .bind(response_due)
            .bind(resolution_due)
            .bind(&id)
            .execute(tx.conn())
            .await?;
            link_cis(tx.conn(), &id, &ci_list).await?;
            let after = fetch(tx.conn(), &id).await?;
            tx.audit("incident.report", "incident", &id, Some(&before), Some(&after)).await?;
            tx.commit().await?;
            return Ok(Reported::Updated(after));
        }
    }
    let def = process::latest_definition(&mut tx, PROCESS).await?;
    let number = tx.next_number(crate::store::Numbered::Incident).await?;
    let priority = policy.priority(r.impact, r.urgency);
    sqlx::query(&format!(
        "INSERT INTO incidents ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9, $10, $11, NULL, $12, $13, 1, \
         $14, $14, $14, NULL, NULL, NULL, 0, $15, $16, 0, 0, 1)"
    ))
    .bind(&id)
    .bind(number)
    .bind(r.title.as_str())
    .bind(r.description.as_str())
    .bind(r.impact.as_str())
    .bind(r.urgency.as_str())
    .bind(i64::from(priority.0))
    .bind(i64::from(r.major))
    .bind(&def.definition.initial)
    .bind(&def.name)
    .bind(def.version)
    .bind(&ctx.actor)
    .bind(r.dedup_key.as_ref().map(Name::as_str))
    .bind(to_millis(now))
    .bind(due(now, policy.response_target(priority), 0))
    .bind(due(now, policy.resolution_target(priority), 0))
    .execute(tx.conn())
    .await?;
    link_cis(tx.conn(), &id, &ci_list).await?;
    let incident = fetch(tx.conn(), &id).await?;
    tx.audit("incident.open", "incident", &id, None::<&Incident>, Some(&incident)).await?;
    tx.commit().await?;
    Ok(Reported::Opened(incident))
}

pub(super) fn effective_priority(policy: &IncidentPolicy, impact: Level, urgency: Level, escalated: bool) -> Priority {
    let p = policy.priority(impact, urgency);
    if escalated {
        p.raised()
    } else {
        p
    }
}

/// The editable fields of an incident (all replaced).
#[derive(Debug, Clone)]
pub struct IncidentUpdate {
    pub title: Name,
    pub description: Description,
    pub impact: Level,
    pub urgency: Level,
    pub major: bool,
    pub ci_ids: Vec<String>,
}

/// Replaces an incident's fields; a new impact or urgency recomputes the priority and its SLA targets.
pub async fn update_incident(
    db: &Db,
    ctx: &AuditContext,
    policy: &IncidentPolicy,
    id: &str,
    u: IncidentUpdate,
    expected_revision: Option<i64>,
) -> StoreResult<Incident> {
    let mut tx = db.write_rows(ctx).await?;
    let row = fetch_row_locked(&mut tx, id).await?;
    if row.resolved_at.is_some() {
        return Err(StoreError::Conflict(format!(
            "INC-{:06} is {}: reopen it to change its details",
            row.number, row.state
        )));
    }
    if let Some(expected) = expected_revision {
        if expected != row.revision {
            return Err(StoreError::Conflict(format!(
                "incident {id} is at revision {}, not {expected}: reload it and apply your edit again",
                row.revision
            )));
        }
    }
    let before = fetch(tx.conn(), id).await?;
    let mut cis = u.ci_ids.clone();
    cis.sort();
    cis.dedup();
    check_cis(tx.conn(), &cis).await?;
    let priority = effective_priority(policy, u.impact, u.urgency, row.escalated != 0);
    let (response_due, resolution_due) = due_times(policy, row.created_at, u.impact, u.urgency, row.paused_ms);
    sqlx::query(
        "UPDATE incidents SET title = $1, description = $2, impact = $3, urgency = $4, priority = $5, major = $6, \
         response_due_at = $7, resolution_due_at = $8, updated_at = $9, revision = revision + 1 WHERE id = $10",
    )
    .bind(u.title.as_str())
    .bind(u.description.as_str())
    .bind(u.impact.as_str())
    .bind(u.urgency.as_str())
    .bind(i64::from(priority.0))
    .bind(i64::from(u.major))
    .bind(response_due)
    .bind(resolution_due)
    .bind(to_millis(tx.now()))
    .bind(id)
    .execute(tx.conn())
    .await?;
    sqlx::query("DELETE FROM incident_cis WHERE incident_id = $1").bind(id).execute(tx.conn()).await?;
    link_cis(tx.conn(), id, &cis).await?;
    let after = fetch(tx.conn(), id).await?;
    tx.audit("incident.update", "incident", id, Some(&before), Some(&after)).await?;
    tx.commit().await?;
    Ok(after)
}
