//! Changes over the API: requests with typed operations, listing, edits that void votes, and the freeze and
//! conflict guards as HTTP errors. The app runs on the system clock, so windows are placed around now.

use crate::support::{spawn_app, TestApp, TestResponse};
use axum::http::StatusCode;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

/// The instant `h` hours from now, whole seconds, as RFC 3339.
pub fn at(h: i64) -> String {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    (now + Duration::hours(h)).format(&Rfc3339).unwrap()
}

/// A change request of `kind` running `operations` from an hour ago until tomorrow.
pub fn change(kind: &str, title: &str, operations: Value) -> Value {
    json!({"kind": kind, "title": title, "operations": operations, "window_start": at(-1), "window_end": at(24)})
}

/// The people and CIs of a change: a requester, a change manager, an operator, and a VM on a host.
pub struct World {
    pub app: TestApp,
    pub requester: String,
    pub manager: String,
    pub operator: String,
    pub region: String,
    pub host: String,
    pub vm: String,
}

pub async fn world() -> World {
    let app = spawn_app().await;
    let requester = app.user_with_roles("rita", &["requester"]).await;
    let manager = app.user_with_roles("manny", &["change-manager"]).await;
    let operator = app.user_with_roles("otto", &["operator"]).await;
    let region = app.ci(json!({"kind": "region", "name": "eu"})).await;
    let dc = app.ci(json!({"kind": "datacenter", "name": "dc", "parent_id": region})).await;
    let cluster = app.ci(json!({"kind": "cluster", "name": "cl", "parent_id": dc})).await;
    let host = app
        .ci(json!({"kind": "host", "name": "hv-1", "parent_id": cluster, "hypervisor": "kvm",
            "vcpus": 64, "memory_mib": 262144, "disk_gib": 4000}))
        .await;
    let vm = app
        .ci(json!({"kind": "vm", "name": "db-1", "parent_id": host, "vcpus": 2, "memory_mib": 4096, "disk_gib": 40}))
        .await;
    World { app, requester, manager, operator, region, host, vm }
}

impl World {
    /// Requests a change as the requester; it must be recorded. Returns its id.
    pub async fn request(&self, body: Value) -> String {
        let r = self.app.create_change(&self.requester, body.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{body}: {}", r.body);
        r.body["id"].as_str().unwrap().to_owned()
    }

    /// Fires `event` as `token`; it must be accepted. Returns the change's state after it.
    pub async fn fire_ok(&self, id: &str, token: &str, event: &str) -> String {
        let r = self.app.change_event(id, token, event).await;
        assert_eq!(r.status, StatusCode::OK, "{event}: {}", r.body);
        r.body["state"].as_str().unwrap().to_owned()
    }

    /// Submits, assesses and requests approval of a normal change.
    pub async fn to_approval(&self, id: &str) {
        self.fire_ok(id, &self.requester, "submit").await;
        self.fire_ok(id, &self.manager, "assess").await;
        assert_eq!(self.fire_ok(id, &self.manager, "request_approval").await, "awaiting_approval");
    }

    pub async fn state(&self, id: &str) -> String {
        let r = self.app.get(&format!("/api/v1/changes/{id}"), &self.requester).await;
        r.body["state"].as_str().unwrap().to_owned()
    }
}

pub fn stop(vm: &str) -> Value {
    json!([{"op": "stop", "vm_id": vm}])
}

#[track_caller]
fn assert_guard(r: &TestResponse, guard: &str) {
    r.assert_error(StatusCode::CONFLICT, "guard_failed");
    assert_eq!(r.body["error"]["details"]["guard"], guard, "{}", r.body);
}

#[tokio::test]
async fn a_change_request_is_a_draft_with_its_rollback_plan_and_risk_and_bad_operations_are_refused() {
    let w = world().await;
    let r = w.app.create_change(&w.requester, change("normal", "stop db", stop(&w.vm))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!((r.body["state"].as_str(), r.body["reference"].as_str()), (Some("draft"), Some("CHG-000001")));
    assert_eq!(r.body["rollback"], json!([{"step": "run", "operation": {"op": "start", "vm_id": w.vm}}]));
    assert_eq!(r.body["risk"]["level"], "low", "{}", r.body["risk"]);
    assert_eq!(r.body["risk"]["factors"].as_array().unwrap().len(), 6);

    let teleport = change("normal", "x", json!([{"op": "teleport", "vm_id": w.vm}]));
    w.app
        .create_change(&w.requester, teleport)
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let extra = change("normal", "x", json!([{"op": "stop", "vm_id": w.vm, "force": true}]));
    w.app.create_change(&w.requester, extra).await.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let unknown = w.app.create_change(&w.requester, change("normal", "x", stop("no-such-vm"))).await;
    unknown.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(unknown.field(), Some("operations[0].vm_id"));
    let wrong_kind = w.app.create_change(&w.requester, change("normal", "x", stop(&w.host))).await;
    assert_eq!(wrong_kind.field(), Some("operations[0].vm_id"));
    let mut backwards = change("normal", "x", stop(&w.vm));
    backwards["window_end"] = at(-2).into();
    assert_eq!(w.app.create_change(&w.requester, backwards).await.field(), Some("window_end"));

    let viewer = w.app.user_with_roles("vic", &["viewer"]).await;
    let r = w.app.create_change(&viewer, change("normal", "x", stop(&w.vm))).await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let listed = w.app.get("/api/v1/changes", &viewer).await;
    assert_eq!(listed.body["total"], 1, "refused requests record nothing: {}", listed.body);
}

#[tokio::test]
async fn process_refusals_answer_as_http_errors() {
    let w = world().await;
    let id = w.request(change("normal", "stop db", stop(&w.vm))).await;
    let r = w.app.change_event(&id, &w.manager, "assess").await;
    r.assert_error(StatusCode::CONFLICT, "transition_not_allowed");
    w.app.change_event(&id, &w.operator, "submit").await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let r = w.app.change_event(&id, &w.requester, "teleport").await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(r.field(), Some("event"));
    w.to_approval(&id).await;
    w.app.change_event(&id, &w.manager, "approve").await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let other = w.app.user_with_roles("rob", &["requester"]).await;
    let edit = w.app.put(&format!("/api/v1/changes/{id}"), &other, change("normal", "mine now", stop(&w.vm))).await;
    edit.assert_error(StatusCode::FORBIDDEN, "forbidden");
    w.app.get("/api/v1/changes/nope", &w.requester).await.assert_error(StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn an_edit_after_approval_voids_the_votes_and_returns_the_change_to_awaiting_approval() {
    let w = world().await;
    let peer = w.app.user_with_roles("petra", &["viewer"]).await;
    w.app.join_group("change-approvers", &peer).await;
    let id = w.request(change("normal", "stop db", stop(&w.vm))).await;
    w.to_approval(&id).await;
    assert_eq!(w.app.vote(&id, &peer, "approve", None).await.status, StatusCode::OK);
    assert_eq!(w.state(&id).await, "approved");

    let mut edit = change("normal", "stop db later", stop(&w.vm));
    edit["revision"] = 1.into();
    let r = w.app.put(&format!("/api/v1/changes/{id}"), &w.requester, edit.clone()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!((r.body["state"].as_str(), r.body["revision"].as_i64()), (Some("awaiting_approval"), Some(2)));
    let status = w.app.get(&format!("/api/v1/changes/{id}/approvals"), &w.requester).await;
    assert_eq!((status.body["revision"].as_i64(), status.body["complete"].as_bool()), (Some(2), Some(false)));
    assert_eq!(status.body["votes"], json!([]), "{}", status.body);
    let stale = w.app.put(&format!("/api/v1/changes/{id}"), &w.requester, edit).await;
    stale.assert_error(StatusCode::CONFLICT, "conflict");

    assert_eq!(w.app.vote(&id, &peer, "approve", None).await.status, StatusCode::OK);
    assert_eq!(w.state(&id).await, "approved");
}

#[tokio::test]
async fn a_freeze_blocks_scheduling_a_normal_change_but_not_starting_an_approved_emergency_change() {
    let w = world().await;
    let peer = w.app.user_with_roles("petra", &["viewer"]).await;
    w.app.join_group("change-approvers", &peer).await;
    let ecab = w.app.user_with_roles("edna", &["viewer"]).await;
    w.app.join_group("emergency-cab", &ecab).await;
    let freeze = json!({"name": "year end", "scope_ci_id": w.region, "starts_at": at(-48), "ends_at": at(48)});
    assert_eq!(w.app.post("/api/v1/freeze-windows", &w.manager, freeze).await.status, StatusCode::CREATED);

    let normal = w.request(change("normal", "stop db", stop(&w.vm))).await;
    w.to_approval(&normal).await;
    w.app.vote(&normal, &peer, "approve", None).await;
    assert_guard(&w.app.change_event(&normal, &w.manager, "schedule").await, "not_frozen");
    assert_eq!(w.state(&normal).await, "approved");

    let r = w.app.create_change(&w.operator, change("emergency", "stop runaway", stop(&w.vm))).await;
    let urgent = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(w.fire_ok(&urgent, &w.operator, "submit").await, "awaiting_approval");
    assert_eq!(w.app.vote(&urgent, &ecab, "approve", None).await.status, StatusCode::OK);
    assert_eq!(w.fire_ok(&urgent, &w.operator, "start").await, "implementing");
}

#[tokio::test]
async fn conflicting_windows_block_scheduling_until_a_change_manager_overrides_them() {
    let w = world().await;
    let peer = w.app.user_with_roles("petra", &["viewer"]).await;
    w.app.join_group("change-approvers", &peer).await;
    let mut on_host = change("normal", "patch host", json!([]));
    on_host["ci_ids"] = json!([w.host]);
    let on_host = w.request(on_host).await;
    w.fire_ok(&on_host, &w.requester, "submit").await;
    let id = w.request(change("normal", "stop db", stop(&w.vm))).await;
    w.to_approval(&id).await;
    w.app.vote(&id, &peer, "approve", None).await;

    let conflicts = w.app.get(&format!("/api/v1/changes/{id}/conflicts"), &peer).await;
    assert_eq!(conflicts.status, StatusCode::OK, "{}", conflicts.body);
    assert_eq!(conflicts.body["overridden"], false);
    let items = conflicts.body["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{}", conflicts.body);
    assert_eq!((items[0]["kind"].as_str(), items[0]["change_id"].as_str()), (Some("window"), Some(on_host.as_str())));
    assert_guard(&w.app.change_event(&id, &w.manager, "schedule").await, "no_unresolved_conflict");

    let path = format!("/api/v1/changes/{id}/conflicts/override");
    let r = w.app.post(&path, &w.requester, json!({"reason": "trust me"})).await;
    r.assert_error(StatusCode::FORBIDDEN, "forbidden");
    let r = w.app.post(&path, &w.manager, json!({"reason": " "})).await;
    r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(r.field(), Some("reason"));
    let r = w.app.post(&path, &w.manager, json!({"reason": "the host patch is read-only"})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["conflict_override"]["by"], "manny");
    let conflicts = w.app.get(&format!("/api/v1/changes/{id}/conflicts"), &peer).await;
    assert_eq!(conflicts.body["overridden"], true);
    assert_eq!(w.fire_ok(&id, &w.manager, "schedule").await, "scheduled");
}

#[tokio::test]
async fn changes_are_listed_by_state_kind_requester_ci_window_and_title() {
    let w = world().await;
    let in_window = |mut body: Value, from: &str, to: &str| {
        body["window_start"] = from.into();
        body["window_end"] = to.into();
        body
    };
    let (soon, tomorrow) = (at(-1), at(24));
    let a = w.request(in_window(change("normal", "Stop db", stop(&w.vm)), &soon, &tomorrow)).await;
    w.fire_ok(&a, &w.requester, "submit").await;
    let b = w.request(in_window(change("standard", "Restart db", json!([])), &at(48), &at(50))).await;
    let drain = change("emergency", "Drain host", json!([{"op": "evacuate", "host_id": w.host}]));
    let r = w.app.create_change(&w.operator, in_window(drain, &soon, &tomorrow)).await;
    let c = r.body["id"].as_str().unwrap().to_owned();

    let ids = |query: String| {
        let app = &w.app;
        let token = w.requester.clone();
        async move {
            let r = app.get(&format!("/api/v1/changes?{query}"), &token).await;
            assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
            r.body["items"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(ids(String::new()).await, [c.as_str(), a.as_str(), b.as_str()]);
    assert_eq!(ids("state=submitted".into()).await, [a.as_str()]);
    assert_eq!(ids("kind=emergency".into()).await, [c.as_str()]);
    assert_eq!(ids("requester=rita".into()).await, [a.as_str(), b.as_str()]);
    assert_eq!(ids(format!("ci_id={}", w.vm)).await, [a.as_str()]);
    assert_eq!(ids(format!("from={}&to={}", enc(&at(47)), enc(&at(49)))).await, [b.as_str()]);
    assert_eq!(ids("q=DB".into()).await, [a.as_str(), b.as_str()]);
    assert_eq!(ids("limit=1&offset=1".into()).await, [a.as_str()]);

    let half = w.app.get(&format!("/api/v1/changes?from={}", enc(&at(0))), &w.requester).await;
    half.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    w.app.get("/api/v1/changes?kind=bogus", &w.requester).await.assert_error(StatusCode::BAD_REQUEST, "bad_request");
}

fn enc(s: &str) -> String {
    crate::support::encode(s)
}

#[tokio::test]
async fn a_request_past_its_department_s_quota_is_refused_naming_the_figures() {
    let w = world().await;
    let admin = &w.app.admin_token;
    let service = w.app.ci(json!({"kind": "service", "name": "payments"})).await;
    let dept = w.app.post("/api/v1/groups", admin, json!({"name": "payments-team"})).await;
    let dept = dept.body["id"].as_str().unwrap().to_owned();
    let owner =
        w.app.put(&format!("/api/v1/services/{service}/department"), &w.operator, json!({"group_id": dept})).await;
    assert_eq!(owner.status, StatusCode::OK, "{}", owner.body);
    assert_eq!(w.app.get(&format!("/api/v1/services/{service}/department"), &w.requester).await.body["group_id"], dept);
    let limits = json!({"max_vms": null, "max_vcpus": 4, "max_memory_mib": null, "max_disk_gib": null});
    let set = w.app.put(&format!("/api/v1/groups/{dept}/quota"), admin, limits.clone()).await;
    assert_eq!(set.status, StatusCode::OK, "{}", set.body);
    assert_eq!(set.body["limits"], limits);
    w.app
        .put(&format!("/api/v1/groups/{dept}/quota"), &w.operator, limits)
        .await
        .assert_error(StatusCode::FORBIDDEN, "forbidden");

    let provision = |vcpus: i64| {
        change(
            "normal",
            "new VM",
            json!([{"op": "provision", "name": "pay-1", "image": "debian-12", "vcpus": vcpus,
            "memory_mib": 1024, "disk_gib": 10, "service_id": service}]),
        )
    };
    let refused = w.app.create_change(&w.requester, provision(6)).await;
    refused.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(refused.field(), Some("operations[0]"));
    assert!(refused.text().contains("payments-team would have 6 vCPUs, over its quota of 4"), "{}", refused.body);
    let id = w.request(provision(4)).await;
    w.fire_ok(&id, &w.requester, "submit").await;
    let report = w.app.get(&format!("/api/v1/groups/{dept}/quota"), &w.requester).await;
    assert_eq!(report.body["requested"]["vcpus"], 4, "{}", report.body);
    assert_eq!(report.body["in_use"]["vms"], 0, "{}", report.body);
}
