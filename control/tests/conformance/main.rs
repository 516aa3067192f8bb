//! One conformance suite for every `Hypervisor` driver: the simulated one always, libvirt on real
//! test hosts when built with the `libvirt` feature (`scripts/test` brings the hosts up), both their
//! QEMU/KVM and their LXC driver. Each case runs against a pair of hosts, A and B, and asserts what an
//! operator would see; where a driver's capabilities say it cannot do something, it must refuse it
//! clearly and change nothing.
#![allow(clippy::unwrap_used)]

mod cases;
#[cfg(feature = "libvirt")]
mod libvirt;
#[cfg(feature = "libvirt")]
mod lxc;
mod sim;

use tollgate_control::hypervisor::{DomainSpec, Hypervisor, Peer};

/// Two hosts of one driver, and what the suite needs to know about them.
pub struct Pair {
    pub a: Box<dyn Hypervisor>,
    pub b: Box<dyn Hypervisor>,
    /// B as A's hypervisor reaches it.
    pub b_peer: Peer,
    pub image: String,
    pub boot: Option<tollgate_control::hypervisor::DirectBoot>,
    /// Reads and edits the hosts apart from the driver under test.
    pub outside: Box<dyn Outside>,
}

/// Another view of a host than the driver's: what `virsh` says.
pub trait Outside {
    /// `virsh` on host A (`false`) or B (`true`): its standard output, or `None` where there is no
    /// such tool (the simulator).
    fn virsh(&self, on_b: bool, args: &[&str]) -> Option<String>;
    /// The QEMU process of a running domain on A or B (a container's controller process).
    fn qemu_pid(&self, on_b: bool, name: &str) -> Option<u32>;
    /// Defines and starts a domain behind Tollgate's back (no metadata), as an operator by hand.
    fn define_unmanaged(&self, spec: &DomainSpec);
    /// Why live vCPU unplug cannot work on these hosts, if it cannot.
    fn vcpu_unplug_gap(&self) -> Option<&'static str> {
        None
    }
    /// Waits until the guest OS of a domain on A is up (it must be, to release hot-plugged devices).
    fn wait_guest_ready(&self, name: &str);
    /// Whether the hosts' kernel has the traffic control libvirt shapes NICs with (sch_htb, sch_sfq,
    /// sch_ingress, act_police).
    fn kernel_shapes_traffic(&self) -> bool {
        true
    }
}

impl Pair {
    /// A small VM: 1 of 4 vCPUs, 256 MiB growing to 1 GiB in 4 slots, a 1 GiB overlay.
    pub fn spec(&self, name: &str) -> DomainSpec {
        DomainSpec {
            name: name.to_string(),
            vm_id: format!("vm-{name}"),
            vcpus: 1,
            max_vcpus: 4,
            memory_mib: 256,
            max_memory_mib: 1024,
            memory_slots: 4,
            image: self.image.clone(),
            disk_gib: 1,
            boot: self.boot.clone(),
        }
    }

    /// Removes what a case made on both hosts, whatever state it ended in.
    pub fn clean(&self, name: &str) {
        let _ = self.a.delete(name);
        let _ = self.b.delete(name);
    }
}
