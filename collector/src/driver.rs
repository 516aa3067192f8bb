//! This host's hypervisor as the agent holds it: a driver for host tasks and a reader of the VMs'
//! counters, each opened on first use and again while opening fails, so an agent started before libvirt
//! (or on a host where it is down) keeps reporting the host.
//!
//! With libvirt the two live apart: the counters are read over libvirt's own socket protocol
//! ([`tollgate_control::hypervisor::remote`]) by the agent itself, and tasks run in the helper process
//! `tollgate-agent-libvirt` ([`crate::helper`]), which links libvirt's C library and is started when a task
//! comes and closed when they stop. The resident agent stays small.

use std::hash::{Hash, Hasher};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use tollgate_control::hypervisor::remote::RemoteStats;
use tollgate_control::hypervisor::{Domain, DomainStats, HvResult, Hypervisor};
use tollgate_control::task::{self, Action, Outcome};

/// What the agent asks of its host's hypervisor: its hello, the inventory, and host tasks.
pub trait HostDriver: Send {
    /// What the hypervisor is (`libvirt/kvm`), for the agent's hello.
    fn kind(&mut self) -> HvResult<String>;

    /// Every domain on the host, for the server to compare with its inventory.
    fn domains(&mut self) -> HvResult<Vec<Domain>>;

    fn perform(&mut self, action: &Action) -> Outcome;

    /// Called between polls for tasks: a driver may let go of what it holds while none come.
    fn idle(&mut self) {}
}

/// Reads the counters of every VM on the host, once per interval.
pub trait StatsSource: Send {
    fn stats(&mut self) -> HvResult<Vec<DomainStats>>;
}

/// A driver in the agent's own process (the simulated one in tests).
pub struct InProcess(pub Box<dyn Hypervisor>);

impl HostDriver for InProcess {
    fn kind(&mut self) -> HvResult<String> {
        Ok(self.0.kind())
    }

    fn domains(&mut self) -> HvResult<Vec<Domain>> {
        self.0.domains()
    }

    fn perform(&mut self, action: &Action) -> Outcome {
        task::perform(&*self.0, action)
    }
}

impl StatsSource for InProcess {
    fn stats(&mut self) -> HvResult<Vec<DomainStats>> {
        self.0.stats()
    }
}

impl StatsSource for RemoteStats {
    fn stats(&mut self) -> HvResult<Vec<DomainStats>> {
        RemoteStats::stats(self)
    }
}

/// Opens one side of the driver.
pub type Connect<T> = Arc<dyn Fn() -> HvResult<T> + Send + Sync>;

/// Which hypervisor the agent drives, and how other hosts reach it.
#[derive(Clone)]
pub struct DriverConfig {
    /// What the driver opens, for logs (`qemu:///system`).
    pub uri: String,
    /// How other hosts' hypervisors reach this one for migrations (`qemu+tcp://host/system`).
    pub peer_uri: String,
    /// Opens the driver that runs host tasks.
    pub tasks: Connect<Box<dyn HostDriver>>,
    /// Opens the reader of the VMs' counters.
    pub stats: Connect<Box<dyn StatsSource>>,
    /// How often the host's domains are sent for the server to compare with its inventory, at the least.
    pub inventory_every: std::time::Duration,
    /// What the VMs' last reading showed of the host's domains ([`shape`]); 0 until one is read. The task
    /// side sends the inventory as soon as it changes.
    pub shape: Arc<AtomicU64>,
}

/// A digest of the host's domains as one statistics call shows them: names, power, vCPUs and memory. A
/// domain defined, undefined, started, stopped or resized (by Tollgate or by hand) changes it. Never 0.
pub fn shape(stats: &[DomainStats]) -> u64 {
    let mut domains: Vec<_> = stats.iter().map(|s| (&s.name, s.running, s.vcpus, s.balloon_current_kib)).collect();
    domains.sort_unstable();
    let mut hasher = std::hash::DefaultHasher::new();
    domains.hash(&mut hasher);
    hasher.finish() | 1
}

impl DriverConfig {
    /// A driver in this process for both sides (the simulated one in tests).
    pub fn in_process(
        uri: &str,
        peer_uri: &str,
        open: impl Fn() -> HvResult<Box<dyn Hypervisor>> + Send + Sync + 'static,
        inventory_every: std::time::Duration,
    ) -> Self {
        let open = Arc::new(open);
        let for_stats = open.clone();
        DriverConfig {
            uri: uri.to_owned(),
            peer_uri: peer_uri.to_owned(),
            tasks: Arc::new(move || Ok(Box::new(InProcess(open()?)) as Box<dyn HostDriver>)),
            stats: Arc::new(move || Ok(Box::new(InProcess(for_stats()?)) as Box<dyn StatsSource>)),
            inventory_every,
            shape: Arc::default(),
        }
    }
}

impl std::fmt::Debug for DriverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverConfig").field("uri", &self.uri).field("peer_uri", &self.peer_uri).finish()
    }
}

/// One side of the driver, opened on first use. Once open it stays: libvirt's side reconnects by itself
/// when the daemon restarts.
pub struct Lazy<T> {
    connect: Connect<T>,
    open: Option<T>,
}

impl<T> Lazy<T> {
    pub fn new(connect: Connect<T>) -> Self {
        Lazy { connect, open: None }
    }

    /// The driver, opened now if it is not open yet.
    pub fn get(&mut self) -> HvResult<&mut T> {
        let driver = match self.open.take() {
            Some(open) => open,
            None => (self.connect)()?,
        };
        Ok(self.open.insert(driver))
    }

    /// The driver if it is open.
    pub fn opened(&mut self) -> Option<&mut T> {
        self.open.as_mut()
    }
}
