//! The model the walk checks the store against: what a process definition says an event does, and whether
//! the approval rules let a vote be cast. Plus the small deterministic generator that drives the walk.

use time::OffsetDateTime;
use tollgate_workflows::accounts::{Principal, Role};
use tollgate_workflows::approval::{ApprovalStatus, Decision};
use tollgate_workflows::change::Change;
use tollgate_workflows::process::{Actor, Guard, ProcessDefinition, TransitionError};
use tollgate_workflows::StoreError;

/// States in which a change's plan may still be edited.
pub const EDITABLE: [&str; 6] = ["draft", "submitted", "assessed", "awaiting_approval", "approved", "scheduled"];

pub fn blank(s: Option<&str>) -> bool {
    s.is_none_or(|s| s.trim().is_empty())
}

/// What the store knows when it checks guards, gathered before the event fires.
pub struct Facts<'a> {
    pub now: OffsetDateTime,
    pub comment: Option<&'a str>,
    pub review: Option<&'a str>,
    pub conflicts: usize,
    /// Who fires the event (`None` for the system).
    pub actor_id: Option<&'a str>,
}

/// What the definition says firing `event` does: `Ok(state it leads to)`, or `Err(why it is refused)`.
pub fn expected(def: &ProcessDefinition, c: &Change, event: &str, actor: &Actor, f: &Facts) -> Result<String, String> {
    if !def.transitions.iter().any(|t| t.event == event) {
        return Err("unknown event".into());
    }
    let t = def.transitions.iter().find(|t| t.event == event && t.from.contains(&c.state)).ok_or("not allowed")?;
    if !blank(f.review) && !t.guards.contains(&Guard::ReviewRecorded) {
        return Err("invalid".into());
    }
    match actor {
        Actor::Person(_) if t.system => return Err("system only".into()),
        Actor::Person(roles) if !roles.permits(&t.roles) => return Err("role required".into()),
        _ => {}
    }
    let overridden = c.conflict_override.as_ref().is_some_and(|o| o.revision == c.revision);
    let holds = |g: &Guard| match g {
        Guard::WindowOpen => c.window_start <= f.now && f.now < c.window_end,
        Guard::NotFrozen => true, // this walk declares no freeze window
        Guard::NoUnresolvedConflict => f.conflicts == 0 || overridden,
        Guard::CommentGiven => !blank(f.comment),
        Guard::ReviewRecorded => !blank(f.review) || !blank(c.review.as_deref()),
        Guard::ManualWork => c.operations.is_empty(),
        Guard::AssigneeSet => false,
        Guard::ApprovalsComplete => panic!("only votes fire approve, and this walk never fires it directly"),
    };
    if let Some(g) = t.guards.iter().find(|g| !holds(g)) {
        return Err(format!("guard {g:?}"));
    }
    if let Actor::Person(roles) = actor {
        let besides: Vec<Role> = t.roles.iter().copied().filter(|r| *r != Role::Requester).collect();
        if !roles.permits(&besides) && t.roles.contains(&Role::Requester) && f.actor_id != Some(c.requester_id.as_str())
        {
            return Err("forbidden".into());
        }
    }
    Ok(t.to.clone())
}

/// Whether `voter` may cast this vote: `Err(kind of refusal)` if not.
pub fn vote_expected(
    c: &Change,
    s: &ApprovalStatus,
    voter: &Principal,
    d: Decision,
    comment: Option<&str>,
) -> Result<(), String> {
    if d == Decision::Reject && blank(comment) {
        return Err("invalid".into());
    }
    if c.state != "awaiting_approval" {
        return Err("conflict".into());
    }
    if voter.user_id == c.requester_id {
        return Err("forbidden".into());
    }
    let Some(open) = s.stages.iter().position(|st| st.status == "open") else { return Err("conflict".into()) };
    if !s.stages[open].approvers.contains(&voter.username) {
        return Err("forbidden".into());
    }
    if s.votes.iter().any(|v| v.stage == open as i64 && v.counted_as == voter.username) {
        return Err("conflict".into());
    }
    Ok(())
}

pub fn refusal(e: &StoreError) -> String {
    match e {
        StoreError::Transition(TransitionError::UnknownEvent { .. }) => "unknown event".into(),
        StoreError::Transition(TransitionError::NotAllowed { .. }) => "not allowed".into(),
        StoreError::Transition(TransitionError::SystemOnly { .. }) => "system only".into(),
        StoreError::Transition(TransitionError::RoleRequired { .. }) => "role required".into(),
        StoreError::Transition(TransitionError::GuardFailed { guard, .. }) => format!("guard {guard:?}"),
        StoreError::Invalid(_) => "invalid".into(),
        StoreError::Conflict(_) => "conflict".into(),
        StoreError::Forbidden(_) => "forbidden".into(),
        other => format!("{other:?}"),
    }
}
