//! The approval inbox: the changes waiting for my vote, each with its risk and why, its conflicts, the
//! business services it reaches and its window; approve or reject with a comment, in place.

use super::changes::decision_view;
use super::{base, with, WebResult, WebUser};
use crate::state::AppState;
use axum::extract::State;
use axum::response::Response;
use serde_json::json;
use tollgate_workflows::change::{self, ChangeQuery};
use tollgate_workflows::text::PageRequest;

pub async fn page(State(state): State<AppState>, user: WebUser) -> WebResult<Response> {
    let query = ChangeQuery { state: Some("awaiting_approval".to_owned()), ..ChangeQuery::default() };
    let waiting = change::list_changes(&state.db, &query, PageRequest::new(Some(200), None)?).await?;
    let mut mine = Vec::new();
    for c in &waiting.items {
        let (view, may_vote) = decision_view(&state.db, c, &user.principal.username).await?;
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
            json!({"waiting": mine, "mine": own.into_iter().take(20).map(change::Change::clone)
                .map(|c| super::changes::summary(&c)).collect::<Vec<_>>()}),
        ),
    ))
}
