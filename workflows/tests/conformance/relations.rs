//! Relations: typed edges between items, listed by either end or by kind.

use crate::support::*;
use tollgate_workflows::cmdb::{self, Relation, RelationKind, RelationQuery};
use tollgate_workflows::Db;

async fn relate(db: &Db, kind: RelationKind, source: &str, target: &str) -> Relation {
    cmdb::create_relation(db, &ctx(), kind, source, target).await.expect("relation is created")
}

async fn ids(db: &Db, q: RelationQuery) -> Vec<String> {
    let mut ids: Vec<String> =
        cmdb::list_relations(db, &q, all()).await.unwrap().items.into_iter().map(|r| r.id).collect();
    ids.sort();
    ids
}

fn sorted(relations: &[&Relation]) -> Vec<String> {
    let mut ids: Vec<String> = relations.iter().map(|r| r.id.clone()).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_relation_is_stored_as_created() {
    let db = fresh_db().await;
    let web = create(&db, service("web")).await;
    let db_svc = create(&db, service("database")).await;

    let created = relate(&db, RelationKind::DependsOn, &web.id, &db_svc.id).await;

    assert_eq!(created.kind, RelationKind::DependsOn);
    assert_eq!(created.source_id, web.id);
    assert_eq!(created.target_id, db_svc.id);
    assert_eq!(created.created_at, START);
    assert_eq!(cmdb::get_relation(&db, &created.id).await.unwrap(), created);
}

#[tokio::test]
async fn relations_are_listed_by_either_end_and_by_kind() {
    let db = fresh_db().await;
    let f = fleet(&db).await;
    let web = create(&db, service("web")).await;
    let dns = create(&db, service("dns")).await;
    let web_on_billing = relate(&db, RelationKind::DependsOn, &web.id, &f.service.id).await;
    let billing_on_dns = relate(&db, RelationKind::DependsOn, &f.service.id, &dns.id).await;
    let vm_in_web = relate(&db, RelationKind::MemberOf, &f.vm.id, &web.id).await;
    relate(&db, RelationKind::RunsOn, &f.vm.id, &f.host.id).await;

    let touching_billing = RelationQuery { ci_id: Some(f.service.id.clone()), kind: None };
    assert_eq!(ids(&db, touching_billing).await, sorted(&[&web_on_billing, &billing_on_dns]));
    let touching_web = RelationQuery { ci_id: Some(web.id.clone()), kind: None };
    assert_eq!(ids(&db, touching_web).await, sorted(&[&web_on_billing, &vm_in_web]));
    let dependencies = RelationQuery { ci_id: None, kind: Some(RelationKind::DependsOn) };
    assert_eq!(ids(&db, dependencies).await, sorted(&[&web_on_billing, &billing_on_dns]));
    let vm_memberships = RelationQuery { ci_id: Some(f.vm.id.clone()), kind: Some(RelationKind::MemberOf) };
    assert_eq!(ids(&db, vm_memberships).await, sorted(&[&vm_in_web]));
    let everything = cmdb::list_relations(&db, &RelationQuery::default(), page(3, 0)).await.unwrap();
    assert_eq!((everything.items.len(), everything.total), (3, 4));
    let nothing = RelationQuery { ci_id: Some(f.region.id.clone()), kind: None };
    assert!(ids(&db, nothing).await.is_empty());
}

#[tokio::test]
async fn a_deleted_relation_is_gone_and_its_items_stay() {
    let db = fresh_db().await;
    let web = create(&db, service("web")).await;
    let dns = create(&db, service("dns")).await;
    let rel = relate(&db, RelationKind::DependsOn, &web.id, &dns.id).await;

    cmdb::delete_relation(&db, &ctx(), &rel.id).await.unwrap();

    assert_not_found(cmdb::get_relation(&db, &rel.id).await);
    assert_not_found(cmdb::delete_relation(&db, &ctx(), &rel.id).await);
    assert!(ids(&db, RelationQuery::default()).await.is_empty());
    assert!(cmdb::get_ci(&db, &web.id).await.is_ok());
    assert!(cmdb::get_ci(&db, &dns.id).await.is_ok());
    relate(&db, RelationKind::DependsOn, &web.id, &dns.id).await;
}

#[tokio::test]
async fn an_item_cannot_relate_to_itself() {
    let db = fresh_db().await;
    let web = create(&db, service("web")).await;

    let result = cmdb::create_relation(&db, &ctx(), RelationKind::DependsOn, &web.id, &web.id).await;

    assert_invalid(result, "target_id");
    assert!(ids(&db, RelationQuery::default()).await.is_empty());
}

#[tokio::test]
async fn the_same_relation_cannot_be_made_twice() {
    let db = fresh_db().await;
    let web = create(&db, service("web")).await;
    let dns = create(&db, service("dns")).await;
    relate(&db, RelationKind::DependsOn, &web.id, &dns.id).await;

    let twice = cmdb::create_relation(&db, &ctx(), RelationKind::DependsOn, &web.id, &dns.id).await;
    assert_conflict(twice);

    relate(&db, RelationKind::MemberOf, &web.id, &dns.id).await;
    relate(&db, RelationKind::DependsOn, &dns.id, &web.id).await;
    assert_eq!(ids(&db, RelationQuery::default()).await.len(), 3);
}

#[tokio::test]
async fn a_relation_to_an_unknown_item_is_refused_naming_the_end() {
    let db = fresh_db().await;
    let web = create(&db, service("web")).await;

    let unknown_source = cmdb::create_relation(&db, &ctx(), RelationKind::DependsOn, "nope", &web.id).await;
    assert_invalid(unknown_source, "source_id");
    let unknown_target = cmdb::create_relation(&db, &ctx(), RelationKind::DependsOn, &web.id, "nope").await;
    assert_invalid(unknown_target, "target_id");
    assert!(ids(&db, RelationQuery::default()).await.is_empty());
}
