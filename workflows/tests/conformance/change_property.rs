//! Random walks of normal, standard and emergency changes: events by people of every role (and by the
//! control plane), votes by members, outsiders and requesters, edits, overrides and the passing of time.
//! After every step a change is somewhere its process leads, its audit trail grew by one record per accepted
//! action and not at all for a refused one, and a change past approval was approved at its current revision.

use crate::change_support::*;
use crate::support::*;
use std::collections::BTreeSet;
use time::Duration;
use tollgate_workflows::accounts::{Principal, Role};
use tollgate_workflows::approval::{self, Decision};
use tollgate_workflows::audit::{self, AuditQuery};
use tollgate_workflows::change::{self, Change, ChangeEvent, ChangeKind, Operation};
use tollgate_workflows::freeze::Window;
use tollgate_workflows::process::{self, Actor, Guard, ProcessDefinition};
use tollgate_workflows::text::Description;
use tollgate_workflows::{AuditContext, Db};

mod model;

use model::*;

const SEEDS: u64 = 20;
const STEPS: usize = 160;
const KINDS: [ChangeKind; 3] = [ChangeKind::Normal, ChangeKind::Standard, ChangeKind::Emergency];
/// What the control plane fires as a change runs; approvals and revisions come from votes and edits.
const EXECUTION: [&str; 4] = ["verify", "complete", "roll_back", "fail"];
/// States a normal or emergency change reaches only through a complete round of approval.
const PAST_APPROVAL: [&str; 8] =
    ["approved", "scheduled", "implementing", "verifying", "completed", "rolled_back", "failed", "closed"];
/// States in which a change books its window: its CIs are what conflict checks see.
const BOOKING: [&str; 7] =
    ["submitted", "assessed", "awaiting_approval", "approved", "scheduled", "implementing", "verifying"];
const COMMENTS: [Option<&str>; 4] = [Some("checked with the service owner"), None, Some(""), Some("  ")];
const TITLES: [&str; 2] = ["random walk", "random walk, revised"];
const REVIEWS: [Option<&str>; 3] = [Some("went as planned"), None, Some(" ")];

async fn records(db: &Db, id: &str) -> i64 {
    let q = AuditQuery { entity_type: Some("change".into()), entity_id: Some(id.to_owned()), ..AuditQuery::default() };
    audit::list(db, &q, page(1, 0)).await.unwrap().total
}

/// One change the walk is driving, as last seen.
struct Slot {
    id: String,
    kind: ChangeKind,
    state: String,
    count: i64,
    revision: i64,
    terminal: bool,
}

struct Walk {
    db: TestDb,
    /// rita (requester), manny (change manager), otto (operator), approvers in and out of groups, and more.
    people: Vec<Principal>,
    plans: Vec<Vec<Operation>>,
}

impl Walk {
    async fn new() -> Walk {
        let (db, f) = seeded().await;
        let s = staff(&db).await;
        let mut people = vec![s.requester, s.manager, s.operator];
        for (n, g) in [("petra", "change-approvers"), ("paul", "change-approvers"), ("carol", "change-advisory-board")]
        {
            people.push(approver(&db, n, g).await);
        }
        people.push(approver(&db, "chris", "change-advisory-board").await);
        people.push(approver(&db, "edna", "emergency-cab").await);
        people.push(person(&db, "oscar", &[Role::Approver]).await);
        people.push(person(&db, "vic", &[Role::Viewer]).await);
        people.push(person(&db, "ada", &[Role::Admin]).await);
        people.push(person(&db, "morgan", &[Role::ChangeManager, Role::Operator]).await);
        let other = create(&db, vm("billing-db-2", Some(&f.host.id), None)).await;
        let critical = host_of(&db, &f, "hv-core", "critical", 64, 262_144).await;
        // Manual work, two VMs shared between the walks' changes (so they conflict), and a medium risk.
        let plans = vec![vec![], vec![stop(&f.vm.id)], vec![stop(&other.id)], vec![evacuate(&critical.id)]];
        Walk { db, people, plans }
    }

    /// A window starting some hours either side of now, one hour to three days long.
    fn window(&self, rng: &mut Rng) -> Window {
        let start = self.db.clock().now() + Duration::hours(rng.below(5) as i64 - 2);
        // Some windows outlast a whole approval round, so normal changes too get to run inside theirs.
        Window::new(start, start + Duration::hours(1 + rng.below(72) as i64)).unwrap()
    }

    async fn open(&self, rng: &mut Rng, kind: ChangeKind) -> Slot {
        let by = if kind == ChangeKind::Emergency && rng.below(2) == 0 { &self.people[2] } else { &self.people[0] };
        // Standard changes must be low risk; the evacuation of a critical host is not.
        let plans = if kind == ChangeKind::Standard { &self.plans[..3] } else { &self.plans[..] };
        let ops = rng.pick(plans).clone();
        let c = request(&self.db, by, plan(kind, "random walk", ops, self.window(rng))).await;
        let count = records(&self.db, &c.id).await;
        Slot { id: c.id, kind, state: c.state, count, revision: c.revision, terminal: false }
    }

    async fn definition(&self, c: &Change) -> ProcessDefinition {
        process::get_definition(&self.db, &c.process, Some(c.process_version)).await.unwrap().definition
    }

    /// Asserts what holds after every step, then brings `s` up to date: the state is declared by the change's
    /// own definition; a move follows a transition fired by one of `by`; the revision moves only by an edit; the
    /// audit trail grew by `grew` records (when known); a change past approval has a complete round for its
    /// revision, and one awaiting approval an open round.
    async fn check(&self, s: &mut Slot, by: &[&str], grew: Option<i64>, at: &str) -> Change {
        let c = change::get_change(&self.db, &s.id).await.unwrap();
        let def = self.definition(&c).await;
        let declared = def.state(&c.state);
        assert!(declared.is_some(), "{at}: {} is in the undeclared state {}", c.reference, c.state);
        let moved = |t: &process::TransitionDef| by.contains(&t.event.as_str()) && t.from.contains(&s.state);
        assert!(
            c.state == s.state || def.transitions.iter().any(|t| moved(t) && t.to == c.state),
            "{at}: {} moved from {} to {} by none of {by:?}",
            c.reference,
            s.state,
            c.state
        );
        if !by.contains(&"revise") {
            assert_eq!(c.revision, s.revision, "{at}: only an edit makes a new revision");
        }
        let count = records(&self.db, &s.id).await;
        match grew {
            Some(n) => assert_eq!(count, s.count + n, "{at}: the audit records of {}", c.reference),
            None => assert!(count >= s.count, "{at}: audit records of {} vanished", c.reference),
        }
        let booked: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT ci_id, window_start, window_end FROM live_change_cis WHERE change_id = $1")
                .bind(&s.id)
                .fetch_all(self.db.pool())
                .await
                .unwrap();
        let mut booked = booked;
        booked.sort();
        let ms = |t: time::OffsetDateTime| (t.unix_timestamp_nanos() / 1_000_000) as i64;
        let mut cis: Vec<(String, i64, i64)> =
            c.ci_ids.iter().map(|ci| (ci.clone(), ms(c.window_start), ms(c.window_end))).collect();
        cis.sort();
        let live = BOOKING.contains(&c.state.as_str());
        assert_eq!(booked, if live { cis } else { Vec::new() }, "{at}: what {} ({}) books", c.reference, c.state);
        if c.kind != ChangeKind::Standard {
            let status = approval::approval_status(&self.db, &s.id).await.unwrap();
            if PAST_APPROVAL.contains(&c.state.as_str()) {
                let approved = status.complete && status.revision == c.revision;
                assert!(
                    approved,
                    "{at}: {} is {} but revision {} is not approved: {status:?}",
                    c.reference, c.state, c.revision
                );
            }
            if c.state == "awaiting_approval" {
                assert!(
                    status.policy.is_some() && !status.complete,
                    "{at}: {} has no open round: {status:?}",
                    c.reference
                );
            }
        }
        (s.state, s.count, s.revision) = (c.state.clone(), count, c.revision);
        s.terminal = declared.is_some_and(|d| d.terminal);
        c
    }

    /// A person (or, now and then, the control plane) fires an event, usually one that leaves the state.
    async fn event(&self, rng: &mut Rng, s: &mut Slot, at: &str) {
        let c = change::get_change(&self.db, &s.id).await.unwrap();
        let def = self.definition(&c).await;
        let from_here = |t: &&process::TransitionDef| t.from.contains(&c.state);
        // Events that move the change on; `cancel` comes up among `any`, so that walks do not end early.
        let onward = |t: &&process::TransitionDef| !t.system && t.event != "cancel" && from_here(t);
        let leaving: Vec<&str> = def.transitions.iter().filter(onward).map(|t| t.event.as_str()).collect();
        let mut any: Vec<&str> = def.transitions.iter().map(|t| t.event.as_str()).collect();
        any.push("teleport");
        let running: Vec<&str> =
            EXECUTION.into_iter().filter(|e| def.transitions.iter().any(|t| t.event == *e && from_here(&t))).collect();
        let (event, actor, ctx, who) = if rng.below(4) == 0 {
            (
                if !running.is_empty() && rng.below(3) > 0 { *rng.pick(&running) } else { *rng.pick(&EXECUTION) },
                Actor::System,
                AuditContext::system("control-plane"),
                "the control plane".to_owned(),
            )
        } else {
            let event = if !leaving.is_empty() && rng.below(3) > 0 { *rng.pick(&leaving) } else { *rng.pick(&any) };
            let t = def.transitions.iter().find(|t| t.event == event && from_here(t));
            let allowed: Vec<&Principal> =
                self.people.iter().filter(|p| t.is_some_and(|t| p.roles.permits(&t.roles))).collect();
            let p = if !allowed.is_empty() && rng.below(2) == 0 { *rng.pick(&allowed) } else { rng.pick(&self.people) };
            (event, change::person(&p.roles), ctx_of(p), p.username.clone())
        };
        // Reviews belong to `close`; now and then one is sent with another event, to be refused.
        let comment = *rng.likely(&COMMENTS);
        let review = if event == "close" || rng.below(8) == 0 { *rng.likely(&REVIEWS) } else { None };
        let guarded = def
            .transitions
            .iter()
            .any(|t| t.event == event && from_here(&t) && t.guards.contains(&Guard::NoUnresolvedConflict));
        let conflicts = if guarded { change::conflicts_of(&self.db, &c.id).await.unwrap().len() } else { 0 };
        let facts = Facts { now: self.db.clock().now(), comment, review, conflicts, actor_id: ctx.actor_id.as_deref() };
        let want = expected(&def, &c, event, &actor, &facts);
        let e = ChangeEvent { event: event.into(), comment: comment.map(Into::into), review: review.map(Into::into) };

        let got = change::fire_change(&self.db, &ctx, &c.id, &actor, e).await;

        let at =
            format!("{at}: {event} on {} ({}) by {who}, comment {comment:?}, review {review:?}", c.reference, c.state);
        assert_eq!(got.as_ref().map(|c| c.state.clone()).map_err(refusal), want, "{at}");
        let by: &[&str] = if got.is_ok() { &[event] } else { &[] };
        self.check(s, by, Some(i64::from(got.is_ok())), &at).await;
    }

    /// Someone votes: usually an approver of the open stage, sometimes the requester, anyone else otherwise.
    async fn vote(&self, rng: &mut Rng, s: &mut Slot, at: &str) {
        let c = change::get_change(&self.db, &s.id).await.unwrap();
        let status = approval::approval_status(&self.db, &c.id).await.unwrap();
        let open: Vec<&Principal> = (status.stages.iter().filter(|st| st.status == "open"))
            .flat_map(|st| st.approvers.iter().filter_map(|u| self.people.iter().find(|p| p.username == *u)))
            .collect();
        let requester = self.people.iter().find(|p| p.user_id == c.requester_id).unwrap();
        let voter = match rng.below(6) {
            0..=2 if !open.is_empty() => *rng.pick(&open),
            3 => requester,
            _ => rng.pick(&self.people),
        };
        let decision = if rng.below(4) == 0 { Decision::Reject } else { Decision::Approve };
        let comment = *rng.pick(&[None, Some(" "), Some("the rollback plan is sound")]);
        let want = vote_expected(&c, &status, voter, decision, comment);

        let got = approval::vote(&self.db, &ctx_of(voter), &c.id, voter, decision, comment).await;

        let at = format!("{at}: {} {decision:?} {} ({}), {comment:?}", voter.username, c.reference, c.state);
        assert_eq!(got.as_ref().map(|_| ()).map_err(refusal), want, "{at}");
        let after = change::get_change(&self.db, &c.id).await.unwrap().state;
        if let Ok(st) = &got {
            let to = match decision {
                Decision::Reject => "rejected",
                Decision::Approve if st.complete => "approved",
                Decision::Approve => "awaiting_approval",
            };
            assert_eq!(after, to, "{at}: {st:?}");
        }
        let grew = i64::from(got.is_ok()) + i64::from(after != c.state);
        let by: &[&str] = if got.is_ok() { &["approve", "reject"] } else { &[] };
        self.check(s, by, Some(grew), &at).await;
    }

    /// The requester edits the window or title (now and then from a stale revision), or a change manager
    /// overrides the conflicts of the current revision.
    async fn edit(&self, rng: &mut Rng, s: &mut Slot, at: &str) {
        let c = change::get_change(&self.db, &s.id).await.unwrap();
        if rng.below(3) == 0 {
            let reason = Description::parse("reason", "the overlap is agreed with the other team").unwrap();
            let got = change::override_conflicts(&self.db, &ctx_of(&self.people[1]), &c.id, reason).await;
            let live = ["draft", "submitted", "assessed", "awaiting_approval", "approved", "scheduled"];
            if !live.contains(&c.state.as_str()) {
                assert_eq!(
                    got.map_err(|e| refusal(&e)).map(|_| ()),
                    Err("conflict".into()),
                    "{at}: nothing to override"
                );
                self.check(s, &[], Some(0), &format!("{at}: override on {}", c.reference)).await;
                return;
            }
            let o = got.unwrap().conflict_override.unwrap();
            assert_eq!(o.revision, c.revision, "{at}: an override binds to the current revision");
            self.check(s, &[], Some(1), &format!("{at}: override on {}", c.reference)).await;
            return;
        }
        let window =
            if rng.below(3) > 0 { self.window(rng) } else { Window::new(c.window_start, c.window_end).unwrap() };
        let title = *rng.pick(&TITLES);
        let spec = plan(c.kind, title, c.operations.clone(), window);
        let expected_revision = *rng.pick(&[None, Some(c.revision), Some(c.revision - 1)]);

        let got = change::update_change(&self.db, &ctx_of(&self.people[0]), &c.id, spec, expected_revision).await;

        let at = format!("{at}: edit {} ({}, revision {}) at {expected_revision:?}", c.reference, c.state, c.revision);
        let stale = expected_revision.is_some_and(|r| r != c.revision);
        let editable = EDITABLE.contains(&c.state.as_str());
        match &got {
            Ok(after) => {
                assert!(!stale && editable, "{at}: the edit was accepted");
                let def = self.definition(&c).await;
                let revise = def.transitions.iter().find(|t| t.event == "revise" && t.from.contains(&c.state));
                assert_eq!(&after.state, revise.map_or(&c.state, |t| &t.to), "{at}: an edit revises what was approved");
            }
            // A scheduled standard change stays scheduled, so its edited plan must pass the scheduling checks.
            Err(e) => {
                let may_refuse = stale || !editable || (c.kind == ChangeKind::Standard && c.state == "scheduled");
                assert!(refusal(e) == "conflict" && may_refuse, "{at}: {e:?}");
            }
        }
        let by: &[&str] = if got.is_ok() { &["revise"] } else { &[] };
        let after = self.check(s, by, Some(i64::from(got.is_ok())), &at).await;
        assert_eq!(after.revision, c.revision + i64::from(got.is_ok()), "{at}");
    }

    /// Time passes and the approval timers run, as the server's loop runs them.
    async fn pass_time(&self, rng: &mut Rng, slots: &mut [Slot], at: &str) {
        let by = *rng.pick(&[Duration::minutes(20), Duration::minutes(70), Duration::hours(6), Duration::hours(25)]);
        self.db.clock().advance(by);
        approval::sweep_timeouts(&self.db).await.unwrap();
        for s in slots {
            self.check(s, &["approve", "reject"], None, &format!("{at}: {by} passed")).await;
        }
    }
}

#[tokio::test]
async fn random_events_votes_edits_and_time_only_ever_follow_the_declared_transitions() {
    let w = Walk::new().await;
    let mut reached: BTreeSet<(ChangeKind, String)> = BTreeSet::new();
    for seed in 1..=SEEDS {
        let mut rng = Rng::new(seed);
        let mut slots = Vec::new();
        for kind in KINDS {
            slots.push(w.open(&mut rng, kind).await);
        }
        for step in 0..STEPS {
            let at = format!("seed {seed} step {step}");
            let k = rng.below(slots.len());
            let roll = rng.below(10);
            match roll {
                0..=5 => w.event(&mut rng, &mut slots[k], &at).await,
                6 | 7 => w.vote(&mut rng, &mut slots[k], &at).await,
                8 => w.edit(&mut rng, &mut slots[k], &at).await,
                _ => w.pass_time(&mut rng, &mut slots, &at).await,
            }
            // The timers may act on every change and check them all; anything else touches only slot k.
            for (i, s) in slots.iter_mut().enumerate().filter(|(i, _)| roll < 9 && *i != k) {
                w.check(s, &[], Some(0), &format!("{at}: slot {i} was not touched")).await;
            }
            for s in &mut slots {
                reached.insert((s.kind, s.state.clone()));
                if s.terminal {
                    *s = w.open(&mut rng, s.kind).await;
                }
            }
        }
    }
    // The walks are not stuck: each kind went all the way to closed, through most of its process.
    for kind in KINDS {
        let states: Vec<&str> = reached.iter().filter(|(k, _)| *k == kind).map(|(_, s)| s.as_str()).collect();
        assert!(states.contains(&"closed") && states.len() >= 8, "{kind:?} changes only reached {states:?}");
    }
}
