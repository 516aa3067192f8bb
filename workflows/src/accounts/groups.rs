//! Groups in the store, their members, and the rule that an enabled administrator always remains.

use super::{Role, RoleSet};
use crate::clock::{from_millis, to_millis};
use crate::error::{StoreError, StoreResult};
use crate::store::{AuditContext, Db, Filter};
use crate::text::{Description, Name, Page, PageRequest};
use serde::Serialize;
use sqlx::FromRow;
use time::OffsetDateTime;

use super::users::{fetch_user, new_id, AdministratorGuard};

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
