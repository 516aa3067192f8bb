//! Alert rules evaluated against written points: an alert waits out its rule's `for`, opens one incident
//! with the rule's priority on the series' CI, keeps firing between the thresholds, and resolves the incident
//! after its quiet period; a host-down alert holds back its VMs' alerts; an implementing change holds back
//! alerts on its CIs, and an alert that outlives the change opens an incident linked to it.

use crate::change_support::*;
use crate::support::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use time::Duration;
use tollgate_workflows::alert::{self, Alert, Condition, Evaluator, EvaluatorTotals, Phase, RuleSpec, Severity};
use tollgate_workflows::change::ChangeKind;
use tollgate_workflows::incident::{self, Incident, IncidentPolicy, IncidentQuery, LinkKind};
use tollgate_workflows::metrics::line::{parse, Precision};
use tollgate_workflows::metrics::store::MetricStore;
use tollgate_workflows::Db;

fn rule(
    name_: &str,
    measurement: &str,
    field: &str,
    condition: Condition,
    for_secs: u64,
    quiet_secs: u64,
    severity: Severity,
) -> RuleSpec {
    RuleSpec::new(name_, "", measurement, field, BTreeMap::new(), condition, for_secs, quiet_secs, severity, true)
        .unwrap()
}

fn evaluator(db: &Db) -> Evaluator {
    Evaluator::new(db.clone(), Arc::new(IncidentPolicy::default()), Arc::new(EvaluatorTotals::default()))
}

/// Writes `lines` (no timestamps) at the store's clock.
async fn put(db: &Db, store: &MetricStore, lines: &str) {
    let points = parse(lines.as_bytes(), Precision::Ns).unwrap();
    store.write(&points, db.clock().now_nanos()).await.unwrap();
}

async fn incidents(db: &Db) -> Vec<Incident> {
    incident::list_incidents(db, &IncidentQuery::default(), all()).await.unwrap().items
}

async fn alerts(db: &Db) -> Vec<Alert> {
    alert::list_alerts(db).await.unwrap()
}

fn secs(n: i64) -> Duration {
    Duration::seconds(n)
}

#[tokio::test]
async fn an_alert_waits_out_for_opens_one_incident_on_its_ci_and_resolves_it_after_the_quiet_period() {
    let (db, f) = seeded().await;
    let store = MetricStore::start(Db::clone(&db));
    let above = Condition::Above { threshold: 90.0, recovery: 70.0 };
    alert::create_rule(&db, &ctx(), rule("cpu hot", "cpu", "usage_user", above, 60, 120, Severity::Major))
        .await
        .unwrap();
    let mut e = evaluator(&db);

    put(&db, &store, "cpu,host=hv-001 usage_user=95").await;
    e.round().await.unwrap();
    assert_eq!(alerts(&db).await[0].state, Phase::Pending);
    db.clock().advance(secs(30));
    put(&db, &store, "cpu,host=hv-001 usage_user=96").await;
    e.round().await.unwrap();
    assert!(incidents(&db).await.is_empty(), "not before the rule's `for` has passed");

    db.clock().advance(secs(30));
    put(&db, &store, "cpu,host=hv-001 usage_user=97").await;
    let round = e.round().await.unwrap();
    let opened = incidents(&db).await;
    assert_eq!(opened.len(), 1);
    assert_eq!(round.reported, [opened[0].id.clone()]);
    let inc = &opened[0];
    assert_eq!((inc.priority.0, inc.state.as_str()), (2, "new"), "major: high impact, medium urgency");
    assert_eq!(inc.ci_ids, std::slice::from_ref(&f.host.id), "linked to the host the series names");
    assert!(inc.title.starts_with("cpu hot: hv-001"), "{}", inc.title);
    let firing = &alerts(&db).await[0];
    assert_eq!((firing.state, firing.incident_id.as_deref()), (Phase::Firing, Some(inc.id.as_str())));
    assert_eq!(inc.dedup_key.as_deref(), Some(format!("alert:{}", firing.fingerprint).as_str()));

    for (value, state) in
        [(80.0, Phase::Firing), (60.0, Phase::Resolving), (85.0, Phase::Firing), (50.0, Phase::Resolving)]
    {
        db.clock().advance(secs(10));
        put(&db, &store, &format!("cpu,host=hv-001 usage_user={value}")).await;
        e.round().await.unwrap();
        assert_eq!(alerts(&db).await[0].state, state, "at {value}: hysteresis between 70 and 90");
    }
    assert_eq!(incidents(&db).await.len(), 1, "one incident however long it fires");
    db.clock().advance(secs(119));
    put(&db, &store, "cpu,host=hv-001 usage_user=50").await;
    e.round().await.unwrap();
    assert_eq!(incident::get_incident(&db, &inc.id).await.unwrap().state, "new", "the quiet period is not over");
    db.clock().advance(secs(1));
    put(&db, &store, "cpu,host=hv-001 usage_user=50").await;
    let round = e.round().await.unwrap();
    assert_eq!(round.resolved, std::slice::from_ref(&inc.id));
    let resolved = incident::get_incident(&db, &inc.id).await.unwrap();
    assert_eq!(resolved.state, "resolved");
    assert!(resolved.resolved_at.is_some());
    assert!(alerts(&db).await.is_empty());
    let actions: Vec<String> =
        audit_of(&db, "alert", &firing.fingerprint).await.into_iter().map(|r| r.action).collect();
    assert!(actions.contains(&"alert.fire".to_owned()) && actions.contains(&"alert.resolve".to_owned()), "{actions:?}");
}

#[tokio::test]
async fn a_host_that_goes_silent_opens_one_incident_and_holds_back_its_vms_alerts() {
    let (db, f) = seeded().await;
    let store = MetricStore::start(Db::clone(&db));
    let silent = Condition::Silent { intervals: 3, interval_secs: 10 };
    alert::create_rule(&db, &ctx(), rule("host down", "system", "uptime", silent, 0, 0, Severity::Critical))
        .await
        .unwrap();
    alert::create_rule(&db, &ctx(), rule("vm down", "vm_cpu", "usage", silent, 0, 0, Severity::Major)).await.unwrap();
    let mut e = evaluator(&db);
    let report = "system,host=hv-001 uptime=100\nvm_cpu,host=hv-001,vm=billing-db-1 usage=20";
    put(&db, &store, report).await;
    e.round().await.unwrap();
    db.clock().advance(secs(30));
    e.round().await.unwrap();
    assert!(alerts(&db).await.is_empty(), "three intervals of silence are allowed");

    db.clock().advance(secs(1));
    let round = e.round().await.unwrap();
    let opened = incidents(&db).await;
    assert_eq!(opened.len(), 1, "the host's incident only: {opened:?}");
    assert_eq!((opened[0].priority.0, opened[0].ci_ids.clone()), (1, vec![f.host.id.clone()]));
    let all = alerts(&db).await;
    let host = all.iter().find(|a| a.rule_name == "host down").unwrap();
    let vm = all.iter().find(|a| a.rule_name == "vm down").unwrap();
    assert_eq!(vm.state, Phase::Firing);
    assert_eq!(vm.suppressed_by_alert.as_deref(), Some(host.fingerprint.as_str()));
    assert_eq!((vm.incident_id.as_deref(), vm.ci_id.as_deref()), (None, Some(f.vm.id.as_str())));
    assert_eq!(round.suppressed, std::slice::from_ref(&vm.fingerprint));
    db.clock().advance(secs(10));
    e.round().await.unwrap();
    assert_eq!(incidents(&db).await.len(), 1, "still held back a round later");

    put(&db, &store, report).await;
    let round = e.round().await.unwrap();
    assert_eq!(round.resolved, [opened[0].id.clone()], "reporting again resolves the host's incident");
    assert!(alerts(&db).await.is_empty());
}

#[tokio::test]
async fn an_implementing_change_holds_back_alerts_on_its_cis_and_an_alert_that_outlives_it_opens_a_linked_incident() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let ecab = approver(&db, "edna", "emergency-cab").await;
    let spec = plan(ChangeKind::Emergency, "drain hv-001", vec![evacuate(&f.host.id)], hours(-1, 24));
    let c = request(&db, &s.operator, spec).await;
    walk(&db, &c.id, &s.operator, &["submit"]).await;
    approve(&db, &c.id, &ecab).await.unwrap();
    assert_eq!(walk(&db, &c.id, &s.operator, &["start"]).await.state, "implementing");

    let store = MetricStore::start(Db::clone(&db));
    let above = Condition::Above { threshold: 90.0, recovery: 70.0 };
    alert::create_rule(&db, &ctx(), rule("cpu hot", "cpu", "usage_user", above, 0, 0, Severity::Critical))
        .await
        .unwrap();
    let mut e = evaluator(&db);
    // The host itself, and a VM it contains.
    put(&db, &store, "cpu,host=hv-001 usage_user=99\ncpu,host=hv-001,vm=billing-db-1 usage_user=99").await;
    let round = e.round().await.unwrap();
    assert!(incidents(&db).await.is_empty(), "nothing opens while the change is implementing");
    assert_eq!(round.suppressed.len(), 2);
    let held = alerts(&db).await;
    assert!(
        held.iter().all(|a| a.state == Phase::Firing && a.suppressed_by_change.as_deref() == Some(c.id.as_str())),
        "{held:?}"
    );
    let record = &audit_of(&db, "alert", &held[0].fingerprint).await[0];
    assert_eq!(record.action, "alert.suppress");
    assert_eq!(record.after.as_ref().unwrap()["suppressed_by_change"], c.id.as_str(), "the record names the change");

    fire_system(&db, &c.id, "verify").await.unwrap();
    db.clock().advance(secs(10));
    put(&db, &store, "cpu,host=hv-001 usage_user=99\ncpu,host=hv-001,vm=billing-db-1 usage_user=99").await;
    e.round().await.unwrap();
    let opened = incidents(&db).await;
    assert_eq!(opened.len(), 2, "the change is no longer implementing and the trouble outlived it");
    for inc in &opened {
        assert_eq!(
            inc.changes.iter().map(|l| (l.change_id.as_str(), l.kind)).collect::<Vec<_>>(),
            [(c.id.as_str(), LinkKind::CausedBy)]
        );
    }
}

#[tokio::test]
async fn two_evaluators_over_one_store_open_one_incident() {
    let (db, _f) = seeded().await;
    let store = MetricStore::start(Db::clone(&db));
    let above = Condition::Above { threshold: 1.0, recovery: 0.0 };
    alert::create_rule(&db, &ctx(), rule("busy", "cpu", "usage_user", above, 0, 0, Severity::Warning)).await.unwrap();
    let (mut a, mut b) = (evaluator(&db), evaluator(&db));
    put(&db, &store, "cpu,host=hv-001 usage_user=5").await;
    let (ra, rb) = tokio::join!(a.round(), b.round());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let opened = incidents(&db).await;
    assert_eq!(opened.len(), 1, "{ra:?} {rb:?}");
    assert_eq!(opened[0].priority.0, 5, "warning: low impact, low urgency");
    assert!(ra.reported.len() + rb.reported.len() >= 1);
    assert_eq!(opened[0].report_count, 1, "one report, not one per server");
}

#[tokio::test]
async fn a_rule_disabled_or_rescoped_drops_its_alerts_and_leaves_their_incidents_to_people() {
    let (db, _f) = seeded().await;
    let store = MetricStore::start(Db::clone(&db));
    let above = Condition::Above { threshold: 1.0, recovery: 0.0 };
    let r =
        alert::create_rule(&db, &ctx(), rule("busy", "cpu", "usage_user", above, 0, 0, Severity::Minor)).await.unwrap();
    let mut e = evaluator(&db);
    put(&db, &store, "cpu,host=hv-001 usage_user=5").await;
    e.round().await.unwrap();
    assert_eq!(alerts(&db).await.len(), 1);
    let mut off = rule("busy", "cpu", "usage_user", above, 0, 0, Severity::Minor);
    off.enabled = false;
    alert::update_rule(&db, &ctx(), &r.id, off, None).await.unwrap();
    e.round().await.unwrap();
    assert!(alerts(&db).await.is_empty());
    assert_eq!(incidents(&db).await[0].state, "new", "the incident stays with people");
}
