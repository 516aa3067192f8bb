//! Freeze (blackout) windows: spans of time in which no normal or standard change may be scheduled or run
//! on the CIs a window covers. A window is scoped to a region, data centre, cluster or service and covers it,
//! everything contained in it, and the VMs that belong to it.

use crate::clock::{from_millis, to_millis};
use crate::cmdb::{fetch_ci, CiKind};
use crate::error::{StoreError, StoreResult, ValidationError};
use crate::store::{bind_list, AuditContext, Db, Filter};
use crate::text::{Description, Name, Page, PageRequest};
use serde::Serialize;
use sqlx::any::AnyArguments;
use sqlx::{AnyConnection, Arguments, FromRow};
use std::collections::BTreeSet;
use time::OffsetDateTime;

/// The longest freeze a window may declare.
pub const MAX_DURATION: time::Duration = time::Duration::days(366);

/// A freeze window as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FreezeWindow {
    pub id: String,
    pub name: String,
    pub description: String,
    /// The region, data centre, cluster or service it covers.
    pub scope_ci_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub revision: i64,
}

#[derive(FromRow)]
struct FreezeRow {
    id: String,
    name: String,
    description: String,
    scope_ci_id: String,
    starts_at: i64,
    ends_at: i64,
    created_by: String,
    created_at: i64,
    updated_at: i64,
    revision: i64,
}

impl From<FreezeRow> for FreezeWindow {
    fn from(r: FreezeRow) -> Self {
        FreezeWindow {
            id: r.id,
            name: r.name,
            description: r.description,
            scope_ci_id: r.scope_ci_id,
            starts_at: from_millis(r.starts_at),
            ends_at: from_millis(r.ends_at),
            created_by: r.created_by,
            created_at: from_millis(r.created_at),
            updated_at: from_millis(r.updated_at),
            revision: r.revision,
        }
    }
}

const COLUMNS: &str =
    "id, name, description, scope_ci_id, starts_at, ends_at, created_by, created_at, updated_at, revision";

/// A span of time: start before end, at most [`MAX_DURATION`] long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

impl Window {
    pub fn new(start: OffsetDateTime, end: OffsetDateTime) -> Result<Window, ValidationError> {
        if end <= start {
            return Err(ValidationError::new("ends_at", "must be after starts_at"));
        }
        if end - start > MAX_DURATION {
            return Err(ValidationError::new("ends_at", "a window lasts at most 366 days"));
        }
        Ok(Window { start, end })
    }
}

/// A freeze window as submitted, checked.
#[derive(Debug, Clone)]
pub struct FreezeSpec {
    pub name: Name,
    pub description: Description,
    pub scope_ci_id: String,
    pub window: Window,
}

async fn fetch(conn: &mut AnyConnection, id: &str) -> StoreResult<FreezeWindow> {
    let row: Option<FreezeRow> = crate::store::row_by_id(conn, COLUMNS, "freeze_windows", id, "").await?;
    row.map(FreezeWindow::from).ok_or_else(|| StoreError::not_found("freeze window", id))
}

pub async fn get_freeze(db: &Db, id: &str) -> StoreResult<FreezeWindow> {
    let mut conn = db.pool().acquire().await?;
    fetch(&mut conn, id).await
}

async fn check_scope(conn: &mut AnyConnection, id: &str) -> StoreResult<()> {
    match fetch_ci(conn, id).await? {
        Some(ci) if matches!(ci.kind, CiKind::Region | CiKind::Datacenter | CiKind::Cluster | CiKind::Service) => {
            Ok(())
        }
        Some(ci) => Err(ValidationError::new(
            "scope_ci_id",
            format!("{id} is a {}; a freeze covers a region, datacenter, cluster or service", ci.kind),
        )
        .into()),
        None => Err(ValidationError::new("scope_ci_id", format!("no CI has id {id}")).into()),
    }
}

pub async fn create_freeze(db: &Db, ctx: &AuditContext, spec: FreezeSpec) -> StoreResult<FreezeWindow> {
    let mut tx = db.write(ctx).await?;
    check_scope(tx.conn(), &spec.scope_ci_id).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let now = to_millis(tx.now());
    sqlx::query(&format!("INSERT INTO freeze_windows ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, 1)"))
        .bind(&id)
        .bind(spec.name.as_str())
        .bind(spec.description.as_str())
        .bind(&spec.scope_ci_id)
        .bind(to_millis(spec.window.start))
        .bind(to_millis(spec.window.end))
        .bind(&ctx.actor)
        .bind(now)
        .execute(tx.conn())
        .await?;
    let created = fetch(tx.conn(), &id).await?;
    tx.audit("freeze.create", "freeze_window", &id, None::<&FreezeWindow>, Some(&created)).await?;
    tx.commit().await?;
    Ok(created)
}

pub async fn update_freeze(
    db: &Db,
    ctx: &AuditContext,
    id: &str,
    spec: FreezeSpec,
    expected_revision: Option<i64>,
) -> StoreResult<FreezeWindow> {
    let mut tx = db.write(ctx).await?;
    let before = fetch(tx.conn(), id).await?;
    if let Some(expected) = expected_revision.filter(|e| *e != before.revision) {
        return Err(StoreError::Conflict(format!(
            "freeze window {id} is at revision {}, not {expected}: reload it and apply your edit again",
            before.revision
        )));
    }
    check_scope(tx.conn(), &spec.scope_ci_id).await?;
    sqlx::query(
        "UPDATE freeze_windows SET name = $1, description = $2, scope_ci_id = $3, starts_at = $4, ends_at = $5, \
         updated_at = $6, revision = revision + 1 WHERE id = $7",
    )
    .bind(spec.name.as_str())
    .bind(spec.description.as_str())
    .bind(&spec.scope_ci_id)
    .bind(to_millis(spec.window.start))
    .bind(to_millis(spec.window.end))
    .bind(to_millis(tx.now()))
    .bind(id)
    .execute(tx.conn())
    .await?;
    let after = fetch(tx.conn(), id).await?;
    tx.audit("freeze.update", "freeze_window", id, Some(&before), Some(&after)).await?;
    tx.commit().await?;
    Ok(after)
}

pub async fn delete_freeze(db: &Db, ctx: &AuditContext, id: &str) -> StoreResult<()> {
    let mut tx = db.write(ctx).await?;
    let before = fetch(tx.conn(), id).await?;
    sqlx::query("DELETE FROM freeze_windows WHERE id = $1").bind(id).execute(tx.conn()).await?;
    tx.audit("freeze.delete", "freeze_window", id, Some(&before), None::<&FreezeWindow>).await?;
    tx.commit().await?;
    Ok(())
}

/// Filters for [`list_freezes`].
#[derive(Debug, Clone, Default)]
pub struct FreezeQuery {
    pub scope_ci_id: Option<String>,
    /// Only windows that overlap this span.
    pub overlapping: Option<Window>,
}

/// Freeze windows matching `q`, earliest first.
pub async fn list_freezes(db: &Db, q: &FreezeQuery, page: PageRequest) -> StoreResult<Page<FreezeWindow>> {
    let mut f = Filter::new();
    if let Some(scope) = &q.scope_ci_id {
        f.text("scope_ci_id", "=", scope);
    }
    if let Some(w) = q.overlapping {
        f.int("starts_at", "<", to_millis(w.end));
        f.int("ends_at", ">", to_millis(w.start));
    }
    let rows: Page<FreezeRow> = f.page(db.pool(), COLUMNS, "freeze_windows", "starts_at, id", page).await?;
    Ok(rows.map(FreezeWindow::from))
}

/// The scopes that cover a CI: itself, everything that contains it, and the service it belongs to.
async fn scopes_of(conn: &mut AnyConnection, ci_id: &str, into: &mut BTreeSet<String>) -> StoreResult<()> {
    let mut next = Some(ci_id.to_owned());
    // Containment is at most region ⊃ datacenter ⊃ cluster ⊃ host ⊃ VM; the bound guards bad data.
    for _ in 0..8 {
        let Some(id) = next.take() else { break };
        let Some(ci) = fetch_ci(conn, &id).await? else { break };
        into.insert(ci.id.clone());
        if let Some(service) = ci.service_id {
            into.insert(service);
        }
        next = ci.parent_id;
    }
    Ok(())
}

/// The freeze windows that cover any of `ci_ids` at any moment of `window`, earliest first. A freeze covers
/// a CI when its scope contains the CI (or the CI's service), when the CI contains the scope (work on a
/// region touches every cluster in it), or when the CI is a host running VMs of a frozen service.
pub async fn freezes_covering(
    conn: &mut AnyConnection,
    ci_ids: &[String],
    window: Window,
) -> StoreResult<Vec<FreezeWindow>> {
    if ci_ids.is_empty() {
        return Ok(Vec::new());
    }
    // Freezes overlapping a window are few; each is then checked against the CIs by walking containment.
    let candidates: Vec<FreezeRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM freeze_windows WHERE starts_at < $1 AND ends_at > $2 ORDER BY starts_at, id"
    ))
    .bind(to_millis(window.end))
    .bind(to_millis(window.start))
    .fetch_all(&mut *conn)
    .await?;
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let mut upward = BTreeSet::new();
    for ci in ci_ids {
        scopes_of(conn, ci, &mut upward).await?;
    }
    let mine: BTreeSet<&str> = ci_ids.iter().map(String::as_str).collect();
    let mut covering = Vec::new();
    for f in candidates {
        let covered = upward.contains(&f.scope_ci_id)
            || contains_scope(conn, &mine, &f.scope_ci_id).await?
            || hosts_service(conn, ci_ids, &f.scope_ci_id).await?;
        if covered {
            covering.push(FreezeWindow::from(f));
        }
    }
    Ok(covering)
}

/// True when one of `mine` contains `scope` (is it, or one of its containers).
async fn contains_scope(conn: &mut AnyConnection, mine: &BTreeSet<&str>, scope: &str) -> StoreResult<bool> {
    let mut next = Some(scope.to_owned());
    for _ in 0..8 {
        let Some(id) = next.take() else { break };
        if mine.contains(id.as_str()) {
            return Ok(true);
        }
        next = fetch_ci(conn, &id).await?.and_then(|ci| ci.parent_id);
    }
    Ok(false)
}

/// True when `scope` is a service with a VM on one of the hosts among `ci_ids`.
async fn hosts_service(conn: &mut AnyConnection, ci_ids: &[String], scope: &str) -> StoreResult<bool> {
    let mut args = AnyArguments::default();
    let _ = args.add(scope.to_owned());
    let list = bind_list(&mut args, ci_ids.iter().cloned());
    let sql = format!("SELECT COUNT(*) FROM cis WHERE kind = 'vm' AND service_id = $1 AND parent_id IN ({list})");
    let (n,): (i64,) = sqlx::query_as_with(&sql, args).fetch_one(conn).await?;
    Ok(n > 0)
}

/// [`freezes_covering`] on a pooled connection.
pub async fn check_frozen(db: &Db, ci_ids: &[String], window: Window) -> StoreResult<Vec<FreezeWindow>> {
    let mut conn = db.pool().acquire().await?;
    freezes_covering(&mut conn, ci_ids, window).await
}
