//! Signing in: bearer tokens issued, authenticated, listed and revoked, and the first administrator.

use super::{password, Password, Principal, Role, RoleSet, Username};
use crate::clock::{from_millis, to_millis};
use crate::error::{StoreError, StoreResult};
use crate::store::{AuditContext, Db};
use crate::text::{Name, Page, PageRequest};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::FromRow;
use time::{Duration, OffsetDateTime};

use super::users::{count_users, create_user, new_id, NewUser, UserRow, USER_COLUMNS};

/// A freshly issued bearer token. `token` is shown this once; the store keeps only its hash.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    pub id: String,
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken").field("id", &self.id).field("token", &"[redacted]").finish()
    }
}

/// A token as listed to its owner (never the secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    pub id: String,
    pub user_id: String,
    pub name: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

#[derive(FromRow)]
struct TokenRow {
    id: String,
    user_id: String,
    name: String,
    created_at: i64,
    expires_at: i64,
    revoked_at: Option<i64>,
}

impl From<TokenRow> for TokenInfo {
    fn from(r: TokenRow) -> Self {
        TokenInfo {
            id: r.id,
            user_id: r.user_id,
            name: r.name,
            created_at: from_millis(r.created_at),
            expires_at: from_millis(r.expires_at),
            revoked_at: r.revoked_at.map(from_millis),
        }
    }
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Why a sign-in failed; deliberately not saying which part was wrong.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("invalid username or password")]
    BadCredentials,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks a username and password and issues a bearer token valid for `ttl`.
pub async fn issue_token(
    db: &Db,
    username: &str,
    password: &str,
    name: &Name,
    ttl: Duration,
    request_id: Option<String>,
) -> Result<(IssuedToken, Principal), SignInError> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1");
    // No username holds NUL, and PostgreSQL refuses to compare one: such a sign-in is simply wrong.
    let username = if username.contains('\0') { "" } else { username };
    let row: Option<UserRow> =
        sqlx::query_as(&sql).bind(username).fetch_optional(db.pool()).await.map_err(StoreError::from)?;
    // Unknown users still pay for one hash check, so timing does not reveal which usernames exist.
    let stored = row.as_ref().map(|r| r.password_hash.clone()).unwrap_or_else(dummy_hash);
    let attempt = password.to_owned();
    let matches = tokio::task::spawn_blocking(move || password::verify_password(&attempt, &stored))
        .await
        .map_err(|e| StoreError::Internal(format!("password check task failed: {e}")))?;
    let user = match row {
        Some(user) if matches && user.disabled == 0 => user,
        _ => return Err(SignInError::BadCredentials),
    };
    let mut secret = [0u8; 32];
    password::fill_random(&mut secret);
    let token = format!("tg_{}", hex::encode(secret));
    let ctx =
        AuditContext { actor_id: Some(user.id.clone()), actor: user.username.clone(), on_behalf_of: None, request_id };
    // A new token touches nothing another writer reads.
    let mut tx = db.write_locking(&ctx, "tokens:issue").await?;
    let id = new_id();
    let created = tx.now();
    let expires = created + ttl;
    sqlx::query(
        "INSERT INTO api_tokens (id, user_id, token_hash, name, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&id)
    .bind(&user.id)
    .bind(token_hash(&token))
    .bind(name.as_str())
    .bind(to_millis(created))
    .bind(to_millis(expires))
    .execute(tx.conn())
    .await
    .map_err(StoreError::from)?;
    let info = TokenInfo {
        id: id.clone(),
        user_id: user.id.clone(),
        name: name.as_str().to_owned(),
        created_at: created,
        expires_at: expires,
        revoked_at: None,
    };
    tx.audit("token.issue", "token", &id, None::<&TokenInfo>, Some(&info)).await?;
    let roles = effective_roles(tx.conn(), &user.id, &user.roles).await?;
    tx.commit().await?;
    let principal = Principal { user_id: user.id, username: user.username, roles, token_id: id.clone() };
    Ok((IssuedToken { id, token, expires_at: expires }, principal))
}

fn dummy_hash() -> String {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DUMMY.get_or_init(|| password::hash_password("tollgate-timing-equaliser")).clone()
}

/// The roles a user holds directly (`direct`, as stored) and through their groups.
pub(crate) async fn effective_roles(
    conn: &mut sqlx::AnyConnection,
    user_id: &str,
    direct: &str,
) -> StoreResult<RoleSet> {
    let mut roles = RoleSet::from_column(direct);
    let groups: Vec<(String,)> = sqlx::query_as(
        "SELECT g.roles FROM user_groups g JOIN group_members m ON m.group_id = g.id WHERE m.user_id = $1",
    )
    .bind(user_id)
    .fetch_all(conn)
    .await?;
    for (g,) in groups {
        roles.extend(&RoleSet::from_column(&g));
    }
    Ok(roles)
}

/// The principal a bearer token stands for, if it is live: known, not revoked, not expired, user enabled.
pub async fn authenticate(db: &Db, token: &str) -> StoreResult<Option<Principal>> {
    let now = to_millis(db.clock().now());
    let hash = token_hash(token);
    if let Some((principal, expires_at)) = db.principals.get(&hash) {
        if expires_at > now {
            return Ok(Some(principal));
        }
    }
    let ticket = db.principals.ticket();
    // One round trip on every request: the token, its user, and each group's roles as extra rows.
    let rows: Vec<(String, i64, String, String, String, Option<String>)> = sqlx::query_as(
        "SELECT t.id, t.expires_at, u.id, u.username, u.roles, g.roles FROM api_tokens t JOIN users u ON u.id = t.user_id \
         LEFT JOIN group_members m ON m.user_id = u.id LEFT JOIN user_groups g ON g.id = m.group_id \
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 AND u.disabled = 0",
    )
    .bind(&hash)
    .bind(now)
    .fetch_all(db.pool())
    .await?;
    let Some((token_id, expires_at, user_id, username, direct, _)) = rows.first().cloned() else {
        return Ok(None);
    };
    let mut roles = RoleSet::from_column(&direct);
    for (.., group_roles) in &rows {
        if let Some(g) = group_roles {
            roles.extend(&RoleSet::from_column(g));
        }
    }
    let principal = Principal { user_id, username, roles, token_id };
    db.principals.insert(ticket, hash, (principal.clone(), expires_at));
    Ok(Some(principal))
}

/// The principal of an enabled user, roles from their groups included, as a token of theirs would give; for
/// credentials other than tokens (a signed link in an email). `token_id` is empty.
pub async fn principal_of(db: &Db, user_id: &str) -> StoreResult<Option<Principal>> {
    let mut conn = db.pool().acquire().await?;
    let user: Option<(String, String)> =
        sqlx::query_as("SELECT username, roles FROM users WHERE id = $1 AND disabled = 0")
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some((username, direct)) = user else { return Ok(None) };
    let roles = effective_roles(&mut conn, user_id, &direct).await?;
    Ok(Some(Principal { user_id: user_id.to_owned(), username, roles, token_id: String::new() }))
}

/// The tokens of `user_id`, newest first.
pub async fn list_tokens(db: &Db, user_id: &str, page: PageRequest) -> StoreResult<Page<TokenInfo>> {
    let (total,): (i64,) =
        sqlx::query_as("SELECT COUNT(*) FROM api_tokens WHERE user_id = $1").bind(user_id).fetch_one(db.pool()).await?;
    let rows: Vec<TokenRow> = sqlx::query_as(
        "SELECT id, user_id, name, created_at, expires_at, revoked_at FROM api_tokens WHERE user_id = $1 \
         ORDER BY created_at DESC, id LIMIT $2 OFFSET $3",
    )
    .bind(user_id)
    .bind(page.limit_i64())
    .bind(page.offset_i64())
    .fetch_all(db.pool())
    .await?;
    Ok(Page { items: rows.into_iter().map(Into::into).collect(), total, limit: page.limit, offset: page.offset })
}

/// Revokes a token. Only its owner, or someone who may manage every account, can; to anyone else the
/// token does not exist.
pub async fn revoke_token(db: &Db, ctx: &AuditContext, id: &str, by: &Principal) -> StoreResult<TokenInfo> {
    let mut tx = db.write(ctx).await?;
    let row: Option<TokenRow> =
        sqlx::query_as("SELECT id, user_id, name, created_at, expires_at, revoked_at FROM api_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(tx.conn())
            .await?;
    let before: TokenInfo = match row {
        Some(r) if r.user_id == by.user_id || by.roles.contains(Role::Admin) => r.into(),
        _ => return Err(StoreError::not_found("token", id)),
    };
    if before.revoked_at.is_some() {
        return Ok(before);
    }
    let now = tx.now();
    sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2")
        .bind(to_millis(now))
        .bind(id)
        .execute(tx.conn())
        .await?;
    let after = TokenInfo { revoked_at: Some(now), ..before.clone() };
    tx.audit("token.revoke", "token", id, Some(&before), Some(&after)).await?;
    tx.commit().await?;
    Ok(after)
}

/// Creates the first administrator when the store has no users. Returns the password it set, or `None`
/// when users already exist.
pub async fn bootstrap_admin(db: &Db, password: Option<Password>) -> StoreResult<Option<Password>> {
    if count_users(db).await? > 0 {
        return Ok(None);
    }
    let password = password.unwrap_or_else(Password::generate);
    let new = NewUser {
        username: Username::parse("admin")?,
        display_name: Name::parse("display_name", "Administrator")?,
        email: None,
        password: password.clone(),
        roles: RoleSet::new([Role::Admin]),
    };
    match create_user(db, &AuditContext::system("bootstrap"), new).await {
        Ok(_) => Ok(Some(password)),
        // Another replica bootstrapped at the same moment: theirs stands.
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e),
    }
}
