//! The per-host agent of Tollgate (`tollgate-agent`): the server's eyes and hands on one host.
//!
//! It reads the host's metrics from /proc and /sys every interval, queues each batch on disk, and sends the
//! queue, oldest first, to the server's InfluxDB v2 write API (gzip-compressed line protocol), keeping the
//! batches while the server is unreachable. Given a libvirt URI (feature `libvirt`, on by default) it adds
//! one point per VM to each batch, read over libvirt's socket, and a second thread pulls the server's host
//! tasks, runs them through the helper `tollgate-agent-libvirt` and reports their outcomes. What it is not: a server (it only connects out to one) or async (two
//! plain threads and blocking HTTP). The server uses [`host`] and [`send`] without the `libvirt` feature.
//!
//! Layout:
//! - [`cli`] — the command line.
//! - [`host`] — host metrics; [`vm`] — per-VM metrics from the hypervisor driver.
//! - [`queue`] — the disk-backed queue; [`send`] — writing a batch to the server.
//! - [`driver`] — the hypervisor: tasks and VM counters, each opened on first use; [`helper`] — host tasks in
//!   the helper process that links libvirt; [`tasks`] — pulling, running and reporting host tasks.
//! - [`agent`] — the loop.

pub mod agent;
pub mod cli;
pub mod driver;
pub mod helper;
pub mod host;
pub mod queue;
pub mod send;
pub mod tasks;
pub mod vm;
