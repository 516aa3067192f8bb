//! Events through a change's process, the guards they check, and conflict overrides.

use crate::accounts::{Role, RoleSet};
use crate::clock::to_millis;
use crate::error::{StoreError, StoreResult, ValidationError};
use crate::freeze::{freezes_covering, Window};
use crate::notify::{self, NotificationKind};
use crate::process::{self, Actor, Guard, GuardCheck};
use crate::store::{AuditContext, Db, Deferred, Param, WriteTx};
use crate::text::Description;
use serde::Serialize;
use time::OffsetDateTime;

use super::record::*;

/// An event a person fires on a change.
#[derive(Debug, Clone, Default)]
pub struct ChangeEvent {
    pub event: String,
    pub comment: Option<String>,
    /// The post-implementation review, for `close`.
    pub review: Option<String>,
}

/// What an audit record of a change transition holds.
#[derive(Debug, Serialize)]
struct TransitionSnapshot<'a> {
    event: &'a str,
    from: &'a str,
    to: &'a str,
    comment: Option<&'a str>,
    change: &'a Change,
}

/// The guards of a change, each worked out only when a transition asks for it.
struct ChangeGuards<'a> {
    change: &'a Change,
    now: OffsetDateTime,
    comment: Option<&'a str>,
    review: Option<&'a str>,
    frozen: Vec<String>,
    conflicts: usize,
    approvals: Result<(), String>,
}

impl GuardCheck for ChangeGuards<'_> {
    fn check(&self, guard: Guard) -> Result<(), String> {
        let blank = |s: Option<&str>| s.is_none_or(|s| s.trim().is_empty());
        match guard {
            Guard::WindowOpen if self.now < self.change.window_start || self.now >= self.change.window_end => {
                Err(format!("the window runs from {} to {}", self.change.window_start, self.change.window_end))
            }
            Guard::NotFrozen if !self.frozen.is_empty() => Err(format!("frozen by {}", self.frozen.join(", "))),
            Guard::NoUnresolvedConflict if self.conflicts > 0 => Err(format!(
                "{} conflict(s) with other changes; a change manager may override them with a reason",
                self.conflicts
            )),
            Guard::ApprovalsComplete => self.approvals.clone(),
            Guard::CommentGiven if blank(self.comment) => Err("a comment is required".to_owned()),
            Guard::ReviewRecorded if blank(self.review) && blank(self.change.review.as_deref()) => {
                Err("closing records a post-implementation review".to_owned())
            }
            Guard::AssigneeSet => Err("changes have no assignee".to_owned()),
            Guard::ManualWork if !self.change.operations.is_empty() => Err(format!(
                "{} has automated operations; the control plane reports their outcome",
                self.change.reference
            )),
            _ => Ok(()),
        }
    }
}

/// Fires `e` on a change for `actor` (a person's roles, or the system), under the process version it
/// started with. Guards are evaluated against the store inside the same transaction as the transition.
pub async fn fire_change(db: &Db, ctx: &AuditContext, id: &str, actor: &Actor, e: ChangeEvent) -> StoreResult<Change> {
    // Optimistic on PostgreSQL: read, decide, write once if nothing changed meanwhile, else decide again.
    for _ in 0..crate::store::OPTIMISTIC_ATTEMPTS {
        let mut tx = db.write_optimistic(ctx).await?;
        let before = fetch_locked(&mut tx, id).await?;
        if tx.is_optimistic() && may_claim_quota(&before) {
            // Counted against its department's quota with the other changes that ask: two of them side by
            // side could each fit what only one does, so they take turns under one lock (SQLite's writers
            // take turns anyway).
            drop(tx);
            let mut tx = db.write_locking(ctx, crate::quota::LOCK).await?;
            let after = fire_in(&mut tx, id, actor, e).await?;
            tx.commit().await?;
            return Ok(after);
        }
        let after = fire_on(&mut tx, before, actor, e.clone(), None).await?;
        if tx.commit_if_unchanged().await? {
            return Ok(after);
        }
    }
    Err(StoreError::Conflict(format!("change {id} kept changing while this event was decided; try again")))
}

/// Whether an event on `change` may make it live while it asks for VMs or resources: it is not live yet and
/// provisions or resizes.
fn may_claim_quota(change: &Change) -> bool {
    !super::conflicts::is_live(&change.state)
        && change
            .operations
            .iter()
            .any(|op| matches!(op, super::Operation::Provision { .. } | super::Operation::Resize { .. }))
}

/// [`fire_change`] inside an open transaction (votes fire `approve` and `reject` in their own).
pub(crate) async fn fire_in(tx: &mut WriteTx<'_>, id: &str, actor: &Actor, e: ChangeEvent) -> StoreResult<Change> {
    let before = fetch_locked(tx, id).await?;
    fire_on(tx, before, actor, e, None).await
}

/// Fires `e` on `before`, a change this transaction has already read with [`fetch_locked`].
/// `approvals`, when the caller knows it, is whether every approval stage has passed.
pub(crate) async fn fire_on(
    tx: &mut WriteTx<'_>,
    before: Change,
    actor: &Actor,
    e: ChangeEvent,
    approvals: Option<Result<(), String>>,
) -> StoreResult<Change> {
    let id = before.id.clone();
    let id = id.as_str();
    let comment = e.comment.as_deref().map(|c| Description::parse("comment", c)).transpose()?;
    let review = e.review.as_deref().filter(|r| !r.trim().is_empty());
    let review = review.map(|r| Description::parse("review", r)).transpose()?;
    let def = process::definition_at(tx, &before.process, before.process_version).await?;
    let transition = def.definition.transitions.iter().find(|t| t.event == e.event && t.from.contains(&before.state));
    let needs = |g: Guard| transition.is_some_and(|t| t.guards.contains(&g));
    if review.is_some() && transition.is_some() && !needs(Guard::ReviewRecorded) {
        return Err(ValidationError::new("review", format!("{} records no review; close does", e.event)).into());
    }
    let window = Window { start: before.window_start, end: before.window_end };
    let frozen = if needs(Guard::NotFrozen) {
        freezes_covering(tx.conn(), &before.ci_ids, window).await?.into_iter().map(|f| f.name).collect()
    } else {
        Vec::new()
    };
    let conflicts = if needs(Guard::NoUnresolvedConflict) && !overridden(&before) {
        super::conflicts::conflicts_in(tx.conn(), &before).await?.len()
    } else {
        0
    };
    let approvals = match approvals {
        Some(known) => known,
        None if needs(Guard::ApprovalsComplete) => crate::approval::complete_in(tx.conn(), &before).await?,
        None => Ok(()),
    };
    let guards = ChangeGuards {
        change: &before,
        now: tx.now(),
        comment: comment.as_ref().map(Description::as_str),
        review: review.as_ref().map(Description::as_str),
        frozen,
        conflicts,
        approvals,
    };
    let decision = process::decide(&def.definition, &before.state, &e.event, actor, &guards)?;
    if let (Actor::Person(roles), Some(t)) = (actor, transition) {
        // Someone who may fire the event only as a requester may do so only on their own change.
        let besides_requester: Vec<Role> = t.roles.iter().copied().filter(|r| *r != Role::Requester).collect();
        let only_as_requester = !roles.permits(&besides_requester) && t.roles.contains(&Role::Requester);
        if only_as_requester && tx.context().actor_id.as_deref() != Some(before.requester_id.as_str()) {
            return Err(StoreError::Forbidden(format!(
                "only {}'s requester or a change manager may {} it",
                before.reference, e.event
            )));
        }
    }
    let to = decision.to.to_owned();
    if !super::conflicts::is_live(&before.state) && super::conflicts::is_live(&to) {
        // Its requests start counting against department quotas: others may have been asked for since it
        // was drafted.
        crate::quota::check(tx.conn(), &before.operations, Some(id)).await?;
    }
    let review = review.as_ref().map(Description::as_str);
    apply(tx, &before, &to, review);
    if decision.effects.contains(&process::Effect::RequestApprovals) {
        crate::approval::open_round(tx, &before).await?;
    }
    // What `apply` wrote, without reading it back.
    let after = Change {
        state: to.clone(),
        review: review.map(str::to_owned).or_else(|| before.review.clone()),
        updated_at: crate::clock::from_millis(to_millis(tx.now())),
        version: before.version + 1,
        ..before.clone()
    };
    if decision.effects.contains(&process::Effect::Notify)
        && tx.context().actor_id.as_deref() != Some(&after.requester_id)
    {
        let subject = format!("{} {}: {} → {}", after.reference, after.title, before.state, to);
        let recipients = [after.requester_id.clone()];
        notify::raise(tx, &recipients, NotificationKind::ChangeUpdated, "change", id, &subject).await?;
    }
    let snapshot = TransitionSnapshot {
        event: &e.event,
        from: &before.state,
        to: &to,
        comment: comment.as_ref().map(Description::as_str),
        change: &after,
    };
    tx.audit(&format!("change.{}", e.event), "change", id, Some(&before), Some(&snapshot)).await?;
    Ok(after)
}

/// A person's roles as a process actor.
pub fn person(roles: &RoleSet) -> Actor {
    Actor::Person(roles.clone())
}

fn overridden(c: &Change) -> bool {
    c.conflict_override.as_ref().is_some_and(|o| o.revision == c.revision)
}

/// Records the new state, with the transaction's other deferred writes: nothing in a transition reads it back.
fn apply(tx: &mut WriteTx<'_>, before: &Change, to: &str, review: Option<&str>) {
    let params = vec![to.into(), review.into(), to_millis(tx.now()).into()];
    let sql = "UPDATE changes SET state = $1, review = COALESCE($2, review), updated_at = $3, version = version + 1";
    let update = as_read(tx, before, sql, params);
    tx.condition(update);
    let live = super::conflicts::is_live(to);
    if live != super::conflicts::is_live(&before.state) {
        for write in super::conflicts::booking(before, live) {
            tx.defer(write);
        }
    }
}

/// Marks the change as changed (its `updated_at`) by a write that leaves its state alone (a vote, a
/// timeout): optimistic writers of the change that read it before see that it moved.
pub(crate) fn touch(tx: &mut WriteTx<'_>, before: &Change) {
    let params = vec![to_millis(tx.now()).into()];
    let update = as_read(tx, before, "UPDATE changes SET updated_at = $1, version = version + 1", params);
    tx.condition(update);
}

/// `sql … WHERE` the change is as `before` read it: its id, and for an optimistic writer its version
/// too (every write since moved it).
fn as_read(tx: &WriteTx<'_>, before: &Change, sql: &str, mut params: Vec<Param>) -> Deferred {
    let n = params.len();
    let mut sql = format!("{sql} WHERE id = ${}", n + 1);
    params.push(before.id.as_str().into());
    if tx.is_optimistic() {
        sql.push_str(&format!(" AND version = ${}", n + 2));
        params.push(before.version.into());
    }
    Deferred::update(sql, params)
}

/// Records a change manager's decision to schedule this revision despite its conflicts.
pub async fn override_conflicts(db: &Db, ctx: &AuditContext, id: &str, reason: Description) -> StoreResult<Change> {
    if reason.as_str().trim().is_empty() {
        return Err(ValidationError::new("reason", "an override needs a reason").into());
    }
    let mut tx = db.write_rows(ctx).await?;
    let before = fetch_locked(&mut tx, id).await?;
    if !super::request::editable(&before.state) {
        return Err(StoreError::Conflict(format!(
            "{} is {}: there is nothing left to schedule",
            before.reference, before.state
        )));
    }
    let o = ConflictOverride {
        reason: reason.as_str().to_owned(),
        by: ctx.actor.clone(),
        revision: before.revision,
        at: tx.now(),
    };
    sqlx::query("UPDATE changes SET conflict_override = $1, updated_at = $2, version = version + 1 WHERE id = $3")
        .bind(to_json(&o)?)
        .bind(to_millis(tx.now()))
        .bind(id)
        .execute(tx.conn())
        .await?;
    let after = fetch(tx.conn(), id).await?;
    tx.audit("change.override_conflicts", "change", id, Some(&before), Some(&after)).await?;
    tx.commit().await?;
    Ok(after)
}
