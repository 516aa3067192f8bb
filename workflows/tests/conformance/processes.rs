//! Process definitions in the store: seeded once, versioned on change, kept per version.

use crate::support::*;
use tollgate_workflows::audit::{self, AuditQuery};
use tollgate_workflows::process::{self, ProcessDefinition, DEFAULTS};
use tollgate_workflows::StoreError;

fn normal() -> ProcessDefinition {
    ProcessDefinition::from_json(DEFAULTS[0].1).unwrap()
}

#[tokio::test]
async fn the_shipped_processes_are_seeded_once_as_version_one() {
    let db = fresh_db().await;
    assert_eq!(process::seed_defaults(&db).await.unwrap(), DEFAULTS.len());
    assert_eq!(process::seed_defaults(&db).await.unwrap(), 0, "a second start seeds nothing");
    let listed = process::list_definitions(&db).await.unwrap();
    let names: Vec<&str> = listed.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["emergency-change", "incident", "normal-change", "standard-change"]);
    assert!(listed.iter().all(|d| d.version == 1 && d.created_by == "system"));
}

#[tokio::test]
async fn a_changed_definition_becomes_the_next_version_and_the_old_one_stays() {
    let db = fresh_db().await;
    process::seed_defaults(&db).await.unwrap();
    let mut changed = normal();
    changed.description = "Now with a longer assessment.".into();

    let (v2, created) = process::define(&db, &ctx(), changed.clone()).await.unwrap();
    assert!(created);
    assert_eq!(v2.version, 2);
    assert_eq!(v2.created_by, "alice");
    assert_eq!(process::get_definition(&db, "normal-change", None).await.unwrap().definition, changed);
    assert_eq!(process::get_definition(&db, "normal-change", Some(1)).await.unwrap().definition, normal());

    let (same, created) = process::define(&db, &ctx(), changed).await.unwrap();
    assert!(!created, "an equal upload changes nothing");
    assert_eq!(same.version, 2);
    let records =
        audit::list(&db, &AuditQuery { action: Some("process.define".into()), ..AuditQuery::default() }, all())
            .await
            .unwrap();
    assert_eq!(records.items[0].entity_id, "normal-change@2");
    assert_eq!(records.total, 5, "four seeds and one change");
}

#[tokio::test]
async fn an_invalid_definition_or_one_that_changes_its_record_kind_is_refused() {
    let db = fresh_db().await;
    process::seed_defaults(&db).await.unwrap();
    let mut broken = normal();
    broken.transitions.retain(|t| t.event != "close");
    assert_invalid(process::define(&db, &ctx(), broken).await, "definition");

    let mut incident_now = normal();
    incident_now.applies_to = tollgate_workflows::process::RecordKind::Incident;
    assert_invalid(process::define(&db, &ctx(), incident_now).await, "applies_to");
    assert_eq!(process::get_definition(&db, "normal-change", None).await.unwrap().version, 1);
}

#[tokio::test]
async fn an_unknown_process_or_version_is_not_found() {
    let db = fresh_db().await;
    process::seed_defaults(&db).await.unwrap();
    assert!(matches!(process::get_definition(&db, "nope", None).await, Err(StoreError::NotFound { .. })));
    assert!(matches!(process::get_definition(&db, "incident", Some(9)).await, Err(StoreError::NotFound { .. })));
}

#[tokio::test]
async fn a_process_still_as_an_earlier_release_shipped_it_follows_the_shipped_one_and_an_edited_one_does_not() {
    let db = fresh_db().await;
    let (incident, old) = process::PREVIOUS[0];
    process::define(
        &db,
        &tollgate_workflows::AuditContext::system("seed-processes"),
        ProcessDefinition::from_json(old).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(process::seed_defaults(&db).await.unwrap(), DEFAULTS.len(), "three seeded, one brought up to date");
    let current = process::get_definition(&db, incident, None).await.unwrap();
    assert_eq!(current.version, 2);
    assert!(current.definition.transitions.iter().any(|t| t.event == "recover" && t.system));
    assert_eq!(process::seed_defaults(&db).await.unwrap(), 0, "a second start changes nothing");

    let mut edited = ProcessDefinition::from_json(old).unwrap();
    edited.description = "Ours.".into();
    process::define(&db, &ctx(), edited.clone()).await.unwrap();
    assert_eq!(process::seed_defaults(&db).await.unwrap(), 0);
    assert_eq!(process::get_definition(&db, incident, None).await.unwrap().definition, edited, "an edit is kept");
}
