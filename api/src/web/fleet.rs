//! The fleet: regions → data centres → clusters → hosts → VMs from the inventory, with each host's CPU and
//! memory over the last hour and the rightsizing suggestions; and one host's or VM's page with its CPU and
//! memory charts over the last 24 hours and 7 days.

use super::chart::{self, SPANS};
use super::{base, with, WebError, WebResult, WebUser};
use crate::auth::ReadFleet;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tollgate_control::inventory;
use tollgate_workflows::cmdb::{self, Ci, CiKind};
use tollgate_workflows::metrics::report::{rightsizing, utilisation, Rightsizing};
use tollgate_workflows::metrics::store::Selector;
use tollgate_workflows::Db;

const HOUR_NS: i64 = 3600 * 1_000_000_000;

fn size(c: &Ci) -> String {
    match (c.vcpus, c.memory_mib, c.disk_gib) {
        (Some(v), Some(m), Some(d)) => format!("{v} vCPU · {} GiB · {d} GiB disk", m / 1024),
        (Some(v), Some(m), None) => format!("{v} vCPU · {} GiB", m / 1024),
        _ => String::new(),
    }
}

fn suggestion(r: &Rightsizing) -> Value {
    json!({"vm": r.vm, "vm_id": r.vm_id, "vcpus": r.vcpus, "suggested_vcpus": r.suggested_vcpus,
           "cpu_p95": format!("{:.1}", r.cpu_p95), "reason": r.reason})
}

/// Children of each CI, by parent id, in name order.
fn by_parent(cis: Vec<Ci>) -> BTreeMap<String, Vec<Ci>> {
    let mut out: BTreeMap<String, Vec<Ci>> = BTreeMap::new();
    for c in cis {
        out.entry(c.parent_id.clone().unwrap_or_default()).or_default().push(c);
    }
    for v in out.values_mut() {
        v.sort_by(|a, b| a.name.cmp(&b.name));
    }
    out
}

pub async fn tree(State(state): State<AppState>, user: WebUser) -> WebResult<Response> {
    user.require::<ReadFleet>()?;
    let db = &state.db;
    let now = db.clock().now_nanos();
    let used: BTreeMap<String, (f64, Option<f64>)> = utilisation(db, "host", now - HOUR_NS, now)
        .await?
        .into_iter()
        .map(|u| (u.group, (u.cpu_avg, u.memory_avg)))
        .collect();
    let dcs = by_parent(inventory::all_of(db, CiKind::Datacenter).await?);
    let clusters = by_parent(inventory::all_of(db, CiKind::Cluster).await?);
    let hosts = by_parent(inventory::all_of(db, CiKind::Host).await?);
    let vms =
        by_parent(inventory::all_of(db, CiKind::Vm).await?.into_iter().filter(|v| v.state != "retired").collect());
    let none = Vec::new();
    let vm_view = |v: &Ci| json!({"id": v.id, "name": v.name, "state": v.state, "size": size(v)});
    let host_view = |h: &Ci| {
        let on = vms.get(&h.id).unwrap_or(&none);
        let (cpu, mem) = used.get(&h.name).copied().map_or((None, None), |(c, m)| (Some(c), m));
        json!({"id": h.id, "name": h.name, "state": h.state, "size": size(h), "simulated": h.hypervisor == Some(cmdb::Hypervisor::Simulated),
               "containers": h.hypervisor.is_some_and(cmdb::Hypervisor::runs_containers),
               "cpu": cpu.map(|c| format!("{c:.0} %")), "memory": mem.map(|m| format!("{m:.0} %")),
               "vm_count": on.len(), "vms": on.iter().map(vm_view).collect::<Vec<_>>()})
    };
    let cluster_view = |c: &Ci| {
        let hs = hosts.get(&c.id).unwrap_or(&none);
        json!({"id": c.id, "name": c.name, "host_count": hs.len(), "vm_count": hs.iter().map(|h| vms.get(&h.id).map_or(0, Vec::len)).sum::<usize>(),
               "hosts": hs.iter().map(host_view).collect::<Vec<_>>()})
    };
    let dc_view = |d: &Ci| {
        json!({"id": d.id, "name": d.name,
               "clusters": clusters.get(&d.id).unwrap_or(&none).iter().map(cluster_view).collect::<Vec<_>>()})
    };
    let regions: Vec<Value> = inventory::all_of(db, CiKind::Region)
        .await?
        .iter()
        .map(|r| json!({"id": r.id, "name": r.name, "datacenters": dcs.get(&r.id).unwrap_or(&none).iter().map(dc_view).collect::<Vec<_>>()}))
        .collect();
    let suggestions = rightsizing(db, now, 7, 20.0).await?;
    Ok(super::render::page(
        "fleet",
        &with(
            base(&user, "Fleet"),
            json!({"regions": regions, "rightsizing": suggestions.iter().map(suggestion).collect::<Vec<_>>()}),
        ),
    ))
}

/// CPU and memory of a host (this machine's agent's names) or a VM (the hypervisor's per-VM figures).
async fn charts(db: &Db, ci: &Ci, now: i64) -> WebResult<Vec<Value>> {
    let mut out = Vec::new();
    for span in SPANS {
        let (cpu, memory) = match ci.kind {
            CiKind::Host => {
                let tag = vec![("host".to_owned(), ci.name.clone())];
                let mut cpu_tags = tag.clone();
                cpu_tags.push(("cpu".to_owned(), "cpu-total".to_owned()));
                let cpu = Selector { measurement: "cpu".into(), field: "usage_idle".into(), tags: cpu_tags };
                let mem = Selector { measurement: "mem".into(), field: "used_percent".into(), tags: tag };
                (
                    chart::values(db, &cpu, span, now, |b| 100.0 - b.avg()).await?,
                    chart::values(db, &mem, span, now, |b| b.avg()).await?,
                )
            }
            CiKind::Vm => {
                let tag = vec![("vm".to_owned(), ci.name.clone())];
                let cpu = Selector { measurement: "vm".into(), field: "cpu_pct".into(), tags: tag.clone() };
                let rss = Selector { measurement: "vm".into(), field: "balloon_rss_kib".into(), tags: tag.clone() };
                let size = Selector { measurement: "vm".into(), field: "balloon_current_kib".into(), tags: tag };
                let rss = chart::values(db, &rss, span, now, |b| b.avg()).await?;
                let size: BTreeMap<i64, f64> =
                    chart::values(db, &size, span, now, |b| b.avg()).await?.into_iter().collect();
                let memory = rss
                    .into_iter()
                    .filter_map(|(t, r)| size.get(&t).filter(|s| **s > 0.0).map(|s| (t, r * 100.0 / s)))
                    .collect();
                (chart::values(db, &cpu, span, now, |b| b.avg()).await?, memory)
            }
            _ => return Ok(out),
        };
        out.push(chart::draw(&format!("CPU, {}", span.label), span, now, &cpu));
        out.push(chart::draw(&format!("Memory, {}", span.label), span, now, &memory));
    }
    Ok(out)
}

pub async fn item(State(state): State<AppState>, user: WebUser, Path(id): Path<String>) -> WebResult<Response> {
    user.require::<ReadFleet>()?;
    let db = &state.db;
    let ci = cmdb::get_ci(db, &id).await?;
    if !matches!(ci.kind, CiKind::Host | CiKind::Vm) {
        return Err(WebError::new(
            StatusCode::NOT_FOUND,
            format!("{} is a {}, not a host or a VM", ci.name, ci.kind.as_str()),
        ));
    }
    let now = db.clock().now_nanos();
    let parent = match &ci.parent_id {
        Some(p) => cmdb::get_ci(db, p).await.ok().map(|p| json!({"id": p.id, "name": p.name, "kind": p.kind.as_str()})),
        None => None,
    };
    let service = match &ci.service_id {
        Some(s) => cmdb::get_ci(db, s).await.ok().map(|s| s.name),
        None => None,
    };
    let vms: Vec<Value> = if ci.kind == CiKind::Host {
        let q = cmdb::CiQuery { kind: Some(CiKind::Vm), parent_id: Some(ci.id.clone()), ..Default::default() };
        let page = cmdb::list_cis(db, &q, tollgate_workflows::text::PageRequest::new(Some(500), None)?).await?;
        page.items
            .iter()
            .filter(|v| v.state != "retired")
            .map(|v| json!({"id": v.id, "name": v.name, "state": v.state, "size": size(v)}))
            .collect()
    } else {
        Vec::new()
    };
    let suggestion = if ci.kind == CiKind::Vm {
        rightsizing(db, now, 7, 20.0).await?.iter().find(|r| r.vm == ci.name).map(suggestion)
    } else {
        None
    };
    Ok(super::render::page(
        "fleet_item",
        &with(
            base(&user, &ci.name),
            json!({
                "ci": {"id": ci.id, "name": ci.name, "kind": ci.kind.as_str(), "state": ci.state, "size": size(&ci),
                       "description": ci.description, "is_vm": ci.kind == CiKind::Vm},
                "parent": parent, "service": service, "vms": vms,
                "charts": charts(db, &ci, now).await?,
                "suggestion": suggestion,
            }),
        ),
    ))
}
