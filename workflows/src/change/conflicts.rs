//! Conflicts: other live changes whose windows overlap on the same or related CIs (a host and its VMs, a
//! service and its VMs), and hosts that overlapping changes would fill beyond their capacity.

use super::plan::Operation;
use super::record::{fetch, Change};
use crate::clock::to_millis;
use crate::cmdb::{fetch_ci, CiKind};
use crate::error::StoreResult;
use crate::store::bind_list;
use crate::store::{Db, Deferred, Param, ROWS_PER_INSERT};
use serde::Serialize;
use sqlx::any::AnyArguments;
use sqlx::{AnyConnection, Arguments};
use std::collections::{BTreeMap, BTreeSet};

/// States in which a change's window is booked. Must match the states migration 0015 copied.
const LIVE: &[&str] =
    &["submitted", "assessed", "awaiting_approval", "approved", "scheduled", "implementing", "verifying"];

/// Whether a change in `state` books its window (and its CIs are in `live_change_cis`).
pub(crate) fn is_live(state: &str) -> bool {
    LIVE.contains(&state)
}

/// The writes that book (`live`) or free the change's CIs, for its window, in `live_change_cis`.
pub(crate) fn booking(change: &Change, live: bool) -> Vec<Deferred> {
    if !live {
        return vec![Deferred::update(
            "DELETE FROM live_change_cis WHERE change_id = $1",
            vec![change.id.as_str().into()],
        )];
    }
    let shared = || {
        vec![
            change.id.as_str().into(),
            change.number.into(),
            to_millis(change.window_start).into(),
            to_millis(change.window_end).into(),
        ]
    };
    change
        .ci_ids
        .chunks(ROWS_PER_INSERT)
        .map(|chunk| {
            let rows = chunk.iter().map(|ci| vec![Param::from(ci.as_str())]);
            let head = "INSERT INTO live_change_cis (ci_id, change_id, number, window_start, window_end)";
            Deferred::insert_rows(head, shared(), rows)
        })
        .collect()
}

/// Another change in the way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Conflict {
    /// `window` (overlapping work on related CIs) or `capacity` (a host overfilled).
    pub kind: String,
    pub change_id: String,
    pub reference: String,
    pub title: String,
    pub ci_id: String,
    pub detail: String,
}

/// The CIs whose work interferes with work on `ci`: itself, its host and service (a VM), its VMs (a host
/// or a service).
async fn related(conn: &mut AnyConnection, ci_id: &str, into: &mut BTreeSet<String>) -> StoreResult<()> {
    into.insert(ci_id.to_owned());
    let Some(ci) = fetch_ci(conn, ci_id).await? else { return Ok(()) };
    match ci.kind {
        CiKind::Vm => {
            into.extend(ci.parent_id);
            into.extend(ci.service_id);
        }
        CiKind::Host | CiKind::Service => {
            let vms: Vec<(String,)> =
                sqlx::query_as("SELECT id FROM cis WHERE kind = 'vm' AND (parent_id = $1 OR service_id = $1)")
                    .bind(ci_id)
                    .fetch_all(&mut *conn)
                    .await?;
            into.extend(vms.into_iter().map(|(v,)| v));
        }
        _ => {}
    }
    Ok(())
}

/// Conflicts of `change` with every other live change overlapping its window.
pub(crate) async fn conflicts_in(conn: &mut AnyConnection, change: &Change) -> StoreResult<Vec<Conflict>> {
    let mut mine = BTreeSet::new();
    for ci in &change.ci_ids {
        related(conn, ci, &mut mine).await?;
    }
    if mine.is_empty() {
        return Ok(Vec::new());
    }
    // Only live changes overlapping the window on a related CI can conflict; the hosts this change places
    // work onto are among its own CIs, so capacity candidates are found by the same query.
    let mut args = AnyArguments::default();
    let _ = args.add(change.id.clone());
    let _ = args.add(to_millis(change.window_end));
    let _ = args.add(to_millis(change.window_start));
    let cis = bind_list(&mut args, mine.iter().cloned());
    let sql = format!(
        "SELECT DISTINCT change_id, number FROM live_change_cis \
         WHERE ci_id IN ({cis}) AND change_id <> $1 AND window_start < $2 AND window_end > $3 ORDER BY number"
    );
    let candidates: Vec<(String, i64)> = sqlx::query_as_with(&sql, args).fetch_all(&mut *conn).await?;
    let mut conflicts = Vec::new();
    let mut others = Vec::with_capacity(candidates.len());
    for (id, _) in candidates {
        let other = fetch(conn, &id).await?;
        if let Some(ci) = other.ci_ids.iter().find(|c| mine.contains(*c)) {
            conflicts.push(Conflict {
                kind: "window".to_owned(),
                change_id: other.id.clone(),
                reference: other.reference.clone(),
                title: other.title.clone(),
                ci_id: ci.clone(),
                detail: format!(
                    "{} also works on {ci} between {} and {}",
                    other.reference, other.window_start, other.window_end
                ),
            });
        }
        others.push(other);
    }
    conflicts.extend(capacity_conflicts(conn, change, &others).await?);
    Ok(conflicts)
}

/// (vCPUs, MiB) an operation places onto a named host.
async fn placed(conn: &mut AnyConnection, op: &Operation) -> StoreResult<Option<(String, i64, i64)>> {
    Ok(match op {
        Operation::Provision { host_id: Some(h), vcpus, memory_mib, .. } => Some((h.clone(), *vcpus, *memory_mib)),
        Operation::Migrate { vm_id, to_host_id, .. } => fetch_ci(conn, vm_id)
            .await?
            .map(|vm| (to_host_id.clone(), vm.vcpus.unwrap_or(0), vm.memory_mib.unwrap_or(0))),
        _ => None,
    })
}

async fn capacity_conflicts(
    conn: &mut AnyConnection,
    change: &Change,
    others: &[Change],
) -> StoreResult<Vec<Conflict>> {
    let mut mine: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for op in &change.operations {
        if let Some((host, c, m)) = placed(conn, op).await? {
            let e = mine.entry(host).or_default();
            e.0 += c;
            e.1 += m;
        }
    }
    let mut conflicts = Vec::new();
    for (host_id, (my_cpu, my_mem)) in mine {
        let Some(host) = fetch_ci(conn, &host_id).await? else { continue };
        let (used_cpu, used_mem): (i64, i64) = sqlx::query_as(
            // PostgreSQL sums BIGINTs into NUMERIC; the cast keeps both engines answering integers.
            "SELECT CAST(COALESCE(SUM(vcpus), 0) AS BIGINT), CAST(COALESCE(SUM(memory_mib), 0) AS BIGINT) FROM cis \
             WHERE kind = 'vm' AND parent_id = $1 AND state <> 'retired'",
        )
        .bind(&host_id)
        .fetch_one(&mut *conn)
        .await?;
        let (mut cpu, mut mem) = (used_cpu + my_cpu, used_mem + my_mem);
        for other in others {
            let mut theirs = (0, 0);
            for op in &other.operations {
                if let Some((h, c, m)) = placed(conn, op).await? {
                    if h == host_id {
                        theirs.0 += c;
                        theirs.1 += m;
                    }
                }
            }
            if theirs == (0, 0) {
                continue;
            }
            cpu += theirs.0;
            mem += theirs.1;
            let (cap_cpu, cap_mem) = (host.vcpus.unwrap_or(0), host.memory_mib.unwrap_or(0));
            if cpu > cap_cpu || mem > cap_mem {
                conflicts.push(Conflict {
                    kind: "capacity".to_owned(),
                    change_id: other.id.clone(),
                    reference: other.reference.clone(),
                    title: other.title.clone(),
                    ci_id: host_id.clone(),
                    detail: format!(
                        "together with {} the host {} would hold {cpu} of {cap_cpu} vCPUs and {mem} of {cap_mem} MiB",
                        other.reference, host.name
                    ),
                });
            }
        }
    }
    Ok(conflicts)
}

/// The conflicts standing in the way of a change now.
pub async fn conflicts_of(db: &Db, id: &str) -> StoreResult<Vec<Conflict>> {
    let mut conn = db.pool().acquire().await?;
    let change = fetch(&mut conn, id).await?;
    conflicts_in(&mut conn, &change).await
}
