//! The control plane of Tollgate: the inventory of hosts and VMs, placement, and the operations that
//! change them (provision, live resize, live quota, migrate, evacuate, adopt), run as durable jobs.
//!
//! What it is not: the ITIL process (that is `tollgate-workflows`, the only crate that can authorise an
//! operation) or HTTP (that is `tollgate-api`). The libvirt driver, behind the `libvirt` feature, is the
//! only code in the workspace that links libvirt's C library; only the host agent enables it.
//!
//! Layout:
//! - [`hypervisor`] — the `Hypervisor` driver trait, the simulated driver, the libvirt driver (feature
//!   `libvirt`) and the domain XML they share.
//! - [`placement`] — filters and weighers that choose a host for a new VM.
//! - [`task`] — host tasks: what an agent pulls, runs through its driver and reports.
//! - [`jobs`] — durable jobs that carry out approved changes step by step, with rollback.
//! - [`inventory`] — hosts and VMs in the CMDB, as the control plane reads and writes them.
//! - [`simulated`] — the simulated fleet's agents, run inside the server.
//! - [`reconcile`] — the inventory against what hosts report; differences become incidents.

pub mod hypervisor;
pub mod inventory;
pub mod jobs;
pub mod placement;
pub mod reconcile;
pub mod simulated;
pub mod task;

pub use tollgate_workflows as workflows;
