//! Approval policies in the store, and the shipped ones with their approver groups.

use super::policy::{ApprovalPolicy, DEFAULT_GROUPS, DEFAULT_POLICIES};
use crate::accounts::{self, GroupSpec, Role, RoleSet};
use crate::clock::to_millis;
use crate::error::{StoreError, StoreResult};
use crate::store::{AuditContext, Db};
use crate::text::{Description, Name};
use sqlx::AnyConnection;

/// Every policy, by name.
pub async fn list_policies(db: &Db) -> StoreResult<Vec<ApprovalPolicy>> {
    let mut conn = db.pool().acquire().await?;
    policies_in(&mut conn).await
}

pub(super) async fn policies_in(conn: &mut AnyConnection) -> StoreResult<Vec<ApprovalPolicy>> {
    let mut rows: Vec<(String, String)> =
        sqlx::query_as("SELECT name, body FROM approval_policies").fetch_all(conn).await?;
    // Which policy applies first must not depend on the database's collation: order by bytes, here.
    rows.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    rows.into_iter()
        .map(|(name, body)| {
            serde_json::from_str(&body)
                .map_err(|e| StoreError::Internal(format!("stored approval policy {name} does not parse: {e}")))
        })
        .collect()
}

/// Creates or replaces a policy. Changes already in approval keep the policy their round started with.
pub async fn put_policy(db: &Db, ctx: &AuditContext, policy: ApprovalPolicy) -> StoreResult<ApprovalPolicy> {
    policy.validate()?;
    let mut tx = db.write(ctx).await?;
    let before: Option<(String,)> = sqlx::query_as("SELECT body FROM approval_policies WHERE name = $1")
        .bind(&policy.name)
        .fetch_optional(tx.conn())
        .await?;
    let before: Option<ApprovalPolicy> = before.and_then(|(b,)| serde_json::from_str(&b).ok());
    let body = serde_json::to_string(&policy).map_err(|e| StoreError::Internal(e.to_string()))?;
    let now = to_millis(tx.now());
    sqlx::query("DELETE FROM approval_policies WHERE name = $1").bind(&policy.name).execute(tx.conn()).await?;
    sqlx::query("INSERT INTO approval_policies (name, body, updated_at, updated_by) VALUES ($1, $2, $3, $4)")
        .bind(&policy.name)
        .bind(&body)
        .bind(now)
        .bind(&ctx.actor)
        .execute(tx.conn())
        .await?;
    tx.audit("approval_policy.put", "approval_policy", &policy.name, before.as_ref(), Some(&policy)).await?;
    tx.commit().await?;
    Ok(policy)
}

pub async fn delete_policy(db: &Db, ctx: &AuditContext, name: &str) -> StoreResult<()> {
    let mut tx = db.write(ctx).await?;
    let before: Option<(String,)> = sqlx::query_as("SELECT body FROM approval_policies WHERE name = $1")
        .bind(name)
        .fetch_optional(tx.conn())
        .await?;
    let Some((body,)) = before else { return Err(StoreError::not_found("approval policy", name)) };
    sqlx::query("DELETE FROM approval_policies WHERE name = $1").bind(name).execute(tx.conn()).await?;
    let before: Option<ApprovalPolicy> = serde_json::from_str(&body).ok();
    tx.audit("approval_policy.delete", "approval_policy", name, before.as_ref(), None::<&ApprovalPolicy>).await?;
    tx.commit().await?;
    Ok(())
}

/// Stores the shipped policies and creates their approver groups, where missing. Returns how many of each.
pub async fn seed_defaults(db: &Db) -> StoreResult<(usize, usize)> {
    // Only a store that has never had a policy is seeded: policies an administrator deleted stay deleted.
    if !list_policies(db).await?.is_empty() {
        return Ok((0, 0));
    }
    let ctx = AuditContext::system("seed-approvals");
    let mut groups = 0;
    for (name, description) in DEFAULT_GROUPS {
        let exists: Option<(String,)> =
            sqlx::query_as("SELECT id FROM user_groups WHERE name = $1").bind(*name).fetch_optional(db.pool()).await?;
        if exists.is_none() {
            let spec = GroupSpec {
                name: Name::parse("name", name)?,
                description: Description::parse("description", description)?,
                roles: RoleSet::new([Role::Approver]),
            };
            match accounts::create_group(db, &ctx, spec).await {
                Ok(_) => groups += 1,
                // Another replica seeding at the same moment made it: theirs stands.
                Err(StoreError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    let shipped: Vec<ApprovalPolicy> = serde_json::from_str(DEFAULT_POLICIES)
        .map_err(|e| StoreError::Internal(format!("the shipped approval policies do not parse: {e}")))?;
    let mut policies = 0;
    for p in shipped {
        put_policy(db, &ctx, p).await?;
        policies += 1;
    }
    Ok((groups, policies))
}
