//! Integration tests of the Tollgate server: one binary, one module per concern.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod authz;
mod support;
