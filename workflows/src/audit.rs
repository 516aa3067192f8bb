//! The audit log: who did what, when, with the state before and after, hash-chained so that an edit,
//! a deletion or a truncation of the stored records is detected by [`verify`].
//!
//! A record is written in its mutation's transaction, numbered (`seq`) but not yet chained, so that
//! writers never queue on the chain. The sealer ([`seal`]) chains committed records in `seq` order
//! moments later, each at the next position with the hash of the one before; `verify` seals first.
//! A record's content (`audit_log`) is written once; its place in the chain is a row of `audit_chain`,
//! queued unsealed by a trigger as the record is written and filled in by the sealer.

use crate::clock::{from_millis, to_millis};
use crate::error::StoreResult;
use crate::store::{AuditContext, Db, Deferred, Filter, Param};
use crate::text::{Page, PageRequest};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::FromRow;
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
    /// The position in the chain.
    seq: i64,
    /// The record's number, when it differs from its position (records committed out of order).
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<i64>,
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
    chain_pos: Option<i64>,
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
    prev_hash: Option<String>,
    hash: Option<String>,
}

impl AuditRow {
    /// What the hash covers with the record at `pos`, after `prev_hash`.
    fn hashed<'a>(&'a self, pos: i64, prev_hash: &'a str) -> Hashed<'a> {
        Hashed {
            seq: pos,
            record: (pos != self.seq).then_some(self.seq),
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
            prev_hash,
        }
    }
}

/// A record's columns in the `audit_records` view: its content (`audit_log`) and its place in the chain
/// (`audit_chain`).
const COLUMNS: &str = "seq, chain_pos, at, actor, actor_id, on_behalf_of, request_id, action, entity_type, \
                       entity_id, before_json, after_json, prev_hash, hash";

/// The same columns read from the chain joined to the records it holds (`c` and `a`).
const CHAINED: &str = "a.seq, c.chain_pos, a.at, a.actor, a.actor_id, a.on_behalf_of, a.request_id, a.action, \
                       a.entity_type, a.entity_id, a.before_json, a.after_json, c.prev_hash, c.hash \
                       FROM audit_chain c JOIN audit_log a ON a.seq = c.seq";

/// The values of one record, in the order of [`insert_rows`]'s columns.
pub(crate) fn row(ctx: &AuditContext, at: OffsetDateTime, entry: AuditEntry<'_>) -> Vec<Param> {
    vec![
        to_millis(at).into(),
        ctx.actor.as_str().into(),
        ctx.actor_id.clone().into(),
        ctx.on_behalf_of.clone().into(),
        ctx.request_id.clone().into(),
        entry.action.into(),
        entry.entity_type.into(),
        entry.entity_id.into(),
        entry.before.into(),
        entry.after.into(),
    ]
}

/// The statement that writes a transaction's records, numbered in the order given; the sealer chains
/// them once the transaction commits.
pub(crate) fn insert_rows(rows: Vec<Vec<Param>>) -> Deferred {
    Deferred::insert_rows(
        "INSERT INTO audit_log (at, actor, actor_id, on_behalf_of, request_id, action, entity_type, entity_id, \
         before_json, after_json)",
        Vec::new(),
        rows,
    )
}

/// Records chained per sealing transaction.
const SEAL_BATCH: usize = 500;

/// Chains every committed record not yet chained, oldest first; returns how many it sealed.
/// Concurrent sealers (other processes) take turns on the chain's head.
pub async fn seal(db: &Db) -> StoreResult<u64> {
    let mut sealed = 0;
    loop {
        let n = seal_batch(db).await?;
        sealed += n as u64;
        if n < SEAL_BATCH {
            return Ok(sealed);
        }
    }
}

async fn seal_batch(db: &Db) -> StoreResult<usize> {
    let (mut tx, _serial) = db.begin_unaudited().await?;
    let (mut pos, mut prev): (i64, String) =
        sqlx::query_as("UPDATE audit_head SET last_seq = last_seq WHERE id = 1 RETURNING last_seq, last_hash")
            .fetch_one(&mut *tx)
            .await?;
    let sql = format!("SELECT {CHAINED} WHERE c.chain_pos IS NULL ORDER BY c.seq LIMIT $1");
    let rows: Vec<AuditRow> = sqlx::query_as(&sql).bind(SEAL_BATCH as i64).fetch_all(&mut *tx).await?;
    if rows.is_empty() {
        // Roll back now rather than on drop: a dropped transaction is rolled back by a task that a
        // blocked runtime might never run, leaving the head locked.
        tx.rollback().await?;
        return Ok(0);
    }
    let mut sealed = Vec::with_capacity(rows.len());
    for row in &rows {
        pos += 1;
        let hash = hash_of(&row.hashed(pos, &prev));
        sealed.push((row.seq, pos, std::mem::replace(&mut prev, hash.clone()), hash));
    }
    let values = (0..sealed.len())
        .map(|i| format!("(${}, ${}, ${}, ${})", 4 * i + 1, 4 * i + 2, 4 * i + 3, 4 * i + 4))
        .collect::<Vec<_>>()
        .join(", ");
    let update = format!(
        "UPDATE audit_chain SET chain_pos = v.column2, prev_hash = v.column3, hash = v.column4 \
         FROM (VALUES {values}) AS v WHERE audit_chain.seq = v.column1"
    );
    let mut q = sqlx::query(&update);
    for (seq, pos, prev_hash, hash) in &sealed {
        q = q.bind(*seq).bind(*pos).bind(prev_hash).bind(hash);
    }
    q.execute(&mut *tx).await?;
    sqlx::query("UPDATE audit_head SET last_seq = $1, last_hash = $2 WHERE id = 1")
        .bind(pos)
        .bind(&prev)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows.len())
}

/// An audit record as the API shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    /// The record's number, in the order records were written.
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
    /// The record's hash in the chain; absent for the moment between its commit and its sealing.
    pub hash: Option<String>,
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
    let rows: Page<AuditRow> = f.page(db.pool(), COLUMNS, "audit_records", order, page).await?;
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
    /// The record's number; for a missing record, the position in the chain where it should be.
    pub seq: i64,
    pub reason: String,
}

impl std::fmt::Display for Tampered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "audit record {} has been tampered with: {}", self.seq, self.reason)
    }
}

/// Seals what is pending, then walks the whole chain in order and reports the first record that breaks it.
pub async fn verify(db: &Db) -> StoreResult<VerifyReport> {
    const BATCH: i64 = 1000;
    seal(db).await?;
    let mut expected = 1_i64;
    let mut prev_hash = GENESIS_HASH.to_owned();
    let mut checked = 0_u64;
    // Records deleted from the log drop out of the join and show as gaps in the positions.
    let sql = format!("SELECT {CHAINED} WHERE c.chain_pos >= $1 ORDER BY c.chain_pos LIMIT $2");
    loop {
        let rows: Vec<AuditRow> = sqlx::query_as(&sql).bind(expected).bind(BATCH).fetch_all(db.pool()).await?;
        let done = (rows.len() as i64) < BATCH;
        for row in rows {
            let pos = row.chain_pos.unwrap_or_default();
            let problem = if pos != expected {
                Some((expected, format!("record {expected} is missing (next is {pos})")))
            } else if row.prev_hash.as_deref() != Some(prev_hash.as_str()) {
                Some((row.seq, "its link to the previous record does not match".to_owned()))
            } else if row.hash.as_deref() != Some(hash_of(&row.hashed(pos, &prev_hash)).as_str()) {
                Some((row.seq, "its content does not match its hash".to_owned()))
            } else {
                None
            };
            if let Some((seq, reason)) = problem {
                return Ok(VerifyReport { records_checked: checked, first_problem: Some(Tampered { seq, reason }) });
            }
            prev_hash = row.hash.unwrap_or_default();
            expected += 1;
            checked += 1;
        }
        if done {
            break;
        }
    }
    let (last_seq, last_hash): (i64, String) =
        sqlx::query_as("SELECT last_seq, last_hash FROM audit_head WHERE id = 1").fetch_one(db.pool()).await?;
    let problem = if last_seq >= expected {
        Some(Tampered { seq: expected, reason: format!("records {expected} to {last_seq} are missing") })
    } else if last_seq != expected - 1 || last_hash != prev_hash {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: i64) -> AuditRow {
        AuditRow {
            seq,
            chain_pos: None,
            at: 1_700_000_000_000,
            actor: "alice".into(),
            actor_id: Some("u-alice".into()),
            on_behalf_of: None,
            request_id: Some("req-1".into()),
            action: "ci.create".into(),
            entity_type: "ci".into(),
            entity_id: "c-1".into(),
            before_json: None,
            after_json: Some(r#"{"name":"eu"}"#.into()),
            prev_hash: None,
            hash: None,
        }
    }

    #[test]
    fn a_record_at_its_own_position_hashes_as_records_always_have() {
        // Pinned: logs written before records were sealed after commit must keep verifying. This is the
        // SHA-256 of the compact JSON {"seq","at_ms","actor","actor_id","on_behalf_of","request_id","action",
        // "entity_type","entity_id","before","after","prev_hash"} of this record, in that order.
        assert_eq!(
            hash_of(&record(7).hashed(7, GENESIS_HASH)),
            "b9d02f625957f48f7d56353b0cc40ba0f3b4e07f90d323d3b0a2eacb975224a7"
        );
    }

    #[test]
    fn a_record_sealed_at_another_position_binds_its_number_too() {
        let at_own = hash_of(&record(7).hashed(7, GENESIS_HASH));
        assert_ne!(hash_of(&record(7).hashed(8, GENESIS_HASH)), at_own);
        assert_ne!(hash_of(&record(9).hashed(8, GENESIS_HASH)), hash_of(&record(7).hashed(8, GENESIS_HASH)));
    }
}
