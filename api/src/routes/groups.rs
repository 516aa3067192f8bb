//! Groups of users: the roles they confer and (later) the approver groups of change policies.

use super::{page, Text};
use crate::auth::{Authorized, ManageAccounts, ReadFleet};
use crate::error::{ApiResult, Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use tollgate_workflows::accounts::{self, Group, GroupSpec, Role, RoleSet};
use tollgate_workflows::quota::{self, Limits, QuotaReport};
use tollgate_workflows::text::{Description, Name, Page};
use tollgate_workflows::Db;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_groups, create_group))
        .routes(routes!(get_group, update_group, delete_group))
        .routes(routes!(add_member, remove_member))
        .routes(routes!(get_quota, set_quota))
}

/// A department's quota: its limits, what its services' VMs use and what its open changes ask for.
#[utoipa::path(get, path = "/groups/{id}/quota", tag = "accounts", params(("id" = String, Path, description = "Group id")),
    responses((status = 200, body = QuotaReport), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn get_quota(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<Json<QuotaReport>> {
    Ok(Json(quota::report(&db, &id).await?))
}

/// Set a department's limits (all replaced; null is no limit). Changes that would take its services' VMs past
/// one are refused when they are requested.
#[utoipa::path(put, path = "/groups/{id}/quota", tag = "accounts", params(("id" = String, Path, description = "Group id")),
    request_body = Limits,
    responses((status = 200, body = QuotaReport), (status = 404, body = crate::error::ErrorBody),
        (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = ["admin"])))]
async fn set_quota(
    auth: Authorized<ManageAccounts>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(limits): Json<Limits>,
) -> ApiResult<Json<QuotaReport>> {
    Ok(Json(quota::set_limits(&db, &auth.audit, &id, limits).await?))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct GroupListQuery {
    /// Substring of the group name.
    #[param(inline)]
    q: Option<Text<128>>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    #[param(minimum = 0, maximum = 1000000000)]
    offset: Option<u64>,
}

/// List groups.
#[utoipa::path(get, path = "/groups", tag = "accounts", params(GroupListQuery),
    responses((status = 200, body = Page<Group>)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn list_groups(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Query(q): Query<GroupListQuery>,
) -> ApiResult<Json<Page<Group>>> {
    let page = page(q.limit, q.offset)?;
    Ok(Json(accounts::list_groups(&db, q.q.map(Text::into_inner).as_deref(), page).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupInput {
    #[schema(min_length = 1, max_length = 128)]
    name: String,
    #[schema(max_length = 4096)]
    description: Option<String>,
    /// Roles every member holds through the group.
    #[serde(default)]
    roles: Vec<Role>,
}

impl TryFrom<GroupInput> for GroupSpec {
    type Error = tollgate_workflows::ValidationError;

    fn try_from(g: GroupInput) -> Result<Self, Self::Error> {
        Ok(GroupSpec {
            name: Name::parse("name", &g.name)?,
            description: Description::parse("description", g.description.as_deref().unwrap_or(""))?,
            roles: RoleSet::new(g.roles),
        })
    }
}

/// Create a group.
#[utoipa::path(post, path = "/groups", tag = "accounts", request_body = GroupInput,
    responses((status = 201, body = Group)), security(("bearer" = ["admin"])))]
async fn create_group(
    auth: Authorized<ManageAccounts>,
    State(db): State<Db>,
    Json(body): Json<GroupInput>,
) -> ApiResult<(StatusCode, Json<Group>)> {
    let group = accounts::create_group(&db, &auth.audit, body.try_into()?).await?;
    Ok((StatusCode::CREATED, Json(group)))
}

/// Show a group and its members.
#[utoipa::path(get, path = "/groups/{id}", tag = "accounts", params(("id" = String, Path, description = "Group id")),
    responses((status = 200, body = Group)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn get_group(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<Json<Group>> {
    Ok(Json(accounts::get_group(&db, &id).await?))
}

/// Rename a group or change its roles (all fields replaced).
#[utoipa::path(put, path = "/groups/{id}", tag = "accounts", params(("id" = String, Path, description = "Group id")),
    request_body = GroupInput, responses((status = 200, body = Group)), security(("bearer" = ["admin"])))]
async fn update_group(
    auth: Authorized<ManageAccounts>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(body): Json<GroupInput>,
) -> ApiResult<Json<Group>> {
    Ok(Json(accounts::update_group(&db, &auth.audit, &id, body.try_into()?).await?))
}

/// Delete a group; its members keep their own roles.
#[utoipa::path(delete, path = "/groups/{id}", tag = "accounts", params(("id" = String, Path, description = "Group id")),
    responses((status = 204, description = "Deleted")), security(("bearer" = ["admin"])))]
async fn delete_group(
    auth: Authorized<ManageAccounts>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    accounts::delete_group(&db, &auth.audit, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Add a user to a group (no change if already a member).
#[utoipa::path(put, path = "/groups/{id}/members/{user_id}", tag = "accounts",
    params(("id" = String, Path, description = "Group id"), ("user_id" = String, Path, description = "User id")),
    responses((status = 200, body = Group)), security(("bearer" = ["admin"])))]
async fn add_member(
    auth: Authorized<ManageAccounts>,
    State(db): State<Db>,
    Path((id, user_id)): Path<(String, String)>,
) -> ApiResult<Json<Group>> {
    Ok(Json(accounts::set_membership(&db, &auth.audit, &id, &user_id, true).await?))
}

/// Remove a user from a group (no change if not a member).
#[utoipa::path(delete, path = "/groups/{id}/members/{user_id}", tag = "accounts",
    params(("id" = String, Path, description = "Group id"), ("user_id" = String, Path, description = "User id")),
    responses((status = 200, body = Group)), security(("bearer" = ["admin"])))]
async fn remove_member(
    auth: Authorized<ManageAccounts>,
    State(db): State<Db>,
    Path((id, user_id)): Path<(String, String)>,
) -> ApiResult<Json<Group>> {
    Ok(Json(accounts::set_membership(&db, &auth.audit, &id, &user_id, false).await?))
}
