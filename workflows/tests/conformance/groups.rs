//! Groups: their life cycle, their members, and the roles they lend to members.

use crate::support::*;
use time::Duration;
use tollgate_workflows::accounts::{self, GroupSpec, Role, RoleSet};
use tollgate_workflows::text::Description;
use tollgate_workflows::Db;

fn group(group_name: &str, description: &str, roles: &[Role]) -> GroupSpec {
    GroupSpec {
        name: name(group_name),
        description: Description::parse("description", description).unwrap(),
        roles: RoleSet::new(roles.iter().copied()),
    }
}

async fn roles_of(db: &Db, username: &str) -> RoleSet {
    let (issued, _) =
        accounts::issue_token(db, username, PASSWORD, &name("t"), Duration::hours(1), None).await.unwrap();
    accounts::authenticate(db, &issued.token).await.unwrap().expect("token is live").roles
}

#[tokio::test]
async fn a_group_can_be_created_found_renamed_and_deleted() {
    let db = fresh_db().await;
    let spec = group("cab", "Change advisory board", &[Role::Approver]);
    let cab = accounts::create_group(&db, &ctx(), spec).await.unwrap();
    accounts::create_group(&db, &ctx(), group("ops", "", &[Role::Operator])).await.unwrap();

    let fetched = accounts::get_group(&db, &cab.id).await.unwrap();
    assert_eq!(fetched.name, "cab");
    assert_eq!(fetched.description, "Change advisory board");
    assert_eq!(fetched.roles, vec![Role::Approver]);
    assert!(fetched.members.is_empty());
    let found = accounts::list_groups(&db, Some("CA"), all()).await.unwrap();
    assert_eq!(found.items.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(), ["cab"]);
    assert_eq!(accounts::list_groups(&db, None, all()).await.unwrap().total, 2);

    db.clock().advance(Duration::minutes(1));
    let renamed = group("change-board", "CAB", &[Role::Approver, Role::ChangeManager]);
    let updated = accounts::update_group(&db, &ctx(), &cab.id, renamed).await.unwrap();
    assert_eq!(updated.name, "change-board");
    assert_eq!(updated.roles, vec![Role::Approver, Role::ChangeManager]);
    assert_eq!(updated.updated_at, START + Duration::minutes(1));
    assert_eq!(accounts::get_group(&db, &cab.id).await.unwrap().name, "change-board");

    accounts::delete_group(&db, &ctx(), &cab.id).await.unwrap();
    assert_not_found(accounts::get_group(&db, &cab.id).await);
    assert_not_found(accounts::delete_group(&db, &ctx(), &cab.id).await);
    assert_eq!(accounts::list_groups(&db, None, all()).await.unwrap().total, 1);
}

#[tokio::test]
async fn a_group_name_that_is_taken_is_a_conflict() {
    let db = fresh_db().await;
    accounts::create_group(&db, &ctx(), group("cab", "", &[])).await.unwrap();
    let ops = accounts::create_group(&db, &ctx(), group("ops", "", &[])).await.unwrap();

    assert_conflict(accounts::create_group(&db, &ctx(), group("cab", "again", &[])).await);
    assert_conflict(accounts::update_group(&db, &ctx(), &ops.id, group("cab", "", &[])).await);
    assert_eq!(accounts::get_group(&db, &ops.id).await.unwrap().name, "ops");
}

#[tokio::test]
async fn adding_or_removing_a_member_twice_changes_nothing_the_second_time() {
    let db = fresh_db().await;
    let alice = user(&db, "alice", &[Role::Viewer]).await;
    let cab = accounts::create_group(&db, &ctx(), group("cab", "", &[Role::Approver])).await.unwrap();

    let added = accounts::set_membership(&db, &ctx(), &cab.id, &alice.id, true).await.unwrap();
    let again = accounts::set_membership(&db, &ctx(), &cab.id, &alice.id, true).await.unwrap();
    assert_eq!(added.members, vec![alice.id.clone()]);
    assert_eq!(again.members, vec![alice.id.clone()]);
    assert_eq!(audit_of(&db, "group", &cab.id).await.len(), 2, "create and one add");

    let removed = accounts::set_membership(&db, &ctx(), &cab.id, &alice.id, false).await.unwrap();
    let again = accounts::set_membership(&db, &ctx(), &cab.id, &alice.id, false).await.unwrap();
    assert!(removed.members.is_empty());
    assert!(again.members.is_empty());
    let actions: Vec<String> = audit_of(&db, "group", &cab.id).await.into_iter().map(|r| r.action).collect();
    assert_eq!(actions, ["group.remove_member", "group.add_member", "group.create"]);
}

#[tokio::test]
async fn membership_needs_an_existing_group_and_user() {
    let db = fresh_db().await;
    let alice = user(&db, "alice", &[Role::Viewer]).await;
    let cab = accounts::create_group(&db, &ctx(), group("cab", "", &[])).await.unwrap();

    assert_not_found(accounts::set_membership(&db, &ctx(), &cab.id, "no-such-user", true).await);
    assert_not_found(accounts::set_membership(&db, &ctx(), "no-such-group", &alice.id, true).await);
    assert!(accounts::get_group(&db, &cab.id).await.unwrap().members.is_empty());
}

#[tokio::test]
async fn members_hold_the_group_roles_only_while_they_belong() {
    let db = fresh_db().await;
    let alice = user(&db, "alice", &[Role::Viewer]).await;
    let bob = user(&db, "bob", &[Role::Viewer]).await;
    let ops = accounts::create_group(&db, &ctx(), group("ops", "", &[Role::Operator])).await.unwrap();
    let cab = accounts::create_group(&db, &ctx(), group("cab", "", &[Role::Approver])).await.unwrap();
    for g in [&ops.id, &cab.id] {
        accounts::set_membership(&db, &ctx(), g, &alice.id, true).await.unwrap();
    }
    accounts::set_membership(&db, &ctx(), &cab.id, &bob.id, true).await.unwrap();

    assert_eq!(roles_of(&db, "alice").await, RoleSet::new([Role::Viewer, Role::Operator, Role::Approver]));
    accounts::set_membership(&db, &ctx(), &ops.id, &alice.id, false).await.unwrap();
    assert_eq!(roles_of(&db, "alice").await, RoleSet::new([Role::Viewer, Role::Approver]));

    accounts::delete_group(&db, &ctx(), &cab.id).await.unwrap();
    assert_eq!(roles_of(&db, "alice").await, RoleSet::new([Role::Viewer]));
    assert_eq!(roles_of(&db, "bob").await, RoleSet::new([Role::Viewer]));
}
