//! Users, groups and tokens in the store. Every mutation writes its audit record in the same transaction.

use super::{password, Email, Password, Principal, Role, RoleSet, Username};
use crate::clock::{from_millis, to_millis};
use crate::error::{StoreError, StoreResult, ValidationError};
use crate::store::{AuditContext, Db, Filter};
use crate::text::{Description, Name, Page, PageRequest};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::FromRow;
use time::{Duration, OffsetDateTime};

/// A user as the API shows it; the password hash never leaves the store.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct User {
    pub id: String,
    pub username: String,
    pub display_name: String,
    pub email: Option<String>,
    /// Roles given to the user directly.
    pub roles: Vec<Role>,
    pub disabled: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(FromRow)]
struct UserRow {
    id: String,
    username: String,
    display_name: String,
    email: Option<String>,
    password_hash: String,
    roles: String,
    disabled: i64,
    created_at: i64,
    updated_at: i64,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            id: r.id,
            username: r.username,
            display_name: r.display_name,
            email: r.email,
            roles: RoleSet::from_column(&r.roles).iter().collect(),
            disabled: r.disabled != 0,
            created_at: from_millis(r.created_at),
            updated_at: from_millis(r.updated_at),
        }
    }
}

const USER_COLUMNS: &str = "id, username, display_name, email, password_hash, roles, disabled, created_at, updated_at";

/// A new account.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub username: Username,
    pub display_name: Name,
    pub email: Option<Email>,
    pub password: Password,
    pub roles: RoleSet,
}

/// The editable fields of an account (all replaced).
#[derive(Debug, Clone)]
pub struct UserUpdate {
    pub display_name: Name,
    pub email: Option<Email>,
    pub roles: RoleSet,
    pub disabled: bool,
}

/// Filters for [`list_users`].
#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    /// Substring of the username or display name.
    pub q: Option<String>,
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

async fn hash_off_runtime(password: Password) -> StoreResult<String> {
    tokio::task::spawn_blocking(move || password::hash_password(password.expose()))
        .await
        .map_err(|e| StoreError::Internal(format!("password hashing task failed: {e}")))
}

pub async fn create_user(db: &Db, ctx: &AuditContext, new: NewUser) -> StoreResult<User> {
    let hash = hash_off_runtime(new.password).await?;
    let mut tx = db.write(ctx).await?;
    let now = to_millis(tx.now());
    let id = new_id();
    sqlx::query(
        "INSERT INTO users (id, username, display_name, email, password_hash, roles, disabled, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 0, $7, $7)",
    )
    .bind(&id)
    .bind(new.username.as_str())
    .bind(new.display_name.as_str())
    .bind(new.email.as_ref().map(Email::as_str))
    .bind(&hash)
    .bind(new.roles.to_column())
    .bind(now)
    .execute(tx.conn())
    .await
    .map_err(|e| StoreError::unique_as_conflict(e, format!("username {} is taken", new.username.as_str())))?;
    let user = fetch_user(tx.conn(), &id).await?;
    tx.audit("user.create", "user", &id, None::<&User>, Some(&user)).await?;
    tx.commit().await?;
    Ok(user)
}

async fn fetch_user(conn: &mut sqlx::AnyConnection, id: &str) -> StoreResult<User> {
    let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
    let row: Option<UserRow> = sqlx::query_as(&sql).bind(id).fetch_optional(conn).await?;
    row.map(User::from).ok_or_else(|| StoreError::not_found("user", id))
}

pub async fn get_user(db: &Db, id: &str) -> StoreResult<User> {
    let mut conn = db.pool().acquire().await?;
    fetch_user(&mut conn, id).await
}

pub async fn count_users(db: &Db) -> StoreResult<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM users").fetch_one(db.pool()).await?;
    Ok(n)
}

pub async fn list_users(db: &Db, q: &UserQuery, page: PageRequest) -> StoreResult<Page<User>> {
    let mut f = Filter::new();
    if let Some(text) = &q.q {
        f.contains("username || ' ' || display_name", text);
    }
    if let Some(role) = q.role {
        // Roles are stored as a sorted comma list; match the whole name between commas.
        f.text("',' || roles || ','", "LIKE", format!("%,{},%", role.as_str()));
    }
    if let Some(disabled) = q.disabled {
        f.int("disabled", "=", i64::from(disabled));
    }
    let rows: Page<UserRow> = f.page(db.pool(), USER_COLUMNS, "users", "username", page).await?;
    Ok(rows.map(User::from))
}

pub async fn update_user(db: &Db, ctx: &AuditContext, id: &str, update: UserUpdate) -> StoreResult<User> {
    let mut tx = db.write(ctx).await?;
    let guard = AdministratorGuard::before(tx.conn()).await?;
    let before = fetch_user(tx.conn(), id).await?;
    let now = to_millis(tx.now());
    sqlx::query(
        "UPDATE users SET display_name = $1, email = $2, roles = $3, disabled = $4, updated_at = $5 WHERE id = $6",
    )
    .bind(update.display_name.as_str())
    .bind(update.email.as_ref().map(Email::as_str))
    .bind(update.roles.to_column())
    .bind(i64::from(update.disabled))
    .bind(now)
    .bind(id)
    .execute(tx.conn())
    .await?;
    if update.disabled && !before.disabled {
        // A disabled account must lose access at once, not when its tokens expire.
        sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .execute(tx.conn())
            .await?;
    }
    guard.check(tx.conn()).await?;
    let after = fetch_user(tx.conn(), id).await?;
    tx.audit("user.update", "user", id, Some(&before), Some(&after)).await?;
    tx.commit().await?;
    Ok(after)
}

/// Enabled users who hold `admin`, directly or through a group.
async fn count_administrators(conn: &mut sqlx::AnyConnection) -> StoreResult<i64> {
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM users u WHERE u.disabled = 0 AND (',' || u.roles || ',' LIKE '%,admin,%' \
         OR u.id IN (SELECT m.user_id FROM group_members m JOIN user_groups g ON g.id = m.group_id \
                     WHERE ',' || g.roles || ',' LIKE '%,admin,%'))",
    )
    .fetch_one(conn)
    .await?;
    Ok(n)
}

/// Guards a change that could remove the last enabled administrator: counted before the change and
/// checked after its statements, inside its transaction, so a refused change rolls back whole.
struct AdministratorGuard {
    before: i64,
}

impl AdministratorGuard {
    async fn before(conn: &mut sqlx::AnyConnection) -> StoreResult<Self> {
        Ok(AdministratorGuard { before: count_administrators(conn).await? })
    }

    async fn check(self, conn: &mut sqlx::AnyConnection) -> StoreResult<()> {
        if self.before > 0 && count_administrators(conn).await? == 0 {
            return Err(StoreError::Conflict(
                "this would leave no enabled administrator: make someone else an administrator first".to_owned(),
            ));
        }
        Ok(())
    }
}

/// Sets a new password and revokes the user's tokens but `keep_token` (the one a user changing their own
/// password is using). With `current`, the old password must match (a user changing their own).
pub async fn set_password(
    db: &Db,
    ctx: &AuditContext,
    id: &str,
    current: Option<&str>,
    new: Password,
    keep_token: Option<&str>,
) -> StoreResult<()> {
    if let Some(current) = current {
        let row: Option<(String,)> =
            sqlx::query_as("SELECT password_hash FROM users WHERE id = $1").bind(id).fetch_optional(db.pool()).await?;
        let (hash,) = row.ok_or_else(|| StoreError::not_found("user", id))?;
        let current = current.to_owned();
        let matches = tokio::task::spawn_blocking(move || password::verify_password(&current, &hash))
            .await
            .map_err(|e| StoreError::Internal(format!("password check task failed: {e}")))?;
        if !matches {
            return Err(ValidationError::new("current_password", "does not match").into());
        }
    }
    let hash = hash_off_runtime(new).await?;
    let mut tx = db.write(ctx).await?;
    let user = fetch_user(tx.conn(), id).await?;
    sqlx::query("UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3")
        .bind(&hash)
        .bind(to_millis(tx.now()))
        .bind(id)
        .execute(tx.conn())
        .await?;
    // Whoever knew the old password may hold a token made with it.
    sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL AND id <> $3")
        .bind(to_millis(tx.now()))
        .bind(id)
        .bind(keep_token.unwrap_or(""))
        .execute(tx.conn())
        .await?;
    // The audit records that it changed, never what to.
    tx.audit("user.password", "user", id, None::<&User>, Some(&serde_json::json!({"username": user.username}))).await?;
    tx.commit().await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Groups

/// A group of users; its roles apply to every member.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Group {
    pub id: String,
    pub name: String,
    pub description: String,
    pub roles: Vec<Role>,
    /// Member user ids, sorted.
    pub members: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(FromRow)]
struct GroupRow {
    id: String,
    name: String,
    description: String,
    roles: String,
    created_at: i64,
    updated_at: i64,
}

/// A new group, or the new values of one (all replaced).
#[derive(Debug, Clone)]
pub struct GroupSpec {
    pub name: Name,
    pub description: Description,
    pub roles: RoleSet,
}

async fn fetch_group(conn: &mut sqlx::AnyConnection, id: &str) -> StoreResult<Group> {
    let row: Option<GroupRow> =
        sqlx::query_as("SELECT id, name, description, roles, created_at, updated_at FROM user_groups WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let row = row.ok_or_else(|| StoreError::not_found("group", id))?;
    let members: Vec<(String,)> =
        sqlx::query_as("SELECT user_id FROM group_members WHERE group_id = $1 ORDER BY user_id")
            .bind(id)
            .fetch_all(&mut *conn)
            .await?;
    Ok(Group {
        id: row.id,
        name: row.name,
        description: row.description,
        roles: RoleSet::from_column(&row.roles).iter().collect(),
        members: members.into_iter().map(|(m,)| m).collect(),
        created_at: from_millis(row.created_at),
        updated_at: from_millis(row.updated_at),
    })
}

pub async fn get_group(db: &Db, id: &str) -> StoreResult<Group> {
    let mut conn = db.pool().acquire().await?;
    fetch_group(&mut conn, id).await
}

pub async fn list_groups(db: &Db, q: Option<&str>, page: PageRequest) -> StoreResult<Page<Group>> {
    let mut f = Filter::new();
    if let Some(text) = q {
        f.contains("name", text);
    }
    let ids: Page<(String,)> = f.page(db.pool(), "id", "user_groups", "name", page).await?;
    let mut conn = db.pool().acquire().await?;
    let mut items = Vec::with_capacity(ids.items.len());
    for (id,) in &ids.items {
        items.push(fetch_group(&mut conn, id).await?);
    }
    Ok(Page { items, total: ids.total, limit: ids.limit, offset: ids.offset })
}

pub async fn create_group(db: &Db, ctx: &AuditContext, spec: GroupSpec) -> StoreResult<Group> {
    let mut tx = db.write(ctx).await?;
    let id = new_id();
    let now = to_millis(tx.now());
    sqlx::query(
        "INSERT INTO user_groups (id, name, description, roles, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(&id)
    .bind(spec.name.as_str())
    .bind(spec.description.as_str())
    .bind(spec.roles.to_column())
    .bind(now)
    .execute(tx.conn())
    .await
    .map_err(|e| StoreError::unique_as_conflict(e, format!("group name {} is taken", spec.name.as_str())))?;
    let group = fetch_group(tx.conn(), &id).await?;
    tx.audit("group.create", "group", &id, None::<&Group>, Some(&group)).await?;
    tx.commit().await?;
    Ok(group)
}

pub async fn update_group(db: &Db, ctx: &AuditContext, id: &str, spec: GroupSpec) -> StoreResult<Group> {
    let mut tx = db.write(ctx).await?;
    let guard = AdministratorGuard::before(tx.conn()).await?;
    let before = fetch_group(tx.conn(), id).await?;
    sqlx::query("UPDATE user_groups SET name = $1, description = $2, roles = $3, updated_at = $4 WHERE id = $5")
        .bind(spec.name.as_str())
        .bind(spec.description.as_str())
        .bind(spec.roles.to_column())
        .bind(to_millis(tx.now()))
        .bind(id)
        .execute(tx.conn())
        .await
        .map_err(|e| StoreError::unique_as_conflict(e, format!("group name {} is taken", spec.name.as_str())))?;
    guard.check(tx.conn()).await?;
    let after = fetch_group(tx.conn(), id).await?;
    tx.audit("group.update", "group", id, Some(&before), Some(&after)).await?;
    tx.commit().await?;
    Ok(after)
}

pub async fn delete_group(db: &Db, ctx: &AuditContext, id: &str) -> StoreResult<()> {
    let mut tx = db.write(ctx).await?;
    let guard = AdministratorGuard::before(tx.conn()).await?;
    let before = fetch_group(tx.conn(), id).await?;
    sqlx::query("DELETE FROM group_members WHERE group_id = $1").bind(id).execute(tx.conn()).await?;
    sqlx::query("DELETE FROM user_groups WHERE id = $1").bind(id).execute(tx.conn()).await?;
    guard.check(tx.conn()).await?;
    tx.audit("group.delete", "group", id, Some(&before), None::<&Group>).await?;
    tx.commit().await?;
    Ok(())
}

/// Adds or removes `user_id` in the group; doing what is already done changes nothing and writes no record.
pub async fn set_membership(
    db: &Db,
    ctx: &AuditContext,
    group_id: &str,
    user_id: &str,
    member: bool,
) -> StoreResult<Group> {
    let mut tx = db.write(ctx).await?;
    let guard = AdministratorGuard::before(tx.conn()).await?;
    let before = fetch_group(tx.conn(), group_id).await?;
    fetch_user(tx.conn(), user_id).await?;
    let is_member = before.members.iter().any(|m| m == user_id);
    if is_member == member {
        return Ok(before);
    }
    if member {
        sqlx::query("INSERT INTO group_members (group_id, user_id) VALUES ($1, $2)")
            .bind(group_id)
            .bind(user_id)
            .execute(tx.conn())
            .await?;
    } else {
        sqlx::query("DELETE FROM group_members WHERE group_id = $1 AND user_id = $2")
            .bind(group_id)
            .bind(user_id)
            .execute(tx.conn())
            .await?;
    }
    guard.check(tx.conn()).await?;
    let after = fetch_group(tx.conn(), group_id).await?;
    let action = if member { "group.add_member" } else { "group.remove_member" };
    tx.audit(action, "group", group_id, Some(&before), Some(&after)).await?;
    tx.commit().await?;
    Ok(after)
}

// ---------------------------------------------------------------------------------------------------------
// Tokens

/// A freshly issued bearer token. `token` is shown this once; the store keeps only its hash.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IssuedToken {
    pub id: String,
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
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
    let mut tx = db.write(&ctx).await?;
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

async fn effective_roles(conn: &mut sqlx::AnyConnection, user_id: &str, direct: &str) -> StoreResult<RoleSet> {
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
    let row: Option<(String, String, String, String)> = sqlx::query_as(
        "SELECT t.id, u.id, u.username, u.roles FROM api_tokens t JOIN users u ON u.id = t.user_id \
         WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND t.expires_at > $2 AND u.disabled = 0",
    )
    .bind(token_hash(token))
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    let Some((token_id, user_id, username, direct)) = row else {
        return Ok(None);
    };
    let mut conn = db.pool().acquire().await?;
    let roles = effective_roles(&mut conn, &user_id, &direct).await?;
    Ok(Some(Principal { user_id, username, roles, token_id }))
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
