//! The agent against a real server that goes away: what it collects while the server is down waits on disk
//! and arrives once the server is back — every point the agent collected, once, and no others.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_workflows::accounts::{self, NewUser, Password, Role, RoleSet, Username};
use tollgate_workflows::metrics::store::{query, Selector};
use tollgate_workflows::testing::fresh_database;
use tollgate_workflows::text::Name;
use tollgate_workflows::{AuditContext, Clock, Db};

const PASSWORD: &str = "agent-password-for-tests";

/// A server on `port` over `db` until the returned sender is dropped or fired.
async fn start_server(db: &Db, port: u16) -> (tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
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

/// The agent's log lines so far.
struct Agent {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Agent {
    fn count(&self, prefix: &str) -> usize {
        self.lines.lock().unwrap().iter().filter(|l| l.contains(prefix)).count()
    }

    /// Waits (up to `limit`) until `done` holds over the agent's log.
    async fn wait(&self, what: &str, limit: Duration, done: impl Fn(&Agent) -> bool) {
        let deadline = Instant::now() + limit;
        while !done(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}; the agent said:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// (sequence, timestamp) of every batch collected, and the sequences sent.
    fn batches(&self) -> (Vec<(u64, i64)>, BTreeSet<u64>) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_collected_while_the_server_is_down_arrive_exactly_once_after_it_returns() {
    let database = fresh_database().await;
    let db = Db::connect(database.url(), 4, Clock::system()).await.expect("the store opens");
    let ctx = AuditContext::system("test");
    let agent_user = NewUser {
        username: Username::parse("hv-restart").unwrap(),
        display_name: Name::parse("n", "agent of hv-restart").unwrap(),
        email: None,
        password: Password::parse("p", PASSWORD).unwrap(),
        roles: RoleSet::new([Role::Agent]),
    };
    accounts::create_user(&db, &ctx, agent_user).await.unwrap();
    let name = Name::parse("name", "agent").unwrap();
    let (token, _) =
        accounts::issue_token(&db, "hv-restart", PASSWORD, &name, time::Duration::hours(1), None).await.unwrap();

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (stop, server) = start_server(&db, port).await;
    let queue = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tollgate-agent"))
        .args(["--server", &format!("http://127.0.0.1:{port}"), "--interval", "300ms", "--host", "hv-restart", "-v"])
        .arg("--queue-dir")
        .arg(queue.path())
        .env("TOLLGATE_AGENT_TOKEN", &token.token)
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
    let agent = Agent { child, lines };

    agent.wait("three batches sent", Duration::from_secs(20), |a| a.count("sent batch") >= 3).await;
    let _ = stop.send(());
    server.await.unwrap();
    let sent_before = agent.count("sent batch");
    let collected_before = agent.count("collected batch");
    agent
        .wait("five batches collected while the server is down", Duration::from_secs(20), |a| {
            a.count("collected batch") >= collected_before + 5
        })
        .await;
    assert!(agent.count("keeping") >= 1, "the agent said it keeps the batches:\n{}", agent.log());
    assert!(agent.count("sent batch") <= sent_before + 1, "nothing is sent while the server is down");

    let (_stop, _server) = start_server(&db, port).await;
    agent
        .wait("the queue drained", Duration::from_secs(30), |a| {
            let (collected, sent) = a.batches();
            a.count("the server is back") >= 1
                && collected.len() >= collected_before + 7
                && collected.iter().all(|(s, _)| sent.contains(s))
        })
        .await;
    let (collected, _) = agent.batches();
    drop(agent);

    // The system measurement has one uptime point per batch, stamped with the batch's time.
    let selector = Selector {
        measurement: "system".to_owned(),
        field: "uptime".to_owned(),
        tags: vec![("host".to_owned(), "hv-restart".to_owned())],
    };
    let stored = query(&db, &selector, 0, i64::MAX, 0).await.unwrap();
    assert_eq!(stored.len(), 1);
    let stored: Vec<i64> = stored[0].points.iter().map(|p| p.0).collect();
    let expected: Vec<i64> = collected.iter().map(|c| c.1).collect();
    assert_eq!(stored, expected, "every collected point once, in order, and no other");
}
