//! From the agent to an incident and back: the real agent reports this machine to a real server whose alert
//! evaluator runs; when the agent stops, the host-down rule fires and opens a P1 incident on the host's CI;
//! when it reports again, the incident is resolved after the quiet period. With an emergency change
//! implementing on the host, the same silence opens nothing and the alert says which change held it back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{agent_token, eventually, free_port, start_server, Agent};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tollgate_workflows::accounts::{self, NewUser, Password, Principal, Role, RoleSet, Username};
use tollgate_workflows::alert::{self, Condition, EvaluatorTotals, Phase, RuleSpec, Severity};
use tollgate_workflows::approval::{self, Decision};
use tollgate_workflows::change::{self, ChangeEvent, ChangeKind, ChangeSpec, Operation};
use tollgate_workflows::cmdb::{self, CiDraft, CiSpec};
use tollgate_workflows::freeze::Window;
use tollgate_workflows::incident::{self, IncidentPolicy, IncidentQuery};
use tollgate_workflows::testing::fresh_database;
use tollgate_workflows::text::{Description, Name, PageRequest};
use tollgate_workflows::{AuditContext, Clock, Db};

const HOST: &str = "hv-e2e";

async fn ci(db: &Db, kind: &str, name: &str, parent: Option<&str>) -> String {
    let mut draft =
        CiDraft { kind: kind.into(), name: name.into(), parent_id: parent.map(str::to_owned), ..CiDraft::default() };
    if kind == "host" {
        draft.hypervisor = Some("kvm".into());
        (draft.vcpus, draft.memory_mib, draft.disk_gib) = (Some(8), Some(16_384), Some(100));
    }
    let spec = CiSpec::try_from(draft).unwrap();
    cmdb::create_ci(db, &AuditContext::system("test"), spec).await.unwrap().id
}

async fn person(db: &Db, username: &str, roles: &[Role]) -> Principal {
    let user = NewUser {
        username: Username::parse(username).unwrap(),
        display_name: Name::parse("n", username).unwrap(),
        email: None,
        password: Password::parse("p", "a long enough password").unwrap(),
        roles: RoleSet::new(roles.iter().copied()),
    };
    let u = accounts::create_user(db, &AuditContext::system("test"), user).await.unwrap();
    Principal { user_id: u.id, username: u.username, roles: RoleSet::new(roles.iter().copied()), token_id: "t".into() }
}

fn ctx_of(p: &Principal) -> AuditContext {
    AuditContext { actor_id: Some(p.user_id.clone()), actor: p.username.clone(), on_behalf_of: None, request_id: None }
}

/// An emergency change on `host_id`, approved by the emergency CAB and started: implementing from an hour ago
/// to an hour from now.
async fn implementing_change_on(db: &Db, host_id: &str) -> String {
    let operator = person(db, "otto", &[Role::Operator]).await;
    let cab = person(db, "edna", &[Role::Approver]).await;
    let groups = accounts::list_groups(db, Some("emergency-cab"), PageRequest::new(None, None).unwrap()).await.unwrap();
    accounts::set_membership(db, &AuditContext::system("test"), &groups.items[0].id, &cab.user_id, true).await.unwrap();
    let now = time::OffsetDateTime::now_utc();
    let spec = ChangeSpec {
        kind: ChangeKind::Emergency,
        title: Name::parse("title", "drain hv-e2e").unwrap(),
        description: Description::parse("description", "").unwrap(),
        ci_ids: Vec::new(),
        operations: vec![Operation::Evacuate { host_id: host_id.to_owned() }],
        window: Window::new(now - time::Duration::hours(1), now + time::Duration::hours(1)).unwrap(),
    };
    let c = change::create_change(db, &ctx_of(&operator), &operator, spec).await.unwrap();
    for event in ["submit", "start"] {
        if event == "start" {
            approval::vote(db, &ctx_of(&cab), &c.id, &cab, Decision::Approve, None).await.unwrap();
        }
        let e = ChangeEvent { event: event.to_owned(), ..ChangeEvent::default() };
        change::fire_change(db, &ctx_of(&operator), &c.id, &change::person(&operator.roles), e).await.unwrap();
    }
    assert_eq!(change::get_change(db, &c.id).await.unwrap().state, "implementing");
    c.id
}

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

    let change_id = implementing_change_on(&db, &host).await;
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
