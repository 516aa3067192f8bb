//! The CMDB through the API: building a fleet, finding items, editing them safely, relating them, asking
//! what a failure affects — and every change showing up in the audit log with who made it.

use crate::support::{spawn_app, TestApp};
use axum::http::StatusCode;
use serde_json::{json, Value};

/// A small fleet: one of each kind down the containment chain, and a VM belonging to a service.
struct Fleet {
    region: String,
    cluster: String,
    host: String,
    service: String,
    vm: String,
}

async fn fleet(app: &TestApp) -> Fleet {
    let region = app.ci(json!({"kind": "region", "name": "eu"})).await;
    let dc = app.ci(json!({"kind": "datacenter", "name": "fra1", "parent_id": region})).await;
    let cluster = app.ci(json!({"kind": "cluster", "name": "fra1-a", "parent_id": dc})).await;
    let host = app
        .ci(json!({"kind": "host", "name": "hv-001", "parent_id": cluster, "hypervisor": "kvm",
                   "vcpus": 64, "memory_mib": 262_144, "disk_gib": 4000}))
        .await;
    let service = app.ci(json!({"kind": "service", "name": "shop", "criticality": "high"})).await;
    let vm = app.ci(vm("web-1", &host, &service)).await;
    Fleet { region, cluster, host, service, vm }
}

fn vm(name: &str, host: &str, service: &str) -> Value {
    json!({"kind": "vm", "name": name, "parent_id": host, "service_id": service,
           "vcpus": 2, "memory_mib": 4096, "disk_gib": 40})
}

fn names(page: &Value) -> Vec<&str> {
    page["items"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_fleet_built_through_the_api_reads_back_as_submitted_with_defaults() {
    let app = spawn_app().await;
    let f = fleet(&app).await;

    let vm = app.get(&format!("/api/v1/cis/{}", f.vm), &app.admin_token).await;

    assert_eq!(vm.status, StatusCode::OK);
    let vm = vm.body;
    assert_eq!((vm["kind"].as_str(), vm["name"].as_str()), (Some("vm"), Some("web-1")));
    assert_eq!(vm["parent_id"], f.host.as_str());
    assert_eq!(vm["service_id"], f.service.as_str());
    assert_eq!(
        (vm["vcpus"].as_i64(), vm["memory_mib"].as_i64(), vm["disk_gib"].as_i64()),
        (Some(2), Some(4096), Some(40))
    );
    assert_eq!(vm["state"], "planned", "a VM starts planned");
    assert_eq!(vm["criticality"], "medium");
    assert_eq!(vm["revision"], 1);
    let host = app.get(&format!("/api/v1/cis/{}", f.host), &app.admin_token).await.body;
    assert_eq!((host["hypervisor"].as_str(), host["state"].as_str()), (Some("kvm"), Some("active")));
    assert_eq!(app.get("/api/v1/cis", &app.admin_token).await.body["total"], 6);
}

#[tokio::test]
async fn lists_filter_by_kind_container_service_and_text_and_page_with_a_total() {
    let app = spawn_app().await;
    let f = fleet(&app).await;
    let other = app.ci(json!({"kind": "service", "name": "billing"})).await;
    for name in ["web-2", "web-3", "db-1"] {
        app.ci(vm(name, &f.host, &f.service)).await;
    }
    app.ci(json!({"kind": "vm", "name": "batch-1", "service_id": other, "state": "running",
                  "criticality": "low", "vcpus": 1, "memory_mib": 512, "disk_gib": 10}))
        .await;
    let list = |query: &str| {
        let app = &app;
        let path = format!("/api/v1/cis?{query}");
        async move {
            let r = app.get(&path, &app.admin_token).await;
            assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
            r.body
        }
    };

    assert_eq!(names(&list("kind=vm").await), ["batch-1", "db-1", "web-1", "web-2", "web-3"]);
    assert_eq!(names(&list(&format!("parent_id={}", f.host)).await), ["db-1", "web-1", "web-2", "web-3"]);
    assert_eq!(names(&list(&format!("service_id={other}")).await), ["batch-1"]);
    assert_eq!(names(&list("q=WEB").await), ["web-1", "web-2", "web-3"], "search ignores case");
    assert_eq!(names(&list("kind=vm&state=running").await), ["batch-1"]);
    assert_eq!(names(&list("criticality=high").await), ["shop"]);
    assert_eq!(names(&list(&format!("parent_id={}", f.cluster)).await), ["hv-001"]);

    let page = list("kind=vm&limit=2&offset=2").await;
    assert_eq!((page["total"].as_i64(), page["limit"].as_i64(), page["offset"].as_i64()), (Some(5), Some(2), Some(2)));
    assert_eq!(names(&page), ["web-1", "web-2"]);
    let last = list("kind=vm&limit=2&offset=4").await;
    assert_eq!((names(&last), last["total"].as_i64()), (vec!["web-3"], Some(5)));
    let beyond = list("kind=vm&limit=2&offset=50").await;
    assert_eq!((names(&beyond).len(), beyond["total"].as_i64()), (0, Some(5)));
    assert_eq!(list("").await["limit"], 50, "the default page size");
}

#[tokio::test]
async fn an_edit_bumps_the_revision_and_an_edit_from_a_stale_revision_is_a_409() {
    let app = spawn_app().await;
    let f = fleet(&app).await;
    let path = format!("/api/v1/cis/{}", f.region);

    let first = app.put(&path, &app.admin_token, json!({"kind": "region", "name": "eu-central", "revision": 1})).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["revision"], 2);
    let stale = app.put(&path, &app.admin_token, json!({"kind": "region", "name": "eu-west", "revision": 1})).await;
    stale.assert_error(StatusCode::CONFLICT, "conflict");
    assert!(stale.body["error"]["message"].as_str().unwrap().contains("revision 2"), "{}", stale.body);

    let now = app.get(&path, &app.admin_token).await.body;
    assert_eq!(
        (now["name"].as_str(), now["revision"].as_i64()),
        (Some("eu-central"), Some(2)),
        "the stale edit left no trace"
    );
    let blind = app.put(&path, &app.admin_token, json!({"kind": "region", "name": "eu-1"})).await;
    assert_eq!(blind.body["revision"], 3, "an edit without a revision applies and still counts");
    let kind = app.put(&path, &app.admin_token, json!({"kind": "service", "name": "eu-1"})).await;
    kind.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(kind.field(), Some("kind"));
    let taken = app.put(&format!("/api/v1/cis/{}", f.vm), &app.admin_token, vm("web-1", &f.host, &f.service)).await;
    assert_eq!(taken.status, StatusCode::OK, "keeping one's own name is no conflict: {}", taken.body);
    app.ci(vm("web-2", &f.host, &f.service)).await;
    let taken = app.put(&format!("/api/v1/cis/{}", f.vm), &app.admin_token, vm("web-2", &f.host, &f.service)).await;
    taken.assert_error(StatusCode::CONFLICT, "conflict");
}

#[tokio::test]
async fn an_item_that_contains_or_owns_others_cannot_be_deleted() {
    let app = spawn_app().await;
    let f = fleet(&app).await;
    let delete = |id: &str| {
        let path = format!("/api/v1/cis/{id}");
        let app = &app;
        async move { app.delete(&path, &app.admin_token).await }
    };

    delete(&f.host).await.assert_error(StatusCode::CONFLICT, "conflict");
    delete(&f.service).await.assert_error(StatusCode::CONFLICT, "conflict");
    delete(&f.region).await.assert_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(app.get(&format!("/api/v1/cis/{}", f.host), &app.admin_token).await.status, StatusCode::OK);

    assert_eq!(delete(&f.vm).await.status, StatusCode::NO_CONTENT);
    app.get(&format!("/api/v1/cis/{}", f.vm), &app.admin_token).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(delete(&f.host).await.status, StatusCode::NO_CONTENT);
    assert_eq!(delete(&f.service).await.status, StatusCode::NO_CONTENT);
    delete(&f.service).await.assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn relations_link_two_items_once_and_go_when_either_item_goes() {
    let app = spawn_app().await;
    let f = fleet(&app).await;
    let billing = app.ci(json!({"kind": "service", "name": "billing"})).await;
    let link = json!({"kind": "depends-on", "source_id": billing, "target_id": f.service});

    let created = app.post("/api/v1/relations", &app.admin_token, link.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let shown = app.get(&format!("/api/v1/relations/{id}"), &app.admin_token).await.body;
    assert_eq!((shown["kind"].as_str(), shown["source_id"].as_str()), (Some("depends-on"), Some(billing.as_str())));
    app.post("/api/v1/relations", &app.admin_token, link).await.assert_error(StatusCode::CONFLICT, "conflict");
    let to_itself = json!({"kind": "runs-on", "source_id": billing, "target_id": billing});
    let r = app.post("/api/v1/relations", &app.admin_token, to_itself).await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(r.field(), Some("target_id"));

    for (query, total) in
        [(format!("ci_id={}", f.service), 1), ("kind=runs-on".to_owned(), 0), ("kind=depends-on".to_owned(), 1)]
    {
        let page = app.get(&format!("/api/v1/relations?{query}"), &app.admin_token).await.body;
        assert_eq!(page["total"], total, "relations?{query}: {page}");
    }
    assert_eq!(app.delete(&format!("/api/v1/relations/{id}"), &app.admin_token).await.status, StatusCode::NO_CONTENT);
    app.get(&format!("/api/v1/relations/{id}"), &app.admin_token)
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    let again = json!({"kind": "member-of", "source_id": f.vm, "target_id": billing});
    assert_eq!(app.post("/api/v1/relations", &app.admin_token, again).await.status, StatusCode::CREATED);
    assert_eq!(app.delete(&format!("/api/v1/cis/{}", f.vm), &app.admin_token).await.status, StatusCode::NO_CONTENT);
    let left = app.get(&format!("/api/v1/relations?ci_id={billing}"), &app.admin_token).await.body;
    assert_eq!(left["total"], 0, "a deleted item takes its relations along: {left}");
}

#[tokio::test]
async fn the_impact_of_a_host_names_its_vms_and_the_services_they_serve() {
    let app = spawn_app().await;
    let f = fleet(&app).await;
    let billing = app.ci(json!({"kind": "service", "name": "billing"})).await;
    let link = json!({"kind": "depends-on", "source_id": billing, "target_id": f.service});
    assert_eq!(app.post("/api/v1/relations", &app.admin_token, link).await.status, StatusCode::CREATED);

    let r = app.get(&format!("/api/v1/cis/{}/impact", f.host), &app.admin_token).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let affected: Vec<(&str, i64, &str)> = r.body["affected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["ci"]["name"].as_str().unwrap(), a["depth"].as_i64().unwrap(), a["via"].as_str().unwrap()))
        .collect();
    assert_eq!(affected, [("web-1", 1, "runs-on"), ("shop", 2, "member-of"), ("billing", 3, "depends-on")]);
    let services: Vec<&str> =
        r.body["services"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(services, ["shop", "billing"]);
    assert_eq!((r.body["ci"]["id"].as_str(), r.body["truncated"].as_bool()), (Some(f.host.as_str()), Some(false)));

    let shallow = app.get(&format!("/api/v1/cis/{}/impact?depth=1", f.host), &app.admin_token).await.body;
    assert_eq!(shallow["affected"].as_array().unwrap().len(), 1);
    assert_eq!((shallow["truncated"].as_bool(), shallow["max_depth"].as_i64()), (Some(true), Some(1)));
    let from_region = app.get(&format!("/api/v1/cis/{}/impact", f.region), &app.admin_token).await.body;
    assert_eq!(
        from_region["services"].as_array().unwrap().len(),
        2,
        "a region's failure reaches every service: {from_region}"
    );
    for depth in ["0", "17"] {
        let r = app.get(&format!("/api/v1/cis/{}/impact?depth={depth}", f.host), &app.admin_token).await;
        r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(r.field(), Some("depth"));
    }
}

#[tokio::test]
async fn every_change_is_audited_with_who_made_it_and_the_request_id() {
    let app = spawn_app().await;
    let olga = app.user_with_roles("olga", &["operator"]).await;

    let created = app.post("/api/v1/cis", &olga, json!({"kind": "service", "name": "shop"})).await;
    let shop = created.body["id"].as_str().unwrap().to_owned();
    let other = app.post("/api/v1/cis", &olga, json!({"kind": "service", "name": "billing"})).await;
    let billing = other.body["id"].as_str().unwrap().to_owned();
    let edited = app.put(&format!("/api/v1/cis/{shop}"), &olga, json!({"kind": "service", "name": "webshop"})).await;
    let link = json!({"kind": "depends-on", "source_id": billing, "target_id": shop});
    let related = app.post("/api/v1/relations", &olga, link).await;
    let relation = related.body["id"].as_str().unwrap().to_owned();
    let unrelated = app.delete(&format!("/api/v1/relations/{relation}"), &olga).await;
    let deleted = app.delete(&format!("/api/v1/cis/{billing}"), &olga).await;
    let refused =
        app.put(&format!("/api/v1/cis/{shop}"), &olga, json!({"kind": "service", "name": "x", "revision": 1})).await;
    refused.assert_error(StatusCode::CONFLICT, "conflict");

    let expected = [
        (&created, "ci.create", shop.as_str()),
        (&other, "ci.create", billing.as_str()),
        (&edited, "ci.update", shop.as_str()),
        (&related, "relation.create", relation.as_str()),
        (&unrelated, "relation.delete", relation.as_str()),
        (&deleted, "ci.delete", billing.as_str()),
    ];
    for (response, action, entity) in expected {
        assert!(response.status.is_success(), "{action}: {} {}", response.status, response.body);
        let id = response.request_id();
        let records = app.audit(&format!("request_id={id}")).await;
        assert_eq!(records.len(), 1, "one record for the {action} of request {id}: {records:?}");
        let r = &records[0];
        assert_eq!((r["action"].as_str(), r["entity_id"].as_str()), (Some(action), Some(entity)));
        assert_eq!((r["actor"].as_str(), r["request_id"].as_str()), (Some("olga"), Some(id.as_str())));
    }
    assert!(
        app.audit(&format!("request_id={}", refused.request_id())).await.is_empty(),
        "a refused edit writes nothing"
    );
    let update = &app.audit("action=ci.update").await[0];
    assert_eq!((update["before"]["name"].as_str(), update["after"]["name"].as_str()), (Some("shop"), Some("webshop")));
    let by_olga: Vec<String> =
        app.audit("actor=olga").await.iter().map(|r| r["action"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        by_olga,
        ["ci.delete", "relation.delete", "relation.create", "ci.update", "ci.create", "ci.create", "token.issue"],
        "newest first, her sign-in included"
    );
}

#[tokio::test]
async fn the_openapi_document_spells_cmdb_enums_as_the_api_does() {
    use tollgate_workflows::cmdb::{CiKind, Criticality, Hypervisor, RelationKind};
    let app = spawn_app().await;
    let doc = app.openapi().await;
    let spelled = |name: &str| -> Vec<String> {
        let values =
            doc["components"]["schemas"][name]["enum"].as_array().unwrap_or_else(|| panic!("{name} has an enum"));
        values.iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    };
    let strings = |all: Vec<&str>| all.into_iter().map(str::to_owned).collect::<Vec<_>>();
    assert_eq!(spelled("CiKind"), strings(CiKind::ALL.iter().map(|k| k.as_str()).collect()));
    assert_eq!(spelled("Criticality"), strings(Criticality::ALL.iter().map(|k| k.as_str()).collect()));
    assert_eq!(spelled("Hypervisor"), strings(Hypervisor::ALL.iter().map(|k| k.as_str()).collect()));
    assert_eq!(spelled("RelationKind"), strings(RelationKind::ALL.iter().map(|k| k.as_str()).collect()));
}
