//! Metrics: what host agents report, as the server takes it in.
//!
//! Layout: [`line`] — the InfluxDB line protocol (the v2 write API's body), parsed and written.

pub mod line;

#[cfg(test)]
mod line_tests;
