//! Freeze (blackout) windows, kept by change managers and read by everyone.

use super::{page, Text};
use crate::auth::{Authorized, ManageProcesses, ReadFleet};
use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use time::OffsetDateTime;
use tollgate_workflows::freeze::{self, FreezeQuery, FreezeSpec, FreezeWindow, Window};
use tollgate_workflows::text::{Description, Name, Page};
use tollgate_workflows::Db;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_freezes, create_freeze)).routes(routes!(
        get_freeze,
        update_freeze,
        delete_freeze
    ))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FreezeListQuery {
    #[param(inline)]
    scope_ci_id: Option<Text<64>>,
    /// With `to`: only windows overlapping [from, to).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    from: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    to: Option<OffsetDateTime>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    #[param(minimum = 0, maximum = 1000000000)]
    offset: Option<u64>,
}

/// List freeze windows, earliest first.
#[utoipa::path(get, path = "/freeze-windows", tag = "changes", params(FreezeListQuery),
    responses((status = 200, body = Page<FreezeWindow>)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn list_freezes(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Query(q): Query<FreezeListQuery>,
) -> ApiResult<Json<Page<FreezeWindow>>> {
    let page = page(q.limit, q.offset)?;
    let overlapping = span(q.from, q.to)?;
    let query = FreezeQuery { scope_ci_id: q.scope_ci_id.map(Text::into_inner), overlapping };
    Ok(Json(freeze::list_freezes(&db, &query, page).await?))
}

/// The span `from`/`to` query parameters name: both or neither.
pub(crate) fn span(from: Option<OffsetDateTime>, to: Option<OffsetDateTime>) -> Result<Option<Window>, ApiError> {
    match (from, to) {
        (Some(from), Some(to)) => Ok(Some(Window::new(from, to).map_err(|e| ApiError::validation("to", e.message))?)),
        (None, None) => Ok(None),
        _ => Err(ApiError::validation("to", "give both from and to, or neither")),
    }
}

/// A freeze window as submitted.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeInput {
    #[schema(min_length = 1, max_length = 128)]
    name: String,
    #[schema(max_length = 4096)]
    description: Option<String>,
    /// The region, datacenter, cluster or service it covers.
    #[schema(max_length = 64)]
    scope_ci_id: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    ends_at: OffsetDateTime,
    /// On update: the revision the edit is based on.
    revision: Option<i64>,
}

impl FreezeInput {
    fn into_parts(self) -> Result<(FreezeSpec, Option<i64>), tollgate_workflows::ValidationError> {
        let spec = FreezeSpec {
            name: Name::parse("name", &self.name)?,
            description: Description::parse("description", self.description.as_deref().unwrap_or(""))?,
            scope_ci_id: self.scope_ci_id,
            window: Window::new(self.starts_at, self.ends_at)?,
        };
        Ok((spec, self.revision))
    }
}

/// Declare a freeze window.
#[utoipa::path(post, path = "/freeze-windows", tag = "changes", request_body = FreezeInput,
    responses((status = 201, body = FreezeWindow)), security(("bearer" = ["change-manager", "admin"])))]
async fn create_freeze(
    auth: Authorized<ManageProcesses>,
    State(db): State<Db>,
    Json(body): Json<FreezeInput>,
) -> ApiResult<(StatusCode, Json<FreezeWindow>)> {
    let (spec, _) = body.into_parts()?;
    Ok((StatusCode::CREATED, Json(freeze::create_freeze(&db, &auth.audit, spec).await?)))
}

/// Show a freeze window.
#[utoipa::path(get, path = "/freeze-windows/{id}", tag = "changes",
    params(("id" = String, Path, description = "Freeze window id")), responses((status = 200, body = FreezeWindow)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn get_freeze(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<Json<FreezeWindow>> {
    Ok(Json(freeze::get_freeze(&db, &id).await?))
}

/// Change a freeze window (all fields replaced).
#[utoipa::path(put, path = "/freeze-windows/{id}", tag = "changes",
    params(("id" = String, Path, description = "Freeze window id")), request_body = FreezeInput,
    responses((status = 200, body = FreezeWindow)), security(("bearer" = ["change-manager", "admin"])))]
async fn update_freeze(
    auth: Authorized<ManageProcesses>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(body): Json<FreezeInput>,
) -> ApiResult<Json<FreezeWindow>> {
    let (spec, revision) = body.into_parts()?;
    Ok(Json(freeze::update_freeze(&db, &auth.audit, &id, spec, revision).await?))
}

/// Lift a freeze window.
#[utoipa::path(delete, path = "/freeze-windows/{id}", tag = "changes",
    params(("id" = String, Path, description = "Freeze window id")),
    responses((status = 204, description = "Deleted")), security(("bearer" = ["change-manager", "admin"])))]
async fn delete_freeze(
    auth: Authorized<ManageProcesses>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    freeze::delete_freeze(&db, &auth.audit, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
