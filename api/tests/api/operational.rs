//! What probes, scrapers and API clients rely on: health, readiness, metrics, request ids and the
//! OpenAPI document.

use crate::support::spawn_app;
use axum::http::{header, Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn health_and_readiness_answer_without_credentials() {
    let app = spawn_app().await;

    let health = app.send(Method::GET, "/healthz", None, None).await;
    let ready = app.send(Method::GET, "/readyz", None, None).await;

    assert_eq!((health.status, &health.body), (StatusCode::OK, &json!({"status": "ok"})));
    assert_eq!((ready.status, &ready.body), (StatusCode::OK, &json!({"status": "ready", "database": "ok"})));
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = spawn_app().await;
    app.db.close().await;

    let ready = app.send(Method::GET, "/readyz", None, None).await;

    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE, "{}", ready.body);
    assert_eq!(ready.body["database"], "unreachable");
    assert_eq!(app.send(Method::GET, "/healthz", None, None).await.status, StatusCode::OK, "alive all the same");
}

#[tokio::test]
async fn metrics_count_requests_by_route_template_never_by_raw_id() {
    let app = spawn_app().await;
    let id = app.ci(json!({"kind": "region", "name": "eu"})).await;
    for _ in 0..3 {
        assert_eq!(app.get(&format!("/api/v1/cis/{id}"), &app.admin_token).await.status, StatusCode::OK);
    }
    let missing = "11111111-2222-3333-4444-555555555555";
    app.get(&format!("/api/v1/cis/{missing}"), &app.admin_token).await;
    app.get("/no/such/secret-path", &app.admin_token).await;

    let r = app.send(Method::GET, "/metrics", None, None).await;

    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/plain"));
    let text = r.text();
    for line in [
        r#"tollgate_http_requests_total{method="GET",route="/api/v1/cis/{id}",status="200"} 3"#,
        r#"tollgate_http_requests_total{method="GET",route="/api/v1/cis/{id}",status="404"} 1"#,
        r#"tollgate_http_requests_total{method="POST",route="/api/v1/cis",status="201"} 1"#,
        r#"tollgate_http_requests_total{method="GET",route="unmatched",status="404"} 1"#,
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
    }
    assert!(text.contains("tollgate_http_request_duration_seconds_bucket"), "{text}");
    assert!(text.contains(&format!("tollgate_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"))), "{text}");
    for raw in [id.as_str(), missing, "secret-path"] {
        assert!(!text.contains(raw), "a raw path or id leaked into the metrics: {raw}");
    }
}

#[tokio::test]
async fn metrics_show_the_fleet_s_open_incidents_changes_approvals_and_points_written() {
    let app = spawn_app().await;
    let operator = app.user_with_roles("otto", &["operator"]).await;
    let requester = app.user_with_roles("rita", &["requester"]).await;
    for (impact, urgency) in [("high", "high"), ("high", "high"), ("low", "low")] {
        let r =
            app.post("/api/v1/incidents", &operator, json!({"title": "t", "impact": impact, "urgency": urgency})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let ci = app.ci(json!({"kind": "service", "name": "billing"})).await;
    let change = json!({"kind": "normal", "title": "t", "ci_ids": [ci],
        "window_start": "2030-01-01T10:00:00Z", "window_end": "2030-01-01T11:00:00Z"});
    assert_eq!(app.create_change(&requester, change).await.status, StatusCode::CREATED);
    let write = app.send_bytes(Method::POST, "/api/v2/write", Some(&operator), None, "m a=1,b=2,s=\"x\" 1\n").await;
    assert_eq!(write.status, StatusCode::NO_CONTENT, "{}", write.body);

    let text = app.send(Method::GET, "/metrics", None, None).await.text();
    for line in [
        r#"tollgate_incidents_open{priority="P1"} 2"#,
        r#"tollgate_incidents_open{priority="P2"} 0"#,
        r#"tollgate_incidents_open{priority="P5"} 1"#,
        r#"tollgate_changes{state="draft"} 1"#,
        "tollgate_approvals_pending 0",
        "tollgate_metric_values_written_total 2",
        "tollgate_metric_string_fields_skipped_total 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
    }
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_client_supplied_one_is_kept() {
    let app = spawn_app().await;
    let a = app.send(Method::GET, "/healthz", None, None).await.request_id();
    let b = app.get("/api/v1/nowhere", &app.admin_token).await.request_id();
    assert!(!a.is_empty() && a != b, "{a} {b}");

    let req = axum::http::Request::builder()
        .method(Method::POST)
        .uri("/api/v1/cis")
        .header(header::AUTHORIZATION, format!("Bearer {}", app.admin_token))
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-request-id", "change-4711")
        .body(axum::body::Body::from(json!({"kind": "region", "name": "eu"}).to_string()))
        .unwrap();
    let r = app.send_raw(req).await;

    assert_eq!((r.status, r.request_id().as_str()), (StatusCode::CREATED, "change-4711"));
    assert_eq!(app.audit("request_id=change-4711").await.len(), 1);
}

#[tokio::test]
async fn the_openapi_document_is_3_1_with_bearer_auth_and_documents_every_error() {
    let app = spawn_app().await;

    let doc = app.openapi().await;

    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1."), "{}", doc["openapi"]);
    let bearer = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!((bearer["type"].as_str(), bearer["scheme"].as_str()), (Some("http"), Some("bearer")), "{bearer}");
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        // The InfluxDB-compatible write API keeps InfluxDB's path.
        assert!(path.starts_with("/api/v1/") || path == "/api/v2/write", "{path}");
        for (method, op) in item.as_object().unwrap() {
            if !["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                continue;
            }
            let responses = op["responses"].as_object().unwrap();
            for status in ["400", "404", "422", "500"] {
                assert!(responses.contains_key(status), "{method} {path} does not document {status}");
            }
            if op.get("security").is_some() {
                assert!(responses.contains_key("401") && responses.contains_key("403"), "{method} {path}");
            }
            for (status, response) in responses {
                if let Some(reference) = response["$ref"].as_str() {
                    let name = reference.trim_start_matches("#/components/responses/");
                    assert!(doc["components"]["responses"][name].is_object(), "{method} {path} {status}: {reference}");
                }
            }
            assert!(op["operationId"].is_string() && op["summary"].is_string(), "{method} {path}");
            operations += 1;
        }
    }
    assert!(operations >= 20, "{operations}");
    let served = app.send(Method::GET, "/api/v1/openapi.json", None, None).await;
    assert_eq!(served.headers[header::CONTENT_TYPE], "application/json");
}

#[tokio::test]
async fn the_served_document_is_the_one_the_binary_prints() {
    let app = spawn_app().await;
    let printed = serde_json::to_value(tollgate_api::api_doc()).unwrap();
    assert_eq!(app.openapi().await, printed);
}
