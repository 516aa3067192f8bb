//! An incident runs under the process version it started with; each accepted event leaves one audit
//! record, a refused one none; the timeline reads them oldest first.

use super::*;
use time::Duration;
use tollgate_workflows::incident::Priority;
use tollgate_workflows::process::{ProcessDefinition, StateDef, TransitionDef};

/// The shipped incident process with a `triaged` state between `new` and `assigned`.
async fn with_triage(db: &Db) -> ProcessDefinition {
    let mut def = process::get_definition(db, "incident", Some(1)).await.unwrap().definition;
    def.states.insert(1, StateDef { name: "triaged".into(), terminal: false, description: "Sized up.".into() });
    def.transitions.push(TransitionDef {
        event: "triage".into(),
        from: vec!["new".into()],
        to: "triaged".into(),
        roles: vec![Role::Operator],
        system: false,
        guards: Vec::new(),
        effects: Vec::new(),
    });
    let assign = def.transitions.iter_mut().find(|t| t.event == "assign").unwrap();
    assign.from.push("triaged".into());
    def
}

#[tokio::test]
async fn a_running_incident_keeps_the_process_version_it_started_with() {
    let db = incident_db().await;
    let bob = assignee(&db, "bob").await;
    let old = open(&db, Level::High, Level::High).await;
    assert_eq!((old.process.as_str(), old.process_version), ("incident", 1));

    let (v2, created) = process::define(&db, &ctx(), with_triage(&db).await).await.unwrap();
    assert!(created);
    assert_eq!(v2.version, 2);
    let new = open(&db, Level::High, Level::High).await;

    assert_eq!(new.process_version, 2);
    let refused = refusal(fire(&db, &old.id, &operator(), "triage", None, None).await);
    assert!(matches!(refused, TransitionError::UnknownEvent { .. }), "version 1 has no triage: {refused:?}");
    let old = walk(&db, &old.id, &bob.id, &["assign", "start_work", "resolve", "close"]).await;
    assert_eq!((old.state.as_str(), old.process_version), ("closed", 1));

    let triaged = fire(&db, &new.id, &operator(), "triage", None, None).await.unwrap();
    assert_eq!((triaged.state.as_str(), triaged.process_version), ("triaged", 2));
    assert_eq!(triaged.responded_at, Some(START), "leaving `new` by any event is the first response");
    let refused = refusal(fire(&db, &new.id, &operator(), "start_work", None, None).await);
    assert_eq!(refused, TransitionError::NotAllowed { event: "start_work".into(), from: "triaged".into() });
    let assigned = walk(&db, &new.id, &bob.id, &["assign"]).await;
    assert_eq!((assigned.state.as_str(), assigned.process_version), ("assigned", 2));
}

#[tokio::test]
async fn every_accepted_event_writes_exactly_one_audit_record_and_a_refused_one_none() {
    let db = incident_db().await;
    let bob = assignee(&db, "bob").await;
    let i = open(&db, Level::Medium, Level::High).await;
    assert_eq!(audit_count(&db, &i.id).await, 1);
    let steps: [(&str, Option<&str>, Option<&str>, bool); 9] = [
        ("close", Some("done"), None, false),
        ("assign", None, None, false),
        ("assign", None, Some(bob.id.as_str()), true),
        ("wait", Some("why"), None, false),
        ("start_work", None, None, true),
        ("resolve", None, None, false),
        ("resolve", Some("rebooted the host"), None, true),
        ("teleport", Some("x"), None, false),
        ("close", None, None, true),
    ];
    let mut expected = 1;
    for (event, comment, assignee, accepted) in steps {
        let result = fire(&db, &i.id, &operator(), event, comment, assignee).await;
        assert_eq!(result.is_ok(), accepted, "{event}: {result:?}");
        expected += usize::from(accepted);
        assert_eq!(audit_count(&db, &i.id).await, expected, "after {event}");
    }
    let by_viewer = fire(&db, &i.id, &roles(&[Role::Viewer]), "reopen", Some("no"), None).await;
    assert!(by_viewer.is_err());
    assert_eq!(audit_count(&db, &i.id).await, expected);
}

#[tokio::test]
async fn an_event_record_holds_the_move_the_comment_and_who_made_it() {
    let db = incident_db().await;
    let bob = assignee(&db, "bob").await;
    let i = open(&db, Level::Medium, Level::High).await;
    let i = walk(&db, &i.id, &bob.id, &["assign", "start_work"]).await;
    db.clock().advance(Duration::minutes(9));

    fire(&db, &i.id, &operator(), "wait", Some("waiting on the vendor"), None).await.unwrap();

    let record = audit_of(&db, "incident", &i.id).await.remove(0);
    assert_eq!(record.action, "incident.wait");
    assert_eq!((record.actor.as_str(), record.request_id.as_deref()), ("alice", Some("req-1")));
    assert_eq!(record.at, START + Duration::minutes(9));
    let after = record.after.unwrap();
    assert_eq!(
        (after["event"].as_str(), after["from"].as_str(), after["to"].as_str()),
        (Some("wait"), Some("in_progress"), Some("pending"))
    );
    assert_eq!(after["comment"], "waiting on the vendor");
    assert_eq!(after["incident"]["state"], "pending");
    assert_eq!(record.before.unwrap()["state"], "in_progress");
}

#[tokio::test]
async fn the_timeline_lists_the_incident_records_oldest_first() {
    let db = incident_db().await;
    let bob = assignee(&db, "bob").await;
    let i = open_report(&db, keyed("disk", Level::Low, Level::High)).await;
    let unrelated = open(&db, Level::Low, Level::Low).await;
    db.clock().advance(Duration::minutes(1));
    incident::report(&db, &ctx(), &policy(), keyed("disk", Level::Low, Level::High)).await.unwrap();
    db.clock().advance(Duration::minutes(1));
    walk(&db, &i.id, &bob.id, &["assign", "start_work", "resolve"]).await;
    walk(&db, &unrelated.id, &bob.id, &["assign"]).await;

    let timeline = incident::timeline(&db, &i.id, all()).await.unwrap();

    let actions: Vec<&str> = timeline.items.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        ["incident.open", "incident.report", "incident.assign", "incident.start_work", "incident.resolve"]
    );
    assert_eq!(timeline.total, 5);
    assert!(timeline.items.windows(2).all(|w| w[0].seq < w[1].seq && w[0].at <= w[1].at));
    assert!(timeline.items.iter().all(|r| r.entity_id == i.id));
    let second_page = incident::timeline(&db, &i.id, page(2, 2)).await.unwrap();
    assert_eq!(
        second_page.items.iter().map(|r| r.action.as_str()).collect::<Vec<_>>(),
        ["incident.assign", "incident.start_work"]
    );
    assert_not_found(incident::timeline(&db, "no-such-incident", all()).await);
    assert_eq!(incident::get_incident(&db, &i.id).await.unwrap().priority, Priority(3));
}
