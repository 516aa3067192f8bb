//! Signing in, tokens, users and groups as their owners and administrators meet them.

use crate::support::{spawn_app, TestApp, ADMIN_PASSWORD, USER_PASSWORD};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

async fn try_sign_in(app: &TestApp, body: Value) -> crate::support::TestResponse {
    app.send(Method::POST, "/api/v1/auth/tokens", None, Some(body)).await
}

fn user_update(roles: &[&str], disabled: bool) -> Value {
    json!({"display_name": "Someone", "roles": roles, "disabled": disabled})
}

#[tokio::test]
async fn a_failed_sign_in_says_the_same_for_an_unknown_user_a_wrong_password_and_a_disabled_account() {
    let app = spawn_app().await;
    app.user_with_roles("dora", &["viewer"]).await;
    let dora = app.get("/api/v1/users?q=dora", &app.admin_token).await.body["items"][0]["id"].clone();
    let r =
        app.put(&format!("/api/v1/users/{}", dora.as_str().unwrap()), &app.admin_token, user_update(&[], true)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);

    let mut messages = Vec::new();
    for (username, password) in [("admin", "not-the-password"), ("nobody", ADMIN_PASSWORD), ("dora", USER_PASSWORD)] {
        let r = try_sign_in(&app, json!({"username": username, "password": password})).await;
        r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
        assert_eq!(r.headers.get("www-authenticate").unwrap(), "Bearer");
        messages.push(r.body["error"]["message"].clone());
    }
    assert!(messages.iter().all(|m| *m == messages[0]), "the messages give nothing away: {messages:?}");
}

#[tokio::test]
async fn a_token_lives_as_long_as_asked_up_to_the_maximum() {
    let app = spawn_app().await;
    let max = tollgate_api::config::Config::default().auth.max_token_ttl_secs;
    for ttl in [0, max + 1] {
        let r = try_sign_in(&app, json!({"username": "admin", "password": ADMIN_PASSWORD, "ttl_secs": ttl})).await;
        r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(r.field(), Some("ttl_secs"));
    }
    let before = OffsetDateTime::now_utc();
    let r = try_sign_in(&app, json!({"username": "admin", "password": ADMIN_PASSWORD, "ttl_secs": 600})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let expires = OffsetDateTime::parse(r.body["expires_at"].as_str().unwrap(), &Rfc3339).unwrap();
    let lifetime = (expires - before).whole_seconds();
    assert!((595..=605).contains(&lifetime), "asked for 600 s, got {lifetime} s");
    let r = try_sign_in(&app, json!({"username": "admin", "password": ADMIN_PASSWORD, "ttl_secs": max})).await;
    assert_eq!(r.status, StatusCode::CREATED, "the maximum itself is allowed: {}", r.body);
}

#[tokio::test]
async fn listing_your_tokens_shows_only_yours_and_never_a_secret() {
    let app = spawn_app().await;
    let first = app.user_with_roles("tess", &[]).await;
    let r = try_sign_in(&app, json!({"username": "tess", "password": USER_PASSWORD, "name": "laptop"})).await;
    let second = r.body["token"].as_str().unwrap().to_owned();

    let r = app.get("/api/v1/auth/tokens", &second).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["total"], 2, "the admin's token is not hers: {}", r.body);
    let listed: Vec<&str> = r.body["items"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(listed, ["laptop", "api"], "newest first");
    let text = r.body.to_string();
    for secret in [&first, &second, &app.admin_token] {
        assert!(!text.contains(secret.as_str()), "a token secret was listed: {text}");
    }
    assert!(r.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t.get("token").is_none() && t.get("token_hash").is_none()));
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_once_and_only_that_token() {
    let app = spawn_app().await;
    let kept = app.user_with_roles("rita", &["viewer"]).await;
    let r = try_sign_in(&app, json!({"username": "rita", "password": USER_PASSWORD})).await;
    let (revoked, id) = (r.body["token"].as_str().unwrap().to_owned(), r.body["id"].as_str().unwrap().to_owned());

    let r = app.delete(&format!("/api/v1/auth/tokens/{id}"), &revoked).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["revoked_at"].is_string(), "{}", r.body);
    app.get("/api/v1/users/me", &revoked).await.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(app.get("/api/v1/users/me", &kept).await.status, StatusCode::OK);
    let again = app.delete(&format!("/api/v1/auth/tokens/{id}"), &kept).await;
    assert_eq!(again.status, StatusCode::OK, "revoking twice is harmless: {}", again.body);
}

#[tokio::test]
async fn only_an_administrator_can_revoke_someone_elses_token() {
    let app = spawn_app().await;
    let victim = app.user_with_roles("vic", &["viewer"]).await;
    let other = app.user_with_roles("mallory", &["change-manager", "operator"]).await;
    let victim_token_id =
        app.get("/api/v1/auth/tokens", &victim).await.body["items"][0]["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/auth/tokens/{victim_token_id}");

    app.delete(&path, &other).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(app.get("/api/v1/users/me", &victim).await.status, StatusCode::OK, "the token still works");

    assert_eq!(app.delete(&path, &app.admin_token).await.status, StatusCode::OK);
    app.get("/api/v1/users/me", &victim).await.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn an_administrator_creates_users_and_a_taken_username_is_a_409() {
    let app = spawn_app().await;
    let body = json!({"username": "carol", "display_name": "Carol C", "email": "carol@example.org",
                      "password": USER_PASSWORD, "roles": ["approver"]});

    let r = app.post("/api/v1/users", &app.admin_token, body.clone()).await;

    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(
        (r.body["display_name"].as_str(), r.body["email"].as_str()),
        (Some("Carol C"), Some("carol@example.org"))
    );
    assert!(r.body.get("password").is_none() && r.body.get("password_hash").is_none(), "{}", r.body);
    app.post("/api/v1/users", &app.admin_token, body).await.assert_error(StatusCode::CONFLICT, "conflict");
    let token = app.sign_in("carol", USER_PASSWORD).await;
    let me = app.get("/api/v1/users/me", &token).await.body;
    assert_eq!(me["effective_roles"], json!(["approver"]));
    let bad = json!({"username": "Carol", "password": USER_PASSWORD});
    let r = app.post("/api/v1/users", &app.admin_token, bad).await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(r.field(), Some("username"));
    let r = app.post("/api/v1/users", &app.admin_token, json!({"username": "x", "password": "short"})).await;
    assert_eq!(r.field(), Some("password"));
}

#[tokio::test]
async fn disabling_a_user_ends_their_sessions_and_sign_ins() {
    let app = spawn_app().await;
    let token = app.user_with_roles("dan", &["viewer"]).await;
    let id = app.user_id(&token).await;

    let r = app.put(&format!("/api/v1/users/{id}"), &app.admin_token, user_update(&["viewer"], true)).await;

    assert_eq!((r.status, r.body["disabled"].as_bool()), (StatusCode::OK, Some(true)), "{}", r.body);
    app.get("/api/v1/cis", &token).await.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let r = try_sign_in(&app, json!({"username": "dan", "password": USER_PASSWORD})).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");

    app.put(&format!("/api/v1/users/{id}"), &app.admin_token, user_update(&["viewer"], false)).await;
    app.get("/api/v1/cis", &token).await.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let fresh = app.sign_in("dan", USER_PASSWORD).await;
    assert_eq!(app.get("/api/v1/cis", &fresh).await.status, StatusCode::OK, "re-enabled, they sign in again");
}

#[tokio::test]
async fn the_last_administrator_can_neither_be_disabled_nor_lose_admin() {
    let app = spawn_app().await;
    let admin = app.user_id(&app.admin_token).await;
    let path = format!("/api/v1/users/{admin}");

    app.put(&path, &app.admin_token, user_update(&["admin"], true))
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    app.put(&path, &app.admin_token, user_update(&["operator"], false))
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(app.get("/api/v1/users", &app.admin_token).await.status, StatusCode::OK, "still an administrator");

    // An administrator through a group counts as another administrator.
    let ((deputy, _), _) = admin_through_group(&app, "deputy").await;
    let r = app.put(&path, &app.admin_token, user_update(&["operator"], false)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(app.get("/api/v1/users", &deputy).await.status, StatusCode::OK);
}

/// A user holding `admin` only through a group; returns (their token, their id) and the group's id.
async fn admin_through_group(app: &TestApp, username: &str) -> ((String, String), String) {
    let token = app.user_with_roles(username, &[]).await;
    let id = app.user_id(&token).await;
    let group = app.post("/api/v1/groups", &app.admin_token, json!({"name": "admins", "roles": ["admin"]})).await;
    let group = group.body["id"].as_str().unwrap().to_owned();
    let r = app.put(&format!("/api/v1/groups/{group}/members/{id}"), &app.admin_token, json!(null)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    ((token, id), group)
}

#[tokio::test]
async fn the_last_administrator_cannot_be_removed_through_their_group_either() {
    let app = spawn_app().await;
    let ((deputy, deputy_id), group) = admin_through_group(&app, "deputy").await;
    let admin = app.user_id(&app.admin_token).await;
    let r = app.put(&format!("/api/v1/users/{admin}"), &app.admin_token, user_update(&["operator"], false)).await;
    assert_eq!(r.status, StatusCode::OK, "deputy is an administrator too: {}", r.body);

    // Now deputy is the only administrator, through the group alone.
    let attempts = [
        (Method::PUT, format!("/api/v1/users/{deputy_id}"), Some(user_update(&[], true))),
        (Method::DELETE, format!("/api/v1/groups/{group}/members/{deputy_id}"), None),
        (Method::PUT, format!("/api/v1/groups/{group}"), Some(json!({"name": "admins", "roles": ["viewer"]}))),
        (Method::DELETE, format!("/api/v1/groups/{group}"), None),
    ];
    for (method, path, body) in attempts {
        let r = app.send(method.clone(), &path, Some(&deputy), body).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{method} {path} would leave no administrator: {}", r.body);
        assert_eq!(app.get("/api/v1/users", &deputy).await.status, StatusCode::OK, "after {method} {path}");
    }
}

#[tokio::test]
async fn changing_your_own_password_needs_the_current_one_and_ends_your_other_sessions() {
    let app = spawn_app().await;
    let token = app.user_with_roles("pat", &[]).await;
    let new_password = "a-brand-new-password";
    let change = |current: &str, new: &str| {
        app.send(
            Method::PUT,
            "/api/v1/users/me/password",
            Some(&token),
            Some(json!({"current_password": current, "new_password": new})),
        )
    };

    let r = change("not-my-password", new_password).await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(r.field(), Some("current_password"));
    let r = change(USER_PASSWORD, "short").await;
    assert_eq!((r.status, r.field()), (StatusCode::UNPROCESSABLE_ENTITY, Some("new_password")));
    let other_session = app.sign_in("pat", USER_PASSWORD).await;

    assert_eq!(change(USER_PASSWORD, new_password).await.status, StatusCode::NO_CONTENT);
    let r = try_sign_in(&app, json!({"username": "pat", "password": USER_PASSWORD})).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    app.sign_in("pat", new_password).await;
    assert_eq!(app.get("/api/v1/users/me", &token).await.status, StatusCode::OK, "the session that changed it stays");
    let r = app.get("/api/v1/users/me", &other_session).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let record = &app.audit("action=user.password").await[0];
    assert!(!record.to_string().contains(new_password), "the audit never holds a password: {record}");
}

#[tokio::test]
async fn an_administrator_can_reset_a_password_which_ends_the_users_sessions() {
    let app = spawn_app().await;
    let token = app.user_with_roles("forgetful", &[]).await;
    let id = app.user_id(&token).await;
    let r = app
        .put(&format!("/api/v1/users/{id}/password"), &app.admin_token, json!({"new_password": "reset-by-admin-1"}))
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    app.sign_in("forgetful", "reset-by-admin-1").await;
    let r = app.get("/api/v1/users/me", &token).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn groups_can_be_created_renamed_filled_emptied_and_deleted() {
    let app = spawn_app().await;
    let token = app.user_with_roles("gina", &[]).await;
    let gina = app.user_id(&token).await;

    let r = app.post("/api/v1/groups", &app.admin_token, json!({"name": "ops", "description": "On call"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/groups/{id}");
    app.post("/api/v1/groups", &app.admin_token, json!({"name": "ops"}))
        .await
        .assert_error(StatusCode::CONFLICT, "conflict");
    let r = app.put(&path, &app.admin_token, json!({"name": "operations", "roles": ["operator"]})).await;
    assert_eq!((r.body["name"].as_str(), &r.body["roles"]), (Some("operations"), &json!(["operator"])), "{}", r.body);
    assert_eq!(r.body["description"], "", "an update replaces every field");

    let member = format!("{path}/members/{gina}");
    for _ in 0..2 {
        let r = app.put(&member, &app.admin_token, json!(null)).await;
        assert_eq!(r.body["members"], json!([gina]), "{}", r.body);
    }
    assert_eq!(
        app.audit("action=group.add_member").await.len(),
        1,
        "adding a member twice changes nothing the second time"
    );
    assert_eq!(app.get("/api/v1/users/me", &token).await.body["effective_roles"], json!(["operator"]));
    assert_eq!(app.get("/api/v1/groups?q=OPER", &token).await.body["total"], 1);

    let r = app.delete(&member, &app.admin_token).await;
    assert_eq!(r.body["members"], json!([]), "{}", r.body);
    app.post("/api/v1/cis", &token, json!({"kind": "region", "name": "eu"}))
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");
    app.put(&member, &app.admin_token, json!(null)).await;
    assert_eq!(app.delete(&path, &app.admin_token).await.status, StatusCode::NO_CONTENT);
    app.get(&path, &app.admin_token).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        app.get("/api/v1/users/me", &token).await.body["effective_roles"],
        json!([]),
        "a deleted group confers nothing"
    );
}
