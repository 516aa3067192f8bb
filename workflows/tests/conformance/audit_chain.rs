//! The audit hash chain: an intact log verifies; an edit, a deletion or a truncation is reported at the
//! first record it breaks; concurrent writers never fork or gap the chain.

use crate::support::*;
use tollgate_workflows::audit::{self, AuditQuery, VerifyReport};
use tollgate_workflows::Db;
use tollgate_workflows::{accounts, cmdb};

/// Five audited mutations: records 1 to 5.
async fn five_records(db: &Db) {
    for name in ["s1", "s2", "s3", "s4", "s5"] {
        create(db, service(name)).await;
    }
}

async fn verify(db: &Db) -> VerifyReport {
    audit::verify(db).await.expect("verification runs")
}

/// Where the report says the chain first breaks.
fn broken_at(report: &VerifyReport) -> i64 {
    report.first_problem.as_ref().map(|p| p.seq).unwrap_or_else(|| panic!("no problem found: {report:?}"))
}

#[tokio::test]
async fn an_empty_log_verifies() {
    let db = fresh_db().await;

    let report = verify(&db).await;

    assert_eq!(report, VerifyReport { records_checked: 0, first_problem: None });
}

#[tokio::test]
async fn an_intact_log_verifies_and_counts_every_record() {
    let db = fresh_db().await;
    let f = fleet(&db).await;
    cmdb::update_ci(&db, &ctx(), &f.region.id, region("eu-central"), Some(1)).await.unwrap();
    cmdb::delete_ci(&db, &ctx(), &f.vm.id).await.unwrap();

    let report = verify(&db).await;

    assert_eq!(report, VerifyReport { records_checked: 8, first_problem: None });
    assert_eq!(audit::count(&db).await.unwrap(), 8);
}

#[tokio::test]
async fn an_edited_record_is_reported_at_its_sequence_number() {
    let db = fresh_db().await;
    five_records(&db).await;

    assert_eq!(raw_sql(&db, "UPDATE audit_log SET actor = 'mallory' WHERE seq = 3").await, 1);

    let report = verify(&db).await;
    assert_eq!(broken_at(&report), 3);
    assert_eq!(report.records_checked, 2);
}

#[tokio::test]
async fn an_edited_snapshot_is_reported_too() {
    let db = fresh_db().await;
    five_records(&db).await;

    raw_sql(&db, "UPDATE audit_log SET after_json = replace(after_json, 's4', 'sx') WHERE seq = 4").await;

    assert_eq!(broken_at(&verify(&db).await), 4);
    let listed = audit::list(&db, &AuditQuery::default(), all()).await.unwrap();
    assert_eq!(listed.items[1].after.as_ref().unwrap()["name"], "sx", "the edit did reach the log");
}

#[tokio::test]
async fn a_deleted_record_in_the_middle_is_reported() {
    let db = fresh_db().await;
    five_records(&db).await;

    assert_eq!(raw_sql(&db, "DELETE FROM audit_log WHERE seq = 3").await, 1);

    let report = verify(&db).await;
    assert_eq!(broken_at(&report), 3);
    assert_eq!(report.records_checked, 2);
}

#[tokio::test]
async fn a_truncated_tail_is_reported() {
    let db = fresh_db().await;
    five_records(&db).await;

    assert_eq!(raw_sql(&db, "DELETE FROM audit_log WHERE seq = 5").await, 1);

    let report = verify(&db).await;
    assert_eq!(broken_at(&report), 5);
    assert_eq!(report.records_checked, 4);
}

#[tokio::test]
async fn a_log_emptied_entirely_is_reported() {
    let db = fresh_db().await;
    five_records(&db).await;

    raw_sql(&db, "DELETE FROM audit_log").await;

    let report = verify(&db).await;
    assert_eq!(broken_at(&report), 1);
    assert_eq!(report.records_checked, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_keep_the_chain_whole() {
    let db = fresh_db().await;
    let writers: Vec<_> = (0..20)
        .map(|i| {
            let db = db.db.clone();
            tokio::spawn(async move { cmdb::create_ci(&db, &ctx(), service(&format!("svc-{i:02}"))).await })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer task finishes").expect("every concurrent create succeeds");
    }

    let report = verify(&db).await;
    assert_eq!(report, VerifyReport { records_checked: 20, first_problem: None });
    let listed = audit::list(&db, &AuditQuery::default(), all()).await.unwrap();
    let mut seqs: Vec<i64> = listed.items.iter().map(|r| r.seq).collect();
    seqs.reverse();
    assert_eq!(seqs, (1..=20).collect::<Vec<i64>>());
    let mut ids: Vec<&str> = listed.items.iter().map(|r| r.entity_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 20, "each creation has its own record");
    assert_eq!(cmdb::list_cis(&db, &Default::default(), all()).await.unwrap().total, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_of_different_kinds_keep_the_chain_whole() {
    let db = fresh_db().await;
    let f = fleet(&db).await;
    let mut writers = Vec::new();
    for i in 0..10 {
        let (cmdb_db, accounts_db) = (db.db.clone(), db.db.clone());
        let host_id = f.host.id.clone();
        writers.push(tokio::spawn(async move {
            let spec = vm(&format!("vm-{i}"), Some(&host_id), None);
            cmdb::create_ci(&cmdb_db, &ctx(), spec).await.map(drop)
        }));
        writers.push(tokio::spawn(async move {
            let new = new_user(&format!("u{i}"), "U", &[]);
            accounts::create_user(&accounts_db, &ctx(), new).await.map(drop)
        }));
    }
    for writer in writers {
        writer.await.expect("writer task finishes").expect("every concurrent write succeeds");
    }

    assert_eq!(verify(&db).await, VerifyReport { records_checked: 26, first_problem: None });
}
