//! Changes: an executable, verifiable plan. A change names its kind (standard, normal, emergency), the
//! CIs it touches, its planned operations as typed data, its window and a rollback plan derived from the
//! operations, and runs the process definition of its kind. Every edit increments its revision.
//!
//! Layout: `plan` — operations and their inverses; `risk` — the risk score and its explanation;
//! `record` — the stored change; `request` — requests and edits; `lifecycle` — events, guards, overrides;
//! `query` — lists and timelines; `conflicts` — overlapping work on related CIs; `gate` — the approved
//! change the control plane requires.

mod conflicts;
mod gate;
mod lifecycle;
mod limits;
mod plan;
mod query;
mod record;
mod request;
mod risk;

pub use conflicts::{conflicts_of, Conflict};
pub use gate::{authorise, ApprovedChange, Refusal};
pub use lifecycle::*;
pub use limits::{VmLimits, NET_MBIT_MAX};
pub use plan::{Operation, RollbackStep};
pub use query::*;
pub use record::*;
pub use request::*;
pub use risk::{Risk, RiskFactor, RiskLevel};

use serde::{Deserialize, Serialize};

/// The kind of a change, which chooses its process and approval policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Pre-approved, low-risk, from a template: straight to scheduled.
    Standard,
    /// Assessed and approved before it is scheduled.
    Normal,
    /// Expedited approval; may run at once, even in a freeze.
    Emergency,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Standard => "standard",
            ChangeKind::Normal => "normal",
            ChangeKind::Emergency => "emergency",
        }
    }

    pub fn parse(s: &str) -> Option<ChangeKind> {
        [ChangeKind::Standard, ChangeKind::Normal, ChangeKind::Emergency].into_iter().find(|k| k.as_str() == s)
    }

    /// The process definition a change of this kind runs.
    pub fn process(self) -> &'static str {
        match self {
            ChangeKind::Standard => "standard-change",
            ChangeKind::Normal => "normal-change",
            ChangeKind::Emergency => "emergency-change",
        }
    }
}
