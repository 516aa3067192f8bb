//! Notifications: raised by the processes, read by their recipients.

use crate::support::spawn_app;
use axum::http::StatusCode;
use serde_json::{json, Value};

fn window() -> (String, String) {
    let now = time::OffsetDateTime::now_utc();
    let fmt = |d: time::OffsetDateTime| d.format(&time::format_description::well_known::Rfc3339).unwrap();
    (fmt(now - time::Duration::hours(1)), fmt(now + time::Duration::hours(4)))
}

fn subjects(page: &Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|n| n["subject"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn approvers_are_asked_and_the_requester_hears_the_decision() {
    let app = spawn_app().await;
    let requester = app.user_with_roles("rita", &["requester"]).await;
    let manager = app.user_with_roles("manny", &["change-manager"]).await;
    let approver = app.user_with_roles("petra", &["approver"]).await;
    app.join_group("change-approvers", &approver).await;
    let (start, end) = window();
    let change = app
        .create_change(
            &requester,
            json!({"kind": "normal", "title": "patch", "window_start": start, "window_end": end}),
        )
        .await;
    let id = change.body["id"].as_str().unwrap().to_owned();
    app.change_event(&id, &requester, "submit").await;
    app.change_event(&id, &manager, "assess").await;
    app.change_event(&id, &manager, "request_approval").await;

    let inbox = app.get("/api/v1/notifications?unread=true", &approver).await;
    assert_eq!(inbox.status, StatusCode::OK, "{}", inbox.body);
    assert_eq!(inbox.body["total"], 1);
    assert_eq!(inbox.body["items"][0]["kind"], "approval_requested");
    assert!(subjects(&inbox.body)[0].starts_with("Approval requested: CHG-"), "{}", inbox.body);
    let told = app.get("/api/v1/notifications", &requester).await;
    assert_eq!(subjects(&told.body).len(), 1, "the move to awaiting approval notifies; assessing does not");

    app.vote(&id, &approver, "approve", None).await;
    let news = app.get("/api/v1/notifications?unread=true", &requester).await;
    assert!(subjects(&news.body)[0].ends_with("awaiting_approval → approved"), "{}", news.body);

    let first = inbox.body["items"][0]["id"].as_str().unwrap();
    let read = app.post(&format!("/api/v1/notifications/{first}/read"), &approver, Value::Null).await;
    assert_eq!(read.status, StatusCode::NO_CONTENT);
    assert_eq!(app.get("/api/v1/notifications?unread=true", &approver).await.body["total"], 0);
    let not_yours = app.post(&format!("/api/v1/notifications/{first}/read"), &requester, Value::Null).await;
    assert_eq!(not_yours.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn an_assignee_hears_when_an_incident_is_given_to_them_by_someone_else() {
    let app = spawn_app().await;
    let lead = app.user_with_roles("lead", &["operator"]).await;
    let oncall = app.user_with_roles("oncall", &["operator"]).await;
    let oncall_id = app.user_id(&oncall).await;
    let incident = app
        .post("/api/v1/incidents", &lead, json!({"title": "disk full", "impact": "medium", "urgency": "high"}))
        .await;
    let id = incident.body["id"].as_str().unwrap();
    let assign = json!({"event": "assign", "assignee_id": oncall_id});
    assert_eq!(app.post(&format!("/api/v1/incidents/{id}/events"), &lead, assign).await.status, StatusCode::OK);

    let inbox = app.get("/api/v1/notifications", &oncall).await;
    assert_eq!(inbox.body["items"][0]["kind"], "incident_updated");
    assert_eq!(inbox.body["items"][0]["entity_id"], id);
    assert_eq!(app.get("/api/v1/notifications", &lead).await.body["total"], 0, "nobody is told of their own act");
}
