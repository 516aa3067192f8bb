//! A write transaction: the change and its audit records commit together or not at all.

use super::deferred::{self, Deferred, Param};
use super::Db;
use crate::audit::{self, AuditEntry};
use crate::error::StoreResult;
use serde::Serialize;
use sqlx::{Any, AnyConnection, Transaction};
use std::sync::atomic::{AtomicBool, Ordering};
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
    tx: Held,
    /// For an optimistic writer: the update that applies only if the record is still as it was read.
    condition: Option<Deferred>,
    _serial: Option<OwnedMutexGuard<()>>,
    db: Db,
    /// Audit records written, in order: one statement at commit numbers them in that order.
    audit_rows: Vec<Vec<Param>>,
    /// Excludes every other writer: it may change accounts, so cached principals go once it commits.
    everything: bool,
    /// Writes sent together at commit (see [`WriteTx::defer`]).
    deferred: Vec<Deferred>,
    ctx: &'c AuditContext,
    at: OffsetDateTime,
    /// Set when the acting person turns out to act for someone else (a delegate's vote).
    acting_for: Option<String>,
}

impl<'c> WriteTx<'c> {
    pub(super) async fn begin(
        db: &Db,
        serial: Option<OwnedMutexGuard<()>>,
        ctx: &'c AuditContext,
    ) -> StoreResult<WriteTx<'c>> {
        let tx = Held::Tx(db.pool().begin().await?);
        let at = db.clock().now();
        Ok(WriteTx {
            tx,
            condition: None,
            _serial: serial,
            db: db.clone(),
            audit_rows: Vec::new(),
            everything: false,
            deferred: Vec::new(),
            ctx,
            at,
            acting_for: None,
        })
    }

    pub(super) fn excludes_everyone(&mut self) {
        self.everything = true;
    }

    /// The store this transaction writes to.
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Reads the clock again: once a lock is held, so that a record's history never runs backwards.
    pub(crate) fn stamp_now(&mut self) {
        self.at = self.db.clock().now();
    }

    /// An optimistic writer on PostgreSQL: no transaction at all. It reads, then sends every write it
    /// makes as one statement at commit, applied only if the record it changes is still as it was read
    /// ([`WriteTx::condition`]); see [`Db::write_optimistic`].
    pub(super) async fn optimistic(db: &Db, ctx: &'c AuditContext) -> StoreResult<WriteTx<'c>> {
        let conn = db.pool().acquire().await?;
        Ok(WriteTx {
            tx: Held::Plain(conn),
            condition: None,
            _serial: None,
            db: db.clone(),
            audit_rows: Vec::new(),
            everything: false,
            deferred: Vec::new(),
            ctx,
            at: db.clock().now(),
            acting_for: None,
        })
    }

    /// What locks a row read for changing: `FOR UPDATE` in a PostgreSQL transaction; nothing for an
    /// optimistic writer (its condition checks the row instead) or on SQLite (whose writers take turns).
    pub(crate) fn for_update(&self) -> &'static str {
        if self.is_optimistic() {
            ""
        } else {
            self.db.for_update()
        }
    }

    /// A row read for changing it ([`super::row_by_id`]): in a PostgreSQL transaction it stays locked until
    /// the end, so the writers of one record take turns; the clock is read again once it is held.
    pub(crate) async fn row_for_update<R>(&mut self, columns: &str, table: &str, id: &str) -> StoreResult<Option<R>>
    where
        R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
    {
        let suffix = self.for_update();
        let row = super::row_by_id(self.conn(), columns, table, id, suffix).await?;
        self.stamp_now();
        Ok(row)
    }

    /// True for an optimistic writer: reads are not locked, and every write must be deferred.
    pub(crate) fn is_optimistic(&self) -> bool {
        matches!(self.tx, Held::Plain(_))
    }

    /// Sets the update an optimistic writer's writes depend on: an update ([`Deferred::update`]) whose
    /// `WHERE` matches only the record as it was read; a later condition on the same record replaces it.
    /// Inside a transaction (the record locked) it is simply the first deferred write.
    pub(crate) fn condition(&mut self, update: Deferred) {
        self.condition = Some(update);
    }

    /// The connection, for the statements of the change itself.
    pub fn conn(&mut self) -> &mut AnyConnection {
        match &mut self.tx {
            Held::Tx(tx) => tx,
            Held::Plain(conn) => conn,
        }
    }

    /// The next number of a kind of record (`CHG-000042`): from a sequence on PostgreSQL, so that writers
    /// never queue for it (a number taken by a transaction that rolls back is not reused); MAX + 1 on
    /// SQLite, whose writers take turns anyway.
    pub(crate) async fn next_number(&mut self, of: Numbered) -> StoreResult<i64> {
        let sql = match (self.db.engine(), of) {
            (super::Engine::Postgres, Numbered::Change) => "SELECT nextval('change_numbers')",
            (super::Engine::Postgres, Numbered::Incident) => "SELECT nextval('incident_numbers')",
            (super::Engine::Sqlite, Numbered::Change) => "SELECT COALESCE(MAX(number), 0) + 1 FROM changes",
            (super::Engine::Sqlite, Numbered::Incident) => "SELECT COALESCE(MAX(number), 0) + 1 FROM incidents",
        };
        let (n,): (i64,) = sqlx::query_as(sql).fetch_one(self.conn()).await?;
        Ok(n)
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
        let row = match &self.acting_for {
            Some(who) => {
                let ctx = AuditContext { on_behalf_of: Some(who.clone()), ..self.ctx.clone() };
                audit::row(&ctx, self.at, entry)
            }
            None => audit::row(self.ctx, self.at, entry),
        };
        self.audit_rows.push(row);
        Ok(())
    }

    /// Sends a write at commit, with the transaction's other deferred writes, in order. Only for writes
    /// nothing later in the transaction reads, each on rows no other deferred write touches.
    pub(crate) fn defer(&mut self, write: Deferred) {
        self.deferred.push(write);
    }

    /// Runs a write now, for one whose effect the transaction reads back before it commits.
    pub(crate) async fn run_now(&mut self, write: Deferred) -> StoreResult<()> {
        let engine = self.db.engine();
        deferred::flush(self.conn(), engine, vec![write]).await
    }

    /// Commits; an optimistic writer whose record changed since it was read commits nothing and says so
    /// (`Ok(false)`): the caller reads it again and decides again.
    pub(crate) async fn commit_if_unchanged(self) -> StoreResult<bool> {
        if self.is_optimistic() {
            self.commit_plain().await
        } else {
            self.commit_tx().await.map(|()| true)
        }
    }

    pub async fn commit(self) -> StoreResult<()> {
        if !self.is_optimistic() {
            return self.commit_tx().await;
        }
        match self.commit_plain().await? {
            true => Ok(()),
            false => Err(crate::error::StoreError::Conflict(
                "the record changed while this request was being decided; try again".to_owned(),
            )),
        }
    }

    async fn commit_plain(mut self) -> StoreResult<bool> {
        let audited = !self.audit_rows.is_empty();
        let mut writes = std::mem::take(&mut self.deferred);
        if audited {
            // One statement numbers the records in order (an optimistic write makes a handful).
            writes.push(audit::insert_rows(std::mem::take(&mut self.audit_rows)));
        }
        let applied = match self.condition.take() {
            Some(condition) => deferred::run_if(self.conn(), condition, writes).await?,
            // Nothing read to depend on (a new record): every write, as one statement, is atomic by itself.
            None => {
                deferred::run_all(self.conn(), writes).await?;
                true
            }
        };
        if applied && audited {
            self.db.sealer.wake(&self.db);
        }
        Ok(applied)
    }

    async fn commit_tx(mut self) -> StoreResult<()> {
        if let Some(condition) = self.condition.take() {
            self.deferred.insert(0, condition);
        }
        let audited = !self.audit_rows.is_empty();
        let mut records: Vec<Vec<Vec<Param>>> = Vec::new();
        let mut rows = std::mem::take(&mut self.audit_rows).into_iter().peekable();
        while rows.peek().is_some() {
            records.push(rows.by_ref().take(AUDIT_ROWS_PER_STATEMENT).collect());
        }
        if records.len() == 1 {
            // The usual case: the records go with the other deferred writes, in one statement.
            let insert = audit::insert_rows(records.remove(0));
            self.defer(insert);
        }
        let writes = std::mem::take(&mut self.deferred);
        let engine = self.db.engine();
        deferred::flush(self.conn(), engine, writes).await?;
        // Many records: one statement after another, so that they are numbered in order.
        for chunk in records {
            deferred::flush(self.conn(), engine, vec![audit::insert_rows(chunk)]).await?;
        }
        if let Held::Tx(tx) = self.tx {
            tx.commit().await?;
        }
        if self.everything {
            self.db.forget_shared();
        }
        if audited {
            self.db.sealer.wake(&self.db);
        }
        Ok(())
    }
}

/// What a writer holds: a transaction, or (an optimistic writer) a plain connection.
enum Held {
    Tx(Transaction<'static, Any>),
    Plain(sqlx::pool::PoolConnection<Any>),
}

/// Audit records per statement: ten values each, far under either engine's limit on bound values.
const AUDIT_ROWS_PER_STATEMENT: usize = 1000;

/// Records numbered for people to quote.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Numbered {
    Change,
    Incident,
}

/// How long the sealer waits after a commit wakes it before chaining what has gathered.
const SEAL_DELAY: std::time::Duration = std::time::Duration::from_millis(50);

/// Chains committed audit records in the background: one sealing task per process at a time, woken by
/// every commit that wrote audit records.
#[derive(Debug, Default)]
pub(crate) struct Sealer {
    /// Records were committed since the running task last looked.
    pending: AtomicBool,
    running: AtomicBool,
}

impl Sealer {
    /// Waits (up to `limit`) for a running sealing task to finish.
    pub(crate) async fn wait_idle(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while self.running.load(Ordering::SeqCst) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    fn wake(&self, db: &Db) {
        self.pending.store(true, Ordering::SeqCst);
        if self.running.swap(true, Ordering::SeqCst) {
            return;
        }
        let db = db.clone();
        tokio::spawn(async move {
            let sealer = db.sealer.clone();
            loop {
                // Let the commits of the next moment gather: one pass seals them all.
                tokio::time::sleep(SEAL_DELAY).await;
                if sealer.pending.swap(false, Ordering::SeqCst) {
                    if let Err(e) = audit::seal(&db).await {
                        // The records stay unsealed until the next commit (or `audit verify`) seals them.
                        tracing::warn!(error = %e, "audit records could not be sealed");
                    }
                    continue;
                }
                sealer.running.store(false, Ordering::SeqCst);
                // A commit between the last look and now found the task still running: look again.
                if !sealer.pending.load(Ordering::SeqCst) || sealer.running.swap(true, Ordering::SeqCst) {
                    break;
                }
            }
        });
    }
}

fn json_error(e: serde_json::Error) -> crate::error::StoreError {
    crate::error::StoreError::Internal(format!("audit snapshot could not be serialised: {e}"))
}
