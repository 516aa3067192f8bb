//! Signing in: bearer tokens, the roles they carry, and the ways they stop working.

use crate::support::*;
use time::Duration;
use tollgate_workflows::accounts::{
    self, GroupSpec, IssuedToken, Principal, Role, RoleSet, SignInError, User, UserUpdate,
};
use tollgate_workflows::text::Description;
use tollgate_workflows::Db;

const TTL: Duration = Duration::hours(8);

async fn sign_in(db: &Db, username: &str) -> (IssuedToken, Principal) {
    accounts::issue_token(db, username, PASSWORD, &name("laptop"), TTL, Some("req-sign-in".into()))
        .await
        .expect("sign-in succeeds")
}

async fn refused(db: &Db, username: &str, pw: &str) -> bool {
    let result = accounts::issue_token(db, username, pw, &name("laptop"), TTL, None).await;
    matches!(result, Err(SignInError::BadCredentials))
}

fn disabled(user: &User, disabled: bool) -> UserUpdate {
    UserUpdate {
        display_name: name(&user.display_name),
        email: None,
        roles: RoleSet::new(user.roles.iter().copied()),
        disabled,
    }
}

#[tokio::test]
async fn signing_in_gives_a_token_that_stands_for_the_user_with_their_group_roles() {
    let db = fresh_db().await;
    let dave = user(&db, "dave", &[Role::Requester]).await;
    let spec =
        GroupSpec { name: name("cab"), description: Description::default(), roles: RoleSet::new([Role::Approver]) };
    let cab = accounts::create_group(&db, &ctx(), spec).await.unwrap();
    accounts::set_membership(&db, &ctx(), &cab.id, &dave.id, true).await.unwrap();

    let (issued, at_sign_in) = sign_in(&db, "dave").await;
    let principal = accounts::authenticate(&db, &issued.token).await.unwrap().expect("token is live");

    assert!(issued.token.starts_with("tg_"));
    assert_eq!(issued.expires_at, START + TTL);
    assert_eq!(principal, at_sign_in);
    assert_eq!(principal.user_id, dave.id);
    assert_eq!(principal.username, "dave");
    assert_eq!(principal.token_id, issued.id);
    assert_eq!(principal.roles, RoleSet::new([Role::Requester, Role::Approver]));
    assert!(accounts::authenticate(&db, "tg_not-a-real-token").await.unwrap().is_none());
}

#[tokio::test]
async fn a_wrong_password_an_unknown_user_and_a_disabled_user_are_refused_alike() {
    let db = fresh_db().await;
    user(&db, "erin", &[Role::Viewer]).await;
    let frank = user(&db, "frank", &[Role::Viewer]).await;
    accounts::update_user(&db, &ctx(), &frank.id, disabled(&frank, true)).await.unwrap();

    assert!(refused(&db, "erin", "not the right password").await);
    assert!(refused(&db, "nobody", PASSWORD).await);
    assert!(refused(&db, "frank", PASSWORD).await);
    assert!(refused(&db, "ERIN", PASSWORD).await, "usernames are exact");
    let listed = accounts::list_tokens(&db, &frank.id, all()).await.unwrap();
    assert_eq!(listed.total, 0, "a refused sign-in issues nothing");
}

#[tokio::test]
async fn a_revoked_token_no_longer_signs_anyone_in() {
    let db = fresh_db().await;
    user(&db, "grace", &[Role::Viewer]).await;
    let (kept, _) = sign_in(&db, "grace").await;
    let (issued, grace) = sign_in(&db, "grace").await;
    db.clock().advance(Duration::minutes(1));

    let revoked = accounts::revoke_token(&db, &ctx(), &issued.id, &grace).await.unwrap();

    assert_eq!(revoked.revoked_at, Some(START + Duration::minutes(1)));
    assert!(accounts::authenticate(&db, &issued.token).await.unwrap().is_none());
    assert!(accounts::authenticate(&db, &kept.token).await.unwrap().is_some(), "other tokens live on");
    db.clock().advance(Duration::minutes(1));
    let again = accounts::revoke_token(&db, &ctx(), &issued.id, &grace).await.unwrap();
    assert_eq!(again.revoked_at, revoked.revoked_at, "revoking twice keeps the first instant");
    let listed = accounts::list_tokens(&db, &grace.user_id, all()).await.unwrap();
    assert_eq!(listed.total, 2);
    let shown = listed.items.iter().find(|t| t.id == issued.id).expect("revoked token is listed");
    assert_eq!(shown.revoked_at, revoked.revoked_at);
}

#[tokio::test]
async fn a_token_stops_working_when_its_lifetime_is_over() {
    let db = fresh_db().await;
    user(&db, "heidi", &[Role::Viewer]).await;
    let (issued, _) = sign_in(&db, "heidi").await;

    db.clock().advance(TTL - Duration::seconds(1));
    assert!(accounts::authenticate(&db, &issued.token).await.unwrap().is_some());

    db.clock().advance(Duration::seconds(2));
    assert!(accounts::authenticate(&db, &issued.token).await.unwrap().is_none());
}

#[tokio::test]
async fn disabling_a_user_revokes_their_tokens_for_good() {
    let db = fresh_db().await;
    let ivan = user(&db, "ivan", &[Role::Operator]).await;
    let (first, _) = sign_in(&db, "ivan").await;
    let (second, _) = sign_in(&db, "ivan").await;

    accounts::update_user(&db, &ctx(), &ivan.id, disabled(&ivan, true)).await.unwrap();

    assert!(accounts::authenticate(&db, &first.token).await.unwrap().is_none());
    assert!(accounts::authenticate(&db, &second.token).await.unwrap().is_none());
    let listed = accounts::list_tokens(&db, &ivan.id, all()).await.unwrap();
    assert!(listed.items.iter().all(|t| t.revoked_at == Some(START)), "{listed:?}");

    accounts::update_user(&db, &ctx(), &ivan.id, disabled(&ivan, false)).await.unwrap();
    assert!(
        accounts::authenticate(&db, &first.token).await.unwrap().is_none(),
        "re-enabling the account does not bring old tokens back"
    );
    assert!(accounts::issue_token(&db, "ivan", PASSWORD, &name("new"), TTL, None).await.is_ok());
}

#[tokio::test]
async fn only_the_owner_or_an_admin_can_revoke_a_token() {
    let db = fresh_db().await;
    user(&db, "judy", &[Role::Viewer]).await;
    user(&db, "mallory", &[Role::Operator, Role::ChangeManager]).await;
    user(&db, "root", &[Role::Admin]).await;
    let (judys, _) = sign_in(&db, "judy").await;
    let (_, mallory) = sign_in(&db, "mallory").await;
    let (_, root) = sign_in(&db, "root").await;

    let by_stranger = accounts::revoke_token(&db, &ctx(), &judys.id, &mallory).await;
    assert_not_found(by_stranger);
    assert!(accounts::authenticate(&db, &judys.token).await.unwrap().is_some());
    assert_not_found(accounts::revoke_token(&db, &ctx(), "no-such-token", &root).await);

    let by_admin = accounts::revoke_token(&db, &ctx(), &judys.id, &root).await.unwrap();
    assert!(by_admin.revoked_at.is_some());
    assert!(accounts::authenticate(&db, &judys.token).await.unwrap().is_none());
}

#[tokio::test]
async fn tokens_are_listed_to_their_owner_newest_first() {
    let db = fresh_db().await;
    let kim = user(&db, "kim", &[Role::Viewer]).await;
    user(&db, "lee", &[Role::Viewer]).await;
    let (older, _) = sign_in(&db, "kim").await;
    db.clock().advance(Duration::minutes(3));
    let (newer, _) = sign_in(&db, "kim").await;
    sign_in(&db, "lee").await;

    let listed = accounts::list_tokens(&db, &kim.id, all()).await.unwrap();

    let ids: Vec<&str> = listed.items.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, [newer.id.as_str(), older.id.as_str()]);
    assert_eq!(listed.total, 2);
    assert!(listed.items.iter().all(|t| t.user_id == kim.id && t.name == "laptop"));
    assert_eq!(listed.items[0].expires_at, START + Duration::minutes(3) + TTL);
}

#[tokio::test]
async fn a_new_password_revokes_every_token_but_the_one_that_changed_it() {
    let db = fresh_db().await;
    let alice = user(&db, "alice", &[Role::Viewer]).await;
    let (laptop, _) = sign_in(&db, "alice").await;
    let (phone, _) = sign_in(&db, "alice").await;

    let new = password("a brand new long secret");
    accounts::set_password(&db, &ctx(), &alice.id, Some(PASSWORD), new, Some(&laptop.id)).await.unwrap();
    assert!(accounts::authenticate(&db, &laptop.token).await.unwrap().is_some(), "the token in use keeps working");
    assert!(accounts::authenticate(&db, &phone.token).await.unwrap().is_none(), "other tokens are revoked");

    accounts::set_password(&db, &ctx(), &alice.id, None, password("reset by an administrator"), None).await.unwrap();
    assert!(accounts::authenticate(&db, &laptop.token).await.unwrap().is_none(), "a reset revokes them all");
}
