//! Votes: who may cast them, how they count, and what the deciding vote does.

use super::policy::Rule;
use crate::accounts::Principal;
use crate::change::{self, Change, ChangeEvent};
use crate::clock::{from_millis, to_millis};
use crate::error::{StoreError, StoreResult, ValidationError};
use crate::process::Actor;
use crate::store::{AuditContext, Db, Deferred, WriteTx};
use crate::text::Description;
use serde::Serialize;
use sqlx::AnyConnection;
use time::OffsetDateTime;

use super::rounds::*;

/// A vote as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Vote {
    pub stage: i64,
    pub voter: String,
    /// The approver the vote counts for: the voter, or whom a delegate acted for.
    pub counted_as: String,
    pub decision: String,
    pub comment: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Where a stage stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StageStatus {
    pub name: String,
    pub rule: Rule,
    /// `passed`, `open` or `waiting`.
    pub status: String,
    /// Usernames who may approve (the requester never).
    pub approvers: Vec<String>,
    pub approvals: u32,
}

/// The approval state of a change's current revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ApprovalStatus {
    pub change_id: String,
    pub revision: i64,
    pub policy: Option<String>,
    pub complete: bool,
    pub stages: Vec<StageStatus>,
    /// Votes on this revision; votes on earlier revisions no longer count.
    pub votes: Vec<Vote>,
}

/// A vote with what the store keeps besides: its id and whom it counts for, by id.
struct StoredVote {
    id: String,
    counted_as_id: String,
    vote: Vote,
}

#[derive(sqlx::FromRow)]
struct VoteRow {
    id: String,
    counted_as_id: String,
    stage: i64,
    voter: String,
    counted_as: String,
    decision: String,
    comment: String,
    at: i64,
}

/// The votes on the change's current revision, in the order cast (ties by id, byte order: the same on
/// every engine and collation).
async fn stored_votes_of(conn: &mut AnyConnection, change: &Change) -> StoreResult<Vec<StoredVote>> {
    let rows: Vec<VoteRow> = sqlx::query_as(
        "SELECT id, counted_as_id, stage, voter, counted_as, decision, comment, at FROM approval_votes \
         WHERE change_id = $1 AND revision = $2",
    )
    .bind(&change.id)
    .bind(change.revision)
    .fetch_all(conn)
    .await?;
    let mut votes: Vec<StoredVote> = rows
        .into_iter()
        .map(|r| StoredVote {
            id: r.id,
            counted_as_id: r.counted_as_id,
            vote: Vote {
                stage: r.stage,
                voter: r.voter,
                counted_as: r.counted_as,
                decision: r.decision,
                comment: r.comment,
                at: from_millis(r.at),
            },
        })
        .collect();
    sort_votes(&mut votes);
    Ok(votes)
}

fn sort_votes(votes: &mut [StoredVote]) {
    votes.sort_by(|a, b| a.vote.at.cmp(&b.vote.at).then_with(|| a.id.as_bytes().cmp(b.id.as_bytes())));
}

pub(super) async fn votes_of(conn: &mut AnyConnection, change: &Change) -> StoreResult<Vec<Vote>> {
    Ok(stored_votes_of(conn, change).await?.into_iter().map(|v| v.vote).collect())
}

pub async fn approval_status(db: &Db, change_id: &str) -> StoreResult<ApprovalStatus> {
    let mut conn = db.pool().acquire().await?;
    let change = change::fetch_in(&mut conn, change_id).await?;
    let round = round_of(&mut conn, &change).await?;
    let votes = votes_of(&mut conn, &change).await?;
    status_in(db, &mut conn, &change, round, votes, None).await
}

/// The approval status of the change's current revision under `round`, its open round if any.
pub(super) async fn status_in(
    db: &Db,
    conn: &mut AnyConnection,
    change: &Change,
    round: Option<Round>,
    votes: Vec<Vote>,
    known: Option<(usize, &[(String, String)])>,
) -> StoreResult<ApprovalStatus> {
    let Some(round) = round else {
        return Ok(ApprovalStatus {
            change_id: change.id.clone(),
            revision: change.revision,
            policy: None,
            complete: false,
            stages: Vec::new(),
            votes,
        });
    };
    let mut stages = Vec::new();
    for (i, s) in round.policy.stages.iter().enumerate() {
        let mut groups = s.groups.clone();
        if i == round.stage {
            groups.extend(round.escalated_groups.iter().cloned());
        }
        let approvers = match known {
            // The approvers of the open stage, as the caller already read them in this transaction.
            Some((stage, members)) if stage == i && i == round.stage => {
                members.iter().map(|(_, u)| u.clone()).collect()
            }
            _ => eligible(db, conn, &groups, change).await?.into_iter().map(|(_, u)| u).collect(),
        };
        let approvals = votes.iter().filter(|v| v.stage == i as i64 && v.decision == "approve").count() as u32;
        let status = match i.cmp(&round.stage) {
            std::cmp::Ordering::Less => "passed",
            std::cmp::Ordering::Equal => "open",
            std::cmp::Ordering::Greater => "waiting",
        };
        stages.push(StageStatus {
            name: s.name.clone(),
            rule: s.rule,
            status: status.to_owned(),
            approvers,
            approvals,
        });
    }
    Ok(ApprovalStatus {
        change_id: change.id.clone(),
        revision: change.revision,
        policy: Some(round.policy.name.clone()),
        complete: round.stage >= round.policy.stages.len(),
        stages,
        votes,
    })
}

/// Approve or reject.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Reject,
}

/// Casts `voter`'s vote on the change's current revision. A requester never approves their own change;
/// a person counts once per stage, whether they vote or a delegate votes for them; a rejection needs a
/// comment and rejects the change; the vote that completes the last stage approves it.
pub async fn vote(
    db: &Db,
    ctx: &AuditContext,
    change_id: &str,
    voter: &Principal,
    decision: Decision,
    comment: Option<&str>,
) -> StoreResult<ApprovalStatus> {
    vote_on_revision(db, ctx, change_id, voter, decision, comment, None).await
}

/// [`vote`], refused (409) unless the change is still at `revision`: the plan the approver read.
pub async fn vote_on_revision(
    db: &Db,
    ctx: &AuditContext,
    change_id: &str,
    voter: &Principal,
    decision: Decision,
    comment: Option<&str>,
    revision: Option<i64>,
) -> StoreResult<ApprovalStatus> {
    let comment = Description::parse("comment", comment.unwrap_or(""))?;
    if decision == Decision::Reject && comment.as_str().trim().is_empty() {
        return Err(ValidationError::new("comment", "a rejection needs a comment").into());
    }
    // Optimistic on PostgreSQL, like events: decided on what was read, written in one statement that
    // applies only if the change has not moved since (every vote moves it), else decided again.
    for _ in 0..crate::store::OPTIMISTIC_ATTEMPTS {
        let mut tx = db.write_optimistic(ctx).await?;
        let status = vote_in(&mut tx, change_id, voter, decision, &comment, revision).await?;
        if tx.commit_if_unchanged().await? {
            return Ok(status);
        }
    }
    Err(StoreError::Conflict(format!("change {change_id} kept changing while this vote was counted; try again")))
}

async fn vote_in(
    tx: &mut WriteTx<'_>,
    change_id: &str,
    voter: &Principal,
    decision: Decision,
    comment: &Description,
    revision: Option<i64>,
) -> StoreResult<ApprovalStatus> {
    let change = change::fetch_locked(tx, change_id).await?;
    if let Some(read) = revision.filter(|r| *r != change.revision) {
        return Err(StoreError::Conflict(format!(
            "{} changed since you read revision {read}: it is at revision {} now; read it again",
            change.reference, change.revision
        )));
    }
    if change.state != "awaiting_approval" {
        return Err(StoreError::Conflict(format!("{} is {}, not awaiting approval", change.reference, change.state)));
    }
    if voter.user_id == change.revised_by_id && voter.user_id != change.requester_id {
        return Err(StoreError::Forbidden(format!(
            "you wrote revision {} of {}: someone else must approve it",
            change.revision, change.reference
        )));
    }
    if voter.user_id == change.requester_id {
        return Err(StoreError::Forbidden(format!("you requested {}: someone else must approve it", change.reference)));
    }
    let round = round_of(tx.conn(), &change)
        .await?
        .ok_or_else(|| StoreError::Conflict(format!("{} has no approval round open", change.reference)))?;
    let stage = round.stage;
    let Some(stage_def) = round.policy.stages.get(stage).cloned() else {
        return Err(StoreError::Conflict(format!("{} is already approved", change.reference)));
    };
    let approvers = eligible(&tx.db().clone(), tx.conn(), &stage_groups(&round), &change).await?;
    let mut votes = stored_votes_of(tx.conn(), &change).await?;
    let has_voted = |id: &str| votes.iter().any(|v| v.vote.stage == stage as i64 && v.counted_as_id == id);
    let counted_as = if let Some(me) = approvers.iter().find(|(id, _)| *id == voter.user_id) {
        if has_voted(&me.0) {
            return Err(StoreError::Conflict(format!("{} has already voted on this stage", me.1)));
        }
        me.clone()
    } else {
        let now = to_millis(tx.now());
        let delegators: Vec<(String,)> = sqlx::query_as(
            "SELECT from_user_id FROM delegations WHERE to_user_id = $1 AND starts_at <= $2 AND ends_at > $2 \
             ORDER BY starts_at, id",
        )
        .bind(&voter.user_id)
        .bind(now)
        .fetch_all(tx.conn())
        .await?;
        let candidates: Vec<&(String, String)> =
            approvers.iter().filter(|(id, _)| delegators.iter().any(|(d,)| d == id)).collect();
        match candidates.iter().find(|(id, _)| !has_voted(id)) {
            Some(member) => (*member).clone(),
            None if !candidates.is_empty() => {
                return Err(StoreError::Conflict("everyone you stand in for has already voted on this stage".into()))
            }
            None => {
                return Err(StoreError::Forbidden(format!(
                    "you are not an approver of stage {} ({}) of {}",
                    stage + 1,
                    stage_def.name,
                    change.reference
                )))
            }
        }
    };
    // Every vote moves the change, so that votes cast at once see each other.
    change::touch(tx, &change);
    let delegated = counted_as.0 != voter.user_id;
    let decided = match decision {
        Decision::Approve => "approve",
        Decision::Reject => "reject",
    };
    let cast = StoredVote {
        id: uuid::Uuid::new_v4().to_string(),
        counted_as_id: counted_as.0.clone(),
        vote: Vote {
            stage: stage as i64,
            voter: voter.username.clone(),
            counted_as: counted_as.1.clone(),
            decision: decided.to_owned(),
            comment: comment.as_str().to_owned(),
            at: crate::clock::from_millis(to_millis(tx.now())),
        },
    };
    tx.defer(Deferred::insert(
        "INSERT INTO approval_votes (id, change_id, revision, stage, voter_id, voter, counted_as_id, counted_as, \
         decision, comment, at)",
        "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)".to_owned(),
        "",
        vec![
            cast.id.as_str().into(),
            change.id.as_str().into(),
            change.revision.into(),
            (stage as i64).into(),
            voter.user_id.as_str().into(),
            voter.username.as_str().into(),
            counted_as.0.as_str().into(),
            counted_as.1.as_str().into(),
            decided.into(),
            comment.as_str().into(),
            to_millis(tx.now()).into(),
        ],
    ));
    let record = serde_json::json!({
        "revision": change.revision, "stage": stage, "stage_name": stage_def.name,
        "decision": decision, "comment": comment.as_str(), "counted_as": counted_as.1,
    });
    if delegated {
        tx.acting_for(Some(counted_as.1.clone()));
    }
    tx.audit("approval.vote", "change", &change.id, None::<&()>, Some(&record)).await?;
    tx.acting_for(None);
    let approvals =
        1 + votes.iter().filter(|v| v.vote.stage == stage as i64 && v.vote.decision == "approve").count() as u32;
    votes.push(cast);
    sort_votes(&mut votes);
    let votes: Vec<Vote> = votes.into_iter().map(|v| v.vote).collect();
    match decision {
        Decision::Reject => {
            let event =
                ChangeEvent { event: "reject".into(), comment: Some(comment.as_str().to_owned()), review: None };
            change::fire_on(tx, change.clone(), &Actor::System, event, None).await?;
            status_in(&tx.db().clone(), tx.conn(), &change, Some(round), votes, None).await
        }
        Decision::Approve if stage_def.rule.met(approvals, approvers.len() as u32) => {
            let round = advance(tx, &change, round).await?;
            status_in(&tx.db().clone(), tx.conn(), &change, Some(round), votes, None).await
        }
        Decision::Approve => {
            status_in(&tx.db().clone(), tx.conn(), &change, Some(round), votes, Some((stage, approvers.as_slice())))
                .await
        }
    }
}

/// Passes the round's open stage; passing the last one approves the change. Returns the round as it is now.
pub(super) async fn advance(tx: &mut WriteTx<'_>, change: &Change, round: Round) -> StoreResult<Round> {
    let stage = round.stage;
    let now = to_millis(tx.now());
    // Written with the change's own update at commit; nothing later in the transaction reads it.
    tx.defer(Deferred::update(
        "UPDATE approval_rounds SET stage = $1, stage_opened_at = $2, escalated_groups = '', timed_out = 0 \
         WHERE change_id = $3 AND revision = $4 AND stage = $5",
        vec![
            (stage as i64 + 1).into(),
            now.into(),
            change.id.as_str().into(),
            change.revision.into(),
            (stage as i64).into(),
        ],
    ));
    let round =
        Round { stage: stage + 1, stage_opened_at: now, escalated_groups: Vec::new(), timed_out: false, ..round };
    match round.policy.stages.get(round.stage) {
        Some(next) => {
            let groups = next.groups.clone();
            request_votes(tx, change, &groups).await?;
        }
        None => {
            // The last stage has passed: the change this transaction read and locked is approved.
            let approve = ChangeEvent { event: "approve".into(), ..Default::default() };
            change::fire_on(tx, change.clone(), &Actor::System, approve, Some(Ok(()))).await?;
        }
    }
    Ok(round)
}
