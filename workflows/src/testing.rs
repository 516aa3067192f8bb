//! Helpers for the test suites of this and the other crates (feature `testing`).

use sqlx::{Connection, Executor};

/// Creates an empty database on the PostgreSQL server at `server_url` (a user allowed to CREATE
/// DATABASE) and returns a URL to it. Each test gets its own, so tests never see each other's rows.
pub async fn fresh_postgres_database(server_url: &str) -> String {
    sqlx::any::install_default_drivers();
    let name = format!("tg_{}", uuid::Uuid::new_v4().simple());
    let mut conn = sqlx::AnyConnection::connect(server_url)
        .await
        .unwrap_or_else(|e| panic!("TEST_DATABASE_URL is set but the server does not answer: {e}"));
    // A database name cannot be a bound parameter; this one is made here from a UUID, never from input.
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    let _ = conn.close().await;
    let (base, query) = match server_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (server_url, None),
    };
    let prefix = match base.rfind('/') {
        Some(i) if i > "postgres://".len() => &base[..i],
        _ => base,
    };
    match query {
        Some(q) => format!("{prefix}/{name}?{q}"),
        None => format!("{prefix}/{name}"),
    }
}
