//! Process definitions: read by everyone, uploaded (as a new version) by change managers.

use crate::auth::{Authorized, ManageProcesses, ReadFleet};
use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tollgate_workflows::process::{self, ProcessDefinition, StoredDefinition};
use tollgate_workflows::Db;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_processes)).routes(routes!(get_process, define_process))
}

/// The latest version of every process.
#[derive(Serialize, ToSchema)]
pub struct ProcessList {
    items: Vec<StoredDefinition>,
}

/// List processes, each at its latest version.
#[utoipa::path(get, path = "/processes", tag = "processes", responses((status = 200, body = ProcessList)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn list_processes(_auth: Authorized<ReadFleet>, State(db): State<Db>) -> ApiResult<Json<ProcessList>> {
    Ok(Json(ProcessList { items: process::list_definitions(&db).await? }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct VersionQuery {
    /// A specific version; the latest when absent.
    #[param(minimum = 1)]
    version: Option<i64>,
}

/// Show a process definition.
#[utoipa::path(get, path = "/processes/{name}", tag = "processes",
    params(("name" = String, Path, description = "Process name, e.g. normal-change"), VersionQuery),
    responses((status = 200, body = StoredDefinition)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn get_process(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<Json<StoredDefinition>> {
    Ok(Json(process::get_definition(&db, &name, q.version).await?))
}

/// Upload a process definition. It is validated (unreachable states, dead ends, unknown roles and guards
/// are refused with every problem named) and stored as the next version; an upload equal to the latest
/// version changes nothing (200). Records already running keep the version they started with.
#[utoipa::path(put, path = "/processes/{name}", tag = "processes",
    params(("name" = String, Path, description = "Process name; must match the body's name")),
    request_body = ProcessDefinition,
    responses((status = 201, description = "Stored as a new version", body = StoredDefinition),
              (status = 200, description = "Equal to the latest version; nothing changed", body = StoredDefinition)),
    security(("bearer" = ["change-manager", "admin"])))]
async fn define_process(
    auth: Authorized<ManageProcesses>,
    State(db): State<Db>,
    Path(name): Path<String>,
    Json(def): Json<ProcessDefinition>,
) -> ApiResult<(StatusCode, Json<StoredDefinition>)> {
    if def.name != name {
        return Err(ApiError::validation("name", format!("is {:?} but the path names {name:?}", def.name)));
    }
    let (stored, created) = process::define(&db, &auth.audit, def).await?;
    if created {
        tracing::info!(by = %auth.principal.username, process = %stored.name, version = stored.version, "process defined");
    }
    Ok((if created { StatusCode::CREATED } else { StatusCode::OK }, Json(stored)))
}
