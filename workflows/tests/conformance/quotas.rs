//! Department quotas: a group owning business services may have so much of their VMs, counted when a change
//! asks for more (the CMDB, plus what its other live changes ask for, plus this one).

use crate::change_support::*;
use crate::support::*;
use tollgate_workflows::accounts::{self, GroupSpec, RoleSet};
use tollgate_workflows::change::{self, ChangeKind, Operation};
use tollgate_workflows::error::StoreError;
use tollgate_workflows::quota::{self, Amounts, Limits};
use tollgate_workflows::text::Description;

fn into_service(service_id: &str, vm: &str, vcpus: i64) -> Operation {
    Operation::Provision {
        name: vm.to_owned(),
        image: "debian-12".to_owned(),
        vcpus,
        memory_mib: 1024,
        disk_gib: 10,
        service_id: Some(service_id.to_owned()),
        host_id: None,
    }
}

#[tokio::test]
async fn a_department_s_vms_and_its_open_requests_count_against_its_quota_at_request() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let spec = GroupSpec {
        name: name("payments"),
        description: Description::parse("description", "").unwrap(),
        roles: RoleSet::new([]),
    };
    let dept = accounts::create_group(&db, &ctx(), spec).await.unwrap();
    quota::set_department(&db, &ctx(), &f.service.id, Some(&dept.id)).await.unwrap();
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
