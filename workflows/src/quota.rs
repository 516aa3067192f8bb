//! Department quotas. A user group is a department when it owns business services; the VMs of those services
//! count against its quota (at most so many VMs, vCPUs, MiB of memory and GiB of disk). They are counted when
//! a change asks for more: what the CMDB has, plus what the department's other live changes (submitted to
//! verifying) ask for and have not carried out yet, plus what this one asks for, must stay within each limit.

use crate::change::Operation;
use crate::cmdb::{fetch_ci, CiKind};
use crate::error::{StoreError, StoreResult, ValidationError};
use crate::store::{AuditContext, Db};
use serde::{Deserialize, Serialize};
use sqlx::AnyConnection;
use std::collections::BTreeMap;

/// The lock under which changes that ask for resources go live one at a time ([`crate::store::Db::write_locking`]).
pub(crate) const LOCK: &str = "department-quotas";

/// How much of each resource: in use, asked for, or (as limits) allowed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Amounts {
    pub vms: i64,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub disk_gib: i64,
}

impl Amounts {
    fn add(&mut self, other: &Amounts) {
        self.vms += other.vms;
        self.vcpus += other.vcpus;
        self.memory_mib += other.memory_mib;
        self.disk_gib += other.disk_gib;
    }

    fn is_zero(&self) -> bool {
        *self == Amounts::default()
    }
}

/// A department's limits; a limit left out (null) is none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, sqlx::FromRow)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub max_vms: Option<i64>,
    pub max_vcpus: Option<i64>,
    pub max_memory_mib: Option<i64>,
    pub max_disk_gib: Option<i64>,
}

impl Limits {
    fn check(&self) -> Result<(), ValidationError> {
        for (field, v) in [
            ("max_vms", self.max_vms),
            ("max_vcpus", self.max_vcpus),
            ("max_memory_mib", self.max_memory_mib),
            ("max_disk_gib", self.max_disk_gib),
        ] {
            if v.is_some_and(|v| !(0..=1_000_000_000_000).contains(&v)) {
                return Err(ValidationError::new(field, "must be between 0 and 10^12, or null for no limit"));
            }
        }
        Ok(())
    }

    /// The first resource that what is in use, what other changes ask for and what this one asks for
    /// together take past its limit, worded.
    fn exceeded(&self, used: &Amounts, others: &Amounts, this: &Amounts) -> Option<String> {
        type Amount = fn(&Amounts) -> i64;
        let resources: [(&str, Option<i64>, Amount); 4] = [
            ("VMs", self.max_vms, |a| a.vms),
            ("vCPUs", self.max_vcpus, |a| a.vcpus),
            ("MiB of memory", self.max_memory_mib, |a| a.memory_mib),
            ("GiB of disk", self.max_disk_gib, |a| a.disk_gib),
        ];
        resources.into_iter().find_map(|(what, limit, of)| {
            let total = of(used) + of(others) + of(this);
            let limit = limit.filter(|l| total > *l)?;
            Some(format!(
                "would have {total} {what}, over its quota of {limit}: {} in use, {} asked for by its other open \
                 changes, {} by this one",
                of(used),
                of(others),
                of(this)
            ))
        })
    }
}

/// A department's quota as it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QuotaReport {
    pub group_id: String,
    pub limits: Limits,
    /// The VMs of its services in the CMDB (all but retired ones).
    pub in_use: Amounts,
    /// What its live changes ask for beyond that.
    pub requested: Amounts,
    /// The business services it owns.
    pub services: Vec<String>,
}

async fn group_name(conn: &mut AnyConnection, group_id: &str) -> StoreResult<String> {
    let name: Option<(String,)> =
        sqlx::query_as("SELECT name FROM user_groups WHERE id = $1").bind(group_id).fetch_optional(&mut *conn).await?;
    name.map(|(n,)| n).ok_or_else(|| StoreError::NotFound { entity: "group", id: group_id.to_owned() })
}

/// The department (group id) that owns the business service `service_id`, if any.
pub async fn department(db: &Db, service_id: &str) -> StoreResult<Option<String>> {
    crate::cmdb::get_ci_of_kind(db, service_id, CiKind::Service).await?;
    let mut conn = db.pool().acquire().await?;
    department_of(&mut conn, service_id).await
}

async fn department_of(conn: &mut AnyConnection, service_id: &str) -> StoreResult<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as("SELECT group_id FROM service_departments WHERE service_id = $1")
        .bind(service_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(|(g,)| g))
}

/// Makes `group_id` the department owning a business service, or (with `None`) leaves it with none.
pub async fn set_department(db: &Db, ctx: &AuditContext, service_id: &str, group_id: Option<&str>) -> StoreResult<()> {
    crate::cmdb::get_ci_of_kind(db, service_id, CiKind::Service).await?;
    let mut conn = db.pool().acquire().await?;
    if let Some(group_id) = group_id {
        group_name(&mut conn, group_id).await.map_err(|_| ValidationError::new("group_id", "no group has this id"))?;
    }
    let before = department_of(&mut conn, service_id).await?;
    drop(conn);
    let mut tx = db.write_rows(ctx).await?;
    let now = crate::clock::to_millis(tx.now());
    match group_id {
        Some(group_id) => {
            sqlx::query(
                "INSERT INTO service_departments (service_id, group_id, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (service_id) DO UPDATE SET group_id = excluded.group_id, updated_at = excluded.updated_at",
            )
            .bind(service_id)
            .bind(group_id)
            .bind(now)
            .execute(tx.conn())
            .await?;
        }
        None => {
            sqlx::query("DELETE FROM service_departments WHERE service_id = $1")
                .bind(service_id)
                .execute(tx.conn())
                .await?;
        }
    }
    tx.audit("service.department", "ci", service_id, Some(&before), Some(&group_id)).await?;
    tx.commit().await
}

/// Sets a department's limits.
pub async fn set_limits(db: &Db, ctx: &AuditContext, group_id: &str, limits: Limits) -> StoreResult<QuotaReport> {
    limits.check()?;
    let before = report(db, group_id).await?.limits;
    let mut tx = db.write_rows(ctx).await?;
    let now = crate::clock::to_millis(tx.now());
    sqlx::query(
        "INSERT INTO department_quotas (group_id, max_vms, max_vcpus, max_memory_mib, max_disk_gib, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (group_id) DO UPDATE SET max_vms = excluded.max_vms, \
         max_vcpus = excluded.max_vcpus, max_memory_mib = excluded.max_memory_mib, \
         max_disk_gib = excluded.max_disk_gib, updated_at = excluded.updated_at",
    )
    .bind(group_id)
    .bind(limits.max_vms)
    .bind(limits.max_vcpus)
    .bind(limits.max_memory_mib)
    .bind(limits.max_disk_gib)
    .bind(now)
    .execute(tx.conn())
    .await?;
    tx.audit("group.quota", "group", group_id, Some(&before), Some(&limits)).await?;
    tx.commit().await?;
    report(db, group_id).await
}

async fn limits_of(conn: &mut AnyConnection, group_id: &str) -> StoreResult<Limits> {
    let row: Option<Limits> = sqlx::query_as(
        "SELECT max_vms, max_vcpus, max_memory_mib, max_disk_gib FROM department_quotas WHERE group_id = $1",
    )
    .bind(group_id)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.unwrap_or_default())
}

async fn in_use(conn: &mut AnyConnection, group_id: &str) -> StoreResult<Amounts> {
    // SUM of a BIGINT is a NUMERIC on PostgreSQL: cast back.
    let (vms, vcpus, memory_mib, disk_gib): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT COUNT(*), CAST(COALESCE(SUM(vcpus), 0) AS BIGINT), CAST(COALESCE(SUM(memory_mib), 0) AS BIGINT), \
         CAST(COALESCE(SUM(disk_gib), 0) AS BIGINT) FROM cis WHERE kind = 'vm' AND state <> 'retired' \
         AND service_id IN (SELECT service_id FROM service_departments WHERE group_id = $1)",
    )
    .bind(group_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Amounts { vms, vcpus, memory_mib, disk_gib })
}

/// What an operation adds to a department beyond the CMDB as it stands: (department, growth).
async fn growth(conn: &mut AnyConnection, op: &Operation) -> StoreResult<Option<(String, Amounts)>> {
    match op {
        Operation::Provision { name, vcpus, memory_mib, disk_gib, service_id: Some(service_id), .. } => {
            let Some(department) = department_of(conn, service_id).await? else { return Ok(None) };
            // Once carried out, the VM is in the CMDB and counted there.
            let (made,): (i64,) = sqlx::query_as(
                "SELECT COUNT(*) FROM cis WHERE kind = 'vm' AND state <> 'retired' AND name = $1 AND service_id = $2",
            )
            .bind(name)
            .bind(service_id)
            .fetch_one(&mut *conn)
            .await?;
            if made > 0 {
                return Ok(None);
            }
            Ok(Some((department, Amounts { vms: 1, vcpus: *vcpus, memory_mib: *memory_mib, disk_gib: *disk_gib })))
        }
        Operation::Resize { vm_id, vcpus, memory_mib } => {
            let Some(vm) = fetch_ci(conn, vm_id).await? else { return Ok(None) };
            let Some(service_id) = vm.service_id.as_deref() else { return Ok(None) };
            let Some(department) = department_of(conn, service_id).await? else { return Ok(None) };
            let more = |to: i64, now: Option<i64>| (to - now.unwrap_or(0)).max(0);
            let grown = Amounts {
                vcpus: more(*vcpus, vm.vcpus),
                memory_mib: more(*memory_mib, vm.memory_mib),
                ..Amounts::default()
            };
            Ok((!grown.is_zero()).then_some((department, grown)))
        }
        _ => Ok(None),
    }
}

/// What the live changes (other than `except`) ask of a department beyond the CMDB: those whose CIs, as
/// booked for their windows, include one of its services or one of their VMs.
async fn requested(conn: &mut AnyConnection, department: &str, except: Option<&str>) -> StoreResult<Amounts> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, operations FROM changes WHERE id IN (SELECT change_id FROM live_change_cis WHERE ci_id IN \
         (SELECT service_id FROM service_departments WHERE group_id = $1) OR ci_id IN (SELECT id FROM cis \
         WHERE kind = 'vm' AND service_id IN (SELECT service_id FROM service_departments WHERE group_id = $1)))",
    )
    .bind(department)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Amounts::default();
    for (id, operations) in rows {
        if Some(id.as_str()) == except {
            continue;
        }
        let operations: Vec<Operation> = serde_json::from_str(&operations)
            .map_err(|e| StoreError::Internal(format!("change {id} has unreadable operations: {e}")))?;
        for op in &operations {
            if let Some((of, grown)) = growth(conn, op).await? {
                if of == department {
                    out.add(&grown);
                }
            }
        }
    }
    Ok(out)
}

/// A department's limits, what it has and what its live changes ask for.
pub async fn report(db: &Db, group_id: &str) -> StoreResult<QuotaReport> {
    let mut conn = db.pool().acquire().await?;
    group_name(&mut conn, group_id).await?;
    let services: Vec<(String,)> =
        sqlx::query_as("SELECT service_id FROM service_departments WHERE group_id = $1 ORDER BY service_id")
            .bind(group_id)
            .fetch_all(&mut *conn)
            .await?;
    Ok(QuotaReport {
        group_id: group_id.to_owned(),
        limits: limits_of(&mut conn, group_id).await?,
        in_use: in_use(&mut conn, group_id).await?,
        requested: requested(&mut conn, group_id, None).await?,
        services: services.into_iter().map(|(s,)| s).collect(),
    })
}

/// Refuses `operations` (of change `this`, when it exists already) when they would take a department past
/// one of its limits, naming the first operation that asks for it and the figures.
pub(crate) async fn check(conn: &mut AnyConnection, operations: &[Operation], this: Option<&str>) -> StoreResult<()> {
    let mut asked: BTreeMap<String, (usize, Amounts)> = BTreeMap::new();
    for (i, op) in operations.iter().enumerate() {
        if let Some((department, grown)) = growth(conn, op).await? {
            asked.entry(department).or_insert((i, Amounts::default())).1.add(&grown);
        }
    }
    for (department, (first, amounts)) in asked {
        let limits = limits_of(conn, &department).await?;
        if limits == Limits::default() {
            continue;
        }
        let (others, used) = (requested(conn, &department, this).await?, in_use(conn, &department).await?);
        if let Some(excess) = limits.exceeded(&used, &others, &amounts) {
            let name = group_name(conn, &department).await?;
            return Err(
                ValidationError::new(format!("operations[{first}]"), format!("department {name} {excess}")).into()
            );
        }
    }
    Ok(())
}
