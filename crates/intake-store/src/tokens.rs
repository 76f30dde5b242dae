//! OAuth state in the store: token sets per (integration, mailbox, resource), single-flight refresh
//! across nodes, pending authorization-code flows, and the credential-expiry warning ledger.
//!
//! Why here: with several nodes on one PostgreSQL database (or several processes on one SQLite
//! file), tokens must be shared, only one node may spend a refresh token at a time (providers
//! that rotate refresh tokens revoke the whole grant when an old one is replayed), and the OAuth
//! callback may land on a different node from the one that started the flow.
//!
//! Secrets never touch the database in the clear: the access, refresh and id tokens are sealed
//! together as one JSON document and the PKCE verifier on its own, with [`Keyring::seal`]; the
//! AAD names the row, so a ciphertext copied to another row does not open. Scopes, expiry and
//! the [`TokenIdentity`] are not secret and stay readable for the UI and diagnosis.
//!
//! A token row is keyed by its resource too ([`Tokens`]: `exo`, `graph`, or `""`), because one
//! access token has one audience. The AAD names (integration, mailbox) only, so rows written
//! before the resource column existed (migration 0006 classified them) still open; a token
//! moved to another resource's row is caught by the claims pre-flight, not by the seal.
//!
//! ## Refresh protocol (per integration + mailbox)
//! 1. [`Store::load_token`]; if the access token is still fresh, use it.
//! 2. [`Store::try_begin_refresh`] with an owner id unique to this node *and* task. `false`
//!    means another owner holds an unexpired lease: wait, then load again.
//! 3. On `true`, [`Store::load_token`] again (another node may have just finished a refresh)
//!    and remember its `version`; refresh with that refresh token unless it is already fresh.
//! 4. Success: [`Store::finish_refresh`] with that version. It writes only if this owner still
//!    holds the lease and nobody wrote a token since, so a node whose lease expired and was
//!    taken over cannot overwrite newer tokens (`false`: discard the result and load again).
//!    Transient failure (network, 5xx): [`Store::abandon_refresh`]. Permanent failure
//!    (`invalid_grant`): [`Store::fail_refresh`], which marks the token as needing
//!    re-authorization unless a re-authorization has already replaced it.
//!
//! [`Store::save_token`] (a completed authorization) always wins: it brings a token back to
//! `valid`, bumps the version and clears any lease, so an in-flight refresh of the old grant
//! cannot overwrite it.

use intake_core::token::{TokenIdentity, TokenSet};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use zeroize::Zeroizing;

use crate::crypto::{Keyring, Sealed};
use crate::{Store, StoreError, now};

/// Whether a stored token can be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenStatus {
    Valid,
    /// Refreshing failed permanently (revoked consent, password change, expired refresh
    /// token…): an administrator has to authorize again.
    NeedsReauthorization {
        reason: String,
    },
}

/// A token set as stored, opened.
#[derive(Debug, Clone)]
pub struct StoredToken {
    pub tokens: TokenSet,
    pub identity: TokenIdentity,
    pub status: TokenStatus,
    /// Incremented by every token write ([`Store::save_token`], [`Store::finish_refresh`]).
    pub version: i64,
    /// When the access token expires (Unix seconds).
    pub expires_at: i64,
}

/// An authorization-code flow between the redirect to the provider and the callback.
#[derive(Debug, Clone)]
pub struct PendingFlow {
    /// The OAuth `state` parameter (random, unguessable); the key of the row.
    pub state: String,
    pub integration: String,
    pub mailbox: String,
    pub redirect_uri: String,
    pub pkce_verifier: SecretString,
    /// After this (Unix seconds) the flow can no longer be completed.
    pub expires_at: i64,
}

/// The sealed part of a token row.
#[derive(Serialize)]
struct SecretsOut<'a> {
    access_token: &'a str,
    refresh_token: Option<&'a str>,
    id_token: Option<&'a str>,
}

#[derive(Deserialize)]
struct SecretsIn {
    access_token: String,
    refresh_token: Option<String>,
    id_token: Option<String>,
}

/// Unambiguous AAD from a table name and the row's key fields (each length-prefixed, so
/// ("a:b", "c") and ("a", "b:c") differ).
fn aad(table: &str, parts: &[&str]) -> Vec<u8> {
    let mut out = format!("intake/{table}/v1").into_bytes();
    for p in parts {
        out.extend_from_slice(format!("\n{}:", p.len()).as_bytes());
        out.extend_from_slice(p.as_bytes());
    }
    out
}

fn token_aad(integration: &str, mailbox: &str) -> Vec<u8> {
    aad("oauth_tokens", &[integration, mailbox])
}

fn flow_aad(state: &str, integration: &str, mailbox: &str, redirect_uri: &str) -> Vec<u8> {
    aad("oauth_flows", &[state, integration, mailbox, redirect_uri])
}

fn seal_tokens(
    keys: &Keyring,
    integration: &str,
    mailbox: &str,
    access: &SecretString,
    refresh: Option<&SecretString>,
    id: Option<&SecretString>,
) -> Result<Sealed, StoreError> {
    let json = Zeroizing::new(
        serde_json::to_vec(&SecretsOut {
            access_token: access.expose_secret(),
            refresh_token: refresh.map(|s| s.expose_secret()),
            id_token: id.map(|s| s.expose_secret()),
        })
        .map_err(|e| StoreError::Corrupt(format!("token serialisation: {e}")))?,
    );
    Ok(keys.seal(&json, &token_aad(integration, mailbox))?)
}

struct OpenedSecrets {
    access_token: SecretString,
    refresh_token: Option<SecretString>,
    id_token: Option<SecretString>,
}

fn open_tokens(
    keys: &Keyring,
    integration: &str,
    mailbox: &str,
    sealed: &Sealed,
) -> Result<OpenedSecrets, StoreError> {
    let json = keys.open(sealed, &token_aad(integration, mailbox))?;
    // serde_json's message for a bad document can quote input: do not pass it on.
    let s: SecretsIn = serde_json::from_slice(&json).map_err(|_| {
        StoreError::Corrupt(format!(
            "sealed token of {integration}/{mailbox} is not a token document"
        ))
    })?;
    Ok(OpenedSecrets {
        access_token: s.access_token.into(),
        refresh_token: s.refresh_token.map(Into::into),
        id_token: s.id_token.map(Into::into),
    })
}

fn scopes_text(scopes: &[String]) -> String {
    scopes.join(" ")
}

fn scopes_list(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// The token rows of one resource (audience): `exo` or `graph` for Microsoft integrations, `""`
/// for providers with one mail resource. One access token has one audience, so a mailbox read
/// over IMAP and over Graph has a row for each.
#[derive(Debug, Clone, Copy)]
pub struct Tokens<'a> {
    store: &'a Store,
    resource: &'a str,
}

impl Store {
    /// The token rows of `resource` (see [`Tokens`]).
    pub fn tokens<'a>(&'a self, resource: &'a str) -> Tokens<'a> {
        Tokens {
            store: self,
            resource,
        }
    }

    /// Every token a mailbox has, with its resource (to redeem a refresh token for another
    /// resource, or to show what is stored).
    pub async fn tokens_of_mailbox(
        &self,
        keys: &Keyring,
        integration: &str,
        mailbox: &str,
    ) -> Result<Vec<(String, StoredToken)>, StoreError> {
        let resources: Vec<String> = sqlx::query_scalar(
            "SELECT resource FROM oauth_tokens WHERE integration = $1 AND mailbox = $2
             ORDER BY resource",
        )
        .bind(integration)
        .bind(mailbox)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::new();
        for r in resources {
            if let Some(t) = self
                .tokens(&r)
                .load_token(keys, integration, mailbox)
                .await?
            {
                out.push((r, t));
            }
        }
        Ok(out)
    }
}

impl Tokens<'_> {
    /// Store a token set from a completed authorization (insert or replace). The token is
    /// `valid` afterwards, with no status reason and no refresh lease. Returns the new version.
    pub async fn save_token(
        &self,
        keys: &Keyring,
        integration: &str,
        mailbox: &str,
        tokens: &TokenSet,
        identity: &TokenIdentity,
    ) -> Result<i64, StoreError> {
        let sealed = seal_tokens(
            keys,
            integration,
            mailbox,
            &tokens.access_token,
            tokens.refresh_token.as_ref(),
            tokens.id_token.as_ref(),
        )?;
        let identity = serde_json::to_string(identity)
            .map_err(|e| StoreError::Corrupt(format!("token identity: {e}")))?;
        let version: i64 = sqlx::query_scalar(
            "INSERT INTO oauth_tokens (integration, mailbox, key_id, nonce, ciphertext, expires_at,
                 scopes, identity, status, status_reason, version, lease_owner, lease_until,
                 updated_at, resource)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'valid', NULL, 1, NULL, NULL, $9, $10)
             ON CONFLICT (integration, mailbox, resource) DO UPDATE SET
                 key_id = excluded.key_id, nonce = excluded.nonce,
                 ciphertext = excluded.ciphertext, expires_at = excluded.expires_at,
                 scopes = excluded.scopes, identity = excluded.identity, status = 'valid',
                 status_reason = NULL, version = oauth_tokens.version + 1, lease_owner = NULL,
                 lease_until = NULL, updated_at = excluded.updated_at
             RETURNING version",
        )
        .bind(integration)
        .bind(mailbox)
        .bind(sealed.key_id)
        .bind(sealed.nonce)
        .bind(sealed.ciphertext)
        .bind(tokens.expires_at)
        .bind(scopes_text(&tokens.scopes))
        .bind(identity)
        .bind(now())
        .bind(self.resource)
        .fetch_one(self.store.pool())
        .await?;
        Ok(version)
    }

    /// The stored token of a mailbox, opened, or `None` if there is none.
    pub async fn load_token(
        &self,
        keys: &Keyring,
        integration: &str,
        mailbox: &str,
    ) -> Result<Option<StoredToken>, StoreError> {
        let Some(r) = sqlx::query(
            "SELECT key_id, nonce, ciphertext, expires_at, scopes, identity, status,
                    status_reason, version
             FROM oauth_tokens WHERE integration = $1 AND mailbox = $2 AND resource = $3",
        )
        .bind(integration)
        .bind(mailbox)
        .bind(self.resource)
        .fetch_optional(self.store.pool())
        .await?
        else {
            return Ok(None);
        };
        let sealed = Sealed {
            key_id: r.try_get("key_id")?,
            nonce: r.try_get("nonce")?,
            ciphertext: r.try_get("ciphertext")?,
        };
        let secrets = open_tokens(keys, integration, mailbox, &sealed)?;
        let expires_at: i64 = r.try_get("expires_at")?;
        let identity: String = r.try_get("identity")?;
        let identity = serde_json::from_str(&identity).map_err(|e| {
            StoreError::Corrupt(format!("identity of {integration}/{mailbox}: {e}"))
        })?;
        let status: String = r.try_get("status")?;
        let status = match status.as_str() {
            "valid" => TokenStatus::Valid,
            "needs_reauthorization" => TokenStatus::NeedsReauthorization {
                reason: r
                    .try_get::<Option<String>, _>("status_reason")?
                    .unwrap_or_default(),
            },
            other => {
                return Err(StoreError::Corrupt(format!(
                    "token status {other:?} of {integration}/{mailbox}"
                )));
            }
        };
        Ok(Some(StoredToken {
            tokens: TokenSet {
                access_token: secrets.access_token,
                refresh_token: secrets.refresh_token,
                expires_at,
                scopes: scopes_list(&r.try_get::<String, _>("scopes")?),
                id_token: secrets.id_token,
            },
            identity,
            status,
            version: r.try_get("version")?,
            expires_at,
        }))
    }

    /// Try to take the refresh lease of a valid token until `now + lease_seconds`. `true` means
    /// this owner refreshes (also when it already held the lease); `false` means another owner
    /// holds an unexpired lease, or the token is missing or needs re-authorization.
    ///
    /// `owner` must be unique per node and task (e.g. hostname, pid and a random suffix): two
    /// callers with the same owner id both get `true`.
    pub async fn try_begin_refresh(
        &self,
        integration: &str,
        mailbox: &str,
        owner: &str,
        lease_seconds: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE oauth_tokens SET lease_owner = $1, lease_until = $2
             WHERE integration = $3 AND mailbox = $4 AND status = 'valid'
               AND (lease_until IS NULL OR lease_until < $5 OR lease_owner = $1)
               AND resource = $6",
        )
        .bind(owner)
        .bind(now.saturating_add(lease_seconds))
        .bind(integration)
        .bind(mailbox)
        .bind(now)
        .bind(self.resource)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Store the result of a refresh and release the lease, in one conditional write: only if
    /// `owner` still holds the lease and the stored version is still `expected_version`.
    /// Returns `false` (and writes nothing) otherwise.
    ///
    /// A `None` refresh token or id token in `tokens` keeps the stored one (providers often
    /// omit them on refresh); empty `scopes` keep the stored scopes.
    pub async fn finish_refresh(
        &self,
        keys: &Keyring,
        integration: &str,
        mailbox: &str,
        owner: &str,
        tokens: &TokenSet,
        expected_version: i64,
    ) -> Result<bool, StoreError> {
        // Read what may have to be merged in. Whether this owner may write at all is decided
        // by the conditional UPDATE below alone (a check here would only be a snapshot).
        let Some(r) = sqlx::query(
            "SELECT key_id, nonce, ciphertext, scopes FROM oauth_tokens
             WHERE integration = $1 AND mailbox = $2 AND version = $3 AND resource = $4",
        )
        .bind(integration)
        .bind(mailbox)
        .bind(expected_version)
        .bind(self.resource)
        .fetch_optional(self.store.pool())
        .await?
        else {
            return Ok(false);
        };
        let scopes = if tokens.scopes.is_empty() {
            r.try_get::<String, _>("scopes")?
        } else {
            scopes_text(&tokens.scopes)
        };
        let sealed = if tokens.refresh_token.is_some() && tokens.id_token.is_some() {
            seal_tokens(
                keys,
                integration,
                mailbox,
                &tokens.access_token,
                tokens.refresh_token.as_ref(),
                tokens.id_token.as_ref(),
            )?
        } else {
            let old = open_tokens(
                keys,
                integration,
                mailbox,
                &Sealed {
                    key_id: r.try_get("key_id")?,
                    nonce: r.try_get("nonce")?,
                    ciphertext: r.try_get("ciphertext")?,
                },
            )?;
            seal_tokens(
                keys,
                integration,
                mailbox,
                &tokens.access_token,
                tokens.refresh_token.as_ref().or(old.refresh_token.as_ref()),
                tokens.id_token.as_ref().or(old.id_token.as_ref()),
            )?
        };
        // One conditional write. It is safe without a transaction around the read above:
        // every write of the ciphertext bumps the version, so if the version still matches,
        // the refresh token merged in is the one stored; and a lease that expired and was
        // taken over has another owner, so the stale owner writes nothing.
        let done = sqlx::query(
            "UPDATE oauth_tokens SET key_id = $1, nonce = $2, ciphertext = $3, expires_at = $4,
                 scopes = $5, version = version + 1, lease_owner = NULL, lease_until = NULL,
                 updated_at = $6
             WHERE integration = $7 AND mailbox = $8 AND status = 'valid'
               AND lease_owner = $9 AND version = $10 AND resource = $11",
        )
        .bind(sealed.key_id)
        .bind(sealed.nonce)
        .bind(sealed.ciphertext)
        .bind(tokens.expires_at)
        .bind(scopes)
        .bind(now())
        .bind(integration)
        .bind(mailbox)
        .bind(owner)
        .bind(expected_version)
        .bind(self.resource)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Release the refresh lease without writing tokens (transient failure: another node, or
    /// this one later, may try again at once). `false` if `owner` did not hold the lease.
    pub async fn abandon_refresh(
        &self,
        integration: &str,
        mailbox: &str,
        owner: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE oauth_tokens SET lease_owner = NULL, lease_until = NULL
             WHERE integration = $1 AND mailbox = $2 AND lease_owner = $3 AND resource = $4",
        )
        .bind(integration)
        .bind(mailbox)
        .bind(owner)
        .bind(self.resource)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A refresh failed permanently: mark the token as needing re-authorization and release the
    /// lease, but only if `owner` still holds the lease. A re-authorization that completed
    /// meanwhile ([`Store::save_token`] clears the lease) is therefore not undone. `false` if
    /// nothing was marked.
    pub async fn fail_refresh(
        &self,
        integration: &str,
        mailbox: &str,
        owner: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE oauth_tokens SET status = 'needs_reauthorization', status_reason = $1,
                 lease_owner = NULL, lease_until = NULL, updated_at = $2
             WHERE integration = $3 AND mailbox = $4 AND lease_owner = $5 AND resource = $6",
        )
        .bind(reason)
        .bind(now())
        .bind(integration)
        .bind(mailbox)
        .bind(owner)
        .bind(self.resource)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Mark a token as needing re-authorization (and release any lease), unconditionally.
    /// For a failed refresh prefer [`Store::fail_refresh`], which cannot undo a
    /// re-authorization that raced with it. `false` if there is no such token.
    pub async fn mark_needs_reauthorization(
        &self,
        integration: &str,
        mailbox: &str,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE oauth_tokens SET status = 'needs_reauthorization', status_reason = $1,
                 lease_owner = NULL, lease_until = NULL, updated_at = $2
             WHERE integration = $3 AND mailbox = $4 AND resource = $5",
        )
        .bind(reason)
        .bind(now())
        .bind(integration)
        .bind(mailbox)
        .bind(self.resource)
        .execute(self.store.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl Store {
    /// Remember a flow until its callback; the PKCE verifier is sealed. Fails if the state is
    /// already in use.
    pub async fn save_flow(&self, keys: &Keyring, flow: &PendingFlow) -> Result<(), StoreError> {
        let sealed = keys.seal(
            flow.pkce_verifier.expose_secret().as_bytes(),
            &flow_aad(
                &flow.state,
                &flow.integration,
                &flow.mailbox,
                &flow.redirect_uri,
            ),
        )?;
        sqlx::query(
            "INSERT INTO oauth_flows (state, integration, mailbox, redirect_uri, key_id, nonce,
                 ciphertext, expires_at, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&flow.state)
        .bind(&flow.integration)
        .bind(&flow.mailbox)
        .bind(&flow.redirect_uri)
        .bind(sealed.key_id)
        .bind(sealed.nonce)
        .bind(sealed.ciphertext)
        .bind(flow.expires_at)
        .bind(now())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Take the flow for `state`, once: the row is deleted as it is read, so of two callbacks
    /// with the same state (a replay, or a double submit reaching two nodes) only one gets it.
    /// `None` if there is no such flow or it expired (`expires_at <= now`).
    pub async fn take_flow(
        &self,
        keys: &Keyring,
        state: &str,
        now: i64,
    ) -> Result<Option<PendingFlow>, StoreError> {
        let Some(r) = sqlx::query(
            "DELETE FROM oauth_flows WHERE state = $1
             RETURNING integration, mailbox, redirect_uri, key_id, nonce, ciphertext, expires_at",
        )
        .bind(state)
        .fetch_optional(self.pool())
        .await?
        else {
            return Ok(None);
        };
        let expires_at: i64 = r.try_get("expires_at")?;
        if expires_at <= now {
            return Ok(None);
        }
        let integration: String = r.try_get("integration")?;
        let mailbox: String = r.try_get("mailbox")?;
        let redirect_uri: String = r.try_get("redirect_uri")?;
        let sealed = Sealed {
            key_id: r.try_get("key_id")?,
            nonce: r.try_get("nonce")?,
            ciphertext: r.try_get("ciphertext")?,
        };
        let verifier = keys.open(
            &sealed,
            &flow_aad(state, &integration, &mailbox, &redirect_uri),
        )?;
        let verifier = String::from_utf8(verifier.to_vec())
            .map_err(|_| StoreError::Corrupt(format!("PKCE verifier of flow {state}")))?;
        Ok(Some(PendingFlow {
            state: state.to_string(),
            integration,
            mailbox,
            redirect_uri,
            pkce_verifier: verifier.into(),
            expires_at,
        }))
    }

    /// Delete flows that expired (`expires_at <= now`); returns how many.
    pub async fn purge_expired_flows(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM oauth_flows WHERE expires_at <= $1")
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected())
    }

    /// Record that the warning `stage` (`30d`, `14d`, `3d`, `expired`) for a credential
    /// expiring at `expires_at` was sent. `true` only the first time, on any node: send the
    /// warning only then.
    pub async fn record_credential_warning(
        &self,
        integration: &str,
        stage: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO credential_warnings (integration, stage, expires_at, warned_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(integration)
        .bind(stage)
        .bind(expires_at)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aad_is_unambiguous() {
        assert_ne!(token_aad("a:b", "c"), token_aad("a", "b:c"));
        assert_ne!(token_aad("a\n1:b", ""), token_aad("a", "b"));
        assert_ne!(
            token_aad("i", "m"),
            aad("oauth_flows", &["i", "m"]),
            "tables differ"
        );
    }

    #[test]
    fn scopes_round_trip() {
        let s = vec!["offline_access".to_string(), "IMAP.AccessAsUser.All".into()];
        assert_eq!(scopes_list(&scopes_text(&s)), s);
        assert!(scopes_list("").is_empty());
    }
}
