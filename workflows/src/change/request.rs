//! Requests and edits: a plan worked out against the CMDB into its CIs, rollback plan and risk.

use super::plan::{Operation, RollbackStep};
use super::risk::{self, Risk, RiskInputs};
use super::ChangeKind;
use crate::accounts::Principal;
use crate::clock::from_millis;
use crate::clock::to_millis;
use crate::cmdb::{self, fetch_ci, Criticality};
use crate::error::{StoreError, StoreResult, ValidationError};
use crate::freeze::{freezes_covering, Window};
use crate::process::{self, Actor};
use crate::store::{AuditContext, Db, Deferred, Param, WriteTx, ROWS_PER_INSERT};
use crate::text::{Description, Name};
use sqlx::AnyConnection;
use std::collections::BTreeSet;

use super::record::*;

/// A change as requested, checked for everything that needs no database.
#[derive(Debug, Clone)]
pub struct ChangeSpec {
    pub kind: ChangeKind,
    pub title: Name,
    pub description: Description,
    pub ci_ids: Vec<String>,
    pub operations: Vec<Operation>,
    pub window: Window,
}

impl ChangeSpec {
    pub const MAX_OPERATIONS: usize = 100;
    pub const MAX_CIS: usize = 500;

    pub fn check(&self) -> Result<(), ValidationError> {
        if self.operations.len() > Self::MAX_OPERATIONS {
            return Err(ValidationError::new("operations", format!("at most {}", Self::MAX_OPERATIONS)));
        }
        if self.ci_ids.len() > Self::MAX_CIS {
            return Err(ValidationError::new("ci_ids", format!("at most {}", Self::MAX_CIS)));
        }
        for (i, op) in self.operations.iter().enumerate() {
            op.validate(i)?;
        }
        Ok(())
    }
}

/// What a plan works out to against the CMDB: every CI touched, the rollback plan, the risk.
struct Worked {
    ci_ids: Vec<String>,
    rollback: Vec<RollbackStep>,
    risk: Risk,
}

/// `this` is the change being edited, when it is an edit.
async fn work_out(conn: &mut AnyConnection, db: &Db, spec: &ChangeSpec, this: Option<&str>) -> StoreResult<Worked> {
    spec.check()?;
    let mut cis: BTreeSet<String> = BTreeSet::new();
    // Each CI read once: the risk weighs its criticality and walks its impact from it.
    let mut read: std::collections::HashMap<String, cmdb::Ci> = std::collections::HashMap::new();
    for id in &spec.ci_ids {
        match fetch_ci(conn, id).await? {
            Some(ci) => read.insert(ci.id.clone(), ci),
            None => return Err(ValidationError::new("ci_ids", format!("no CI has id {id}")).into()),
        };
        cis.insert(id.clone());
    }
    let mut rollback = Vec::with_capacity(spec.operations.len());
    for (i, op) in spec.operations.iter().enumerate() {
        let mut target = None;
        for (field, id, kind) in op.references() {
            match fetch_ci(conn, id).await? {
                Some(ci) if ci.kind == kind => {
                    cis.insert(ci.id.clone());
                    read.insert(ci.id.clone(), ci.clone());
                    if target.is_none() {
                        target = Some(ci);
                    }
                }
                Some(ci) => {
                    return Err(ValidationError::new(
                        format!("operations[{i}].{field}"),
                        format!("{id} is a {}, not a {kind}", ci.kind),
                    )
                    .into())
                }
                None => {
                    return Err(
                        ValidationError::new(format!("operations[{i}].{field}"), format!("no CI has id {id}")).into()
                    )
                }
            }
        }
        check_capabilities(conn, i, op, &read).await?;
        rollback.push(op.inverse(target.as_ref()));
    }
    rollback.reverse();
    crate::quota::check(conn, &spec.operations, this).await?;
    let ci_ids: Vec<String> = cis.into_iter().collect();
    let risk = assess(conn, db, spec, &ci_ids, &read).await?;
    if spec.kind == ChangeKind::Standard && risk.level != super::RiskLevel::Low {
        // Standard changes skip approval: only low-risk work may, the rest is a normal change.
        return Err(ValidationError::new(
            "kind",
            format!(
                "a standard change must be low risk; this plan scores {} ({:?}): request a normal change",
                risk.score, risk.level
            ),
        )
        .into());
    }
    Ok(Worked { ci_ids, rollback, risk })
}

/// Refuses, when it is requested, what the hypervisor of the host concerned cannot do (a container host: no
/// vCPU change while it runs, no disk or network limits, no migration either way), so that nobody approves a
/// change that could only roll back. `read` holds the CIs the operation names.
async fn check_capabilities(
    conn: &mut AnyConnection,
    i: usize,
    op: &Operation,
    read: &std::collections::HashMap<String, cmdb::Ci>,
) -> StoreResult<()> {
    async fn host(conn: &mut AnyConnection, id: Option<&str>) -> StoreResult<Option<cmdb::Ci>> {
        match id {
            Some(id) => fetch_ci(conn, id).await,
            None => Ok(None),
        }
    }
    let caps = |h: Option<&cmdb::Ci>| h.and_then(|h| h.hypervisor).map(cmdb::Hypervisor::capabilities);
    let refuse = |field: &str, why: String| -> StoreResult<()> {
        Err(ValidationError::new(format!("operations[{i}].{field}"), why).into())
    };
    let vm = |id: &str| read.get(id);
    let vm_name = |id: &str| vm(id).map_or(id.to_string(), |v| v.name.clone());
    let host_of = |id: &str| vm(id).and_then(|v| v.parent_id.clone());
    // "hv-3 (lxc)"
    let named = |h: Option<&cmdb::Ci>| {
        h.map_or(String::new(), |h| format!("{} ({})", h.name, h.hypervisor.map_or("", |k| k.as_str())))
    };
    match op {
        Operation::Provision { host_id: Some(host_id), container, .. } => {
            let h = read.get(host_id);
            let runs_containers = h.and_then(|h| h.hypervisor).is_some_and(cmdb::Hypervisor::runs_containers);
            if h.is_some() && runs_containers != *container {
                let why = if runs_containers {
                    format!("{} runs containers: ask for a container (\"container\": true)", named(h))
                } else {
                    format!("{} runs virtual machines, not containers", named(h))
                };
                return refuse("container", why);
            }
        }
        Operation::Resize { vm_id, vcpus, .. } => {
            let h = host(conn, host_of(vm_id).as_deref()).await?;
            let now = vm(vm_id).and_then(|v| v.vcpus);
            if caps(h.as_ref()).is_some_and(|c| !c.live_vcpus) && now.is_some_and(|n| n != *vcpus) {
                let why = format!(
                    "{} is on {}, where vCPUs cannot change while it runs: request a cold resize",
                    vm_name(vm_id),
                    named(h.as_ref())
                );
                return refuse("vcpus", why);
            }
        }
        Operation::SetQuota { vm_id, .. } => {
            let h = host(conn, host_of(vm_id).as_deref()).await?;
            let (Some(c), Some(limits)) = (caps(h.as_ref()), op.vm_limits()) else { return Ok(()) };
            if !c.disk_limits && limits.wants_disk() {
                let why = format!("{} is on {}, which cannot limit disk I/O", vm_name(vm_id), named(h.as_ref()));
                return refuse("disk_iops", why);
            }
            if !c.net_limits && limits.wants_net() {
                let why =
                    format!("{} is on {}, which cannot limit network bandwidth", vm_name(vm_id), named(h.as_ref()));
                return refuse("net_mbit_per_sec", why);
            }
        }
        Operation::Migrate { vm_id, to_host_id, .. } => {
            let from = host(conn, host_of(vm_id).as_deref()).await?;
            if caps(from.as_ref()).is_some_and(|c| !c.migration) {
                let why =
                    format!("{} is on {}, which cannot move it to another host", vm_name(vm_id), named(from.as_ref()));
                return refuse("vm_id", why);
            }
            let to = read.get(to_host_id);
            if caps(to).is_some_and(|c| !c.migration) {
                return refuse("to_host_id", format!("{} takes no migrations", named(to)));
            }
        }
        Operation::Evacuate { host_id } => {
            let h = read.get(host_id);
            if caps(h).is_some_and(|c| !c.migration) {
                return refuse("host_id", format!("{} cannot move what runs on it to another host", named(h)));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Gathers the facts the risk score weighs.
async fn assess(
    conn: &mut AnyConnection,
    db: &Db,
    spec: &ChangeSpec,
    ci_ids: &[String],
    read: &std::collections::HashMap<String, cmdb::Ci>,
) -> StoreResult<Risk> {
    let mut affected = BTreeSet::new();
    let mut services = BTreeSet::new();
    let max_criticality: Option<Criticality> =
        ci_ids.iter().filter_map(|id| read.get(id).map(|ci| ci.criticality)).max();
    for id in ci_ids {
        let walk = match read.get(id) {
            Some(ci) => {
                let root = cmdb::CiRef { id: ci.id.clone(), kind: ci.kind, name: ci.name.clone() };
                cmdb::impact_from(conn, root, 4).await?
            }
            None => cmdb::impact_in(conn, id, 4).await?,
        };
        for a in walk.affected {
            if a.ci.kind == cmdb::CiKind::Service {
                services.insert(a.ci.id.clone());
            }
            affected.insert(a.ci.id);
        }
    }
    let now = to_millis(db.clock().now());
    let (mut open, mut recent) = (0, 0);
    for id in ci_ids {
        let (o, r): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(CASE WHEN i.resolved_at IS NULL THEN 1 ELSE 0 END), 0), \
                    COALESCE(SUM(CASE WHEN i.resolved_at >= $2 THEN 1 ELSE 0 END), 0) \
             FROM incidents i JOIN incident_cis c ON c.incident_id = i.id WHERE c.ci_id = $1",
        )
        .bind(id)
        .bind(now - 7 * 86_400_000)
        .fetch_one(&mut *conn)
        .await?;
        open += o;
        recent += r;
    }
    let signature = operation_signature(&spec.operations);
    let history = history_of(conn, db, spec.kind, signature).await?;
    Ok(risk::score(&RiskInputs {
        kind: Some(spec.kind),
        operation_kinds: spec.operations.iter().map(Operation::kind).collect(),
        affected: affected.len(),
        services: services.len(),
        max_criticality,
        open_incidents: open,
        recent_incidents: recent,
        history,
    }))
}

/// (failed, finished) among the last hundred finished changes of this kind with these operations: recent
/// enough to matter, bounded in cost. A statistic, so it is read at most every few seconds (see
/// [`crate::store::HISTORY_TTL`]) rather than on every request.
async fn history_of(conn: &mut AnyConnection, db: &Db, kind: ChangeKind, signature: String) -> StoreResult<(i64, i64)> {
    let key = (kind.as_str().to_owned(), signature);
    if let Some(kept) = db.histories.get(&key) {
        return Ok(kept);
    }
    let ticket = db.histories.ticket();
    let finished: Vec<(String,)> = sqlx::query_as(
        "SELECT state FROM changes WHERE kind = $1 AND signature = $2 \
         AND state IN ('completed', 'failed', 'rolled_back', 'closed') ORDER BY number DESC LIMIT 100",
    )
    .bind(&key.0)
    .bind(&key.1)
    .fetch_all(&mut *conn)
    .await?;
    let failed = finished.iter().filter(|(s,)| s == "failed" || s == "rolled_back").count() as i64;
    let history = (failed, finished.len() as i64);
    db.histories.insert(ticket, key, history);
    Ok(history)
}

/// The operations' kinds, sorted: changes with the same signature share a failure history.
pub(super) fn operation_signature(ops: &[Operation]) -> String {
    let mut kinds: Vec<&str> = ops.iter().map(Operation::kind).collect();
    kinds.sort_unstable();
    kinds.join(",")
}

/// The statements that record a change's CIs.
fn cis_inserts(id: &str, ci_ids: &[String]) -> Vec<Deferred> {
    ci_ids
        .chunks(ROWS_PER_INSERT)
        .map(|chunk| {
            let rows = chunk.iter().map(|ci| vec![Param::from(ci.as_str())]);
            Deferred::insert_rows("INSERT INTO change_cis (ci_id, change_id)", vec![id.into()], rows)
        })
        .collect()
}

/// Replaces an edited change's CIs at once: the edit reads the change back before it commits.
async fn replace_cis(tx: &mut WriteTx<'_>, id: &str, ci_ids: &[String]) -> StoreResult<()> {
    sqlx::query("DELETE FROM change_cis WHERE change_id = $1").bind(id).execute(tx.conn()).await?;
    for insert in cis_inserts(id, ci_ids) {
        tx.run_now(insert).await?;
    }
    Ok(())
}

/// Records a change request as a draft of its kind's process, at the latest process version.
pub async fn create_change(
    db: &Db,
    ctx: &AuditContext,
    requester: &Principal,
    spec: ChangeSpec,
) -> StoreResult<Change> {
    // Working out the plan (impact walks, history) reads a lot: do it before taking the writers' queue.
    let worked = {
        let mut conn = db.pool().acquire().await?;
        work_out(&mut conn, db, &spec, None).await?
    };
    let id = uuid::Uuid::new_v4().to_string();
    // A new record depends on nothing read: on PostgreSQL it is written as one statement, no transaction.
    let mut tx = db.write_optimistic(ctx).await?;
    let def = process::latest_definition(&mut tx, spec.kind.process()).await?;
    let number = tx.next_number(crate::store::Numbered::Change).await?;
    let now = to_millis(tx.now());
    let (operations, rollback, risk) = (to_json(&spec.operations)?, to_json(&worked.rollback)?, to_json(&worked.risk)?);
    tx.defer(Deferred::insert(
        "INSERT INTO changes (id, number, kind, title, description, state, process_name, process_version, revision, \
         requester_id, requester, revised_by_id, operations, signature, rollback, risk, risk_score, window_start, \
         window_end, conflict_override, review, created_at, updated_at)",
        "($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $9, $11, $12, $13, $14, $15, $16, $17, NULL, NULL, $18, $18)"
            .to_owned(),
        "",
        vec![
            id.as_str().into(),
            number.into(),
            spec.kind.as_str().into(),
            spec.title.as_str().into(),
            spec.description.as_str().into(),
            def.definition.initial.as_str().into(),
            def.name.as_str().into(),
            def.version.into(),
            requester.user_id.as_str().into(),
            requester.username.as_str().into(),
            operations.into(),
            operation_signature(&spec.operations).into(),
            rollback.into(),
            risk.into(),
            i64::from(worked.risk.score).into(),
            to_millis(spec.window.start).into(),
            to_millis(spec.window.end).into(),
            now.into(),
        ],
    ));
    for insert in cis_inserts(&id, &worked.ci_ids) {
        tx.defer(insert);
    }
    // What the insert stores, as a read would give it back (instants to the millisecond).
    let change = Change {
        reference: reference(number),
        kind: spec.kind,
        title: spec.title.as_str().to_owned(),
        description: spec.description.as_str().to_owned(),
        state: def.definition.initial.clone(),
        process: def.name.clone(),
        process_version: def.version,
        revision: 1,
        requester_id: requester.user_id.clone(),
        requester: requester.username.clone(),
        revised_by_id: requester.user_id.clone(),
        ci_ids: worked.ci_ids.clone(),
        operations: spec.operations.clone(),
        rollback: worked.rollback.clone(),
        risk: worked.risk.clone(),
        window_start: from_millis(to_millis(spec.window.start)),
        window_end: from_millis(to_millis(spec.window.end)),
        conflict_override: None,
        review: None,
        created_at: from_millis(now),
        updated_at: from_millis(now),
        version: 0,
        number,
        id: id.clone(),
    };
    if super::conflicts::is_live(&change.state) {
        for insert in super::conflicts::booking(&change, true) {
            tx.defer(insert);
        }
    }
    tx.audit("change.create", "change", &id, None::<&Change>, Some(&change)).await?;
    tx.commit().await?;
    Ok(change)
}

/// States in which a change's plan may still be edited.
pub(super) fn editable(state: &str) -> bool {
    matches!(state, "draft" | "submitted" | "assessed" | "awaiting_approval" | "approved" | "scheduled")
}

/// Replaces a change's plan. The revision increments, so earlier votes and conflict overrides no longer
/// count; an approved or scheduled change goes back to awaiting approval.
pub async fn update_change(
    db: &Db,
    ctx: &AuditContext,
    id: &str,
    spec: ChangeSpec,
    expected_revision: Option<i64>,
) -> StoreResult<Change> {
    let mut tx = db.write_rows(ctx).await?;
    let before = fetch_locked(&mut tx, id).await?;
    if let Some(expected) = expected_revision.filter(|e| *e != before.revision) {
        return Err(StoreError::Conflict(format!(
            "change {} is at revision {}, not {expected}: reload it and apply your edit again",
            before.reference, before.revision
        )));
    }
    if spec.kind != before.kind {
        return Err(ValidationError::new("kind", format!("is {} and cannot change", before.kind.as_str())).into());
    }
    if !editable(&before.state) {
        return Err(StoreError::Conflict(format!(
            "change {} is {} and its plan can no longer be edited",
            before.reference, before.state
        )));
    }
    let worked = work_out(tx.conn(), db, &spec, Some(id)).await?;
    let def = process::definition_at(&mut tx, &before.process, before.process_version).await?;
    // Votes bind to a revision: an approved plan that changes must be approved again.
    let state = match process::decide(&def.definition, &before.state, "revise", &Actor::System, &()) {
        Ok(d) => d.to.to_owned(),
        Err(_) => before.state.clone(),
    };
    sqlx::query(
        "UPDATE changes SET title = $1, description = $2, operations = $3, signature = $4, rollback = $5, risk = $6, \
         risk_score = $7, window_start = $8, window_end = $9, state = $10, revision = revision + 1, updated_at = $11, version = version + 1, \
         revised_by_id = COALESCE($13, revised_by_id) WHERE id = $12",
    )
    .bind(spec.title.as_str())
    .bind(spec.description.as_str())
    .bind(to_json(&spec.operations)?)
    .bind(operation_signature(&spec.operations))
    .bind(to_json(&worked.rollback)?)
    .bind(to_json(&worked.risk)?)
    .bind(i64::from(worked.risk.score))
    .bind(to_millis(spec.window.start))
    .bind(to_millis(spec.window.end))
    .bind(&state)
    .bind(to_millis(tx.now()))
    .bind(id)
    .bind(ctx.actor_id.clone())
    .execute(tx.conn())
    .await?;
    replace_cis(&mut tx, id, &worked.ci_ids).await?;
    let after = fetch(tx.conn(), id).await?;
    // The booking follows the edited CIs and window (an edit may also have moved the state).
    let mut rebooking = super::conflicts::booking(&after, false);
    if super::conflicts::is_live(&after.state) {
        rebooking.extend(super::conflicts::booking(&after, true));
    }
    for write in rebooking {
        tx.run_now(write).await?;
    }
    if after.state == "scheduled" {
        // A process with no way back to approval (standard changes) keeps the change scheduled: the edited
        // plan must pass the checks scheduling made.
        let window = Window { start: after.window_start, end: after.window_end };
        let frozen = freezes_covering(tx.conn(), &after.ci_ids, window).await?;
        let conflicts = super::conflicts::conflicts_in(tx.conn(), &after).await?;
        if !frozen.is_empty() || !conflicts.is_empty() {
            return Err(StoreError::Conflict(format!(
                "{} is scheduled and the edited plan would be frozen or conflict ({} freeze window(s), {} conflict(s)): \
                 cancel it and request it again",
                after.reference,
                frozen.len(),
                conflicts.len()
            )));
        }
    }
    if after.state == "awaiting_approval" {
        // Votes bind to the revision they were cast on: the new revision starts a new round.
        crate::approval::open_round(&mut tx, &after).await?;
    }
    tx.audit("change.update", "change", id, Some(&before), Some(&after)).await?;
    tx.commit().await?;
    Ok(after)
}
