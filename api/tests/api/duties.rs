//! Separation of duties over the API: nobody pushes a change through alone.

use crate::changes::{change, world};
use axum::http::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_requester_cannot_move_someone_elses_change() {
    let w = world().await;
    let other = w.app.user_with_roles("rob", &["requester"]).await;
    let c = w.app.create_change(&w.requester, change("normal", "patch", json!([]))).await;
    let id = c.body["id"].as_str().unwrap();
    let r = w.app.change_event(id, &other, "cancel").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(w.app.change_event(id, &other, "submit").await.status, StatusCode::FORBIDDEN);
    assert_eq!(w.app.change_event(id, &w.requester, "submit").await.status, StatusCode::OK);
    assert_eq!(w.app.change_event(id, &w.manager, "cancel").await.status, StatusCode::OK, "a change manager may");
}

#[tokio::test]
async fn a_standard_change_must_be_low_risk() {
    let w = world().await;
    let payments = w.app.ci(json!({"kind": "service", "name": "payments", "criticality": "critical"})).await;
    let mut risky = change("standard", "drain", json!([{"op": "evacuate", "host_id": w.host}]));
    risky["ci_ids"] = json!([payments]);
    let r = w.app.create_change(&w.requester, risky).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.body["error"]["details"]["field"], "kind");
    let small = change("standard", "stop", json!([{"op": "stop", "vm_id": w.vm}]));
    assert_eq!(w.app.create_change(&w.requester, small).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn whoever_wrote_a_revision_cannot_approve_it() {
    let w = world().await;
    let editor = w.app.user_with_roles("edna", &["change-manager", "approver"]).await;
    w.app.join_group("change-approvers", &editor).await;
    let c = w.app.create_change(&w.requester, change("normal", "patch", json!([]))).await;
    let id = c.body["id"].as_str().unwrap();
    w.app.change_event(id, &w.requester, "submit").await;
    w.app.change_event(id, &w.manager, "assess").await;
    w.app.change_event(id, &w.manager, "request_approval").await;
    let mut edited = change("normal", "patch, rewritten", json!([]));
    edited["revision"] = 1.into();
    let r = w.app.put(&format!("/api/v1/changes/{id}"), &editor, edited).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["revised_by_id"], w.app.user_id(&editor).await);

    let vote = w.app.vote(id, &editor, "approve", None).await;
    assert_eq!(vote.status, StatusCode::FORBIDDEN, "{}", vote.body);
}

#[tokio::test]
async fn a_review_belongs_to_closing() {
    let w = world().await;
    let c = w.app.create_change(&w.requester, change("normal", "patch", json!([]))).await;
    let id = c.body["id"].as_str().unwrap();
    let r = w
        .app
        .post(&format!("/api/v1/changes/{id}/events"), &w.requester, json!({"event": "submit", "review": "fine"}))
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    assert_eq!(r.body["error"]["details"]["field"], "review");
}

#[tokio::test]
async fn a_requester_may_reopen_or_close_only_an_incident_they_reported() {
    let w = world().await;
    let other = w.app.user_with_roles("rob", &["requester"]).await;
    let reported = w
        .app
        .post("/api/v1/incidents", &w.requester, json!({"title": "slow", "impact": "low", "urgency": "low"}))
        .await;
    let id = reported.body["id"].as_str().unwrap();
    let me = w.app.user_id(&w.operator).await;
    let events = format!("/api/v1/incidents/{id}/events");
    w.app.post(&events, &w.operator, json!({"event": "assign", "assignee_id": me})).await;
    w.app.post(&events, &w.operator, json!({"event": "resolve", "comment": "tuned"})).await;

    let r = w.app.post(&events, &other, json!({"event": "close"})).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(w.app.post(&events, &w.requester, json!({"event": "close"})).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_vote_on_a_revision_that_was_edited_since_is_refused() {
    let w = world().await;
    let approver = w.app.user_with_roles("petra", &["approver"]).await;
    w.app.join_group("change-approvers", &approver).await;
    let c = w.app.create_change(&w.requester, change("normal", "patch", json!([]))).await;
    let id = c.body["id"].as_str().unwrap();
    for (who, event) in [(&w.requester, "submit"), (&w.manager, "assess"), (&w.manager, "request_approval")] {
        w.app.change_event(id, who, event).await;
    }
    w.app.put(&format!("/api/v1/changes/{id}"), &w.requester, change("normal", "patch, wider", json!([]))).await;

    let votes = format!("/api/v1/changes/{id}/approvals");
    let stale = w.app.post(&votes, &approver, json!({"decision": "approve", "revision": 1})).await;
    assert_eq!(stale.status, StatusCode::CONFLICT, "{}", stale.body);
    let fresh = w.app.post(&votes, &approver, json!({"decision": "approve", "revision": 2})).await;
    assert_eq!(fresh.status, StatusCode::OK, "{}", fresh.body);
}
