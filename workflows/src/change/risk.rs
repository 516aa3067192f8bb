//! The risk score of a change and the explanation of every point in it.

use super::ChangeKind;
use crate::cmdb::Criticality;
use serde::{Deserialize, Serialize};

/// Low below 30, medium below 60, high from 60.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    Low,
    Medium,
    High,
}

/// One reason the score is what it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RiskFactor {
    /// `blast_radius`, `change_kind`, `operations`, `criticality`, `incidents`, `history`.
    pub factor: String,
    pub points: u32,
    pub detail: String,
}

/// A score from 0 to 100 with its level and factors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Risk {
    pub score: u32,
    pub level: RiskLevel,
    pub factors: Vec<RiskFactor>,
}

/// What the score is computed from; the store gathers it.
#[derive(Debug, Clone, Default)]
pub struct RiskInputs {
    pub kind: Option<ChangeKind>,
    pub operation_kinds: Vec<&'static str>,
    /// CIs the impact walk reaches from the change's CIs, and how many of them are business services.
    pub affected: usize,
    pub services: usize,
    pub max_criticality: Option<Criticality>,
    pub open_incidents: i64,
    /// Incidents on the CIs resolved in the last 7 days.
    pub recent_incidents: i64,
    /// (failed or rolled back, finished) among earlier changes with the same operations.
    pub history: (i64, i64),
}

fn factor(factor: &str, points: u32, detail: String) -> RiskFactor {
    RiskFactor { factor: factor.to_owned(), points, detail }
}

/// Scores a change. Each factor is capped so no single one decides alone.
pub fn score(i: &RiskInputs) -> Risk {
    let mut factors = Vec::new();
    let blast = (i.affected as u32 / 5).min(15) + (i.services as u32 * 5).min(15);
    factors.push(factor(
        "blast_radius",
        blast,
        format!("{} CI(s) affected if it fails, {} of them business services", i.affected, i.services),
    ));
    let (kind_points, kind_name) = match i.kind {
        Some(ChangeKind::Emergency) => (20, "emergency"),
        Some(ChangeKind::Normal) => (10, "normal"),
        _ => (0, "standard"),
    };
    factors.push(factor("change_kind", kind_points, format!("a {kind_name} change")));
    let op_points: u32 = i
        .operation_kinds
        .iter()
        .map(|k| match *k {
            "evacuate" => 15,
            "migrate" | "delete" => 10,
            "stop" => 8,
            "resize" | "set_quota" | "provision" | "adopt" => 4,
            _ => 1,
        })
        .sum::<u32>()
        .min(20);
    let mut kinds = i.operation_kinds.clone();
    kinds.sort_unstable();
    kinds.dedup();
    factors.push(factor(
        "operations",
        op_points,
        format!("operations: {}", if kinds.is_empty() { "none".to_owned() } else { kinds.join(", ") }),
    ));
    let (crit_points, crit) = match i.max_criticality {
        Some(Criticality::Critical) => (20, "critical"),
        Some(Criticality::High) => (12, "high"),
        Some(Criticality::Medium) => (5, "medium"),
        Some(Criticality::Low) => (0, "low"),
        None => (0, "none"),
    };
    factors.push(factor("criticality", crit_points, format!("the most critical CI touched is {crit}")));
    let incident_points = (i.open_incidents as u32 * 8).min(16) + (i.recent_incidents as u32 * 2).min(4);
    factors.push(factor(
        "incidents",
        incident_points,
        format!("{} open and {} recently resolved incident(s) on these CIs", i.open_incidents, i.recent_incidents),
    ));
    let (failed, finished) = i.history;
    let history_points = if finished > 0 { ((failed * 20) / finished) as u32 } else { 0 };
    factors.push(factor(
        "history",
        history_points,
        if finished > 0 {
            format!("{failed} of {finished} earlier changes with the same operations failed or were rolled back")
        } else {
            "no earlier change with the same operations".to_owned()
        },
    ));
    let score = factors.iter().map(|f| f.points).sum::<u32>().min(100);
    let level = match score {
        0..30 => RiskLevel::Low,
        30..60 => RiskLevel::Medium,
        _ => RiskLevel::High,
    };
    Risk { score, level, factors }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_standard_change_is_low_risk_and_an_emergency_evacuation_of_critical_hosts_is_high() {
        let small = score(&RiskInputs {
            kind: Some(ChangeKind::Standard),
            operation_kinds: vec!["start"],
            ..Default::default()
        });
        assert_eq!(small.level, RiskLevel::Low);
        let big = score(&RiskInputs {
            kind: Some(ChangeKind::Emergency),
            operation_kinds: vec!["evacuate"],
            affected: 200,
            services: 4,
            max_criticality: Some(Criticality::Critical),
            open_incidents: 1,
            ..Default::default()
        });
        assert_eq!(big.level, RiskLevel::High, "{big:?}");
        assert_eq!(big.score, big.factors.iter().map(|f| f.points).sum::<u32>().min(100));
    }

    #[test]
    fn a_history_of_failures_raises_the_score() {
        let base = RiskInputs { kind: Some(ChangeKind::Normal), operation_kinds: vec!["resize"], ..Default::default() };
        let failing = RiskInputs { history: (3, 4), ..base.clone() };
        assert_eq!(score(&failing).score - score(&base).score, 15);
    }
}
