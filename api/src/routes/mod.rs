//! Every route, grouped by resource; each module exposes `routes()` and the router merges them.

mod alert_rules;
mod approvals;
mod audit;
mod changes;
mod cis;
mod control;
mod freeze_windows;
mod groups;
mod health;
mod incidents;
mod metrics;
mod notifications;
mod processes;
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
        .merge(processes::routes())
        .merge(incidents::routes())
        .merge(freeze_windows::routes())
        .merge(changes::routes())
        .merge(approvals::routes())
        .merge(notifications::routes())
        .merge(audit::routes())
        .merge(metrics::routes())
        .merge(alert_rules::routes())
        .merge(control::routes())
}

/// The InfluxDB-v2-compatible write API agents (and InfluxDB's clients) write points to.
pub fn influx_v2() -> OpenApiRouter<AppState> {
    metrics::influx_routes()
}

/// Routes outside the versioned API: health, readiness and metrics.
pub fn operational() -> axum::Router<AppState> {
    health::routes()
}

/// A text query parameter of at most `MAX` characters; longer values are refused as a bad request.
#[derive(Debug, Clone)]
pub struct Text<const MAX: usize>(String);

impl<const MAX: usize> Text<MAX> {
    pub fn into_inner(self) -> String {
        self.0
    }
}

impl<'de, const MAX: usize> serde::Deserialize<'de> for Text<MAX> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.chars().count() > MAX {
            return Err(serde::de::Error::custom(format!("must be at most {MAX} characters")));
        }
        if s.contains('\0') {
            return Err(serde::de::Error::custom("must not contain NUL characters"));
        }
        Ok(Text(s))
    }
}

impl<const MAX: usize> utoipa::PartialSchema for Text<MAX> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .max_length(Some(MAX))
            .into()
    }
}

impl<const MAX: usize> utoipa::ToSchema for Text<MAX> {}

/// The query of a list that has no filters: which page.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1–500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// Items to skip.
    #[param(minimum = 0, maximum = 1000000000)]
    pub offset: Option<u64>,
}

/// The page a list request asks for, checked.
pub(crate) fn page(limit: Option<u32>, offset: Option<u64>) -> Result<PageRequest, ApiError> {
    Ok(PageRequest::new(limit, offset)?)
}
