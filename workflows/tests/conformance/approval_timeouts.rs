//! Stages that wait too long: escalation to another group (once), rejection, or a pass for low-risk work.

use crate::change_support::*;
use crate::support::*;
use time::Duration;
use tollgate_workflows::approval::{self, ApprovalPolicy, Rule, Stage, TimeoutAction};
use tollgate_workflows::change::{ChangeKind, RiskLevel};
use tollgate_workflows::Db;

fn actions_of(records: &[tollgate_workflows::audit::AuditRecord]) -> Vec<&str> {
    records.iter().map(|r| r.action.as_str()).collect()
}

/// One stage over `change-approvers` that passes a low-risk change after an hour, for changes of `risk`.
async fn pass_low_risk_after_an_hour(db: &Db, name_: &str, min_risk: RiskLevel, max_risk: RiskLevel) {
    let stage = Stage {
        name: "peers".into(),
        groups: vec!["change-approvers".into()],
        rule: Rule::Any,
        timeout_secs: Some(3600),
        on_timeout: Some(TimeoutAction::ApproveIfLowRisk),
    };
    let policy =
        ApprovalPolicy { name: name_.into(), kinds: vec![ChangeKind::Normal], min_risk, max_risk, stages: vec![stage] };
    approval::put_policy(db, &ctx(), policy).await.unwrap();
}

#[tokio::test]
async fn a_stage_that_times_out_escalates_once_and_the_escalated_group_may_then_vote() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    approver(&db, "petra", "change-approvers").await;
    let carol = approver(&db, "carol", "change-advisory-board").await;
    let c = to_approval(&db, &s, low_risk(&f)).await;
    assert_forbidden(approve(&db, &c.id, &carol).await);

    db.clock().advance(Duration::hours(24) - Duration::seconds(1));
    assert_eq!(approval::sweep_timeouts(&db).await.unwrap(), 0, "the peer review has a day");
    db.clock().advance(Duration::seconds(1));
    assert_eq!(approval::sweep_timeouts(&db).await.unwrap(), 1);
    assert_eq!(approval::sweep_timeouts(&db).await.unwrap(), 0, "a stage escalates once");
    db.clock().advance(Duration::days(3));
    assert_eq!(approval::sweep_timeouts(&db).await.unwrap(), 0);

    let status = approval::approval_status(&db, &c.id).await.unwrap();
    assert_eq!(status.stages[0].approvers, ["carol", "petra"]);
    assert_eq!(state_of(&db, &c.id).await, "awaiting_approval");
    let records = audit_of(&db, "change", &c.id).await;
    assert_eq!(records[0].action, "approval.escalate");
    assert_eq!(records[0].actor, "system");
    approve(&db, &c.id, &carol).await.unwrap();
    assert_eq!(state_of(&db, &c.id).await, "approved");
}

#[tokio::test]
async fn a_stage_whose_timeout_action_is_reject_rejects_the_change() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let petra = approver(&db, "petra", "change-approvers").await;
    let paul = approver(&db, "paul", "change-approvers").await;
    approver(&db, "carol", "change-advisory-board").await;
    let c = to_approval(&db, &s, medium_risk(&db, &f).await).await;
    approve(&db, &c.id, &petra).await.unwrap();
    db.clock().advance(Duration::hours(20));
    approve(&db, &c.id, &paul).await.unwrap();

    db.clock().advance(Duration::hours(47));
    assert_eq!(approval::sweep_timeouts(&db).await.unwrap(), 0, "the CAB stage's two days run from when it opened");
    db.clock().advance(Duration::hours(1));
    assert_eq!(approval::sweep_timeouts(&db).await.unwrap(), 1);
    assert_eq!(state_of(&db, &c.id).await, "rejected");
    let records = audit_of(&db, "change", &c.id).await;
    assert_eq!(actions_of(&records[..2]), ["change.reject", "approval.timeout"]);
    assert_eq!(records[0].after.as_ref().unwrap()["comment"], "stage 2 (CAB) timed out");
    assert_eq!(approval::sweep_timeouts(&db).await.unwrap(), 0);
}

#[tokio::test]
async fn a_timeout_passes_a_low_risk_change_but_leaves_a_riskier_one_waiting() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    pass_low_risk_after_an_hour(&db, "normal-low-risk", RiskLevel::Low, RiskLevel::Low).await;
    pass_low_risk_after_an_hour(&db, "normal", RiskLevel::Medium, RiskLevel::High).await;
    let low = to_approval(&db, &s, low_risk(&f)).await;
    let medium = to_approval(&db, &s, medium_risk(&db, &f).await).await;

    db.clock().advance(Duration::minutes(59));
    assert_eq!(approval::sweep_timeouts(&db).await.unwrap(), 0);
    db.clock().advance(Duration::minutes(1));
    assert_eq!(approval::sweep_timeouts(&db).await.unwrap(), 2);
    assert_eq!(state_of(&db, &low.id).await, "approved");
    assert_eq!(state_of(&db, &medium.id).await, "awaiting_approval", "only low-risk work passes by default");
    assert_eq!(approval::sweep_timeouts(&db).await.unwrap(), 0, "the riskier change is not swept again");

    let low_actions = audit_of(&db, "change", &low.id).await;
    assert_eq!(actions_of(&low_actions[..2]), ["change.approve", "approval.timeout"]);
    let status = approval::approval_status(&db, &medium.id).await.unwrap();
    assert!(!status.complete && status.votes.is_empty());
}
