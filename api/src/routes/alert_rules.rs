//! Alert rules, kept by operators and read by everyone who reads the fleet, and the alerts they raise.

use super::page;
use crate::auth::{Authorized, ManageIncidents, ReadFleet};
use crate::error::{ApiResult, Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use std::collections::BTreeMap;
use tollgate_workflows::alert::{self, AlertRule, Condition, RuleSpec, Severity};
use tollgate_workflows::text::Page;
use tollgate_workflows::Db;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(get_rule, update_rule, delete_rule))
        .routes(routes!(list_alerts))
}

/// Alerts not fine now: pending, firing (with their incident, or what held it back) or resolving.
#[utoipa::path(get, path = "/alerts", tag = "incidents",
    responses((status = 200, body = Vec<alert::Alert>)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn list_alerts(_auth: Authorized<ReadFleet>, State(db): State<Db>) -> ApiResult<Json<Vec<alert::Alert>>> {
    Ok(Json(alert::list_alerts(&db).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RuleListQuery {
    /// Only enabled (or only disabled) rules.
    enabled: Option<bool>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    #[param(minimum = 0, maximum = 1000000000)]
    offset: Option<u64>,
}

/// List alert rules by name.
#[utoipa::path(get, path = "/alert-rules", tag = "incidents", params(RuleListQuery),
    responses((status = 200, body = Page<AlertRule>)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn list_rules(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Query(q): Query<RuleListQuery>,
) -> ApiResult<Json<Page<AlertRule>>> {
    let page = page(q.limit, q.offset)?;
    Ok(Json(alert::list_rules(&db, q.enabled, page).await?))
}

/// An alert rule as submitted.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleInput {
    #[schema(min_length = 1, max_length = 128)]
    name: String,
    #[schema(max_length = 4096)]
    description: Option<String>,
    /// The measurement, e.g. `cpu`.
    #[schema(min_length = 1, max_length = 256)]
    measurement: String,
    /// The field, e.g. `usage_idle`.
    #[schema(min_length = 1, max_length = 256)]
    field: String,
    /// Tags a series must have to be watched; empty or absent: every series of the field.
    #[serde(default)]
    scope: BTreeMap<String, String>,
    condition: Condition,
    /// Seconds the condition must hold before the rule fires (default 0).
    #[serde(default)]
    #[schema(maximum = 604800)]
    for_secs: u64,
    /// Seconds a firing series must stay recovered before its incident is resolved (default 300).
    #[schema(maximum = 604800)]
    quiet_secs: Option<u64>,
    severity: Severity,
    /// Default true.
    enabled: Option<bool>,
    /// On update: the revision the edit is based on.
    revision: Option<i64>,
}

impl RuleInput {
    fn into_parts(self) -> Result<(RuleSpec, Option<i64>), tollgate_workflows::ValidationError> {
        let spec = RuleSpec::new(
            &self.name,
            self.description.as_deref().unwrap_or(""),
            &self.measurement,
            &self.field,
            self.scope,
            self.condition,
            self.for_secs,
            self.quiet_secs.unwrap_or(300),
            self.severity,
            self.enabled.unwrap_or(true),
        )?;
        Ok((spec, self.revision))
    }
}

/// Add an alert rule.
#[utoipa::path(post, path = "/alert-rules", tag = "incidents", request_body = RuleInput,
    responses((status = 201, body = AlertRule)), security(("bearer" = ["operator", "change-manager", "admin"])))]
async fn create_rule(
    auth: Authorized<ManageIncidents>,
    State(db): State<Db>,
    Json(body): Json<RuleInput>,
) -> ApiResult<(StatusCode, Json<AlertRule>)> {
    let (spec, _) = body.into_parts()?;
    Ok((StatusCode::CREATED, Json(alert::create_rule(&db, &auth.audit, spec).await?)))
}

/// Show an alert rule.
#[utoipa::path(get, path = "/alert-rules/{id}", tag = "incidents",
    params(("id" = String, Path, description = "Alert rule id")), responses((status = 200, body = AlertRule)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn get_rule(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<Json<AlertRule>> {
    Ok(Json(alert::get_rule(&db, &id).await?))
}

/// Change an alert rule (all fields replaced).
#[utoipa::path(put, path = "/alert-rules/{id}", tag = "incidents",
    params(("id" = String, Path, description = "Alert rule id")), request_body = RuleInput,
    responses((status = 200, body = AlertRule)), security(("bearer" = ["operator", "change-manager", "admin"])))]
async fn update_rule(
    auth: Authorized<ManageIncidents>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(body): Json<RuleInput>,
) -> ApiResult<Json<AlertRule>> {
    let (spec, revision) = body.into_parts()?;
    Ok(Json(alert::update_rule(&db, &auth.audit, &id, spec, revision).await?))
}

/// Delete an alert rule.
#[utoipa::path(delete, path = "/alert-rules/{id}", tag = "incidents",
    params(("id" = String, Path, description = "Alert rule id")),
    responses((status = 204, description = "Deleted")), security(("bearer" = ["operator", "change-manager", "admin"])))]
async fn delete_rule(
    auth: Authorized<ManageIncidents>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    alert::delete_rule(&db, &auth.audit, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
