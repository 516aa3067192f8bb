//! The reconciler: compares the inventory with what each host's hypervisor reports, and raises what
//! differs as an incident, an unauthorised change: a domain Tollgate does not manage, a VM whose size
//! changed outside Tollgate, a VM the inventory places on a host that does not have it. VMs a running job
//! is working on are left alone until it finishes.

use crate::hypervisor::{Domain, PowerState};
use crate::inventory;
use crate::jobs::Step;
use serde::Serialize;
use std::collections::HashSet;
use tollgate_workflows::cmdb::{Ci, CiKind};
use tollgate_workflows::incident::{self, IncidentPolicy, IncidentReport, Level};
use tollgate_workflows::text::{Description, Name};
use tollgate_workflows::{AuditContext, Db, StoreError, StoreResult};

/// What differs between the inventory and a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DriftKind {
    /// A domain on the host that no VM in the inventory is.
    Unmanaged,
    /// A VM whose vCPUs, memory or power state differ from the inventory.
    Changed,
    /// A VM the inventory places on the host, which the host does not have.
    Missing,
}

/// One difference, worded for the incident it raises.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Drift {
    pub kind: DriftKind,
    /// The domain's (or VM's) name.
    pub name: String,
    /// The VM's CI, when the inventory has it.
    pub vm_id: Option<String>,
    pub detail: String,
}

/// The differences between the VMs the inventory places on a host and the domains the host reports.
/// `busy` names VMs a running job is changing: they are not compared.
pub fn compare(vms: &[Ci], domains: &[Domain], busy: &HashSet<String>) -> Vec<Drift> {
    let mut drift = Vec::new();
    for d in domains.iter().filter(|d| !busy.contains(&d.name)) {
        let vm = vms.iter().find(|v| d.vm_id.as_deref() == Some(v.id.as_str()) || v.name == d.name);
        let Some(vm) = vm.filter(|v| d.vm_id.as_deref() == Some(v.id.as_str())) else {
            drift.push(Drift {
                kind: DriftKind::Unmanaged,
                name: d.name.clone(),
                vm_id: None,
                detail: format!("domain {} runs there and no VM in the inventory is it", d.name),
            });
            continue;
        };
        let changed = differences(vm, d);
        if !changed.is_empty() {
            drift.push(Drift {
                kind: DriftKind::Changed,
                name: d.name.clone(),
                vm_id: Some(vm.id.clone()),
                detail: format!("{} changed outside Tollgate: {}", d.name, changed.join(", ")),
            });
        }
    }
    for vm in vms.iter().filter(|v| matches!(v.state.as_str(), "running" | "stopped") && !busy.contains(&v.name)) {
        if !domains.iter().any(|d| d.vm_id.as_deref() == Some(vm.id.as_str())) {
            drift.push(Drift {
                kind: DriftKind::Missing,
                name: vm.name.clone(),
                vm_id: Some(vm.id.clone()),
                detail: format!("{} is not on its host", vm.name),
            });
        }
    }
    drift
}

/// How a domain differs from its VM in the inventory: vCPUs, memory, and power (for a VM the inventory has
/// running or stopped), each worded as "what the host has (inventory what it says)".
pub fn differences(vm: &Ci, d: &Domain) -> Vec<String> {
    let mut changed = Vec::new();
    if vm.vcpus.is_some_and(|v| v != i64::from(d.vcpus)) {
        changed.push(format!("{} vCPUs (inventory {})", d.vcpus, vm.vcpus.unwrap_or(0)));
    }
    if vm.memory_mib.is_some_and(|m| m != d.memory.current_mib() as i64) {
        changed.push(format!("{} MiB (inventory {})", d.memory.current_mib(), vm.memory_mib.unwrap_or(0)));
    }
    let running = d.state == PowerState::Running;
    if (vm.state == "running") != running && matches!(vm.state.as_str(), "running" | "stopped") {
        changed.push(format!("{} (inventory {})", if running { "running" } else { "not running" }, vm.state));
    }
    changed
}

/// VMs that jobs still running are changing.
async fn busy(db: &Db) -> StoreResult<HashSet<String>> {
    let plans: Vec<(String,)> =
        sqlx::query_as("SELECT plan FROM jobs WHERE state IN ('running', 'rolling_back')").fetch_all(db.pool()).await?;
    let mut names = HashSet::new();
    for (plan,) in plans {
        let steps: Vec<Step> = serde_json::from_str(&plan)
            .map_err(|e| StoreError::Internal(format!("a job's plan is unreadable: {e}")))?;
        names.extend(steps.iter().filter_map(|s| s.vm().map(str::to_string)));
    }
    Ok(names)
}

/// Compares one host with what it reports and opens an incident for each difference (once: a difference
/// already reported and still open is not reported again). Returns the differences.
pub async fn reconcile_host(
    db: &Db,
    policy: &IncidentPolicy,
    host: &Ci,
    domains: &[Domain],
) -> StoreResult<Vec<Drift>> {
    let vms: Vec<Ci> = inventory::all_of(db, CiKind::Vm)
        .await?
        .into_iter()
        .filter(|v| v.parent_id.as_deref() == Some(host.id.as_str()))
        .collect();
    let drift = compare(&vms, domains, &busy(db).await?);
    let ctx = AuditContext::system("reconciler");
    for d in &drift {
        let title: String =
            format!("Unauthorised change on {}: {}", host.name, d.detail).chars().take(Name::MAX_CHARS).collect();
        let report = IncidentReport {
            title: Name::parse("title", &title)?,
            description: Description::parse(
                "description",
                "The reconciler found the host differing from the inventory. Either record the change \
                 through a change request or undo it on the host.",
            )?,
            impact: Level::Medium,
            urgency: Level::Medium,
            major: false,
            ci_ids: std::iter::once(host.id.clone()).chain(d.vm_id.clone()).collect(),
            dedup_key: Some(Name::parse(
                "dedup_key",
                &format!("drift:{}:{}:{:?}", host.id, d.name, d.kind).chars().take(Name::MAX_CHARS).collect::<String>(),
            )?),
        };
        incident::report_once(db, &ctx, policy, report).await?;
    }
    Ok(drift)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::hypervisor::MemoryLayout;
    use tollgate_workflows::cmdb::Criticality;

    fn vm(id: &str, name: &str, vcpus: i64, memory_mib: i64, state: &str) -> Ci {
        let at = time::OffsetDateTime::UNIX_EPOCH;
        Ci {
            id: id.into(),
            kind: CiKind::Vm,
            name: name.into(),
            description: String::new(),
            parent_id: Some("h".into()),
            service_id: None,
            state: state.into(),
            criticality: Criticality::Medium,
            hypervisor: None,
            agent_id: None,
            vcpus: Some(vcpus),
            memory_mib: Some(memory_mib),
            disk_gib: Some(10),
            revision: 1,
            created_at: at,
            updated_at: at,
        }
    }

    fn domain(name: &str, vm_id: Option<&str>, vcpus: u32, memory_mib: u64) -> Domain {
        Domain {
            name: name.into(),
            uuid: String::new(),
            vm_id: vm_id.map(str::to_string),
            state: PowerState::Running,
            id: Some(1),
            vcpus,
            max_vcpus: 8,
            memory: MemoryLayout { base_mib: memory_mib, modules_mib: vec![], max_mib: memory_mib * 4, slots: 8 },
            disks: vec![],
        }
    }

    #[test]
    fn a_host_as_the_inventory_says_has_no_drift() {
        let vms = [vm("v1", "web", 2, 1024, "running")];
        assert!(compare(&vms, &[domain("web", Some("v1"), 2, 1024)], &HashSet::new()).is_empty());
    }

    #[test]
    fn unmanaged_changed_and_missing_domains_are_drift() {
        let vms = [vm("v1", "web", 2, 1024, "running"), vm("v2", "db", 4, 4096, "running")];
        let domains = [domain("web", Some("v1"), 3, 1024), domain("stray", None, 1, 512)];
        let drift = compare(&vms, &domains, &HashSet::new());
        let kinds: Vec<_> = drift.iter().map(|d| (d.kind, d.name.as_str())).collect();
        assert_eq!(kinds, [(DriftKind::Changed, "web"), (DriftKind::Unmanaged, "stray"), (DriftKind::Missing, "db")]);
        assert!(drift[0].detail.contains("3 vCPUs (inventory 2)"), "{}", drift[0].detail);
    }

    #[test]
    fn vms_a_running_job_changes_are_left_alone() {
        let vms = [vm("v1", "web", 2, 1024, "running")];
        let busy = HashSet::from(["web".to_string()]);
        assert!(compare(&vms, &[domain("web", Some("v1"), 3, 1024)], &busy).is_empty());
        assert!(compare(&vms, &[], &busy).is_empty());
    }
}
