//! A write transaction: the change and its audit records commit together or not at all.

use crate::audit::{self, AuditEntry};
use crate::clock::Clock;
use crate::error::StoreResult;
use serde::Serialize;
use sqlx::{Any, AnyConnection, AnyPool, Transaction};
use time::OffsetDateTime;
use tokio::sync::OwnedMutexGuard;

/// Who is acting, for whom, and under which request: stamped on every audit record a write makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditContext {
    /// The acting user's id; `None` for the system itself.
    pub actor_id: Option<String>,
    /// The acting user's name, or `system`.
    pub actor: String,
    /// The user a delegate acted for, if any.
    pub on_behalf_of: Option<String>,
    pub request_id: Option<String>,
}

impl AuditContext {
    /// Actions the server takes by itself (bootstrap, timers).
    pub fn system(reason: &str) -> Self {
        AuditContext {
            actor_id: None,
            actor: "system".to_owned(),
            on_behalf_of: None,
            request_id: Some(reason.to_owned()),
        }
    }
}

/// An open write transaction. Dropping it without [`WriteTx::commit`] rolls everything back.
pub struct WriteTx<'c> {
    tx: Transaction<'static, Any>,
    _serial: Option<OwnedMutexGuard<()>>,
    ctx: &'c AuditContext,
    at: OffsetDateTime,
    /// Set when the acting person turns out to act for someone else (a delegate's vote).
    acting_for: Option<String>,
}

impl<'c> WriteTx<'c> {
    pub(super) async fn begin(
        pool: &AnyPool,
        serial: Option<OwnedMutexGuard<()>>,
        ctx: &'c AuditContext,
        clock: &Clock,
    ) -> StoreResult<WriteTx<'c>> {
        let mut tx = pool.begin().await?;
        // Lock the audit chain's head first. On PostgreSQL the row lock orders concurrent writers so
        // the chain never forks; on SQLite a write as the first statement means the transaction never
        // has to upgrade a stale read snapshot.
        sqlx::query("UPDATE audit_head SET last_seq = last_seq WHERE id = 1").execute(&mut *tx).await?;
        // Read the time only now that this writer holds the chain, so `at` never runs backwards along it.
        Ok(WriteTx { tx, _serial: serial, ctx, at: clock.now(), acting_for: None })
    }

    /// The connection, for the statements of the change itself.
    pub fn conn(&mut self) -> &mut AnyConnection {
        &mut self.tx
    }

    /// The instant this transaction stamps on what it writes.
    pub fn now(&self) -> OffsetDateTime {
        self.at
    }

    pub fn context(&self) -> &AuditContext {
        self.ctx
    }

    /// Records that the following audit records are made for `who` (a delegate acting for them).
    pub fn acting_for(&mut self, who: Option<String>) {
        self.acting_for = who;
    }

    /// Appends an audit record of `action` on an entity, with its state before and after.
    pub async fn audit<B: Serialize, A: Serialize>(
        &mut self,
        action: &str,
        entity_type: &str,
        entity_id: &str,
        before: Option<&B>,
        after: Option<&A>,
    ) -> StoreResult<()> {
        let entry = AuditEntry {
            action,
            entity_type,
            entity_id,
            before: before.map(serde_json::to_string).transpose().map_err(json_error)?,
            after: after.map(serde_json::to_string).transpose().map_err(json_error)?,
        };
        match &self.acting_for {
            Some(who) => {
                let ctx = AuditContext { on_behalf_of: Some(who.clone()), ..self.ctx.clone() };
                audit::append(&mut self.tx, &ctx, self.at, entry).await
            }
            None => audit::append(&mut self.tx, self.ctx, self.at, entry).await,
        }
    }

    pub async fn commit(self) -> StoreResult<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

fn json_error(e: serde_json::Error) -> crate::error::StoreError {
    crate::error::StoreError::Internal(format!("audit snapshot could not be serialised: {e}"))
}
