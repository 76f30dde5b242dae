//! Sending a `mail` row of the outbox from its channel's mailbox: over SMTP submission
//! (`intake_mail::send::smtp`, XOAUTH2 with a token for the SMTP audience, or a password) or
//! Microsoft Graph `sendMail` (`intake_mail::send::graph`, the MIME message as sent, so the
//! Message-ID, the threading headers and the own-mail mark are the same on both transports).
//! The channel's own addresses are never recipients.

use intake_core::preset::Protocol as TokenProtocol;
use intake_mail::send::SendError;
use intake_mail::send::compose::{self, OutgoingMail};
use intake_mail::send::smtp::{SmtpAuth, SmtpClient, SmtpSettings};
use intake_store::{OutboxItem, Store, now};
use secrecy::ExposeSecret;

use super::config::{ChannelSend, SendTransport};
use crate::oauth::TokenService;
use crate::settings::{Auth, Settings};

/// The recipients of `m` minus the channel's own addresses (its rules' `addresses`, its
/// mailbox and its From address).
pub fn recipients(
    settings: &Settings,
    channel: &str,
    ch: &ChannelSend,
    m: &OutgoingMail,
) -> Vec<String> {
    let own: Vec<String> = settings
        .channel(channel)
        .map(|c| c.rules.addresses.clone())
        .unwrap_or_default()
        .into_iter()
        .chain([ch.from.clone(), ch.login.clone()])
        .map(|a| a.to_lowercase())
        .collect();
    m.recipients()
        .into_iter()
        .filter(|r| !own.contains(&r.to_lowercase()))
        .collect()
}

fn permanent(e: impl std::fmt::Display) -> SendError {
    SendError::Permanent(e.to_string())
}

/// The mail of `row` as bytes, with the own-mail mark under `sent_key`.
pub async fn render(
    store: &Store,
    row: &OutboxItem,
    sent_key: &[u8],
) -> Result<(OutgoingMail, Vec<u8>), SendError> {
    let m: OutgoingMail = serde_json::from_str(&row.payload)
        .map_err(|e| permanent(format!("outbox row {}: unreadable mail: {e}", row.id)))?;
    let mut files = Vec::with_capacity(m.attachments.len());
    for a in &m.attachments {
        let data = store
            .blob(&a.hash)
            .await
            .map_err(|e| SendError::transient(e.to_string()))?
            .ok_or_else(|| permanent(format!("attachment {} is not in the store", a.filename)))?;
        files.push((a, data));
    }
    let mark = intake_mime::loops::sent_header_value(sent_key, &m.message_id);
    let raw = compose::render(&m, now(), &mark, &files);
    Ok((m, raw))
}

/// Send `row` through its channel's transport.
pub async fn send(
    settings: &Settings,
    store: &Store,
    row: &OutboxItem,
    sent_key: &[u8],
) -> Result<Option<String>, SendError> {
    let ch = settings.outbox.send.get(&row.target).ok_or_else(|| {
        permanent(format!(
            "channel {:?} cannot send mail: it has no [channel.send] (retry the row after adding it)",
            row.target
        ))
    })?;
    let (m, raw) = render(store, row, sent_key).await?;
    let to = recipients(settings, &row.target, ch, &m);
    if to.is_empty() {
        return Err(permanent(
            "no recipient is left once the channel's own addresses are taken out",
        ));
    }
    match &ch.transport {
        SendTransport::Smtp { .. } => {
            let s = smtp_settings(settings, store, ch).await?;
            let mut c = SmtpClient::connect(&s).await?;
            c.send(&ch.from, &to, &raw).await?;
            c.quit().await;
            Ok(None)
        }
        SendTransport::Graph {
            integration,
            graph_url,
        } => {
            let token = token(
                settings,
                store,
                integration,
                &ch.login,
                TokenProtocol::Graph,
            )
            .await?;
            let client = intake_mail::http::client(&intake_mail::http::HttpOptions {
                timeouts: ch.timeouts,
                ..Default::default()
            })
            .map_err(permanent)?;
            intake_mail::send::graph::send_mime(&client, graph_url, &ch.login, &token, &raw)
                .await?;
            Ok(None)
        }
    }
}

async fn token(
    settings: &Settings,
    store: &Store,
    integration: &str,
    mailbox: &str,
    protocol: TokenProtocol,
) -> Result<secrecy::SecretString, SendError> {
    let client =
        intake_mail::oauth::OAuthClient::new(settings.integration(integration).map_err(permanent)?)
            .map_err(permanent)?;
    let keys = intake_store::Keyring::from_env_or_file(&settings.config.secret_key_file())
        .map_err(permanent)?;
    // A token that cannot be had now (the provider is down, the grant needs re-authorizing) is
    // retried: once it is fixed, the mail goes.
    TokenService::new(store.clone(), keys)
        .access_token(&client, mailbox, protocol)
        .await
        .map_err(|e| SendError::transient(format!("token for {mailbox}: {e}")))
}

/// The SMTP settings of a channel, with a fresh token for OAuth.
pub async fn smtp_settings(
    settings: &Settings,
    store: &Store,
    ch: &ChannelSend,
) -> Result<SmtpSettings, SendError> {
    let SendTransport::Smtp {
        host,
        port,
        tls,
        auth,
        ca_file,
        proxy,
        no_proxy,
    } = &ch.transport
    else {
        return Err(permanent("not an SMTP channel"));
    };
    let auth = match auth {
        Auth::OAuth { integration, .. } => SmtpAuth::XOAuth2 {
            user: ch.login.clone(),
            token: token(settings, store, integration, &ch.login, TokenProtocol::Smtp).await?,
        },
        Auth::Password(r) => SmtpAuth::Password {
            user: ch.login.clone(),
            password: intake_mail::secret::resolve(r).map_err(permanent)?,
        },
    };
    let ca_pem = match ca_file {
        Some(r) => Some(
            intake_mail::secret::resolve(r)
                .map_err(permanent)?
                .expose_secret()
                .as_bytes()
                .to_vec(),
        ),
        None => None,
    };
    let (url, no_proxy) = intake_mail::http::resolve_proxy_env(proxy.as_deref(), no_proxy);
    Ok(SmtpSettings {
        host: host.clone(),
        port: *port,
        tls: *tls,
        ca_pem,
        auth,
        proxy: url.map(|url| intake_mail::net::ProxySettings { url, no_proxy }),
        timeouts: ch.timeouts,
        hello: ch.domain.clone(),
    })
}
