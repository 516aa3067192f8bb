//! The shape of a process definition and the checks that make one valid.

use crate::accounts::Role;
use crate::error::ValidationError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// What kind of record a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Change,
    Incident,
}

/// A condition that must hold for a transition to fire; the engine's caller evaluates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Guard {
    /// Every approval stage of the change's policy has reached its rule.
    ApprovalsComplete,
    /// Now is inside the change's planned window.
    WindowOpen,
    /// No conflict with another change stands, or a change manager overrode it.
    NoUnresolvedConflict,
    /// No freeze window covers the change's CIs during its window (emergency changes: or it is approved).
    NotFrozen,
    /// The event carries a comment (rejections).
    CommentGiven,
    /// A post-implementation review is recorded (closing a change).
    ReviewRecorded,
    /// The incident has an assignee.
    AssigneeSet,
    /// The change plans no automated operations: people do the work and report its outcome.
    ManualWork,
}

/// What firing a transition sets in motion, besides the state change and its audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Tell the people the new state concerns (requester, approvers, assignee).
    Notify,
    /// Open the approval stages of the change's policy.
    RequestApprovals,
    /// Hand the change's planned operations to the control plane.
    StartExecution,
    /// Run the change's rollback plan.
    StartRollback,
    /// Start, pause, resume or stop the incident's SLA clocks.
    StartSlaClock,
    PauseSlaClock,
    ResumeSlaClock,
    StopSlaClock,
}

/// One state of a process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateDef {
    pub name: String,
    /// A record in a terminal state is finished: no transition leaves it.
    #[serde(default)]
    pub terminal: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

/// One transition: `event` moves a record from any of `from` to `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransitionDef {
    pub event: String,
    pub from: Vec<String>,
    pub to: String,
    /// Who may fire it (administrators always may). Empty only for system transitions.
    #[serde(default)]
    pub roles: Vec<Role>,
    /// Only Tollgate itself fires it (votes complete, timers, execution results).
    #[serde(default)]
    pub system: bool,
    #[serde(default)]
    pub guards: Vec<Guard>,
    #[serde(default)]
    pub effects: Vec<Effect>,
}

/// A process: its states and transitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProcessDefinition {
    pub name: String,
    pub applies_to: RecordKind,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    pub initial: String,
    pub states: Vec<StateDef>,
    pub transitions: Vec<TransitionDef>,
}

const MAX_STATES: usize = 64;
const MAX_TRANSITIONS: usize = 256;

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && s.starts_with(|c: char| c.is_ascii_lowercase())
}

impl ProcessDefinition {
    /// Parses and validates a definition from JSON.
    pub fn from_json(json: &str) -> Result<Self, ValidationError> {
        let def: ProcessDefinition =
            serde_json::from_str(json).map_err(|e| ValidationError::new("definition", e.to_string()))?;
        def.validate()?;
        Ok(def)
    }

    /// Every problem with the definition, in one error: unknown or duplicate names, unreachable states,
    /// dead ends, transitions out of terminal states, transitions nobody may fire.
    pub fn validate(&self) -> Result<(), ValidationError> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ValidationError::new("definition", problems.join("; ")))
        }
    }

    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if !is_identifier(&self.name) {
            p.push(format!(
                "name {:?} must be 1-64 characters of a-z, 0-9, '-' or '_', starting with a letter",
                self.name
            ));
        }
        if self.description.chars().count() > 4096 {
            p.push("description must be at most 4096 characters".to_owned());
        }
        if self.states.is_empty() || self.states.len() > MAX_STATES {
            p.push(format!("a process needs 1 to {MAX_STATES} states"));
        }
        if self.transitions.len() > MAX_TRANSITIONS {
            p.push(format!("a process has at most {MAX_TRANSITIONS} transitions"));
        }
        let mut states: BTreeMap<&str, &StateDef> = BTreeMap::new();
        for s in &self.states {
            if !is_identifier(&s.name) {
                p.push(format!("state name {:?} is not a valid identifier", s.name));
            }
            if states.insert(&s.name, s).is_some() {
                p.push(format!("state {} is defined twice", s.name));
            }
        }
        if !states.contains_key(self.initial.as_str()) {
            p.push(format!("initial state {} is not defined", self.initial));
        }
        let mut events_from: BTreeSet<(&str, &str)> = BTreeSet::new();
        for t in &self.transitions {
            if !is_identifier(&t.event) {
                p.push(format!("event name {:?} is not a valid identifier", t.event));
            }
            if t.from.is_empty() {
                p.push(format!("event {} leaves from no state", t.event));
            }
            for from in &t.from {
                match states.get(from.as_str()) {
                    None => p.push(format!("event {} leaves from unknown state {from}", t.event)),
                    Some(s) if s.terminal => p.push(format!("event {} leaves terminal state {from}", t.event)),
                    Some(_) => {}
                }
                if !events_from.insert((t.event.as_str(), from.as_str())) {
                    p.push(format!("event {} is defined twice from state {from}", t.event));
                }
            }
            if !states.contains_key(t.to.as_str()) {
                p.push(format!("event {} goes to unknown state {}", t.event, t.to));
            }
            if t.roles.is_empty() && !t.system {
                p.push(format!("event {} lists no role and is not a system event: nobody could fire it", t.event));
            }
            if !t.roles.is_empty() && t.system {
                p.push(format!("event {} is a system event and cannot list roles", t.event));
            }
        }
        if !p.is_empty() {
            return p;
        }
        let reachable = self.reachable_from(std::iter::once(self.initial.as_str()), false);
        for s in &self.states {
            if !reachable.contains(s.name.as_str()) {
                p.push(format!("state {} cannot be reached from {}", s.name, self.initial));
            }
        }
        let terminals: Vec<&str> = self.states.iter().filter(|s| s.terminal).map(|s| s.name.as_str()).collect();
        if terminals.is_empty() {
            p.push("no state is terminal: records could never finish".to_owned());
        }
        let can_finish = self.reachable_from(terminals.iter().copied(), true);
        for s in &self.states {
            if !s.terminal && !can_finish.contains(s.name.as_str()) {
                p.push(format!("state {} is a dead end: no terminal state can be reached from it", s.name));
            }
        }
        p
    }

    /// States reachable from `start` along transitions (or against them, with `backwards`).
    fn reachable_from<'a>(&'a self, start: impl Iterator<Item = &'a str>, backwards: bool) -> BTreeSet<&'a str> {
        let mut seen: BTreeSet<&str> = start.collect();
        let mut queue: VecDeque<&str> = seen.iter().copied().collect();
        while let Some(state) = queue.pop_front() {
            for t in &self.transitions {
                let next: Vec<&str> = if backwards {
                    if t.to == state {
                        t.from.iter().map(String::as_str).collect()
                    } else {
                        Vec::new()
                    }
                } else if t.from.iter().any(|f| f == state) {
                    vec![t.to.as_str()]
                } else {
                    Vec::new()
                };
                for n in next {
                    if seen.insert(n) {
                        queue.push_back(n);
                    }
                }
            }
        }
        seen
    }

    pub fn state(&self, name: &str) -> Option<&StateDef> {
        self.states.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> ProcessDefinition {
        ProcessDefinition::from_json(
            r#"{"name":"p","applies_to":"incident","initial":"a",
                "states":[{"name":"a"},{"name":"b","terminal":true}],
                "transitions":[{"event":"go","from":["a"],"to":"b","roles":["operator"]}]}"#,
        )
        .expect("valid")
    }

    fn problems_of(mutate: impl FnOnce(&mut ProcessDefinition)) -> String {
        let mut d = minimal();
        mutate(&mut d);
        d.validate().expect_err("invalid").message
    }

    #[test]
    fn every_shipped_definition_is_valid() {
        for (name, json) in crate::process::DEFAULTS {
            let def = ProcessDefinition::from_json(json).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(def.name, *name);
        }
    }

    #[test]
    fn an_unreachable_state_is_refused() {
        let m = problems_of(|d| {
            d.states.push(StateDef { name: "island".into(), terminal: true, description: String::new() })
        });
        assert!(m.contains("state island cannot be reached from a"), "{m}");
    }

    #[test]
    fn a_dead_end_without_a_terminal_state_is_refused() {
        let m = problems_of(|d| {
            d.states.push(StateDef { name: "limbo".into(), terminal: false, description: String::new() });
            d.transitions.push(TransitionDef {
                event: "wander".into(),
                from: vec!["a".into()],
                to: "limbo".into(),
                roles: vec![Role::Operator],
                system: false,
                guards: vec![],
                effects: vec![],
            });
        });
        assert!(m.contains("state limbo is a dead end"), "{m}");
    }

    #[test]
    fn unknown_roles_guards_and_fields_are_refused_at_parse() {
        for bad in [
            r#""roles":["wizard"]"#,
            r#""roles":["operator"],"guards":["moon_is_full"]"#,
            r#""roles":["operator"],"colour":"blue""#,
        ] {
            let json = format!(
                r#"{{"name":"p","applies_to":"incident","initial":"a","states":[{{"name":"a"}},{{"name":"b","terminal":true}}],
                    "transitions":[{{"event":"go","from":["a"],"to":"b",{bad}}}]}}"#
            );
            assert!(ProcessDefinition::from_json(&json).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn unknown_states_terminal_exits_and_unfireable_events_are_refused() {
        assert!(problems_of(|d| d.initial = "nowhere".into()).contains("initial state nowhere"));
        assert!(problems_of(|d| d.transitions[0].to = "nowhere".into()).contains("unknown state nowhere"));
        assert!(problems_of(|d| d.transitions[0].from = vec!["b".into()]).contains("leaves terminal state b"));
        assert!(problems_of(|d| d.transitions[0].roles.clear()).contains("nobody could fire it"));
        assert!(problems_of(|d| d.states[1].terminal = false).contains("no state is terminal"));
    }
}
