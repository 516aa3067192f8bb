//! Incidents in the store: reports (with dedup), edits, process events, SLA sweeps and the timeline.

use super::{IncidentPolicy, Level, Priority};
use crate::accounts::RoleSet;
use crate::audit::{self, AuditQuery, AuditRecord};
use crate::clock::{from_millis, to_millis};
use crate::cmdb::fetch_ci;
use crate::error::{StoreError, StoreResult, ValidationError};
use crate::notify::{self, NotificationKind};
use crate::process::{self, Actor, Effect, Guard, GuardCheck};
use crate::store::{AuditContext, Db, Filter, WriteTx};
use crate::text::{Description, Name, Page, PageRequest};
use serde::Serialize;
use sqlx::{AnyConnection, FromRow};
use time::OffsetDateTime;

/// The process incidents run.
const PROCESS: &str = "incident";

/// SLA clocks of an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Sla {
    #[serde(with = "time::serde::rfc3339")]
    pub response_due_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub resolution_due_at: OffsetDateTime,
    /// The clocks stand still while the incident is pending.
    pub paused: bool,
    pub response_breached: bool,
    pub resolution_breached: bool,
}

/// How a change relates to an incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LinkKind {
    /// The change caused the incident.
    CausedBy,
    /// The change fixed it.
    FixedBy,
}

impl LinkKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkKind::CausedBy => "caused_by",
            LinkKind::FixedBy => "fixed_by",
        }
    }
}

/// A change linked to an incident.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChangeLink {
    pub change_id: String,
    pub kind: LinkKind,
}

/// An incident as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Incident {
    pub id: String,
    /// Human reference, e.g. `INC-000042`.
    pub reference: String,
    pub title: String,
    pub description: String,
    pub impact: Level,
    pub urgency: Level,
    pub priority: Priority,
    /// A breach raised the priority one step (it happens once).
    pub escalated: bool,
    pub major: bool,
    pub state: String,
    pub process: String,
    pub process_version: i64,
    pub assignee_id: Option<String>,
    pub reported_by: String,
    pub dedup_key: Option<String>,
    /// How many reports this incident has absorbed (1 for a single report).
    pub report_count: i64,
    pub ci_ids: Vec<String>,
    /// Changes that caused or fixed it.
    pub changes: Vec<ChangeLink>,
    pub sla: Sla,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub last_reported_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub responded_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub resolved_at: Option<OffsetDateTime>,
    pub revision: i64,
}

#[derive(FromRow)]
struct IncidentRow {
    id: String,
    number: i64,
    title: String,
    description: String,
    impact: String,
    urgency: String,
    priority: i64,
    escalated: i64,
    major: i64,
    state: String,
    process_name: String,
    process_version: i64,
    assignee_id: Option<String>,
    reported_by: String,
    dedup_key: Option<String>,
    report_count: i64,
    created_at: i64,
    updated_at: i64,
    last_reported_at: i64,
    responded_at: Option<i64>,
    resolved_at: Option<i64>,
    paused_since: Option<i64>,
    paused_ms: i64,
    response_due_at: i64,
    resolution_due_at: i64,
    response_breached: i64,
    resolution_breached: i64,
    revision: i64,
}

const COLUMNS: &str = "id, number, title, description, impact, urgency, priority, escalated, major, state, \
    process_name, process_version, assignee_id, reported_by, dedup_key, report_count, created_at, updated_at, \
    last_reported_at, responded_at, resolved_at, paused_since, paused_ms, response_due_at, resolution_due_at, \
    response_breached, resolution_breached, revision";

impl IncidentRow {
    fn into_incident(self, ci_ids: Vec<String>, changes: Vec<ChangeLink>) -> StoreResult<Incident> {
        let corrupt = |what: &str| StoreError::Internal(format!("stored incident {} has a bad {what}", self.id));
        Ok(Incident {
            reference: format!("INC-{:06}", self.number),
            impact: Level::parse(&self.impact).ok_or_else(|| corrupt("impact"))?,
            urgency: Level::parse(&self.urgency).ok_or_else(|| corrupt("urgency"))?,
            priority: u8::try_from(self.priority)
                .ok()
                .and_then(|p| Priority::new(p).ok())
                .ok_or_else(|| corrupt("priority"))?,
            escalated: self.escalated != 0,
            major: self.major != 0,
            sla: Sla {
                response_due_at: from_millis(self.response_due_at),
                resolution_due_at: from_millis(self.resolution_due_at),
                paused: self.paused_since.is_some(),
                response_breached: self.response_breached != 0,
                resolution_breached: self.resolution_breached != 0,
            },
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
            last_reported_at: from_millis(self.last_reported_at),
            responded_at: self.responded_at.map(from_millis),
            resolved_at: self.resolved_at.map(from_millis),
            ci_ids,
            changes,
            id: self.id,
            title: self.title,
            description: self.description,
            state: self.state,
            process: self.process_name,
            process_version: self.process_version,
            assignee_id: self.assignee_id,
            reported_by: self.reported_by,
            dedup_key: self.dedup_key,
            report_count: self.report_count,
            revision: self.revision,
        })
    }
}

async fn fetch_row(conn: &mut AnyConnection, id: &str) -> StoreResult<IncidentRow> {
    if id.contains('\0') {
        return Err(StoreError::not_found("incident", id));
    }
    let row: Option<IncidentRow> = sqlx::query_as(&format!("SELECT {COLUMNS} FROM incidents WHERE id = $1"))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    row.ok_or_else(|| StoreError::not_found("incident", id))
}

async fn ci_ids(conn: &mut AnyConnection, id: &str) -> StoreResult<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT ci_id FROM incident_cis WHERE incident_id = $1 ORDER BY ci_id")
        .bind(id)
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(|(c,)| c).collect())
}

async fn change_links(conn: &mut AnyConnection, id: &str) -> StoreResult<Vec<ChangeLink>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT change_id, kind FROM incident_changes WHERE incident_id = $1 ORDER BY created_at, change_id, kind",
    )
    .bind(id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(change_id, kind)| {
            let kind = [LinkKind::CausedBy, LinkKind::FixedBy].into_iter().find(|k| k.as_str() == kind)?;
            Some(ChangeLink { change_id, kind })
        })
        .collect())
}

async fn fetch(conn: &mut AnyConnection, id: &str) -> StoreResult<Incident> {
    let row = fetch_row(conn, id).await?;
    let cis = ci_ids(conn, id).await?;
    let changes = change_links(conn, id).await?;
    row.into_incident(cis, changes)
}

/// Links a change to an incident (doing it twice changes nothing).
pub async fn link_change(
    db: &Db,
    ctx: &AuditContext,
    id: &str,
    change_id: &str,
    kind: LinkKind,
) -> StoreResult<Incident> {
    let mut tx = db.write(ctx).await?;
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
    let mut tx = db.write(ctx).await?;
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

pub async fn get_incident(db: &Db, id: &str) -> StoreResult<Incident> {
    let mut conn = db.pool().acquire().await?;
    fetch(&mut conn, id).await
}

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

async fn check_cis(conn: &mut AnyConnection, ids: &[String]) -> StoreResult<()> {
    for id in ids {
        if fetch_ci(conn, id).await?.is_none() {
            return Err(ValidationError::new("ci_ids", format!("no CI has id {id}")).into());
        }
    }
    Ok(())
}

async fn link_cis(conn: &mut AnyConnection, id: &str, ci_ids: &[String]) -> StoreResult<()> {
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

fn due(start: OffsetDateTime, target: time::Duration, paused_ms: i64) -> i64 {
    to_millis(start + target) + paused_ms
}

/// Response and resolution due instants for an incident opened at `created_ms` with this impact and
/// urgency, moved forward by the time it spent pending. Escalation raises the priority, not the targets.
fn due_times(policy: &IncidentPolicy, created_ms: i64, impact: Level, urgency: Level, paused_ms: i64) -> (i64, i64) {
    let created = from_millis(created_ms);
    let p = policy.priority(impact, urgency);
    (due(created, policy.response_target(p), paused_ms), due(created, policy.resolution_target(p), paused_ms))
}

/// Opens an incident, or folds the report into the open incident with the same dedup key.
pub async fn report(db: &Db, ctx: &AuditContext, policy: &IncidentPolicy, r: IncidentReport) -> StoreResult<Reported> {
    let mut ci_list = r.ci_ids.clone();
    ci_list.sort();
    ci_list.dedup();
    let mut tx = db.write(ctx).await?;
    check_cis(tx.conn(), &ci_list).await?;
    let now = tx.now();
    if let Some(key) = &r.dedup_key {
        let open: Option<(String,)> = sqlx::query_as(
            "SELECT id FROM incidents WHERE dedup_key = $1 AND resolved_at IS NULL ORDER BY number DESC LIMIT 1",
        )
        .bind(key.as_str())
        .fetch_optional(tx.conn())
        .await?;
        if let Some((id,)) = open {
            let before = fetch(tx.conn(), &id).await?;
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
    let def = process::get_definition_in(tx.conn(), PROCESS, None).await?;
    let (number,): (i64,) =
        sqlx::query_as("SELECT COALESCE(MAX(number), 0) + 1 FROM incidents").fetch_one(tx.conn()).await?;
    let priority = policy.priority(r.impact, r.urgency);
    let id = uuid::Uuid::new_v4().to_string();
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

fn effective_priority(policy: &IncidentPolicy, impact: Level, urgency: Level, escalated: bool) -> Priority {
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
    let mut tx = db.write(ctx).await?;
    let row = fetch_row(tx.conn(), id).await?;
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
    let comment = e.comment.as_deref().map(|c| Description::parse("comment", c)).transpose()?;
    let mut tx = db.write(ctx).await?;
    let row = fetch_row(tx.conn(), id).await?;
    let def = process::get_definition_in(tx.conn(), &row.process_name, Some(row.process_version)).await?;
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
    let decision = process::decide(&def.definition, &row.state, &e.event, &Actor::Person(roles.clone()), &guards)?;
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
        let mut tx = db.write(&ctx).await?;
        let row = fetch_row(tx.conn(), &id).await?;
        let now = to_millis(tx.now());
        // Re-read inside the transaction: another replica may have swept it already.
        let running = row.resolved_at.is_none() && row.paused_since.is_none();
        let response = running && row.responded_at.is_none() && row.response_breached == 0 && row.response_due_at < now;
        let resolution = running && row.resolution_breached == 0 && row.resolution_due_at < now;
        if !response && !resolution {
            continue;
        }
        let before = fetch(tx.conn(), &id).await?;
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
        .bind(&id)
        .execute(tx.conn())
        .await?;
        let after = fetch(tx.conn(), &id).await?;
        if let Some(assignee) = &after.assignee_id {
            let subject = format!("{} {} breached its SLA; now {}", after.reference, after.title, after.priority);
            let recipients = [assignee.clone()];
            notify::raise(&mut tx, &recipients, NotificationKind::IncidentBreached, "incident", &id, &subject).await?;
        }
        let action = if escalate { "incident.escalate" } else { "incident.breach" };
        tx.audit(action, "incident", &id, Some(&before), Some(&after)).await?;
        tx.commit().await?;
        touched.push(after);
    }
    Ok(touched)
}

/// Filters for [`list_incidents`].
#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    pub state: Option<String>,
    pub priority: Option<Priority>,
    pub assignee_id: Option<String>,
    pub major: Option<bool>,
    /// Only incidents still running (not resolved or closed).
    pub open: Option<bool>,
    pub breached: Option<bool>,
    /// Substring of the title, any case.
    pub q: Option<String>,
}

/// Incidents matching `q`, most urgent first, newest first within a priority.
pub async fn list_incidents(db: &Db, q: &IncidentQuery, page: PageRequest) -> StoreResult<Page<Incident>> {
    let mut f = Filter::new();
    if let Some(v) = &q.state {
        f.text("state", "=", v);
    }
    if let Some(p) = q.priority {
        f.int("priority", "=", i64::from(p.0));
    }
    if let Some(v) = &q.assignee_id {
        f.text("assignee_id", "=", v);
    }
    if let Some(m) = q.major {
        f.int("major", "=", i64::from(m));
    }
    if let Some(open) = q.open {
        f.raw(if open { "resolved_at IS NULL" } else { "resolved_at IS NOT NULL" });
    }
    if let Some(b) = q.breached {
        f.raw(if b {
            "(response_breached = 1 OR resolution_breached = 1)"
        } else {
            "(response_breached = 0 AND resolution_breached = 0)"
        });
    }
    if let Some(text) = &q.q {
        f.contains("title", text);
    }
    let rows: Page<IncidentRow> = f.page(db.pool(), COLUMNS, "incidents", "priority, number DESC", page).await?;
    let mut conn = db.pool().acquire().await?;
    let mut items = Vec::with_capacity(rows.items.len());
    for row in rows.items {
        let cis = ci_ids(&mut conn, &row.id).await?;
        let changes = change_links(&mut conn, &row.id).await?;
        items.push(row.into_incident(cis, changes)?);
    }
    Ok(Page { items, total: rows.total, limit: rows.limit, offset: rows.offset })
}

/// The incident's history, oldest first: every audit record written about it.
pub async fn timeline(db: &Db, id: &str, page: PageRequest) -> StoreResult<Page<AuditRecord>> {
    get_incident(db, id).await?;
    let q =
        AuditQuery { entity_type: Some("incident".into()), entity_id: Some(id.to_owned()), ..AuditQuery::default() };
    audit::list_oldest_first(db, &q, page).await
}
