//! Incidents as stored: the record, its rows, and reading one back.

use super::{Level, Priority};
use crate::clock::from_millis;
use crate::error::{StoreError, StoreResult};
use crate::store::{row_by_id, Db, WriteTx};
use serde::Serialize;
use sqlx::{AnyConnection, FromRow};
use time::OffsetDateTime;

/// The process incidents run.
pub(super) const PROCESS: &str = "incident";

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
pub(super) struct IncidentRow {
    pub(super) id: String,
    pub(super) number: i64,
    pub(super) title: String,
    pub(super) description: String,
    pub(super) impact: String,
    pub(super) urgency: String,
    pub(super) priority: i64,
    pub(super) escalated: i64,
    pub(super) major: i64,
    pub(super) state: String,
    pub(super) process_name: String,
    pub(super) process_version: i64,
    pub(super) assignee_id: Option<String>,
    pub(super) reported_by: String,
    pub(super) dedup_key: Option<String>,
    pub(super) report_count: i64,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
    pub(super) last_reported_at: i64,
    pub(super) responded_at: Option<i64>,
    pub(super) resolved_at: Option<i64>,
    pub(super) paused_since: Option<i64>,
    pub(super) paused_ms: i64,
    pub(super) response_due_at: i64,
    pub(super) resolution_due_at: i64,
    pub(super) response_breached: i64,
    pub(super) resolution_breached: i64,
    pub(super) revision: i64,
}

pub(super) const COLUMNS: &str = "id, number, title, description, impact, urgency, priority, escalated, major, state, \
    process_name, process_version, assignee_id, reported_by, dedup_key, report_count, created_at, updated_at, \
    last_reported_at, responded_at, resolved_at, paused_since, paused_ms, response_due_at, resolution_due_at, \
    response_breached, resolution_breached, revision";

impl IncidentRow {
    pub(super) fn into_incident(self, ci_ids: Vec<String>, changes: Vec<ChangeLink>) -> StoreResult<Incident> {
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

pub(super) async fn fetch_row(conn: &mut AnyConnection, id: &str) -> StoreResult<IncidentRow> {
    let row: Option<IncidentRow> = row_by_id(conn, COLUMNS, "incidents", id, "").await?;
    row.ok_or_else(|| StoreError::not_found("incident", id))
}

/// An incident read for changing it (see [`WriteTx::row_for_update`] and [`Db::write_rows`]).
pub(super) async fn fetch_row_locked(tx: &mut WriteTx<'_>, id: &str) -> StoreResult<IncidentRow> {
    let row: Option<IncidentRow> = tx.row_for_update(COLUMNS, "incidents", id).await?;
    row.ok_or_else(|| StoreError::not_found("incident", id))
}

pub(super) async fn ci_ids(conn: &mut AnyConnection, id: &str) -> StoreResult<Vec<String>> {
    let rows: Vec<(String,)> = sqlx::query_as("SELECT ci_id FROM incident_cis WHERE incident_id = $1 ORDER BY ci_id")
        .bind(id)
        .fetch_all(conn)
        .await?;
    Ok(rows.into_iter().map(|(c,)| c).collect())
}

pub(super) async fn change_links(conn: &mut AnyConnection, id: &str) -> StoreResult<Vec<ChangeLink>> {
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

pub(super) async fn fetch(conn: &mut AnyConnection, id: &str) -> StoreResult<Incident> {
    let row = fetch_row(conn, id).await?;
    let cis = ci_ids(conn, id).await?;
    let changes = change_links(conn, id).await?;
    row.into_incident(cis, changes)
}

pub async fn get_incident(db: &Db, id: &str) -> StoreResult<Incident> {
    let mut conn = db.pool().acquire().await?;
    fetch(&mut conn, id).await
}
