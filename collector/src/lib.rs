//! The per-host agent of Tollgate (`tollgate-agent`): the server's eyes and hands on one hypervisor host.
//!
//! It will collect host metrics from /proc and per-VM metrics from the local libvirt, buffer them on disk
//! while the server is away, and run the host's share of control-plane work through `tollgate-control`.
//! What it is not: a server; it only connects out to one.
//!
//! Layout: [`cli`] — the command line.

pub mod cli;
