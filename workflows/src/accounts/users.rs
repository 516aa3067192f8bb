//! Accounts in the store: creating, finding and changing users, and their passwords.

use super::{password, Email, Password, Role, RoleSet, Username};
use crate::clock::{from_millis, to_millis};
use crate::error::{StoreError, StoreResult, ValidationError};
use crate::store::{AuditContext, Db, Filter};
use crate::text::{Name, Page, PageRequest};
use serde::Serialize;
use sqlx::FromRow;
use time::OffsetDateTime;

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
pub(super) struct UserRow {
    pub(super) id: String,
    pub(super) username: String,
    pub(super) display_name: String,
    pub(super) email: Option<String>,
    pub(super) password_hash: String,
    pub(super) roles: String,
    pub(super) disabled: i64,
    pub(super) created_at: i64,
    pub(super) updated_at: i64,
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

pub(super) const USER_COLUMNS: &str =
    "id, username, display_name, email, password_hash, roles, disabled, created_at, updated_at";

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

pub(super) fn new_id() -> String {
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

pub(super) async fn fetch_user(conn: &mut sqlx::AnyConnection, id: &str) -> StoreResult<User> {
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
pub(super) struct AdministratorGuard {
    before: i64,
}

impl AdministratorGuard {
    pub(super) async fn before(conn: &mut sqlx::AnyConnection) -> StoreResult<Self> {
        Ok(AdministratorGuard { before: count_administrators(conn).await? })
    }

    pub(super) async fn check(self, conn: &mut sqlx::AnyConnection) -> StoreResult<()> {
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
