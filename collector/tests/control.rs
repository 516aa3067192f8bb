//! The control plane end to end on real libvirt: a server, the real agent on each of two test hosts
//! (`scripts/lib/vhosts.sh`; `TOLLGATE_TEST_LIBVIRT_HOSTS` names them), and approved changes that
//! provision a VM (with a NIC on the hosts' guest bridge), resize it live up and down, limit it, live-migrate
//! it and evacuate its host; a migration the destination refuses rolls its change back, undoing what ran, and
//! opens an incident linked to the change; a vCPU added by hand is drift. After each, `virsh` on the host
//! confirms the result; for the live operations the domain id and the QEMU process are unchanged.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{field, finished, free_port, provision_on, start_server, Agent, Lab, Staff, TestHost};
use std::sync::Arc;
use std::time::Duration;
use tollgate_control::hypervisor::libvirt::Libvirt;
use tollgate_control::hypervisor::{DomainSpec, Hypervisor};
use tollgate_control::jobs::{Executor, Job, JobState};
use tollgate_workflows::change::{self, Operation};
use tollgate_workflows::incident::{self, IncidentPolicy, IncidentQuery, LinkKind};
use tollgate_workflows::testing::{fresh_database, TestDatabase};
use tollgate_workflows::text::PageRequest;
use tollgate_workflows::{Clock, Db};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_changes_provision_resize_limit_live_migrate_and_evacuate_a_vm_on_real_libvirt_hosts() {
    let scene = Scene::new(false, "e2e").await;
    let (db, name) = (&scene.db, scene.name.clone());
    let [vh1, vh2] = &scene.lab.hosts;
    let host_ids = &scene.lab.host_ids;
    let run = |title: &'static str, ops: Vec<Operation>| scene.run(title, ops);
    {
        // Provision through an approved change: placed on vh1, running, as the inventory says.
        run("provision the e2e VM", vec![provision_on(&name, &host_ids[0])]).await;
        let info = vh1.virsh(&["dominfo", &name]);
        assert!(info.contains("running"), "{info}");
        assert_eq!((field(&info, "CPU(s)"), field(&info, "Max memory")), (Some(1), Some(512 * 1024)), "{info}");
        let nics = vh1.virsh(&["domiflist", &name]);
        assert!(nics.contains("tgbr0") && nics.contains("virtio"), "a NIC on the agent's guest bridge: {nics}");
        let vm_id = tollgate_control::inventory::vm_named(db, &name).await.unwrap().expect("in the inventory").id;
        let (domid, pid) = (vh1.domid(&name), vh1.qemu_pid(&name));
        assert!(pid.is_some(), "no QEMU pid file for {name}");
        vh1.wait_guest_ready(&name);
        let same_process = |what: &str| {
            assert_eq!(vh1.domid(&name), domid, "{what} restarted the domain");
            assert_eq!(vh1.qemu_pid(&name), pid, "{what} replaced QEMU");
        };

        // Live resize up, then memory back down.
        run("grow the e2e VM", vec![Operation::Resize { vm_id: vm_id.clone(), vcpus: 2, memory_mib: 1024 }]).await;
        assert_eq!(vh1.virsh(&["vcpucount", &name, "--live", "--active"]).trim(), "2");
        assert_eq!(field(&vh1.virsh(&["dominfo", &name]), "Max memory"), Some(1024 * 1024));
        same_process("growing");
        run("shrink the e2e VM's memory", vec![Operation::Resize { vm_id: vm_id.clone(), vcpus: 2, memory_mib: 512 }])
            .await;
        assert_eq!(field(&vh1.virsh(&["dominfo", &name]), "Max memory"), Some(512 * 1024));
        same_process("shrinking");

        // CPU and disk limits on the running VM.
        let quota = Operation::SetQuota {
            vm_id: vm_id.clone(),
            cpu_quota_pct: Some(50),
            disk_read_bytes_per_sec: Some(10 << 20),
            disk_write_bytes_per_sec: None,
            disk_iops: Some(500),
            net_mbit_per_sec: None,
        };
        run("limit the e2e VM", vec![quota]).await;
        let sched = vh1.virsh(&["schedinfo", &name, "--live"]);
        assert_eq!(
            (field(&sched, "vcpu_period"), field(&sched, "vcpu_quota")),
            (Some(100_000), Some(50_000)),
            "{sched}"
        );
        let tune = vh1.virsh(&["blkdeviotune", &name, "vda", "--live"]);
        assert_eq!(
            (field(&tune, "read_bytes_sec"), field(&tune, "total_iops_sec")),
            (Some(10 << 20), Some(500)),
            "{tune}"
        );
        same_process("limiting");

        // A failed step: vh2 already runs another domain of that name, so it refuses the migration. The
        // memory grown before it is given back, the VM runs where it was, and an incident names the change.
        let virt_type = std::env::var("TOLLGATE_TEST_VIRT_TYPE").ok();
        let squatter = Libvirt::connect_as(&vh2.uri, virt_type.as_deref()).unwrap();
        let squat = DomainSpec {
            name: name.clone(),
            vm_id: "squatter".into(),
            vcpus: 1,
            max_vcpus: 1,
            memory_mib: 256,
            max_memory_mib: 256,
            memory_slots: 0,
            image: "tiny.qcow2".into(),
            disk_gib: 1,
            boot: None,
        };
        squatter.provision(&squat).unwrap();
        let grow_and_move = vec![
            Operation::Resize { vm_id: vm_id.clone(), vcpus: 2, memory_mib: 1024 },
            Operation::Migrate { vm_id: vm_id.clone(), to_host_id: host_ids[1].clone(), live: true },
        ];
        let (refused, job) = scene.implement("grow and move into a squatter", grow_and_move).await;
        assert_eq!(job.state, JobState::RolledBack, "{job:?}");
        assert_eq!(change::get_change(db, &refused).await.unwrap().state, "rolled_back");
        assert_eq!(field(&vh1.virsh(&["dominfo", &name]), "Max memory"), Some(512 * 1024), "the growth was not undone");
        same_process("the refused migration");
        assert!(scene.incident_caused_by(&refused).await, "no incident is linked to the rolled-back change");
        squatter.delete(&name).unwrap();

        // Live migration with its storage to vh2.
        let migrate = Operation::Migrate { vm_id: vm_id.clone(), to_host_id: host_ids[1].clone(), live: true };
        run("move the e2e VM", vec![migrate]).await;
        assert!(vh2.virsh(&["list", "--name"]).lines().any(|l| l.trim() == name), "not running on {}", vh2.name);
        assert!(!vh1.virsh(&["list", "--all", "--name"]).lines().any(|l| l.trim() == name), "still on {}", vh1.name);
        assert_eq!(vh2.virsh(&["vcpucount", &name, "--live", "--active"]).trim(), "2");
        let vm = tollgate_control::inventory::vm_named(db, &name).await.unwrap().unwrap();
        assert_eq!(vm.parent_id.as_deref(), Some(host_ids[1].as_str()));

        // Evacuating vh2 moves its running VM live to the only other host, vh1, by placement.
        run("evacuate vh2", vec![Operation::Evacuate { host_id: host_ids[1].clone() }]).await;
        assert!(vh1.virsh(&["list", "--name"]).lines().any(|l| l.trim() == name), "not running on {}", vh1.name);
        assert!(!vh2.virsh(&["list", "--all", "--name"]).lines().any(|l| l.trim() == name), "still on {}", vh2.name);
        assert_eq!(vh1.virsh(&["vcpucount", &name, "--live", "--active"]).trim(), "2");
        let vm = tollgate_control::inventory::vm_named(db, &name).await.unwrap().unwrap();
        assert_eq!(vm.parent_id.as_deref(), Some(host_ids[0].as_str()));

        // A vCPU added by hand on vh1, outside any change: its agent's next VM reading shows it, the agent
        // sends the host's domains at once (its inventory interval is the default ten minutes), and the
        // reconciler opens an incident on the host and the VM.
        vh1.virsh(&["setvcpus", &name, "3", "--live"]);
        scene
            .drift(
                &host_ids[0],
                &vm.id,
                &format!("{}: {name} changed outside Tollgate: 3 vCPUs (inventory 2)", vh1.name),
            )
            .await;
    }
}

/// Containers end to end on the test hosts' LXC driver: the real agent (its resident process reading the
/// containers' counters over libvirt's socket one domain at a time, its helper running the tasks) and
/// approved changes that provision a container from the hosts' root image, move its memory limit up and down
/// and set its CPU quota while it runs; a vCPU change and a migration, which LXC cannot do, are refused when
/// requested, growth past its headroom rolls its change back and leaves it running as it was, and its memory
/// limit raised by hand is reported as drift.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_changes_provision_resize_and_limit_a_container_on_a_real_lxc_host() {
    use tollgate_workflows::metrics::store::{query, Selector};
    let scene = Scene::new(true, "e2e-ct").await;
    let (db, name) = (&scene.db, scene.name.clone());
    let host_ids = &scene.lab.host_ids;
    let run = |title: &'static str, ops: Vec<Operation>| scene.run(title, ops);
    let implement = |title: &'static str, ops: Vec<Operation>| scene.implement(title, ops);
    let limit_mib = |h: &TestHost| field(&h.virsh(&["memtune", &name]), "hard_limit").map(|kib| kib / 1024);

    // Placed on one of the container hosts, provisioned from its root file system image, running, held to
    // its memory.
    let mut provision = provision_on(&name, &host_ids[0]);
    if let Operation::Provision { image, container, host_id, .. } = &mut provision {
        *image = "tiny-root.img".into();
        *container = true;
        *host_id = None;
    }
    run("provision the e2e container", vec![provision]).await;
    let vm = tollgate_control::inventory::vm_named(db, &name).await.unwrap().expect("in the inventory");
    let on = host_ids.iter().position(|h| vm.parent_id.as_deref() == Some(h.as_str())).expect("placed on a lab host");
    let (ct_host, other) = (&scene.lab.hosts[on], &host_ids[1 - on]);
    let info = ct_host.virsh(&["dominfo", &name]);
    assert!(info.contains("running") && info.contains("OS Type:        exe"), "{info}");
    assert_eq!(limit_mib(ct_host), Some(512));
    assert!(ct_host.virsh(&["domiflist", &name]).contains("tgbr0"), "a NIC on the agent's guest bridge");
    let vm_id = vm.id;
    let (domid, pid) = (ct_host.domid(&name), ct_host.qemu_pid(&name));
    assert!(pid.is_some(), "no controller pid file for {name}");
    let same_process = |what: &str| {
        assert_eq!(ct_host.domid(&name), domid, "{what} restarted the container");
        assert_eq!(ct_host.qemu_pid(&name), pid, "{what} replaced its controller");
    };

    // Its memory limit moves live, up and then below what it started with.
    run("grow the e2e container", vec![Operation::Resize { vm_id: vm_id.clone(), vcpus: 1, memory_mib: 1024 }]).await;
    assert_eq!(limit_mib(ct_host), Some(1024));
    same_process("growing");
    run("shrink the e2e container", vec![Operation::Resize { vm_id: vm_id.clone(), vcpus: 1, memory_mib: 256 }]).await;
    assert_eq!(limit_mib(ct_host), Some(256));
    same_process("shrinking");

    // A CPU quota on the running container.
    let quota = Operation::SetQuota {
        vm_id: vm_id.clone(),
        cpu_quota_pct: Some(50),
        disk_read_bytes_per_sec: None,
        disk_write_bytes_per_sec: None,
        disk_iops: None,
        net_mbit_per_sec: None,
    };
    run("limit the e2e container", vec![quota]).await;
    assert_eq!(field(&ct_host.virsh(&["schedinfo", &name, "--live"]), "vcpu_quota"), Some(50_000));
    same_process("limiting");

    // What LXC cannot do is refused when it is requested, with the reason.
    let more_vcpus = Operation::Resize { vm_id: vm_id.clone(), vcpus: 2, memory_mib: 256 };
    let moving = Operation::Migrate { vm_id: vm_id.clone(), to_host_id: other.clone(), live: true };
    for (title, op, says) in
        [("a second vCPU", more_vcpus, "request a cold resize"), ("move it", moving, "cannot move it")]
    {
        let refused = scene.staff.request(db, title, vec![op]).await.expect_err("refused when requested");
        assert!(refused.to_string().contains(says), "{title}: {refused}");
    }
    // Past its headroom (4× the memory it was made with) the host refuses when the change runs: the change
    // rolls back with the reason, the container runs on as it was, and an incident names the change.
    let too_big = vec![Operation::Resize { vm_id: vm_id.clone(), vcpus: 1, memory_mib: 4096 }];
    let (refused, job) = implement("grow the e2e container past its headroom", too_big).await;
    assert_eq!(job.state, JobState::RolledBack, "{job:?}");
    assert!(job.error.as_deref().unwrap_or("").contains("cold resize"), "{job:?}");
    assert_eq!(limit_mib(ct_host), Some(256));
    same_process("the refused resize");
    assert!(scene.incident_caused_by(&refused).await, "no incident is linked to the rolled-back change");

    // Its agent reports it like a VM: its limit, from libvirt's socket, one domain at a time.
    let selector = Selector {
        measurement: "vm".into(),
        field: "balloon_current_kib".into(),
        tags: vec![("host".into(), ct_host.name.clone()), ("vm".into(), name.clone())],
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let now = Clock::system().now().unix_timestamp_nanos() as i64;
        let series = query(db, &selector, now - 600_000_000_000, now + 60_000_000_000, 0).await.unwrap();
        let last = series.iter().filter_map(|s| s.points.last()).map(|p| p.1).next_back();
        if last == Some(256.0 * 1024.0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the container's limit is not reported: {series:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Its memory limit raised by hand (as a container that restarts itself comes back at its maximum): the
    // agent reads the limit the kernel holds it to, and the reconciler reports the drift.
    ct_host.virsh(&["memtune", &name, "--hard-limit", "1048576", "--live"]);
    let drift = format!("{}: {name} changed outside Tollgate: 1024 MiB (inventory 256)", ct_host.name);
    scene.drift(&host_ids[on], &vm_id, &drift).await;

    run("delete the e2e container", vec![Operation::Delete { vm_id }]).await;
    assert!(!ct_host.virsh(&["list", "--all", "--name"]).lines().any(|l| l.trim() == name), "still defined");
}

/// One end-to-end run: a fresh store and a server on it, the executor, the real agent on each of the lab's two
/// hosts, the staff that request and approve changes, and the name of the domain the test makes. Dropped, it
/// stops the executor and removes that domain from both hosts, however the test ended; after a failure it
/// prints what the agents said.
struct Scene {
    db: Db,
    lab: Lab,
    staff: Staff,
    name: String,
    agents: Vec<Agent>,
    ticking: tokio::task::JoinHandle<()>,
    _server: (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>),
    _database: TestDatabase,
}

impl Scene {
    /// The scene on the test hosts' QEMU drivers, or on their LXC drivers as container hosts; the domain is
    /// named `<prefix>-<this process>`.
    async fn new(containers: bool, prefix: &str) -> Scene {
        let database = fresh_database().await;
        let db = Db::connect(database.url(), 4, Clock::system()).await.expect("the store opens");
        tollgate_workflows::process::seed_defaults(&db).await.unwrap();
        tollgate_workflows::approval::seed_defaults(&db).await.unwrap();
        let lab = if containers { Lab::containers(&db).await } else { Lab::new(&db).await };
        let port = free_port();
        let server = start_server(&db, port).await;
        let executor = Executor::new(db.clone(), Arc::new(IncidentPolicy::default()));
        let ticking = tokio::spawn(async move {
            loop {
                if let Err(e) = executor.tick().await {
                    eprintln!("executor round failed: {e}");
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let agents = lab.agents(port);
        let staff = Staff::new(&db).await;
        let name = format!("{prefix}-{}", std::process::id() % 100_000);
        Scene { db, lab, staff, name, agents, ticking, _server: server, _database: database }
    }

    /// Requests, approves and starts a change of `ops`; returns its id and its job once finished.
    async fn implement(&self, title: &str, ops: Vec<Operation>) -> (String, Job) {
        let id = self.staff.implementing(&self.db, title, ops).await;
        let job = finished(&self.db, &id).await;
        (id, job)
    }

    /// [`Scene::implement`], whose job must succeed and complete the change.
    async fn run(&self, title: &str, ops: Vec<Operation>) -> Job {
        let (id, job) = self.implement(title, ops).await;
        assert_eq!(job.state, JobState::Succeeded, "{title}: {job:?}");
        assert_eq!(change::get_change(&self.db, &id).await.unwrap().state, "completed", "{title}");
        job
    }

    /// Waits up to 60 s for the reconciler's incident "Unauthorised change on `what`", on the host and the VM.
    async fn drift(&self, host_id: &str, vm_id: &str, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let wanted = format!("Unauthorised change on {what}");
        loop {
            let open =
                incident::list_incidents(&self.db, &IncidentQuery::default(), PageRequest::new(None, None).unwrap())
                    .await
                    .unwrap()
                    .items;
            if let Some(i) = open.iter().find(|i| i.title == wanted) {
                assert!(i.ci_ids.iter().any(|c| c == host_id) && i.ci_ids.iter().any(|c| c == vm_id), "{i:?}");
                return;
            }
            assert!(std::time::Instant::now() < deadline, "no incident {wanted:?} in 60 s; open: {open:?}");
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Whether an incident is linked to the change as caused by it.
    async fn incident_caused_by(&self, change_id: &str) -> bool {
        incident::list_incidents(&self.db, &IncidentQuery::default(), PageRequest::new(None, None).unwrap())
            .await
            .unwrap()
            .items
            .into_iter()
            .any(|i| i.changes.iter().any(|l| l.change_id == change_id && l.kind == LinkKind::CausedBy))
    }
}

impl Drop for Scene {
    fn drop(&mut self) {
        self.ticking.abort();
        for h in &self.lab.hosts {
            let _ = Libvirt::connect(&h.uri).and_then(|l| l.delete(&self.name));
        }
        if std::thread::panicking() {
            for (h, agent) in self.lab.hosts.iter().zip(&self.agents) {
                eprintln!("agent of {}:\n{}", h.name, agent.log());
            }
        }
    }
}
