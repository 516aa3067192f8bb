//! Benchmark: full normal-change lifecycles through the HTTP API with concurrent clients.
//!
//! Each lifecycle is ten requests by five people: create (requester) → submit → assess → request approval
//! (change manager) → approve by two approvers (a quorum-2 policy) → schedule → start → report done
//! (operator) → close with a review. Runs on SQLite by default, or on a fresh database of the PostgreSQL
//! server `TEST_DATABASE_URL` names. Bounded by `--seconds` and `--max-lifecycles`.
//!
//!   cargo bench -p tollgate-api --bench lifecycle -- [--clients 64] [--seconds 20] [--max-lifecycles 100000]

mod common;

use anyhow::{bail, Context};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tollgate_workflows::accounts::{self, bootstrap_admin, NewUser, Password, Role, RoleSet, Username};
use tollgate_workflows::text::Name;
use tollgate_workflows::{AuditContext, Clock, Db};

const PASSWORD: &str = "benchmark-password";

/// The allocator the server binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    clients: usize,
    seconds: u64,
    max_lifecycles: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut a = Args { clients: 64, seconds: 20, max_lifecycles: 100_000 };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().context("a flag needs a value");
        match flag.as_str() {
            "--clients" => a.clients = value()?.parse()?,
            "--seconds" => a.seconds = value()?.parse()?,
            "--max-lifecycles" => a.max_lifecycles = value()?.parse()?,
            "--bench" => {}
            other => bail!("unknown flag {other}"),
        }
    }
    if a.clients == 0 || a.seconds == 0 || a.seconds > 600 {
        bail!("--clients must be positive and --seconds between 1 and 600");
    }
    Ok(a)
}

/// One keep-alive HTTP/1.1 connection; enough client for a benchmark on loopback.
struct Conn {
    stream: BufReader<TcpStream>,
    addr: std::net::SocketAddr,
}

impl Conn {
    async fn open(addr: std::net::SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream: BufReader::new(stream), addr })
    }

    async fn request(&mut self, method: &str, path: &str, token: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let body = body.to_string();
        // Head and body in one write, as a real client sends them: one segment, one wake-up of the server.
        let message = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        self.stream.get_mut().write_all(message.as_bytes()).await?;
        let (status, buf) = common::read_response(&mut self.stream).await?;
        let value = if buf.is_empty() { Value::Null } else { serde_json::from_slice(&buf)? };
        Ok((status, value))
    }
}

struct Tokens {
    requester: String,
    manager: String,
    approver1: String,
    approver2: String,
    operator: String,
}

async fn setup(db: &Db) -> anyhow::Result<()> {
    bootstrap_admin(db, Some(Password::parse("p", "benchmark-admin-password")?)).await?;
    tollgate_workflows::process::seed_defaults(db).await?;
    tollgate_workflows::approval::seed_defaults(db).await?;
    let ctx = AuditContext::system("benchmark");
    let approvers = accounts::list_groups(db, Some("change-approvers"), Default::default()).await?;
    let group = approvers.items.first().context("the change-approvers group")?.id.clone();
    for (name, role) in [
        ("requester", Role::Requester),
        ("manager", Role::ChangeManager),
        ("approver1", Role::Approver),
        ("approver2", Role::Approver),
        ("operator", Role::Operator),
    ] {
        let user = accounts::create_user(
            db,
            &ctx,
            NewUser {
                username: Username::parse(name)?,
                display_name: Name::parse("n", name)?,
                email: None,
                password: Password::parse("p", PASSWORD)?,
                roles: RoleSet::new([role]),
            },
        )
        .await?;
        if role == Role::Approver {
            accounts::set_membership(db, &ctx, &group, &user.id, true).await?;
        }
    }
    let mut policy: Vec<tollgate_workflows::approval::ApprovalPolicy> =
        serde_json::from_str(tollgate_workflows::approval::DEFAULT_POLICIES)?;
    let mut low = policy.remove(0);
    low.stages[0].rule = tollgate_workflows::approval::Rule::Quorum(2);
    tollgate_workflows::approval::put_policy(db, &ctx, low).await?;
    Ok(())
}

/// A business service of its own for client `n`.
async fn service_for(db: &Db, n: usize) -> anyhow::Result<String> {
    let draft = tollgate_workflows::cmdb::CiDraft {
        kind: "service".into(),
        name: format!("bench-service-{n}"),
        ..Default::default()
    };
    let spec = tollgate_workflows::cmdb::CiSpec::try_from(draft)?;
    Ok(tollgate_workflows::cmdb::create_ci(db, &AuditContext::system("benchmark"), spec).await?.id)
}

async fn sign_in(conn: &mut Conn, user: &str) -> anyhow::Result<String> {
    let (status, body) =
        conn.request("POST", "/api/v1/auth/tokens", "", &json!({"username": user, "password": PASSWORD})).await?;
    if status != 201 {
        bail!("sign-in as {user}: {status} {body}");
    }
    Ok(body["token"].as_str().context("token")?.to_owned())
}

/// Runs one lifecycle on `ci` (each client has its own, so clients do not conflict with each other);
/// records each request's latency.
async fn lifecycle(conn: &mut Conn, t: &Tokens, ci: &str, latencies: &mut Vec<Duration>) -> anyhow::Result<()> {
    let now = time::OffsetDateTime::now_utc();
    let fmt = |d: time::OffsetDateTime| d.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let create = json!({"kind": "normal", "title": "benchmark change", "ci_ids": [ci],
        "window_start": fmt(now - time::Duration::hours(1)), "window_end": fmt(now + time::Duration::days(1))});
    let started = Instant::now();
    let (status, body) = conn.request("POST", "/api/v1/changes", &t.requester, &create).await?;
    latencies.push(started.elapsed());
    if status != 201 {
        bail!("create: {status} {body}");
    }
    let id = body["id"].as_str().context("id")?.to_owned();
    let events = format!("/api/v1/changes/{id}/events");
    let approvals = format!("/api/v1/changes/{id}/approvals");
    let steps: [(&str, &str, Value); 9] = [
        (&events, &t.requester, json!({"event": "submit"})),
        (&events, &t.manager, json!({"event": "assess"})),
        (&events, &t.manager, json!({"event": "request_approval"})),
        (&approvals, &t.approver1, json!({"decision": "approve"})),
        (&approvals, &t.approver2, json!({"decision": "approve"})),
        (&events, &t.manager, json!({"event": "schedule"})),
        (&events, &t.operator, json!({"event": "start"})),
        (&events, &t.operator, json!({"event": "report_done"})),
        (&events, &t.manager, json!({"event": "close", "review": "went as planned"})),
    ];
    for (path, token, body) in steps {
        let started = Instant::now();
        let (status, answer) = conn.request("POST", path, token, &body).await?;
        latencies.push(started.elapsed());
        if status != 200 {
            bail!("{path} {body}: {status} {answer}");
        }
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let database = tollgate_workflows::testing::fresh_database().await;
    let engine = tollgate_workflows::Engine::from_url(database.url())?;
    // The server as it runs by default, its pool size included.
    let config = tollgate_api::config::Config::default();
    let db = Db::connect(database.url(), config.database.max_connections, Clock::system()).await?;
    setup(&db).await?;
    let (router, _) = tollgate_api::app(tollgate_api::state(&config, db.clone()), config.server.max_body_bytes);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, router).await });

    let mut first = Conn::open(addr).await?;
    let tokens = std::sync::Arc::new(Tokens {
        requester: sign_in(&mut first, "requester").await?,
        manager: sign_in(&mut first, "manager").await?,
        approver1: sign_in(&mut first, "approver1").await?,
        approver2: sign_in(&mut first, "approver2").await?,
        operator: sign_in(&mut first, "operator").await?,
    });
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let remaining = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(args.max_lifecycles));
    let started = Instant::now();
    let mut clients = Vec::new();
    for n in 0..args.clients {
        let tokens = tokens.clone();
        let ci = service_for(&db, n).await?;
        let remaining = remaining.clone();
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let (mut done, mut failed) = (0usize, Vec::new());
            let mut conn = match Conn::open(addr).await {
                Ok(c) => c,
                Err(e) => return (latencies, done, vec![e.to_string()]),
            };
            while Instant::now() < deadline
                && remaining
                    .fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| {
                        n.checked_sub(1)
                    })
                    .is_ok()
            {
                match lifecycle(&mut conn, &tokens, &ci, &mut latencies).await {
                    Ok(()) => done += 1,
                    Err(e) => {
                        failed.push(e.to_string());
                        if failed.len() > 3 {
                            break;
                        }
                    }
                }
            }
            (latencies, done, failed)
        }));
    }
    let mut latencies = Vec::new();
    let (mut done, mut failures) = (0, Vec::new());
    for c in clients {
        let (l, d, f) = c.await?;
        latencies.extend(l);
        done += d;
        failures.extend(f);
    }
    let elapsed = started.elapsed();
    server.abort();
    latencies.sort_unstable();
    let rate = done as f64 / elapsed.as_secs_f64();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "lifecycle benchmark on {}: {done} normal-change lifecycles ({} requests) by {} clients in {:.1} s",
        engine.name(),
        latencies.len(),
        args.clients,
        elapsed.as_secs_f64()
    );
    println!(
        "  {rate:.1} lifecycles/s; request latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default())
    );
    println!("  goal on a 2-core machine: >= 300 lifecycles/s and p99 < 50 ms on PostgreSQL");
    if !failures.is_empty() {
        println!("  {} lifecycle(s) failed; first: {}", failures.len(), failures[0]);
        bail!("lifecycles failed");
    }
    Ok(())
}
