//! Integration tests of the Tollgate server: one binary, one module per concern.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod alert_rules;
mod approvals;
mod authz;
mod bad_input;
mod changes;
mod cli;
mod cmdb;
mod control;
mod duties;
mod freezes;
mod hostile_input;
mod incidents;
mod ingest;
mod notifications;
mod operational;
mod processes;
mod sla;
mod support;
mod web;
