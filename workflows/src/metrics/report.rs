//! Utilisation: average and 95th percentile of CPU and memory use per host, cluster or region (the agents'
//! tags), or per VM or business service, over a window, from the per-minute rollups; and rightsizing: VMs
//! whose CPU stays low, with the smaller size that would do.
//!
//! For hosts, CPU use is 100 − `cpu.usage_idle` of the `cpu-total` series and memory use `mem.used_percent`;
//! for VMs, `vm.cpu_pct` (of the VM's own vCPUs) and the balloon's RSS over its current size. The
//! percentile is taken over the minutes of the window (each minute's average), pooled across a group.

use super::rollup::{rollups, Bucket, MINUTE_NS};
use super::store::Selector;
use crate::error::{StoreResult, ValidationError};
use crate::store::Db;
use serde::Serialize;
use std::collections::BTreeMap;

/// What utilisation is grouped by: one of the agents' tags, or `service` (a VM's, from the CMDB).
pub const GROUPINGS: [&str; 5] = ["host", "cluster", "region", "vm", "service"];

/// One group's utilisation over the window.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Utilisation {
    /// The tag's value: the host's, cluster's or region's name.
    pub group: String,
    /// Hosts that reported in the window.
    pub hosts: usize,
    /// VMs that reported in the window (grouping by VM or service).
    pub vms: Option<usize>,
    /// Minutes with a CPU reading, summed over the hosts.
    pub minutes: usize,
    pub cpu_avg: f64,
    pub cpu_p95: f64,
    pub memory_avg: Option<f64>,
    pub memory_p95: Option<f64>,
}

/// The value at `p` (0–1) of `values` sorted ascending, by the nearest rank.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(mut values: Vec<f64>) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let avg = values.iter().sum::<f64>() / values.len().max(1) as f64;
    (avg, percentile(&values, 0.95))
}

/// Per group: the hosts seen and each host's per-minute values (through `value`).
async fn per_group(
    db: &Db,
    selector: Selector,
    by: &str,
    from_ns: i64,
    to_ns: i64,
    value: impl Fn(&Bucket) -> f64,
) -> StoreResult<BTreeMap<String, (std::collections::BTreeSet<String>, Vec<f64>)>> {
    let mut groups: BTreeMap<String, (std::collections::BTreeSet<String>, Vec<f64>)> = BTreeMap::new();
    for (series, buckets) in rollups(db, &selector, MINUTE_NS, from_ns, to_ns).await? {
        if buckets.is_empty() {
            continue;
        }
        let tag = |name: &str| series.tags.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let (Some(group), Some(host)) = (tag(by), tag("host")) else { continue };
        let entry = groups.entry(group).or_default();
        entry.0.insert(host);
        entry.1.extend(buckets.iter().map(&value));
    }
    Ok(groups)
}

/// Utilisation per value of the tag `by` (`host`, `cluster` or `region`) from `from_ns` to `to_ns`.
pub async fn utilisation(db: &Db, by: &str, from_ns: i64, to_ns: i64) -> StoreResult<Vec<Utilisation>> {
    if !GROUPINGS.contains(&by) {
        return Err(ValidationError::new("by", "must be host, cluster, region, vm or service").into());
    }
    if to_ns < from_ns {
        return Err(ValidationError::new("to", "the end is before the start").into());
    }
    if by == "vm" || by == "service" {
        return vm_utilisation(db, by == "service", from_ns, to_ns).await;
    }
    let cpu = Selector {
        measurement: "cpu".to_owned(),
        field: "usage_idle".to_owned(),
        tags: vec![("cpu".to_owned(), "cpu-total".to_owned())],
    };
    let memory = Selector { measurement: "mem".to_owned(), field: "used_percent".to_owned(), tags: Vec::new() };
    let cpu = per_group(db, cpu, by, from_ns, to_ns, |b| (100.0 - b.avg()).clamp(0.0, 100.0)).await?;
    let mut memory = per_group(db, memory, by, from_ns, to_ns, Bucket::avg).await?;
    Ok(cpu
        .into_iter()
        .map(|(group, (hosts, minutes))| {
            let count = minutes.len();
            let (cpu_avg, cpu_p95) = summary(minutes);
            let mem = memory.remove(&group).map(|(_, m)| summary(m));
            Utilisation {
                group,
                hosts: hosts.len(),
                vms: None,
                minutes: count,
                cpu_avg,
                cpu_p95,
                memory_avg: mem.map(|m| m.0),
                memory_p95: mem.map(|m| m.1),
            }
        })
        .collect())
}

/// Each VM's per-minute readings of `field` (tag `vm`), with the host it ran on.
async fn vm_minutes(
    db: &Db,
    field: &str,
    from_ns: i64,
    to_ns: i64,
) -> StoreResult<BTreeMap<String, (String, Vec<Bucket>)>> {
    let selector = Selector { measurement: "vm".to_owned(), field: field.to_owned(), tags: Vec::new() };
    let mut out: BTreeMap<String, (String, Vec<Bucket>)> = BTreeMap::new();
    for (series, buckets) in rollups(db, &selector, MINUTE_NS, from_ns, to_ns).await? {
        let tag = |name: &str| series.tags.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let Some(vm) = tag("vm") else { continue };
        let entry = out.entry(vm).or_insert_with(|| (tag("host").unwrap_or_default(), Vec::new()));
        entry.1.extend(buckets);
    }
    Ok(out)
}

/// VM name → the name of its business service, from the CMDB.
async fn services_of_vms(db: &Db) -> StoreResult<BTreeMap<String, String>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT v.name, s.name FROM cis v JOIN cis s ON s.id = v.service_id WHERE v.kind = 'vm' AND s.kind = 'service'",
    )
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().collect())
}

/// The group VMs without a service fall in.
pub const NO_SERVICE: &str = "(no service)";

async fn vm_utilisation(db: &Db, by_service: bool, from_ns: i64, to_ns: i64) -> StoreResult<Vec<Utilisation>> {
    let cpu = vm_minutes(db, "cpu_pct", from_ns, to_ns).await?;
    let rss = vm_minutes(db, "balloon_rss_kib", from_ns, to_ns).await?;
    let current = vm_minutes(db, "balloon_current_kib", from_ns, to_ns).await?;
    let services = if by_service { services_of_vms(db).await? } else { BTreeMap::new() };
    // group → (hosts, vms, cpu minutes, memory minutes)
    type Pool = (std::collections::BTreeSet<String>, std::collections::BTreeSet<String>, Vec<f64>, Vec<f64>);
    let mut groups: BTreeMap<String, Pool> = BTreeMap::new();
    for (vm, (host, buckets)) in &cpu {
        let group =
            if by_service { services.get(vm).cloned().unwrap_or_else(|| NO_SERVICE.to_owned()) } else { vm.clone() };
        let pool = groups.entry(group).or_default();
        pool.0.insert(host.clone());
        pool.1.insert(vm.clone());
        pool.2.extend(buckets.iter().map(|b| b.avg().clamp(0.0, 100.0)));
        // Memory use in a minute: the balloon's RSS over its current size, both that minute's averages.
        if let (Some((_, used)), Some((_, size))) = (rss.get(vm), current.get(vm)) {
            let sizes: BTreeMap<i64, f64> = size.iter().map(|b| (b.start, b.avg())).collect();
            pool.3.extend(used.iter().filter_map(|u| {
                let total = *sizes.get(&u.start)?;
                (total > 0.0).then(|| (u.avg() / total * 100.0).clamp(0.0, 100.0))
            }));
        }
    }
    Ok(groups
        .into_iter()
        .map(|(group, (hosts, vms, cpu, memory))| {
            let minutes = cpu.len();
            let (cpu_avg, cpu_p95) = summary(cpu);
            let mem = (!memory.is_empty()).then(|| summary(memory));
            Utilisation {
                group,
                hosts: hosts.len(),
                vms: Some(vms.len()),
                minutes,
                cpu_avg,
                cpu_p95,
                memory_avg: mem.map(|m| m.0),
                memory_p95: mem.map(|m| m.1),
            }
        })
        .collect())
}

/// A VM whose CPU stayed low, and the smaller size that would do.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Rightsizing {
    pub vm: String,
    /// The VM's CI, when the inventory has it.
    pub vm_id: Option<String>,
    pub vcpus: i64,
    pub memory_mib: Option<i64>,
    /// CPU use in percent of the VM's vCPUs over the window.
    pub cpu_avg: f64,
    pub cpu_p95: f64,
    /// Days of per-minute readings in the window.
    pub days_covered: f64,
    /// The fewest vCPUs that keep its p95 at or under [`RIGHTSIZE_TARGET_PCT`].
    pub suggested_vcpus: i64,
    pub reason: String,
}

/// The CPU use a suggested size is chosen to keep the VM's p95 under.
pub const RIGHTSIZE_TARGET_PCT: f64 = 60.0;

/// VMs whose p95 CPU stayed under `threshold_pct` over the `days` before `now_ns`, read for at least 90 % of
/// that time, with the fewest vCPUs that keep their p95 at or under [`RIGHTSIZE_TARGET_PCT`]. Sizes come
/// from the inventory, or the agents' `vcpus` readings for a VM it does not have.
pub async fn rightsizing(db: &Db, now_ns: i64, days: u32, threshold_pct: f64) -> StoreResult<Vec<Rightsizing>> {
    if days == 0 || days > 365 {
        return Err(ValidationError::new("days", "must be between 1 and 365").into());
    }
    if !(threshold_pct > 0.0 && threshold_pct <= 100.0) {
        return Err(ValidationError::new("threshold_pct", "must be above 0 and at most 100").into());
    }
    let from_ns = now_ns - i64::from(days) * 86_400_000_000_000;
    let cpu = vm_minutes(db, "cpu_pct", from_ns, now_ns).await?;
    let reported_vcpus = vm_minutes(db, "vcpus", from_ns, now_ns).await?;
    let sizes: BTreeMap<String, (String, i64, Option<i64>)> = {
        let rows: Vec<(String, String, Option<i64>, Option<i64>)> =
            sqlx::query_as("SELECT name, id, vcpus, memory_mib FROM cis WHERE kind = 'vm' AND state <> 'retired'")
                .fetch_all(db.pool())
                .await?;
        rows.into_iter().map(|(name, id, vcpus, mem)| (name, (id, vcpus.unwrap_or(0), mem))).collect()
    };
    let mut out = Vec::new();
    for (vm, (_, minutes)) in cpu {
        let days_covered = minutes.len() as f64 / 1440.0;
        if days_covered < f64::from(days) * 0.9 {
            continue;
        }
        let (cpu_avg, cpu_p95) = summary(minutes.iter().map(|b| b.avg().clamp(0.0, 100.0)).collect());
        if cpu_p95 >= threshold_pct {
            continue;
        }
        let (vm_id, vcpus, memory_mib) = match sizes.get(&vm) {
            Some((id, vcpus, mem)) => (Some(id.clone()), *vcpus, *mem),
            None => {
                let last = reported_vcpus.get(&vm).and_then(|(_, b)| b.last()).map(|b| b.max.round() as i64);
                (None, last.unwrap_or(0), None)
            }
        };
        let suggested = ((cpu_p95 * vcpus as f64 / RIGHTSIZE_TARGET_PCT).ceil() as i64).max(1);
        if vcpus <= 1 || suggested >= vcpus {
            continue;
        }
        let reason = format!(
            "p95 CPU {cpu_p95:.1} % of {vcpus} vCPUs over {days_covered:.1} days (under {threshold_pct} %): \
             {suggested} vCPUs keep it under {RIGHTSIZE_TARGET_PCT} %"
        );
        out.push(Rightsizing {
            vm,
            vm_id,
            vcpus,
            memory_mib,
            cpu_avg,
            cpu_p95,
            days_covered,
            suggested_vcpus: suggested,
            reason,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_95th_percentile_is_the_nearest_rank() {
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&values, 0.95), 95.0);
        assert_eq!(percentile(&[7.0], 0.95), 7.0);
        assert_eq!(summary(vec![10.0, 30.0, 20.0]), (20.0, 30.0));
    }
}
