//! The libvirt driver, for QEMU/KVM and LXC hosts: one connection per host agent, domains read back from
//! their live XML after every change, memory modules as DIMMs, limits through the scheduler, block I/O
//! tuning and NIC bandwidth, live migration peer to peer with all storage copied.
//!
//! Containers (libvirt's LXC driver) boot their own root file system, a raw image copied from a template in
//! the pool and loop-mounted; their memory is a cgroup limit that moves live up to its maximum, and their
//! CPU quota is the scheduler's. What LXC cannot do (vCPU hotplug, disk and live network limits,
//! migration) is refused with that reason before anything changes.

mod ffi;
mod read;

use super::{
    check_memory_limit, disk_volume, plan_memory, xml, Capabilities, Disk, Domain, DomainSpec, DomainStats, HvResult,
    Hypervisor, HypervisorError, Limits, MemoryStep, Peer, PowerState, NO_NET_LIMIT,
};
use ffi::{Tune, Typed};
use read::LiveXml;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use virt::connect::Connect;
use virt::domain::{Domain as VirDomain, MigrateParameters, SchedBandwidth, SchedulerInfo};
use virt::error::ErrorNumber;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::sys;

/// The storage pool that holds templates and overlays.
pub const POOL: &str = "default";
/// How long a guest gets to release an unplugged vCPU or memory module.
const UNPLUG_WAIT: Duration = Duration::from_secs(20);
/// The CFS period a CPU quota is a share of (100 ms, the kernel's default).
const CPU_PERIOD_US: u64 = 100_000;

/// How often a container start is tried when its root image lost the race for a loop device.
const LOOP_RACE_TRIES: u64 = 5;

const LIVE_AND_CONFIG: u32 = sys::VIR_DOMAIN_AFFECT_LIVE | sys::VIR_DOMAIN_AFFECT_CONFIG;

/// A host's libvirt daemon.
pub struct Libvirt {
    uri: String,
    conn: Mutex<Option<Connect>>,
    virt_type: String,
    /// The host bridge new domains get a NIC on; without one they have none (and no network limits).
    guest_bridge: Option<String>,
}

fn backend(e: virt::error::Error) -> HypervisorError {
    HypervisorError::Backend(e.message().to_string())
}

fn lookup_error(name: &str, e: virt::error::Error) -> HypervisorError {
    if e.code().is(ErrorNumber::NoDomain) {
        HypervisorError::NotFound { name: name.to_string() }
    } else {
        backend(e)
    }
}

impl Libvirt {
    /// Connects to the daemon at `uri` (`qemu:///system`, `qemu+unix:///system?socket=…`, `lxc:///system`)
    /// and learns whether it offers KVM or only emulation, or runs containers.
    pub fn connect(uri: &str) -> HvResult<Libvirt> {
        Libvirt::connect_as(uri, None)
    }

    /// [`Libvirt::connect`], creating domains of `virt_type` (`kvm`, `qemu`; `lxc` for containers) rather
    /// than the best the host offers: some hosts have a KVM device that runs only guest kernels built for it.
    pub fn connect_as(uri: &str, virt_type: Option<&str>) -> HvResult<Libvirt> {
        // libvirt prints every error to stderr by default; here each one is returned and reported once.
        static QUIET: std::sync::Once = std::sync::Once::new();
        QUIET.call_once(virt::error::clear_error_callback);
        let conn = Connect::open(Some(uri)).map_err(backend)?;
        let driver = conn.driver_type().map_err(backend)?;
        let virt_type = match (driver.to_ascii_uppercase().as_str(), virt_type) {
            ("LXC", None | Some("lxc")) => "lxc".to_string(),
            ("QEMU", Some(t)) if t == "kvm" || t == "qemu" => t.to_string(),
            ("QEMU", None) => read::best_domain_type(&conn.capabilities().map_err(backend)?)?,
            ("LXC" | "QEMU", Some(t)) => {
                return Err(HypervisorError::Invalid(format!(
                    "domain type {t:?} is not one libvirt's {driver} driver runs"
                )))
            }
            _ => {
                return Err(HypervisorError::Unsupported(format!(
                    "libvirt's {driver} driver at {uri}: Tollgate drives QEMU/KVM and LXC hosts"
                )))
            }
        };
        Ok(Libvirt { uri: uri.to_string(), conn: Mutex::new(Some(conn)), virt_type, guest_bridge: None })
    }

    /// New domains get a virtio NIC on the host bridge `bridge` (one of the same name on every host, so
    /// they can migrate); its bandwidth is what network limits set.
    pub fn with_guest_bridge(mut self, bridge: Option<String>) -> HvResult<Libvirt> {
        if let Some(b) = &bridge {
            if b.is_empty() || b.len() > 15 || !b.bytes().all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(&c)) {
                return Err(HypervisorError::Invalid(format!("{b:?} is not a bridge name (1 to 15 of a-z 0-9 - _ .)")));
            }
        }
        self.guest_bridge = bridge;
        Ok(self)
    }

    /// `kvm`, or `qemu` where the host has no KVM; `lxc` on a container host.
    pub fn virt_type(&self) -> &str {
        &self.virt_type
    }

    /// Whether this host runs containers (libvirt's LXC driver) rather than virtual machines.
    fn containers(&self) -> bool {
        self.virt_type == "lxc"
    }

    /// The pool volume that holds a domain's disk: a qcow2 overlay, or a container's root file system.
    fn volume_name(&self, name: &str) -> String {
        if self.containers() {
            format!("{name}.img")
        } else {
            disk_volume(name)
        }
    }

    /// Starts a defined domain. A container is then held to its memory limit: libvirt's LXC driver starts
    /// it with its maximum.
    fn boot(dom: &VirDomain) -> HvResult<()> {
        // Containers starting side by side can race for the same free loop device; the loser is told it is
        // busy and succeeds on another try.
        let mut tries = 0;
        while let Err(e) = dom.create() {
            tries += 1;
            if tries >= LOOP_RACE_TRIES || !(e.message().contains("loop device") && e.message().contains("busy")) {
                return Err(backend(e));
            }
            std::thread::sleep(Duration::from_millis(100 * tries));
        }
        let defined = LiveXml::parse(&dom.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).map_err(backend)?)?;
        if defined.container && defined.memory.base_mib < defined.memory.max_mib {
            dom.set_memory_flags(defined.memory.base_mib << 10, sys::VIR_DOMAIN_AFFECT_LIVE).map_err(backend)?;
        }
        Ok(())
    }

    /// Copies the template `image` (a raw image of a root file system) to the container's own volume.
    fn container_root(&self, pool: &StoragePool, spec: &DomainSpec) -> HvResult<StorageVol> {
        let template = pool
            .lookup_storage_vol_by_name(&spec.image)
            .map_err(|_| HypervisorError::MissingImage { what: format!("image {}", spec.image) })?;
        let format = read::volume_format(&template.xml_desc(0).map_err(backend)?);
        if format.as_deref() != Some("raw") {
            return Err(HypervisorError::Invalid(format!(
                "image {} is a {} disk image; a container host takes a raw image of a root file system",
                spec.image,
                format.as_deref().unwrap_or("unknown")
            )));
        }
        let name = self.volume_name(&spec.name);
        if let Ok(v) = pool.lookup_storage_vol_by_name(&name) {
            return Ok(v);
        }
        let capacity = template.info().map_err(backend)?.capacity.max(spec.disk_gib << 30);
        StorageVol::create_xml_from(pool, &xml::raw_volume(&name, capacity), &template, 0).map_err(backend)
    }

    /// The live connection, opened again if the daemon restarted.
    fn conn(&self) -> HvResult<MutexGuard<'_, Option<Connect>>> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let alive = guard.as_ref().map(|c| c.is_alive().unwrap_or(false)).unwrap_or(false);
        if !alive {
            *guard = Some(Connect::open(Some(&self.uri)).map_err(backend)?);
        }
        Ok(guard)
    }

    fn with_conn<T>(&self, f: impl FnOnce(&Connect) -> HvResult<T>) -> HvResult<T> {
        let guard = self.conn()?;
        match guard.as_ref() {
            Some(c) => f(c),
            None => Err(HypervisorError::Backend("no connection to libvirt".into())),
        }
    }

    fn lookup(conn: &Connect, name: &str) -> HvResult<VirDomain> {
        super::valid_name(name)?;
        conn.lookup_domain_by_name(name).map_err(|e| lookup_error(name, e))
    }

    fn pool(conn: &Connect) -> HvResult<StoragePool> {
        let pool = conn
            .lookup_storage_pool_by_name(POOL)
            .map_err(|_| HypervisorError::MissingImage { what: format!("storage pool {POOL}") })?;
        // Files copied into the pool's folder by hand appear after a refresh.
        let _ = pool.refresh(0);
        Ok(pool)
    }

    fn pool_dir(pool: &StoragePool) -> HvResult<String> {
        read::pool_path(&pool.xml_desc(0).map_err(backend)?)
    }

    fn read(conn: &Connect, dom: &VirDomain) -> HvResult<Domain> {
        // A domain undefined while it is read is not there: a listing leaves it out.
        let gone = |e| lookup_error(&dom.name().unwrap_or_default(), e);
        let live = LiveXml::parse(&dom.xml_desc(0).map_err(gone)?)?;
        let (state, _) = dom.state().map_err(gone)?;
        let state = match state {
            virt::enumutil::Enum::Known(virt::domain::DomainState::Running)
            | virt::enumutil::Enum::Known(virt::domain::DomainState::Blocked) => PowerState::Running,
            virt::enumutil::Enum::Known(virt::domain::DomainState::Paused) => PowerState::Paused,
            virt::enumutil::Enum::Known(virt::domain::DomainState::Shutoff) => PowerState::ShutOff,
            _ => PowerState::Other,
        };
        let mut memory = live.memory.clone();
        if live.container && state == PowerState::Running {
            // What the kernel holds a running container to, which its XML does not follow (a container that
            // restarted itself runs at its maximum): a difference from the inventory is then drift.
            let limit = dom.memory_parameters(0).ok().and_then(|m| m.hard_limit);
            if let Some(kib) = limit {
                memory.base_mib = (kib >> 10).min(memory.max_mib);
            }
        }
        let pool_dir = Self::pool(conn).and_then(|p| Self::pool_dir(&p)).ok();
        let disks = live
            .disks
            .iter()
            .map(|d| {
                let volume = match (&pool_dir, &d.file) {
                    (Some(dir), Some(file)) => file
                        .strip_prefix(dir.as_str())
                        .map(|rest| rest.trim_start_matches('/'))
                        .filter(|rest| !rest.contains('/'))
                        .map(str::to_string),
                    _ => None,
                };
                // A container's root image is no block device of its own: its volume has the size.
                let capacity_bytes = if live.container {
                    let vol = volume.as_ref().and_then(|v| Self::pool(conn).ok()?.lookup_storage_vol_by_name(v).ok());
                    vol.and_then(|v| v.info().ok()).map_or(0, |i| i.capacity)
                } else {
                    dom.block_info(&d.target, 0).map(|b| b.capacity).unwrap_or(0)
                };
                Disk { target: d.target.clone(), volume, capacity_bytes }
            })
            .collect();
        Ok(Domain {
            name: live.name,
            uuid: live.uuid,
            vm_id: live.vm_id,
            state,
            id: dom.id(),
            vcpus: live.vcpus,
            max_vcpus: live.max_vcpus,
            memory,
            disks,
        })
    }

    fn running(dom: &VirDomain, name: &str) -> HvResult<()> {
        if dom.is_active().map_err(backend)? {
            Ok(())
        } else {
            Err(HypervisorError::Invalid(format!("{name} is not running")))
        }
    }

    /// Polls the domain until `done` holds or the guest's time is up.
    fn wait_for(conn: &Connect, dom: &VirDomain, what: &str, done: impl Fn(&Domain) -> bool) -> HvResult<Domain> {
        let deadline = Instant::now() + UNPLUG_WAIT;
        loop {
            let d = Self::read(conn, dom)?;
            if done(&d) {
                return Ok(d);
            }
            if Instant::now() >= deadline {
                return Err(HypervisorError::Backend(format!(
                    "the guest did not release {what} within {} s (does it run an OS with ACPI hotplug?)",
                    UNPLUG_WAIT.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Hypervisor for Libvirt {
    fn kind(&self) -> String {
        format!("libvirt/{}", self.virt_type)
    }

    fn capabilities(&self) -> Capabilities {
        if self.containers() {
            Capabilities::CONTAINERS
        } else {
            Capabilities::MACHINES
        }
    }

    fn domains(&self) -> HvResult<Vec<Domain>> {
        self.with_conn(|conn| {
            let all = conn.list_all_domains(0).map_err(backend)?;
            let mut out = Vec::with_capacity(all.len());
            for dom in &all {
                match Self::read(conn, dom) {
                    Ok(d) => out.push(d),
                    // Undefined between the listing and the read.
                    Err(HypervisorError::NotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
    }

    fn domain(&self, name: &str) -> HvResult<Domain> {
        self.with_conn(|conn| Self::read(conn, &Self::lookup(conn, name)?))
    }

    fn provision(&self, spec: &DomainSpec) -> HvResult<Domain> {
        spec.validate()?;
        self.with_conn(|conn| {
            if let Ok(dom) = conn.lookup_domain_by_name(&spec.name) {
                let d = Self::read(conn, &dom)?;
                if d.vm_id.as_deref() != Some(spec.vm_id.as_str()) {
                    return Err(HypervisorError::Exists { name: spec.name.clone() });
                }
                if !dom.is_active().map_err(backend)? {
                    Self::boot(&dom)?;
                }
                return Self::read(conn, &dom);
            }
            let pool = Self::pool(conn)?;
            if self.containers() {
                let root = self.container_root(&pool, spec)?;
                let definition = xml::container(spec, &root.path().map_err(backend)?, self.guest_bridge.as_deref());
                let dom = conn.define_domain_xml(&definition).map_err(backend)?;
                if let Err(e) = Self::boot(&dom) {
                    let _ = dom.destroy();
                    let _ = dom.undefine();
                    let _ = root.delete(0);
                    return Err(e);
                }
                return Self::read(conn, &dom);
            }
            let template = pool
                .lookup_storage_vol_by_name(&spec.image)
                .map_err(|_| HypervisorError::MissingImage { what: format!("image {}", spec.image) })?;
            let template_path = template.path().map_err(backend)?;
            let overlay = match pool.lookup_storage_vol_by_name(&spec.disk_volume()) {
                Ok(v) => v,
                Err(_) => {
                    let vol = xml::volume(&spec.disk_volume(), spec.disk_gib << 30, Some(&template_path));
                    StorageVol::create_xml(&pool, &vol, 0).map_err(backend)?
                }
            };
            let disk_path = overlay.path().map_err(backend)?;
            let mut spec = spec.clone();
            if spec.boot.is_none() {
                spec.boot = appliance_boot(&pool, &spec.image);
            }
            let definition = xml::domain(&spec, &self.virt_type, &disk_path, self.guest_bridge.as_deref());
            let dom = conn.define_domain_xml(&definition).map_err(backend)?;
            if let Err(e) = dom.create() {
                // Leave nothing half made: the next attempt starts clean.
                let _ = dom.undefine();
                let _ = overlay.delete(0);
                return Err(backend(e));
            }
            Self::read(conn, &dom)
        })
    }

    fn start(&self, name: &str) -> HvResult<Domain> {
        self.with_conn(|conn| {
            let dom = Self::lookup(conn, name)?;
            if !dom.is_active().map_err(backend)? {
                Self::boot(&dom)?;
            }
            Self::read(conn, &dom)
        })
    }

    fn stop(&self, name: &str) -> HvResult<Domain> {
        self.with_conn(|conn| {
            let dom = Self::lookup(conn, name)?;
            if dom.is_active().map_err(backend)? {
                dom.destroy().map_err(backend)?;
            }
            Self::read(conn, &dom)
        })
    }

    fn delete(&self, name: &str) -> HvResult<()> {
        self.with_conn(|conn| {
            let dom = match Self::lookup(conn, name) {
                Ok(dom) => Some(dom),
                Err(HypervisorError::NotFound { .. }) => None,
                Err(e) => return Err(e),
            };
            if let Some(dom) = dom {
                if dom.is_active().map_err(backend)? {
                    dom.destroy().map_err(backend)?;
                }
                // A VM's saved state and firmware variables go with it; a container has neither.
                let flags = if self.containers() {
                    0
                } else {
                    sys::VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | sys::VIR_DOMAIN_UNDEFINE_NVRAM
                };
                dom.undefine_flags(flags).map_err(backend)?;
            }
            if let Ok(vol) = Self::pool(conn)?.lookup_storage_vol_by_name(&self.volume_name(name)) {
                vol.delete(0).map_err(backend)?;
            }
            Ok(())
        })
    }

    fn set_vcpus(&self, name: &str, vcpus: u32) -> HvResult<Domain> {
        self.with_conn(|conn| {
            let dom = Self::lookup(conn, name)?;
            Self::running(&dom, name)?;
            let now = Self::read(conn, &dom)?;
            if self.containers() && vcpus != now.vcpus && vcpus > 0 {
                return Err(HypervisorError::Refused {
                    reason: format!(
                        "{name} is a container: libvirt's LXC driver cannot change its vCPUs while it runs"
                    ),
                    proposal: format!("request a cold resize to {vcpus} vCPUs (a change that restarts it)"),
                });
            }
            super::check_live_vcpus(vcpus, now.max_vcpus)?;
            if now.vcpus == vcpus {
                return Ok(now);
            }
            let flags = sys::VIR_DOMAIN_VCPU_LIVE | sys::VIR_DOMAIN_VCPU_CONFIG;
            if vcpus > now.vcpus {
                dom.set_vcpus_flags(vcpus, flags).map_err(backend)?;
                return Self::wait_for(conn, &dom, "its vCPUs", |d| d.vcpus == vcpus);
            }
            // Shrinking asks the guest to release one vCPU at a time. libvirt waits a few seconds for each
            // and then reports a timeout although the guest may still be releasing it: wait for it here.
            let mut d = now;
            while d.vcpus > vcpus {
                let next = d.vcpus - 1;
                match dom.set_vcpus_flags(next, flags) {
                    Ok(()) => {}
                    Err(e) if e.code().is(ErrorNumber::OperationTimeout) => {}
                    Err(e) => return Err(backend(e)),
                }
                d = Self::wait_for(conn, &dom, "a vCPU", |d| d.vcpus <= next)?;
            }
            Ok(d)
        })
    }

    fn set_memory(&self, name: &str, memory_mib: u64) -> HvResult<Domain> {
        self.with_conn(|conn| {
            let dom = Self::lookup(conn, name)?;
            Self::running(&dom, name)?;
            let live = LiveXml::parse(&dom.xml_desc(0).map_err(backend)?)?;
            if live.container {
                // A cgroup limit: it moves in one call, both ways, up to the maximum.
                check_memory_limit(&live.memory, memory_mib)?;
                if Self::read(conn, &dom)?.memory.current_mib() != memory_mib {
                    dom.set_memory_flags(memory_mib << 10, LIVE_AND_CONFIG).map_err(backend)?;
                }
                return Self::read(conn, &dom);
            }
            match plan_memory(&live.memory, memory_mib)? {
                MemoryStep::Nothing => Self::read(conn, &dom),
                MemoryStep::Plug(size) => {
                    dom.attach_device_flags(&xml::memory_module(size), LIVE_AND_CONFIG).map_err(backend)?;
                    Self::wait_for(conn, &dom, "the new memory", |d| d.memory.current_mib() == memory_mib)
                }
                MemoryStep::Unplug(positions) => {
                    // The running domain and its definition describe a module differently (alias,
                    // address), so each is detached with its own description.
                    let config = LiveXml::parse(&dom.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).map_err(backend)?)?;
                    let changed = || HypervisorError::Backend("the memory modules changed while planning".into());
                    for i in positions {
                        let module = live.module_xml.get(i).ok_or_else(changed)?;
                        dom.detach_device_flags(module, sys::VIR_DOMAIN_AFFECT_LIVE).map_err(backend)?;
                        if config.memory.modules_mib == live.memory.modules_mib {
                            let defined = config.module_xml.get(i).ok_or_else(changed)?;
                            dom.detach_device_flags(defined, sys::VIR_DOMAIN_AFFECT_CONFIG).map_err(backend)?;
                        }
                    }
                    Self::wait_for(conn, &dom, "the memory modules", |d| d.memory.current_mib() == memory_mib)
                }
            }
        })
    }

    fn limits(&self, name: &str) -> HvResult<Limits> {
        self.with_conn(|conn| {
            let dom = Self::lookup(conn, name)?;
            read_limits(&dom)
        })
    }

    fn set_limits(&self, name: &str, change: &Limits) -> HvResult<Limits> {
        super::check_limits(change)?;
        self.with_conn(|conn| {
            let dom = Self::lookup(conn, name)?;
            Self::running(&dom, name)?;
            let live = LiveXml::parse(&dom.xml_desc(0).map_err(backend)?)?;
            // Refused before anything is applied: a limit on a NIC the domain does not have, or one the
            // driver cannot set.
            if change.wants_net() && live.interfaces.is_empty() {
                return Err(HypervisorError::Unsupported(NO_NET_LIMIT.into()));
            }
            if live.container && change.wants_net() {
                return Err(HypervisorError::Unsupported(CONTAINER_NET_LIMIT.into()));
            }
            if live.container && change.wants_disk() {
                return Err(HypervisorError::Unsupported(CONTAINER_DISK_LIMIT.into()));
            }
            // The network first: it is the part a host may not be able to do. (A container has none to clear.)
            if let Some(mbit) = change.net_mbit_per_sec.filter(|_| !live.container) {
                // The same rate each way, on every NIC; 0 removes it.
                let kb = Some(Typed::Uint(net_kilobytes(mbit)?));
                let rate = [("inbound.average", kb), ("outbound.average", kb)];
                for nic in &live.interfaces {
                    ffi::set_tune(&dom, Tune::Interface, &nic.device, &rate, LIVE_AND_CONFIG).map_err(shaping)?;
                }
            }
            if let Some(pct) = change.cpu_quota_pct {
                let info = SchedulerInfo {
                    vcpu_bw: SchedBandwidth {
                        period: Some(CPU_PERIOD_US),
                        // -1 is "no quota".
                        quota: Some(if pct == 0 { -1 } else { cpu_quota_us(pct, &live) as i64 }),
                    },
                    ..SchedulerInfo::default()
                };
                dom.set_scheduler_parameters_flags(&info, LIVE_AND_CONFIG).map_err(backend)?;
            }
            let disk_change = [change.disk_read_bytes_per_sec, change.disk_write_bytes_per_sec, change.disk_iops];
            if !live.container && disk_change.iter().any(Option::is_some) {
                // libvirt takes the byte limits as one group (one it is not given becomes 0, no limit), so
                // the ones not changed are sent as they are.
                let target = read_limits(&dom)?.merged(change);
                let io = [
                    ("read_bytes_sec", Some(Typed::Ullong(target.disk_read_bytes_per_sec.unwrap_or(0)))),
                    ("write_bytes_sec", Some(Typed::Ullong(target.disk_write_bytes_per_sec.unwrap_or(0)))),
                    ("total_iops_sec", Some(Typed::Ullong(target.disk_iops.unwrap_or(0)))),
                ];
                for disk in &live.disks {
                    ffi::set_tune(&dom, Tune::Block, &disk.target, &io, LIVE_AND_CONFIG)?;
                }
            }
            read_limits(&dom)
        })
    }

    fn adopt(&self, name: &str, vm_id: &str) -> HvResult<Domain> {
        self.with_conn(|conn| {
            let dom = Self::lookup(conn, name)?;
            let d = Self::read(conn, &dom)?;
            match &d.vm_id {
                Some(existing) if existing == vm_id => return Ok(d),
                Some(existing) => {
                    return Err(HypervisorError::Invalid(format!("{name} is already managed as {existing}")))
                }
                None => {}
            }
            let mut flags = sys::VIR_DOMAIN_AFFECT_CONFIG;
            if dom.is_active().map_err(backend)? {
                flags |= sys::VIR_DOMAIN_AFFECT_LIVE;
            }
            dom.set_metadata(
                sys::VIR_DOMAIN_METADATA_ELEMENT as i32,
                Some(&xml::metadata(vm_id)),
                Some(xml::METADATA_KEY),
                Some(xml::METADATA_NS),
                flags,
            )
            .map_err(backend)?;
            Self::read(conn, &dom)
        })
    }

    fn prepare_incoming(&self, disks: &[Disk]) -> HvResult<()> {
        self.with_conn(|conn| {
            let pool = Self::pool(conn)?;
            for disk in disks {
                let Some(volume) = &disk.volume else { continue };
                super::valid_name(volume)?;
                if pool.lookup_storage_vol_by_name(volume).is_err() {
                    StorageVol::create_xml(&pool, &xml::volume(volume, disk.capacity_bytes, None), 0)
                        .map_err(backend)?;
                }
            }
            Ok(())
        })
    }

    fn migrate(&self, name: &str, peer: &Peer) -> HvResult<()> {
        self.with_conn(|conn| {
            let dom = Self::lookup(conn, name)?;
            if self.containers() {
                return Err(HypervisorError::Unsupported(format!(
                    "{name} is a container: libvirt's LXC driver cannot move it to {}; it runs here as before",
                    peer.host
                )));
            }
            // A stopped domain moves cold: QEMU copies disks only for a domain it runs, so it is started
            // paused here (its guest never runs), migrated paused, and the destination then stops it.
            let cold = !dom.is_active().map_err(backend)?;
            if cold {
                dom.create_with_flags(sys::VIR_DOMAIN_START_PAUSED).map_err(backend)?;
            }
            let flags = if cold { sys::VIR_MIGRATE_PAUSED } else { sys::VIR_MIGRATE_LIVE }
                | sys::VIR_MIGRATE_PEER2PEER
                | sys::VIR_MIGRATE_PERSIST_DEST
                | sys::VIR_MIGRATE_UNDEFINE_SOURCE
                | sys::VIR_MIGRATE_NON_SHARED_DISK;
            if let Err(e) = dom.migrate_to_uri3(Some(&peer.uri), MigrateParameters::default(), flags) {
                if cold {
                    // Stopped here again, as it was.
                    let _ = dom.destroy();
                }
                return Err(HypervisorError::MigrationFailed {
                    peer: peer.host.clone(),
                    reason: e.message().to_string(),
                });
            }
            // The source's overlay is a copy now; the template stays for other domains.
            if let Ok(pool) = Self::pool(conn) {
                if let Ok(vol) = pool.lookup_storage_vol_by_name(&disk_volume(name)) {
                    let _ = vol.delete(0);
                }
            }
            Ok(())
        })
    }

    fn stats(&self) -> HvResult<Vec<DomainStats>> {
        if self.containers() {
            // LXC has no bulk statistics call.
            self.with_conn(ffi::stats_one_by_one)
        } else {
            self.with_conn(ffi::all_domain_stats)
        }
    }
}

/// The kernel command line of appliance images: serial console, and hot-plugged memory movable so it
/// can be unplugged again.
pub const APPLIANCE_CMDLINE: &str =
    "console=ttyS0 memhp_default_state=online_movable movable_node swiotlb=noforce quiet";

/// An appliance image boots its own kernel: `<stem>.vmlinux` (or `.vmlinuz`) and `<stem>.initrd` beside
/// `<stem>.qcow2` in the pool.
fn appliance_boot(pool: &StoragePool, image: &str) -> Option<super::DirectBoot> {
    let stem = image.strip_suffix(".qcow2").unwrap_or(image);
    let path = |name: String| pool.lookup_storage_vol_by_name(&name).ok().and_then(|v| v.path().ok());
    let kernel = path(format!("{stem}.vmlinux")).or_else(|| path(format!("{stem}.vmlinuz")))?;
    let initrd = path(format!("{stem}.initrd"))?;
    Some(super::DirectBoot { kernel, initrd, cmdline: APPLIANCE_CMDLINE.to_string() })
}

/// Why a container's disk limits are refused.
pub const CONTAINER_DISK_LIMIT: &str =
    "disk limits: libvirt's LXC driver does not limit the I/O of a container's root file system";
/// Why a container's network limits are refused.
pub const CONTAINER_NET_LIMIT: &str =
    "network limits: libvirt's LXC driver cannot change a running container's bandwidth";

/// How many vCPUs' worth one scheduler quota binds: a VM's binds each vCPU thread, a container's the whole
/// container, which so gets its vCPUs' worth.
fn quota_vcpus(live: &LiveXml) -> u64 {
    if live.container {
        u64::from(live.vcpus.max(1))
    } else {
        1
    }
}

/// The scheduler quota (µs per period) of a CPU quota of `pct` % per vCPU.
fn cpu_quota_us(pct: u32, live: &LiveXml) -> u64 {
    CPU_PERIOD_US * u64::from(pct) / 100 * quota_vcpus(live)
}

fn read_limits(dom: &VirDomain) -> HvResult<Limits> {
    let sched = dom.scheduler_parameters_flags(sys::VIR_DOMAIN_AFFECT_CURRENT).map_err(backend)?;
    let live = LiveXml::parse(&dom.xml_desc(0).map_err(backend)?)?;
    let threads = quota_vcpus(&live);
    let cpu_quota_pct = match (sched.vcpu_bw.period, sched.vcpu_bw.quota) {
        // Unlimited reads as -1 or as the kernel's maximum.
        (Some(period), Some(quota)) if period > 0 && quota > 0 && (quota as u64) < period * 1000 * threads => {
            Some(((quota as u64) * 100).div_ceil(period * threads) as u32)
        }
        _ => None,
    };
    let first = live.disks.first();
    let io = |f: fn(&read::LiveDisk) -> Option<u64>| first.and_then(f);
    Ok(Limits {
        cpu_quota_pct,
        disk_read_bytes_per_sec: io(|d| d.read_bytes_sec),
        disk_write_bytes_per_sec: io(|d| d.write_bytes_sec),
        disk_iops: io(|d| d.total_iops_sec),
        net_mbit_per_sec: live.interfaces.first().and_then(|n| n.inbound_average).map(|kb| kb.div_ceil(KB_PER_MBIT)),
    })
}

/// libvirt shapes a NIC with the kernel's traffic control (`tc`: htb and sfq one way, an ingress policer
/// the other); a kernel built without one of them refuses, which is a limit of the host, not an error.
fn shaping(e: HypervisorError) -> HypervisorError {
    match e {
        HypervisorError::Backend(m) if m.contains("tc ") && m.contains("unknown") => HypervisorError::Unsupported(
            format!("network limits: this host's kernel cannot shape traffic as libvirt does ({})", m.trim()),
        ),
        other => other,
    }
}

/// libvirt shapes NICs in kilobytes (1,000 bytes) per second: 125 make a megabit.
const KB_PER_MBIT: u64 = 125;

fn net_kilobytes(mbit: u64) -> HvResult<u32> {
    mbit.checked_mul(KB_PER_MBIT)
        .and_then(|kb| u32::try_from(kb).ok())
        .ok_or_else(|| HypervisorError::Invalid(format!("a network limit of {mbit} Mbit/s is more than libvirt takes")))
}
