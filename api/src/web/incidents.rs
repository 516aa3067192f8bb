//! The incident board (open incidents by priority, each with its SLA countdown, breached ones marked) and
//! the incident page (its CIs, its changes, its history, and the process's events as buttons).

use super::{base, span, when, with, WebResult, WebUser};
use crate::auth::ReadFleet;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::response::{Redirect, Response};
use serde_json::{json, Value};
use time::OffsetDateTime;
use tollgate_workflows::incident::{self, Incident, IncidentEvent, IncidentQuery};
use tollgate_workflows::process::Guard;
use tollgate_workflows::text::PageRequest;
use tollgate_workflows::{cmdb, process};

/// An incident on the board: its SLA as the time left (or over) until resolution is due.
fn card(i: &Incident, now: OffsetDateTime) -> Value {
    let left = i.sla.resolution_due_at - now;
    let breached = i.sla.response_breached || i.sla.resolution_breached || left.is_negative();
    let countdown = if i.sla.paused {
        "SLA paused".to_owned()
    } else if left.is_negative() {
        format!("resolution overdue by {}", span(left))
    } else {
        format!("{} left to resolve", span(left))
    };
    json!({
        "id": i.id, "reference": i.reference, "title": i.title, "priority": i.priority.0, "state": i.state.replace('_', " "),
        "major": i.major, "escalated": i.escalated, "breached": breached, "countdown": countdown,
        "due": when(i.sla.resolution_due_at), "reports": i.report_count, "opened": when(i.created_at),
    })
}

pub async fn board(State(state): State<AppState>, user: WebUser) -> WebResult<Response> {
    user.require::<ReadFleet>()?;
    let q = IncidentQuery { open: Some(true), ..IncidentQuery::default() };
    let open = incident::list_incidents(&state.db, &q, PageRequest::new(Some(500), None)?).await?;
    let now = state.db.clock().now();
    let columns: Vec<Value> = (1..=5u8)
        .map(|p| {
            let cards: Vec<Value> = open.items.iter().filter(|i| i.priority.0 == p).map(|i| card(i, now)).collect();
            json!({"priority": p, "count": cards.len(), "incidents": cards})
        })
        .collect();
    let breached = open.items.iter().filter(|i| card(i, now)["breached"] == true).count();
    Ok(super::render::page(
        "incidents",
        &with(base(&user, "Incidents"), json!({"columns": columns, "open": open.total, "breached": breached})),
    ))
}

pub async fn page(State(state): State<AppState>, user: WebUser, Path(id): Path<String>) -> WebResult<Response> {
    user.require::<ReadFleet>()?;
    let i = incident::get_incident(&state.db, &id).await?;
    let now = state.db.clock().now();
    let mut cis = Vec::new();
    for ci_id in &i.ci_ids {
        match cmdb::get_ci(&state.db, ci_id).await {
            Ok(ci) => cis.push(json!({"id": ci.id, "name": ci.name, "kind": ci.kind.as_str()})),
            Err(tollgate_workflows::StoreError::NotFound { .. }) => {
                cis.push(json!({"id": ci_id, "name": ci_id, "kind": "gone"}))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut changes = Vec::new();
    for link in &i.changes {
        let c = tollgate_workflows::change::get_change(&state.db, &link.change_id).await?;
        changes
            .push(json!({"id": c.id, "reference": c.reference, "title": c.title, "state": c.state.replace('_', " "),
                            "link": link.kind.as_str().replace('_', " ")}));
    }
    let def = process::get_definition(&state.db, &i.process, Some(i.process_version)).await?;
    let events: Vec<Value> = def
        .definition
        .transitions
        .iter()
        .filter(|t| !t.system && t.from.contains(&i.state) && user.principal.roles.permits(&t.roles))
        .map(|t| json!({"event": t.event, "label": if t.event == "assign" { "assign to me".to_owned() } else { t.event.replace('_', " ") },
                        "comment": t.guards.contains(&Guard::CommentGiven)}))
        .collect();
    let timeline = incident::timeline(&state.db, &id, PageRequest::new(Some(500), None)?).await?;
    Ok(super::render::page(
        "incident",
        &with(
            base(&user, &format!("{} {}", i.reference, i.title)),
            json!({
                "incident": with(card(&i, now), json!({
                    "description": i.description, "impact": i.impact.as_str(), "urgency": i.urgency.as_str(),
                    "reported_by": i.reported_by, "response_due": when(i.sla.response_due_at),
                })),
                "cis": cis, "changes": changes, "events": events,
                "timeline": timeline.items.iter().map(|r| json!({"at": when(r.at), "actor": r.actor, "action": r.action}))
                    .collect::<Vec<_>>(),
            }),
        ),
    ))
}

pub async fn event(
    State(state): State<AppState>,
    user: WebUser,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<super::EventForm>,
) -> WebResult<Redirect> {
    user.require::<ReadFleet>()?;
    let (event, comment, _) = form.checked()?;
    let assignee_id = (event == "assign").then(|| user.principal.user_id.clone());
    let e = IncidentEvent { event, comment, assignee_id };
    incident::fire(&state.db, &user.audit, &id, &user.principal.roles, e).await?;
    Ok(Redirect::to(&format!("/incidents/{id}")))
}
