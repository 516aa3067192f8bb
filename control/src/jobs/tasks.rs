//! The host task queue in the database: a job step enqueues work for one host's agent and waits for its
//! outcome; agents poll for their pending tasks and report outcomes. A task delivered but not answered
//! within [`REDELIVER_AFTER_MS`] is delivered again (the agent may have restarted; tasks are idempotent).

use crate::task::{Action, HostTask, Outcome};
use sqlx::Row;
use tollgate_workflows::clock::to_millis;
use tollgate_workflows::{Db, StoreError, StoreResult};

/// How long a delivered task may go unanswered before it is handed out again.
pub const REDELIVER_AFTER_MS: i64 = 120_000;

fn json_err(e: serde_json::Error) -> StoreError {
    StoreError::Internal(format!("a host task did not (de)serialise: {e}"))
}

/// Enqueues `action` for `agent_id` under `id` unless a task with that id exists (a step run again).
pub async fn enqueue(db: &Db, id: &str, job_id: &str, agent_id: &str, action: &Action) -> StoreResult<()> {
    let now = to_millis(db.clock().now());
    let action = serde_json::to_string(action).map_err(json_err)?;
    sqlx::query(
        "INSERT INTO host_tasks (id, job_id, agent_id, action, state, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'pending', $5, $5) ON CONFLICT (id) DO NOTHING",
    )
    .bind(id)
    .bind(job_id)
    .bind(agent_id)
    .bind(action)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// The outcome of a task, once its agent reported one.
pub async fn outcome(db: &Db, id: &str) -> StoreResult<Option<Outcome>> {
    let row: Option<(Option<String>,)> =
        sqlx::query_as("SELECT outcome FROM host_tasks WHERE id = $1").bind(id).fetch_optional(db.pool()).await?;
    match row.and_then(|(o,)| o) {
        Some(text) => Ok(Some(serde_json::from_str(&text).map_err(json_err)?)),
        None => Ok(None),
    }
}

/// An agent unheard of for longer than this (a poll comes at least every 20 s) serves its host no more.
pub const AGENT_GONE_AFTER_MS: i64 = 120_000;

/// Hands out the agent's tasks that are pending, or delivered long enough ago to be lost, oldest first.
/// Each call also marks the agent as alive.
pub async fn take(db: &Db, agent_id: &str, limit: i64) -> StoreResult<Vec<HostTask>> {
    let now = to_millis(db.clock().now());
    sqlx::query("UPDATE agent_hosts SET seen_at = $1 WHERE agent_id = $2")
        .bind(now)
        .bind(agent_id)
        .execute(db.pool())
        .await?;
    let rows = sqlx::query(
        "SELECT id, action FROM host_tasks WHERE agent_id = $1 \
         AND (state = 'pending' OR (state = 'delivered' AND delivered_at < $2)) ORDER BY created_at, id LIMIT $3",
    )
    .bind(agent_id)
    .bind(now - REDELIVER_AFTER_MS)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let mut tasks = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get("id")?;
        let action: String = row.try_get("action")?;
        tasks.push(HostTask { id, action: serde_json::from_str(&action).map_err(json_err)? });
    }
    {
        for t in &tasks {
            sqlx::query(
                "UPDATE host_tasks SET state = 'delivered', delivered_at = $1, updated_at = $1 \
                 WHERE id = $2 AND agent_id = $3 AND outcome IS NULL",
            )
            .bind(now)
            .bind(&t.id)
            .bind(agent_id)
            .execute(db.pool())
            .await?;
        }
    }
    Ok(tasks)
}

/// Whether the agent has anything to take now.
pub async fn waiting(db: &Db, agent_id: &str) -> StoreResult<bool> {
    let now = to_millis(db.clock().now());
    let (n,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM host_tasks WHERE agent_id = $1 \
         AND (state = 'pending' OR (state = 'delivered' AND delivered_at < $2))",
    )
    .bind(agent_id)
    .bind(now - REDELIVER_AFTER_MS)
    .fetch_one(db.pool())
    .await?;
    Ok(n > 0)
}

/// What reporting an outcome did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    Recorded,
    /// The same outcome was already recorded (a re-sent report).
    Already,
    /// No such task for this agent.
    Unknown,
}

/// Records the outcome an agent reported for one of its tasks. The first outcome stands.
pub async fn report(db: &Db, agent_id: &str, id: &str, outcome: &Outcome) -> StoreResult<Reported> {
    let now = to_millis(db.clock().now());
    let text = serde_json::to_string(outcome).map_err(json_err)?;
    let done = sqlx::query(
        "UPDATE host_tasks SET state = 'done', outcome = $1, updated_at = $2 \
         WHERE id = $3 AND agent_id = $4 AND outcome IS NULL",
    )
    .bind(text)
    .bind(now)
    .bind(id)
    .bind(agent_id)
    .execute(db.pool())
    .await?
    .rows_affected();
    if done > 0 {
        return Ok(Reported::Recorded);
    }
    let known: Option<(String,)> = sqlx::query_as("SELECT id FROM host_tasks WHERE id = $1 AND agent_id = $2")
        .bind(id)
        .bind(agent_id)
        .fetch_optional(db.pool())
        .await?;
    Ok(if known.is_some() { Reported::Already } else { Reported::Unknown })
}

/// Records what an agent said of itself.
pub async fn hello(db: &Db, agent_id: &str, hello: &crate::task::Hello) -> StoreResult<()> {
    let now = to_millis(db.clock().now());
    sqlx::query(
        "INSERT INTO agent_hosts (agent_id, hypervisor, peer_uri, seen_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (agent_id) DO UPDATE SET hypervisor = excluded.hypervisor, peer_uri = excluded.peer_uri, \
         seen_at = excluded.seen_at",
    )
    .bind(agent_id)
    .bind(&hello.hypervisor)
    .bind(&hello.peer_uri)
    .bind(now)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// How other hosts reach this agent's hypervisor, from its last hello.
pub async fn peer_uri(db: &Db, agent_id: &str) -> StoreResult<Option<String>> {
    let row: Option<(String,)> = sqlx::query_as("SELECT peer_uri FROM agent_hosts WHERE agent_id = $1")
        .bind(agent_id)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(|(u,)| u))
}
