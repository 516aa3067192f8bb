//! Policies, rounds, votes and delegations in the store.

use super::policy::{ApprovalPolicy, Rule, TimeoutAction, DEFAULT_GROUPS, DEFAULT_POLICIES};
use crate::accounts::{self, GroupSpec, Principal, Role, RoleSet};
use crate::change::{self, Change, ChangeEvent, RiskLevel};
use crate::clock::{from_millis, to_millis};
use crate::error::{StoreError, StoreResult, ValidationError};
use crate::freeze::Window;
use crate::notify::{self, NotificationKind};
use crate::process::Actor;
use crate::store::{AuditContext, Db, WriteTx};
use crate::text::{Description, Name};
use serde::Serialize;
use sqlx::any::AnyArguments;
use sqlx::{AnyConnection, Arguments};
use time::OffsetDateTime;

// ---------------------------------------------------------------------------------------------------------
// Policies

/// Every policy, by name.
pub async fn list_policies(db: &Db) -> StoreResult<Vec<ApprovalPolicy>> {
    let mut conn = db.pool().acquire().await?;
    policies_in(&mut conn).await
}

async fn policies_in(conn: &mut AnyConnection) -> StoreResult<Vec<ApprovalPolicy>> {
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, body FROM approval_policies ORDER BY name").fetch_all(conn).await?;
    rows.into_iter()
        .map(|(name, body)| {
            serde_json::from_str(&body)
                .map_err(|e| StoreError::Internal(format!("stored approval policy {name} does not parse: {e}")))
        })
        .collect()
}

/// Creates or replaces a policy. Changes already in approval keep the policy their round started with.
pub async fn put_policy(db: &Db, ctx: &AuditContext, policy: ApprovalPolicy) -> StoreResult<ApprovalPolicy> {
    policy.validate()?;
    let mut tx = db.write(ctx).await?;
    let before: Option<(String,)> = sqlx::query_as("SELECT body FROM approval_policies WHERE name = $1")
        .bind(&policy.name)
        .fetch_optional(tx.conn())
        .await?;
    let before: Option<ApprovalPolicy> = before.and_then(|(b,)| serde_json::from_str(&b).ok());
    let body = serde_json::to_string(&policy).map_err(|e| StoreError::Internal(e.to_string()))?;
    let now = to_millis(tx.now());
    sqlx::query("DELETE FROM approval_policies WHERE name = $1").bind(&policy.name).execute(tx.conn()).await?;
    sqlx::query("INSERT INTO approval_policies (name, body, updated_at, updated_by) VALUES ($1, $2, $3, $4)")
        .bind(&policy.name)
        .bind(&body)
        .bind(now)
        .bind(&ctx.actor)
        .execute(tx.conn())
        .await?;
    tx.audit("approval_policy.put", "approval_policy", &policy.name, before.as_ref(), Some(&policy)).await?;
    tx.commit().await?;
    Ok(policy)
}

pub async fn delete_policy(db: &Db, ctx: &AuditContext, name: &str) -> StoreResult<()> {
    let mut tx = db.write(ctx).await?;
    let before: Option<(String,)> = sqlx::query_as("SELECT body FROM approval_policies WHERE name = $1")
        .bind(name)
        .fetch_optional(tx.conn())
        .await?;
    let Some((body,)) = before else { return Err(StoreError::not_found("approval policy", name)) };
    sqlx::query("DELETE FROM approval_policies WHERE name = $1").bind(name).execute(tx.conn()).await?;
    let before: Option<ApprovalPolicy> = serde_json::from_str(&body).ok();
    tx.audit("approval_policy.delete", "approval_policy", name, before.as_ref(), None::<&ApprovalPolicy>).await?;
    tx.commit().await?;
    Ok(())
}

/// Stores the shipped policies and creates their approver groups, where missing. Returns how many of each.
pub async fn seed_defaults(db: &Db) -> StoreResult<(usize, usize)> {
    let ctx = AuditContext::system("seed-approvals");
    let mut groups = 0;
    for (name, description) in DEFAULT_GROUPS {
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT id FROM user_groups WHERE name = $1").bind(*name).fetch_optional(db.pool()).await?;
        if exists.is_none() {
            let spec = GroupSpec {
                name: Name::parse("name", name)?,
                description: Description::parse("description", description)?,
                roles: RoleSet::new([Role::Approver]),
            };
            accounts::create_group(db, &ctx, spec).await?;
            groups += 1;
        }
    }
    let shipped: Vec<ApprovalPolicy> = serde_json::from_str(DEFAULT_POLICIES)
        .map_err(|e| StoreError::Internal(format!("the shipped approval policies do not parse: {e}")))?;
    let present = list_policies(db).await?;
    let mut policies = 0;
    for p in shipped {
        if !present.iter().any(|q| q.name == p.name) {
            put_policy(db, &ctx, p).await?;
            policies += 1;
        }
    }
    Ok((groups, policies))
}

// ---------------------------------------------------------------------------------------------------------
// Rounds

struct Round {
    policy: ApprovalPolicy,
    stage: usize,
    stage_opened_at: i64,
    escalated_groups: Vec<String>,
    timed_out: bool,
}

async fn round_of(conn: &mut AnyConnection, change: &Change) -> StoreResult<Option<Round>> {
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
    let policies = policies_in(tx.conn()).await?;
    let policy = policies.into_iter().find(|p| p.applies(change.kind, change.risk.level)).ok_or_else(|| {
        StoreError::Conflict(format!(
            "no approval policy applies to a {} change of {:?} risk: an administrator must add one",
            change.kind.as_str(),
            change.risk.level
        ))
    })?;
    let body = serde_json::to_string(&policy).map_err(|e| StoreError::Internal(e.to_string()))?;
    let now = to_millis(tx.now());
    sqlx::query("DELETE FROM approval_rounds WHERE change_id = $1 AND revision = $2")
        .bind(&change.id)
        .bind(change.revision)
        .execute(tx.conn())
        .await?;
    sqlx::query(
        "INSERT INTO approval_rounds (change_id, revision, policy, stage, stage_opened_at, escalated_groups, timed_out) \
         VALUES ($1, $2, $3, 0, $4, '', 0)",
    )
    .bind(&change.id)
    .bind(change.revision)
    .bind(&body)
    .bind(now)
    .execute(tx.conn())
    .await?;
    request_votes(tx, change, &policy.stages[0].groups).await
}

/// Tells the approvers of the stage now open that the change waits for them.
async fn request_votes(tx: &mut WriteTx<'_>, change: &Change, groups: &[String]) -> StoreResult<()> {
    let approvers: Vec<String> =
        eligible(tx.conn(), groups, &change.requester_id).await?.into_iter().map(|(id, _)| id).collect();
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

/// Enabled members of the named groups, except `requester`: (id, username).
async fn eligible(conn: &mut AnyConnection, groups: &[String], requester: &str) -> StoreResult<Vec<(String, String)>> {
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let mut args = AnyArguments::default();
    let _ = args.add(requester.to_owned());
    let placeholders: Vec<String> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let _ = args.add(g.clone());
            format!("${}", i + 2)
        })
        .collect();
    let sql = format!(
        "SELECT DISTINCT u.id, u.username FROM users u JOIN group_members m ON m.user_id = u.id \
         JOIN user_groups g ON g.id = m.group_id WHERE u.disabled = 0 AND u.id <> $1 AND g.name IN ({}) \
         ORDER BY u.username",
        placeholders.join(", ")
    );
    Ok(sqlx::query_as_with(&sql, args).fetch_all(conn).await?)
}

fn stage_groups(round: &Round) -> Vec<String> {
    let mut g = round.policy.stages[round.stage].groups.clone();
    g.extend(round.escalated_groups.iter().cloned());
    g
}

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

async fn votes_of(conn: &mut AnyConnection, change: &Change) -> StoreResult<Vec<Vote>> {
    let rows: Vec<(i64, String, String, String, String, i64)> = sqlx::query_as(
        "SELECT stage, voter, counted_as, decision, comment, at FROM approval_votes \
         WHERE change_id = $1 AND revision = $2 ORDER BY at, id",
    )
    .bind(&change.id)
    .bind(change.revision)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(stage, voter, counted_as, decision, comment, at)| Vote {
            stage,
            voter,
            counted_as,
            decision,
            comment,
            at: from_millis(at),
        })
        .collect())
}

pub async fn approval_status(db: &Db, change_id: &str) -> StoreResult<ApprovalStatus> {
    let mut conn = db.pool().acquire().await?;
    let change = change::fetch_in(&mut conn, change_id).await?;
    status_in(&mut conn, &change).await
}

async fn status_in(conn: &mut AnyConnection, change: &Change) -> StoreResult<ApprovalStatus> {
    let votes = votes_of(conn, change).await?;
    let Some(round) = round_of(conn, change).await? else {
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
        let approvers = eligible(conn, &groups, &change.requester_id).await?.into_iter().map(|(_, u)| u).collect();
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
    let comment = Description::parse("comment", comment.unwrap_or(""))?;
    if decision == Decision::Reject && comment.as_str().trim().is_empty() {
        return Err(ValidationError::new("comment", "a rejection needs a comment").into());
    }
    let mut tx = db.write(ctx).await?;
    let change = change::fetch_in(tx.conn(), change_id).await?;
    if change.state != "awaiting_approval" {
        return Err(StoreError::Conflict(format!("{} is {}, not awaiting approval", change.reference, change.state)));
    }
    if voter.user_id == change.requester_id {
        return Err(StoreError::Forbidden(format!("you requested {}: someone else must approve it", change.reference)));
    }
    let round = round_of(tx.conn(), &change)
        .await?
        .ok_or_else(|| StoreError::Conflict(format!("{} has no approval round open", change.reference)))?;
    let stage = round.stage;
    let Some(stage_def) = round.policy.stages.get(stage) else {
        return Err(StoreError::Conflict(format!("{} is already approved", change.reference)));
    };
    let approvers = eligible(tx.conn(), &stage_groups(&round), &change.requester_id).await?;
    let voted: Vec<(String,)> = sqlx::query_as(
        "SELECT counted_as_id FROM approval_votes WHERE change_id = $1 AND revision = $2 AND stage = $3",
    )
    .bind(&change.id)
    .bind(change.revision)
    .bind(stage as i64)
    .fetch_all(tx.conn())
    .await?;
    let has_voted = |id: &str| voted.iter().any(|(v,)| v == id);
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
    let delegated = counted_as.0 != voter.user_id;
    let now = to_millis(tx.now());
    sqlx::query(
        "INSERT INTO approval_votes (id, change_id, revision, stage, voter_id, voter, counted_as_id, counted_as, \
         decision, comment, at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(&change.id)
    .bind(change.revision)
    .bind(stage as i64)
    .bind(&voter.user_id)
    .bind(&voter.username)
    .bind(&counted_as.0)
    .bind(&counted_as.1)
    .bind(match decision {
        Decision::Approve => "approve",
        Decision::Reject => "reject",
    })
    .bind(comment.as_str())
    .bind(now)
    .execute(tx.conn())
    .await
    .map_err(|e| StoreError::unique_as_conflict(e, format!("{} has already voted on this stage", counted_as.1)))?;
    let record = serde_json::json!({
        "revision": change.revision, "stage": stage, "stage_name": stage_def.name,
        "decision": decision, "comment": comment.as_str(), "counted_as": counted_as.1,
    });
    if delegated {
        tx.acting_for(Some(counted_as.1.clone()));
    }
    tx.audit("approval.vote", "change", &change.id, None::<&()>, Some(&record)).await?;
    tx.acting_for(None);
    match decision {
        Decision::Reject => {
            let event =
                ChangeEvent { event: "reject".into(), comment: Some(comment.as_str().to_owned()), review: None };
            change::fire_in(&mut tx, &change.id, &Actor::System, event).await?;
        }
        Decision::Approve => {
            let approvals = 1 + voted.len() as u32 - rejected_count(tx.conn(), &change, stage).await?;
            if stage_def.rule.met(approvals, approvers.len() as u32) {
                advance(&mut tx, &change, stage).await?;
            }
        }
    }
    let after = change::fetch_in(tx.conn(), &change.id).await?;
    let status = status_in(tx.conn(), &after).await?;
    tx.commit().await?;
    Ok(status)
}

async fn rejected_count(conn: &mut AnyConnection, change: &Change, stage: usize) -> StoreResult<u32> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM approval_votes WHERE change_id = $1 AND revision = $2 AND stage = $3 AND decision = 'reject'",
    )
    .bind(&change.id)
    .bind(change.revision)
    .bind(stage as i64)
    .fetch_one(conn)
    .await?;
    Ok(u32::try_from(n).unwrap_or(0))
}

/// Passes `stage`; passing the last one approves the change.
async fn advance(tx: &mut WriteTx<'_>, change: &Change, stage: usize) -> StoreResult<()> {
    let now = to_millis(tx.now());
    sqlx::query(
        "UPDATE approval_rounds SET stage = $1, stage_opened_at = $2, escalated_groups = '', timed_out = 0 \
         WHERE change_id = $3 AND revision = $4 AND stage = $5",
    )
    .bind(stage as i64 + 1)
    .bind(now)
    .bind(&change.id)
    .bind(change.revision)
    .bind(stage as i64)
    .execute(tx.conn())
    .await?;
    let complete = complete_in(tx.conn(), change).await?.is_ok();
    if !complete {
        if let Some(round) = round_of(tx.conn(), change).await? {
            let groups = round.policy.stages.get(round.stage).map(|s| s.groups.clone()).unwrap_or_default();
            request_votes(tx, change, &groups).await?;
        }
    }
    if complete {
        change::fire_in(tx, &change.id, &Actor::System, ChangeEvent { event: "approve".into(), ..Default::default() })
            .await?;
    }
    Ok(())
}

/// Acts on every open stage that waited past its timeout: escalates it (once), rejects the change, or
/// passes it when the change is low-risk. Returns how many stages it acted on.
pub async fn sweep_timeouts(db: &Db) -> StoreResult<usize> {
    let waiting: Vec<(String,)> = sqlx::query_as(
        "SELECT c.id FROM changes c JOIN approval_rounds r ON r.change_id = c.id AND r.revision = c.revision \
         WHERE c.state = 'awaiting_approval' AND r.timed_out = 0 ORDER BY c.number",
    )
    .fetch_all(db.pool())
    .await?;
    let ctx = AuditContext::system("approval-timeouts");
    let mut acted = 0;
    for (id,) in waiting {
        let mut tx = db.write(&ctx).await?;
        let change = change::fetch_in(tx.conn(), &id).await?;
        let Some(round) = round_of(tx.conn(), &change).await? else { continue };
        let Some(stage) = round.policy.stages.get(round.stage) else { continue };
        let (Some(timeout), Some(action)) = (stage.timeout_secs, stage.on_timeout.clone()) else { continue };
        let deadline = round.stage_opened_at.saturating_add(i64::try_from(timeout).unwrap_or(i64::MAX / 2) * 1000);
        if round.timed_out || change.state != "awaiting_approval" || to_millis(tx.now()) < deadline {
            continue;
        }
        let mark = |groups: &str| {
            sqlx::query(
                "UPDATE approval_rounds SET timed_out = 1, escalated_groups = $1 WHERE change_id = $2 AND revision = $3",
            )
            .bind(groups.to_owned())
            .bind(change.id.clone())
            .bind(change.revision)
        };
        let record = serde_json::json!({ "stage": round.stage, "stage_name": stage.name, "action": action });
        match action {
            TimeoutAction::Escalate(group) => {
                mark(&group).execute(tx.conn()).await?;
                tx.audit("approval.escalate", "change", &id, None::<&()>, Some(&record)).await?;
                request_votes(&mut tx, &change, std::slice::from_ref(&group)).await?;
            }
            TimeoutAction::Reject => {
                mark("").execute(tx.conn()).await?;
                tx.audit("approval.timeout", "change", &id, None::<&()>, Some(&record)).await?;
                let comment = format!("stage {} ({}) timed out", round.stage + 1, stage.name);
                let event = ChangeEvent { event: "reject".into(), comment: Some(comment), review: None };
                change::fire_in(&mut tx, &id, &Actor::System, event).await?;
            }
            TimeoutAction::ApproveIfLowRisk if change.risk.level == RiskLevel::Low => {
                tx.audit("approval.timeout", "change", &id, None::<&()>, Some(&record)).await?;
                advance(&mut tx, &change, round.stage).await?;
            }
            TimeoutAction::ApproveIfLowRisk => {
                mark("").execute(tx.conn()).await?;
                tx.audit("approval.timeout", "change", &id, None::<&()>, Some(&record)).await?;
            }
        }
        tx.commit().await?;
        acted += 1;
    }
    Ok(acted)
}

// ---------------------------------------------------------------------------------------------------------
// Delegation

/// A time-bounded hand-over of approval rights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Delegation {
    pub id: String,
    pub from_user_id: String,
    pub to_user_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
}

type DelegationRow = (String, String, String, i64, i64);

fn delegation(r: DelegationRow) -> Delegation {
    Delegation { id: r.0, from_user_id: r.1, to_user_id: r.2, starts_at: from_millis(r.3), ends_at: from_millis(r.4) }
}

/// `from` hands their approvals to `to_user_id` during `window`.
pub async fn delegate(
    db: &Db,
    ctx: &AuditContext,
    from: &Principal,
    to_user_id: &str,
    window: Window,
) -> StoreResult<Delegation> {
    if to_user_id == from.user_id {
        return Err(ValidationError::new("to_user_id", "you cannot delegate to yourself").into());
    }
    let mut tx = db.write(ctx).await?;
    let target = if to_user_id.contains('\0') {
        None
    } else {
        sqlx::query_as::<_, (i64,)>("SELECT disabled FROM users WHERE id = $1")
            .bind(to_user_id)
            .fetch_optional(tx.conn())
            .await?
    };
    if target.is_none_or(|(d,)| d != 0) {
        return Err(ValidationError::new("to_user_id", format!("no enabled user has id {to_user_id}")).into());
    }
    let d = Delegation {
        id: uuid::Uuid::new_v4().to_string(),
        from_user_id: from.user_id.clone(),
        to_user_id: to_user_id.to_owned(),
        starts_at: window.start,
        ends_at: window.end,
    };
    sqlx::query(
        "INSERT INTO delegations (id, from_user_id, to_user_id, starts_at, ends_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&d.id)
    .bind(&d.from_user_id)
    .bind(&d.to_user_id)
    .bind(to_millis(d.starts_at))
    .bind(to_millis(d.ends_at))
    .bind(to_millis(tx.now()))
    .execute(tx.conn())
    .await?;
    tx.audit("delegation.create", "delegation", &d.id, None::<&Delegation>, Some(&d)).await?;
    tx.commit().await?;
    Ok(d)
}

/// Delegations from or to `user_id`, by start.
pub async fn delegations_of(db: &Db, user_id: &str) -> StoreResult<Vec<Delegation>> {
    let rows: Vec<DelegationRow> = sqlx::query_as(
        "SELECT id, from_user_id, to_user_id, starts_at, ends_at FROM delegations \
         WHERE from_user_id = $1 OR to_user_id = $1 ORDER BY starts_at, id",
    )
    .bind(user_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(delegation).collect())
}

/// Ends a delegation; only its giver (or an administrator) can.
pub async fn revoke_delegation(db: &Db, ctx: &AuditContext, id: &str, by: &Principal) -> StoreResult<()> {
    let mut tx = db.write(ctx).await?;
    let row: Option<DelegationRow> = if id.contains('\0') {
        None
    } else {
        sqlx::query_as("SELECT id, from_user_id, to_user_id, starts_at, ends_at FROM delegations WHERE id = $1")
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
    };
    let d = match row.map(delegation) {
        Some(d) if d.from_user_id == by.user_id || by.roles.contains(Role::Admin) => d,
        _ => return Err(StoreError::not_found("delegation", id)),
    };
    sqlx::query("DELETE FROM delegations WHERE id = $1").bind(id).execute(tx.conn()).await?;
    tx.audit("delegation.revoke", "delegation", id, Some(&d), None::<&Delegation>).await?;
    tx.commit().await?;
    Ok(())
}
