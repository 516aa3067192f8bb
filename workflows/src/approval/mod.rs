//! Approvals: policies as data, selected by change kind and risk; sequential stages, each with approver
//! groups and a rule (any, all, quorum N, percentage); separation of duties (a requester never approves
//! their own change; one person counts once); time-bounded delegation; per-stage timeouts; votes bound to
//! the change revision they were cast on.

mod delegation;
mod policies;
mod policy;
mod rounds;
mod timeouts;
mod votes;

pub use delegation::*;
pub use policies::*;
pub use policy::{ApprovalPolicy, Rule, Stage, TimeoutAction, DEFAULT_GROUPS, DEFAULT_POLICIES};
pub(crate) use rounds::{complete_in, open_round};
pub use timeouts::*;
pub use votes::*;
