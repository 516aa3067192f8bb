//! Placement: which host takes a new VM. Filters drop hosts that cannot (state, region and cluster,
//! capacity, affinity and anti-affinity groups); a weigher chosen per business service ranks the rest
//! (spread, pack, least utilised from the live rollups). One pass over a flat host table, so a decision
//! over 10,000 hosts takes well under a millisecond; a refusal counts why each host was dropped.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// How a service wants its VMs placed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The host with the most free memory: a failure touches few VMs.
    #[default]
    Spread,
    /// The host with the least free memory that still fits: whole hosts stay free for big VMs and
    /// maintenance.
    Pack,
    /// The host whose CPU was least busy (p95 over the last day, from the rollups).
    LeastUtilised,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Spread => "spread",
            Strategy::Pack => "pack",
            Strategy::LeastUtilised => "least_utilised",
        }
    }

    pub fn parse(s: &str) -> Option<Strategy> {
        [Strategy::Spread, Strategy::Pack, Strategy::LeastUtilised].into_iter().find(|k| k.as_str() == s)
    }
}

/// Whether a host takes new VMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostState {
    Up,
    /// Runs its VMs but takes no new ones.
    Maintenance,
    Down,
}

/// A host as placement sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostCapacity {
    pub host_id: String,
    pub region: String,
    pub cluster: String,
    pub state: HostState,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    /// CPU busy fraction (0–1), p95 over the last day; `None` before any data.
    pub cpu_p95: Option<f32>,
    /// Runs containers (libvirt's LXC) rather than virtual machines: it takes only what asks for a container.
    #[serde(default)]
    pub containers: bool,
}

/// What a new VM needs and where it may go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub region: Option<String>,
    pub cluster: Option<String>,
    /// Only on a host that already runs a VM of this group (any host while the group is empty).
    pub affinity_group: Option<String>,
    /// Never on a host that runs a VM of this group.
    pub anti_affinity_group: Option<String>,
    pub strategy: Strategy,
    /// A container rather than a virtual machine: only container hosts take it, and only it.
    #[serde(default)]
    pub containers: bool,
}

/// Overcommit: how many vCPUs and MiB may be promised per physical one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Ratios {
    pub cpu: f32,
    pub memory: f32,
}

impl Default for Ratios {
    fn default() -> Self {
        Ratios { cpu: 4.0, memory: 1.0 }
    }
}

/// Why hosts were dropped, counted, for a refusal an operator can act on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejections {
    pub not_up: u32,
    /// Hosts of the other kind: container hosts for a VM, VM hosts for a container.
    pub kind: u32,
    pub elsewhere: u32,
    pub cpu: u32,
    pub memory: u32,
    pub disk: u32,
    pub anti_affinity: u32,
    pub affinity: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error("no host can take the VM: {} hosts considered; {why:?}", .considered)]
    NoHost { considered: u32, why: Rejections },
    #[error("unknown host {0}")]
    UnknownHost(String),
    #[error("invalid request: {0}")]
    Invalid(String),
}

/// A decision: the host, and its score under the strategy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placement {
    pub host_id: String,
    pub score: f32,
}

type Group = u32;

/// Hosts and what is allocated on them; kept in memory, rebuilt from the inventory at start.
#[derive(Debug, Default)]
pub struct Fleet {
    hosts: Vec<Slot>,
    ids: HashMap<String, u32>,
    regions: Interner,
    clusters: Interner,
    groups: Interner,
    /// Per group, a bit per host: hosts running a VM of the group (with a count beside it).
    members: Vec<Members>,
    ratios: Ratios,
}

#[derive(Debug)]
struct Slot {
    host: HostCapacity,
    region: u32,
    cluster: u32,
    free_vcpus: f32,
    free_memory_mib: f64,
    free_disk_gib: u64,
}

#[derive(Debug, Default)]
struct Members {
    bits: Vec<u64>,
    counts: HashMap<u32, u32>,
}

#[derive(Debug, Default)]
struct Interner(HashMap<String, u32>);

impl Interner {
    fn id(&mut self, name: &str) -> u32 {
        let next = self.0.len() as u32;
        *self.0.entry(name.to_string()).or_insert(next)
    }
    fn get(&self, name: &str) -> Option<u32> {
        self.0.get(name).copied()
    }
}

impl Members {
    fn has(&self, host: u32) -> bool {
        self.bits.get((host / 64) as usize).is_some_and(|w| w & (1 << (host % 64)) != 0)
    }
    fn add(&mut self, host: u32) {
        let word = (host / 64) as usize;
        if self.bits.len() <= word {
            self.bits.resize(word + 1, 0);
        }
        self.bits[word] |= 1 << (host % 64);
        *self.counts.entry(host).or_default() += 1;
    }
    fn remove(&mut self, host: u32) {
        if let Some(c) = self.counts.get_mut(&host) {
            *c -= 1;
            if *c == 0 {
                self.counts.remove(&host);
                if let Some(w) = self.bits.get_mut((host / 64) as usize) {
                    *w &= !(1 << (host % 64));
                }
            }
        }
    }
}

/// What a VM holds on its host, to give back when it leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub host_id: String,
    pub vcpus: u32,
    pub memory_mib: u64,
    pub disk_gib: u64,
    pub groups: Vec<String>,
}

impl Fleet {
    pub fn new(ratios: Ratios) -> Fleet {
        Fleet { ratios, ..Fleet::default() }
    }

    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// A host as last given to [`Fleet::upsert`].
    pub fn host(&self, id: &str) -> Option<&HostCapacity> {
        self.ids.get(id).map(|&i| &self.hosts[i as usize].host)
    }

    /// Adds a host, or updates its capacity, state and utilisation keeping what is allocated on it.
    pub fn upsert(&mut self, host: HostCapacity) {
        let region = self.regions.id(&host.region);
        let cluster = self.clusters.id(&host.cluster);
        let ratios = self.ratios;
        let fresh = |h: &HostCapacity| Slot {
            region,
            cluster,
            free_vcpus: h.vcpus as f32 * ratios.cpu,
            free_memory_mib: h.memory_mib as f64 * f64::from(ratios.memory),
            free_disk_gib: h.disk_gib,
            host: h.clone(),
        };
        match self.ids.get(&host.host_id) {
            Some(&i) => {
                let slot = &mut self.hosts[i as usize];
                let used_vcpus = slot.host.vcpus as f32 * ratios.cpu - slot.free_vcpus;
                let used_mem = slot.host.memory_mib as f64 * f64::from(ratios.memory) - slot.free_memory_mib;
                let used_disk = slot.host.disk_gib - slot.free_disk_gib;
                let mut s = fresh(&host);
                s.free_vcpus -= used_vcpus;
                s.free_memory_mib -= used_mem;
                s.free_disk_gib = s.free_disk_gib.saturating_sub(used_disk);
                *slot = s;
            }
            None => {
                self.ids.insert(host.host_id.clone(), self.hosts.len() as u32);
                self.hosts.push(fresh(&host));
            }
        }
    }

    /// Records a VM already on a host (from the inventory, or after a decision).
    pub fn allocate(&mut self, a: &Allocation) -> Result<(), PlacementError> {
        let i = *self.ids.get(&a.host_id).ok_or_else(|| PlacementError::UnknownHost(a.host_id.clone()))?;
        let slot = &mut self.hosts[i as usize];
        slot.free_vcpus -= a.vcpus as f32;
        slot.free_memory_mib -= a.memory_mib as f64;
        slot.free_disk_gib = slot.free_disk_gib.saturating_sub(a.disk_gib);
        for g in &a.groups {
            let g = self.group(g);
            self.members[g as usize].add(i);
        }
        Ok(())
    }

    /// Gives back what a VM held (deleted, or moved away).
    pub fn release(&mut self, a: &Allocation) -> Result<(), PlacementError> {
        let i = *self.ids.get(&a.host_id).ok_or_else(|| PlacementError::UnknownHost(a.host_id.clone()))?;
        let slot = &mut self.hosts[i as usize];
        slot.free_vcpus += a.vcpus as f32;
        slot.free_memory_mib += a.memory_mib as f64;
        slot.free_disk_gib = (slot.free_disk_gib + a.disk_gib).min(slot.host.disk_gib);
        for g in &a.groups {
            if let Some(g) = self.groups.get(g) {
                self.members[g as usize].remove(i);
            }
        }
        Ok(())
    }

    fn group(&mut self, name: &str) -> Group {
        let g = self.groups.id(name);
        if self.members.len() <= g as usize {
            self.members.resize_with(g as usize + 1, Members::default);
        }
        g
    }

    /// Chooses a host for `req` without recording anything.
    pub fn choose(&self, req: &Request) -> Result<Placement, PlacementError> {
        if req.vcpus == 0 || req.memory_mib == 0 {
            return Err(PlacementError::Invalid("a VM needs vCPUs and memory".into()));
        }
        // A region or cluster nobody has heard of matches no host.
        let region = req.region.as_deref().map(|r| self.regions.get(r).unwrap_or(u32::MAX));
        let cluster = req.cluster.as_deref().map(|c| self.clusters.get(c).unwrap_or(u32::MAX));
        let anti =
            req.anti_affinity_group.as_deref().and_then(|g| self.groups.get(g)).map(|g| &self.members[g as usize]);
        let affinity = req
            .affinity_group
            .as_deref()
            .and_then(|g| self.groups.get(g))
            .map(|g| &self.members[g as usize])
            .filter(|m| !m.counts.is_empty());
        let (vcpus, memory) = (req.vcpus as f32, req.memory_mib as f64);

        let mut why = Rejections::default();
        let mut best: Option<(f32, u32)> = None;
        for (i, s) in self.hosts.iter().enumerate() {
            let i = i as u32;
            if s.host.state != HostState::Up {
                why.not_up += 1;
            } else if s.host.containers != req.containers {
                why.kind += 1;
            } else if region.is_some_and(|r| r != s.region) || cluster.is_some_and(|c| c != s.cluster) {
                why.elsewhere += 1;
            } else if s.free_vcpus < vcpus {
                why.cpu += 1;
            } else if s.free_memory_mib < memory {
                why.memory += 1;
            } else if s.free_disk_gib < req.disk_gib {
                why.disk += 1;
            } else if anti.is_some_and(|m| m.has(i)) {
                why.anti_affinity += 1;
            } else if affinity.is_some_and(|m| !m.has(i)) {
                why.affinity += 1;
            } else {
                let score = self.score(s, req.strategy);
                if best.is_none_or(|(b, _)| score > b) {
                    best = Some((score, i));
                }
            }
        }
        match best {
            Some((score, i)) => Ok(Placement { host_id: self.hosts[i as usize].host.host_id.clone(), score }),
            None => Err(PlacementError::NoHost { considered: self.hosts.len() as u32, why }),
        }
    }

    /// Chooses a host and records the VM on it.
    pub fn place(&mut self, req: &Request) -> Result<Placement, PlacementError> {
        let chosen = self.choose(req)?;
        let groups = req.affinity_group.iter().chain(req.anti_affinity_group.iter()).cloned().collect();
        self.allocate(&Allocation {
            host_id: chosen.host_id.clone(),
            vcpus: req.vcpus,
            memory_mib: req.memory_mib,
            disk_gib: req.disk_gib,
            groups,
        })?;
        Ok(chosen)
    }

    fn score(&self, s: &Slot, strategy: Strategy) -> f32 {
        match strategy {
            Strategy::Spread => s.free_memory_mib as f32,
            Strategy::Pack => -(s.free_memory_mib as f32),
            // Unknown utilisation counts as half busy: neither favoured nor avoided; free memory breaks ties.
            Strategy::LeastUtilised => {
                let total = (s.host.memory_mib as f64 * f64::from(self.ratios.memory)).max(1.0);
                1.0 - s.host.cpu_p95.unwrap_or(0.5) + (s.free_memory_mib / total) as f32 * 0.01
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn host(id: &str, cluster: &str, memory_mib: u64) -> HostCapacity {
        HostCapacity {
            host_id: id.into(),
            region: "eu".into(),
            cluster: cluster.into(),
            state: HostState::Up,
            vcpus: 8,
            memory_mib,
            disk_gib: 1000,
            cpu_p95: None,
            containers: false,
        }
    }

    fn fleet() -> Fleet {
        let mut f = Fleet::new(Ratios::default());
        f.upsert(host("a", "c1", 16_384));
        f.upsert(host("b", "c1", 32_768));
        f.upsert(host("c", "c2", 65_536));
        f
    }

    fn req(memory_mib: u64, strategy: Strategy) -> Request {
        Request { vcpus: 2, memory_mib, disk_gib: 10, strategy, ..Request::default() }
    }

    #[test]
    fn spread_takes_the_emptiest_host_and_pack_the_fullest_that_fits() {
        let f = fleet();
        assert_eq!(f.choose(&req(4096, Strategy::Spread)).unwrap().host_id, "c");
        let mut f = fleet();
        f.allocate(&Allocation { host_id: "c".into(), vcpus: 1, memory_mib: 60_000, disk_gib: 0, groups: vec![] })
            .unwrap();
        assert_eq!(f.choose(&req(4096, Strategy::Pack)).unwrap().host_id, "c");
        assert_eq!(f.choose(&req(8192, Strategy::Pack)).unwrap().host_id, "a");
    }

    #[test]
    fn least_utilised_follows_the_rollups() {
        let mut f = fleet();
        for (id, p95) in [("a", 0.1), ("b", 0.7), ("c", 0.9)] {
            let mut h = f.hosts[f.ids[id] as usize].host.clone();
            h.cpu_p95 = Some(p95);
            f.upsert(h);
        }
        assert_eq!(f.choose(&req(1024, Strategy::LeastUtilised)).unwrap().host_id, "a");
    }

    #[test]
    fn vms_and_containers_each_go_to_their_own_kind_of_host() {
        let mut f = fleet();
        f.upsert(HostCapacity { containers: true, memory_mib: 1 << 20, ..host("lxc-1", "c1", 0) });
        assert_ne!(f.choose(&req(4096, Strategy::Spread)).unwrap().host_id, "lxc-1", "a VM on a container host");
        let container = Request { containers: true, ..req(4096, Strategy::Pack) };
        assert_eq!(f.choose(&container).unwrap().host_id, "lxc-1");
        let mut vm_hosts_only = fleet();
        match vm_hosts_only.place(&container) {
            Err(PlacementError::NoHost { why, .. }) => assert_eq!(why.kind, 3),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn anti_affinity_spreads_a_group_and_affinity_gathers_it() {
        let mut f = fleet();
        let mut r = req(1024, Strategy::Spread);
        r.anti_affinity_group = Some("db".into());
        let placed: Vec<String> = (0..3).map(|_| f.place(&r).unwrap().host_id).collect();
        let mut sorted = placed.clone();
        sorted.sort();
        assert_eq!(sorted, ["a", "b", "c"], "{placed:?}");
        match f.choose(&r) {
            Err(PlacementError::NoHost { why, .. }) => assert_eq!(why.anti_affinity, 3),
            other => panic!("{other:?}"),
        }
        let mut near = req(1024, Strategy::Spread);
        near.affinity_group = Some("cache".into());
        let first = f.place(&near).unwrap().host_id;
        assert_eq!(f.place(&near).unwrap().host_id, first);
    }

    #[test]
    fn filters_say_why_nothing_fits() {
        let mut f = fleet();
        let mut down = host("d", "c2", 1 << 20);
        down.state = HostState::Maintenance;
        f.upsert(down);
        let mut r = req(100_000, Strategy::Spread);
        r.cluster = Some("c1".into());
        match f.choose(&r) {
            Err(PlacementError::NoHost { considered, why }) => {
                assert_eq!(considered, 4);
                assert_eq!((why.not_up, why.elsewhere, why.memory), (1, 1, 2));
            }
            other => panic!("{other:?}"),
        }
        r.cluster = Some("nowhere".into());
        r.memory_mib = 1;
        assert!(matches!(f.choose(&r), Err(PlacementError::NoHost { .. })));
    }

    #[test]
    fn released_capacity_is_placed_again() {
        let mut f = Fleet::new(Ratios { cpu: 1.0, memory: 1.0 });
        f.upsert(host("a", "c1", 4096));
        let r = req(4096, Strategy::Spread);
        f.place(&r).unwrap();
        assert!(f.choose(&r).is_err());
        f.release(&Allocation { host_id: "a".into(), vcpus: 2, memory_mib: 4096, disk_gib: 10, groups: vec![] })
            .unwrap();
        assert_eq!(f.choose(&r).unwrap().host_id, "a");
        // Updating a host keeps what is allocated on it.
        f.place(&r).unwrap();
        f.upsert(host("a", "c1", 4096));
        assert!(f.choose(&r).is_err());
    }
}
