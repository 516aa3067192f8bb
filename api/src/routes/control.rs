//! The control plane over HTTP: operations on VMs and hosts (each refused with 409 unless an approved
//! change that plans it is implementing), the jobs that carry changes out, and the task API host agents
//! pull their work from.

use crate::auth::{Authorized, ManageCmdb, OperateFleet, ReadFleet, RunHostTasks};
use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tollgate_control::hypervisor::Domain;
use tollgate_control::jobs::{self, tasks, Job};
use tollgate_control::reconcile::{self, Drift};
use tollgate_control::task::{Hello, Outcome, TaskBatch};
use tollgate_workflows::change::{self, Operation, Refusal};
use tollgate_workflows::incident::IncidentPolicy;
use tollgate_workflows::Db;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(provision_vm))
        .routes(routes!(resize_vm))
        .routes(routes!(set_vm_quota))
        .routes(routes!(migrate_vm))
        .routes(routes!(stop_vm))
        .routes(routes!(start_vm))
        .routes(routes!(delete_vm))
        .routes(routes!(evacuate_host))
        .routes(routes!(adopt_domain))
        .routes(routes!(get_job))
        .routes(routes!(change_jobs))
        .routes(routes!(agent_hello))
        .routes(routes!(agent_tasks))
        .routes(routes!(agent_outcome))
        .routes(routes!(agent_domains))
        .routes(routes!(get_placement, set_placement))
        .routes(routes!(get_department, set_department))
}

fn refused(r: Refusal) -> ApiError {
    let details = serde_json::to_value(&r).unwrap_or_else(|_| json!({}));
    ApiError::new(StatusCode::CONFLICT, "no_approved_change", r.to_string()).with_details(details)
}

/// The one way into the fleet: the named change must be authorised now and plan `op`; its job (started
/// once per revision) carries the operation out.
async fn under_change(
    db: &Db,
    auth: &Authorized<OperateFleet>,
    change_id: Option<&str>,
    op: Operation,
) -> ApiResult<(StatusCode, Json<Job>)> {
    let change_id = change_id.filter(|c| !c.is_empty()).ok_or_else(|| refused(Refusal::NoChange))?;
    let approved = change::authorise(db, change_id, None).await?.map_err(refused)?;
    if !approved.covers(&op) {
        let operation = serde_json::to_string(&op).unwrap_or_default();
        return Err(refused(Refusal::NotInPlan { reference: approved.reference().to_string(), operation }));
    }
    let job = jobs::submit(db, &auth.audit, &approved).await?;
    Ok((StatusCode::ACCEPTED, Json(job)))
}

/// The change an operation is asked under.
#[derive(Deserialize, ToSchema, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UnderChange {
    /// The approved change, implementing now, whose plan holds this operation.
    change_id: Option<String>,
}

/// A new VM, as the approved change plans it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionInput {
    change_id: Option<String>,
    name: String,
    image: String,
    vcpus: i64,
    memory_mib: i64,
    disk_gib: i64,
    service_id: Option<String>,
    host_id: Option<String>,
    /// A container on a container host rather than a VM.
    #[serde(default)]
    container: bool,
}

/// Provision a VM (placement, disk overlay, domain with headroom, start, inventory).
#[utoipa::path(post, path = "/vms", tag = "control", request_body = ProvisionInput,
    responses((status = 202, body = Job), (status = 409, body = crate::error::ErrorBody, description = "no approved change plans it")),
    security(("bearer" = ["operator", "change-manager", "admin"])))]
async fn provision_vm(
    auth: Authorized<OperateFleet>,
    State(db): State<Db>,
    Json(b): Json<ProvisionInput>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    let op = Operation::Provision {
        name: b.name,
        image: b.image,
        vcpus: b.vcpus,
        memory_mib: b.memory_mib,
        disk_gib: b.disk_gib,
        service_id: b.service_id,
        host_id: b.host_id,
        container: b.container,
    };
    under_change(&db, &auth, b.change_id.as_deref(), op).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResizeInput {
    change_id: Option<String>,
    vcpus: i64,
    memory_mib: i64,
}

/// Resize a running VM live (vCPU and memory hotplug, no restart).
#[utoipa::path(post, path = "/vms/{id}/resize", tag = "control", request_body = ResizeInput,
    params(("id" = String, Path, description = "The VM's CI id")),
    responses((status = 202, body = Job), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = ["operator", "change-manager", "admin"])))]
async fn resize_vm(
    auth: Authorized<OperateFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(b): Json<ResizeInput>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    let op = Operation::Resize { vm_id: id, vcpus: b.vcpus, memory_mib: b.memory_mib };
    under_change(&db, &auth, b.change_id.as_deref(), op).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct QuotaInput {
    change_id: Option<String>,
    cpu_quota_pct: Option<u32>,
    disk_read_bytes_per_sec: Option<u64>,
    disk_write_bytes_per_sec: Option<u64>,
    disk_iops: Option<u64>,
    net_mbit_per_sec: Option<u64>,
}

/// Apply limits to a running VM (CPU quota, disk bytes and IOPS, network Mbit/s), read back.
#[utoipa::path(post, path = "/vms/{id}/quota", tag = "control", request_body = QuotaInput,
    params(("id" = String, Path, description = "The VM's CI id")),
    responses((status = 202, body = Job), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = ["operator", "change-manager", "admin"])))]
async fn set_vm_quota(
    auth: Authorized<OperateFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(b): Json<QuotaInput>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    let op = Operation::SetQuota {
        vm_id: id,
        cpu_quota_pct: b.cpu_quota_pct,
        disk_read_bytes_per_sec: b.disk_read_bytes_per_sec,
        disk_write_bytes_per_sec: b.disk_write_bytes_per_sec,
        disk_iops: b.disk_iops,
        net_mbit_per_sec: b.net_mbit_per_sec,
    };
    under_change(&db, &auth, b.change_id.as_deref(), op).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MigrateInput {
    change_id: Option<String>,
    to_host_id: String,
    #[serde(default = "yes")]
    live: bool,
}

fn yes() -> bool {
    true
}

/// Migrate a VM to another host (live, with its storage).
#[utoipa::path(post, path = "/vms/{id}/migrate", tag = "control", request_body = MigrateInput,
    params(("id" = String, Path, description = "The VM's CI id")),
    responses((status = 202, body = Job), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = ["operator", "change-manager", "admin"])))]
async fn migrate_vm(
    auth: Authorized<OperateFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(b): Json<MigrateInput>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    let op = Operation::Migrate { vm_id: id, to_host_id: b.to_host_id, live: b.live };
    under_change(&db, &auth, b.change_id.as_deref(), op).await
}

/// Stop a VM.
#[utoipa::path(post, path = "/vms/{id}/stop", tag = "control", params(("id" = String, Path), UnderChange),
    responses((status = 202, body = Job), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = ["operator", "change-manager", "admin"])))]
async fn stop_vm(
    auth: Authorized<OperateFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Query(q): Query<UnderChange>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    under_change(&db, &auth, q.change_id.as_deref(), Operation::Stop { vm_id: id }).await
}

/// Start a VM.
#[utoipa::path(post, path = "/vms/{id}/start", tag = "control", params(("id" = String, Path), UnderChange),
    responses((status = 202, body = Job), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = ["operator", "change-manager", "admin"])))]
async fn start_vm(
    auth: Authorized<OperateFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Query(q): Query<UnderChange>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    under_change(&db, &auth, q.change_id.as_deref(), Operation::Start { vm_id: id }).await
}

/// Delete a VM (its domain and disk; the inventory keeps it as retired).
#[utoipa::path(delete, path = "/vms/{id}", tag = "control", params(("id" = String, Path), UnderChange),
    responses((status = 202, body = Job), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = ["operator", "change-manager", "admin"])))]
async fn delete_vm(
    auth: Authorized<OperateFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Query(q): Query<UnderChange>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    under_change(&db, &auth, q.change_id.as_deref(), Operation::Delete { vm_id: id }).await
}

/// Move every running VM off a host (placement chooses where).
#[utoipa::path(post, path = "/hosts/{id}/evacuate", tag = "control", params(("id" = String, Path), UnderChange),
    responses((status = 202, body = Job), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = ["operator", "change-manager", "admin"])))]
async fn evacuate_host(
    auth: Authorized<OperateFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Query(q): Query<UnderChange>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    under_change(&db, &auth, q.change_id.as_deref(), Operation::Evacuate { host_id: id }).await
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdoptInput {
    change_id: Option<String>,
    domain: String,
}

/// Adopt a domain found on a host into the inventory, without restarting it.
#[utoipa::path(post, path = "/hosts/{id}/adopt", tag = "control", request_body = AdoptInput,
    params(("id" = String, Path, description = "The host's CI id")),
    responses((status = 202, body = Job), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = ["operator", "change-manager", "admin"])))]
async fn adopt_domain(
    auth: Authorized<OperateFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(b): Json<AdoptInput>,
) -> ApiResult<(StatusCode, Json<Job>)> {
    under_change(&db, &auth, b.change_id.as_deref(), Operation::Adopt { host_id: id, domain: b.domain }).await
}

/// A job: its steps, progress (step, percent, what it is doing) and outcome.
#[utoipa::path(get, path = "/jobs/{id}", tag = "control", params(("id" = String, Path)),
    responses((status = 200, body = Job), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn get_job(_auth: Authorized<ReadFleet>, State(db): State<Db>, Path(id): Path<String>) -> ApiResult<Json<Job>> {
    Ok(Json(jobs::get_job(&db, &id).await?))
}

/// The jobs that carried out a change, newest revision first.
#[utoipa::path(get, path = "/changes/{id}/jobs", tag = "control", params(("id" = String, Path)),
    responses((status = 200, body = Vec<Job>)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn change_jobs(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Job>>> {
    change::get_change(&db, &id).await?;
    Ok(Json(jobs::jobs_of_change(&db, &id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HelloInput {
    /// The driver's kind, e.g. `libvirt/kvm`.
    #[schema(max_length = 64)]
    hypervisor: String,
    /// How other hosts' hypervisors reach this one for migrations.
    #[schema(max_length = 512)]
    peer_uri: String,
}

/// A host agent says what it drives and how peers reach it, before it pulls tasks.
#[utoipa::path(post, path = "/agent/hello", tag = "agent", request_body = HelloInput,
    responses((status = 204)), security(("bearer" = ["agent", "admin"])))]
async fn agent_hello(
    auth: Authorized<RunHostTasks>,
    State(db): State<Db>,
    Json(b): Json<HelloInput>,
) -> ApiResult<StatusCode> {
    if b.hypervisor.is_empty() || b.hypervisor.len() > 64 || b.peer_uri.len() > 512 {
        return Err(ApiError::validation("hello", "hypervisor must be 1 to 64 characters, peer_uri at most 512"));
    }
    tasks::hello(&db, &auth.principal.username, &Hello { hypervisor: b.hypervisor, peer_uri: b.peer_uri }).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PollQuery {
    /// Seconds to wait for a task when none is waiting (long poll); 0 answers at once.
    #[param(minimum = 0, maximum = 60)]
    wait_secs: Option<u64>,
}

/// The agent's host tasks: those waiting now, or the first to arrive within `wait_secs`.
#[utoipa::path(get, path = "/agent/tasks", tag = "agent", params(PollQuery),
    responses((status = 200, body = Object, description = "`{\"tasks\": [HostTask]}`")),
    security(("bearer" = ["agent", "admin"])))]
async fn agent_tasks(
    auth: Authorized<RunHostTasks>,
    State(db): State<Db>,
    Query(q): Query<PollQuery>,
) -> ApiResult<Json<TaskBatch>> {
    let wait_secs = q.wait_secs.unwrap_or(0);
    if wait_secs > 60 {
        return Err(ApiError::validation("wait_secs", format!("must be at most 60, got {wait_secs}")));
    }
    let wait = Duration::from_secs(wait_secs);
    let agent = auth.principal.username;
    let deadline = Instant::now() + wait;
    loop {
        if tasks::waiting(&db, &agent).await? || Instant::now() >= deadline {
            return Ok(Json(TaskBatch { tasks: tasks::take(&db, &agent, 16).await? }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The agent reports what a task did. The first report of a task stands; a repeat is accepted.
#[utoipa::path(post, path = "/agent/tasks/{id}/outcome", tag = "agent", params(("id" = String, Path)),
    request_body(content = Object, description = "an `Outcome`"),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = ["agent", "admin"])))]
async fn agent_outcome(
    auth: Authorized<RunHostTasks>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(outcome): Json<Outcome>,
) -> ApiResult<StatusCode> {
    match tasks::report(&db, &auth.principal.username, &id, &outcome).await? {
        tasks::Reported::Recorded | tasks::Reported::Already => Ok(StatusCode::NO_CONTENT),
        tasks::Reported::Unknown => Err(ApiError::not_found(format!("no task {id} for this agent"))),
    }
}

/// What the reconciler found on the agent's host.
#[derive(serde::Serialize, ToSchema)]
pub struct DriftReport {
    #[schema(value_type = Vec<Object>)]
    drift: Vec<Drift>,
}

/// An agent reports every domain on its host; the reconciler compares them with the inventory and opens an
/// incident for each difference (an unauthorised change).
#[utoipa::path(post, path = "/agent/domains", tag = "agent",
    request_body(content = Vec<Object>, description = "the host's domains, as the driver reports them"),
    responses((status = 200, body = DriftReport), (status = 404, body = crate::error::ErrorBody, description = "no host has this agent")),
    security(("bearer" = ["agent", "admin"])))]
async fn agent_domains(
    auth: Authorized<RunHostTasks>,
    State(db): State<Db>,
    State(policy): State<Arc<IncidentPolicy>>,
    Json(domains): Json<Vec<Domain>>,
) -> ApiResult<Json<DriftReport>> {
    let agent = &auth.principal.username;
    let host = tollgate_control::inventory::host_of_agent(&db, agent)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no host in the inventory is served by agent {agent}")))?;
    let drift = reconcile::reconcile_host(&db, &policy, &host, &domains).await?;
    Ok(Json(DriftReport { drift }))
}

/// How a business service wants its VMs placed.
#[derive(serde::Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PlacementInput {
    /// `spread` (apart, for availability; the default), `pack` (onto the fullest hosts that fit) or
    /// `least_utilised` (onto the hosts whose CPU was least busy over the last day).
    #[schema(value_type = String)]
    strategy: tollgate_control::placement::Strategy,
}

/// The placement strategy of a business service.
#[utoipa::path(get, path = "/services/{id}/placement", tag = "control", params(("id" = String, Path, description = "The service's CI id")),
    responses((status = 200, body = PlacementInput), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn get_placement(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<Json<PlacementInput>> {
    tollgate_control::inventory::ci_of(&db, &id, tollgate_workflows::cmdb::CiKind::Service).await?;
    Ok(Json(PlacementInput { strategy: tollgate_control::inventory::strategy_of(&db, &id).await? }))
}

/// Set how a business service's new VMs are placed.
#[utoipa::path(put, path = "/services/{id}/placement", tag = "control", params(("id" = String, Path, description = "The service's CI id")),
    request_body = PlacementInput,
    responses((status = 200, body = PlacementInput), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = ["operator", "admin"])))]
async fn set_placement(
    auth: Authorized<ManageCmdb>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(b): Json<PlacementInput>,
) -> ApiResult<Json<PlacementInput>> {
    tollgate_control::inventory::set_strategy(&db, &auth.audit, &id, b.strategy).await?;
    Ok(Json(b))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DepartmentInput {
    /// The group (department) owning the service, whose quota its VMs count against; null for none.
    group_id: Option<String>,
}

/// The department owning a business service.
#[utoipa::path(get, path = "/services/{id}/department", tag = "control", params(("id" = String, Path, description = "The service's CI id")),
    responses((status = 200, body = DepartmentInput), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn get_department(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<Json<DepartmentInput>> {
    Ok(Json(DepartmentInput { group_id: tollgate_workflows::quota::department(&db, &id).await? }))
}

/// Set the department owning a business service.
#[utoipa::path(put, path = "/services/{id}/department", tag = "control", params(("id" = String, Path, description = "The service's CI id")),
    request_body = DepartmentInput,
    responses((status = 200, body = DepartmentInput), (status = 404, body = crate::error::ErrorBody), (status = 422, body = crate::error::ErrorBody)),
    security(("bearer" = ["operator", "admin"])))]
async fn set_department(
    auth: Authorized<ManageCmdb>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(b): Json<DepartmentInput>,
) -> ApiResult<Json<DepartmentInput>> {
    tollgate_workflows::quota::set_department(&db, &auth.audit, &id, b.group_id.as_deref()).await?;
    Ok(Json(b))
}
