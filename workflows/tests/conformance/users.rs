//! Accounts: creating, finding and editing users, changing passwords, bootstrapping the first admin.

use crate::support::*;
use tollgate_workflows::accounts::{self, Email, Role, RoleSet, SignInError, User, UserQuery, UserUpdate};
use tollgate_workflows::text::Page;
use tollgate_workflows::{Db, StoreError};

fn usernames(users: &[User]) -> Vec<&str> {
    users.iter().map(|u| u.username.as_str()).collect()
}

fn disable(user: &User) -> UserUpdate {
    UserUpdate {
        display_name: name(&user.display_name),
        email: None,
        roles: RoleSet::new(user.roles.iter().copied()),
        disabled: true,
    }
}

async fn sign_in(db: &Db, username: &str, pw: &str) -> Result<(), SignInError> {
    let ttl = time::Duration::hours(1);
    accounts::issue_token(db, username, pw, &name("cli"), ttl, None).await.map(|_| ())
}

async fn find(db: &Db, q: UserQuery) -> Page<User> {
    accounts::list_users(db, &q, all()).await.unwrap()
}

#[tokio::test]
async fn a_created_user_can_be_fetched_by_id() {
    let db = fresh_db().await;
    let mut new = new_user("alice", "Alice Liddell", &[Role::Operator, Role::Viewer]);
    new.email = Some(Email::parse("alice@example.org").unwrap());

    let created = accounts::create_user(&db, &ctx(), new).await.unwrap();
    let fetched = accounts::get_user(&db, &created.id).await.unwrap();

    assert_eq!(fetched.username, "alice");
    assert_eq!(fetched.display_name, "Alice Liddell");
    assert_eq!(fetched.email.as_deref(), Some("alice@example.org"));
    assert_eq!(fetched.roles, vec![Role::Viewer, Role::Operator]);
    assert!(!fetched.disabled);
    assert_eq!(fetched.created_at, START);
    assert_eq!(fetched.updated_at, START);
    assert_not_found(accounts::get_user(&db, "no-such-user").await);
}

#[tokio::test]
async fn users_are_found_by_name_role_and_disabled_state() {
    let db = fresh_db().await;
    let alice = user(&db, "alice", &[Role::Operator]).await;
    let bob = new_user("bob", "Bob Builder", &[Role::Viewer]);
    accounts::create_user(&db, &ctx(), bob).await.unwrap();
    let carol = user(&db, "carol", &[Role::ChangeManager, Role::Viewer]).await;
    accounts::update_user(&db, &ctx(), &carol.id, disable(&carol)).await.unwrap();

    let everyone = find(&db, UserQuery::default()).await;
    assert_eq!(usernames(&everyone.items), ["alice", "bob", "carol"]);
    assert_eq!(everyone.total, 3);

    let by_display_name = find(&db, UserQuery { q: Some("BUILD".into()), ..Default::default() }).await;
    assert_eq!(usernames(&by_display_name.items), ["bob"]);
    let by_username = find(&db, UserQuery { q: Some("Ali".into()), ..Default::default() }).await;
    assert_eq!(usernames(&by_username.items), ["alice"]);
    assert_eq!(by_username.items[0].id, alice.id);

    let viewers = find(&db, UserQuery { role: Some(Role::Viewer), ..Default::default() }).await;
    assert_eq!(usernames(&viewers.items), ["bob", "carol"]);
    let managers = find(&db, UserQuery { role: Some(Role::ChangeManager), ..Default::default() }).await;
    assert_eq!(usernames(&managers.items), ["carol"]);
    let approvers = find(&db, UserQuery { role: Some(Role::Approver), ..Default::default() }).await;
    assert!(approvers.items.is_empty());
    assert_eq!(approvers.total, 0);

    let disabled = find(&db, UserQuery { disabled: Some(true), ..Default::default() }).await;
    assert_eq!(usernames(&disabled.items), ["carol"]);
    let enabled = find(&db, UserQuery { disabled: Some(false), ..Default::default() }).await;
    assert_eq!(usernames(&enabled.items), ["alice", "bob"]);

    let enabled_viewers =
        find(&db, UserQuery { role: Some(Role::Viewer), disabled: Some(false), ..Default::default() }).await;
    assert_eq!(usernames(&enabled_viewers.items), ["bob"]);

    let second = accounts::list_users(&db, &UserQuery::default(), page(1, 1)).await.unwrap();
    assert_eq!(usernames(&second.items), ["bob"]);
    assert_eq!((second.total, second.limit, second.offset), (3, 1, 1));
}

#[tokio::test]
async fn a_username_that_is_taken_is_a_conflict() {
    let db = fresh_db().await;
    user(&db, "alice", &[Role::Viewer]).await;

    let again = accounts::create_user(&db, &ctx(), new_user("alice", "Another", &[Role::Admin])).await;

    assert!(matches!(again, Err(StoreError::Conflict(_))), "got {again:?}");
    assert_eq!(accounts::count_users(&db).await.unwrap(), 1);
}

#[tokio::test]
async fn an_update_replaces_the_editable_fields() {
    let db = fresh_db().await;
    let alice = user(&db, "alice", &[Role::Viewer]).await;
    db.clock().advance(time::Duration::minutes(5));

    let update = UserUpdate {
        display_name: name("Alice L."),
        email: Some(Email::parse("al@example.org").unwrap()),
        roles: RoleSet::new([Role::Approver]),
        disabled: false,
    };
    let updated = accounts::update_user(&db, &ctx(), &alice.id, update).await.unwrap();

    assert_eq!(updated.display_name, "Alice L.");
    assert_eq!(updated.email.as_deref(), Some("al@example.org"));
    assert_eq!(updated.roles, vec![Role::Approver]);
    assert_eq!(updated.created_at, START);
    assert_eq!(updated.updated_at, START + time::Duration::minutes(5));
    assert_eq!(accounts::get_user(&db, &alice.id).await.unwrap().display_name, "Alice L.");
}

#[tokio::test]
async fn the_last_administrator_can_be_neither_disabled_nor_demoted() {
    let db = fresh_db().await;
    let root = user(&db, "root", &[Role::Admin]).await;
    let demote =
        UserUpdate { display_name: name("root"), email: None, roles: RoleSet::new([Role::Viewer]), disabled: false };

    assert_conflict(accounts::update_user(&db, &ctx(), &root.id, disable(&root)).await);
    assert_conflict(accounts::update_user(&db, &ctx(), &root.id, demote.clone()).await);
    assert!(!accounts::get_user(&db, &root.id).await.unwrap().disabled);

    user(&db, "second", &[Role::Admin]).await;
    let demoted = accounts::update_user(&db, &ctx(), &root.id, demote).await.unwrap();
    assert_eq!(demoted.roles, vec![Role::Viewer]);
}

#[tokio::test]
async fn changing_a_password_needs_the_current_one() {
    let db = fresh_db().await;
    let alice = user(&db, "alice", &[Role::Viewer]).await;
    let new = "a much longer new secret";

    let wrong = accounts::set_password(&db, &ctx(), &alice.id, Some("not my password"), password(new), None).await;
    assert_invalid(wrong, "current_password");
    assert!(sign_in(&db, "alice", PASSWORD).await.is_ok(), "a refused change keeps the old password");

    accounts::set_password(&db, &ctx(), &alice.id, Some(PASSWORD), password(new), None).await.unwrap();
    assert!(matches!(sign_in(&db, "alice", PASSWORD).await, Err(SignInError::BadCredentials)));
    assert!(sign_in(&db, "alice", new).await.is_ok());
}

#[tokio::test]
async fn an_administrator_can_reset_a_password_without_knowing_it() {
    let db = fresh_db().await;
    let alice = user(&db, "alice", &[Role::Viewer]).await;

    accounts::set_password(&db, &ctx(), &alice.id, None, password("reset by the admin"), None).await.unwrap();

    assert!(sign_in(&db, "alice", "reset by the admin").await.is_ok());
    assert_not_found(accounts::set_password(&db, &ctx(), "no-such-user", None, password("whatever it is"), None).await);
}

#[tokio::test]
async fn the_first_administrator_is_created_once() {
    let db = fresh_db().await;

    let first = accounts::bootstrap_admin(&db, None).await.unwrap().expect("an admin is created");
    let second = accounts::bootstrap_admin(&db, Some(password("another admin password"))).await.unwrap();

    assert!(second.is_none());
    assert_eq!(accounts::count_users(&db).await.unwrap(), 1);
    let ttl = time::Duration::hours(1);
    let (_, admin) = accounts::issue_token(&db, "admin", first.expose(), &name("cli"), ttl, None).await.unwrap();
    assert!(admin.roles.contains(Role::Admin));
    let record = audit_of(&db, "user", &admin.user_id).await;
    assert_eq!(record.len(), 1);
    assert_eq!(record[0].actor, "system");
}

#[tokio::test]
async fn no_administrator_is_bootstrapped_once_anyone_has_an_account() {
    let db = fresh_db().await;
    user(&db, "alice", &[Role::Viewer]).await;

    let result = accounts::bootstrap_admin(&db, Some(password("admin password 1"))).await.unwrap();

    assert!(result.is_none());
    assert!(matches!(sign_in(&db, "admin", "admin password 1").await, Err(SignInError::BadCredentials)));
}

#[tokio::test]
async fn the_last_administrator_through_a_group_cannot_be_removed_either() {
    let db = fresh_db().await;
    let root = user(&db, "root", &[Role::Viewer]).await;
    let spec = |roles: &[Role]| accounts::GroupSpec {
        name: name("admins"),
        description: tollgate_workflows::text::Description::parse("d", "").unwrap(),
        roles: RoleSet::new(roles.iter().copied()),
    };
    let admins = accounts::create_group(&db, &ctx(), spec(&[Role::Admin])).await.unwrap();
    accounts::set_membership(&db, &ctx(), &admins.id, &root.id, true).await.unwrap();

    assert_conflict(accounts::set_membership(&db, &ctx(), &admins.id, &root.id, false).await);
    assert_conflict(accounts::update_group(&db, &ctx(), &admins.id, spec(&[Role::Viewer])).await);
    assert_conflict(accounts::delete_group(&db, &ctx(), &admins.id).await);
    assert_conflict(accounts::update_user(&db, &ctx(), &root.id, disable(&root)).await);
    assert_eq!(accounts::get_group(&db, &admins.id).await.unwrap().members, vec![root.id.clone()], "nothing changed");
}
