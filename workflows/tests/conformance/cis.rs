//! Configuration items: containment rules, unique names, revisions and deletion.

use crate::support::*;
use time::Duration;
use tollgate_workflows::cmdb::{self, Ci, CiKind, CiQuery, RelationKind, RelationQuery};
use tollgate_workflows::text::Page;
use tollgate_workflows::Db;

async fn find(db: &Db, q: CiQuery) -> Page<Ci> {
    cmdb::list_cis(db, &q, all()).await.unwrap()
}

#[tokio::test]
async fn a_fleet_is_built_from_region_down_to_vm_and_its_service() {
    let db = fresh_db().await;
    let f = fleet(&db).await;

    let stored = cmdb::get_ci(&db, &f.vm.id).await.unwrap();
    assert_eq!(stored, f.vm);
    assert_eq!(stored.kind, CiKind::Vm);
    assert_eq!(stored.parent_id.as_deref(), Some(f.host.id.as_str()));
    assert_eq!(stored.service_id.as_deref(), Some(f.service.id.as_str()));
    assert_eq!(stored.state, "planned");
    assert_eq!((stored.vcpus, stored.memory_mib, stored.disk_gib), (Some(2), Some(4096), Some(40)));
    assert_eq!((stored.revision, stored.created_at, stored.updated_at), (1, START, START));
    assert_eq!(f.host.parent_id.as_deref(), Some(f.cluster.id.as_str()));
    assert_eq!(f.cluster.parent_id.as_deref(), Some(f.datacenter.id.as_str()));
    assert_eq!(f.datacenter.parent_id.as_deref(), Some(f.region.id.as_str()));
    assert_eq!(f.region.parent_id, None);
    assert_eq!(f.host.state, "active");
    assert_eq!(find(&db, CiQuery::default()).await.total, 6);
    let unplaced = create(&db, vm("planned-vm", None, None)).await;
    assert_eq!(unplaced.parent_id, None);
}

#[tokio::test]
async fn a_parent_of_the_wrong_kind_is_refused_naming_parent_id() {
    let db = fresh_db().await;
    let f = fleet(&db).await;

    assert_invalid(cmdb::create_ci(&db, &ctx(), host("hv-x", &f.datacenter.id)).await, "parent_id");
    assert_invalid(cmdb::create_ci(&db, &ctx(), cluster("cl-x", &f.region.id)).await, "parent_id");
    assert_invalid(cmdb::create_ci(&db, &ctx(), vm("vm-x", Some(&f.cluster.id), None)).await, "parent_id");
    let owned_by_host = vm("vm-y", Some(&f.host.id), Some(&f.host.id));
    assert_invalid(cmdb::create_ci(&db, &ctx(), owned_by_host).await, "service_id");
    assert_eq!(find(&db, CiQuery::default()).await.total, 6, "nothing was created");
}

#[tokio::test]
async fn a_parent_that_does_not_exist_is_refused() {
    let db = fresh_db().await;

    assert_invalid(cmdb::create_ci(&db, &ctx(), datacenter("dc-x", "no-such-region")).await, "parent_id");
    let orphan = vm("vm-x", None, Some("no-such-service"));
    assert_invalid(cmdb::create_ci(&db, &ctx(), orphan).await, "service_id");
    assert_eq!(find(&db, CiQuery::default()).await.total, 0);
}

#[tokio::test]
async fn two_items_of_one_kind_cannot_share_a_name() {
    let db = fresh_db().await;
    create(&db, region("eu-west")).await;
    let other = create(&db, region("us-east")).await;

    assert_conflict(cmdb::create_ci(&db, &ctx(), region("eu-west")).await);
    create(&db, service("eu-west")).await;
    let renamed = cmdb::update_ci(&db, &ctx(), &other.id, region("eu-west"), None).await;
    assert_conflict(renamed);
    assert_eq!(cmdb::get_ci(&db, &other.id).await.unwrap().name, "us-east");
}

#[tokio::test]
async fn an_update_bumps_the_revision_and_a_stale_revision_is_refused() {
    let db = fresh_db().await;
    let f = fleet(&db).await;
    db.clock().advance(Duration::minutes(10));
    let mut edit = host("hv-001", &f.cluster.id);
    edit.state = "maintenance";

    let updated = cmdb::update_ci(&db, &ctx(), &f.host.id, edit.clone(), Some(1)).await.unwrap();
    assert_eq!(updated.revision, 2);
    assert_eq!(updated.state, "maintenance");
    assert_eq!(updated.created_at, START);
    assert_eq!(updated.updated_at, START + Duration::minutes(10));

    let stale = cmdb::update_ci(&db, &ctx(), &f.host.id, host("hv-renamed", &f.cluster.id), Some(1)).await;
    assert_conflict(stale);
    assert_eq!(cmdb::get_ci(&db, &f.host.id).await.unwrap(), updated, "a refused edit changes nothing");

    let blind = cmdb::update_ci(&db, &ctx(), &f.host.id, edit, None).await.unwrap();
    assert_eq!(blind.revision, 3);
    assert_not_found(cmdb::update_ci(&db, &ctx(), "no-such-ci", region("x"), None).await);
}

#[tokio::test]
async fn the_kind_of_an_item_cannot_change() {
    let db = fresh_db().await;
    let eu = create(&db, region("eu-west")).await;

    assert_invalid(cmdb::update_ci(&db, &ctx(), &eu.id, service("eu-west"), Some(1)).await, "kind");
    assert_eq!(cmdb::get_ci(&db, &eu.id).await.unwrap(), eu);
}

#[tokio::test]
async fn an_item_that_still_contains_or_owns_others_cannot_be_deleted() {
    let db = fresh_db().await;
    let f = fleet(&db).await;

    assert_conflict(cmdb::delete_ci(&db, &ctx(), &f.cluster.id).await);
    assert_conflict(cmdb::delete_ci(&db, &ctx(), &f.host.id).await);
    assert_conflict(cmdb::delete_ci(&db, &ctx(), &f.service.id).await);
    assert_eq!(find(&db, CiQuery::default()).await.total, 6);
    assert_not_found(cmdb::delete_ci(&db, &ctx(), "no-such-ci").await);
}

#[tokio::test]
async fn deleting_a_leaf_takes_its_relations_with_it() {
    let db = fresh_db().await;
    let f = fleet(&db).await;
    let web = create(&db, service("web")).await;
    let to_web = cmdb::create_relation(&db, &ctx(), RelationKind::MemberOf, &f.vm.id, &web.id).await.unwrap();
    let from_web = cmdb::create_relation(&db, &ctx(), RelationKind::DependsOn, &web.id, &f.vm.id).await.unwrap();
    let kept = cmdb::create_relation(&db, &ctx(), RelationKind::DependsOn, &web.id, &f.service.id).await.unwrap();

    cmdb::delete_ci(&db, &ctx(), &f.vm.id).await.unwrap();

    assert_not_found(cmdb::get_ci(&db, &f.vm.id).await);
    assert_not_found(cmdb::get_relation(&db, &to_web.id).await);
    assert_not_found(cmdb::get_relation(&db, &from_web.id).await);
    let left = cmdb::list_relations(&db, &RelationQuery::default(), all()).await.unwrap();
    assert_eq!(left.items, vec![kept]);
    cmdb::delete_ci(&db, &ctx(), &f.host.id).await.expect("the emptied host can go too");
}
