//! Finding changes, and a change's timeline.

use super::ChangeKind;
use crate::clock::to_millis;
use crate::error::StoreResult;
use crate::freeze::Window;
use crate::store::{Db, Filter};
use crate::text::{Page, PageRequest};

use super::record::*;

/// Filters for [`list_changes`].
#[derive(Debug, Clone, Default)]
pub struct ChangeQuery {
    pub state: Option<String>,
    pub kind: Option<ChangeKind>,
    pub requester: Option<String>,
    pub ci_id: Option<String>,
    /// Only changes whose window overlaps this span.
    pub overlapping: Option<Window>,
    /// Substring of the title, any case.
    pub q: Option<String>,
}

/// Changes matching `q`, by window start, then newest first.
pub async fn list_changes(db: &Db, q: &ChangeQuery, page: PageRequest) -> StoreResult<Page<Change>> {
    let mut f = Filter::new();
    if let Some(v) = &q.state {
        f.text("state", "=", v);
    }
    if let Some(k) = q.kind {
        f.text("kind", "=", k.as_str());
    }
    if let Some(v) = &q.requester {
        f.text("requester", "=", v);
    }
    if let Some(ci) = &q.ci_id {
        f.bound("id IN (SELECT change_id FROM change_cis WHERE ci_id = {})", ci);
    }
    if let Some(w) = q.overlapping {
        f.int("window_start", "<", to_millis(w.end));
        f.int("window_end", ">", to_millis(w.start));
    }
    if let Some(text) = &q.q {
        f.contains("title", text);
    }
    let rows: Page<ChangeRow> = f.page(db.pool(), COLUMNS, "changes", "window_start, number DESC", page).await?;
    let items = rows.items.into_iter().map(ChangeRow::into_change).collect::<StoreResult<Vec<_>>>()?;
    Ok(Page { items, total: rows.total, limit: rows.limit, offset: rows.offset })
}

/// The change's history, oldest first: every audit record written about it.
pub async fn change_timeline(db: &Db, id: &str, page: PageRequest) -> StoreResult<Page<crate::audit::AuditRecord>> {
    get_change(db, id).await?;
    let q = crate::audit::AuditQuery {
        entity_type: Some("change".into()),
        entity_id: Some(id.to_owned()),
        ..Default::default()
    };
    crate::audit::list_oldest_first(db, &q, page).await
}
