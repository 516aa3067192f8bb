//! Random event sequences, by people of assorted roles, with and without comments and assignees, never
//! take an incident anywhere its process does not lead, and leave one audit record per accepted event.

use super::*;
use std::collections::BTreeSet;
use tollgate_workflows::incident::get_incident;
use tollgate_workflows::process::{Guard, ProcessDefinition};

const SEEDS: u64 = 20;
const STEPS: usize = 60;

/// What the definition says should happen: `Some(to)` if the event fires, `None` if it is refused.
fn expected(
    def: &ProcessDefinition,
    from: &str,
    event: &str,
    who: &RoleSet,
    comment: Option<&str>,
    assignee_ok: bool,
) -> Option<String> {
    let t = def.transitions.iter().find(|t| t.event == event && t.from.iter().any(|f| f == from))?;
    let holds = |g: &Guard| match g {
        Guard::CommentGiven => comment.is_some_and(|c| !c.trim().is_empty()),
        Guard::AssigneeSet => assignee_ok,
        other => panic!("a guard the incident process does not use: {other:?}"),
    };
    (!t.system && who.permits(&t.roles) && t.guards.iter().all(holds)).then(|| t.to.clone())
}

async fn records(db: &Db, id: &str) -> i64 {
    let q = tollgate_workflows::audit::AuditQuery {
        entity_type: Some("incident".into()),
        entity_id: Some(id.to_owned()),
        ..Default::default()
    };
    tollgate_workflows::audit::list(db, &q, page(1, 0)).await.unwrap().total
}

/// Half the time `good`, an input that lets events through (so the walks get somewhere); else any.
fn likely<'a, T>(rng: &mut Rng, good: &'a T, any: &'a [T]) -> &'a T {
    if rng.below(2) == 0 {
        good
    } else {
        rng.pick(any)
    }
}

#[tokio::test]
async fn random_event_sequences_only_ever_follow_the_declared_transitions() {
    let db = incident_db().await;
    let def = process::get_definition(&db, "incident", None).await.unwrap().definition;
    let bob = assignee(&db, "bob").await;
    let gone = disabled_user(&db, "gone").await;
    let mut events: Vec<&str> = def.transitions.iter().map(|t| t.event.as_str()).collect();
    events.push("teleport");
    let role_sets = [
        roles(&[Role::Operator]),
        roles(&[Role::Requester]),
        roles(&[Role::Viewer]),
        roles(&[Role::Approver, Role::ChangeManager]),
        roles(&[Role::Admin]),
    ];
    let comments = [None, Some(""), Some("  "), Some("checked the host")];
    let assignees = [None, Some(bob.id.as_str()), Some(gone.id.as_str()), Some("no-such-user")];
    let mut fired: BTreeSet<(String, String)> = BTreeSet::new();

    for seed in 1..=SEEDS {
        let mut rng = Rng::new(seed);
        let mut i = open(&db, Level::Medium, Level::Medium).await;
        let (mut state, mut count) = (i.state.clone(), records(&db, &i.id).await);
        for step in 0..STEPS {
            if def.state(&state).is_some_and(|s| s.terminal) {
                // Nothing leaves a terminal state: carry on with a fresh incident.
                i = open(&db, Level::Medium, Level::Medium).await;
                (state, count) = (i.state.clone(), records(&db, &i.id).await);
            }
            let leaving: Vec<&str> =
                def.transitions.iter().filter(|t| t.from.contains(&state)).map(|t| t.event.as_str()).collect();
            let event = if !leaving.is_empty() && rng.below(2) == 0 { *rng.pick(&leaving) } else { *rng.pick(&events) };
            let who = likely(&mut rng, &role_sets[0], &role_sets);
            let comment = *likely(&mut rng, &comments[3], &comments);
            let assignee = *likely(&mut rng, &assignees[1], &assignees);
            let want = expected(&def, &state, event, who, comment, assignee == Some(bob.id.as_str()));
            let at = format!("seed {seed} step {step}: {event} from {state} by {who:?}, {comment:?}, {assignee:?}");

            let result = fire(&db, &i.id, who, event, comment, assignee).await;

            let stored = get_incident(&db, &i.id).await.unwrap();
            let now = records(&db, &i.id).await;
            assert!(def.state(&stored.state).is_some(), "{at}: undeclared state {}", stored.state);
            match (&result, &want) {
                (Ok(after), Some(to)) => {
                    assert_eq!((&after.state, &stored.state), (to, to), "{at}");
                    assert_eq!(now, count + 1, "{at}: an accepted event writes one record");
                    fired.insert((event.to_owned(), state.clone()));
                }
                (Err(StoreError::Transition(_)), None) => {
                    assert_eq!(stored.state, state, "{at}: a refused event moves nothing");
                    assert_eq!(now, count, "{at}: a refused event writes no record");
                }
                _ => panic!("{at}: expected {want:?}, got {result:?}"),
            }
            if let Some(a) = &stored.assignee_id {
                assert_eq!(a, &bob.id, "{at}: only an enabled user is ever the assignee");
            }
            (state, count) = (stored.state, now);
        }
    }
    let declared: BTreeSet<(String, String)> = def
        .transitions
        .iter()
        .filter(|t| !t.system)
        .flat_map(|t| t.from.iter().map(|f| (t.event.clone(), f.clone())))
        .collect();
    assert_eq!(fired, declared, "the walks fired every transition a person may fire at least once");
}
