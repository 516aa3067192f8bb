//! The suite on two simulated hosts.

use crate::{cases, Pair};
use tollgate_control::hypervisor::sim::SimFleet;
use tollgate_control::hypervisor::Peer;

fn pair() -> Pair {
    let fleet = SimFleet::new();
    Pair {
        a: Box::new(fleet.host("sim-a", &["tiny.qcow2"])),
        b: Box::new(fleet.host("sim-b", &["tiny.qcow2"])),
        b_peer: Peer { host: "sim-b".into(), uri: "sim://sim-b".into() },
        image: "tiny.qcow2".into(),
        boot: None,
        outside: Box::new(SimOutside(fleet)),
    }
}

/// The simulator has no `virsh` and no QEMU; it can add a domain behind Tollgate's back.
struct SimOutside(std::sync::Arc<SimFleet>);

impl crate::Outside for SimOutside {
    fn virsh(&self, _on_b: bool, _args: &[&str]) -> Option<String> {
        None
    }
    fn qemu_pid(&self, _on_b: bool, _name: &str) -> Option<u32> {
        None
    }
    fn wait_guest_ready(&self, _name: &str) {}

    fn define_unmanaged(&self, spec: &tollgate_control::hypervisor::DomainSpec) {
        self.0.add_unmanaged("sim-a", &spec.name, spec.vcpus, spec.memory_mib);
    }
}

cases::suite!(pair);
