//! Delegation: an approver's votes cast by a substitute for a while.

use crate::accounts::{Principal, Role};
use crate::clock::{from_millis, to_millis};
use crate::error::{StoreError, StoreResult, ValidationError};
use crate::freeze::Window;
use crate::store::{AuditContext, Db};
use serde::Serialize;
use time::OffsetDateTime;

/// A time-bounded hand-over of approval rights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Delegation {
    pub id: String,
    pub from_user_id: String,
    pub to_user_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
}

type DelegationRow = (String, String, String, i64, i64);

fn delegation(r: DelegationRow) -> Delegation {
    Delegation { id: r.0, from_user_id: r.1, to_user_id: r.2, starts_at: from_millis(r.3), ends_at: from_millis(r.4) }
}

/// `from` hands their approvals to `to_user_id` during `window`.
pub async fn delegate(
    db: &Db,
    ctx: &AuditContext,
    from: &Principal,
    to_user_id: &str,
    window: Window,
) -> StoreResult<Delegation> {
    if to_user_id == from.user_id {
        return Err(ValidationError::new("to_user_id", "you cannot delegate to yourself").into());
    }
    let mut tx = db.write(ctx).await?;
    let target = if to_user_id.contains('\0') {
        None
    } else {
        sqlx::query_as::<_, (i64, String)>("SELECT disabled, roles FROM users WHERE id = $1")
            .bind(to_user_id)
            .fetch_optional(tx.conn())
            .await?
    };
    let Some((0, direct)) = target else {
        return Err(ValidationError::new("to_user_id", format!("no enabled user has id {to_user_id}")).into());
    };
    // A substitute must be able to vote at all, or the hand-over would silently lose the approver's votes.
    let roles = crate::accounts::effective_roles(tx.conn(), to_user_id, &direct).await?;
    if !roles.permits(&[Role::Approver, Role::ChangeManager]) {
        return Err(
            ValidationError::new("to_user_id", "a substitute must hold the approver or change-manager role").into()
        );
    }
    let d = Delegation {
        id: uuid::Uuid::new_v4().to_string(),
        from_user_id: from.user_id.clone(),
        to_user_id: to_user_id.to_owned(),
        starts_at: window.start,
        ends_at: window.end,
    };
    sqlx::query(
        "INSERT INTO delegations (id, from_user_id, to_user_id, starts_at, ends_at, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&d.id)
    .bind(&d.from_user_id)
    .bind(&d.to_user_id)
    .bind(to_millis(d.starts_at))
    .bind(to_millis(d.ends_at))
    .bind(to_millis(tx.now()))
    .execute(tx.conn())
    .await?;
    tx.audit("delegation.create", "delegation", &d.id, None::<&Delegation>, Some(&d)).await?;
    tx.commit().await?;
    Ok(d)
}

/// Delegations from or to `user_id`, by start.
pub async fn delegations_of(db: &Db, user_id: &str) -> StoreResult<Vec<Delegation>> {
    let rows: Vec<DelegationRow> = sqlx::query_as(
        "SELECT id, from_user_id, to_user_id, starts_at, ends_at FROM delegations \
         WHERE from_user_id = $1 OR to_user_id = $1 ORDER BY starts_at, id",
    )
    .bind(user_id)
    .fetch_all(db.pool())
    .await?;
    Ok(rows.into_iter().map(delegation).collect())
}

/// Ends a delegation; only its giver (or an administrator) can.
pub async fn revoke_delegation(db: &Db, ctx: &AuditContext, id: &str, by: &Principal) -> StoreResult<()> {
    let mut tx = db.write(ctx).await?;
    let row: Option<DelegationRow> = if id.contains('\0') {
        None
    } else {
        sqlx::query_as("SELECT id, from_user_id, to_user_id, starts_at, ends_at FROM delegations WHERE id = $1")
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
    };
    let d = match row.map(delegation) {
        Some(d) if d.from_user_id == by.user_id || by.roles.contains(Role::Admin) => d,
        _ => return Err(StoreError::not_found("delegation", id)),
    };
    sqlx::query("DELETE FROM delegations WHERE id = $1").bind(id).execute(tx.conn()).await?;
    tx.audit("delegation.revoke", "delegation", id, Some(&d), None::<&Delegation>).await?;
    tx.commit().await?;
    Ok(())
}
