//! Configuration items and relations in the store, with the checks that need the database.

use super::{CiKind, CiSpec, RelationKind};
use crate::clock::{from_millis, to_millis};
use crate::error::{StoreError, StoreResult, ValidationError};
use crate::store::{AuditContext, Db, Filter, WriteTx};
use crate::text::{Page, PageRequest};
use serde::Serialize;
use sqlx::{AnyConnection, FromRow};
use time::OffsetDateTime;

/// A configuration item as stored and shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Ci {
    pub id: String,
    pub kind: CiKind,
    pub name: String,
    pub description: String,
    /// The containing item: region of a data centre, data centre of a cluster, cluster of a host, host of a VM.
    pub parent_id: Option<String>,
    /// The business service a VM belongs to.
    pub service_id: Option<String>,
    pub state: String,
    pub criticality: super::Criticality,
    pub hypervisor: Option<super::Hypervisor>,
    /// The identity of the host's agent.
    pub agent_id: Option<String>,
    /// vCPUs: a host's capacity or a VM's size.
    pub vcpus: Option<i64>,
    pub memory_mib: Option<i64>,
    pub disk_gib: Option<i64>,
    /// Increments with every edit.
    pub revision: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(FromRow)]
struct CiRow {
    id: String,
    kind: String,
    name: String,
    description: String,
    parent_id: Option<String>,
    service_id: Option<String>,
    state: String,
    criticality: String,
    hypervisor: Option<String>,
    agent_id: Option<String>,
    vcpus: Option<i64>,
    memory_mib: Option<i64>,
    disk_gib: Option<i64>,
    revision: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<CiRow> for Ci {
    type Error = StoreError;

    fn try_from(r: CiRow) -> Result<Self, Self::Error> {
        let corrupt = |what: &str| StoreError::Internal(format!("stored CI {} has an unknown {what}", r.id));
        Ok(Ci {
            kind: CiKind::parse(&r.kind).ok_or_else(|| corrupt("kind"))?,
            criticality: super::Criticality::parse(&r.criticality).ok_or_else(|| corrupt("criticality"))?,
            hypervisor: match r.hypervisor.as_deref() {
                Some(h) => Some(super::Hypervisor::parse(h).ok_or_else(|| corrupt("hypervisor"))?),
                None => None,
            },
            id: r.id,
            name: r.name,
            description: r.description,
            parent_id: r.parent_id,
            service_id: r.service_id,
            state: r.state,
            agent_id: r.agent_id,
            vcpus: r.vcpus,
            memory_mib: r.memory_mib,
            disk_gib: r.disk_gib,
            revision: r.revision,
            created_at: from_millis(r.created_at),
            updated_at: from_millis(r.updated_at),
        })
    }
}

const CI_COLUMNS: &str = "id, kind, name, description, parent_id, service_id, state, criticality, hypervisor, \
                          agent_id, vcpus, memory_mib, disk_gib, revision, created_at, updated_at";

pub(crate) async fn fetch_ci(conn: &mut AnyConnection, id: &str) -> StoreResult<Option<Ci>> {
    let row: Option<CiRow> = crate::store::row_by_id(conn, CI_COLUMNS, "cis", id, "").await?;
    row.map(Ci::try_from).transpose()
}

pub async fn get_ci(db: &Db, id: &str) -> StoreResult<Ci> {
    let mut conn = db.pool().acquire().await?;
    fetch_ci(&mut conn, id).await?.ok_or_else(|| StoreError::not_found("CI", id))
}

/// The CI with `id`, which must be of `kind` (a validation error on `id` otherwise).
pub async fn get_ci_of_kind(db: &Db, id: &str, kind: CiKind) -> StoreResult<Ci> {
    let ci = get_ci(db, id).await?;
    if ci.kind != kind {
        return Err(ValidationError::new("id", format!("{id} is a {}, not a {kind}", ci.kind)).into());
    }
    Ok(ci)
}

/// Filters for [`list_cis`].
#[derive(Debug, Clone, Default)]
pub struct CiQuery {
    pub kind: Option<CiKind>,
    pub parent_id: Option<String>,
    pub service_id: Option<String>,
    pub state: Option<String>,
    pub criticality: Option<super::Criticality>,
    /// Substring of the name, any case.
    pub q: Option<String>,
}

pub async fn list_cis(db: &Db, q: &CiQuery, page: PageRequest) -> StoreResult<Page<Ci>> {
    let mut f = Filter::new();
    if let Some(kind) = q.kind {
        f.text("kind", "=", kind.as_str());
    }
    if let Some(v) = &q.parent_id {
        f.text("parent_id", "=", v);
    }
    if let Some(v) = &q.service_id {
        f.text("service_id", "=", v);
    }
    if let Some(v) = &q.state {
        f.text("state", "=", v);
    }
    if let Some(c) = q.criticality {
        f.text("criticality", "=", c.as_str());
    }
    if let Some(text) = &q.q {
        f.contains("name", text);
    }
    let rows: Page<CiRow> = f.page(db.pool(), CI_COLUMNS, "cis", "kind, name", page).await?;
    rows.try_map(Ci::try_from)
}

/// Checks that a referenced item exists and is of the kind the field needs.
async fn check_reference(conn: &mut AnyConnection, field: &str, id: Option<&str>, want: CiKind) -> StoreResult<()> {
    let Some(id) = id else { return Ok(()) };
    match fetch_ci(conn, id).await? {
        Some(ci) if ci.kind == want => Ok(()),
        Some(ci) => Err(ValidationError::new(field, format!("{id} is a {}, not a {want}", ci.kind)).into()),
        None => Err(ValidationError::new(field, format!("no CI has id {id}")).into()),
    }
}

async fn check_references(conn: &mut AnyConnection, spec: &CiSpec) -> StoreResult<()> {
    if let Some((parent_kind, _)) = spec.kind.parent_rule() {
        check_reference(conn, "parent_id", spec.parent_id.as_deref(), parent_kind).await?;
    }
    check_reference(conn, "service_id", spec.service_id.as_deref(), CiKind::Service).await
}

fn name_taken(spec: &CiSpec) -> String {
    format!("a {} named {} already exists", spec.kind, spec.name.as_str())
}

pub async fn create_ci(db: &Db, ctx: &AuditContext, spec: CiSpec) -> StoreResult<Ci> {
    let mut tx = db.write(ctx).await?;
    check_references(tx.conn(), &spec).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let now = to_millis(tx.now());
    sqlx::query(
        "INSERT INTO cis (id, kind, name, description, parent_id, service_id, state, criticality, hypervisor, \
         agent_id, vcpus, memory_mib, disk_gib, revision, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $14, $14)",
    )
    .bind(&id)
    .bind(spec.kind.as_str())
    .bind(spec.name.as_str())
    .bind(spec.description.as_str())
    .bind(&spec.parent_id)
    .bind(&spec.service_id)
    .bind(spec.state)
    .bind(spec.criticality.as_str())
    .bind(spec.hypervisor.map(|h| h.as_str()))
    .bind(spec.agent_id.as_ref().map(|a| a.as_str()))
    .bind(spec.sizing.map(|s| s.vcpus))
    .bind(spec.sizing.map(|s| s.memory_mib))
    .bind(spec.sizing.map(|s| s.disk_gib))
    .bind(now)
    .execute(tx.conn())
    .await
    .map_err(|e| StoreError::unique_as_conflict(e, name_taken(&spec)))?;
    let ci = fetch_ci(tx.conn(), &id).await?.ok_or_else(|| StoreError::not_found("CI", &id))?;
    tx.audit("ci.create", "ci", &id, None::<&Ci>, Some(&ci)).await?;
    tx.commit().await?;
    Ok(ci)
}

/// Replaces an item's fields. The kind cannot change; with `expected_revision`, a concurrent edit is refused.
pub async fn update_ci(
    db: &Db,
    ctx: &AuditContext,
    id: &str,
    spec: CiSpec,
    expected_revision: Option<i64>,
) -> StoreResult<Ci> {
    let mut tx = db.write(ctx).await?;
    let before = fetch_ci(tx.conn(), id).await?.ok_or_else(|| StoreError::not_found("CI", id))?;
    if before.kind != spec.kind {
        return Err(ValidationError::new("kind", format!("is {} and cannot change", before.kind)).into());
    }
    if let Some(expected) = expected_revision {
        if expected != before.revision {
            return Err(StoreError::Conflict(format!(
                "CI {id} is at revision {}, not {expected}: reload it and apply your edit again",
                before.revision
            )));
        }
    }
    check_references(tx.conn(), &spec).await?;
    sqlx::query(
        "UPDATE cis SET name = $1, description = $2, parent_id = $3, service_id = $4, state = $5, criticality = $6, \
         hypervisor = $7, agent_id = $8, vcpus = $9, memory_mib = $10, disk_gib = $11, revision = revision + 1, \
         updated_at = $12 WHERE id = $13",
    )
    .bind(spec.name.as_str())
    .bind(spec.description.as_str())
    .bind(&spec.parent_id)
    .bind(&spec.service_id)
    .bind(spec.state)
    .bind(spec.criticality.as_str())
    .bind(spec.hypervisor.map(|h| h.as_str()))
    .bind(spec.agent_id.as_ref().map(|a| a.as_str()))
    .bind(spec.sizing.map(|s| s.vcpus))
    .bind(spec.sizing.map(|s| s.memory_mib))
    .bind(spec.sizing.map(|s| s.disk_gib))
    .bind(to_millis(tx.now()))
    .bind(id)
    .execute(tx.conn())
    .await
    .map_err(|e| StoreError::unique_as_conflict(e, name_taken(&spec)))?;
    let after = fetch_ci(tx.conn(), id).await?.ok_or_else(|| StoreError::not_found("CI", id))?;
    tx.audit("ci.update", "ci", id, Some(&before), Some(&after)).await?;
    tx.commit().await?;
    Ok(after)
}

/// Deletes an item that nothing is contained in or belongs to; its relations go with it, recorded in the audit.
pub async fn delete_ci(db: &Db, ctx: &AuditContext, id: &str) -> StoreResult<()> {
    let mut tx = db.write(ctx).await?;
    let before = fetch_ci(tx.conn(), id).await?.ok_or_else(|| StoreError::not_found("CI", id))?;
    let (dependents,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM cis WHERE parent_id = $1 OR service_id = $1")
        .bind(id)
        .fetch_one(tx.conn())
        .await?;
    if dependents > 0 {
        return Err(StoreError::Conflict(format!(
            "{} {} still contains or owns {dependents} item(s): move or delete them first",
            before.kind, before.name
        )));
    }
    let (freezes,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM freeze_windows WHERE scope_ci_id = $1")
        .bind(id)
        .fetch_one(tx.conn())
        .await?;
    if freezes > 0 {
        return Err(StoreError::Conflict(format!(
            "{} {} is the scope of {freezes} freeze window(s): delete or move them first",
            before.kind, before.name
        )));
    }
    let relations = relations_of(tx.conn(), id).await?;
    sqlx::query("DELETE FROM ci_relations WHERE source_id = $1 OR target_id = $1").bind(id).execute(tx.conn()).await?;
    sqlx::query("DELETE FROM cis WHERE id = $1").bind(id).execute(tx.conn()).await?;
    let snapshot = serde_json::json!({ "ci": before, "relations": relations });
    tx.audit("ci.delete", "ci", id, Some(&snapshot), None::<&Ci>).await?;
    tx.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Relations

/// A typed edge between two items.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Relation {
    pub id: String,
    pub kind: RelationKind,
    pub source_id: String,
    pub target_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

#[derive(FromRow)]
struct RelationRow {
    id: String,
    kind: String,
    source_id: String,
    target_id: String,
    created_at: i64,
}

impl TryFrom<RelationRow> for Relation {
    type Error = StoreError;

    fn try_from(r: RelationRow) -> Result<Self, Self::Error> {
        Ok(Relation {
            kind: RelationKind::parse(&r.kind)
                .ok_or_else(|| StoreError::Internal(format!("stored relation {} has an unknown kind", r.id)))?,
            id: r.id,
            source_id: r.source_id,
            target_id: r.target_id,
            created_at: from_millis(r.created_at),
        })
    }
}

const RELATION_COLUMNS: &str = "id, kind, source_id, target_id, created_at";

async fn relations_of(conn: &mut AnyConnection, ci_id: &str) -> StoreResult<Vec<Relation>> {
    let sql = format!(
        "SELECT {RELATION_COLUMNS} FROM ci_relations WHERE source_id = $1 OR target_id = $1 ORDER BY created_at, id"
    );
    let rows: Vec<RelationRow> = sqlx::query_as(&sql).bind(ci_id).fetch_all(conn).await?;
    rows.into_iter().map(Relation::try_from).collect()
}

/// Filters for [`list_relations`].
#[derive(Debug, Clone, Default)]
pub struct RelationQuery {
    /// Relations with this item at either end.
    pub ci_id: Option<String>,
    pub kind: Option<RelationKind>,
}

pub async fn list_relations(db: &Db, q: &RelationQuery, page: PageRequest) -> StoreResult<Page<Relation>> {
    let mut f = Filter::new();
    if let Some(kind) = q.kind {
        f.text("kind", "=", kind.as_str());
    }
    if let Some(ci) = &q.ci_id {
        f.either("source_id", "target_id", ci.as_str());
    }
    let rows: Page<RelationRow> = f.page(db.pool(), RELATION_COLUMNS, "ci_relations", "created_at, id", page).await?;
    rows.try_map(Relation::try_from)
}

pub async fn get_relation(db: &Db, id: &str) -> StoreResult<Relation> {
    let sql = format!("SELECT {RELATION_COLUMNS} FROM ci_relations WHERE id = $1");
    let row: Option<RelationRow> = sqlx::query_as(&sql).bind(id).fetch_optional(db.pool()).await?;
    row.map(Relation::try_from).transpose()?.ok_or_else(|| StoreError::not_found("relation", id))
}

pub async fn create_relation(
    db: &Db,
    ctx: &AuditContext,
    kind: RelationKind,
    source_id: &str,
    target_id: &str,
) -> StoreResult<Relation> {
    if source_id == target_id {
        return Err(ValidationError::new("target_id", "an item cannot relate to itself").into());
    }
    let mut tx = db.write(ctx).await?;
    for (field, id) in [("source_id", source_id), ("target_id", target_id)] {
        if fetch_ci(tx.conn(), id).await?.is_none() {
            return Err(ValidationError::new(field, format!("no CI has id {id}")).into());
        }
    }
    let relation = Relation {
        id: uuid::Uuid::new_v4().to_string(),
        kind,
        source_id: source_id.to_owned(),
        target_id: target_id.to_owned(),
        created_at: tx.now(),
    };
    insert_relation(&mut tx, &relation).await?;
    tx.audit("relation.create", "relation", &relation.id, None::<&Relation>, Some(&relation)).await?;
    tx.commit().await?;
    Ok(relation)
}

async fn insert_relation(tx: &mut WriteTx<'_>, r: &Relation) -> StoreResult<()> {
    sqlx::query("INSERT INTO ci_relations (id, kind, source_id, target_id, created_at) VALUES ($1, $2, $3, $4, $5)")
        .bind(&r.id)
        .bind(r.kind.as_str())
        .bind(&r.source_id)
        .bind(&r.target_id)
        .bind(to_millis(r.created_at))
        .execute(tx.conn())
        .await
        .map_err(|e| {
            StoreError::unique_as_conflict(e, format!("{} {} {} already exists", r.source_id, r.kind, r.target_id))
        })?;
    Ok(())
}

pub async fn delete_relation(db: &Db, ctx: &AuditContext, id: &str) -> StoreResult<()> {
    let before = get_relation(db, id).await?;
    let mut tx = db.write(ctx).await?;
    let done = sqlx::query("DELETE FROM ci_relations WHERE id = $1").bind(id).execute(tx.conn()).await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::not_found("relation", id));
    }
    tx.audit("relation.delete", "relation", id, Some(&before), None::<&Relation>).await?;
    tx.commit().await?;
    Ok(())
}
