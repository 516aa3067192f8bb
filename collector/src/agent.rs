//! The agent's loop: every interval, read the host (and its VMs), queue the batch on disk, then send what is
//! queued, oldest first, until the server refuses to take more or the next reading is due. With a
//! hypervisor, host tasks run on a thread of their own.

use crate::driver::{shape, DriverConfig, Lazy, StatsSource};
use crate::host::{HostReader, Reading};
use crate::queue::Queue;
use crate::send::{Outcome, Sender};
use crate::tasks;
use crate::vm::VmReader;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// What the agent runs with.
#[derive(Clone)]
pub struct Config {
    /// The server's base URL.
    pub server: String,
    pub token: String,
    pub interval: Duration,
    pub queue_dir: PathBuf,
    pub queue_max_bytes: u64,
    /// Tags on every point: host, and cluster and region when given.
    pub tags: Vec<(String, String)>,
    /// Where `/proc` and `/sys` are found (`/` on a real host).
    pub root: PathBuf,
    /// Print a line for every batch collected and sent.
    pub verbose: bool,
    /// Collect once, send what is queued, and exit: 0 when the queue is empty.
    pub once: bool,
    /// This host's hypervisor: report its VMs and run its host tasks.
    pub hypervisor: Option<DriverConfig>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("server", &self.server)
            .field("token", &"[redacted]")
            .field("interval", &self.interval)
            .field("queue_dir", &self.queue_dir)
            .field("queue_max_bytes", &self.queue_max_bytes)
            .field("tags", &self.tags)
            .field("root", &self.root)
            .field("verbose", &self.verbose)
            .field("once", &self.once)
            .field("hypervisor", &self.hypervisor)
            .finish()
    }
}

/// One line on stderr, which systemd keeps in the journal. Never given the token.
pub(crate) fn log(message: &str) {
    eprintln!("tollgate-agent: {message}");
}

/// Runs until killed (or, with `once`, for one reading). Batches are on disk as soon as they are read, so
/// a kill loses none of them; a task's outcome not yet reported is sent again by the server's re-delivery.
pub fn run(config: &Config) -> std::io::Result<bool> {
    let mut queue = Queue::open(&config.queue_dir, config.queue_max_bytes)?;
    if !queue.is_empty() {
        log(&format!("{} batch(es) from an earlier run are queued in {}", queue.len(), queue.dir().display()));
    }
    let timeout = config.interval.clamp(Duration::from_secs(2), Duration::from_secs(30));
    let sender = Sender::new(&config.server, &config.token, timeout);
    let mut reader = HostReader::new(&config.root);
    let mut vms = config.hypervisor.as_ref().map(Vms::new);
    if let Some(driver) = config.hypervisor.clone().filter(|_| !config.once) {
        let runner = tasks::Runner::new(
            tasks::Client::new(&config.server, &config.token),
            driver,
            Default::default(),
            config.verbose,
        );
        std::thread::Builder::new().name("host-tasks".into()).spawn(move || runner.run())?;
    }
    let mut state = SendState::default();
    let mut next = Instant::now();
    loop {
        let at_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i64);
        let mut missing = Vec::new();
        let mut readings = reader.collect(&mut missing);
        if !missing.is_empty() && !state.warned_missing {
            log(&format!("cannot read {}; reporting the rest", missing.join(", ")));
            state.warned_missing = true;
        }
        if let Some(vms) = vms.as_mut() {
            readings.extend(vms.collect());
        }
        let mut body = String::new();
        let mut points = 0_u64;
        for r in readings {
            let point = r.into_point(&config.tags, at_ns);
            match point.write_to(&mut body) {
                Ok(()) => points += 1,
                Err(e) => log(&format!("a reading was left out: {e}")),
            }
        }
        if points > 0 {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(body.as_bytes())?;
            let seq = queue.push(&gz.finish()?, points)?;
            if config.verbose {
                log(&format!("collected batch {seq}: {points} points at {at_ns}"));
            }
        }
        next += config.interval;
        drain(&mut queue, &sender, &mut state, if config.once { None } else { Some(next) }, config.verbose)?;
        if config.once {
            return Ok(queue.is_empty());
        }
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            // Sending ran past a reading: skip the missed ones rather than read in a burst.
            while next <= now {
                next += config.interval;
            }
        }
    }
}

/// The VMs' side of the metrics, with a reader of its own: a task's long call (a migration) must not hold
/// up the readings.
struct Vms {
    uri: String,
    source: Lazy<Box<dyn StatsSource>>,
    shape: Arc<AtomicU64>,
    reader: VmReader,
    /// Whether the VMs could not be read last time: said once, not every interval.
    failing: bool,
}

impl Vms {
    fn new(config: &DriverConfig) -> Self {
        Vms {
            uri: config.uri.clone(),
            source: Lazy::new(config.stats.clone()),
            shape: config.shape.clone(),
            reader: VmReader::new(),
            failing: false,
        }
    }

    /// The VMs' readings, or none while the hypervisor cannot be read: the host's go on regardless.
    fn collect(&mut self) -> Vec<Reading> {
        let at = Instant::now();
        let read = self.source.get().and_then(|source| source.stats()).map(|stats| {
            self.shape.store(shape(&stats), Ordering::Relaxed);
            self.reader.readings(stats, at)
        });
        match read {
            Ok(readings) => {
                if std::mem::take(&mut self.failing) {
                    log(&format!("reading VMs from {} again", self.uri));
                }
                readings
            }
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    log(&format!("cannot read VMs from {} ({e}); reporting the host alone until it answers", self.uri));
                }
                Vec::new()
            }
        }
    }
}

#[derive(Default)]
struct SendState {
    /// Why the server is not taking batches, while it is not.
    outage: Option<String>,
    sent_since_outage: u64,
    warned_missing: bool,
    reported_dropped: u64,
}

fn drain(
    queue: &mut Queue,
    sender: &Sender,
    state: &mut SendState,
    deadline: Option<Instant>,
    verbose: bool,
) -> std::io::Result<()> {
    while deadline.is_none_or(|d| Instant::now() < d) {
        let Some(batch) = queue.oldest().cloned() else { break };
        let body = match batch.read() {
            Ok(b) => b,
            Err(e) => {
                log(&format!("batch {} cannot be read ({e}); it is dropped", batch.seq));
                queue.remove(batch.seq)?;
                continue;
            }
        };
        match sender.send(&body, "ns") {
            Outcome::Accepted => {
                queue.remove(batch.seq)?;
                if verbose {
                    log(&format!("sent batch {}: {} points", batch.seq, batch.points));
                }
                if state.outage.is_some() {
                    state.sent_since_outage += 1;
                }
            }
            Outcome::Refused(why) => {
                log(&format!("batch {} ({} points) was refused and is dropped: {why}", batch.seq, batch.points));
                queue.remove(batch.seq)?;
            }
            Outcome::Retry(why) => {
                if state.outage.as_deref() != Some(why.as_str()) {
                    log(&format!("{why}; keeping {} batch(es) on disk until it takes them", queue.len()));
                    state.outage = Some(why);
                    state.sent_since_outage = 0;
                }
                break;
            }
        }
    }
    if queue.is_empty() && state.outage.take().is_some() {
        log(&format!("the server is back: sent {} queued batch(es)", state.sent_since_outage));
    }
    let dropped = queue.dropped();
    if dropped.batches > state.reported_dropped {
        log(&format!(
            "the queue is full ({} bytes): dropped the oldest, {} batch(es) and {} points so far",
            queue.bytes(),
            dropped.batches,
            dropped.points
        ));
        state.reported_dropped = dropped.batches;
    }
    Ok(())
}
