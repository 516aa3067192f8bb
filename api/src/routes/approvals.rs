//! Approvals: votes on a change, the policies that decide them, and delegation to a substitute.

use crate::auth::{ApproveChanges, Authorized, ManageAccounts, ReadFleet, SignedIn};
use crate::error::{ApiError, ApiResult, Json, Path};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tollgate_workflows::approval::{self, ApprovalPolicy, ApprovalStatus, Decision, Delegation};
use tollgate_workflows::freeze::Window;
use tollgate_workflows::Db;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(status, vote))
        .routes(routes!(list_policies))
        .routes(routes!(put_policy, delete_policy))
        .routes(routes!(list_delegations, create_delegation))
        .routes(routes!(revoke_delegation))
}

/// Where the approval of a change's current revision stands: its policy, stages, approvers and votes.
#[utoipa::path(get, path = "/changes/{id}/approvals", tag = "approvals",
    params(("id" = String, Path, description = "Change id")), responses((status = 200, body = ApprovalStatus)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn status(
    _auth: Authorized<ReadFleet>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<Json<ApprovalStatus>> {
    Ok(Json(approval::approval_status(&db, &id).await?))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoteInput {
    decision: Decision,
    /// Required to reject.
    #[schema(max_length = 4096)]
    comment: Option<String>,
    /// The revision you read; if the change has been edited since, the vote is refused (409).
    revision: Option<i64>,
}

/// Approve or reject the change's current revision, as an approver of its open stage or as the delegate of
/// one. A requester never approves their own change (403); a person counts once per stage (409).
#[utoipa::path(post, path = "/changes/{id}/approvals", tag = "approvals",
    params(("id" = String, Path, description = "Change id")), request_body = VoteInput,
    responses((status = 200, description = "The approval after the vote", body = ApprovalStatus)),
    security(("bearer" = ["approver", "change-manager", "admin"])))]
async fn vote(
    auth: Authorized<ApproveChanges>,
    State(db): State<Db>,
    Path(id): Path<String>,
    Json(body): Json<VoteInput>,
) -> ApiResult<Json<ApprovalStatus>> {
    let (decision, comment) = (body.decision, body.comment.as_deref());
    let status =
        approval::vote_on_revision(&db, &auth.audit, &id, &auth.principal, decision, comment, body.revision).await?;
    tracing::info!(change = %id, by = %auth.principal.username, decision = ?body.decision, "vote cast");
    Ok(Json(status))
}

#[derive(Serialize, ToSchema)]
pub struct PolicyList {
    items: Vec<ApprovalPolicy>,
}

/// The approval policies; a change runs the first (by name) that applies to its kind and risk.
#[utoipa::path(get, path = "/approval-policies", tag = "approvals", responses((status = 200, body = PolicyList)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn list_policies(_auth: Authorized<ReadFleet>, State(db): State<Db>) -> ApiResult<Json<PolicyList>> {
    Ok(Json(PolicyList { items: approval::list_policies(&db).await? }))
}

/// Create or replace an approval policy. Changes already in approval keep the policy they started with.
#[utoipa::path(put, path = "/approval-policies/{name}", tag = "approvals",
    params(("name" = String, Path, description = "Policy name; must match the body's")), request_body = ApprovalPolicy,
    responses((status = 200, body = ApprovalPolicy)), security(("bearer" = ["admin"])))]
async fn put_policy(
    auth: Authorized<ManageAccounts>,
    State(db): State<Db>,
    Path(name): Path<String>,
    Json(policy): Json<ApprovalPolicy>,
) -> ApiResult<Json<ApprovalPolicy>> {
    if policy.name != name {
        return Err(ApiError::validation("name", format!("is {:?} but the path names {name:?}", policy.name)));
    }
    Ok(Json(approval::put_policy(&db, &auth.audit, policy).await?))
}

/// Remove an approval policy.
#[utoipa::path(delete, path = "/approval-policies/{name}", tag = "approvals",
    params(("name" = String, Path, description = "Policy name")),
    responses((status = 204, description = "Deleted")), security(("bearer" = ["admin"])))]
async fn delete_policy(
    auth: Authorized<ManageAccounts>,
    State(db): State<Db>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    approval::delete_policy(&db, &auth.audit, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct DelegationList {
    items: Vec<Delegation>,
}

/// Your delegations, given and received.
#[utoipa::path(get, path = "/delegations", tag = "approvals", responses((status = 200, body = DelegationList)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin", "agent"])))]
async fn list_delegations(auth: Authorized<SignedIn>, State(db): State<Db>) -> ApiResult<Json<DelegationList>> {
    Ok(Json(DelegationList { items: approval::delegations_of(&db, &auth.principal.user_id).await? }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DelegationInput {
    /// Who votes for you meanwhile.
    #[schema(max_length = 64)]
    to_user_id: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    ends_at: OffsetDateTime,
}

/// Hand your approvals to a substitute for a while; their votes count as yours, and the audit says so.
#[utoipa::path(post, path = "/delegations", tag = "approvals", request_body = DelegationInput,
    responses((status = 201, body = Delegation)), security(("bearer" = ["approver", "change-manager", "admin"])))]
async fn create_delegation(
    auth: Authorized<ApproveChanges>,
    State(db): State<Db>,
    Json(body): Json<DelegationInput>,
) -> ApiResult<(StatusCode, Json<Delegation>)> {
    let window = Window::new(body.starts_at, body.ends_at)?;
    let d = approval::delegate(&db, &auth.audit, &auth.principal, &body.to_user_id, window).await?;
    Ok((StatusCode::CREATED, Json(d)))
}

/// End a delegation you gave.
#[utoipa::path(delete, path = "/delegations/{id}", tag = "approvals",
    params(("id" = String, Path, description = "Delegation id")), responses((status = 204, description = "Ended")),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin", "agent"])))]
async fn revoke_delegation(
    auth: Authorized<SignedIn>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    approval::revoke_delegation(&db, &auth.audit, &id, &auth.principal).await?;
    Ok(StatusCode::NO_CONTENT)
}
