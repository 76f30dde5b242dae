//! Configuration: `intake.toml` (or `--config FILE`) plus `INTAKE_*` environment variables.
//!
//! Precedence, highest first: command-line flags, `INTAKE_DATABASE_URL` / `INTAKE_PROJECT`, the
//! file, built-in defaults. Unknown keys in the file are errors (a typo must not silently fall
//! back to a default). The full key reference is docs/configuration.md.

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use intake_core::ChannelRules;
use intake_core::diagnosis::Finding;
use intake_core::integration::{IntegrationConfig, ResolvedIntegration};
use serde::{Deserialize, Serialize};

/// Default database: a SQLite file in the working directory, created if missing.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://intake.db";
/// Project that `intake ingest` files tickets into when neither flag nor channel names one.
pub const DEFAULT_PROJECT: &str = "HELP";
/// Channel name `intake ingest` records messages under when `--channel` is not given.
pub const DEFAULT_CHANNEL: &str = "import";

/// Errors reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} does not exist")]
    Missing(PathBuf),
    #[error("invalid configuration: {0}")]
    Invalid(#[from] Box<figment::Error>),
    #[error("no [[integration]] named {0:?} in the configuration")]
    NoIntegration(String),
    /// Bad values found while resolving the configuration into typed settings, each naming
    /// its table and key.
    #[error("invalid configuration:{}", .0.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
    Settings(Vec<crate::settings::Problem>),
    #[error("integration {name:?} cannot be used:\n{}", findings.iter().map(|f| format!("  - {f}")).collect::<Vec<_>>().join("\n"))]
    Integration {
        name: String,
        findings: Vec<Finding>,
    },
}

/// The whole configuration file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: Option<String>,
    /// Default project key for `intake ingest`.
    pub project: Option<String>,
    /// Handler rules every channel starts from (`[rules]`).
    #[serde(default)]
    pub rules: Option<ChannelRulesToml>,
    /// `[[channel]]` tables.
    #[serde(default, rename = "channel")]
    pub channels: Vec<ChannelConfig>,
    /// `[[integration]]` tables: OAuth clients (docs/configuration.md).
    #[serde(default, rename = "integration")]
    pub integrations: Vec<IntegrationConfig>,
    /// Key file for encryption at rest when `INTAKE_SECRET_KEY` is not set (created with mode
    /// 0600 on first use). Default: `intake.key` in the working directory.
    pub secret_key_file: Option<PathBuf>,
    /// Seconds a node's lease on a channel lives without renewal (default 30): after a node
    /// dies, another takes its channels over within this time (`INTAKE_LEASE_SECONDS`).
    pub lease_seconds: Option<u64>,
    /// Days the mail log keeps its events (default 90, at least 1); housekeeping deletes older
    /// events.
    pub mail_log_retention_days: Option<u32>,
    /// `[alerts]`: when `intake serve` raises alerts and where it sends them.
    #[serde(default)]
    pub alerts: Option<AlertsConfig>,
}

/// `[alerts]` (docs/configuration.md).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// URL that gets a JSON POST when an alert is raised or clears (retried).
    #[serde(default)]
    pub webhook: Option<String>,
    /// Seconds a channel may fail before an alert (default 900).
    #[serde(default)]
    pub alert_after_seconds: Option<u64>,
}

/// `[rules]` / `[channel.rules]`: kept as a TOML table so a channel's table can override single
/// keys of the global one.
pub type ChannelRulesToml = toml_table::Table;

mod toml_table {
    pub type Table = serde_json::Map<String, serde_json::Value>;
}

/// One `[[channel]]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub name: String,
    pub project: String,
    /// `imap` (server), or `maildir` | `mbox` | `eml` for local sources. (`pop3` and `graph` are
    /// accepted by the file format but not implemented yet: `intake run` says so.)
    #[serde(default)]
    pub protocol: Option<String>,
    /// Path of the local source.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Server host (default: from the integration's cloud/provider).
    #[serde(default)]
    pub host: Option<String>,
    /// Server port (default: 993 for implicit TLS, 143 otherwise).
    #[serde(default)]
    pub port: Option<u16>,
    /// `implicit` | `starttls` | `none` (default `implicit`).
    #[serde(default)]
    pub tls: Option<String>,
    /// The address read (may be a shared mailbox); also the login user.
    #[serde(default)]
    pub mailbox: Option<String>,
    /// `oauth:INTEGRATION` | `password:env:VAR` | `password:file:PATH`.
    #[serde(default)]
    pub auth: Option<String>,
    /// OAuth SASL mechanism for IMAP: `xoauth2` (default) | `oauthbearer`.
    #[serde(default)]
    pub sasl: Option<String>,
    /// Protocol folder name (default `INBOX`; never a display name).
    #[serde(default)]
    pub folder: Option<String>,
    /// `mark-read` (default) | `move:FOLDER` | `delete`, done only after the ticket commits.
    #[serde(default)]
    pub after: Option<String>,
    /// First-sync policy: `unread` (default) | `all` | `now`.
    #[serde(default)]
    pub start: Option<String>,
    /// Messages per batch (default 100).
    #[serde(default)]
    pub batch: Option<usize>,
    /// `push` (default: IMAP IDLE) | `poll`.
    #[serde(default)]
    pub mode: Option<String>,
    /// Poll interval for `mode = "poll"`, and the IDLE re-issue interval cap (default 60 / 300).
    #[serde(default)]
    pub poll_seconds: Option<u64>,
    /// Seconds one network operation may wait for the server (default 30).
    #[serde(default)]
    pub timeout_seconds: Option<u64>,
    /// Extra trusted CA for the server's certificate (`file:…`).
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Proxy for the mail connection (RC16): `http://[user:pass@]host:port` (HTTP CONNECT; also
    /// Graph), `socks5://…`/`socks5h://…` (IMAP/POP3), or `env` for the environment's proxy.
    #[serde(default)]
    pub proxy: Option<String>,
    /// Hosts that bypass `proxy` (exact, domain suffix, or `*`).
    #[serde(default)]
    pub no_proxy: Vec<String>,
    #[serde(default)]
    pub rules: Option<ChannelRulesToml>,
}

impl Config {
    /// Load `path` if given (it must exist), else `intake.toml` if present, then the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        match path {
            Some(p) if !p.exists() => return Err(ConfigError::Missing(p.to_path_buf())),
            Some(p) => fig = fig.merge(Toml::file(p)),
            None if Path::new("intake.toml").exists() => fig = fig.merge(Toml::file("intake.toml")),
            None => {}
        }
        fig =
            fig.merge(Env::prefixed("INTAKE_").only(&["database_url", "project", "lease_seconds"]));
        fig.extract().map_err(|e| ConfigError::Invalid(Box::new(e)))
    }

    /// The database URL: the flag if given, else environment/file, else the default.
    pub fn database_url(&self, flag: Option<&str>) -> String {
        flag.map(str::to_string)
            .or_else(|| self.database_url.clone())
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_string())
    }

    /// The key file for encryption at rest.
    pub fn secret_key_file(&self) -> PathBuf {
        self.secret_key_file
            .clone()
            .unwrap_or_else(|| PathBuf::from("intake.key"))
    }

    /// One integration, resolved (endpoints and scopes computed) and linted: errors refuse it.
    pub fn integration(&self, name: &str) -> Result<ResolvedIntegration, ConfigError> {
        let i = self
            .integrations
            .iter()
            .find(|i| i.name == name)
            .ok_or_else(|| ConfigError::NoIntegration(name.to_string()))?;
        i.resolve().map_err(|findings| ConfigError::Integration {
            name: name.to_string(),
            findings,
        })
    }

    pub fn channel(&self, name: &str) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| c.name == name)
    }

    /// A channel's rules: built-in defaults, overridden by `[rules]`, overridden by the
    /// channel's own `[channel.rules]`.
    pub fn rules_for(&self, channel: Option<&ChannelConfig>) -> Result<ChannelRules, ConfigError> {
        let mut merged = serde_json::Map::new();
        for layer in [self.rules.as_ref(), channel.and_then(|c| c.rules.as_ref())]
            .into_iter()
            .flatten()
        {
            for (k, v) in layer {
                merged.insert(k.clone(), v.clone());
            }
        }
        Figment::from(Serialized::defaults(serde_json::Value::Object(merged)))
            .extract::<ChannelRules>()
            .map_err(|e| ConfigError::Invalid(Box::new(e)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_rules_override_global_rules_key_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("intake.toml");
        std::fs::write(
            &p,
            r#"
database_url = "sqlite://x.db"
[rules]
max_attachment_bytes = 1000
addresses = ["help@example.com"]
[[channel]]
name = "vip"
project = "VIP"
[channel.rules]
max_attachment_bytes = 5
reply_to = "prefer"
"#,
        )
        .unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert_eq!(c.database_url(None), "sqlite://x.db");
        assert_eq!(c.database_url(Some("sqlite://y.db")), "sqlite://y.db");
        let r = c.rules_for(c.channel("vip")).unwrap();
        assert_eq!(r.max_attachment_bytes, 5);
        assert_eq!(r.addresses, vec!["help@example.com"]);
        assert_eq!(r.reply_to, intake_core::ReplyToPolicy::Prefer);
        assert_eq!(c.rules_for(None).unwrap().max_attachment_bytes, 1000);
    }

    #[test]
    fn typos_are_errors_not_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("intake.toml");
        std::fs::write(&p, "databse_url = \"sqlite://x.db\"\n").unwrap();
        assert!(Config::load(Some(&p)).is_err());
        std::fs::write(&p, "[rules]\nmax_atachment_bytes = 3\n").unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert!(c.rules_for(None).is_err());
        assert!(Config::load(Some(&dir.path().join("nope.toml"))).is_err());
    }
}
