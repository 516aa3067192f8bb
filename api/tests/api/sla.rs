//! Timers over the API on a manual clock: an incident that misses its SLA targets is breached and escalated
//! once, a repeated report folds into it and the breached filter finds it; an approval stage that waits too
//! long is escalated once. The test runs the sweeps the server's background loop runs, then reads the result
//! over HTTP as a user would.

use crate::support::{spawn_app_with_clock, TestApp, USER_PASSWORD};
use axum::http::StatusCode;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use tollgate_workflows::{approval, incident, Clock};

/// The instant every test here starts at.
const START: OffsetDateTime = datetime!(2030-01-01 09:00:00 UTC);

async fn manual_app() -> TestApp {
    spawn_app_with_clock(Clock::manual(START)).await
}

/// `by` after [`START`], as RFC 3339.
fn at(by: Duration) -> String {
    (START + by).format(&Rfc3339).unwrap()
}

/// Reports an incident as `token`, expecting `status`; returns the incident.
async fn report(app: &TestApp, token: &str, body: Value, status: StatusCode) -> Value {
    let r = app.post("/api/v1/incidents", token, body.clone()).await;
    assert_eq!(r.status, status, "report {body}: {}", r.body);
    r.body
}

async fn incident_of(app: &TestApp, token: &str, id: &str) -> Value {
    let r = app.get(&format!("/api/v1/incidents/{id}"), token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body
}

/// How many records of `action` the timeline at `path` holds.
async fn count_in_timeline(app: &TestApp, token: &str, path: &str, action: &str) -> usize {
    let r = app.get(path, token).await;
    assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
    r.body["items"].as_array().unwrap().iter().filter(|rec| rec["action"] == action).count()
}

/// Incident ids the list at `query` selects.
async fn listed(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    let r = app.get(&format!("/api/v1/incidents?{query}"), token).await;
    assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
    r.body["items"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_p2_incident_that_misses_its_response_target_is_breached_and_escalated_to_p1_once() {
    let app = manual_app().await;
    let ops = app.user_with_roles("oscar", &["operator"]).await;
    let opened = report(
        &app,
        &ops,
        json!({"title": "db-1 disk full", "impact": "high", "urgency": "medium"}),
        StatusCode::CREATED,
    )
    .await;
    let id = opened["id"].as_str().unwrap();
    assert_eq!(opened["priority"], 2);
    assert_eq!(opened["sla"]["response_due_at"], at(Duration::minutes(30)), "a P2 has half an hour: {opened}");

    app.db.clock().advance(Duration::minutes(30));
    assert!(
        incident::sla_sweep(&app.db).await.unwrap().is_empty(),
        "the target is not missed at the instant it falls due"
    );
    app.db.clock().advance(Duration::minutes(1));
    assert_eq!(incident::sla_sweep(&app.db).await.unwrap().len(), 1);

    let breached = incident_of(&app, &ops, id).await;
    assert_eq!(
        (breached["sla"]["response_breached"].as_bool(), breached["sla"]["resolution_breached"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!((breached["priority"].as_i64(), breached["escalated"].as_bool()), (Some(1), Some(true)), "{breached}");
    assert!(incident::sla_sweep(&app.db).await.unwrap().is_empty(), "a breach is marked once");

    app.db.clock().advance(Duration::hours(8));
    assert_eq!(incident::sla_sweep(&app.db).await.unwrap().len(), 1, "the resolution target passes too");
    let late = incident_of(&app, &ops, id).await;
    assert_eq!(late["sla"]["resolution_breached"], true, "{late}");
    assert_eq!(late["priority"], 1, "a second breach does not escalate again: {late}");
    let timeline = format!("/api/v1/incidents/{id}/timeline");
    assert_eq!(count_in_timeline(&app, &ops, &timeline, "incident.escalate").await, 1);
    assert_eq!(count_in_timeline(&app, &ops, &timeline, "incident.breach").await, 1);
}

#[tokio::test]
async fn a_repeated_report_folds_into_the_breached_incident_and_the_breached_filter_finds_it() {
    let app = manual_app().await;
    let ops = app.user_with_roles("oscar", &["operator"]).await;
    let alert =
        json!({"title": "db-1 disk full", "impact": "high", "urgency": "medium", "dedup_key": "disk-full-db-1"});
    let loud = report(&app, &ops, alert.clone(), StatusCode::CREATED).await;
    let quiet = report(
        &app,
        &ops,
        json!({"title": "typo on the status page", "impact": "low", "urgency": "low"}),
        StatusCode::CREATED,
    )
    .await;
    app.db.clock().advance(Duration::minutes(31));
    assert_eq!(incident::sla_sweep(&app.db).await.unwrap().len(), 1, "only the P2 missed its target");

    let again = report(&app, &ops, alert, StatusCode::OK).await;

    assert_eq!(again["id"], loud["id"], "the open incident with the key absorbs the report");
    assert_eq!((again["report_count"].as_i64(), again["priority"].as_i64()), (Some(2), Some(1)), "{again}");
    assert_eq!(listed(&app, &ops, "").await.len(), 2);
    assert_eq!(listed(&app, &ops, "breached=true").await, [loud["id"].as_str().unwrap()]);
    assert_eq!(listed(&app, &ops, "breached=false").await, [quiet["id"].as_str().unwrap()]);
}

#[tokio::test]
async fn an_approval_stage_that_times_out_is_escalated_once_to_the_change_advisory_board() {
    let app = manual_app().await;
    let requester = app.user_with_roles("rita", &["requester"]).await;
    let manager = app.user_with_roles("manny", &["change-manager"]).await;
    let petra = app.user_with_roles("petra", &["approver"]).await;
    app.join_group("change-approvers", &petra).await;
    let carol = app.user_with_roles("carol", &["approver"]).await;
    app.join_group("change-advisory-board", &carol).await;
    let vm = app.ci(json!({"kind": "vm", "name": "web-1", "vcpus": 2, "memory_mib": 4096, "disk_gib": 40})).await;
    let body = json!({"kind": "normal", "title": "stop web-1", "operations": [{"op": "stop", "vm_id": vm}],
        "window_start": at(Duration::days(5)), "window_end": at(Duration::days(5) + Duration::hours(1))});
    let created = app.create_change(&requester, body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    for (token, event) in [(&requester, "submit"), (&manager, "assess"), (&manager, "request_approval")] {
        let r = app.change_event(&id, token, event).await;
        assert_eq!(r.status, StatusCode::OK, "{event}: {}", r.body);
    }
    let approvals = format!("/api/v1/changes/{id}/approvals");
    let before = app.get(&approvals, &requester).await.body;
    assert_eq!(before["policy"], "normal-low-risk", "{before}");
    assert_eq!(
        (&before["stages"][0]["approvers"], &before["stages"][0]["status"]),
        (&json!(["petra"]), &json!("open"))
    );

    app.db.clock().advance(Duration::hours(24) - Duration::seconds(1));
    assert_eq!(approval::sweep_timeouts(&app.db).await.unwrap(), 0, "the peer review has a day");
    app.db.clock().advance(Duration::seconds(1));
    assert_eq!(approval::sweep_timeouts(&app.db).await.unwrap(), 1);
    app.db.clock().advance(Duration::days(2));
    assert_eq!(approval::sweep_timeouts(&app.db).await.unwrap(), 0, "a stage escalates once");

    // Three days on, the tokens of the first morning have expired.
    app.get(&approvals, &requester).await.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let requester = app.sign_in("rita", USER_PASSWORD).await;
    let carol = app.sign_in("carol", USER_PASSWORD).await;
    let after = app.get(&approvals, &requester).await.body;
    assert_eq!(
        (&after["stages"][0]["approvers"], &after["stages"][0]["status"]),
        (&json!(["carol", "petra"]), &json!("open")),
        "{after}"
    );
    let change = app.get(&format!("/api/v1/changes/{id}"), &requester).await.body;
    assert_eq!(change["state"], "awaiting_approval");
    let timeline = format!("/api/v1/changes/{id}/timeline");
    assert_eq!(count_in_timeline(&app, &requester, &timeline, "approval.escalate").await, 1);

    let vote = app.vote(&id, &carol, "approve", None).await;
    assert_eq!((vote.status, vote.body["complete"].as_bool()), (StatusCode::OK, Some(true)), "{}", vote.body);
    assert_eq!(app.get(&format!("/api/v1/changes/{id}"), &requester).await.body["state"], "approved");
}

#[tokio::test]
async fn metrics_show_breaches_approval_waits_change_outcomes_and_the_change_windows_open_now() {
    let app = manual_app().await;
    let operator = app.user_with_roles("otto", &["operator"]).await;
    let requester = app.user_with_roles("rita", &["requester"]).await;
    let manager = app.user_with_roles("manny", &["change-manager"]).await;
    report(&app, &operator, json!({"title": "db down", "impact": "high", "urgency": "high"}), StatusCode::CREATED)
        .await;
    let billing = app.ci(json!({"kind": "service", "name": "billing"})).await;
    let search = app.ci(json!({"kind": "service", "name": "search"})).await;
    let window = |title: &str, kind: &str, ci: &str| {
        json!({"kind": kind, "title": title, "ci_ids": [ci], "window_start": at(Duration::ZERO),
               "window_end": at(Duration::hours(24))})
    };
    // One waits for approval; a standard one is scheduled inside its window.
    let waiting = app.create_change(&requester, window("waits", "normal", &billing)).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for (event, who) in [("submit", &requester), ("assess", &manager), ("request_approval", &manager)] {
        assert_eq!(app.change_event(&waiting, who, event).await.status, StatusCode::OK, "{event}");
    }
    let scheduled = app.create_change(&requester, window("runs", "standard", &search)).await.body;
    let r = app.change_event(scheduled["id"].as_str().unwrap(), &requester, "schedule").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    app.db.clock().advance(Duration::hours(2));
    incident::sla_sweep(&app.db).await.unwrap();

    let text = app.send(axum::http::Method::GET, "/metrics", None, None).await.text();
    let reference = scheduled["reference"].as_str().unwrap();
    for line in [
        r#"tollgate_incidents_breached{priority="P1"} 1"#.to_owned(),
        r#"tollgate_incidents_breached{priority="P3"} 0"#.to_owned(),
        r#"tollgate_approval_wait_seconds{stat="max"} 7200"#.to_owned(),
        r#"tollgate_approval_wait_seconds{stat="avg"} 7200"#.to_owned(),
        r#"tollgate_change_outcomes{outcome="succeeded"} 0"#.to_owned(),
        format!(r#"tollgate_change_window_open{{reference="{reference}"}} 1"#),
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
    }
    // A change waiting for approval has no open window yet: only approved and later ones are marked.
    assert_eq!(text.matches("tollgate_change_window_open{").count(), 1, "{text}");
}
