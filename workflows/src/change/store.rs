//! Changes in the store: requests, edits that bump the revision, and events through their process.

use super::plan::{Operation, RollbackStep};
use super::risk::{self, Risk, RiskInputs};
use super::ChangeKind;
use crate::accounts::{Principal, RoleSet};
use crate::clock::{from_millis, to_millis};
use crate::cmdb::{self, fetch_ci, Criticality};
use crate::error::{StoreError, StoreResult, ValidationError};
use crate::freeze::{freezes_covering, Window};
use crate::notify::{self, NotificationKind};
use crate::process::{self, Actor, Guard, GuardCheck};
use crate::store::{AuditContext, Db, Filter, WriteTx};
use crate::text::{Description, Name, Page, PageRequest};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, FromRow};
use std::collections::BTreeSet;
use time::OffsetDateTime;

/// A change as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Change {
    pub id: String,
    /// Human reference, e.g. `CHG-000042`.
    pub reference: String,
    pub kind: ChangeKind,
    pub title: String,
    pub description: String,
    pub state: String,
    pub process: String,
    pub process_version: i64,
    /// Increments with every edit; approvals bind to it.
    pub revision: i64,
    pub requester_id: String,
    pub requester: String,
    /// Every CI the change touches: those named and those its operations act on.
    pub ci_ids: Vec<String>,
    pub operations: Vec<Operation>,
    /// Derived from the operations, last first.
    pub rollback: Vec<RollbackStep>,
    pub risk: Risk,
    #[serde(with = "time::serde::rfc3339")]
    pub window_start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub window_end: OffsetDateTime,
    pub conflict_override: Option<ConflictOverride>,
    /// The post-implementation review, recorded when the change is closed.
    pub review: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A change manager's decision to schedule despite conflicts, for one revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConflictOverride {
    pub reason: String,
    pub by: String,
    pub revision: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

#[derive(FromRow)]
struct ChangeRow {
    id: String,
    number: i64,
    kind: String,
    title: String,
    description: String,
    state: String,
    process_name: String,
    process_version: i64,
    revision: i64,
    requester_id: String,
    requester: String,
    operations: String,
    rollback: String,
    risk: String,
    window_start: i64,
    window_end: i64,
    conflict_override: Option<String>,
    review: Option<String>,
    created_at: i64,
    updated_at: i64,
}

const COLUMNS: &str = "id, number, kind, title, description, state, process_name, process_version, revision, \
    requester_id, requester, operations, rollback, risk, window_start, window_end, conflict_override, review, \
    created_at, updated_at";

fn json<T: for<'de> Deserialize<'de>>(id: &str, what: &str, s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Internal(format!("stored change {id} has a bad {what}: {e}")))
}

fn to_json<T: Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Internal(format!("cannot serialise: {e}")))
}

impl ChangeRow {
    fn into_change(self, ci_ids: Vec<String>) -> StoreResult<Change> {
        Ok(Change {
            reference: format!("CHG-{:06}", self.number),
            kind: ChangeKind::parse(&self.kind)
                .ok_or_else(|| StoreError::Internal(format!("stored change {} has a bad kind", self.id)))?,
            operations: json(&self.id, "operations", &self.operations)?,
            rollback: json(&self.id, "rollback plan", &self.rollback)?,
            risk: json(&self.id, "risk", &self.risk)?,
            conflict_override: self.conflict_override.as_deref().map(|o| json(&self.id, "override", o)).transpose()?,
            window_start: from_millis(self.window_start),
            window_end: from_millis(self.window_end),
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
            ci_ids,
            id: self.id,
            title: self.title,
            description: self.description,
            state: self.state,
            process: self.process_name,
            process_version: self.process_version,
            revision: self.revision,
            requester_id: self.requester_id,
            requester: self.requester,
            review: self.review,
        })
    }
}

pub(crate) async fn fetch(conn: &mut AnyConnection, id: &str) -> StoreResult<Change> {
    if id.contains('\0') {
        return Err(StoreError::not_found("change", id));
    }
    let row: Option<ChangeRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM changes WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    let row = row.ok_or_else(|| StoreError::not_found("change", id))?;
    let cis: Vec<(String,)> = sqlx::query_as("SELECT ci_id FROM change_cis WHERE change_id = $1 ORDER BY ci_id")
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
    row.into_change(cis.into_iter().map(|(c,)| c).collect())
}

/// A change read on a given connection, e.g. inside a write transaction.
pub async fn fetch_in(conn: &mut AnyConnection, id: &str) -> StoreResult<Change> {
    fetch(conn, id).await
}

pub async fn get_change(db: &Db, id: &str) -> StoreResult<Change> {
    let mut conn = db.pool().acquire().await?;
    fetch(&mut conn, id).await
}

/// A change as requested, checked for everything that needs no database.
#[derive(Debug, Clone)]
pub struct ChangeSpec {
    pub kind: ChangeKind,
    pub title: Name,
    pub description: Description,
    pub ci_ids: Vec<String>,
    pub operations: Vec<Operation>,
    pub window: Window,
}

impl ChangeSpec {
    pub const MAX_OPERATIONS: usize = 100;
    pub const MAX_CIS: usize = 500;

    pub fn check(&self) -> Result<(), ValidationError> {
        if self.operations.len() > Self::MAX_OPERATIONS {
            return Err(ValidationError::new("operations", format!("at most {}", Self::MAX_OPERATIONS)));
        }
        if self.ci_ids.len() > Self::MAX_CIS {
            return Err(ValidationError::new("ci_ids", format!("at most {}", Self::MAX_CIS)));
        }
        for (i, op) in self.operations.iter().enumerate() {
            op.validate(i)?;
        }
        Ok(())
    }
}

/// What a plan works out to against the CMDB: every CI touched, the rollback plan, the risk.
struct Worked {
    ci_ids: Vec<String>,
    rollback: Vec<RollbackStep>,
    risk: Risk,
}

async fn work_out(conn: &mut AnyConnection, db: &Db, spec: &ChangeSpec) -> StoreResult<Worked> {
    spec.check()?;
    let mut cis: BTreeSet<String> = BTreeSet::new();
    for id in &spec.ci_ids {
        if fetch_ci(conn, id).await?.is_none() {
            return Err(ValidationError::new("ci_ids", format!("no CI has id {id}")).into());
        }
        cis.insert(id.clone());
    }
    let mut rollback = Vec::with_capacity(spec.operations.len());
    for (i, op) in spec.operations.iter().enumerate() {
        let mut target = None;
        for (field, id, kind) in op.references() {
            match fetch_ci(conn, id).await? {
                Some(ci) if ci.kind == kind => {
                    cis.insert(ci.id.clone());
                    if target.is_none() {
                        target = Some(ci);
                    }
                }
                Some(ci) => {
                    return Err(ValidationError::new(
                        format!("operations[{i}].{field}"),
                        format!("{id} is a {}, not a {kind}", ci.kind),
                    )
                    .into())
                }
                None => {
                    return Err(
                        ValidationError::new(format!("operations[{i}].{field}"), format!("no CI has id {id}")).into()
                    )
                }
            }
        }
        rollback.push(op.inverse(target.as_ref()));
    }
    rollback.reverse();
    let ci_ids: Vec<String> = cis.into_iter().collect();
    let risk = assess(conn, db, spec, &ci_ids).await?;
    Ok(Worked { ci_ids, rollback, risk })
}

/// Gathers the facts the risk score weighs.
async fn assess(conn: &mut AnyConnection, db: &Db, spec: &ChangeSpec, ci_ids: &[String]) -> StoreResult<Risk> {
    let mut affected = BTreeSet::new();
    let mut services = BTreeSet::new();
    let mut max_criticality: Option<Criticality> = None;
    for id in ci_ids {
        if let Some(ci) = fetch_ci(conn, id).await? {
            max_criticality = max_criticality.max(Some(ci.criticality));
        }
        let walk = cmdb::impact_in(conn, id, 4).await?;
        for a in walk.affected {
            if a.ci.kind == cmdb::CiKind::Service {
                services.insert(a.ci.id.clone());
            }
            affected.insert(a.ci.id);
        }
    }
    let now = to_millis(db.clock().now());
    let (mut open, mut recent) = (0, 0);
    for id in ci_ids {
        let (o, r): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN i.resolved_at IS NULL THEN 1 ELSE 0 END), 0), \
                    COALESCE(SUM(CASE WHEN i.resolved_at >= $2 THEN 1 ELSE 0 END), 0) \
             FROM incidents i JOIN incident_cis c ON c.incident_id = i.id WHERE c.ci_id = $1",
        )
        .bind(id)
        .bind(now - 7 * 86_400_000)
        .fetch_one(&mut *conn)
        .await?;
        open += o;
        recent += r;
    }
    let signature = operation_signature(&spec.operations);
    // The last hundred finished changes with the same operations: recent enough to matter, bounded in cost.
    let finished: Vec<(String,)> = sqlx::query_as(
        "SELECT state FROM changes WHERE kind = $1 AND signature = $2 \
         AND state IN ('completed', 'failed', 'rolled_back', 'closed') ORDER BY number DESC LIMIT 100",
    )
    .bind(spec.kind.as_str())
    .bind(&signature)
    .fetch_all(&mut *conn)
    .await?;
    let failed = finished.iter().filter(|(s,)| s == "failed" || s == "rolled_back").count() as i64;
    let history = (failed, finished.len() as i64);
    Ok(risk::score(&RiskInputs {
        kind: Some(spec.kind),
        operation_kinds: spec.operations.iter().map(Operation::kind).collect(),
        affected: affected.len(),
        services: services.len(),
        max_criticality,
        open_incidents: open,
        recent_incidents: recent,
        history,
    }))
}

/// The operations' kinds, sorted: changes with the same signature share a failure history.
fn operation_signature(ops: &[Operation]) -> String {
    let mut kinds: Vec<&str> = ops.iter().map(Operation::kind).collect();
    kinds.sort_unstable();
    kinds.join(",")
}

async fn write_cis(conn: &mut AnyConnection, id: &str, ci_ids: &[String]) -> StoreResult<()> {
    sqlx::query("DELETE FROM change_cis WHERE change_id = $1").bind(id).execute(&mut *conn).await?;
    for ci in ci_ids {
        sqlx::query("INSERT INTO change_cis (change_id, ci_id) VALUES ($1, $2)")
            .bind(id)
            .bind(ci)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Records a change request as a draft of its kind's process, at the latest process version.
pub async fn create_change(
    db: &Db,
    ctx: &AuditContext,
    requester: &Principal,
    spec: ChangeSpec,
) -> StoreResult<Change> {
    let mut tx = db.write(ctx).await?;
    let worked = work_out(tx.conn(), db, &spec).await?;
    let def = process::get_definition_in(tx.conn(), spec.kind.process(), None).await?;
    let (number,): (i64,) =
        sqlx::query_as("SELECT COALESCE(MAX(number), 0) + 1 FROM changes").fetch_one(tx.conn()).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let now = to_millis(tx.now());
    sqlx::query(
        "INSERT INTO changes (id, number, kind, title, description, state, process_name, process_version, revision, \
         requester_id, requester, operations, signature, rollback, risk, risk_score, window_start, window_end, \
         conflict_override, review, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $11, $12, $13, $14, $15, $16, $17, NULL, NULL, $18, $18)",
    )
    .bind(&id)
    .bind(number)
    .bind(spec.kind.as_str())
    .bind(spec.title.as_str())
    .bind(spec.description.as_str())
    .bind(&def.definition.initial)
    .bind(&def.name)
    .bind(def.version)
    .bind(&requester.user_id)
    .bind(&requester.username)
    .bind(to_json(&spec.operations)?)
    .bind(operation_signature(&spec.operations))
    .bind(to_json(&worked.rollback)?)
    .bind(to_json(&worked.risk)?)
    .bind(i64::from(worked.risk.score))
    .bind(to_millis(spec.window.start))
    .bind(to_millis(spec.window.end))
    .bind(now)
    .execute(tx.conn())
    .await?;
    write_cis(tx.conn(), &id, &worked.ci_ids).await?;
    let change = fetch(tx.conn(), &id).await?;
    tx.audit("change.create", "change", &id, None::<&Change>, Some(&change)).await?;
    tx.commit().await?;
    Ok(change)
}

/// States in which a change's plan may still be edited.
fn editable(state: &str) -> bool {
    matches!(state, "draft" | "submitted" | "assessed" | "awaiting_approval" | "approved" | "scheduled")
}

/// Replaces a change's plan. The revision increments, so earlier votes and conflict overrides no longer
/// count; an approved or scheduled change goes back to awaiting approval.
pub async fn update_change(
    db: &Db,
    ctx: &AuditContext,
    id: &str,
    spec: ChangeSpec,
    expected_revision: Option<i64>,
) -> StoreResult<Change> {
    let mut tx = db.write(ctx).await?;
    let before = fetch(tx.conn(), id).await?;
    if let Some(expected) = expected_revision.filter(|e| *e != before.revision) {
        return Err(StoreError::Conflict(format!(
            "change {} is at revision {}, not {expected}: reload it and apply your edit again",
            before.reference, before.revision
        )));
    }
    if spec.kind != before.kind {
        return Err(ValidationError::new("kind", format!("is {} and cannot change", before.kind.as_str())).into());
    }
    if !editable(&before.state) {
        return Err(StoreError::Conflict(format!(
            "change {} is {} and its plan can no longer be edited",
            before.reference, before.state
        )));
    }
    let worked = work_out(tx.conn(), db, &spec).await?;
    let def = process::get_definition_in(tx.conn(), &before.process, Some(before.process_version)).await?;
    // Votes bind to a revision: an approved plan that changes must be approved again.
    let state = match process::decide(&def.definition, &before.state, "revise", &Actor::System, &()) {
        Ok(d) => d.to.to_owned(),
        Err(_) => before.state.clone(),
    };
    sqlx::query(
        "UPDATE changes SET title = $1, description = $2, operations = $3, signature = $4, rollback = $5, risk = $6, \
         risk_score = $7, window_start = $8, window_end = $9, state = $10, revision = revision + 1, updated_at = $11 \
         WHERE id = $12",
    )
    .bind(spec.title.as_str())
    .bind(spec.description.as_str())
    .bind(to_json(&spec.operations)?)
    .bind(operation_signature(&spec.operations))
    .bind(to_json(&worked.rollback)?)
    .bind(to_json(&worked.risk)?)
    .bind(i64::from(worked.risk.score))
    .bind(to_millis(spec.window.start))
    .bind(to_millis(spec.window.end))
    .bind(&state)
    .bind(to_millis(tx.now()))
    .bind(id)
    .execute(tx.conn())
    .await?;
    write_cis(tx.conn(), id, &worked.ci_ids).await?;
    let after = fetch(tx.conn(), id).await?;
    if after.state == "scheduled" {
        // A process with no way back to approval (standard changes) keeps the change scheduled: the edited
        // plan must pass the checks scheduling made.
        let window = Window { start: after.window_start, end: after.window_end };
        let frozen = freezes_covering(tx.conn(), &after.ci_ids, window).await?;
        let conflicts = super::conflicts::conflicts_in(tx.conn(), &after).await?;
        if !frozen.is_empty() || !conflicts.is_empty() {
            return Err(StoreError::Conflict(format!(
                "{} is scheduled and the edited plan would be frozen or conflict ({} freeze window(s), {} conflict(s)): \
                 cancel it and request it again",
                after.reference,
                frozen.len(),
                conflicts.len()
            )));
        }
    }
    if after.state == "awaiting_approval" {
        // Votes bind to the revision they were cast on: the new revision starts a new round.
        crate::approval::open_round(&mut tx, &after).await?;
    }
    tx.audit("change.update", "change", id, Some(&before), Some(&after)).await?;
    tx.commit().await?;
    Ok(after)
}

/// Filters for [`list_changes`].
#[derive(Debug, Clone, Default)]
pub struct ChangeQuery {
    pub state: Option<String>,
    pub kind: Option<ChangeKind>,
    pub requester: Option<String>,
    pub ci_id: Option<String>,
    /// Only changes whose window overlaps this span.
    pub overlapping: Option<Window>,
    /// Substring of the title, any case.
    pub q: Option<String>,
}

/// Changes matching `q`, by window start, then newest first.
pub async fn list_changes(db: &Db, q: &ChangeQuery, page: PageRequest) -> StoreResult<Page<Change>> {
    let mut f = Filter::new();
    if let Some(v) = &q.state {
        f.text("state", "=", v);
    }
    if let Some(k) = q.kind {
        f.text("kind", "=", k.as_str());
    }
    if let Some(v) = &q.requester {
        f.text("requester", "=", v);
    }
    if let Some(ci) = &q.ci_id {
        f.bound("id IN (SELECT change_id FROM change_cis WHERE ci_id = {})", ci);
    }
    if let Some(w) = q.overlapping {
        f.int("window_start", "<", to_millis(w.end));
        f.int("window_end", ">", to_millis(w.start));
    }
    if let Some(text) = &q.q {
        f.contains("title", text);
    }
    let rows: Page<ChangeRow> = f.page(db.pool(), COLUMNS, "changes", "window_start, number DESC", page).await?;
    let mut conn = db.pool().acquire().await?;
    let mut items = Vec::with_capacity(rows.items.len());
    for row in rows.items {
        items.push(fetch(&mut conn, &row.id).await?);
    }
    Ok(Page { items, total: rows.total, limit: rows.limit, offset: rows.offset })
}

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
    let mut tx = db.write(ctx).await?;
    let after = fire_in(&mut tx, id, actor, e).await?;
    tx.commit().await?;
    Ok(after)
}

/// [`fire_change`] inside an open transaction (votes fire `approve` and `reject` in their own).
pub(crate) async fn fire_in(tx: &mut WriteTx<'_>, id: &str, actor: &Actor, e: ChangeEvent) -> StoreResult<Change> {
    let comment = e.comment.as_deref().map(|c| Description::parse("comment", c)).transpose()?;
    let review = e.review.as_deref().map(|r| Description::parse("review", r)).transpose()?;
    let before = fetch(tx.conn(), id).await?;
    let def = process::get_definition_in(tx.conn(), &before.process, Some(before.process_version)).await?;
    let transition = def.definition.transitions.iter().find(|t| t.event == e.event && t.from.contains(&before.state));
    let needs = |g: Guard| transition.is_some_and(|t| t.guards.contains(&g));
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
    let approvals =
        if needs(Guard::ApprovalsComplete) { crate::approval::complete_in(tx.conn(), &before).await? } else { Ok(()) };
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
    let to = decision.to.to_owned();
    apply(tx, &before, &to, review.as_ref().map(Description::as_str)).await?;
    if decision.effects.contains(&process::Effect::RequestApprovals) {
        crate::approval::open_round(tx, &before).await?;
    }
    let after = fetch(tx.conn(), id).await?;
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

async fn apply(tx: &mut WriteTx<'_>, before: &Change, to: &str, review: Option<&str>) -> StoreResult<()> {
    sqlx::query("UPDATE changes SET state = $1, review = COALESCE($2, review), updated_at = $3 WHERE id = $4")
        .bind(to)
        .bind(review)
        .bind(to_millis(tx.now()))
        .bind(&before.id)
        .execute(tx.conn())
        .await?;
    Ok(())
}

/// Records a change manager's decision to schedule this revision despite its conflicts.
pub async fn override_conflicts(db: &Db, ctx: &AuditContext, id: &str, reason: Description) -> StoreResult<Change> {
    if reason.as_str().trim().is_empty() {
        return Err(ValidationError::new("reason", "an override needs a reason").into());
    }
    let mut tx = db.write(ctx).await?;
    let before = fetch(tx.conn(), id).await?;
    let o = ConflictOverride {
        reason: reason.as_str().to_owned(),
        by: ctx.actor.clone(),
        revision: before.revision,
        at: tx.now(),
    };
    sqlx::query("UPDATE changes SET conflict_override = $1, updated_at = $2 WHERE id = $3")
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

/// The change's history, oldest first: every audit record written about it.
pub async fn change_timeline(db: &Db, id: &str, page: PageRequest) -> StoreResult<Page<crate::audit::AuditRecord>> {
    get_change(db, id).await?;
    let q = crate::audit::AuditQuery {
        entity_type: Some("change".into()),
        entity_id: Some(id.to_owned()),
        ..Default::default()
    };
    crate::audit::list_oldest_first(db, &q, page).await
}
