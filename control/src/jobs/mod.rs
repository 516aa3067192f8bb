//! Durable jobs: an approved change carried out step by step, its progress readable through the API,
//! resumable by any server after a crash, and undone by its inverse steps when a step fails.
//!
//! Layout: `plan` — operations into steps; `tasks` — the host task queue agents pull from; `run` — the
//! executor that claims jobs and advances them.

mod plan;
mod run;
pub mod tasks;

pub use plan::{plan, Step};
pub use run::Executor;

use serde::{Deserialize, Serialize};
use sqlx::FromRow;
use tollgate_workflows::change::ApprovedChange;
use tollgate_workflows::clock::{from_millis, to_millis};
use tollgate_workflows::{AuditContext, Db, StoreError, StoreResult};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Running,
    /// A step failed; the inverse steps are running.
    RollingBack,
    Succeeded,
    RolledBack,
    /// A step failed and its rollback did not finish either: an operator must look.
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::RollingBack => "rolling_back",
            JobState::Succeeded => "succeeded",
            JobState::RolledBack => "rolled_back",
            JobState::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        [JobState::Running, JobState::RollingBack, JobState::Succeeded, JobState::RolledBack, JobState::Failed]
            .into_iter()
            .find(|j| j.as_str() == s)
    }

    pub fn finished(self) -> bool {
        matches!(self, JobState::Succeeded | JobState::RolledBack | JobState::Failed)
    }
}

/// What the steps learned, kept with the job so a server taking over knows it too.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memo {
    /// Inverse steps of the steps done, in the order they were done.
    pub undo: Vec<Step>,
    /// Inverse steps worked out before the current step ran (from the state before it).
    pub prepared: Option<(u32, Vec<Step>)>,
    /// How many of `undo` (from the end) have run.
    pub undone: u32,
    /// One line per step done or undone.
    pub log: Vec<String>,
}

/// A job as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Job {
    pub id: String,
    pub change_id: String,
    pub revision: i64,
    pub state: JobState,
    /// Steps done.
    pub step: u32,
    pub steps: u32,
    pub percent: u32,
    /// What it is doing, or did last.
    pub current: String,
    #[schema(value_type = Vec<Object>)]
    pub plan: Vec<Step>,
    /// One line per step done or undone.
    pub log: Vec<String>,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: time::OffsetDateTime,
}

#[derive(FromRow)]
struct JobRow {
    id: String,
    change_id: String,
    revision: i64,
    state: String,
    step: i64,
    steps: i64,
    current: String,
    plan: String,
    memo: String,
    error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

fn corrupt(id: &str, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("job {id} has an unreadable {what}: {e}"))
}

impl JobRow {
    fn parts(&self) -> StoreResult<(Vec<Step>, Memo, JobState)> {
        let plan = serde_json::from_str(&self.plan).map_err(|e| corrupt(&self.id, "plan", e))?;
        let memo = serde_json::from_str(&self.memo).map_err(|e| corrupt(&self.id, "memo", e))?;
        let state = JobState::parse(&self.state).ok_or_else(|| corrupt(&self.id, "state", &self.state))?;
        Ok((plan, memo, state))
    }

    fn into_job(self) -> StoreResult<Job> {
        let (plan, memo, state) = self.parts()?;
        let steps = self.steps.max(0) as u32;
        let step = self.step.max(0) as u32;
        let percent = match state {
            JobState::Succeeded => 100,
            _ if steps == 0 => 0,
            _ => (step * 100 / steps).min(99),
        };
        Ok(Job {
            id: self.id,
            change_id: self.change_id,
            revision: self.revision,
            state,
            step,
            steps,
            percent,
            current: self.current,
            plan,
            log: memo.log,
            error: self.error,
            created_at: from_millis(self.created_at),
            updated_at: from_millis(self.updated_at),
        })
    }
}

const COLUMNS: &str = "id, change_id, revision, state, step, steps, current, plan, memo, error, created_at, updated_at";

pub async fn get_job(db: &Db, id: &str) -> StoreResult<Job> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
    let row: Option<JobRow> = sqlx::query_as(&sql).bind(id).fetch_optional(db.pool()).await?;
    row.ok_or_else(|| StoreError::not_found("job", id))?.into_job()
}

/// The jobs of a change, newest revision first.
pub async fn jobs_of_change(db: &Db, change_id: &str) -> StoreResult<Vec<Job>> {
    let sql = format!("SELECT {COLUMNS} FROM jobs WHERE change_id = $1 ORDER BY revision DESC");
    let rows: Vec<JobRow> = sqlx::query_as(&sql).bind(change_id).fetch_all(db.pool()).await?;
    rows.into_iter().map(JobRow::into_job).collect()
}

/// Starts carrying out an approved change: plans its steps and records the job, once per revision (a
/// second submission returns the job already there).
pub async fn submit(db: &Db, ctx: &AuditContext, change: &ApprovedChange) -> StoreResult<Job> {
    let existing: Option<(String,)> = sqlx::query_as("SELECT id FROM jobs WHERE change_id = $1 AND revision = $2")
        .bind(change.change_id())
        .bind(change.revision())
        .fetch_optional(db.pool())
        .await?;
    if let Some((id,)) = existing {
        return get_job(db, &id).await;
    }
    let steps = plan(db, change).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let plan_json = serde_json::to_string(&steps).map_err(|e| corrupt(&id, "plan", e))?;
    let memo = serde_json::to_string(&Memo::default()).map_err(|e| corrupt(&id, "memo", e))?;
    let current = steps.first().map(Step::label).unwrap_or_else(|| "nothing to do".into());
    let mut tx = db.write_locking(ctx, &format!("job:{}", change.change_id())).await?;
    let now = to_millis(tx.now());
    let inserted = sqlx::query(
        "INSERT INTO jobs (id, change_id, revision, state, step, steps, current, plan, memo, lease_until, \
         created_at, updated_at) VALUES ($1, $2, $3, 'running', 0, $4, $5, $6, $7, 0, $8, $8) \
         ON CONFLICT (change_id, revision) DO NOTHING",
    )
    .bind(&id)
    .bind(change.change_id())
    .bind(change.revision())
    .bind(steps.len() as i64)
    .bind(&current)
    .bind(&plan_json)
    .bind(&memo)
    .bind(now)
    .execute(tx.conn())
    .await?
    .rows_affected();
    if inserted == 0 {
        drop(tx);
        return Box::pin(submit(db, ctx, change)).await;
    }
    let snapshot = serde_json::json!({ "change": change.reference(), "revision": change.revision(), "plan": steps });
    tx.audit("job.start", "job", &id, None::<&()>, Some(&snapshot)).await?;
    tx.commit().await?;
    tracing::info!(job = %id, change = %change.reference(), steps = steps.len(), "job started");
    get_job(db, &id).await
}
