//! A brand new database per test (SQLite by default, PostgreSQL when `TEST_DATABASE_URL` is set) and the
//! small builders the tests share.

use std::fmt::Debug;
use time::macros::datetime;
use tollgate_workflows::accounts::{self, NewUser, Password, Role, RoleSet, User, Username};
use tollgate_workflows::audit::{self, AuditQuery, AuditRecord};
use tollgate_workflows::cmdb::{self, Ci, CiDraft, CiSpec};
use tollgate_workflows::testing::{fresh_database, TestDatabase};
use tollgate_workflows::text::{Name, PageRequest};
use tollgate_workflows::{AuditContext, Clock, Db, StoreError, StoreResult};

/// The instant every test starts at; tests move it with `db.clock().advance(…)`.
pub const START: time::OffsetDateTime = datetime!(2030-01-01 09:00:00 UTC);

/// The password every test user gets unless a test says otherwise.
pub const PASSWORD: &str = "correct horse battery staple";

/// A store on a database nobody else uses. Derefs to [`Db`]; keeps the database alive (and drops a
/// PostgreSQL one when a passing test ends).
pub struct TestDb {
    pub db: Db,
    _database: TestDatabase,
}

impl std::ops::Deref for TestDb {
    type Target = Db;

    fn deref(&self) -> &Db {
        &self.db
    }
}

/// A fresh, migrated store whose clock stands still at [`START`].
pub async fn fresh_db() -> TestDb {
    let database = fresh_database().await;
    let db = Db::connect(database.url(), 4, Clock::manual(START)).await.expect("the store opens");
    TestDb { db, _database: database }
}

/// Runs `sql` behind the store's back, as someone with access to the database would, once every audit
/// record written so far has been sealed into the chain.
pub async fn raw_sql(db: &Db, sql: &str) -> u64 {
    tollgate_workflows::audit::seal(db).await.expect("audit records seal");
    sqlx::query(sql).execute(db.pool()).await.expect("raw SQL runs").rows_affected()
}

/// The operator the tests act as.
pub fn ctx() -> AuditContext {
    AuditContext {
        actor_id: Some("u-alice".to_owned()),
        actor: "alice".to_owned(),
        on_behalf_of: None,
        request_id: Some("req-1".to_owned()),
    }
}

pub fn page(limit: u32, offset: u64) -> PageRequest {
    PageRequest::new(Some(limit), Some(offset)).expect("a valid page")
}

pub fn all() -> PageRequest {
    page(PageRequest::MAX_LIMIT, 0)
}

pub fn name(value: &str) -> Name {
    Name::parse("name", value).expect("a valid name")
}

pub fn password(value: &str) -> Password {
    Password::parse("password", value).expect("a valid password")
}

pub fn new_user(username: &str, display_name: &str, roles: &[Role]) -> NewUser {
    NewUser {
        username: Username::parse(username).expect("a valid username"),
        display_name: name(display_name),
        email: None,
        password: password(PASSWORD),
        roles: RoleSet::new(roles.iter().copied()),
    }
}

/// A user with [`PASSWORD`].
pub async fn user(db: &Db, username: &str, roles: &[Role]) -> User {
    accounts::create_user(db, &ctx(), new_user(username, username, roles)).await.expect("user is created")
}

/// The audit records of one entity, newest first.
pub async fn audit_of(db: &Db, entity_type: &str, entity_id: &str) -> Vec<AuditRecord> {
    let q = AuditQuery {
        entity_type: Some(entity_type.to_owned()),
        entity_id: Some(entity_id.to_owned()),
        ..AuditQuery::default()
    };
    audit::list(db, &q, all()).await.expect("audit list").items
}

pub fn spec(draft: CiDraft) -> CiSpec {
    CiSpec::try_from(draft).expect("a valid CI draft")
}

fn draft(kind: &str, name: &str, parent_id: Option<&str>) -> CiDraft {
    CiDraft {
        kind: kind.to_owned(),
        name: name.to_owned(),
        parent_id: parent_id.map(str::to_owned),
        ..CiDraft::default()
    }
}

pub fn region(name: &str) -> CiSpec {
    spec(draft("region", name, None))
}

pub fn datacenter(name: &str, region_id: &str) -> CiSpec {
    spec(draft("datacenter", name, Some(region_id)))
}

pub fn cluster(name: &str, datacenter_id: &str) -> CiSpec {
    spec(draft("cluster", name, Some(datacenter_id)))
}

pub fn host(name: &str, cluster_id: &str) -> CiSpec {
    spec(CiDraft {
        hypervisor: Some("kvm".to_owned()),
        vcpus: Some(64),
        memory_mib: Some(262_144),
        disk_gib: Some(4000),
        ..draft("host", name, Some(cluster_id))
    })
}

pub fn vm(name: &str, host_id: Option<&str>, service_id: Option<&str>) -> CiSpec {
    spec(CiDraft {
        service_id: service_id.map(str::to_owned),
        vcpus: Some(2),
        memory_mib: Some(4096),
        disk_gib: Some(40),
        ..draft("vm", name, host_id)
    })
}

pub fn service(name: &str) -> CiSpec {
    spec(draft("service", name, None))
}

pub async fn create(db: &Db, spec: CiSpec) -> Ci {
    cmdb::create_ci(db, &ctx(), spec).await.expect("CI is created")
}

/// region ⊃ datacenter ⊃ cluster ⊃ host ⊃ vm, the VM owned by a service.
pub struct Fleet {
    pub region: Ci,
    pub datacenter: Ci,
    pub cluster: Ci,
    pub host: Ci,
    pub vm: Ci,
    pub service: Ci,
}

pub async fn fleet(db: &Db) -> Fleet {
    let region = create(db, region("eu-west")).await;
    let datacenter = create(db, datacenter("dc-dublin", &region.id)).await;
    let cluster = create(db, cluster("cl-a", &datacenter.id)).await;
    let host = create(db, host("hv-001", &cluster.id)).await;
    let service = create(db, service("billing")).await;
    let vm = create(db, vm("billing-db-1", Some(&host.id), Some(&service.id))).await;
    Fleet { region, datacenter, cluster, host, vm, service }
}

#[track_caller]
pub fn assert_invalid<T: Debug>(result: StoreResult<T>, field: &str) {
    match result {
        Err(StoreError::Invalid(e)) => {
            assert_eq!(e.field, field, "the error names the wrong field: {e}")
        }
        other => panic!("expected a validation error on {field}, got {other:?}"),
    }
}

#[track_caller]
pub fn assert_conflict<T: Debug>(result: StoreResult<T>) {
    assert!(matches!(result, Err(StoreError::Conflict(_))), "expected a conflict, got {result:?}");
}

#[track_caller]
pub fn assert_not_found<T: Debug>(result: StoreResult<T>) {
    assert!(matches!(result, Err(StoreError::NotFound { .. })), "expected not found, got {result:?}");
}

/// xorshift64 for the property tests: small, deterministic, and good enough to pick test inputs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        usize::try_from(x % n as u64).unwrap()
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    /// Half the time the first item, one that lets events through (so the walks get somewhere); else any.
    pub fn likely<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        if self.below(2) == 0 {
            &items[0]
        } else {
            self.pick(items)
        }
    }
}
