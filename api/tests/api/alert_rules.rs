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

#[tokio::test]
async fn a_rule_in_trouble_shows_as_a_firing_alert_with_its_incident_and_in_the_metrics() {
    let app = spawn_app().await;
    let operator = app.user_with_roles("otto", &["operator"]).await;
    let viewer = app.user_with_roles("vera", &["viewer"]).await;
    let region = app.ci(json!({"kind": "region", "name": "eu"})).await;
    let dc = app.ci(json!({"kind": "datacenter", "name": "dc-1", "parent_id": region})).await;
    let cluster = app.ci(json!({"kind": "cluster", "name": "cl-1", "parent_id": dc})).await;
    let host = app
        .ci(json!({"kind": "host", "name": "hv-7", "parent_id": cluster, "hypervisor": "kvm", "vcpus": 8,
            "memory_mib": 8192, "disk_gib": 100}))
        .await;
    let rule = json!({"name": "cpu hot", "measurement": "cpu", "field": "usage_user",
        "condition": {"kind": "above", "threshold": 90.0, "recovery": 70.0}, "severity": "minor"});
    assert_eq!(app.post("/api/v1/alert-rules", &operator, rule).await.status, StatusCode::CREATED);
    assert_eq!(app.get("/api/v1/alerts", &viewer).await.body, json!([]));
    let write = app
        .send_bytes(axum::http::Method::POST, "/api/v2/write", Some(&operator), None, "cpu,host=hv-7 usage_user=97\n")
        .await;
    assert_eq!(write.status, StatusCode::NO_CONTENT, "{}", write.body);

    let policy = std::sync::Arc::new(tollgate_workflows::incident::IncidentPolicy::default());
    let mut evaluator = tollgate_workflows::alert::Evaluator::new(app.db.clone(), policy, Default::default());
    evaluator.round().await.unwrap();

    let alerts = app.get("/api/v1/alerts", &viewer).await;
    assert_eq!(alerts.status, StatusCode::OK);
    let alert = &alerts.body[0];
    assert_eq!((alert["state"].as_str(), alert["value"].as_f64()), (Some("firing"), Some(97.0)), "{alert}");
    assert_eq!((alert["rule_name"].as_str(), alert["tags"]["host"].as_str()), (Some("cpu hot"), Some("hv-7")));
    assert_eq!(alert["ci_id"].as_str(), Some(host.as_str()));
    let incident = app.get(&format!("/api/v1/incidents/{}", alert["incident_id"].as_str().unwrap()), &operator).await;
    assert_eq!(
        (incident.body["priority"].as_u64(), incident.body["ci_ids"][0].as_str()),
        (Some(3), Some(host.as_str()))
    );
    let text = app.send(axum::http::Method::GET, "/metrics", None, None).await.text();
    for line in [r#"tollgate_alerts{state="firing"} 1"#, r#"tollgate_alerts{state="pending"} 0"#] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
    }
    app.send(axum::http::Method::GET, "/api/v1/alerts", None, None)
        .await
        .assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}
