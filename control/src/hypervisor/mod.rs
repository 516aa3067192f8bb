//! The `Hypervisor` driver trait: what a host agent can do to the domains of its own host, with a
//! simulated driver (in-process, for the demo fleet and scale tests) and a libvirt driver (feature
//! `libvirt`, the only code that links libvirt's C library). One conformance suite runs against both.
//!
//! Calls block (libvirt's do): async callers go through [`blocking`]. Every mutating call is
//! idempotent — asking for what is already there succeeds — so a re-delivered task does no harm.

mod memory;
pub mod sim;
pub mod xml;

#[cfg(feature = "libvirt")]
pub mod libvirt;
pub mod remote;

pub use memory::{check_memory_limit, plan_memory, MemoryLayout, MemoryStep, MEMORY_UNIT_MIB};

use serde::{Deserialize, Serialize};

/// Errors of a driver call, in the terms an operator reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "error", content = "detail", rename_all = "snake_case")]
pub enum HypervisorError {
    #[error("no domain named {name} on this host")]
    NotFound { name: String },
    #[error("a different domain named {name} already exists on this host")]
    Exists { name: String },
    #[error("{what} not found in the host's storage pool")]
    MissingImage { what: String },
    /// Beyond what can be done live; `proposal` says what change would do it.
    #[error("{reason}; {proposal}")]
    Refused { reason: String, proposal: String },
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("not supported on this host: {0}")]
    Unsupported(String),
    /// The destination would not take the domain; the domain still runs where it was.
    #[error("migration to {peer} failed: {reason}")]
    MigrationFailed { peer: String, reason: String },
    #[error("hypervisor error: {0}")]
    Backend(String),
}

/// Why a network limit is refused: the domain has no NIC (an adopted one without, or its host's agent has no
/// guest bridge).
pub const NO_NET_LIMIT: &str = "network limits: the VM has no network interface Tollgate manages";

pub type HvResult<T> = Result<T, HypervisorError>;

/// Whether a domain runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerState {
    Running,
    Paused,
    ShutOff,
    /// Crashed, suspended to memory, shutting down, or a state this driver does not name.
    Other,
}

/// Boot a kernel and initrd straight from the host's disk (test and appliance images).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectBoot {
    pub kernel: String,
    pub initrd: String,
    pub cmdline: String,
}

/// What to create: sizes now, headroom for live growth, and the image its disk overlays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DomainSpec {
    /// The domain name on the host: letters, digits, `-`, `_`, `.`; at most 64.
    pub name: String,
    /// Tollgate's VM id, kept in the domain's metadata: what makes a domain managed.
    pub vm_id: String,
    pub vcpus: u32,
    /// vCPUs the domain can grow to while running.
    pub max_vcpus: u32,
    /// Memory at boot; live growth adds memory modules on top.
    pub memory_mib: u64,
    /// Memory the domain can grow to while running.
    pub max_memory_mib: u64,
    /// Memory module slots for live growth.
    pub memory_slots: u32,
    /// The template volume in the host's storage pool that the disk overlays (qcow2).
    pub image: String,
    pub disk_gib: u64,
    pub boot: Option<DirectBoot>,
}

impl DomainSpec {
    /// Checks the sizes hang together before anything reaches a host.
    pub fn validate(&self) -> HvResult<()> {
        valid_name(&self.name)?;
        let bad = |m: String| Err(HypervisorError::Invalid(m));
        if self.vm_id.is_empty() || self.vm_id.len() > 64 || self.vm_id.contains(['<', '>', '&', '"', '\'']) {
            return bad("the VM id must be 1 to 64 characters without markup".into());
        }
        if self.vcpus == 0 || self.vcpus > self.max_vcpus || self.max_vcpus > 512 {
            return bad(format!("vCPUs must be 1 ≤ {} ≤ maximum {} ≤ 512", self.vcpus, self.max_vcpus));
        }
        if self.memory_mib == 0 || self.memory_mib % MEMORY_UNIT_MIB != 0 {
            return bad(format!("memory must be a positive multiple of {MEMORY_UNIT_MIB} MiB"));
        }
        if self.max_memory_mib < self.memory_mib || self.max_memory_mib % MEMORY_UNIT_MIB != 0 {
            return bad(format!(
                "maximum memory must be a multiple of {MEMORY_UNIT_MIB} MiB and at least the memory at boot"
            ));
        }
        if self.max_memory_mib > self.memory_mib && self.memory_slots == 0 {
            return bad("growing memory needs at least one memory slot".into());
        }
        if self.memory_slots > 256 || self.disk_gib == 0 || self.disk_gib > 65_536 {
            return bad("at most 256 memory slots, and a disk of 1 GiB to 64 TiB".into());
        }
        valid_name(&self.image)?;
        Ok(())
    }

    /// A small VM of `image` for demos and tests: 1 of 4 vCPUs, 1 GiB growing to 2 GiB in 2 slots, 10 GiB of
    /// disk, VM id `vm-<name>`.
    pub fn small(name: &str, image: &str) -> DomainSpec {
        DomainSpec {
            name: name.into(),
            vm_id: format!("vm-{name}"),
            vcpus: 1,
            max_vcpus: 4,
            memory_mib: 1024,
            max_memory_mib: 2048,
            memory_slots: 2,
            image: image.into(),
            disk_gib: 10,
            boot: None,
        }
    }

    /// The name of the overlay volume that holds this domain's disk.
    pub fn disk_volume(&self) -> String {
        disk_volume(&self.name)
    }
}

/// Whether a running domain with `max_vcpus` of headroom can be set to `vcpus` live; past the headroom, the
/// refusal proposes a cold resize.
pub fn check_live_vcpus(vcpus: u32, max_vcpus: u32) -> HvResult<()> {
    if vcpus == 0 {
        return Err(HypervisorError::Invalid("a VM needs at least one vCPU".into()));
    }
    if vcpus > max_vcpus {
        return Err(HypervisorError::Refused {
            reason: format!("{vcpus} vCPUs is past the live headroom of {max_vcpus}"),
            proposal: format!("request a cold resize to {vcpus} vCPUs (a change that restarts the VM)"),
        });
    }
    Ok(())
}

/// The overlay volume of the domain called `name`.
pub fn disk_volume(name: &str) -> String {
    format!("{name}.qcow2")
}

/// Names that are safe as domain, volume and file names on every host.
pub fn valid_name(name: &str) -> HvResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(HypervisorError::Invalid(format!(
            "{name:?} is not a valid name (1 to 64 letters, digits, '-', '_' or '.', not starting with '.' or '-')"
        )))
    }
}

/// A disk of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disk {
    /// The guest's device name (`vda`).
    pub target: String,
    /// The volume in the host's pool, when the disk is one.
    pub volume: Option<String>,
    pub capacity_bytes: u64,
}

/// A domain as the host reports it now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    pub name: String,
    pub uuid: String,
    /// Tollgate's VM id from the metadata; `None` for a domain Tollgate does not manage.
    pub vm_id: Option<String>,
    pub state: PowerState,
    /// The hypervisor's id of the running domain; it changes when the domain restarts.
    pub id: Option<u32>,
    pub vcpus: u32,
    pub max_vcpus: u32,
    pub memory: MemoryLayout,
    pub disks: Vec<Disk>,
}

/// Limits on a running domain, as a change names them and as a driver reads them back (the change model's
/// type: one definition from the request to the host).
pub use tollgate_workflows::change::VmLimits as Limits;
pub use tollgate_workflows::change::NET_MBIT_MAX;

/// Checks a change of limits before it reaches the domain.
pub fn check_limits(change: &Limits) -> HvResult<()> {
    change.check().map_err(|(_, why)| HypervisorError::Invalid(why))
}

pub use tollgate_workflows::cmdb::Capabilities;

/// One domain's counters from one bulk statistics call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DomainStats {
    pub name: String,
    pub running: bool,
    /// CPU time the domain has used, all vCPUs together.
    pub cpu_time_ns: u64,
    pub vcpus: u32,
    pub balloon_current_kib: u64,
    pub balloon_rss_kib: u64,
    pub block_read_bytes: u64,
    pub block_write_bytes: u64,
    pub block_read_reqs: u64,
    pub block_write_reqs: u64,
    pub net_rx_bytes: u64,
    pub net_tx_bytes: u64,
}

impl DomainStats {
    /// One domain's figures from libvirt's typed statistics (`cpu.time`, `block.0.rd.bytes`, …):
    /// per-device counters are added up, values that are not numbers left out.
    pub fn from_params(name: String, params: &[(String, Option<u64>)]) -> DomainStats {
        let mut s = DomainStats { name, ..DomainStats::default() };
        for (field, value) in params {
            let Some(v) = *value else { continue };
            let mut parts = field.split('.');
            let (group, rest) = (parts.next().unwrap_or(""), parts.collect::<Vec<_>>());
            let device = |n: &str| n.parse::<u32>().is_ok();
            match (group, rest.as_slice()) {
                // VIR_DOMAIN_RUNNING is 1.
                ("state", ["state"]) => s.running = v == 1,
                ("cpu", ["time"]) => s.cpu_time_ns = v,
                ("vcpu", ["current"]) => s.vcpus = v as u32,
                ("balloon", ["current"]) => s.balloon_current_kib = v,
                ("balloon", ["rss"]) => s.balloon_rss_kib = v,
                ("block", [n, "rd", "bytes"]) if device(n) => s.block_read_bytes += v,
                ("block", [n, "wr", "bytes"]) if device(n) => s.block_write_bytes += v,
                ("block", [n, "rd", "reqs"]) if device(n) => s.block_read_reqs += v,
                ("block", [n, "wr", "reqs"]) if device(n) => s.block_write_reqs += v,
                ("net", [n, "rx", "bytes"]) if device(n) => s.net_rx_bytes += v,
                ("net", [n, "tx", "bytes"]) if device(n) => s.net_tx_bytes += v,
                _ => {}
            }
        }
        s
    }

    /// One domain's figures from the per-domain calls, for a driver without bulk statistics (LXC): `info`
    /// is `virDomainGetInfo`'s answer, `hard_limit_kib` the memory limit a running domain is held to (its
    /// maximum without one), `nics` each NIC's bytes received and sent. A stopped domain reports the memory it
    /// is configured with and uses none.
    pub fn from_info(name: String, info: DomainInfo, hard_limit_kib: Option<u64>, nics: &[(u64, u64)]) -> DomainStats {
        // VIR_DOMAIN_RUNNING is 1.
        let running = info.state == 1;
        let (limit_kib, used_kib) = if running {
            (hard_limit_kib.unwrap_or(info.max_kib).min(info.max_kib), info.used_kib)
        } else {
            (info.used_kib, 0)
        };
        DomainStats {
            name,
            running,
            cpu_time_ns: info.cpu_time_ns,
            vcpus: info.vcpus,
            balloon_current_kib: limit_kib,
            balloon_rss_kib: used_kib,
            net_rx_bytes: nics.iter().map(|n| n.0).sum(),
            net_tx_bytes: nics.iter().map(|n| n.1).sum(),
            ..DomainStats::default()
        }
    }
}

/// `virDomainGetInfo`: what every driver answers for one domain.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DomainInfo {
    /// `virDomainState`: 1 is running.
    pub state: u32,
    /// The most memory the domain may have.
    pub max_kib: u64,
    /// What it uses now while it runs (a container's cgroup usage; a VM's current size); stopped, what it is
    /// configured with.
    pub used_kib: u64,
    pub vcpus: u32,
    pub cpu_time_ns: u64,
}

/// Another host, as a migration addresses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The host's name in the inventory.
    pub host: String,
    /// How the source's hypervisor reaches the destination's (for libvirt, `qemu+tcp://host/system`).
    pub uri: String,
}

/// The driver of one host's hypervisor.
pub trait Hypervisor: Send + Sync {
    /// What the hypervisor is (`libvirt/kvm`, `libvirt/lxc`, `simulated`).
    fn kind(&self) -> String;

    /// What it can do; it refuses the rest.
    fn capabilities(&self) -> Capabilities {
        Capabilities::MACHINES
    }

    /// Every domain on the host, managed or not.
    fn domains(&self) -> HvResult<Vec<Domain>>;

    fn domain(&self, name: &str) -> HvResult<Domain>;

    /// Creates the disk overlay, defines the domain and starts it. A domain of the same name and VM id
    /// is taken as this provision done before: it is started if need be and returned.
    fn provision(&self, spec: &DomainSpec) -> HvResult<Domain>;

    fn start(&self, name: &str) -> HvResult<Domain>;

    /// Powers the domain off (at once: the guest is not asked).
    fn stop(&self, name: &str) -> HvResult<Domain>;

    /// Powers off, undefines, and removes the domain's overlay volume. Deleting a missing domain succeeds.
    fn delete(&self, name: &str) -> HvResult<()>;

    /// Sets the vCPUs of the running domain (and its definition) without restarting it.
    fn set_vcpus(&self, name: &str, vcpus: u32) -> HvResult<Domain>;

    /// Sets the memory of the running domain (and its definition) by plugging or unplugging modules.
    fn set_memory(&self, name: &str, memory_mib: u64) -> HvResult<Domain>;

    fn limits(&self, name: &str) -> HvResult<Limits>;

    /// Applies the limits that `change` names to the running domain and returns them as read back.
    fn set_limits(&self, name: &str, change: &Limits) -> HvResult<Limits>;

    /// Marks a domain as managed by Tollgate (VM id in its metadata), without restarting it.
    fn adopt(&self, name: &str, vm_id: &str) -> HvResult<Domain>;

    /// Makes room for an incoming migration: empty volumes of the same names and sizes.
    fn prepare_incoming(&self, disks: &[Disk]) -> HvResult<()>;

    /// Moves the domain to `peer` with its storage: live when it runs; cold when it is stopped, when it may
    /// arrive paused (a driver may start it paused to copy its disks, its guest never running) and the
    /// destination is then to [`Hypervisor::stop`] it. On failure it is here as it was.
    fn migrate(&self, name: &str, peer: &Peer) -> HvResult<()>;

    /// Counters of every domain, from one call.
    fn stats(&self) -> HvResult<Vec<DomainStats>>;
}

/// Runs a blocking driver call off the async runtime.
pub async fn blocking<T, F>(call: F) -> HvResult<T>
where
    F: FnOnce() -> HvResult<T> + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|e| Err(HypervisorError::Backend(format!("driver call did not finish: {e}"))))
}
