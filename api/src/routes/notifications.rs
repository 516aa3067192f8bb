//! Your notifications: approvals waiting for you, news of your changes and of the incidents you hold.

use super::page;
use crate::auth::{Authorized, SignedIn};
use crate::error::{ApiResult, Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use tollgate_workflows::notify::{self, Notification};
use tollgate_workflows::text::Page;
use tollgate_workflows::Db;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(mark_read))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NotificationQuery {
    /// Only those not yet marked read.
    unread: Option<bool>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    #[param(minimum = 0, maximum = 1000000000)]
    offset: Option<u64>,
}

/// Your notifications, newest first.
#[utoipa::path(get, path = "/notifications", tag = "accounts", params(NotificationQuery),
    responses((status = 200, body = Page<Notification>)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin", "agent"])))]
async fn list(
    auth: Authorized<SignedIn>,
    State(db): State<Db>,
    Query(q): Query<NotificationQuery>,
) -> ApiResult<Json<Page<Notification>>> {
    let page = page(q.limit, q.offset)?;
    Ok(Json(notify::notifications_of(&db, &auth.principal.user_id, q.unread.unwrap_or(false), page).await?))
}

/// Mark one of your notifications read.
#[utoipa::path(post, path = "/notifications/{id}/read", tag = "accounts",
    params(("id" = String, Path, description = "Notification id")), responses((status = 204, description = "Read")),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin", "agent"])))]
async fn mark_read(auth: Authorized<SignedIn>, State(db): State<Db>, Path(id): Path<String>) -> ApiResult<StatusCode> {
    notify::mark_read(&db, &auth.audit, &auth.principal.user_id, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
