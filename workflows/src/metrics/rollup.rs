//! Rollups and retention. Every series gets, per minute and per hour, the minimum, maximum, sum and count of
//! its points. [`roll_up`] folds committed segments into them and marks the segments rolled up; [`prune`]
//! deletes rolled-up segments past the raw retention and rollups past their resolution's.
//!
//! A fold pass reads up to [`POINTS_PER_PASS`] points of segments not yet rolled up and inserts, per series,
//! one packed row of minute buckets per hour its points fall in, numbered by the pass. Rows are never
//! updated: a late point makes another row for its hour, and readers merge an hour's rows, and the points of
//! segments no pass has folded yet, so charts are current between passes. Many points share a row, so a
//! pass writes far fewer rows than points. Hour buckets are read from the minute rows; when those pass
//! their retention, [`prune`] compacts them into a row of hour buckets per series and day.
//!
//! A point written twice at one instant (a batch sent again after its answer was lost) counts once in
//! queries of points but twice in the rollups of its bucket.

use super::block::{header, push_varint, push_xor, read_varint, read_xor};
use super::store::{each_series, select_series, Selector, Series};
use crate::error::{StoreError, StoreResult};
use crate::store::{placeholder, placeholders, Db, Engine};
use std::collections::HashMap;

pub const MINUTE_NS: i64 = 60 * 1_000_000_000;
pub const HOUR_NS: i64 = 3_600 * 1_000_000_000;
const DAY_NS: i64 = 24 * HOUR_NS;

/// Points folded per pass (and per transaction) at most, unless one segment holds more.
pub const POINTS_PER_PASS: i64 = 8_000_000;
/// Segments looked at per pass at most.
const SEGMENTS_PER_PASS: i64 = 4096;
/// Segments or series named per statement.
const IDS_PER_STATEMENT: usize = 256;
/// Rows per insert statement (five values each).
const ROWS_PER_STATEMENT: usize = 256;
/// Format of a packed row.
const PACKED_FORMAT: u8 = 1;

/// The period a row of `resolution_ns` buckets covers.
fn period_of(resolution_ns: i64) -> i64 {
    if resolution_ns == MINUTE_NS {
        HOUR_NS
    } else {
        DAY_NS
    }
}

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

    fn merge(&mut self, other: &Bucket) {
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// How long each kind of data is kept, in nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub raw_ns: i64,
    pub minutes_ns: i64,
    pub hours_ns: i64,
}

/// Packs buckets (sorted by start, within one period from `period`): the format byte, the count, each
/// bucket's slot in the period and count (varints), then the minimums, maximums and sums, each as a stream
/// of values XOR the one before (see [`super::block`]).
fn pack(period: i64, resolution_ns: i64, buckets: &[Bucket]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + buckets.len() * 8);
    out.push(PACKED_FORMAT);
    push_varint(&mut out, buckets.len() as u64);
    for b in buckets {
        push_varint(&mut out, ((b.start - period) / resolution_ns) as u64);
        push_varint(&mut out, b.count as u64);
    }
    for value in [|b: &Bucket| b.min, |b: &Bucket| b.max, |b: &Bucket| b.sum] {
        let mut prev = 0;
        for b in buckets {
            push_xor(&mut out, &mut prev, value(b));
        }
    }
    out
}

/// The buckets [`pack`] packed; `None` when the row is damaged.
fn unpack(period: i64, resolution_ns: i64, data: &[u8]) -> Option<Vec<Bucket>> {
    let (n, mut rest) = header(data, PACKED_FORMAT)?;
    let mut buckets = Vec::with_capacity(n);
    for _ in 0..n {
        let slot = i64::try_from(read_varint(&mut rest)?).ok()?;
        let count = i64::try_from(read_varint(&mut rest)?).ok()?;
        let start = period.checked_add(slot.checked_mul(resolution_ns)?)?;
        buckets.push(Bucket { start, min: 0.0, max: 0.0, sum: 0.0, count });
    }
    for which in 0..3 {
        let mut prev = 0;
        for b in &mut buckets {
            let v = read_xor(&mut rest, &mut prev)?;
            match which {
                0 => b.min = v,
                1 => b.max = v,
                _ => b.sum = v,
            }
        }
    }
    rest.is_empty().then_some(buckets)
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Buckets of one resolution gathered per series, as a pass or a read meets points and rows: each series'
/// buckets in the order met, a point joining the last one when it falls in it (a series' points mostly come
/// in time order), sorted and merged once at the end. One look-up per series and segment, into a map as
/// small as the number of series.
struct Gatherer {
    resolution: i64,
    /// Points outside these instants (inclusive) are left out.
    range: (i64, i64),
    slots: FastMap<i64, usize>,
    series: Vec<(i64, Vec<Bucket>)>,
}

impl Gatherer {
    fn new(resolution: i64, range: (i64, i64)) -> Self {
        Gatherer { resolution, range, slots: FastMap::default(), series: Vec::new() }
    }

    fn buckets(&mut self, series: i64) -> &mut Vec<Bucket> {
        let next = self.series.len();
        let slot = *self.slots.entry(series).or_insert(next);
        if slot == next {
            self.series.push((series, Vec::new()));
        }
        &mut self.series[slot].1
    }

    /// Adds `b` to the series' buckets: into the last one when it starts where `b` does, else after it.
    fn join(buckets: &mut Vec<Bucket>, b: Bucket) {
        match buckets.last_mut() {
            Some(last) if last.start == b.start => last.merge(&b),
            _ => buckets.push(b),
        }
    }

    fn points(&mut self, series: i64, points: &[(i64, f64)]) {
        let (resolution, range) = (self.resolution, self.range);
        let buckets = self.buckets(series);
        for &(t, v) in points.iter().filter(|(t, _)| (range.0..=range.1).contains(t)) {
            let start = t.div_euclid(resolution) * resolution;
            Self::join(buckets, Bucket { start, min: v, max: v, sum: v, count: 1 });
        }
    }

    /// A bucket of a rollup row, at this gatherer's resolution or finer (it joins the one it falls in).
    fn bucket(&mut self, series: i64, mut b: Bucket) {
        b.start = b.start.div_euclid(self.resolution) * self.resolution;
        if (self.range.0..=self.range.1).contains(&b.start) {
            Self::join(self.buckets(series), b);
        }
    }

    /// Each series met with its buckets, sorted by start, one per start.
    fn finish(self) -> impl Iterator<Item = (i64, Vec<Bucket>)> {
        self.series.into_iter().map(|(id, mut buckets)| {
            if !buckets.is_sorted_by_key(|b| b.start) {
                buckets.sort_by_key(|b| b.start);
            }
            let mut merged: Vec<Bucket> = Vec::with_capacity(buckets.len());
            for b in buckets {
                Self::join(&mut merged, b);
            }
            (id, merged)
        })
    }
}

/// Placeholders `(…), (…)` for `rows` rows of `width` values, numbered from 1 on PostgreSQL.
fn rows_of(engine: Engine, rows: usize, width: usize) -> String {
    (0..rows).map(|r| format!("({})", placeholders(engine, r * width + 1, width))).collect::<Vec<_>>().join(", ")
}

/// Folds up to one pass of segments not yet rolled up into the rollups; returns how many it folded (0 when
/// none wait). A pass reads and sums without holding the writer (points keep arriving meanwhile), then, as
/// one transaction, marks its segments folded, if no other pass did first, and inserts its rows; so each
/// segment is folded once, whatever the number of passes and server processes.
pub async fn roll_up(db: &Db) -> StoreResult<usize> {
    for _ in 0..3 {
        if let Some(folded) = try_roll_up(db).await? {
            return Ok(folded);
        }
    }
    Ok(0)
}

/// One attempt at a pass: `None` when another pass folded some of its segments first.
async fn try_roll_up(db: &Db) -> StoreResult<Option<usize>> {
    let heads: Vec<(i64, i64)> =
        sqlx::query_as("SELECT id, points FROM metric_segments WHERE rolled_up = 0 ORDER BY id LIMIT $1")
            .bind(SEGMENTS_PER_PASS)
            .fetch_all(db.pool())
            .await?;
    if heads.is_empty() {
        return Ok(Some(0));
    }
    let mut total = 0;
    let mut ids: Vec<i64> = heads
        .iter()
        .take_while(|(_, points)| {
            total += points;
            total <= POINTS_PER_PASS
        })
        .map(|(id, _)| *id)
        .collect();
    if ids.is_empty() {
        ids.push(heads[0].0);
    }
    let pass = ids[0];
    let mut gathered = Gatherer::new(MINUTE_NS, (i64::MIN, i64::MAX));
    let (mut folded, mut damaged) = (Vec::new(), Vec::new());
    for chunk in ids.chunks(IDS_PER_STATEMENT) {
        let sql =
            format!("SELECT id, data FROM metric_segments WHERE id IN ({})", placeholders(db.engine(), 1, chunk.len()));
        let mut q = sqlx::query_as::<_, (i64, Vec<u8>)>(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        for (id, data) in q.fetch_all(db.pool()).await? {
            if each_series(&data, |_| true, |series, points| gathered.points(series, points)).is_none() {
                tracing::error!(segment = id, "a metric segment is damaged; it is set aside, not rolled up");
                damaged.push(id);
                continue;
            };
            folded.push(id);
        }
    }
    // Each series' buckets (sorted) into a row per period.
    let mut rows: Vec<(i64, i64, i64, Vec<u8>)> = Vec::new();
    let period_ns = period_of(MINUTE_NS);
    for (series, buckets) in gathered.finish() {
        for run in buckets.chunk_by(|a, b| a.start.div_euclid(period_ns) == b.start.div_euclid(period_ns)) {
            let period = run[0].start.div_euclid(period_ns) * period_ns;
            rows.push((series, MINUTE_NS / 1_000_000_000, period, pack(period, MINUTE_NS, run)));
        }
    }

    let (mut tx, _serial) = db.begin_unaudited().await?;
    if db.engine() == Engine::Postgres {
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS l")
            .bind(crate::store::lock_id("metric-rollups"))
            .execute(&mut *tx)
            .await?;
    }
    for (ids, state) in [(&folded, 1_i64), (&damaged, 2)] {
        for chunk in ids.chunks(IDS_PER_STATEMENT) {
            let sql = format!(
                "UPDATE metric_segments SET rolled_up = {} WHERE rolled_up = 0 AND id IN ({})",
                placeholder(db.engine(), 1),
                placeholders(db.engine(), 2, chunk.len())
            );
            let mut q = sqlx::query(&sql).bind(state);
            for id in chunk {
                q = q.bind(*id);
            }
            if q.execute(&mut *tx).await?.rows_affected() != chunk.len() as u64 {
                tx.rollback().await?;
                return Ok(None);
            }
        }
    }
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO metric_rollups (series_id, resolution, period, pass, data) VALUES {}",
            rows_of(db.engine(), chunk.len(), 5)
        );
        let mut q = sqlx::query(&sql);
        for (series, resolution, period, data) in chunk {
            q = q.bind(*series).bind(*resolution).bind(*period).bind(pass).bind(data.as_slice());
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(Some(folded.len() + damaged.len()))
}

/// Points written and not yet folded.
pub async fn unfolded_points(db: &Db) -> StoreResult<i64> {
    // SUM of a BIGINT is a NUMERIC on PostgreSQL: cast back.
    let (n,): (i64,) =
        sqlx::query_as("SELECT CAST(COALESCE(SUM(points), 0) AS BIGINT) FROM metric_segments WHERE rolled_up = 0")
            .fetch_one(db.pool())
            .await?;
    Ok(n)
}

/// What [`prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub segments: u64,
    /// Rollup rows (each a series' buckets over one period).
    pub buckets: u64,
}

/// Minute rows compacted per statement batch when they pass their retention.
const ROWS_PER_COMPACTION: i64 = 20_000;

/// Deletes rolled-up segments whose newest point is older than the raw retention; turns minute rows past
/// the minutes' retention into hour buckets (a row per series and day) and deletes them; deletes hour rows
/// past the hours' retention; all as of `now_ns`.
pub async fn prune(db: &Db, now_ns: i64, retention: Retention) -> StoreResult<Pruned> {
    let (mut tx, _serial) = db.begin_unaudited().await?;
    let segments = sqlx::query("DELETE FROM metric_segments WHERE rolled_up <> 0 AND max_ts < $1")
        .bind(now_ns.saturating_sub(retention.raw_ns))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    let minutes_before = now_ns.saturating_sub(retention.minutes_ns).saturating_sub(HOUR_NS);
    let (mut buckets, mut batch) = (0, 0_i64);
    loop {
        let rows: Vec<(i64, i64, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT series_id, period, pass, data FROM metric_rollups WHERE resolution = 60 AND period < $1 \
             ORDER BY period, series_id LIMIT $2",
        )
        .bind(minutes_before)
        .bind(ROWS_PER_COMPACTION)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            break;
        }
        let mut days: HashMap<(i64, i64), Vec<Bucket>, foldhash::fast::RandomState> = HashMap::default();
        for (series, period, _, data) in &rows {
            let Some(minutes) = unpack(*period, MINUTE_NS, data) else {
                tracing::error!(series, period, "a minute rollup row is damaged; it is deleted, not compacted");
                continue;
            };
            let mut hour = Bucket { start: *period, min: f64::INFINITY, max: f64::NEG_INFINITY, sum: 0.0, count: 0 };
            for m in &minutes {
                hour.merge(m);
            }
            if hour.count > 0 {
                days.entry((*series, period.div_euclid(DAY_NS) * DAY_NS)).or_default().push(hour);
            }
        }
        // A day's hours may come from several rows of an hour: merge them.
        let compacted: Vec<(i64, i64, Vec<u8>)> = days
            .into_iter()
            .map(|((series, day), mut hours)| {
                hours.sort_by_key(|b| b.start);
                let mut merged: Vec<Bucket> = Vec::with_capacity(hours.len());
                for h in hours {
                    Gatherer::join(&mut merged, h);
                }
                (series, day, pack(day, HOUR_NS, &merged))
            })
            .collect();
        // Numbered apart from every fold pass (those are segment numbers, positive) and from every other
        // compaction (by the instant of the prune and the batch within it).
        let pass = -(now_ns.max(1).saturating_add(batch));
        batch += 1;
        for chunk in compacted.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO metric_rollups (series_id, resolution, period, pass, data) VALUES {}",
                rows_of(db.engine(), chunk.len(), 5)
            );
            let mut q = sqlx::query(&sql);
            for (series, day, data) in chunk {
                q = q.bind(*series).bind(3600_i64).bind(*day).bind(pass).bind(data.as_slice());
            }
            q.execute(&mut *tx).await?;
        }
        for chunk in rows.chunks(IDS_PER_STATEMENT / 4) {
            let keys = (0..chunk.len())
                .map(|i| {
                    let p: Vec<String> = (i * 3 + 1..=i * 3 + 3).map(|n| placeholder(db.engine(), n)).collect();
                    format!("(series_id = {} AND period = {} AND pass = {})", p[0], p[1], p[2])
                })
                .collect::<Vec<_>>()
                .join(" OR ");
            let sql = format!("DELETE FROM metric_rollups WHERE resolution = 60 AND ({keys})");
            let mut q = sqlx::query(&sql);
            for (series, period, pass, _) in chunk {
                q = q.bind(*series).bind(*period).bind(*pass);
            }
            buckets += q.execute(&mut *tx).await?.rows_affected();
        }
    }
    buckets += sqlx::query("DELETE FROM metric_rollups WHERE resolution = 3600 AND period < $1")
        .bind(now_ns.saturating_sub(retention.hours_ns).saturating_sub(DAY_NS))
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(Pruned { segments, buckets })
}

/// The buckets of the given series at `resolution_ns` (a minute or an hour) from `from_ns` to `to_ns`: the
/// folded rows merged with the points of segments not folded yet, read in one snapshot.
pub(super) async fn buckets_of(
    db: &Db,
    series: &[i64],
    resolution_ns: i64,
    from_ns: i64,
    to_ns: i64,
) -> StoreResult<HashMap<i64, Vec<Bucket>>> {
    let first = from_ns.div_euclid(resolution_ns) * resolution_ns;
    // Hour buckets are kept as minute rows until those pass their retention, and as day rows after.
    let (coarsest, earliest) = if resolution_ns == MINUTE_NS {
        (60_i64, first.div_euclid(HOUR_NS) * HOUR_NS)
    } else {
        (3600, first.div_euclid(DAY_NS) * DAY_NS)
    };
    let mut gathered = Gatherer::new(resolution_ns, (first, to_ns));
    let mut tx = db.pool().begin().await?;
    if db.engine() == Engine::Postgres {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
    }
    for chunk in series.chunks(IDS_PER_STATEMENT) {
        let sql = format!(
            "SELECT series_id, resolution, period, data FROM metric_rollups WHERE resolution <= {} \
             AND period >= {} AND period <= {} AND series_id IN ({})",
            placeholder(db.engine(), 1),
            placeholder(db.engine(), 2),
            placeholder(db.engine(), 3),
            placeholders(db.engine(), 4, chunk.len())
        );
        let mut q = sqlx::query_as::<_, (i64, i64, i64, Vec<u8>)>(&sql).bind(coarsest).bind(earliest).bind(to_ns);
        for id in chunk {
            q = q.bind(*id);
        }
        for (id, resolution, start, data) in q.fetch_all(&mut *tx).await? {
            let buckets = unpack(start, resolution * 1_000_000_000, &data)
                .ok_or_else(|| StoreError::Internal(format!("a rollup row of series {id} is damaged")))?;
            for b in buckets {
                gathered.bucket(id, b);
            }
        }
    }
    let wanted: std::collections::HashSet<i64> = series.iter().copied().collect();
    let pending: Vec<(i64, Vec<u8>)> = sqlx::query_as(
        "SELECT id, data FROM metric_segments WHERE rolled_up = 0 AND max_ts >= $1 AND min_ts <= $2 ORDER BY id",
    )
    .bind(first)
    .bind(to_ns)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    for (id, data) in pending {
        each_series(&data, |s| wanted.contains(&s), |s, points| gathered.points(s, points))
            .ok_or_else(|| StoreError::Internal(format!("metric segment {id} is damaged")))?;
    }
    Ok(gathered.finish().collect())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_buckets_come_back_exactly_and_a_damaged_row_is_refused() {
        let period = 7 * HOUR_NS;
        let buckets = vec![
            Bucket { start: period, min: -1.5, max: 3.0, sum: 4.5, count: 3 },
            Bucket { start: period + 59 * MINUTE_NS, min: f64::MAX, max: f64::MAX, sum: f64::MAX, count: 1 },
        ];
        let data = pack(period, MINUTE_NS, &buckets);
        assert_eq!(unpack(period, MINUTE_NS, &data), Some(buckets));
        assert_eq!(unpack(period, MINUTE_NS, &data[..data.len() - 1]), None);
        assert_eq!(unpack(period, MINUTE_NS, &[9]), None);
    }
}
