//! The simulated hypervisor: domains kept in memory with the same rules as the libvirt driver (headroom,
//! memory modules, limits, migration between hosts of one fleet). It runs the demo fleet and the scale
//! tests, and passes the same conformance suite as libvirt. Everything it reports is labelled simulated.

use super::{
    plan_memory, Disk, Domain, DomainSpec, DomainStats, HvResult, Hypervisor, HypervisorError, Limits, MemoryLayout,
    MemoryStep, Peer, PowerState, NO_NET_LIMIT,
};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Simulated hosts that can migrate to one another.
#[derive(Default)]
pub struct SimFleet {
    hosts: Mutex<BTreeMap<String, HostState>>,
}

#[derive(Default)]
struct HostState {
    domains: BTreeMap<String, SimDomain>,
    volumes: BTreeMap<String, u64>,
    next_id: u32,
    refuse_incoming: bool,
}

#[derive(Clone)]
struct SimDomain {
    domain: Domain,
    limits: Limits,
    /// Whether it has a NIC (what network limits shape): provisioned ones do, unmanaged ones not.
    nic: bool,
    /// CPU time accumulated before the current run.
    cpu_ns: u64,
    running_since: Option<Instant>,
}

impl SimFleet {
    pub fn new() -> Arc<SimFleet> {
        Arc::new(SimFleet::default())
    }

    /// Adds a host with the given template images (volume names) in its pool, or returns the existing one.
    pub fn host(self: &Arc<Self>, name: &str, images: &[&str]) -> SimHost {
        let mut hosts = self.lock();
        let host = hosts.entry(name.to_string()).or_default();
        for image in images {
            host.volumes.entry(image.to_string()).or_insert(1 << 30);
        }
        SimHost { fleet: Arc::clone(self), name: name.to_string() }
    }

    /// Makes a host refuse (or accept again) incoming migrations, as a full or broken destination does.
    pub fn refuse_incoming(&self, host: &str, refuse: bool) {
        self.lock().entry(host.to_string()).or_default().refuse_incoming = refuse;
    }

    /// Defines a running domain that Tollgate does not manage, as an operator would by hand.
    pub fn add_unmanaged(&self, host: &str, name: &str, vcpus: u32, memory_mib: u64) {
        let mut hosts = self.lock();
        let h = hosts.entry(host.to_string()).or_default();
        h.next_id += 1;
        let domain = Domain {
            name: name.to_string(),
            uuid: uuid_for(host, name),
            vm_id: None,
            state: PowerState::Running,
            id: Some(h.next_id),
            vcpus,
            max_vcpus: vcpus,
            memory: MemoryLayout { base_mib: memory_mib, modules_mib: Vec::new(), max_mib: memory_mib, slots: 0 },
            disks: Vec::new(),
        };
        let sim =
            SimDomain { domain, limits: Limits::default(), nic: false, cpu_ns: 0, running_since: Some(Instant::now()) };
        h.domains.insert(name.to_string(), sim);
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, HostState>> {
        // A panic while holding the lock cannot leave a half-made domain: every edit is one insert.
        self.hosts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn uuid_for(host: &str, name: &str) -> String {
    // Stable per (host, name) so a re-run of the demo shows the same ids; not a real UUID source.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in host.bytes().chain([0]).chain(name.bytes()) {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let lo = h.rotate_left(17) ^ 0x9e37_79b9_7f4a_7c15;
    format!(
        "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
        h >> 32,
        (h >> 16) & 0xffff,
        h & 0xfff,
        lo >> 52,
        lo & 0xffff_ffff_ffff
    )
}

/// One simulated host.
#[derive(Clone)]
pub struct SimHost {
    fleet: Arc<SimFleet>,
    name: String,
}

impl SimHost {
    pub fn name(&self) -> &str {
        &self.name
    }

    fn with<T>(&self, f: impl FnOnce(&mut HostState) -> HvResult<T>) -> HvResult<T> {
        let mut hosts = self.fleet.lock();
        let host = hosts
            .get_mut(&self.name)
            .ok_or_else(|| HypervisorError::Backend(format!("simulated host {} is gone", self.name)))?;
        f(host)
    }

    fn with_domain<T>(&self, name: &str, f: impl FnOnce(&mut SimDomain) -> HvResult<T>) -> HvResult<T> {
        super::valid_name(name)?;
        self.with(|host| {
            let d = host.domains.get_mut(name).ok_or_else(|| not_found(name))?;
            f(d)
        })
    }
}

fn not_found(name: &str) -> HypervisorError {
    HypervisorError::NotFound { name: name.to_string() }
}

fn running(d: &SimDomain) -> HvResult<()> {
    if d.domain.state == PowerState::Running {
        Ok(())
    } else {
        Err(HypervisorError::Invalid(format!("{} is not running", d.domain.name)))
    }
}

impl SimDomain {
    fn cpu_time_ns(&self) -> u64 {
        // A simulated guest idles at 5 % of each vCPU.
        let run = self.running_since.map(|t| t.elapsed().as_nanos() as u64).unwrap_or(0);
        self.cpu_ns + run / 20 * u64::from(self.domain.vcpus)
    }

    fn power(&mut self, on: bool, next_id: &mut u32) {
        match (on, self.domain.state) {
            (true, PowerState::Running) | (false, PowerState::ShutOff) => {}
            (true, _) => {
                *next_id += 1;
                self.domain.state = PowerState::Running;
                self.domain.id = Some(*next_id);
                self.running_since = Some(Instant::now());
            }
            (false, _) => {
                self.cpu_ns = self.cpu_time_ns();
                self.domain.state = PowerState::ShutOff;
                self.domain.id = None;
                self.running_since = None;
            }
        }
    }
}

impl Hypervisor for SimHost {
    fn kind(&self) -> String {
        "simulated".into()
    }

    fn domains(&self) -> HvResult<Vec<Domain>> {
        self.with(|h| Ok(h.domains.values().map(|d| d.domain.clone()).collect()))
    }

    fn domain(&self, name: &str) -> HvResult<Domain> {
        self.with_domain(name, |d| Ok(d.domain.clone()))
    }

    fn provision(&self, spec: &DomainSpec) -> HvResult<Domain> {
        spec.validate()?;
        let host_name = self.name.clone();
        self.with(|h| {
            let HostState { domains, volumes, next_id, .. } = h;
            if let Some(d) = domains.get_mut(&spec.name) {
                if d.domain.vm_id.as_deref() != Some(spec.vm_id.as_str()) {
                    return Err(HypervisorError::Exists { name: spec.name.clone() });
                }
                d.power(true, next_id);
                return Ok(d.domain.clone());
            }
            if !volumes.contains_key(&spec.image) {
                return Err(HypervisorError::MissingImage { what: format!("image {}", spec.image) });
            }
            let capacity_bytes = spec.disk_gib << 30;
            volumes.insert(spec.disk_volume(), capacity_bytes);
            let domain = Domain {
                name: spec.name.clone(),
                uuid: uuid_for(&host_name, &spec.name),
                vm_id: Some(spec.vm_id.clone()),
                state: PowerState::ShutOff,
                id: None,
                vcpus: spec.vcpus,
                max_vcpus: spec.max_vcpus,
                memory: MemoryLayout {
                    base_mib: spec.memory_mib,
                    modules_mib: Vec::new(),
                    max_mib: spec.max_memory_mib,
                    slots: spec.memory_slots,
                },
                disks: vec![Disk { target: "vda".into(), volume: Some(spec.disk_volume()), capacity_bytes }],
            };
            let mut d = SimDomain { domain, limits: Limits::default(), nic: true, cpu_ns: 0, running_since: None };
            d.power(true, next_id);
            let out = d.domain.clone();
            domains.insert(spec.name.clone(), d);
            Ok(out)
        })
    }

    fn start(&self, name: &str) -> HvResult<Domain> {
        self.with(|h| {
            let d = h.domains.get_mut(name).ok_or_else(|| not_found(name))?;
            d.power(true, &mut h.next_id);
            Ok(d.domain.clone())
        })
    }

    fn stop(&self, name: &str) -> HvResult<Domain> {
        self.with(|h| {
            let d = h.domains.get_mut(name).ok_or_else(|| not_found(name))?;
            d.power(false, &mut h.next_id);
            Ok(d.domain.clone())
        })
    }

    fn delete(&self, name: &str) -> HvResult<()> {
        self.with(|h| {
            if let Some(d) = h.domains.remove(name) {
                for disk in d.domain.disks {
                    if let Some(v) = disk.volume {
                        h.volumes.remove(&v);
                    }
                }
            }
            Ok(())
        })
    }

    fn set_vcpus(&self, name: &str, vcpus: u32) -> HvResult<Domain> {
        self.with_domain(name, |d| {
            running(d)?;
            super::check_live_vcpus(vcpus, d.domain.max_vcpus)?;
            d.cpu_ns = d.cpu_time_ns();
            d.running_since = Some(Instant::now());
            d.domain.vcpus = vcpus;
            Ok(d.domain.clone())
        })
    }

    fn set_memory(&self, name: &str, memory_mib: u64) -> HvResult<Domain> {
        self.with_domain(name, |d| {
            running(d)?;
            match plan_memory(&d.domain.memory, memory_mib)? {
                MemoryStep::Nothing => {}
                MemoryStep::Plug(size) => d.domain.memory.modules_mib.push(size),
                MemoryStep::Unplug(positions) => {
                    for i in positions {
                        d.domain.memory.modules_mib.remove(i);
                    }
                }
            }
            Ok(d.domain.clone())
        })
    }

    fn limits(&self, name: &str) -> HvResult<Limits> {
        self.with_domain(name, |d| Ok(d.limits.clone()))
    }

    fn set_limits(&self, name: &str, change: &Limits) -> HvResult<Limits> {
        super::check_limits(change)?;
        self.with_domain(name, |d| {
            running(d)?;
            if change.wants_net() && !d.nic {
                return Err(HypervisorError::Unsupported(NO_NET_LIMIT.into()));
            }
            d.limits = d.limits.merged(change);
            Ok(d.limits.clone())
        })
    }

    fn adopt(&self, name: &str, vm_id: &str) -> HvResult<Domain> {
        self.with_domain(name, |d| {
            match &d.domain.vm_id {
                Some(existing) if existing != vm_id => {
                    return Err(HypervisorError::Invalid(format!("{name} is already managed as {existing}")))
                }
                _ => d.domain.vm_id = Some(vm_id.to_string()),
            }
            Ok(d.domain.clone())
        })
    }

    fn prepare_incoming(&self, disks: &[Disk]) -> HvResult<()> {
        self.with(|h| {
            for disk in disks {
                if let Some(v) = &disk.volume {
                    h.volumes.entry(v.clone()).or_insert(disk.capacity_bytes);
                }
            }
            Ok(())
        })
    }

    fn migrate(&self, name: &str, peer: &Peer) -> HvResult<()> {
        let failed = |reason: &str| HypervisorError::MigrationFailed { peer: peer.host.clone(), reason: reason.into() };
        let mut hosts = self.fleet.lock();
        if peer.host == self.name {
            return Err(failed("the destination is the source"));
        }
        let dest = hosts.get(&peer.host).ok_or_else(|| failed("no such host"))?;
        if dest.refuse_incoming {
            return Err(failed("the destination refused the domain"));
        }
        if dest.domains.contains_key(name) {
            return Err(failed("a domain of that name exists there"));
        }
        let source = hosts.get(&self.name).ok_or_else(|| not_found(name))?;
        let d = source.domains.get(name).ok_or_else(|| not_found(name))?;
        let missing =
            d.domain.disks.iter().filter_map(|disk| disk.volume.as_ref()).find(|v| !dest.volumes.contains_key(*v));
        if let Some(v) = missing {
            return Err(failed(&format!("volume {v} was not prepared on the destination")));
        }
        let mut d = d.clone();
        let source = hosts.get_mut(&self.name).ok_or_else(|| not_found(name))?;
        source.domains.remove(name);
        for disk in &d.domain.disks {
            if let Some(v) = &disk.volume {
                source.volumes.remove(v);
            }
        }
        let dest = hosts.get_mut(&peer.host).ok_or_else(|| failed("no such host"))?;
        if d.domain.state == PowerState::Running {
            // A new QEMU process on the destination: a new id, the same guest.
            dest.next_id += 1;
            d.domain.id = Some(dest.next_id);
        }
        dest.domains.insert(name.to_string(), d);
        Ok(())
    }

    fn stats(&self) -> HvResult<Vec<DomainStats>> {
        self.with(|h| {
            Ok(h.domains
                .values()
                .map(|d| {
                    let running = d.domain.state == PowerState::Running;
                    DomainStats {
                        name: d.domain.name.clone(),
                        running,
                        cpu_time_ns: d.cpu_time_ns(),
                        vcpus: if running { d.domain.vcpus } else { 0 },
                        balloon_current_kib: d.domain.memory.current_mib() * 1024,
                        balloon_rss_kib: if running { d.domain.memory.current_mib() * 1024 / 2 } else { 0 },
                        ..DomainStats::default()
                    }
                })
                .collect())
        })
    }
}

impl std::fmt::Debug for SimHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHost").field("name", &self.name).finish()
    }
}
