//! Incidents in the store: their process, SLA clocks and escalation, dedup, edits, versions and history.
//!
//! Layout:
//! - `transitions` — the incident process's transition table, and every way an event is refused.
//! - `sla` — priority from the matrix, due instants, the pause while pending, breaches and escalation.
//! - `reports` — dedup of repeated reports, CIs, and edits.
//! - `history` — process versions, the audit record of each event, and the timeline.
//! - `property` — random event sequences never leave the declared transitions.

mod history;
mod property;
mod reports;
mod sla;
mod transitions;

use crate::support::*;
use std::fmt::Debug;
use tollgate_workflows::accounts::{self, Role, RoleSet, User, UserUpdate};
use tollgate_workflows::incident::{self, Incident, IncidentEvent, IncidentPolicy, IncidentReport, Level, Reported};
use tollgate_workflows::process::{self, TransitionError};
use tollgate_workflows::text::Description;
use tollgate_workflows::{Db, StoreError, StoreResult};

/// A fresh store with the shipped processes, so incidents can be reported.
pub async fn incident_db() -> TestDb {
    let db = fresh_db().await;
    process::seed_defaults(&db).await.unwrap();
    db
}

pub fn policy() -> IncidentPolicy {
    IncidentPolicy::default()
}

pub fn report(title: &str, impact: Level, urgency: Level) -> IncidentReport {
    IncidentReport {
        title: name(title),
        description: Description::parse("description", "").unwrap(),
        impact,
        urgency,
        major: false,
        ci_ids: Vec::new(),
        dedup_key: None,
    }
}

pub fn keyed(key: &str, impact: Level, urgency: Level) -> IncidentReport {
    IncidentReport { dedup_key: Some(name(key)), ..report(&format!("alert {key}"), impact, urgency) }
}

/// Reports `r`, which must open a new incident.
pub async fn open_report(db: &Db, r: IncidentReport) -> Incident {
    match incident::report(db, &ctx(), &policy(), r).await.unwrap() {
        Reported::Opened(i) => i,
        Reported::Updated(i) => panic!("expected a new incident, {} absorbed the report", i.reference),
    }
}

pub async fn open(db: &Db, impact: Level, urgency: Level) -> Incident {
    open_report(db, report("hv-001 does not answer", impact, urgency)).await
}

pub fn roles(r: &[Role]) -> RoleSet {
    RoleSet::new(r.iter().copied())
}

pub fn operator() -> RoleSet {
    roles(&[Role::Operator])
}

/// Fires `event` on incident `id` as someone holding `who`.
pub async fn fire(
    db: &Db,
    id: &str,
    who: &RoleSet,
    event: &str,
    comment: Option<&str>,
    assignee_id: Option<&str>,
) -> StoreResult<Incident> {
    let e = IncidentEvent {
        event: event.to_owned(),
        comment: comment.map(str::to_owned),
        assignee_id: assignee_id.map(str::to_owned),
    };
    incident::fire(db, &ctx(), id, who, e).await
}

/// Fires `events` in order as an operator, each with a comment, and `assign` with `assignee_id`.
pub async fn walk(db: &Db, id: &str, assignee_id: &str, events: &[&str]) -> Incident {
    let mut last = incident::get_incident(db, id).await.unwrap();
    for event in events {
        let assignee = (*event == "assign").then_some(assignee_id);
        last = fire(db, id, &operator(), event, Some("as planned"), assignee)
            .await
            .unwrap_or_else(|e| panic!("{event} from {} refused: {e}", last.state));
    }
    last
}

/// An enabled operator who can take incidents.
pub async fn assignee(db: &Db, username: &str) -> User {
    user(db, username, &[Role::Operator]).await
}

/// A user who exists but is disabled.
pub async fn disabled_user(db: &Db, username: &str) -> User {
    let u = assignee(db, username).await;
    let update =
        UserUpdate { display_name: name(username), email: None, roles: RoleSet::new([Role::Operator]), disabled: true };
    accounts::update_user(db, &ctx(), &u.id, update).await.unwrap()
}

/// How many audit records name the incident.
pub async fn audit_count(db: &Db, id: &str) -> usize {
    audit_of(db, "incident", id).await.len()
}

/// The refusal in `result`, which must be a transition error.
#[track_caller]
pub fn refusal<T: Debug>(result: StoreResult<T>) -> TransitionError {
    match result {
        Err(StoreError::Transition(t)) => t,
        other => panic!("expected the process to refuse the event, got {other:?}"),
    }
}
