//! Changes: requested as typed plans, assessed, approved, scheduled and implemented through their process.

use super::{page, PageQuery, Text};
use crate::auth::{Authorized, ManageProcesses, ReadFleet, RequestChanges};
use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tollgate_workflows::accounts::Role;
use tollgate_workflows::audit::AuditRecord;
use tollgate_workflows::change::{self, Change, ChangeEvent, ChangeKind, ChangeQuery, ChangeSpec, Conflict, Operation};
use tollgate_workflows::freeze::Window;
use tollgate_workflows::text::{Description, Name, Page};
use tollgate_workflows::Db;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_changes, create_change))
        .routes(routes!(get_change, update_change))
        .routes(routes!(fire_event))
        .routes(routes!(conflicts))
        .routes(routes!(override_conflicts))
        .routes(routes!(timeline))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ChangeListQuery {
    #[param(inline)]
    state: Option<Text<64>>,
    kind: Option<ChangeKind>,
    /// Username of the requester.
    #[param(inline)]
    requester: Option<Text<64>>,
    /// Changes touching this CI.
    #[param(inline)]
    ci_id: Option<Text<64>>,
    /// With `to`: only changes whose window overlaps [from, to).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<OffsetDateTime>,
    #[param(inline)]
    q: Option<Text<128>>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    #[param(minimum = 0, maximum = 1000000000)]
    offset: Option<u64>,
}

/// List changes by window.
#[utoipa::path(get, path = "/changes", tag = "changes", params(ChangeListQuery),
    responses((status = 200, body = Page<Change>)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn list_changes(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Query(q): Query<ChangeListQuery>,
) -> ApiResult<Json<Page<Change>>> {
    let page = page(q.limit, q.offset)?;
    let overlapping = super::freeze_windows::span(q.from, q.to)?;
    let query = ChangeQuery {
        state: q.state.map(Text::into_inner),
        kind: q.kind,
        requester: q.requester.map(Text::into_inner),
        ci_id: q.ci_id.map(Text::into_inner),
        overlapping,
        q: q.q.map(Text::into_inner),
    };
    Ok(Json(change::list_changes(&db, &query, page).await?))
}

/// A change request.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeInput {
    kind: ChangeKind,
    #[schema(min_length = 1, max_length = 128)]
    title: String,
    #[schema(max_length = 4096)]
    description: Option<String>,
    /// CIs touched besides those the operations name.
    #[serde(default)]
    #[schema(max_items = 500)]
    ci_ids: Vec<String>,
    #[serde(default)]
    #[schema(max_items = 100)]
    operations: Vec<Operation>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    window_start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    window_end: OffsetDateTime,
    /// On update: the revision the edit is based on.
    revision: Option<i64>,
}

impl ChangeInput {
    fn into_parts(self) -> Result<(ChangeSpec, Option<i64>), tollgate_workflows::ValidationError> {
        let window = Window::new(self.window_start, self.window_end)
            .map_err(|e| tollgate_workflows::ValidationError::new("window_end", e.message))?;
        let spec = ChangeSpec {
            kind: self.kind,
            title: Name::parse("title", &self.title)?,
            description: Description::parse("description", self.description.as_deref().unwrap_or(""))?,
            ci_ids: self.ci_ids,
            operations: self.operations,
            window,
        };
        spec.check()?;
        Ok((spec, self.revision))
    }
}

/// Request a change; it starts as a draft of its kind's process, with its rollback plan and risk worked out.
#[utoipa::path(post, path = "/changes", tag = "changes", request_body = ChangeInput,
    responses((status = 201, body = Change)), security(("bearer" = ["requester", "change-manager", "operator", "admin"])))]
async fn create_change(
    auth: Authorized<RequestChanges>,
    State(db): State<Db>,
    Json(body): Json<ChangeInput>,
) -> ApiResult<(StatusCode, Json<Change>)> {
    let (spec, _) = body.into_parts()?;
    let c = change::create_change(&db, &auth.audit, &auth.principal, spec).await?;
    tracing::info!(change = %c.reference, by = %auth.principal.username, risk = c.risk.score, "change requested");
    Ok((StatusCode::CREATED, Json(c)))
}

/// Show a change.
#[utoipa::path(get, path = "/changes/{id}", tag = "changes", params(("id" = String, Path, description = "Change id")),
    responses((status = 200, body = Change)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn get_change(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<Json<Change>> {
    Ok(Json(change::get_change(&db, &id).await?))
}

/// Edit a change's plan (its requester or a change manager). The revision increments: votes on earlier
/// revisions no longer count, and an approved or scheduled change returns to awaiting approval.
#[utoipa::path(put, path = "/changes/{id}", tag = "changes", params(("id" = String, Path, description = "Change id")),
    request_body = ChangeInput, responses((status = 200, body = Change)),
    security(("bearer" = ["requester", "change-manager", "operator", "admin"])))]
async fn update_change(
    auth: Authorized<RequestChanges>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(body): Json<ChangeInput>,
) -> ApiResult<Json<Change>> {
    let current = change::get_change(&db, &id).await?;
    let roles = &auth.principal.roles;
    if current.requester_id != auth.principal.user_id && !roles.permits(&[Role::ChangeManager]) {
        return Err(ApiError::forbidden("only its requester or a change manager may edit a change"));
    }
    let (spec, revision) = body.into_parts()?;
    Ok(Json(change::update_change(&db, &auth.audit, &id, spec, revision).await?))
}

/// An event of the change's process: `submit`, `assess`, `request_approval`, `schedule`, `start`, `cancel`,
/// `close` (with a `review`). Approval and execution events are Tollgate's own.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeEventInput {
    #[schema(min_length = 1, max_length = 64)]
    event: String,
    #[schema(max_length = 4096)]
    comment: Option<String>,
    /// The post-implementation review, recorded by `close`.
    #[schema(max_length = 4096)]
    review: Option<String>,
}

/// Move a change through its process. Who may fire which event, and the guards (window open, not frozen,
/// no unresolved conflict, approvals complete) are the process definition's to say.
#[utoipa::path(post, path = "/changes/{id}/events", tag = "changes",
    params(("id" = String, Path, description = "Change id")), request_body = ChangeEventInput,
    responses((status = 200, description = "The change after the event", body = Change)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn fire_event(
    auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(body): Json<ChangeEventInput>,
) -> ApiResult<Json<Change>> {
    let event = ChangeEvent { event: body.event, comment: body.comment, review: body.review };
    let actor = change::person(&auth.principal.roles);
    Ok(Json(change::fire_change(&db, &auth.audit, &id, &actor, event).await?))
}

/// The conflicts standing in the way of scheduling.
#[derive(Serialize, ToSchema)]
pub struct ConflictList {
    items: Vec<Conflict>,
    /// A change manager overrode them for the current revision.
    overridden: bool,
}

/// Other live changes overlapping this one's window on the same or related CIs, and overfilled hosts.
#[utoipa::path(get, path = "/changes/{id}/conflicts", tag = "changes",
    params(("id" = String, Path, description = "Change id")), responses((status = 200, body = ConflictList)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn conflicts(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<Json<ConflictList>> {
    let c = change::get_change(&db, &id).await?;
    let overridden = c.conflict_override.as_ref().is_some_and(|o| o.revision == c.revision);
    Ok(Json(ConflictList { items: change::conflicts_of(&db, &id).await?, overridden }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OverrideInput {
    #[schema(min_length = 1, max_length = 4096)]
    reason: String,
}

/// Let this revision be scheduled despite its conflicts, for a stated reason.
#[utoipa::path(post, path = "/changes/{id}/conflicts/override", tag = "changes",
    params(("id" = String, Path, description = "Change id")), request_body = OverrideInput,
    responses((status = 200, body = Change)), security(("bearer" = ["change-manager", "admin"])))]
async fn override_conflicts(
    auth: Authorized<ManageProcesses>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(body): Json<OverrideInput>,
) -> ApiResult<Json<Change>> {
    let reason = Description::parse("reason", &body.reason)?;
    Ok(Json(change::override_conflicts(&db, &auth.audit, &id, reason).await?))
}

/// The change's history, oldest first: every audit record written about it, votes included.
#[utoipa::path(get, path = "/changes/{id}/timeline", tag = "changes",
    params(("id" = String, Path, description = "Change id"), PageQuery),
    responses((status = 200, body = Page<AuditRecord>)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn timeline(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<AuditRecord>>> {
    Ok(Json(change::change_timeline(&db, &id, page(q.limit, q.offset)?).await?))
}
