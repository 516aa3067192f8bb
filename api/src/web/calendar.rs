//! The change calendar, by week or month: each day with the changes whose window touches it, freeze windows
//! shaded, and changes with unresolved conflicts marked.

use super::{base, with, WebResult, WebUser};
use crate::auth::ReadFleet;
use crate::state::AppState;
use axum::extract::{Query, State};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{json, Value};
use time::{Date, Duration, OffsetDateTime, Time};
use tollgate_workflows::change::{self, ChangeQuery};
use tollgate_workflows::freeze::{self, FreezeQuery, Window};
use tollgate_workflows::text::PageRequest;

#[derive(Deserialize)]
pub struct CalendarQuery {
    /// `week` (the default) or `month`.
    view: Option<String>,
    /// A day inside the period, `YYYY-MM-DD`; default today.
    at: Option<String>,
}

const DAY: &[time::format_description::FormatItem<'static>] = time::macros::format_description!("[year]-[month]-[day]");

fn day_text(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

pub async fn page(State(state): State<AppState>, user: WebUser, Query(q): Query<CalendarQuery>) -> WebResult<Response> {
    user.require::<ReadFleet>()?;
    let today = state.db.clock().now().date();
    let at = match q.at.as_deref() {
        Some(text) => {
            Date::parse(text, DAY).map_err(|_| super::WebError::bad_request("at must be a day, e.g. 2026-11-27"))?
        }
        None => today,
    };
    let month = q.view.as_deref() == Some("month");
    // Weeks start on Monday; a month shows the whole weeks that hold its days.
    let (first, days, previous, next) = if month {
        let start = at.replace_day(1).unwrap_or(at);
        let last = (start + Duration::days(31)).replace_day(1).unwrap_or(start) - Duration::days(1);
        let first = start - Duration::days(i64::from(start.weekday().number_days_from_monday()));
        let days = (last - first).whole_days() + 1;
        let days = (days + 6) / 7 * 7;
        (first, days, start - Duration::days(1), last + Duration::days(1))
    } else {
        let first = at - Duration::days(i64::from(at.weekday().number_days_from_monday()));
        (first, 7, first - Duration::days(7), first + Duration::days(7))
    };
    let from = first.with_time(Time::MIDNIGHT).assume_utc();
    let to = from + Duration::days(days);
    let span = Window::new(from, to).map_err(|e| tollgate_workflows::ValidationError::new("at", e.message))?;
    let many = PageRequest::new(Some(500), None)?;
    let changes =
        change::list_changes(&state.db, &ChangeQuery { overlapping: Some(span), ..Default::default() }, many).await?;
    let freezes =
        freeze::list_freezes(&state.db, &FreezeQuery { overlapping: Some(span), ..Default::default() }, many).await?;
    let mut conflicted = std::collections::BTreeSet::new();
    for c in changes.items.iter().filter(|c| super::changes::live(c)) {
        if !change::conflicts_of(&state.db, &c.id).await?.is_empty() {
            conflicted.insert(c.id.clone());
        }
    }
    let overlaps = |a: OffsetDateTime, b: OffsetDateTime, s: OffsetDateTime, e: OffsetDateTime| a < e && s < b;
    let cells: Vec<Value> = (0..days)
        .map(|n| {
            let d = first + Duration::days(n);
            let (s, e) = (d.with_time(Time::MIDNIGHT).assume_utc(), d.with_time(Time::MIDNIGHT).assume_utc() + Duration::days(1));
            let frozen: Vec<&str> = freezes.items.iter().filter(|f| overlaps(f.starts_at, f.ends_at, s, e)).map(|f| f.name.as_str()).collect();
            json!({
                "day": d.day(), "date": day_text(d), "weekday": format!("{}", d.weekday()).chars().take(3).collect::<String>(),
                "today": d == today, "outside": month && d.month() != at.month(),
                "frozen": !frozen.is_empty(), "freezes": frozen.join(", "),
                "changes": changes.items.iter().filter(|c| overlaps(c.window_start, c.window_end, s, e)).map(|c| json!({
                    "id": c.id, "reference": c.reference, "title": c.title, "state": c.state.replace('_', " "),
                    "conflict": conflicted.contains(&c.id),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let weeks: Vec<Value> = cells.chunks(7).map(|w| json!({"days": w})).collect();
    let title = if month { format!("{} {}", at.month(), at.year()) } else { format!("Week of {}", day_text(first)) };
    Ok(super::render::page(
        "calendar",
        &with(
            base(&user, "Change calendar"),
            json!({
                "heading": title, "month": month, "view": if month { "month" } else { "week" }, "weeks": weeks,
                "previous": day_text(previous), "next": day_text(next), "at": day_text(at),
                "freezes": freezes.items.iter().map(|f| json!({"name": f.name, "from": super::when(f.starts_at), "to": super::when(f.ends_at)})).collect::<Vec<_>>(),
            }),
        ),
    ))
}
