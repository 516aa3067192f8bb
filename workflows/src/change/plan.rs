//! Planned operations as typed data, and the rollback plan derived from them.

use super::limits::VmLimits;
use crate::cmdb::{Ci, CiKind};
use crate::error::ValidationError;
use serde::{Deserialize, Serialize};

/// One thing a change does to the fleet; the control plane executes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Operation {
    /// A new VM from an image template, placed by the scheduler unless `host_id` pins it.
    Provision {
        name: String,
        image: String,
        vcpus: i64,
        memory_mib: i64,
        disk_gib: i64,
        service_id: Option<String>,
        host_id: Option<String>,
        /// A container (its `image` a root file system) on a container host (hypervisor `lxc`) rather than a
        /// virtual machine; placement chooses among hosts of that kind.
        #[serde(default)]
        container: bool,
    },
    /// New vCPU and memory sizes for a running VM, applied live within its headroom.
    Resize {
        vm_id: String,
        vcpus: i64,
        memory_mib: i64,
    },
    /// Limits applied to the running VM; absent ones stay as they are.
    SetQuota {
        vm_id: String,
        cpu_quota_pct: Option<u32>,
        disk_read_bytes_per_sec: Option<u64>,
        disk_write_bytes_per_sec: Option<u64>,
        disk_iops: Option<u64>,
        net_mbit_per_sec: Option<u64>,
    },
    /// Move a VM to another host: live (with its storage) or cold.
    Migrate {
        vm_id: String,
        to_host_id: String,
        live: bool,
    },
    /// Move every VM off a host.
    Evacuate {
        host_id: String,
    },
    Stop {
        vm_id: String,
    },
    Start {
        vm_id: String,
    },
    /// Take a domain Tollgate does not manage into inventory, without restarting it.
    Adopt {
        host_id: String,
        domain: String,
    },
    /// Remove a VM (the inverse of a provision).
    Delete {
        vm_id: String,
    },
}

/// One step of a rollback plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum RollbackStep {
    /// Run this operation.
    Run { operation: Operation },
    /// Remove the VM the change provisioned under this name.
    RemoveProvisioned { name: String },
    /// Put back the limits read from the VM just before the change set new ones.
    RestoreQuota { vm_id: String },
    /// Forget an adopted domain again, leaving it running.
    Release { host_id: String, domain: String },
    /// No automatic inverse: what an operator must do.
    Manual { reason: String },
}

impl Operation {
    /// A short name for risk and conflict reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Operation::Provision { .. } => "provision",
            Operation::Resize { .. } => "resize",
            Operation::SetQuota { .. } => "set_quota",
            Operation::Migrate { .. } => "migrate",
            Operation::Evacuate { .. } => "evacuate",
            Operation::Stop { .. } => "stop",
            Operation::Start { .. } => "start",
            Operation::Adopt { .. } => "adopt",
            Operation::Delete { .. } => "delete",
        }
    }

    /// The limits a `set_quota` asks for.
    pub fn vm_limits(&self) -> Option<VmLimits> {
        match self {
            Operation::SetQuota {
                cpu_quota_pct,
                disk_read_bytes_per_sec,
                disk_write_bytes_per_sec,
                disk_iops,
                net_mbit_per_sec,
                ..
            } => Some(VmLimits {
                cpu_quota_pct: *cpu_quota_pct,
                disk_read_bytes_per_sec: *disk_read_bytes_per_sec,
                disk_write_bytes_per_sec: *disk_write_bytes_per_sec,
                disk_iops: *disk_iops,
                net_mbit_per_sec: *net_mbit_per_sec,
            }),
            _ => None,
        }
    }

    /// The existing CIs it names, with the kind each must be and the field that names it.
    pub fn references(&self) -> Vec<(&'static str, &str, CiKind)> {
        match self {
            Operation::Provision { service_id, host_id, .. } => {
                let mut r = Vec::new();
                if let Some(s) = service_id {
                    r.push(("service_id", s.as_str(), CiKind::Service));
                }
                if let Some(h) = host_id {
                    r.push(("host_id", h.as_str(), CiKind::Host));
                }
                r
            }
            Operation::Resize { vm_id, .. }
            | Operation::SetQuota { vm_id, .. }
            | Operation::Stop { vm_id }
            | Operation::Start { vm_id }
            | Operation::Delete { vm_id } => vec![("vm_id", vm_id.as_str(), CiKind::Vm)],
            Operation::Migrate { vm_id, to_host_id, .. } => {
                vec![("vm_id", vm_id.as_str(), CiKind::Vm), ("to_host_id", to_host_id.as_str(), CiKind::Host)]
            }
            Operation::Evacuate { host_id } | Operation::Adopt { host_id, .. } => {
                vec![("host_id", host_id.as_str(), CiKind::Host)]
            }
        }
    }

    /// Checks the values that need no database.
    pub fn validate(&self, index: usize) -> Result<(), ValidationError> {
        let field = |f: &str| format!("operations[{index}].{f}");
        let bounded = |f: &str, v: i64, max: i64| {
            if (1..=max).contains(&v) {
                Ok(())
            } else {
                Err(ValidationError::new(field(f), format!("must be between 1 and {max}, got {v}")))
            }
        };
        let text = |f: &str, v: &str| crate::text::Name::parse(&field(f), v).map(|_| ());
        match self {
            Operation::Provision { name, image, vcpus, memory_mib, disk_gib, .. } => {
                text("name", name)?;
                text("image", image)?;
                bounded("vcpus", *vcpus, 4096)?;
                bounded("memory_mib", *memory_mib, 64 * 1024 * 1024)?;
                bounded("disk_gib", *disk_gib, 1024 * 1024)
            }
            Operation::Resize { vcpus, memory_mib, .. } => {
                bounded("vcpus", *vcpus, 4096)?;
                bounded("memory_mib", *memory_mib, 64 * 1024 * 1024)
            }
            Operation::SetQuota { .. } => {
                let limits = self.vm_limits().unwrap_or_default();
                // As the drivers take them.
                limits.check().map_err(|(f, why)| ValidationError::new(field(f), why))?;
                if limits == VmLimits::default() {
                    return Err(ValidationError::new(field("op"), "set_quota needs at least one limit"));
                }
                Ok(())
            }
            Operation::Adopt { domain, .. } => text("domain", domain),
            _ => Ok(()),
        }
    }

    /// The step that undoes this operation, given the VM or host it acts on as the CMDB has it now.
    pub fn inverse(&self, target: Option<&Ci>) -> RollbackStep {
        match self {
            Operation::Provision { name, .. } => RollbackStep::RemoveProvisioned { name: name.clone() },
            Operation::Resize { vm_id, .. } => match target.and_then(|vm| Some((vm.vcpus?, vm.memory_mib?))) {
                Some((vcpus, memory_mib)) => {
                    RollbackStep::Run { operation: Operation::Resize { vm_id: vm_id.clone(), vcpus, memory_mib } }
                }
                None => RollbackStep::Manual { reason: format!("the size of VM {vm_id} before the change is unknown") },
            },
            Operation::SetQuota { vm_id, .. } => RollbackStep::RestoreQuota { vm_id: vm_id.clone() },
            Operation::Migrate { vm_id, live, .. } => match target.and_then(|vm| vm.parent_id.clone()) {
                Some(host) => RollbackStep::Run {
                    operation: Operation::Migrate { vm_id: vm_id.clone(), to_host_id: host, live: *live },
                },
                None => RollbackStep::Manual { reason: format!("VM {vm_id} has no host to return to") },
            },
            Operation::Evacuate { host_id } => RollbackStep::Manual {
                reason: format!(
                    "VMs moved off host {host_id} stay where placement put them; move them back by a change"
                ),
            },
            Operation::Stop { vm_id } => RollbackStep::Run { operation: Operation::Start { vm_id: vm_id.clone() } },
            Operation::Start { vm_id } => RollbackStep::Run { operation: Operation::Stop { vm_id: vm_id.clone() } },
            Operation::Adopt { host_id, domain } => {
                RollbackStep::Release { host_id: host_id.clone(), domain: domain.clone() }
            }
            Operation::Delete { vm_id } => {
                RollbackStep::Manual { reason: format!("a deleted VM {vm_id} cannot be brought back automatically") }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_read_as_tagged_json_and_refuse_unknown_fields() {
        let op: Operation =
            serde_json::from_str(r#"{"op":"resize","vm_id":"v","vcpus":4,"memory_mib":8192}"#).expect("parses");
        assert_eq!(op.kind(), "resize");
        assert!(
            serde_json::from_str::<Operation>(r#"{"op":"resize","vm_id":"v","vcpus":4,"memory_mib":1,"x":1}"#).is_err()
        );
        assert!(serde_json::from_str::<Operation>(r#"{"op":"teleport","vm_id":"v"}"#).is_err());
    }

    #[test]
    fn inverses_are_derived_where_they_are_known() {
        let start = Operation::Start { vm_id: "v".into() };
        assert_eq!(Operation::Stop { vm_id: "v".into() }.inverse(None), RollbackStep::Run { operation: start });
        let resize = Operation::Resize { vm_id: "v".into(), vcpus: 8, memory_mib: 16384 };
        assert!(matches!(resize.inverse(None), RollbackStep::Manual { .. }), "no known size, no automatic inverse");
        assert!(matches!(Operation::Evacuate { host_id: "h".into() }.inverse(None), RollbackStep::Manual { .. }));
    }

    #[test]
    fn values_out_of_range_name_the_operation_and_field() {
        let op = Operation::Resize { vm_id: "v".into(), vcpus: 0, memory_mib: 1 };
        assert_eq!(op.validate(2).expect_err("zero vcpus").field, "operations[2].vcpus");
        let quota = Operation::SetQuota {
            vm_id: "v".into(),
            cpu_quota_pct: None,
            disk_read_bytes_per_sec: None,
            disk_write_bytes_per_sec: None,
            disk_iops: None,
            net_mbit_per_sec: None,
        };
        assert!(quota.validate(0).is_err());
        let cpu = |pct| {
            Operation::SetQuota {
                vm_id: "v".into(),
                cpu_quota_pct: Some(pct),
                disk_read_bytes_per_sec: None,
                disk_write_bytes_per_sec: None,
                disk_iops: None,
                net_mbit_per_sec: None,
            }
            .validate(1)
        };
        assert_eq!(cpu(101).expect_err("over one host CPU").field, "operations[1].cpu_quota_pct");
        assert!(cpu(100).is_ok() && cpu(1).is_ok());
        assert!(cpu(0).is_ok(), "0 removes the limit, as the drivers take it");
    }
}
