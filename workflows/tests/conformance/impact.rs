//! Impact: what else fails, or degrades, when an item fails.

use crate::support::*;
use tollgate_workflows::cmdb::{self, Ci, Impact, RelationKind};
use tollgate_workflows::Db;

/// (name, depth, via, id of the item one step closer to the failure), in a stable order.
fn reached(impact: &Impact) -> Vec<(String, u32, String, String)> {
    let mut rows: Vec<_> =
        impact.affected.iter().map(|a| (a.ci.name.clone(), a.depth, a.via.clone(), a.from_id.clone())).collect();
    rows.sort();
    rows
}

fn hop(to: &Ci, depth: u32, via: &str, from: &Ci) -> (String, u32, String, String) {
    (to.name.clone(), depth, via.to_owned(), from.id.clone())
}

fn service_names(impact: &Impact) -> Vec<&str> {
    let mut names: Vec<&str> = impact.services.iter().map(|s| s.name.as_str()).collect();
    names.sort_unstable();
    names
}

async fn depends_on(db: &Db, dependent: &Ci, needed: &Ci) {
    cmdb::create_relation(db, &ctx(), RelationKind::DependsOn, &dependent.id, &needed.id).await.unwrap();
}

#[tokio::test]
async fn a_host_failure_takes_down_its_vms_and_degrades_their_services() {
    let db = fresh_db().await;
    let f = fleet(&db).await;
    let web = create(&db, service("web")).await;
    let web_vm = create(&db, vm("web-1", Some(&f.host.id), None)).await;
    cmdb::create_relation(&db, &ctx(), RelationKind::MemberOf, &web_vm.id, &web.id).await.unwrap();
    let other_host = create(&db, host("hv-002", &f.cluster.id)).await;
    create(&db, vm("elsewhere", Some(&other_host.id), None)).await;

    let impact = cmdb::impact(&db, &f.host.id, 10).await.unwrap();

    assert_eq!(impact.ci.id, f.host.id);
    let mut expected = vec![
        hop(&f.vm, 1, "runs-on", &f.host),
        hop(&web_vm, 1, "runs-on", &f.host),
        hop(&f.service, 2, "member-of", &f.vm),
        hop(&web, 2, "member-of", &web_vm),
    ];
    expected.sort();
    assert_eq!(reached(&impact), expected);
    assert_eq!(service_names(&impact), ["billing", "web"]);
    assert!(!impact.truncated);
}

#[tokio::test]
async fn a_failure_travels_up_a_chain_of_dependencies_but_not_down_it() {
    let db = fresh_db().await;
    let app = create(&db, service("app")).await;
    let api = create(&db, service("api")).await;
    let store = create(&db, service("store")).await;
    depends_on(&db, &app, &api).await;
    depends_on(&db, &api, &store).await;

    let from_store = cmdb::impact(&db, &store.id, 10).await.unwrap();
    let from_app = cmdb::impact(&db, &app.id, 10).await.unwrap();

    assert_eq!(reached(&from_store), vec![hop(&api, 1, "depends-on", &store), hop(&app, 2, "depends-on", &api)]);
    assert_eq!(service_names(&from_store), ["api", "app"]);
    assert!(from_app.affected.is_empty(), "nothing needs the app: {:?}", from_app.affected);
    assert!(!from_app.truncated);
}

#[tokio::test]
async fn a_dependency_cycle_ends_the_walk_and_names_each_item_once() {
    let db = fresh_db().await;
    let a = create(&db, service("a")).await;
    let b = create(&db, service("b")).await;
    let c = create(&db, service("c")).await;
    depends_on(&db, &a, &b).await;
    depends_on(&db, &b, &a).await;
    depends_on(&db, &c, &a).await;

    let from_a = cmdb::impact(&db, &a.id, 50).await.unwrap();
    let from_b = cmdb::impact(&db, &b.id, 50).await.unwrap();

    assert_eq!(reached(&from_a), vec![hop(&b, 1, "depends-on", &a), hop(&c, 1, "depends-on", &a)]);
    assert_eq!(reached(&from_b), vec![hop(&a, 1, "depends-on", &b), hop(&c, 2, "depends-on", &a)]);
    assert!(!from_a.truncated && !from_b.truncated);
}

#[tokio::test]
async fn the_depth_bound_stops_the_walk_and_says_so() {
    let db = fresh_db().await;
    let mut chain = vec![create(&db, service("s0")).await];
    for i in 1..=4 {
        let next = create(&db, service(&format!("s{i}"))).await;
        depends_on(&db, &next, &chain[i - 1]).await;
        chain.push(next);
    }

    let shallow = cmdb::impact(&db, &chain[0].id, 2).await.unwrap();
    assert_eq!(
        reached(&shallow),
        vec![hop(&chain[1], 1, "depends-on", &chain[0]), hop(&chain[2], 2, "depends-on", &chain[1])]
    );
    assert!(shallow.truncated);
    assert_eq!(shallow.max_depth, 2);

    let exact = cmdb::impact(&db, &chain[0].id, 4).await.unwrap();
    assert_eq!(exact.affected.len(), 4);
    assert_eq!(exact.affected.iter().map(|a| a.depth).max(), Some(4));
    assert!(!exact.truncated, "nothing was left to follow");

    let none = cmdb::impact(&db, &chain[0].id, 0).await.unwrap();
    assert!(none.affected.is_empty());
    assert!(none.truncated);
}

#[tokio::test]
async fn a_region_failure_reaches_its_vms_at_depth_four() {
    let db = fresh_db().await;
    let f = fleet(&db).await;

    let deep = cmdb::impact(&db, &f.region.id, 10).await.unwrap();
    let mut expected = vec![
        hop(&f.datacenter, 1, "contains", &f.region),
        hop(&f.cluster, 2, "contains", &f.datacenter),
        hop(&f.host, 3, "contains", &f.cluster),
        hop(&f.vm, 4, "runs-on", &f.host),
        hop(&f.service, 5, "member-of", &f.vm),
    ];
    expected.sort();
    assert_eq!(reached(&deep), expected);
    assert!(!deep.truncated);

    let bounded = cmdb::impact(&db, &f.region.id, 4).await.unwrap();
    let vm = bounded.affected.iter().find(|a| a.ci.id == f.vm.id).expect("the VM is reached");
    assert_eq!(vm.depth, 4);
    assert!(bounded.services.is_empty());
    assert!(bounded.truncated);
}

#[tokio::test]
async fn the_impact_of_an_unknown_item_is_not_found() {
    let db = fresh_db().await;
    assert_not_found(cmdb::impact(&db, "no-such-ci", 3).await);
}
