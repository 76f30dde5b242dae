//! Integrations and channels kept in the database (`intake serve`), so every node sees the same
//! set and an administrator can change it without a restart.
//!
//! Each entry's body is the JSON form of its TOML table (the same keys), **sealed** with the
//! keyring (XChaCha20-Poly1305, AAD = `config:KIND:NAME`): bodies may hold literal secrets
//! (`client_secret`, a proxy's password) and the database never holds them in clear. Entries
//! imported from `--config` are `managed_by = "file"`; the API refuses to change them.
//!
//! Every change bumps the single `config_version` row in the same transaction; nodes poll it
//! (one indexed read) and reload when it moved.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use sqlx::Row;

use crate::{Keyring, Sealed, Store, StoreError, now};

/// What an entry configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Integration,
    Channel,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Integration => "integration",
            Kind::Channel => "channel",
        }
    }
    fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "integration" => Ok(Kind::Integration),
            "channel" => Ok(Kind::Channel),
            other => Err(StoreError::Corrupt(format!(
                "config entry of kind {other:?}"
            ))),
        }
    }
}

/// Who owns an entry.
pub const MANAGED_BY_FILE: &str = "file";
pub const MANAGED_BY_API: &str = "api";

/// One stored entry, opened.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigEntry {
    pub kind: Kind,
    pub name: String,
    /// The TOML table's keys as JSON (may hold literal secrets: never answer it as is).
    pub body: serde_json::Value,
    pub managed_by: String,
    pub paused: bool,
    pub updated_at: i64,
}

fn aad(kind: Kind, name: &str) -> Vec<u8> {
    format!("config:{}:{name}", kind.as_str()).into_bytes()
}

fn seal(
    keys: &Keyring,
    kind: Kind,
    name: &str,
    body: &serde_json::Value,
) -> Result<String, StoreError> {
    let s = keys.seal(body.to_string().as_bytes(), &aad(kind, name))?;
    Ok(format!(
        "v1:{}:{}:{}",
        s.key_id,
        B64.encode(&s.nonce),
        B64.encode(&s.ciphertext)
    ))
}

fn open(
    keys: &Keyring,
    kind: Kind,
    name: &str,
    text: &str,
) -> Result<serde_json::Value, StoreError> {
    let bad = || StoreError::Corrupt(format!("sealed body of {} {name:?}", kind.as_str()));
    let mut parts = text.splitn(4, ':');
    let (Some("v1"), Some(key_id), Some(nonce), Some(ct)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let sealed = Sealed {
        key_id: key_id.to_string(),
        nonce: B64.decode(nonce).map_err(|_| bad())?,
        ciphertext: B64.decode(ct).map_err(|_| bad())?,
    };
    let plain = keys.open(&sealed, &aad(kind, name))?;
    serde_json::from_slice(&plain).map_err(|_| bad())
}

impl Store {
    /// The configuration version (bumped by every change).
    pub async fn config_version(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT version FROM config_version WHERE id = 1")
                .fetch_one(self.pool())
                .await?
                .try_get("version")?,
        )
    }

    /// Every entry, opened, ordered by kind and name.
    pub async fn config_entries(&self, keys: &Keyring) -> Result<Vec<ConfigEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT kind, name, body, managed_by, paused, updated_at FROM config_entries
             ORDER BY kind DESC, name",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let kind = Kind::parse(&r.try_get::<String, _>("kind")?)?;
                let name: String = r.try_get("name")?;
                let body = open(keys, kind, &name, &r.try_get::<String, _>("body")?)?;
                Ok(ConfigEntry {
                    kind,
                    body,
                    managed_by: r.try_get("managed_by")?,
                    paused: r.try_get::<i64, _>("paused")? != 0,
                    updated_at: r.try_get("updated_at")?,
                    name,
                })
            })
            .collect()
    }

    /// Insert or replace one entry (keeping its paused flag) and bump the version.
    pub async fn put_config_entry(
        &self,
        keys: &Keyring,
        kind: Kind,
        name: &str,
        body: &serde_json::Value,
        managed_by: &str,
    ) -> Result<(), StoreError> {
        let sealed = seal(keys, kind, name, body)?;
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO config_entries (kind, name, body, managed_by, paused, updated_at)
             VALUES ($1, $2, $3, $4, 0, $5)
             ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body,
                 managed_by = excluded.managed_by, updated_at = excluded.updated_at",
        )
        .bind(kind.as_str())
        .bind(name)
        .bind(sealed)
        .bind(managed_by)
        .bind(now())
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE config_version SET version = version + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Delete one entry; returns whether it existed.
    pub async fn delete_config_entry(&self, kind: Kind, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM config_entries WHERE kind = $1 AND name = $2")
            .bind(kind.as_str())
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("UPDATE config_version SET version = version + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Pause or resume a channel; returns whether it exists.
    pub async fn set_channel_paused(&self, name: &str, paused: bool) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE config_entries SET paused = $1, updated_at = $2 WHERE kind = 'channel' AND name = $3",
        )
        .bind(i64::from(paused))
        .bind(now())
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("UPDATE config_version SET version = version + 1 WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }

    /// Make the file-managed entries exactly `entries` (from `--config`): upsert each (an entry
    /// of the same name made through the API becomes file-managed: the file wins), delete
    /// file-managed entries the file no longer lists. One transaction; the version is bumped
    /// only when something changed. Returns the names changed.
    pub async fn import_file_entries(
        &self,
        keys: &Keyring,
        entries: &[(Kind, String, serde_json::Value)],
    ) -> Result<Vec<String>, StoreError> {
        let current = self.config_entries(keys).await?;
        let mut changed = Vec::new();
        let mut tx = self.begin_write().await?;
        for (kind, name, body) in entries {
            let same = current.iter().any(|e| {
                e.kind == *kind
                    && e.name == *name
                    && e.body == *body
                    && e.managed_by == MANAGED_BY_FILE
            });
            if same {
                continue;
            }
            sqlx::query(
                "INSERT INTO config_entries (kind, name, body, managed_by, paused, updated_at)
                 VALUES ($1, $2, $3, $4, 0, $5)
                 ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body,
                     managed_by = excluded.managed_by, updated_at = excluded.updated_at",
            )
            .bind(kind.as_str())
            .bind(name)
            .bind(seal(keys, *kind, name, body)?)
            .bind(MANAGED_BY_FILE)
            .bind(now())
            .execute(&mut *tx)
            .await?;
            changed.push(format!("{} {name}", kind.as_str()));
        }
        for e in current.iter().filter(|e| e.managed_by == MANAGED_BY_FILE) {
            if !entries.iter().any(|(k, n, _)| *k == e.kind && *n == e.name) {
                sqlx::query("DELETE FROM config_entries WHERE kind = $1 AND name = $2")
                    .bind(e.kind.as_str())
                    .bind(&e.name)
                    .execute(&mut *tx)
                    .await?;
                changed.push(format!("{} {} (removed)", e.kind.as_str(), e.name));
            }
        }
        if !changed.is_empty() {
            sqlx::query("UPDATE config_version SET version = version + 1 WHERE id = 1")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(changed)
    }
}
