//! Changes: the list, the change page (plan, risk, approvals, conflicts, timeline, execution progress that
//! updates live, verification and rollback), the process's events as buttons, and votes.

use super::{base, when, with, WebError, WebResult, WebUser};
use crate::auth::{ApproveChanges, ReadFleet};
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::response::{Redirect, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use tollgate_control::jobs::{self, Job};
use tollgate_workflows::approval::{self, ApprovalStatus, Decision};
use tollgate_workflows::change::{self, Change, ChangeEvent, ChangeQuery, Operation, RollbackStep};
use tollgate_workflows::process::Guard;
use tollgate_workflows::text::PageRequest;
use tollgate_workflows::{cmdb, process, Db};

/// Names of the CIs a change's operations name, by id (a CI since deleted shows its id).
async fn ci_names(db: &Db, c: &Change) -> WebResult<BTreeMap<String, String>> {
    let mut names = BTreeMap::new();
    let mut ids: Vec<&str> = c.ci_ids.iter().map(String::as_str).collect();
    for op in &c.operations {
        ids.extend(op.references().into_iter().map(|(_, id, _)| id));
    }
    for id in ids {
        if names.contains_key(id) {
            continue;
        }
        let name = match cmdb::get_ci(db, id).await {
            Ok(ci) => ci.name,
            Err(tollgate_workflows::StoreError::NotFound { .. }) => id.to_owned(),
            Err(e) => return Err(e.into()),
        };
        names.insert(id.to_owned(), name);
    }
    Ok(names)
}

/// One operation in words.
pub fn describe(op: &Operation, names: &BTreeMap<String, String>) -> String {
    let n = |id: &str| names.get(id).cloned().unwrap_or_else(|| id.to_owned());
    let mib = |m: i64| if m % 1024 == 0 { format!("{} GiB", m / 1024) } else { format!("{m} MiB") };
    match op {
        Operation::Provision { name, image, vcpus, memory_mib, disk_gib, host_id, container, .. } => format!(
            "Provision {} {name} from {image}: {vcpus} vCPU, {} memory, {disk_gib} GiB disk{}",
            if *container { "container" } else { "VM" },
            mib(*memory_mib),
            host_id.as_deref().map_or(", placed by the scheduler".to_owned(), |h| format!(", on host {}", n(h)))
        ),
        Operation::Resize { vm_id, vcpus, memory_mib } => {
            format!("Resize VM {} live to {vcpus} vCPU and {} memory", n(vm_id), mib(*memory_mib))
        }
        Operation::SetQuota {
            vm_id,
            cpu_quota_pct,
            disk_read_bytes_per_sec,
            disk_write_bytes_per_sec,
            disk_iops,
            net_mbit_per_sec,
        } => {
            let mut parts = Vec::new();
            if let Some(p) = cpu_quota_pct {
                parts.push(format!("CPU {p}%"));
            }
            if let Some(b) = disk_read_bytes_per_sec {
                parts.push(format!("disk read {} MB/s", b / 1_000_000));
            }
            if let Some(b) = disk_write_bytes_per_sec {
                parts.push(format!("disk write {} MB/s", b / 1_000_000));
            }
            if let Some(i) = disk_iops {
                parts.push(format!("{i} IOPS"));
            }
            if let Some(m) = net_mbit_per_sec {
                parts.push(format!("network {m} Mbit/s"));
            }
            format!("Set limits on VM {}: {}", n(vm_id), parts.join(", "))
        }
        Operation::Migrate { vm_id, to_host_id, live } => {
            format!("Migrate VM {} {} to host {}", n(vm_id), if *live { "live" } else { "cold" }, n(to_host_id))
        }
        Operation::Evacuate { host_id } => format!("Evacuate host {}", n(host_id)),
        Operation::Stop { vm_id } => format!("Stop VM {}", n(vm_id)),
        Operation::Start { vm_id } => format!("Start VM {}", n(vm_id)),
        Operation::Adopt { host_id, domain } => format!("Adopt domain {domain} on host {}", n(host_id)),
        Operation::Delete { vm_id } => format!("Delete VM {}", n(vm_id)),
    }
}

fn describe_rollback(step: &RollbackStep, names: &BTreeMap<String, String>) -> String {
    match step {
        RollbackStep::Run { operation } => describe(operation, names),
        RollbackStep::RemoveProvisioned { name } => format!("Remove the VM {name} provisioned"),
        RollbackStep::RestoreQuota { vm_id } => {
            format!("Put back the limits VM {} had", names.get(vm_id).map_or(vm_id.as_str(), String::as_str))
        }
        RollbackStep::Release { domain, .. } => format!("Release domain {domain} again, leaving it running"),
        RollbackStep::Manual { reason } => format!("By hand: {reason}"),
    }
}

/// A change in a list or inbox row.
pub fn summary(c: &Change) -> Value {
    json!({
        "id": c.id, "reference": c.reference, "title": c.title, "kind": c.kind.as_str(), "state": c.state,
        "state_label": c.state.replace('_', " "), "requester": c.requester,
        "window": format!("{} – {}", when(c.window_start), when(c.window_end)),
        "risk": {"score": c.risk.score, "level": format!("{:?}", c.risk.level).to_lowercase()},
    })
}

/// The approval status as the pages show it, with whether someone voting as any of `voters` (themselves,
/// then those who delegated to them) may vote now: one of them approves at an open stage and has not been
/// counted, and the person has not voted.
fn approvals_view(status: &ApprovalStatus, voters: &[String], state: &str) -> (Value, bool) {
    let me = voters.first().map_or("", String::as_str);
    let counted = |name: &str| status.votes.iter().any(|v| v.counted_as == name);
    let may_vote = state == "awaiting_approval"
        && !status.votes.iter().any(|v| v.voter == me)
        && status
            .stages
            .iter()
            .any(|s| s.status == "open" && s.approvers.iter().any(|a| voters.contains(a) && !counted(a)));
    let view = json!({
        "policy": status.policy.clone().unwrap_or_else(|| "none".to_owned()),
        "complete": status.complete,
        "stages": status.stages.iter().map(|s| json!({
            "name": s.name, "status": s.status, "approvals": s.approvals,
            "rule": serde_json::to_string(&s.rule).unwrap_or_default().trim_matches('"').to_owned(),
            "approvers": s.approvers.join(", "),
        })).collect::<Vec<_>>(),
        "votes": status.votes.iter().map(|v| json!({
            "voter": v.voter, "counted_as": v.counted_as, "decision": v.decision, "comment": v.comment,
            "at": when(v.at), "delegated": v.voter != v.counted_as,
        })).collect::<Vec<_>>(),
    });
    (view, may_vote)
}

/// The business services a change's CIs reach.
pub async fn impacted_services(db: &Db, c: &Change) -> WebResult<Vec<String>> {
    let mut services = std::collections::BTreeSet::new();
    for id in c.ci_ids.iter().take(20) {
        match cmdb::impact(db, id, 4).await {
            Ok(i) => {
                services.extend(i.services.into_iter().map(|s| s.name));
                if i.ci.kind == cmdb::CiKind::Service {
                    services.insert(i.ci.name);
                }
            }
            Err(tollgate_workflows::StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(services.into_iter().collect())
}

/// What the inbox and the change page show of a change waiting for a vote, and whether someone voting as any
/// of `voters` may vote on it now.
pub async fn decision_view(db: &Db, c: &Change, voters: &[String]) -> WebResult<(Value, bool)> {
    let names = ci_names(db, c).await?;
    let status = approval::approval_status(db, &c.id).await?;
    let (approvals, may_vote) = approvals_view(&status, voters, &c.state);
    let conflicts = change::conflicts_of(db, &c.id).await?;
    let view = with(
        summary(c),
        json!({
            "description": c.description,
            "revision": c.revision,
            "risk_factors": c.risk.factors.iter().filter(|f| f.points > 0).map(|f| json!({
                "factor": f.factor.replace('_', " "), "points": f.points, "detail": f.detail,
            })).collect::<Vec<_>>(),
            "operations": c.operations.iter().map(|o| describe(o, &names)).collect::<Vec<_>>(),
            "rollback": c.rollback.iter().map(|s| describe_rollback(s, &names)).collect::<Vec<_>>(),
            "conflicts": conflicts.iter().map(|k| json!({
                "kind": k.kind, "reference": k.reference, "change_id": k.change_id, "title": k.title, "detail": k.detail,
            })).collect::<Vec<_>>(),
            "services": impacted_services(db, c).await?,
            "approvals": approvals,
            "may_vote": may_vote,
        }),
    );
    Ok((view, may_vote))
}

/// True while a change may still move on its own (its page keeps refreshing its progress).
pub fn live(c: &Change) -> bool {
    !["completed", "rolled_back", "failed", "closed", "cancelled", "rejected"].contains(&c.state.as_str())
}

/// The execution progress of a change: its latest job.
pub fn job_view(job: Option<&Job>) -> Value {
    match job {
        None => json!({"present": false, "state": "", "percent": 0, "step": 0, "steps": 0, "current": "",
                       "log": [], "error": null, "finished": false, "ok": false}),
        Some(j) => {
            let state = serde_json::to_value(j.state).ok().and_then(|v| v.as_str().map(str::to_owned));
            let state = state.unwrap_or_default();
            let finished = ["succeeded", "rolled_back", "failed"].contains(&state.as_str());
            json!({
                "present": true, "state": state.replace('_', " "), "percent": j.percent, "step": j.step,
                "steps": j.steps, "current": j.current, "log": j.log, "error": j.error,
                "finished": finished,
                "ok": state == "succeeded",
            })
        }
    }
}

#[derive(Deserialize)]
pub struct ListQuery {
    state: Option<String>,
    q: Option<String>,
}

pub async fn list(State(state): State<AppState>, user: WebUser, Query(q): Query<ListQuery>) -> WebResult<Response> {
    user.require::<ReadFleet>()?;
    let query = ChangeQuery {
        state: q.state.clone().filter(|s| !s.is_empty() && s.len() <= 64),
        q: q.q.clone().filter(|s| !s.is_empty() && s.len() <= 128),
        ..ChangeQuery::default()
    };
    let page = change::list_changes(&state.db, &query, PageRequest::new(Some(200), None)?).await?;
    let mut items: Vec<&Change> = page.items.iter().collect();
    items.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    Ok(super::render::page(
        "changes",
        &with(
            base(&user, "Changes"),
            json!({"changes": items.into_iter().map(summary).collect::<Vec<_>>(), "total": page.total,
                   "filter": {"state": q.state.unwrap_or_default(), "q": q.q.unwrap_or_default()}}),
        ),
    ))
}

/// The events of the change's process that this person may fire from its state (system events are
/// Tollgate's own and never shown).
async fn events_for(db: &Db, c: &Change, user: &WebUser) -> WebResult<Vec<Value>> {
    let def = process::get_definition(db, &c.process, Some(c.process_version)).await?;
    let mut out = Vec::new();
    for t in def.definition.transitions.iter().filter(|t| !t.system && t.from.contains(&c.state)) {
        if !user.principal.roles.permits(&t.roles) {
            continue;
        }
        let needs_comment = t.guards.contains(&Guard::CommentGiven);
        let needs_review = t.guards.contains(&Guard::ReviewRecorded);
        let danger = ["cancel", "abort", "report_failed"].contains(&t.event.as_str());
        out.push(json!({"event": t.event, "label": t.event.replace('_', " "), "comment": needs_comment,
                        "review": needs_review, "danger": danger}));
    }
    Ok(out)
}

pub async fn page(State(state): State<AppState>, user: WebUser, Path(id): Path<String>) -> WebResult<Response> {
    user.require::<ReadFleet>()?;
    let c = change::get_change(&state.db, &id).await?;
    let voters = super::inbox::voters(&state.db, &user.principal).await?;
    let (view, _) = decision_view(&state.db, &c, &voters).await?;
    let jobs = jobs::jobs_of_change(&state.db, &id).await?;
    let timeline = change::change_timeline(&state.db, &id, PageRequest::new(Some(500), None)?).await?;
    let events = events_for(&state.db, &c, &user).await?;
    let overridden = c.conflict_override.as_ref().is_some_and(|o| o.revision == c.revision);
    Ok(super::render::page(
        "change",
        &with(
            base(&user, &format!("{} {}", c.reference, c.title)),
            json!({
                "change": view,
                "job": job_view(jobs.first()),
                "live": live(&c),
                "events": events,
                "overridden": overridden,
                "review": c.review,
                "timeline": timeline.items.iter().map(|r| json!({
                    "at": when(r.at), "actor": r.actor, "action": r.action,
                    "on_behalf_of": r.on_behalf_of,
                })).collect::<Vec<_>>(),
            }),
        ),
    ))
}

/// The progress part of the change page alone, which the page's script fetches every two seconds while the
/// change is live.
pub async fn progress(State(state): State<AppState>, user: WebUser, Path(id): Path<String>) -> WebResult<Response> {
    user.require::<ReadFleet>()?;
    let c = change::get_change(&state.db, &id).await?;
    let jobs = jobs::jobs_of_change(&state.db, &id).await?;
    Ok(super::render::page(
        "progress",
        &json!({"job": job_view(jobs.first()), "change": summary(&c),
                "live": live(&c)}),
    ))
}

pub async fn event(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<super::EventForm>,
) -> WebResult<Redirect> {
    user.require::<ReadFleet>()?;
    let (event, comment, review) = form.checked()?;
    let e = ChangeEvent { event, comment, review };
    let actor = change::person(&user.principal.roles);
    change::fire_change(&state.db, &user.audit, &id, &actor, e).await?;
    Ok(Redirect::to(&format!("/changes/{id}")))
}

#[derive(Deserialize)]
pub struct VoteForm {
    decision: String,
    comment: Option<String>,
    revision: Option<i64>,
    /// Where to go after: the inbox or the change page.
    back: Option<String>,
}

pub async fn vote(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<VoteForm>,
) -> WebResult<Redirect> {
    user.require::<ApproveChanges>()?;
    let decision = match form.decision.as_str() {
        "approve" => Decision::Approve,
        "reject" => Decision::Reject,
        _ => return Err(WebError::bad_request("the decision must be approve or reject")),
    };
    approval::vote_on_revision(
        &state.db,
        &user.audit,
        &id,
        &user.principal,
        decision,
        form.comment.as_deref(),
        form.revision,
    )
    .await?;
    tracing::info!(change = %id, by = %user.principal.username, ?decision, "vote cast on the dashboard");
    if form.back.as_deref() == Some("inbox") {
        Ok(Redirect::to("/inbox"))
    } else {
        Ok(Redirect::to(&format!("/changes/{id}")))
    }
}
