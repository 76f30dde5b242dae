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
        "integration {integration} has no {} token for {mailbox}: run `{}`",
        protocol.as_str().to_ascii_uppercase(),
        authorize_command(integration, mailbox, *protocol)
    )]
    NotAuthorized {
        integration: String,
        mailbox: String,
        protocol: Protocol,
    },
    /// The stored token's claims do not fit the protocol (audience, scopes or roles, cloud):
    /// it is not handed to the connection (RC1, G1, G2, RC9).
    #[error(
        "the stored token of {integration} for {mailbox} does not fit {}: {finding}. Run `{}`",
        protocol.as_str().to_ascii_uppercase(),
        authorize_command(integration, mailbox, *protocol)
    )]
    WrongToken {
        integration: String,
        mailbox: String,
        protocol: Protocol,
        finding: intake_core::diagnosis::Finding,
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

/// The command that authorizes `mailbox` for `protocol`: without `--protocol` `intake authorize`
/// covers every protocol the mailbox's channels use, so the flag is named only for SMTP (used
/// by no channel).
pub fn authorize_command(integration: &str, mailbox: &str, protocol: Protocol) -> String {
    match protocol {
        Protocol::Smtp => {
            format!("intake authorize {integration} --mailbox {mailbox} --protocol smtp")
        }
        _ => format!("intake authorize {integration} --mailbox {mailbox}"),
    }
}

/// What one sign-in is for: the protocols a mailbox needs, grouped by the resource (audience)
/// their token is stored under, in first-seen order. Microsoft needs two groups when a mailbox
/// is read over Graph and over IMAP/POP3/SMTP: the sign-in gets the first group's token, and
/// the refresh token is redeemed for the second.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthPlan {
    pub groups: Vec<(&'static str, Vec<Protocol>)>,
}

impl AuthPlan {
    /// Group `protocols` (duplicates ignored) by [`ResolvedIntegration::token_resource`];
    /// protocols the integration does not serve are left out. Empty `protocols`: the
    /// integration's default ([`default_protocol`]).
    pub fn new(i: &ResolvedIntegration, protocols: &[Protocol]) -> AuthPlan {
        let mut groups: Vec<(&'static str, Vec<Protocol>)> = Vec::new();
        let fallback = [default_protocol(i)];
        let wanted = if protocols.is_empty() {
            &fallback[..]
        } else {
            protocols
        };
        for &p in wanted {
            if i.scopes_for(p).is_none() {
                continue;
            }
            let r = i.token_resource(p);
            match groups.iter_mut().find(|(g, _)| *g == r) {
                Some((_, list)) if !list.contains(&p) => list.push(p),
                Some(_) => {}
                None => groups.push((r, vec![p])),
            }
        }
        if groups.is_empty() {
            groups.push((i.token_resource(fallback[0]), vec![fallback[0]]));
        }
        AuthPlan { groups }
    }

    /// The scopes to request for group `n`: the union of its protocols' scopes, in order.
    pub fn scopes(&self, i: &ResolvedIntegration, n: usize) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in self.groups.get(n).map(|(_, l)| l.as_slice()).unwrap_or(&[]) {
            for s in i.scopes_for(*p).unwrap_or(&[]) {
                if !out.contains(s) {
                    out.push(s.clone());
                }
            }
        }
        out
    }

    /// Every protocol of the plan, group by group.
    pub fn protocols(&self) -> Vec<Protocol> {
        self.groups
            .iter()
            .flat_map(|(_, l)| l.iter().copied())
            .collect()
    }
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

    /// Save a fresh grant for `protocol`'s resource and return the identity it belongs to.
    /// A new app-only token (client credentials), stored, and checked like a stored one: the
    /// provider may issue one for another cloud's resource (G2, RC9) or without the role the
    /// protocol needs.
    async fn app_only(
        &self,
        client: &OAuthClient,
        mailbox: &str,
        protocol: Protocol,
        scopes: &[String],
    ) -> Result<SecretString, TokenError> {
        let t = client.client_credentials(scopes).await?;
        let identity = self.save(client, mailbox, protocol, &t).await?;
        self.fits(client.integration(), mailbox, protocol, &identity)?;
        Ok(t.access_token)
    }

    pub async fn save(
        &self,
        client: &OAuthClient,
        mailbox: &str,
        protocol: Protocol,
        tokens: &TokenSet,
    ) -> Result<TokenIdentity, TokenError> {
        let id_token = tokens
            .id_token
            .as_ref()
            .map(|t| t.expose_secret().to_string());
        let identity = claims::identity(tokens.access_token.expose_secret(), id_token.as_deref());
        self.store
            .tokens(client.integration().token_resource(protocol))
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

    /// Redeem a refresh token from one sign-in for another resource's scopes (Microsoft: one
    /// sign-in, two audiences) and save the result under `protocol`'s resource.
    pub async fn redeem_for(
        &self,
        client: &OAuthClient,
        mailbox: &str,
        refresh_token: &SecretString,
        protocol: Protocol,
        scopes: &[String],
    ) -> Result<(TokenIdentity, TokenSet), TokenError> {
        let t = client.refresh(refresh_token, scopes).await?;
        let id = self.save(client, mailbox, protocol, &t).await?;
        Ok((id, t))
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
        self.start_authorization_with(client, mailbox, redirect_uri, &scopes)
            .await
    }

    /// [`TokenService::start_authorization`] asking consent for `scopes` (which may span
    /// resources: the token comes in the exchange, one resource at a time).
    pub async fn start_authorization_with(
        &self,
        client: &OAuthClient,
        mailbox: &str,
        redirect_uri: &str,
        scopes: &[String],
    ) -> Result<String, TokenError> {
        let start = client.start_authorization(mailbox, redirect_uri, scopes)?;
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
        let i = client.integration();
        let (mailbox, identity, _, _) = self
            .complete_authorization_with(client, state, code, |_| AuthPlan::new(i, &[protocol]))
            .await?;
        Ok((mailbox, identity))
    }

    /// Finish a flow with the plan for its mailbox (`plan_for(mailbox)`): the code is
    /// exchanged for the first group's token, which is saved. Returns the mailbox, the
    /// identity, the plan and the token set (whose refresh token can be redeemed for the other
    /// groups, [`TokenService::redeem_for`]).
    pub async fn complete_authorization_with(
        &self,
        client: &OAuthClient,
        state: &str,
        code: &str,
        plan_for: impl FnOnce(&str) -> AuthPlan,
    ) -> Result<(String, TokenIdentity, AuthPlan, TokenSet), TokenError> {
        let flow = self
            .store
            .take_flow(&self.keys, state, now())
            .await?
            .filter(|f| f.integration == client.integration().name)
            .ok_or_else(|| TokenError::UnknownFlow(state.chars().take(8).collect()))?;
        let plan = plan_for(&flow.mailbox);
        let first = plan.groups[0].1[0];
        let scopes = plan.scopes(client.integration(), 0);
        let tokens = client
            .exchange_code(code, &flow.pkce_verifier, &flow.redirect_uri, &scopes)
            .await?;
        let identity = self.save(client, &flow.mailbox, first, &tokens).await?;
        Ok((flow.mailbox, identity, plan, tokens))
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
        let rows = self.store.tokens(i.token_resource(protocol));
        let wait = Duration::from_secs(30);
        let deadline = Instant::now() + wait;
        loop {
            let stored = rows.load_token(&self.keys, &i.name, mailbox).await?;
            let Some(stored) = stored else {
                if i.grant == Grant::ClientCredentials {
                    return self.app_only(client, mailbox, protocol, &scopes).await;
                }
                // One sign-in serves both Microsoft resources: redeem the other resource's
                // refresh token for this one's scopes.
                if let Some(t) = self
                    .redeem_from_sibling(client, mailbox, protocol, &scopes)
                    .await?
                {
                    return Ok(t);
                }
                return Err(TokenError::NotAuthorized {
                    integration: i.name.clone(),
                    mailbox: mailbox.into(),
                    protocol,
                });
            };
            if let TokenStatus::NeedsReauthorization { reason } = &stored.status {
                return Err(TokenError::NeedsReauthorization {
                    integration: i.name.clone(),
                    mailbox: mailbox.into(),
                    reason: reason.clone(),
                });
            }
            if let Err(e) = self.fits(i, mailbox, protocol, &stored.identity) {
                if i.grant != Grant::ClientCredentials {
                    return Err(e);
                }
                // App-only: there is no sign-in to repeat, and the administrator may have
                // fixed the app's permissions or the integration's cloud since this token was
                // issued: ask again at once rather than use a token that cannot work until
                // it expires.
                return self.app_only(client, mailbox, protocol, &scopes).await;
            }
            if stored.expires_at - now() > REFRESH_AHEAD_SECONDS {
                return Ok(stored.tokens.access_token);
            }
            tracing::debug!(integration = %i.name, mailbox, "access token due; taking the refresh lease");
            if self
                .store
                .tokens(i.token_resource(protocol))
                .try_begin_refresh(&i.name, mailbox, &self.owner, LEASE_SECONDS, now())
                .await?
            {
                // Another node may have finished between our read and our lease.
                let Some(fresh) = rows.load_token(&self.keys, &i.name, mailbox).await? else {
                    continue;
                };
                if fresh.version != stored.version
                    && fresh.expires_at - now() > REFRESH_AHEAD_SECONDS
                {
                    rows.abandon_refresh(&i.name, mailbox, &self.owner).await?;
                    return Ok(fresh.tokens.access_token);
                }
                let result = match (&fresh.tokens.refresh_token, i.grant) {
                    (_, Grant::ClientCredentials) => client.client_credentials(&scopes).await,
                    (Some(rt), _) => client.refresh(rt, &scopes).await,
                    (None, _) => Err(OAuthError::NoRefreshToken),
                };
                // `intake serve`'s /metrics: refreshes by result.
                let outcome = match &result {
                    Ok(_) => "ok",
                    Err(e) if e.kind() == ErrorKind::NeedsReauthorization => {
                        "needs_reauthorization"
                    }
                    Err(_) => "error",
                };
                metrics::counter!("intake_token_refreshes_total", "result" => outcome).increment(1);
                match result {
                    Ok(new) => {
                        tracing::info!(integration = %i.name, mailbox, token = %fingerprint(&new.access_token), "token refreshed");
                        if self
                            .store
                            .tokens(i.token_resource(protocol))
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
                            let id_token =
                                new.id_token.as_ref().map(|t| t.expose_secret().to_string());
                            let identity = claims::identity(
                                new.access_token.expose_secret(),
                                id_token.as_deref(),
                            );
                            self.fits(i, mailbox, protocol, &identity)?;
                            return Ok(new.access_token);
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::NeedsReauthorization => {
                        let reason = e.to_string();
                        rows.fail_refresh(&i.name, mailbox, &self.owner, &reason)
                            .await?;
                        return Err(TokenError::NeedsReauthorization {
                            integration: i.name.clone(),
                            mailbox: mailbox.into(),
                            reason,
                        });
                    }
                    Err(e) => {
                        rows.abandon_refresh(&i.name, mailbox, &self.owner).await?;
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

    /// The pre-flight of a stored token (RC1, G1, G2, RC9): its claims against the protocol
    /// and cloud. An error finding keeps the token from the connection and names the command
    /// that gets the right one. Microsoft only: other providers' claims say nothing about
    /// these (and opaque tokens carry no claims, so they pass).
    fn fits(
        &self,
        i: &ResolvedIntegration,
        mailbox: &str,
        protocol: Protocol,
        identity: &TokenIdentity,
    ) -> Result<(), TokenError> {
        if i.provider != intake_core::preset::Provider::Microsoft {
            return Ok(());
        }
        match intake_core::lint::check_token_for_protocol(identity, protocol, i.cloud)
            .into_iter()
            .find(intake_core::diagnosis::Finding::is_error)
        {
            Some(finding) => Err(TokenError::WrongToken {
                integration: i.name.clone(),
                mailbox: mailbox.into(),
                protocol,
                finding,
            }),
            None => Ok(()),
        }
    }

    /// A token for `protocol`'s resource made from the refresh token another resource of the
    /// same mailbox holds (Microsoft: one sign-in, two audiences). `None` when there is no
    /// such token or the provider has one resource; the provider's refusal is an error.
    async fn redeem_from_sibling(
        &self,
        client: &OAuthClient,
        mailbox: &str,
        protocol: Protocol,
        scopes: &[String],
    ) -> Result<Option<SecretString>, TokenError> {
        let i = client.integration();
        if i.provider != intake_core::preset::Provider::Microsoft {
            return Ok(None);
        }
        let wanted = i.token_resource(protocol);
        let sibling = self
            .store
            .tokens_of_mailbox(&self.keys, &i.name, mailbox)
            .await?
            .into_iter()
            .find(|(r, t)| {
                r != wanted
                    && !r.is_empty()
                    && t.status == TokenStatus::Valid
                    && t.tokens.refresh_token.is_some()
            });
        let Some((from, t)) = sibling else {
            return Ok(None);
        };
        let Some(rt) = t.tokens.refresh_token.as_ref() else {
            return Ok(None);
        };
        tracing::info!(integration = %i.name, mailbox, from = %from, to = wanted, "redeeming the refresh token for the other resource");
        let (identity, t) = self
            .redeem_for(client, mailbox, rt, protocol, scopes)
            .await?;
        self.fits(i, mailbox, protocol, &identity)?;
        Ok(Some(t.access_token))
    }

    /// The pre-flight findings of the stored token for `protocol` that do not keep it from
    /// the connection: the signed-in identity against the mailbox (RC11, RC3; a shared
    /// mailbox with Full Access is legitimate, so these are warnings at run time) and claim
    /// warnings. Empty when nothing is stored.
    pub async fn preflight_warnings(
        &self,
        client: &OAuthClient,
        mailbox: &str,
        protocol: Protocol,
    ) -> Result<Vec<intake_core::diagnosis::Finding>, TokenError> {
        let i = client.integration();
        let Some(stored) = self
            .store
            .tokens(i.token_resource(protocol))
            .load_token(&self.keys, &i.name, mailbox)
            .await?
        else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        if i.provider == intake_core::preset::Provider::Microsoft {
            out.extend(
                intake_core::lint::check_token_for_protocol(&stored.identity, protocol, i.cloud)
                    .into_iter()
                    .filter(|f| !f.is_error()),
            );
        }
        if i.grant != Grant::ClientCredentials
            && let Some(mut f) =
                intake_core::lint::check_identity_matches_mailbox(&stored.identity, mailbox)
        {
            f.severity = intake_core::diagnosis::Severity::Warning;
            out.push(f);
        }
        Ok(out)
    }
}

/// The integration's credential with a known end: ("client secret", `client_secret_expires`)
/// or ("client certificate", its `notAfter`). `None` for public clients, secrets without a
/// date and unreadable certificates.
pub fn credential_expiry(i: &ResolvedIntegration) -> Option<(&'static str, i64)> {
    use intake_core::integration::ClientCredential;
    match &i.credential {
        ClientCredential::Secret {
            expires_unix: Some(e),
            ..
        } => Some(("client secret", *e)),
        ClientCredential::Certificate { certificate, .. } => {
            let pem = intake_mail::secret::resolve(certificate).ok()?;
            intake_mail::oauth::assertion::certificate_not_after(pem.expose_secret().as_bytes())
                .map(|e| ("client certificate", e))
        }
        _ => None,
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
    let mut out = Vec::new();
    for i in integrations {
        let Some((what, expires)) = credential_expiry(i) else {
            continue;
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
