//! A change's plan: operations checked against the CMDB, the rollback plan derived from them, the risk score
//! and its explanation, and edits that bump the revision.

use crate::change_support::*;
use crate::support::*;
use std::collections::BTreeSet;
use tollgate_workflows::approval;
use tollgate_workflows::change::{self, ChangeKind, Operation, RiskLevel, RollbackStep};

fn level_of(score: u32) -> RiskLevel {
    match score {
        0..30 => RiskLevel::Low,
        30..60 => RiskLevel::Medium,
        _ => RiskLevel::High,
    }
}

#[tokio::test]
async fn the_rollback_plan_undoes_each_operation_last_first_from_what_the_cmdb_holds_now() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let spare = host_of(&db, &f, "hv-002", "medium", 64, 262_144).await;
    let vm = f.vm.id.clone();
    let ops = vec![
        stop(&vm),
        Operation::Resize { vm_id: vm.clone(), vcpus: 8, memory_mib: 16_384 },
        Operation::Migrate { vm_id: vm.clone(), to_host_id: spare.id.clone(), live: true },
        evacuate(&f.host.id),
        provision("batch-1", &spare.id, 2, 2048),
        Operation::Adopt { host_id: f.host.id.clone(), domain: "legacy-web".into() },
        Operation::Start { vm_id: vm.clone() },
    ];
    let c = request(&db, &s.requester, plan(ChangeKind::Normal, "shuffle", ops, hours(1, 2))).await;

    let run = |operation: Operation| RollbackStep::Run { operation };
    assert_eq!(c.rollback.len(), 7);
    assert_eq!(c.rollback[0], run(stop(&vm)), "start is undone by a stop");
    assert_eq!(c.rollback[1], RollbackStep::Release { host_id: f.host.id.clone(), domain: "legacy-web".into() });
    assert_eq!(c.rollback[2], RollbackStep::RemoveProvisioned { name: "batch-1".into() });
    assert!(matches!(&c.rollback[3], RollbackStep::Manual { reason } if reason.contains(&f.host.id)), "evacuate");
    let home = Operation::Migrate { vm_id: vm.clone(), to_host_id: f.host.id.clone(), live: true };
    assert_eq!(c.rollback[4], run(home), "a migration is undone by moving back to the current host");
    let size = Operation::Resize { vm_id: vm.clone(), vcpus: 2, memory_mib: 4096 };
    assert_eq!(c.rollback[5], run(size), "a resize is undone by the size the CMDB has now");
    assert_eq!(c.rollback[6], run(Operation::Start { vm_id: vm.clone() }), "stop is undone by a start");

    let touched: BTreeSet<&str> = c.ci_ids.iter().map(String::as_str).collect();
    assert_eq!(touched, BTreeSet::from([vm.as_str(), f.host.id.as_str(), spare.id.as_str()]));
}

#[tokio::test]
async fn operations_naming_unknown_or_wrong_kind_cis_are_refused_naming_the_operation_and_field() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let try_plan = |ops: Vec<Operation>| plan(ChangeKind::Normal, "bad", ops, hours(1, 2));
    let who = ctx_of(&s.requester);
    let create = |spec| change::create_change(&db, &who, &s.requester, spec);

    assert_invalid(create(try_plan(vec![stop(&f.vm.id), stop("no-such-vm")])).await, "operations[1].vm_id");
    assert_invalid(create(try_plan(vec![stop(&f.host.id)])).await, "operations[0].vm_id");
    let onto_vm = Operation::Migrate { vm_id: f.vm.id.clone(), to_host_id: f.vm.id.clone(), live: false };
    assert_invalid(create(try_plan(vec![onto_vm])).await, "operations[0].to_host_id");
    assert_invalid(create(try_plan(vec![evacuate(&f.service.id)])).await, "operations[0].host_id");
    let Operation::Provision { name, image, vcpus, memory_mib, disk_gib, .. } = provision("x", &f.host.id, 1, 1) else {
        unreachable!()
    };
    let into_host = Operation::Provision {
        name,
        image,
        vcpus,
        memory_mib,
        disk_gib,
        service_id: Some(f.host.id.clone()),
        host_id: None,
        container: false,
    };
    assert_invalid(create(try_plan(vec![into_host])).await, "operations[0].service_id");
    let zero = Operation::Resize { vm_id: f.vm.id.clone(), vcpus: 0, memory_mib: 1024 };
    assert_invalid(create(try_plan(vec![zero])).await, "operations[0].vcpus");
    let mut named = try_plan(vec![]);
    named.ci_ids = vec!["nope".into()];
    assert_invalid(create(named).await, "ci_ids");

    let listed = change::list_changes(&db, &change::ChangeQuery::default(), all()).await.unwrap();
    assert_eq!(listed.total, 0, "a refused plan records nothing");
}

#[tokio::test]
async fn the_risk_score_explains_every_point_and_its_level_follows_the_thresholds() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let critical = host_of(&db, &f, "hv-core", "critical", 64, 262_144).await;
    create(&db, vm("core-1", Some(&critical.id), Some(&f.service.id))).await;

    let small = request(&db, &s.requester, plan(ChangeKind::Standard, "stop", vec![stop(&f.vm.id)], hours(1, 2))).await;
    let medium =
        request(&db, &s.requester, plan(ChangeKind::Normal, "drain", vec![evacuate(&critical.id)], hours(1, 2))).await;
    let high =
        request(&db, &s.operator, plan(ChangeKind::Emergency, "drain", vec![evacuate(&critical.id)], hours(1, 2)))
            .await;

    for c in [&small, &medium, &high] {
        let names: Vec<&str> = c.risk.factors.iter().map(|f| f.factor.as_str()).collect();
        assert_eq!(names, ["blast_radius", "change_kind", "operations", "criticality", "incidents", "history"]);
        assert_eq!(c.risk.score, c.risk.factors.iter().map(|f| f.points).sum::<u32>().min(100));
        assert_eq!(c.risk.level, level_of(c.risk.score), "{:?}", c.risk);
        assert!(c.risk.factors.iter().all(|f| !f.detail.is_empty()));
    }
    assert_eq!(
        (small.risk.level, medium.risk.level, high.risk.level),
        (RiskLevel::Low, RiskLevel::Medium, RiskLevel::High)
    );
    let points = |c: &change::Change, name: &str| c.risk.factors.iter().find(|f| f.factor == name).unwrap().points;
    assert_eq!(points(&medium, "criticality"), 20, "a critical host weighs most");
    assert_eq!(points(&medium, "operations"), 15);
    assert_eq!(
        (points(&small, "change_kind"), points(&medium, "change_kind"), points(&high, "change_kind")),
        (0, 10, 20)
    );
    assert!(points(&medium, "blast_radius") > 0, "the VM and its service fail with the host");
}

#[tokio::test]
async fn an_edit_bumps_the_revision_and_a_stale_or_kind_changing_edit_is_refused() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let c = request(&db, &s.requester, plan(ChangeKind::Normal, "stop", vec![stop(&f.vm.id)], hours(1, 2))).await;

    let edited = plan(ChangeKind::Normal, "stop later", vec![stop(&f.vm.id)], hours(3, 4));
    let after = change::update_change(&db, &ctx_of(&s.requester), &c.id, edited.clone(), Some(1)).await.unwrap();
    assert_eq!((after.revision, after.state.as_str(), after.title.as_str()), (2, "draft", "stop later"));
    assert_eq!(after.window_start, hours(3, 4).start);

    assert_conflict(change::update_change(&db, &ctx_of(&s.requester), &c.id, edited.clone(), Some(1)).await);
    let other_kind = plan(ChangeKind::Emergency, "stop", vec![stop(&f.vm.id)], hours(1, 2));
    assert_invalid(change::update_change(&db, &ctx_of(&s.requester), &c.id, other_kind, None).await, "kind");
    let broken = plan(ChangeKind::Normal, "stop", vec![stop("gone")], hours(1, 2));
    assert_invalid(change::update_change(&db, &ctx_of(&s.requester), &c.id, broken, None).await, "operations[0].vm_id");
    assert_eq!(change::get_change(&db, &c.id).await.unwrap().revision, 2, "refused edits change nothing");
    let actions: Vec<String> = audit_of(&db, "change", &c.id).await.into_iter().map(|r| r.action).collect();
    assert_eq!(actions, ["change.update", "change.create"]);
}

#[tokio::test]
async fn an_edit_of_an_approved_or_scheduled_change_returns_it_to_awaiting_approval_and_voids_its_votes() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let peer = approver(&db, "petra", "change-approvers").await;
    let c = request(&db, &s.requester, plan(ChangeKind::Normal, "stop", vec![stop(&f.vm.id)], hours(1, 2))).await;
    fire(&db, &c.id, &s.requester, "submit").await.unwrap();
    walk(&db, &c.id, &s.manager, &["assess", "request_approval"]).await;
    assert_eq!(approve(&db, &c.id, &peer).await.unwrap().votes.len(), 1);

    let edit = |from_h| plan(ChangeKind::Normal, "stop", vec![stop(&f.vm.id)], hours(from_h, from_h + 1));
    let after = change::update_change(&db, &ctx_of(&s.requester), &c.id, edit(2), None).await.unwrap();
    assert_eq!((after.state.as_str(), after.revision), ("awaiting_approval", 2));
    let status = approval::approval_status(&db, &c.id).await.unwrap();
    assert_eq!((status.revision, status.complete), (2, false));
    assert!(status.votes.is_empty(), "votes on revision 1 do not count for revision 2: {status:?}");
    assert_eq!((status.stages[0].status.as_str(), status.stages[0].approvals), ("open", 0));

    approve(&db, &c.id, &peer).await.expect("the same approver votes again on the new revision");
    assert_eq!(fire(&db, &c.id, &s.manager, "schedule").await.unwrap().state, "scheduled");
    let after = change::update_change(&db, &ctx_of(&s.manager), &c.id, edit(3), Some(2)).await.unwrap();
    assert_eq!((after.state.as_str(), after.revision), ("awaiting_approval", 3));
    assert!(approval::approval_status(&db, &c.id).await.unwrap().votes.is_empty());
}

#[tokio::test]
async fn a_change_cannot_be_edited_once_it_is_implementing_or_withdrawn() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let spec = plan(ChangeKind::Standard, "stop", vec![stop(&f.vm.id)], hours(-1, 1));
    let running = request(&db, &s.requester, spec.clone()).await;
    fire(&db, &running.id, &s.requester, "schedule").await.unwrap();
    fire(&db, &running.id, &s.operator, "start").await.unwrap();
    assert_conflict(change::update_change(&db, &ctx_of(&s.requester), &running.id, spec.clone(), None).await);

    let withdrawn = request(&db, &s.requester, spec.clone()).await;
    fire(&db, &withdrawn.id, &s.requester, "cancel").await.unwrap();
    assert_conflict(change::update_change(&db, &ctx_of(&s.requester), &withdrawn.id, spec, None).await);
    assert_not_found(change::get_change(&db, "no-such-change").await);
}
