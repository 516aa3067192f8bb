//! Finding items: by kind, container, owner and name in any case, with wildcards taken literally, in pages.

use crate::support::*;
use tollgate_workflows::cmdb::{self, Ci, CiKind, CiQuery};
use tollgate_workflows::text::Page;
use tollgate_workflows::Db;

fn names(page: &Page<Ci>) -> Vec<&str> {
    page.items.iter().map(|c| c.name.as_str()).collect()
}

/// Names in byte order: how engines collate mixed case is theirs to choose.
fn sorted_names(page: &Page<Ci>) -> Vec<&str> {
    let mut names = names(page);
    names.sort_unstable();
    names
}

async fn find(db: &Db, q: CiQuery) -> Page<Ci> {
    cmdb::list_cis(db, &q, all()).await.unwrap()
}

fn search(text: &str) -> CiQuery {
    CiQuery { q: Some(text.to_owned()), ..CiQuery::default() }
}

#[tokio::test]
async fn items_are_found_by_kind_parent_and_name_in_any_case() {
    let db = fresh_db().await;
    let f = fleet(&db).await;
    create(&db, host("HV-002", &f.cluster.id)).await;
    create(&db, vm("web-1", Some(&f.host.id), None)).await;

    let hosts = find(&db, CiQuery { kind: Some(CiKind::Host), ..CiQuery::default() }).await;
    assert_eq!(sorted_names(&hosts), ["HV-002", "hv-001"]);
    let on_host = find(&db, CiQuery { parent_id: Some(f.host.id.clone()), ..CiQuery::default() }).await;
    assert_eq!(names(&on_host), ["billing-db-1", "web-1"]);
    let of_service = find(&db, CiQuery { service_id: Some(f.service.id.clone()), ..CiQuery::default() }).await;
    assert_eq!(names(&of_service), ["billing-db-1"]);
    assert_eq!(sorted_names(&find(&db, search("hv-0")).await), ["HV-002", "hv-001"]);
    assert_eq!(names(&find(&db, search("BILLING")).await), ["billing", "billing-db-1"]);
    let billing_vms = CiQuery { kind: Some(CiKind::Vm), ..search("Billing") };
    assert_eq!(names(&find(&db, billing_vms).await), ["billing-db-1"]);
    assert_eq!(find(&db, search("nothing-like-this")).await.total, 0);
}

#[tokio::test]
async fn wildcard_characters_in_a_search_match_only_themselves() {
    let db = fresh_db().await;
    for n in ["cpu-100%", "cpu-1000", "db_main", "dbxmain", r"share\backup", "share-backup"] {
        create(&db, service(n)).await;
    }

    assert_eq!(names(&find(&db, search("100%")).await), ["cpu-100%"]);
    assert_eq!(names(&find(&db, search("%")).await), ["cpu-100%"]);
    assert_eq!(names(&find(&db, search("b_m")).await), ["db_main"]);
    assert_eq!(names(&find(&db, search("_")).await), ["db_main"]);
    assert_eq!(names(&find(&db, search(r"e\b")).await), [r"share\backup"]);
}

#[tokio::test]
async fn lists_are_paged_with_the_total_of_all_matches() {
    let db = fresh_db().await;
    for i in 1..=7 {
        create(&db, service(&format!("svc-{i:02}"))).await;
    }
    create(&db, region("eu-west")).await;
    let services = CiQuery { kind: Some(CiKind::Service), ..CiQuery::default() };

    let mut seen = Vec::new();
    for offset in [0, 3, 6] {
        let p = cmdb::list_cis(&db, &services, page(3, offset)).await.unwrap();
        assert_eq!((p.total, p.limit, p.offset), (7, 3, offset));
        seen.extend(names(&p).into_iter().map(str::to_owned));
    }
    let expected: Vec<String> = (1..=7).map(|i| format!("svc-{i:02}")).collect();
    assert_eq!(seen, expected);
    let beyond = cmdb::list_cis(&db, &services, page(3, 9)).await.unwrap();
    assert!(beyond.items.is_empty());
    assert_eq!(beyond.total, 7);
}

#[tokio::test]
async fn a_name_with_non_ascii_capitals_is_found_by_its_exact_spelling() {
    let db = fresh_db().await;
    create(&db, service("Überwachung")).await;
    create(&db, service("Ærø-Backup")).await;

    assert_eq!(names(&find(&db, search("Überwachung")).await), ["Überwachung"]);
    assert_eq!(names(&find(&db, search("Über")).await), ["Überwachung"]);
    assert_eq!(names(&find(&db, search("WACHUNG")).await), ["Überwachung"]);
    assert_eq!(names(&find(&db, search("Ærø")).await), ["Ærø-Backup"]);
}
