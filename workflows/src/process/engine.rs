//! Firing a transition: a pure function of (definition, state, event, actor, guard outcomes).

use super::definition::{Effect, Guard, ProcessDefinition, TransitionDef};
use crate::accounts::{Role, RoleSet};

/// Who fires an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A person with these roles.
    Person(RoleSet),
    /// Tollgate itself: votes complete, timers, execution results.
    System,
}

/// Evaluates the guards a transition names; `Err` carries why the guard does not hold.
pub trait GuardCheck {
    fn check(&self, guard: Guard) -> Result<(), String>;
}

/// Every guard holds: for callers with nothing to check.
impl GuardCheck for () {
    fn check(&self, _guard: Guard) -> Result<(), String> {
        Ok(())
    }
}

/// Why an event cannot fire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("{process} has no event {event}")]
    UnknownEvent { process: String, event: String },
    #[error("{event} is not allowed from {from}")]
    NotAllowed { event: String, from: String },
    #[error("{event} needs one of the roles: {}", roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "))]
    RoleRequired { event: String, roles: Vec<Role> },
    #[error("{event} is fired by Tollgate itself, not by a person")]
    SystemOnly { event: String },
    #[error("{event} is blocked: {guard:?}: {reason}")]
    GuardFailed { event: String, guard: Guard, reason: String },
}

/// The outcome of an event that may fire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'d> {
    pub from: &'d str,
    pub to: &'d str,
    pub transition: &'d TransitionDef,
    pub effects: &'d [Effect],
    /// The record is finished once it arrives.
    pub terminal: bool,
}

/// Decides whether `event` may fire from `state` for `actor`: the transition must exist from that state,
/// the actor must be allowed, and every guard must hold (checked in the order the definition lists them).
pub fn decide<'d>(
    def: &'d ProcessDefinition,
    state: &str,
    event: &str,
    actor: &Actor,
    guards: &dyn GuardCheck,
) -> Result<Decision<'d>, TransitionError> {
    let mut named = def.transitions.iter().filter(|t| t.event == event).peekable();
    if named.peek().is_none() {
        return Err(TransitionError::UnknownEvent { process: def.name.clone(), event: event.to_owned() });
    }
    let (transition, from) = named
        .find_map(|t| t.from.iter().find(|f| *f == state).map(|f| (t, f.as_str())))
        .ok_or_else(|| TransitionError::NotAllowed { event: event.to_owned(), from: state.to_owned() })?;
    match actor {
        Actor::System => {}
        Actor::Person(_) if transition.system => {
            return Err(TransitionError::SystemOnly { event: event.to_owned() });
        }
        Actor::Person(roles) if !roles.permits(&transition.roles) => {
            return Err(TransitionError::RoleRequired { event: event.to_owned(), roles: transition.roles.clone() });
        }
        Actor::Person(_) => {}
    }
    for guard in &transition.guards {
        guards.check(*guard).map_err(|reason| TransitionError::GuardFailed {
            event: event.to_owned(),
            guard: *guard,
            reason,
        })?;
    }
    let terminal = def.state(&transition.to).is_some_and(|s| s.terminal);
    Ok(Decision { from, to: &transition.to, transition, effects: &transition.effects, terminal })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::DEFAULTS;

    fn normal() -> ProcessDefinition {
        ProcessDefinition::from_json(DEFAULTS[0].1).expect("valid")
    }

    fn person(roles: &[Role]) -> Actor {
        Actor::Person(RoleSet::new(roles.iter().copied()))
    }

    struct Blocked(Guard);
    impl GuardCheck for Blocked {
        fn check(&self, guard: Guard) -> Result<(), String> {
            if guard == self.0 {
                Err("a freeze window covers it".into())
            } else {
                Ok(())
            }
        }
    }

    #[test]
    fn a_requester_submits_a_draft() {
        let def = normal();
        let d = decide(&def, "draft", "submit", &person(&[Role::Requester]), &()).expect("allowed");
        assert_eq!((d.from, d.to, d.terminal), ("draft", "submitted", false));
    }

    #[test]
    fn refusals_say_why() {
        let def = normal();
        let viewer = person(&[Role::Viewer]);
        assert!(matches!(decide(&def, "draft", "fly", &viewer, &()), Err(TransitionError::UnknownEvent { .. })));
        assert!(matches!(
            decide(&def, "closed", "submit", &person(&[Role::Requester]), &()),
            Err(TransitionError::NotAllowed { .. })
        ));
        assert!(matches!(decide(&def, "draft", "submit", &viewer, &()), Err(TransitionError::RoleRequired { .. })));
        assert!(matches!(
            decide(&def, "awaiting_approval", "approve", &person(&[Role::Admin]), &()),
            Err(TransitionError::SystemOnly { .. })
        ));
        let blocked = decide(&def, "approved", "schedule", &person(&[Role::ChangeManager]), &Blocked(Guard::NotFrozen));
        assert!(matches!(blocked, Err(TransitionError::GuardFailed { guard: Guard::NotFrozen, .. })), "{blocked:?}");
    }

    #[test]
    fn the_system_fires_system_events_and_an_admin_fires_any_other() {
        let def = normal();
        assert_eq!(decide(&def, "awaiting_approval", "approve", &Actor::System, &()).map(|d| d.to), Ok("approved"));
        assert_eq!(decide(&def, "draft", "submit", &person(&[Role::Admin]), &()).map(|d| d.to), Ok("submitted"));
    }
}
