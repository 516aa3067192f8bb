//! `kill -9` of the server while a job waits on a host: once in the middle of a provision, once in the
//! middle of a live migration. The agent finishes the task and keeps its outcome until a server is back;
//! the restarted server takes the job over when the dead one's lease lapses and carries it to the end.
//! Afterwards the inventory matches what libvirt reports. Needs the libvirt test hosts and the `tollgate`
//! binary beside this test's (`scripts/test` builds the whole workspace).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{finished, free_port, provision_on, Lab, Staff};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tollgate_control::hypervisor::libvirt::Libvirt;
use tollgate_control::hypervisor::Hypervisor;
use tollgate_control::inventory;
use tollgate_control::jobs::JobState;
use tollgate_workflows::change::{self, Operation};
use tollgate_workflows::{Clock, Db};

/// The server binary, built beside this test binary.
fn server_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().and_then(Path::parent).map(|d| d.join("tollgate")).unwrap();
    assert!(bin.exists(), "{} is missing: build the server first (cargo build -p tollgate-api)", bin.display());
    bin
}

/// The server as its own process, on `port`, over the SQLite file in `data`.
struct Server {
    child: Child,
}

impl Server {
    fn start(data: &Path, port: u16) -> Server {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(data.join("server.log")).unwrap();
        let child = Command::new(server_binary())
            .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(data)
            .env("TOLLGATE__CONTROL__TICK_MILLIS", "100")
            .env("TOLLGATE__METRICS__SELF_INTERVAL_SECS", "0")
            .env("TOLLGATE__CONTROL__DEMO_FLEET", "false")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("the server starts");
        let deadline = Instant::now() + Duration::from_secs(60);
        let ready = format!("http://127.0.0.1:{port}/readyz");
        while ureq::get(&ready).call().is_err() {
            assert!(Instant::now() < deadline, "the server did not get ready in 60 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Server { child }
    }

    /// SIGKILL: no shutdown, no lease given back, a transaction possibly half way.
    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the task of the change's job whose action is `action` has been handed to its agent.
async fn delivered(db: &Db, change_id: &str, action: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let pattern = format!("%\"action\":\"{action}\"%");
    loop {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT t.id FROM host_tasks t JOIN jobs j ON j.id = t.job_id \
             WHERE j.change_id = $1 AND t.action LIKE $2 AND t.state <> 'pending'",
        )
        .bind(change_id)
        .bind(&pattern)
        .fetch_optional(db.pool())
        .await
        .unwrap();
        if row.is_some() {
            return;
        }
        assert!(Instant::now() < deadline, "no {action} task was delivered for change {change_id}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_killed_mid_provision_and_mid_migration_resumes_its_jobs_and_the_inventory_matches_libvirt() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let server = Server::start(data.path(), port);
    let url = format!("sqlite://{}?mode=rwc", data.path().join("tollgate.db").display());
    let db = Db::connect(&url, 2, Clock::system()).await.expect("the server's store opens");
    let lab = Lab::new(&db).await;
    let [vh1, vh2] = &lab.hosts;
    let _agents = lab.agents(port);
    let staff = Staff::new(&db).await;
    let name = format!("crash-{}", std::process::id() % 100_000);
    let _cleanup = Cleanup { uris: [vh1.uri.clone(), vh2.uri.clone()], name: name.clone() };

    // Killed while vh1's agent creates the domain.
    let first = staff.implementing(&db, "provision through a crash", vec![provision_on(&name, &lab.host_ids[0])]).await;
    delivered(&db, &first, "provision").await;
    server.kill_9();
    let server = Server::start(data.path(), port);
    let job = finished(&db, &first).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    assert_eq!(change::get_change(&db, &first).await.unwrap().state, "completed");
    let vm = inventory::vm_named(&db, &name).await.unwrap().expect("the VM is in the inventory");
    assert_eq!((vm.state.as_str(), vm.parent_id.as_deref()), ("running", Some(lab.host_ids[0].as_str())));
    let on_vh1 = Libvirt::connect(&vh1.uri).unwrap().domain(&name).unwrap();
    assert_eq!(on_vh1.vm_id.as_deref(), Some(vm.id.as_str()), "libvirt and the inventory disagree");
    assert!(vh1.virsh(&["list", "--name"]).lines().any(|l| l.trim() == name));

    // Killed while vh1's agent migrates it to vh2.
    let migrate = Operation::Migrate { vm_id: vm.id.clone(), to_host_id: lab.host_ids[1].clone(), live: true };
    let second = staff.implementing(&db, "migrate through a crash", vec![migrate]).await;
    delivered(&db, &second, "migrate").await;
    server.kill_9();
    let _server = Server::start(data.path(), port);
    let job = finished(&db, &second).await;
    assert_eq!(job.state, JobState::Succeeded, "{job:?}");
    let vm = inventory::vm_named(&db, &name).await.unwrap().unwrap();
    assert_eq!(vm.parent_id.as_deref(), Some(lab.host_ids[1].as_str()), "the inventory did not follow the VM");
    assert!(vh2.virsh(&["list", "--name"]).lines().any(|l| l.trim() == name), "not running on {}", vh2.name);
    assert!(!vh1.virsh(&["list", "--all", "--name"]).lines().any(|l| l.trim() == name), "still on {}", vh1.name);
}

/// Removes the test's VM from both hosts however the test ends.
struct Cleanup {
    uris: [String; 2],
    name: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for uri in &self.uris {
            let _ = Libvirt::connect(uri).and_then(|l| l.delete(&self.name));
        }
    }
}
