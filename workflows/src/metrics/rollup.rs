//! Rollups and retention. Every series gets, per minute and per hour, the minimum, maximum, sum and count of
//! its points. [`roll_up`] folds committed segments into them (a late point merges into its bucket) and
//! marks the segments rolled up; [`prune`] deletes rolled-up segments past the raw retention and buckets past
//! their resolution's.
//!
//! A point written twice at one instant (a batch sent again after its answer was lost) counts once in
//! queries of points but twice in the rollups of its bucket.

use super::store::{decode_segment, select_series, Selector, Series};
use crate::error::{StoreError, StoreResult};
use crate::store::{bind_list, Db, Engine};
use sqlx::any::AnyArguments;
use sqlx::Arguments;
use std::collections::HashMap;

pub const MINUTE_NS: i64 = 60 * 1_000_000_000;
pub const HOUR_NS: i64 = 3_600 * 1_000_000_000;

/// Segments folded per pass (and per transaction).
const SEGMENTS_PER_PASS: i64 = 64;
/// Buckets per upsert statement (seven values each). SQLite looks a bound value's name up in a list as long as
/// the statement's values, so binding costs the square of their number: statements stay small.
const BUCKETS_PER_STATEMENT: usize = 64;

/// One bucket of a series' rollup.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bucket {
    /// The bucket's start, nanoseconds since the epoch.
    pub start: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: i64,
}

impl Bucket {
    pub fn avg(&self) -> f64 {
        self.sum / self.count as f64
    }

    fn add(&mut self, v: f64) {
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.sum += v;
        self.count += 1;
    }
}

/// How long each kind of data is kept, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub raw_ns: i64,
    pub minutes_ns: i64,
    pub hours_ns: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { raw_ns: 24 * HOUR_NS, minutes_ns: 30 * 24 * HOUR_NS, hours_ns: 365 * 24 * HOUR_NS }
    }
}

/// Folds up to one pass of segments not yet rolled up into the rollups; returns how many it folded (0 when
/// none wait). Concurrent passes (other server processes) take different segments.
pub async fn roll_up(db: &Db) -> StoreResult<usize> {
    let (mut tx, _serial) = db.begin_unaudited().await?;
    let sql = match db.engine() {
        Engine::Postgres => {
            "SELECT id, data FROM metric_segments WHERE rolled_up = 0 ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
        }
        Engine::Sqlite => "SELECT id, data FROM metric_segments WHERE rolled_up = 0 ORDER BY id LIMIT $1",
    };
    let segments: Vec<(i64, Vec<u8>)> = sqlx::query_as(sql).bind(SEGMENTS_PER_PASS).fetch_all(&mut *tx).await?;
    if segments.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    let mut buckets: HashMap<(i64, i64, i64), Bucket> = HashMap::new();
    let (mut folded, mut damaged) = (Vec::new(), Vec::new());
    for (id, data) in &segments {
        let Some(entries) = decode_segment(data, |_| true) else {
            tracing::error!(segment = id, "a metric segment is damaged; it is set aside, not rolled up");
            damaged.push(*id);
            continue;
        };
        folded.push(*id);
        for (series, points) in entries {
            for (t, v) in points {
                for resolution in [MINUTE_NS, HOUR_NS] {
                    let start = t.div_euclid(resolution) * resolution;
                    buckets
                        .entry((series, resolution / 1_000_000_000, start))
                        .or_insert(Bucket { start, min: v, max: v, sum: 0.0, count: 0 })
                        .add(v);
                }
            }
        }
    }
    let rows: Vec<((i64, i64, i64), Bucket)> = buckets.into_iter().collect();
    for chunk in rows.chunks(BUCKETS_PER_STATEMENT) {
        let mut args = AnyArguments::default();
        let mut values = Vec::with_capacity(chunk.len());
        for (n, ((series, resolution, start), b)) in chunk.iter().enumerate() {
            let p = n * 7;
            values.push(format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${})",
                p + 1,
                p + 2,
                p + 3,
                p + 4,
                p + 5,
                p + 6,
                p + 7
            ));
            let _ = args.add(*series);
            let _ = args.add(*resolution);
            let _ = args.add(*start);
            let _ = args.add(b.min);
            let _ = args.add(b.max);
            let _ = args.add(b.sum);
            let _ = args.add(b.count);
        }
        let sql = format!(
            "INSERT INTO metric_rollups (series_id, resolution, bucket, min_value, max_value, sum_value, count_value) \
             VALUES {} ON CONFLICT (series_id, resolution, bucket) DO UPDATE SET \
             min_value = CASE WHEN excluded.min_value < metric_rollups.min_value \
                              THEN excluded.min_value ELSE metric_rollups.min_value END, \
             max_value = CASE WHEN excluded.max_value > metric_rollups.max_value \
                              THEN excluded.max_value ELSE metric_rollups.max_value END, \
             sum_value = metric_rollups.sum_value + excluded.sum_value, \
             count_value = metric_rollups.count_value + excluded.count_value",
            values.join(", ")
        );
        sqlx::query_with(&sql, args).execute(&mut *tx).await?;
    }
    for (ids, state) in [(&folded, 1_i64), (&damaged, 2)] {
        if ids.is_empty() {
            continue;
        }
        let mut args = AnyArguments::default();
        let _ = args.add(state);
        let list = bind_list(&mut args, ids.iter().copied());
        let sql = format!("UPDATE metric_segments SET rolled_up = $1 WHERE id IN ({list})");
        sqlx::query_with(&sql, args).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(segments.len())
}

/// What [`prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub segments: u64,
    pub buckets: u64,
}

/// Deletes rolled-up segments whose newest point is older than the raw retention, and buckets older than
/// their resolution's retention, as of `now_ns`.
pub async fn prune(db: &Db, now_ns: i64, retention: Retention) -> StoreResult<Pruned> {
    let (mut tx, _serial) = db.begin_unaudited().await?;
    let segments = sqlx::query("DELETE FROM metric_segments WHERE rolled_up <> 0 AND max_ts < $1")
        .bind(now_ns.saturating_sub(retention.raw_ns))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let mut buckets = 0;
    for (resolution, keep) in [(MINUTE_NS, retention.minutes_ns), (HOUR_NS, retention.hours_ns)] {
        buckets += sqlx::query("DELETE FROM metric_rollups WHERE resolution = $1 AND bucket < $2")
            .bind(resolution / 1_000_000_000)
            .bind(now_ns.saturating_sub(keep))
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(Pruned { segments, buckets })
}

/// The buckets of the given series at `resolution_ns` (a minute or an hour) from `from_ns` to `to_ns`.
pub(super) async fn buckets_of(
    db: &Db,
    series: &[i64],
    resolution_ns: i64,
    from_ns: i64,
    to_ns: i64,
) -> StoreResult<HashMap<i64, Vec<Bucket>>> {
    let mut args = AnyArguments::default();
    let _ = args.add(resolution_ns / 1_000_000_000);
    let _ = args.add(from_ns.div_euclid(resolution_ns) * resolution_ns);
    let _ = args.add(to_ns);
    let list = bind_list(&mut args, series.iter().copied());
    let sql = format!(
        "SELECT series_id, bucket, min_value, max_value, sum_value, count_value FROM metric_rollups \
         WHERE resolution = $1 AND bucket >= $2 AND bucket <= $3 AND series_id IN ({list}) ORDER BY series_id, bucket"
    );
    let rows: Vec<(i64, i64, f64, f64, f64, i64)> = sqlx::query_as_with(&sql, args).fetch_all(db.pool()).await?;
    let mut out: HashMap<i64, Vec<Bucket>> = HashMap::new();
    for (id, start, min, max, sum, count) in rows {
        out.entry(id).or_default().push(Bucket { start, min, max, sum, count });
    }
    Ok(out)
}

/// The average of each step's buckets (weighted by their counts), stamped with the step's start.
pub(super) fn averaged(buckets: &[Bucket], from_ns: i64, step_ns: i64) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = Vec::new();
    let mut current: Option<(i64, f64, i64)> = None;
    for b in buckets {
        let offset = (i128::from(b.start) - i128::from(from_ns)).max(0);
        let start = (i128::from(from_ns) + offset / i128::from(step_ns) * i128::from(step_ns)) as i64;
        match &mut current {
            Some((s, sum, n)) if *s == start => {
                *sum += b.sum;
                *n += b.count;
            }
            _ => {
                if let Some((s, sum, n)) = current.take() {
                    out.push((s, sum / n as f64));
                }
                current = Some((start, b.sum, b.count));
            }
        }
    }
    if let Some((s, sum, n)) = current {
        out.push((s, sum / n as f64));
    }
    out
}

/// Each series `selector` names with its buckets at `resolution_ns` from `from_ns` to `to_ns`: the
/// utilisation report's and rightsizing's input.
pub async fn rollups(
    db: &Db,
    selector: &Selector,
    resolution_ns: i64,
    from_ns: i64,
    to_ns: i64,
) -> StoreResult<Vec<(Series, Vec<Bucket>)>> {
    if resolution_ns != MINUTE_NS && resolution_ns != HOUR_NS {
        return Err(StoreError::Internal(format!("no rollup of resolution {resolution_ns} ns")));
    }
    let found = select_series(db, selector).await?;
    let ids: Vec<i64> = found.iter().map(|(id, _)| *id).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut buckets = buckets_of(db, &ids, resolution_ns, from_ns, to_ns).await?;
    Ok(found
        .into_iter()
        .map(|(id, tags)| {
            let series = Series {
                measurement: selector.measurement.clone(),
                field: selector.field.clone(),
                tags,
                points: Vec::new(),
            };
            (series, buckets.remove(&id).unwrap_or_default())
        })
        .collect())
}
