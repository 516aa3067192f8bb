//! The impact walk: breadth-first from a CI along "who needs this" edges, bounded in depth and size,
//! visiting each CI once so cycles end the walk instead of looping it.

use super::{CiKind, RelationKind};
use crate::error::{StoreError, StoreResult};
use crate::store::{bind_list, Db};
use serde::Serialize;
use sqlx::any::AnyArguments;
use sqlx::AnyConnection;
use std::collections::{HashMap, HashSet};

/// A CI named in an impact report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CiRef {
    pub id: String,
    pub kind: CiKind,
    pub name: String,
}

/// A CI affected by the failure, and the edge through which the failure reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Affected {
    pub ci: CiRef,
    /// Steps from the failed CI.
    pub depth: u32,
    /// `contains` (structural), `runs-on`, `depends-on` or `member-of`.
    pub via: String,
    /// The CI one step closer to the failure.
    pub from_id: String,
}

/// What fails, or degrades, when a CI fails.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Impact {
    pub ci: CiRef,
    pub max_depth: u32,
    /// True when the depth or size bound stopped the walk with edges left to follow.
    pub truncated: bool,
    /// The business services among the affected CIs.
    pub services: Vec<CiRef>,
    pub affected: Vec<Affected>,
}

/// The walk stops after this many affected CIs, however deep.
const MAX_AFFECTED: usize = 50_000;
const CHUNK: usize = 400;

struct Edge {
    id: String,
    kind: String,
    name: String,
    from: String,
    via: &'static str,
}

/// Walks what depends on `id`, up to `max_depth` steps.
pub async fn impact(db: &Db, id: &str, max_depth: u32) -> StoreResult<Impact> {
    let mut conn = db.pool().acquire().await?;
    impact_in(&mut conn, id, max_depth).await
}

/// [`impact`] on a given connection, e.g. inside a write transaction.
pub async fn impact_in(conn: &mut AnyConnection, id: &str, max_depth: u32) -> StoreResult<Impact> {
    let root = super::fetch_ci(conn, id).await?.ok_or_else(|| StoreError::not_found("CI", id))?;
    impact_from(conn, CiRef { id: root.id, kind: root.kind, name: root.name }, max_depth).await
}

/// [`impact_in`] from a CI the caller has already read.
pub(crate) async fn impact_from(conn: &mut AnyConnection, root: CiRef, max_depth: u32) -> StoreResult<Impact> {
    let mut seen: HashSet<String> = HashSet::from([root.id.clone()]);
    let mut affected = Vec::new();
    let mut frontier = vec![root.id.clone()];
    let mut truncated = false;
    for depth in 1..=max_depth.saturating_add(1) {
        if frontier.is_empty() {
            break;
        }
        let mut next = Vec::new();
        for chunk in frontier.chunks(CHUNK) {
            for edge in neighbours(conn, chunk).await? {
                if seen.contains(&edge.id) {
                    continue;
                }
                if depth > max_depth || affected.len() >= MAX_AFFECTED {
                    truncated = true;
                    continue;
                }
                let kind = CiKind::parse(&edge.kind)
                    .ok_or_else(|| StoreError::Internal(format!("stored CI {} has an unknown kind", edge.id)))?;
                seen.insert(edge.id.clone());
                next.push(edge.id.clone());
                affected.push(Affected {
                    ci: CiRef { id: edge.id, kind, name: edge.name },
                    depth,
                    via: edge.via.to_owned(),
                    from_id: edge.from,
                });
            }
        }
        frontier = next;
    }
    let services = affected.iter().filter(|a| a.ci.kind == CiKind::Service).map(|a| a.ci.clone()).collect();
    Ok(Impact { ci: root, max_depth, truncated, services, affected })
}

/// Every CI one step downstream of any of `ids`, in a stable order.
async fn neighbours(conn: &mut AnyConnection, ids: &[String]) -> StoreResult<Vec<Edge>> {
    let list = bind_list(&mut AnyArguments::default(), ids.iter().cloned());
    let queries: [(String, Option<&'static str>); 4] = [
        // Contained CIs fail with their container; a VM's container is the host it runs on.
        (format!("SELECT id, kind, name, parent_id FROM cis WHERE parent_id IN ({list}) ORDER BY kind, name"), None),
        // Whatever runs on or depends on a failed CI.
        (
            format!(
                "SELECT c.id, c.kind, c.name, r.target_id, r.kind FROM ci_relations r JOIN cis c ON c.id = r.source_id \
                 WHERE r.kind IN ('runs-on', 'depends-on') AND r.target_id IN ({list}) ORDER BY c.kind, c.name"
            ),
            Some("relation"),
        ),
        // A group is degraded when a member fails.
        (
            format!(
                "SELECT c.id, c.kind, c.name, r.source_id, r.kind FROM ci_relations r JOIN cis c ON c.id = r.target_id \
                 WHERE r.kind = 'member-of' AND r.source_id IN ({list}) ORDER BY c.kind, c.name"
            ),
            Some("relation"),
        ),
        // A VM's owning service.
        (
            format!(
                "SELECT s.id, s.kind, s.name, v.id FROM cis v JOIN cis s ON s.id = v.service_id \
                 WHERE v.id IN ({list}) ORDER BY s.name"
            ),
            Some("member-of"),
        ),
    ];
    let mut edges = Vec::new();
    for (sql, via) in queries {
        let mut args = AnyArguments::default();
        bind_list(&mut args, ids.iter().cloned());
        let rows = sqlx::query_with(&sql, args).fetch_all(&mut *conn).await?;
        for row in rows {
            use sqlx::Row;
            let id: String = row.try_get(0)?;
            let kind: String = row.try_get(1)?;
            let name: String = row.try_get(2)?;
            let from: String = row.try_get(3)?;
            let via = match via {
                None if kind == CiKind::Vm.as_str() => "runs-on",
                None => "contains",
                Some("relation") => {
                    let rel: String = row.try_get(4)?;
                    RelationKind::parse(&rel).map_or("depends-on", RelationKind::as_str)
                }
                Some(other) => other,
            };
            edges.push(Edge { id, kind, name, from, via });
        }
    }
    let mut seen: HashMap<String, ()> = HashMap::new();
    edges.retain(|e| seen.insert(e.id.clone(), ()).is_none());
    Ok(edges)
}
