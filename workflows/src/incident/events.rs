//! Process events on an incident, and what their effects do to its SLA clocks.

use crate::accounts::{Role, RoleSet};
use crate::clock::to_millis;
use crate::error::{StoreError, StoreResult};
use crate::notify::{self, NotificationKind};
use crate::process::{self, Actor, Effect, Guard, GuardCheck};
use crate::store::{AuditContext, Db, WriteTx};
use crate::text::Description;
use serde::Serialize;

use super::record::*;

/// An event a person fires on an incident.
#[derive(Debug, Clone, Default)]
pub struct IncidentEvent {
    pub event: String,
    pub comment: Option<String>,
    /// For `assign`: who takes it.
    pub assignee_id: Option<String>,
}

/// What an audit record of a transition holds.
#[derive(Debug, Serialize)]
struct TransitionSnapshot<'a> {
    event: &'a str,
    from: &'a str,
    to: &'a str,
    comment: Option<&'a str>,
    incident: &'a Incident,
}

struct IncidentGuards<'a> {
    comment: Option<&'a str>,
    assignee_ok: bool,
}

impl GuardCheck for IncidentGuards<'_> {
    fn check(&self, guard: Guard) -> Result<(), String> {
        match guard {
            Guard::CommentGiven if self.comment.is_none_or(|c| c.trim().is_empty()) => {
                Err("a comment is required".to_owned())
            }
            Guard::AssigneeSet if !self.assignee_ok => Err("an enabled assignee_id is required".to_owned()),
            Guard::CommentGiven | Guard::AssigneeSet => Ok(()),
            other => Err(format!("{other:?} does not apply to incidents")),
        }
    }
}

/// Fires `e` on an incident for a person with `roles`, under the process version the incident started with.
pub async fn fire(db: &Db, ctx: &AuditContext, id: &str, roles: &RoleSet, e: IncidentEvent) -> StoreResult<Incident> {
    fire_as(db, ctx, id, &Actor::Person(roles.clone()), e).await
}

/// Fires `e` on an incident as Tollgate itself (an alert that recovered resolves its incident).
pub async fn fire_system(db: &Db, ctx: &AuditContext, id: &str, e: IncidentEvent) -> StoreResult<Incident> {
    fire_as(db, ctx, id, &Actor::System, e).await
}

async fn fire_as(db: &Db, ctx: &AuditContext, id: &str, actor: &Actor, e: IncidentEvent) -> StoreResult<Incident> {
    let comment = e.comment.as_deref().map(|c| Description::parse("comment", c)).transpose()?;
    let mut tx = db.write_rows(ctx).await?;
    let row = fetch_row_locked(&mut tx, id).await?;
    let def = process::definition_at(&mut tx, &row.process_name, row.process_version).await?;
    let assignee_ok = match &e.assignee_id {
        Some(a) if !a.contains('\0') => {
            let found: Option<(i64,)> =
                sqlx::query_as("SELECT disabled FROM users WHERE id = $1").bind(a).fetch_optional(tx.conn()).await?;
            found.is_some_and(|(d,)| d == 0)
        }
        Some(_) => false,
        None => false,
    };
    let guards = IncidentGuards { comment: comment.as_ref().map(Description::as_str), assignee_ok };
    let decision = process::decide(&def.definition, &row.state, &e.event, actor, &guards)?;
    // Someone who may fire the event only as a requester may do so only on an incident they reported.
    let besides_requester: Vec<Role> =
        decision.transition.roles.iter().copied().filter(|r| *r != Role::Requester).collect();
    let as_requester_only = matches!(actor, Actor::Person(roles) if !roles.permits(&besides_requester));
    if as_requester_only && ctx.actor != row.reported_by {
        return Err(StoreError::Forbidden(format!(
            "only the reporter of {} or an operator may {} it",
            format_args!("INC-{:06}", row.number),
            e.event
        )));
    }
    let before = fetch(tx.conn(), id).await?;
    apply(
        &mut tx,
        &row,
        decision.to,
        decision.effects,
        decision.terminal,
        e.assignee_id.as_deref().filter(|_| decision.transition.guards.contains(&Guard::AssigneeSet)),
        &def.definition.initial,
    )
    .await?;
    let after = fetch(tx.conn(), id).await?;
    if let Some(assignee) = after.assignee_id.as_ref().filter(|_| decision.effects.contains(&Effect::Notify)) {
        if tx.context().actor_id.as_ref() != Some(assignee) {
            let subject = format!("{} {}: {} → {}", after.reference, after.title, row.state, decision.to);
            let recipients = [assignee.clone()];
            notify::raise(&mut tx, &recipients, NotificationKind::IncidentUpdated, "incident", id, &subject).await?;
        }
    }
    let snapshot = TransitionSnapshot {
        event: &e.event,
        from: &row.state,
        to: decision.to,
        comment: comment.as_ref().map(Description::as_str),
        incident: &after,
    };
    tx.audit(&format!("incident.{}", e.event), "incident", id, Some(&before), Some(&snapshot)).await?;
    tx.commit().await?;
    Ok(after)
}

async fn apply(
    tx: &mut WriteTx<'_>,
    row: &IncidentRow,
    to: &str,
    effects: &[Effect],
    terminal: bool,
    assignee: Option<&str>,
    initial: &str,
) -> StoreResult<()> {
    let now = to_millis(tx.now());
    let mut responded_at = row.responded_at;
    if responded_at.is_none() && row.state == initial {
        responded_at = Some(now);
    }
    let mut resolved_at = row.resolved_at;
    let (mut paused_since, mut paused_ms) = (row.paused_since, row.paused_ms);
    let (mut response_due, mut resolution_due) = (row.response_due_at, row.resolution_due_at);
    for effect in effects {
        match effect {
            Effect::PauseSlaClock if paused_since.is_none() => paused_since = Some(now),
            Effect::ResumeSlaClock => {
                // Time spent pending, or resolved before a reopen, does not count against the targets.
                if let Some(since) = paused_since.take().or(resolved_at) {
                    let pause = now - since;
                    paused_ms += pause;
                    response_due += pause;
                    resolution_due += pause;
                }
                resolved_at = None;
            }
            Effect::StopSlaClock => resolved_at = Some(now),
            _ => {}
        }
    }
    if terminal && resolved_at.is_none() {
        resolved_at = Some(now);
    }
    sqlx::query(
        "UPDATE incidents SET state = $1, assignee_id = COALESCE($2, assignee_id), responded_at = $3, resolved_at = $4, \
         paused_since = $5, paused_ms = $6, response_due_at = $7, resolution_due_at = $8, updated_at = $9, \
         revision = revision + 1 WHERE id = $10",
    )
    .bind(to)
    .bind(assignee)
    .bind(responded_at)
    .bind(resolved_at)
    .bind(paused_since)
    .bind(paused_ms)
    .bind(response_due)
    .bind(resolution_due)
    .bind(now)
    .bind(&row.id)
    .execute(tx.conn())
    .await?;
    Ok(())
}
