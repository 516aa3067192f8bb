//! What the server signs with, kept in the database: a secret per purpose (created on first use, so signed
//! links already sent survive a restart and every server of a cluster signs alike), and the signed links
//! that were used, so a one-time link works once.

use crate::clock::to_millis;
use crate::error::StoreResult;
use crate::store::{AuditContext, Db};

/// The secret named `name`, 32 random bytes, created the first time it is asked for.
pub async fn secret(db: &Db, name: &str) -> StoreResult<Vec<u8>> {
    if let Some(found) = stored(db, name).await? {
        return Ok(found);
    }
    let mut fresh = [0u8; 32];
    getrandom::getrandom(&mut fresh)
        .map_err(|e| crate::StoreError::Internal(format!("no randomness for a new secret: {e}")))?;
    let ctx = AuditContext::system("signing");
    let mut tx = db.write_rows(&ctx).await?;
    // Two servers starting together: the first insert wins and both read it back.
    sqlx::query(
        "INSERT INTO server_secrets (name, value, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(hex::encode(fresh))
    .bind(to_millis(tx.now()))
    .execute(tx.conn())
    .await?;
    tx.commit().await?;
    stored(db, name).await?.ok_or_else(|| crate::StoreError::Internal(format!("the secret {name} was not kept")))
}

async fn stored(db: &Db, name: &str) -> StoreResult<Option<Vec<u8>>> {
    let row: Option<(String,)> =
        sqlx::query_as("SELECT value FROM server_secrets WHERE name = $1").bind(name).fetch_optional(db.pool()).await?;
    match row {
        None => Ok(None),
        Some((value,)) => hex::decode(value)
            .map(Some)
            .map_err(|e| crate::StoreError::Internal(format!("the stored secret {name} is damaged: {e}"))),
    }
}

/// Claims a one-time link by its signature: true the first time, false ever after.
pub async fn claim_link(db: &Db, signature: &str, change_id: &str) -> StoreResult<bool> {
    let ctx = AuditContext::system("email link");
    let mut tx = db.write_rows(&ctx).await?;
    let done = sqlx::query(
        "INSERT INTO email_links_used (signature, change_id, used_at) VALUES ($1, $2, $3) \
         ON CONFLICT (signature) DO NOTHING",
    )
    .bind(signature)
    .bind(change_id)
    .bind(to_millis(tx.now()))
    .execute(tx.conn())
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// Gives a claimed link back, when what it was used for did not happen.
pub async fn release_link(db: &Db, signature: &str) -> StoreResult<()> {
    let ctx = AuditContext::system("email link");
    let mut tx = db.write_rows(&ctx).await?;
    sqlx::query("DELETE FROM email_links_used WHERE signature = $1").bind(signature).execute(tx.conn()).await?;
    tx.commit().await
}

/// True when the one-time link with this signature was used.
pub async fn link_used(db: &Db, signature: &str) -> StoreResult<bool> {
    let row: Option<(String,)> = sqlx::query_as("SELECT signature FROM email_links_used WHERE signature = $1")
        .bind(signature)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.is_some())
}
