//! The agent against a real server that goes away: what it collects while the server is down waits on disk
//! and arrives once the server is back — every point the agent collected, once, and no others.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{agent_token, free_port, start_server, Agent};
use std::time::Duration;
use tollgate_workflows::metrics::store::{query, Selector};
use tollgate_workflows::testing::fresh_database;
use tollgate_workflows::{Clock, Db};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_collected_while_the_server_is_down_arrive_exactly_once_after_it_returns() {
    let database = fresh_database().await;
    let db = Db::connect(database.url(), 4, Clock::system()).await.expect("the store opens");
    let token = agent_token(&db, "hv-restart").await;
    let port = free_port();
    let (stop, server) = start_server(&db, port).await;
    let queue = tempfile::tempdir().unwrap();
    let agent = Agent::start(port, "hv-restart", queue.path(), &token);

    agent.wait("three batches sent", Duration::from_secs(20), |a| a.count("sent batch") >= 3).await;
    let _ = stop.send(());
    server.await.unwrap();
    let sent_before = agent.count("sent batch");
    let collected_before = agent.count("collected batch");
    agent
        .wait("five batches collected while the server is down", Duration::from_secs(20), |a| {
            a.count("collected batch") >= collected_before + 5
        })
        .await;
    assert!(agent.count("keeping") >= 1, "the agent said it keeps the batches:\n{}", agent.log());
    assert!(agent.count("sent batch") <= sent_before + 1, "nothing is sent while the server is down");

    let (_stop, _server) = start_server(&db, port).await;
    agent
        .wait("the queue drained", Duration::from_secs(30), |a| {
            let (collected, sent) = a.batches();
            a.count("the server is back") >= 1
                && collected.len() >= collected_before + 7
                && collected.iter().all(|(s, _)| sent.contains(s))
        })
        .await;
    let (collected, _) = agent.batches();
    drop(agent);

    // The system measurement has one uptime point per batch, stamped with the batch's time.
    let selector = Selector {
        measurement: "system".to_owned(),
        field: "uptime".to_owned(),
        tags: vec![("host".to_owned(), "hv-restart".to_owned())],
    };
    let stored = query(&db, &selector, 0, i64::MAX, 0).await.unwrap();
    assert_eq!(stored.len(), 1);
    let stored: Vec<i64> = stored[0].points.iter().map(|p| p.0).collect();
    let expected: Vec<i64> = collected.iter().map(|c| c.1).collect();
    assert_eq!(stored, expected, "every collected point once, in order, and no other");
}
