//! Metrics: what host agents report, as the server takes it in.
//!
//! Layout: [`line`] — the InfluxDB line protocol (the v2 write API's body), parsed and written; [`store`] —
//! points kept in the server's database, written in grouped commits and queried by series; [`rollup`] —
//! per-minute and per-hour rollups and retention; [`report`] — utilisation per host, cluster or region;
//! [`block`] — how one series' points are packed.

pub mod block;
pub mod line;
pub mod report;
pub mod rollup;
pub mod store;

#[cfg(test)]
mod line_tests;
