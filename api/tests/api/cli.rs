//! The `tollgate` binary as an operator runs it: its configuration, its version, a bad setting refused at
//! start, and `audit verify` telling an intact log from a tampered one.

use figment::providers::Format as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use tollgate_workflows::audit::{self, AuditQuery};
use tollgate_workflows::cmdb::{self, CiDraft, CiSpec};
use tollgate_workflows::text::PageRequest;
use tollgate_workflows::{AuditContext, Clock, Db};

/// What a finished command left behind.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// `tollgate` with `args`, configured only by what the test sets.
fn tollgate(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tollgate"));
    cmd.args(args).stdin(Stdio::null());
    for (key, _) in std::env::vars() {
        if key.starts_with("TOLLGATE") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs `cmd` to completion, killing it if it is still running after `limit`.
fn run(cmd: &mut Command, limit: Duration) -> Ran {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("tollgate starts");
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {limit:?}; stderr: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn print_config_prints_the_documented_example_which_parses() {
    let ran = run(&mut tollgate(&["print-config"]), LIMIT);

    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stdout.contains("[server]") && ran.stdout.contains("[database]"), "{}", ran.stdout);
    assert!(ran.stdout.lines().filter(|l| l.starts_with('#')).count() > 10, "the example explains itself");
    let parsed: tollgate_api::config::Config =
        figment::Figment::from(figment::providers::Toml::string(&ran.stdout)).extract().expect("the example parses");
    assert_eq!(parsed.server.listen, tollgate_api::config::Config::default().server.listen);
}

#[test]
fn print_config_effective_shows_overrides_and_hides_secrets() {
    let mut cmd = tollgate(&["print-config", "--effective"]);
    cmd.env("TOLLGATE__SERVER__LISTEN", "127.0.0.1:7777")
        .env("TOLLGATE__DATABASE__URL", "postgres://tollgate:hunter2@db.example.invalid/tollgate");

    let ran = run(&mut cmd, LIMIT);

    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert!(ran.stdout.contains(r#"listen = "127.0.0.1:7777""#), "{}", ran.stdout);
    assert!(!ran.stdout.contains("hunter2") && !ran.stderr.contains("hunter2"), "{}", ran.stdout);
}

#[test]
fn version_prints_the_package_version() {
    let ran = run(&mut tollgate(&["--version"]), LIMIT);

    assert_eq!(ran.code, Some(0), "{}", ran.stderr);
    assert_eq!(ran.stdout.trim(), format!("tollgate {}", env!("CARGO_PKG_VERSION")));
}

#[test]
fn serve_with_a_bad_listen_address_stops_at_once_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = tollgate(&["serve", "--data-dir", dir.path().to_str().unwrap()]);
    cmd.env("TOLLGATE__SERVER__LISTEN", "nonsense");

    let ran = run(&mut cmd, LIMIT);

    assert!(ran.code.is_some_and(|c| c != 0), "exit {:?}; stdout: {}", ran.code, ran.stdout);
    assert!(ran.stderr.contains("server.listen"), "{}", ran.stderr);
    assert!(!ran.stdout.contains("is running"), "{}", ran.stdout);
}

#[test]
fn serve_with_a_missing_config_file_names_the_file() {
    let ran = run(&mut tollgate(&["serve", "--config", "/nonexistent/tollgate.toml"]), LIMIT);

    assert!(ran.code.is_some_and(|c| c != 0), "exit {:?}", ran.code);
    assert!(ran.stderr.contains("/nonexistent/tollgate.toml"), "{}", ran.stderr);
}

/// Three audited mutations on a fresh store at `url`: records 1 to 3, the second holding a marker text.
async fn three_audited_records(url: &str) {
    let db = Db::connect(url, 2, Clock::system()).await.unwrap();
    let ctx = AuditContext {
        actor_id: None,
        actor: "tester".to_owned(),
        on_behalf_of: None,
        request_id: Some("cli-test".to_owned()),
    };
    for (name, description) in [("s1", ""), ("s2", "pristine-snapshot"), ("s3", "")] {
        let draft = CiDraft {
            kind: "service".to_owned(),
            name: name.to_owned(),
            description: Some(description.to_owned()),
            ..CiDraft::default()
        };
        cmdb::create_ci(&db, &ctx, CiSpec::try_from(draft).unwrap()).await.unwrap();
    }
    db.close().await;
}

/// The description record 2's snapshot holds now, read back through the store.
async fn snapshot_of_record_2(url: &str) -> String {
    let db = Db::connect(url, 1, Clock::system()).await.unwrap();
    let page = audit::list(&db, &AuditQuery::default(), PageRequest::new(Some(10), None).unwrap()).await.unwrap();
    db.close().await;
    let record = page.items.iter().find(|r| r.seq == 2).unwrap();
    record.after.as_ref().unwrap()["description"].as_str().unwrap().to_owned()
}

fn assert_verify_finds_record_2(args: &[&str]) {
    let ran = run(&mut tollgate(args), LIMIT);
    assert_eq!(ran.code, Some(2), "stdout: {} stderr: {}", ran.stdout, ran.stderr);
    assert!(ran.stdout.contains("audit record 2 has been tampered with"), "{}", ran.stdout);
    assert!(ran.stdout.contains("(1 records before it verified)"), "{}", ran.stdout);
}

fn assert_verify_intact(args: &[&str]) {
    let ran = run(&mut tollgate(args), LIMIT);
    assert_eq!(ran.code, Some(0), "stdout: {} stderr: {}", ran.stdout, ran.stderr);
    assert_eq!(ran.stdout.trim(), "audit log intact: 3 records verified");
}

/// Edits record 2 behind the server's back, as someone with access to the database would.
async fn tamper_with_record_2(url: &str) {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(url).await.unwrap();
    sqlx::query("UPDATE audit_log SET after_json = replace(after_json, 'pristine', 'tampered') WHERE seq = 2")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn audit_verify_passes_an_intact_log_and_names_the_first_tampered_record() {
    let database = tollgate_workflows::testing::fresh_database().await;
    let url = database.url().to_owned();
    three_audited_records(&url).await;

    assert_verify_intact(&["audit", "verify", "--database-url", &url]);

    tamper_with_record_2(&url).await;
    assert_verify_finds_record_2(&["audit", "verify", "--database-url", &url]);
    assert_eq!(snapshot_of_record_2(&url).await, "tampered-snapshot", "the edit did reach the log");
}

#[tokio::test]
async fn audit_verify_reads_the_embedded_database_in_the_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("tollgate.db").display());
    three_audited_records(&url).await;

    assert_verify_intact(&["audit", "verify", "--data-dir", dir.path().to_str().unwrap()]);
}

#[tokio::test]
async fn audit_verify_passes_a_log_written_through_the_api() {
    let app = crate::support::spawn_app().await;
    app.ci(serde_json::json!({"kind": "region", "name": "eu"})).await;
    app.user_with_roles("val", &["viewer"]).await;
    let written = tollgate_workflows::audit::count(&app.db).await.unwrap();
    assert!(written >= 5, "the admin, the seeds, the region and val's account and sign-in are all recorded");
    app.db.close().await;

    let ran = run(&mut tollgate(&["audit", "verify", "--database-url", app.database.url()]), LIMIT);

    assert_eq!(ran.code, Some(0), "stdout: {} stderr: {}", ran.stdout, ran.stderr);
    assert_eq!(ran.stdout.trim(), format!("audit log intact: {written} records verified"));
}
