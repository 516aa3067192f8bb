//! This host's hypervisor driver as the agent holds it: opened on first use and again while opening fails,
//! so an agent started before libvirt (or on a host where it is down) keeps reporting the host.

use std::sync::Arc;
use tollgate_control::hypervisor::{HvResult, Hypervisor};

/// Opens a driver of this host's hypervisor (libvirt in the agent, the simulated driver in tests).
pub type Connect = Arc<dyn Fn() -> HvResult<Box<dyn Hypervisor>> + Send + Sync>;

/// Which hypervisor the agent drives, and how other hosts reach it.
#[derive(Clone)]
pub struct DriverConfig {
    /// What `connect` opens, for logs (`qemu:///system`).
    pub uri: String,
    /// How other hosts' hypervisors reach this one for migrations (`qemu+tcp://host/system`).
    pub peer_uri: String,
    pub connect: Connect,
    /// How often the host's domains are sent for the server to compare with its inventory.
    pub inventory_every: std::time::Duration,
}

impl std::fmt::Debug for DriverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DriverConfig").field("uri", &self.uri).field("peer_uri", &self.peer_uri).finish()
    }
}

/// A driver opened on first use. Once open it stays: the libvirt driver reconnects by itself when the
/// daemon restarts.
pub struct LazyDriver {
    connect: Connect,
    driver: Option<Box<dyn Hypervisor>>,
}

impl LazyDriver {
    pub fn new(connect: Connect) -> Self {
        LazyDriver { connect, driver: None }
    }

    /// The driver, opened now if it is not open yet.
    pub fn get(&mut self) -> HvResult<&dyn Hypervisor> {
        let driver = match self.driver.take() {
            Some(open) => open,
            None => (self.connect)()?,
        };
        Ok(&**self.driver.insert(driver))
    }
}
