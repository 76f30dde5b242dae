//! The configuration of `intake serve`: integrations and channels kept in the database
//! (`intake-store/src/config_store.rs`), resolved through the same [`crate::settings::resolve`]
//! as the file (one validation path), and applied to this node's running channels.
//!
//! - At start the file's `[[integration]]` and `[[channel]]` tables are imported as
//!   file-managed entries ([`file_entries`]); the API refuses to change those.
//! - Every node polls the configuration version every [`POLL`]; when it moved, the entries are
//!   read again, resolved, and the running set adjusted: a new channel starts, an edited one
//!   (its table, or the integration it uses) restarts, a deleted or paused one stops and releases
//!   its lease. A change made through this node's API is applied at once ([`Live::changed`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use intake_store::config_store::{ConfigEntry, Kind};
use intake_store::{Keyring, Store};

use crate::config::{ChannelConfig, Config, ConfigError};
use crate::runner::fleet::Fleet;
use crate::settings::{Problem, Settings};

/// How often every node checks the configuration version.
pub const POLL: Duration = Duration::from_secs(1);

/// The configuration as this node last loaded it.
#[derive(Clone)]
pub struct Snapshot {
    pub version: i64,
    pub entries: Arc<Vec<ConfigEntry>>,
    pub settings: Arc<Settings>,
}

/// The live configuration, shared by the API handlers and the reload loop.
pub struct Live {
    store: Store,
    pub keys: Arc<Keyring>,
    /// The file's top-level keys (database, rules, lease, key file…); its integrations and
    /// channels are replaced by the database's.
    base: Config,
    current: RwLock<Snapshot>,
    wake: tokio::sync::Notify,
}

/// The file's integrations and channels as written (literal secrets included), as JSON tables.
pub fn file_entries(path: &Path) -> Result<Vec<(Kind, String, serde_json::Value)>, ConfigError> {
    use figment::providers::{Format as _, Toml};
    let raw: serde_json::Value = figment::Figment::from(Toml::file(path))
        .extract()
        .map_err(|e| ConfigError::Invalid(Box::new(e)))?;
    let mut out = Vec::new();
    for (key, kind) in [
        ("integration", Kind::Integration),
        ("channel", Kind::Channel),
    ] {
        for t in raw
            .get(key)
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
        {
            let t = plain_dates(t.clone());
            let name = t
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or_default()
                .to_string();
            out.push((kind, name, t));
        }
    }
    Ok(out)
}

/// TOML dates come out of figment as `{"$__toml_private_datetime": "2027-01-31"}`; the tables
/// keep them as the text they are.
fn plain_dates(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            if m.len() == 1
                && let Some(serde_json::Value::String(s)) = m.get("$__toml_private_datetime")
            {
                return serde_json::Value::String(s.clone());
            }
            serde_json::Value::Object(m.into_iter().map(|(k, v)| (k, plain_dates(v))).collect())
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(plain_dates).collect())
        }
        other => other,
    }
}

/// `base` with its integrations and channels replaced by `entries`, resolved and checked by the
/// same code as the file. Every problem names its table and key.
pub fn resolve_entries(base: &Config, entries: &[ConfigEntry]) -> Result<Settings, ConfigError> {
    let mut config = base.clone();
    config.integrations.clear();
    config.channels.clear();
    let mut problems = Vec::new();
    for e in entries {
        let scope = format!("{} {:?}", e.kind.as_str(), e.name);
        if e.body.get("name").and_then(|n| n.as_str()) != Some(e.name.as_str()) {
            problems.push(Problem {
                scope: scope.clone(),
                message: format!("`name` must be {:?}", e.name),
            });
            continue;
        }
        let parsed = match e.kind {
            Kind::Integration => {
                serde_json::from_value(e.body.clone()).map(|i| config.integrations.push(i))
            }
            Kind::Channel => serde_json::from_value::<ChannelConfig>(e.body.clone())
                .map(|c| config.channels.push(c)),
        };
        if let Err(err) = parsed {
            problems.push(Problem {
                scope,
                message: err.to_string(),
            });
        }
    }
    if !problems.is_empty() {
        return Err(ConfigError::Settings(problems));
    }
    crate::settings::resolve(config)
}

/// What makes a running channel restart: its table, the integration its `auth` names, and the
/// file's shared keys.
fn fingerprint(c: &ConfigEntry, entries: &[ConfigEntry]) -> String {
    let integration = c
        .body
        .get("auth")
        .and_then(|a| a.as_str())
        .and_then(|a| a.strip_prefix("oauth:"))
        .and_then(|name| {
            entries
                .iter()
                .find(|e| e.kind == Kind::Integration && e.name == name)
        })
        .map(|e| e.body.to_string())
        .unwrap_or_default();
    format!("{}\n{integration}", c.body)
}

impl Live {
    /// Import the file's entries (when a file is in use), then load and resolve the set.
    pub async fn start(
        store: Store,
        settings: &Settings,
        file: Option<&Path>,
    ) -> anyhow::Result<Arc<Live>> {
        let keys = Arc::new(Keyring::from_env_or_file(
            &settings.config.secret_key_file(),
        )?);
        if let Some(path) = file {
            let entries = file_entries(path)?;
            let changed = store.import_file_entries(&keys, &entries).await?;
            if !changed.is_empty() {
                store
                    .audit(
                        "file",
                        "config_imported",
                        &path.display().to_string(),
                        serde_json::json!({ "changed": changed }),
                    )
                    .await?;
            }
        }
        let version = store.config_version().await?;
        let entries = store.config_entries(&keys).await?;
        let resolved = resolve_entries(&settings.config, &entries)?;
        Ok(Arc::new(Live {
            store,
            keys,
            base: (*settings.config).clone(),
            current: RwLock::new(Snapshot {
                version,
                entries: Arc::new(entries),
                settings: Arc::new(resolved),
            }),
            wake: tokio::sync::Notify::new(),
        }))
    }

    /// The configuration as last loaded.
    pub fn snapshot(&self) -> Snapshot {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Check a candidate set of entries with the file's validation; the API calls this before
    /// it writes anything.
    pub fn check(&self, entries: &[ConfigEntry]) -> Result<Settings, ConfigError> {
        resolve_entries(&self.base, entries)
    }

    /// This node changed the configuration: reload now rather than at the next poll.
    pub fn changed(&self) {
        self.wake.notify_one();
    }

    /// This node changed the configuration: load it into this node's snapshot before
    /// returning (so the next request here sees the change — a channel created and tested at
    /// once), then let the run loop start or stop channels. A failed load is left to the loop,
    /// which logs it.
    pub async fn reload_now(&self) {
        if let Err(e) = self.refresh().await {
            tracing::debug!(error = %format!("{e:#}"), "reloading after a local change");
        }
        self.wake.notify_one();
    }

    /// Read the set again when its version moved. Returns the new snapshot when it changed.
    async fn refresh(&self) -> Result<Option<Snapshot>, anyhow::Error> {
        let version = self.store.config_version().await?;
        if version == self.snapshot().version {
            return Ok(None);
        }
        let entries = self.store.config_entries(&self.keys).await?;
        let settings = resolve_entries(&self.base, &entries)?;
        tracing::info!(version, "configuration loaded from the database");
        let snap = Snapshot {
            version,
            entries: Arc::new(entries),
            settings: Arc::new(settings),
        };
        let mut current = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Two loads at once (a request's and the loop's): the newer one stays.
        if current.version >= version {
            return Ok(None);
        }
        *current = snap.clone();
        Ok(Some(snap))
    }

    /// Keep this node's channels in line with the configuration until `stop` fires; then stop
    /// them all (batch in hand within `grace`, leases released).
    pub async fn run(
        self: Arc<Self>,
        mut fleet: Fleet,
        grace: Duration,
        mut stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut running: BTreeMap<String, String> = BTreeMap::new();
        let first = self.snapshot();
        apply(&mut fleet, &first, &mut running, grace).await;
        // The version the running set was last brought in line with (a request may have
        // loaded a newer snapshot already: `reload_now`).
        let mut applied = first.version;
        loop {
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                () = self.wake.notified() => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
            if let Err(e) = self.refresh().await {
                tracing::error!(error = %format!("{e:#}"), "cannot load the configuration from the database; keeping the running set");
                continue;
            }
            let snap = self.snapshot();
            if snap.version != applied {
                apply(&mut fleet, &snap, &mut running, grace).await;
                applied = snap.version;
            }
        }
        fleet.shutdown(grace).await;
    }
}

/// Start, restart and stop channels so the running set matches `snap` (paused channels stop).
async fn apply(
    fleet: &mut Fleet,
    snap: &Snapshot,
    running: &mut BTreeMap<String, String>,
    grace: Duration,
) {
    let mut wanted = BTreeMap::new();
    for e in snap
        .entries
        .iter()
        .filter(|e| e.kind == Kind::Channel && !e.paused)
    {
        wanted.insert(e.name.clone(), fingerprint(e, &snap.entries));
    }
    let names: Vec<String> = running.keys().cloned().collect();
    for name in names {
        if wanted.get(&name) != running.get(&name) {
            tracing::info!(channel = %name, "configuration changed: stopping the channel");
            fleet.stop(&name, grace).await;
            tracing::info!(channel = %name, "channel stopped");
            running.remove(&name);
        }
    }
    for (name, fp) in wanted {
        if running.contains_key(&name) {
            continue;
        }
        if let Some(c) = snap.settings.channel(&name) {
            tracing::info!(channel = %name, "starting the channel");
            fleet.start(&snap.settings, c.clone());
            running.insert(name, fp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_tables_keep_literal_secrets_and_bare_dates_as_text_and_resolve_like_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("intake.toml");
        std::fs::write(
            &p,
            "[[integration]]\nname = \"m365\"\nprovider = \"microsoft\"\ntenant = \"contoso.onmicrosoft.com\"\n\
             client_id = \"11111111-2222-3333-4444-555555555555\"\nclient_secret = \"literal-S3CRET\"\n\
             client_secret_expires = 2099-01-31\n\
             [[channel]]\nname = \"c\"\nproject = \"HELP\"\nprotocol = \"maildir\"\npath = \"/tmp/x\"\n",
        )
        .unwrap();
        let e = file_entries(&p).unwrap();
        assert_eq!(e.len(), 2);
        let (kind, name, body) = &e[0];
        assert_eq!((*kind, name.as_str()), (Kind::Integration, "m365"));
        assert_eq!(body["client_secret"], "literal-S3CRET", "kept as written");
        assert_eq!(
            body["client_secret_expires"], "2099-01-31",
            "a bare date as text"
        );
        let entries: Vec<ConfigEntry> = e
            .into_iter()
            .map(|(kind, name, body)| ConfigEntry {
                kind,
                name,
                body,
                managed_by: "file".into(),
                paused: false,
                updated_at: 0,
            })
            .collect();
        let s = resolve_entries(&Config::default(), &entries).unwrap();
        assert!(s.channel("c").is_some() && s.integration("m365").is_ok());
        let mut bad = entries.clone();
        bad[1].body["mode"] = serde_json::json!("pol");
        let err = resolve_entries(&Config::default(), &bad)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("channel \"c\"") && err.contains("mode"),
            "{err}"
        );
        bad[1].body["name"] = serde_json::json!("other");
        let err = resolve_entries(&Config::default(), &bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`name` must be"), "{err}");
    }
}
