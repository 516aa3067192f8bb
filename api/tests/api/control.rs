//! The control plane over the API on the simulated fleet: without an approved change nothing reaches a
//! hypervisor (409 everywhere); an approved change runs as a job to completed, with the inventory
//! following; a failed step rolls the change back, undoes what ran and opens a linked incident.

use crate::changes::{change, world, World};
use axum::http::StatusCode;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_control::hypervisor::sim::SimFleet;
use tollgate_control::hypervisor::Hypervisor;
use tollgate_control::jobs::Executor;
use tollgate_control::simulated::{SimAgents, SIM_IMAGES};

struct Fleet {
    w: World,
    approver: String,
    /// Who else votes when a change's risk asks for a quorum and the CAB.
    voters: Vec<String>,
    sim: Arc<SimFleet>,
    executor: Arc<Executor>,
    agents: SimAgents,
    a: String,
    b: String,
}

async fn fleet() -> Fleet {
    let w = world().await;
    let approver = w.app.user_with_roles("petra", &["viewer"]).await;
    w.app.join_group("change-approvers", &approver).await;
    let second = w.app.user_with_roles("paul", &["viewer"]).await;
    w.app.join_group("change-approvers", &second).await;
    let cab = w.app.user_with_roles("carla", &["viewer"]).await;
    w.app.join_group("change-advisory-board", &cab).await;
    let voters = vec![second, cab];
    let dc = w.app.ci(json!({"kind": "datacenter", "name": "sim-dc", "parent_id": w.region})).await;
    let cluster = w.app.ci(json!({"kind": "cluster", "name": "sim-cl", "parent_id": dc})).await;
    let host = |name: &str| {
        json!({"kind": "host", "name": name, "parent_id": cluster, "hypervisor": "simulated",
            "vcpus": 32, "memory_mib": 131072, "disk_gib": 2000})
    };
    let a = w.app.ci(host("sim-a")).await;
    let b = w.app.ci(host("sim-b")).await;
    let sim = SimFleet::new();
    let policy = Arc::new(tollgate_workflows::incident::IncidentPolicy::default());
    let executor = Executor::new(w.app.db.clone(), policy);
    let agents = SimAgents::new(w.app.db.clone(), sim.clone());
    Fleet { w, approver, voters, sim, executor, agents, a, b }
}

impl Fleet {
    /// Requests a normal change of `operations`, has it approved, scheduled and started.
    async fn implementing(&self, title: &str, operations: Value) -> String {
        let id = self.w.request(change("normal", title, operations)).await;
        self.w.to_approval(&id).await;
        assert_eq!(self.w.app.vote(&id, &self.approver, "approve", None).await.status, StatusCode::OK);
        for voter in &self.voters {
            if self.w.state(&id).await == "awaiting_approval" {
                assert_eq!(self.w.app.vote(&id, voter, "approve", None).await.status, StatusCode::OK);
            }
        }
        assert_eq!(self.w.fire_ok(&id, &self.w.manager, "schedule").await, "scheduled");
        assert_eq!(self.w.fire_ok(&id, &self.w.operator, "start").await, "implementing");
        id
    }

    /// Runs the executor and the simulated agents until the change's job finishes; returns the job.
    async fn run(&self, change_id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            self.executor.tick().await.unwrap();
            self.agents.round().await.unwrap();
            let jobs = self.w.app.get(&format!("/api/v1/changes/{change_id}/jobs"), &self.w.requester).await;
            if let Some(job) = jobs.body.as_array().and_then(|j| j.first()) {
                if ["succeeded", "rolled_back", "failed"].contains(&job["state"].as_str().unwrap_or("")) {
                    return job.clone();
                }
            }
            assert!(Instant::now() < deadline, "the job of {change_id} did not finish: {}", jobs.body);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn vm(&self, name: &str) -> Value {
        let r = self.w.app.get(&format!("/api/v1/cis?kind=vm&q={name}"), &self.w.requester).await;
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
            .expect("the VM is in the inventory")
    }

    async fn count(&self, table: &str) -> i64 {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        let (n,): (i64,) = sqlx::query_as(&sql).fetch_one(self.w.app.db.pool()).await.unwrap();
        n
    }
}

fn provision(name: &str, host: &str) -> Value {
    json!({"op": "provision", "name": name, "image": "tiny.qcow2", "vcpus": 1, "memory_mib": 512, "disk_gib": 10,
        "service_id": null, "host_id": host})
}

#[tokio::test]
async fn every_fleet_operation_is_refused_without_an_approved_change_and_nothing_reaches_a_host() {
    let f = fleet().await;
    let (vm, host, op) = (&f.w.vm, &f.a, &f.w.operator);
    let draft = f.w.request(change("normal", "stop db", json!([{"op": "stop", "vm_id": vm}]))).await;
    let asks: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            "/api/v1/vms".into(),
            json!({"name": "x", "image": "tiny.qcow2", "vcpus": 1, "memory_mib": 512, "disk_gib": 1}),
        ),
        ("POST", format!("/api/v1/vms/{vm}/resize"), json!({"vcpus": 4, "memory_mib": 8192})),
        ("POST", format!("/api/v1/vms/{vm}/quota"), json!({"cpu_quota_pct": 50})),
        ("POST", format!("/api/v1/vms/{vm}/migrate"), json!({"to_host_id": f.b})),
        ("POST", format!("/api/v1/vms/{vm}/stop"), Value::Null),
        ("POST", format!("/api/v1/vms/{vm}/start"), Value::Null),
        ("DELETE", format!("/api/v1/vms/{vm}"), Value::Null),
        ("POST", format!("/api/v1/hosts/{host}/evacuate"), Value::Null),
        ("POST", format!("/api/v1/hosts/{host}/adopt"), json!({"domain": "stray"})),
    ];
    for (method, path, body) in &asks {
        let method: axum::http::Method = method.parse().unwrap();
        let bare = f.w.app.send(method.clone(), path, Some(op), (!body.is_null()).then(|| body.clone())).await;
        bare.assert_error(StatusCode::CONFLICT, "no_approved_change");
        assert_eq!(bare.body["error"]["details"]["reason"], "no_change", "{path}: {}", bare.body);
        // A change that exists but is a draft is no key either.
        let (path, body) = if body.is_null() {
            (format!("{path}?change_id={draft}"), None)
        } else {
            let mut b = body.clone();
            b["change_id"] = json!(draft);
            (path.clone(), Some(b))
        };
        let drafted = f.w.app.send(method, &path, Some(op), body).await;
        drafted.assert_error(StatusCode::CONFLICT, "no_approved_change");
        assert_eq!(drafted.body["error"]["details"]["reason"], "not_implementing", "{path}: {}", drafted.body);
    }
    let unknown = f.w.app.post(&format!("/api/v1/vms/{vm}/stop?change_id=no-such-change"), op, json!({})).await;
    unknown.assert_error(StatusCode::CONFLICT, "no_approved_change");
    assert_eq!(unknown.body["error"]["details"]["reason"], "not_found", "{}", unknown.body);
    // An implementing change covers only what it planned.
    let started = f.implementing("stop db", json!([{"op": "stop", "vm_id": vm}])).await;
    let other = f
        .w
        .app
        .post(&format!("/api/v1/vms/{vm}/resize"), op, json!({"change_id": started, "vcpus": 4, "memory_mib": 8192}))
        .await;
    other.assert_error(StatusCode::CONFLICT, "no_approved_change");
    assert_eq!(other.body["error"]["details"]["reason"], "not_in_plan");
    let viewer = f.w.app.post(&format!("/api/v1/vms/{vm}/stop?change_id={started}"), &f.approver, json!({})).await;
    assert_eq!(viewer.status, StatusCode::FORBIDDEN);
    assert_eq!(f.count("host_tasks").await, 0, "a refused request reached a host");
}

#[tokio::test]
async fn an_approved_change_provisions_then_resizes_limits_and_migrates_live() {
    let f = fleet().await;
    let first = f.implementing("new web VM", json!([provision("web-1", &f.a)])).await;
    // Asking through the route under the started change gives the same job.
    let via_route =
        f.w.app
            .post(
                "/api/v1/vms",
                &f.w.operator,
                json!({"change_id": first, "name": "web-1", "image": "tiny.qcow2",
            "vcpus": 1, "memory_mib": 512, "disk_gib": 10, "host_id": f.a}),
            )
            .await;
    assert_eq!(via_route.status, StatusCode::ACCEPTED, "{}", via_route.body);
    let job = f.run(&first).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["id"], via_route.body["id"]);
    assert_eq!((job["percent"].as_u64(), job["step"].as_u64()), (Some(100), job["steps"].as_u64()));
    assert_eq!(f.w.state(&first).await, "completed");
    let vm = f.vm("web-1").await;
    assert_eq!((vm["state"].as_str(), vm["parent_id"].as_str()), (Some("running"), Some(f.a.as_str())));
    let on_a = f.sim.host("sim-a", SIM_IMAGES).domain("web-1").unwrap();
    assert_eq!(on_a.vm_id.as_deref(), vm["id"].as_str());

    let vm_id = vm["id"].as_str().unwrap().to_owned();
    let ops = json!([
        {"op": "resize", "vm_id": vm_id, "vcpus": 2, "memory_mib": 1024},
        {"op": "set_quota", "vm_id": vm_id, "cpu_quota_pct": 50, "disk_read_bytes_per_sec": null,
            "disk_write_bytes_per_sec": null, "disk_iops": 300, "net_mbit_per_sec": null},
        {"op": "migrate", "vm_id": vm_id, "to_host_id": f.b, "live": true}
    ]);
    let second = f.implementing("grow and move web-1", ops).await;
    let job = f.run(&second).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(f.w.state(&second).await, "completed");
    let vm = f.vm("web-1").await;
    assert_eq!((vm["vcpus"].as_i64(), vm["memory_mib"].as_i64()), (Some(2), Some(1024)));
    assert_eq!(vm["parent_id"].as_str(), Some(f.b.as_str()));
    let b = f.sim.host("sim-b", SIM_IMAGES);
    let moved = b.domain("web-1").unwrap();
    assert_eq!((moved.vcpus, moved.memory.current_mib()), (2, 1024));
    assert_eq!(moved.uuid, on_a.uuid, "the same VM, moved");
    assert_eq!(b.limits("web-1").unwrap().cpu_quota_pct, Some(50));
    assert!(f.sim.host("sim-a", SIM_IMAGES).domain("web-1").is_err());
    let log = job["log"].as_array().unwrap();
    assert!(log.iter().any(|l| l.as_str().unwrap().starts_with("done: migrate web-1")), "{job}");
}

#[tokio::test]
async fn a_vm_asked_to_move_cold_is_stopped_moved_and_started_and_a_stopped_one_stays_stopped() {
    let f = fleet().await;
    let first = f.implementing("two VMs", json!([provision("app-1", &f.a), provision("app-2", &f.a)])).await;
    assert_eq!(f.run(&first).await["state"], "succeeded");
    let (one, two) = (f.vm("app-1").await, f.vm("app-2").await);
    let (one, two) = (one["id"].as_str().unwrap().to_owned(), two["id"].as_str().unwrap().to_owned());
    let stopped = f.implementing("stop app-2", json!([{"op": "stop", "vm_id": two}])).await;
    assert_eq!(f.run(&stopped).await["state"], "succeeded");

    let ops = json!([
        {"op": "migrate", "vm_id": one, "to_host_id": f.b, "live": false},
        {"op": "migrate", "vm_id": two, "to_host_id": f.b, "live": false}
    ]);
    let moved = f.implementing("move both cold", ops).await;
    let job = f.run(&moved).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let log: Vec<&str> = job["log"].as_array().unwrap().iter().filter_map(|l| l.as_str()).collect();
    let done: Vec<&&str> = log.iter().filter(|l| l.starts_with("done: ")).collect();
    assert!(
        done.iter().any(|l| l.contains("stop app-1")) && done.iter().any(|l| l.contains("start app-1")),
        "the running one is stopped first and started again there: {log:?}"
    );
    assert!(!done.iter().any(|l| l.contains("start app-2")), "the stopped one stays stopped: {log:?}");
    let b = f.sim.host("sim-b", SIM_IMAGES);
    assert_eq!(b.domain("app-1").unwrap().state, tollgate_control::hypervisor::PowerState::Running);
    assert_eq!(b.domain("app-2").unwrap().state, tollgate_control::hypervisor::PowerState::ShutOff);
    for (name, state) in [("app-1", "running"), ("app-2", "stopped")] {
        let vm = f.vm(name).await;
        assert_eq!((vm["state"].as_str(), vm["parent_id"].as_str()), (Some(state), Some(f.b.as_str())), "{vm}");
    }
}

#[tokio::test]
async fn a_refused_migration_rolls_back_what_ran_and_opens_an_incident_linked_to_the_change() {
    let f = fleet().await;
    let first = f.implementing("new db VM", json!([provision("db-2", &f.a)])).await;
    assert_eq!(f.run(&first).await["state"], "succeeded");
    let vm_id = f.vm("db-2").await["id"].as_str().unwrap().to_owned();

    f.sim.refuse_incoming("sim-b", true);
    let ops = json!([
        {"op": "resize", "vm_id": vm_id, "vcpus": 3, "memory_mib": 1024},
        {"op": "migrate", "vm_id": vm_id, "to_host_id": f.b, "live": true}
    ]);
    let change_id = f.implementing("grow and move db-2", ops).await;
    let job = f.run(&change_id).await;
    assert_eq!(job["state"], "rolled_back", "{job}");
    assert!(job["error"].as_str().unwrap().contains("refused"), "{job}");
    assert_eq!(f.w.state(&change_id).await, "rolled_back");

    // The resize that ran was undone; the VM runs where it was.
    let a = f.sim.host("sim-a", SIM_IMAGES);
    let d = a.domain("db-2").unwrap();
    assert_eq!((d.vcpus, d.memory.current_mib()), (1, 512));
    let vm = f.vm("db-2").await;
    assert_eq!((vm["vcpus"].as_i64(), vm["memory_mib"].as_i64()), (Some(1), Some(512)));
    assert_eq!(vm["parent_id"].as_str(), Some(f.a.as_str()));

    let incidents = f.w.app.get("/api/v1/incidents", &f.w.operator).await;
    let incident = incidents.body["items"].as_array().unwrap().iter().find(|i| {
        i["changes"]
            .as_array()
            .is_some_and(|c| c.iter().any(|l| l["change_id"] == change_id.as_str() && l["kind"] == "caused_by"))
    });
    assert!(incident.is_some(), "no incident linked to the change: {}", incidents.body);
}

#[tokio::test]
async fn an_empty_inventory_gets_a_simulated_demo_fleet_once_and_labelled_as_such() {
    let app = crate::support::spawn_app().await;
    assert_eq!(tollgate_control::simulated::seed_demo_fleet(&app.db).await.unwrap(), 8);
    let hosts = app.get("/api/v1/cis?kind=host", &app.admin_token).await;
    let hosts = hosts.body["items"].as_array().unwrap().clone();
    assert_eq!(hosts.len(), 8);
    for h in &hosts {
        assert_eq!(h["hypervisor"], "simulated", "{h}");
        assert!(h["name"].as_str().unwrap().starts_with("sim-"), "{h}");
        assert!(h["description"].as_str().unwrap().starts_with("Simulated"), "{h}");
    }
    assert_eq!(tollgate_control::simulated::seed_demo_fleet(&app.db).await.unwrap(), 0, "seeded twice");
}

#[tokio::test]
async fn a_host_that_differs_from_the_inventory_opens_one_incident_per_difference() {
    let f = fleet().await;
    let first = f.implementing("new web VM", json!([provision("web-9", &f.a)])).await;
    assert_eq!(f.run(&first).await["state"], "succeeded");
    let policy = tollgate_workflows::incident::IncidentPolicy::default();
    assert_eq!(f.agents.reconcile(&policy).await.unwrap(), 0, "a fleet as the inventory says has no drift");

    // Behind Tollgate's back: a vCPU added by hand, and a domain nobody asked for.
    f.sim.host("sim-a", SIM_IMAGES).set_vcpus("web-9", 3).unwrap();
    f.sim.add_unmanaged("sim-a", "stray", 1, 512);
    assert_eq!(f.agents.reconcile(&policy).await.unwrap(), 2);
    assert_eq!(f.agents.reconcile(&policy).await.unwrap(), 2, "still there, still two");

    let incidents = f.w.app.get("/api/v1/incidents", &f.w.operator).await;
    let titles: Vec<String> =
        incidents.body["items"].as_array().unwrap().iter().map(|i| i["title"].as_str().unwrap().to_owned()).collect();
    let drift: Vec<&String> = titles.iter().filter(|t| t.starts_with("Unauthorised change on sim-a")).collect();
    assert_eq!(drift.len(), 2, "one incident per difference, however often it is seen: {titles:?}");
    assert!(drift.iter().any(|t| t.contains("web-9 changed outside Tollgate: 3 vCPUs (inventory 1)")), "{titles:?}");
    assert!(drift.iter().any(|t| t.contains("domain stray runs there")), "{titles:?}");
}

#[tokio::test]
async fn each_service_places_its_vms_by_its_own_strategy() {
    let f = fleet().await;
    let ha = f.w.app.ci(json!({"kind": "service", "name": "ha-web"})).await;
    let packed = f.w.app.ci(json!({"kind": "service", "name": "batch"})).await;
    let cool = f.w.app.ci(json!({"kind": "service", "name": "analytics"})).await;
    let set = |id: &str, strategy: &str| {
        let (app, op, id, strategy) = (&f.w.app, &f.w.operator, id.to_owned(), strategy.to_owned());
        async move { app.put(&format!("/api/v1/services/{id}/placement"), op, json!({"strategy": strategy})).await }
    };
    assert_eq!(set(&packed, "pack").await.status, StatusCode::OK);
    assert_eq!(set(&cool, "least_utilised").await.status, StatusCode::OK);
    set(&packed, "scatter").await.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    set(&f.w.host, "pack").await.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let got = f.w.app.get(&format!("/api/v1/services/{packed}/placement"), &f.w.requester).await;
    assert_eq!(got.body["strategy"], "pack");

    // sim-a's CPU was busy all along; sim-b's idle (what their agents would have reported).
    let agent = f.w.app.user_with_roles("aggie", &["agent"]).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let body: String = (1..=5)
        .flat_map(|m| {
            let at = now - m * 60;
            [
                format!("cpu,cpu=cpu-total,host=sim-a usage_idle=5 {at}"),
                format!("cpu,cpu=cpu-total,host=sim-b usage_idle=95 {at}"),
            ]
        })
        .collect::<Vec<_>>()
        .join("\n");
    write_lines(&f, &agent, body).await;
    while tollgate_workflows::metrics::rollup::roll_up(&f.w.app.db).await.unwrap() > 0 {}

    let vm = |name: &str, service: &str| {
        json!({"op": "provision", "name": name, "image": "tiny.qcow2", "vcpus": 1, "memory_mib": 512, "disk_gib": 10,
            "service_id": service, "host_id": null})
    };
    let ops =
        json!([vm("ha-1", &ha), vm("ha-2", &ha), vm("batch-1", &packed), vm("batch-2", &packed), vm("cool-1", &cool)]);
    let id = f.implementing("place five VMs", ops).await;
    assert_eq!(f.run(&id).await["state"], "succeeded");
    let mut hosts = std::collections::BTreeMap::new();
    for name in ["ha-1", "ha-2", "batch-1", "batch-2", "cool-1"] {
        hosts.insert(name, f.vm(name).await["parent_id"].as_str().unwrap().to_owned());
    }
    assert_ne!(hosts["ha-1"], hosts["ha-2"], "a spread service keeps its VMs apart");
    assert_eq!(hosts["batch-1"], hosts["batch-2"], "a packed service fills one host first");
    assert_eq!(hosts["cool-1"], f.b, "least utilised goes where the CPU was idle");
}

#[tokio::test]
async fn evacuating_a_host_moves_every_vm_off_it_live_where_it_runs_and_cold_where_it_is_stopped() {
    let f = fleet().await;
    let first = f
        .implementing(
            "three VMs on sim-a",
            json!([provision("app-1", &f.a), provision("app-2", &f.a), provision("app-3", &f.a)]),
        )
        .await;
    assert_eq!(f.run(&first).await["state"], "succeeded");
    let off = f.vm("app-3").await["id"].as_str().unwrap().to_owned();
    let stopped = f.implementing("stop app-3", json!([{"op": "stop", "vm_id": off}])).await;
    assert_eq!(f.run(&stopped).await["state"], "succeeded");

    let drain = f.implementing("drain sim-a", json!([{"op": "evacuate", "host_id": f.a}])).await;
    let job = f.run(&drain).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    for name in ["app-1", "app-2"] {
        assert_eq!(f.vm(name).await["parent_id"].as_str(), Some(f.b.as_str()), "{name} is still on sim-a");
        let moved = f.sim.host("sim-b", SIM_IMAGES).domain(name).unwrap();
        assert_eq!(moved.state, tollgate_control::hypervisor::PowerState::Running);
    }
    assert_eq!(f.vm("app-3").await["parent_id"].as_str(), Some(f.b.as_str()), "the stopped VM moved too");
    let cold = f.sim.host("sim-b", SIM_IMAGES).domain("app-3").unwrap();
    assert_eq!(cold.state, tollgate_control::hypervisor::PowerState::ShutOff, "and stayed stopped");
    assert!(f.sim.host("sim-a", SIM_IMAGES).domains().unwrap().is_empty(), "sim-a still has domains");
}

#[tokio::test]
async fn a_host_takes_new_vms_only_while_its_agent_is_heard_from() {
    let f = fleet().await;
    // hv-1 (KVM) is the emptiest host, but no agent serves it yet.
    let req = tollgate_control::placement::Request { vcpus: 1, memory_mib: 512, ..Default::default() };
    let choose = || async {
        let (fleet, _) = tollgate_control::inventory::fleet(&f.w.app.db, Default::default()).await.unwrap();
        fleet.choose(&req).unwrap().host_id
    };
    assert_ne!(choose().await, f.w.host);
    // hv-1's CI has no agent_id, so its agent is the account named after it.
    let agent = f.w.app.user_with_roles("hv-1", &["agent"]).await;
    let hello = json!({"hypervisor": "libvirt/kvm", "peer_uri": "qemu+tcp://hv-1/system"});
    assert_eq!(f.w.app.post("/api/v1/agent/hello", &agent, hello).await.status, StatusCode::NO_CONTENT);
    assert_eq!(choose().await, f.w.host, "an agent that said hello serves its host");
    // Silent for longer than a poll could take: its host takes nothing new.
    sqlx::query("UPDATE agent_hosts SET seen_at = 0").execute(f.w.app.db.pool()).await.unwrap();
    assert_ne!(choose().await, f.w.host);
    assert_eq!(f.w.app.get("/api/v1/agent/tasks", &agent).await.status, StatusCode::OK);
    assert_eq!(choose().await, f.w.host, "a poll marks it alive again");
}

#[tokio::test]
async fn a_domain_made_by_hand_is_adopted_by_a_change_without_a_restart_and_is_no_longer_drift() {
    let f = fleet().await;
    f.sim.add_unmanaged("sim-a", "legacy-1", 2, 2048);
    let policy = tollgate_workflows::incident::IncidentPolicy::default();
    assert_eq!(f.agents.reconcile(&policy).await.unwrap(), 1, "an unmanaged domain is drift");
    let before = f.sim.host("sim-a", SIM_IMAGES).domain("legacy-1").unwrap();

    let adopt = f.implementing("adopt legacy-1", json!([{"op": "adopt", "host_id": f.a, "domain": "legacy-1"}])).await;
    let job = f.run(&adopt).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    let vm = f.vm("legacy-1").await;
    assert_eq!((vm["state"].as_str(), vm["parent_id"].as_str()), (Some("running"), Some(f.a.as_str())));
    assert_eq!((vm["vcpus"].as_i64(), vm["memory_mib"].as_i64()), (Some(2), Some(2048)));
    let after = f.sim.host("sim-a", SIM_IMAGES).domain("legacy-1").unwrap();
    assert_eq!(after.vm_id.as_deref(), vm["id"].as_str());
    assert_eq!(after.id, before.id, "adopting restarted the domain");
    assert_eq!(f.agents.reconcile(&policy).await.unwrap(), 0, "an adopted domain is no longer drift");
}

/// Writes line protocol (timestamps in seconds) as the agent whose token is `agent`.
async fn write_lines(f: &Fleet, agent: &str, body: String) {
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/api/v2/write?precision=s")
        .header("authorization", format!("Token {agent}"))
        .body(axum::body::Body::from(body))
        .unwrap();
    assert_eq!(f.w.app.send_raw(req).await.status, StatusCode::NO_CONTENT);
}

/// Writes a `vm` point for `vm` on `host` as that host's agent would, dated `ahead` seconds from now (a host
/// clock a little ahead).
async fn vm_point(f: &Fleet, agent: &str, host: &str, vm: &str, ahead: i64) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp() + ahead;
    write_lines(f, agent, format!("vm,host={host},vm={vm} running=true,cpu_pct=3 {now}")).await;
}

#[tokio::test]
async fn verification_waits_for_the_vm_s_metrics_where_its_host_reports_its_vms_and_rolls_back_without_them() {
    let mut f = fleet().await;
    let policy = Arc::new(tollgate_workflows::incident::IncidentPolicy::default());
    f.executor = Executor::with_metrics_wait(f.w.app.db.clone(), policy, Duration::from_secs(2));
    // A host that reports no VM metrics has none to wait for.
    let first = f.implementing("new web VM", json!([provision("web-1", &f.a)])).await;
    assert_eq!(f.run(&first).await["state"], "succeeded");
    let vm_id = f.vm("web-1").await["id"].as_str().unwrap().to_owned();
    let limit = |pct: u32| {
        json!([{"op": "set_quota", "vm_id": vm_id, "cpu_quota_pct": pct, "disk_read_bytes_per_sec": null,
            "disk_write_bytes_per_sec": null, "disk_iops": null, "net_mbit_per_sec": null}])
    };

    // sim-a now reports its VMs, but not web-1: the change is not verified and rolls back.
    let agent = f.w.app.user_with_roles("aggie", &["agent"]).await;
    vm_point(&f, &agent, "sim-a", "other", 0).await;
    let silent = f.implementing("limit web-1", limit(50)).await;
    let job = f.run(&silent).await;
    assert_eq!(job["state"], "rolled_back", "{job}");
    assert!(
        job.to_string().contains("no metrics from it in 2 s after the change, while sim-a reports its other VMs"),
        "{job}"
    );
    assert_eq!(f.w.state(&silent).await, "rolled_back");
    assert_eq!(f.sim.host("sim-a", SIM_IMAGES).limits("web-1").unwrap().cpu_quota_pct, None, "undone");

    // With web-1's metrics arriving (dated after the verification starts), the same change completes.
    vm_point(&f, &agent, "sim-a", "web-1", 10).await;
    let reported = f.implementing("limit web-1 again", limit(50)).await;
    assert_eq!(f.run(&reported).await["state"], "succeeded");
    assert_eq!(f.sim.host("sim-a", SIM_IMAGES).limits("web-1").unwrap().cpu_quota_pct, Some(50));
}

#[tokio::test]
async fn container_hosts_take_only_containers_and_refuse_at_request_what_they_cannot_do() {
    let f = fleet().await;
    // lxc-1 runs containers (libvirt's LXC), has the most room, and its agent has said hello.
    let cluster = f.w.app.get(&format!("/api/v1/cis/{}", f.a), &f.w.requester).await.body["parent_id"].clone();
    let lxc =
        f.w.app
            .ci(json!({"kind": "host", "name": "lxc-1", "parent_id": cluster, "hypervisor": "lxc",
            "vcpus": 256, "memory_mib": 1_048_576, "disk_gib": 20_000}))
            .await;
    let agent = f.w.app.user_with_roles("lxc-1", &["agent"]).await;
    let hello = json!({"hypervisor": "libvirt/lxc", "peer_uri": "lxc+tcp://lxc-1/system"});
    assert_eq!(f.w.app.post("/api/v1/agent/hello", &agent, hello).await.status, StatusCode::NO_CONTENT);
    let db = &f.w.app.db;
    let choose = |containers: bool| async move {
        let (fleet, _) = tollgate_control::inventory::fleet(db, Default::default()).await.unwrap();
        let req = tollgate_control::placement::Request { vcpus: 1, memory_mib: 512, containers, ..Default::default() };
        fleet.choose(&req).unwrap().host_id
    };
    assert_ne!(choose(false).await, lxc, "a VM was placed on a container host");
    assert_eq!(choose(true).await, lxc);

    // Evacuating a VM host never moves its VMs onto the container host.
    let first = f.implementing("a VM on sim-a", json!([provision("web-9", &f.a)])).await;
    assert_eq!(f.run(&first).await["state"], "succeeded");
    let drain = f.implementing("drain sim-a", json!([{"op": "evacuate", "host_id": f.a}])).await;
    assert_eq!(f.run(&drain).await["state"], "succeeded");
    assert_eq!(f.vm("web-9").await["parent_id"].as_str(), Some(f.b.as_str()));

    // What lxc-1 cannot do is refused when it is requested, naming the operation and the reason: nobody is
    // asked to approve a change that could only roll back. A memory-only resize goes through.
    let ct =
        f.w.app
            .ci(json!({"kind": "vm", "name": "ct-1", "parent_id": lxc, "state": "running",
            "vcpus": 1, "memory_mib": 512, "disk_gib": 1}))
            .await;
    let web9 = f.vm("web-9").await["id"].as_str().unwrap().to_owned();
    for (op, field, says) in [
        (json!({"op": "migrate", "vm_id": ct, "to_host_id": f.b, "live": true}), "vm_id", "cannot move it"),
        (json!({"op": "migrate", "vm_id": web9, "to_host_id": lxc, "live": true}), "to_host_id", "takes no migrations"),
        (json!({"op": "evacuate", "host_id": lxc}), "host_id", "cannot move what runs on it"),
        (json!({"op": "resize", "vm_id": ct, "vcpus": 2, "memory_mib": 512}), "vcpus", "request a cold resize"),
        (json!({"op": "set_quota", "vm_id": ct, "disk_iops": 100}), "disk_iops", "cannot limit disk I/O"),
        (json!({"op": "set_quota", "vm_id": ct, "net_mbit_per_sec": 10}), "net_mbit_per_sec", "cannot limit network"),
    ] {
        let r = f.w.app.create_change(&f.w.requester, change("normal", "refused", json!([op]))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{op}: {}", r.body);
        let text = r.body.to_string();
        assert!(text.contains(&format!("operations[0].{field}")) && text.contains(says), "{op}: {text}");
        assert!(text.contains("lxc-1 (lxc)"), "names the host and its kind: {text}");
    }
    // A provision pinned to a host must ask for that host's kind.
    for (host, container, says) in
        [(&lxc, false, "runs containers: ask for a container"), (&f.a, true, "runs virtual machines")]
    {
        let op = json!({"op": "provision", "name": "p-1", "image": "x.img", "vcpus": 1, "memory_mib": 512,
            "disk_gib": 1, "service_id": null, "host_id": host, "container": container});
        let r = f.w.app.create_change(&f.w.requester, change("normal", "pinned", json!([op]))).await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.body);
        let text = r.body.to_string();
        assert!(text.contains("operations[0].container") && text.contains(says), "{text}");
    }
    let fine = json!([{"op": "resize", "vm_id": ct, "vcpus": 1, "memory_mib": 1024},
        {"op": "set_quota", "vm_id": ct, "cpu_quota_pct": 50, "disk_iops": 0}]);
    let r = f.w.app.create_change(&f.w.requester, change("normal", "grow ct-1", fine)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}
