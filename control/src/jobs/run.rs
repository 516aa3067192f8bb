//! The executor: claims jobs (a lease any server may take over when it lapses), runs their steps through
//! host tasks, records each step with its inverse, and on a failure runs the inverses newest first. The
//! change follows: verifying, then completed; or rolled back (or failed) with an incident linked to it.

use super::tasks;
use super::{JobRow, JobState, Memo, Step, COLUMNS};
use crate::hypervisor::{DomainSpec, Limits, Peer, PowerState};
use crate::inventory;
use crate::placement::{Ratios, Request, Strategy};
use crate::task::{Action, Outcome};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tollgate_workflows::change::{self, ChangeEvent};
use tollgate_workflows::clock::to_millis;
use tollgate_workflows::cmdb::{self, Ci, CiKind};
use tollgate_workflows::incident::{self, IncidentPolicy, IncidentReport, Level, LinkKind, Reported};
use tollgate_workflows::metrics::store::{query as metrics_query, Selector};
use tollgate_workflows::process::Actor;
use tollgate_workflows::text::{Description, Name};
use tollgate_workflows::{AuditContext, Db, StoreError, StoreResult};

/// How long a server holds a job without renewing before another may take it.
const LEASE_MS: i64 = 30_000;
/// How long a step waits for one host task's outcome.
const TASK_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long verification waits for a changed VM's metrics: a few of an agent's intervals (10 s by default).
const METRICS_WAIT: Duration = Duration::from_secs(45);

/// A step's result: the inverse steps, or why it failed (a failure of the work, not of the store).
type StepResult = StoreResult<Result<Vec<Step>, String>>;

/// What a save writes besides the memo: where the job is and what it is doing.
struct Mark<'a> {
    state: JobState,
    step: u32,
    current: &'a str,
    error: Option<&'a str>,
}

/// Runs jobs; one per server, shared by its loops.
pub struct Executor {
    db: Db,
    me: String,
    ctx: AuditContext,
    policy: Arc<IncidentPolicy>,
    ratios: Ratios,
    driving: Mutex<HashSet<String>>,
    poll: Duration,
    /// How long verification waits for a changed VM's metrics ([`METRICS_WAIT`]).
    metrics_wait: Duration,
}

impl Executor {
    pub fn new(db: Db, policy: Arc<IncidentPolicy>) -> Arc<Executor> {
        Executor::with_metrics_wait(db, policy, METRICS_WAIT)
    }

    /// An executor whose verification waits `metrics_wait` for a changed VM's metrics.
    pub fn with_metrics_wait(db: Db, policy: Arc<IncidentPolicy>, metrics_wait: Duration) -> Arc<Executor> {
        Arc::new(Executor {
            db,
            me: format!("server-{}", uuid::Uuid::new_v4()),
            ctx: AuditContext::system("control plane"),
            policy,
            ratios: Ratios::default(),
            driving: Mutex::new(HashSet::new()),
            poll: Duration::from_millis(100),
            metrics_wait,
        })
    }

    fn now_ms(&self) -> i64 {
        to_millis(self.db.clock().now())
    }

    /// One round: starts jobs for changes that entered implementing, then claims the jobs no live server
    /// holds and drives each in its own task. Returns how many it took.
    pub async fn tick(self: &Arc<Self>) -> StoreResult<usize> {
        self.start_changes().await?;
        let now = self.now_ms();
        let free: Vec<(String,)> = sqlx::query_as(
            "SELECT id FROM jobs WHERE state IN ('running', 'rolling_back') \
             AND (claimed_by IS NULL OR claimed_by = $1 OR lease_until < $2) ORDER BY created_at LIMIT 32",
        )
        .bind(&self.me)
        .bind(now)
        .fetch_all(self.db.pool())
        .await?;
        let mut taken = 0;
        for (id,) in free {
            if self.driving().contains(&id) || !self.claim(&id).await? {
                continue;
            }
            self.driving().insert(id.clone());
            taken += 1;
            let me = Arc::clone(self);
            tokio::spawn(async move {
                if let Err(e) = me.drive(&id).await {
                    tracing::warn!(job = %id, error = %e, "job paused; it resumes on the next round");
                }
                me.driving().remove(&id);
            });
        }
        Ok(taken)
    }

    fn driving(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.driving.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Changes implementing with automated operations and no job for their revision get one.
    async fn start_changes(&self) -> StoreResult<()> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT c.id FROM changes c WHERE c.state = 'implementing' AND c.operations <> '[]' \
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.change_id = c.id AND j.revision = c.revision)",
        )
        .fetch_all(self.db.pool())
        .await?;
        for (id,) in rows {
            match change::authorise(&self.db, &id, None).await? {
                Ok(approved) => {
                    super::submit(&self.db, &self.ctx, &approved).await?;
                }
                Err(refusal) => {
                    tracing::warn!(change = %id, %refusal, "an implementing change may not run");
                }
            }
        }
        Ok(())
    }

    async fn claim(&self, id: &str) -> StoreResult<bool> {
        let now = self.now_ms();
        let n = sqlx::query(
            "UPDATE jobs SET claimed_by = $1, lease_until = $2 WHERE id = $3 AND state IN ('running', 'rolling_back') \
             AND (claimed_by IS NULL OR claimed_by = $1 OR lease_until < $4)",
        )
        .bind(&self.me)
        .bind(now + LEASE_MS)
        .bind(id)
        .bind(now)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Extends the lease; false when another server took the job.
    async fn renew(&self, id: &str) -> StoreResult<bool> {
        let n = sqlx::query("UPDATE jobs SET lease_until = $1 WHERE id = $2 AND claimed_by = $3")
            .bind(self.now_ms() + LEASE_MS)
            .bind(id)
            .bind(&self.me)
            .execute(self.db.pool())
            .await?
            .rows_affected();
        Ok(n == 1)
    }

    async fn load(&self, id: &str) -> StoreResult<JobRow> {
        let sql = format!("SELECT {COLUMNS} FROM jobs WHERE id = $1");
        let row: Option<JobRow> = sqlx::query_as(&sql).bind(id).fetch_optional(self.db.pool()).await?;
        row.ok_or_else(|| StoreError::not_found("job", id))
    }

    /// Writes the job's progress if this server still holds it (audited); false when it does not.
    async fn save(&self, row: &JobRow, mark: Mark<'_>, memo: &Memo, action: &str) -> StoreResult<bool> {
        let Mark { state, step, current, error } = mark;
        let memo_json = serde_json::to_string(memo).map_err(|e| StoreError::Internal(format!("job memo: {e}")))?;
        let mut tx = self.db.write_rows(&self.ctx).await?;
        let now = to_millis(tx.now());
        let n = sqlx::query(
            "UPDATE jobs SET state = $1, step = $2, memo = $3, current = $4, error = $5, updated_at = $6, lease_until = $7 \
             WHERE id = $8 AND claimed_by = $9",
        )
        .bind(state.as_str())
        .bind(i64::from(step))
        .bind(&memo_json)
        .bind(current)
        .bind(error)
        .bind(now)
        .bind(now + LEASE_MS)
        .bind(&row.id)
        .bind(&self.me)
        .execute(tx.conn())
        .await?
        .rows_affected();
        if n == 0 {
            return Ok(false);
        }
        let snapshot = serde_json::json!({ "state": state.as_str(), "step": step, "current": current, "error": error });
        tx.audit(action, "job", &row.id, None::<&()>, Some(&snapshot)).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Advances the job until it finishes, waits on nothing more, or another server takes it.
    async fn drive(&self, id: &str) -> StoreResult<()> {
        loop {
            let row = self.load(id).await?;
            let (plan, mut memo, state) = row.parts()?;
            let step = row.step.max(0) as u32;
            match state {
                JobState::Running if (step as usize) < plan.len() => {
                    let current = &plan[step as usize];
                    if matches!(current, Step::Verify { .. }) {
                        self.change_event(&row.change_id, "verify").await?;
                    }
                    let undo = match &memo.prepared {
                        Some((at, undo)) if *at == step => Some(undo.clone()),
                        _ => None,
                    };
                    match self.run_step(&row, step, current, undo, &mut memo).await? {
                        Ok(undo) => {
                            memo.undo.extend(undo);
                            memo.prepared = None;
                            memo.log.push(format!("done: {}", current.label()));
                            let next =
                                plan.get(step as usize + 1).map(Step::label).unwrap_or_else(|| "finishing".into());
                            if !self
                                .save(
                                    &row,
                                    Mark { state: JobState::Running, step: step + 1, current: &next, error: None },
                                    &memo,
                                    "job.step",
                                )
                                .await?
                            {
                                return Ok(());
                            }
                        }
                        Err(why) => {
                            tracing::warn!(job = %id, step = %current.label(), %why, "step failed; rolling back");
                            memo.log.push(format!("failed: {}: {why}", current.label()));
                            // A step that failed half way may have done part of its work: undo it too.
                            if let Some((at, undo)) = memo.prepared.take() {
                                if at == step {
                                    memo.undo.extend(undo);
                                }
                            }
                            let error = format!("{}: {why}", current.label());
                            if !self
                                .save(
                                    &row,
                                    Mark {
                                        state: JobState::RollingBack,
                                        step,
                                        current: "rolling back",
                                        error: Some(&error),
                                    },
                                    &memo,
                                    "job.fail",
                                )
                                .await?
                            {
                                return Ok(());
                            }
                        }
                    }
                }
                JobState::Running => {
                    // The change follows first: a job is finished only once its change shows it.
                    self.change_event(&row.change_id, "verify").await?;
                    self.change_event(&row.change_id, "complete").await?;
                    memo.log.push("succeeded".into());
                    let mark = Mark { state: JobState::Succeeded, step, current: "completed", error: None };
                    if self.save(&row, mark, &memo, "job.succeed").await? {
                        tracing::info!(job = %id, "job succeeded");
                    }
                    return Ok(());
                }
                JobState::RollingBack => {
                    let left = memo.undo.len().saturating_sub(memo.undone as usize);
                    if left == 0 {
                        // The change follows first: a job is finished only once its change shows it.
                        let error = row.error.clone().unwrap_or_default();
                        self.change_event(&row.change_id, "roll_back").await?;
                        self.open_incident(&row, false, &error).await;
                        memo.log.push("rolled back".into());
                        let mark =
                            Mark { state: JobState::RolledBack, step, current: "rolled back", error: Some(&error) };
                        self.save(&row, mark, &memo, "job.rolled_back").await?;
                        return Ok(());
                    }
                    let undo = memo.undo[left - 1].clone();
                    let at = 10_000 + memo.undone;
                    match self.run_step(&row, at, &undo, Some(Vec::new()), &mut memo).await? {
                        Ok(_) => {
                            memo.undone += 1;
                            memo.log.push(format!("undone: {}", undo.label()));
                            if !self
                                .save(
                                    &row,
                                    Mark {
                                        state: JobState::RollingBack,
                                        step,
                                        current: &format!("rolling back: {}", undo.label()),
                                        error: row.error.as_deref(),
                                    },
                                    &memo,
                                    "job.undo",
                                )
                                .await?
                            {
                                return Ok(());
                            }
                        }
                        Err(why) => {
                            memo.log.push(format!("rollback failed: {}: {why}", undo.label()));
                            let error = format!(
                                "{}; then rolling back failed: {}: {why}",
                                row.error.as_deref().unwrap_or("failed"),
                                undo.label()
                            );
                            self.change_event(&row.change_id, "fail").await?;
                            self.open_incident(&row, true, &error).await;
                            let mark = Mark { state: JobState::Failed, step, current: "failed", error: Some(&error) };
                            self.save(&row, mark, &memo, "job.failed").await?;
                            return Ok(());
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    /// Fires a system event on the change; one it cannot take now (already past it, after a resumed
    /// job) is skipped. A store failure is returned, so the job finishes only once the change follows.
    async fn change_event(&self, change_id: &str, event: &str) -> StoreResult<()> {
        let e = ChangeEvent { event: event.to_string(), ..ChangeEvent::default() };
        match change::fire_change(&self.db, &self.ctx, change_id, &Actor::System, e).await {
            Ok(_) => Ok(()),
            Err(StoreError::Transition(why)) => {
                tracing::debug!(change = %change_id, event, %why, "change event not taken");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// An incident for a job that did not succeed, linked to its change as caused by it.
    async fn open_incident(&self, row: &JobRow, rollback_failed: bool, error: &str) {
        let result: StoreResult<()> = async {
            let c = change::get_change(&self.db, &row.change_id).await?;
            let mut ci_ids = Vec::new();
            for id in &c.ci_ids {
                if cmdb::get_ci(&self.db, id).await.is_ok() {
                    ci_ids.push(id.clone());
                }
            }
            let outcome = if rollback_failed { "failed and could not be rolled back" } else { "was rolled back" };
            let mut title: String = format!("{} {outcome}: {}", c.reference, c.title);
            title = title.chars().take(Name::MAX_CHARS).collect();
            let detail = format!("Job {} for revision {} stopped: {error}", row.id, row.revision);
            let report = IncidentReport {
                title: Name::parse("title", &title)?,
                description: Description::parse(
                    "description",
                    &detail.chars().take(Description::MAX_CHARS).collect::<String>(),
                )?,
                impact: if rollback_failed { Level::High } else { Level::Medium },
                urgency: Level::High,
                major: false,
                ci_ids,
                dedup_key: Some(Name::parse("dedup_key", &format!("change:{}:{}", c.id, row.revision))?),
            };
            let incident = match incident::report_once(&self.db, &self.ctx, &self.policy, report).await? {
                Reported::Opened(i) | Reported::Updated(i) => i,
            };
            incident::link_change(&self.db, &self.ctx, &incident.id, &c.id, LinkKind::CausedBy).await?;
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::error!(job = %row.id, error = %e, "could not open the incident for a failed change");
        }
    }

    /// Enqueues a host task (once: its id comes from the job, step and position) and waits for its outcome.
    async fn task(&self, row: &JobRow, step: u32, n: u32, host: &Ci, action: Action) -> StoreResult<Outcome> {
        let id = format!("{}:{step}:{n}", row.id);
        tasks::enqueue(&self.db, &id, &row.id, &inventory::agent_of(host), &action).await?;
        let started = Instant::now();
        let mut renewed = Instant::now();
        loop {
            if let Some(outcome) = tasks::outcome(&self.db, &id).await? {
                return Ok(outcome);
            }
            if started.elapsed() > TASK_TIMEOUT {
                return Ok(Outcome::Failed {
                    error: crate::hypervisor::HypervisorError::Backend(format!(
                        "host {} did not answer within {} minutes ({})",
                        host.name,
                        TASK_TIMEOUT.as_secs() / 60,
                        action.label()
                    )),
                });
            }
            if renewed.elapsed() > Duration::from_secs(5) {
                if !self.renew(&row.id).await? {
                    return Err(StoreError::Conflict(format!("job {} was taken over", row.id)));
                }
                renewed = Instant::now();
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    /// Whether the VM's metrics still come in after the change: when its host reports its VMs' metrics at
    /// all (a `vm` point in the last two minutes), a point of this VM from this host since `since_ns` must
    /// arrive within the executor's wait ([`METRICS_WAIT`] by default). A host that reports none has nothing
    /// to show.
    async fn metrics_arriving(
        &self,
        row: &JobRow,
        host: &Ci,
        vm: &str,
        since_ns: i64,
    ) -> StoreResult<Result<(), String>> {
        let selector = |vm: Option<&str>| Selector {
            measurement: "vm".into(),
            field: "running".into(),
            tags: std::iter::once(("host".to_owned(), host.name.clone()))
                .chain(vm.map(|v| ("vm".to_owned(), v.to_owned())))
                .collect(),
        };
        // Points may carry a host's clock a little ahead of this server's.
        let ahead_ns = 60_000_000_000;
        let (from, to) = (self.now_ns() - 120_000_000_000, self.now_ns() + ahead_ns);
        let reporting = metrics_query(&self.db, &selector(None), from, to, 0).await?;
        if reporting.iter().all(|s| s.points.is_empty()) {
            return Ok(Ok(()));
        }
        let (started, mut renewed) = (Instant::now(), Instant::now());
        loop {
            let mine = metrics_query(&self.db, &selector(Some(vm)), since_ns, self.now_ns() + ahead_ns, 0).await?;
            if mine.iter().any(|s| !s.points.is_empty()) {
                return Ok(Ok(()));
            }
            if started.elapsed() > self.metrics_wait {
                return Ok(Err(format!(
                    "no metrics from it in {} s after the change, while {} reports its other VMs",
                    self.metrics_wait.as_secs(),
                    host.name
                )));
            }
            if renewed.elapsed() > Duration::from_secs(5) {
                if !self.renew(&row.id).await? {
                    return Err(StoreError::Conflict(format!("job {} was taken over", row.id)));
                }
                renewed = Instant::now();
            }
            tokio::time::sleep(self.poll.max(Duration::from_millis(200))).await;
        }
    }

    fn now_ns(&self) -> i64 {
        self.db.clock().now().unix_timestamp_nanos() as i64
    }

    async fn vm(&self, name: &str) -> StoreResult<Option<(Ci, Ci)>> {
        let Some(vm) = inventory::vm_named(&self.db, name).await? else { return Ok(None) };
        let Some(host_id) = vm.parent_id.clone() else { return Ok(None) };
        let host = inventory::ci_of(&self.db, &host_id, CiKind::Host).await?;
        Ok(Some((vm, host)))
    }

    /// Records the inverse of a step before it runs, so a crash half way through still knows it.
    async fn prepare(&self, row: &JobRow, step: u32, memo: &mut Memo, undo: Vec<Step>) -> StoreResult<bool> {
        memo.prepared = Some((step, undo));
        let state = if step >= 10_000 { JobState::RollingBack } else { JobState::Running };
        let at = row.step.max(0) as u32;
        let current = row.current.clone();
        self.save(row, Mark { state, step: at, current: &current, error: row.error.as_deref() }, memo, "job.prepare")
            .await
    }

    async fn run_step(
        &self,
        row: &JobRow,
        step: u32,
        s: &Step,
        prepared: Option<Vec<Step>>,
        memo: &mut Memo,
    ) -> StepResult {
        let missing = |vm: &str| Ok(Err(format!("{vm} is not in the inventory")));
        macro_rules! check {
            ($outcome:expr) => {
                match $outcome {
                    Outcome::Failed { error } => return Ok(Err(error.to_string())),
                    other => other,
                }
            };
        }
        macro_rules! prepare {
            ($undo:expr) => {
                match prepared {
                    Some(undo) => undo,
                    None => {
                        let undo = $undo;
                        if !self.prepare(row, step, memo, undo.clone()).await? {
                            return Err(StoreError::Conflict(format!("job {} was taken over", row.id)));
                        }
                        undo
                    }
                }
            };
        }
        match s {
            Step::Place { vm, vcpus, memory_mib, disk_gib, service_id, host_id, container } => {
                if inventory::vm_named(&self.db, vm).await?.is_some() {
                    return Ok(Ok(vec![Step::Unplace { vm: vm.clone() }]));
                }
                let host = match host_id {
                    Some(h) => h.clone(),
                    None => {
                        let (fleet, _) = inventory::fleet(&self.db, self.ratios).await?;
                        let strategy = match service_id {
                            Some(s) => inventory::strategy_of(&self.db, s).await?,
                            None => Strategy::Spread,
                        };
                        // Spreading is for availability: a service's VMs then keep apart.
                        let apart = service_id.as_ref().filter(|_| strategy == Strategy::Spread);
                        let req = Request {
                            vcpus: (*vcpus).max(0) as u32,
                            memory_mib: (*memory_mib).max(0) as u64,
                            disk_gib: (*disk_gib).max(0) as u64,
                            anti_affinity_group: apart.map(|s| format!("service:{s}")),
                            strategy,
                            containers: *container,
                            ..Request::default()
                        };
                        match fleet.choose(&req) {
                            Ok(p) => p.host_id,
                            Err(e) => return Ok(Err(e.to_string())),
                        }
                    }
                };
                inventory::create_vm(
                    &self.db,
                    &self.ctx,
                    vm,
                    &host,
                    service_id.clone(),
                    (*vcpus, *memory_mib, *disk_gib),
                )
                .await?;
                Ok(Ok(vec![Step::Unplace { vm: vm.clone() }]))
            }
            Step::CreateDomain { vm, image } => {
                let Some((ci, host)) = self.vm(vm).await? else { return missing(vm) };
                let undo = prepare!(vec![Step::RemoveDomain { vm: vm.clone() }]);
                let vcpus = ci.vcpus.unwrap_or(1).max(1) as u32;
                let memory_mib = ci.memory_mib.unwrap_or(512).max(128) as u64;
                let spec = DomainSpec {
                    name: vm.clone(),
                    vm_id: ci.id.clone(),
                    vcpus,
                    max_vcpus: (vcpus * 4).clamp(4, 256).max(vcpus),
                    memory_mib,
                    max_memory_mib: memory_mib * 4,
                    memory_slots: 8,
                    image: image.clone(),
                    disk_gib: ci.disk_gib.unwrap_or(10).max(1) as u64,
                    boot: None,
                };
                check!(self.task(row, step, 0, &host, Action::Provision { spec }).await?);
                inventory::edit_ci(&self.db, &self.ctx, &ci.id, |d| d.state = Some("running".into())).await?;
                Ok(Ok(undo))
            }
            Step::SetVcpus { vm, vcpus } => {
                let Some((ci, host)) = self.vm(vm).await? else { return missing(vm) };
                let undo = prepare!(vec![Step::SetVcpus { vm: vm.clone(), vcpus: ci.vcpus.unwrap_or(1) }]);
                let want = (*vcpus).max(0) as u32;
                let d =
                    check!(self.task(row, step, 0, &host, Action::SetVcpus { name: vm.clone(), vcpus: want }).await?);
                if let Outcome::Domain { domain } = &d {
                    if domain.vcpus != want {
                        return Ok(Err(format!("{vm} reports {} vCPUs, not {want}", domain.vcpus)));
                    }
                }
                inventory::edit_ci(&self.db, &self.ctx, &ci.id, |d| d.vcpus = Some(*vcpus)).await?;
                Ok(Ok(undo))
            }
            Step::SetMemory { vm, memory_mib } => {
                let Some((ci, host)) = self.vm(vm).await? else { return missing(vm) };
                let undo = prepare!(vec![Step::SetMemory { vm: vm.clone(), memory_mib: ci.memory_mib.unwrap_or(0) }]);
                let want = (*memory_mib).max(0) as u64;
                check!(self.task(row, step, 0, &host, Action::SetMemory { name: vm.clone(), memory_mib: want }).await?);
                inventory::edit_ci(&self.db, &self.ctx, &ci.id, |d| d.memory_mib = Some(*memory_mib)).await?;
                Ok(Ok(undo))
            }
            Step::SetLimits { vm, limits } => {
                let Some((_, host)) = self.vm(vm).await? else { return missing(vm) };
                let before = match check!(self.task(row, step, 0, &host, Action::Limits { name: vm.clone() }).await?) {
                    Outcome::Limits { limits } => limits,
                    other => return Ok(Err(format!("unexpected answer reading limits: {other:?}"))),
                };
                let undo = prepare!(vec![Step::SetLimits { vm: vm.clone(), limits: before.restoring() }]);
                let after = match check!(
                    self.task(row, step, 1, &host, Action::SetLimits { name: vm.clone(), limits: limits.clone() })
                        .await?
                ) {
                    Outcome::Limits { limits } => limits,
                    other => return Ok(Err(format!("unexpected answer setting limits: {other:?}"))),
                };
                let want: Limits = before.merged(limits);
                if after != want {
                    return Ok(Err(format!("{vm} reads back limits {after:?}, not {want:?}")));
                }
                Ok(Ok(undo))
            }
            Step::Migrate { vm, to_host_id } => {
                let Some((ci, source)) = self.vm(vm).await? else { return missing(vm) };
                let dest_id = match to_host_id {
                    Some(h) => h.clone(),
                    None => match memo_destination(memo, step) {
                        Some(h) => h,
                        None => {
                            let (mut fleet, _) = inventory::fleet(&self.db, self.ratios).await?;
                            let mut down = fleet_host(&fleet, &source.id);
                            down.state = crate::placement::HostState::Down;
                            fleet.upsert(down);
                            let req = Request {
                                vcpus: ci.vcpus.unwrap_or(1).max(0) as u32,
                                memory_mib: ci.memory_mib.unwrap_or(1).max(0) as u64,
                                disk_gib: ci.disk_gib.unwrap_or(0).max(0) as u64,
                                anti_affinity_group: ci.service_id.as_ref().map(|s| format!("service:{s}")),
                                ..Request::default()
                            };
                            match fleet.choose(&req) {
                                Ok(p) => {
                                    memo.log.push(format!("placed {vm} on {} (step {step})", p.host_id));
                                    p.host_id
                                }
                                Err(e) => return Ok(Err(e.to_string())),
                            }
                        }
                    },
                };
                if dest_id == source.id {
                    return Ok(Ok(Vec::new()));
                }
                let dest = inventory::ci_of(&self.db, &dest_id, CiKind::Host).await?;
                let undo = prepare!(vec![Step::Migrate { vm: vm.clone(), to_host_id: Some(source.id.clone()) }]);
                let domain = match check!(self.task(row, step, 0, &source, Action::Inspect { name: vm.clone() }).await?)
                {
                    Outcome::Domain { domain } => domain,
                    other => return Ok(Err(format!("unexpected answer reading {vm}: {other:?}"))),
                };
                check!(self.task(row, step, 1, &dest, Action::PrepareIncoming { disks: domain.disks.clone() }).await?);
                let dest_agent = inventory::agent_of(&dest);
                let uri = match tasks::peer_uri(&self.db, &dest_agent).await? {
                    Some(uri) => uri,
                    None if dest_agent.starts_with("sim:") => format!("sim://{}", dest.name),
                    None => return Ok(Err(format!("host {}'s agent has not said how to reach it", dest.name))),
                };
                let peer = Peer { host: dest.name.clone(), uri };
                check!(self.task(row, step, 2, &source, Action::Migrate { name: vm.clone(), peer }).await?);
                if domain.state != PowerState::Running {
                    // Moved cold: it may have arrived paused.
                    check!(self.task(row, step, 3, &dest, Action::Stop { name: vm.clone() }).await?);
                }
                inventory::edit_ci(&self.db, &self.ctx, &ci.id, |d| d.parent_id = Some(dest_id.clone())).await?;
                Ok(Ok(undo))
            }
            Step::Power { vm, on } => {
                let Some((ci, host)) = self.vm(vm).await? else { return missing(vm) };
                let undo = prepare!(vec![Step::Power { vm: vm.clone(), on: !on }]);
                let action = if *on { Action::Start { name: vm.clone() } } else { Action::Stop { name: vm.clone() } };
                check!(self.task(row, step, 0, &host, action).await?);
                let state = if *on { "running" } else { "stopped" };
                inventory::edit_ci(&self.db, &self.ctx, &ci.id, |d| d.state = Some(state.into())).await?;
                Ok(Ok(undo))
            }
            Step::Delete { vm } | Step::RemoveDomain { vm } => {
                let Some((ci, host)) = self.vm(vm).await? else { return Ok(Ok(Vec::new())) };
                check!(self.task(row, step, 0, &host, Action::Delete { name: vm.clone() }).await?);
                if matches!(s, Step::Delete { .. }) {
                    inventory::edit_ci(&self.db, &self.ctx, &ci.id, |d| d.state = Some("retired".into())).await?;
                }
                Ok(Ok(Vec::new()))
            }
            Step::Unplace { vm } => {
                if let Some(ci) = inventory::vm_named(&self.db, vm).await? {
                    cmdb::delete_ci(&self.db, &self.ctx, &ci.id).await?;
                }
                Ok(Ok(Vec::new()))
            }
            Step::Adopt { host_id, domain } => {
                let host = inventory::ci_of(&self.db, host_id, CiKind::Host).await?;
                let found =
                    match check!(self.task(row, step, 0, &host, Action::Inspect { name: domain.clone() }).await?) {
                        Outcome::Domain { domain } => domain,
                        other => return Ok(Err(format!("unexpected answer reading {domain}: {other:?}"))),
                    };
                let ci = match inventory::vm_named(&self.db, domain).await? {
                    Some(ci) => ci,
                    None => {
                        let disk_gib =
                            found.disks.iter().map(|d| d.capacity_bytes).sum::<u64>().div_ceil(1 << 30).max(1);
                        let sizes = (i64::from(found.vcpus), found.memory.current_mib() as i64, disk_gib as i64);
                        inventory::create_vm(&self.db, &self.ctx, domain, host_id, None, sizes).await?
                    }
                };
                check!(
                    self.task(row, step, 1, &host, Action::Adopt { name: domain.clone(), vm_id: ci.id.clone() })
                        .await?
                );
                let state = if found.state == PowerState::Running { "running" } else { "stopped" };
                inventory::edit_ci(&self.db, &self.ctx, &ci.id, |d| d.state = Some(state.into())).await?;
                Ok(Ok(Vec::new()))
            }
            Step::Verify { vm } => {
                // Metrics the VM's host sends from now on (with a little slack for the host's clock) show it
                // still reporting after the change.
                let since_ns = self.now_ns() - 2_000_000_000;
                let Some((ci, host)) = self.vm(vm).await? else { return missing(vm) };
                let domain = match check!(self.task(row, step, 0, &host, Action::Inspect { name: vm.clone() }).await?) {
                    Outcome::Domain { domain } => domain,
                    other => return Ok(Err(format!("unexpected answer reading {vm}: {other:?}"))),
                };
                let mut wrong = crate::reconcile::differences(&ci, &domain);
                if domain.vm_id.as_deref() != Some(ci.id.as_str()) {
                    wrong.push("the domain does not carry this VM's id".into());
                }
                if wrong.is_empty() && domain.state == PowerState::Running {
                    if let Err(why) = self.metrics_arriving(row, &host, vm, since_ns).await? {
                        wrong.push(why);
                    }
                }
                if wrong.is_empty() {
                    Ok(Ok(Vec::new()))
                } else {
                    Ok(Err(format!("{vm} on {}: {}", host.name, wrong.join("; "))))
                }
            }
        }
    }
}

/// A destination placement already chose for this step (kept in the log so a resumed step reuses it).
fn memo_destination(memo: &Memo, step: u32) -> Option<String> {
    let suffix = format!(" (step {step})");
    memo.log.iter().rev().find_map(|l| l.strip_suffix(&suffix)?.rsplit_once(" on ").map(|(_, h)| h.to_string()))
}

fn fleet_host(fleet: &crate::placement::Fleet, id: &str) -> crate::placement::HostCapacity {
    fleet.host(id).cloned().unwrap_or(crate::placement::HostCapacity {
        host_id: id.to_string(),
        region: String::new(),
        cluster: String::new(),
        state: crate::placement::HostState::Down,
        vcpus: 0,
        memory_mib: 0,
        disk_gib: 0,
        cpu_p95: None,
        containers: false,
    })
}
