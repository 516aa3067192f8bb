//! Loops that run beside the API: SLA and approval timers, reading this machine's metrics, rollups and
//! retention, and alert evaluation. Each waits on its tick or on shutdown; a failed round is logged and the
//! loop goes on.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tollgate_collector::host::{self, HostReader};
use tollgate_control::jobs::Executor;
use tollgate_control::simulated::SimAgents;
use tollgate_workflows::alert::{Evaluator, EvaluatorTotals};
use tollgate_workflows::incident::IncidentPolicy;
use tollgate_workflows::metrics::rollup::{self, Retention};
use tollgate_workflows::metrics::store::MetricStore;
use tollgate_workflows::Db;
use tollgate_workflows::{approval, incident};

/// The ticks of a loop: every `period` (a late tick delays the next), until shutdown.
pub(crate) struct Ticks {
    tick: tokio::time::Interval,
    shutdown: watch::Receiver<bool>,
}

impl Ticks {
    pub(crate) fn new(period: Duration, shutdown: watch::Receiver<bool>) -> Ticks {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ticks { tick, shutdown }
    }

    /// Waits for the next tick: `false` once shutdown is asked for.
    pub(crate) async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.tick.tick() => true,
            _ = self.shutdown.wait_for(|stop| *stop) => false,
        }
    }
}

/// Every `interval`: checks running incidents for SLA breaches (escalating first breaches) and approval
/// stages for timeouts.
pub fn spawn_timers(db: Db, interval: Duration, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = Ticks::new(interval, shutdown);
        while ticks.next().await {
            match incident::sla_sweep(&db).await {
                Ok(touched) => {
                    for i in touched {
                        tracing::warn!(incident = %i.reference, priority = %i.priority, "incident breached its SLA");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "SLA check failed; retrying next round"),
            }
            match approval::sweep_timeouts(&db).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(stages = n, "approval stages timed out"),
                Err(e) => tracing::warn!(error = %e, "approval timeout check failed; retrying next round"),
            }
        }
    })
}

/// Every `interval`: reads this machine's metrics into the store, as an agent on it would (host tag = its
/// name), so the embedded default shows real data without an agent.
pub fn spawn_self_metrics(
    store: MetricStore,
    clock: tollgate_workflows::Clock,
    interval: Duration,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let root = std::path::PathBuf::from("/");
        let name = host::hostname(&root).unwrap_or_else(|| "tollgate-server".to_owned());
        let tags = vec![("host".to_owned(), name)];
        let mut reader = HostReader::new(root);
        let mut ticks = Ticks::new(interval, shutdown);
        let mut warned = false;
        while ticks.next().await {
            let at = clock.now_nanos();
            // Reading /proc is a handful of small files: quick enough not to need a blocking thread.
            let mut missing = Vec::new();
            let points: Vec<_> = reader.collect(&mut missing).into_iter().map(|r| r.into_point(&tags, at)).collect();
            if !missing.is_empty() && !warned {
                tracing::warn!(missing = ?missing, "cannot read some of this machine's metrics; storing the rest");
                warned = true;
            }
            if let Err(e) = store.write(&points, at).await {
                tracing::warn!(error = %e, "this machine's metrics were not stored; trying again next round");
            }
        }
    })
}

/// Every `interval`: the simulated hosts' per-VM figures into the store, as a host agent reads its VMs' from
/// libvirt (`vm` measurement, tags vm, host, cluster), plus `simulated=true` so they are never taken for a
/// real host's. They are what the demo fleet's charts and rightsizing read.
pub fn spawn_sim_metrics(
    store: MetricStore,
    db: Db,
    fleet: Arc<tollgate_control::hypervisor::sim::SimFleet>,
    interval: Duration,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    use tollgate_workflows::cmdb::{CiKind, Hypervisor as Kind};
    tokio::spawn(async move {
        let mut readers: std::collections::HashMap<String, tollgate_collector::vm::VmReader> = Default::default();
        let mut ticks = Ticks::new(interval, shutdown);
        while ticks.next().await {
            let hosts = match tollgate_control::inventory::all_of(&db, CiKind::Host).await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the simulated hosts; trying again next round");
                    continue;
                }
            };
            let clusters: std::collections::HashMap<String, String> =
                match tollgate_control::inventory::all_of(&db, CiKind::Cluster).await {
                    Ok(c) => c.into_iter().map(|c| (c.id, c.name)).collect(),
                    Err(_) => Default::default(),
                };
            let at = db.clock().now_nanos();
            let mut points = Vec::new();
            for host in hosts.iter().filter(|h| h.hypervisor == Some(Kind::Simulated)) {
                let sim = fleet.host(&host.name, tollgate_control::simulated::SIM_IMAGES);
                let reader = readers.entry(host.name.clone()).or_default();
                let Ok(readings) = reader.collect(&sim) else { continue };
                let mut tags =
                    vec![("host".to_owned(), host.name.clone()), ("simulated".to_owned(), "true".to_owned())];
                if let Some(c) = host.parent_id.as_ref().and_then(|p| clusters.get(p)) {
                    tags.push(("cluster".to_owned(), c.clone()));
                }
                points.extend(readings.into_iter().map(|r| r.into_point(&tags, at)));
            }
            if points.is_empty() {
                continue;
            }
            if let Err(e) = store.write(&points, at).await {
                tracing::warn!(error = %e, "the simulated fleet's figures were not stored; trying again next round");
            }
        }
    })
}

/// Every `interval`: one round of the alert evaluator (see [`Evaluator`]): alerts move, incidents open and
/// resolve.
pub fn spawn_alert_evaluator(
    db: Db,
    policy: Arc<IncidentPolicy>,
    totals: Arc<EvaluatorTotals>,
    interval: Duration,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut evaluator = Evaluator::new(db, policy, totals);
        let mut ticks = Ticks::new(interval, shutdown);
        while ticks.next().await {
            match evaluator.round().await {
                Ok(round) => {
                    if !(round.reported.is_empty() && round.resolved.is_empty() && round.suppressed.is_empty()) {
                        tracing::info!(
                            reported = ?round.reported,
                            resolved = ?round.resolved,
                            suppressed = ?round.suppressed,
                            "alerts evaluated"
                        );
                    }
                }
                Err(e) => tracing::warn!(error = %e, "evaluating alert rules failed; retrying next round"),
            }
        }
    })
}

/// Rollup passes per tick at most: a backlog is worked off over several ticks, not in one burst.
const ROLLUP_PASSES_PER_TICK: usize = 100;
/// How often the upkeep loop looks whether a pass's worth of points waits to be folded.
const BACKLOG_CHECK: Duration = Duration::from_secs(1);
/// How often old points and buckets are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Points written and not folded yet; `None` (logged) when the store cannot tell.
async fn waiting_points(db: &Db) -> Option<i64> {
    rollup::unfolded_points(db)
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "cannot tell how many metric points wait for the rollups"))
        .ok()
}

/// Every `interval`, as soon as a pass's worth of points waits, or once writes go quiet: folds newly written
/// points into the rollups; every ten minutes: deletes what is past its retention.
pub fn spawn_metric_upkeep(
    db: Db,
    retention: Retention,
    interval: Duration,
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = Ticks::new(BACKLOG_CHECK.min(interval), shutdown);
        let mut last_prune: Option<std::time::Instant> = None;
        let mut last_fold: Option<std::time::Instant> = None;
        // Points waiting at the tick before, while none were folded since.
        let mut waited: Option<i64> = None;
        while ticks.next().await {
            // A tick folds what waits when it is time, when a full pass waits, or when as much waits as a tick
            // ago (writes went quiet: an idle server folds at once). It does not chase the writers: past its
            // first pass it goes on only while a full pass waits, since a pass writes a row per series and
            // period it meets, so small passes cost as much as big ones.
            let Some(waiting) = waiting_points(&db).await else { continue };
            let on_time = last_fold.is_none_or(|at| at.elapsed() >= interval);
            let quiet = waiting > 0 && waited == Some(waiting);
            waited = Some(waiting);
            if waiting > 0 && (on_time || quiet || waiting >= rollup::POINTS_PER_PASS) {
                last_fold = Some(std::time::Instant::now());
                waited = None;
                for n in 0..ROLLUP_PASSES_PER_TICK {
                    if n > 0 && waiting_points(&db).await.is_none_or(|w| w < rollup::POINTS_PER_PASS) {
                        break;
                    }
                    match rollup::roll_up(&db).await {
                        Ok(0) => break,
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "rolling up metric points failed; retrying next round");
                            break;
                        }
                    }
                }
            }
            if last_prune.is_none_or(|at| at.elapsed() >= PRUNE_EVERY) {
                last_prune = Some(std::time::Instant::now());
                let now = db.clock().now_nanos();
                match rollup::prune(&db, now, retention).await {
                    Ok(p) if p.segments + p.buckets > 0 => {
                        tracing::info!(
                            segments = p.segments,
                            buckets = p.buckets,
                            "deleted metrics past their retention"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "pruning old metrics failed; retrying later"),
                }
            }
        }
    })
}

/// Every `interval`: the executor starts jobs for changes that began implementing, takes over jobs no
/// live server holds, and drives them; the simulated fleet's agents run their hosts' tasks. Every
/// `reconcile_every`, the simulated hosts are compared with the inventory (agents report real hosts).
pub fn spawn_executor(
    executor: Arc<Executor>,
    sim: Arc<SimAgents>,
    policy: Arc<IncidentPolicy>,
    (interval, reconcile_every): (Duration, Duration),
    shutdown: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = Ticks::new(interval, shutdown);
        let mut reconciled: Option<std::time::Instant> = None;
        while ticks.next().await {
            if reconciled.is_none_or(|at| at.elapsed() >= reconcile_every) {
                reconciled = Some(std::time::Instant::now());
                match sim.reconcile(&policy).await {
                    Ok(0) => {}
                    Ok(n) => tracing::warn!(differences = n, "simulated hosts differ from the inventory"),
                    Err(e) => tracing::warn!(error = %e, "reconciling the simulated hosts failed; retrying later"),
                }
            }
            if let Err(e) = executor.tick().await {
                tracing::warn!(error = %e, "the executor's round failed; retrying next round");
            }
            if let Err(e) = sim.round().await {
                tracing::warn!(error = %e, "the simulated fleet's round failed; retrying next round");
            }
        }
    })
}
