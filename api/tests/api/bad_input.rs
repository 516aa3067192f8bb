//! Bad input — malformed JSON, wrong types, over-long strings, unknown fields, unknown ids, bad query
//! values — gets a 4xx in the one error shape, never a panic or a 500.

use crate::support::{spawn_app, TestApp, TestResponse, USER_PASSWORD};
use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

const MISSING_ID: &str = "00000000-0000-0000-0000-000000000000";

/// An existing region, and for each endpoint that takes a body: its method, path and a valid body.
async fn bodies(app: &TestApp) -> Vec<(Method, String, Value)> {
    let region = app.ci(json!({"kind": "region", "name": "eu"})).await;
    let service = app.ci(json!({"kind": "service", "name": "shop"})).await;
    vec![
        (Method::POST, "/api/v1/cis".into(), json!({"kind": "region", "name": "us"})),
        (Method::PUT, format!("/api/v1/cis/{region}"), json!({"kind": "region", "name": "eu-west"})),
        (Method::POST, "/api/v1/users".into(), json!({"username": "carol", "password": USER_PASSWORD})),
        (Method::POST, "/api/v1/groups".into(), json!({"name": "ops"})),
        (
            Method::POST,
            "/api/v1/relations".into(),
            json!({"kind": "depends-on", "source_id": service, "target_id": region}),
        ),
        (Method::POST, "/api/v1/auth/tokens".into(), json!({"username": "admin", "password": "x"})),
    ]
}

async fn send_json(app: &TestApp, method: &Method, path: &str, body: &[u8]) -> TestResponse {
    let r = app.send_bytes(method.clone(), path, Some(&app.admin_token), Some("application/json"), body.to_vec()).await;
    assert!(!r.status.is_server_error(), "{method} {path} answered {}: {}", r.status, r.body);
    r
}

#[tokio::test]
async fn malformed_json_is_a_400_bad_request() {
    let app = spawn_app().await;
    for (method, path, valid) in bodies(&app).await {
        let trailing = format!("{valid} trailing");
        for body in [&b"{\"ki"[..], b"not json", b"", b"{'name': 'x'}", b"\xff\xfe{}", trailing.as_bytes()] {
            let r = send_json(&app, &method, &path, body).await;
            r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
        }
    }
}

#[tokio::test]
async fn values_of_the_wrong_type_are_a_422_that_names_the_field() {
    let app = spawn_app().await;
    let cases = [
        ("/api/v1/cis", json!({"kind": "host", "name": "h", "vcpus": "four"}), "vcpus"),
        ("/api/v1/cis", json!({"kind": "region", "name": 5}), "name"),
        ("/api/v1/cis", json!({"kind": "spaceship", "name": "s"}), "kind"),
        ("/api/v1/users", json!({"username": "x", "password": 123_456_789_012_345_u64}), "password"),
        ("/api/v1/users", json!({"username": "x", "password": USER_PASSWORD, "roles": ["pope"]}), "roles"),
        ("/api/v1/groups", json!({"name": "g", "roles": "admin"}), "roles"),
        ("/api/v1/relations", json!({"kind": "runs-on", "source_id": 1, "target_id": 2}), "source_id"),
        ("/api/v1/auth/tokens", json!({"username": "admin", "password": "p", "ttl_secs": -5}), "ttl_secs"),
    ];
    for (path, body, field) in cases {
        let r = app.post(path, &app.admin_token, body.clone()).await;
        r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "POST {path} {body}: the message should name {field}: {message}");
        let named = r.body["error"]["details"]["field"].as_str().unwrap_or_default();
        assert!(named.starts_with(field), "POST {path} {body}: details.field should be {field}: {}", r.body);
    }
    let r = app.post("/api/v1/cis", &app.admin_token, json!({"kind": "region"})).await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(r.body["error"]["details"]["field"], "name", "a missing field is named too: {}", r.body);
    for body in [json!([]), json!(null), json!("region"), json!(42)] {
        let r = app.post("/api/v1/cis", &app.admin_token, body).await;
        r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    }
}

#[tokio::test]
async fn over_long_text_is_a_422_naming_the_field() {
    let app = spawn_app().await;
    let region = app.ci(json!({"kind": "region", "name": "eu"})).await;
    let long_name = "n".repeat(129);
    let long_text = "d".repeat(5000);
    let cases = [
        (Method::POST, "/api/v1/cis".to_owned(), json!({"kind": "region", "name": long_name}), "name"),
        (
            Method::POST,
            "/api/v1/cis".to_owned(),
            json!({"kind": "region", "name": "r", "description": long_text}),
            "description",
        ),
        (Method::PUT, format!("/api/v1/cis/{region}"), json!({"kind": "region", "name": long_name}), "name"),
        (
            Method::POST,
            "/api/v1/users".to_owned(),
            json!({"username": "u".repeat(65), "password": USER_PASSWORD}),
            "username",
        ),
        (Method::POST, "/api/v1/users".to_owned(), json!({"username": "u", "password": "p".repeat(300)}), "password"),
        (
            Method::POST,
            "/api/v1/users".to_owned(),
            json!({"username": "u", "display_name": long_name, "password": USER_PASSWORD}),
            "display_name",
        ),
        (Method::POST, "/api/v1/groups".to_owned(), json!({"name": long_name}), "name"),
        (Method::POST, "/api/v1/groups".to_owned(), json!({"name": "g", "description": long_text}), "description"),
        (
            Method::POST,
            "/api/v1/auth/tokens".to_owned(),
            json!({"username": "admin", "password": crate::support::ADMIN_PASSWORD, "name": long_name}),
            "name",
        ),
    ];
    for (method, path, body, field) in cases {
        let r = app.send(method.clone(), &path, Some(&app.admin_token), Some(body)).await;
        r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(r.field(), Some(field), "{method} {path}: {}", r.body);
    }
    // The limits themselves are allowed.
    let r = app.post("/api/v1/cis", &app.admin_token, json!({"kind": "region", "name": "n".repeat(128)})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    // Signing in with an over-long username or password is simply a failed sign-in.
    for (username, password) in [("u".repeat(65), USER_PASSWORD.to_owned()), ("admin".to_owned(), "p".repeat(300))] {
        let r = app.send(
            Method::POST,
            "/api/v1/auth/tokens",
            None,
            Some(json!({"username": username, "password": password})),
        );
        r.await.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

#[tokio::test]
async fn unknown_fields_are_a_422_naming_the_field() {
    let app = spawn_app().await;
    for (method, path, mut body) in bodies(&app).await {
        body["colour"] = json!("blue");
        let r = app.send(method.clone(), &path, Some(&app.admin_token), Some(body)).await;
        r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert!(r.body["error"]["message"].as_str().unwrap().contains("colour"), "{method} {path}: {}", r.body);
    }
}

#[tokio::test]
async fn an_unknown_id_in_the_path_is_a_404_not_found() {
    let app = spawn_app().await;
    let group = app.post("/api/v1/groups", &app.admin_token, json!({"name": "ops"})).await.body["id"].clone();
    let admin = app.user_id(&app.admin_token).await;
    let ci = json!({"kind": "region", "name": "r"});
    let user = json!({"display_name": "X", "roles": [], "disabled": false});
    let password = json!({"new_password": USER_PASSWORD});
    let m = MISSING_ID;
    let cases = [
        (Method::GET, format!("/api/v1/cis/{m}"), None),
        (Method::PUT, format!("/api/v1/cis/{m}"), Some(ci)),
        (Method::DELETE, format!("/api/v1/cis/{m}"), None),
        (Method::GET, format!("/api/v1/cis/{m}/impact"), None),
        (Method::GET, "/api/v1/cis/not-even-a-uuid".to_owned(), None),
        (Method::GET, format!("/api/v1/relations/{m}"), None),
        (Method::DELETE, format!("/api/v1/relations/{m}"), None),
        (Method::GET, format!("/api/v1/users/{m}"), None),
        (Method::PUT, format!("/api/v1/users/{m}"), Some(user)),
        (Method::PUT, format!("/api/v1/users/{m}/password"), Some(password)),
        (Method::GET, format!("/api/v1/groups/{m}"), None),
        (Method::PUT, format!("/api/v1/groups/{m}"), Some(json!({"name": "x"}))),
        (Method::DELETE, format!("/api/v1/groups/{m}"), None),
        (Method::PUT, format!("/api/v1/groups/{m}/members/{admin}"), None),
        (Method::PUT, format!("/api/v1/groups/{}/members/{m}", group.as_str().unwrap()), None),
        (Method::DELETE, format!("/api/v1/auth/tokens/{m}"), None),
    ];
    for (method, path, body) in cases {
        let r = app.send(method.clone(), &path, Some(&app.admin_token), body).await;
        r.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
}

#[tokio::test]
async fn an_unknown_id_in_the_body_is_a_422_naming_the_field() {
    let app = spawn_app().await;
    let service = app.ci(json!({"kind": "service", "name": "shop"})).await;
    let m = MISSING_ID;
    let vm = |extra: Value| {
        let mut b = json!({"kind": "vm", "name": "vm1", "vcpus": 2, "memory_mib": 2048, "disk_gib": 20});
        b.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        b
    };
    let cases = [
        ("/api/v1/cis", json!({"kind": "datacenter", "name": "dc", "parent_id": m}), "parent_id"),
        ("/api/v1/cis", json!({"kind": "datacenter", "name": "dc", "parent_id": service}), "parent_id"),
        ("/api/v1/cis", vm(json!({"service_id": m})), "service_id"),
        ("/api/v1/cis", vm(json!({"parent_id": m})), "parent_id"),
        ("/api/v1/relations", json!({"kind": "depends-on", "source_id": m, "target_id": service}), "source_id"),
        ("/api/v1/relations", json!({"kind": "depends-on", "source_id": service, "target_id": m}), "target_id"),
    ];
    for (path, body, field) in cases {
        let r = app.post(path, &app.admin_token, body.clone()).await;
        r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(r.field(), Some(field), "POST {path} {body}: {}", r.body);
    }
}

#[tokio::test]
async fn a_body_that_is_not_declared_as_json_is_a_415() {
    let app = spawn_app().await;
    let body = json!({"kind": "region", "name": "eu"}).to_string();
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded")] {
        let r = app.send_bytes(Method::POST, "/api/v1/cis", Some(&app.admin_token), content_type, body.clone()).await;
        r.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    }
    assert_eq!(app.get("/api/v1/cis", &app.admin_token).await.body["total"], 0, "nothing was created");
}

#[tokio::test]
async fn a_body_over_one_mebibyte_is_a_413() {
    let app = spawn_app().await;
    let huge = json!({"kind": "region", "name": "eu", "description": "x".repeat(1024 * 1024)});
    let r = app.post("/api/v1/cis", &app.admin_token, huge).await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    let huge = json!({"username": "admin", "password": "p".repeat(2 * 1024 * 1024)});
    let r = app.send(Method::POST, "/api/v1/auth/tokens", None, Some(huge)).await;
    r.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
}

#[tokio::test]
async fn bad_query_values_are_refused_with_a_4xx() {
    let app = spawn_app().await;
    let region = app.ci(json!({"kind": "region", "name": "eu"})).await;
    let cases = [
        ("/api/v1/cis?limit=0", StatusCode::UNPROCESSABLE_ENTITY, Some("limit")),
        ("/api/v1/cis?limit=501", StatusCode::UNPROCESSABLE_ENTITY, Some("limit")),
        ("/api/v1/cis?offset=1000000001", StatusCode::UNPROCESSABLE_ENTITY, Some("offset")),
        ("/api/v1/cis?limit=abc", StatusCode::BAD_REQUEST, None),
        ("/api/v1/cis?limit=-1", StatusCode::BAD_REQUEST, None),
        ("/api/v1/cis?limit=99999999999", StatusCode::BAD_REQUEST, None),
        ("/api/v1/cis?offset=-1", StatusCode::BAD_REQUEST, None),
        ("/api/v1/cis?kind=spaceship", StatusCode::BAD_REQUEST, None),
        ("/api/v1/cis?criticality=apocalyptic", StatusCode::BAD_REQUEST, None),
        ("/api/v1/cis?colour=blue", StatusCode::BAD_REQUEST, None),
        ("/api/v1/relations?kind=likes", StatusCode::BAD_REQUEST, None),
        ("/api/v1/users?disabled=maybe", StatusCode::BAD_REQUEST, None),
        ("/api/v1/users?role=pope", StatusCode::BAD_REQUEST, None),
        ("/api/v1/groups?limit=abc", StatusCode::BAD_REQUEST, None),
        ("/api/v1/audit?limit=0", StatusCode::UNPROCESSABLE_ENTITY, Some("limit")),
        ("/api/v1/audit?seq=1", StatusCode::BAD_REQUEST, None),
        ("/api/v1/auth/tokens?limit=0", StatusCode::UNPROCESSABLE_ENTITY, Some("limit")),
    ];
    for (path, status, field) in cases {
        let r = app.get(path, &app.admin_token).await;
        let code = if status == StatusCode::BAD_REQUEST { "bad_request" } else { "validation_failed" };
        r.assert_error(status, code);
        assert_eq!(r.field(), field, "{path}: {}", r.body);
    }
    let r = app.get(&format!("/api/v1/cis/{region}/impact?depth=deep"), &app.admin_token).await;
    r.assert_error(StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn an_unknown_route_is_a_404_in_the_error_shape() {
    let app = spawn_app().await;
    for path in ["/api", "/api/v2/cis", "/api/v1/spaceships", "/api/v1/cis/a/b/c", "/api/v1/cis/"] {
        let r = app.get(path, &app.admin_token).await;
        r.assert_error(StatusCode::NOT_FOUND, "not_found");
    }
    // The root is the web dashboard's front door.
    let r = app.get("/", &app.admin_token).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.headers["location"], "/inbox");
}

#[tokio::test]
async fn a_method_a_route_does_not_take_is_a_405_in_the_error_shape() {
    let app = spawn_app().await;
    let cases = [
        (Method::PATCH, "/api/v1/cis"),
        (Method::DELETE, "/api/v1/cis"),
        (Method::POST, "/api/v1/cis/x"),
        (Method::POST, "/api/v1/audit"),
        (Method::GET, "/api/v1/users/me/password"),
        (Method::POST, "/healthz"),
        (Method::DELETE, "/metrics"),
    ];
    for (method, path) in cases {
        let r = app.send(method.clone(), path, Some(&app.admin_token), Some(json!({}))).await;
        r.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    }
}
