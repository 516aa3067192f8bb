//! Changes as stored: the record, its rows, and reading one back.

use super::plan::{Operation, RollbackStep};
use super::risk::Risk;
use super::ChangeKind;
use crate::clock::from_millis;
use crate::error::{StoreError, StoreResult};
use crate::store::{row_by_id, Db, WriteTx};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, FromRow};
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
    /// Who wrote the current revision (the requester, or whoever edited it last); they may not approve it.
    pub revised_by_id: String,
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
    /// Moves with every write to the change: what an optimistic writer checks.
    #[serde(skip)]
    #[schema(ignore)]
    pub(crate) version: i64,
    /// What `reference` is made of; orders changes by when they were requested.
    #[serde(skip)]
    #[schema(ignore)]
    pub(crate) number: i64,
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
pub(super) struct ChangeRow {
    pub(super) id: String,
    pub(super) number: i64,
    pub(super) kind: String,
    pub(super) title: String,
    pub(super) description: String,
    pub(super) state: String,
    pub(super) process_name: String,
    pub(super) process_version: i64,
    pub(super) revision: i64,
    pub(super) requester_id: String,
    pub(super) requester: String,
    pub(super) revised_by_id: Option<String>,
    pub(super) operations: String,
    pub(super) rollback: String,
    pub(super) risk: String,
    pub(super) window_start: i64,
    pub(super) window_end: i64,
    pub(super) conflict_override: Option<String>,
    pub(super) review: Option<String>,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
    pub(super) version: i64,
    /// The affected CI ids, comma-separated (ids never hold commas).
    pub(super) ci_list: Option<String>,
}

/// Every column of a change, and its CIs in the same round trip (`string_agg` is SQLite's too, since 3.44).
pub(super) const COLUMNS: &str =
    "id, number, kind, title, description, state, process_name, process_version, revision, \
    requester_id, requester, revised_by_id, operations, rollback, risk, window_start, window_end, conflict_override, \
    review, created_at, updated_at, version, \
    (SELECT string_agg(ci_id, ',') FROM change_cis WHERE change_cis.change_id = changes.id) AS ci_list";

pub(super) fn json<T: for<'de> Deserialize<'de>>(id: &str, what: &str, s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Internal(format!("stored change {id} has a bad {what}: {e}")))
}

pub(super) fn to_json<T: Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Internal(format!("cannot serialise: {e}")))
}

/// A change's human reference: `CHG-000042`.
pub(crate) fn reference(number: i64) -> String {
    format!("CHG-{number:06}")
}

impl ChangeRow {
    pub(super) fn into_change(self) -> StoreResult<Change> {
        let mut ci_ids: Vec<String> = self
            .ci_list
            .as_deref()
            .unwrap_or_default()
            .split(',')
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect();
        ci_ids.sort_unstable();
        Ok(Change {
            reference: reference(self.number),
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
            version: self.version,
            number: self.number,
            id: self.id,
            title: self.title,
            description: self.description,
            state: self.state,
            process: self.process_name,
            process_version: self.process_version,
            revision: self.revision,
            revised_by_id: self.revised_by_id.unwrap_or_else(|| self.requester_id.clone()),
            requester_id: self.requester_id,
            requester: self.requester,
            review: self.review,
        })
    }
}

pub(crate) async fn fetch(conn: &mut AnyConnection, id: &str) -> StoreResult<Change> {
    let row: Option<ChangeRow> = row_by_id(conn, COLUMNS, "changes", id, "").await?;
    row.ok_or_else(|| StoreError::not_found("change", id))?.into_change()
}

/// A change read for changing it (see [`WriteTx::row_for_update`] and [`Db::write_rows`]).
pub(crate) async fn fetch_locked(tx: &mut WriteTx<'_>, id: &str) -> StoreResult<Change> {
    let row: Option<ChangeRow> = tx.row_for_update(COLUMNS, "changes", id).await?;
    row.ok_or_else(|| StoreError::not_found("change", id))?.into_change()
}

/// A change read on a given connection, e.g. inside a write transaction.
pub async fn fetch_in(conn: &mut AnyConnection, id: &str) -> StoreResult<Change> {
    fetch(conn, id).await
}

pub async fn get_change(db: &Db, id: &str) -> StoreResult<Change> {
    let mut conn = db.pool().acquire().await?;
    fetch(&mut conn, id).await
}
