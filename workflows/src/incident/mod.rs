//! Incidents: an unplanned interruption worked to resolution under its priority's SLA.
//!
//! Impact × urgency gives the priority through a configurable matrix; each priority has response and
//! resolution targets; the clock pauses while the incident is pending; a breach escalates once (priority up
//! one step). A second report carrying the dedup key of an open incident updates it instead of opening
//! another. States and who may move between them come from the `incident` process definition.

mod events;
mod links;
mod query;
mod record;
mod report;
mod sla;

pub use events::*;
pub use links::*;
pub use query::*;
pub use record::*;
pub use report::*;
pub use sla::*;

use crate::error::ValidationError;
use serde::{Deserialize, Serialize};

/// How widely the incident hurts (1 = high).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    High,
    Medium,
    Low,
}

impl Level {
    fn index(self) -> usize {
        match self {
            Level::High => 0,
            Level::Medium => 1,
            Level::Low => 2,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::High => "high",
            Level::Medium => "medium",
            Level::Low => "low",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        [Level::High, Level::Medium, Level::Low].into_iter().find(|l| l.as_str() == s)
    }
}

/// P1 (most urgent) to P5; on the wire, the number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct Priority(pub u8);

impl TryFrom<u8> for Priority {
    type Error = ValidationError;

    fn try_from(n: u8) -> Result<Self, Self::Error> {
        Priority::new(n)
    }
}

impl From<Priority> for u8 {
    fn from(p: Priority) -> u8 {
        p.0
    }
}

impl utoipa::PartialSchema for Priority {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .minimum(Some(1))
            .maximum(Some(5))
            .description(Some("1 (most urgent) to 5"))
            .into()
    }
}

impl utoipa::ToSchema for Priority {}

impl Priority {
    pub fn new(n: u8) -> Result<Priority, ValidationError> {
        if (1..=5).contains(&n) {
            Ok(Priority(n))
        } else {
            Err(ValidationError::new("priority", format!("must be 1 to 5, got {n}")))
        }
    }

    /// One step more urgent; P1 stays P1.
    pub fn raised(self) -> Priority {
        Priority(self.0.saturating_sub(1).max(1))
    }

    fn index(self) -> usize {
        usize::from(self.0 - 1)
    }
}

impl std::fmt::Display for Priority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "P{}", self.0)
    }
}

/// Priorities by impact (rows, high to low) and urgency (columns, high to low), and the SLA targets of
/// each priority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentPolicy {
    matrix: [[Priority; 3]; 3],
    response_secs: [i64; 5],
    resolution_secs: [i64; 5],
}

impl Default for IncidentPolicy {
    /// The common 3×3 matrix: P1 for high × high down to P5 for low × low; response 15 min / 30 min / 4 h /
    /// 8 h / 24 h and resolution 4 h / 8 h / 24 h / 3 d / 7 d.
    fn default() -> Self {
        let p = Priority;
        IncidentPolicy {
            matrix: [[p(1), p(2), p(3)], [p(2), p(3), p(4)], [p(3), p(4), p(5)]],
            response_secs: [15 * 60, 30 * 60, 4 * 3600, 8 * 3600, 24 * 3600],
            resolution_secs: [4 * 3600, 8 * 3600, 24 * 3600, 3 * 86400, 7 * 86400],
        }
    }
}

impl IncidentPolicy {
    /// A policy from configuration values; `matrix` rows are impact high→low, columns urgency high→low.
    pub fn new(
        matrix: [[u8; 3]; 3],
        response_secs: [i64; 5],
        resolution_secs: [i64; 5],
    ) -> Result<Self, ValidationError> {
        let mut m = [[Priority(1); 3]; 3];
        for (i, row) in matrix.iter().enumerate() {
            for (j, n) in row.iter().enumerate() {
                m[i][j] = Priority::new(*n).map_err(|e| ValidationError::new("priority_matrix", e.message))?;
            }
        }
        for (field, targets) in [("response_secs", &response_secs), ("resolution_secs", &resolution_secs)] {
            if targets.iter().any(|t| *t <= 0) {
                return Err(ValidationError::new(field, "every target must be a positive number of seconds"));
            }
        }
        if response_secs.iter().zip(&resolution_secs).any(|(r, s)| r > s) {
            return Err(ValidationError::new("response_secs", "a response target cannot exceed its resolution target"));
        }
        Ok(IncidentPolicy { matrix: m, response_secs, resolution_secs })
    }

    pub fn priority(&self, impact: Level, urgency: Level) -> Priority {
        self.matrix[impact.index()][urgency.index()]
    }

    pub fn response_target(&self, p: Priority) -> time::Duration {
        time::Duration::seconds(self.response_secs[p.index()])
    }

    pub fn resolution_target(&self, p: Priority) -> time::Duration {
        time::Duration::seconds(self.resolution_secs[p.index()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_matrix_maps_impact_and_urgency_to_p1_through_p5() {
        let p = IncidentPolicy::default();
        assert_eq!(p.priority(Level::High, Level::High), Priority(1));
        assert_eq!(p.priority(Level::High, Level::Medium), Priority(2));
        assert_eq!(p.priority(Level::Medium, Level::Medium), Priority(3));
        assert_eq!(p.priority(Level::Low, Level::Medium), Priority(4));
        assert_eq!(p.priority(Level::Low, Level::Low), Priority(5));
    }

    #[test]
    fn escalation_raises_one_step_and_stops_at_p1() {
        assert_eq!(Priority(3).raised(), Priority(2));
        assert_eq!(Priority(1).raised(), Priority(1));
    }

    #[test]
    fn a_policy_with_impossible_values_is_refused() {
        assert!(IncidentPolicy::new([[0, 2, 3], [2, 3, 4], [3, 4, 5]], [1; 5], [2; 5]).is_err());
        assert!(IncidentPolicy::new([[1, 2, 3], [2, 3, 4], [3, 4, 5]], [0; 5], [2; 5]).is_err());
        assert!(IncidentPolicy::new([[1, 2, 3], [2, 3, 4], [3, 4, 5]], [3; 5], [2; 5]).is_err());
    }
}
