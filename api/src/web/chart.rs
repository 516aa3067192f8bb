//! Charts as inline SVG, drawn on the server from the rollups: a line of per-bucket averages over a window,
//! scaled to 0–100 %, with the figures a reader wants beside it (latest, average, peak).

use serde_json::{json, Value};
use tollgate_workflows::metrics::rollup::{rollups, Bucket, HOUR_NS, MINUTE_NS};
use tollgate_workflows::metrics::store::Selector;
use tollgate_workflows::{Db, StoreResult};

const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 140.0;

/// The window a chart covers, and the rollup it reads.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub label: &'static str,
    pub ns: i64,
    pub resolution_ns: i64,
}

/// The last hour and the last 24 hours from the per-minute rollups, and the last 7 days from the per-hour
/// ones.
pub const SPANS: [Span; 3] = [
    Span { label: "last hour", ns: 3600 * 1_000_000_000, resolution_ns: MINUTE_NS },
    Span { label: "last 24 h", ns: 24 * 3600 * 1_000_000_000, resolution_ns: MINUTE_NS },
    Span { label: "last 7 days", ns: 7 * 24 * 3600 * 1_000_000_000, resolution_ns: HOUR_NS },
];

/// Per-bucket values of a series (its buckets' averages through `value`), merged across the series the
/// selector matches by bucket start.
pub async fn values(
    db: &Db,
    selector: &Selector,
    span: Span,
    now_ns: i64,
    value: impl Fn(&Bucket) -> f64,
) -> StoreResult<Vec<(i64, f64)>> {
    let mut by_start: std::collections::BTreeMap<i64, (f64, u32)> = std::collections::BTreeMap::new();
    for (_, buckets) in rollups(db, selector, span.resolution_ns, now_ns - span.ns, now_ns).await? {
        for b in buckets.iter().filter(|b| b.count > 0) {
            let e = by_start.entry(b.start).or_default();
            e.0 += value(b);
            e.1 += 1;
        }
    }
    Ok(by_start.into_iter().map(|(t, (sum, n))| (t, sum / f64::from(n))).collect())
}

/// A chart of `points` (percent) over `span` ending at `now_ns`.
pub fn draw(title: &str, span: Span, now_ns: i64, points: &[(i64, f64)]) -> Value {
    let from = now_ns - span.ns;
    let x = |t: i64| ((t - from) as f64 / span.ns as f64 * WIDTH).clamp(0.0, WIDTH);
    let y = |v: f64| HEIGHT - (v.clamp(0.0, 100.0) / 100.0 * HEIGHT);
    let line: Vec<String> = points.iter().map(|(t, v)| format!("{:.1},{:.1}", x(*t), y(*v))).collect();
    let (sum, peak) = points.iter().fold((0.0, 0.0f64), |(s, m), (_, v)| (s + v, m.max(*v)));
    let avg = if points.is_empty() { 0.0 } else { sum / points.len() as f64 };
    json!({
        "title": title,
        "span": span.label,
        "has_data": !points.is_empty(),
        // A single reading draws as a dot rather than an invisible line.
        "single": points.len() == 1,
        "dot": points.first().map(|(t, v)| json!({"x": format!("{:.1}", x(*t)), "y": format!("{:.1}", y(*v))})),
        "line": line.join(" "),
        "latest": points.last().map(|(_, v)| format!("{v:.1} %")).unwrap_or_default(),
        "avg": format!("{avg:.1} %"),
        "peak": format!("{peak:.1} %"),
        "readings": points.len(),
    })
}
