//! The audit log: who did what, when, with the state before and after, hash-chained so that an edit,
//! a deletion or a truncation of the stored records is detected by [`verify`].

use crate::clock::{from_millis, to_millis};
use crate::error::StoreResult;
use crate::store::{AuditContext, Db, Filter};
use crate::text::{Page, PageRequest};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, FromRow};
use time::OffsetDateTime;

/// The hash the first record chains from.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

pub(crate) struct AuditEntry<'a> {
    pub action: &'a str,
    pub entity_type: &'a str,
    pub entity_id: &'a str,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// The fields a record's hash covers, in a fixed order.
#[derive(Serialize)]
struct Hashed<'a> {
    seq: i64,
    at_ms: i64,
    actor: &'a str,
    actor_id: Option<&'a str>,
    on_behalf_of: Option<&'a str>,
    request_id: Option<&'a str>,
    action: &'a str,
    entity_type: &'a str,
    entity_id: &'a str,
    before: Option<&'a str>,
    after: Option<&'a str>,
    prev_hash: &'a str,
}

fn hash_of(h: &Hashed<'_>) -> String {
    // Serialising a struct of strings and integers cannot fail.
    let canonical = serde_json::to_vec(h).unwrap_or_default();
    hex::encode(Sha256::digest(&canonical))
}

/// A stored audit record.
#[derive(Debug, Clone, FromRow)]
struct AuditRow {
    seq: i64,
    at: i64,
    actor: String,
    actor_id: Option<String>,
    on_behalf_of: Option<String>,
    request_id: Option<String>,
    action: String,
    entity_type: String,
    entity_id: String,
    before_json: Option<String>,
    after_json: Option<String>,
    prev_hash: String,
    hash: String,
}

impl AuditRow {
    fn hashed(&self) -> Hashed<'_> {
        Hashed {
            seq: self.seq,
            at_ms: self.at,
            actor: &self.actor,
            actor_id: self.actor_id.as_deref(),
            on_behalf_of: self.on_behalf_of.as_deref(),
            request_id: self.request_id.as_deref(),
            action: &self.action,
            entity_type: &self.entity_type,
            entity_id: &self.entity_id,
            before: self.before_json.as_deref(),
            after: self.after_json.as_deref(),
            prev_hash: &self.prev_hash,
        }
    }
}

const COLUMNS: &str = "seq, at, actor, actor_id, on_behalf_of, request_id, action, entity_type, \
                       entity_id, before_json, after_json, prev_hash, hash";

pub(crate) async fn append(
    conn: &mut AnyConnection,
    ctx: &AuditContext,
    at: OffsetDateTime,
    entry: AuditEntry<'_>,
) -> StoreResult<()> {
    let (last_seq, last_hash): (i64, String) =
        sqlx::query_as("SELECT last_seq, last_hash FROM audit_head WHERE id = 1").fetch_one(&mut *conn).await?;
    let row = AuditRow {
        seq: last_seq + 1,
        at: to_millis(at),
        actor: ctx.actor.clone(),
        actor_id: ctx.actor_id.clone(),
        on_behalf_of: ctx.on_behalf_of.clone(),
        request_id: ctx.request_id.clone(),
        action: entry.action.to_owned(),
        entity_type: entry.entity_type.to_owned(),
        entity_id: entry.entity_id.to_owned(),
        before_json: entry.before,
        after_json: entry.after,
        prev_hash: last_hash,
        hash: String::new(),
    };
    let hash = hash_of(&row.hashed());
    sqlx::query(
        "INSERT INTO audit_log (seq, at, actor, actor_id, on_behalf_of, request_id, action, \
         entity_type, entity_id, before_json, after_json, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(row.seq)
    .bind(row.at)
    .bind(&row.actor)
    .bind(&row.actor_id)
    .bind(&row.on_behalf_of)
    .bind(&row.request_id)
    .bind(&row.action)
    .bind(&row.entity_type)
    .bind(&row.entity_id)
    .bind(&row.before_json)
    .bind(&row.after_json)
    .bind(&row.prev_hash)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE audit_head SET last_seq = $1, last_hash = $2 WHERE id = 1")
        .bind(row.seq)
        .bind(&hash)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// An audit record as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub seq: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub actor: String,
    pub actor_id: Option<String>,
    pub on_behalf_of: Option<String>,
    pub request_id: Option<String>,
    pub action: String,
    pub entity_type: String,
    pub entity_id: String,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
    pub hash: String,
}

impl From<AuditRow> for AuditRecord {
    fn from(r: AuditRow) -> Self {
        let parse = |s: Option<String>| s.map(|s| serde_json::from_str(&s).unwrap_or(serde_json::Value::String(s)));
        AuditRecord {
            seq: r.seq,
            at: from_millis(r.at),
            actor: r.actor,
            actor_id: r.actor_id,
            on_behalf_of: r.on_behalf_of,
            request_id: r.request_id,
            action: r.action,
            entity_type: r.entity_type,
            entity_id: r.entity_id,
            before: parse(r.before_json),
            after: parse(r.after_json),
            hash: r.hash,
        }
    }
}

/// Filters for [`list`].
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub entity_type: Option<String>,
    pub entity_id: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    pub request_id: Option<String>,
}

/// Audit records matching `q`, newest first.
pub async fn list(db: &Db, q: &AuditQuery, page: PageRequest) -> StoreResult<Page<AuditRecord>> {
    list_ordered(db, q, page, "seq DESC").await
}

/// Audit records matching `q`, oldest first: a record's history in the order it happened.
pub async fn list_oldest_first(db: &Db, q: &AuditQuery, page: PageRequest) -> StoreResult<Page<AuditRecord>> {
    list_ordered(db, q, page, "seq").await
}

async fn list_ordered(db: &Db, q: &AuditQuery, page: PageRequest, order: &str) -> StoreResult<Page<AuditRecord>> {
    let mut f = Filter::new();
    if let Some(v) = &q.entity_type {
        f.text("entity_type", "=", v);
    }
    if let Some(v) = &q.entity_id {
        f.text("entity_id", "=", v);
    }
    if let Some(v) = &q.actor {
        f.text("actor", "=", v);
    }
    if let Some(v) = &q.action {
        f.text("action", "=", v);
    }
    if let Some(v) = &q.request_id {
        f.text("request_id", "=", v);
    }
    let rows: Page<AuditRow> = f.page(db.pool(), COLUMNS, "audit_log", order, page).await?;
    Ok(rows.map(AuditRecord::from))
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    /// Records checked before the first problem (all of them when the log is intact).
    pub records_checked: u64,
    pub first_problem: Option<Tampered>,
}

/// The first record that does not match the chain, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tampered {
    pub seq: i64,
    pub reason: String,
}

impl std::fmt::Display for Tampered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit record {} has been tampered with: {}", self.seq, self.reason)
    }
}

/// Walks the whole chain in order and reports the first record that breaks it.
pub async fn verify(db: &Db) -> StoreResult<VerifyReport> {
    const BATCH: i64 = 1000;
    let mut expected_seq = 1_i64;
    let mut prev_hash = GENESIS_HASH.to_owned();
    let mut checked = 0_u64;
    let sql = format!("SELECT {COLUMNS} FROM audit_log WHERE seq >= $1 ORDER BY seq LIMIT $2");
    loop {
        let rows: Vec<AuditRow> = sqlx::query_as(&sql).bind(expected_seq).bind(BATCH).fetch_all(db.pool()).await?;
        let done = (rows.len() as i64) < BATCH;
        for row in rows {
            let problem = if row.seq != expected_seq {
                Some((expected_seq, format!("record {expected_seq} is missing (next is {})", row.seq)))
            } else if row.prev_hash != prev_hash {
                Some((row.seq, "its link to the previous record does not match".to_owned()))
            } else if hash_of(&row.hashed()) != row.hash {
                Some((row.seq, "its content does not match its hash".to_owned()))
            } else {
                None
            };
            if let Some((seq, reason)) = problem {
                return Ok(VerifyReport { records_checked: checked, first_problem: Some(Tampered { seq, reason }) });
            }
            prev_hash = row.hash;
            expected_seq += 1;
            checked += 1;
        }
        if done {
            break;
        }
    }
    let (last_seq, last_hash): (i64, String) =
        sqlx::query_as("SELECT last_seq, last_hash FROM audit_head WHERE id = 1").fetch_one(db.pool()).await?;
    let problem = if last_seq >= expected_seq {
        Some(Tampered { seq: expected_seq, reason: format!("records {expected_seq} to {last_seq} are missing") })
    } else if last_seq != expected_seq - 1 || last_hash != prev_hash {
        Some(Tampered { seq: last_seq, reason: "the chain head does not match the last record".to_owned() })
    } else {
        None
    };
    Ok(VerifyReport { records_checked: checked, first_problem: problem })
}

/// The number of records in the log.
pub async fn count(db: &Db) -> StoreResult<i64> {
    let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM audit_log").fetch_one(db.pool()).await?;
    Ok(n)
}
