//! Process definitions as data, and the engine that fires their transitions.
//!
//! A definition names its states, its initial state, and its transitions: the event that fires each, the
//! states it leaves from, the roles allowed to fire it (or that only the system may), the guards that must
//! hold and the effects it has. Definitions are validated on load and on upload, and versioned: a running
//! record keeps the version it started with. The engine is a pure function of (definition, state, event,
//! actor, guard outcomes).

mod definition;
mod engine;
mod store;

pub use definition::{Effect, Guard, ProcessDefinition, RecordKind, StateDef, TransitionDef};
pub use engine::{decide, Actor, Decision, GuardCheck, TransitionError};
pub use store::{define, get_definition, get_definition_in, list_definitions, seed_defaults, StoredDefinition};
pub(crate) use store::{definition_at, latest_definition};

/// The definitions that ship with Tollgate, seeded at first start.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("normal-change", include_str!("../../processes/normal-change.json")),
    ("standard-change", include_str!("../../processes/standard-change.json")),
    ("emergency-change", include_str!("../../processes/emergency-change.json")),
    ("incident", include_str!("../../processes/incident.json")),
];

/// Definitions earlier releases shipped. A process whose latest version is one of these was never edited
/// by anyone, and follows the shipped definition when Tollgate starts (as a new version: records keep theirs).
pub const PREVIOUS: &[(&str, &str)] = &[("incident", include_str!("../../processes/previous/incident-1.json"))];
