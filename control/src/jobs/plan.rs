//! A job's plan: the approved operations turned into steps, each small enough to run again after a
//! crash, and the inverse steps a failure runs. Steps name VMs by name (unique in the inventory, and
//! the domain name on the host), so a VM provisioned earlier in the same job is found the same way.

use crate::hypervisor::Limits;
use crate::inventory;
use serde::{Deserialize, Serialize};
use tollgate_workflows::change::{ApprovedChange, Operation};
use tollgate_workflows::cmdb::CiKind;
use tollgate_workflows::{Db, StoreResult, ValidationError};

/// One step of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Choose a host (or take the pinned one) and record the VM in the inventory as planned.
    Place {
        vm: String,
        vcpus: i64,
        memory_mib: i64,
        disk_gib: i64,
        service_id: Option<String>,
        host_id: Option<String>,
        /// Among container hosts rather than VM hosts.
        #[serde(default)]
        container: bool,
    },
    /// Create the domain from the image on the VM's host and start it.
    CreateDomain {
        vm: String,
        image: String,
    },
    SetVcpus {
        vm: String,
        vcpus: i64,
    },
    SetMemory {
        vm: String,
        memory_mib: i64,
    },
    /// Apply limits; fields left out stay as they are, 0 removes a limit.
    SetLimits {
        vm: String,
        limits: Limits,
    },
    /// Live-migrate to the host, or to the host placement chooses when `None` (evacuation).
    Migrate {
        vm: String,
        to_host_id: Option<String>,
    },
    Power {
        vm: String,
        on: bool,
    },
    /// Stop and remove the domain and its disk; the VM stays in the inventory as retired.
    Delete {
        vm: String,
    },
    /// Take an unmanaged domain into the inventory, without restarting it.
    Adopt {
        host_id: String,
        domain: String,
    },
    /// Read the VM back and compare it with the inventory.
    Verify {
        vm: String,
    },
    /// Inverse of `CreateDomain`: remove the domain and its disk.
    RemoveDomain {
        vm: String,
    },
    /// Inverse of `Place`: forget the planned VM.
    Unplace {
        vm: String,
    },
}

impl Step {
    /// The VM the step works on.
    pub fn vm(&self) -> Option<&str> {
        match self {
            Step::Place { vm, .. }
            | Step::CreateDomain { vm, .. }
            | Step::SetVcpus { vm, .. }
            | Step::SetMemory { vm, .. }
            | Step::SetLimits { vm, .. }
            | Step::Migrate { vm, .. }
            | Step::Power { vm, .. }
            | Step::Delete { vm }
            | Step::Verify { vm }
            | Step::RemoveDomain { vm }
            | Step::Unplace { vm } => Some(vm),
            Step::Adopt { domain, .. } => Some(domain),
        }
    }

    /// What the step does, for progress.
    pub fn label(&self) -> String {
        match self {
            Step::Place { vm, .. } => format!("place {vm}"),
            Step::CreateDomain { vm, .. } => format!("create and start {vm}"),
            Step::SetVcpus { vm, vcpus } => format!("set {vm} to {vcpus} vCPUs"),
            Step::SetMemory { vm, memory_mib } => format!("set {vm} to {memory_mib} MiB"),
            Step::SetLimits { vm, .. } => format!("apply limits to {vm}"),
            Step::Migrate { vm, to_host_id: Some(h) } => format!("migrate {vm} to host {h}"),
            Step::Migrate { vm, to_host_id: None } => format!("migrate {vm} off its host"),
            Step::Power { vm, on: true } => format!("start {vm}"),
            Step::Power { vm, on: false } => format!("stop {vm}"),
            Step::Delete { vm } => format!("delete {vm}"),
            Step::Adopt { domain, .. } => format!("adopt {domain}"),
            Step::Verify { vm } => format!("verify {vm}"),
            Step::RemoveDomain { vm } => format!("remove {vm}"),
            Step::Unplace { vm } => format!("forget planned {vm}"),
        }
    }
}

async fn vm_name(db: &Db, vm_id: &str) -> StoreResult<String> {
    Ok(inventory::ci_of(db, vm_id, CiKind::Vm).await?.name)
}

/// The steps that carry out an approved change, verification last.
pub async fn plan(db: &Db, change: &ApprovedChange) -> StoreResult<Vec<Step>> {
    let mut steps = Vec::new();
    let mut verify: Vec<String> = Vec::new();
    let touch = |verify: &mut Vec<String>, vm: &str| {
        if !verify.iter().any(|v| v == vm) {
            verify.push(vm.to_string());
        }
    };
    for op in change.operations() {
        match op {
            Operation::Provision { name, image, vcpus, memory_mib, disk_gib, service_id, host_id, container } => {
                steps.push(Step::Place {
                    vm: name.clone(),
                    vcpus: *vcpus,
                    memory_mib: *memory_mib,
                    disk_gib: *disk_gib,
                    service_id: service_id.clone(),
                    host_id: host_id.clone(),
                    container: *container,
                });
                steps.push(Step::CreateDomain { vm: name.clone(), image: image.clone() });
                touch(&mut verify, name);
            }
            Operation::Resize { vm_id, vcpus, memory_mib } => {
                let vm = vm_name(db, vm_id).await?;
                steps.push(Step::SetMemory { vm: vm.clone(), memory_mib: *memory_mib });
                steps.push(Step::SetVcpus { vm: vm.clone(), vcpus: *vcpus });
                touch(&mut verify, &vm);
            }
            Operation::SetQuota { vm_id, .. } => {
                let vm = vm_name(db, vm_id).await?;
                let limits = op.vm_limits().unwrap_or_default();
                steps.push(Step::SetLimits { vm: vm.clone(), limits });
                touch(&mut verify, &vm);
            }
            Operation::Migrate { vm_id, to_host_id, live } => {
                let ci = inventory::ci_of(db, vm_id, CiKind::Vm).await?;
                let vm = ci.name;
                inventory::ci_of(db, to_host_id, CiKind::Host).await?;
                // A running VM moves live; asked to move cold, it is stopped first and started again there.
                let cold_while_running = !live && ci.state == "running";
                if cold_while_running {
                    steps.push(Step::Power { vm: vm.clone(), on: false });
                }
                steps.push(Step::Migrate { vm: vm.clone(), to_host_id: Some(to_host_id.clone()) });
                if cold_while_running {
                    steps.push(Step::Power { vm: vm.clone(), on: true });
                }
                touch(&mut verify, &vm);
            }
            Operation::Evacuate { host_id } => {
                inventory::ci_of(db, host_id, CiKind::Host).await?;
                let vms = inventory::all_of(db, CiKind::Vm).await?;
                // Live where it runs, cold where it is stopped.
                let on_host = |v: &&tollgate_workflows::cmdb::Ci| {
                    v.parent_id.as_deref() == Some(host_id) && matches!(v.state.as_str(), "running" | "stopped")
                };
                for vm in vms.iter().filter(on_host) {
                    steps.push(Step::Migrate { vm: vm.name.clone(), to_host_id: None });
                    touch(&mut verify, &vm.name);
                }
            }
            Operation::Stop { vm_id } => {
                let vm = vm_name(db, vm_id).await?;
                steps.push(Step::Power { vm: vm.clone(), on: false });
                touch(&mut verify, &vm);
            }
            Operation::Start { vm_id } => {
                let vm = vm_name(db, vm_id).await?;
                steps.push(Step::Power { vm: vm.clone(), on: true });
                touch(&mut verify, &vm);
            }
            Operation::Adopt { host_id, domain } => {
                inventory::ci_of(db, host_id, CiKind::Host).await?;
                crate::hypervisor::valid_name(domain).map_err(|e| ValidationError::new("domain", e.to_string()))?;
                steps.push(Step::Adopt { host_id: host_id.clone(), domain: domain.clone() });
                touch(&mut verify, domain);
            }
            Operation::Delete { vm_id } => {
                let vm = vm_name(db, vm_id).await?;
                steps.push(Step::Delete { vm: vm.clone() });
                verify.retain(|v| v != &vm);
            }
        }
    }
    steps.extend(verify.into_iter().map(|vm| Step::Verify { vm }));
    Ok(steps)
}
