//! Freeze windows over the API.

use crate::support::spawn_app;
use axum::http::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_change_manager_declares_moves_and_lifts_a_freeze_and_everyone_can_see_it() {
    let app = spawn_app().await;
    let cm = app.user_with_roles("cm", &["change-manager"]).await;
    let viewer = app.user_with_roles("v", &["viewer"]).await;
    let region = app.ci(json!({"kind": "region", "name": "eu"})).await;
    let body = json!({"name": "year end", "scope_ci_id": region,
        "starts_at": "2030-12-20T00:00:00Z", "ends_at": "2031-01-03T00:00:00Z"});

    let created = app.post("/api/v1/freeze-windows", &cm, body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["created_by"], "cm");
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(app.post("/api/v1/freeze-windows", &viewer, body.clone()).await.status, StatusCode::FORBIDDEN);

    let overlapping =
        app.get("/api/v1/freeze-windows?from=2030-12-31T00:00:00Z&to=2031-01-01T00:00:00Z", &viewer).await;
    assert_eq!(overlapping.body["total"], 1, "{}", overlapping.body);
    let before = app.get("/api/v1/freeze-windows?from=2030-01-01T00:00:00Z&to=2030-02-01T00:00:00Z", &viewer).await;
    assert_eq!(before.body["total"], 0);

    let mut moved = body.clone();
    moved["ends_at"] = "2031-01-05T00:00:00Z".into();
    moved["revision"] = 1.into();
    let put = app.put(&format!("/api/v1/freeze-windows/{id}"), &cm, moved.clone()).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["ends_at"], "2031-01-05T00:00:00Z");
    assert_eq!(app.put(&format!("/api/v1/freeze-windows/{id}"), &cm, moved).await.status, StatusCode::CONFLICT);

    assert_eq!(app.delete(&format!("/api/v1/freeze-windows/{id}"), &cm).await.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&format!("/api/v1/freeze-windows/{id}"), &viewer).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_freeze_that_ends_before_it_starts_or_covers_a_host_is_refused_naming_the_field() {
    let app = spawn_app().await;
    let region = app.ci(json!({"kind": "region", "name": "eu"})).await;
    let backwards = json!({"name": "x", "scope_ci_id": region,
        "starts_at": "2030-01-02T00:00:00Z", "ends_at": "2030-01-01T00:00:00Z"});
    let r = app.post("/api/v1/freeze-windows", &app.admin_token, backwards).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["error"]["details"]["field"], "ends_at");

    let dc = app.ci(json!({"kind": "datacenter", "name": "dc", "parent_id": region})).await;
    let cluster = app.ci(json!({"kind": "cluster", "name": "cl", "parent_id": dc})).await;
    let host = app
        .ci(json!({"kind": "host", "name": "hv", "parent_id": cluster, "hypervisor": "kvm",
            "vcpus": 8, "memory_mib": 8192, "disk_gib": 100}))
        .await;
    let on_host = json!({"name": "x", "scope_ci_id": host,
        "starts_at": "2030-01-01T00:00:00Z", "ends_at": "2030-01-02T00:00:00Z"});
    let r = app.post("/api/v1/freeze-windows", &app.admin_token, on_host).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["error"]["details"]["field"], "scope_ci_id");

    let half = app.get("/api/v1/freeze-windows?from=2030-01-01T00:00:00Z", &app.admin_token).await;
    assert_eq!(half.status, StatusCode::UNPROCESSABLE_ENTITY);
}
