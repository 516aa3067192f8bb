//! Freeze windows: what they cover, and that they stay put while they cover something.

use crate::support::*;
use time::Duration;
use tollgate_workflows::cmdb;
use tollgate_workflows::freeze::{self, FreezeQuery, FreezeSpec, Window};
use tollgate_workflows::text::Description;

fn window(from_h: i64, to_h: i64) -> Window {
    Window::new(START + Duration::hours(from_h), START + Duration::hours(to_h)).unwrap()
}

fn spec(name_: &str, scope: &str, w: Window) -> FreezeSpec {
    FreezeSpec {
        name: name(name_),
        description: Description::parse("description", "").unwrap(),
        scope_ci_id: scope.to_owned(),
        window: w,
    }
}

#[tokio::test]
async fn a_region_freeze_covers_every_vm_inside_it_while_it_lasts() {
    let db = fresh_db().await;
    let f = fleet(&db).await;
    let other_region = create(&db, region("ap-east")).await;
    let year_end = freeze::create_freeze(&db, &ctx(), spec("year end", &f.region.id, window(24, 48))).await.unwrap();

    let vm = vec![f.vm.id.clone()];
    let covering = freeze::check_frozen(&db, &vm, window(30, 31)).await.unwrap();
    assert_eq!(covering.iter().map(|w| w.id.as_str()).collect::<Vec<_>>(), [year_end.id.as_str()]);
    assert!(freeze::check_frozen(&db, &vm, window(47, 50)).await.unwrap().len() == 1, "overlapping the end counts");
    assert!(freeze::check_frozen(&db, &vm, window(48, 50)).await.unwrap().is_empty(), "the end is exclusive");
    assert!(freeze::check_frozen(&db, &vm, window(0, 24)).await.unwrap().is_empty(), "the start is exclusive too");
    assert!(freeze::check_frozen(&db, std::slice::from_ref(&other_region.id), window(30, 31))
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_service_freeze_covers_its_vms() {
    let db = fresh_db().await;
    let f = fleet(&db).await;
    freeze::create_freeze(&db, &ctx(), spec("billing run", &f.service.id, window(0, 10))).await.unwrap();
    assert_eq!(freeze::check_frozen(&db, std::slice::from_ref(&f.vm.id), window(1, 2)).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_freeze_needs_a_region_datacenter_cluster_or_service_and_a_real_window() {
    let db = fresh_db().await;
    let f = fleet(&db).await;
    assert_invalid(freeze::create_freeze(&db, &ctx(), spec("x", &f.host.id, window(0, 1))).await, "scope_ci_id");
    assert_invalid(freeze::create_freeze(&db, &ctx(), spec("x", "nope", window(0, 1))).await, "scope_ci_id");
    assert_eq!(Window::new(START, START).unwrap_err().field, "ends_at");
    assert_eq!(Window::new(START, START + Duration::days(400)).unwrap_err().field, "ends_at");
}

#[tokio::test]
async fn freezes_are_listed_by_scope_and_overlap_edited_by_revision_and_deleted() {
    let db = fresh_db().await;
    let f = fleet(&db).await;
    let a = freeze::create_freeze(&db, &ctx(), spec("a", &f.region.id, window(0, 10))).await.unwrap();
    let b = freeze::create_freeze(&db, &ctx(), spec("b", &f.cluster.id, window(20, 30))).await.unwrap();

    let q = FreezeQuery { overlapping: Some(window(5, 25)), ..FreezeQuery::default() };
    assert_eq!(freeze::list_freezes(&db, &q, all()).await.unwrap().total, 2);
    let q = FreezeQuery { scope_ci_id: Some(f.cluster.id.clone()), ..FreezeQuery::default() };
    assert_eq!(freeze::list_freezes(&db, &q, all()).await.unwrap().items[0].id, b.id);

    let moved =
        freeze::update_freeze(&db, &ctx(), &a.id, spec("a", &f.region.id, window(1, 11)), Some(1)).await.unwrap();
    assert_eq!(moved.revision, 2);
    assert_conflict(freeze::update_freeze(&db, &ctx(), &a.id, spec("a", &f.region.id, window(1, 11)), Some(1)).await);

    let idle = create(&db, service("idle")).await;
    freeze::create_freeze(&db, &ctx(), spec("hold", &idle.id, window(0, 1))).await.unwrap();
    assert_conflict(cmdb::delete_ci(&db, &ctx(), &idle.id).await);
    freeze::delete_freeze(&db, &ctx(), &b.id).await.unwrap();
    assert_not_found(freeze::get_freeze(&db, &b.id).await);
    let actions: Vec<String> = audit_of(&db, "freeze_window", &a.id).await.into_iter().map(|r| r.action).collect();
    assert_eq!(actions, ["freeze.update", "freeze.create"]);
}

#[tokio::test]
async fn a_service_freeze_covers_the_hosts_its_vms_run_on() {
    let db = fresh_db().await;
    let f = fleet(&db).await;
    freeze::create_freeze(&db, &ctx(), spec("billing run", &f.service.id, window(0, 10))).await.unwrap();
    let on_host = freeze::check_frozen(&db, std::slice::from_ref(&f.host.id), window(1, 2)).await.unwrap();
    assert_eq!(on_host.len(), 1, "evacuating the host would move the frozen service's VMs");
}

#[tokio::test]
async fn work_on_a_container_is_covered_by_a_freeze_on_anything_inside_it() {
    let db = fresh_db().await;
    let f = fleet(&db).await;
    freeze::create_freeze(&db, &ctx(), spec("cluster hold", &f.cluster.id, window(0, 10))).await.unwrap();
    assert_eq!(freeze::check_frozen(&db, std::slice::from_ref(&f.region.id), window(1, 2)).await.unwrap().len(), 1);
    assert_eq!(freeze::check_frozen(&db, std::slice::from_ref(&f.datacenter.id), window(1, 2)).await.unwrap().len(), 1);
    let elsewhere = create(&db, region("ap-east")).await;
    assert!(freeze::check_frozen(&db, std::slice::from_ref(&elsewhere.id), window(1, 2)).await.unwrap().is_empty());
}
