//! What the agent's end-to-end tests share: a real server on a loopback port, an account and token for the
//! agent, and the real agent binary whose log the test reads.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_control::jobs::{self, Job};
use tollgate_workflows::accounts::{self, NewUser, Password, Principal, Role, RoleSet, Username};
use tollgate_workflows::approval::{self, Decision};
use tollgate_workflows::change::{self, Change, ChangeEvent, ChangeKind, ChangeSpec, Operation};
use tollgate_workflows::cmdb::{self, CiDraft, CiSpec};
use tollgate_workflows::freeze::Window;
use tollgate_workflows::text::{Description, Name, PageRequest};
use tollgate_workflows::{AuditContext, Db, StoreResult};

const PASSWORD: &str = "agent-password-for-tests";

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server on `port` over `db` until the returned sender is dropped or fired.
pub async fn start_server(db: &Db, port: u16) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let config = tollgate_api::config::Config::default();
    let (router, _) = tollgate_api::app(tollgate_api::state(&config, db.clone()), config.server.max_body_bytes);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("the port is free again");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.await;
        };
        tollgate_api::serve(listener, router, shutdown, Duration::from_secs(5)).await.expect("the server runs");
    });
    (stop, server)
}

/// An account with the agent role named `username`, and a token of it.
pub async fn agent_token(db: &Db, username: &str) -> String {
    let ctx = AuditContext::system("test");
    let agent_user = NewUser {
        username: Username::parse(username).unwrap(),
        display_name: Name::parse("n", &format!("agent of {username}")).unwrap(),
        email: None,
        password: Password::parse("p", PASSWORD).unwrap(),
        roles: RoleSet::new([Role::Agent]),
    };
    accounts::create_user(db, &ctx, agent_user).await.unwrap();
    let name = Name::parse("name", "agent").unwrap();
    let (token, _) =
        accounts::issue_token(db, username, PASSWORD, &name, time::Duration::hours(1), None).await.unwrap();
    token.token
}

/// The real agent, reporting as `host` every 300 ms, and its log lines so far.
pub struct Agent {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    pub fn start(port: u16, host: &str, queue: &Path, token: &str) -> Agent {
        Agent::start_with(port, host, queue, token, &[])
    }

    /// [`Agent::start`] with more arguments (`--libvirt-uri`, …).
    pub fn start_with(port: u16, host: &str, queue: &Path, token: &str, more: &[String]) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate-agent"))
            .args(["--server", &format!("http://127.0.0.1:{port}"), "--interval", "300ms", "--host", host, "-v"])
            .args(more)
            .arg("--queue-dir")
            .arg(queue)
            .env("TOLLGATE_AGENT_TOKEN", token)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the agent starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Agent { child, lines }
    }

    pub fn count(&self, prefix: &str) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| l.contains(prefix)).count()
    }

    /// Waits (up to `limit`) until `done` holds over the agent's log.
    pub async fn wait(&self, what: &str, limit: Duration, done: impl Fn(&Agent) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}; the agent said:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// (sequence, timestamp) of every batch collected, and the sequences sent.
    pub fn batches(&self) -> (Vec<(u64, i64)>, BTreeSet<u64>) {
        let lines = self.lines.lock().unwrap();
        let collected = lines
            .iter()
            .filter_map(|l| {
                let rest = l.split("collected batch ").nth(1)?;
                let (seq, rest) = rest.split_once(':')?;
                Some((seq.parse().ok()?, rest.rsplit(' ').next()?.parse().ok()?))
            })
            .collect();
        let sent =
            lines.iter().filter_map(|l| l.split("sent batch ").nth(1)?.split(':').next()?.parse().ok()).collect();
        (collected, sent)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits (up to `limit`) until `probe` returns something.
pub async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A CI of `kind` under `parent`; a host is a small KVM host.
pub async fn ci(db: &Db, kind: &str, name: &str, parent: Option<&str>) -> String {
    ci_with(
        db,
        CiDraft { kind: kind.into(), name: name.into(), parent_id: parent.map(str::to_owned), ..CiDraft::default() },
    )
    .await
}

/// A CI from `draft`; a host without sizes gets 8 vCPUs, 16 GiB and 100 GiB, and KVM.
pub async fn ci_with(db: &Db, mut draft: CiDraft) -> String {
    if draft.kind == "host" {
        draft.hypervisor.get_or_insert_with(|| "kvm".into());
        draft.vcpus.get_or_insert(8);
        draft.memory_mib.get_or_insert(16_384);
        draft.disk_gib.get_or_insert(100);
    }
    let spec = CiSpec::try_from(draft).unwrap();
    cmdb::create_ci(db, &AuditContext::system("test"), spec).await.unwrap().id
}

pub async fn person(db: &Db, username: &str, roles: &[Role]) -> Principal {
    let user = NewUser {
        username: Username::parse(username).unwrap(),
        display_name: Name::parse("n", username).unwrap(),
        email: None,
        password: Password::parse("p", "a long enough password").unwrap(),
        roles: RoleSet::new(roles.iter().copied()),
    };
    let u = accounts::create_user(db, &AuditContext::system("test"), user).await.unwrap();
    Principal { user_id: u.id, username: u.username, roles: RoleSet::new(roles.iter().copied()), token_id: "t".into() }
}

pub fn ctx_of(p: &Principal) -> AuditContext {
    AuditContext { actor_id: Some(p.user_id.clone()), actor: p.username.clone(), on_behalf_of: None, request_id: None }
}

/// An operator and an emergency CAB member, who between them get changes approved and started.
pub struct Staff {
    pub operator: Principal,
    pub cab: Principal,
}

impl Staff {
    pub async fn new(db: &Db) -> Staff {
        let operator = person(db, "otto", &[Role::Operator]).await;
        let cab = person(db, "edna", &[Role::Approver]).await;
        let groups =
            accounts::list_groups(db, Some("emergency-cab"), PageRequest::new(None, None).unwrap()).await.unwrap();
        accounts::set_membership(db, &AuditContext::system("test"), &groups.items[0].id, &cab.user_id, true)
            .await
            .unwrap();
        Staff { operator, cab }
    }

    /// An emergency change of `operations`, approved by the emergency CAB and started: implementing from an
    /// hour ago to an hour from now. Returns its id.
    pub async fn implementing(&self, db: &Db, title: &str, operations: Vec<Operation>) -> String {
        let op = &self.operator;
        let c = self.request(db, title, operations).await.unwrap();
        for event in ["submit", "start"] {
            if event == "start" {
                approval::vote(db, &ctx_of(&self.cab), &c.id, &self.cab, Decision::Approve, None).await.unwrap();
            }
            let e = ChangeEvent { event: event.to_owned(), ..ChangeEvent::default() };
            change::fire_change(db, &ctx_of(op), &c.id, &change::person(&op.roles), e).await.unwrap();
        }
        assert_eq!(change::get_change(db, &c.id).await.unwrap().state, "implementing");
        c.id
    }

    /// Requests an emergency change of `operations` for the window of an hour ago to an hour from now.
    pub async fn request(&self, db: &Db, title: &str, operations: Vec<Operation>) -> StoreResult<Change> {
        let now = time::OffsetDateTime::now_utc();
        let spec = ChangeSpec {
            kind: ChangeKind::Emergency,
            title: Name::parse("title", title).unwrap(),
            description: Description::parse("description", "").unwrap(),
            ci_ids: Vec::new(),
            operations,
            window: Window::new(now - time::Duration::hours(1), now + time::Duration::hours(1)).unwrap(),
        };
        change::create_change(db, &ctx_of(&self.operator), &self.operator, spec).await
    }
}

/// A test host: its name and how this process reaches its libvirt (a unix socket in its run folder).
pub struct TestHost {
    pub name: String,
    pub uri: String,
}

impl TestHost {
    pub fn virsh(&self, args: &[&str]) -> String {
        let out = Command::new("virsh").arg("-c").arg(&self.uri).args(args).output().expect("virsh runs");
        assert!(out.status.success(), "virsh {args:?} on {}: {}", self.name, String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `DIR/vhN/run/libvirt`: the folder of the daemon's socket.
    pub fn run_dir(&self) -> PathBuf {
        let socket = self.uri.split("socket=").nth(1).expect("a unix socket URI");
        PathBuf::from(socket).parent().unwrap().to_path_buf()
    }

    /// The QEMU process of a running VM, or the controller process of a running container.
    pub fn qemu_pid(&self, name: &str) -> Option<u32> {
        let driver = if self.containers() { "lxc" } else { "qemu" };
        let file = self.run_dir().join(driver).join(format!("{name}.pid"));
        std::fs::read_to_string(file).ok()?.trim().parse().ok()
    }

    /// Whether this is the host's container driver (libvirt's LXC) rather than its QEMU.
    pub fn containers(&self) -> bool {
        self.uri.starts_with("lxc")
    }

    pub fn domid(&self, name: &str) -> String {
        self.virsh(&["domid", name]).trim().to_string()
    }

    /// Waits for the guest's ready line on its logged serial console (`DIR/vhN/log/qemu`).
    pub fn wait_guest_ready(&self, name: &str) {
        let log = self.run_dir().ancestors().nth(2).unwrap().join("log/qemu").join(format!("{name}-serial.log"));
        let deadline = Instant::now() + Duration::from_secs(120);
        while !std::fs::read_to_string(&log).unwrap_or_default().contains("tollgate-guest ready") {
            assert!(Instant::now() < deadline, "{name}'s guest did not come up in 120 s ({log:?})");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

pub fn test_hosts() -> (TestHost, TestHost) {
    let list = std::env::var("TOLLGATE_TEST_LIBVIRT_HOSTS").unwrap_or_else(|_| {
        panic!("TOLLGATE_TEST_LIBVIRT_HOSTS is not set: this test needs libvirt test hosts (scripts/test starts them)")
    });
    let mut hosts =
        list.split(',').filter_map(|h| h.split_once('=')).map(|(n, u)| TestHost { name: n.into(), uri: u.into() });
    let a = hosts.next().expect("a first test host");
    let b = hosts.next().expect("a second test host");
    (a, b)
}

/// A value from `virsh` output: the first word after `label:`.
pub fn field(out: &str, label: &str) -> Option<u64> {
    out.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim() == label)
        .and_then(|(_, v)| v.split_whitespace().next()?.parse().ok())
}

/// Waits for the change's job to finish and returns it.
pub async fn finished(db: &Db, change_id: &str) -> Job {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(job) = jobs::jobs_of_change(db, change_id).await.unwrap().into_iter().next() {
            if job.state.finished() {
                return job;
            }
        }
        assert!(Instant::now() < deadline, "the job of change {change_id} did not finish in 240 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Two libvirt test hosts in the inventory (one cluster), with an agent account for each.
pub struct Lab {
    pub hosts: [TestHost; 2],
    /// The hosts' CI ids, in the order of `hosts`.
    pub host_ids: Vec<String>,
    tokens: Vec<String>,
    queues: tempfile::TempDir,
}

impl Lab {
    pub async fn new(db: &Db) -> Lab {
        Lab::of(db, false).await
    }

    /// The same two hosts as container hosts: their libvirt's LXC driver, `lxc` in the inventory.
    pub async fn containers(db: &Db) -> Lab {
        Lab::of(db, true).await
    }

    async fn of(db: &Db, containers: bool) -> Lab {
        let (mut a, mut b) = test_hosts();
        if containers {
            for h in [&mut a, &mut b] {
                h.uri = h.uri.replacen("qemu", "lxc", 1);
            }
        }
        let region = ci(db, "region", "lab", None).await;
        let dc = ci(db, "datacenter", "lab-dc", Some(&region)).await;
        let cluster = ci(db, "cluster", "lab-cl", Some(&dc)).await;
        let (mut host_ids, mut tokens) = (Vec::new(), Vec::new());
        for h in [&a, &b] {
            let agent = format!("agent-{}", h.name);
            let draft = CiDraft {
                kind: "host".into(),
                name: h.name.clone(),
                parent_id: Some(cluster.clone()),
                agent_id: Some(agent.clone()),
                hypervisor: containers.then(|| "lxc".to_string()),
                ..CiDraft::default()
            };
            host_ids.push(ci_with(db, draft).await);
            tokens.push(agent_token(db, &agent).await);
        }
        Lab { hosts: [a, b], host_ids, tokens, queues: tempfile::tempdir().unwrap() }
    }

    /// The real agent on each host, driving its libvirt, reporting to the server on `port`.
    pub fn agents(&self, port: u16) -> Vec<Agent> {
        let virt_type = std::env::var("TOLLGATE_TEST_VIRT_TYPE").unwrap_or_else(|_| "kvm".into());
        self.hosts
            .iter()
            .zip(&self.tokens)
            .map(|(h, token)| {
                let driver = if h.containers() { "lxc" } else { "qemu" };
                let peer = format!("{driver}+tcp://{}/system", h.name);
                // Every test host has an empty bridge of this name for guest NICs (scripts/lib/vhosts.sh).
                let mut more =
                    ["--libvirt-uri", h.uri.as_str(), "--peer-uri", peer.as_str(), "--guest-bridge", "tgbr0"]
                        .map(str::to_string)
                        .to_vec();
                if !h.containers() {
                    more.extend(["--virt-type".to_string(), virt_type.clone()]);
                }
                Agent::start_with(port, &h.name, &self.queues.path().join(&h.name), token, &more)
            })
            .collect()
    }
}

/// A small VM (1 vCPU, 512 MiB, 1 GiB of the test hosts' `tiny.qcow2` appliance) pinned to `host_id`.
pub fn provision_on(name: &str, host_id: &str) -> Operation {
    Operation::Provision {
        name: name.to_owned(),
        image: "tiny.qcow2".into(),
        vcpus: 1,
        memory_mib: 512,
        disk_gib: 1,
        service_id: None,
        host_id: Some(host_id.to_owned()),
        container: false,
    }
}
