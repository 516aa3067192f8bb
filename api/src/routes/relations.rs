//! Typed relations between configuration items.

use super::{page, Text};
use crate::auth::{Authorized, ManageCmdb, ReadFleet};
use crate::error::{ApiResult, Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use tollgate_workflows::cmdb::{self, Relation, RelationKind, RelationQuery};
use tollgate_workflows::text::Page;
use tollgate_workflows::Db;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_relations, create_relation)).routes(routes!(get_relation, delete_relation))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RelationListQuery {
    /// Relations with this item at either end.
    #[param(inline)]
    ci_id: Option<Text<64>>,
    kind: Option<RelationKind>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    #[param(minimum = 0, maximum = 1000000000)]
    offset: Option<u64>,
}

/// List relations.
#[utoipa::path(get, path = "/relations", tag = "cmdb", params(RelationListQuery),
    responses((status = 200, body = Page<Relation>)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn list_relations(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Query(q): Query<RelationListQuery>,
) -> ApiResult<Json<Page<Relation>>> {
    let page = page(q.limit, q.offset)?;
    Ok(Json(
        cmdb::list_relations(&db, &RelationQuery { ci_id: q.ci_id.map(Text::into_inner), kind: q.kind }, page).await?,
    ))
}

/// `source` runs-on / depends-on / member-of `target`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RelationInput {
    kind: RelationKind,
    #[schema(max_length = 64)]
    source_id: String,
    #[schema(max_length = 64)]
    target_id: String,
}

/// Relate two configuration items.
#[utoipa::path(post, path = "/relations", tag = "cmdb", request_body = RelationInput,
    responses((status = 201, body = Relation)), security(("bearer" = ["operator", "admin"])))]
async fn create_relation(
    auth: Authorized<ManageCmdb>,
    State(db): State<Db>,
    Json(body): Json<RelationInput>,
) -> ApiResult<(StatusCode, Json<Relation>)> {
    let r = cmdb::create_relation(&db, &auth.audit, body.kind, &body.source_id, &body.target_id).await?;
    Ok((StatusCode::CREATED, Json(r)))
}

/// Show a relation.
#[utoipa::path(get, path = "/relations/{id}", tag = "cmdb", params(("id" = String, Path, description = "Relation id")),
    responses((status = 200, body = Relation)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn get_relation(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<Json<Relation>> {
    Ok(Json(cmdb::get_relation(&db, &id).await?))
}

/// Remove a relation.
#[utoipa::path(delete, path = "/relations/{id}", tag = "cmdb", params(("id" = String, Path, description = "Relation id")),
    responses((status = 204, description = "Deleted")), security(("bearer" = ["operator", "admin"])))]
async fn delete_relation(
    auth: Authorized<ManageCmdb>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    cmdb::delete_relation(&db, &auth.audit, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
