//! Schema migrations, one folder per engine with the same version numbers, embedded in the binary.

use crate::error::StoreError;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use std::borrow::Cow;

/// Which database engine a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Sqlite,
    Postgres,
}

impl Engine {
    pub fn from_url(url: &str) -> Result<Engine, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Engine::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Engine::Postgres)
        } else {
            Err(StoreError::Internal("database url must start with sqlite: or postgres://".to_owned()))
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Engine::Sqlite => "sqlite",
            Engine::Postgres => "postgres",
        }
    }
}

/// (version, description, SQL) for each engine. Append only: a released migration never changes.
pub(crate) const SQLITE: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, "processes", include_str!("../../migrations/sqlite/0002_processes.sql")),
    (3, "incidents", include_str!("../../migrations/sqlite/0003_incidents.sql")),
    (4, "freeze_windows", include_str!("../../migrations/sqlite/0004_freeze_windows.sql")),
    (5, "changes", include_str!("../../migrations/sqlite/0005_changes.sql")),
    (6, "approvals", include_str!("../../migrations/sqlite/0006_approvals.sql")),
    (7, "incident_links", include_str!("../../migrations/sqlite/0007_incident_links.sql")),
    (8, "notifications", include_str!("../../migrations/sqlite/0008_notifications.sql")),
    (9, "change_authors", include_str!("../../migrations/sqlite/0009_change_authors.sql")),
    (10, "audit_sealing", include_str!("../../migrations/sqlite/0010_audit_sealing.sql")),
    (11, "numbering", include_str!("../../migrations/sqlite/0011_numbering.sql")),
    (12, "audit_compression", include_str!("../../migrations/sqlite/0012_audit_compression.sql")),
    (13, "change_versions", include_str!("../../migrations/sqlite/0013_change_versions.sql")),
    (14, "change_state_unindexed", include_str!("../../migrations/sqlite/0014_change_state_unindexed.sql")),
    (15, "live_change_cis", include_str!("../../migrations/sqlite/0015_live_change_cis.sql")),
    (16, "audit_chain", include_str!("../../migrations/sqlite/0016_audit_chain.sql")),
    (17, "metrics", include_str!("../../migrations/sqlite/0017_metrics.sql")),
    (18, "metric_rollups", include_str!("../../migrations/sqlite/0018_metric_rollups.sql")),
    (19, "alert_rules", include_str!("../../migrations/sqlite/0019_alert_rules.sql")),
    (20, "alert_states", include_str!("../../migrations/sqlite/0020_alert_states.sql")),
    (21, "packed_rollups", include_str!("../../migrations/sqlite/0021_packed_rollups.sql")),
    (22, "jobs", include_str!("../../migrations/sqlite/0022_jobs.sql")),
    (23, "placement_strategies", include_str!("../../migrations/sqlite/0023_placement_strategies.sql")),
    (24, "department_quotas", include_str!("../../migrations/sqlite/0024_department_quotas.sql")),
    (25, "web_and_email", include_str!("../../migrations/sqlite/0025_web_and_email.sql")),
];
pub(crate) const POSTGRES: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("../../migrations/postgres/0001_init.sql")),
    (2, "processes", include_str!("../../migrations/postgres/0002_processes.sql")),
    (3, "incidents", include_str!("../../migrations/postgres/0003_incidents.sql")),
    (4, "freeze_windows", include_str!("../../migrations/postgres/0004_freeze_windows.sql")),
    (5, "changes", include_str!("../../migrations/postgres/0005_changes.sql")),
    (6, "approvals", include_str!("../../migrations/postgres/0006_approvals.sql")),
    (7, "incident_links", include_str!("../../migrations/postgres/0007_incident_links.sql")),
    (8, "notifications", include_str!("../../migrations/postgres/0008_notifications.sql")),
    (9, "change_authors", include_str!("../../migrations/postgres/0009_change_authors.sql")),
    (10, "audit_sealing", include_str!("../../migrations/postgres/0010_audit_sealing.sql")),
    (11, "numbering", include_str!("../../migrations/postgres/0011_numbering.sql")),
    (12, "audit_compression", include_str!("../../migrations/postgres/0012_audit_compression.sql")),
    (13, "change_versions", include_str!("../../migrations/postgres/0013_change_versions.sql")),
    (14, "change_state_unindexed", include_str!("../../migrations/postgres/0014_change_state_unindexed.sql")),
    (15, "live_change_cis", include_str!("../../migrations/postgres/0015_live_change_cis.sql")),
    (16, "audit_chain", include_str!("../../migrations/postgres/0016_audit_chain.sql")),
    (17, "metrics", include_str!("../../migrations/postgres/0017_metrics.sql")),
    (18, "metric_rollups", include_str!("../../migrations/postgres/0018_metric_rollups.sql")),
    (19, "alert_rules", include_str!("../../migrations/postgres/0019_alert_rules.sql")),
    (20, "alert_states", include_str!("../../migrations/postgres/0020_alert_states.sql")),
    (21, "packed_rollups", include_str!("../../migrations/postgres/0021_packed_rollups.sql")),
    (22, "jobs", include_str!("../../migrations/postgres/0022_jobs.sql")),
    (23, "placement_strategies", include_str!("../../migrations/postgres/0023_placement_strategies.sql")),
    (24, "department_quotas", include_str!("../../migrations/postgres/0024_department_quotas.sql")),
    (25, "web_and_email", include_str!("../../migrations/postgres/0025_web_and_email.sql")),
];

/// The migrator for `engine`.
pub fn migrations_for(engine: Engine) -> Migrator {
    let set = match engine {
        Engine::Sqlite => SQLITE,
        Engine::Postgres => POSTGRES,
    };
    let migrations: Vec<Migration> = set
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(*version, Cow::Borrowed(*description), MigrationType::Simple, Cow::Borrowed(*sql), false)
        })
        .collect();
    Migrator { migrations: Cow::Owned(migrations), ..Migrator::DEFAULT }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(engine: &str) -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations").join(engine);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("migrations folder")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn expected(set: &[(i64, &str, &str)]) -> Vec<String> {
        set.iter().map(|(v, d, _)| format!("{v:04}_{d}.sql")).collect()
    }

    #[test]
    fn both_engines_have_the_same_migrations_and_every_file_is_embedded() {
        assert_eq!(files("sqlite"), files("postgres"));
        assert_eq!(files("sqlite"), expected(SQLITE));
        assert_eq!(files("postgres"), expected(POSTGRES));
    }
}
