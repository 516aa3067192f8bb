//! Process definitions over the API.

use crate::support::spawn_app;
use axum::http::StatusCode;
use serde_json::Value;

#[tokio::test]
async fn everyone_can_read_the_shipped_processes() {
    let app = spawn_app().await;
    let token = app.user_with_roles("reader", &["viewer"]).await;
    let list = app.get("/api/v1/processes", &token).await;
    assert_eq!(list.status, StatusCode::OK, "{}", list.body);
    assert_eq!(list.body["items"].as_array().unwrap().len(), 4);
    let normal = app.get("/api/v1/processes/normal-change", &token).await;
    assert_eq!(normal.body["version"], 1);
    assert_eq!(normal.body["definition"]["initial"], "draft");
}

#[tokio::test]
async fn a_change_manager_uploads_a_new_version_and_an_identical_upload_changes_nothing() {
    let app = spawn_app().await;
    let token = app.user_with_roles("cm", &["change-manager"]).await;
    let mut def: Value = app.get("/api/v1/processes/incident", &token).await.body["definition"].clone();
    def["description"] = "Worked by the on-call rota.".into();

    let put = app.put("/api/v1/processes/incident", &token, def.clone()).await;
    assert_eq!(put.status, StatusCode::CREATED, "{}", put.body);
    assert_eq!(put.body["version"], 2);
    assert_eq!(put.body["created_by"], "cm");
    let again = app.put("/api/v1/processes/incident", &token, def).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["version"], 2);
    let v1 = app.get("/api/v1/processes/incident?version=1", &token).await;
    assert_ne!(v1.body["definition"]["description"], "Worked by the on-call rota.");
}

#[tokio::test]
async fn an_invalid_definition_is_refused_with_every_problem_named() {
    let app = spawn_app().await;
    let mut def: Value = app.get("/api/v1/processes/incident", &app.admin_token).await.body["definition"].clone();
    def["states"].as_array_mut().unwrap().push(serde_json::json!({"name": "island", "terminal": true}));
    def["states"].as_array_mut().unwrap().push(serde_json::json!({"name": "limbo"}));
    def["transitions"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"event": "drift", "from": ["new"], "to": "limbo", "roles": ["operator"]}));
    let put = app.put("/api/v1/processes/incident", &app.admin_token, def).await;
    assert_eq!(put.status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = put.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("state island cannot be reached"), "{message}");
    assert!(message.contains("state limbo is a dead end"), "{message}");

    let mut unknown = app.get("/api/v1/processes/incident", &app.admin_token).await.body["definition"].clone();
    unknown["transitions"][0]["guards"] = serde_json::json!(["moon_is_full"]);
    let put = app.put("/api/v1/processes/incident", &app.admin_token, unknown).await;
    assert_eq!(put.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", put.body);
    assert!(put.body["error"]["message"].as_str().unwrap().contains("moon_is_full"));
}

#[tokio::test]
async fn the_path_and_the_body_must_name_the_same_process() {
    let app = spawn_app().await;
    let def = app.get("/api/v1/processes/incident", &app.admin_token).await.body["definition"].clone();
    let put = app.put("/api/v1/processes/other", &app.admin_token, def).await;
    assert_eq!(put.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(put.body["error"]["details"]["field"], "name");
}
