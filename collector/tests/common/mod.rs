//! What the agent's end-to-end tests share: a real server on a loopback port, an account and token for the
//! agent, and the real agent binary whose log the test reads.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_workflows::accounts::{self, NewUser, Password, Role, RoleSet, Username};
use tollgate_workflows::text::Name;
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
        let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate-agent"))
            .args(["--server", &format!("http://127.0.0.1:{port}"), "--interval", "300ms", "--host", host, "-v"])
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
