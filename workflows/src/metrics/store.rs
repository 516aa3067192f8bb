//! The server's own store of metric points: what agents write, kept in its database.
//!
//! Writes are grouped: a request's points join the batch being gathered and the request is answered once
//! that batch is committed, as one row of `metric_segments` holding every series' points of the batch, packed
//! ([`super::block`]). So an accepted write is durable, and many writers share one commit. Each series
//! (measurement, field, tags) is numbered once in `metric_series`. Numeric fields are kept as floats
//! (integers, unsigned integers, and booleans as 1 or 0); string fields are not kept, and are counted.

use super::block::{self, push_varint, read_varint};
use super::line::{for_each_line, push_escaped_key, FieldValue, Line, LineError, Point, Precision};
use crate::error::{StoreError, StoreResult};
use crate::store::Db;
use sqlx::any::AnyArguments;
use sqlx::Arguments;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use tokio::sync::{watch, Notify};

/// What identifies a series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub measurement: String,
    pub field: String,
    /// The tags sorted by key, `key=value` joined by commas, escaped as in line protocol.
    pub tags: String,
}

/// What a write kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Field values stored.
    pub values: u64,
    /// String field values, which are not stored.
    pub skipped: u64,
}

/// One series' points as a query returns them.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub measurement: String,
    pub field: String,
    pub tags: Vec<(String, String)>,
    /// (nanoseconds since the epoch, value), oldest first.
    pub points: Vec<(i64, f64)>,
}

/// Which series a query reads: a measurement's field, and tags that must match exactly.
#[derive(Debug, Clone, Default)]
pub struct Selector {
    pub measurement: String,
    pub field: String,
    pub tags: Vec<(String, String)>,
}

/// Totals since the server started, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Totals {
    pub values: u64,
    pub skipped: u64,
    pub batches: u64,
}

/// Handle to the point store; cheap to clone. Created once per server with [`MetricStore::start`].
#[derive(Clone)]
pub struct MetricStore {
    inner: Arc<Inner>,
}

type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

struct Inner {
    db: Db,
    gathering: Mutex<Batch>,
    wake: Notify,
    /// Series numbers by canonical key.
    ids: Mutex<FastMap<SeriesKey, i64>>,
    /// Series numbers by the key as a write spelled it (see [`spelling`]): most points of a write are
    /// numbered by one look-up here, with no canonical key built.
    spellings: RwLock<FastMap<Box<str>, i64>>,
    values: AtomicU64,
    skipped: AtomicU64,
    batches: AtomicU64,
}

/// Points waiting for the next commit, as (series number, nanoseconds, value), and how their writers learn
/// its outcome.
struct Batch {
    points: Vec<(i64, i64, f64)>,
    done: watch::Sender<Option<Result<(), String>>>,
}

impl Batch {
    fn new() -> Self {
        Batch { points: Vec::new(), done: watch::channel(None).0 }
    }
}

/// Keys per statement when numbering new series (three values each; see rollup's BUCKETS_PER_STATEMENT).
const KEYS_PER_STATEMENT: usize = 100;
/// Buckets a query may return per series.
pub const MAX_BUCKETS: i64 = 11_000;
/// Spellings remembered at most; past it they are forgotten and learnt again (a write that spells its tags
/// in ever new orders cannot grow the memory without bound).
const MAX_SPELLINGS: usize = 1 << 20;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is a single call: a panic elsewhere cannot leave them half-done.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A series key for a point given as a [`Point`] rather than read from text: a line break (which no line's
/// spelling starts with, see [`Line::spelling`]), the measurement, tags in the order given, field, each ended
/// by a line break, into `out`.
fn spelling_of_point(out: &mut String, p: &Point<'_>, field: &str) {
    out.clear();
    out.push('\n');
    out.push_str(&p.measurement);
    out.push('\n');
    for (k, v) in &p.tags {
        out.push_str(k);
        out.push('\n');
        out.push_str(v);
        out.push('\n');
    }
    out.push('\n');
    out.push_str(field);
}

/// A write's points read and numbered where this server knows their series; [`MetricStore::store`]
/// numbers the rest and commits them. Holds nothing of the body it was read from.
#[derive(Default)]
pub struct Gathered {
    /// (series number, nanoseconds, value); number 0 until known.
    rows: Vec<(i64, i64, f64)>,
    /// (row, spelling, canonical key) of the points whose series this server has not numbered yet.
    unknown: Vec<(usize, Box<str>, SeriesKey)>,
    skipped: u64,
}

impl Gathered {
    /// Adds the numeric fields of `p`, spelt as `line` spells them when it was read from one (see
    /// [`Line::spelling`]), else by [`spelling_of_point`]; `buf` is room for spellings.
    fn add(
        &mut self,
        spellings: &FastMap<Box<str>, i64>,
        p: &Point<'_>,
        line: Option<&Line<'_>>,
        now_ns: i64,
        buf: &mut String,
    ) {
        let at = p.timestamp.unwrap_or(now_ns);
        for (i, (field, value)) in p.fields.iter().enumerate() {
            if p.fields.len() > 1 && p.fields[i + 1..].iter().any(|(later, _)| later == field) {
                continue; // a field written twice in one line: the last one counts
            }
            let value = match value {
                FieldValue::Float(f) => *f,
                FieldValue::Int(n) => *n as f64,
                FieldValue::UInt(n) => *n as f64,
                FieldValue::Bool(b) => f64::from(u8::from(*b)),
                FieldValue::Str(_) => {
                    self.skipped += 1;
                    continue;
                }
            };
            let key = match line {
                Some(line) => line.spelling(i, buf),
                None => {
                    spelling_of_point(buf, p, field);
                    buf.as_str()
                }
            };
            let id = match spellings.get(key) {
                Some(id) => *id,
                None => {
                    let canonical = SeriesKey {
                        measurement: p.measurement.to_string(),
                        field: field.to_string(),
                        tags: canonical_tags(&p.tags),
                    };
                    self.unknown.push((self.rows.len(), key.into(), canonical));
                    0
                }
            };
            self.rows.push((id, at, value));
        }
    }
}

impl MetricStore {
    /// Starts the store's committer on the current runtime.
    pub fn start(db: Db) -> MetricStore {
        let inner = Arc::new(Inner {
            db,
            gathering: Mutex::new(Batch::new()),
            wake: Notify::new(),
            ids: Mutex::new(FastMap::default()),
            spellings: RwLock::new(FastMap::default()),
            values: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            batches: AtomicU64::new(0),
        });
        let committer = inner.clone();
        tokio::spawn(async move {
            loop {
                committer.wake.notified().await;
                // Whatever gathered while the last batch committed goes in the next one.
                loop {
                    let batch = {
                        let mut gathering = lock(&committer.gathering);
                        if gathering.points.is_empty() {
                            break;
                        }
                        std::mem::replace(&mut *gathering, Batch::new())
                    };
                    let outcome = committer.commit(batch.points).await;
                    if let Err(e) = &outcome {
                        tracing::error!(error = %e, "metric points could not be stored; their writers are told");
                    }
                    let _ = batch.done.send(Some(outcome.map_err(|e| e.to_string())));
                }
            }
        });
        MetricStore { inner }
    }

    /// Stores `points`, those without a timestamp at `now_ns`; returns once they are committed.
    pub async fn write(&self, points: &[Point<'_>], now_ns: i64) -> StoreResult<WriteSummary> {
        let mut gathered = Gathered::default();
        {
            let spellings = self.inner.spellings.read().unwrap_or_else(std::sync::PoisonError::into_inner);
            let mut buf = String::new();
            for p in points {
                gathered.add(&spellings, p, None, now_ns, &mut buf);
            }
        }
        self.store(gathered).await
    }

    /// Reads a line-protocol body (timestamps in `precision`, lines without one at `now_ns`) for
    /// [`MetricStore::store`]; the first malformed line refuses it whole.
    pub fn read(&self, body: &[u8], precision: Precision, now_ns: i64) -> Result<Gathered, LineError> {
        // A line is rarely under 30 bytes: room for most bodies' points without growing.
        let mut gathered = Gathered { rows: Vec::with_capacity(body.len() / 30 + 1), ..Gathered::default() };
        let spellings = self.inner.spellings.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut buf = String::new();
        for_each_line(body, precision, |line| gathered.add(&spellings, &line.point, Some(line), now_ns, &mut buf))?;
        Ok(gathered)
    }

    /// Numbers the series `gathered` met that this server has not numbered yet, and commits its points;
    /// returns once they are committed.
    pub async fn store(&self, gathered: Gathered) -> StoreResult<WriteSummary> {
        let Gathered { mut rows, unknown, skipped } = gathered;
        let summary = WriteSummary { values: rows.len() as u64, skipped };
        self.inner.skipped.fetch_add(summary.skipped, Ordering::Relaxed);
        if rows.is_empty() {
            return Ok(summary);
        }
        if !unknown.is_empty() {
            let ids = self.inner.number(unknown.iter().map(|u| &u.2)).await?;
            let mut spellings = self.inner.spellings.write().unwrap_or_else(std::sync::PoisonError::into_inner);
            if spellings.len() + unknown.len() > MAX_SPELLINGS {
                spellings.clear();
            }
            for (row, spelt, canonical) in unknown {
                let id = *ids
                    .get(&canonical)
                    .ok_or_else(|| StoreError::Internal(format!("series {canonical:?} has no number")))?;
                rows[row].0 = id;
                spellings.insert(spelt, id);
            }
        }
        let mut done = {
            let mut gathering = lock(&self.inner.gathering);
            gathering.points.extend_from_slice(&rows);
            gathering.done.subscribe()
        };
        self.inner.wake.notify_one();
        let outcome = done
            .wait_for(Option::is_some)
            .await
            .map_err(|_| StoreError::Internal("the metric store stopped before storing the points".to_owned()))?
            .clone();
        match outcome {
            Some(Ok(())) => {
                self.inner.values.fetch_add(summary.values, Ordering::Relaxed);
                Ok(summary)
            }
            Some(Err(e)) => Err(StoreError::Internal(format!("the points were not stored: {e}"))),
            None => Err(StoreError::Internal("the points were not stored".to_owned())),
        }
    }

    pub fn totals(&self) -> Totals {
        Totals {
            values: self.inner.values.load(Ordering::Relaxed),
            skipped: self.inner.skipped.load(Ordering::Relaxed),
            batches: self.inner.batches.load(Ordering::Relaxed),
        }
    }

    /// The series `selector` names, their points from `from_ns` to `to_ns` (inclusive); with a `step_ns`,
    /// averaged over steps starting at `from_ns` (each point stamped with its step's start); see [`query`].
    pub async fn query(&self, selector: &Selector, from_ns: i64, to_ns: i64, step_ns: i64) -> StoreResult<Vec<Series>> {
        query(&self.inner.db, selector, from_ns, to_ns, step_ns).await
    }
}

impl Inner {
    /// Commits a batch as one segment: its points sorted by series and time (stably: of two points of a
    /// series at one instant, the one written last stays last, and counts).
    async fn commit(&self, mut points: Vec<(i64, i64, f64)>) -> StoreResult<()> {
        points.sort_by_key(|p| (p.0, p.1));
        let (tx, _serial) = self.db.begin_unaudited().await?;
        let mut tx = tx;
        let (min, max) = points.iter().fold((i64::MAX, i64::MIN), |(lo, hi), p| (lo.min(p.1), hi.max(p.1)));
        sqlx::query("INSERT INTO metric_segments (min_ts, max_ts, points, data) VALUES ($1, $2, $3, $4)")
            .bind(min)
            .bind(max)
            .bind(points.len() as i64)
            .bind(encode_segment(&points))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.batches.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// The number of each series, numbering the new ones in a transaction of their own (a series numbered
    /// whose points then fail to commit is harmless: it has no points).
    async fn number<'k>(&self, keys: impl Iterator<Item = &'k SeriesKey>) -> StoreResult<FastMap<SeriesKey, i64>> {
        let mut ids = FastMap::default();
        let mut missing = Vec::new();
        {
            let known = lock(&self.ids);
            for key in keys {
                match known.get(key) {
                    Some(id) => {
                        ids.insert(key.clone(), *id);
                    }
                    None if !missing.contains(key) => missing.push(key.clone()),
                    None => {}
                }
            }
        }
        if missing.is_empty() {
            return Ok(ids);
        }
        let (mut tx, _serial) = self.db.begin_unaudited().await?;
        let mut numbered = Vec::with_capacity(missing.len());
        for chunk in missing.chunks(KEYS_PER_STATEMENT) {
            let values = (0..chunk.len())
                .map(|i| format!("(${}, ${}, ${})", 3 * i + 1, 3 * i + 2, 3 * i + 3))
                .collect::<Vec<_>>()
                .join(", ");
            let args = || {
                let mut args = AnyArguments::default();
                for key in chunk {
                    let _ = args.add(key.measurement.clone());
                    let _ = args.add(key.field.clone());
                    let _ = args.add(key.tags.clone());
                }
                args
            };
            let insert = format!(
                "INSERT INTO metric_series (measurement, field, tags) VALUES {values} \
                 ON CONFLICT (measurement, field, tags) DO NOTHING"
            );
            sqlx::query_with(&insert, args()).execute(&mut *tx).await?;
            let select = format!(
                "SELECT id, measurement, field, tags FROM metric_series WHERE (measurement, field, tags) IN (VALUES {values})"
            );
            let rows: Vec<(i64, String, String, String)> =
                sqlx::query_as_with(&select, args()).fetch_all(&mut *tx).await?;
            numbered.extend(
                rows.into_iter().map(|(id, measurement, field, tags)| (SeriesKey { measurement, field, tags }, id)),
            );
        }
        tx.commit().await?;
        // Numbers are kept only once their rows are committed.
        let mut known = lock(&self.ids);
        if known.len() + numbered.len() > MAX_SPELLINGS {
            known.clear();
        }
        for (key, id) in numbered {
            known.insert(key.clone(), id);
            ids.insert(key, id);
        }
        Ok(ids)
    }
}

/// The tags sorted by key, escaped and joined: the same set always gives the same text.
fn canonical_tags(tags: &[(std::borrow::Cow<'_, str>, std::borrow::Cow<'_, str>)]) -> String {
    let mut sorted: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
    sorted.sort_unstable();
    let mut out = String::new();
    for (n, (k, v)) in sorted.into_iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        push_escaped_key(&mut out, k);
        out.push('=');
        push_escaped_key(&mut out, v);
    }
    out
}

/// The tags of a canonical tag text, read back with the line-protocol parser.
pub(crate) fn tags_of(canonical: &str) -> Vec<(String, String)> {
    if canonical.is_empty() {
        return Vec::new();
    }
    let line = format!("m,{canonical} v=0");
    match super::line::parse(line.as_bytes(), super::line::Precision::Ns) {
        Ok(points) => points
            .into_iter()
            .next()
            .map(|p| p.tags.into_iter().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

/// Segments are written in format 2 and read in formats 1 and 2.
const SEGMENT_FORMAT: u8 = 2;

/// (nanoseconds since the epoch, value), oldest first.
pub(super) type Points = Vec<(i64, f64)>;

/// Format 2: the format byte, the number of series (varint), the base instant (zigzag varint), then per
/// series its number and its block's length (varints) and the block, packed against the base. (Format 1 had
/// no base: its blocks are packed against zero.) `points` are (series, nanoseconds, value) sorted by series.
fn encode_segment(points: &[(i64, i64, f64)]) -> Vec<u8> {
    let base = points.iter().map(|p| p.1).min().unwrap_or(0);
    let runs: Vec<&[(i64, i64, f64)]> = points.chunk_by(|a, b| a.0 == b.0).collect();
    let mut out = Vec::with_capacity(16 + points.len() * 8);
    out.push(SEGMENT_FORMAT);
    push_varint(&mut out, runs.len() as u64);
    push_varint(&mut out, block::zigzag(base));
    let mut packed = Vec::new();
    for run in runs {
        packed.clear();
        block::encode_into(&mut packed, base, run.iter().map(|p| (p.1, p.2)));
        push_varint(&mut out, run[0].0 as u64);
        push_varint(&mut out, packed.len() as u64);
        out.extend_from_slice(&packed);
    }
    out
}

/// The points of a segment's series that `want` accepts, by series number; `None` when the segment is damaged.
pub(crate) fn decode_segment(data: &[u8], want: impl Fn(i64) -> bool) -> Option<Vec<(i64, Points)>> {
    let mut found = Vec::new();
    each_series(data, want, |id, points| found.push((id, points.to_vec())))?;
    Some(found)
}

/// Shows `each` the points of every series of a segment that `want` accepts, in the segment's order, once
/// the whole segment has been read (one buffer for all of them); `None`, having shown nothing, when the
/// segment is damaged.
pub(crate) fn each_series(
    data: &[u8],
    want: impl Fn(i64) -> bool,
    mut each: impl FnMut(i64, &[(i64, f64)]),
) -> Option<()> {
    let (&format, _) = data.split_first()?;
    let (n, mut rest) = block::header(data, format)?;
    let base = match format {
        1 => 0,
        SEGMENT_FORMAT => block::unzigzag(read_varint(&mut rest)?),
        _ => return None,
    };
    let mut points = Vec::new();
    // (series, where its points end in `points`)
    let mut series = Vec::new();
    for _ in 0..n {
        let id = read_varint(&mut rest)? as i64;
        let len = usize::try_from(read_varint(&mut rest)?).ok()?;
        if len > rest.len() {
            return None;
        }
        let (packed, after) = rest.split_at(len);
        rest = after;
        if want(id) {
            block::decode_into(packed, base, &mut points)?;
            series.push((id, points.len()));
        }
    }
    let mut start = 0;
    for (id, end) in series {
        each(id, &points[start..end]);
        start = end;
    }
    Some(())
}

/// The series `selector` names: (number, tags), ordered by their tags.
pub(super) async fn select_series(db: &Db, selector: &Selector) -> StoreResult<Vec<(i64, Vec<(String, String)>)>> {
    let candidates: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, tags FROM metric_series WHERE measurement = $1 AND field = $2 ORDER BY tags")
            .bind(&selector.measurement)
            .bind(&selector.field)
            .fetch_all(db.pool())
            .await?;
    Ok(candidates
        .into_iter()
        .map(|(id, canonical)| (id, tags_of(&canonical)))
        .filter(|(_, tags)| selector.tags.iter().all(|want| tags.contains(want)))
        .collect())
}

/// See [`MetricStore::query`]. A step of a minute or more reads the rollups (of minutes, or of hours from a
/// step of an hour), which the upkeep loop brings up to date every few seconds; a shorter step reads points.
pub async fn query(db: &Db, selector: &Selector, from_ns: i64, to_ns: i64, step_ns: i64) -> StoreResult<Vec<Series>> {
    if to_ns < from_ns {
        return Err(crate::error::ValidationError::new("to", "the end is before the start").into());
    }
    if step_ns < 0
        || (step_ns > 0 && (i128::from(to_ns) - i128::from(from_ns)) / i128::from(step_ns) >= i128::from(MAX_BUCKETS))
    {
        return Err(crate::error::ValidationError::new(
            "step",
            format!("a query returns at most {MAX_BUCKETS} steps per series: choose a longer step"),
        )
        .into());
    }
    let mut series = Vec::new();
    let mut wanted = HashMap::new();
    for (id, tags) in select_series(db, selector).await? {
        wanted.insert(id, series.len());
        series.push(Series {
            measurement: selector.measurement.clone(),
            field: selector.field.clone(),
            tags,
            points: Vec::new(),
        });
    }
    if series.is_empty() {
        return Ok(series);
    }
    if step_ns >= super::rollup::MINUTE_NS {
        let ids: Vec<i64> = wanted.keys().copied().collect();
        let resolution =
            if step_ns >= super::rollup::HOUR_NS { super::rollup::HOUR_NS } else { super::rollup::MINUTE_NS };
        for (id, buckets) in super::rollup::buckets_of(db, &ids, resolution, from_ns, to_ns).await? {
            series[wanted[&id]].points = super::rollup::averaged(&buckets, from_ns, step_ns);
        }
        return Ok(series);
    }
    let segments: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT id, data FROM metric_segments WHERE max_ts >= $1 AND min_ts <= $2 ORDER BY id")
            .bind(from_ns)
            .bind(to_ns)
            .fetch_all(db.pool())
            .await?;
    for (id, data) in segments {
        let found = decode_segment(&data, |s| wanted.contains_key(&s))
            .ok_or_else(|| StoreError::Internal(format!("metric segment {id} is damaged")))?;
        for (s, points) in found {
            let slot = wanted[&s];
            series[slot].points.extend(points.into_iter().filter(|(t, _)| (from_ns..=to_ns).contains(t)));
        }
    }
    for s in &mut series {
        // Stable, and segments were read in the order written: of two points at one instant, keep the later.
        s.points.sort_by_key(|p| p.0);
        s.points.dedup_by(|later, earlier| {
            if later.0 == earlier.0 {
                earlier.1 = later.1;
                true
            } else {
                false
            }
        });
        if step_ns > 0 {
            s.points = averaged(&s.points, from_ns, step_ns);
        }
    }
    Ok(series)
}

/// The average of the points in each step that has any, stamped with the step's start: each point a bucket of
/// one, averaged as the rollups' buckets are.
fn averaged(points: &[(i64, f64)], from_ns: i64, step_ns: i64) -> Vec<(i64, f64)> {
    let buckets: Vec<super::rollup::Bucket> =
        points.iter().map(|&(t, v)| super::rollup::Bucket { start: t, min: v, max: v, sum: v, count: 1 }).collect();
    super::rollup::averaged(&buckets, from_ns, step_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_tags_in_any_order_are_one_series_and_read_back() {
        let a = canonical_tags(&[("host".into(), "hv 1".into()), ("cluster".into(), "eu,1".into())]);
        let b = canonical_tags(&[("cluster".into(), "eu,1".into()), ("host".into(), "hv 1".into())]);
        assert_eq!(a, b);
        assert_eq!(tags_of(&a), [("cluster".to_owned(), "eu,1".to_owned()), ("host".to_owned(), "hv 1".to_owned())]);
        assert_eq!(tags_of(""), []);
    }

    #[test]
    fn a_segment_gives_back_only_the_series_asked_for() {
        let data = encode_segment(&[(3, 1, 1.0), (3, 2, 2.0), (7, 5, 5.0)]);
        assert_eq!(decode_segment(&data, |s| s == 7), Some(vec![(7, vec![(5, 5.0)])]));
        assert_eq!(decode_segment(&data, |s| s == 3), Some(vec![(3, vec![(1, 1.0), (2, 2.0)])]));
        assert_eq!(decode_segment(&data[..data.len() - 1], |s| s == 7), None);
    }

    #[test]
    fn a_segment_of_the_first_format_still_reads() {
        // Format 1: no base instant; each block packed against zero.
        let mut data = vec![1, 2];
        for (id, points) in [(3_u64, vec![(1_700_000_000_000_000_000, 1.5)]), (7, vec![(5, 5.0), (6, 6.0)])] {
            let packed = block::encode(&points);
            push_varint(&mut data, id);
            push_varint(&mut data, packed.len() as u64);
            data.extend_from_slice(&packed);
        }
        assert_eq!(
            decode_segment(&data, |_| true),
            Some(vec![(3, vec![(1_700_000_000_000_000_000, 1.5)]), (7, vec![(5, 5.0), (6, 6.0)])])
        );
        assert_eq!(decode_segment(&[9, 0], |_| true), None, "an unknown format");
    }

    #[test]
    fn a_segment_packs_its_times_against_its_earliest() {
        let t = 1_700_000_000_000_000_000;
        let points: Vec<(i64, i64, f64)> = (0..1000).map(|s| (s, t + s % 3, 42.0)).collect();
        let data = encode_segment(&points);
        assert!(data.len() < points.len() * 10, "{} bytes for {} one-point series", data.len(), points.len());
        let back = decode_segment(&data, |_| true).expect("reads");
        assert_eq!(back.len(), 1000);
        assert_eq!(back[5], (5, vec![(t + 2, 42.0)]));
    }

    #[test]
    fn steps_average_their_points_and_skip_empty_ones() {
        let points = [(0, 1.0), (5, 3.0), (10, 4.0), (35, 8.0)];
        assert_eq!(averaged(&points, 0, 10), [(0, 2.0), (10, 4.0), (30, 8.0)]);
    }
}
