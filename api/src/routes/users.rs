//! Accounts: who you are, who else there is, and (for administrators) creating and changing them.

use super::{page, Text};
use crate::auth::{Authorized, ManageAccounts, ReadAccounts, SignedIn};
use crate::error::{ApiResult, Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tollgate_workflows::accounts::{
    self, Email, NewUser, Password, Role, RoleSet, User, UserQuery, UserUpdate, Username,
};
use tollgate_workflows::text::{Name, Page};
use tollgate_workflows::Db;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(change_own_password))
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user))
        .routes(routes!(reset_password))
}

/// The signed-in user and the roles they hold, directly and through groups.
#[derive(Serialize, ToSchema)]
pub struct Me {
    user: User,
    effective_roles: Vec<Role>,
}

/// Who am I?
#[utoipa::path(get, path = "/users/me", tag = "accounts", responses((status = 200, body = Me)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin", "agent"])))]
async fn me(auth: Authorized<SignedIn>, State(db): State<Db>) -> ApiResult<Json<Me>> {
    let user = accounts::get_user(&db, &auth.principal.user_id).await?;
    Ok(Json(Me { user, effective_roles: auth.principal.roles.iter().collect() }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OwnPasswordChange {
    #[schema(format = Password, max_length = 256)]
    current_password: String,
    #[schema(format = Password, min_length = 12, max_length = 256)]
    new_password: String,
}

/// Change your own password.
#[utoipa::path(put, path = "/users/me/password", tag = "accounts", request_body = OwnPasswordChange,
    responses((status = 204, description = "Changed")),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin", "agent"])))]
async fn change_own_password(
    auth: Authorized<SignedIn>,
    State(db): State<Db>,
    Json(body): Json<OwnPasswordChange>,
) -> ApiResult<StatusCode> {
    let new = Password::parse("new_password", &body.new_password)?;
    let keep = Some(auth.principal.token_id.as_str());
    accounts::set_password(&db, &auth.audit, &auth.principal.user_id, Some(&body.current_password), new, keep).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// Substring of the username or display name.
    #[param(inline)]
    q: Option<Text<128>>,
    role: Option<Role>,
    disabled: Option<bool>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    #[param(minimum = 0, maximum = 1000000000)]
    offset: Option<u64>,
}

/// List accounts.
#[utoipa::path(get, path = "/users", tag = "accounts", params(UserListQuery),
    responses((status = 200, body = Page<User>)), security(("bearer" = ["change-manager", "admin"])))]
async fn list_users(
    _auth: Authorized<ReadAccounts>,
    State(db): State<Db>,
    Query(q): Query<UserListQuery>,
) -> ApiResult<Json<Page<User>>> {
    let page = page(q.limit, q.offset)?;
    let query = UserQuery { q: q.q.map(Text::into_inner), role: q.role, disabled: q.disabled };
    Ok(Json(accounts::list_users(&db, &query, page).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserInput {
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-z0-9][a-z0-9._-]*$")]
    username: String,
    /// Defaults to the username.
    #[schema(min_length = 1, max_length = 128)]
    display_name: Option<String>,
    #[schema(max_length = 254)]
    email: Option<String>,
    #[schema(format = Password, min_length = 12, max_length = 256)]
    password: String,
    #[serde(default)]
    roles: Vec<Role>,
}

/// Create an account.
#[utoipa::path(post, path = "/users", tag = "accounts", request_body = NewUserInput,
    responses((status = 201, body = User)), security(("bearer" = ["admin"])))]
async fn create_user(
    auth: Authorized<ManageAccounts>,
    State(db): State<Db>,
    Json(body): Json<NewUserInput>,
) -> ApiResult<(StatusCode, Json<User>)> {
    let new = NewUser {
        username: Username::parse(&body.username)?,
        display_name: Name::parse("display_name", body.display_name.as_deref().unwrap_or(&body.username))?,
        email: body.email.as_deref().map(Email::parse).transpose()?,
        password: Password::parse("password", &body.password)?,
        roles: RoleSet::new(body.roles),
    };
    let user = accounts::create_user(&db, &auth.audit, new).await?;
    tracing::info!(by = %auth.principal.username, user = %user.username, "account created");
    Ok((StatusCode::CREATED, Json(user)))
}

/// Show an account.
#[utoipa::path(get, path = "/users/{id}", tag = "accounts", params(("id" = String, Path, description = "User id")),
    responses((status = 200, body = User)), security(("bearer" = ["change-manager", "admin"])))]
async fn get_user(
    _auth: Authorized<ReadAccounts>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<Json<User>> {
    Ok(Json(accounts::get_user(&db, &id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserUpdateInput {
    #[schema(min_length = 1, max_length = 128)]
    display_name: String,
    #[schema(max_length = 254)]
    email: Option<String>,
    roles: Vec<Role>,
    /// A disabled account cannot sign in, and its tokens are revoked.
    disabled: bool,
}

/// Change an account's name, email, roles or disabled flag (all replaced).
#[utoipa::path(put, path = "/users/{id}", tag = "accounts", params(("id" = String, Path, description = "User id")),
    request_body = UserUpdateInput, responses((status = 200, body = User)), security(("bearer" = ["admin"])))]
async fn update_user(
    auth: Authorized<ManageAccounts>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(body): Json<UserUpdateInput>,
) -> ApiResult<Json<User>> {
    let update = UserUpdate {
        display_name: Name::parse("display_name", &body.display_name)?,
        email: body.email.as_deref().map(Email::parse).transpose()?,
        roles: RoleSet::new(body.roles),
        disabled: body.disabled,
    };
    Ok(Json(accounts::update_user(&db, &auth.audit, &id, update).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordReset {
    #[schema(format = Password, min_length = 12, max_length = 256)]
    new_password: String,
}

/// Set a new password for an account.
#[utoipa::path(put, path = "/users/{id}/password", tag = "accounts",
    params(("id" = String, Path, description = "User id")), request_body = PasswordReset,
    responses((status = 204, description = "Changed")), security(("bearer" = ["admin"])))]
async fn reset_password(
    auth: Authorized<ManageAccounts>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(body): Json<PasswordReset>,
) -> ApiResult<StatusCode> {
    let new = Password::parse("new_password", &body.new_password)?;
    // Resetting your own password through this route keeps the session you are using, as changing it does.
    let keep = (id == auth.principal.user_id).then_some(auth.principal.token_id.as_str());
    accounts::set_password(&db, &auth.audit, &id, None, new, keep).await?;
    Ok(StatusCode::NO_CONTENT)
}
