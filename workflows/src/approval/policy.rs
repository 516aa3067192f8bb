//! Approval policies as data, and the rules that decide a stage.

use crate::change::{ChangeKind, RiskLevel};
use crate::error::ValidationError;
use serde::{Deserialize, Serialize};

/// How many of a stage's approvers must approve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    /// One approval.
    Any,
    /// Every eligible approver.
    All,
    /// At least this many approvals.
    Quorum(u32),
    /// At least this percentage of the eligible approvers (rounded up).
    Percent(u32),
}

impl Rule {
    /// True when `approvals` out of `eligible` people satisfy the rule.
    pub fn met(self, approvals: u32, eligible: u32) -> bool {
        match self {
            Rule::Any => approvals >= 1,
            Rule::All => eligible > 0 && approvals >= eligible,
            Rule::Quorum(n) => approvals >= n,
            Rule::Percent(p) => eligible > 0 && u64::from(approvals) * 100 >= u64::from(p) * u64::from(eligible),
        }
    }
}

/// What happens when a stage waits longer than its timeout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutAction {
    /// Add this group's members to the stage's approvers (once).
    Escalate(String),
    /// Reject the change.
    Reject,
    /// Pass the stage, for low-risk work only; otherwise the stage waits on.
    ApproveIfLowRisk,
}

/// One stage: its approvers and its rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    pub name: String,
    /// Names of the groups whose members may approve.
    pub groups: Vec<String>,
    pub rule: Rule,
    pub timeout_secs: Option<u64>,
    pub on_timeout: Option<TimeoutAction>,
}

/// A policy: which changes it applies to, and its stages in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApprovalPolicy {
    pub name: String,
    pub kinds: Vec<ChangeKind>,
    /// The policy applies to changes whose risk level lies in [min_risk, max_risk].
    #[serde(default = "lowest")]
    pub min_risk: RiskLevel,
    #[serde(default = "highest")]
    pub max_risk: RiskLevel,
    pub stages: Vec<Stage>,
}

fn lowest() -> RiskLevel {
    RiskLevel::Low
}

fn highest() -> RiskLevel {
    RiskLevel::High
}

impl ApprovalPolicy {
    pub fn applies(&self, kind: ChangeKind, risk: RiskLevel) -> bool {
        self.kinds.contains(&kind) && self.min_risk <= risk && risk <= self.max_risk
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        let bad = |m: String| Err(ValidationError::new("policy", m));
        if crate::text::Name::parse("name", &self.name).is_err() {
            return bad("name must be 1-128 characters".to_owned());
        }
        if self.kinds.is_empty() {
            return bad("a policy applies to at least one change kind".to_owned());
        }
        if self.min_risk > self.max_risk {
            return bad("min_risk is above max_risk".to_owned());
        }
        if self.stages.is_empty() || self.stages.len() > 10 {
            return bad("a policy has 1 to 10 stages".to_owned());
        }
        for (i, s) in self.stages.iter().enumerate() {
            if s.groups.is_empty() {
                return bad(format!("stage {i} ({}) names no approver group", s.name));
            }
            match s.rule {
                Rule::Quorum(0) => return bad(format!("stage {i}: a quorum of 0 approves nothing")),
                Rule::Percent(p) if !(1..=100).contains(&p) => {
                    return bad(format!("stage {i}: a percentage is 1 to 100"))
                }
                _ => {}
            }
            if s.timeout_secs.is_some_and(|t| t > 366 * 86_400) {
                return bad(format!("stage {i}: a timeout is at most 366 days"));
            }
            if let Rule::Quorum(n) = s.rule {
                if n > 1000 {
                    return bad(format!("stage {i}: a quorum of {n} can never gather"));
                }
            }
            if s.on_timeout.is_some() && s.timeout_secs.is_none_or(|t| t == 0) {
                return bad(format!("stage {i}: on_timeout needs a positive timeout_secs"));
            }
        }
        Ok(())
    }
}

/// Groups the default policies name, created empty (with the approver role) at first start.
pub const DEFAULT_GROUPS: &[(&str, &str)] = &[
    ("change-approvers", "Peer reviewers of normal changes."),
    ("change-advisory-board", "The CAB: approves medium- and high-risk normal changes."),
    ("emergency-cab", "Approves emergency changes, fast."),
];

/// The policies that ship with Tollgate, stored at first start.
pub const DEFAULT_POLICIES: &str = include_str!("../../processes/approval-policies.json");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_count_as_their_names_say() {
        assert!(Rule::Any.met(1, 5) && !Rule::Any.met(0, 5));
        assert!(Rule::All.met(3, 3) && !Rule::All.met(2, 3) && !Rule::All.met(0, 0));
        assert!(Rule::Quorum(2).met(2, 9) && !Rule::Quorum(2).met(1, 9));
        assert!(Rule::Percent(50).met(2, 4) && !Rule::Percent(50).met(1, 3) && Rule::Percent(50).met(2, 3));
    }

    #[test]
    fn the_shipped_policies_are_valid() {
        let policies: Vec<ApprovalPolicy> = serde_json::from_str(DEFAULT_POLICIES).expect("parses");
        for p in &policies {
            p.validate().unwrap_or_else(|e| panic!("{}: {e}", p.name));
        }
        for kind in [ChangeKind::Normal, ChangeKind::Emergency] {
            for risk in [RiskLevel::Low, RiskLevel::Medium, RiskLevel::High] {
                assert!(policies.iter().any(|p| p.applies(kind, risk)), "no policy for {kind:?} {risk:?}");
            }
        }
    }
}
