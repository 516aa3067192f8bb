//! The audit log, read-only over the API; `tollgate audit verify` checks its chain.

use super::page;
use crate::auth::{Authorized, ReadAudit};
use crate::error::{ApiResult, Json, Query};
use crate::state::AppState;
use axum::extract::State;
use serde::Deserialize;
use tollgate_workflows::audit::{self, AuditQuery, AuditRecord};
use tollgate_workflows::text::Page;
use tollgate_workflows::Db;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_audit))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditListQuery {
    /// `user`, `group`, `token`, `ci`, `relation`, …
    #[param(max_length = 64)]
    entity_type: Option<String>,
    #[param(max_length = 64)]
    entity_id: Option<String>,
    /// Username of whoever acted.
    #[param(max_length = 64)]
    actor: Option<String>,
    /// e.g. `ci.update`.
    #[param(max_length = 64)]
    action: Option<String>,
    #[param(max_length = 128)]
    request_id: Option<String>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    #[param(minimum = 0, maximum = 1000000000)]
    offset: Option<u64>,
}

/// Audit records, newest first.
#[utoipa::path(get, path = "/audit", tag = "audit", params(AuditListQuery),
    responses((status = 200, body = Page<AuditRecord>)), security(("bearer" = ["change-manager", "admin"])))]
async fn list_audit(
    _auth: Authorized<ReadAudit>,
    State(db): State<Db>,
    Query(q): Query<AuditListQuery>,
) -> ApiResult<Json<Page<AuditRecord>>> {
    let page = page(q.limit, q.offset)?;
    let query = AuditQuery {
        entity_type: q.entity_type,
        entity_id: q.entity_id,
        actor: q.actor,
        action: q.action,
        request_id: q.request_id,
    };
    Ok(Json(audit::list(&db, &query, page).await?))
}
