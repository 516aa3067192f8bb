//! The store conformance suite: one set of behaviours the store must show on every engine it supports.
//!
//! Each test gets a brand new database: a SQLite file by default, or a fresh PostgreSQL database on the
//! server `TEST_DATABASE_URL` names (`postgres://user@host:port/db`, a user who may `CREATE DATABASE`).
//!
//! Layout:
//! - `support` — fresh databases, actors, builders and error assertions.
//! - `users` — accounts, searching them, passwords and the first administrator.
//! - `tokens` — signing in, bearer tokens, revocation and expiry.
//! - `groups` — groups, membership and the roles they lend.
//! - `cis` — configuration items: containment, unique names, revisions and deletion.
//! - `search` — finding items by kind, container and name, and paging through them.
//! - `relations` — typed edges between items.
//! - `impact` — what else fails when an item fails.
//! - `incidents` — incidents: their process, SLA clocks and escalation, dedup, versions and history.
//! - `change_support` — a seeded store, the people of the change process, plans and refusal assertions.
//! - `changes` — the normal, standard and emergency change processes, their refusals, timeline and listing.
//! - `change_plans` — operations checked against the CMDB, rollback plans, risk, and edits by revision.
//! - `change_guards` — freeze windows and conflicting changes in a change's way, and overriding conflicts.
//! - `approvals` — who may vote, how stage rules count votes, rejections, and the policy a round runs.
//! - `delegations` — votes cast by a substitute, counted and audited as the approver's.
//! - `approval_timeouts` — stages that wait too long: escalation, rejection, a pass for low-risk work.
//! - `change_property` — random events, votes, edits and time never take a change off its process.
//! - `audit_records` — the record every mutation leaves, and the one a failed mutation does not.
//! - `audit_chain` — verifying the hash chain and detecting tampering, also under concurrent writers.
//! - `writers` — which writers wait for which: records take turns, different records run side by side.
//! - `metrics` — metric points: grouped commits, series and tags, steps.
//! - `alerts` — alert rules judged against points: incidents opened, held back and resolved.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alerts;
mod approval_timeouts;
mod approvals;
mod audit_chain;
mod audit_records;
mod change_guards;
mod change_plans;
mod change_property;
mod change_support;
mod changes;
mod cis;
mod delegations;
mod freezes;
mod groups;
mod impact;
mod incidents;
mod metrics;
mod processes;
mod quotas;
mod relations;
mod search;
mod support;
mod tokens;
mod users;
mod writers;
