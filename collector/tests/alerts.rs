//! From the agent to an incident and back: the real agent reports this machine to a real server whose alert
//! evaluator runs; when the agent stops, the host-down rule fires and opens a P1 incident on the host's CI;
//! when it reports again, the incident is resolved after the quiet period. With an emergency change
//! implementing on the host, the same silence opens nothing and the alert says which change held it back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{agent_token, ci, eventually, free_port, start_server, Agent, Staff};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tollgate_workflows::alert::{self, Condition, EvaluatorTotals, Phase, RuleSpec, Severity};
use tollgate_workflows::change::Operation;
use tollgate_workflows::incident::{self, IncidentPolicy, IncidentQuery};
use tollgate_workflows::testing::fresh_database;
use tollgate_workflows::text::PageRequest;
use tollgate_workflows::{AuditContext, Clock, Db};

const HOST: &str = "hv-e2e";

async fn open_incidents(db: &Db) -> Vec<incident::Incident> {
    let all = incident::list_incidents(db, &IncidentQuery::default(), PageRequest::new(None, None).unwrap()).await;
    all.unwrap().items.into_iter().filter(|i| i.resolved_at.is_none()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_agent_opens_a_p1_incident_on_its_host_that_resolves_when_it_returns_and_none_during_a_change() {
    let database = fresh_database().await;
    let db = Db::connect(database.url(), 4, Clock::system()).await.expect("the store opens");
    tollgate_workflows::process::seed_defaults(&db).await.unwrap();
    tollgate_workflows::approval::seed_defaults(&db).await.unwrap();
    let region = ci(&db, "region", "e2e", None).await;
    let dc = ci(&db, "datacenter", "e2e-dc", Some(&region)).await;
    let cluster = ci(&db, "cluster", "e2e-cl", Some(&dc)).await;
    let host = ci(&db, "host", HOST, Some(&cluster)).await;
    // Silent for four intervals of a second: down (the agent reports every 300 ms, so a busy machine has
    // room). Reporting again for a second: recovered.
    let silent = Condition::Silent { intervals: 4, interval_secs: 1 };
    let scope = BTreeMap::from([("host".to_owned(), HOST.to_owned())]);
    let rule =
        RuleSpec::new("host down", "", "system", "uptime", scope, silent, 0, 1, Severity::Critical, true).unwrap();
    alert::create_rule(&db, &AuditContext::system("test"), rule).await.unwrap();

    let token = agent_token(&db, "hv-e2e-agent").await;
    let port = free_port();
    let (_stop, _server) = start_server(&db, port).await;
    let (_stop_evaluator, stopped) = tokio::sync::watch::channel(false);
    let policy = Arc::new(IncidentPolicy::default());
    let totals = Arc::new(EvaluatorTotals::default());
    let interval = Duration::from_millis(200);
    tollgate_api::background::spawn_alert_evaluator(db.clone(), policy, totals.clone(), interval, stopped);
    let queue = tempfile::tempdir().unwrap();

    let agent = Agent::start(port, HOST, queue.path(), &token);
    agent.wait("ten batches sent", Duration::from_secs(20), |a| a.count("sent batch") >= 10).await;
    assert!(open_incidents(&db).await.is_empty(), "an agent reporting every 300 ms is not silent");
    assert!(totals.evaluations.load(std::sync::atomic::Ordering::Relaxed) > 0, "the evaluator judged its series");

    drop(agent);
    let opened = eventually("the host-down incident", Duration::from_secs(20), || async {
        open_incidents(&db).await.into_iter().next()
    })
    .await;
    assert_eq!(opened.priority.0, 1, "critical: high impact, high urgency");
    assert_eq!(opened.ci_ids, std::slice::from_ref(&host));
    assert!(opened.title.starts_with("host down: hv-e2e"), "{}", opened.title);

    let agent = Agent::start(port, HOST, queue.path(), &token);
    let resolved = eventually("the incident resolved", Duration::from_secs(20), || async {
        let i = incident::get_incident(&db, &opened.id).await.unwrap();
        (i.state == "resolved").then_some(i)
    })
    .await;
    assert!(resolved.resolved_at.is_some());
    assert!(agent.count("sent batch") >= 1);

    let staff = Staff::new(&db).await;
    let drain = vec![Operation::Evacuate { host_id: host.clone() }];
    let change_id = staff.implementing(&db, "drain hv-e2e", drain).await;
    drop(agent);
    let held = eventually("the alert held back by the change", Duration::from_secs(20), || async {
        alert::list_alerts(&db).await.unwrap().into_iter().find(|a| a.state == Phase::Firing)
    })
    .await;
    assert_eq!(held.suppressed_by_change.as_deref(), Some(change_id.as_str()));
    assert_eq!(held.incident_id, None);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(open_incidents(&db).await.is_empty(), "nothing opens while the change is implementing on the host");
    let all = incident::list_incidents(&db, &IncidentQuery::default(), PageRequest::new(None, None).unwrap()).await;
    assert_eq!(all.unwrap().total, 1, "only the first silence opened an incident");
}
