//! Host tasks: the unit of work a host's agent pulls from the server and runs through its driver, and
//! the outcome it reports. A task is idempotent (driver calls are), so one delivered twice does no harm.

use crate::hypervisor::{Disk, Domain, DomainSpec, Hypervisor, HypervisorError, Limits, Peer};
use serde::{Deserialize, Serialize};

/// What a task asks of the host's hypervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Provision { spec: DomainSpec },
    SetVcpus { name: String, vcpus: u32 },
    SetMemory { name: String, memory_mib: u64 },
    SetLimits { name: String, limits: Limits },
    Limits { name: String },
    PrepareIncoming { disks: Vec<Disk> },
    Migrate { name: String, peer: Peer },
    Start { name: String },
    Stop { name: String },
    Delete { name: String },
    Adopt { name: String, vm_id: String },
    Inspect { name: String },
    List,
}

impl Action {
    /// A short label for progress and logs.
    pub fn label(&self) -> String {
        match self {
            Action::Provision { spec } => format!("create and start {}", spec.name),
            Action::SetVcpus { name, vcpus } => format!("set {name} to {vcpus} vCPUs"),
            Action::SetMemory { name, memory_mib } => format!("set {name} to {memory_mib} MiB"),
            Action::SetLimits { name, .. } => format!("apply limits to {name}"),
            Action::Limits { name } => format!("read the limits of {name}"),
            Action::PrepareIncoming { disks } => format!("prepare {} disk(s) for an incoming VM", disks.len()),
            Action::Migrate { name, peer } => format!("migrate {name} to {}", peer.host),
            Action::Start { name } => format!("start {name}"),
            Action::Stop { name } => format!("stop {name}"),
            Action::Delete { name } => format!("delete {name}"),
            Action::Adopt { name, .. } => format!("adopt {name}"),
            Action::Inspect { name } => format!("read back {name}"),
            Action::List => "list the host's domains".into(),
        }
    }
}

/// A task as the agent receives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostTask {
    pub id: String,
    #[serde(flatten)]
    pub action: Action,
}

/// What running a task gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Domain { domain: Domain },
    Limits { limits: Limits },
    Domains { domains: Vec<Domain> },
    Done,
    Failed { error: HypervisorError },
}

impl Outcome {
    pub fn failed(&self) -> Option<&HypervisorError> {
        match self {
            Outcome::Failed { error } => Some(error),
            _ => None,
        }
    }
}

/// Runs `action` on `driver` (blocking).
pub fn perform(driver: &dyn Hypervisor, action: &Action) -> Outcome {
    let domain = |r: Result<Domain, HypervisorError>| match r {
        Ok(domain) => Outcome::Domain { domain },
        Err(error) => Outcome::Failed { error },
    };
    let done = |r: Result<(), HypervisorError>| match r {
        Ok(()) => Outcome::Done,
        Err(error) => Outcome::Failed { error },
    };
    let limits = |r: Result<Limits, HypervisorError>| match r {
        Ok(limits) => Outcome::Limits { limits },
        Err(error) => Outcome::Failed { error },
    };
    match action {
        Action::Provision { spec } => domain(driver.provision(spec)),
        Action::SetVcpus { name, vcpus } => domain(driver.set_vcpus(name, *vcpus)),
        Action::SetMemory { name, memory_mib } => domain(driver.set_memory(name, *memory_mib)),
        Action::SetLimits { name, limits: l } => limits(driver.set_limits(name, l)),
        Action::Limits { name } => limits(driver.limits(name)),
        Action::PrepareIncoming { disks } => done(driver.prepare_incoming(disks)),
        Action::Migrate { name, peer } => done(driver.migrate(name, peer)),
        Action::Start { name } => domain(driver.start(name)),
        Action::Stop { name } => domain(driver.stop(name)),
        Action::Delete { name } => done(driver.delete(name)),
        Action::Adopt { name, vm_id } => domain(driver.adopt(name, vm_id)),
        Action::Inspect { name } => domain(driver.domain(name)),
        Action::List => match driver.domains() {
            Ok(domains) => Outcome::Domains { domains },
            Err(error) => Outcome::Failed { error },
        },
    }
}

/// What an agent says of itself when it starts pulling tasks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The driver's kind (`libvirt/kvm`, `simulated`).
    pub hypervisor: String,
    /// How other hosts' hypervisors reach this one for migrations (`qemu+tcp://host/system`).
    pub peer_uri: String,
}

/// The answer to a task poll.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskBatch {
    pub tasks: Vec<HostTask>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::hypervisor::sim::SimFleet;

    #[test]
    fn a_task_travels_as_flat_json() {
        let t = HostTask { id: "j1:0:0".into(), action: Action::SetVcpus { name: "web-1".into(), vcpus: 4 } };
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#"{"id":"j1:0:0","action":"set_vcpus","name":"web-1","vcpus":4}"#);
        assert_eq!(serde_json::from_str::<HostTask>(&json).unwrap(), t);
    }

    #[test]
    fn performing_reports_the_driver_error() {
        let host = SimFleet::new().host("h", &[]);
        let out = perform(&host, &Action::Inspect { name: "missing".into() });
        assert_eq!(out.failed(), Some(&HypervisorError::NotFound { name: "missing".into() }));
        let json = serde_json::to_string(&out).unwrap();
        assert!(json.contains(r#""outcome":"failed""#) && json.contains(r#""error":"not_found""#), "{json}");
        let invalid = Outcome::Failed { error: HypervisorError::Invalid("bad".into()) };
        let back: Outcome = serde_json::from_str(&serde_json::to_string(&invalid).unwrap()).unwrap();
        assert_eq!(back, invalid);
    }
}
