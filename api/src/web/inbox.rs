//! The approval inbox: the changes waiting for my vote (or for the vote of someone whose approvals are
//! delegated to me now), each with its risk and why, its conflicts, the
//! business services it reaches and its window; approve or reject with a comment, in place.

use super::changes::decision_view;
use super::{base, with, WebResult, WebUser};
use crate::state::AppState;
use axum::extract::State;
use axum::response::Response;
use serde_json::json;
use tollgate_workflows::accounts::{self, Principal};
use tollgate_workflows::approval;
use tollgate_workflows::change::{self, ChangeQuery};
use tollgate_workflows::text::PageRequest;
use tollgate_workflows::Db;

/// Whom a person votes as: themselves, then everyone whose delegation to them is running now.
pub async fn voters(db: &Db, me: &Principal) -> WebResult<Vec<String>> {
    let now = db.clock().now();
    let mut names = vec![me.username.clone()];
    for d in approval::delegations_of(db, &me.user_id).await? {
        if d.to_user_id == me.user_id && d.starts_at <= now && now < d.ends_at {
            names.push(accounts::get_user(db, &d.from_user_id).await?.username);
        }
    }
    Ok(names)
}

pub async fn page(State(state): State<AppState>, user: WebUser) -> WebResult<Response> {
    let voters = voters(&state.db, &user.principal).await?;
    let query = ChangeQuery { state: Some("awaiting_approval".to_owned()), ..ChangeQuery::default() };
    let waiting = change::list_changes(&state.db, &query, PageRequest::new(Some(200), None)?).await?;
    let mut mine = Vec::new();
    for c in &waiting.items {
        let (view, may_vote) = decision_view(&state.db, c, &voters).await?;
        if may_vote {
            mine.push(view);
        }
    }
    // My own requests, to follow them.
    let query = ChangeQuery { requester: Some(user.principal.username.clone()), ..ChangeQuery::default() };
    let own = change::list_changes(&state.db, &query, PageRequest::new(Some(50), None)?).await?;
    let mut own: Vec<_> = own.items.iter().collect();
    own.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    Ok(super::render::page(
        "inbox",
        &with(
            base(&user, "Approval inbox"),
            json!({"waiting": mine, "acting_for": voters[1..].join(", "), "mine": own.into_iter().take(20).map(change::Change::clone)
                .map(|c| super::changes::summary(&c)).collect::<Vec<_>>()}),
        ),
    ))
}
