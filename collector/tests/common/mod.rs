//! What the agent's end-to-end tests share: a real server on a loopback port, an account and token for the
//! agent, and the real agent binary whose log the test reads.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_workflows::accounts::{self, NewUser, Password, Principal, Role, RoleSet, Username};
use tollgate_workflows::approval::{self, Decision};
use tollgate_workflows::change::{self, ChangeEvent, ChangeKind, ChangeSpec, Operation};
use tollgate_workflows::cmdb::{self, CiDraft, CiSpec};
use tollgate_workflows::freeze::Window;
use tollgate_workflows::text::{Description, Name, PageRequest};
use tollgate_workflows::{AuditContext, Db};

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
        let now = time::OffsetDateTime::now_utc();
        let spec = ChangeSpec {
            kind: ChangeKind::Emergency,
            title: Name::parse("title", title).unwrap(),
            description: Description::parse("description", "").unwrap(),
            ci_ids: Vec::new(),
            operations,
            window: Window::new(now - time::Duration::hours(1), now + time::Duration::hours(1)).unwrap(),
        };
        let op = &self.operator;
        let c = change::create_change(db, &ctx_of(op), op, spec).await.unwrap();
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
}
