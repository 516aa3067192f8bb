//! Helpers for the test suites of this and the other crates (feature `testing`): a brand-new database per
//! test, SQLite by default, PostgreSQL when `TEST_DATABASE_URL` names a server.

use sqlx::{Connection, Executor};
use tempfile::TempDir;

/// An empty database nobody else uses. A SQLite file's folder lives as long as this value; a PostgreSQL
/// database is dropped when a passing test ends (a failed test's database stays, for a look).
pub struct TestDatabase {
    url: String,
    _dir: Option<TempDir>,
    /// (server URL, database name) of a PostgreSQL database made for this test.
    created: Option<(String, String)>,
}

impl TestDatabase {
    /// The URL to connect the store (or the `tollgate` binary) to.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// A fresh database: a new SQLite file, or a new database on the server `TEST_DATABASE_URL` names (whose
/// user may CREATE DATABASE).
pub async fn fresh_database() -> TestDatabase {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if !url.trim().is_empty() => fresh_postgres(url.trim()).await,
        _ => {
            let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("no temporary folder: {e}"));
            let url = format!("sqlite://{}/tollgate.db?mode=rwc", dir.path().display());
            TestDatabase { url, _dir: Some(dir), created: None }
        }
    }
}

async fn fresh_postgres(server_url: &str) -> TestDatabase {
    sqlx::any::install_default_drivers();
    let name = format!("tg_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::AnyConnection::connect(server_url)
        .await
        .unwrap_or_else(|e| panic!("TEST_DATABASE_URL is set but its server does not answer: {e}"));
    // A database name cannot be a bound parameter; this one is made here from a UUID, never from input.
    admin
        .execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
    let _ = admin.close().await;
    TestDatabase { url: with_database(server_url, &name), _dir: None, created: Some((server_url.to_owned(), name)) }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some((server_url, name)) = self.created.take() else { return };
        if std::thread::panicking() {
            eprintln!("the failed test's database is kept: {name}");
            return;
        }
        // The test's runtime is busy dropping us and may be single-threaded: use a runtime of our own.
        let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
            rt.block_on(async {
                let mut admin = sqlx::AnyConnection::connect(&server_url).await.ok()?;
                let done = admin.execute(sql.as_str()).await.ok();
                let _ = admin.close().await;
                done
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(_))) {
            eprintln!("the test database {name} could not be dropped");
        }
    }
}

/// `server_url` with its path replaced by `/name`, keeping any query string.
pub fn with_database(server_url: &str, name: &str) -> String {
    let (scheme, rest) = server_url.split_once("://").unwrap_or(("postgres", server_url));
    let (before_query, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    match query {
        Some(q) => format!("{scheme}://{authority}/{name}?{q}"),
        None => format!("{scheme}://{authority}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_test_database_replaces_only_the_path_of_the_server_url() {
        assert_eq!(with_database("postgres://u@h:5/postgres", "tg_1"), "postgres://u@h:5/tg_1");
        assert_eq!(with_database("postgresql://h", "tg_1"), "postgresql://h/tg_1");
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "tg_1"),
            "postgres://u:p@h/tg_1?sslmode=disable"
        );
    }
}
