//! The CMDB's configuration items and the impact walk.

use super::{page, Text};
use crate::auth::{Authorized, ManageCmdb, ReadFleet};
use crate::error::{ApiResult, Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use tollgate_workflows::cmdb::{self, Ci, CiDraft, CiKind, CiQuery, CiSpec, Criticality, Hypervisor, Impact};
use tollgate_workflows::text::Page;
use tollgate_workflows::Db;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_cis, create_ci))
        .routes(routes!(get_ci, update_ci, delete_ci))
        .routes(routes!(impact))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct CiListQuery {
    kind: Option<CiKind>,
    /// Items contained in this one.
    #[param(inline)]
    parent_id: Option<Text<64>>,
    /// VMs of this business service.
    #[param(inline)]
    service_id: Option<Text<64>>,
    #[param(inline)]
    state: Option<Text<32>>,
    criticality: Option<Criticality>,
    /// Substring of the name, any case.
    #[param(inline)]
    q: Option<Text<128>>,
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
    #[param(minimum = 0, maximum = 1000000000)]
    offset: Option<u64>,
}

/// List configuration items.
#[utoipa::path(get, path = "/cis", tag = "cmdb", params(CiListQuery), responses((status = 200, body = Page<Ci>)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn list_cis(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Query(q): Query<CiListQuery>,
) -> ApiResult<Json<Page<Ci>>> {
    let page = page(q.limit, q.offset)?;
    let query = CiQuery {
        kind: q.kind,
        parent_id: q.parent_id.map(Text::into_inner),
        service_id: q.service_id.map(Text::into_inner),
        state: q.state.map(Text::into_inner),
        criticality: q.criticality,
        q: q.q.map(Text::into_inner),
    };
    Ok(Json(cmdb::list_cis(&db, &query, page).await?))
}

/// A configuration item as submitted. Which fields apply depends on `kind`: hosts need `hypervisor` and
/// capacity (`vcpus`, `memory_mib`, `disk_gib`), VMs need a size, and regions and services have no parent.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CiInput {
    kind: CiKind,
    #[schema(min_length = 1, max_length = 128)]
    name: String,
    #[schema(max_length = 4096)]
    description: Option<String>,
    /// Region of a data centre, data centre of a cluster, cluster of a host, host of a VM.
    #[schema(max_length = 64)]
    parent_id: Option<String>,
    /// Business service a VM belongs to.
    #[schema(max_length = 64)]
    service_id: Option<String>,
    /// Lifecycle state; hosts: active, maintenance, down, retired; VMs: planned, running, stopped, error,
    /// retired; others: active, retired.
    #[schema(max_length = 32)]
    state: Option<String>,
    criticality: Option<Criticality>,
    hypervisor: Option<Hypervisor>,
    #[schema(min_length = 1, max_length = 128)]
    agent_id: Option<String>,
    #[schema(minimum = 1, maximum = 4096)]
    vcpus: Option<i64>,
    #[schema(minimum = 1, maximum = 67108864)]
    memory_mib: Option<i64>,
    #[schema(minimum = 1, maximum = 1048576)]
    disk_gib: Option<i64>,
    /// On update: the revision the edit is based on; a different current revision is a conflict.
    revision: Option<i64>,
}

impl CiInput {
    fn into_parts(self) -> Result<(CiSpec, Option<i64>), tollgate_workflows::ValidationError> {
        let revision = self.revision;
        let draft = CiDraft {
            kind: self.kind.as_str().to_owned(),
            name: self.name,
            description: self.description,
            parent_id: self.parent_id,
            service_id: self.service_id,
            state: self.state,
            criticality: self.criticality.map(|c| c.as_str().to_owned()),
            hypervisor: self.hypervisor.map(|h| h.as_str().to_owned()),
            agent_id: self.agent_id,
            vcpus: self.vcpus,
            memory_mib: self.memory_mib,
            disk_gib: self.disk_gib,
        };
        Ok((CiSpec::try_from(draft)?, revision))
    }
}

/// Register a configuration item.
#[utoipa::path(post, path = "/cis", tag = "cmdb", request_body = CiInput, responses((status = 201, body = Ci)),
    security(("bearer" = ["operator", "admin"])))]
async fn create_ci(
    auth: Authorized<ManageCmdb>,
    State(db): State<Db>,
    Json(body): Json<CiInput>,
) -> ApiResult<(StatusCode, Json<Ci>)> {
    let (spec, _) = body.into_parts()?;
    Ok((StatusCode::CREATED, Json(cmdb::create_ci(&db, &auth.audit, spec).await?)))
}

/// Show a configuration item.
#[utoipa::path(get, path = "/cis/{id}", tag = "cmdb", params(("id" = String, Path, description = "CI id")),
    responses((status = 200, body = Ci)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn get_ci(_auth: Authorized<ReadFleet>, State(db): State<Db>, Path(id): Path<String>) -> ApiResult<Json<Ci>> {
    Ok(Json(cmdb::get_ci(&db, &id).await?))
}

/// Replace a configuration item's fields; its kind cannot change.
#[utoipa::path(put, path = "/cis/{id}", tag = "cmdb", params(("id" = String, Path, description = "CI id")),
    request_body = CiInput, responses((status = 200, body = Ci)), security(("bearer" = ["operator", "admin"])))]
async fn update_ci(
    auth: Authorized<ManageCmdb>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(body): Json<CiInput>,
) -> ApiResult<Json<Ci>> {
    let (spec, revision) = body.into_parts()?;
    Ok(Json(cmdb::update_ci(&db, &auth.audit, &id, spec, revision).await?))
}

/// Delete a configuration item that contains and owns nothing; its relations go with it.
#[utoipa::path(delete, path = "/cis/{id}", tag = "cmdb", params(("id" = String, Path, description = "CI id")),
    responses((status = 204, description = "Deleted")), security(("bearer" = ["operator", "admin"])))]
async fn delete_ci(
    auth: Authorized<ManageCmdb>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    cmdb::delete_ci(&db, &auth.audit, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ImpactQuery {
    /// How many steps to follow, 1–16 (default 8).
    #[param(minimum = 1, maximum = 16)]
    depth: Option<u32>,
}

/// What is affected, and through which edges, if this item fails.
#[utoipa::path(get, path = "/cis/{id}/impact", tag = "cmdb",
    params(("id" = String, Path, description = "CI id"), ImpactQuery),
    responses((status = 200, body = Impact)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn impact(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Query(q): Query<ImpactQuery>,
) -> ApiResult<Json<Impact>> {
    let depth = q.depth.unwrap_or(8);
    if !(1..=16).contains(&depth) {
        return Err(crate::error::ApiError::validation("depth", "must be between 1 and 16"));
    }
    Ok(Json(cmdb::impact(&db, &id, depth).await?))
}
