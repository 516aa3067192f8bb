//! Priority from the impact × urgency matrix, SLA due instants, the pause while pending, and breaches:
//! the first escalates once, later ones only mark.

use super::*;
use time::Duration;
use tollgate_workflows::audit::AuditRecord;
use tollgate_workflows::incident::Priority;

fn actions(records: &[AuditRecord]) -> Vec<&str> {
    records.iter().map(|r| r.action.as_str()).collect()
}

#[tokio::test]
async fn the_default_matrix_gives_a_report_its_priority() {
    let db = incident_db().await;
    let (h, m, l) = (Level::High, Level::Medium, Level::Low);
    let cases = [(h, h, 1), (h, m, 2), (h, l, 3), (m, h, 2), (m, m, 3), (m, l, 4), (l, h, 3), (l, m, 4), (l, l, 5)];
    for (impact, urgency, p) in cases {
        let i = open(&db, impact, urgency).await;
        assert_eq!(i.priority, Priority(p), "{impact:?} impact × {urgency:?} urgency");
        assert_eq!((i.impact, i.urgency), (impact, urgency));
    }
}

#[tokio::test]
async fn the_sla_targets_of_the_priority_run_from_the_moment_of_the_report() {
    let db = incident_db().await;
    db.clock().advance(Duration::minutes(7));
    let reported = START + Duration::minutes(7);

    let p2 = open(&db, Level::High, Level::Medium).await;

    assert_eq!(p2.priority, Priority(2));
    assert_eq!(p2.created_at, reported);
    assert_eq!(p2.sla.response_due_at, reported + Duration::minutes(30));
    assert_eq!(p2.sla.resolution_due_at, reported + Duration::hours(8));
    assert!(!p2.sla.paused && !p2.sla.response_breached && !p2.sla.resolution_breached);
    let p5 = open(&db, Level::Low, Level::Low).await;
    assert_eq!(p5.sla.response_due_at, reported + Duration::hours(24));
    assert_eq!(p5.sla.resolution_due_at, reported + Duration::days(7));
}

#[tokio::test]
async fn the_sla_clock_stands_still_while_the_incident_is_pending() {
    let db = incident_db().await;
    let bob = assignee(&db, "bob").await;
    let i = open(&db, Level::High, Level::Medium).await;
    let i = walk(&db, &i.id, &bob.id, &["assign", "start_work"]).await;
    assert!(!i.sla.paused);

    let waiting = fire(&db, &i.id, &operator(), "wait", Some("vendor is shipping a disk"), None).await.unwrap();
    assert!(waiting.sla.paused);
    db.clock().advance(Duration::hours(2));
    let still = incident::get_incident(&db, &i.id).await.unwrap();
    assert!(still.sla.paused, "still pending two hours later");
    assert_eq!(
        (still.sla.response_due_at, still.sla.resolution_due_at),
        (i.sla.response_due_at, i.sla.resolution_due_at)
    );
    let resumed = fire(&db, &i.id, &operator(), "resume", None, None).await.unwrap();

    assert!(!resumed.sla.paused);
    assert_eq!(resumed.sla.response_due_at, i.sla.response_due_at + Duration::hours(2));
    assert_eq!(resumed.sla.resolution_due_at, i.sla.resolution_due_at + Duration::hours(2));
    assert_eq!(resumed.sla.resolution_due_at, START + Duration::hours(10));
}

#[tokio::test]
async fn a_missed_response_target_is_marked_and_escalates_the_incident_once() {
    let db = incident_db().await;
    let i = open(&db, Level::Medium, Level::Medium).await;
    assert_eq!(i.priority, Priority(3));
    db.clock().advance(Duration::hours(4));
    assert!(incident::sla_sweep(&db).await.unwrap().is_empty(), "exactly at the due instant is not yet late");

    db.clock().advance(Duration::minutes(1));
    let touched = incident::sla_sweep(&db).await.unwrap();

    assert_eq!(touched.len(), 1);
    let after = incident::get_incident(&db, &i.id).await.unwrap();
    assert_eq!(touched[0], after);
    assert!(after.sla.response_breached && !after.sla.resolution_breached);
    assert!(after.escalated);
    assert_eq!(after.priority, Priority(2), "escalation raises the priority one step");
    let records = audit_of(&db, "incident", &i.id).await;
    assert_eq!(actions(&records), ["incident.escalate", "incident.open"]);
    assert_eq!(records[0].actor, "system");
    assert!(incident::sla_sweep(&db).await.unwrap().is_empty(), "a breach is marked once");
    assert_eq!(audit_count(&db, &i.id).await, 2);
}

#[tokio::test]
async fn a_later_resolution_breach_is_marked_without_raising_the_priority_again() {
    let db = incident_db().await;
    let bob = assignee(&db, "bob").await;
    let i = open(&db, Level::Medium, Level::Medium).await;
    db.clock().advance(Duration::hours(5));
    incident::sla_sweep(&db).await.unwrap();
    walk(&db, &i.id, &bob.id, &["assign", "start_work"]).await;

    db.clock().advance(Duration::hours(20));
    let touched = incident::sla_sweep(&db).await.unwrap();

    assert_eq!(touched.len(), 1);
    let after = incident::get_incident(&db, &i.id).await.unwrap();
    assert!(after.sla.response_breached && after.sla.resolution_breached);
    assert_eq!(after.priority, Priority(2), "escalated once, from P3, and never again");
    let records = audit_of(&db, "incident", &i.id).await;
    assert_eq!(
        actions(&records),
        ["incident.breach", "incident.start_work", "incident.assign", "incident.escalate", "incident.open"]
    );
    db.clock().advance(Duration::days(30));
    assert!(incident::sla_sweep(&db).await.unwrap().is_empty());
    assert_eq!(incident::get_incident(&db, &i.id).await.unwrap().priority, Priority(2));
}

#[tokio::test]
async fn a_response_and_a_resolution_missed_together_escalate_once() {
    let db = incident_db().await;
    let i = open(&db, Level::Low, Level::Medium).await;
    assert_eq!(i.priority, Priority(4));
    db.clock().advance(Duration::days(4));

    incident::sla_sweep(&db).await.unwrap();

    let after = incident::get_incident(&db, &i.id).await.unwrap();
    assert!(after.sla.response_breached && after.sla.resolution_breached);
    assert_eq!(after.priority, Priority(3));
    assert_eq!(actions(&audit_of(&db, "incident", &i.id).await), ["incident.escalate", "incident.open"]);
}

#[tokio::test]
async fn a_pending_or_resolved_incident_is_never_marked_as_breached() {
    let db = incident_db().await;
    let bob = assignee(&db, "bob").await;
    let pending = open(&db, Level::High, Level::High).await;
    walk(&db, &pending.id, &bob.id, &["assign", "start_work", "wait"]).await;
    let resolved = open(&db, Level::High, Level::High).await;
    walk(&db, &resolved.id, &bob.id, &["assign", "resolve"]).await;
    let closed = open(&db, Level::High, Level::High).await;
    walk(&db, &closed.id, &bob.id, &["assign", "resolve", "close"]).await;
    let running = open(&db, Level::High, Level::High).await;

    db.clock().advance(Duration::days(10));
    let touched = incident::sla_sweep(&db).await.unwrap();

    assert_eq!(touched.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(), [running.id.as_str()]);
    for i in [&pending, &resolved, &closed] {
        let now = incident::get_incident(&db, &i.id).await.unwrap();
        assert!(!now.sla.response_breached && !now.sla.resolution_breached, "{} ({})", now.reference, now.state);
        assert!(!now.escalated);
        assert_eq!(now.priority, Priority(1));
    }
}

#[tokio::test]
async fn time_spent_resolved_before_a_reopen_does_not_count_against_the_targets() {
    let db = incident_db().await;
    let bob = assignee(&db, "bob").await;
    let i = open(&db, Level::High, Level::Medium).await;
    let i = walk(&db, &i.id, &bob.id, &["assign"]).await;
    db.clock().advance(Duration::minutes(10));
    fire(&db, &i.id, &operator(), "resolve", Some("restarted the service"), None).await.unwrap();

    db.clock().advance(Duration::hours(9));
    let reopened = fire(&db, &i.id, &operator(), "reopen", Some("it fell over again"), None).await.unwrap();

    assert_eq!(reopened.sla.resolution_due_at, i.sla.resolution_due_at + Duration::hours(9));
    assert!(incident::sla_sweep(&db).await.unwrap().is_empty(), "nine hours resolved are not nine hours late");
    assert_eq!(incident::get_incident(&db, &i.id).await.unwrap().priority, Priority(2));
}
