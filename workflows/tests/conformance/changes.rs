//! Changes through their processes: the normal, standard and emergency transition tables, and the refusals a
//! person meets for the wrong state, the wrong role, or an event only Tollgate fires.

use crate::change_support::*;
use crate::support::*;
use time::Duration;
use tollgate_workflows::change::{self, ChangeEvent, ChangeKind};
use tollgate_workflows::process::{Guard, TransitionError};
use tollgate_workflows::StoreError;

async fn close(
    db: &tollgate_workflows::Db,
    id: &str,
    by: &tollgate_workflows::accounts::Principal,
    review: &str,
) -> String {
    let e = ChangeEvent { event: "close".into(), review: Some(review.into()), ..ChangeEvent::default() };
    change::fire_change(db, &ctx_of(by), id, &change::person(&by.roles), e).await.unwrap().state
}

#[tokio::test]
async fn a_normal_change_runs_from_draft_through_approval_and_implementation_to_closed() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let peer = approver(&db, "petra", "change-approvers").await;
    let c = request(&db, &s.requester, plan(ChangeKind::Normal, "stop db", vec![stop(&f.vm.id)], hours(-1, 24))).await;
    assert_eq!((c.state.as_str(), c.process.as_str(), c.process_version, c.revision), ("draft", "normal-change", 1, 1));
    assert_eq!((c.reference.as_str(), c.requester.as_str()), ("CHG-000001", "rita"));

    assert_eq!(fire(&db, &c.id, &s.requester, "submit").await.unwrap().state, "submitted");
    assert_eq!(fire(&db, &c.id, &s.manager, "assess").await.unwrap().state, "assessed");
    assert_eq!(fire(&db, &c.id, &s.manager, "request_approval").await.unwrap().state, "awaiting_approval");
    assert!(approve(&db, &c.id, &peer).await.unwrap().complete);
    assert_eq!(state_of(&db, &c.id).await, "approved", "the vote that completes the policy approves the change");
    assert_eq!(fire(&db, &c.id, &s.manager, "schedule").await.unwrap().state, "scheduled");
    assert_eq!(fire(&db, &c.id, &s.operator, "start").await.unwrap().state, "implementing");
    assert_eq!(fire_system(&db, &c.id, "verify").await.unwrap().state, "verifying");
    assert_eq!(fire_system(&db, &c.id, "complete").await.unwrap().state, "completed");
    assert_eq!(close(&db, &c.id, &s.manager, "went as planned").await, "closed");
    assert_eq!(change::get_change(&db, &c.id).await.unwrap().review.as_deref(), Some("went as planned"));
}

#[tokio::test]
async fn a_normal_change_refuses_events_from_the_wrong_state_role_or_person() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let c = request(&db, &s.requester, plan(ChangeKind::Normal, "stop db", vec![stop(&f.vm.id)], hours(-1, 24))).await;

    assert_not_allowed(fire(&db, &c.id, &s.manager, "assess").await);
    assert_role_required(fire(&db, &c.id, &s.operator, "submit").await);
    assert!(matches!(
        fire(&db, &c.id, &s.requester, "teleport").await,
        Err(StoreError::Transition(TransitionError::UnknownEvent { .. }))
    ));
    assert_eq!(state_of(&db, &c.id).await, "draft", "refusals change nothing");

    fire(&db, &c.id, &s.requester, "submit").await.unwrap();
    assert_not_allowed(fire(&db, &c.id, &s.manager, "request_approval").await);
    assert_role_required(fire(&db, &c.id, &s.requester, "assess").await);
    walk(&db, &c.id, &s.manager, &["assess", "request_approval"]).await;

    assert_system_only(fire(&db, &c.id, &s.manager, "approve").await);
    assert_system_only(fire(&db, &c.id, &s.manager, "reject").await);
    assert_guard(fire_system(&db, &c.id, "approve").await, Guard::ApprovalsComplete);
    assert_not_allowed(fire(&db, &c.id, &s.manager, "schedule").await);
    assert_not_allowed(fire(&db, &c.id, &s.operator, "start").await);
    assert_not_allowed(fire_system(&db, &c.id, "verify").await);
    assert_eq!(state_of(&db, &c.id).await, "awaiting_approval");

    assert_role_required(fire(&db, &c.id, &s.operator, "cancel").await);
    assert_eq!(fire(&db, &c.id, &s.requester, "cancel").await.unwrap().state, "cancelled");
    assert_not_allowed(fire(&db, &c.id, &s.requester, "submit").await);
    assert_not_allowed(fire(&db, &c.id, &s.requester, "cancel").await);
}

#[tokio::test]
async fn a_scheduled_change_starts_only_inside_its_window_and_closes_only_with_a_review() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let peer = approver(&db, "petra", "change-approvers").await;
    let c = request(&db, &s.requester, plan(ChangeKind::Normal, "stop db", vec![stop(&f.vm.id)], hours(2, 4))).await;
    fire(&db, &c.id, &s.requester, "submit").await.unwrap();
    walk(&db, &c.id, &s.manager, &["assess", "request_approval"]).await;
    approve(&db, &c.id, &peer).await.unwrap();
    fire(&db, &c.id, &s.manager, "schedule").await.unwrap();

    assert_guard(fire(&db, &c.id, &s.operator, "start").await, Guard::WindowOpen);
    db.clock().advance(Duration::hours(4));
    assert_guard(fire(&db, &c.id, &s.operator, "start").await, Guard::WindowOpen);
    db.clock().advance(Duration::hours(-1));
    assert_eq!(fire(&db, &c.id, &s.operator, "start").await.unwrap().state, "implementing");

    assert_system_only(fire(&db, &c.id, &s.operator, "verify").await);
    assert_system_only(fire(&db, &c.id, &s.operator, "roll_back").await);
    assert_not_allowed(fire(&db, &c.id, &s.requester, "cancel").await);
    assert_eq!(fire_system(&db, &c.id, "roll_back").await.unwrap().state, "rolled_back");
    assert_guard(fire(&db, &c.id, &s.manager, "close").await, Guard::ReviewRecorded);
    assert_role_required(fire(&db, &c.id, &s.requester, "close").await);
    assert_eq!(close(&db, &c.id, &s.manager, "the stop hung; rolled back").await, "closed");
}

#[tokio::test]
async fn a_standard_change_goes_straight_to_scheduled_without_approval() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let c = request(&db, &s.requester, plan(ChangeKind::Standard, "stop db", vec![stop(&f.vm.id)], hours(-1, 1))).await;
    assert_eq!(c.process, "standard-change");

    assert!(matches!(
        fire(&db, &c.id, &s.requester, "submit").await,
        Err(StoreError::Transition(TransitionError::UnknownEvent { .. }))
    ));
    assert_not_allowed(fire(&db, &c.id, &s.operator, "start").await);
    assert_role_required(fire(&db, &c.id, &s.operator, "schedule").await);
    assert_eq!(fire(&db, &c.id, &s.requester, "schedule").await.unwrap().state, "scheduled");
    assert_role_required(fire(&db, &c.id, &s.requester, "start").await);
    assert_eq!(fire(&db, &c.id, &s.operator, "start").await.unwrap().state, "implementing");
    assert_system_only(fire(&db, &c.id, &s.operator, "fail").await);
    assert_eq!(fire_system(&db, &c.id, "fail").await.unwrap().state, "failed");
    assert_role_required(fire(&db, &c.id, &s.operator, "close").await);
    assert_eq!(close(&db, &c.id, &s.requester, "host refused the stop").await, "closed");
    assert_not_allowed(fire(&db, &c.id, &s.requester, "schedule").await);

    let d = request(&db, &s.requester, plan(ChangeKind::Standard, "later", vec![stop(&f.vm.id)], hours(5, 6))).await;
    assert_eq!(fire(&db, &d.id, &s.manager, "cancel").await.unwrap().state, "cancelled");
}

#[tokio::test]
async fn an_emergency_change_is_approved_by_the_ecab_and_may_start_at_once() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let ecab = approver(&db, "edna", "emergency-cab").await;
    let window = hours(6, 8);
    let c = request(&db, &s.operator, plan(ChangeKind::Emergency, "stop runaway", vec![stop(&f.vm.id)], window)).await;
    assert_eq!(c.process, "emergency-change");

    assert!(matches!(
        fire(&db, &c.id, &s.manager, "schedule").await,
        Err(StoreError::Transition(TransitionError::UnknownEvent { .. }))
    ));
    assert_not_allowed(fire(&db, &c.id, &s.operator, "start").await);
    assert_role_required(fire(&db, &c.id, &s.manager, "submit").await);
    assert_eq!(fire(&db, &c.id, &s.operator, "submit").await.unwrap().state, "awaiting_approval");
    let status = tollgate_workflows::approval::approval_status(&db, &c.id).await.unwrap();
    assert_eq!(status.policy.as_deref(), Some("emergency"));
    assert_eq!(status.stages[0].approvers, ["edna"]);

    assert_system_only(fire(&db, &c.id, &s.manager, "approve").await);
    assert_not_allowed(fire(&db, &c.id, &s.operator, "start").await);
    approve(&db, &c.id, &ecab).await.unwrap();
    assert_eq!(state_of(&db, &c.id).await, "approved");
    assert_role_required(fire(&db, &c.id, &s.requester, "start").await);
    let started = fire(&db, &c.id, &s.operator, "start").await.unwrap();
    assert_eq!(started.state, "implementing", "an approved emergency change does not wait for its window");

    assert_eq!(fire_system(&db, &c.id, "verify").await.unwrap().state, "verifying");
    assert_eq!(fire_system(&db, &c.id, "complete").await.unwrap().state, "completed");
    assert_role_required(fire(&db, &c.id, &s.operator, "close").await);
    assert_eq!(close(&db, &c.id, &s.manager, "runaway stopped").await, "closed");
}

#[tokio::test]
async fn the_timeline_of_a_change_lists_every_record_about_it_oldest_first() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let peer = approver(&db, "petra", "change-approvers").await;
    let c = request(&db, &s.requester, plan(ChangeKind::Normal, "stop db", vec![stop(&f.vm.id)], hours(1, 2))).await;
    fire(&db, &c.id, &s.requester, "submit").await.unwrap();
    walk(&db, &c.id, &s.manager, &["assess", "request_approval"]).await;
    approve(&db, &c.id, &peer).await.unwrap();

    let timeline = change::change_timeline(&db, &c.id, all()).await.unwrap();
    let actions: Vec<&str> = timeline.items.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "change.create",
            "change.submit",
            "change.assess",
            "change.request_approval",
            "approval.vote",
            "change.approve"
        ]
    );
    assert!(timeline.items.windows(2).all(|w| w[0].seq < w[1].seq));
    let actors: Vec<&str> = timeline.items.iter().map(|r| r.actor.as_str()).collect();
    assert_eq!(actors[..5], ["rita", "rita", "manny", "manny", "petra"]);
    let submit = timeline.items[1].after.as_ref().unwrap();
    assert_eq!((&submit["from"], &submit["to"]), (&"draft".into(), &"submitted".into()));

    let first_two = change::change_timeline(&db, &c.id, page(2, 0)).await.unwrap();
    assert_eq!((first_two.total, first_two.items.len()), (6, 2));
    assert_eq!(first_two.items[0].action, "change.create");
    assert_not_found(change::change_timeline(&db, "no-such-change", all()).await);
}

#[tokio::test]
async fn changes_are_listed_by_state_kind_requester_ci_window_and_title() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let spare = create(&db, host("hv-002", &f.cluster.id)).await;
    let a =
        request(&db, &s.requester, plan(ChangeKind::Normal, "Stop billing", vec![stop(&f.vm.id)], hours(5, 6))).await;
    let b =
        request(&db, &s.operator, plan(ChangeKind::Emergency, "Drain spare", vec![evacuate(&spare.id)], hours(1, 2)))
            .await;
    let c = request(&db, &s.requester, plan(ChangeKind::Standard, "Start billing", vec![], hours(1, 2))).await;
    fire(&db, &a.id, &s.requester, "submit").await.unwrap();

    let ids = |q: change::ChangeQuery| {
        let db = &db;
        async move {
            let listed = change::list_changes(db, &q, all()).await.unwrap();
            assert_eq!(listed.total as usize, listed.items.len());
            listed.items.into_iter().map(|c| c.id).collect::<Vec<_>>()
        }
    };
    let q = change::ChangeQuery::default;
    assert_eq!(ids(q()).await, [c.id.as_str(), b.id.as_str(), a.id.as_str()], "by window start, then newest first");
    assert_eq!(ids(change::ChangeQuery { state: Some("submitted".into()), ..q() }).await, [a.id.as_str()]);
    assert_eq!(ids(change::ChangeQuery { kind: Some(ChangeKind::Emergency), ..q() }).await, [b.id.as_str()]);
    assert_eq!(
        ids(change::ChangeQuery { requester: Some("rita".into()), ..q() }).await,
        [c.id.as_str(), a.id.as_str()]
    );
    assert_eq!(ids(change::ChangeQuery { ci_id: Some(spare.id.clone()), ..q() }).await, [b.id.as_str()]);
    assert_eq!(ids(change::ChangeQuery { overlapping: Some(hours(4, 10)), ..q() }).await, [a.id.as_str()]);
    assert_eq!(ids(change::ChangeQuery { q: Some("BILLING".into()), ..q() }).await, [c.id.as_str(), a.id.as_str()]);
    assert!(ids(change::ChangeQuery { state: Some("closed".into()), ..q() }).await.is_empty());
}

#[tokio::test]
async fn a_new_change_reads_back_exactly_as_it_was_returned() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let spec = plan(
        ChangeKind::Normal,
        "provision and stop",
        vec![provision("web-2", &f.host.id, 2, 2048), stop(&f.vm.id)],
        hours(1, 3),
    );

    let created = request(&db, &s.requester, spec).await;

    assert_eq!(change::get_change(&db, &created.id).await.unwrap(), created);
    assert!(created.ci_ids.windows(2).all(|w| w[0] < w[1]), "CIs in order: {:?}", created.ci_ids);
}
