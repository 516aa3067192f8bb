//! The audit log, read-only over the API; `tollgate audit verify` checks its chain.

use super::{page, Text};
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
    #[param(inline)]
    entity_type: Option<Text<64>>,
    #[param(inline)]
    entity_id: Option<Text<64>>,
    /// Username of whoever acted.
    #[param(inline)]
    actor: Option<Text<64>>,
    /// e.g. `ci.update`.
    #[param(inline)]
    action: Option<Text<64>>,
    #[param(inline)]
    request_id: Option<Text<128>>,
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
        entity_type: q.entity_type.map(Text::into_inner),
        entity_id: q.entity_id.map(Text::into_inner),
        actor: q.actor.map(Text::into_inner),
        action: q.action.map(Text::into_inner),
        request_id: q.request_id.map(Text::into_inner),
    };
    Ok(Json(audit::list(&db, &query, page).await?))
}
