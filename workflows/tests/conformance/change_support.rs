//! Builders for change and approval tests: a seeded store, the people who run the process, plans, and
//! assertions on refused transitions.

use crate::support::*;
use std::fmt::Debug;
use time::Duration;
use tollgate_workflows::accounts::{self, Principal, Role, RoleSet};
use tollgate_workflows::approval::{self, ApprovalPolicy, ApprovalStatus, Decision, Rule, Stage};
use tollgate_workflows::change::{self, Change, ChangeEvent, ChangeKind, ChangeSpec, Operation, RiskLevel};
use tollgate_workflows::cmdb::{Ci, CiDraft, CiSpec};
use tollgate_workflows::freeze::Window;
use tollgate_workflows::process::{Actor, Guard, TransitionError};
use tollgate_workflows::text::Description;
use tollgate_workflows::{AuditContext, Db, StoreError, StoreResult};

/// A store with the shipped processes, approval policies and approver groups, and a [`Fleet`].
pub async fn seeded() -> (TestDb, Fleet) {
    let db = fresh_db().await;
    tollgate_workflows::process::seed_defaults(&db).await.unwrap();
    tollgate_workflows::approval::seed_defaults(&db).await.unwrap();
    let f = fleet(&db).await;
    (db, f)
}

/// A user with `roles` as the principal a signed-in request would carry.
pub async fn person(db: &Db, username: &str, roles: &[Role]) -> Principal {
    let u = user(db, username, roles).await;
    Principal { user_id: u.id, username: u.username, roles: RoleSet::new(roles.iter().copied()), token_id: "t".into() }
}

/// The audit context of a request `p` makes.
pub fn ctx_of(p: &Principal) -> AuditContext {
    AuditContext {
        actor_id: Some(p.user_id.clone()),
        actor: p.username.clone(),
        on_behalf_of: None,
        request_id: Some(format!("req-{}", p.username)),
    }
}

/// Puts `p` into the named group (one of the approver groups the policies name).
pub async fn join(db: &Db, group: &str, p: &Principal) {
    let groups = accounts::list_groups(db, Some(group), all()).await.unwrap();
    let g = groups.items.iter().find(|g| g.name == group).unwrap_or_else(|| panic!("no group {group}"));
    accounts::set_membership(db, &ctx(), &g.id, &p.user_id, true).await.unwrap();
}

/// A user with the approver role in `group`.
pub async fn approver(db: &Db, username: &str, group: &str) -> Principal {
    let p = person(db, username, &[Role::Approver]).await;
    join(db, group, &p).await;
    p
}

/// Hours from [`START`] to hours from [`START`].
pub fn hours(from_h: i64, to_h: i64) -> Window {
    Window::new(START + Duration::hours(from_h), START + Duration::hours(to_h)).unwrap()
}

/// A plan of `kind` that runs `operations` in `window`.
pub fn plan(kind: ChangeKind, title: &str, operations: Vec<Operation>, window: Window) -> ChangeSpec {
    ChangeSpec {
        kind,
        title: name(title),
        description: Description::parse("description", "").unwrap(),
        ci_ids: Vec::new(),
        operations,
        window,
    }
}

pub fn stop(vm_id: &str) -> Operation {
    Operation::Stop { vm_id: vm_id.to_owned() }
}

pub fn evacuate(host_id: &str) -> Operation {
    Operation::Evacuate { host_id: host_id.to_owned() }
}

/// A VM pinned to `host_id`.
pub fn provision(name_: &str, host_id: &str, vcpus: i64, memory_mib: i64) -> Operation {
    Operation::Provision {
        name: name_.to_owned(),
        image: "debian-12".to_owned(),
        vcpus,
        memory_mib,
        disk_gib: 20,
        service_id: None,
        host_id: Some(host_id.to_owned()),
        container: false,
    }
}

/// A host of `criticality` with the given capacity, in the fleet's cluster.
pub async fn host_of(db: &Db, f: &Fleet, name_: &str, criticality: &str, vcpus: i64, memory_mib: i64) -> Ci {
    let spec = CiSpec::try_from(CiDraft {
        kind: "host".into(),
        name: name_.into(),
        parent_id: Some(f.cluster.id.clone()),
        criticality: Some(criticality.into()),
        hypervisor: Some("kvm".into()),
        vcpus: Some(vcpus),
        memory_mib: Some(memory_mib),
        disk_gib: Some(1000),
        ..CiDraft::default()
    })
    .unwrap();
    create(db, spec).await
}

pub async fn request(db: &Db, by: &Principal, spec: ChangeSpec) -> Change {
    change::create_change(db, &ctx_of(by), by, spec).await.expect("the change is recorded")
}

/// Fires `event` on a change as `by`.
pub async fn fire(db: &Db, id: &str, by: &Principal, event: &str) -> StoreResult<Change> {
    let e = ChangeEvent { event: event.to_owned(), ..ChangeEvent::default() };
    change::fire_change(db, &ctx_of(by), id, &change::person(&by.roles), e).await
}

/// Fires `event` on a change as Tollgate itself.
pub async fn fire_system(db: &Db, id: &str, event: &str) -> StoreResult<Change> {
    let e = ChangeEvent { event: event.to_owned(), ..ChangeEvent::default() };
    change::fire_change(db, &AuditContext::system("test"), id, &Actor::System, e).await
}

/// Fires each event in turn as `by`, expecting every one to succeed.
pub async fn walk(db: &Db, id: &str, by: &Principal, events: &[&str]) -> Change {
    let mut last = None;
    for e in events {
        last = Some(fire(db, id, by, e).await.unwrap_or_else(|err| panic!("{e}: {err:?}")));
    }
    last.expect("at least one event")
}

pub async fn approve(db: &Db, id: &str, by: &Principal) -> StoreResult<ApprovalStatus> {
    approval::vote(db, &ctx_of(by), id, by, Decision::Approve, None).await
}

pub async fn state_of(db: &Db, id: &str) -> String {
    change::get_change(db, id).await.unwrap().state
}

/// The people of a change process: a requester, a change manager and an operator.
pub struct Staff {
    pub requester: Principal,
    pub manager: Principal,
    pub operator: Principal,
}

pub async fn staff(db: &Db) -> Staff {
    Staff {
        requester: person(db, "rita", &[Role::Requester]).await,
        manager: person(db, "manny", &[Role::ChangeManager]).await,
        operator: person(db, "otto", &[Role::Operator]).await,
    }
}

#[track_caller]
pub fn assert_not_allowed<T: Debug>(result: StoreResult<T>) {
    assert!(
        matches!(result, Err(StoreError::Transition(TransitionError::NotAllowed { .. }))),
        "expected the event not to be allowed from this state, got {result:?}"
    );
}

#[track_caller]
pub fn assert_role_required<T: Debug>(result: StoreResult<T>) {
    assert!(
        matches!(result, Err(StoreError::Transition(TransitionError::RoleRequired { .. }))),
        "expected a missing role, got {result:?}"
    );
}

#[track_caller]
pub fn assert_system_only<T: Debug>(result: StoreResult<T>) {
    assert!(
        matches!(result, Err(StoreError::Transition(TransitionError::SystemOnly { .. }))),
        "expected a system-only event, got {result:?}"
    );
}

#[track_caller]
pub fn assert_guard<T: Debug>(result: StoreResult<T>, expected: Guard) {
    match result {
        Err(StoreError::Transition(TransitionError::GuardFailed { guard, .. })) if guard == expected => {}
        other => panic!("expected guard {expected:?} to fail, got {other:?}"),
    }
}

#[track_caller]
pub fn assert_forbidden<T: Debug>(result: StoreResult<T>) {
    assert!(matches!(result, Err(StoreError::Forbidden(_))), "expected forbidden, got {result:?}");
}

/// Takes a normal change from draft to awaiting approval.
pub async fn to_approval(db: &Db, s: &Staff, spec: ChangeSpec) -> Change {
    let c = request(db, &s.requester, spec).await;
    fire(db, &c.id, &s.requester, "submit").await.unwrap();
    walk(db, &c.id, &s.manager, &["assess", "request_approval"]).await
}

/// A low-risk normal change (it stops a VM): one peer approves it under `normal-low-risk`.
pub fn low_risk(f: &Fleet) -> ChangeSpec {
    plan(ChangeKind::Normal, "stop billing db", vec![stop(&f.vm.id)], hours(1, 2))
}

/// A medium-risk normal change (it evacuates a critical host): two peers and half the CAB approve it under
/// `normal`.
pub async fn medium_risk(db: &Db, f: &Fleet) -> ChangeSpec {
    let critical = host_of(db, f, "hv-core", "critical", 64, 262_144).await;
    plan(ChangeKind::Normal, "drain hv-core", vec![evacuate(&critical.id)], hours(1, 2))
}

pub async fn reject(db: &Db, id: &str, by: &Principal, comment: Option<&str>) -> StoreResult<ApprovalStatus> {
    approval::vote(db, &ctx_of(by), id, by, Decision::Reject, comment).await
}

/// Replaces the policy for low-risk normal changes with one stage of `rule` over `change-approvers`.
pub async fn low_risk_policy(db: &Db, rule: Rule) {
    let stage = Stage {
        name: "peers".into(),
        groups: vec!["change-approvers".into()],
        rule,
        timeout_secs: None,
        on_timeout: None,
    };
    let policy = ApprovalPolicy {
        name: "normal-low-risk".into(),
        kinds: vec![ChangeKind::Normal],
        min_risk: RiskLevel::Low,
        max_risk: RiskLevel::Low,
        stages: vec![stage],
    };
    approval::put_policy(db, &ctx(), policy).await.unwrap();
}
