//! Incidents over the API: reporting and dedup, working one through its process, refusals as HTTP errors,
//! finding incidents, their timeline, safe edits, and links to changes. Time does not pass here (the app runs on the system
//! clock); SLA timers are the conformance suite's to test.

use crate::support::{spawn_app, TestApp, TestResponse};
use axum::http::StatusCode;
use serde_json::{json, Value};

fn report(title: &str, impact: &str, urgency: &str) -> Value {
    json!({"title": title, "impact": impact, "urgency": urgency})
}

async fn report_incident(app: &TestApp, token: &str, body: Value) -> TestResponse {
    app.post("/api/v1/incidents", token, body).await
}

/// Reports an incident that must open; returns its body.
async fn open_incident(app: &TestApp, token: &str, body: Value) -> Value {
    let r = report_incident(app, token, body.clone()).await;
    assert_eq!(r.status, StatusCode::CREATED, "report {body}: {}", r.body);
    r.body
}

async fn fire(app: &TestApp, token: &str, id: &str, body: Value) -> TestResponse {
    app.post(&format!("/api/v1/incidents/{id}/events"), token, body).await
}

/// Fires an event that must be accepted; returns the incident after it.
async fn fire_ok(app: &TestApp, token: &str, id: &str, body: Value) -> Value {
    let r = fire(app, token, id, body.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{body}: {}", r.body);
    r.body
}

/// The incidents `query` selects, read as admin.
async fn incidents(app: &TestApp, query: &str) -> Vec<Value> {
    let r = app.get(&format!("/api/v1/incidents?{query}"), &app.admin_token).await;
    assert_eq!(r.status, StatusCode::OK, "incidents?{query}: {}", r.body);
    r.body["items"].as_array().unwrap().clone()
}

fn titles(items: &[Value]) -> Vec<&str> {
    items.iter().map(|i| i["title"].as_str().unwrap()).collect()
}

#[tokio::test]
async fn a_report_opens_an_incident_and_a_repeat_with_its_key_updates_the_same_one() {
    let app = spawn_app().await;
    let ops = app.user_with_roles("oscar", &["operator"]).await;
    let vm = app.ci(json!({"kind": "vm", "name": "web-1", "vcpus": 2, "memory_mib": 4096, "disk_gib": 40})).await;
    let mut body = report("web-1 answers 502", "high", "medium");
    body["dedup_key"] = "alert-502".into();
    body["ci_ids"] = json!([vm]);

    let opened = report_incident(&app, &ops, body.clone()).await;

    assert_eq!(opened.status, StatusCode::CREATED, "{}", opened.body);
    let i = &opened.body;
    assert_eq!(
        (i["reference"].as_str(), i["state"].as_str(), i["priority"].as_i64()),
        (Some("INC-000001"), Some("new"), Some(2))
    );
    assert_eq!((i["reported_by"].as_str(), i["report_count"].as_i64()), (Some("oscar"), Some(1)));
    assert_eq!(i["ci_ids"], json!([vm]));
    assert_eq!((i["process"].as_str(), i["process_version"].as_i64()), (Some("incident"), Some(1)));
    body["impact"] = "high".into();
    body["urgency"] = "high".into();
    let again = report_incident(&app, &ops, body).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["id"], i["id"]);
    assert_eq!((again.body["report_count"].as_i64(), again.body["priority"].as_i64()), (Some(2), Some(1)));
    assert_eq!(incidents(&app, "").await.len(), 1);
}

#[tokio::test]
async fn a_report_with_an_unknown_level_or_ci_is_refused_and_opens_nothing() {
    let app = spawn_app().await;
    let ops = app.user_with_roles("oscar", &["operator"]).await;

    let bad_level = report_incident(&app, &ops, report("x", "severe", "high")).await;
    bad_level.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let mut unknown_ci = report("x", "high", "high");
    unknown_ci["ci_ids"] = json!(["no-such-ci"]);
    let r = report_incident(&app, &ops, unknown_ci).await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(r.field(), Some("ci_ids"));
    let empty_title = report_incident(&app, &ops, report("", "high", "high")).await;
    empty_title.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(empty_title.field(), Some("title"));
    let viewer = app.user_with_roles("vera", &["viewer"]).await;
    report_incident(&app, &viewer, report("x", "high", "high")).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert!(incidents(&app, "").await.is_empty());
}

#[tokio::test]
async fn an_operator_works_an_incident_from_new_to_closed() {
    let app = spawn_app().await;
    let ops = app.user_with_roles("oscar", &["operator"]).await;
    let me = app.user_id(&ops).await;
    let i = open_incident(&app, &ops, report("hv-001 is down", "high", "high")).await;
    let id = i["id"].as_str().unwrap();

    let assigned = fire_ok(&app, &ops, id, json!({"event": "assign", "assignee_id": me})).await;
    assert_eq!((assigned["state"].as_str(), assigned["assignee_id"].as_str()), (Some("assigned"), Some(me.as_str())));
    assert!(assigned["responded_at"].is_string());
    fire_ok(&app, &ops, id, json!({"event": "start_work"})).await;
    let pending = fire_ok(&app, &ops, id, json!({"event": "wait", "comment": "waiting for a spare PSU"})).await;
    assert_eq!((pending["state"].as_str(), pending["sla"]["paused"].as_bool()), (Some("pending"), Some(true)));
    let resumed = fire_ok(&app, &ops, id, json!({"event": "resume"})).await;
    assert_eq!((resumed["state"].as_str(), resumed["sla"]["paused"].as_bool()), (Some("in_progress"), Some(false)));
    let resolved = fire_ok(&app, &ops, id, json!({"event": "resolve", "comment": "PSU replaced"})).await;
    assert_eq!(resolved["state"], "resolved");
    assert!(resolved["resolved_at"].is_string());
    let closed = fire_ok(&app, &ops, id, json!({"event": "close"})).await;

    assert_eq!(closed["state"], "closed");
    let stored = app.get(&format!("/api/v1/incidents/{id}"), &ops).await;
    assert_eq!(stored.status, StatusCode::OK);
    assert_eq!(stored.body["state"], "closed");
    assert_eq!(stored.body["revision"], 7);
    assert_eq!(titles(&incidents(&app, "open=false").await), ["hv-001 is down"]);
    assert!(incidents(&app, "open=true").await.is_empty());
}

#[tokio::test]
async fn refused_events_answer_with_conflict_validation_or_forbidden() {
    let app = spawn_app().await;
    let ops = app.user_with_roles("oscar", &["operator"]).await;
    let viewer = app.user_with_roles("vera", &["viewer"]).await;
    let me = app.user_id(&ops).await;
    let i = open_incident(&app, &ops, report("db slow", "medium", "medium")).await;
    let id = i["id"].as_str().unwrap();

    let r = fire(&app, &ops, id, json!({"event": "close"})).await;
    r.assert_error(StatusCode::CONFLICT, "transition_not_allowed");
    assert_eq!(r.body["error"]["details"], json!({"event": "close", "state": "new"}));
    let r = fire(&app, &ops, id, json!({"event": "assign"})).await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(r.field(), Some("assignee_id"));
    let r = fire(&app, &ops, id, json!({"event": "teleport"})).await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(r.field(), Some("event"));
    let r = fire(&app, &viewer, id, json!({"event": "assign", "assignee_id": me})).await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(r.body["error"]["details"]["required_roles"], json!(["operator", "admin"]));
    fire_ok(&app, &ops, id, json!({"event": "assign", "assignee_id": me})).await;
    for comment in [json!(null), json!(""), json!("   ")] {
        let r = fire(&app, &ops, id, json!({"event": "resolve", "comment": comment})).await;
        r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        assert_eq!(r.field(), Some("comment"), "comment {comment}");
    }
    let missing = "00000000-0000-0000-0000-000000000000";
    fire(&app, &ops, missing, json!({"event": "assign", "assignee_id": me}))
        .await
        .assert_error(StatusCode::NOT_FOUND, "not_found");

    let after = app.get(&format!("/api/v1/incidents/{id}"), &ops).await.body;
    assert_eq!((after["state"].as_str(), after["revision"].as_i64()), (Some("assigned"), Some(2)));
    let events = app.audit(&format!("entity_id={id}")).await;
    assert_eq!(events.len(), 2, "the report and the one accepted event: {events:?}");
}

#[tokio::test]
async fn lists_filter_by_open_priority_text_and_major_and_put_the_most_urgent_first() {
    let app = spawn_app().await;
    let ops = app.user_with_roles("oscar", &["operator"]).await;
    let me = app.user_id(&ops).await;
    open_incident(&app, &ops, report("disk full on db-1", "low", "low")).await;
    let major = json!({"title": "Region outage", "impact": "high", "urgency": "high", "major": true});
    let outage = open_incident(&app, &ops, major).await;
    open_incident(&app, &ops, report("slow DISK on web-1", "medium", "medium")).await;
    open_incident(&app, &ops, report("certificate expires", "medium", "medium")).await;
    let id = outage["id"].as_str().unwrap();
    fire_ok(&app, &ops, id, json!({"event": "assign", "assignee_id": me})).await;
    fire_ok(&app, &ops, id, json!({"event": "resolve", "comment": "failed over"})).await;

    assert_eq!(
        titles(&incidents(&app, "").await),
        ["Region outage", "certificate expires", "slow DISK on web-1", "disk full on db-1"],
        "by priority, then newest first"
    );
    assert_eq!(
        titles(&incidents(&app, "open=true").await),
        ["certificate expires", "slow DISK on web-1", "disk full on db-1"]
    );
    assert_eq!(titles(&incidents(&app, "open=false").await), ["Region outage"]);
    assert_eq!(titles(&incidents(&app, "priority=3").await), ["certificate expires", "slow DISK on web-1"]);
    assert_eq!(titles(&incidents(&app, "q=disk").await), ["slow DISK on web-1", "disk full on db-1"]);
    assert_eq!(titles(&incidents(&app, "major=true").await), ["Region outage"]);
    assert_eq!(titles(&incidents(&app, "major=false&priority=5").await), ["disk full on db-1"]);
    assert_eq!(titles(&incidents(&app, "state=resolved").await), ["Region outage"]);
    let page = app.get("/api/v1/incidents?limit=1&offset=1", &ops).await;
    assert_eq!(
        (page.body["total"].as_i64(), titles(page.body["items"].as_array().unwrap())),
        (Some(4), vec!["certificate expires"])
    );
    app.get("/api/v1/incidents?priority=9", &ops).await.assert_error(StatusCode::BAD_REQUEST, "bad_request");
}

#[tokio::test]
async fn the_timeline_lists_what_happened_oldest_first_with_who_did_it() {
    let app = spawn_app().await;
    let ops = app.user_with_roles("oscar", &["operator"]).await;
    let reporter = app.user_with_roles("rita", &["requester"]).await;
    let viewer = app.user_with_roles("vera", &["viewer"]).await;
    let me = app.user_id(&ops).await;
    let i = open_incident(&app, &reporter, report("VPN drops", "medium", "high")).await;
    let id = i["id"].as_str().unwrap();
    fire_ok(&app, &ops, id, json!({"event": "assign", "assignee_id": me})).await;
    fire_ok(&app, &ops, id, json!({"event": "resolve", "comment": "MTU fixed"})).await;
    fire_ok(&app, &reporter, id, json!({"event": "close"})).await;

    let r = app.get(&format!("/api/v1/incidents/{id}/timeline"), &viewer).await;

    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["items"].as_array().unwrap();
    let seen: Vec<(&str, &str)> =
        items.iter().map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap())).collect();
    assert_eq!(
        seen,
        [
            ("incident.open", "rita"),
            ("incident.assign", "oscar"),
            ("incident.resolve", "oscar"),
            ("incident.close", "rita")
        ]
    );
    assert!(items.windows(2).all(|w| w[0]["seq"].as_i64() < w[1]["seq"].as_i64()));
    assert_eq!(items[2]["after"]["comment"], "MTU fixed");
    assert_eq!(r.body["total"], 4);
    let missing = "/api/v1/incidents/00000000-0000-0000-0000-000000000000/timeline";
    app.get(missing, &viewer).await.assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn an_edit_recomputes_the_priority_and_a_stale_revision_is_refused() {
    let app = spawn_app().await;
    let ops = app.user_with_roles("oscar", &["operator"]).await;
    let i = open_incident(&app, &ops, report("backups failing", "low", "low")).await;
    let path = format!("/api/v1/incidents/{}", i["id"].as_str().unwrap());
    let edit = |impact: &str, revision: i64| {
        json!({"title": "backups failing everywhere", "impact": impact, "urgency": "high", "major": false,
               "ci_ids": [], "revision": revision})
    };

    let edited = app.put(&path, &ops, edit("high", 1)).await;

    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    assert_eq!((edited.body["priority"].as_i64(), edited.body["revision"].as_i64()), (Some(1), Some(2)));
    assert_eq!(edited.body["title"], "backups failing everywhere");
    app.put(&path, &ops, edit("low", 1)).await.assert_error(StatusCode::CONFLICT, "conflict");
    assert_eq!(app.get(&path, &ops).await.body["priority"], 1);
    let requester = app.user_with_roles("rita", &["requester"]).await;
    app.put(&path, &requester, edit("low", 2)).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
}

#[tokio::test]
async fn an_incident_links_the_change_that_caused_it_and_the_one_that_fixed_it() {
    let app = spawn_app().await;
    let ops = app.user_with_roles("ops", &["operator"]).await;
    let incident = open_incident(&app, &ops, report("db down", "high", "high")).await;
    let id = incident["id"].as_str().unwrap();
    let now = time::OffsetDateTime::now_utc();
    let fmt = |d: time::OffsetDateTime| d.format(&time::format_description::well_known::Rfc3339).unwrap();
    let window = |title: &str| json!({"kind": "normal", "title": title, "window_start": fmt(now), "window_end": fmt(now + time::Duration::hours(2))});
    let cause = app.create_change(&ops, window("upgrade")).await.body["id"].as_str().unwrap().to_owned();
    let fix = app.create_change(&ops, window("roll back the upgrade")).await.body["id"].as_str().unwrap().to_owned();

    let path = format!("/api/v1/incidents/{id}/changes");
    let linked = app.post(&path, &ops, json!({"change_id": cause, "kind": "caused_by"})).await;
    assert_eq!(linked.status, StatusCode::OK, "{}", linked.body);
    let linked = app.post(&path, &ops, json!({"change_id": fix, "kind": "fixed_by"})).await;
    assert_eq!(
        linked.body["changes"],
        json!([{"change_id": cause, "kind": "caused_by"}, {"change_id": fix, "kind": "fixed_by"}])
    );
    let again = app.post(&path, &ops, json!({"change_id": fix, "kind": "fixed_by"})).await;
    assert_eq!(again.body["changes"].as_array().unwrap().len(), 2, "linking twice changes nothing");

    let unknown = app.post(&path, &ops, json!({"change_id": "nope", "kind": "fixed_by"})).await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown.body["error"]["details"]["field"], "change_id");

    let unlinked = app.delete(&format!("/api/v1/incidents/{id}/changes/caused_by/{cause}"), &ops).await;
    assert_eq!(unlinked.status, StatusCode::OK, "{}", unlinked.body);
    assert_eq!(unlinked.body["changes"], json!([{"change_id": fix, "kind": "fixed_by"}]));
    let gone = app.delete(&format!("/api/v1/incidents/{id}/changes/caused_by/{cause}"), &ops).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}
