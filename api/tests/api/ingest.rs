//! The InfluxDB-v2-compatible write API and series queries: what an agent and a chart see.

use crate::support::*;
use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use std::io::Write;

/// 2023-11-14T22:13:20Z.
const T0: i64 = 1_700_000_000;
const WINDOW: &str = "from=2023-11-14T22:13:00Z&to=2023-11-14T22:15:00Z";

async fn write(app: &TestApp, token: &str, query: &str, encoding: Option<&str>, body: Vec<u8>) -> TestResponse {
    let mut req = Request::builder()
        .method(Method::POST)
        .uri(format!("/api/v2/write?{query}"))
        .header(header::AUTHORIZATION, format!("Token {token}"))
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8");
    if let Some(e) = encoding {
        req = req.header(header::CONTENT_ENCODING, e);
    }
    app.send_raw(req.body(Body::from(body)).unwrap()).await
}

fn gzip(text: &str) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap()
}

async fn series(app: &TestApp, token: &str, query: &str) -> serde_json::Value {
    let r = app.get(&format!("/api/v1/metrics/query?{query}"), token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r.body["series"].clone()
}

#[tokio::test]
async fn an_agent_writes_line_protocol_and_a_viewer_reads_the_series_back() {
    let app = spawn_app().await;
    let agent = app.user_with_roles("hv-01-agent", &["agent"]).await;
    let viewer = app.user_with_roles("vera", &["viewer"]).await;
    let body = format!(
        "cpu,host=hv-01,cluster=eu usage=12.5 {T0}\ncpu,host=hv-02,cluster=eu usage=40 {T0}\n\
         cpu,host=hv-01,cluster=eu usage=13.5 {}\n",
        T0 + 10
    );
    let r = write(&app, &agent, "org=tollgate&bucket=fleet&precision=s", None, body.into_bytes()).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

    let got =
        series(&app, &viewer, &format!("measurement=cpu&field=usage&tags={}&{WINDOW}", encode("host=hv-01"))).await;
    assert_eq!(got.as_array().unwrap().len(), 1, "{got}");
    assert_eq!(got[0]["tags"], serde_json::json!({"cluster": "eu", "host": "hv-01"}));
    let ms = T0 as f64 * 1000.0;
    assert_eq!(got[0]["points"], serde_json::json!([[ms, 12.5], [ms + 10_000.0, 13.5]]));
    // A step of a minute reads the rollups, which the server's upkeep loop folds every few seconds.
    while tollgate_workflows::metrics::rollup::roll_up(&app.db).await.unwrap() > 0 {}
    let both = series(&app, &viewer, &format!("measurement=cpu&field=usage&tags=cluster%3Deu&{WINDOW}&step=60")).await;
    assert_eq!(both.as_array().unwrap().len(), 2);
    assert_eq!(both[0]["points"].as_array().unwrap().len(), 1, "averaged into one step: {both}");
}

#[tokio::test]
async fn a_gzip_body_and_every_precision_are_accepted() {
    let app = spawn_app().await;
    let agent = app.user_with_roles("agent", &["agent"]).await;
    for (precision, stamp) in
        [("s", T0), ("ms", T0 * 1_000 + 1), ("us", T0 * 1_000_000 + 2_000), ("ns", T0 * 1_000_000_000 + 3_000_000)]
    {
        let body = gzip(&format!("m,p={precision} v=1 {stamp}\n"));
        let r = write(&app, &agent, &format!("precision={precision}"), Some("gzip"), body).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT, "{precision}: {}", r.body);
    }
    let got = series(&app, &app.admin_token, &format!("measurement=m&field=v&{WINDOW}")).await;
    let mut stamps: Vec<f64> = got.as_array().unwrap().iter().map(|s| s["points"][0][0].as_f64().unwrap()).collect();
    stamps.sort_by(f64::total_cmp);
    let ms = T0 as f64 * 1000.0;
    assert_eq!(stamps, [ms, ms + 1.0, ms + 2.0, ms + 3.0]);
}

#[tokio::test]
async fn a_malformed_body_is_refused_naming_its_line_and_nothing_of_it_is_stored() {
    let app = spawn_app().await;
    let agent = app.user_with_roles("agent", &["agent"]).await;
    let body = format!("good v=1 {T0}\ngood v=oops {T0}\n");
    let r = write(&app, &agent, "precision=s", None, body.into_bytes()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.body["code"], "invalid", "InfluxDB's error shape: {}", r.body);
    let message = r.body["message"].as_str().unwrap();
    assert!(message.starts_with("line 2 (\"good v=oops"), "{message}");
    let stored = series(&app, &app.admin_token, &format!("measurement=good&field=v&{WINDOW}")).await;
    assert!(stored.as_array().unwrap().is_empty(), "line 1 was good, but the request was refused whole: {stored}");
}

#[tokio::test]
async fn a_bad_precision_encoding_or_gzip_stream_is_refused() {
    let app = spawn_app().await;
    let agent = app.user_with_roles("agent", &["agent"]).await;
    let line = || b"m v=1\n".to_vec();
    let r = write(&app, &agent, "precision=h", None, line()).await;
    assert_eq!((r.status, r.body["code"].as_str()), (StatusCode::BAD_REQUEST, Some("invalid")), "{}", r.body);
    let r = write(&app, &agent, "", Some("br"), line()).await;
    assert_eq!(r.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{}", r.body);
    let r = write(&app, &agent, "", Some("gzip"), line()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "not gzip at all: {}", r.body);
    let mut cut = gzip("m v=1\n");
    cut.truncate(cut.len() - 4);
    let r = write(&app, &agent, "", Some("gzip"), cut).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "cut short: {}", r.body);
}

#[tokio::test]
async fn only_agents_and_operators_write_and_only_signed_in_users_read() {
    let app = spawn_app().await;
    let viewer = app.user_with_roles("vera", &["viewer"]).await;
    let operator = app.user_with_roles("otto", &["operator"]).await;
    write(&app, &viewer, "", None, b"m v=1\n".to_vec()).await.assert_error(StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(write(&app, &operator, "", None, b"m v=1\n".to_vec()).await.status, StatusCode::NO_CONTENT);
    let anonymous = app.send_bytes(Method::POST, "/api/v2/write", None, None, "m v=1\n").await;
    anonymous.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    let r = app.send(Method::GET, "/api/v1/metrics/query?measurement=m&field=v", None, None).await;
    r.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
}

#[tokio::test]
async fn a_query_with_a_bad_time_tags_or_step_names_the_field() {
    let app = spawn_app().await;
    let viewer = app.user_with_roles("vera", &["viewer"]).await;
    let cases = [
        ("measurement=m&field=v&from=yesterday", "from"),
        ("measurement=m&field=v&to=2023-13-01T00:00:00Z", "to"),
        ("measurement=m&field=v&tags=host", "tags"),
        (&format!("measurement=m&field=v&{WINDOW}&step=0"), ""),
        ("measurement=m&field=v&from=1700-01-01T00:00:00Z&to=2200-01-01T00:00:00Z&step=31536000", ""),
        ("measurement=m&field=v&from=2023-11-14T00:00:00Z&to=2023-11-15T00:00:00Z&step=1", "step"),
        ("measurement=m&field=v&from=2023-11-15T00:00:00Z&to=2023-11-14T00:00:00Z", "to"),
    ];
    for (query, field) in cases {
        let r = app.get(&format!("/api/v1/metrics/query?{query}"), &viewer).await;
        if field.is_empty() {
            assert_eq!(r.status, StatusCode::OK, "{query}: {}", r.body);
        } else {
            r.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
            assert_eq!(r.field(), Some(field), "{query}: {}", r.body);
        }
    }
}

#[tokio::test]
async fn the_server_stores_its_own_machine_s_metrics_until_it_stops() {
    let app = spawn_app().await;
    let store = tollgate_workflows::metrics::store::MetricStore::start(app.db.clone());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tollgate_api::background::spawn_self_metrics(
        store,
        tollgate_workflows::Clock::system(),
        std::time::Duration::from_millis(200),
        stopped,
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = series(&app, &app.admin_token, "measurement=cpu&field=usage_idle").await;
        if let Some(points) = got[0]["points"].as_array().filter(|p| !p.is_empty()) {
            let idle = points[0][1].as_f64().unwrap();
            assert!((0.0..=100.0).contains(&idle), "{idle}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no CPU reading of this machine after 10 s: {got}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    for field in ["used", "total", "available"] {
        let got = series(&app, &app.admin_token, &format!("measurement=mem&field={field}")).await;
        assert!(got[0]["points"].as_array().is_some_and(|p| !p.is_empty()), "mem {field}: {got}");
        assert!(got[0]["tags"]["host"].is_string(), "tagged with this machine's name: {got}");
    }
    stop.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), task).await.expect("the loop stops").unwrap();
}

#[tokio::test]
async fn a_server_whose_writers_went_quiet_folds_what_waits_without_waiting_for_its_interval() {
    use tollgate_workflows::metrics::rollup;
    let app = spawn_app().await;
    let agent = app.user_with_roles("agent", &["agent"]).await;
    // Within the last hours, so that nothing is past its retention.
    let t0 = time::OffsetDateTime::now_utc().unix_timestamp() / 3600 * 3600 - 3 * 3600;
    let body: String = (0..5).map(|m| format!("cpu,host=hv-01 usage_idle=75 {}\n", t0 + m * 60)).collect();
    assert_eq!(write(&app, &agent, "precision=s", None, body.into_bytes()).await.status, StatusCode::NO_CONTENT);
    assert_eq!(rollup::unfolded_points(&app.db).await.unwrap(), 5);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let retention = tollgate_api::config::Config::default().metrics.retention();
    // Its interval is an hour: the first tick folds (nothing was folded yet); the points written after
    // wait until two ticks find the same amount waiting.
    let task = tollgate_api::background::spawn_metric_upkeep(
        app.db.clone(),
        retention,
        std::time::Duration::from_secs(3600),
        stopped,
    );
    let wait_folded = |what: &'static str| {
        let db = app.db.clone();
        async move {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while rollup::unfolded_points(&db).await.unwrap() > 0 {
                assert!(std::time::Instant::now() < deadline, "{what}: still waiting after 10 s");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    wait_folded("the first tick").await;
    let body: String = (5..8).map(|m| format!("cpu,host=hv-01 usage_idle=70 {}\n", t0 + m * 60)).collect();
    assert_eq!(write(&app, &agent, "precision=s", None, body.into_bytes()).await.status, StatusCode::NO_CONTENT);
    wait_folded("once writes went quiet").await;
    let selector = tollgate_workflows::metrics::store::Selector {
        measurement: "cpu".to_owned(),
        field: "usage_idle".to_owned(),
        tags: Vec::new(),
    };
    let s = 1_000_000_000;
    let found = rollup::rollups(&app.db, &selector, rollup::MINUTE_NS, t0 * s, (t0 + 600) * s).await.unwrap();
    let avgs: Vec<f64> = found[0].1.iter().map(|b| b.avg()).collect();
    assert_eq!(avgs, [75.0, 75.0, 75.0, 75.0, 75.0, 70.0, 70.0, 70.0], "every minute folded");
    stop.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), task).await.expect("the loop stops").unwrap();
}

#[tokio::test]
async fn utilisation_per_host_comes_from_what_agents_wrote() {
    let app = spawn_app().await;
    let agent = app.user_with_roles("agent", &["agent"]).await;
    let viewer = app.user_with_roles("vera", &["viewer"]).await;
    let body: String =
        (0..5).map(|m| format!("cpu,cpu=cpu-total,host=hv-01,cluster=eu usage_idle=75 {}\n", T0 + m * 60)).collect();
    assert_eq!(write(&app, &agent, "precision=s", None, body.into_bytes()).await.status, StatusCode::NO_CONTENT);
    while tollgate_workflows::metrics::rollup::roll_up(&app.db).await.unwrap() > 0 {}
    let window = "from=2023-11-14T22:00:00Z&to=2023-11-14T23:00:00Z";
    let r = app.get(&format!("/api/v1/metrics/utilisation?by=cluster&{window}"), &viewer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["by"], "cluster");
    assert_eq!(r.body["groups"][0]["group"], "eu");
    assert_eq!(r.body["groups"][0]["cpu_avg"], 25.0);
    let bad = app.get(&format!("/api/v1/metrics/utilisation?by=rack&{window}"), &viewer).await;
    bad.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    assert_eq!(bad.field(), Some("by"));
}

#[tokio::test]
async fn vms_are_reported_per_vm_and_per_service_and_a_quiet_one_is_flagged_for_fewer_vcpus() {
    // A week and a bit of per-minute readings of two VMs of one service, judged at the end of them.
    let minutes: i64 = 7 * 1440 + 30;
    let now = time::OffsetDateTime::from_unix_timestamp(T0 + minutes * 60).unwrap();
    let app = spawn_app_with_clock(tollgate_workflows::Clock::manual(now)).await;
    let agent = app.user_with_roles("agent", &["agent"]).await;
    let viewer = app.user_with_roles("vera", &["viewer"]).await;
    let region = app.ci(serde_json::json!({"kind": "region", "name": "eu"})).await;
    let dc = app.ci(serde_json::json!({"kind": "datacenter", "name": "dc", "parent_id": region})).await;
    let cluster = app.ci(serde_json::json!({"kind": "cluster", "name": "cl", "parent_id": dc})).await;
    let host = app
        .ci(serde_json::json!({"kind": "host", "name": "hv-01", "parent_id": cluster, "hypervisor": "kvm",
            "vcpus": 64, "memory_mib": 262144, "disk_gib": 4000}))
        .await;
    let shop = app.ci(serde_json::json!({"kind": "service", "name": "shop"})).await;
    for vm in ["quiet", "busy"] {
        app.ci(serde_json::json!({"kind": "vm", "name": vm, "parent_id": host, "service_id": shop,
            "vcpus": 4, "memory_mib": 4096, "disk_gib": 40}))
            .await;
    }
    let lines: Vec<String> = (0..minutes)
        .flat_map(|m| {
            let at = T0 + m * 60;
            [
                format!("vm,host=hv-01,vm=quiet cpu_pct={},vcpus=4i,balloon_rss_kib=262144i,balloon_current_kib=1048576i {at}", 4 + m % 3),
                format!("vm,host=hv-01,vm=busy cpu_pct=50,vcpus=4i,balloon_rss_kib=524288i,balloon_current_kib=1048576i {at}"),
            ]
        })
        .collect();
    for batch in lines.chunks(4000) {
        let body = batch.join("\n").into_bytes();
        assert_eq!(write(&app, &agent, "precision=s", None, body).await.status, StatusCode::NO_CONTENT);
    }
    while tollgate_workflows::metrics::rollup::roll_up(&app.db).await.unwrap() > 0 {}
    let window = "from=2023-11-14T00:00:00Z&to=2023-11-23T00:00:00Z";

    let per_vm = app.get(&format!("/api/v1/metrics/utilisation?by=vm&{window}"), &viewer).await;
    assert_eq!(per_vm.status, StatusCode::OK, "{}", per_vm.body);
    let group = |body: &serde_json::Value, name: &str| {
        body["groups"].as_array().unwrap().iter().find(|g| g["group"] == name).cloned().expect(name)
    };
    let (quiet, busy) = (group(&per_vm.body, "quiet"), group(&per_vm.body, "busy"));
    assert_eq!((quiet["cpu_p95"].as_f64(), busy["cpu_avg"].as_f64()), (Some(6.0), Some(50.0)));
    assert_eq!((quiet["memory_avg"].as_f64(), busy["memory_avg"].as_f64()), (Some(25.0), Some(50.0)));
    assert_eq!(quiet["minutes"].as_i64(), Some(minutes));
    let per_service = app.get(&format!("/api/v1/metrics/utilisation?by=service&{window}"), &viewer).await;
    let shop = group(&per_service.body, "shop");
    assert_eq!((shop["vms"].as_i64(), shop["hosts"].as_i64()), (Some(2), Some(1)), "{}", per_service.body);

    let r = app.get("/api/v1/metrics/rightsizing?days=7", &viewer).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let flagged = r.body["vms"].as_array().unwrap();
    assert_eq!(flagged.len(), 1, "only the quiet VM: {}", r.body);
    assert_eq!((flagged[0]["vm"].as_str(), flagged[0]["vcpus"].as_i64()), (Some("quiet"), Some(4)));
    assert_eq!(flagged[0]["suggested_vcpus"].as_i64(), Some(1), "{}", r.body);
    // Two weeks of history are not there: nothing can be judged over them.
    let longer = app.get("/api/v1/metrics/rightsizing?days=14", &viewer).await;
    assert_eq!(longer.body["vms"], serde_json::json!([]));
}
