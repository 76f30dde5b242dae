//! OAuth in the running application: tokens per integration and mailbox, kept encrypted in the
//! store and refreshed **single-flight across processes and nodes**.
//!
//! [`TokenService::access_token`] returns a valid access token. When it is due (five minutes
//! before expiry), exactly one caller in the whole cluster takes the row's refresh lease
//! (`Store::try_begin_refresh`), redeems the refresh token and writes the rotated token back in
//! one conditional statement (`Store::finish_refresh`); everyone else waits and reads the result.
//! This matters for providers that invalidate a refresh token once used (RC13): two nodes racing
//! would otherwise burn the token and lose the mailbox. A refresh the provider refuses for good
//! (revoked, expired, reused) marks the token `needs_reauthorization` with the decoded reason, for
//! every node; `intake authorize` brings it back.
//!
//! Pending authorization-code flows (state, PKCE verifier, redirect URI) live in the store too,
//! so the callback may land on any node.

use std::time::{Duration, Instant};

use intake_core::aadsts::ErrorKind;
use intake_core::integration::ResolvedIntegration;
use intake_core::preset::{Grant, Protocol};
use intake_core::token::{TokenIdentity, TokenSet};
use intake_mail::oauth::{OAuthClient, OAuthError, claims};
use intake_store::{Keyring, PendingFlow, Store, StoreError, TokenStatus, now};
use secrecy::{ExposeSecret, SecretString};

/// Refresh this long before the access token expires.
pub const REFRESH_AHEAD_SECONDS: i64 = 300;
/// How long a refresh lease is held before another node may take over.
pub const LEASE_SECONDS: i64 = 60;
/// How long a started authorization-code flow stays valid.
pub const FLOW_SECONDS: i64 = 600;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "integration {integration} has no token for {mailbox}: run `intake authorize {integration} --mailbox {mailbox}`"
    )]
    NotAuthorized {
        integration: String,
        mailbox: String,
    },
    #[error(
        "the token of {integration} for {mailbox} needs re-authorization: {reason}. Run `intake authorize {integration} --mailbox {mailbox}`"
    )]
    NeedsReauthorization {
        integration: String,
        mailbox: String,
        reason: String,
    },
    #[error("the sign-in flow is unknown or expired (state {0:?}); start it again")]
    UnknownFlow(String),
    #[error("integration {0} does not serve {1:?}")]
    NoScopes(String, Protocol),
    #[error("waited {0:?} for another node's token refresh")]
    Timeout(Duration),
    #[error(transparent)]
    OAuth(#[from] OAuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Tokens of every integration for this process.
#[derive(Debug, Clone)]
pub struct TokenService {
    store: Store,
    keys: std::sync::Arc<Keyring>,
    owner: String,
}

/// The protocol a grant is for when none is named: IMAP (every provider serves it).
pub fn default_protocol(i: &ResolvedIntegration) -> Protocol {
    [
        Protocol::Imap,
        Protocol::Graph,
        Protocol::Pop3,
        Protocol::Smtp,
    ]
    .into_iter()
    .find(|p| i.scopes_for(*p).is_some())
    .unwrap_or(Protocol::Imap)
}

fn scopes(i: &ResolvedIntegration, p: Protocol) -> Result<Vec<String>, TokenError> {
    i.scopes_for(p)
        .map(<[String]>::to_vec)
        .ok_or_else(|| TokenError::NoScopes(i.name.clone(), p))
}

/// Short fingerprint of a token for logs and displays (never the token).
pub fn fingerprint(token: &SecretString) -> String {
    use sha2::{Digest, Sha256};
    let d = Sha256::digest(token.expose_secret().as_bytes());
    d.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

impl TokenService {
    pub fn new(store: Store, keys: Keyring) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let owner = format!("pid{}-{nanos:x}", std::process::id());
        Self {
            store,
            keys: std::sync::Arc::new(keys),
            owner,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Save a fresh grant and return the identity it belongs to.
    pub async fn save(
        &self,
        client: &OAuthClient,
        mailbox: &str,
        tokens: &TokenSet,
    ) -> Result<TokenIdentity, TokenError> {
        let id_token = tokens
            .id_token
            .as_ref()
            .map(|t| t.expose_secret().to_string());
        let identity = claims::identity(tokens.access_token.expose_secret(), id_token.as_deref());
        self.store
            .save_token(
                &self.keys,
                &client.integration().name,
                mailbox,
                tokens,
                &identity,
            )
            .await?;
        Ok(identity)
    }

    /// Start an authorization-code flow; the pending flow is stored so any node can finish it.
    pub async fn start_authorization(
        &self,
        client: &OAuthClient,
        mailbox: &str,
        redirect_uri: &str,
        protocol: Protocol,
    ) -> Result<String, TokenError> {
        let scopes = scopes(client.integration(), protocol)?;
        let start = client.start_authorization(mailbox, redirect_uri, &scopes)?;
        let flow = PendingFlow {
            state: start.state,
            integration: client.integration().name.clone(),
            mailbox: mailbox.to_string(),
            redirect_uri: redirect_uri.to_string(),
            pkce_verifier: start.verifier,
            expires_at: now() + FLOW_SECONDS,
        };
        self.store.save_flow(&self.keys, &flow).await?;
        Ok(start.url)
    }

    /// Finish a flow from its callback (`state`, `code`), on whichever node receives it.
    pub async fn complete_authorization(
        &self,
        client: &OAuthClient,
        state: &str,
        code: &str,
        protocol: Protocol,
    ) -> Result<(String, TokenIdentity), TokenError> {
        let flow = self
            .store
            .take_flow(&self.keys, state, now())
            .await?
            .filter(|f| f.integration == client.integration().name)
            .ok_or_else(|| TokenError::UnknownFlow(state.chars().take(8).collect()))?;
        let scopes = scopes(client.integration(), protocol)?;
        let tokens = client
            .exchange_code(code, &flow.pkce_verifier, &flow.redirect_uri, &scopes)
            .await?;
        let identity = self.save(client, &flow.mailbox, &tokens).await?;
        Ok((flow.mailbox, identity))
    }

    /// A valid access token for `mailbox`, refreshing single-flight when due.
    pub async fn access_token(
        &self,
        client: &OAuthClient,
        mailbox: &str,
        protocol: Protocol,
    ) -> Result<SecretString, TokenError> {
        let i = client.integration();
        let scopes = scopes(i, protocol)?;
        let wait = Duration::from_secs(30);
        let deadline = Instant::now() + wait;
        loop {
            let stored = self.store.load_token(&self.keys, &i.name, mailbox).await?;
            let Some(stored) = stored else {
                if i.grant == Grant::ClientCredentials {
                    let t = client.client_credentials(&scopes).await?;
                    self.save(client, mailbox, &t).await?;
                    return Ok(t.access_token);
                }
                return Err(TokenError::NotAuthorized {
                    integration: i.name.clone(),
                    mailbox: mailbox.into(),
                });
            };
            if let TokenStatus::NeedsReauthorization { reason } = &stored.status {
                return Err(TokenError::NeedsReauthorization {
                    integration: i.name.clone(),
                    mailbox: mailbox.into(),
                    reason: reason.clone(),
                });
            }
            if stored.expires_at - now() > REFRESH_AHEAD_SECONDS {
                return Ok(stored.tokens.access_token);
            }
            tracing::debug!(integration = %i.name, mailbox, "access token due; taking the refresh lease");
            if self
                .store
                .try_begin_refresh(&i.name, mailbox, &self.owner, LEASE_SECONDS, now())
                .await?
            {
                // Another node may have finished between our read and our lease.
                let Some(fresh) = self.store.load_token(&self.keys, &i.name, mailbox).await? else {
                    continue;
                };
                if fresh.version != stored.version
                    && fresh.expires_at - now() > REFRESH_AHEAD_SECONDS
                {
                    self.store
                        .abandon_refresh(&i.name, mailbox, &self.owner)
                        .await?;
                    return Ok(fresh.tokens.access_token);
                }
                let result = match (&fresh.tokens.refresh_token, i.grant) {
                    (_, Grant::ClientCredentials) => client.client_credentials(&scopes).await,
                    (Some(rt), _) => client.refresh(rt, &scopes).await,
                    (None, _) => Err(OAuthError::NoRefreshToken),
                };
                match result {
                    Ok(new) => {
                        tracing::info!(integration = %i.name, mailbox, token = %fingerprint(&new.access_token), "token refreshed");
                        if self
                            .store
                            .finish_refresh(
                                &self.keys,
                                &i.name,
                                mailbox,
                                &self.owner,
                                &new,
                                fresh.version,
                            )
                            .await?
                        {
                            return Ok(new.access_token);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::NeedsReauthorization => {
                        let reason = e.to_string();
                        self.store
                            .fail_refresh(&i.name, mailbox, &self.owner, &reason)
                            .await?;
                        return Err(TokenError::NeedsReauthorization {
                            integration: i.name.clone(),
                            mailbox: mailbox.into(),
                            reason,
                        });
                    }
                    Err(e) => {
                        self.store
                            .abandon_refresh(&i.name, mailbox, &self.owner)
                            .await?;
                        return Err(e.into());
                    }
                }
                continue;
            }
            if Instant::now() > deadline {
                return Err(TokenError::Timeout(wait));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// RC14: warn 30, 14 and 3 days ahead (and once expired) about client secrets
/// (`client_secret_expires`) and certificates (`notAfter`). Each stage is written to the mail log
/// once per credential; every call returns the warnings due now, for display.
pub async fn credential_warnings(
    store: &Store,
    integrations: &[ResolvedIntegration],
    now_unix: i64,
) -> Result<Vec<String>, StoreError> {
    use intake_core::expiry::{ExpiryStage, expiry_warning};
    use intake_core::integration::ClientCredential;
    let mut out = Vec::new();
    for i in integrations {
        let (what, expires) = match &i.credential {
            ClientCredential::Secret {
                expires_unix: Some(e),
                ..
            } => ("client secret", *e),
            ClientCredential::Certificate { certificate, .. } => {
                let pem = intake_mail::secret::resolve(certificate)
                    .ok()
                    .and_then(|p| {
                        intake_mail::oauth::assertion::certificate_not_after(
                            p.expose_secret().as_bytes(),
                        )
                    });
                match pem {
                    Some(e) => ("client certificate", e),
                    None => continue,
                }
            }
            _ => continue,
        };
        let Some(w) = expiry_warning(expires, now_unix) else {
            continue;
        };
        let stage = match w.stage {
            ExpiryStage::Within30Days => "30d",
            ExpiryStage::Within14Days => "14d",
            ExpiryStage::Within3Days => "3d",
            ExpiryStage::Expired => "expired",
        };
        let message = if w.stage == ExpiryStage::Expired {
            format!(
                "integration {}: the {what} expired {} day(s) ago (RC14)",
                i.name, -w.days_left
            )
        } else {
            format!(
                "integration {}: the {what} expires in {} day(s) (RC14)",
                i.name, w.days_left
            )
        };
        let message = format!(
            "{message}. Fix: {}",
            intake_core::diagnosis::RootCause::Rc14.fix()
        );
        if store
            .record_credential_warning(&i.name, stage, expires, now_unix)
            .await?
        {
            let fields = serde_json::json!({"integration": i.name, "stage": stage, "expires_at": expires, "root_cause": "RC14"});
            store
                .log_event(None, "warn", "credential_expiry", &message, fields)
                .await?;
        }
        out.push(message);
    }
    Ok(out)
}
