//! What stands in a change's way: freeze windows over its CIs, and other live changes working on related CIs
//! at the same time or filling the same host, until a change manager overrides them for one revision.

use crate::change_support::*;
use crate::support::*;
use tollgate_workflows::accounts::Principal;
use tollgate_workflows::change::{self, Change, ChangeKind, ChangeSpec};
use tollgate_workflows::freeze::{self, FreezeSpec, Window};
use tollgate_workflows::process::Guard;
use tollgate_workflows::text::Description;
use tollgate_workflows::Db;

async fn freeze_over(db: &Db, scope_ci_id: &str, window: Window) {
    let spec = FreezeSpec {
        name: name("year end"),
        description: Description::parse("description", "").unwrap(),
        scope_ci_id: scope_ci_id.to_owned(),
        window,
    };
    freeze::create_freeze(db, &ctx(), spec).await.unwrap();
}

fn reason(text: &str) -> Description {
    Description::parse("reason", text).unwrap()
}

/// A normal change taken through submission, assessment and a low-risk approval by `peer`.
async fn approved(db: &Db, s: &Staff, peer: &Principal, spec: ChangeSpec) -> Change {
    let c = to_approval(db, s, spec).await;
    approve(db, &c.id, peer).await.unwrap();
    change::get_change(db, &c.id).await.unwrap()
}

#[tokio::test]
async fn a_freeze_stops_a_normal_change_from_being_scheduled_but_not_an_emergency_change_from_starting() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let peer = approver(&db, "petra", "change-approvers").await;
    let ecab = approver(&db, "edna", "emergency-cab").await;
    freeze_over(&db, &f.region.id, hours(-24, 48)).await;

    let normal = approved(&db, &s, &peer, plan(ChangeKind::Normal, "stop", vec![stop(&f.vm.id)], hours(-1, 2))).await;
    assert_eq!(normal.state, "approved", "a freeze does not stop approval");
    assert_guard(fire(&db, &normal.id, &s.manager, "schedule").await, Guard::NotFrozen);
    assert_eq!(state_of(&db, &normal.id).await, "approved");

    let spec = plan(ChangeKind::Emergency, "stop runaway", vec![stop(&f.vm.id)], hours(-1, 2));
    let urgent = request(&db, &s.operator, spec).await;
    fire(&db, &urgent.id, &s.operator, "submit").await.unwrap();
    approve(&db, &urgent.id, &ecab).await.unwrap();
    assert_eq!(state_of(&db, &urgent.id).await, "approved");
    assert_eq!(fire(&db, &urgent.id, &s.operator, "start").await.unwrap().state, "implementing");
}

#[tokio::test]
async fn a_freeze_declared_after_scheduling_still_stops_the_start_and_a_freeze_elsewhere_does_not() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let elsewhere = create(&db, region("ap-east")).await;
    freeze_over(&db, &elsewhere.id, hours(-24, 48)).await;
    freeze_over(&db, &f.region.id, hours(10, 20)).await;

    let c = request(&db, &s.requester, plan(ChangeKind::Standard, "stop", vec![stop(&f.vm.id)], hours(-1, 2))).await;
    assert_eq!(fire(&db, &c.id, &s.requester, "schedule").await.unwrap().state, "scheduled");
    freeze_over(&db, &f.service.id, hours(1, 3)).await;
    assert_guard(fire(&db, &c.id, &s.operator, "start").await, Guard::NotFrozen);

    let late = plan(ChangeKind::Standard, "stop", vec![stop(&f.vm.id)], hours(12, 13));
    let d = request(&db, &s.requester, late).await;
    assert_guard(fire(&db, &d.id, &s.requester, "schedule").await, Guard::NotFrozen);
}

#[tokio::test]
async fn changes_on_a_host_and_one_of_its_vms_in_overlapping_windows_conflict_until_overridden() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let peer = approver(&db, "petra", "change-approvers").await;
    let mut host_spec = plan(ChangeKind::Normal, "patch host", vec![], hours(0, 4));
    host_spec.ci_ids = vec![f.host.id.clone()];
    let on_host = request(&db, &s.requester, host_spec).await;
    assert!(change::conflicts_of(&db, &on_host.id).await.unwrap().is_empty());
    fire(&db, &on_host.id, &s.requester, "submit").await.unwrap();

    let on_vm = approved(&db, &s, &peer, plan(ChangeKind::Normal, "stop", vec![stop(&f.vm.id)], hours(2, 6))).await;
    let conflicts = change::conflicts_of(&db, &on_vm.id).await.unwrap();
    assert_eq!(conflicts.len(), 1, "{conflicts:?}");
    let host_ref = change::get_change(&db, &on_host.id).await.unwrap().reference;
    assert_eq!((conflicts[0].kind.as_str(), conflicts[0].change_id.as_str()), ("window", on_host.id.as_str()));
    assert_eq!((conflicts[0].reference.as_str(), conflicts[0].ci_id.as_str()), (host_ref.as_str(), f.host.id.as_str()));
    let back = change::conflicts_of(&db, &on_host.id).await.unwrap();
    assert_eq!(back.iter().map(|c| c.change_id.as_str()).collect::<Vec<_>>(), [on_vm.id.as_str()], "both ways");

    assert_guard(fire(&db, &on_vm.id, &s.manager, "schedule").await, Guard::NoUnresolvedConflict);
    assert_invalid(change::override_conflicts(&db, &ctx_of(&s.manager), &on_vm.id, reason("  ")).await, "reason");
    let overridden = change::override_conflicts(&db, &ctx_of(&s.manager), &on_vm.id, reason("host patch is read-only"))
        .await
        .unwrap();
    let o = overridden.conflict_override.as_ref().unwrap();
    assert_eq!((o.by.as_str(), o.revision, o.reason.as_str()), ("manny", 1, "host patch is read-only"));
    assert_eq!(fire(&db, &on_vm.id, &s.manager, "schedule").await.unwrap().state, "scheduled");
    let actions: Vec<String> = audit_of(&db, "change", &on_vm.id).await.into_iter().map(|r| r.action).collect();
    assert_eq!(actions[..2], ["change.schedule", "change.override_conflicts"]);
}

#[tokio::test]
async fn an_edit_voids_a_conflict_override() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let peer = approver(&db, "petra", "change-approvers").await;
    let other =
        request(&db, &s.requester, plan(ChangeKind::Normal, "evacuate", vec![evacuate(&f.host.id)], hours(0, 4))).await;
    fire(&db, &other.id, &s.requester, "submit").await.unwrap();
    let spec = plan(ChangeKind::Normal, "stop", vec![stop(&f.vm.id)], hours(1, 2));
    let c = approved(&db, &s, &peer, spec.clone()).await;
    change::override_conflicts(&db, &ctx_of(&s.manager), &c.id, reason("agreed with the host team")).await.unwrap();

    let edited = change::update_change(&db, &ctx_of(&s.requester), &c.id, spec, None).await.unwrap();
    assert_eq!((edited.revision, edited.conflict_override.as_ref().unwrap().revision), (2, 1));
    approve(&db, &c.id, &peer).await.unwrap();
    assert_guard(fire(&db, &c.id, &s.manager, "schedule").await, Guard::NoUnresolvedConflict);
    change::override_conflicts(&db, &ctx_of(&s.manager), &c.id, reason("still agreed")).await.unwrap();
    assert_eq!(fire(&db, &c.id, &s.manager, "schedule").await.unwrap().state, "scheduled");
}

#[tokio::test]
async fn changes_in_separate_windows_drafts_and_withdrawn_changes_do_not_conflict() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let c = request(&db, &s.requester, plan(ChangeKind::Normal, "stop", vec![stop(&f.vm.id)], hours(2, 4))).await;
    let draft =
        request(&db, &s.requester, plan(ChangeKind::Normal, "drain", vec![evacuate(&f.host.id)], hours(0, 3))).await;
    assert!(change::conflicts_of(&db, &c.id).await.unwrap().is_empty(), "a draft books no window");

    let before =
        request(&db, &s.requester, plan(ChangeKind::Normal, "drain", vec![evacuate(&f.host.id)], hours(0, 2))).await;
    fire(&db, &before.id, &s.requester, "submit").await.unwrap();
    assert!(change::conflicts_of(&db, &c.id).await.unwrap().is_empty(), "windows that only touch do not overlap");

    fire(&db, &draft.id, &s.requester, "submit").await.unwrap();
    assert_eq!(change::conflicts_of(&db, &c.id).await.unwrap().len(), 1);
    fire(&db, &draft.id, &s.requester, "cancel").await.unwrap();
    assert!(change::conflicts_of(&db, &c.id).await.unwrap().is_empty(), "a withdrawn change books no window");
}

#[tokio::test]
async fn two_provisions_pinned_to_one_small_host_in_overlapping_windows_conflict_on_capacity() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let small = host_of(&db, &f, "hv-small", "low", 4, 8192).await;
    let first = plan(ChangeKind::Normal, "web-1", vec![provision("web-1", &small.id, 3, 4096)], hours(0, 4));
    let first = request(&db, &s.requester, first).await;
    fire(&db, &first.id, &s.requester, "submit").await.unwrap();

    let fits = plan(ChangeKind::Normal, "tiny", vec![provision("tiny", &small.id, 1, 1024)], hours(1, 2));
    let fits = request(&db, &s.requester, fits).await;
    let kinds = |cs: Vec<change::Conflict>| cs.into_iter().map(|c| c.kind).collect::<Vec<_>>();
    assert_eq!(kinds(change::conflicts_of(&db, &fits.id).await.unwrap()), ["window"], "3+1 of 4 vCPUs fits");

    let second = plan(ChangeKind::Normal, "web-2", vec![provision("web-2", &small.id, 3, 4096)], hours(1, 2));
    let second = request(&db, &s.requester, second).await;
    let conflicts = change::conflicts_of(&db, &second.id).await.unwrap();
    assert_eq!(kinds(conflicts.clone()), ["window", "capacity"]);
    let capacity = &conflicts[1];
    assert_eq!((capacity.change_id.as_str(), capacity.ci_id.as_str()), (first.id.as_str(), small.id.as_str()));
    assert!(capacity.detail.contains("6 of 4 vCPUs"), "{}", capacity.detail);
}

#[tokio::test]
async fn an_edit_that_moves_a_scheduled_standard_change_into_a_conflict_is_refused() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let normal =
        request(&db, &s.requester, plan(ChangeKind::Normal, "drain", vec![evacuate(&f.host.id)], hours(10, 12))).await;
    fire(&db, &normal.id, &s.requester, "submit").await.unwrap();
    let standard =
        request(&db, &s.requester, plan(ChangeKind::Standard, "stop", vec![stop(&f.vm.id)], hours(1, 2))).await;
    fire(&db, &standard.id, &s.manager, "schedule").await.unwrap();

    let moved = plan(ChangeKind::Standard, "stop", vec![stop(&f.vm.id)], hours(10, 11));
    assert_conflict(change::update_change(&db, &ctx_of(&s.manager), &standard.id, moved, None).await);
    assert_eq!(change::get_change(&db, &standard.id).await.unwrap().revision, 1, "the refused edit changed nothing");
}

#[tokio::test]
async fn an_edit_moves_a_live_change_s_booking_to_its_new_cis_and_a_completed_change_frees_it() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let peer = approver(&db, "petra", "change-approvers").await;
    let elsewhere = host_of(&db, &f, "hv-other", "low", 8, 16_384).await;
    let c = request(&db, &s.requester, plan(ChangeKind::Normal, "stop", vec![stop(&f.vm.id)], hours(1, 3))).await;
    // Manual work (no operations for the control plane), so the operator reports its outcome.
    let manual = |title: &str, ci: &str| {
        let mut spec = plan(ChangeKind::Normal, title, vec![], hours(0, 2));
        spec.ci_ids = vec![ci.to_owned()];
        spec
    };
    let on_vm = manual("patch the VM", &f.vm.id);
    let busy = to_approval(&db, &s, on_vm.clone()).await;
    let count = || async { change::conflicts_of(&db, &c.id).await.unwrap().len() };
    assert_eq!(count().await, 1);

    let moved = manual("patch the other host", &elsewhere.id);
    change::update_change(&db, &ctx_of(&s.requester), &busy.id, moved, None).await.unwrap();
    assert_eq!(count().await, 0, "the edited change works elsewhere now");
    change::update_change(&db, &ctx_of(&s.requester), &busy.id, on_vm, None).await.unwrap();
    assert_eq!(count().await, 1, "and back on the VM");

    approve(&db, &busy.id, &peer).await.unwrap();
    walk(&db, &busy.id, &s.manager, &["schedule"]).await;
    let done = walk(&db, &busy.id, &s.operator, &["start", "report_done"]).await;
    assert_eq!(done.state, "completed");
    assert_eq!(count().await, 0, "a completed change books no window");
}
