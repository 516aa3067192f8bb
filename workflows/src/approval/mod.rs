//! Approvals: policies as data, selected by change kind and risk; sequential stages, each with approver
//! groups and a rule (any, all, quorum N, percentage); separation of duties (a requester never approves
//! their own change; one person counts once); time-bounded delegation; per-stage timeouts; votes bound to
//! the change revision they were cast on.

mod policy;
mod store;

pub use policy::{ApprovalPolicy, Rule, Stage, TimeoutAction, DEFAULT_GROUPS, DEFAULT_POLICIES};
pub use store::*;
