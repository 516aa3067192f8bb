//! Delegation: a substitute votes for an approver while the delegation lasts, the vote counts as the
//! approver's, and the audit record says on whose behalf it was cast.

use crate::change_support::*;
use crate::support::*;
use time::Duration;
use tollgate_workflows::accounts::Role;
use tollgate_workflows::approval::{self, Rule};

#[tokio::test]
async fn a_delegates_vote_counts_as_the_delegators_and_the_audit_says_on_whose_behalf() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let petra = approver(&db, "petra", "change-approvers").await;
    let paul = approver(&db, "paul", "change-approvers").await;
    let dave = person(&db, "dave", &[Role::Approver]).await;
    let d = approval::delegate(&db, &ctx_of(&petra), &petra, &dave.user_id, hours(-1, 24)).await.unwrap();
    assert_eq!((d.from_user_id.as_str(), d.to_user_id.as_str()), (petra.user_id.as_str(), dave.user_id.as_str()));
    let c = to_approval(&db, &s, medium_risk(&db, &f).await).await;

    let status = approve(&db, &c.id, &dave).await.unwrap();
    let v = &status.votes[0];
    assert_eq!((v.voter.as_str(), v.counted_as.as_str(), v.stage), ("dave", "petra", 0));
    assert_eq!(status.stages[0].approvals, 1);
    let vote = audit_of(&db, "change", &c.id).await.into_iter().find(|r| r.action == "approval.vote").unwrap();
    assert_eq!((vote.actor.as_str(), vote.on_behalf_of.as_deref()), ("dave", Some("petra")));
    assert_eq!(vote.after.as_ref().unwrap()["counted_as"], "petra");

    assert_conflict(approve(&db, &c.id, &petra).await);
    assert_conflict(approve(&db, &c.id, &dave).await);
    let status = approve(&db, &c.id, &paul).await.unwrap();
    assert_eq!(status.stages[0].status, "passed", "the delegate's vote and paul's make the quorum of two");
    assert_forbidden(approve(&db, &c.id, &dave).await);
    let timeline = tollgate_workflows::change::change_timeline(&db, &c.id, all()).await.unwrap();
    assert!(timeline.items.iter().any(|r| r.on_behalf_of.as_deref() == Some("petra")));
}

#[tokio::test]
async fn an_expired_future_or_revoked_delegation_does_not_count() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let petra = approver(&db, "petra", "change-approvers").await;
    let dave = person(&db, "dave", &[Role::Approver]).await;
    let c = to_approval(&db, &s, low_risk(&f)).await;

    approval::delegate(&db, &ctx_of(&petra), &petra, &dave.user_id, hours(-3, -1)).await.unwrap();
    approval::delegate(&db, &ctx_of(&petra), &petra, &dave.user_id, hours(5, 6)).await.unwrap();
    assert_forbidden(approve(&db, &c.id, &dave).await);

    let now = approval::delegate(&db, &ctx_of(&petra), &petra, &dave.user_id, hours(-1, 1)).await.unwrap();
    db.clock().advance(Duration::hours(1));
    assert_forbidden(approve(&db, &c.id, &dave).await);
    db.clock().advance(Duration::minutes(-1));
    assert_eq!(approval::delegations_of(&db, &dave.user_id).await.unwrap().len(), 3);

    assert_not_found(approval::revoke_delegation(&db, &ctx_of(&dave), &now.id, &dave).await);
    approval::revoke_delegation(&db, &ctx_of(&petra), &now.id, &petra).await.unwrap();
    assert_forbidden(approve(&db, &c.id, &dave).await);
    assert_eq!(state_of(&db, &c.id).await, "awaiting_approval");
    let actions: Vec<String> = audit_of(&db, "delegation", &now.id).await.into_iter().map(|r| r.action).collect();
    assert_eq!(actions, ["delegation.revoke", "delegation.create"]);
}

#[tokio::test]
async fn nobody_delegates_to_themselves_or_to_someone_who_cannot_sign_in() {
    let (db, _f) = seeded().await;
    let petra = approver(&db, "petra", "change-approvers").await;
    assert_invalid(approval::delegate(&db, &ctx_of(&petra), &petra, &petra.user_id, hours(0, 1)).await, "to_user_id");
    assert_invalid(approval::delegate(&db, &ctx_of(&petra), &petra, "nobody", hours(0, 1)).await, "to_user_id");
    assert!(approval::delegations_of(&db, &petra.user_id).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_requester_cannot_approve_their_own_change_as_someones_delegate() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let petra = approver(&db, "petra", "change-approvers").await;
    // A plain requester cannot stand in for an approver at all.
    let plain = approval::delegate(&db, &ctx_of(&petra), &petra, &s.requester.user_id, hours(-1, 1)).await;
    assert_invalid(plain, "to_user_id");
    // Someone who may also approve can, but never on a change they requested.
    let rhea = person(&db, "rhea", &[Role::Requester, Role::Approver]).await;
    approval::delegate(&db, &ctx_of(&petra), &petra, &rhea.user_id, hours(-1, 1)).await.unwrap();
    let s = Staff { requester: rhea.clone(), ..s };
    let c = to_approval(&db, &s, low_risk(&f)).await;
    assert_forbidden(approve(&db, &c.id, &rhea).await);
    assert!(approval::approval_status(&db, &c.id).await.unwrap().votes.is_empty());
}

#[tokio::test]
async fn a_delegate_for_two_approvers_counts_once_for_each_and_no_more() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    low_risk_policy(&db, Rule::Quorum(3)).await;
    let petra = approver(&db, "petra", "change-approvers").await;
    let paul = approver(&db, "paul", "change-approvers").await;
    let pam = approver(&db, "pam", "change-approvers").await;
    let dave = person(&db, "dave", &[Role::Approver]).await;
    approval::delegate(&db, &ctx_of(&petra), &petra, &dave.user_id, hours(-1, 1)).await.unwrap();
    approval::delegate(&db, &ctx_of(&paul), &paul, &dave.user_id, hours(-1, 1)).await.unwrap();
    let c = to_approval(&db, &s, low_risk(&f)).await;

    approve(&db, &c.id, &dave).await.unwrap();
    let status = approve(&db, &c.id, &dave).await.unwrap();
    let mut counted: Vec<&str> = status.votes.iter().map(|v| v.counted_as.as_str()).collect();
    counted.sort_unstable();
    assert_eq!(counted, ["paul", "petra"]);
    assert_conflict(approve(&db, &c.id, &dave).await);
    approve(&db, &c.id, &pam).await.unwrap();
    assert_eq!(state_of(&db, &c.id).await, "approved");
}
