//! Authentication and authorisation as extractors: a handler's signature names the permission it needs,
//! and the request is refused (401 without valid credentials, 403 without the role) before the body is read.

use crate::error::ApiError;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
use std::marker::PhantomData;
use tollgate_workflows::accounts::{authenticate, Principal, Role};
use tollgate_workflows::{AuditContext, Db};

/// What a route requires. `admin` may always; besides it, `ROLES` lists who may (`None`: anyone signed in).
pub trait Permission: Send + Sync + 'static {
    const ROLES: Option<&'static [Role]>;
}

/// Any signed-in user, whatever their roles: their own profile and tokens.
pub struct SignedIn;
/// Read the fleet and the CMDB.
pub struct ReadFleet;
/// Maintain the CMDB.
pub struct ManageCmdb;
/// Look up accounts (to pick approvers, assignees).
pub struct ReadAccounts;
/// Create and change accounts and groups.
pub struct ManageAccounts;
/// Read the audit log.
pub struct ReadAudit;
/// Run the change process: upload process definitions, keep freeze windows.
pub struct ManageProcesses;
/// Request changes.
pub struct RequestChanges;
/// Vote on changes.
pub struct ApproveChanges;
/// Report incidents.
pub struct ReportIncidents;
/// Edit incidents' details.
pub struct ManageIncidents;
/// Write metric points (host agents).
pub struct WriteMetrics;
/// Read metric series.
pub struct ReadMetrics;
/// Pull and report the tasks of one's own host (host agents).
pub struct RunHostTasks;
/// Ask for operations on VMs and hosts (each under an approved change).
pub struct OperateFleet;

impl Permission for SignedIn {
    const ROLES: Option<&'static [Role]> = None;
}
impl Permission for ReadFleet {
    const ROLES: Option<&'static [Role]> =
        Some(&[Role::Viewer, Role::Requester, Role::Approver, Role::ChangeManager, Role::Operator]);
}
impl Permission for ManageCmdb {
    const ROLES: Option<&'static [Role]> = Some(&[Role::Operator]);
}
impl Permission for ReadAccounts {
    const ROLES: Option<&'static [Role]> = Some(&[Role::ChangeManager]);
}
impl Permission for ManageAccounts {
    const ROLES: Option<&'static [Role]> = Some(&[]);
}
impl Permission for RequestChanges {
    const ROLES: Option<&'static [Role]> = Some(&[Role::Requester, Role::Operator, Role::ChangeManager]);
}
impl Permission for ApproveChanges {
    const ROLES: Option<&'static [Role]> = Some(&[Role::Approver, Role::ChangeManager]);
}
impl Permission for ReportIncidents {
    const ROLES: Option<&'static [Role]> = Some(&[Role::Requester, Role::Operator, Role::ChangeManager]);
}
impl Permission for ManageIncidents {
    const ROLES: Option<&'static [Role]> = Some(&[Role::Operator, Role::ChangeManager]);
}
impl Permission for ManageProcesses {
    const ROLES: Option<&'static [Role]> = Some(&[Role::ChangeManager]);
}
impl Permission for RunHostTasks {
    const ROLES: Option<&'static [Role]> = Some(&[Role::Agent]);
}
impl Permission for OperateFleet {
    const ROLES: Option<&'static [Role]> = Some(&[Role::Operator, Role::ChangeManager]);
}
impl Permission for WriteMetrics {
    const ROLES: Option<&'static [Role]> = Some(&[Role::Agent, Role::Operator]);
}
impl Permission for ReadMetrics {
    const ROLES: Option<&'static [Role]> =
        Some(&[Role::Viewer, Role::Requester, Role::Approver, Role::ChangeManager, Role::Operator]);
}
impl Permission for ReadAudit {
    const ROLES: Option<&'static [Role]> = Some(&[Role::ChangeManager]);
}

/// A request from a signed-in user holding permission `P`.
pub struct Authorized<P: Permission> {
    pub principal: Principal,
    /// Attribution for the audit records this request writes.
    pub audit: AuditContext,
    _permission: PhantomData<fn() -> P>,
}

/// A client may name its own request id; one longer than 128 characters is not stored.
pub fn request_id(headers: &axum::http::HeaderMap) -> Option<String> {
    headers.get("x-request-id").and_then(|v| v.to_str().ok()).filter(|v| v.len() <= 128).map(str::to_owned)
}

/// The roles that would grant `P` (administrator included) when `principal` holds none of them.
pub fn missing_roles<P: Permission>(principal: &Principal) -> Option<Vec<&'static str>> {
    let roles = P::ROLES?;
    if principal.roles.permits(roles) {
        return None;
    }
    Some(roles.iter().map(|r| r.as_str()).chain(std::iter::once("admin")).collect())
}

/// Attribution of what a request by `principal` writes, with the request id the client named.
pub fn audit_of(principal: &Principal, headers: &axum::http::HeaderMap) -> AuditContext {
    AuditContext {
        actor_id: Some(principal.user_id.clone()),
        actor: principal.username.clone(),
        on_behalf_of: None,
        request_id: request_id(headers),
    }
}

fn bearer(parts: &Parts) -> Result<&str, ApiError> {
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("sign in: send Authorization: Bearer <token>"))?;
    let value = value.to_str().map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
    match value.split_once(' ') {
        // `Token` is how InfluxDB's clients send theirs (the v2 write API).
        Some((scheme, token))
            if (scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
                && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::unauthorized("expected Authorization: Bearer <token>")),
    }
}

impl<P: Permission, S: Send + Sync> FromRequestParts<S> for Authorized<P>
where
    Db: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = bearer(parts)?;
        let db = Db::from_ref(state);
        let principal = authenticate(&db, token)
            .await?
            .ok_or_else(|| ApiError::unauthorized("the token is unknown, expired or revoked"))?;
        if let Some(needed) = missing_roles::<P>(&principal) {
            return Err(ApiError::forbidden(format!("this needs one of the roles: {}", needed.join(", ")))
                .with_details(serde_json::json!({ "required_roles": needed })));
        }
        let audit = audit_of(&principal, &parts.headers);
        Ok(Authorized { principal, audit, _permission: PhantomData })
    }
}
