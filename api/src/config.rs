//! Server configuration: defaults → TOML file → `TOLLGATE__SECTION__KEY` environment → flags.
//! A bad value fails at start and names its key.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The documented example configuration, printed by `tollgate print-config`.
pub const EXAMPLE: &str = include_str!("../tollgate.example.toml");

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub incident: IncidentConfig,
    pub metrics: MetricsConfig,
    pub control: ControlConfig,
    pub web: WebConfig,
    pub email: EmailConfig,
    pub bootstrap: BootstrapConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Folder for the embedded database and local state.
    pub data_dir: PathBuf,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Time in-flight requests get to finish after a shutdown signal.
    pub shutdown_grace_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./tollgate-data"),
            max_body_bytes: 1024 * 1024,
            shutdown_grace_secs: 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    /// Empty for the embedded SQLite file; otherwise a `postgres://` URL (it may hold a password).
    pub url: Secret,
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: Secret::default(), max_connections: 8 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Default bearer-token lifetime.
    pub token_ttl_secs: u64,
    /// Longest lifetime a token request may ask for.
    pub max_token_ttl_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig { token_ttl_secs: 12 * 3600, max_token_ttl_secs: 30 * 24 * 3600 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IncidentConfig {
    /// Priority 1–5 by impact (rows high→low) and urgency (columns high→low).
    pub priority_matrix: [[u8; 3]; 3],
    /// Response targets of priorities 1–5.
    pub response_secs: [i64; 5],
    /// Resolution targets of priorities 1–5.
    pub resolution_secs: [i64; 5],
    /// Interval of the SLA breach check.
    pub sla_check_interval_secs: u64,
}

impl Default for IncidentConfig {
    fn default() -> Self {
        IncidentConfig {
            priority_matrix: [[1, 2, 3], [2, 3, 4], [3, 4, 5]],
            response_secs: [900, 1800, 14400, 28800, 86400],
            resolution_secs: [14400, 28800, 86400, 259200, 604800],
            sla_check_interval_secs: 30,
        }
    }
}

impl IncidentConfig {
    /// The domain policy these values describe.
    pub fn policy(&self) -> Result<tollgate_workflows::incident::IncidentPolicy, ConfigError> {
        tollgate_workflows::incident::IncidentPolicy::new(
            self.priority_matrix,
            self.response_secs,
            self.resolution_secs,
        )
        .map_err(|e| ConfigError::Invalid(format!("incident.{}: {}", e.field, e.message)))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlConfig {
    /// How often the executor looks for jobs to start or take over, and the simulated fleet for tasks.
    pub tick_millis: u64,
    /// Seed a simulated demo fleet (labelled as such) into an inventory that has no hosts yet.
    pub demo_fleet: bool,
    /// How often the simulated hosts are compared with the inventory (agents report real hosts).
    pub reconcile_secs: u64,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig { tick_millis: 250, demo_fleet: true, reconcile_secs: 60 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// How often the server reads its own machine's metrics; 0 turns it off.
    pub self_interval_secs: u64,
    /// How long points are kept as written.
    pub raw_retention_hours: u64,
    /// How long per-minute rollups are kept.
    pub minute_retention_days: u64,
    /// How long per-hour rollups are kept.
    pub hour_retention_days: u64,
    /// How often written points are folded into the rollups.
    pub rollup_interval_secs: u64,
    /// How often alert rules are evaluated against the points written since.
    pub alert_interval_secs: u64,
    /// The InfluxDB 2 or VictoriaMetrics write URL every written batch is also sent to; empty: none.
    pub forward_url: String,
    /// InfluxDB 2's token for `forward_url`.
    pub forward_token: Option<Secret>,
    /// The most bytes of batches waiting to be forwarded.
    pub forward_buffer_bytes: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            self_interval_secs: 10,
            raw_retention_hours: 24,
            minute_retention_days: 30,
            hour_retention_days: 365,
            rollup_interval_secs: 10,
            alert_interval_secs: 10,
            forward_url: String::new(),
            forward_token: None,
            forward_buffer_bytes: 64 * 1024 * 1024,
        }
    }
}

impl MetricsConfig {
    pub fn retention(&self) -> tollgate_workflows::metrics::rollup::Retention {
        let hours = |h: u64| i64::try_from(h).unwrap_or(i64::MAX).saturating_mul(3_600_000_000_000);
        tollgate_workflows::metrics::rollup::Retention {
            raw_ns: hours(self.raw_retention_hours),
            minutes_ns: hours(self.minute_retention_days.saturating_mul(24)),
            hours_ns: hours(self.hour_retention_days.saturating_mul(24)),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebConfig {
    /// Where people reach the server, for links in emails; empty: `http://` and the listen address.
    pub public_url: String,
    /// How long a dashboard sign-in lasts.
    pub session_ttl_secs: u64,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig { public_url: String::new(), session_ttl_secs: 12 * 3600 }
    }
}

impl WebConfig {
    /// The public base URL, without a trailing slash.
    pub fn base_url(&self, listen: SocketAddr) -> String {
        if self.public_url.is_empty() {
            format!("http://{listen}")
        } else {
            self.public_url.trim_end_matches('/').to_owned()
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    /// `outbox` (one .eml file per message in `outbox_dir`), `smtp`, or `off`.
    pub transport: String,
    /// Folder of the outbox transport; empty: `outbox` in the data folder.
    pub outbox_dir: PathBuf,
    /// The SMTP relay.
    pub smtp_host: String,
    pub smtp_port: u16,
    /// `starttls` (required), `tls` (implicit TLS, port 465) or `none` (loopback relays only).
    pub smtp_security: String,
    pub smtp_username: String,
    pub smtp_password: Option<Secret>,
    /// The sender of every email.
    pub from: String,
    /// How often notifications waiting to be emailed are sent.
    pub interval_secs: u64,
    /// How long an approval link in an email works.
    pub link_ttl_hours: u64,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            transport: "outbox".to_owned(),
            outbox_dir: PathBuf::new(),
            smtp_host: String::new(),
            smtp_port: 587,
            smtp_security: "starttls".to_owned(),
            smtp_username: String::new(),
            smtp_password: None,
            from: "Tollgate <tollgate@localhost>".to_owned(),
            interval_secs: 5,
            link_ttl_hours: 72,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BootstrapConfig {
    /// Password of the first administrator; random and printed once when unset.
    pub admin_password: Option<Secret>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `tracing` filter directives.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { filter: "info".to_owned() }
    }
}

/// A value that never shows in `Debug`, logs or `print-config --effective`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { "\"[redacted]\"" })
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(if self.0.is_empty() { "" } else { "[redacted]" })
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Environment values arrive typed: a numeric password must still read as text.
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secret;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Values given on the command line, which override every other source.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Loads the configuration from every source; `env` is the process environment in production.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            if !file.exists() {
                return Err(ConfigError::MissingFile(file.to_owned()));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed("TOLLGATE__").split("__"));
        if let Some(listen) = overrides.listen {
            figment = figment.merge(Serialized::default("server.listen", listen));
        }
        if let Some(dir) = &overrides.data_dir {
            figment = figment.merge(Serialized::default("server.data_dir", dir));
        }
        if let Some(url) = &overrides.database_url {
            figment = figment.merge(Serialized::default("database.url", url));
        }
        let config: Config = figment.extract().map_err(|e| {
            // Figment names the source, but spells an environment key `SERVER.LISTEN`: lead with the real key.
            ConfigError::Invalid(if e.path.is_empty() { e.to_string() } else { format!("{}: {e}", e.path.join(".")) })
        })?;
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, why: &str| Err(ConfigError::Invalid(format!("{key}: {why}")));
        if self.database.max_connections == 0 {
            return bad("database.max_connections", "must be at least 1");
        }
        let url = self.database.url.expose();
        if !url.is_empty() && tollgate_workflows::Engine::from_url(url).is_err() {
            return bad("database.url", "must be empty (embedded SQLite), sqlite:… or postgres://…");
        }
        if self.server.max_body_bytes < 1024 {
            return bad("server.max_body_bytes", "must be at least 1024");
        }
        if self.auth.max_token_ttl_secs > 366 * 86_400 {
            return bad("auth.max_token_ttl_secs", "must be at most 366 days");
        }
        if self.incident.response_secs.iter().chain(&self.incident.resolution_secs).any(|t| *t > 366 * 86_400) {
            return bad("incident.resolution_secs", "SLA targets are at most 366 days");
        }
        if self.auth.token_ttl_secs == 0 || self.auth.token_ttl_secs > self.auth.max_token_ttl_secs {
            return bad("auth.token_ttl_secs", "must be between 1 and auth.max_token_ttl_secs");
        }
        self.incident.policy()?;
        if self.incident.sla_check_interval_secs == 0 {
            return bad("incident.sla_check_interval_secs", "must be at least 1");
        }
        if self.metrics.self_interval_secs > 86_400 {
            return bad("metrics.self_interval_secs", "must be at most a day (0 turns it off)");
        }
        if self.metrics.raw_retention_hours == 0 || self.metrics.raw_retention_hours > 24 * 366 {
            return bad("metrics.raw_retention_hours", "must be between 1 hour and a year");
        }
        if self.metrics.minute_retention_days == 0 || self.metrics.minute_retention_days > 3660 {
            return bad("metrics.minute_retention_days", "must be between 1 and 3660");
        }
        if self.metrics.hour_retention_days == 0 || self.metrics.hour_retention_days > 36600 {
            return bad("metrics.hour_retention_days", "must be between 1 and 36600");
        }
        if self.metrics.rollup_interval_secs == 0 || self.metrics.rollup_interval_secs > 3600 {
            return bad("metrics.rollup_interval_secs", "must be between 1 and 3600");
        }
        if self.control.tick_millis < 10 || self.control.tick_millis > 60_000 {
            return bad("control.tick_millis", "must be between 10 and 60000");
        }
        if self.control.reconcile_secs == 0 || self.control.reconcile_secs > 86_400 {
            return bad("control.reconcile_secs", "must be between 1 and 86400");
        }
        if self.metrics.alert_interval_secs == 0 || self.metrics.alert_interval_secs > 3600 {
            return bad("metrics.alert_interval_secs", "must be between 1 and 3600");
        }
        let forward = &self.metrics.forward_url;
        if !(forward.is_empty() || forward.starts_with("http://") || forward.starts_with("https://")) {
            return bad("metrics.forward_url", "must be empty or an http:// or https:// URL");
        }
        if self.metrics.forward_buffer_bytes < 65_536 {
            return bad("metrics.forward_buffer_bytes", "must be at least 65536");
        }
        let public = &self.web.public_url;
        if !(public.is_empty() || public.starts_with("http://") || public.starts_with("https://")) {
            return bad("web.public_url", "must be empty or an http:// or https:// URL");
        }
        if self.web.session_ttl_secs < 60 || self.web.session_ttl_secs > self.auth.max_token_ttl_secs {
            return bad("web.session_ttl_secs", "must be between 60 and auth.max_token_ttl_secs");
        }
        match self.email.transport.as_str() {
            "outbox" | "off" => {}
            "smtp" if self.email.smtp_host.is_empty() => return bad("email.smtp_host", "is needed for smtp"),
            "smtp" => {}
            _ => return bad("email.transport", "must be outbox, smtp or off"),
        }
        if !["starttls", "tls", "none"].contains(&self.email.smtp_security.as_str()) {
            return bad("email.smtp_security", "must be starttls, tls or none");
        }
        if self.email.from.parse::<lettre::message::Mailbox>().is_err() {
            return bad("email.from", "must be an address, e.g. \"Tollgate <tollgate@example.com>\"");
        }
        if self.email.interval_secs == 0 || self.email.interval_secs > 3600 {
            return bad("email.interval_secs", "must be between 1 and 3600");
        }
        if self.email.link_ttl_hours == 0 || self.email.link_ttl_hours > 24 * 31 {
            return bad("email.link_ttl_hours", "must be between 1 and 744");
        }
        if let Some(p) = &self.bootstrap.admin_password {
            if let Err(e) = tollgate_workflows::accounts::Password::parse("bootstrap.admin_password", p.expose()) {
                return Err(ConfigError::Invalid(e.to_string()));
            }
        }
        Ok(())
    }

    /// The database URL in effect: the configured one, or the SQLite file in the data folder.
    pub fn database_url(&self) -> String {
        if self.database.url.is_empty() {
            format!("sqlite://{}?mode=rwc", self.server.data_dir.join("tollgate.db").display())
        } else {
            self.database.url.expose().to_owned()
        }
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# could not render the configuration: {e}\n"))
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment::Jail fixes the closures' error type.
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_to_the_defaults() {
        let from_example: Config = Figment::from(Toml::string(EXAMPLE)).extract().expect("example parses");
        let defaults = Config::default();
        assert_eq!(from_example.server.listen, defaults.server.listen);
        assert_eq!(from_example.database.max_connections, defaults.database.max_connections);
        assert_eq!(from_example.auth.token_ttl_secs, defaults.auth.token_ttl_secs);
    }

    #[test]
    fn sources_override_in_order_and_a_bad_value_names_its_key() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("t.toml", "[server]\nlisten = \"127.0.0.1:7000\"\n[database]\nmax_connections = 3\n")?;
            jail.set_env("TOLLGATE__DATABASE__MAX_CONNECTIONS", "5");
            let c = Config::load(Some(Path::new("t.toml")), &Overrides::default()).expect("loads");
            assert_eq!(c.server.listen.port(), 7000);
            assert_eq!(c.database.max_connections, 5);
            let flags = Overrides { listen: Some(SocketAddr::from(([127, 0, 0, 1], 7001))), ..Overrides::default() };
            assert_eq!(Config::load(Some(Path::new("t.toml")), &flags).expect("loads").server.listen.port(), 7001);

            jail.set_env("TOLLGATE__SERVER__LISTEN", "not-an-address");
            let err = Config::load(None, &Overrides::default()).expect_err("bad listen address").to_string();
            assert!(err.contains("server.listen"), "{err}");
            jail.set_env("TOLLGATE__SERVER__LISTEN", "127.0.0.1:7002");
            jail.set_env("TOLLGATE__SERVER__COLOUR", "blue");
            let err = Config::load(None, &Overrides::default()).expect_err("unknown key").to_string();
            assert!(err.contains("colour"), "{err}");
            Ok(())
        });
    }

    #[test]
    fn a_numeric_admin_password_from_the_environment_reads_as_text() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("TOLLGATE__BOOTSTRAP__ADMIN_PASSWORD", "123456789012345");
            let c = Config::load(None, &Overrides::default()).expect("loads");
            assert_eq!(c.bootstrap.admin_password.map(|p| p.expose().to_owned()), Some("123456789012345".into()));
            Ok(())
        });
    }

    #[test]
    fn secrets_never_show_in_debug_or_output() {
        let mut c = Config::default();
        c.database.url = Secret::new("postgres://u:hunter2@db/x");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!c.to_toml().contains("hunter2"));
    }
}
