//! The incident process's transition table, and every way an event is refused: wrong state, wrong role,
//! a missing comment or assignee.

use super::*;
use tollgate_workflows::process::Guard;

const STATES: [&str; 6] = ["new", "assigned", "in_progress", "pending", "resolved", "closed"];

/// (event, the states it leaves from, the state it goes to) of the shipped `incident` process, for the
/// events people fire.
const TABLE: [(&str, &[&str], &str); 7] = [
    ("assign", &["new", "assigned", "in_progress"], "assigned"),
    ("start_work", &["assigned"], "in_progress"),
    ("wait", &["in_progress"], "pending"),
    ("resume", &["pending"], "in_progress"),
    ("resolve", &["assigned", "in_progress"], "resolved"),
    ("reopen", &["resolved"], "in_progress"),
    ("close", &["resolved"], "closed"),
];

/// The events only Tollgate fires: an alert that recovered resolves its incident.
const SYSTEM: [(&str, &[&str], &str); 1] = [("recover", &["new", "assigned", "in_progress"], "resolved")];

/// The events that take a new incident to `state`.
fn path_to(state: &str) -> &'static [&'static str] {
    match state {
        "new" => &[],
        "assigned" => &["assign"],
        "in_progress" => &["assign", "start_work"],
        "pending" => &["assign", "start_work", "wait"],
        "resolved" => &["assign", "resolve"],
        "closed" => &["assign", "resolve", "close"],
        other => panic!("no path to {other}"),
    }
}

/// A new incident walked to `state` by an operator; returns it.
async fn incident_in(db: &Db, state: &str, assignee_id: &str) -> Incident {
    let i = open(db, Level::Medium, Level::Medium).await;
    let i = walk(db, &i.id, assignee_id, path_to(state)).await;
    assert_eq!(i.state, state);
    i
}

#[tokio::test]
async fn the_shipped_incident_process_declares_exactly_the_expected_states_and_transitions() {
    let db = incident_db().await;
    let def = process::get_definition(&db, "incident", None).await.unwrap().definition;
    let states: Vec<&str> = def.states.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(states, STATES);
    assert_eq!(def.initial, "new");
    assert_eq!(def.states.iter().filter(|s| s.terminal).map(|s| s.name.as_str()).collect::<Vec<_>>(), ["closed"]);
    let mut table: Vec<(&str, Vec<&str>, &str)> = def
        .transitions
        .iter()
        .map(|t| (t.event.as_str(), t.from.iter().map(String::as_str).collect(), t.to.as_str()))
        .collect();
    let mut expected: Vec<(&str, Vec<&str>, &str)> =
        TABLE.iter().chain(&SYSTEM).map(|(e, f, t)| (*e, f.to_vec(), *t)).collect();
    table.sort();
    expected.sort();
    assert_eq!(table, expected);
    for t in &def.transitions {
        assert_eq!(t.system, SYSTEM.iter().any(|(e, _, _)| *e == t.event), "{} is system-only or not", t.event);
    }
}

#[tokio::test]
async fn only_tollgate_resolves_an_incident_by_recovery_and_it_needs_no_assignee() {
    let db = incident_db().await;
    let bob = assignee(&db, "bob").await;
    for (event, froms, to) in SYSTEM {
        for from in froms {
            let i = incident_in(&db, from, &bob.id).await;
            let refused = refusal(fire(&db, &i.id, &roles(&[Role::Admin]), event, Some("fine now"), None).await);
            assert_eq!(refused, TransitionError::SystemOnly { event: event.to_owned() });
            let e = IncidentEvent { event: event.to_owned(), comment: Some("fine now".into()), assignee_id: None };
            let ctx = tollgate_workflows::AuditContext::system("test");
            let after = incident::fire_system(&db, &ctx, &i.id, e).await.unwrap();
            assert_eq!(after.state, to, "{event} from {from}");
            assert!(after.resolved_at.is_some(), "the SLA clock stops");
        }
    }
}

#[tokio::test]
async fn an_operator_fires_every_event_from_every_state_it_is_allowed_from() {
    let db = incident_db().await;
    let bob = assignee(&db, "bob").await;
    for (event, froms, to) in TABLE {
        for from in froms {
            let i = incident_in(&db, from, &bob.id).await;
            let assignee = (event == "assign").then_some(bob.id.as_str());
            let after = fire(&db, &i.id, &operator(), event, Some("done"), assignee)
                .await
                .unwrap_or_else(|e| panic!("{event} from {from} refused: {e}"));
            assert_eq!(after.state, to, "{event} from {from}");
            assert_eq!(incident::get_incident(&db, &i.id).await.unwrap().state, to, "{event} from {from} is stored");
        }
    }
}

#[tokio::test]
async fn every_event_is_refused_from_every_state_it_is_not_allowed_from() {
    let db = incident_db().await;
    let bob = assignee(&db, "bob").await;
    for state in STATES {
        let i = incident_in(&db, state, &bob.id).await;
        for (event, froms, _) in TABLE.iter().filter(|(_, froms, _)| !froms.contains(&state)) {
            let refused = refusal(fire(&db, &i.id, &operator(), event, Some("try"), Some(&bob.id)).await);
            assert_eq!(
                refused,
                TransitionError::NotAllowed { event: (*event).to_owned(), from: state.to_owned() },
                "{event} from {state} (allowed only from {froms:?})"
            );
        }
        let after = incident::get_incident(&db, &i.id).await.unwrap();
        assert_eq!((after.state.as_str(), after.revision), (state, i.revision), "refusals change nothing");
    }
}

#[tokio::test]
async fn people_without_an_incident_role_are_refused_and_a_requester_may_only_reopen_and_close() {
    let db = incident_db().await;
    let bob = assignee(&db, "bob").await;
    let viewer = roles(&[Role::Viewer]);
    let approver = roles(&[Role::Approver, Role::ChangeManager]);
    let requester = roles(&[Role::Requester]);
    for (event, froms, to) in TABLE {
        let i = incident_in(&db, froms[0], &bob.id).await;
        let requester_may = matches!(event, "reopen" | "close");
        let mut expected_roles = vec![Role::Operator];
        if requester_may {
            expected_roles.push(Role::Requester);
        }
        for who in [&viewer, &approver] {
            let refused = refusal(fire(&db, &i.id, who, event, Some("please"), Some(&bob.id)).await);
            assert_eq!(
                refused,
                TransitionError::RoleRequired { event: event.to_owned(), roles: expected_roles.clone() }
            );
        }
        let by_requester = fire(&db, &i.id, &requester, event, Some("please"), Some(&bob.id)).await;
        if requester_may {
            assert_eq!(by_requester.unwrap().state, to);
        } else {
            assert!(matches!(refusal(by_requester), TransitionError::RoleRequired { .. }), "{event} by a requester");
        }
    }
}

#[tokio::test]
async fn an_administrator_may_fire_any_incident_event() {
    let db = incident_db().await;
    let bob = assignee(&db, "bob").await;
    let admin = roles(&[Role::Admin]);
    let i = open(&db, Level::Low, Level::Low).await;
    for event in ["assign", "start_work", "wait", "resume", "resolve", "reopen", "resolve", "close"] {
        let assignee = (event == "assign").then_some(bob.id.as_str());
        fire(&db, &i.id, &admin, event, Some("by the book"), assignee).await.unwrap();
    }
    assert_eq!(incident::get_incident(&db, &i.id).await.unwrap().state, "closed");
}

#[tokio::test]
async fn resolve_wait_and_reopen_need_a_comment_that_is_not_blank() {
    let db = incident_db().await;
    let bob = assignee(&db, "bob").await;
    for (state, event) in
        [("in_progress", "resolve"), ("assigned", "resolve"), ("in_progress", "wait"), ("resolved", "reopen")]
    {
        let i = incident_in(&db, state, &bob.id).await;
        for comment in [None, Some(""), Some("   \n\t")] {
            let refused = refusal(fire(&db, &i.id, &operator(), event, comment, None).await);
            assert!(
                matches!(&refused, TransitionError::GuardFailed { event: e, guard: Guard::CommentGiven, .. } if e == event),
                "{event} from {state} with {comment:?}: {refused:?}"
            );
        }
        assert_eq!(incident::get_incident(&db, &i.id).await.unwrap().state, state);
    }
}

#[tokio::test]
async fn assign_needs_an_existing_enabled_assignee() {
    let db = incident_db().await;
    let gone = disabled_user(&db, "gone").await;
    let bob = assignee(&db, "bob").await;
    let i = open(&db, Level::High, Level::High).await;
    for who in [None, Some("no-such-user"), Some(gone.id.as_str()), Some("")] {
        let refused = refusal(fire(&db, &i.id, &operator(), "assign", Some("yours"), who).await);
        assert!(
            matches!(refused, TransitionError::GuardFailed { guard: Guard::AssigneeSet, .. }),
            "assign to {who:?}: {refused:?}"
        );
    }
    let before = incident::get_incident(&db, &i.id).await.unwrap();
    assert_eq!((before.state.as_str(), before.assignee_id.as_deref(), before.responded_at), ("new", None, None));

    db.clock().advance(time::Duration::minutes(5));
    let assigned = fire(&db, &i.id, &operator(), "assign", None, Some(&bob.id)).await.unwrap();
    assert_eq!(assigned.state, "assigned");
    assert_eq!(assigned.assignee_id.as_deref(), Some(bob.id.as_str()));
    assert_eq!(assigned.responded_at, Some(START + time::Duration::minutes(5)), "the first assignment is the response");
}

#[tokio::test]
async fn an_unknown_event_or_incident_is_refused() {
    let db = incident_db().await;
    let i = open(&db, Level::High, Level::High).await;
    let refused = refusal(fire(&db, &i.id, &operator(), "teleport", Some("whoosh"), None).await);
    assert!(matches!(refused, TransitionError::UnknownEvent { ref event, .. } if event == "teleport"), "{refused:?}");
    assert_not_found(fire(&db, "no-such-incident", &operator(), "assign", None, None).await);
    assert_not_found(incident::get_incident(&db, "no-such-incident").await);
}

#[tokio::test]
async fn an_event_other_than_assign_never_changes_the_assignee() {
    let db = incident_db().await;
    let bob = assignee(&db, "bob").await;
    let carol = assignee(&db, "carol").await;
    let gone = disabled_user(&db, "gone").await;
    let i = open(&db, Level::High, Level::High).await;
    walk(&db, &i.id, &bob.id, &["assign"]).await;

    let started = fire(&db, &i.id, &operator(), "start_work", None, Some(&gone.id)).await.unwrap();
    assert_eq!(started.assignee_id.as_deref(), Some(bob.id.as_str()), "a disabled user is never the assignee");
    let waiting = fire(&db, &i.id, &operator(), "wait", Some("vendor"), Some(&carol.id)).await.unwrap();
    assert_eq!(waiting.assignee_id.as_deref(), Some(bob.id.as_str()), "only `assign` hands an incident over");
    let resumed = fire(&db, &i.id, &operator(), "resume", None, Some("no-such-user")).await;
    assert_eq!(resumed.unwrap().assignee_id.as_deref(), Some(bob.id.as_str()));
}
