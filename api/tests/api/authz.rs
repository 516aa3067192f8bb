//! Every route × every role: what the OpenAPI document lists is exactly who gets through.

use crate::support::{spawn_app, TestApp};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

const ROLES: [&str; 7] = ["viewer", "requester", "approver", "change-manager", "operator", "admin", "agent"];
const MISSING_ID: &str = "00000000-0000-0000-0000-000000000000";

/// (method, path template, roles allowed) for every operation in the document.
fn operations(doc: &Value) -> Vec<(Method, String, Option<Vec<String>>)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Ok(m) = method.to_uppercase().parse::<Method>() else { continue };
            let roles = op.get("security").map(|s| {
                s.as_array().unwrap()[0]["bearer"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r.as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            });
            ops.push((m, path.clone(), roles));
        }
    }
    ops
}

async fn tokens(app: &TestApp) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    for role in ROLES {
        let token = if role == "admin" {
            app.admin_token.clone()
        } else {
            app.user_with_roles(&format!("only-{role}"), &[role]).await
        };
        out.push((role, token));
    }
    out
}

fn concrete(path: &str) -> String {
    path.replace("{id}", MISSING_ID).replace("{user_id}", MISSING_ID)
}

fn body_for(method: &Method) -> Option<Value> {
    matches!(*method, Method::POST | Method::PUT).then(|| json!({}))
}

#[tokio::test]
async fn every_route_admits_exactly_the_roles_its_document_lists() {
    let app = spawn_app().await;
    let doc = app.openapi().await;
    let tokens = tokens(&app).await;
    let ops = operations(&doc);
    assert!(ops.len() >= 20, "expected the whole API in the document, found {} operations", ops.len());
    let mut checked = 0;
    for (method, template, roles) in &ops {
        let Some(allowed) = roles else { continue };
        assert!(allowed.iter().any(|r| r == "admin"), "{method} {template} must list admin");
        for r in allowed {
            assert!(ROLES.contains(&r.as_str()), "{method} {template} lists unknown role {r}");
        }
        let path = concrete(template);
        for (role, token) in &tokens {
            let resp = app.send(method.clone(), &path, Some(token), body_for(method)).await;
            if allowed.iter().any(|r| r == role) {
                assert!(
                    resp.status != StatusCode::FORBIDDEN && resp.status != StatusCode::UNAUTHORIZED,
                    "{role} is listed for {method} {template} but got {}: {}",
                    resp.status,
                    resp.body
                );
            } else {
                assert_eq!(
                    resp.status,
                    StatusCode::FORBIDDEN,
                    "{role} is not listed for {method} {template}: {}",
                    resp.body
                );
                assert_eq!(resp.error_code(), "forbidden");
            }
            checked += 1;
        }
    }
    assert!(checked >= 20 * ROLES.len());
}

#[tokio::test]
async fn every_protected_route_refuses_requests_without_valid_credentials() {
    let app = spawn_app().await;
    let doc = app.openapi().await;
    for (method, template, roles) in operations(&doc) {
        if roles.is_none() {
            continue;
        }
        let path = concrete(&template);
        for token in [None, Some("tg_not-a-real-token")] {
            let resp = app.send(method.clone(), &path, token, body_for(&method)).await;
            assert_eq!(resp.status, StatusCode::UNAUTHORIZED, "{method} {template} with {token:?}: {}", resp.body);
            assert_eq!(resp.error_code(), "unauthorized");
            assert_eq!(resp.headers.get("www-authenticate").unwrap(), "Bearer");
        }
    }
}

#[tokio::test]
async fn only_sign_in_is_public_in_the_api() {
    let app = spawn_app().await;
    let public: Vec<String> = operations(&app.openapi().await)
        .into_iter()
        .filter(|(_, _, roles)| roles.is_none())
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    assert_eq!(public, vec!["POST /api/v1/auth/tokens".to_owned()]);
}

#[tokio::test]
async fn a_user_without_roles_can_see_only_themselves() {
    let app = spawn_app().await;
    let token = app.user_with_roles("nobody", &[]).await;
    assert_eq!(app.get("/api/v1/users/me", &token).await.status, StatusCode::OK);
    assert_eq!(app.get("/api/v1/cis", &token).await.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn roles_granted_through_a_group_count() {
    let app = spawn_app().await;
    let token = app.user_with_roles("grouped", &["viewer"]).await;
    assert_eq!(
        app.post("/api/v1/cis", &token, json!({"kind": "region", "name": "r1"})).await.status,
        StatusCode::FORBIDDEN
    );
    let me = app.get("/api/v1/users/me", &token).await.body;
    let user_id = me["user"]["id"].as_str().unwrap();
    let group = app.post("/api/v1/groups", &app.admin_token, json!({"name": "ops", "roles": ["operator"]})).await;
    let group_id = group.body["id"].as_str().unwrap();
    let r = app.put(&format!("/api/v1/groups/{group_id}/members/{user_id}"), &app.admin_token, json!(null)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        app.post("/api/v1/cis", &token, json!({"kind": "region", "name": "r1"})).await.status,
        StatusCode::CREATED
    );
}
