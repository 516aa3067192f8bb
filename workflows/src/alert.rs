//! Alert rules as data: which series to watch (a measurement's field, within a scope of tags), when it is in
//! trouble (above or below a threshold for a while, or silent), when it has recovered (a separate threshold:
//! hysteresis, then a quiet period), and how grave it is (severity → the incident's impact and urgency).
//!
//! Rules are kept here with an audit record for every change; evaluating them against the metric store and
//! opening incidents through the incident process is the [`Evaluator`]'s work.

mod evaluate;

pub use evaluate::*;

use crate::clock::{from_millis, to_millis};
use crate::error::{StoreError, StoreResult, ValidationError};
use crate::store::{AuditContext, Db, Filter};
use crate::text::{Description, Name, Page, PageRequest};
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, FromRow};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// The longest `for` and quiet period a rule may ask for.
pub const MAX_WAIT_SECS: u64 = 7 * 86_400;

/// How grave a firing rule is; it sets the incident's impact and urgency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// High impact, high urgency.
    Critical,
    /// High impact, medium urgency.
    Major,
    /// Medium impact, medium urgency.
    Minor,
    /// Low impact, low urgency.
    Warning,
}

impl Severity {
    /// (impact, urgency) of the incident a firing rule opens.
    pub fn impact_and_urgency(self) -> (&'static str, &'static str) {
        match self {
            Severity::Critical => ("high", "high"),
            Severity::Major => ("high", "medium"),
            Severity::Minor => ("medium", "medium"),
            Severity::Warning => ("low", "low"),
        }
    }
}

/// When a watched series is in trouble, and when it has recovered.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// In trouble above `threshold`; recovered at or below `recovery` (which is at most `threshold`).
    Above { threshold: f64, recovery: f64 },
    /// In trouble below `threshold`; recovered at or above `recovery` (which is at least `threshold`).
    Below { threshold: f64, recovery: f64 },
    /// In trouble when the series has reported nothing for `intervals` of `interval_secs` (host down).
    Silent { intervals: u32, interval_secs: u64 },
}

impl Condition {
    /// How long a `silent` series may report nothing, in seconds; `None` for a threshold.
    pub fn silence_secs(&self) -> Option<i64> {
        match *self {
            Condition::Silent { intervals, interval_secs } => {
                Some(i64::from(intervals).saturating_mul(i64::try_from(interval_secs).unwrap_or(i64::MAX)))
            }
            _ => None,
        }
    }
}

/// What a rule watches and when it fires: everything but its name and bookkeeping (stored as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RuleBody {
    pub measurement: String,
    pub field: String,
    /// Tags a series must have to be watched, e.g. `{"cluster": "eu-1"}`; empty: every series of the field.
    pub scope: BTreeMap<String, String>,
    pub condition: Condition,
    /// How long the condition must hold before the rule fires.
    pub for_secs: u64,
    /// How long a firing series must stay recovered before its incident is resolved.
    pub quiet_secs: u64,
    pub severity: Severity,
}

/// A rule as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct AlertRule {
    pub id: String,
    pub name: String,
    pub description: String,
    #[serde(flatten)]
    pub body: RuleBody,
    pub enabled: bool,
    pub revision: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// What a rule says, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    pub name: Name,
    pub description: Description,
    pub body: RuleBody,
    pub enabled: bool,
}

/// Names and tags as line protocol carries them: not empty, no line breaks, at most 256 characters.
fn series_name(field: &str, value: &str) -> Result<String, ValidationError> {
    if value.is_empty() || value.chars().count() > 256 || value.contains(['\n', '\r', '\0']) {
        return Err(ValidationError::new(field, "must be 1 to 256 characters without line breaks"));
    }
    Ok(value.to_owned())
}

impl RuleSpec {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: &str,
        description: &str,
        measurement: &str,
        field: &str,
        scope: BTreeMap<String, String>,
        condition: Condition,
        for_secs: u64,
        quiet_secs: u64,
        severity: Severity,
        enabled: bool,
    ) -> Result<RuleSpec, ValidationError> {
        if scope.len() > 16 {
            return Err(ValidationError::new("scope", "at most 16 tags"));
        }
        for (k, v) in &scope {
            series_name("scope", k)?;
            series_name("scope", v)?;
        }
        match condition {
            Condition::Above { threshold, recovery } | Condition::Below { threshold, recovery }
                if !threshold.is_finite() || !recovery.is_finite() =>
            {
                return Err(ValidationError::new("condition", "thresholds must be finite numbers"));
            }
            Condition::Above { threshold, recovery } if recovery > threshold => {
                return Err(ValidationError::new(
                    "condition",
                    "recovery must be at or below the threshold of an `above` rule (hysteresis)",
                ));
            }
            Condition::Below { threshold, recovery } if recovery < threshold => {
                return Err(ValidationError::new(
                    "condition",
                    "recovery must be at or above the threshold of a `below` rule (hysteresis)",
                ));
            }
            Condition::Silent { intervals, interval_secs }
                if intervals == 0 || intervals > 1000 || interval_secs == 0 || interval_secs > 86_400 =>
            {
                return Err(ValidationError::new(
                    "condition",
                    "a silent rule needs 1 to 1000 intervals of 1 s to a day",
                ));
            }
            _ => {}
        }
        if for_secs > MAX_WAIT_SECS {
            return Err(ValidationError::new("for_secs", "must be at most 7 days"));
        }
        if quiet_secs > MAX_WAIT_SECS {
            return Err(ValidationError::new("quiet_secs", "must be at most 7 days"));
        }
        Ok(RuleSpec {
            name: Name::parse("name", name)?,
            description: Description::parse("description", description)?,
            body: RuleBody {
                measurement: series_name("measurement", measurement)?,
                field: series_name("field", field)?,
                scope,
                condition,
                for_secs,
                quiet_secs,
                severity,
            },
            enabled,
        })
    }
}

#[derive(FromRow)]
struct RuleRow {
    id: String,
    name: String,
    description: String,
    body: String,
    enabled: i64,
    revision: i64,
    created_at: i64,
    updated_at: i64,
}

impl RuleRow {
    fn into_rule(self) -> StoreResult<AlertRule> {
        let body: RuleBody = serde_json::from_str(&self.body)
            .map_err(|e| StoreError::Internal(format!("stored alert rule {} has a bad body: {e}", self.id)))?;
        Ok(AlertRule {
            id: self.id,
            name: self.name,
            description: self.description,
            body,
            enabled: self.enabled != 0,
            revision: self.revision,
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
        })
    }
}

const COLUMNS: &str = "id, name, description, body, enabled, revision, created_at, updated_at";

fn body_of(spec: &RuleSpec) -> StoreResult<String> {
    serde_json::to_string(&spec.body).map_err(|e| StoreError::Internal(format!("cannot serialise an alert rule: {e}")))
}

async fn fetch(conn: &mut AnyConnection, id: &str) -> StoreResult<AlertRule> {
    let row: Option<RuleRow> = crate::store::row_by_id(conn, COLUMNS, "alert_rules", id, "").await?;
    row.ok_or_else(|| StoreError::not_found("alert rule", id))?.into_rule()
}

pub async fn get_rule(db: &Db, id: &str) -> StoreResult<AlertRule> {
    let mut conn = db.pool().acquire().await?;
    fetch(&mut conn, id).await
}

async fn name_is_free(conn: &mut AnyConnection, name: &str, except: &str) -> StoreResult<()> {
    let taken: Option<(String,)> = sqlx::query_as("SELECT id FROM alert_rules WHERE name = $1 AND id <> $2")
        .bind(name)
        .bind(except)
        .fetch_optional(&mut *conn)
        .await?;
    match taken {
        Some(_) => Err(StoreError::Conflict(format!("an alert rule is already named {name:?}"))),
        None => Ok(()),
    }
}

pub async fn create_rule(db: &Db, ctx: &AuditContext, spec: RuleSpec) -> StoreResult<AlertRule> {
    let mut tx = db.write(ctx).await?;
    name_is_free(tx.conn(), spec.name.as_str(), "").await?;
    let id = uuid::Uuid::new_v4().to_string();
    let now = to_millis(tx.now());
    sqlx::query(&format!("INSERT INTO alert_rules ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, 1, $6, $6)"))
        .bind(&id)
        .bind(spec.name.as_str())
        .bind(spec.description.as_str())
        .bind(body_of(&spec)?)
        .bind(i64::from(spec.enabled))
        .bind(now)
        .execute(tx.conn())
        .await?;
    let created = fetch(tx.conn(), &id).await?;
    tx.audit("alert_rule.create", "alert_rule", &id, None::<&AlertRule>, Some(&created)).await?;
    tx.commit().await?;
    Ok(created)
}

pub async fn update_rule(
    db: &Db,
    ctx: &AuditContext,
    id: &str,
    spec: RuleSpec,
    expected_revision: Option<i64>,
) -> StoreResult<AlertRule> {
    let mut tx = db.write(ctx).await?;
    let before = fetch(tx.conn(), id).await?;
    if let Some(expected) = expected_revision.filter(|e| *e != before.revision) {
        return Err(StoreError::Conflict(format!(
            "alert rule {id} is at revision {}, not {expected}: reload it and apply your edit again",
            before.revision
        )));
    }
    name_is_free(tx.conn(), spec.name.as_str(), id).await?;
    sqlx::query(
        "UPDATE alert_rules SET name = $1, description = $2, body = $3, enabled = $4, updated_at = $5, \
         revision = revision + 1 WHERE id = $6",
    )
    .bind(spec.name.as_str())
    .bind(spec.description.as_str())
    .bind(body_of(&spec)?)
    .bind(i64::from(spec.enabled))
    .bind(to_millis(tx.now()))
    .bind(id)
    .execute(tx.conn())
    .await?;
    let after = fetch(tx.conn(), id).await?;
    tx.audit("alert_rule.update", "alert_rule", id, Some(&before), Some(&after)).await?;
    tx.commit().await?;
    Ok(after)
}

pub async fn delete_rule(db: &Db, ctx: &AuditContext, id: &str) -> StoreResult<()> {
    let mut tx = db.write(ctx).await?;
    let before = fetch(tx.conn(), id).await?;
    sqlx::query("DELETE FROM alert_rules WHERE id = $1").bind(id).execute(tx.conn()).await?;
    tx.audit("alert_rule.delete", "alert_rule", id, Some(&before), None::<&AlertRule>).await?;
    tx.commit().await?;
    Ok(())
}

/// Alert rules by name.
pub async fn list_rules(db: &Db, enabled: Option<bool>, page: PageRequest) -> StoreResult<Page<AlertRule>> {
    let mut f = Filter::new();
    if let Some(e) = enabled {
        f.int("enabled", "=", i64::from(e));
    }
    let rows: Page<RuleRow> = f.page(db.pool(), COLUMNS, "alert_rules", "name, id", page).await?;
    let mut items = Vec::with_capacity(rows.items.len());
    for row in rows.items {
        items.push(row.into_rule()?);
    }
    Ok(Page { items, total: rows.total, limit: rows.limit, offset: rows.offset })
}
