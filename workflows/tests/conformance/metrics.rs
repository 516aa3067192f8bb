//! Metric points in the store: written in grouped commits, read back by series, tags and steps.

use crate::support::*;
use tollgate_workflows::metrics::line::{parse, Precision};
use tollgate_workflows::metrics::report;
use tollgate_workflows::metrics::rollup::{self, Bucket, Pruned, Retention, HOUR_NS, MINUTE_NS};
use tollgate_workflows::metrics::store::{MetricStore, Selector, Series, WriteSummary};
use tollgate_workflows::Db;

const S: i64 = 1_000_000_000;
const NOW: i64 = 1_700_000_000 * S;

async fn write(store: &MetricStore, body: &str) -> WriteSummary {
    let points = parse(body.as_bytes(), Precision::S).expect("the body parses");
    store.write(&points, NOW).await.expect("the points are stored")
}

fn select(measurement: &str, field: &str, tags: &[(&str, &str)]) -> Selector {
    Selector {
        measurement: measurement.to_owned(),
        field: field.to_owned(),
        tags: tags.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
    }
}

fn values(series: &Series) -> Vec<(i64, f64)> {
    series.points.iter().map(|&(t, v)| ((t - NOW) / S, v)).collect()
}

#[tokio::test]
async fn points_are_read_back_by_series_and_tags_in_time_order() {
    let db = fresh_db().await;
    let store = MetricStore::start(Db::clone(&db));
    let summary = write(
        &store,
        "cpu,host=hv-1,cluster=eu usage=10,steal=1 1700000010\n\
         cpu,cluster=eu,host=hv-2 usage=50 1700000010\n\
         cpu,host=hv-1,cluster=eu usage=20 1700000000\n",
    )
    .await;
    assert_eq!(summary, WriteSummary { values: 4, skipped: 0 });

    let hv1 = store.query(&select("cpu", "usage", &[("host", "hv-1")]), NOW, NOW + 60 * S, 0).await.unwrap();
    assert_eq!(hv1.len(), 1);
    assert_eq!(hv1[0].tags, [("cluster".to_owned(), "eu".to_owned()), ("host".to_owned(), "hv-1".to_owned())]);
    assert_eq!(values(&hv1[0]), [(0, 20.0), (10, 10.0)]);

    let cluster = store.query(&select("cpu", "usage", &[("cluster", "eu")]), NOW, NOW + 60 * S, 0).await.unwrap();
    assert_eq!(cluster.len(), 2, "tags in another order are the same series: {cluster:?}");
    assert!(store.query(&select("cpu", "usage", &[("host", "hv-9")]), NOW, NOW + 60 * S, 0).await.unwrap().is_empty());
    assert!(store.query(&select("mem", "usage", &[]), NOW, NOW + 60 * S, 0).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_series_spelt_many_ways_through_text_and_points_is_one_series() {
    let db = fresh_db().await;
    let store = MetricStore::start(Db::clone(&db));
    let text = "cpu,host=hv\\ 1,cluster=eu usage=1 1700000000\n\
                cpu,cluster=eu,host=hv\\ 1   usage=2,usage=3 1700000010\n\
                cpu,host=hv\\ 1,cluster=eu other=9,usage=4 1700000020\n\
                cpu,host=hv-2,cluster=eu usage=5 1700000020\n";
    for _ in 0..2 {
        // The second time every spelling is known: numbered by look-up, not by the database.
        let gathered = store.read(text.as_bytes(), Precision::S, NOW).expect("the body reads");
        assert_eq!(store.store(gathered).await.unwrap(), WriteSummary { values: 5, skipped: 0 });
    }
    write(&store, "cpu,cluster=eu,host=hv\\ 1 usage=6 1700000030").await;
    let found = store.query(&select("cpu", "usage", &[("host", "hv 1")]), NOW, NOW + 60 * S, 0).await.unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(
        values(&found[0]),
        [(0, 1.0), (10, 3.0), (20, 4.0), (30, 6.0)],
        "the last of a field written twice counts"
    );
    assert!(store.read(b"cpu usage=1\ncpu usage=", Precision::S, NOW).is_err(), "a bad line refuses the body");
}

#[tokio::test]
async fn every_numeric_type_is_kept_as_a_number_and_strings_are_counted_not_kept() {
    let db = fresh_db().await;
    let store = MetricStore::start(Db::clone(&db));
    let summary = write(&store, "m i=-3i,u=7u,b=true,f=0.5,s=\"text\" 1700000000").await;
    assert_eq!(summary, WriteSummary { values: 4, skipped: 1 });
    for (field, expected) in [("i", -3.0), ("u", 7.0), ("b", 1.0), ("f", 0.5)] {
        let got = store.query(&select("m", field, &[]), NOW, NOW, 0).await.unwrap();
        assert_eq!(values(&got[0]), [(0, expected)], "{field}");
    }
    assert!(store.query(&select("m", "s", &[]), NOW, NOW, 0).await.unwrap().is_empty());
    assert_eq!(store.totals().skipped, 1);
}

#[tokio::test]
async fn of_two_values_at_one_instant_the_one_written_last_counts() {
    let db = fresh_db().await;
    let store = MetricStore::start(Db::clone(&db));
    write(&store, "m v=1,v=2 1700000000").await;
    write(&store, "m w=1 1700000000").await;
    write(&store, "m w=3 1700000000").await;
    let v = store.query(&select("m", "v", &[]), NOW, NOW, 0).await.unwrap();
    assert_eq!(values(&v[0]), [(0, 2.0)], "within a line");
    let w = store.query(&select("m", "w", &[]), NOW, NOW, 0).await.unwrap();
    assert_eq!(values(&w[0]), [(0, 3.0)], "across writes");
}

#[tokio::test]
async fn a_point_without_a_timestamp_takes_the_write_s_time() {
    let db = fresh_db().await;
    let store = MetricStore::start(Db::clone(&db));
    write(&store, "m v=5").await;
    let got = store.query(&select("m", "v", &[]), NOW, NOW, 0).await.unwrap();
    assert_eq!(values(&got[0]), [(0, 5.0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_are_each_stored_exactly_once() {
    let db = fresh_db().await;
    let store = MetricStore::start(Db::clone(&db));
    let writers: Vec<_> = (0..40)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let body: String = (0..50).map(|i| format!("load,writer=w{w} v={i} {}\n", 1_700_000_000 + i)).collect();
                let points = parse(body.as_bytes(), Precision::S).unwrap();
                store.write(&points, NOW).await.unwrap()
            })
        })
        .collect();
    for w in writers {
        assert_eq!(w.await.unwrap().values, 50);
    }
    let all = store.query(&select("load", "v", &[]), NOW, NOW + 100 * S, 0).await.unwrap();
    assert_eq!(all.len(), 40);
    assert!(all.iter().all(|s| s.points.len() == 50), "every writer's 50 points, once each");
    let totals = store.totals();
    assert_eq!(totals.values, 2000);
    assert!(totals.batches <= 40, "writers share commits: {} batches", totals.batches);
}

#[tokio::test]
async fn steps_average_the_points_inside_them() {
    let db = fresh_db().await;
    let store = MetricStore::start(Db::clone(&db));
    let body: String = (0..6).map(|i| format!("m v={} {}\n", i * 10, 1_700_000_000 + i * 10)).collect();
    write(&store, &body).await;
    let got = store.query(&select("m", "v", &[]), NOW, NOW + 59 * S, 30 * S).await.unwrap();
    assert_eq!(values(&got[0]), [(0, 10.0), (30, 40.0)]);
    let window = store.query(&select("m", "v", &[]), NOW + 10 * S, NOW + 20 * S, 0).await.unwrap();
    assert_eq!(values(&window[0]), [(10, 10.0), (20, 20.0)], "the window's ends are inside it");
}

#[tokio::test]
async fn a_query_backwards_or_with_too_many_steps_is_refused() {
    let db = fresh_db().await;
    let store = MetricStore::start(Db::clone(&db));
    assert_invalid(store.query(&select("m", "v", &[]), NOW, NOW - 1, 0).await, "to");
    assert_invalid(store.query(&select("m", "v", &[]), NOW, NOW + 86_400 * S, 1).await, "step");
    assert_invalid(store.query(&select("m", "v", &[]), NOW, NOW + 1, -1).await, "step");
}

/// An instant on the hour, in nanoseconds.
const BASE: i64 = NOW / HOUR_NS * HOUR_NS;

async fn write_at(store: &MetricStore, points: &[(i64, f64)]) {
    let body: String = points.iter().map(|(s, v)| format!("m v={v} {}\n", BASE / S + s)).collect();
    write(store, &body).await;
}

async fn roll_up_all(db: &Db) -> usize {
    let mut folded = 0;
    loop {
        match rollup::roll_up(db).await.unwrap() {
            0 => return folded,
            n => folded += n,
        }
    }
}

fn bucket(start_s: i64, min: f64, max: f64, sum: f64, count: i64) -> Bucket {
    Bucket { start: BASE + start_s * S, min, max, sum, count }
}

#[tokio::test]
async fn rollups_keep_each_minute_and_hour_s_min_max_sum_and_count_and_late_points_merge_in() {
    let db = fresh_db().await;
    let store = MetricStore::start(Db::clone(&db));
    write_at(&store, &[(0, 1.0), (30, 3.0), (60, 5.0)]).await;
    assert!(roll_up_all(&db).await >= 1);
    assert_eq!(rollup::roll_up(&db).await.unwrap(), 0, "each segment is folded once");

    let sel = select("m", "v", &[]);
    let minutes = rollup::rollups(&db, &sel, MINUTE_NS, BASE, BASE + HOUR_NS).await.unwrap();
    assert_eq!(minutes[0].1, [bucket(0, 1.0, 3.0, 4.0, 2), bucket(60, 5.0, 5.0, 5.0, 1)]);
    let hours = rollup::rollups(&db, &sel, HOUR_NS, BASE, BASE + HOUR_NS).await.unwrap();
    assert_eq!(hours[0].1, [bucket(0, 1.0, 5.0, 9.0, 3)]);

    write_at(&store, &[(10, -1.0)]).await;
    roll_up_all(&db).await;
    let minutes = rollup::rollups(&db, &sel, MINUTE_NS, BASE, BASE + HOUR_NS).await.unwrap();
    assert_eq!(minutes[0].1[0], bucket(0, -1.0, 3.0, 3.0, 3), "a late point merges into its minute");
    let stepped = store.query(&sel, BASE, BASE + 119 * S, 60 * S).await.unwrap();
    assert_eq!(stepped[0].points, [(BASE, 1.0), (BASE + 60 * S, 5.0)], "a step of a minute reads the rollups");
}

#[tokio::test]
async fn pruning_deletes_rolled_up_points_and_buckets_past_their_retention_and_nothing_else() {
    let db = fresh_db().await;
    let store = MetricStore::start(Db::clone(&db));
    let two_days = 2 * 24 * 3600;
    write_at(&store, &[(-two_days, 7.0)]).await;
    write_at(&store, &[(0, 8.0)]).await;
    roll_up_all(&db).await;
    write_at(&store, &[(-two_days + 1, 9.0)]).await;
    let retention = Retention { raw_ns: 24 * HOUR_NS, minutes_ns: 24 * HOUR_NS, hours_ns: 365 * 24 * HOUR_NS };

    let pruned = rollup::prune(&db, BASE + HOUR_NS, retention).await.unwrap();
    assert_eq!(pruned, Pruned { segments: 1, buckets: 1 }, "the old rolled-up segment and its minute");
    let sel = select("m", "v", &[]);
    let old = store.query(&sel, BASE - two_days * S, BASE - two_days * S + S, 0).await.unwrap();
    assert_eq!(values(&old[0]).len(), 1, "the old point not yet rolled up stays: {old:?}");
    let hours = rollup::rollups(&db, &sel, HOUR_NS, BASE - two_days * S, BASE - 1).await.unwrap();
    assert_eq!(hours[0].1.len(), 1, "the old hour stays for a year");
    let recent = store.query(&sel, BASE, BASE, 0).await.unwrap();
    assert_eq!(values(&recent[0]), [(BASE / S - NOW / S, 8.0)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_roll_up_passes_fold_every_point_once() {
    let db = fresh_db().await;
    let store = MetricStore::start(Db::clone(&db));
    for batch in 0..20 {
        write_at(&store, &[(batch, 1.0)]).await;
    }
    let passes: Vec<_> = (0..4)
        .map(|_| {
            let db = Db::clone(&db);
            tokio::spawn(async move { roll_up_all(&db).await })
        })
        .collect();
    let mut folded = 0;
    for p in passes {
        folded += p.await.unwrap();
    }
    assert_eq!(folded, 20, "every segment folded by exactly one pass");
    let hours = rollup::rollups(&db, &select("m", "v", &[]), HOUR_NS, BASE, BASE).await.unwrap();
    assert_eq!(hours[0].1[0].count, 20);
}

#[tokio::test]
async fn utilisation_is_averaged_and_ranked_per_host_and_pooled_per_cluster() {
    let db = fresh_db().await;
    let store = MetricStore::start(Db::clone(&db));
    // Ten minutes: hv-1 idles 90 % but one minute 10 %; hv-2 idles 50 %. Both in cluster eu.
    let mut body = String::new();
    for minute in 0..10 {
        let t = BASE / S + minute * 60;
        let idle = if minute == 9 { 10 } else { 90 };
        body.push_str(&format!("cpu,cpu=cpu-total,host=hv-1,cluster=eu usage_idle={idle} {t}\n"));
        body.push_str(&format!("cpu,cpu=cpu-total,host=hv-2,cluster=eu usage_idle=50 {t}\n"));
        body.push_str(&format!("mem,host=hv-1,cluster=eu used_percent=40 {t}\n"));
    }
    write(&store, &body).await;
    roll_up_all(&db).await;
    let window = (BASE, BASE + HOUR_NS);

    let hosts = report::utilisation(&db, "host", window.0, window.1).await.unwrap();
    let hv1 = &hosts[0];
    assert_eq!((hv1.group.as_str(), hv1.hosts, hv1.minutes), ("hv-1", 1, 10));
    assert!((hv1.cpu_avg - 18.0).abs() < 1e-9, "nine minutes at 10 % and one at 90 %: {hv1:?}");
    assert_eq!(hv1.cpu_p95, 90.0, "the busy minute is the 95th percentile of ten");
    assert_eq!((hv1.memory_avg, hv1.memory_p95), (Some(40.0), Some(40.0)));
    assert_eq!((hosts[1].group.as_str(), hosts[1].cpu_avg, hosts[1].memory_avg), ("hv-2", 50.0, None));

    let clusters = report::utilisation(&db, "cluster", window.0, window.1).await.unwrap();
    assert_eq!(clusters.len(), 1);
    assert_eq!((clusters[0].group.as_str(), clusters[0].hosts, clusters[0].minutes), ("eu", 2, 20));
    assert!((clusters[0].cpu_avg - 34.0).abs() < 1e-9, "{:?}", clusters[0]);
    assert_invalid(report::utilisation(&db, "datacenter", window.0, window.1).await, "by");
}

#[tokio::test]
async fn the_points_waiting_for_the_rollups_are_counted() {
    let db = fresh_db().await;
    let store = MetricStore::start(Db::clone(&db));
    assert_eq!(rollup::unfolded_points(&db).await.unwrap(), 0);
    write_at(&store, &[(0, 1.0), (1, 2.0)]).await;
    write_at(&store, &[(2, 3.0)]).await;
    assert_eq!(rollup::unfolded_points(&db).await.unwrap(), 3);
    roll_up_all(&db).await;
    assert_eq!(rollup::unfolded_points(&db).await.unwrap(), 0);
}

#[tokio::test]
async fn minute_rows_past_their_retention_become_hour_buckets_with_the_same_figures() {
    let db = fresh_db().await;
    let store = MetricStore::start(Db::clone(&db));
    // Two hours of a day, the second hour folded in two passes (a late point).
    write_at(&store, &[(0, 1.0), (120, 5.0), (3600, 2.0)]).await;
    roll_up_all(&db).await;
    write_at(&store, &[(3660, 8.0)]).await;
    roll_up_all(&db).await;
    let sel = select("m", "v", &[]);
    let before = rollup::rollups(&db, &sel, HOUR_NS, BASE, BASE + 2 * HOUR_NS).await.unwrap();
    assert_eq!(before[0].1, [bucket(0, 1.0, 5.0, 6.0, 2), bucket(3600, 2.0, 8.0, 10.0, 2)]);

    let retention = Retention { raw_ns: HOUR_NS, minutes_ns: HOUR_NS, hours_ns: 365 * 24 * HOUR_NS };
    let pruned = rollup::prune(&db, BASE + 4 * HOUR_NS, retention).await.unwrap();
    assert_eq!(pruned.buckets, 3, "three minute rows: one of the first hour, two of the second");
    assert!(rollup::rollups(&db, &sel, MINUTE_NS, BASE, BASE + 2 * HOUR_NS).await.unwrap()[0].1.is_empty());
    let after = rollup::rollups(&db, &sel, HOUR_NS, BASE, BASE + 2 * HOUR_NS).await.unwrap();
    assert_eq!(after[0].1, before[0].1, "the hours read the same from their compacted row");
    assert_eq!(rollup::prune(&db, BASE + 4 * HOUR_NS, retention).await.unwrap().buckets, 0);
}
