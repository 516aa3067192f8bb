//! Loops that run beside the API: SLA and approval timers. Each waits on its tick or on shutdown; a failed round is logged and the
//! loop goes on.

use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tollgate_workflows::Db;
use tollgate_workflows::{approval, incident};

/// Every `interval`: checks running incidents for SLA breaches (escalating first breaches) and approval
/// stages for timeouts.
pub fn spawn_timers(db: Db, interval: Duration, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
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
