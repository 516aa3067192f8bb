//! Every route, grouped by resource; each module exposes `routes()` and the router merges them.

mod audit;
mod cis;
mod groups;
mod health;
mod relations;
mod tokens;
mod users;

use crate::error::ApiError;
use crate::state::AppState;
use tollgate_workflows::text::PageRequest;
use utoipa_axum::router::OpenApiRouter;

/// The `/api/v1` routes, with their OpenAPI operations.
pub fn api_v1() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(tokens::routes())
        .merge(users::routes())
        .merge(groups::routes())
        .merge(cis::routes())
        .merge(relations::routes())
        .merge(audit::routes())
}

/// Routes outside the versioned API: health, readiness and metrics.
pub fn operational() -> axum::Router<AppState> {
    health::routes()
}

/// The page a list request asks for, checked.
pub(crate) fn page(limit: Option<u32>, offset: Option<u64>) -> Result<PageRequest, ApiError> {
    Ok(PageRequest::new(limit, offset)?)
}
