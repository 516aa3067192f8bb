//! Evaluating the rules: every few seconds the evaluator reads the points written since its last round (from
//! the store, so whichever server took them), judges each watched series against each rule, and moves the
//! series' alert through pending → firing → resolving → fine.
//!
//! A series is watched by a rule when it is the rule's measurement and field and carries the rule's scope of
//! tags. Its alert's fingerprint (rule and series) is the dedup key of the incident it opens: a firing alert
//! opens or updates that incident through the incident process, linked to the CI its tags name (`vm` → that
//! VM, else `host` → that host). An alert that recovered and stayed so for the rule's quiet period resolves it.
//!
//! Two things hold an incident back, each recorded on the alert: the host-down alert of the host a VM's
//! series comes from (a `silent` rule firing for a series tagged `host` and not `vm`), and a change
//! implementing inside its window on the alert's CI or any CI containing it. An alert still firing once its
//! suppressor is gone opens its incident then, linked to a suppressing change as its likely cause.
//!
//! Thresholds judge a series' latest point no older than [`STALE_NS`]; with none, a pending alert lapses and
//! a firing one holds (a silent rule is the watch for data that stops).

use super::{AlertRule, Condition, RuleRow, COLUMNS};
use crate::clock::{from_millis, to_millis};
use crate::error::{StoreError, StoreResult};
use crate::incident::{self, IncidentEvent, IncidentPolicy, IncidentReport, Level, LinkKind, Reported};
use crate::metrics::store::{decode_segment, tags_of};
use crate::store::{bind_list, AuditContext, Db};
use crate::text::{Description, Name};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::any::AnyArguments;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// A threshold judges only a point at most this old (nanoseconds): five minutes, as Prometheus looks back.
pub const STALE_NS: i64 = 300 * 1_000_000_000;
/// How far back a new evaluator reads points at most, so a host that went silent just before a restart is
/// still seen to have gone silent (nanoseconds).
const MAX_LOOKBACK_NS: i64 = 3600 * 1_000_000_000;
/// Segments read per statement.
const SEGMENTS_PER_READ: i64 = 64;
/// Rounds a missing segment number is looked for again: on PostgreSQL a segment numbered before another can
/// commit after it (another server's write); a number never seen was a rolled-back write.
const HOLE_ROUNDS: u8 = 5;
/// Missing numbers looked for at most; a wider gap (a sequence that jumped) is not a commit running late.
const MAX_HOLES: usize = 256;
/// How often every watched series is read again, catching series another server numbered out of order.
const RELOAD_SERIES_EVERY: u32 = 60;

/// Where an alert stands; a series with no alert is fine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// In trouble, waiting out the rule's `for`.
    Pending,
    Firing,
    /// Recovered, waiting out the rule's quiet period.
    Resolving,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Firing => "firing",
            Phase::Resolving => "resolving",
        }
    }

    fn parse(s: &str) -> Option<Phase> {
        [Phase::Pending, Phase::Firing, Phase::Resolving].into_iter().find(|p| p.as_str() == s)
    }
}

/// How a series looks to a rule this round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Trouble,
    /// Past the recovery threshold (or reporting again).
    Recovered,
    /// Between the thresholds: neither in trouble nor recovered.
    Between,
    /// No point recent enough to judge.
    NoData,
}

/// How a series' latest point `(ns, value)`, if any, looks under `condition` at `now_ns`; `was_alerting`
/// says whether the series already has an alert (a silent series with none read since a restart stays silent).
pub fn judge(condition: &Condition, latest: Option<(i64, f64)>, now_ns: i64, was_alerting: bool) -> Verdict {
    match (*condition, latest) {
        (Condition::Silent { .. }, Some((at, _))) => {
            let window = condition.silence_secs().unwrap_or(0);
            if now_ns.saturating_sub(at) > window.saturating_mul(1_000_000_000) {
                Verdict::Trouble
            } else {
                Verdict::Recovered
            }
        }
        (Condition::Silent { .. }, None) if was_alerting => Verdict::Trouble,
        (_, None) => Verdict::NoData,
        (_, Some((at, _))) if now_ns.saturating_sub(at) > STALE_NS => Verdict::NoData,
        (Condition::Above { threshold, recovery }, Some((_, v))) => {
            if v > threshold {
                Verdict::Trouble
            } else if v <= recovery {
                Verdict::Recovered
            } else {
                Verdict::Between
            }
        }
        (Condition::Below { threshold, recovery }, Some((_, v))) => {
            if v < threshold {
                Verdict::Trouble
            } else if v >= recovery {
                Verdict::Recovered
            } else {
                Verdict::Between
            }
        }
    }
}

/// The alert after a round: from `current` (phase, since ms) under `verdict` at `now_ms`, with the rule's
/// `for` and quiet period in milliseconds.
pub fn step(
    current: Option<(Phase, i64)>,
    verdict: Verdict,
    now_ms: i64,
    for_ms: i64,
    quiet_ms: i64,
) -> Option<(Phase, i64)> {
    use Verdict::*;
    match (current, verdict) {
        (None, Trouble) if for_ms == 0 => Some((Phase::Firing, now_ms)),
        (None, Trouble) => Some((Phase::Pending, now_ms)),
        (None, _) => None,
        (Some((Phase::Pending, since)), Trouble) if now_ms - since >= for_ms => Some((Phase::Firing, now_ms)),
        (Some((Phase::Pending, since)), Trouble) => Some((Phase::Pending, since)),
        (Some((Phase::Pending, _)), _) => None,
        (Some((Phase::Firing, _)), Recovered) if quiet_ms == 0 => None,
        (Some((Phase::Firing, _)), Recovered) => Some((Phase::Resolving, now_ms)),
        (Some((Phase::Firing, since)), _) => Some((Phase::Firing, since)),
        (Some((Phase::Resolving, since)), Recovered) if now_ms - since >= quiet_ms => None,
        (Some((Phase::Resolving, since)), Recovered | NoData) => Some((Phase::Resolving, since)),
        (Some((Phase::Resolving, _)), Trouble | Between) => Some((Phase::Firing, now_ms)),
    }
}

/// An alert as stored and shown.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Alert {
    pub rule_id: String,
    pub rule_name: String,
    /// The rule and series, hashed: the dedup key of its incident is `alert:<fingerprint>`.
    pub fingerprint: String,
    pub measurement: String,
    pub field: String,
    pub tags: std::collections::BTreeMap<String, String>,
    pub state: Phase,
    #[serde(with = "time::serde::rfc3339")]
    pub since: time::OffsetDateTime,
    /// The value last judged (none for a silent series).
    pub value: Option<f64>,
    pub ci_id: Option<String>,
    pub incident_id: Option<String>,
    /// The change implementing on the CI that held the incident back.
    pub suppressed_by_change: Option<String>,
    /// The host-down alert (fingerprint) that held the incident back.
    pub suppressed_by_alert: Option<String>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
struct StateRow {
    rule_id: String,
    fingerprint: String,
    series_id: i64,
    state: String,
    since: i64,
    value: Option<f64>,
    ci_id: Option<String>,
    incident_id: Option<String>,
    suppressed_by_change: Option<String>,
    suppressed_by_alert: Option<String>,
}

const STATE_COLUMNS: &str = "rule_id, fingerprint, series_id, state, since, value, ci_id, incident_id, \
    suppressed_by_change, suppressed_by_alert";

/// A stored alert with its rule's name and its series, as listed.
#[derive(sqlx::FromRow)]
struct AlertRow {
    rule_name: String,
    measurement: Option<String>,
    field: Option<String>,
    tags: Option<String>,
    #[sqlx(flatten)]
    stored: StateRow,
}

/// Every alert not fine, most recent first.
pub async fn list_alerts(db: &Db) -> StoreResult<Vec<Alert>> {
    let rows: Vec<AlertRow> = sqlx::query_as(
        "SELECT s.rule_id, r.name AS rule_name, s.fingerprint, s.series_id, m.measurement, m.field, m.tags, \
         s.state, s.since, s.value, s.ci_id, s.incident_id, s.suppressed_by_change, s.suppressed_by_alert \
         FROM alert_states s JOIN alert_rules r ON r.id = s.rule_id LEFT JOIN metric_series m ON m.id = s.series_id \
         ORDER BY s.since DESC, s.fingerprint",
    )
    .fetch_all(db.pool())
    .await?;
    rows.into_iter()
        .map(|r| {
            let s = r.stored;
            Ok(Alert {
                state: Phase::parse(&s.state).ok_or_else(|| {
                    StoreError::Internal(format!("alert {} has a bad state {:?}", s.fingerprint, s.state))
                })?,
                rule_id: s.rule_id,
                rule_name: r.rule_name,
                fingerprint: s.fingerprint,
                measurement: r.measurement.unwrap_or_default(),
                field: r.field.unwrap_or_default(),
                tags: tags_of(r.tags.as_deref().unwrap_or_default()).into_iter().collect(),
                since: from_millis(s.since),
                value: s.value,
                ci_id: s.ci_id,
                incident_id: s.incident_id,
                suppressed_by_change: s.suppressed_by_change,
                suppressed_by_alert: s.suppressed_by_alert,
            })
        })
        .collect()
}

/// Counts since the evaluator started, for `/metrics`.
#[derive(Debug, Default)]
pub struct EvaluatorTotals {
    /// Rounds completed.
    pub rounds: AtomicU64,
    /// Series judged against rules.
    pub evaluations: AtomicU64,
    /// Alerts that started firing.
    pub fired: AtomicU64,
    /// Firing alerts held back from opening an incident (by a change or a host-down alert).
    pub suppressed: AtomicU64,
}

/// A watched series.
struct Watched {
    measurement: String,
    field: String,
    tags: Vec<(String, String)>,
    canonical: String,
}

impl Watched {
    fn tag(&self, key: &str) -> Option<&str> {
        self.tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    fn describe(&self) -> String {
        if self.canonical.is_empty() {
            format!("{} {}", self.measurement, self.field)
        } else {
            format!("{} {} {}", self.measurement, self.field, self.canonical)
        }
    }
}

/// What a round did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    pub evaluations: u64,
    /// Incidents opened or updated, by id.
    pub reported: Vec<String>,
    /// Incidents resolved, by id.
    pub resolved: Vec<String>,
    /// Alerts newly held back, by fingerprint.
    pub suppressed: Vec<String>,
}

/// The evaluator's memory between rounds: the series the rules watch and their latest points. Lives in one
/// background task per server; everything that matters is in the database, so a restarted evaluator (or
/// another server's) carries on.
pub struct Evaluator {
    db: Db,
    policy: Arc<IncidentPolicy>,
    ctx: AuditContext,
    series: HashMap<i64, Watched>,
    pairs: HashSet<(String, String)>,
    last_series: i64,
    latest: HashMap<i64, (i64, f64)>,
    cursor: Option<i64>,
    holes: Vec<(i64, u8)>,
    rounds: u32,
    totals: Arc<EvaluatorTotals>,
}

fn fingerprint(rule_id: &str, w: &Watched) -> String {
    let mut h = Sha256::new();
    for part in [rule_id, &w.measurement, &w.field, &w.canonical] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..16])
}

/// What the audit log keeps of an alert's step.
#[derive(Serialize)]
struct AlertRecord<'a> {
    rule_id: &'a str,
    rule: &'a str,
    series: String,
    state: &'a str,
    value: Option<f64>,
    ci_id: Option<&'a str>,
    incident_id: Option<&'a str>,
    suppressed_by_change: Option<&'a str>,
    suppressed_by_alert: Option<&'a str>,
}

/// One alert this round: its rule, series, what it was and what it becomes.
struct Judged<'r> {
    rule: &'r AlertRule,
    series_id: i64,
    fingerprint: String,
    before: Option<StateRow>,
    after: Option<(Phase, i64)>,
    value: Option<f64>,
}

impl Evaluator {
    /// An evaluator counting into `totals`.
    pub fn new(db: Db, policy: Arc<IncidentPolicy>, totals: Arc<EvaluatorTotals>) -> Evaluator {
        Evaluator {
            db,
            policy,
            ctx: AuditContext::system("alert-evaluator"),
            series: HashMap::new(),
            pairs: HashSet::new(),
            last_series: 0,
            latest: HashMap::new(),
            cursor: None,
            holes: Vec::new(),
            rounds: 0,
            totals,
        }
    }

    /// One round at the store's clock.
    pub async fn round(&mut self) -> StoreResult<Round> {
        let now_ns = self.db.clock().now_nanos();
        let now_ms = now_ns / 1_000_000;
        let rows: Vec<RuleRow> =
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM alert_rules WHERE enabled = 1 ORDER BY name"))
                .fetch_all(self.db.pool())
                .await?;
        let rules = rows.into_iter().map(RuleRow::into_rule).collect::<StoreResult<Vec<_>>>()?;
        // Alerts of rules since disabled are gone (a write only when there are some: writers queue on SQLite).
        let (stale,): (i64,) = sqlx::query_as(
            "SELECT COUNT(*) FROM alert_states WHERE rule_id NOT IN (SELECT id FROM alert_rules WHERE enabled = 1)",
        )
        .fetch_one(self.db.pool())
        .await?;
        if stale > 0 {
            let mut tx = self.db.write_locking(&self.ctx, "alert-rules").await?;
            sqlx::query("DELETE FROM alert_states WHERE rule_id NOT IN (SELECT id FROM alert_rules WHERE enabled = 1)")
                .execute(tx.conn())
                .await?;
            tx.commit().await?;
        }
        self.learn_series(&rules).await?;
        self.read_points(&rules, now_ns).await?;
        let states: Vec<StateRow> =
            sqlx::query_as(&format!("SELECT {STATE_COLUMNS} FROM alert_states")).fetch_all(self.db.pool()).await?;
        let mut states: HashMap<(String, String), StateRow> =
            states.into_iter().map(|s| ((s.rule_id.clone(), s.fingerprint.clone()), s)).collect();

        let mut judged = Vec::new();
        for rule in &rules {
            let for_ms = i64::try_from(rule.body.for_secs).unwrap_or(i64::MAX).saturating_mul(1000);
            let quiet_ms = i64::try_from(rule.body.quiet_secs).unwrap_or(i64::MAX).saturating_mul(1000);
            for (&series_id, w) in &self.series {
                if w.measurement != rule.body.measurement
                    || w.field != rule.body.field
                    || !rule.body.scope.iter().all(|(k, v)| w.tag(k) == Some(v.as_str()))
                {
                    continue;
                }
                let fingerprint = fingerprint(&rule.id, w);
                let before = states.remove(&(rule.id.clone(), fingerprint.clone()));
                let current = before.as_ref().and_then(|s| Some((Phase::parse(&s.state)?, s.since)));
                let latest = self.latest.get(&series_id).copied();
                let verdict = judge(&rule.body.condition, latest, now_ns, current.is_some());
                let after = step(current, verdict, now_ms, for_ms, quiet_ms);
                let value = match rule.body.condition {
                    Condition::Silent { .. } => None,
                    _ => latest.map(|(_, v)| v),
                };
                judged.push(Judged { rule, series_id, fingerprint, before, after, value });
            }
        }
        // Alerts of an enabled rule on a series it no longer watches (its scope was edited) are gone.
        for row in states.into_values() {
            let mut tx = self.lock(&row.fingerprint).await?;
            sqlx::query(
                "DELETE FROM alert_states WHERE rule_id = $1 AND fingerprint = $2 AND state = $3 AND since = $4",
            )
            .bind(&row.rule_id)
            .bind(&row.fingerprint)
            .bind(&row.state)
            .bind(row.since)
            .execute(tx.conn())
            .await?;
            tx.commit().await?;
            tracing::info!(rule = %row.rule_id, series = row.series_id, "alert dropped: the rule no longer watches its series");
        }
        let mut round = Round { evaluations: judged.len() as u64, ..Round::default() };
        self.totals.evaluations.fetch_add(round.evaluations, Ordering::Relaxed);

        // Steps first, each applied only if the alert is still as read (another server may have moved it).
        let mut firing = Vec::new();
        for j in judged {
            let current = j.before.as_ref().map(|s| (s.state.as_str(), s.since));
            let next = j.after.map(|(p, s)| (p.as_str(), s));
            if current != next && !self.apply_step(&j, now_ms, &mut round).await? {
                continue;
            }
            if let Some((Phase::Firing, _)) = j.after {
                firing.push(j);
            }
        }
        // Hosts down now: a silent rule firing for a host's own series.
        let mut down: HashMap<String, String> = HashMap::new();
        for j in &firing {
            let w = &self.series[&j.series_id];
            if let (Condition::Silent { .. }, Some(host), None) = (j.rule.body.condition, w.tag("host"), w.tag("vm")) {
                down.entry(host.to_owned()).or_insert_with(|| j.fingerprint.clone());
            }
        }
        // Then every firing alert without its incident: held back, or opening it now.
        let mut cis = CiCache::default();
        for j in &firing {
            if j.before.as_ref().is_some_and(|b| b.incident_id.is_some()) {
                continue;
            }
            let row: Option<StateRow> = sqlx::query_as(&format!(
                "SELECT {STATE_COLUMNS} FROM alert_states WHERE rule_id = $1 AND fingerprint = $2"
            ))
            .bind(&j.rule.id)
            .bind(&j.fingerprint)
            .fetch_optional(self.db.pool())
            .await?;
            let Some(row) = row.filter(|r| r.state == "firing" && r.incident_id.is_none()) else { continue };
            let w = &self.series[&j.series_id];
            let ci = cis.ci_of(&self.db, w).await?;
            let by_alert = match (w.tag("vm"), w.tag("host")) {
                (Some(_), Some(host)) => down.get(host).filter(|f| **f != j.fingerprint).cloned(),
                _ => None,
            };
            let by_change = match (&by_alert, &ci) {
                (None, Some(ci)) => implementing_on(&self.db, ci, now_ms).await?,
                _ => None,
            };
            if by_alert.is_some() || by_change.is_some() {
                if (&by_change, &by_alert) != (&row.suppressed_by_change, &row.suppressed_by_alert) {
                    self.suppress(j, &row, ci.as_deref(), by_change.as_deref(), by_alert.as_deref()).await?;
                    round.suppressed.push(j.fingerprint.clone());
                }
            } else {
                let incident = self.report(j, &row, ci.as_deref(), now_ms).await?;
                round.reported.push(incident);
            }
        }
        self.rounds = self.rounds.wrapping_add(1);
        self.totals.rounds.fetch_add(1, Ordering::Relaxed);
        Ok(round)
    }

    /// A write transaction that takes turns with every other writer of the alert `fingerprint`.
    async fn lock(&self, fingerprint: &str) -> StoreResult<crate::store::WriteTx<'_>> {
        self.db.write_locking(&self.ctx, &format!("alert:{fingerprint}")).await
    }

    /// Writes an alert's step if the alert is still as read; a step that resolves an alert resolves its
    /// incident. Returns whether it was applied.
    async fn apply_step(&self, j: &Judged<'_>, now_ms: i64, round: &mut Round) -> StoreResult<bool> {
        let mut tx = self.lock(&j.fingerprint).await?;
        let now: Option<(String, i64)> =
            sqlx::query_as("SELECT state, since FROM alert_states WHERE rule_id = $1 AND fingerprint = $2")
                .bind(&j.rule.id)
                .bind(&j.fingerprint)
                .fetch_optional(tx.conn())
                .await?;
        if now != j.before.as_ref().map(|s| (s.state.clone(), s.since)) {
            return Ok(false);
        }
        let series = self.series[&j.series_id].describe();
        match (&j.before, j.after) {
            (None, Some((phase, since))) => {
                sqlx::query(&format!(
                    "INSERT INTO alert_states ({STATE_COLUMNS}, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, NULL, NULL, $7)"
                ))
                .bind(&j.rule.id)
                .bind(&j.fingerprint)
                .bind(j.series_id)
                .bind(phase.as_str())
                .bind(since)
                .bind(j.value)
                .bind(now_ms)
                .execute(tx.conn())
                .await?;
            }
            (Some(before), Some((phase, since))) => {
                sqlx::query(
                    "UPDATE alert_states SET state = $1, since = $2, value = $3, updated_at = $4 \
                     WHERE rule_id = $5 AND fingerprint = $6",
                )
                .bind(phase.as_str())
                .bind(since)
                .bind(j.value)
                .bind(now_ms)
                .bind(&j.rule.id)
                .bind(&j.fingerprint)
                .execute(tx.conn())
                .await?;
                if phase == Phase::Firing && before.state == "resolving" {
                    let record = record_of(j, &series, before, "firing");
                    tx.audit("alert.refire", "alert", &j.fingerprint, None::<&()>, Some(&record)).await?;
                }
            }
            (Some(before), None) => {
                sqlx::query("DELETE FROM alert_states WHERE rule_id = $1 AND fingerprint = $2")
                    .bind(&j.rule.id)
                    .bind(&j.fingerprint)
                    .execute(tx.conn())
                    .await?;
                if before.state != "pending" {
                    let record = record_of(j, &series, before, "resolved");
                    tx.audit("alert.resolve", "alert", &j.fingerprint, None::<&()>, Some(&record)).await?;
                }
            }
            (None, None) => {}
        }
        tx.commit().await?;
        if let Some(before) = &j.before {
            if j.after.is_none() && before.state != "pending" {
                if let Some(id) = &before.incident_id {
                    if self.recover(j, id, &series).await? {
                        round.resolved.push(id.clone());
                    }
                }
            }
        }
        Ok(true)
    }

    /// Resolves a recovered alert's incident, unless people have already moved it on (or its process
    /// version has no `recover`): then it is theirs to close.
    async fn recover(&self, j: &Judged<'_>, incident_id: &str, series: &str) -> StoreResult<bool> {
        let comment = format!(
            "Recovered: {series} has been fine for the quiet period of rule {:?} ({} s).",
            j.rule.name, j.rule.body.quiet_secs
        );
        let e = IncidentEvent { event: "recover".to_owned(), comment: Some(comment), assignee_id: None };
        match incident::fire_system(&self.db, &self.ctx, incident_id, e).await {
            Ok(_) => Ok(true),
            Err(StoreError::Transition(e)) => {
                tracing::info!(incident = %incident_id, reason = %e, "the alert recovered; its incident is left to people");
                Ok(false)
            }
            Err(StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn suppress(
        &self,
        j: &Judged<'_>,
        row: &StateRow,
        ci: Option<&str>,
        by_change: Option<&str>,
        by_alert: Option<&str>,
    ) -> StoreResult<()> {
        let mut tx = self.lock(&j.fingerprint).await?;
        sqlx::query(
            "UPDATE alert_states SET ci_id = $1, suppressed_by_change = $2, suppressed_by_alert = $3, updated_at = $4 \
             WHERE rule_id = $5 AND fingerprint = $6 AND state = 'firing' AND incident_id IS NULL",
        )
        .bind(ci)
        .bind(by_change)
        .bind(by_alert)
        .bind(to_millis(tx.now()))
        .bind(&j.rule.id)
        .bind(&j.fingerprint)
        .execute(tx.conn())
        .await?;
        let mut record = record_of(j, &self.series[&j.series_id].describe(), row, "firing");
        record.ci_id = ci;
        record.suppressed_by_change = by_change;
        record.suppressed_by_alert = by_alert;
        tx.audit("alert.suppress", "alert", &j.fingerprint, None::<&()>, Some(&record)).await?;
        tx.commit().await?;
        self.totals.suppressed.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Opens (or updates) the alert's incident and records it on the alert.
    async fn report(&self, j: &Judged<'_>, row: &StateRow, ci: Option<&str>, now_ms: i64) -> StoreResult<String> {
        let w = &self.series[&j.series_id];
        let series = w.describe();
        let (impact, urgency) = j.rule.body.severity.impact_and_urgency();
        let level = |s: &str| Level::parse(s).unwrap_or(Level::Medium);
        let what = match j.rule.body.condition {
            Condition::Above { threshold, .. } => format!("above {threshold}"),
            Condition::Below { threshold, .. } => format!("below {threshold}"),
            Condition::Silent { intervals, interval_secs } => {
                format!("silent for {intervals} intervals of {interval_secs} s")
            }
        };
        let mut title: String = format!("{}: {}", j.rule.name, w.tag("vm").or(w.tag("host")).unwrap_or(&series));
        if title.chars().count() > Name::MAX_CHARS {
            title = title.chars().take(Name::MAX_CHARS - 1).collect::<String>().trim_end().to_owned() + "…";
        }
        let mut description = format!(
            "Alert rule {:?} fired: {series} is {what}{}.\nSince: {}.\nFingerprint: {}.",
            j.rule.name,
            row.value.map(|v| format!(" (last value {v})")).unwrap_or_default(),
            from_millis(row.since),
            j.fingerprint,
        );
        if let Some(change) = &row.suppressed_by_change {
            description
                .push_str(&format!("\nIt was held back while change {change} was implementing, and outlived it."));
        }
        let report = IncidentReport {
            title: Name::parse("title", title.trim())?,
            description: Description::parse(
                "description",
                &description.chars().take(Description::MAX_CHARS).collect::<String>(),
            )?,
            impact: level(impact),
            urgency: level(urgency),
            major: false,
            ci_ids: ci.map(|c| vec![c.to_owned()]).unwrap_or_default(),
            dedup_key: Some(Name::parse("dedup_key", &format!("alert:{}", j.fingerprint))?),
        };
        let incident = match incident::report_once(&self.db, &self.ctx, &self.policy, report).await? {
            Reported::Opened(i) | Reported::Updated(i) => i,
        };
        if let Some(change) = &row.suppressed_by_change {
            match incident::link_change(&self.db, &self.ctx, &incident.id, change, LinkKind::CausedBy).await {
                Ok(_) | Err(StoreError::Invalid(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let mut tx = self.lock(&j.fingerprint).await?;
        sqlx::query(
            "UPDATE alert_states SET incident_id = $1, ci_id = $2, suppressed_by_change = NULL, \
             suppressed_by_alert = NULL, updated_at = $3 WHERE rule_id = $4 AND fingerprint = $5",
        )
        .bind(&incident.id)
        .bind(ci)
        .bind(now_ms)
        .bind(&j.rule.id)
        .bind(&j.fingerprint)
        .execute(tx.conn())
        .await?;
        let mut record = record_of(j, &series, row, "firing");
        record.ci_id = ci;
        record.incident_id = Some(&incident.id);
        tx.audit("alert.fire", "alert", &j.fingerprint, None::<&()>, Some(&record)).await?;
        tx.commit().await?;
        self.totals.fired.fetch_add(1, Ordering::Relaxed);
        Ok(incident.id)
    }

    /// Brings the watched series up to date with the rules: every series of a (measurement, field) a rule
    /// names, with its tags.
    async fn learn_series(&mut self, rules: &[AlertRule]) -> StoreResult<()> {
        if self.rounds % RELOAD_SERIES_EVERY == 0 {
            self.pairs.clear();
        }
        if self.pairs.is_empty() {
            let (max,): (Option<i64>,) =
                sqlx::query_as("SELECT MAX(id) FROM metric_series").fetch_one(self.db.pool()).await?;
            self.last_series = max.unwrap_or(0);
        }
        for rule in rules {
            let pair = (rule.body.measurement.clone(), rule.body.field.clone());
            if self.pairs.contains(&pair) {
                continue;
            }
            let rows: Vec<(i64, String)> =
                sqlx::query_as("SELECT id, tags FROM metric_series WHERE measurement = $1 AND field = $2")
                    .bind(&pair.0)
                    .bind(&pair.1)
                    .fetch_all(self.db.pool())
                    .await?;
            for (id, canonical) in rows {
                let w = Watched {
                    measurement: pair.0.clone(),
                    field: pair.1.clone(),
                    tags: tags_of(&canonical),
                    canonical,
                };
                self.series.insert(id, w);
            }
            self.pairs.insert(pair);
        }
        loop {
            let rows: Vec<(i64, String, String, String)> = sqlx::query_as(
                "SELECT id, measurement, field, tags FROM metric_series WHERE id > $1 ORDER BY id LIMIT 10000",
            )
            .bind(self.last_series)
            .fetch_all(self.db.pool())
            .await?;
            let Some(last) = rows.last().map(|r| r.0) else { break };
            self.last_series = last;
            for (id, measurement, field, canonical) in rows {
                if self.pairs.contains(&(measurement.clone(), field.clone())) {
                    self.series.insert(id, Watched { measurement, field, tags: tags_of(&canonical), canonical });
                }
            }
        }
        self.series.retain(|_, w| self.pairs.contains(&(w.measurement.clone(), w.field.clone())));
        Ok(())
    }

    /// Reads the segments written since the last round (and any that committed late), keeping each watched
    /// series' latest point.
    async fn read_points(&mut self, rules: &[AlertRule], now_ns: i64) -> StoreResult<()> {
        let cursor = match self.cursor {
            Some(c) => c,
            None => {
                let silent = rules.iter().filter_map(|r| r.body.condition.silence_secs()).max().unwrap_or(0);
                let lookback = silent.saturating_mul(2_000_000_000).clamp(STALE_NS, MAX_LOOKBACK_NS);
                let (first,): (Option<i64>,) = sqlx::query_as("SELECT MIN(id) FROM metric_segments WHERE max_ts >= $1")
                    .bind(now_ns.saturating_sub(lookback))
                    .fetch_one(self.db.pool())
                    .await?;
                match first {
                    Some(id) => id - 1,
                    None => {
                        let (max,): (Option<i64>,) =
                            sqlx::query_as("SELECT MAX(id) FROM metric_segments").fetch_one(self.db.pool()).await?;
                        max.unwrap_or(0)
                    }
                }
            }
        };
        let mut next = cursor;
        loop {
            let rows: Vec<(i64, Vec<u8>)> =
                sqlx::query_as("SELECT id, data FROM metric_segments WHERE id > $1 ORDER BY id LIMIT $2")
                    .bind(next)
                    .bind(SEGMENTS_PER_READ)
                    .fetch_all(self.db.pool())
                    .await?;
            let Some(last) = rows.last().map(|r| r.0) else { break };
            for (id, _) in &rows {
                if *id - next <= MAX_HOLES as i64 {
                    for missing in (next + 1)..*id {
                        if self.holes.len() < MAX_HOLES {
                            self.holes.push((missing, HOLE_ROUNDS));
                        }
                    }
                }
                next = *id;
            }
            self.absorb(&rows)?;
            next = last;
            if (rows.len() as i64) < SEGMENTS_PER_READ {
                break;
            }
        }
        self.cursor = Some(next);
        if !self.holes.is_empty() {
            let mut args = AnyArguments::default();
            let ids = bind_list(&mut args, self.holes.iter().map(|h| h.0).collect::<Vec<_>>());
            let rows: Vec<(i64, Vec<u8>)> =
                sqlx::query_as_with(&format!("SELECT id, data FROM metric_segments WHERE id IN ({ids})"), args)
                    .fetch_all(self.db.pool())
                    .await?;
            self.absorb(&rows)?;
            let found: HashSet<i64> = rows.iter().map(|r| r.0).collect();
            self.holes.retain_mut(|(id, rounds)| {
                *rounds -= 1;
                *rounds > 0 && !found.contains(id)
            });
        }
        Ok(())
    }

    fn absorb(&mut self, segments: &[(i64, Vec<u8>)]) -> StoreResult<()> {
        for (id, data) in segments {
            let found = decode_segment(data, |s| self.series.contains_key(&s))
                .ok_or_else(|| StoreError::Internal(format!("metric segment {id} is damaged")))?;
            for (series, points) in found {
                if let Some(&(at, v)) = points.iter().max_by_key(|p| p.0) {
                    let latest = self.latest.entry(series).or_insert((at, v));
                    if at >= latest.0 {
                        *latest = (at, v);
                    }
                }
            }
        }
        Ok(())
    }
}

fn record_of<'a>(j: &'a Judged<'_>, series: &str, row: &'a StateRow, state: &'a str) -> AlertRecord<'a> {
    AlertRecord {
        rule_id: &j.rule.id,
        rule: &j.rule.name,
        series: series.to_owned(),
        state,
        value: j.value,
        ci_id: row.ci_id.as_deref(),
        incident_id: row.incident_id.as_deref(),
        suppressed_by_change: row.suppressed_by_change.as_deref(),
        suppressed_by_alert: row.suppressed_by_alert.as_deref(),
    }
}

/// The CI a series' tags name, looked up once a round.
#[derive(Default)]
struct CiCache(HashMap<(bool, String), Option<String>>);

impl CiCache {
    async fn ci_of(&mut self, db: &Db, w: &Watched) -> StoreResult<Option<String>> {
        let key = match (w.tag("vm"), w.tag("host")) {
            (Some(vm), _) => (true, vm.to_owned()),
            (None, Some(host)) => (false, host.to_owned()),
            (None, None) => return Ok(None),
        };
        if let Some(found) = self.0.get(&key) {
            return Ok(found.clone());
        }
        let found: Option<(String,)> = if key.0 {
            sqlx::query_as("SELECT id FROM cis WHERE kind = 'vm' AND name = $1")
                .bind(&key.1)
                .fetch_optional(db.pool())
                .await?
        } else {
            // A host's agent reports under the host's agent id, or else its name.
            sqlx::query_as(
                "SELECT id FROM cis WHERE kind = 'host' AND (agent_id = $1 OR name = $1) \
                 ORDER BY CASE WHEN agent_id = $1 THEN 0 ELSE 1 END LIMIT 1",
            )
            .bind(&key.1)
            .fetch_optional(db.pool())
            .await?
        };
        let found = found.map(|(id,)| id);
        self.0.insert(key, found.clone());
        Ok(found)
    }
}

/// The change implementing now, inside its window, on `ci` or a CI containing it (the earliest such).
async fn implementing_on(db: &Db, ci: &str, now_ms: i64) -> StoreResult<Option<String>> {
    let mut chain = vec![ci.to_owned()];
    while chain.len() < 8 {
        let parent: Option<(Option<String>,)> = sqlx::query_as("SELECT parent_id FROM cis WHERE id = $1")
            .bind(&chain[chain.len() - 1])
            .fetch_optional(db.pool())
            .await?;
        match parent {
            Some((Some(p),)) if !chain.contains(&p) => chain.push(p),
            _ => break,
        }
    }
    let mut args = AnyArguments::default();
    let ids = bind_list(&mut args, chain);
    let _ = sqlx::Arguments::add(&mut args, now_ms);
    let at = sqlx::Arguments::len(&args);
    let found: Option<(String,)> = sqlx::query_as_with(
        &format!(
            "SELECT l.change_id FROM live_change_cis l JOIN changes c ON c.id = l.change_id \
             WHERE l.ci_id IN ({ids}) AND c.state = 'implementing' AND l.window_start <= ${at} \
             AND l.window_end > ${at} ORDER BY l.number LIMIT 1"
        ),
        args,
    )
    .fetch_optional(db.pool())
    .await?;
    Ok(found.map(|(id,)| id))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABOVE: Condition = Condition::Above { threshold: 90.0, recovery: 80.0 };
    const S: i64 = 1_000_000_000;

    #[test]
    fn a_threshold_judges_with_hysteresis_and_only_fresh_points() {
        let now = 1_000 * S;
        assert_eq!(judge(&ABOVE, Some((now, 95.0)), now, false), Verdict::Trouble);
        assert_eq!(judge(&ABOVE, Some((now, 85.0)), now, false), Verdict::Between);
        assert_eq!(judge(&ABOVE, Some((now, 80.0)), now, false), Verdict::Recovered);
        assert_eq!(judge(&ABOVE, Some((now - STALE_NS - 1, 95.0)), now, false), Verdict::NoData);
        assert_eq!(judge(&ABOVE, None, now, true), Verdict::NoData);
        let below = Condition::Below { threshold: 10.0, recovery: 20.0 };
        assert_eq!(judge(&below, Some((now, 5.0)), now, false), Verdict::Trouble);
        assert_eq!(judge(&below, Some((now, 15.0)), now, false), Verdict::Between);
        assert_eq!(judge(&below, Some((now, 20.0)), now, false), Verdict::Recovered);
    }

    #[test]
    fn a_silent_rule_is_in_trouble_past_its_intervals_and_stays_so_without_points() {
        let silent = Condition::Silent { intervals: 3, interval_secs: 10 };
        let now = 1_000 * S;
        assert_eq!(judge(&silent, Some((now - 30 * S, 1.0)), now, false), Verdict::Recovered);
        assert_eq!(judge(&silent, Some((now - 31 * S, 1.0)), now, false), Verdict::Trouble);
        assert_eq!(judge(&silent, None, now, false), Verdict::NoData, "never seen: nothing to miss");
        assert_eq!(judge(&silent, None, now, true), Verdict::Trouble, "gone silent before a restart");
    }

    #[test]
    fn an_alert_waits_out_for_then_fires_then_waits_out_the_quiet_period() {
        use Verdict::*;
        let (f, q) = (60_000, 120_000);
        let pending = step(None, Trouble, 0, f, q);
        assert_eq!(pending, Some((Phase::Pending, 0)));
        assert_eq!(step(pending, Trouble, 59_999, f, q), pending);
        assert_eq!(step(pending, Between, 30_000, f, q), None, "a pending alert lapses when the trouble does");
        let firing = step(pending, Trouble, 60_000, f, q);
        assert_eq!(firing, Some((Phase::Firing, 60_000)));
        assert_eq!(step(firing, Between, 70_000, f, q), firing, "between the thresholds it keeps firing");
        assert_eq!(step(firing, NoData, 70_000, f, q), firing);
        let resolving = step(firing, Recovered, 80_000, f, q);
        assert_eq!(resolving, Some((Phase::Resolving, 80_000)));
        assert_eq!(step(resolving, Between, 90_000, f, q), Some((Phase::Firing, 90_000)), "back over: firing again");
        assert_eq!(step(resolving, Recovered, 199_999, f, q), resolving);
        assert_eq!(step(resolving, Recovered, 200_000, f, q), None);
        assert_eq!(step(None, Trouble, 5, 0, 0), Some((Phase::Firing, 5)), "no `for`: fires at once");
        assert_eq!(step(Some((Phase::Firing, 5)), Recovered, 6, 0, 0), None, "no quiet period: resolves at once");
    }
}
