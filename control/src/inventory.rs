//! The inventory the control plane keeps in the CMDB: hosts (with the agent that serves each) and the
//! VMs on them, with their sizes and power state, written as operations complete.

use crate::placement::{Fleet, HostCapacity, HostState, Ratios, Strategy};
use tollgate_workflows::cmdb::{self, Ci, CiDraft, CiKind, CiQuery, CiSpec, Hypervisor};
use tollgate_workflows::text::PageRequest;
use tollgate_workflows::{AuditContext, Db, StoreError, StoreResult};

/// The agent that serves a host: simulated hosts are served inside the server as `sim:<host name>`.
pub fn agent_of(host: &Ci) -> String {
    match host.hypervisor {
        Some(Hypervisor::Simulated) => format!("sim:{}", host.name),
        _ => host.agent_id.clone().unwrap_or_else(|| host.name.clone()),
    }
}

pub use cmdb::get_ci_of_kind as ci_of;

/// The draft that reproduces `ci`, to edit and store again.
pub fn draft_of(ci: &Ci) -> CiDraft {
    CiDraft {
        kind: ci.kind.as_str().to_string(),
        name: ci.name.clone(),
        description: Some(ci.description.clone()),
        parent_id: ci.parent_id.clone(),
        service_id: ci.service_id.clone(),
        state: Some(ci.state.clone()),
        criticality: Some(ci.criticality.as_str().to_string()),
        hypervisor: ci.hypervisor.map(|h| h.as_str().to_string()),
        agent_id: ci.agent_id.clone(),
        vcpus: ci.vcpus,
        memory_mib: ci.memory_mib,
        disk_gib: ci.disk_gib,
    }
}

/// Edits a CI through `edit` and stores it (audited).
pub async fn edit_ci(db: &Db, ctx: &AuditContext, id: &str, edit: impl FnOnce(&mut CiDraft)) -> StoreResult<Ci> {
    let ci = cmdb::get_ci(db, id).await?;
    let mut draft = draft_of(&ci);
    edit(&mut draft);
    let spec = CiSpec::try_from(draft)?;
    cmdb::update_ci(db, ctx, id, spec, None).await
}

/// The VM CI named `name`, if the inventory has one.
pub async fn vm_named(db: &Db, name: &str) -> StoreResult<Option<Ci>> {
    let row: Option<(String,)> = sqlx::query_as("SELECT id FROM cis WHERE kind = 'vm' AND name = $1")
        .bind(name)
        .fetch_optional(db.pool())
        .await?;
    match row {
        Some((id,)) => Ok(Some(cmdb::get_ci(db, &id).await?)),
        None => Ok(None),
    }
}

/// How the business service `service_id` wants its VMs placed (spread when it has not said).
pub async fn strategy_of(db: &Db, service_id: &str) -> StoreResult<Strategy> {
    let row: Option<(String,)> = sqlx::query_as("SELECT strategy FROM placement_strategies WHERE service_id = $1")
        .bind(service_id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.and_then(|(s,)| Strategy::parse(&s)).unwrap_or_default())
}

/// Sets how the business service `service_id` wants its VMs placed (audited).
pub async fn set_strategy(db: &Db, ctx: &AuditContext, service_id: &str, strategy: Strategy) -> StoreResult<()> {
    ci_of(db, service_id, CiKind::Service).await?;
    let before = strategy_of(db, service_id).await?;
    let mut tx = db.write_rows(ctx).await?;
    let now = tollgate_workflows::clock::to_millis(tx.now());
    sqlx::query(
        "INSERT INTO placement_strategies (service_id, strategy, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (service_id) DO UPDATE SET strategy = excluded.strategy, updated_at = excluded.updated_at",
    )
    .bind(service_id)
    .bind(strategy.as_str())
    .bind(now)
    .execute(tx.conn())
    .await?;
    tx.audit("service.placement", "ci", service_id, Some(&before), Some(&strategy)).await?;
    tx.commit().await
}

/// The host CI whose agent is `agent_id`.
pub async fn host_of_agent(db: &Db, agent_id: &str) -> StoreResult<Option<Ci>> {
    let hosts = all_of(db, CiKind::Host).await?;
    Ok(hosts.into_iter().find(|h| h.agent_id.as_deref() == Some(agent_id)))
}

/// Records a new VM on `host_id` as planned; it becomes running once its domain runs.
pub async fn create_vm(
    db: &Db,
    ctx: &AuditContext,
    name: &str,
    host_id: &str,
    service_id: Option<String>,
    (vcpus, memory_mib, disk_gib): (i64, i64, i64),
) -> StoreResult<Ci> {
    let draft = CiDraft {
        kind: "vm".into(),
        name: name.to_string(),
        description: Some("Provisioned by Tollgate.".into()),
        parent_id: Some(host_id.to_string()),
        service_id,
        state: Some("planned".into()),
        vcpus: Some(vcpus),
        memory_mib: Some(memory_mib),
        disk_gib: Some(disk_gib),
        ..CiDraft::default()
    };
    cmdb::create_ci(db, ctx, CiSpec::try_from(draft)?).await
}

/// Every CI of `kind`, page by page.
pub async fn all_of(db: &Db, kind: CiKind) -> StoreResult<Vec<Ci>> {
    let q = CiQuery { kind: Some(kind), ..CiQuery::default() };
    let mut out = Vec::new();
    loop {
        let page = PageRequest { limit: PageRequest::MAX_LIMIT, offset: out.len() as u64 };
        let got = cmdb::list_cis(db, &q, page).await?;
        let n = got.items.len();
        out.extend(got.items);
        if n < PageRequest::MAX_LIMIT as usize {
            return Ok(out);
        }
    }
}

/// The placement view of the fleet: every host with what its VMs take, regions and clusters from the
/// CMDB's containment (cluster → data centre → region), CPU use over the last day from the rollups. A
/// host whose agent has not been heard from in the last two minutes (or ever) counts as down.
pub async fn fleet(db: &Db, ratios: Ratios) -> StoreResult<(Fleet, Vec<Ci>)> {
    let clusters = all_of(db, CiKind::Cluster).await?;
    let datacenters = all_of(db, CiKind::Datacenter).await?;
    let hosts = all_of(db, CiKind::Host).await?;
    let vms = all_of(db, CiKind::Vm).await?;
    let parent = |list: &[Ci], id: &Option<String>| -> Option<String> {
        id.as_ref().and_then(|id| list.iter().find(|c| &c.id == id)).and_then(|c| c.parent_id.clone())
    };
    // How busy each host's CPU was over the last day (p95), for the least-utilised strategy.
    let now = db.clock().now_nanos();
    let busy: std::collections::HashMap<String, f32> =
        tollgate_workflows::metrics::report::utilisation(db, "host", now - 86_400_000_000_000, now)
            .await?
            .into_iter()
            .map(|u| (u.group, (u.cpu_p95 / 100.0) as f32))
            .collect();
    // A host takes VMs only when something serves it: the server (simulated hosts) or an agent heard from lately.
    let heard_since = tollgate_workflows::clock::to_millis(db.clock().now()) - crate::jobs::tasks::AGENT_GONE_AFTER_MS;
    let served: std::collections::HashSet<String> =
        sqlx::query_as::<_, (String,)>("SELECT agent_id FROM agent_hosts WHERE seen_at >= $1")
            .bind(heard_since)
            .fetch_all(db.pool())
            .await?
            .into_iter()
            .map(|(a,)| a)
            .collect();
    let mut fleet = Fleet::new(ratios);
    for h in &hosts {
        let has_agent = h.hypervisor == Some(Hypervisor::Simulated) || served.contains(&agent_of(h));
        let cluster = h.parent_id.clone().unwrap_or_default();
        let dc = parent(&clusters, &h.parent_id);
        let region = parent(&datacenters, &dc).unwrap_or_default();
        fleet.upsert(HostCapacity {
            host_id: h.id.clone(),
            region,
            cluster,
            state: match h.state.as_str() {
                "active" if has_agent => HostState::Up,
                "maintenance" => HostState::Maintenance,
                _ => HostState::Down,
            },
            vcpus: h.vcpus.unwrap_or(0).max(0) as u32,
            memory_mib: h.memory_mib.unwrap_or(0).max(0) as u64,
            disk_gib: h.disk_gib.unwrap_or(0).max(0) as u64,
            cpu_p95: busy.get(&h.name).copied(),
            containers: h.hypervisor.is_some_and(Hypervisor::runs_containers),
        });
    }
    for vm in vms.iter().filter(|v| v.state != "retired") {
        let Some(host) = &vm.parent_id else { continue };
        let groups = vm.service_id.iter().map(|s| format!("service:{s}")).collect();
        let allocation = crate::placement::Allocation {
            host_id: host.clone(),
            vcpus: vm.vcpus.unwrap_or(0).max(0) as u32,
            memory_mib: vm.memory_mib.unwrap_or(0).max(0) as u64,
            disk_gib: vm.disk_gib.unwrap_or(0).max(0) as u64,
            groups,
        };
        if let Err(e) = fleet.allocate(&allocation) {
            return Err(StoreError::Internal(format!("VM {} is on a host placement does not know: {e}", vm.id)));
        }
    }
    Ok((fleet, hosts))
}
