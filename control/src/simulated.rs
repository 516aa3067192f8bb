//! The agents of the simulated fleet, run inside the server: they take the tasks queued for simulated
//! hosts (`sim:<host>`) and run them on a [`SimFleet`], the same way a host's `tollgate-agent` runs its
//! tasks on libvirt. Everything they create is labelled simulated.

use crate::hypervisor::sim::{SimFleet, SimHost};
use crate::jobs::tasks;
use crate::task::perform;
use std::sync::Arc;
use tollgate_workflows::{Db, StoreResult};

/// Template images every simulated host has.
pub const SIM_IMAGES: &[&str] = &["debian-12.qcow2", "ubuntu-24.04.qcow2", "rocky-9.qcow2", "tiny.qcow2"];

/// The simulated hosts' agents.
pub struct SimAgents {
    db: Db,
    fleet: Arc<SimFleet>,
}

impl SimAgents {
    pub fn new(db: Db, fleet: Arc<SimFleet>) -> SimAgents {
        SimAgents { db, fleet }
    }

    pub fn fleet(&self) -> &Arc<SimFleet> {
        &self.fleet
    }

    fn host(&self, agent_id: &str) -> Option<SimHost> {
        agent_id.strip_prefix("sim:").map(|name| self.fleet.host(name, SIM_IMAGES))
    }

    /// Compares every simulated host with the inventory (see [`crate::reconcile`]); returns the differences
    /// found.
    pub async fn reconcile(&self, policy: &tollgate_workflows::incident::IncidentPolicy) -> StoreResult<usize> {
        use crate::hypervisor::Hypervisor;
        use tollgate_workflows::cmdb::{CiKind, Hypervisor as Kind};
        let mut found = 0;
        for host in crate::inventory::all_of(&self.db, CiKind::Host).await? {
            if host.hypervisor != Some(Kind::Simulated) {
                continue;
            }
            let sim = self.fleet.host(&host.name, SIM_IMAGES);
            let domains = match crate::hypervisor::blocking(move || sim.domains()).await {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!(host = %host.name, error = %e, "cannot list a simulated host's domains");
                    continue;
                }
            };
            found += crate::reconcile::reconcile_host(&self.db, policy, &host, &domains).await?.len();
        }
        Ok(found)
    }

    /// Runs every task waiting for a simulated host; returns how many ran.
    pub async fn round(&self) -> StoreResult<usize> {
        let agents: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT agent_id FROM host_tasks WHERE state = 'pending' AND agent_id LIKE 'sim:%'",
        )
        .fetch_all(self.db.pool())
        .await?;
        let mut ran = 0;
        for (agent_id,) in agents {
            let Some(host) = self.host(&agent_id) else { continue };
            for task in tasks::take(&self.db, &agent_id, 64).await? {
                let host = host.clone();
                let outcome = crate::hypervisor::blocking(move || Ok(perform(&host, &task.action)))
                    .await
                    .unwrap_or_else(|error| crate::task::Outcome::Failed { error });
                tasks::report(&self.db, &agent_id, &task.id, &outcome).await?;
                ran += 1;
            }
        }
        Ok(ran)
    }
}

/// Seeds the simulated demo fleet into an empty inventory: one region, one data centre, two clusters of
/// four simulated hosts, every one named and described as simulated. Returns how many hosts it made (0
/// when the inventory already has hosts: real or simulated, they are left alone).
pub async fn seed_demo_fleet(db: &Db) -> StoreResult<usize> {
    use tollgate_workflows::cmdb::{self, CiDraft, CiKind, CiSpec};
    use tollgate_workflows::AuditContext;
    if !crate::inventory::all_of(db, CiKind::Host).await?.is_empty() {
        return Ok(0);
    }
    let ctx = AuditContext::system("demo fleet");
    let label = "Simulated (demo fleet): no real hypervisor; its VMs exist only inside the server.";
    let make = |kind: &str, name: &str, parent: Option<String>| CiDraft {
        kind: kind.into(),
        name: name.into(),
        description: Some(label.into()),
        parent_id: parent,
        ..CiDraft::default()
    };
    let region = cmdb::create_ci(db, &ctx, CiSpec::try_from(make("region", "sim-region", None))?).await?;
    let dc = cmdb::create_ci(db, &ctx, CiSpec::try_from(make("datacenter", "sim-dc-1", Some(region.id)))?).await?;
    let mut hosts = 0;
    for cluster in ["a", "b"] {
        let c = CiSpec::try_from(make("cluster", &format!("sim-cluster-{cluster}"), Some(dc.id.clone())))?;
        let c = cmdb::create_ci(db, &ctx, c).await?;
        for n in 1..=4 {
            let mut host = make("host", &format!("sim-{cluster}-{n:02}"), Some(c.id.clone()));
            host.hypervisor = Some("simulated".into());
            (host.vcpus, host.memory_mib, host.disk_gib) = (Some(64), Some(262_144), Some(4_000));
            cmdb::create_ci(db, &ctx, CiSpec::try_from(host)?).await?;
            hosts += 1;
        }
    }
    Ok(hosts)
}
