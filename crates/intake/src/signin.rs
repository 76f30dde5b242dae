//! After one sign-in for a mailbox's [`AuthPlan`]: the refresh token redeemed for the plan's
//! other resources (Microsoft: Exchange and Graph), and the document that reports who signed in
//! — shared by `intake authorize` (cli/authorize.rs) and `intake serve`'s authorize flows
//! (serve/authorize.rs), so both save the same tokens and say the same thing.

use intake_core::diagnosis::Finding;
use intake_core::integration::ResolvedIntegration;
use intake_core::lint::{check_identity_matches_mailbox, check_token_for_protocol};
use intake_core::preset::{Grant, Protocol};
use intake_core::token::{TokenIdentity, TokenSet};
use intake_mail::oauth::OAuthClient;
use serde_json::{Value, json};

use crate::oauth::{AuthPlan, TokenError, TokenService};

/// One token obtained: the protocols it serves and who it belongs to.
#[derive(Debug, Clone)]
pub struct Obtained {
    pub protocols: Vec<Protocol>,
    pub identity: TokenIdentity,
    pub expires_at: i64,
    /// The scopes the token endpoint said it granted (its `scope`): what there is to show
    /// when the access token is opaque and names no scopes of its own.
    pub granted: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error(
        "the sign-in returned no refresh token, so no {} token could be made from it: run `intake authorize {integration} --mailbox {mailbox} --protocol {}`",
        protocol.as_str().to_ascii_uppercase(), protocol.as_str()
    )]
    NoRefreshToken {
        integration: String,
        mailbox: String,
        protocol: Protocol,
    },
    #[error(
        "signed in for {signed_in}, but the refresh token could not be redeemed for {}: {source}. Run `intake authorize {integration} --mailbox {mailbox} --protocol {}`",
        protocol.as_str(), protocol.as_str()
    )]
    Redeem {
        integration: String,
        mailbox: String,
        signed_in: String,
        protocol: Protocol,
        #[source]
        source: TokenError,
    },
}

impl SignInError {
    /// The provider's decoded refusal, when that is what failed.
    pub fn token_error(&self) -> Option<&TokenError> {
        match self {
            Self::Redeem { source, .. } => Some(source),
            Self::NoRefreshToken { .. } => None,
        }
    }
}

/// The first group's token came from the sign-in (`first`, already saved); redeem its refresh
/// token for every other group of `plan` and save those. Returns every token obtained, the
/// sign-in's first.
pub async fn redeem_rest(
    tokens: &TokenService,
    client: &OAuthClient,
    integration: &ResolvedIntegration,
    mailbox: &str,
    plan: &AuthPlan,
    first: (TokenIdentity, TokenSet),
) -> Result<Vec<Obtained>, SignInError> {
    let (id, t) = first;
    let mut got = vec![Obtained {
        protocols: plan.groups[0].1.clone(),
        identity: id,
        expires_at: t.expires_at,
        granted: t.scopes.clone(),
    }];
    for (n, (_, protocols)) in plan.groups.iter().enumerate().skip(1) {
        let Some(rt) = t.refresh_token.as_ref() else {
            return Err(SignInError::NoRefreshToken {
                integration: integration.name.clone(),
                mailbox: mailbox.to_string(),
                protocol: protocols[0],
            });
        };
        match tokens
            .redeem_for(
                client,
                mailbox,
                rt,
                protocols[0],
                &plan.scopes(integration, n),
            )
            .await
        {
            Ok((id, t)) => got.push(Obtained {
                protocols: protocols.clone(),
                identity: id,
                expires_at: t.expires_at,
                granted: t.scopes.clone(),
            }),
            Err(source) => {
                return Err(SignInError::Redeem {
                    integration: integration.name.clone(),
                    mailbox: mailbox.to_string(),
                    signed_in: got[0]
                        .protocols
                        .iter()
                        .map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    protocol: protocols[0],
                    source,
                });
            }
        }
    }
    Ok(got)
}

/// The pre-flight findings of every token obtained (claims against each protocol, the identity
/// against the mailbox), without repeats.
pub fn findings(
    integration: &ResolvedIntegration,
    mailbox: &str,
    got: &[Obtained],
) -> Vec<Finding> {
    let mut out = Vec::new();
    for o in got {
        for p in &o.protocols {
            for f in check_token_for_protocol(&o.identity, *p, integration.cloud) {
                if !out.contains(&f) {
                    out.push(f);
                }
            }
        }
    }
    if integration.grant != Grant::ClientCredentials
        && let Some(first) = got.first()
        && let Some(f) = check_identity_matches_mailbox(&first.identity, mailbox)
    {
        out.push(f);
    }
    out
}

/// The document of `intake authorize --json`: who signed in (the first token's identity,
/// audience, scopes, roles, expiry), the warnings, and every token with its protocols and
/// resource.
pub fn document(
    integration: &ResolvedIntegration,
    mailbox: &str,
    got: &[Obtained],
    findings: &[Finding],
) -> Value {
    let tokens: Vec<Value> = got
        .iter()
        .map(|o| {
            json!({
                "protocols": o.protocols.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                "resource": integration.token_resource(o.protocols[0]),
                "audience": o.identity.audience, "scopes": o.identity.scopes,
                "roles": o.identity.roles, "expires_at": o.expires_at,
                "granted": o.granted,
            })
        })
        .collect();
    let first = got.first();
    let id = first.map(|o| &o.identity);
    json!({
        "integration": integration.name, "mailbox": mailbox,
        "username": id.and_then(|i| i.username.clone()),
        "tenant": id.and_then(|i| i.tenant.clone()),
        "audience": id.and_then(|i| i.audience.clone()),
        "scopes": id.map(|i| i.scopes.clone()).unwrap_or_default(),
        "roles": id.map(|i| i.roles.clone()).unwrap_or_default(),
        "expires_at": first.map(|o| o.expires_at),
        "granted": first.map(|o| o.granted.clone()).unwrap_or_default(),
        "warnings": findings.iter().map(|f| f.to_string()).collect::<Vec<_>>(),
        "tokens": tokens,
    })
}
