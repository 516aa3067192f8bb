//! The ITIL domain of Tollgate and the store it lives in.
//!
//! What it is: configuration items and their relations (the CMDB view of the fleet, with impact
//! analysis), accounts and roles, and the hash-chained audit log every mutation writes in its own
//! transaction. Change, approval and incident processes join it as data-driven state machines.
//! What it is not: HTTP (that is `tollgate-api`) or hypervisor work (that is `tollgate-control`).
//!
//! Layout:
//! - [`store`] — the database on SQLite or PostgreSQL, migrations, audited write transactions.
//! - [`approval`] — approval policies, rounds, votes, separation of duties and delegation.
//! - [`audit`] — audit records, their hash chain and its verification.
//! - [`accounts`] — users, groups, roles, passwords and bearer tokens.
//! - [`cmdb`] — configuration items, relations and the impact walk.
//! - [`notify`] — notifications the processes raise, read in the API and delivered by the mailer.
//! - [`process`] — process definitions as versioned data, and the engine that fires their transitions.
//! - [`change`] — changes: typed plans, rollback, risk, conflicts and their lifecycle.
//! - [`freeze`] — freeze (blackout) windows and what they cover.
//! - [`incident`] — incidents: priority matrix, SLA clocks and escalation, dedup, their process.
//! - [`metrics`] — what host agents report: the line protocol, the point store, rollups.
//! - [`alert`] — alert rules as data.
//! - [`stats`] — counts of the processes' records, for the Prometheus endpoint.
//! - [`clock`] — injected time.
//! - [`text`] — bounded text and paging values.
//! - [`error`] — domain and store errors.
//! - `testing` — helpers for test suites (feature `testing`).

pub mod accounts;
pub mod alert;
pub mod approval;
pub mod audit;
pub mod change;
pub mod clock;
pub mod cmdb;
pub mod error;
pub mod freeze;
pub mod incident;
pub mod metrics;
pub mod notify;
pub mod process;
pub mod quota;
pub mod signing;
pub mod stats;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod text;

pub use clock::Clock;
pub use error::{StoreError, StoreResult, ValidationError};
pub use store::{AuditContext, Db, Engine};
