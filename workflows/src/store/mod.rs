//! The database both engines share: connection, migrations, and write transactions that carry their audit record.
//!
//! One implementation serves SQLite and PostgreSQL through sqlx's `Any` driver: queries use `$n`
//! placeholders (which SQLite accepts too), integers for instants and flags, and text for ids.

mod filter;
mod migrations;
mod tx;

pub use filter::{bind_list, Filter};
pub use migrations::{migrations_for, Engine};
pub use tx::{AuditContext, WriteTx};

use crate::clock::Clock;
use crate::error::{StoreError, StoreResult};
use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// Set on every SQLite connection: enforce references, wait for the writer instead of failing, and
/// fsync at checkpoints only (WAL keeps that safe against crashes).
const SQLITE_PRAGMAS: &[&str] =
    &["PRAGMA foreign_keys = ON", "PRAGMA busy_timeout = 10000", "PRAGMA synchronous = NORMAL"];

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    engine: Engine,
    clock: Clock,
    /// Writers of this process queue here (see [`Db::write`]).
    writer: Arc<Mutex<()>>,
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
        Ok(Db { pool, engine, clock, writer: Arc::new(Mutex::new(())) })
    }

    pub fn engine(&self) -> Engine {
        self.engine
    }

    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// The pool, for reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// True when the database answers a trivial query.
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    /// Begins a write transaction whose audit records are attributed to `ctx`.
    pub async fn write<'c>(&self, ctx: &'c AuditContext) -> StoreResult<WriteTx<'c>> {
        // Writers queue here, in the process, before taking a connection: SQLite has one writer at a time,
        // and on PostgreSQL every writer waits on the audit chain's row lock anyway, so a queue of writers
        // holding pooled connections would only starve the readers (every request authenticates).
        let serial = self.writer.clone().lock_owned().await;
        WriteTx::begin(&self.pool, Some(serial), ctx, &self.clock).await
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
