//! Votes under an approval policy: who may vote, how a stage's rule counts them, rejections, and the
//! policy a change's round runs.

use crate::change_support::*;
use crate::support::*;
use time::Duration;
use tollgate_workflows::approval::{self, Rule};
use tollgate_workflows::change::RiskLevel;

#[tokio::test]
async fn a_requester_cannot_approve_their_own_change() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let peer = approver(&db, "petra", "change-approvers").await;
    join(&db, "change-approvers", &s.requester).await;
    let c = to_approval(&db, &s, low_risk(&f)).await;

    assert_forbidden(approve(&db, &c.id, &s.requester).await);
    let status = approval::approval_status(&db, &c.id).await.unwrap();
    assert_eq!(status.stages[0].approvers, ["petra"], "the requester is never an approver of their own change");
    assert!(status.votes.is_empty());
    approve(&db, &c.id, &peer).await.unwrap();
    assert_eq!(state_of(&db, &c.id).await, "approved");
}

#[tokio::test]
async fn only_approvers_of_the_open_stage_may_vote_and_each_counts_once() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let peer = approver(&db, "petra", "change-approvers").await;
    let cab = approver(&db, "carol", "change-advisory-board").await;
    let outsider = person(&db, "oscar", &[tollgate_workflows::accounts::Role::Approver]).await;
    let draft = request(&db, &s.requester, low_risk(&f)).await;
    assert_conflict(approve(&db, &draft.id, &peer).await);

    let c = to_approval(&db, &s, medium_risk(&db, &f).await).await;
    assert_forbidden(approve(&db, &c.id, &outsider).await);
    assert_forbidden(approve(&db, &c.id, &cab).await);
    let status = approve(&db, &c.id, &peer).await.unwrap();
    assert_eq!((status.stages[0].approvals, status.stages[0].status.as_str()), (1, "open"));
    assert_conflict(approve(&db, &c.id, &peer).await);
    assert_conflict(reject(&db, &c.id, &peer, Some("changed my mind")).await);
    assert_eq!(approval::approval_status(&db, &c.id).await.unwrap().votes.len(), 1);
}

#[tokio::test]
async fn a_quorum_of_two_needs_two_distinct_approvers_before_half_the_cab_approves() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let petra = approver(&db, "petra", "change-approvers").await;
    let paul = approver(&db, "paul", "change-approvers").await;
    let carol = approver(&db, "carol", "change-advisory-board").await;
    let chris = approver(&db, "chris", "change-advisory-board").await;
    approver(&db, "cora", "change-advisory-board").await;
    let c = to_approval(&db, &s, medium_risk(&db, &f).await).await;
    assert_eq!(c.risk.level, RiskLevel::Medium, "{:?}", c.risk);

    let status = approval::approval_status(&db, &c.id).await.unwrap();
    assert_eq!((status.policy.as_deref(), status.revision, status.complete), (Some("normal"), 1, false));
    let shape: Vec<(&str, Rule, &str)> =
        status.stages.iter().map(|st| (st.name.as_str(), st.rule, st.status.as_str())).collect();
    assert_eq!(shape, [("peer review", Rule::Quorum(2), "open"), ("CAB", Rule::Percent(50), "waiting")]);
    assert_eq!(status.stages[0].approvers, ["paul", "petra"]);
    assert_eq!(status.stages[1].approvers, ["carol", "chris", "cora"]);

    assert_forbidden(approve(&db, &c.id, &carol).await);
    approve(&db, &c.id, &petra).await.unwrap();
    assert_eq!(state_of(&db, &c.id).await, "awaiting_approval", "one approval is not a quorum of two");
    db.clock().advance(Duration::minutes(1));
    let status = approve(&db, &c.id, &paul).await.unwrap();
    assert_eq!((status.stages[0].status.as_str(), status.stages[1].status.as_str()), ("passed", "open"));

    db.clock().advance(Duration::minutes(1));
    let status = approve(&db, &c.id, &carol).await.unwrap();
    assert!(!status.complete, "one of three is not half the CAB");
    db.clock().advance(Duration::minutes(1));
    let status = approve(&db, &c.id, &chris).await.unwrap();
    assert!(status.complete);
    assert_eq!(state_of(&db, &c.id).await, "approved");
    let votes: Vec<(i64, &str, &str, &str)> =
        status.votes.iter().map(|v| (v.stage, v.voter.as_str(), v.counted_as.as_str(), v.decision.as_str())).collect();
    assert_eq!(
        votes,
        [
            (0, "petra", "petra", "approve"),
            (0, "paul", "paul", "approve"),
            (1, "carol", "carol", "approve"),
            (1, "chris", "chris", "approve")
        ]
    );
}

#[tokio::test]
async fn a_stage_whose_rule_is_all_waits_for_every_eligible_approver() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    low_risk_policy(&db, Rule::All).await;
    let petra = approver(&db, "petra", "change-approvers").await;
    let paul = approver(&db, "paul", "change-approvers").await;
    join(&db, "change-approvers", &s.requester).await;
    let c = to_approval(&db, &s, low_risk(&f)).await;

    approve(&db, &c.id, &petra).await.unwrap();
    assert_eq!(state_of(&db, &c.id).await, "awaiting_approval");
    approve(&db, &c.id, &paul).await.unwrap();
    assert_eq!(state_of(&db, &c.id).await, "approved", "all means every member but the requester");
}

#[tokio::test]
async fn a_round_keeps_the_policy_it_started_with_when_the_policy_changes() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let petra = approver(&db, "petra", "change-approvers").await;
    approver(&db, "paul", "change-approvers").await;
    let c = to_approval(&db, &s, low_risk(&f)).await;
    low_risk_policy(&db, Rule::Quorum(2)).await;

    approve(&db, &c.id, &petra).await.unwrap();
    assert_eq!(state_of(&db, &c.id).await, "approved", "the round runs the policy as it was when it opened");
    let later = to_approval(&db, &s, low_risk(&f)).await;
    approve(&db, &later.id, &petra).await.unwrap();
    assert_eq!(state_of(&db, &later.id).await, "awaiting_approval", "a new round runs the new policy");
}

#[tokio::test]
async fn a_rejection_needs_a_comment_and_rejects_the_change() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let petra = approver(&db, "petra", "change-approvers").await;
    let paul = approver(&db, "paul", "change-approvers").await;
    let c = to_approval(&db, &s, low_risk(&f)).await;

    assert_invalid(reject(&db, &c.id, &petra, None).await, "comment");
    assert_invalid(reject(&db, &c.id, &petra, Some("   ")).await, "comment");
    let status = reject(&db, &c.id, &petra, Some("no tested rollback")).await.unwrap();
    assert_eq!((status.votes[0].decision.as_str(), status.votes[0].comment.as_str()), ("reject", "no tested rollback"));
    assert_eq!(state_of(&db, &c.id).await, "rejected");
    assert_conflict(approve(&db, &c.id, &paul).await);
    assert_not_allowed(fire(&db, &c.id, &s.manager, "schedule").await);

    let records = audit_of(&db, "change", &c.id).await;
    assert_eq!(records[0].action, "change.reject");
    assert_eq!(records[0].after.as_ref().unwrap()["comment"], "no tested rollback");
    assert_eq!((records[1].action.as_str(), records[1].actor.as_str()), ("approval.vote", "petra"));
}

#[tokio::test]
async fn a_change_no_policy_applies_to_cannot_request_approval() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    approval::delete_policy(&db, &ctx(), "normal-low-risk").await.unwrap();
    assert_not_found(approval::delete_policy(&db, &ctx(), "normal-low-risk").await);
    let c = request(&db, &s.requester, low_risk(&f)).await;
    fire(&db, &c.id, &s.requester, "submit").await.unwrap();
    fire(&db, &c.id, &s.manager, "assess").await.unwrap();

    assert_conflict(fire(&db, &c.id, &s.manager, "request_approval").await);
    assert_eq!(state_of(&db, &c.id).await, "assessed", "the refused request leaves the change where it was");
    let status = approval::approval_status(&db, &c.id).await.unwrap();
    assert_eq!((status.policy, status.stages.len(), status.complete), (None, 0, false));

    let mut broken = approval::list_policies(&db).await.unwrap().remove(0);
    broken.stages[0].rule = Rule::Quorum(0);
    assert_invalid(approval::put_policy(&db, &ctx(), broken).await, "policy");
    let names: Vec<String> = approval::list_policies(&db).await.unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["emergency", "normal"]);
}

#[tokio::test]
async fn a_default_policy_an_administrator_deleted_stays_deleted_after_a_restart() {
    let (db, _) = seeded().await;
    approval::delete_policy(&db, &ctx(), "normal-low-risk").await.unwrap();
    assert_eq!(approval::seed_defaults(&db).await.unwrap(), (0, 0), "a second start seeds nothing");
    let names: Vec<String> = approval::list_policies(&db).await.unwrap().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["emergency", "normal"]);
}
