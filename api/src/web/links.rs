//! Approve and reject links in approval emails. A link names the change, the revision the email described,
//! the approver, the decision and an expiry, signed with the server's secret; it works once. Following it
//! opens a page that says what it will do and asks to confirm (so a mail scanner that fetches links decides
//! nothing); a used, expired or tampered link, or one to a change edited since, opens a page saying so.

use super::{render, session, WebError, WebResult};
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;
use tollgate_workflows::approval::{self, Decision};
use tollgate_workflows::change::{self, Change};
use tollgate_workflows::{accounts, signing};

/// What a link says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub change_id: String,
    pub revision: i64,
    pub approver_id: String,
    pub decision: Decision,
    /// Unix seconds.
    pub expires: i64,
}

fn decision_word(d: Decision) -> &'static str {
    match d {
        Decision::Approve => "approve",
        Decision::Reject => "reject",
    }
}

impl Link {
    fn parts(&self) -> [String; 6] {
        [
            "approval-link".to_owned(),
            self.change_id.clone(),
            self.revision.to_string(),
            self.approver_id.clone(),
            decision_word(self.decision).to_owned(),
            self.expires.to_string(),
        ]
    }

    /// The link's token: its fields and their signature, joined by dots.
    pub async fn token(&self, state: &AppState) -> WebResult<String> {
        let parts = self.parts();
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let sig = state.web.signer.sign(&state.db, &refs).await?;
        Ok(format!("{}.{}.{}.{}.{}.{sig}", parts[1], parts[2], parts[3], parts[4], parts[5]))
    }

    /// The URL an email carries.
    pub async fn url(&self, state: &AppState) -> WebResult<String> {
        Ok(format!("{}/email/approval?t={}", state.web.base_url, self.token(state).await?))
    }

    /// Reads a token back; `None` when it is malformed or its signature does not match.
    pub async fn verify(state: &AppState, token: &str) -> WebResult<Option<(Link, String)>> {
        let fields: Vec<&str> = token.split('.').collect();
        let [change_id, revision, approver_id, decision, expires, sig] = fields[..] else { return Ok(None) };
        let (Ok(revision), Ok(expires)) = (revision.parse::<i64>(), expires.parse::<i64>()) else { return Ok(None) };
        let decision = match decision {
            "approve" => Decision::Approve,
            "reject" => Decision::Reject,
            _ => return Ok(None),
        };
        let link =
            Link { change_id: change_id.to_owned(), revision, approver_id: approver_id.to_owned(), decision, expires };
        let parts = link.parts();
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        if !state.web.signer.verify(&state.db, &refs, sig).await? {
            return Ok(None);
        }
        Ok(Some((link, sig.to_owned())))
    }
}

/// A page that explains why a link does nothing.
fn refusal(status: StatusCode, title: &str, message: String, change: Option<&Change>) -> Response {
    let mut r = render::page(
        "message",
        &json!({"title": title, "message": message, "user": null, "csrf": "", "back": false,
                "link": change.map(|c| json!({"href": format!("/changes/{}", c.id), "text": format!("Open {}", c.reference)}))}),
    );
    *r.status_mut() = status;
    r
}

fn used(change: &Change) -> Response {
    refusal(
        StatusCode::GONE,
        "This link has already been used",
        format!("Each link in an approval email works once. Open {} to see where it stands.", change.reference),
        Some(change),
    )
}

/// Checks a link against the store: `Ok` with the link, its signature and the change, or the page to show.
async fn check(state: &AppState, token: &str) -> WebResult<Result<(Link, String, Change), Response>> {
    let Some((link, sig)) = Link::verify(state, token).await? else {
        return Ok(Err(refusal(
            StatusCode::BAD_REQUEST,
            "This link is not valid",
            "The link is damaged or was not made by this server. Open the change from the dashboard instead.".into(),
            None,
        )));
    };
    let change = match change::get_change(&state.db, &link.change_id).await {
        Ok(c) => c,
        Err(tollgate_workflows::StoreError::NotFound { .. }) => {
            return Ok(Err(refusal(
                StatusCode::NOT_FOUND,
                "No such change",
                "The change no longer exists.".into(),
                None,
            )))
        }
        Err(e) => return Err(e.into()),
    };
    if state.db.clock().now().unix_timestamp() >= link.expires {
        return Ok(Err(refusal(
            StatusCode::GONE,
            "This link has expired",
            format!("Links in approval emails work for a limited time. Open {} to vote.", change.reference),
            Some(&change),
        )));
    }
    if signing::link_used(&state.db, &sig).await? {
        return Ok(Err(used(&change)));
    }
    if change.revision != link.revision {
        return Ok(Err(refusal(
            StatusCode::CONFLICT,
            "This change was edited after the email was sent",
            format!(
                "The email described revision {} of {}; it is now at revision {}. Nothing was decided: review the \
                 current plan before you vote.",
                link.revision, change.reference, change.revision
            ),
            Some(&change),
        )));
    }
    if change.state != "awaiting_approval" {
        return Ok(Err(refusal(
            StatusCode::CONFLICT,
            "This change is not waiting for approval",
            format!("{} is {}: there is nothing to vote on now.", change.reference, change.state.replace('_', " ")),
            Some(&change),
        )));
    }
    Ok(Ok((link, sig, change)))
}

#[derive(Deserialize)]
pub struct LinkQuery {
    t: String,
}

/// What the link will do, with a button to do it.
pub async fn confirm_page(
    State(state): State<AppState>,
    axum::Extension(csrf): axum::Extension<session::CsrfCookie>,
    headers: axum::http::HeaderMap,
    Query(q): Query<LinkQuery>,
) -> WebResult<Response> {
    let (link, _, change) = match check(&state, &q.t).await? {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    let (view, _) = super::changes::decision_view(&state.db, &change, &[]).await?;
    let approver = accounts::get_user(&state.db, &link.approver_id).await?;
    let token = session::page_token(&state, &csrf, &headers).await?;
    Ok(render::page(
        "email_approval",
        &json!({"title": format!("{} {}", decision_word(link.decision), change.reference), "user": null, "csrf": token,
                "back": false, "change": view, "t": q.t, "approve": link.decision == Decision::Approve,
                "approver": approver.username, "decided": false}),
    ))
}

#[derive(Deserialize)]
pub struct DecideForm {
    t: String,
    comment: Option<String>,
}

/// Casts the vote the link stands for, once.
pub async fn decide(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    axum::Form(form): axum::Form<DecideForm>,
) -> WebResult<Response> {
    let (link, sig, change) = match check(&state, &form.t).await? {
        Ok(found) => found,
        Err(page) => return Ok(page),
    };
    let principal = accounts::principal_of(&state.db, &link.approver_id)
        .await?
        .ok_or_else(|| WebError::forbidden("The approver's account is disabled."))?;
    if !signing::claim_link(&state.db, &sig, &change.id).await? {
        return Ok(used(&change));
    }
    let ctx = crate::auth::audit_of(&principal, &headers);
    let comment = form.comment.as_deref().filter(|c| !c.trim().is_empty());
    let voted = approval::vote_on_revision(
        &state.db,
        &ctx,
        &change.id,
        &principal,
        link.decision,
        comment,
        Some(link.revision),
    )
    .await;
    if let Err(e) = voted {
        // Nothing was decided: the link still works (a rejection without its comment, say).
        signing::release_link(&state.db, &sig).await?;
        return Err(e.into());
    }
    tracing::info!(change = %change.reference, by = %principal.username, decision = decision_word(link.decision), "vote cast from an email link");
    let after = change::get_change(&state.db, &change.id).await?;
    let word = if link.decision == Decision::Approve { "approved" } else { "rejected" };
    Ok(render::page(
        "message",
        &json!({"title": format!("You {word} {}", after.reference), "user": null, "csrf": "", "back": false,
                "message": format!("Your vote is recorded. {} is now {}.", after.reference, after.state.replace('_', " ")),
                "link": {"href": format!("/changes/{}", after.id), "text": format!("Open {}", after.reference)}}),
    )
    .into_response())
}
