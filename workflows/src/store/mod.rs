//! The database both engines share: connection, migrations, and write transactions that carry their audit record.
//!
//! One implementation serves SQLite and PostgreSQL through sqlx's `Any` driver: queries use `$n`
//! placeholders (which SQLite accepts too), integers for instants and flags, and text for ids.

mod deferred;
mod filter;
mod memo;
mod migrations;
mod tx;

pub(crate) use deferred::{Deferred, Param};
pub use filter::{bind_list, placeholder, placeholders, Filter, ROWS_PER_INSERT};
pub(crate) use memo::Memo;
pub use migrations::{migrations_for, Engine};
pub use tx::{AuditContext, WriteTx};
pub(crate) use tx::{Numbered, Sealer};

use crate::clock::Clock;
use crate::error::{StoreError, StoreResult};
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Set on every SQLite connection: enforce references, wait for the writer instead of failing, fsync at
/// checkpoints only (WAL keeps that safe against crashes), and keep 32 MiB of pages in memory (the default
/// 2 MiB made every rollup pass read its segments again through the kernel). A memory map was tried too:
/// it cost a quarter of the change lifecycles and did not help the rollups. Statement journals (a
/// statement of many rows inside a transaction keeps the pages it changes) stay in memory rather than in a
/// temporary file.
const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA foreign_keys = ON",
    "PRAGMA busy_timeout = 10000",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA cache_size = -32768",
    "PRAGMA temp_store = MEMORY",
];

/// How long what writers of everything change (a token's principal, the latest process versions, the
/// approval policies) is taken from memory. Changes made through this process show at once; changes made
/// through another server process (a token revoked, a role taken away) show within this time.
const PRINCIPAL_TTL: Duration = Duration::from_secs(2);

/// How long a template's failure history, one of the risk score's inputs, is taken from memory.
pub(crate) const HISTORY_TTL: Duration = Duration::from_secs(2);

/// Users (id, username) in byte order of username.
pub(crate) type Members = Arc<Vec<(String, String)>>;

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    engine: Engine,
    clock: Clock,
    /// SQLite's writers queue here, in the process (see [`Db::write`]).
    writer: Arc<Mutex<()>>,
    pub(crate) sealer: Arc<Sealer>,
    /// Who each bearer token stands for (by its hash), with its expiry; cleared by every writer of
    /// everything (accounts, groups and revocations write that way).
    pub(crate) principals: Arc<Memo<String, (crate::accounts::Principal, i64)>>,
    /// Process definitions by (name, version): a stored version never changes.
    pub(crate) definitions: Arc<Memo<(String, i64), Arc<crate::process::StoredDefinition>>>,
    /// The latest version of each process, for new records; cleared like `principals`.
    pub(crate) latest_definitions: Arc<Memo<String, Arc<crate::process::StoredDefinition>>>,
    /// The approval policies, for new rounds; cleared like `principals`.
    pub(crate) policies: Arc<Memo<(), Arc<Vec<crate::approval::ApprovalPolicy>>>>,
    /// Enabled members (id, username) of each set of groups, for approval stages; cleared like `principals`.
    pub(crate) members: Arc<Memo<Vec<String>, Members>>,
    /// (failed, finished) of recent changes by (kind, operation signature), for risk scores.
    pub(crate) histories: Arc<Memo<(String, String), (i64, i64)>>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("engine", &self.engine).finish_non_exhaustive()
    }
}

impl Db {
    /// Connects to `url` (`sqlite://…` or `postgres://…`) and brings its schema up to date.
    pub async fn connect(url: &str, max_connections: u32, clock: Clock) -> StoreResult<Db> {
        sqlx::any::install_default_drivers();
        let engine = Engine::from_url(url)?;
        let is_sqlite = engine == Engine::Sqlite;
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if is_sqlite {
                        use sqlx::Executor;
                        for pragma in SQLITE_PRAGMAS {
                            conn.execute(*pragma).await?;
                        }
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        if is_sqlite {
            sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
        }
        migrations_for(engine)
            .run(&pool)
            .await
            .map_err(|e| StoreError::Internal(format!("database migration failed: {e}")))?;
        Ok(Db {
            pool,
            engine,
            clock,
            writer: Arc::new(Mutex::new(())),
            sealer: Arc::default(),
            principals: Arc::new(Memo::new(PRINCIPAL_TTL, 10_000)),
            definitions: Arc::new(Memo::new(Duration::MAX, 256)),
            latest_definitions: Arc::new(Memo::new(PRINCIPAL_TTL, 64)),
            policies: Arc::new(Memo::new(PRINCIPAL_TTL, 1)),
            members: Arc::new(Memo::new(PRINCIPAL_TTL, 1_000)),
            histories: Arc::new(Memo::new(HISTORY_TTL, 1_000)),
        })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Forgets what is kept in memory of things writers of everything may have changed.
    pub(crate) fn forget_shared(&self) {
        self.principals.clear();
        self.latest_definitions.clear();
        self.policies.clear();
        self.members.clear();
    }

    /// The pool, for reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Begins a write transaction whose audit records are attributed to `ctx`, serialised with every
    /// other writer. For paths whose invariants span many records (the CMDB's shape, accounts, policies).
    pub async fn write<'c>(&self, ctx: &'c AuditContext) -> StoreResult<WriteTx<'c>> {
        self.begin_write(ctx, Lock::Everything).await
    }

    /// Begins a write transaction that excludes only the writers of the same `key` (and the writers of
    /// [`Db::write`], which exclude everyone). The key names what the transaction reads and then changes
    /// when that is not one row, e.g. `incident-dedup:<key>` for the reports that share a dedup key.
    pub async fn write_locking<'c>(&self, ctx: &'c AuditContext, key: &str) -> StoreResult<WriteTx<'c>> {
        self.begin_write(ctx, Lock::Key(key)).await
    }

    /// Begins a write transaction that locks only the rows it reads for changing (`SELECT … FOR UPDATE`
    /// on PostgreSQL, as its first statement; see `change::fetch_locked`): writers of one change or
    /// incident take turns, everyone else runs side by side, and no lock costs a round trip of its own.
    pub async fn write_rows<'c>(&self, ctx: &'c AuditContext) -> StoreResult<WriteTx<'c>> {
        self.begin_write(ctx, Lock::Rows).await
    }

    /// Begins an optimistic writer on PostgreSQL: no transaction and no lock; it reads, decides, and
    /// sends all its writes as one statement that applies only if the record it changes is still as it
    /// was read (`WriteTx::commit_if_unchanged` says whether it did; the caller then decides again).
    /// Three round trips fewer than [`Db::write_rows`] for a transition. On SQLite, a row writer.
    pub(crate) async fn write_optimistic<'c>(&self, ctx: &'c AuditContext) -> StoreResult<WriteTx<'c>> {
        match self.engine {
            Engine::Postgres => WriteTx::optimistic(self, ctx).await,
            Engine::Sqlite => self.write_rows(ctx).await,
        }
    }

    /// `FOR UPDATE` on PostgreSQL, nothing on SQLite (whose writers take turns anyway).
    pub(crate) fn for_update(&self) -> &'static str {
        match self.engine {
            Engine::Postgres => " FOR UPDATE",
            Engine::Sqlite => "",
        }
    }

    async fn begin_write<'c>(&self, ctx: &'c AuditContext, lock: Lock<'_>) -> StoreResult<WriteTx<'c>> {
        let mut tx = match self.engine {
            // SQLite has one writer at a time whatever we do: writers queue here, in the process, before
            // taking a connection, so that queued writers do not hold the connections readers need, and
            // a write as the first statement means no transaction ever has to upgrade a stale snapshot.
            Engine::Sqlite => {
                let serial = self.writer.clone().lock_owned().await;
                let mut tx = WriteTx::begin(self, Some(serial), ctx).await?;
                sqlx::query("UPDATE audit_head SET last_seq = last_seq WHERE id = 1").execute(tx.conn()).await?;
                tx
            }
            // PostgreSQL runs writers side by side; transaction-scoped advisory locks keep apart those
            // that touch the same things. Key 0 is "everything": taken exclusively by `write`, shared
            // by every keyed writer. Row writers lock their rows as they read them, and nothing else.
            Engine::Postgres => {
                let mut tx = WriteTx::begin(self, None, ctx).await?;
                match lock {
                    Lock::Everything => {
                        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(0)) AS l").execute(tx.conn()).await?;
                    }
                    Lock::Rows => {}
                    Lock::Key(key) => {
                        sqlx::query(
                            "SELECT 1 FROM (SELECT pg_advisory_xact_lock_shared(0), pg_advisory_xact_lock($1)) AS l",
                        )
                        .bind(lock_id(key))
                        .execute(tx.conn())
                        .await?;
                    }
                }
                tx
            }
        };
        if matches!(lock, Lock::Everything) {
            tx.excludes_everyone();
        }
        // Read the time only once the locks are held, so a record's history never runs backwards.
        tx.stamp_now();
        Ok(tx)
    }

    /// Chains the audit records written so far (the sealer does this moments after each commit), then
    /// closes the pool.
    pub async fn close(&self) {
        self.sealer.wait_idle(Duration::from_secs(10)).await;
        if let Err(e) = crate::audit::seal(self).await {
            tracing::warn!(error = %e, "audit records could not be sealed before closing");
        }
        self.pool.close().await;
    }

    /// A plain transaction for writes that carry no audit record of their own (the sealer's, metric points),
    /// queued with SQLite's writers.
    pub(crate) async fn begin_unaudited(
        &self,
    ) -> StoreResult<(sqlx::Transaction<'static, sqlx::Any>, Option<tokio::sync::OwnedMutexGuard<()>>)> {
        let serial = match self.engine {
            Engine::Sqlite => Some(self.writer.clone().lock_owned().await),
            Engine::Postgres => None,
        };
        Ok((self.pool.begin().await?, serial))
    }
}

/// The row of `table` whose id is `id`, its `columns`, with `suffix` appended to the query (`FOR UPDATE`).
/// An id holding NUL matches nothing: no id holds one, and PostgreSQL refuses to compare one (aborting
/// the caller's transaction).
pub(crate) async fn row_by_id<R>(
    conn: &mut sqlx::AnyConnection,
    columns: &str,
    table: &str,
    id: &str,
    suffix: &str,
) -> StoreResult<Option<R>>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> + Send + Unpin,
{
    if id.contains('\0') {
        return Ok(None);
    }
    let sql = format!("SELECT {columns} FROM {table} WHERE id = $1{suffix}");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(conn).await?)
}

/// How many times an optimistic writer ([`Db::write_optimistic`]) decides again when its record moved under
/// it, before it gives up with a 409.
pub(crate) const OPTIMISTIC_ATTEMPTS: usize = 8;

/// What a write transaction keeps other writers away from.
#[derive(Clone, Copy)]
enum Lock<'a> {
    Everything,
    Key(&'a str),
    /// The rows the transaction reads for update.
    Rows,
}

/// A key's advisory-lock number: the first 8 bytes of its SHA-256, never 0 (which means everything).
pub(crate) fn lock_id(key: &str) -> i64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    match i64::from_be_bytes(first) {
        0 => 1,
        n => n,
    }
}
