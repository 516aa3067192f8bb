//! The task loop against a scripted HTTP server on a loopback port and the simulated driver.

use super::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use tollgate_control::hypervisor::sim::{SimFleet, SimHost};
use tollgate_control::hypervisor::{DomainSpec, Hypervisor, PowerState};
use tollgate_control::task::Action;

/// A request as the server saw it.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    path: String,
    authorization: String,
    body: String,
}

impl Request {
    fn is(&self, method: &str, path_start: &str) -> bool {
        self.method == method && self.path.starts_with(path_start)
    }
}

/// Answers each request with what `respond` says, one connection per request, and keeps every request.
struct Server {
    base: String,
    requests: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    fn start(mut respond: impl FnMut(&Request) -> (u16, String) + Send + 'static) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&mut stream) else { continue };
                let (status, body) = respond(&request);
                seen.lock().expect("not poisoned").push(request);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
                     Connection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Server { base, requests }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests.lock().expect("not poisoned").clone()
    }

    fn outcomes(&self) -> Vec<(String, Outcome)> {
        self.requests()
            .into_iter()
            .filter(|r| r.is("POST", "/api/v1/agent/tasks/"))
            .map(|r| {
                let id = r.path.trim_start_matches("/api/v1/agent/tasks/").trim_end_matches("/outcome").to_owned();
                (id, serde_json::from_str(&r.body).expect("an outcome"))
            })
            .collect()
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut words = line.split_whitespace();
    let (method, path) = (words.next()?.to_owned(), words.next()?.to_owned());
    let (mut length, mut authorization) = (0, String::new());
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        match name.to_ascii_lowercase().as_str() {
            "content-length" => length = value.trim().parse().ok()?,
            "authorization" => authorization = value.trim().to_owned(),
            _ => {}
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { method, path, authorization, body: String::from_utf8(body).ok()? })
}

fn batch(tasks: &[HostTask]) -> (u16, String) {
    (200, serde_json::to_string(&TaskBatch { tasks: tasks.to_vec() }).expect("encodes"))
}

fn spec(name: &str) -> DomainSpec {
    DomainSpec::small(name, "img")
}

fn runner(server: &Server, host: &SimHost) -> Runner {
    let host = host.clone();
    let config = DriverConfig::in_process(
        "sim:///h",
        "sim://h",
        move || Ok(Box::new(host.clone()) as Box<dyn Hypervisor>),
        Duration::from_secs(3600),
    );
    let quick = Backoff { first: Duration::from_millis(1), most: Duration::from_millis(4) };
    Runner::new(Client::new(&server.base, "secret-token"), config, quick, true)
}

fn task(id: &str, action: Action) -> HostTask {
    HostTask { id: id.into(), action }
}

#[test]
fn the_tasks_of_a_batch_run_in_order_and_each_outcome_is_posted() {
    let tasks = [
        task("j1:0:0", Action::Provision { spec: spec("web-1") }),
        task("j1:1:0", Action::SetVcpus { name: "web-1".into(), vcpus: 3 }),
    ];
    let mut polls = 0;
    let server = Server::start(move |r| match r.method.as_str() {
        "GET" => {
            polls += 1;
            batch(if polls == 1 { &tasks[..] } else { &[] })
        }
        _ => (204, String::new()),
    });
    let host = SimFleet::new().host("h", &["img"]);
    runner(&server, &host).cycle();

    let requests = server.requests();
    let route: Vec<(&str, &str)> = requests.iter().map(|r| (r.method.as_str(), r.path.as_str())).collect();
    assert_eq!(
        route,
        [
            ("POST", "/api/v1/agent/hello"),
            ("GET", "/api/v1/agent/tasks?wait_secs=20"),
            ("POST", "/api/v1/agent/tasks/j1:0:0/outcome"),
            ("POST", "/api/v1/agent/tasks/j1:1:0/outcome"),
        ]
    );
    assert!(requests.iter().all(|r| r.authorization == "Token secret-token"));
    let hello: Hello = serde_json::from_str(&requests[0].body).expect("a hello");
    assert_eq!(hello, Hello { hypervisor: "simulated".into(), peer_uri: "sim://h".into() });
    let outcomes = server.outcomes();
    match &outcomes[..] {
        [(_, Outcome::Domain { domain: created }), (_, Outcome::Domain { domain: resized })] => {
            assert_eq!((created.vcpus, resized.vcpus), (1, 3), "run in order");
        }
        other => panic!("outcomes: {other:?}"),
    }
    assert_eq!(host.domain("web-1").expect("exists").vcpus, 3);
}

#[test]
fn a_task_delivered_again_gets_its_remembered_outcome_without_a_second_run() {
    let stop = [task("j2:0:0", Action::Stop { name: "web-1".into() })];
    let server = Server::start(move |r| match r.method.as_str() {
        "GET" => batch(&stop),
        _ => (204, String::new()),
    });
    let host = SimFleet::new().host("h", &["img"]);
    host.provision(&spec("web-1")).expect("provisioned");
    let mut runner = runner(&server, &host);
    runner.cycle();
    // Started by hand after the stop: a second run of the task would stop it again.
    host.start("web-1").expect("started");
    runner.cycle();

    let outcomes = server.outcomes();
    assert_eq!(outcomes.len(), 2);
    assert_eq!(outcomes[0], outcomes[1], "the same outcome, sent again");
    assert!(matches!(&outcomes[0].1, Outcome::Domain { domain } if domain.state == PowerState::ShutOff));
    assert_eq!(host.domain("web-1").expect("exists").state, PowerState::Running, "not stopped twice");
}

#[test]
fn an_outcome_waits_through_a_server_restart_and_follows_a_new_hello() {
    let tasks = [task("j3:0:0", Action::Inspect { name: "web-1".into() })];
    let mut reports = 0;
    let server = Server::start(move |r| match r.method.as_str() {
        "GET" => batch(&tasks),
        _ if r.path.ends_with("/outcome") => {
            reports += 1;
            if reports < 3 {
                (503, "restarting".into())
            } else {
                (204, String::new())
            }
        }
        _ => (204, String::new()),
    });
    let host = SimFleet::new().host("h", &["img"]);
    host.provision(&spec("web-1")).expect("provisioned");
    runner(&server, &host).cycle();

    let route: Vec<String> = server.requests().iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    let (hello, poll, report) =
        ("POST /api/v1/agent/hello", "GET /api/v1/agent/tasks?wait_secs=20", "POST /api/v1/agent/tasks/j3:0:0/outcome");
    assert_eq!(route, [hello, poll, report, hello, report, hello, report]);
}

#[test]
fn an_outcome_the_server_no_longer_wants_is_dropped_and_the_next_task_runs() {
    let tasks = [task("gone", Action::List), task("j4:0:0", Action::List)];
    let server = Server::start(move |r| match r.method.as_str() {
        "GET" => batch(&tasks),
        _ if r.path.contains("/gone/") => (404, "no such task".into()),
        _ => (204, String::new()),
    });
    let host = SimFleet::new().host("h", &["img"]);
    runner(&server, &host).cycle();

    let ids: Vec<String> = server.outcomes().into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids, ["gone", "j4:0:0"], "each posted once");
}

#[test]
fn a_task_id_stays_one_path_segment() {
    assert_eq!(path_segment("j1:0:0"), "j1:0:0");
    assert_eq!(path_segment("a/b?c d"), "a%2Fb%3Fc%20d");
}

#[test]
fn the_inventory_goes_when_the_vms_readings_show_a_new_shape_and_not_otherwise() {
    let server = Server::start(|r| match r.method.as_str() {
        "GET" => batch(&[]),
        _ => (204, String::new()),
    });
    let host = SimFleet::new().host("h", &["img"]);
    host.provision(&spec("web-1")).expect("provisioned");
    let mut runner = runner(&server, &host);
    let inventories = || server.requests().iter().filter(|r| r.is("POST", "/api/v1/agent/domains")).count();
    runner.cycle();
    assert_eq!(inventories(), 0, "nothing read yet, and the interval is an hour away");

    let read = |runner: &Runner| {
        let stats = host.stats().expect("stats");
        runner.config.shape.store(crate::driver::shape(&stats), Ordering::Relaxed);
    };
    read(&runner);
    runner.cycle();
    assert_eq!(inventories(), 1, "the first reading sends it");
    read(&runner);
    runner.cycle();
    assert_eq!(inventories(), 1, "the same shape sends nothing");

    host.set_vcpus("web-1", 2).expect("resized");
    read(&runner);
    runner.cycle();
    assert_eq!(inventories(), 2, "a vCPU more sends it at once");
    let sent: Vec<tollgate_control::hypervisor::Domain> =
        serde_json::from_str(&server.requests().last().expect("a request").body).expect("domains");
    assert_eq!(sent.iter().map(|d| (d.name.as_str(), d.vcpus)).collect::<Vec<_>>(), [("web-1", 2)]);
}
