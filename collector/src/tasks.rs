//! Host tasks: the agent's second thread long-polls the server for this host's tasks, runs each through
//! the driver in order, and holds its outcome until the server takes it. A task the server hands out again
//! (it never heard the outcome) gets the remembered outcome, not a second run.

use crate::agent::log;
use crate::driver::{DriverConfig, HostDriver, Lazy};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tollgate_control::task::{Hello, HostTask, Outcome, TaskBatch};

/// How long the server may hold a poll open before answering with no tasks.
pub const WAIT_SECS: u64 = 20;

/// The least time between two polls that brought nothing, should a server answer at once instead of waiting.
const EMPTY_POLL_EVERY: Duration = Duration::from_secs(1);

/// How many finished tasks' outcomes are kept to answer a re-delivery; the server re-delivers within
/// minutes, and a host runs far fewer tasks than this in that time.
const REMEMBERED: usize = 1024;

/// Pauses between failed attempts: from `first`, doubling up to `most`; back to `first` after a success.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub first: Duration,
    pub most: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { first: Duration::from_millis(500), most: Duration::from_secs(5) }
    }
}

/// Why a request did not go through.
#[derive(Debug)]
enum Failure {
    /// The server answered that there is nothing to do: an outcome of a task it no longer knows (404) or
    /// already has (409).
    Settled(String),
    /// Unreachable, a token it does not take (yet), a server error: say hello again, pause, try again.
    Again(String),
}

/// The server's agent API (`/api/v1/agent/…`), as this agent's account.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    authorization: String,
}

impl Client {
    /// Talks to the server at `server` (its base URL) with `token`.
    pub fn new(server: &str, token: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        let base = format!("{}/api/v1/agent", server.trim_end_matches('/'));
        Client { agent, base, authorization: format!("Token {token}") }
    }

    fn hello(&self, hello: &Hello) -> Result<(), Failure> {
        self.post(&format!("{}/hello", self.base), hello).map(drop)
    }

    /// This host's tasks, waiting up to `wait_secs` on the server for one to come.
    fn poll(&self, wait_secs: u64) -> Result<TaskBatch, Failure> {
        let sent = self
            .agent
            .get(&format!("{}/tasks?wait_secs={wait_secs}", self.base))
            .header("Authorization", &self.authorization)
            .config()
            .timeout_global(Some(Duration::from_secs(wait_secs + 10)))
            .build()
            .call();
        let body = answer(sent).map_err(|f| match f {
            // A poll is never settled: the server is restarting or does not know this agent yet.
            Failure::Settled(why) => Failure::Again(why),
            again => again,
        })?;
        serde_json::from_str(&body).map_err(|e| Failure::Again(format!("the server's task list did not parse: {e}")))
    }

    fn report(&self, id: &str, outcome: &Outcome) -> Result<(), Failure> {
        self.post(&format!("{}/tasks/{}/outcome", self.base, path_segment(id)), outcome).map(drop)
    }

    fn post(&self, url: &str, body: &impl serde::Serialize) -> Result<String, Failure> {
        let body = serde_json::to_vec(body).map_err(|e| Failure::Settled(format!("cannot encode the body: {e}")))?;
        let sent = self
            .agent
            .post(url)
            .header("Authorization", &self.authorization)
            .header("Content-Type", "application/json")
            .send(&body[..]);
        answer(sent)
    }
}

fn answer(sent: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<String, Failure> {
    let mut response = sent.map_err(|e| Failure::Again(format!("cannot reach the server: {e}")))?;
    let status = response.status().as_u16();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    match status {
        200..=299 => Ok(body),
        404 | 409 => Err(Failure::Settled(format!("the server answered {status}: {}", body.trim()))),
        _ => Err(Failure::Again(format!("the server answered {status}: {}", body.trim()))),
    }
}

/// `id` as one path segment: task ids are the server's (`job:step:attempt`), but a `/` or `?` in one must
/// not change the route.
fn path_segment(id: &str) -> String {
    id.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The task loop's state: the driver, whether the server has heard this agent's hello since it was last
/// unreachable, and the outcomes of finished tasks.
pub struct Runner {
    client: Client,
    driver: Lazy<Box<dyn HostDriver>>,
    config: DriverConfig,
    backoff: Backoff,
    pause: Duration,
    verbose: bool,
    greeted: bool,
    /// The hypervisor's kind, asked once.
    kind: Option<String>,
    /// Why the server or the driver is not working, while it is not: each trouble is logged once.
    trouble: Option<String>,
    /// Oldest first.
    finished: VecDeque<(String, Outcome)>,
    /// When the host's domains were last sent (or the runner started).
    inventory_sent: Option<Instant>,
    /// The VMs' shape when they were last sent: a new shape sends them again at once.
    inventory_shape: u64,
}

impl Runner {
    pub fn new(client: Client, config: DriverConfig, backoff: Backoff, verbose: bool) -> Self {
        Runner {
            client,
            driver: Lazy::new(config.tasks.clone()),
            config,
            backoff,
            pause: backoff.first,
            verbose,
            greeted: false,
            kind: None,
            trouble: None,
            finished: VecDeque::new(),
            // The first inventory goes once the VMs have been read (a new shape), else one interval after the
            // start.
            inventory_sent: Some(Instant::now()),
            inventory_shape: 0,
        }
    }

    /// Runs for the life of the process.
    pub fn run(mut self) -> ! {
        loop {
            self.cycle();
        }
    }

    /// One round: a hello if due, one poll, and every task it brought, each outcome taken by the server
    /// before the next task runs. After a failure it pauses, so calling it again is always safe.
    pub fn cycle(&mut self) {
        let greeted = self.say_hello();
        // Before waiting on the server (or pausing after a failed hello): the driver may let go of what it
        // holds (the helper) while no task comes.
        if let Some(driver) = self.driver.opened() {
            driver.idle();
        }
        if !greeted {
            return;
        }
        let asked = Instant::now();
        match self.client.poll(WAIT_SECS) {
            Ok(batch) => {
                self.recovered();
                if self.verbose {
                    log(&format!("polled for host tasks: {} task(s)", batch.tasks.len()));
                }
                if batch.tasks.is_empty() {
                    std::thread::sleep(EMPTY_POLL_EVERY.saturating_sub(asked.elapsed()));
                }
                for task in batch.tasks {
                    self.handle(task);
                }
            }
            Err(Failure::Again(why) | Failure::Settled(why)) => self.failed(&format!("polling for host tasks: {why}")),
        }
        self.send_inventory();
    }

    /// Sends the host's domains when due, for the server to compare with its inventory. A failure is logged
    /// and tried again next time; tasks do not wait for it.
    fn send_inventory(&mut self) {
        let shape = self.config.shape.load(Ordering::Relaxed);
        let reshaped = shape != 0 && shape != self.inventory_shape;
        if !reshaped && self.inventory_sent.is_some_and(|at| at.elapsed() < self.config.inventory_every) {
            return;
        }
        self.inventory_sent = Some(Instant::now());
        let domains = match self.driver.get().and_then(|d| d.domains()) {
            Ok(domains) => domains,
            Err(e) => return log(&format!("cannot list this host's domains for the server: {e}")),
        };
        // The shape counts as sent once the server has the domains: until then each round tries again.
        match self.client.post(&format!("{}/domains", self.client.base), &domains) {
            Ok(_) => {
                self.inventory_shape = shape;
                if self.verbose {
                    log(&format!("sent {} domain(s) for the server to compare", domains.len()));
                }
            }
            Err(Failure::Again(why) | Failure::Settled(why)) => log(&format!("sending this host's domains: {why}")),
        }
    }

    fn handle(&mut self, task: HostTask) {
        let label = task.action.label();
        let outcome = match self.finished.iter().find(|(id, _)| *id == task.id) {
            Some((_, outcome)) => {
                log(&format!("task {} ({label}) ran already: sending its outcome again", task.id));
                outcome.clone()
            }
            None => {
                log(&format!("task {}: {label}", task.id));
                // Blocking is fine: this thread does nothing else meanwhile, and the metrics have a driver of
                // their own.
                let outcome = match self.driver.get() {
                    Ok(driver) => driver.perform(&task.action),
                    Err(error) => Outcome::Failed { error },
                };
                match outcome.failed() {
                    Some(e) => log(&format!("task {} failed: {e}", task.id)),
                    None => log(&format!("task {} done", task.id)),
                }
                if self.finished.len() == REMEMBERED {
                    self.finished.pop_front();
                }
                self.finished.push_back((task.id.clone(), outcome.clone()));
                outcome
            }
        };
        self.report(&task.id, &outcome);
    }

    /// Sends an outcome until the server takes it or says it has no use for it; a restarting server
    /// loses none.
    fn report(&mut self, id: &str, outcome: &Outcome) {
        loop {
            if !self.say_hello() {
                continue;
            }
            match self.client.report(id, outcome) {
                Ok(()) => {
                    self.recovered();
                    return;
                }
                Err(Failure::Settled(why)) => {
                    log(&format!("the outcome of task {id} is dropped: {why}"));
                    return;
                }
                Err(Failure::Again(why)) => self.failed(&format!("reporting task {id}: {why}")),
            }
        }
    }

    /// Says hello unless the server has heard it since it was last unreachable; false (after a pause) when
    /// the hello did not go through.
    fn say_hello(&mut self) -> bool {
        if self.greeted {
            return true;
        }
        let known = self.kind.clone().map(Ok);
        let hypervisor = match known.unwrap_or_else(|| self.driver.get().and_then(|driver| driver.kind())) {
            Ok(kind) => self.kind.insert(kind).clone(),
            Err(e) => {
                self.failed(&format!("no host tasks run: cannot open the hypervisor at {} ({e})", self.config.uri));
                return false;
            }
        };
        let hello = Hello { hypervisor, peer_uri: self.config.peer_uri.clone() };
        match self.client.hello(&hello) {
            Ok(()) => {
                self.greeted = true;
                if self.verbose || self.trouble.is_none() {
                    log(&format!(
                        "ready for host tasks: {} at {}, reached by peers at {}",
                        hello.hypervisor, self.config.uri, hello.peer_uri
                    ));
                }
                true
            }
            Err(Failure::Again(why) | Failure::Settled(why)) => {
                self.failed(&format!("saying hello for host tasks: {why}"));
                false
            }
        }
    }

    fn failed(&mut self, why: &str) {
        self.greeted = false;
        if self.trouble.as_deref() != Some(why) {
            log(&format!("{why}; trying again"));
            self.trouble = Some(why.to_owned());
        }
        std::thread::sleep(self.pause);
        self.pause = (self.pause * 2).min(self.backoff.most);
    }

    fn recovered(&mut self) {
        self.pause = self.backoff.first;
        if self.trouble.take().is_some() {
            log("host tasks: working again");
        }
    }
}

#[cfg(test)]
mod tests;
