//! Repeated reports with a dedup key fold into the open incident; CIs must exist; edits recompute the
//! priority and refuse a stale revision.

use super::*;
use time::Duration;
use tollgate_workflows::incident::{IncidentUpdate, Priority};

async fn absorbed(db: &Db, r: IncidentReport) -> Incident {
    match incident::report(db, &ctx(), &policy(), r).await.unwrap() {
        Reported::Updated(i) => i,
        Reported::Opened(i) => panic!("expected an open incident to absorb the report, {} was opened", i.reference),
    }
}

fn sorted(mut ids: Vec<String>) -> Vec<String> {
    ids.sort();
    ids
}

fn update_of(i: &Incident, impact: Level, urgency: Level) -> IncidentUpdate {
    IncidentUpdate {
        title: name(&i.title),
        description: Description::parse("description", &i.description).unwrap(),
        impact,
        urgency,
        major: i.major,
        ci_ids: i.ci_ids.clone(),
    }
}

#[tokio::test]
async fn a_second_report_with_the_key_of_an_open_incident_updates_it() {
    let db = incident_db().await;
    let f = fleet(&db).await;
    let first = open_report(
        &db,
        IncidentReport { ci_ids: vec![f.vm.id.clone()], ..keyed("disk-full", Level::Low, Level::Low) },
    )
    .await;
    assert_eq!((first.priority, first.report_count), (Priority(5), 1));
    db.clock().advance(Duration::minutes(10));

    let second = absorbed(
        &db,
        IncidentReport {
            ci_ids: vec![f.host.id.clone(), f.vm.id.clone()],
            ..keyed("disk-full", Level::High, Level::Medium)
        },
    )
    .await;

    assert_eq!(second.id, first.id);
    assert_eq!(second.reference, first.reference);
    assert_eq!(second.report_count, 2);
    assert_eq!((second.impact, second.urgency, second.priority), (Level::High, Level::Medium, Priority(2)));
    assert_eq!(second.sla.response_due_at, START + Duration::minutes(30), "targets run from the first report");
    assert_eq!(second.sla.resolution_due_at, START + Duration::hours(8));
    assert_eq!(second.ci_ids, sorted(vec![f.host.id.clone(), f.vm.id.clone()]));
    assert_eq!(second.last_reported_at, START + Duration::minutes(10));
    assert_eq!(second.created_at, START);
    assert_eq!(incident::get_incident(&db, &first.id).await.unwrap(), second);
    let actions: Vec<String> = audit_of(&db, "incident", &first.id).await.into_iter().map(|r| r.action).collect();
    assert_eq!(actions, ["incident.report", "incident.open"]);
}

#[tokio::test]
async fn a_repeated_report_never_makes_an_incident_less_severe() {
    let db = incident_db().await;
    let first = open_report(&db, keyed("cpu", Level::High, Level::Low)).await;
    assert_eq!(first.priority, Priority(3));

    let second = absorbed(&db, keyed("cpu", Level::Low, Level::High)).await;
    assert_eq!((second.impact, second.urgency, second.priority), (Level::High, Level::High, Priority(1)));
    assert_eq!(second.sla.response_due_at, START + Duration::minutes(15));
    let third = absorbed(&db, IncidentReport { major: true, ..keyed("cpu", Level::Low, Level::Low) }).await;
    assert_eq!((third.impact, third.urgency, third.priority), (Level::High, Level::High, Priority(1)));
    assert_eq!(third.report_count, 3);
    assert!(third.major);
    let fourth = absorbed(&db, keyed("cpu", Level::Low, Level::Low)).await;
    assert!(fourth.major, "a later report does not take back that it is major");
}

#[tokio::test]
async fn once_the_incident_is_resolved_the_same_key_opens_a_new_incident() {
    let db = incident_db().await;
    let bob = assignee(&db, "bob").await;
    let first = open_report(&db, keyed("link-down", Level::Medium, Level::Medium)).await;
    let other = open_report(&db, keyed("other-alert", Level::Medium, Level::Medium)).await;
    walk(&db, &first.id, &bob.id, &["assign", "start_work", "wait"]).await;
    assert_eq!(absorbed(&db, keyed("link-down", Level::Medium, Level::Medium)).await.id, first.id, "pending is open");
    walk(&db, &first.id, &bob.id, &["resume", "resolve"]).await;

    let again = open_report(&db, keyed("link-down", Level::Medium, Level::Medium)).await;

    assert_ne!(again.id, first.id);
    assert_ne!(again.id, other.id);
    assert_eq!((again.report_count, again.state.as_str()), (1, "new"));
    assert_eq!(again.reference, "INC-000003");
    assert_eq!(absorbed(&db, keyed("link-down", Level::Low, Level::Low)).await.id, again.id);
    assert_eq!(incident::get_incident(&db, &first.id).await.unwrap().report_count, 2);
}

#[tokio::test]
async fn a_report_without_a_key_always_opens_a_new_incident() {
    let db = incident_db().await;
    let a = open(&db, Level::High, Level::High).await;
    let b = open(&db, Level::High, Level::High).await;
    assert_ne!(a.id, b.id);
    assert_eq!((a.reference.as_str(), b.reference.as_str()), ("INC-000001", "INC-000002"));
}

#[tokio::test]
async fn a_report_or_an_edit_naming_an_unknown_ci_is_invalid_and_changes_nothing() {
    let db = incident_db().await;
    let f = fleet(&db).await;
    let bad =
        IncidentReport { ci_ids: vec![f.vm.id.clone(), "no-such-ci".into()], ..report("x", Level::Low, Level::Low) };
    assert_invalid(incident::report(&db, &ctx(), &policy(), bad).await, "ci_ids");
    let page = incident::list_incidents(&db, &Default::default(), all()).await.unwrap();
    assert_eq!(page.total, 0, "nothing was opened");

    let i =
        open_report(&db, IncidentReport { ci_ids: vec![f.vm.id.clone()], ..keyed("k", Level::Low, Level::Low) }).await;
    let bad = IncidentReport { ci_ids: vec!["no-such-ci".into()], ..keyed("k", Level::High, Level::High) };
    assert_invalid(incident::report(&db, &ctx(), &policy(), bad).await, "ci_ids");
    let mut edit = update_of(&i, Level::Low, Level::Low);
    edit.ci_ids.push("no-such-ci".into());
    assert_invalid(incident::update_incident(&db, &ctx(), &policy(), &i.id, edit, Some(i.revision)).await, "ci_ids");
    assert_eq!(incident::get_incident(&db, &i.id).await.unwrap(), i);
}

#[tokio::test]
async fn an_edit_recomputes_the_priority_and_its_targets_and_a_stale_revision_is_a_conflict() {
    let db = incident_db().await;
    let f = fleet(&db).await;
    let i = open(&db, Level::Low, Level::Low).await;
    db.clock().advance(Duration::minutes(3));

    let mut edit = update_of(&i, Level::High, Level::High);
    edit.title = name("hv-001 is down for everyone");
    edit.ci_ids = vec![f.host.id.clone()];
    let edited = incident::update_incident(&db, &ctx(), &policy(), &i.id, edit, Some(i.revision)).await.unwrap();

    assert_eq!(edited.priority, Priority(1));
    assert_eq!(edited.title, "hv-001 is down for everyone");
    assert_eq!(edited.ci_ids, vec![f.host.id.clone()]);
    assert_eq!(edited.sla.response_due_at, START + Duration::minutes(15));
    assert_eq!(edited.sla.resolution_due_at, START + Duration::hours(4));
    assert_eq!(edited.revision, i.revision + 1);
    assert_eq!(edited.updated_at, START + Duration::minutes(3));
    let stale = incident::update_incident(
        &db,
        &ctx(),
        &policy(),
        &i.id,
        update_of(&i, Level::Low, Level::Low),
        Some(i.revision),
    )
    .await;
    assert_conflict(stale);
    assert_eq!(incident::get_incident(&db, &i.id).await.unwrap(), edited);
    assert_not_found(
        incident::update_incident(
            &db,
            &ctx(),
            &policy(),
            "no-such-incident",
            update_of(&i, Level::Low, Level::Low),
            None,
        )
        .await,
    );
}

#[tokio::test]
async fn an_edit_of_an_escalated_incident_keeps_the_escalation_step() {
    let db = incident_db().await;
    let i = open(&db, Level::Medium, Level::Medium).await;
    db.clock().advance(Duration::hours(5));
    incident::sla_sweep(&db).await.unwrap();
    let escalated = incident::get_incident(&db, &i.id).await.unwrap();
    assert_eq!(escalated.priority, Priority(2));

    let edited = incident::update_incident(
        &db,
        &ctx(),
        &policy(),
        &i.id,
        update_of(&escalated, Level::Low, Level::Low),
        Some(escalated.revision),
    )
    .await
    .unwrap();

    assert_eq!(edited.priority, Priority(4), "P5 from the matrix, one step up for the escalation");
    assert!(edited.escalated && edited.sla.response_breached);
}
