//! The gate between the ITIL process and the control plane: an [`ApprovedChange`] is the only key the
//! control plane's mutating operations accept, and only [`authorise`] makes one — for a change that is
//! implementing, approved at the revision it runs, inside its window and not frozen.

use super::{Change, ChangeKind, Operation};
use crate::error::{StoreError, StoreResult};
use crate::freeze::{freezes_covering, Window};
use crate::store::Db;
use serde::Serialize;
use time::OffsetDateTime;

/// Proof that a change may drive the fleet now. Its fields are private and it has no public
/// constructor: outside this crate it can only be obtained from [`authorise`].
#[derive(Debug, Clone)]
pub struct ApprovedChange {
    change_id: String,
    reference: String,
    revision: i64,
    kind: ChangeKind,
    operations: Vec<Operation>,
    ci_ids: Vec<String>,
    window_end: OffsetDateTime,
}

impl ApprovedChange {
    pub fn change_id(&self) -> &str {
        &self.change_id
    }
    pub fn reference(&self) -> &str {
        &self.reference
    }
    /// The revision that was approved and is being carried out.
    pub fn revision(&self) -> i64 {
        self.revision
    }
    pub fn kind(&self) -> ChangeKind {
        self.kind
    }
    /// The planned operations, as approved.
    pub fn operations(&self) -> &[Operation] {
        &self.operations
    }
    pub fn ci_ids(&self) -> &[String] {
        &self.ci_ids
    }
    pub fn window_end(&self) -> OffsetDateTime {
        self.window_end
    }
    /// Whether `op` is one of the approved operations.
    pub fn covers(&self, op: &Operation) -> bool {
        self.operations.contains(op)
    }
}

/// Why a change may not drive the fleet; each says what an operator would fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    #[error("no approved change was given; every operation on the fleet needs one")]
    NoChange,
    #[error("change {change_id} does not exist")]
    NotFound { change_id: String },
    #[error("{reference} is {state}, not implementing: start it first (it must be approved and scheduled)")]
    NotImplementing { reference: String, state: String },
    #[error("{reference} was edited to revision {now} after revision {approved} was started; it needs approval again")]
    RevisionMoved { reference: String, approved: i64, now: i64 },
    #[error("{reference} is not approved at revision {revision}: {why}")]
    NotApproved { reference: String, revision: i64, why: String },
    #[error("{reference}'s window runs from {start} to {end}")]
    OutsideWindow { reference: String, start: String, end: String },
    #[error("{reference} is frozen by {freezes}")]
    Frozen { reference: String, freezes: String },
    #[error("{reference} does not plan this operation ({operation})")]
    NotInPlan { reference: String, operation: String },
}

/// Checks that `change_id`, at `revision` (the one the caller is carrying out; `None` for the current),
/// may drive the fleet at the store's `now`, and returns the key the control plane takes.
pub async fn authorise(
    db: &Db,
    change_id: &str,
    revision: Option<i64>,
) -> StoreResult<Result<ApprovedChange, Refusal>> {
    let change = match super::get_change(db, change_id).await {
        Ok(c) => c,
        Err(StoreError::NotFound { .. }) => return Ok(Err(Refusal::NotFound { change_id: change_id.to_string() })),
        Err(e) => return Err(e),
    };
    let mut conn = db.pool().acquire().await?;
    let now = db.clock().now();
    check(&mut conn, &change, revision, now).await
}

async fn check(
    conn: &mut sqlx::AnyConnection,
    change: &Change,
    revision: Option<i64>,
    now: OffsetDateTime,
) -> StoreResult<Result<ApprovedChange, Refusal>> {
    let reference = change.reference.clone();
    if !matches!(change.state.as_str(), "implementing" | "verifying") {
        return Ok(Err(Refusal::NotImplementing { reference, state: change.state.clone() }));
    }
    if let Some(approved) = revision.filter(|r| *r != change.revision) {
        return Ok(Err(Refusal::RevisionMoved { reference, approved, now: change.revision }));
    }
    // Standard changes are approved in advance by their template; the others by their round.
    if change.kind != ChangeKind::Standard {
        if let Err(why) = crate::approval::complete_in(conn, change).await? {
            return Ok(Err(Refusal::NotApproved { reference, revision: change.revision, why }));
        }
    }
    if now < change.window_start || now >= change.window_end {
        let (start, end) = (change.window_start.to_string(), change.window_end.to_string());
        return Ok(Err(Refusal::OutsideWindow { reference, start, end }));
    }
    // An emergency change may run in a freeze; the others may not.
    if change.kind != ChangeKind::Emergency {
        let window = Window { start: now, end: change.window_end };
        let frozen = freezes_covering(conn, &change.ci_ids, window).await?;
        if !frozen.is_empty() {
            let freezes = frozen.into_iter().map(|f| f.name).collect::<Vec<_>>().join(", ");
            return Ok(Err(Refusal::Frozen { reference, freezes }));
        }
    }
    Ok(Ok(ApprovedChange {
        change_id: change.id.clone(),
        reference,
        revision: change.revision,
        kind: change.kind,
        operations: change.operations.clone(),
        ci_ids: change.ci_ids.clone(),
        window_end: change.window_end,
    }))
}
