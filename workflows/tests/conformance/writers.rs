//! Writers side by side: transitions of different changes do not wait for each other on PostgreSQL,
//! writers of the same record take turns on every engine, a writer of everything waits for all of them,
//! concurrent votes see each other, and the audit chain stays whole however the commits interleave.

use crate::change_support::*;
use crate::support::*;
use std::time::Duration;
use tollgate_workflows::approval::Rule;
use tollgate_workflows::audit::{self, VerifyReport};
use tollgate_workflows::change::ChangeKind;
use tollgate_workflows::{cmdb, Db, Engine};

/// Whether `task` is still waiting after a moment.
async fn still_waiting<T>(task: &tokio::task::JoinHandle<T>) -> bool {
    tokio::time::sleep(Duration::from_millis(300)).await;
    !task.is_finished()
}

/// Opens a writer of `key`, writes an audit record and commits: the whole life of a keyed writer.
fn keyed_writer(db: &Db, key: &'static str) -> tokio::task::JoinHandle<()> {
    let db = db.clone();
    tokio::spawn(async move {
        let me = ctx();
        let mut tx = db.write_locking(&me, key).await.expect("the writer begins");
        tx.audit::<(), &str>("test.write", "test", key, None, Some(&key)).await.expect("it writes");
        tx.commit().await.expect("it commits");
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_of_the_same_record_take_turns() {
    let db = fresh_db().await;
    let me = ctx();
    let first = db.write_locking(&me, "change:a").await.unwrap();

    let second = keyed_writer(&db, "change:a");

    assert!(still_waiting(&second).await, "the second writer of change:a waits for the first");
    first.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), second).await.expect("it goes once the first commits").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_postgresql_writers_of_different_records_do_not_wait_for_each_other() {
    let db = fresh_db().await;
    if db.engine() != Engine::Postgres {
        return; // SQLite has one writer at a time by design.
    }
    let me = ctx();
    let first = db.write_locking(&me, "change:a").await.unwrap();

    let other = keyed_writer(&db, "change:b");

    tokio::time::timeout(Duration::from_secs(10), other)
        .await
        .expect("change:b commits while change:a is open")
        .unwrap();
    first.commit().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_of_everything_waits_for_keyed_writers_and_they_wait_for_it() {
    let db = fresh_db().await;
    let me = ctx();
    let keyed = db.write_locking(&me, "change:a").await.unwrap();

    let everything = {
        let db = db.db.clone();
        tokio::spawn(async move { cmdb::create_ci(&db, &ctx(), service("web")).await.map(|_| ()) })
    };
    assert!(still_waiting(&everything).await, "a CMDB write waits for the open transition");
    keyed.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), everything).await.unwrap().unwrap().unwrap();

    let whole = db.write(&me).await.unwrap();
    let keyed = keyed_writer(&db, "change:b");
    assert!(still_waiting(&keyed).await, "a transition waits for an open CMDB write");
    whole.commit().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), keyed).await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_lifecycles_of_different_changes_keep_the_chain_whole() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    let mut changes = Vec::new();
    for i in 0..8 {
        let title = format!("stop db {i}");
        changes.push(
            request(&db, &s.requester, plan(ChangeKind::Normal, &title, vec![stop(&f.vm.id)], hours(-1, 24))).await,
        );
    }

    let walkers: Vec<_> = changes
        .iter()
        .map(|c| {
            let (db, id) = (db.db.clone(), c.id.clone());
            let (requester, manager) = (s.requester.clone(), s.manager.clone());
            tokio::spawn(async move {
                walk(&db, &id, &requester, &["submit"]).await;
                walk(&db, &id, &manager, &["assess", "request_approval", "cancel"]).await;
            })
        })
        .collect();
    for w in walkers {
        tokio::time::timeout(Duration::from_secs(60), w).await.expect("no writer deadlocks").unwrap();
    }

    let records = audit::count(&db).await.unwrap();
    let report = audit::verify(&db).await.unwrap();
    assert_eq!(report, VerifyReport { records_checked: u64::try_from(records).unwrap(), first_problem: None });
    for c in &changes {
        assert_eq!(state_of(&db, &c.id).await, "cancelled");
        let timeline = tollgate_workflows::change::change_timeline(&db, &c.id, all()).await.unwrap();
        assert!(timeline.items.windows(2).all(|w| w[0].seq < w[1].seq && w[0].at <= w[1].at));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_votes_at_once_that_meet_a_quorum_of_two_approve_the_change_exactly_once() {
    let (db, f) = seeded().await;
    let s = staff(&db).await;
    low_risk_policy(&db, Rule::Quorum(2)).await;
    let petra = approver(&db, "petra", "change-approvers").await;
    let paul = approver(&db, "paul", "change-approvers").await;

    for _ in 0..6 {
        let c = to_approval(&db, &s, low_risk(&f)).await;
        let votes: Vec<_> = [petra.clone(), paul.clone()]
            .into_iter()
            .map(|p| {
                let (db, id) = (db.db.clone(), c.id.clone());
                tokio::spawn(async move { approve(&db, &id, &p).await })
            })
            .collect();
        for v in votes {
            v.await.unwrap().expect("each vote counts");
        }

        assert_eq!(state_of(&db, &c.id).await, "approved", "the second vote saw the first and passed the stage");
        let timeline = tollgate_workflows::change::change_timeline(&db, &c.id, all()).await.unwrap();
        let approvals = timeline.items.iter().filter(|r| r.action == "change.approve").count();
        assert_eq!(approvals, 1, "approved once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_event_fired_twice_at_once_is_accepted_once_and_refused_once() {
    let (db, _fleet) = seeded().await;
    let s = staff(&db).await;

    for i in 0..8 {
        let c = request(&db, &s.requester, plan(ChangeKind::Normal, &format!("twice {i}"), vec![], hours(1, 2))).await;
        let submits: Vec<_> = (0..2)
            .map(|_| {
                let (db, id, requester) = (db.db.clone(), c.id.clone(), s.requester.clone());
                tokio::spawn(async move { fire(&db, &id, &requester, "submit").await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for t in submits {
            outcomes.push(t.await.unwrap());
        }

        assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1, "{outcomes:?}");
        assert_not_allowed(outcomes.into_iter().find(Result::is_err).unwrap());
        assert_eq!(state_of(&db, &c.id).await, "submitted");
        let timeline = tollgate_workflows::change::change_timeline(&db, &c.id, all()).await.unwrap();
        assert_eq!(timeline.items.iter().filter(|r| r.action == "change.submit").count(), 1, "one record per event");
    }
}
