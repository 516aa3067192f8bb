//! Signing in: bearer tokens issued for a username and password, listed and revoked by their owner.

use super::{page, PageQuery};
use crate::auth::{request_id, Authorized, SignedIn};
use crate::error::{ApiError, ApiResult, Json, Path, Query};
use crate::state::{AppState, TokenPolicy};
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use tollgate_workflows::accounts::{self, IssuedToken, SignInError, TokenInfo};
use tollgate_workflows::text::{Name, Page};
use tollgate_workflows::Db;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(issue_token, list_tokens)).routes(routes!(revoke_token))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[schema(max_length = 64)]
    username: String,
    #[schema(format = Password, max_length = 256)]
    password: String,
    /// A label to recognise the token by later; defaults to `api`.
    #[schema(min_length = 1, max_length = 128)]
    name: Option<String>,
    /// Lifetime in seconds; defaults to the server's `auth.token_ttl_secs`.
    #[schema(minimum = 1)]
    ttl_secs: Option<u64>,
}

/// Issue a bearer token for a username and password.
#[utoipa::path(post, path = "/auth/tokens", tag = "auth", request_body = TokenRequest,
    responses((status = 201, description = "Token issued; the secret is shown only now", body = IssuedToken),
              (status = 401, description = "Wrong username or password", body = crate::error::ErrorBody)))]
async fn issue_token(
    State(db): State<Db>,
    State(policy): State<TokenPolicy>,
    headers: axum::http::HeaderMap,
    Json(req): Json<TokenRequest>,
) -> ApiResult<(StatusCode, Json<IssuedToken>)> {
    let name = Name::parse("name", req.name.as_deref().unwrap_or("api"))?;
    let ttl = req.ttl_secs.unwrap_or(policy.default_ttl_secs);
    if ttl == 0 || ttl > policy.max_ttl_secs {
        return Err(ApiError::validation("ttl_secs", format!("must be between 1 and {}", policy.max_ttl_secs)));
    }
    let ttl = time::Duration::seconds(i64::try_from(ttl).unwrap_or(i64::MAX));
    match accounts::issue_token(&db, &req.username, &req.password, &name, ttl, request_id(&headers)).await {
        Ok((token, principal)) => {
            tracing::info!(user = %principal.username, token_id = %token.id, "token issued");
            Ok((StatusCode::CREATED, Json(token)))
        }
        Err(SignInError::BadCredentials) => {
            // What was typed as a username may be a password pasted into the wrong field: log only a prefix.
            let shown: String = req.username.chars().take(32).collect();
            tracing::info!(user = %shown, "sign-in refused");
            Err(ApiError::unauthorized("invalid username or password"))
        }
        Err(SignInError::Store(e)) => Err(e.into()),
    }
}

/// List your own tokens (never their secrets).
#[utoipa::path(get, path = "/auth/tokens", tag = "auth", params(PageQuery),
    responses((status = 200, body = Page<TokenInfo>)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin", "agent"])))]
async fn list_tokens(
    auth: Authorized<SignedIn>,
    State(db): State<Db>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Json<Page<TokenInfo>>> {
    let page = page(q.limit, q.offset)?;
    Ok(Json(accounts::list_tokens(&db, &auth.principal.user_id, page).await?))
}

/// Revoke a token: your own, or anyone's as an administrator.
#[utoipa::path(delete, path = "/auth/tokens/{id}", tag = "auth",
    params(("id" = String, Path, description = "Token id")),
    responses((status = 200, description = "Revoked", body = TokenInfo)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin", "agent"])))]
async fn revoke_token(
    auth: Authorized<SignedIn>,
    State(db): State<Db>,
    Path(id): Path<String>,
) -> ApiResult<Json<TokenInfo>> {
    Ok(Json(accounts::revoke_token(&db, &auth.audit, &id, &auth.principal).await?))
}
