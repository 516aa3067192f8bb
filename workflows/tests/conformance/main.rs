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
//! - `audit_records` — the record every mutation leaves, and the one a failed mutation does not.
//! - `audit_chain` — verifying the hash chain and detecting tampering, also under concurrent writers.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit_chain;
mod audit_records;
mod cis;
mod freezes;
mod groups;
mod impact;
mod processes;
mod relations;
mod search;
mod support;
mod tokens;
mod users;
