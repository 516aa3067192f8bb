//! Incidents: reported by people (and monitoring), worked through the incident process under SLA.

use super::{page, PageQuery, Text};
use crate::auth::{Authorized, ManageIncidents, ReadFleet, ReportIncidents};
use crate::error::{ApiResult, Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use std::sync::Arc;
use tollgate_workflows::audit::AuditRecord;
use tollgate_workflows::incident::{
    self, Incident, IncidentEvent, IncidentPolicy, IncidentQuery, IncidentReport, IncidentUpdate, Level, LinkKind,
    Priority, Reported,
};
use tollgate_workflows::text::{Description, Name, Page};
use tollgate_workflows::Db;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_incidents, report_incident))
        .routes(routes!(get_incident, update_incident))
        .routes(routes!(fire_event))
        .routes(routes!(timeline))
        .routes(routes!(link_change))
        .routes(routes!(unlink_change))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct IncidentListQuery {
    #[param(inline)]
    state: Option<Text<64>>,
    priority: Option<Priority>,
    #[param(inline)]
    assignee_id: Option<Text<64>>,
    major: Option<bool>,
    /// Only incidents not yet resolved (true) or only resolved and closed ones (false).
    open: Option<bool>,
    /// Only incidents that breached an SLA target (true) or that did not (false).
    breached: Option<bool>,
    /// Substring of the title, any case.
    #[param(inline)]
    q: Option<Text<128>>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    #[param(minimum = 0, maximum = 1000000000)]
    offset: Option<u64>,
}

/// List incidents, most urgent first.
#[utoipa::path(get, path = "/incidents", tag = "incidents", params(IncidentListQuery),
    responses((status = 200, body = Page<Incident>)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn list_incidents(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Query(q): Query<IncidentListQuery>,
) -> ApiResult<Json<Page<Incident>>> {
    let page = page(q.limit, q.offset)?;
    let query = IncidentQuery {
        state: q.state.map(Text::into_inner),
        priority: q.priority,
        assignee_id: q.assignee_id.map(Text::into_inner),
        major: q.major,
        open: q.open,
        breached: q.breached,
        q: q.q.map(Text::into_inner),
    };
    Ok(Json(incident::list_incidents(&db, &query, page).await?))
}

/// An incident report.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentInput {
    #[schema(min_length = 1, max_length = 128)]
    title: String,
    #[schema(max_length = 4096)]
    description: Option<String>,
    impact: Level,
    urgency: Level,
    #[serde(default)]
    major: bool,
    /// The CIs affected.
    #[serde(default)]
    #[schema(max_items = 100)]
    ci_ids: Vec<String>,
    /// A second report with the key of an open incident updates it instead of opening another
    /// (monitoring uses the alert's fingerprint).
    #[schema(min_length = 1, max_length = 128)]
    dedup_key: Option<String>,
}

fn ci_list(ids: Vec<String>) -> Result<Vec<String>, tollgate_workflows::ValidationError> {
    if ids.len() > 100 {
        return Err(tollgate_workflows::ValidationError::new("ci_ids", "at most 100 CIs"));
    }
    Ok(ids)
}

/// Report an incident; with the dedup key of an open incident, update that one instead (200).
#[utoipa::path(post, path = "/incidents", tag = "incidents", request_body = IncidentInput,
    responses((status = 201, description = "Opened", body = Incident),
              (status = 200, description = "An open incident had this dedup key and absorbed the report", body = Incident)),
    security(("bearer" = ["requester", "change-manager", "operator", "admin"])))]
async fn report_incident(
    auth: Authorized<ReportIncidents>,
    State(db): State<Db>,
    State(policy): State<Arc<IncidentPolicy>>,
    Json(body): Json<IncidentInput>,
) -> ApiResult<(StatusCode, Json<Incident>)> {
    let report = IncidentReport {
        title: Name::parse("title", &body.title)?,
        description: Description::parse("description", body.description.as_deref().unwrap_or(""))?,
        impact: body.impact,
        urgency: body.urgency,
        major: body.major,
        ci_ids: ci_list(body.ci_ids)?,
        dedup_key: body.dedup_key.as_deref().map(|k| Name::parse("dedup_key", k)).transpose()?,
    };
    match incident::report(&db, &auth.audit, &policy, report).await? {
        Reported::Opened(i) => {
            tracing::info!(incident = %i.reference, priority = %i.priority, by = %auth.principal.username, "incident opened");
            Ok((StatusCode::CREATED, Json(i)))
        }
        Reported::Updated(i) => Ok((StatusCode::OK, Json(i))),
    }
}

/// Show an incident.
#[utoipa::path(get, path = "/incidents/{id}", tag = "incidents", params(("id" = String, Path, description = "Incident id")),
    responses((status = 200, body = Incident)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn get_incident(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<Json<Incident>> {
    Ok(Json(incident::get_incident(&db, &id).await?))
}

/// New values for an incident's details (all replaced).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentUpdateInput {
    #[schema(min_length = 1, max_length = 128)]
    title: String,
    #[schema(max_length = 4096)]
    description: Option<String>,
    impact: Level,
    urgency: Level,
    major: bool,
    #[schema(max_items = 100)]
    ci_ids: Vec<String>,
    /// The revision the edit is based on; a different current revision is a conflict.
    revision: Option<i64>,
}

/// Edit an incident's details; a new impact or urgency recomputes its priority and SLA targets.
#[utoipa::path(put, path = "/incidents/{id}", tag = "incidents", params(("id" = String, Path, description = "Incident id")),
    request_body = IncidentUpdateInput, responses((status = 200, body = Incident)),
    security(("bearer" = ["change-manager", "operator", "admin"])))]
async fn update_incident(
    auth: Authorized<ManageIncidents>,
    State(db): State<Db>,
    State(policy): State<Arc<IncidentPolicy>>,
    Path(id): Path<String>,
    Json(body): Json<IncidentUpdateInput>,
) -> ApiResult<Json<Incident>> {
    let update = IncidentUpdate {
        title: Name::parse("title", &body.title)?,
        description: Description::parse("description", body.description.as_deref().unwrap_or(""))?,
        impact: body.impact,
        urgency: body.urgency,
        major: body.major,
        ci_ids: ci_list(body.ci_ids)?,
    };
    Ok(Json(incident::update_incident(&db, &auth.audit, &policy, &id, update, body.revision).await?))
}

/// An event of the incident process: `assign` (with `assignee_id`), `start_work`, `wait` and `resolve`
/// (with a comment), `resume`, `reopen` (with a comment), `close`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncidentEventInput {
    #[schema(min_length = 1, max_length = 64)]
    event: String,
    #[schema(max_length = 4096)]
    comment: Option<String>,
    #[schema(max_length = 64)]
    assignee_id: Option<String>,
}

/// Move an incident through its process. Who may fire which event is the process definition's to say.
#[utoipa::path(post, path = "/incidents/{id}/events", tag = "incidents",
    params(("id" = String, Path, description = "Incident id")), request_body = IncidentEventInput,
    responses((status = 200, description = "The incident after the event", body = Incident)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn fire_event(
    auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(body): Json<IncidentEventInput>,
) -> ApiResult<Json<Incident>> {
    let event = IncidentEvent { event: body.event, comment: body.comment, assignee_id: body.assignee_id };
    Ok(Json(incident::fire(&db, &auth.audit, &id, &auth.principal.roles, event).await?))
}

/// The incident's history, oldest first: every audit record written about it.
#[utoipa::path(get, path = "/incidents/{id}/timeline", tag = "incidents",
    params(("id" = String, Path, description = "Incident id"), PageQuery),
    responses((status = 200, body = Page<AuditRecord>)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn timeline(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<AuditRecord>>> {
    Ok(Json(incident::timeline(&db, &id, page(q.limit, q.offset)?).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LinkInput {
    #[schema(max_length = 64)]
    change_id: String,
    kind: LinkKind,
}

/// Link a change to the incident: the change that caused it, or the one that fixed it.
#[utoipa::path(post, path = "/incidents/{id}/changes", tag = "incidents",
    params(("id" = String, Path, description = "Incident id")), request_body = LinkInput,
    responses((status = 200, body = Incident)), security(("bearer" = ["change-manager", "operator", "admin"])))]
async fn link_change(
    auth: Authorized<ManageIncidents>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(body): Json<LinkInput>,
) -> ApiResult<Json<Incident>> {
    Ok(Json(incident::link_change(&db, &auth.audit, &id, &body.change_id, body.kind).await?))
}

/// Remove a link between a change and the incident.
#[utoipa::path(delete, path = "/incidents/{id}/changes/{kind}/{change_id}", tag = "incidents",
    params(("id" = String, Path, description = "Incident id"), ("kind" = LinkKind, Path, description = "caused_by or fixed_by"),
           ("change_id" = String, Path, description = "Change id")),
    responses((status = 200, body = Incident)), security(("bearer" = ["change-manager", "operator", "admin"])))]
async fn unlink_change(
    auth: Authorized<ManageIncidents>,
    State(db): State<Db>,
    Path((id, kind, change_id)): Path<(String, LinkKind, String)>,
) -> ApiResult<Json<Incident>> {
    Ok(Json(incident::unlink_change(&db, &auth.audit, &id, &change_id, kind).await?))
}
