//! Versioned process definitions in the store. Each upload that changes a definition adds a version;
//! records keep the version they started with.

use super::definition::ProcessDefinition;
use crate::clock::{from_millis, to_millis};
use crate::error::{StoreError, StoreResult};
use crate::store::{AuditContext, Db};
use serde::Serialize;
use sqlx::{AnyConnection, FromRow};
use time::OffsetDateTime;

/// A definition as stored: one version of one process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct StoredDefinition {
    pub name: String,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Who uploaded it (`system` for the shipped defaults).
    pub created_by: String,
    pub definition: ProcessDefinition,
}

#[derive(FromRow)]
struct DefinitionRow {
    name: String,
    version: i64,
    body: String,
    created_at: i64,
    created_by: String,
}

impl TryFrom<DefinitionRow> for StoredDefinition {
    type Error = StoreError;

    fn try_from(r: DefinitionRow) -> Result<Self, Self::Error> {
        let definition: ProcessDefinition = serde_json::from_str(&r.body).map_err(|e| {
            StoreError::Internal(format!("stored definition {} v{} does not parse: {e}", r.name, r.version))
        })?;
        Ok(StoredDefinition {
            name: r.name,
            version: r.version,
            created_at: from_millis(r.created_at),
            created_by: r.created_by,
            definition,
        })
    }
}

const COLUMNS: &str = "name, version, body, created_at, created_by";

/// The latest version of `name`, or the given `version`.
pub async fn get_definition(db: &Db, name: &str, version: Option<i64>) -> StoreResult<StoredDefinition> {
    let mut conn = db.pool().acquire().await?;
    get_definition_in(&mut conn, name, version).await
}

/// [`get_definition`] on a given connection, e.g. inside a write transaction.
pub async fn get_definition_in(
    conn: &mut AnyConnection,
    name: &str,
    version: Option<i64>,
) -> StoreResult<StoredDefinition> {
    let label = match version {
        Some(v) => format!("{name} version {v}"),
        None => name.to_owned(),
    };
    if name.contains('\0') {
        return Err(StoreError::not_found("process", label));
    }
    let row: Option<DefinitionRow> = match version {
        Some(v) => {
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM process_definitions WHERE name = $1 AND version = $2"))
                .bind(name)
                .bind(v)
                .fetch_optional(conn)
                .await?
        }
        None => {
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM process_definitions WHERE name = $1 ORDER BY version DESC LIMIT 1"
            ))
            .bind(name)
            .fetch_optional(conn)
            .await?
        }
    };
    row.map(StoredDefinition::try_from).transpose()?.ok_or_else(|| StoreError::not_found("process", label))
}

/// One version of a process inside a write transaction, from memory once read (a version never changes).
pub(crate) async fn definition_at(
    tx: &mut crate::store::WriteTx<'_>,
    name: &str,
    version: i64,
) -> StoreResult<std::sync::Arc<StoredDefinition>> {
    let key = (name.to_owned(), version);
    if let Some(def) = tx.db().definitions.get(&key) {
        return Ok(def);
    }
    let ticket = tx.db().definitions.ticket();
    let def = std::sync::Arc::new(get_definition_in(tx.conn(), name, Some(version)).await?);
    tx.db().definitions.insert(ticket, key, def.clone());
    Ok(def)
}

/// The latest version of a process, for a new record; from memory for a moment once read.
pub(crate) async fn latest_definition(
    tx: &mut crate::store::WriteTx<'_>,
    name: &str,
) -> StoreResult<std::sync::Arc<StoredDefinition>> {
    let key = name.to_owned();
    if let Some(def) = tx.db().latest_definitions.get(&key) {
        return Ok(def);
    }
    let ticket = tx.db().latest_definitions.ticket();
    let def = std::sync::Arc::new(get_definition_in(tx.conn(), name, None).await?);
    tx.db().latest_definitions.insert(ticket, key, def.clone());
    Ok(def)
}

/// The latest version of every process, by name.
pub async fn list_definitions(db: &Db) -> StoreResult<Vec<StoredDefinition>> {
    let rows: Vec<DefinitionRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM process_definitions d WHERE version = \
         (SELECT MAX(version) FROM process_definitions m WHERE m.name = d.name) ORDER BY name"
    ))
    .fetch_all(db.pool())
    .await?;
    rows.into_iter().map(StoredDefinition::try_from).collect()
}

/// Stores `def` as the next version of its process, unless it equals the latest version; returns the
/// version in force and whether it is new. `def` must already be valid.
pub async fn define(db: &Db, ctx: &AuditContext, def: ProcessDefinition) -> StoreResult<(StoredDefinition, bool)> {
    def.validate()?;
    let mut tx = db.write(ctx).await?;
    let latest: Option<DefinitionRow> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM process_definitions WHERE name = $1 ORDER BY version DESC LIMIT 1"
    ))
    .bind(&def.name)
    .fetch_optional(tx.conn())
    .await?;
    let latest = latest.map(StoredDefinition::try_from).transpose()?;
    if let Some(latest) = latest.as_ref().filter(|l| l.definition == def) {
        return Ok((latest.clone(), false));
    }
    if let Some(latest) = &latest {
        if latest.definition.applies_to != def.applies_to {
            return Err(crate::ValidationError::new(
                "applies_to",
                format!("{} runs {:?} records and cannot change", def.name, latest.definition.applies_to),
            )
            .into());
        }
    }
    let stored = StoredDefinition {
        name: def.name.clone(),
        version: latest.as_ref().map_or(1, |l| l.version + 1),
        created_at: tx.now(),
        created_by: ctx.actor.clone(),
        definition: def,
    };
    let body = serde_json::to_string(&stored.definition)
        .map_err(|e| StoreError::Internal(format!("definition does not serialise: {e}")))?;
    sqlx::query(
        "INSERT INTO process_definitions (name, version, applies_to, body, created_at, created_by) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&stored.name)
    .bind(stored.version)
    .bind(serde_json::to_value(stored.definition.applies_to).ok().and_then(|v| v.as_str().map(str::to_owned)))
    .bind(&body)
    .bind(to_millis(stored.created_at))
    .bind(&stored.created_by)
    .execute(tx.conn())
    .await
    .map_err(|e| {
        StoreError::unique_as_conflict(e, format!("{} was redefined at the same moment; retry", stored.name))
    })?;
    let entity_id = format!("{}@{}", stored.name, stored.version);
    tx.audit("process.define", "process", &entity_id, latest.as_ref(), Some(&stored)).await?;
    tx.commit().await?;
    Ok((stored, true))
}

/// Stores version 1 of each shipped definition whose process has no version yet, and the shipped definition
/// as a new version of a process still at a definition an earlier release shipped; returns how many.
pub async fn seed_defaults(db: &Db) -> StoreResult<usize> {
    let mut seeded = 0;
    for (name, json) in super::DEFAULTS {
        let latest: Option<(String,)> =
            sqlx::query_as("SELECT body FROM process_definitions WHERE name = $1 ORDER BY version DESC LIMIT 1")
                .bind(*name)
                .fetch_optional(db.pool())
                .await?;
        if let Some((body,)) = latest {
            let stored: ProcessDefinition = serde_json::from_str(&body)
                .map_err(|e| StoreError::Internal(format!("stored process {name} does not parse: {e}")))?;
            let shipped_before = super::PREVIOUS
                .iter()
                .filter(|(n, _)| n == name)
                .any(|(_, old)| ProcessDefinition::from_json(old).is_ok_and(|old| old == stored));
            if !shipped_before {
                continue;
            }
        }
        let def = ProcessDefinition::from_json(json)?;
        if define(db, &AuditContext::system("seed-processes"), def).await?.1 {
            seeded += 1;
        }
    }
    Ok(seeded)
}
