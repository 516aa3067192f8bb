//! Alert rules through the API: kept by operators, read by anyone who reads the fleet, checked on the way in.

use crate::support::*;
use axum::http::StatusCode;
use serde_json::{json, Value};

fn cpu_rule(name: &str) -> Value {
    json!({
        "name": name,
        "measurement": "cpu",
        "field": "usage_idle",
        "scope": {"cluster": "eu-1"},
        "condition": {"kind": "below", "threshold": 10.0, "recovery": 25.0},
        "for_secs": 60,
        "severity": "critical"
    })
}

#[tokio::test]
async fn an_operator_adds_reads_edits_and_deletes_a_rule_and_each_step_is_audited() {
    let app = spawn_app().await;
    let operator = app.user_with_roles("otto", &["operator"]).await;
    let viewer = app.user_with_roles("vera", &["viewer"]).await;

    let created = app.post("/api/v1/alert-rules", &operator, cpu_rule("cpu starved")).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.body["condition"], json!({"kind": "below", "threshold": 10.0, "recovery": 25.0}));
    assert_eq!((created.body["quiet_secs"].as_u64(), created.body["enabled"].as_bool()), (Some(300), Some(true)));

    let read = app.get(&format!("/api/v1/alert-rules/{id}"), &viewer).await;
    assert_eq!(read.body, created.body);
    let listed = app.get("/api/v1/alert-rules?enabled=true", &viewer).await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);

    let mut edit = cpu_rule("cpu starved");
    edit["condition"] = json!({"kind": "silent", "intervals": 3, "interval_secs": 10});
    edit["enabled"] = json!(false);
    edit["revision"] = json!(1);
    let updated = app.put(&format!("/api/v1/alert-rules/{id}"), &operator, edit.clone()).await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!((updated.body["revision"].as_i64(), updated.body["enabled"].as_bool()), (Some(2), Some(false)));
    assert!(app.get("/api/v1/alert-rules?enabled=true", &viewer).await.body["items"].as_array().unwrap().is_empty());
    app.put(&format!("/api/v1/alert-rules/{id}"), &operator, edit).await.assert_error(StatusCode::CONFLICT, "conflict");

    let deleted = app.delete(&format!("/api/v1/alert-rules/{id}"), &operator).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.get(&format!("/api/v1/alert-rules/{id}"), &viewer).await.assert_error(StatusCode::NOT_FOUND, "not_found");
    let actions: Vec<String> =
        app.audit(&format!("entity_id={id}")).await.iter().map(|r| r["action"].as_str().unwrap().to_owned()).collect();
    assert_eq!(actions, ["alert_rule.delete", "alert_rule.update", "alert_rule.create"]);
}

#[tokio::test]
async fn a_rule_that_cannot_work_is_refused_naming_what_is_wrong() {
    let app = spawn_app().await;
    let operator = app.user_with_roles("otto", &["operator"]).await;
    let with = |key: &str, value: Value| {
        let mut r = cpu_rule("r");
        r[key] = value;
        r
    };
    let cases = [
        (with("condition", json!({"kind": "below", "threshold": 10.0, "recovery": 5.0})), "condition"),
        (with("condition", json!({"kind": "above", "threshold": 90.0, "recovery": 95.0})), "condition"),
        (with("condition", json!({"kind": "silent", "intervals": 0, "interval_secs": 10})), "condition"),
        (with("condition", json!({"kind": "sideways", "threshold": 1.0})), "condition.kind"),
        (with("for_secs", json!(604_801)), "for_secs"),
        (with("measurement", json!("")), "measurement"),
        (with("field", json!("a\nb")), "field"),
        (with("name", json!("")), "name"),
        (with("severity", json!("apocalyptic")), "severity"),
    ];
    for (body, field) in cases {
        let r = app.post("/api/v1/alert-rules", &operator, body.clone()).await;
        r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(r.field(), Some(field), "{body}: {}", r.body);
    }
    assert_eq!(app.post("/api/v1/alert-rules", &operator, cpu_rule("taken")).await.status, StatusCode::CREATED);
    app.post("/api/v1/alert-rules", &operator, cpu_rule("taken")).await.assert_error(StatusCode::CONFLICT, "conflict");
}
