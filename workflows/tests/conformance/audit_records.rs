//! The audit record each mutation leaves (who, what, before, after), and the one a failed mutation does not.

use crate::support::*;
use serde_json::json;
use time::Duration;
use tollgate_workflows::accounts::{self, GroupSpec, Role, RoleSet, UserUpdate};
use tollgate_workflows::audit::{self, AuditQuery, AuditRecord};
use tollgate_workflows::cmdb::{self, RelationKind};
use tollgate_workflows::text::{Description, Page};
use tollgate_workflows::{AuditContext, Db};

fn actions(records: &[AuditRecord]) -> Vec<&str> {
    records.iter().map(|r| r.action.as_str()).collect()
}

async fn everything(db: &Db) -> Vec<AuditRecord> {
    audit::list(db, &AuditQuery::default(), all()).await.unwrap().items
}

async fn filtered(db: &Db, q: AuditQuery) -> Page<AuditRecord> {
    audit::list(db, &q, all()).await.unwrap()
}

#[tokio::test]
async fn every_change_to_an_item_is_recorded_newest_first_with_its_before_and_after() {
    let db = fresh_db().await;
    let eu = create(&db, region("eu-west")).await;
    create(&db, region("us-east")).await;
    db.clock().advance(Duration::minutes(1));
    cmdb::update_ci(&db, &ctx(), &eu.id, region("eu-central"), Some(1)).await.unwrap();
    db.clock().advance(Duration::minutes(1));
    cmdb::delete_ci(&db, &ctx(), &eu.id).await.unwrap();
    audit::seal(&db).await.unwrap();

    let records = audit_of(&db, "ci", &eu.id).await;

    assert_eq!(actions(&records), ["ci.delete", "ci.update", "ci.create"]);
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 3, 1]);
    let [deleted, updated, created] = &records[..] else { unreachable!() };
    assert_eq!(created.before, None);
    let after = created.after.as_ref().expect("a creation records the new state");
    assert_eq!((&after["name"], &after["kind"], &after["revision"]), (&json!("eu-west"), &json!("region"), &json!(1)));
    let before = updated.before.as_ref().unwrap();
    let after = updated.after.as_ref().unwrap();
    assert_eq!((&before["name"], &before["revision"]), (&json!("eu-west"), &json!(1)));
    assert_eq!((&after["name"], &after["revision"]), (&json!("eu-central"), &json!(2)));
    assert_eq!(deleted.before.as_ref().unwrap()["ci"]["name"], json!("eu-central"));
    assert_eq!(deleted.after, None);
    assert_eq!(
        (created.at, updated.at, deleted.at),
        (START, START + Duration::minutes(1), START + Duration::minutes(2))
    );
    for r in &records {
        assert_eq!((r.actor.as_str(), r.actor_id.as_deref()), ("alice", Some("u-alice")));
        assert_eq!((r.request_id.as_deref(), r.entity_type.as_str()), (Some("req-1"), "ci"));
        assert_eq!(r.entity_id, eu.id);
        assert_eq!(r.hash.as_ref().map(String::len), Some(64), "sealed into the chain");
    }
}

#[tokio::test]
async fn relation_changes_are_recorded_and_a_deletion_records_the_relations_it_removed() {
    let db = fresh_db().await;
    let web = create(&db, service("web")).await;
    let dns = create(&db, service("dns")).await;
    let api = create(&db, service("api")).await;
    let kept = cmdb::create_relation(&db, &ctx(), RelationKind::DependsOn, &web.id, &api.id).await.unwrap();
    let gone = cmdb::create_relation(&db, &ctx(), RelationKind::DependsOn, &web.id, &dns.id).await.unwrap();

    cmdb::delete_relation(&db, &ctx(), &kept.id).await.unwrap();
    cmdb::delete_ci(&db, &ctx(), &dns.id).await.unwrap();

    assert_eq!(actions(&audit_of(&db, "relation", &kept.id).await), ["relation.delete", "relation.create"]);
    let created = &audit_of(&db, "relation", &gone.id).await[0];
    assert_eq!(created.action, "relation.create");
    assert_eq!(created.after.as_ref().unwrap()["target_id"], json!(dns.id));
    let deletion = &audit_of(&db, "ci", &dns.id).await[0];
    assert_eq!(deletion.action, "ci.delete");
    assert_eq!(deletion.before.as_ref().unwrap()["relations"][0]["id"], json!(gone.id));
}

#[tokio::test]
async fn account_changes_are_recorded_without_any_secret() {
    let db = fresh_db().await;
    let alice = user(&db, "alice", &[Role::Viewer]).await;
    let update =
        UserUpdate { display_name: name("Alice"), email: None, roles: RoleSet::new([Role::Operator]), disabled: false };
    accounts::update_user(&db, &ctx(), &alice.id, update).await.unwrap();
    accounts::set_password(&db, &ctx(), &alice.id, Some(PASSWORD), password("the second password"), None)
        .await
        .unwrap();
    let spec = GroupSpec { name: name("ops"), description: Description::default(), roles: RoleSet::default() };
    let ops = accounts::create_group(&db, &ctx(), spec.clone()).await.unwrap();
    accounts::update_group(&db, &ctx(), &ops.id, GroupSpec { name: name("operations"), ..spec }).await.unwrap();
    accounts::set_membership(&db, &ctx(), &ops.id, &alice.id, true).await.unwrap();
    accounts::set_membership(&db, &ctx(), &ops.id, &alice.id, false).await.unwrap();
    accounts::delete_group(&db, &ctx(), &ops.id).await.unwrap();
    let ttl = Duration::hours(1);
    let (issued, me) =
        accounts::issue_token(&db, "alice", "the second password", &name("cli"), ttl, Some("req-9".into()))
            .await
            .unwrap();
    accounts::revoke_token(&db, &ctx(), &issued.id, &me).await.unwrap();

    assert_eq!(actions(&audit_of(&db, "user", &alice.id).await), ["user.password", "user.update", "user.create"]);
    assert_eq!(
        actions(&audit_of(&db, "group", &ops.id).await),
        ["group.delete", "group.remove_member", "group.add_member", "group.update", "group.create"]
    );
    let token = audit_of(&db, "token", &issued.id).await;
    assert_eq!(actions(&token), ["token.revoke", "token.issue"]);
    assert_eq!((token[1].actor.as_str(), token[1].actor_id.as_deref()), ("alice", Some(alice.id.as_str())));
    assert_eq!(token[1].request_id.as_deref(), Some("req-9"));
    let whole_log = serde_json::to_string(&everything(&db).await).unwrap();
    for secret in [PASSWORD, "the second password", issued.token.as_str(), "$argon2", "password_hash"] {
        assert!(!whole_log.contains(secret), "the audit log shows {secret}");
    }
}

#[tokio::test]
async fn the_log_is_filtered_by_actor_action_and_request_and_paged() {
    let db = fresh_db().await;
    let bob = AuditContext { actor: "bob".into(), request_id: Some("req-2".into()), ..ctx() };
    create(&db, region("eu-west")).await;
    let web = create(&db, service("web")).await;
    cmdb::create_ci(&db, &bob, service("dns")).await.unwrap();
    cmdb::update_ci(&db, &bob, &web.id, service("www"), None).await.unwrap();

    let bobs = filtered(&db, AuditQuery { actor: Some("bob".into()), ..Default::default() }).await;
    assert_eq!(actions(&bobs.items), ["ci.update", "ci.create"]);
    let creations = filtered(&db, AuditQuery { action: Some("ci.create".into()), ..Default::default() }).await;
    assert_eq!(creations.items.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 2, 1]);
    let request = filtered(&db, AuditQuery { request_id: Some("req-1".into()), ..Default::default() }).await;
    assert_eq!(request.total, 2);
    let second = audit::list(&db, &AuditQuery::default(), page(2, 1)).await.unwrap();
    assert_eq!(second.items.iter().map(|r| r.seq).collect::<Vec<_>>(), [3, 2]);
    assert_eq!(second.total, 4);
}

#[tokio::test]
async fn a_change_that_fails_leaves_no_record() {
    let db = fresh_db().await;
    let f = fleet(&db).await;
    user(&db, "alice", &[Role::Viewer]).await;
    let web = create(&db, service("web")).await;
    cmdb::create_relation(&db, &ctx(), RelationKind::DependsOn, &web.id, &f.service.id).await.unwrap();
    let before = audit::count(&db).await.unwrap();

    assert_conflict(cmdb::create_ci(&db, &ctx(), region("eu-west")).await);
    assert_invalid(cmdb::create_ci(&db, &ctx(), host("hv-x", &f.region.id)).await, "parent_id");
    assert_conflict(cmdb::update_ci(&db, &ctx(), &f.region.id, region("eu-south"), Some(7)).await);
    assert_conflict(cmdb::update_ci(&db, &ctx(), &web.id, service("billing"), None).await);
    assert_conflict(cmdb::delete_ci(&db, &ctx(), &f.host.id).await);
    assert_conflict(cmdb::create_relation(&db, &ctx(), RelationKind::DependsOn, &web.id, &f.service.id).await);
    assert_conflict(accounts::create_user(&db, &ctx(), new_user("alice", "Alice", &[])).await);
    let dup_group = GroupSpec { name: name("g"), description: Description::default(), roles: RoleSet::default() };
    accounts::create_group(&db, &ctx(), dup_group.clone()).await.unwrap();
    assert_conflict(accounts::create_group(&db, &ctx(), dup_group).await);

    assert_eq!(audit::count(&db).await.unwrap(), before + 1, "only the group creation is recorded");
    let report = audit::verify(&db).await.unwrap();
    assert_eq!(report.first_problem, None);
    assert_eq!(report.records_checked, u64::try_from(before + 1).unwrap());
    let next = create(&db, service("after-the-failures")).await;
    assert_eq!(audit_of(&db, "ci", &next.id).await[0].seq, before + 2, "failures leave no gap in the chain");
}
