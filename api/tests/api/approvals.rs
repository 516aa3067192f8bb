//! Approvals over the API: separation of duties, quorum under a policy an administrator puts, delegation as
//! the audit records it, and rejections that must say why.

use crate::changes::{at, change, stop, world};
use axum::http::StatusCode;
use serde_json::json;

#[tokio::test]
async fn a_requester_cannot_approve_their_own_change() {
    let w = world().await;
    w.app.join_group("change-approvers", &w.requester).await;
    let peer = w.app.user_with_roles("petra", &["viewer"]).await;
    w.app.join_group("change-approvers", &peer).await;
    let id = w.request(change("normal", "stop db", stop(&w.vm))).await;
    w.to_approval(&id).await;

    let r = w.app.vote(&id, &w.requester, "approve", None).await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let viewer = w.app.user_with_roles("vic", &["viewer"]).await;
    w.app.vote(&id, &viewer, "approve", None).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let status = w.app.get(&format!("/api/v1/changes/{id}/approvals"), &w.requester).await;
    assert_eq!(status.body["stages"][0]["approvers"], json!(["petra"]), "{}", status.body);
    assert_eq!(status.body["votes"], json!([]));
    assert_eq!(w.state(&id).await, "awaiting_approval");
}

#[tokio::test]
async fn under_a_quorum_of_two_one_approval_is_not_enough_and_nobody_counts_twice() {
    let w = world().await;
    let policy = json!({"name": "normal-low-risk", "kinds": ["normal"], "min_risk": "low", "max_risk": "low",
        "stages": [{"name": "two peers", "groups": ["change-approvers"], "rule": {"quorum": 2}}]});
    let path = "/api/v1/approval-policies/normal-low-risk";
    w.app.put(path, &w.manager, policy.clone()).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let mismatch = w.app.put("/api/v1/approval-policies/other", &w.app.admin_token, policy.clone()).await;
    assert_eq!(mismatch.field(), Some("name"));
    let put = w.app.put(path, &w.app.admin_token, policy).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let listed = w.app.get("/api/v1/approval-policies", &w.requester).await;
    let low = listed.body["items"].as_array().unwrap().iter().find(|p| p["name"] == "normal-low-risk").unwrap().clone();
    assert_eq!(low["stages"][0]["rule"], json!({"quorum": 2}));

    let petra = w.app.user_with_roles("petra", &["viewer"]).await;
    let paul = w.app.user_with_roles("paul", &["viewer"]).await;
    w.app.join_group("change-approvers", &petra).await;
    w.app.join_group("change-approvers", &paul).await;
    let id = w.request(change("normal", "stop db", stop(&w.vm))).await;
    w.to_approval(&id).await;

    let first = w.app.vote(&id, &petra, "approve", None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(
        (first.body["policy"].as_str(), first.body["complete"].as_bool()),
        (Some("normal-low-risk"), Some(false))
    );
    assert_eq!(first.body["stages"][0]["approvals"], 1);
    assert_eq!(w.state(&id).await, "awaiting_approval");
    w.app.vote(&id, &petra, "approve", None).await.assert_error(StatusCode::CONFLICT, "conflict");
    let second = w.app.vote(&id, &paul, "approve", None).await;
    assert_eq!(second.body["complete"], true, "{}", second.body);
    assert_eq!(w.state(&id).await, "approved");
}

#[tokio::test]
async fn a_delegates_vote_is_recorded_on_behalf_of_the_approver_who_delegated() {
    let w = world().await;
    let petra = w.app.user_with_roles("petra", &["viewer"]).await;
    w.app.join_group("change-approvers", &petra).await;
    let dave = w.app.user_with_roles("dave", &["approver"]).await;
    let dave_id = w.app.user_id(&dave).await;
    let body = json!({"to_user_id": dave_id, "starts_at": at(-1), "ends_at": at(24)});
    let d = w.app.post("/api/v1/delegations", &petra, body).await;
    assert_eq!(d.status, StatusCode::CREATED, "{}", d.body);
    let mine = w.app.get("/api/v1/delegations", &dave).await;
    assert_eq!(mine.body["items"].as_array().unwrap().len(), 1, "{}", mine.body);
    let id = w.request(change("normal", "stop db", stop(&w.vm))).await;
    w.to_approval(&id).await;

    let r = w.app.vote(&id, &dave, "approve", None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["votes"][0]["voter"].as_str(), r.body["votes"][0]["counted_as"].as_str()),
        (Some("dave"), Some("petra"))
    );
    assert_eq!(w.state(&id).await, "approved");

    let timeline = w.app.get(&format!("/api/v1/changes/{id}/timeline"), &w.requester).await;
    let items = timeline.body["items"].as_array().unwrap();
    let vote = items.iter().find(|r| r["action"] == "approval.vote").unwrap_or_else(|| panic!("{}", timeline.body));
    assert_eq!((vote["actor"].as_str(), vote["on_behalf_of"].as_str()), (Some("dave"), Some("petra")));
    let actions: Vec<&str> = items.iter().map(|r| r["action"].as_str().unwrap()).collect();
    assert_eq!(actions.first(), Some(&"change.create"), "the timeline is oldest first");
    assert_eq!(actions.last(), Some(&"change.approve"));
    let audited = w.app.audit(&format!("entity_id={id}&action=approval.vote")).await;
    assert_eq!(audited[0]["on_behalf_of"], "petra");
}

#[tokio::test]
async fn a_rejection_without_a_comment_is_refused_and_one_with_a_comment_rejects_the_change() {
    let w = world().await;
    let petra = w.app.user_with_roles("petra", &["viewer"]).await;
    w.app.join_group("change-approvers", &petra).await;
    let id = w.request(change("normal", "stop db", stop(&w.vm))).await;
    w.to_approval(&id).await;

    let r = w.app.vote(&id, &petra, "reject", None).await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(r.field(), Some("comment"));
    let r = w.app.vote(&id, &petra, "veto", Some("no")).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
    let r = w.app.vote(&id, &petra, "reject", Some("no tested rollback")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(w.state(&id).await, "rejected");
    let r = w.app.change_event(&id, &w.manager, "schedule").await;
    r.assert_error(StatusCode::CONFLICT, "transition_not_allowed");
}
