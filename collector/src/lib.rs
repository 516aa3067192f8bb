//! The per-host agent of Tollgate (`tollgate-agent`): the server's eyes (and later hands) on one host.
//!
//! It reads the host's metrics from /proc and /sys every interval, queues each batch on disk, and sends the
//! queue, oldest first, to the server's InfluxDB v2 write API (gzip-compressed line protocol), keeping the
//! batches while the server is unreachable. What it is not: a server; it only connects out to one. Per-VM
//! metrics from libvirt and running the host's share of control-plane work arrive with the control plane.
//!
//! Layout: [`cli`] — the command line; [`host`] — host metrics; [`queue`] — the disk-backed queue;
//! [`send`] — writing a batch to the server; [`agent`] — the loop.

pub mod agent;
pub mod cli;
pub mod host;
pub mod queue;
pub mod send;
