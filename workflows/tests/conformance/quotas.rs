//! Department quotas: a group owning business services may have so much of their VMs, counted when a change
//! asks for more (the CMDB, plus what its other live changes ask for, plus this one).

use crate::change_support::*;
use crate::support::*;
use tollgate_workflows::accounts::{self, GroupSpec, RoleSet};
use tollgate_workflows::change::{self, ChangeKind, Operation};
use tollgate_workflows::error::StoreError;
use tollgate_workflows::quota::{self, Amounts, Limits};
use tollgate_workflows::text::Description;
use tollgate_workflows::Db;

fn into_service(service_id: &str, vm: &str, vcpus: i64) -> Operation {
    Operation::Provision {
        name: vm.to_owned(),
        image: "debian-12".to_owned(),
        vcpus,
        memory_mib: 1024,
        disk_gib: 10,
        service_id: Some(service_id.to_owned()),
        host_id: None,
        container: false,
    }
}

/// A new group `name`, made the department owning `service_id`.
async fn department(db: &Db, name_of: &str, service_id: &str) -> accounts::Group {
    let spec = GroupSpec {
        name: name(name_of),
        description: Description::parse("description", "").unwrap(),
        roles: RoleSet::new([]),
    };
    let dept = accounts::create_group(db, &ctx(), spec).await.unwrap();
    quota::set_department(db, &ctx(), service_id, Some(&dept.id)).await.unwrap();
    dept
}

#[tokio::test]
async fn a_department_s_vms_and_its_open_requests_count_against_its_quota_at_request() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let dept = department(&db, "payments", &f.service.id).await;
    let limits = Limits { max_vms: Some(3), max_vcpus: Some(8), ..Limits::default() };
    let report = quota::set_limits(&db, &ctx(), &dept.id, limits).await.unwrap();
    assert_eq!(report.in_use, Amounts { vms: 1, vcpus: 2, memory_mib: 4096, disk_gib: 40 }, "the fleet's VM");
    assert_eq!(report.services, std::slice::from_ref(&f.service.id));

    let who = ctx_of(&s.requester);
    let ask = |ops: Vec<Operation>| {
        change::create_change(&db, &who, &s.requester, plan(ChangeKind::Normal, "more", ops, hours(1, 2)))
    };
    let two =
        ask(vec![into_service(&f.service.id, "pay-a", 2), into_service(&f.service.id, "pay-b", 2)]).await.unwrap();
    // A draft asks for nothing yet; submitted, its two VMs are counted.
    assert_eq!(quota::report(&db, &dept.id).await.unwrap().requested, Amounts::default());
    fire(&db, &two.id, &s.requester, "submit").await.unwrap();
    assert_eq!(
        quota::report(&db, &dept.id).await.unwrap().requested,
        Amounts { vms: 2, vcpus: 4, memory_mib: 2048, disk_gib: 20 }
    );

    // 1 in use + 2 asked for + 1 = 4 VMs, over 3.
    match ask(vec![stop(&f.vm.id), into_service(&f.service.id, "pay-c", 1)]).await {
        Err(StoreError::Invalid(e)) => {
            assert_eq!(e.field, "operations[1]");
            assert!(
                e.message.contains("payments") && e.message.contains("4 VMs") && e.message.contains("quota of 3"),
                "{e}"
            );
        }
        other => panic!("over the VM quota: {other:?}"),
    }
    // A resize counts what it adds: 2 in use + 4 asked for + 2 more = 8 vCPUs fits; 3 more does not.
    ask(vec![Operation::Resize { vm_id: f.vm.id.clone(), vcpus: 4, memory_mib: 4096 }]).await.unwrap();
    assert_invalid(
        ask(vec![Operation::Resize { vm_id: f.vm.id.clone(), vcpus: 5, memory_mib: 4096 }]).await,
        "operations[0]",
    );
    // Shrinking asks for nothing, whatever the quota.
    ask(vec![Operation::Resize { vm_id: f.vm.id.clone(), vcpus: 1, memory_mib: 2048 }]).await.unwrap();

    // A draft is counted again when it is submitted: asked for within the quota, it no longer fits once
    // another request took the room.
    let draft = ask(vec![Operation::Resize { vm_id: f.vm.id.clone(), vcpus: 4, memory_mib: 4096 }]).await.unwrap();
    let taken = ask(vec![Operation::Resize { vm_id: f.vm.id.clone(), vcpus: 4, memory_mib: 4096 }]).await.unwrap();
    fire(&db, &taken.id, &s.requester, "submit").await.unwrap();
    assert_invalid(fire(&db, &draft.id, &s.requester, "submit").await, "operations[0]");
    assert_eq!(state_of(&db, &draft.id).await, "draft");

    // A service no department owns, and a department without limits, are not counted.
    let other = create(&db, service("internal")).await;
    ask(vec![into_service(&other.id, "tool-1", 64)]).await.unwrap();
    quota::set_limits(&db, &ctx(), &dept.id, Limits::default()).await.unwrap();
    ask(vec![into_service(&f.service.id, "pay-d", 64)]).await.unwrap();
}

#[tokio::test]
async fn quotas_and_departments_refuse_what_does_not_exist_or_cannot_be() {
    let (db, f) = seeded().await;
    assert!(matches!(quota::report(&db, "no-such-group").await, Err(StoreError::NotFound { .. })));
    assert_invalid(quota::set_department(&db, &ctx(), &f.service.id, Some("no-such-group")).await, "group_id");
    assert_invalid(quota::set_department(&db, &ctx(), &f.vm.id, None).await, "id");
    assert!(matches!(quota::set_department(&db, &ctx(), "no-such-ci", None).await, Err(StoreError::NotFound { .. })));
    let spec = GroupSpec {
        name: name("ops"),
        description: Description::parse("description", "").unwrap(),
        roles: RoleSet::new([]),
    };
    let g = accounts::create_group(&db, &ctx(), spec).await.unwrap();
    assert_invalid(
        quota::set_limits(&db, &ctx(), &g.id, Limits { max_vcpus: Some(-1), ..Limits::default() }).await,
        "max_vcpus",
    );
}

#[tokio::test]
async fn requests_submitted_side_by_side_cannot_together_take_a_department_past_its_quota() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let dept = department(&db, "search", &f.service.id).await;
    // The fleet's VM is in use: room for one more.
    quota::set_limits(&db, &ctx(), &dept.id, Limits { max_vms: Some(2), ..Limits::default() }).await.unwrap();
    let who = ctx_of(&s.requester);
    let mut drafts = Vec::new();
    for round in 0..6 {
        let mut pair = Vec::new();
        for side in ["a", "b"] {
            let ops = vec![into_service(&f.service.id, &format!("search-{round}-{side}"), 1)];
            let c = change::create_change(&db, &who, &s.requester, plan(ChangeKind::Normal, "more", ops, hours(1, 2)));
            pair.push(c.await.unwrap().id);
        }
        drafts.push(pair);
    }
    // Each round: two drafts, each fitting alone, submitted at the same moment. One goes live; the other is
    // refused naming the quota and stays a draft. The live one is then cancelled to make room again.
    for pair in drafts {
        let (a, b) =
            tokio::join!(fire(&db, &pair[0], &s.requester, "submit"), fire(&db, &pair[1], &s.requester, "submit"));
        let refused = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Invalid(e)) if e.message.contains("quota of 2")))
            .count();
        assert_eq!((a.is_ok() as u8 + b.is_ok() as u8, refused), (1, 1), "{a:?} / {b:?}");
        let live = if a.is_ok() { &pair[0] } else { &pair[1] };
        let draft = if a.is_ok() { &pair[1] } else { &pair[0] };
        assert_eq!(state_of(&db, draft).await, "draft");
        assert_eq!(quota::report(&db, &dept.id).await.unwrap().requested.vms, 1);
        fire(&db, live, &s.requester, "cancel").await.unwrap();
    }
}
