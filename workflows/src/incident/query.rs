//! Finding incidents, and an incident's timeline.

use super::Priority;
use crate::audit::{self, AuditQuery, AuditRecord};
use crate::error::StoreResult;
use crate::store::{Db, Filter};
use crate::text::{Page, PageRequest};

use super::record::*;

/// Filters for [`list_incidents`].
#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    pub state: Option<String>,
    pub priority: Option<Priority>,
    pub assignee_id: Option<String>,
    pub major: Option<bool>,
    /// Only incidents still running (not resolved or closed).
    pub open: Option<bool>,
    pub breached: Option<bool>,
    /// Substring of the title, any case.
    pub q: Option<String>,
}

/// Incidents matching `q`, most urgent first, newest first within a priority.
pub async fn list_incidents(db: &Db, q: &IncidentQuery, page: PageRequest) -> StoreResult<Page<Incident>> {
    let mut f = Filter::new();
    if let Some(v) = &q.state {
        f.text("state", "=", v);
    }
    if let Some(p) = q.priority {
        f.int("priority", "=", i64::from(p.0));
    }
    if let Some(v) = &q.assignee_id {
        f.text("assignee_id", "=", v);
    }
    if let Some(m) = q.major {
        f.int("major", "=", i64::from(m));
    }
    if let Some(open) = q.open {
        f.raw(if open { "resolved_at IS NULL" } else { "resolved_at IS NOT NULL" });
    }
    if let Some(b) = q.breached {
        f.raw(if b {
            "(response_breached = 1 OR resolution_breached = 1)"
        } else {
            "(response_breached = 0 AND resolution_breached = 0)"
        });
    }
    if let Some(text) = &q.q {
        f.contains("title", text);
    }
    let rows: Page<IncidentRow> = f.page(db.pool(), COLUMNS, "incidents", "priority, number DESC", page).await?;
    let mut conn = db.pool().acquire().await?;
    let mut items = Vec::with_capacity(rows.items.len());
    for row in rows.items {
        let cis = ci_ids(&mut conn, &row.id).await?;
        let changes = change_links(&mut conn, &row.id).await?;
        items.push(row.into_incident(cis, changes)?);
    }
    Ok(Page { items, total: rows.total, limit: rows.limit, offset: rows.offset })
}

/// The incident's history, oldest first: every audit record written about it.
pub async fn timeline(db: &Db, id: &str, page: PageRequest) -> StoreResult<Page<AuditRecord>> {
    get_incident(db, id).await?;
    let q =
        AuditQuery { entity_type: Some("incident".into()), entity_id: Some(id.to_owned()), ..AuditQuery::default() };
    audit::list_oldest_first(db, &q, page).await
}
