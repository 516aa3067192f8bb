//! Host tasks in a helper process: `tollgate-agent-libvirt` links libvirt's C library and runs the tasks the
//! agent hands it, one JSON line in, one JSON line out, until its input closes. The agent starts it when a
//! task (or its hello, or the inventory) needs the hypervisor and closes it once tasks stop coming, so the
//! library and the libraries it loads are in memory only while there is work for them.

use crate::driver::HostDriver;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};
use tollgate_control::hypervisor::{Domain, HvResult, Hypervisor, HypervisorError};
use tollgate_control::task::{self, Action, Outcome};

/// How long the helper stays after a task: a change's tasks come a few seconds apart. After the hello and
/// the inventory, which come alone, it is closed at once.
pub const IDLE: Duration = Duration::from_secs(60);

/// What the agent asks the helper.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "snake_case")]
pub enum Request {
    Kind,
    Perform { task: Action },
}

/// The helper's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    Kind(String),
    Outcome(Outcome),
    /// The hypervisor could not be opened.
    Failed(HypervisorError),
}

/// The helper's side: answers each request line with the driver `open` gives (opened at the first
/// request, and again after it failed to open), until `input` ends.
pub fn serve(
    open: impl Fn() -> HvResult<Box<dyn Hypervisor>>,
    input: impl BufRead,
    mut output: impl Write,
) -> std::io::Result<()> {
    let mut driver: Option<Box<dyn Hypervisor>> = None;
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = match serde_json::from_str::<Request>(&line) {
            Err(e) => Reply::Failed(HypervisorError::Invalid(format!("the helper cannot read the request: {e}"))),
            Ok(request) => match driver.take().map_or_else(&open, Ok) {
                Err(e) => Reply::Failed(e),
                Ok(d) => {
                    let reply = match request {
                        Request::Kind => Reply::Kind(d.kind()),
                        Request::Perform { task } => Reply::Outcome(task::perform(&*d, &task)),
                    };
                    driver = Some(d);
                    reply
                }
            },
        };
        serde_json::to_writer(&mut output, &reply)?;
        output.write_all(b"\n")?;
        output.flush()?;
    }
    Ok(())
}

/// A running helper.
struct Process {
    child: Child,
    input: ChildStdin,
    output: BufReader<ChildStdout>,
}

impl Process {
    /// Closes its input, which ends it, and waits a little for it; then it is killed.
    fn close(mut self) {
        drop(self.input);
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The agent's side: the helper program and its arguments, started on demand.
pub struct Helper {
    program: PathBuf,
    args: Vec<String>,
    process: Option<Process>,
    /// When the last task ran; the hello and the inventory do not keep the helper.
    last_task: Option<Instant>,
    idle: Duration,
}

impl Helper {
    /// `program args…`, started at the first call and closed `idle` after the last task.
    pub fn new(program: &Path, args: Vec<String>, idle: Duration) -> Helper {
        Helper { program: program.to_owned(), args, process: None, last_task: None, idle }
    }

    fn start(&self) -> HvResult<Process> {
        // The helper talks to libvirt only: the agent's token stays with the agent.
        let mut child = Command::new(&self.program)
            .args(&self.args)
            .env_remove("TOLLGATE_AGENT_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                HypervisorError::Backend(format!("cannot start the hypervisor helper {}: {e}", self.program.display()))
            })?;
        match (child.stdin.take(), child.stdout.take()) {
            (Some(input), Some(output)) => Ok(Process { child, input, output: BufReader::new(output) }),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                Err(HypervisorError::Backend("the hypervisor helper has no pipes".into()))
            }
        }
    }

    fn call(&mut self, request: &Request) -> HvResult<Reply> {
        let mut process = match self.process.take() {
            Some(p) => p,
            None => self.start()?,
        };
        let mut line = serde_json::to_string(request)
            .map_err(|e| HypervisorError::Invalid(format!("cannot encode the request: {e}")))?;
        line.push('\n');
        let mut answer = String::new();
        let exchanged = process
            .input
            .write_all(line.as_bytes())
            .and_then(|()| process.input.flush())
            .and_then(|()| process.output.read_line(&mut answer));
        match exchanged {
            Ok(n) if n > 0 => {
                let reply = serde_json::from_str(&answer).map_err(|e| {
                    HypervisorError::Backend(format!("the hypervisor helper answered what cannot be read: {e}"))
                });
                self.process = Some(process);
                reply
            }
            outcome => {
                let why = match outcome {
                    Err(e) => e.to_string(),
                    Ok(_) => "it exited".to_owned(),
                };
                process.close();
                Err(HypervisorError::Backend(format!("the hypervisor helper stopped mid-call: {why}")))
            }
        }
    }
}

impl Helper {
    fn outcome(&mut self, action: &Action) -> Outcome {
        match self.call(&Request::Perform { task: action.clone() }) {
            Ok(Reply::Outcome(outcome)) => outcome,
            Ok(Reply::Failed(error)) | Err(error) => Outcome::Failed { error },
            Ok(Reply::Kind(_)) => Outcome::Failed { error: out_of_turn() },
        }
    }
}

fn out_of_turn() -> HypervisorError {
    HypervisorError::Backend("the hypervisor helper answered out of turn".into())
}

impl HostDriver for Helper {
    fn kind(&mut self) -> HvResult<String> {
        match self.call(&Request::Kind)? {
            Reply::Kind(kind) => Ok(kind),
            Reply::Failed(e) => Err(e),
            Reply::Outcome(_) => Err(out_of_turn()),
        }
    }

    fn domains(&mut self) -> HvResult<Vec<Domain>> {
        match self.outcome(&Action::List) {
            Outcome::Domains { domains } => Ok(domains),
            Outcome::Failed { error } => Err(error),
            _ => Err(out_of_turn()),
        }
    }

    fn perform(&mut self, action: &Action) -> Outcome {
        self.last_task = Some(Instant::now());
        self.outcome(action)
    }

    fn idle(&mut self) {
        if self.process.is_some() && self.last_task.is_none_or(|at| at.elapsed() >= self.idle) {
            if let Some(p) = self.process.take() {
                p.close();
            }
        }
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Some(p) = self.process.take() {
            p.close();
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tollgate_control::hypervisor::sim::SimFleet;
    use tollgate_control::hypervisor::DomainSpec;

    fn exchange(requests: &[Request], open: impl Fn() -> HvResult<Box<dyn Hypervisor>>) -> Vec<Reply> {
        let mut input = String::new();
        for r in requests {
            input.push_str(&serde_json::to_string(r).unwrap());
            input.push('\n');
        }
        input.push_str("\nnot json\n");
        let mut output = Vec::new();
        serve(open, input.as_bytes(), &mut output).unwrap();
        String::from_utf8(output).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn the_helper_runs_each_task_through_its_driver_and_answers_in_order() {
        let host = SimFleet::new().host("h", &["img"]);
        let opened = std::sync::atomic::AtomicUsize::new(0);
        let replies = exchange(
            &[
                Request::Kind,
                Request::Perform { task: Action::Provision { spec: DomainSpec::small("web-1", "img") } },
                Request::Perform { task: Action::SetVcpus { name: "web-1".into(), vcpus: 2 } },
                Request::Perform { task: Action::Inspect { name: "nope".into() } },
            ],
            || {
                opened.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(Box::new(host.clone()) as Box<dyn Hypervisor>)
            },
        );
        assert_eq!(replies.len(), 5, "{replies:?}");
        assert_eq!(replies[0], Reply::Kind("simulated".into()));
        assert!(matches!(&replies[2], Reply::Outcome(Outcome::Domain { domain }) if domain.vcpus == 2));
        assert!(matches!(&replies[3], Reply::Outcome(Outcome::Failed { error: HypervisorError::NotFound { .. } })));
        assert!(matches!(&replies[4], Reply::Failed(HypervisorError::Invalid(_))), "a bad line is answered");
        assert_eq!(opened.load(std::sync::atomic::Ordering::SeqCst), 1, "opened once, kept");
        assert_eq!(host.domain("web-1").unwrap().vcpus, 2);
    }

    #[test]
    fn a_hypervisor_that_cannot_be_opened_is_each_calls_answer_and_is_tried_again() {
        let tries = std::sync::atomic::AtomicUsize::new(0);
        let replies = exchange(&[Request::Kind, Request::Perform { task: Action::List }], || {
            tries.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Err(HypervisorError::Backend("cannot connect".into()))
        });
        assert_eq!(replies[0], Reply::Failed(HypervisorError::Backend("cannot connect".into())));
        assert_eq!(replies[1], replies[0]);
        assert_eq!(
            tries.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "each call tries; a line that cannot be read does not"
        );
    }

    fn script(body: &str, idle: Duration) -> Helper {
        Helper::new(Path::new("/bin/sh"), vec!["-c".into(), body.into()], idle)
    }

    #[test]
    fn the_agent_starts_the_helper_on_demand_and_keeps_it_only_while_tasks_come() {
        // A helper that answers every line with the same outcome, or kind.
        let kind = script(r#"while read -r line; do echo '{"kind":"libvirt/kvm"}'; done"#, IDLE);
        let mut helper = kind;
        assert!(helper.process.is_none(), "nothing runs before the first call");
        assert_eq!(helper.kind().unwrap(), "libvirt/kvm");
        assert_eq!(helper.kind().unwrap(), "libvirt/kvm", "the same process answers again");
        helper.idle();
        assert!(helper.process.is_none(), "a hello alone does not keep it");
        assert_eq!(helper.kind().unwrap(), "libvirt/kvm", "started again on demand");

        let done = r#"while read -r line; do echo '{"outcome":{"outcome":"done"}}'; done"#;
        let mut tasks = script(done, IDLE);
        assert_eq!(tasks.perform(&Action::Delete { name: "web-1".into() }), Outcome::Done);
        tasks.idle();
        assert!(tasks.process.is_some(), "kept for the change's next task");
        let mut brief = script(done, Duration::ZERO);
        assert_eq!(brief.perform(&Action::Delete { name: "web-1".into() }), Outcome::Done);
        brief.idle();
        assert!(brief.process.is_none(), "closed once tasks stop");
    }

    #[test]
    fn a_helper_that_dies_or_is_missing_fails_the_call_clearly_and_is_started_again() {
        let mut dies = script("read -r line; exit 3", IDLE);
        let err = dies.kind().unwrap_err();
        assert!(err.to_string().contains("stopped mid-call"), "{err}");
        assert!(dies.process.is_none());
        match dies.perform(&Action::List) {
            Outcome::Failed { error } => assert!(error.to_string().contains("stopped mid-call"), "{error}"),
            other => panic!("{other:?}"),
        }
        let mut missing = Helper::new(Path::new("/nonexistent/tollgate-agent-libvirt"), vec![], IDLE);
        let err = missing.kind().unwrap_err();
        assert!(err.to_string().contains("cannot start the hypervisor helper /nonexistent"), "{err}");
        let mut garbled = script("read -r line; echo hello", IDLE);
        assert!(garbled.kind().unwrap_err().to_string().contains("cannot be read"));
    }
}
