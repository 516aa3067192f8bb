//! The round of approval a change revision goes through, and who may vote in its open stage.

use super::policy::ApprovalPolicy;
use crate::change::Change;
use crate::clock::to_millis;
use crate::error::{StoreError, StoreResult};
use crate::notify::{self, NotificationKind};
use crate::store::bind_list;
use crate::store::{Db, Deferred, Members, WriteTx};
use sqlx::any::AnyArguments;
use sqlx::AnyConnection;
use std::sync::Arc;

use super::policies::*;

pub(super) struct Round {
    pub(super) policy: ApprovalPolicy,
    pub(super) stage: usize,
    pub(super) stage_opened_at: i64,
    pub(super) escalated_groups: Vec<String>,
    pub(super) timed_out: bool,
}

pub(super) async fn round_of(conn: &mut AnyConnection, change: &Change) -> StoreResult<Option<Round>> {
    let row: Option<(String, i64, i64, String, i64)> = sqlx::query_as(
        "SELECT policy, stage, stage_opened_at, escalated_groups, timed_out FROM approval_rounds \
         WHERE change_id = $1 AND revision = $2",
    )
    .bind(&change.id)
    .bind(change.revision)
    .fetch_optional(conn)
    .await?;
    row.map(|(policy, stage, opened, escalated, timed_out)| {
        Ok(Round {
            policy: serde_json::from_str(&policy)
                .map_err(|e| StoreError::Internal(format!("stored approval round does not parse: {e}")))?,
            stage: usize::try_from(stage).unwrap_or(usize::MAX),
            stage_opened_at: opened,
            escalated_groups: escalated.split(',').filter(|g| !g.is_empty()).map(str::to_owned).collect(),
            timed_out: timed_out != 0,
        })
    })
    .transpose()
}

/// Opens the round of approval for the change's current revision under the policy its kind and risk select.
pub(crate) async fn open_round(tx: &mut WriteTx<'_>, change: &Change) -> StoreResult<()> {
    let policies = match tx.db().policies.get(&()) {
        Some(kept) => kept,
        None => {
            let ticket = tx.db().policies.ticket();
            let read = std::sync::Arc::new(policies_in(tx.conn()).await?);
            tx.db().policies.insert(ticket, (), read.clone());
            read
        }
    };
    let policy = policies.iter().find(|p| p.applies(change.kind, change.risk.level)).cloned().ok_or_else(|| {
        StoreError::Conflict(format!(
            "no approval policy applies to a {} change of {:?} risk: an administrator must add one",
            change.kind.as_str(),
            change.risk.level
        ))
    })?;
    let body = serde_json::to_string(&policy).map_err(|e| StoreError::Internal(e.to_string()))?;
    let now = to_millis(tx.now());
    // A round asked for again at the same revision starts over. Nothing in the transition reads it back.
    tx.defer(Deferred::insert(
        "INSERT INTO approval_rounds (change_id, revision, policy, stage, stage_opened_at, escalated_groups, timed_out)",
        "($1, $2, $3, $4, $5, $6, $7)".to_owned(),
        " ON CONFLICT (change_id, revision) DO UPDATE SET policy = excluded.policy, stage = 0, \
         stage_opened_at = excluded.stage_opened_at, escalated_groups = '', timed_out = 0",
        vec![
            change.id.as_str().into(),
            change.revision.into(),
            body.into(),
            0.into(),
            now.into(),
            "".into(),
            0.into(),
        ],
    ));
    request_votes(tx, change, &policy.stages[0].groups).await
}

/// Tells the approvers of the stage now open that the change waits for them.
pub(super) async fn request_votes(tx: &mut WriteTx<'_>, change: &Change, groups: &[String]) -> StoreResult<()> {
    let approvers: Vec<String> =
        eligible(&tx.db().clone(), tx.conn(), groups, change).await?.into_iter().map(|(id, _)| id).collect();
    let subject = format!(
        "Approval requested: {} {} (risk {} {:?})",
        change.reference, change.title, change.risk.score, change.risk.level
    );
    notify::raise(tx, &approvers, NotificationKind::ApprovalRequested, "change", &change.id, &subject).await
}

/// Whether every stage of the change's round for its current revision has passed, and if not, why.
pub(crate) async fn complete_in(conn: &mut AnyConnection, change: &Change) -> StoreResult<Result<(), String>> {
    Ok(match round_of(conn, change).await? {
        None => Err(format!("revision {} has no approval round", change.revision)),
        Some(r) if r.stage >= r.policy.stages.len() => Ok(()),
        Some(r) => Err(format!("stage {} ({}) has not approved yet", r.stage + 1, r.policy.stages[r.stage].name)),
    })
}

/// Enabled members of the named groups except the change's requester and reviser: (id, username), in byte
/// order of username.
pub(super) async fn eligible(
    db: &Db,
    conn: &mut AnyConnection,
    groups: &[String],
    change: &Change,
) -> StoreResult<Vec<(String, String)>> {
    let members = members_of(db, conn, groups).await?;
    Ok(members.iter().filter(|(id, _)| *id != change.requester_id && *id != change.revised_by_id).cloned().collect())
}

/// Enabled members of the named groups, kept in memory like the policies (membership and accounts are
/// written by writers of everything, which clear it).
async fn members_of(db: &Db, conn: &mut AnyConnection, groups: &[String]) -> StoreResult<Members> {
    let mut key = groups.to_vec();
    key.sort_unstable();
    key.dedup();
    if let Some(kept) = db.members.get(&key) {
        return Ok(kept);
    }
    let ticket = db.members.ticket();
    let mut members: Vec<(String, String)> = if key.is_empty() {
        Vec::new()
    } else {
        let mut args = AnyArguments::default();
        let list = bind_list(&mut args, key.iter().cloned());
        let sql = format!(
            "SELECT DISTINCT u.id, u.username FROM users u JOIN group_members m ON m.user_id = u.id \
             JOIN user_groups g ON g.id = m.group_id WHERE u.disabled = 0 AND g.name IN ({list})"
        );
        sqlx::query_as_with(&sql, args).fetch_all(conn).await?
    };
    // Byte order, not the database's collation: whom a delegate counts for must not differ by engine.
    members.sort_by(|a, b| a.1.as_bytes().cmp(b.1.as_bytes()));
    let members = Arc::new(members);
    db.members.insert(ticket, key, members.clone());
    Ok(members)
}

pub(super) fn stage_groups(round: &Round) -> Vec<String> {
    let mut g = round.policy.stages[round.stage].groups.clone();
    g.extend(round.escalated_groups.iter().cloned());
    g
}
