//! Metric points: the InfluxDB-v2-compatible write API agents write to, and series for charts.

use super::Text;
use crate::auth::{Authorized, ReadMetrics, WriteMetrics};
use crate::error::{ApiError, ApiResult, Json, Query};
use crate::forward::Forwarder;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::Read;
use std::io::Write as _;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tollgate_workflows::metrics::line::{self, Precision};
use tollgate_workflows::metrics::store::{MetricStore, Selector};
use tollgate_workflows::Db;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The largest write body as sent (compressed or not).
const MAX_SENT_BYTES: usize = 32 * 1024 * 1024;
/// The largest write body once decompressed.
const MAX_WRITE_BYTES: u64 = 128 * 1024 * 1024;

pub fn influx_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(write)).layer(DefaultBodyLimit::max(MAX_SENT_BYTES))
}

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(query_series)).routes(routes!(utilisation)).routes(routes!(rightsizing))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WriteParams {
    /// Accepted for InfluxDB's clients; Tollgate keeps one store.
    #[allow(dead_code)]
    org: Option<String>,
    /// Accepted for InfluxDB's clients; Tollgate keeps one store.
    #[allow(dead_code)]
    bucket: Option<String>,
    /// The unit of the body's timestamps: `ns` (the default), `us`, `ms` or `s`.
    precision: Option<String>,
}

/// An error as InfluxDB's write API reports it, which its clients read.
#[derive(Serialize, ToSchema)]
pub struct InfluxError {
    /// `invalid`, `request too large`, `unsupported media type` or `unavailable`.
    code: &'static str,
    message: String,
}

fn influx_error(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    (status, axum::Json(InfluxError { code, message: message.into() })).into_response()
}

/// Writes points in InfluxDB line protocol (optionally gzip-compressed), as InfluxDB 2's write API does.
/// A malformed body is refused whole, naming its first bad line; `204` means every point is stored.
#[utoipa::path(post, path = "/api/v2/write", tag = "metrics", params(WriteParams),
    request_body(content = String, content_type = "text/plain", description = "Line protocol"),
    responses(
        (status = 204, description = "Every point is stored"),
        (status = 400, body = InfluxError, description = "A malformed body (nothing of it is stored) or precision"),
        (status = 413, body = InfluxError),
        (status = 415, body = InfluxError),
        (status = 503, body = InfluxError, description = "The points could not be stored: retry")),
    security(("bearer" = ["agent", "operator", "admin"])))]
async fn write(
    _auth: Authorized<WriteMetrics>,
    State(store): State<MetricStore>,
    State(forwarder): State<Option<Forwarder>>,
    State(db): State<Db>,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let precision = match params.precision.as_deref() {
        None => Precision::Ns,
        Some(p) => match Precision::parse(p) {
            Some(p) => p,
            None => {
                return influx_error(
                    StatusCode::BAD_REQUEST,
                    "invalid",
                    format!("precision {p:?} is not one of ns, us, ms, s"),
                )
            }
        },
    };
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok()).unwrap_or("identity");
    let gzipped = encoding.trim().eq_ignore_ascii_case("gzip");
    let text: Cow<'_, [u8]> = match encoding.trim().to_ascii_lowercase().as_str() {
        "identity" | "" => Cow::Borrowed(&body),
        "gzip" => {
            let mut out = Vec::new();
            let read = flate2::read::MultiGzDecoder::new(&body[..]).take(MAX_WRITE_BYTES + 1).read_to_end(&mut out);
            match read {
                Err(e) => {
                    return influx_error(StatusCode::BAD_REQUEST, "invalid", format!("the gzip body is damaged: {e}"))
                }
                Ok(n) if n as u64 > MAX_WRITE_BYTES => {
                    return influx_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "request too large",
                        format!("the body is over {MAX_WRITE_BYTES} bytes once decompressed"),
                    )
                }
                Ok(_) => Cow::Owned(out),
            }
        }
        other => {
            return influx_error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported media type",
                format!("Content-Encoding {other:?} is not gzip or identity"),
            )
        }
    };
    let gathered = match store.read(&text, precision, db.clock().now_nanos()) {
        Ok(gathered) => gathered,
        Err(e) => return influx_error(StatusCode::BAD_REQUEST, "invalid", e.to_string()),
    };
    match store.store(gathered).await {
        Ok(_) => {
            if let Some(f) = forwarder {
                // As written: a gzip body goes on as it came.
                let batch = if gzipped { Ok(body.to_vec()) } else { gzip(&text) };
                match batch {
                    Ok(b) => f.push(b, precision.as_str()),
                    Err(e) => tracing::warn!(error = %e, "a batch could not be compressed for forwarding"),
                }
            }
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "a metric write was not stored");
            influx_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "the points were not stored: retry")
        }
    }
}

fn gzip(text: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(text.len() / 4), flate2::Compression::fast());
    enc.write_all(text)?;
    enc.finish()
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SeriesQuery {
    /// The measurement, e.g. `cpu`.
    #[param(inline)]
    measurement: Text<256>,
    /// The field, e.g. `usage_user`.
    #[param(inline)]
    field: Text<256>,
    /// Tags the series must have, written as in line protocol: `host=hv-01,cluster=eu-1`.
    #[param(inline)]
    tags: Option<Text<2048>>,
    /// RFC 3339; default: an hour before `to`.
    #[param(inline)]
    from: Option<Text<64>>,
    /// RFC 3339; default: now.
    #[param(inline)]
    to: Option<Text<64>>,
    /// Seconds per step, over which points are averaged; 0 (the default) returns every point.
    #[param(minimum = 0, maximum = 31_536_000)]
    step: Option<u64>,
}

/// One series and its points.
#[derive(Serialize, ToSchema)]
pub struct SeriesPoints {
    pub measurement: String,
    pub field: String,
    pub tags: BTreeMap<String, String>,
    /// `[unix milliseconds, value]`, oldest first; with a step, each step's average at its start.
    pub points: Vec<[f64; 2]>,
}

#[derive(Serialize, ToSchema)]
pub struct SeriesList {
    pub series: Vec<SeriesPoints>,
}

fn instant(field: &str, text: Option<Text<64>>) -> ApiResult<Option<i64>> {
    let Some(text) = text else { return Ok(None) };
    let at = OffsetDateTime::parse(&text.into_inner(), &Rfc3339)
        .map_err(|_| ApiError::validation(field, "must be an RFC 3339 time, e.g. 2026-11-27T10:00:00Z"))?;
    Ok(Some(i64::try_from(at.unix_timestamp_nanos()).map_err(|_| ApiError::validation(field, "is out of range"))?))
}

/// The window `from`/`to` name in nanoseconds: `to` defaults to now, `from` to `default_secs` before `to`.
fn window(db: &Db, from: Option<Text<64>>, to: Option<Text<64>>, default_secs: i64) -> ApiResult<(i64, i64)> {
    let to = instant("to", to)?.unwrap_or_else(|| db.clock().now_nanos());
    let from = instant("from", from)?.unwrap_or(to.saturating_sub(default_secs * 1_000_000_000));
    Ok((from, to))
}

/// The points of the series a measurement's field has with the given tags, for charts.
#[utoipa::path(get, path = "/metrics/query", tag = "metrics", params(SeriesQuery),
    responses((status = 200, body = SeriesList)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn query_series(
    _auth: Authorized<ReadMetrics>,
    State(store): State<MetricStore>,
    State(db): State<Db>,
    Query(q): Query<SeriesQuery>,
) -> ApiResult<Json<SeriesList>> {
    let tags = match q.tags.map(Text::into_inner).filter(|t| !t.is_empty()) {
        None => Vec::new(),
        Some(t) => {
            let probe = format!("m,{t} v=0");
            let parsed = line::parse(probe.as_bytes(), Precision::Ns)
                .ok()
                .and_then(|mut points| if points.len() == 1 { points.pop() } else { None })
                .ok_or_else(|| ApiError::validation("tags", "must be key=value pairs joined by commas"))?;
            parsed.tags.into_iter().map(|(k, v)| (k.into_owned(), v.into_owned())).collect()
        }
    };
    let (from, to) = window(&db, q.from, q.to, 3_600)?;
    let step = i64::try_from(q.step.unwrap_or(0)).unwrap_or(i64::MAX).saturating_mul(1_000_000_000);
    let selector = Selector { measurement: q.measurement.into_inner(), field: q.field.into_inner(), tags };
    let found = store.query(&selector, from, to, step).await?;
    let series = found
        .into_iter()
        .map(|s| SeriesPoints {
            measurement: s.measurement,
            field: s.field,
            tags: s.tags.into_iter().collect(),
            points: s.points.into_iter().map(|(t, v)| [(t / 1_000_000) as f64, v]).collect(),
        })
        .collect();
    Ok(Json(SeriesList { series }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UtilisationQuery {
    /// `host` (the default), `cluster`, `region` or `vm` (the agents' tag to group by), or `service` (each VM's
    /// business service in the CMDB).
    #[param(inline)]
    by: Option<Text<16>>,
    /// RFC 3339; default: a day before `to`.
    #[param(inline)]
    from: Option<Text<64>>,
    /// RFC 3339; default: now.
    #[param(inline)]
    to: Option<Text<64>>,
}

#[derive(Serialize, ToSchema)]
pub struct UtilisationList {
    pub by: String,
    pub groups: Vec<tollgate_workflows::metrics::report::Utilisation>,
}

/// Average and 95th percentile of CPU and memory use per host, cluster, region, VM or business service over a
/// window (from the per-minute rollups).
#[utoipa::path(get, path = "/metrics/utilisation", tag = "metrics", params(UtilisationQuery),
    responses((status = 200, body = UtilisationList)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn utilisation(
    _auth: Authorized<ReadMetrics>,
    State(db): State<Db>,
    Query(q): Query<UtilisationQuery>,
) -> ApiResult<Json<UtilisationList>> {
    let by = q.by.map(Text::into_inner).unwrap_or_else(|| "host".to_owned());
    let (from, to) = window(&db, q.from, q.to, 86_400)?;
    let groups = tollgate_workflows::metrics::report::utilisation(&db, &by, from, to).await?;
    Ok(Json(UtilisationList { by, groups }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RightsizingQuery {
    /// Days of history to judge by (default 7).
    #[param(minimum = 1, maximum = 365)]
    days: Option<u32>,
    /// A VM is flagged when its p95 CPU stays under this percentage of its vCPUs (default 20).
    #[param(minimum = 1, maximum = 100)]
    threshold_pct: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct RightsizingList {
    pub days: u32,
    pub threshold_pct: u32,
    pub vms: Vec<tollgate_workflows::metrics::report::Rightsizing>,
}

/// VMs whose p95 CPU stayed under the threshold for the whole window, each with a smaller size that would do.
#[utoipa::path(get, path = "/metrics/rightsizing", tag = "metrics", params(RightsizingQuery),
    responses((status = 200, body = RightsizingList)),
    security(("bearer" = ["viewer", "requester", "approver", "change-manager", "operator", "admin"])))]
async fn rightsizing(
    _auth: Authorized<ReadMetrics>,
    State(db): State<Db>,
    Query(q): Query<RightsizingQuery>,
) -> ApiResult<Json<RightsizingList>> {
    let (days, threshold_pct) = (q.days.unwrap_or(7), q.threshold_pct.unwrap_or(20));
    let now = db.clock().now_nanos();
    let vms = tollgate_workflows::metrics::report::rightsizing(&db, now, days, f64::from(threshold_pct)).await?;
    Ok(Json(RightsizingList { days, threshold_pct, vms }))
}
