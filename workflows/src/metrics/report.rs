//! Utilisation: average and 95th percentile of CPU and memory use per host, or per cluster or region (the
//! agents' tags), over a window, from the per-minute rollups.
//!
//! CPU use is 100 − `cpu.usage_idle` of the `cpu-total` series; memory use is `mem.used_percent`. The
//! percentile is taken over the minutes of the window (each minute's average), pooled across the hosts of a
//! group.

use super::rollup::{rollups, Bucket, MINUTE_NS};
use super::store::Selector;
use crate::error::{StoreResult, ValidationError};
use crate::store::Db;
use serde::Serialize;
use std::collections::BTreeMap;

/// What utilisation is grouped by: one of the agents' tags.
pub const GROUPINGS: [&str; 3] = ["host", "cluster", "region"];

/// One group's utilisation over the window.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Utilisation {
    /// The tag's value: the host's, cluster's or region's name.
    pub group: String,
    /// Hosts that reported in the window.
    pub hosts: usize,
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
        return Err(ValidationError::new("by", "must be host, cluster or region").into());
    }
    if to_ns < from_ns {
        return Err(ValidationError::new("to", "the end is before the start").into());
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
                minutes: count,
                cpu_avg,
                cpu_p95,
                memory_avg: mem.map(|m| m.0),
                memory_p95: mem.map(|m| m.1),
            }
        })
        .collect())
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
